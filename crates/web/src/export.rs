//! CSV and JSON exports of the explorer and of spend logs, for any filter, from the API and the pages.
//!
//! Spend logs are streamed: the body is produced page by page from the store's cursor (500 logs at a time), so a
//! month of logs never sits in memory at once. A store failure after the first bytes can only end the stream
//! early; the transfer is then cut without its final chunk, so clients see an incomplete download rather than a
//! short file that looks whole.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use spendgate_core::query::{share_bp, sort_rows, GroupBy, GroupRow, SortBy, Totals};
use spendgate_core::Filters;
use spendgate_gateway::ApiError;
use spendgate_store::Store;

use crate::api::{log_json, row_json, store_error, totals_json};
use crate::AppState;

/// Spend logs read from the store per page of an export.
const EXPORT_PAGE: usize = 500;

/// The formats an export can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    /// Reads `?format=`; JSON when absent.
    pub fn parse(s: Option<&str>) -> Result<Format, ApiError> {
        match s.filter(|s| !s.is_empty()).unwrap_or("json") {
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            other => Err(ApiError::invalid_request(
                "invalid_format",
                format!("format '{other}' is not one of json, csv"),
            )),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }
}

/// One CSV field, quoted when needed. Fields that a spreadsheet would run as a formula are prefixed with a
/// quote so an exported file cannot carry a formula into someone's spreadsheet.
pub(crate) fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The CSV header line for `columns`.
pub(crate) fn csv_header(columns: &[&str]) -> String {
    let mut out = columns.join(",");
    out.push('\n');
    out
}

/// One CSV line: the named fields of a JSON object, strings as they are, anything else as its JSON text.
pub(crate) fn csv_line(columns: &[&str], v: &Value) -> String {
    let cells: Vec<String> = columns
        .iter()
        .map(|c| match &v[*c] {
            Value::Null => String::new(),
            Value::String(s) => csv_field(s),
            other => csv_field(&other.to_string()),
        })
        .collect();
    let mut out = cells.join(",");
    out.push('\n');
    out
}

/// A download response: content type and a file name for the browser.
fn attachment(format: Format, stem: &str, body: Body) -> Response {
    let disposition = format!(
        "attachment; filename=\"spendgate-{stem}.{}\"",
        format.extension()
    );
    let mut res = (StatusCode::OK, body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

const EXPLORER_COLUMNS: [&str; 14] = [
    "key",
    "label",
    "cost",
    "share",
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "tokens",
    "avg_cost_per_request",
    "avg_tokens_per_request",
    "avoided_cost",
];

/// The explorer's rows for a view, sorted, with their total: what the explorer API and its export both show.
pub(crate) async fn explorer_rows(
    s: &AppState,
    f: &Filters,
    group_by: GroupBy,
    sort: SortBy,
) -> Result<(Vec<GroupRow>, Totals), ApiError> {
    let mut rows = s.store.explorer(f, group_by).await.map_err(store_error)?;
    sort_rows(&mut rows, sort);
    let mut total = Totals::default();
    for r in &rows {
        total.add(&r.totals);
    }
    Ok((rows, total))
}

/// The explorer's answer as the API gives it: the rows with their shares, the total and the window read.
pub(crate) async fn explorer_view(
    s: &AppState,
    f: &Filters,
    group_by: GroupBy,
    sort: SortBy,
) -> Result<Value, ApiError> {
    let ((rows, total), refused) = tokio::try_join!(
        explorer_rows(s, f, group_by, sort),
        crate::refusals_api::by_explorer_group(s, f, group_by),
    )?;
    let whole = total.metric(sort);
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut v = row_json(r, share_bp(r.totals.metric(sort), whole));
            // Refusals per team, user or key, where the grouping is one of those (a group with refusals and no
            // spend has no row here: /api/v1/refusals/counts lists every group).
            if let Some(counts) = &refused {
                let n = counts
                    .iter()
                    .find(|c| c.key == r.key)
                    .map_or(0, |c| c.refusals);
                v["refused"] = json!(n);
            }
            v
        })
        .collect();
    Ok(json!({
        "group_by": group_by.as_str(),
        "sort": sort.as_str(),
        "window": crate::api::window_json_of(s.store.resolve_window(f)),
        "total": totals_json(&total),
        "rows": items,
    }))
}

