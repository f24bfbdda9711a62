//! The rate limits panel of `/budgets`: one row per limit (a key's or a team's requests and tokens a minute) with
//! what this gateway counted against it in the last minute.
//!
//! The figures come from [`crate::rate_limits_api::rate_limit_view`], the function that answers
//! `GET /api/v1/rate-limits`, so the page and the API agree. Changes go through the API or the CLI.

use std::fmt::Write as _;

use serde::Deserialize;

use super::budgets::scope_html;
use super::html::{esc, int};

/// What the panel reads of a rate limit's view.
#[derive(Debug, Clone, Deserialize)]
struct RateRow {
    id: i64,
    scope: String,
    subject: String,
    rpm: Option<u64>,
    tpm: Option<u64>,
    #[serde(default)]
    last_minute: Counts,
    /// This gateway's share of each limit, with leases on.
    #[serde(default)]
    share: Option<Counts>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Counts {
    requests: Option<u64>,
    tokens: Option<u64>,
}

/// "12 of 60 in the last minute" with a badge when the limit is reached, or "no limit".
fn cell(limit: Option<u64>, counted: Option<u64>, share: Option<u64>, unit: &str) -> String {
    let Some(limit) = limit else {
        return "<span class=\"muted\">no limit</span>".into();
    };
    let counted = counted.unwrap_or(0);
    let mut s = format!(
        "<b>{}</b> {unit} a minute<br><span class=\"small muted\">{} in the last minute here</span>",
        int(limit),
        int(counted)
    );
    if let Some(share) = share {
        let _ = write!(
            s,
            "<br><span class=\"small muted\" title=\"the share of the limit this gateway holds; the other replicas \
             hold the rest\">{} of it held by this gateway</span>",
            int(share)
        );
    }
    if counted >= limit {
        s.push_str(" <span class=\"status bad\" data-state=\"limited\">limited</span>");
    }
    s
}

/// The panel's HTML from the views `GET /api/v1/rate-limits` answers with.
pub(crate) fn render(views: &[serde_json::Value], host: &str) -> String {
    let mut s = String::from("<section class=\"panel\" id=\"rate-limits\"><h2>Rate limits</h2>");
    let rows: Vec<RateRow> = views
        .iter()
        .filter_map(|v| serde_json::from_value(v.clone()).ok())
        .collect();
    if rows.is_empty() {
        let _ = write!(
            s,
            "<p id=\"rate-limits-empty\">No rate limits yet. A rate limit caps the requests and the tokens (prompt and \
             output) a key or a team may send in a minute, on every replica; a request over it is refused with HTTP 429 \
             and <code>Retry-After</code>. Create one with the CLI:</p>\
             <pre>spendgate rate-limits set --scope team --subject support --rpm 600 --tpm 200000</pre>\
             <p>or the API:</p><pre>curl -X POST http://{}/api/v1/rate-limits -H \"authorization: Bearer $SPENDGATE_ADMIN_TOKEN\" \\\n  \
             -H 'content-type: application/json' -d '{{\"scope\":\"key\",\"subject\":\"12\",\"rpm\":60}}'</pre></section>",
            esc(host)
        );
        return s;
    }
    s.push_str(
        "<table class=\"data rate-limits\"><thead><tr><th>Limit</th><th>Requests</th><th>Tokens</th></tr></thead><tbody>",
    );
    for r in &rows {
        let share = r.share.clone().unwrap_or_default();
        let _ = write!(
            s,
            "<tr id=\"rate-limit-{id}\" data-rate-limit=\"{id}\"><td>{}</td><td>{}</td><td>{}</td></tr>",
            scope_html(&r.scope, Some(&r.subject), None),
            cell(r.rpm, r.last_minute.requests, share.requests, "requests"),
            cell(r.tpm, r.last_minute.tokens, share.tokens, "tokens"),
            id = r.id,
        );
    }
    s.push_str(
        "</tbody></table><p class=\"muted small\">Counted over the last 60 seconds (a sliding window); tokens are held \
         at the prompt's estimate plus the output limit while a request runs, then its usage. Change them with \
         <code>spendgate rate-limits set</code> or <code>POST /api/v1/rate-limits</code>, remove one with \
         <code>spendgate rate-limits delete</code>.</p></section>",
    );
    s
}
