//! `/notifications`: the alerts, newest first (each recorded once per crossing), and the webhook delivery log
//! with every attempt and its outcome.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use serde::Deserialize;
use spendgate_core::time::now_ms;
use spendgate_store::controls::{AlertRecord, Delivery};

use super::html::{ago, date_time, esc, int, layout, query_string, updated};
use super::{html_response, store_error_page, wants_fragment, Pages, SessionCsrf};

/// Alerts and deliveries listed; older ones stay in the store and in `GET /api/v1/alerts`.
const LIMIT: usize = 200;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct NotificationParams {
    fragment: Option<String>,
}

pub(crate) async fn page(
    State(p): State<Arc<Pages>>,
    Extension(csrf): Extension<SessionCsrf>,
    params: Result<Query<NotificationParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let params = params.map(|Query(q)| q).unwrap_or_default();
    let (alerts, deliveries) = tokio::join!(
        p.app.store.list_alerts(LIMIT),
        p.app.store.list_deliveries(LIMIT)
    );
    let (alerts, deliveries) = match (alerts, deliveries) {
        (Ok(a), Ok(d)) => (a, d),
        (Err(e), _) | (_, Err(e)) => return store_error_page(&p, &csrf, e),
    };
    let main = render(&alerts, &deliveries, now_ms());
    if wants_fragment(params.fragment.as_deref()) {
        return html_response(StatusCode::OK, main);
    }
    html_response(
        StatusCode::OK,
        layout(
            &p.chrome("Notifications", "/notifications", &csrf, true),
            "",
            &main,
        ),
    )
}

/// The badge of an alert kind: passing a limit or running dry is bad, nearing one (and anomalies) a warning.
pub(crate) fn kind_badge(kind: &str) -> String {
    let cls = severity(kind);
    format!(
        "<span class=\"status {cls}\" data-kind=\"{}\">{}</span>",
        esc(kind),
        esc(&kind.replace('_', " "))
    )
}

/// How bad an alert of this kind is, as a status class: a limit passed, a wallet empty or a control refusing
/// requests is `bad` (someone is blocked or overspent), anything else `warn`.
pub(crate) fn severity(kind: &str) -> &'static str {
    if kind.ends_with("over") || kind.ends_with("depleted") || kind.ends_with("refusing") {
        "bad"
    } else {
        "warn"
    }
}

/// " evidence" linking an anomaly alert to the filtered view of the requests concerned, when it has one. Only
/// paths on this site are linked ("//host" would leave it).
pub(crate) fn evidence(a: &AlertRecord) -> String {
    a.alert
        .link
        .as_deref()
        .filter(|l| l.starts_with('/') && !l.starts_with("//"))
        .map_or(String::new(), |l| {
            format!(" <a class=\"evidence\" href=\"{}\">evidence</a>", esc(l))
        })
}

/// Where an alert's subject ("budget:12", "wallet:3", "team:support", ...) is shown, when a page shows it.
fn subject_link(subject: &str) -> String {
    let href = match subject.split_once(':') {
        Some(("budget", id)) if id.parse::<i64>().is_ok() => format!("/budgets#budget-{id}"),
        Some(("wallet", id)) if id.parse::<i64>().is_ok() => format!("/wallets/{id}"),
        Some(("team", t)) => format!(
            "/usage{}",
            query_string(&[("team", t.to_string()), ("window", "24h".into())])
        ),
        Some(("workflow", w)) => format!(
            "/usage{}",
            query_string(&[("workflow", w.to_string()), ("window", "24h".into())])
        ),
        Some(("key", k)) if k.parse::<i64>().is_ok() => format!(
            "/usage{}",
            query_string(&[("key", k.to_string()), ("window", "24h".into())])
        ),
        _ => return esc(subject),
    };
    format!("<a href=\"{}\">{}</a>", esc(&href), esc(subject))
}

/// A webhook target without its path: webhook URLs often carry their secret in the path (Slack, Discord), and
/// this page may be on a shared screen. The full URL is in the config and in `GET /api/v1/alerts`.
fn redact_target(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".into();
    };
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = rest.get(..host_end).unwrap_or_default();
    // Credentials in the authority ("user:pass@host") are secrets too.
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let more = if host_end < rest.len() { "/…" } else { "" };
    format!("{scheme}://{host}{more}")
}

