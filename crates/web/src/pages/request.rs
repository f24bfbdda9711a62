//! `/requests/{id}`: one spend event in full, with the price lines its cost was computed from.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use spendgate_core::pricing::TokenKind;
use spendgate_core::query::{NO_TEAM_FILTER, NO_TEAM_LABEL};
use spendgate_core::{CacheOutcome, PriceConfidence, UsageSource};

use super::html::{date_time, esc, int, layout, query_string};
use super::{error_page, html_response, store_error_page, Pages, SessionCsrf};

fn kind_label(k: TokenKind) -> &'static str {
    match k {
        TokenKind::Input => "Input (uncached)",
        TokenKind::CachedInput => "Cached input",
        TokenKind::CacheWrite => "Cache write (5 min)",
        TokenKind::Output => "Output",
        TokenKind::AudioInput => "Audio input",
        TokenKind::CacheWrite1h => "Cache write (1 h)",
        TokenKind::Reasoning => "Reasoning (billed as output)",
        TokenKind::AudioOutput => "Audio output",
        TokenKind::WebSearch => "Web searches (calls; price per 1M calls)",
    }
}

/// The upstream calls that failed before the one that answered (fallbacks and retries), if any.
fn failed_attempts(s: &mut String, e: &spendgate_core::SpendEvent) {
    if e.failed_attempts.is_empty() {
        return;
    }
    s.push_str(
        "<h3>Failed attempts</h3><table class=\"data\" id=\"failed-attempts\"><thead><tr><th class=\"num\">#</th>\
         <th>Provider</th><th>Upstream model</th><th class=\"num\">HTTP</th><th>Error</th></tr></thead><tbody>",
    );
    for (i, a) in e.failed_attempts.iter().enumerate() {
        let _ = write!(
            s,
            "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            i + 1,
            esc(&a.provider),
            esc(&a.model),
            a.http_status,
            esc(&a.error)
        );
    }
    let _ = write!(
        s,
        "</tbody></table><p class=\"muted small\">Failed attempts cost nothing; attempt {} ({}) answered.</p>",
        e.attempts,
        esc(&e.provider)
    );
}