/// The explorer as a file. Its rows are groups (bounded by the number of teams, models, ...), so it is built
/// whole.
pub(crate) async fn explorer_export(
    s: &AppState,
    f: &Filters,
    group_by: GroupBy,
    sort: SortBy,
    format: Format,
) -> Result<Response, ApiError> {
    let view = explorer_view(s, f, group_by, sort).await?;
    let body = match format {
        Format::Json => view.to_string(),
        Format::Csv => {
            let mut out = csv_header(&EXPLORER_COLUMNS);
            for v in view["rows"].as_array().into_iter().flatten() {
                out.push_str(&csv_line(&EXPLORER_COLUMNS, v));
            }
            out
        }
    };
    Ok(attachment(
        format,
        &format!("explorer-by-{}", group_by.as_str()),
        Body::from(body),
    ))
}

const LOG_COLUMNS: [&str; 28] = [
    "id",
    "started_at",
    "finished_at",
    "latency_ms",
    "gateway",
    "provider",
    "model",
    "endpoint",
    "stream",
    "key_id",
    "user",
    "team",
    "workflow",
    "cache_outcome",
    "status",
    "http_status",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "cost",
    "usage_source",
    "price_confidence",
    "price_lines",
    "error",
    "wallet_id",
    "attempts",
    "avoided_cost",
];

/// Where a spend-log export is in its walk over the store's pages.
enum Walk {
    Start,
    After(String),
    Done,
}

/// All spend logs matching `f`, newest first, streamed page by page.
pub(crate) fn spend_logs_export(store: Arc<dyn Store>, f: Filters, format: Format) -> Response {
    let stream = futures_util::stream::unfold((Walk::Start, true), move |(walk, first)| {
        let store = Arc::clone(&store);
        let f = f.clone();
        async move {
            let cursor = match &walk {
                Walk::Start => None,
                Walk::After(c) => Some(c.as_str()),
                Walk::Done => return None,
            };
            let page = match store.spend_logs(&f, EXPORT_PAGE, cursor).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "A spend-log export stopped: the store failed.");
                    let err = std::io::Error::other("the store failed during the export");
                    return Some((Err(err), (Walk::Done, false)));
                }
            };
            let mut out = String::with_capacity(page.items.len() * 512 + 64);
            if first {
                match format {
                    Format::Csv => out.push_str(&csv_header(&LOG_COLUMNS)),
                    Format::Json => out.push('['),
                }
            }
            for (i, l) in page.items.iter().enumerate() {
                let v = log_json(l);
                match format {
                    Format::Csv => out.push_str(&csv_line(&LOG_COLUMNS, &v)),
                    Format::Json => {
                        if !(first && i == 0) {
                            out.push(',');
                        }
                        out.push('\n');
                        out.push_str(&v.to_string());
                    }
                }
            }
            let next = match page.next_cursor {
                Some(c) if !page.items.is_empty() => Walk::After(c),
                _ => {
                    if format == Format::Json {
                        out.push_str("\n]\n");
                    }
                    Walk::Done
                }
            };
            Some((Ok::<_, std::io::Error>(Bytes::from(out)), (next, false)))
        }
    });
    attachment(format, "spend-logs", Body::from_stream(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=1+1"), "'=1+1");
    }

    #[test]
    fn csv_line_takes_named_fields_in_order() {
        let v = json!({ "a": "x,y", "b": 3, "c": null, "d": ["p"] });
        assert_eq!(
            csv_line(&["b", "a", "c", "d"], &v),
            "3,\"x,y\",,\"[\"\"p\"\"]\"\n"
        );
    }
}