fn render(alerts: &[AlertRecord], deliveries: &[Delivery], now: i64) -> String {
    let mut s = String::with_capacity(16 * 1024);
    let _ = write!(
        s,
        "<div class=\"page-head\"><h1>Notifications</h1><p class=\"window\">budget, wallet and anomaly alerts, newest first</p>{}</div>",
        updated(now)
    );
    s.push_str(
        "<section class=\"panel\" id=\"alerts\"><div class=\"panel-head\"><h2>Alerts</h2>\
         <span class=\"muted\">each is recorded once per crossing, per period</span>\
         <a class=\"more\" href=\"/budgets\">Budgets →</a><a href=\"/wallets\">Wallets →</a></div>",
    );
    if alerts.is_empty() {
        s.push_str(
            "<p class=\"placeholder\">No alerts yet. An alert is recorded when a budget passes one of its thresholds \
             (80&nbsp;% and 100&nbsp;% unless set otherwise) or a wallet runs low or empty; set budgets on \
             <a href=\"/budgets\">Budgets</a> with <code>spendgate budgets set</code>.</p>",
        );
    } else {
        s.push_str(
            "<table class=\"data\" id=\"alerts-table\"><thead><tr><th>Message</th><th>Kind</th><th>Team</th>\
             <th>Subject</th><th>Time (UTC)</th></tr></thead><tbody>",
        );
        for a in alerts {
            let team = a.alert.team.as_deref().map_or_else(
                || "<span class=\"muted\">—</span>".to_string(),
                |t| {
                    format!(
                        "<a href=\"{}\">{}</a>",
                        esc(&format!(
                            "/usage{}",
                            query_string(&[
                                ("team", t.to_string()),
                                ("window", "24h".into()),
                                ("group_by", "user".into())
                            ])
                        )),
                        esc(t)
                    )
                },
            );
            let _ = write!(
                s,
                "<tr id=\"alert-{}\" data-alert=\"{}\"><td>{}{}</td><td>{}</td><td>{team}</td><td>{}</td>\
                 <td title=\"{}\">{}</td></tr>",
                a.id,
                a.id,
                super::html::message_html(&a.alert.message),
                evidence(a),
                kind_badge(&a.alert.kind),
                subject_link(&a.alert.subject),
                esc(&date_time(a.at_ms)),
                esc(&ago(a.at_ms, now)),
            );
        }
        s.push_str("</tbody></table>");
        if alerts.len() >= LIMIT {
            let _ = write!(
                s,
                "<p class=\"muted small\">The latest {LIMIT}; <code>GET /api/v1/alerts</code> and the \
                 <a href=\"/history?view=activity\">activity history</a> have more.</p>"
            );
        }
    }
    s.push_str("</section>");

    s.push_str(
        "<section class=\"panel\" id=\"deliveries\"><div class=\"panel-head\"><h2>Webhook deliveries</h2>\
         <span class=\"muted\">every attempt, newest first; failed ones are retried with backoff</span></div>",
    );
    if deliveries.is_empty() {
        s.push_str(
            "<p class=\"placeholder\">No webhook deliveries. To have every new alert posted (Slack-compatible JSON), \
             list URLs in the config: <code>[alerts] webhooks = [\"https://hooks.example.com/...\"]</code>.</p>",
        );
    } else {
        let failed = deliveries.iter().filter(|d| !d.ok).count();
        let _ = write!(
            s,
            "<p class=\"muted small\">{} attempts shown, {} failed.</p>\
             <table class=\"data\" id=\"deliveries-table\"><thead><tr><th>Target</th><th>Alert</th><th class=\"num\">Attempt</th>\
             <th>Result</th><th>Detail</th><th>Time (UTC)</th></tr></thead><tbody>",
            int(u64::try_from(deliveries.len()).unwrap_or(0)),
            int(u64::try_from(failed).unwrap_or(0)),
        );
        for d in deliveries {
            let _ = write!(
                s,
                "<tr data-delivery=\"{}\"><td><code>{}</code></td><td><a href=\"#alert-{}\">#{}</a></td><td class=\"num\">{}</td>\
                 <td>{}</td><td>{}</td><td title=\"{}\">{}</td></tr>",
                d.id,
                esc(&redact_target(&d.target)),
                d.alert_id,
                d.alert_id,
                d.attempt,
                if d.ok {
                    "<span class=\"status ok\">ok</span>"
                } else {
                    "<span class=\"status bad\">failed</span>"
                },
                esc(&d.detail),
                esc(&date_time(d.at_ms)),
                esc(&ago(d.at_ms, now)),
            );
        }
        s.push_str("</tbody></table>");
    }
    s.push_str("</section>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_lose_their_secret_paths() {
        assert_eq!(
            redact_target("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            redact_target("http://user:pw@127.0.0.1:9"),
            "http://127.0.0.1:9"
        );
        assert_eq!(redact_target("nonsense"), "(not a URL)");
    }

    #[test]
    fn subjects_link_to_their_page() {
        assert_eq!(
            subject_link("wallet:3"),
            "<a href=\"/wallets/3\">wallet:3</a>"
        );
        assert!(subject_link("team:<b>").contains("team:&lt;b&gt;"));
        assert_eq!(subject_link("odd"), "odd");
    }
}
