//! `/history?view=activity`: one feed of what actors did — request activity per key, workflow and gateway per
//! time bucket, admin changes with their before and after, alerts, and gateway starts and stops — with
//! filters and CSV or JSON export. The feed is the one `GET /api/v1/activity` serves.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use spendgate_core::query::{Filters, NO_TEAM_FILTER, NO_TEAM_LABEL};
use spendgate_core::time::to_rfc3339;

use super::html::{as_of, date_time, esc, int, layout, query_string};
use super::{error_page, html_response, invalid_view, Pages, SessionCsrf};
use crate::insights_api::{
    activity, field_changes, item_json, items_csv, ActivityItem, ActivityParams, Source,
};
use crate::params::WINDOWS;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct HistoryParams {
    view: Option<String>,
    #[serde(flatten)]
    activity: ActivityParams,
}

/// The activity behind a set of usage filters: same window, team, gateway, user or key.
pub(crate) fn activity_url(f: &Filters) -> String {
    let actor = match (f.key_id, &f.user) {
        (Some(k), _) => format!("key:{k}"),
        (None, Some(u)) => u.clone(),
        (None, None) => String::new(),
    };
    format!(
        "/history{}",
        query_string(&[
            ("view", "activity".into()),
            ("from", to_rfc3339(f.from_ms)),
            ("to", to_rfc3339(f.to_ms)),
            ("team", f.team.clone().unwrap_or_default()),
            ("gateway", f.gateway.clone().unwrap_or_default()),
            ("actor", actor),
        ])
    )
}

fn v(o: &Option<String>) -> String {
    o.clone().unwrap_or_default()
}

pub(crate) async fn page(
    State(p): State<Arc<Pages>>,
    Extension(csrf): Extension<SessionCsrf>,
    params: Result<Query<HistoryParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match params {
        Ok(Query(q)) => q,
        Err(e) => return invalid_view(&p, &csrf, &e.body_text()),
    };
    let view = q.view.as_deref().unwrap_or("activity");
    if view != "activity" {
        return error_page(
            &p,
            &csrf,
            StatusCode::BAD_REQUEST,
            "This view is not known",
            &format!("view '{view}' is not known; use view=activity."),
        );
    }
    let a = &q.activity;
    let (f, items) = match activity(&p.app, a).await {
        Ok(r) => r,
        Err(e) => return error_page(&p, &csrf, e.status, "This view is not valid", &e.message),
    };
    match a.format.as_deref().unwrap_or("") {
        "csv" => {
            return (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"spendgate-activity.csv\"",
                    ),
                ],
                items_csv(&items),
            )
                .into_response()
        }
        "json" => {
            let body = serde_json::json!({
                "window": { "from": to_rfc3339(f.from_ms), "to": to_rfc3339(f.to_ms) },
                "items": items.iter().map(item_json).collect::<Vec<_>>(),
            });
            return (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"spendgate-activity.json\"",
                    ),
                ],
                body.to_string(),
            )
                .into_response();
        }
        _ => {}
    }
    let fp = &a.filters;
    let base: Vec<(&str, String)> = vec![
        ("view", "activity".into()),
        ("window", v(&fp.window)),
        ("from", v(&fp.from)),
        ("to", v(&fp.to)),
        ("actor", v(&a.actor)),
        ("team", v(&fp.team)),
        ("gateway", v(&fp.gateway)),
        ("source", v(&a.source)),
    ];
    let with = |k: &str, val: &str| -> String {
        let mut b = base.clone();
        match b.iter_mut().find(|(bk, _)| *bk == k) {
            Some(e) => e.1 = val.to_string(),
            None => b.push((k, val.to_string())),
        }
        format!("/history{}", query_string(&b))
    };
    let mut s = String::with_capacity(32_768);
    let _ = write!(
        s,
        "<div class=\"page-head\"><h1>Activity</h1><p class=\"window\">{} – {}</p>{}\
         <span class=\"more\"><a href=\"{}\" id=\"export-csv\">Export CSV</a> · <a href=\"{}\" id=\"export-json\">Export JSON</a></span></div>",
        esc(&date_time(f.from_ms)),
        esc(&date_time(f.to_ms)),
        as_of(spendgate_core::time::now_ms()),
        esc(&with("format", "csv")),
        esc(&with("format", "json")),
    );
    // Filters: a plain GET form, so every view is a shareable URL.
    s.push_str("<form class=\"filters panel\" method=\"get\" action=\"/history\"><input type=\"hidden\" name=\"view\" value=\"activity\">");
    s.push_str("<label>Window<select name=\"window\">");
    let window = fp.window.clone().unwrap_or_else(|| "24h".into());
    for &w in WINDOWS {
        let sel = if w == window { " selected" } else { "" };
        let _ = write!(s, "<option value=\"{w}\"{sel}>{w}</option>");
    }
    s.push_str("</select></label>");
    for (name, label, value) in [
        ("actor", "Actor (user or key:ID)", v(&a.actor)),
        ("team", "Team (@none for No team)", v(&fp.team)),
        ("gateway", "Gateway", v(&fp.gateway)),
    ] {
        let _ = write!(
            s,
            "<label>{label}<input type=\"text\" name=\"{name}\" value=\"{}\"></label>",
            esc(&value)
        );
    }
    s.push_str("<label>Source<select name=\"source\"><option value=\"\">All</option>");
    for src in Source::ALL {
        let sel = if a.source.as_deref() == Some(src.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            s,
            "<option value=\"{}\"{sel}>{}</option>",
            src.as_str(),
            source_label(src)
        );
    }
    s.push_str("</select></label><button type=\"submit\" class=\"primary\">Apply</button></form>");

    let _ = write!(
        s,
        "<section class=\"panel\"><div class=\"panel-head\"><h2>{} entr{}</h2><span class=\"muted\">newest first</span></div>",
        int(u64::try_from(items.len()).unwrap_or(0)),
        if items.len() == 1 { "y" } else { "ies" }
    );
    if items.is_empty() {
        s.push_str(
            "<p class=\"muted\">Nothing happened in this window with these filters.</p></section>",
        );
    } else {
        s.push_str(
            "<table class=\"data\" id=\"activity\"><thead><tr><th>Time (UTC)</th><th>Source</th><th>Actor</th><th>Team</th>\
             <th>Gateway</th><th>What</th><th class=\"num\">Cost</th></tr></thead><tbody>",
        );
        for i in &items {
            row(&mut s, i);
        }
        s.push_str("</tbody></table></section>");
    }
    html_response(
        StatusCode::OK,
        layout(&p.chrome("Activity", "/history", &csrf, false), "", &s),
    )
}