pub(crate) async fn page(
    State(p): State<Arc<Pages>>,
    Extension(csrf): Extension<SessionCsrf>,
    Path(id): Path<String>,
) -> Response {
    let Ok(uuid) = uuid::Uuid::parse_str(&id) else {
        return error_page(
            &p,
            &csrf,
            StatusCode::BAD_REQUEST,
            "Not a request id",
            &format!("'{id}' is not a request id."),
        );
    };
    let log = match p.app.store.spend_log(uuid).await {
        Ok(Some(l)) if crate::auth::visible(&l) => l,
        Ok(_) => {
            return error_page(
                &p,
                &csrf,
                StatusCode::NOT_FOUND,
                "Request not found",
                "No request has this id. It may not be written yet (the writer batches events for a few \
                 milliseconds), or it is older than the spend logs kept.",
            )
        }
        Err(e) => return store_error_page(&p, &csrf, e),
    };
    let e = &log.event;
    let mut s = String::with_capacity(8192);
    let team_param = e
        .attribution
        .team
        .clone()
        .unwrap_or_else(|| NO_TEAM_FILTER.to_string());
    let _ = write!(
        s,
        "<div class=\"page-head\"><h1>Request <code>{}</code></h1>\
         <a class=\"more\" href=\"/usage\">← Usage</a></div>",
        esc(&e.id.to_string())
    );
    let estimated = e.usage_source == UsageSource::Estimated;
    // A cache hit was answered from the gateway's memory: no provider call, no tokens billed, nothing spent.
    let hit = e.cache_outcome == CacheOutcome::Hit;
    if hit {
        let _ = write!(
            s,
            "<p class=\"lead served\" id=\"served-from-cache\"><span class=\"status served-from-cache\">served from cache</span> \
             This answer came from the response cache: no provider was called, so its tokens were served from cache \
             at $0, and it avoided <b title=\"${}\">{}</b> (the stored answer's usage at today's price).</p>",
            e.avoided_cost.to_usd_string(),
            esc(&e.avoided_cost.display_usd())
        );
    }
    let (usage_big, usage_sub) = if hit {
        (
            "Served from cache",
            "Tokens served from cache at $0: nothing was billed, so they are recorded as 0.",
        )
    } else if estimated {
        (
            "Estimated",
            "The provider reported no token counts; spendgate estimated them (about four bytes a token).",
        )
    } else {
        ("Reported", "Token counts as reported by the provider.")
    };
    let _ = write!(
        s,
        "<section class=\"cards\"><div class=\"card\"><h3>Cost</h3><p class=\"big\" title=\"${}\">{}</p>\
         <p class=\"sub\">exact: ${}</p></div>\
         <div class=\"card\"><h3>Tokens</h3><p class=\"big\">{}</p><p class=\"sub\">{} in · {} out</p></div>\
         <div class=\"card\"><h3>Usage</h3><p class=\"big {}\" id=\"usage-source\">{}</p><p class=\"sub\">{}</p></div>\
         <div class=\"card\"><h3>Price</h3><p class=\"big {}\">{}</p><p class=\"sub\">{}</p></div></section>",
        e.cost.to_usd_string(),
        esc(&e.cost.display_usd()),
        e.cost.to_usd_string(),
        int(e.usage.total_tokens()),
        int(e.usage.input_tokens),
        int(e.usage.output_tokens),
        if estimated { "warn" } else { "" },
        usage_big,
        usage_sub,
        if e.price_confidence.is_exact() { "" } else { "warn" },
        match e.price_confidence {
            PriceConfidence::Exact => "Catalog",
            PriceConfidence::Inferred => "Inferred",
            PriceConfidence::Fallback => "Fallback",
            PriceConfidence::Estimated => "Estimate",
        },
        match e.price_confidence {
            PriceConfidence::Exact => "Priced from the pricing catalog.",
            PriceConfidence::Inferred => {
                "The catalog does not list this dated snapshot; it was priced as the model it is a snapshot of."
            }
            PriceConfidence::Fallback => {
                "The model has no catalog price; the configured fallback price was used."
            }
            PriceConfidence::Estimated => {
                "Catalog prices times estimated tokens: the cost is an estimate, not the provider's bill."
            }
        },
    );

    s.push_str(
        "<div class=\"grid2\"><section class=\"panel\"><h2>Request</h2><dl class=\"fields\">",
    );
    let link = |param: &str, value: &str, group_by: &str| -> String {
        format!(
            "/usage{}",
            query_string(&[
                ("window", "24h".into()),
                (param, value.to_string()),
                ("group_by", group_by.into())
            ])
        )
    };
    let rows: Vec<(&str, String)> = vec![
        ("Id", format!("<code>{}</code>", esc(&e.id.to_string()))),
        ("Started", esc(&date_time(e.started_at_ms))),
        ("Finished", esc(&date_time(e.finished_at_ms))),
        ("Latency", format!("{} ms", int(u64::from(e.latency_ms)))),
        (
            "Status",
            format!("{} (HTTP {})", esc(e.status.as_str()), e.http_status),
        ),
        ("Error", e.error.as_deref().map_or_else(|| "—".into(), esc)),
        (
            "Attempts",
            if e.attempts > 1 {
                format!(
                    "<span id=\"attempts\">{}</span> (fell back {} time{})",
                    e.attempts,
                    e.attempts - 1,
                    if e.attempts == 2 { "" } else { "s" }
                )
            } else {
                format!("<span id=\"attempts\">{}</span>", e.attempts)
            },
        ),
        (
            "Gateway",
            format!(
                "<a href=\"{}\">{}</a>",
                esc(&link("gateway", &e.gateway, "provider")),
                esc(&e.gateway)
            ),
        ),
        (
            "Provider",
            format!(
                "<a href=\"{}\">{}</a>",
                esc(&link("provider", &e.provider, "model")),
                esc(&e.provider)
            ),
        ),
        (
            "Model",
            format!(
                "<a href=\"{}\">{}</a>",
                esc(&link("model", &e.model, "team")),
                esc(&e.model)
            ),
        ),
        (
            "Endpoint",
            // A translated request names both APIs: the client's, and the one its provider was reached through.
            match &e.upstream_api {
                Some(up) => format!(
                    "<span id=\"endpoint\">{}</span> (translated to the provider's {} API)",
                    esc(&e.endpoint),
                    esc(up)
                ),
                None => format!("<span id=\"endpoint\">{}</span>", esc(&e.endpoint)),
            },
        ),
        (
            "Streamed",
            if e.stream { "yes".into() } else { "no".into() },
        ),
        (
            "Cache outcome",
            if hit {
                "<span class=\"status served-from-cache\">served from cache</span> (hit)".into()
            } else {
                esc(e.cache_outcome.as_str())
            },
        ),
        (
            "Avoided cost",
            // Only a cache hit avoids anything: what its stored answer's usage costs at today's price.
            format!(
                "<span title=\"${}\">{}</span>",
                e.avoided_cost.to_usd_string(),
                esc(&e.avoided_cost.display_usd())
            ),
        ),
        (
            "Team",
            format!(
                "<a href=\"{}\">{}</a>",
                esc(&link("team", &team_param, "user")),
                esc(e.attribution.team.as_deref().unwrap_or(NO_TEAM_LABEL))
            ),
        ),
        (
            "User",
            format!(
                "<a href=\"{}\">{}</a>",
                esc(&link("user", &e.attribution.user, "model")),
                esc(&e.attribution.user)
            ),
        ),
        (
            "Key",
            format!(
                "<a href=\"{}\">key {}</a>",
                esc(&link("key", &e.attribution.key_id.to_string(), "model")),
                e.attribution.key_id
            ),
        ),
        (
            "Workflow",
            match (&e.attribution.workflow, &e.attribution.workflow_requested) {
                (Some(w), Some(asked)) => format!(
                    "{} <span class=\"muted\">(the request named {}: a new label after the gateway had as many \
                     as limits.max_workflows keeps apart)</span>",
                    esc(w),
                    esc(asked)
                ),
                (Some(w), None) => esc(w),
                (None, _) => "—".into(),
            },
        ),
        (
            "Usage source",
            if hit {
                "the response cache (no provider call)".into()
            } else {
                esc(e.usage_source.as_str())
            },
        ),
        ("Price confidence", esc(e.price_confidence.as_str())),
    ];
    for (k, v) in rows {
        let _ = write!(s, "<div><dt>{k}</dt><dd>{v}</dd></div>");
    }
    s.push_str("</dl>");
    failed_attempts(&mut s, e);
    s.push_str("</section>");

    s.push_str(
        "<section class=\"panel\"><h2>Price lines</h2><table class=\"data\" id=\"price-lines\"><thead><tr><th>Tokens</th>\
         <th class=\"num\">Count</th><th class=\"num\">USD / 1M tokens</th><th class=\"num\">Cost (USD)</th></tr></thead><tbody>",
    );
    for l in &e.price_lines {
        let _ = write!(
            s,
            "<tr><td>{}{}</td><td class=\"num\">{}</td><td class=\"num\">${}</td><td class=\"num\">${}</td></tr>",
            kind_label(l.kind),
            if l.rate.is_standard() {
                String::new()
            } else {
                format!(" <span class=\"badge warn\">{}</span>", l.rate.describe())
            },
            int(l.tokens),
            l.price_per_mtok.to_usd_string(),
            l.cost.to_usd_string()
        );
    }
    if e.price_lines.is_empty() {
        s.push_str("<tr><td colspan=\"4\" class=\"muted\">No price lines were recorded for this request.</td></tr>");
    }
    if let Some(theirs) = e.usage.provider_cost {
        let _ = write!(
            s,
            "<tr><td colspan=\"3\">Reported by the provider{}</td><td class=\"num\">${}</td></tr>",
            if theirs == e.cost {
                " (agrees)".to_string()
            } else {
                format!(
                    " <span class=\"badge warn\">differs by ${}</span>",
                    (theirs - e.cost).to_usd_string()
                )
            },
            theirs.to_usd_string()
        );
    }
    let _ = write!(
        s,
        "</tbody><tfoot><tr><th colspan=\"3\">Total</th><td class=\"num\">${}</td></tr></tfoot></table>\
         <p class=\"muted small\">Cost = tokens × price per million tokens, exact to the picodollar. Cached input and \
         cache writes are billed at their own prices; input counts include them.</p>\
         <h3>Token counts</h3><dl class=\"fields\"><div><dt>Input</dt><dd>{}</dd></div>\
         <div><dt>Cached input</dt><dd>{}</dd></div><div><dt>Cache write</dt><dd>{}</dd></div>\
         <div><dt>Output</dt><dd>{}</dd></div></dl></section></div>",
        e.cost.to_usd_string(),
        int(e.usage.input_tokens),
        int(e.usage.cached_input_tokens),
        int(e.usage.cache_write_tokens),
        int(e.usage.output_tokens),
    );
    html_response(
        StatusCode::OK,
        layout(&p.chrome("Request", "/usage", &csrf, false), "", &s),
    )
}