fn source_label(s: Source) -> &'static str {
    match s {
        Source::Requests => "Requests",
        Source::Admin => "Admin change",
        Source::Alert => "Alert",
        Source::Lifecycle => "Gateway lifecycle",
    }
}

/// An admin change as "action target" and a list of only the fields that changed, "field: before → after"
/// (a creation lists what it created, "field: value").
fn changes_html(i: &ActivityItem) -> String {
    let changes = field_changes(&i.before, &i.after);
    let mut out = format!(
        "<span class=\"action\">{}</span> <span class=\"target\">{}</span>",
        esc(&i.action),
        esc(&i.target)
    );
    if changes.is_empty() {
        out.push_str(" <span class=\"muted\">no change</span>");
        return out;
    }
    out.push_str("<ul class=\"changes\">");
    for c in &changes {
        let _ = match (&c.before, &c.after) {
            (_, Some(a)) if i.before.is_none() => write!(
                out,
                "<li><span class=\"field\">{}</span>: {}</li>",
                esc(&c.field),
                esc(a)
            ),
            (b, a) => write!(
                out,
                "<li><span class=\"field\">{}</span>: <span class=\"before\">{}</span> → <span class=\"after\">{}</span></li>",
                esc(&c.field),
                esc(b.as_deref().unwrap_or("none")),
                esc(a.as_deref().unwrap_or("none"))
            ),
        };
    }
    out.push_str("</ul>");
    out
}

fn row(s: &mut String, i: &ActivityItem) {
    let team = match (&i.team, i.source) {
        (None, Source::Requests) => NO_TEAM_LABEL.to_string(),
        (t, _) => t.clone().unwrap_or_default(),
    };
    let what = match i.source {
        Source::Requests => {
            // The usage behind this bucket: the same key and window.
            let href = format!(
                "/usage{}",
                query_string(&[
                    ("from", to_rfc3339(i.at_ms)),
                    ("to", to_rfc3339(i.until_ms.unwrap_or(i.at_ms))),
                    ("key", i.key_id.map(|k| k.to_string()).unwrap_or_default()),
                    (
                        "team",
                        i.team.clone().unwrap_or_else(|| NO_TEAM_FILTER.to_string())
                    ),
                    ("group_by", "model".into()),
                ])
            );
            format!("<a href=\"{}\">{}</a>", esc(&href), esc(&i.summary))
        }
        Source::Admin | Source::Lifecycle if i.before.is_some() || i.after.is_some() => {
            changes_html(i)
        }
        _ => esc(&i.summary),
    };
    let cost = i.totals.map_or_else(String::new, |t| {
        format!(
            "<span title=\"${}\">{}</span>",
            t.cost.to_usd_string(),
            esc(&t.cost.display_usd())
        )
    });
    let _ = write!(
        s,
        "<tr data-source=\"{}\"><td class=\"time\">{}</td><td><span class=\"badge\">{}</span></td><td class=\"wrap\">{}</td><td class=\"wrap\">{}</td><td class=\"wrap\">{}</td><td class=\"what\">{}</td><td class=\"num\">{}</td></tr>",
        i.source.as_str(),
        esc(&date_time(i.at_ms)),
        source_label(i.source),
        esc(&i.actor),
        esc(&team),
        esc(i.gateway.as_deref().unwrap_or("")),
        what,
        cost,
    );
}
