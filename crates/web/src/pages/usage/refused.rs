//! The "Refused" panel of `/usage`: how many requests the gateway refused at the door in the window (a full hard
//! budget, an empty wallet, a bad key, a limit), by reason, and the latest of them with why in words and who
//! was refused. A refused request reached no provider, so it has no spend log and is in none of the page's
//! other figures; a team whose budget is full may show no spend at all while every request it sends is refused.
//!
//! The counts come from the refusal rollups; the list is one indexed page of the refusals table.

use std::fmt::Write as _;

use spendgate_core::query::{Filters, NO_TEAM_LABEL};
use spendgate_store::refusals::UNKNOWN_KEY_LABEL;
use spendgate_store::{RefusalFilters, RefusalGroup, StoredRefusal};

use super::super::html::{date_time, esc, hms, int, short_date};
use super::super::Pages;

/// Refusals listed on the page (the API pages through the rest).
const LISTED: usize = 10;

/// Who was refused: the key's user and team when the key was recognised.
pub(crate) fn who(r: &spendgate_core::RefusalEvent) -> String {
    match (&r.key_id, &r.user) {
        (Some(id), Some(user)) => format!(
            "{} · {} · key {id}",
            user,
            r.team.as_deref().unwrap_or(NO_TEAM_LABEL)
        ),
        _ => UNKNOWN_KEY_LABEL.to_string(),
    }
}

fn row(s: &mut String, item: &StoredRefusal) {
    let r = &item.refusal;
    let _ = write!(
        s,
        "<tr data-reason=\"{}\"><td class=\"time\" title=\"{}\">{} {}</td><td><span class=\"status {}\">{}</span></td>\
         <td class=\"wrap refusal-detail\">{}</td><td class=\"wrap\">{}</td><td class=\"wrap\">{}</td>\
         <td class=\"num\">{}</td></tr>",
        r.reason.as_str(),
        esc(&date_time(r.at_ms)),
        esc(&short_date(r.at_ms)),
        hms(r.at_ms),
        if r.reason.is_control() { "bad" } else { "warn" },
        esc(r.reason.label()),
        esc(&r.detail),
        esc(&who(r)),
        esc(r.model.as_deref().unwrap_or("—")),
        r.http_status,
    );
}

/// The panel for the page's filters: its window, team, user and key (the others do not apply to refusals, and
/// the panel says so instead of showing figures that ignore them).
pub(super) async fn panel(p: &Pages, f: &Filters, api_query: &str) -> String {
    let mut s = String::from(
        "<section class=\"panel\" id=\"refused\"><div class=\"panel-head\"><h2>Refused</h2>\
         <span class=\"muted\">requests the gateway refused before calling a provider: no spend, so in none of the \
         figures above</span>",
    );
    let _ = write!(
        s,
        "<a class=\"more\" href=\"/api/v1/refusals{}\">As JSON →</a></div>",
        esc(api_query)
    );
    let rf = RefusalFilters {
        filters: f.clone(),
        reason: None,
    };
    if let Some(name) = rf.unsupported() {
        let _ = write!(
            s,
            "<p class=\"placeholder\">Refusals are counted per team, user and key; this view's {} filter does not \
             apply to them. Remove it to see what was refused.</p></section>",
            esc(&name.replace('_', " "))
        );
        return s;
    }
    let store = &*p.app.store;
    let (counts, page) = tokio::join!(
        store.refusal_counts(&rf, Some(RefusalGroup::Reason)),
        store.refusals(&rf, LISTED, None)
    );
    let (counts, page) = match (counts, page) {
        (Ok(c), Ok(p)) => (c, p),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "Reading refusals for the usage page failed.");
            s.push_str(
                "<p class=\"placeholder\">Refusals could not be read right now; they reappear on the next update.</p>\
                 </section>",
            );
            return s;
        }
    };
    let total: u64 = counts.iter().map(|c| c.refusals).sum();
    let by_reason = counts
        .iter()
        .map(|c| format!("{} {}", esc(&c.label), int(c.refusals)))
        .collect::<Vec<_>>()
        .join(" · ");
    let _ = write!(
        s,
        "<section class=\"cards\" aria-label=\"Refused\"><div class=\"card\" id=\"refused-card\"><h3>Refused</h3>\
         <p class=\"big{}\" id=\"refused-total\">{}</p><p class=\"sub\">{}</p></div></section>",
        if total > 0 { " bad" } else { "" },
        int(total),
        if by_reason.is_empty() {
            "no request was refused in this window".to_string()
        } else {
            by_reason
        },
    );
    if page.items.is_empty() {
        s.push_str("<p class=\"placeholder\">No refused requests for these filters.</p></section>");
        return s;
    }
    s.push_str(
        "<table class=\"data\" id=\"refusals\"><thead><tr><th>Time</th><th>Reason</th><th>Why</th><th>Who</th>\
         <th>Model</th><th class=\"num\">Status</th></tr></thead><tbody>",
    );
    for item in &page.items {
        row(&mut s, item);
    }
    s.push_str("</tbody></table>");
    if page.next_cursor.is_some() {
        let _ = write!(
            s,
            "<p class=\"muted small\">The latest {LISTED}; <a href=\"/api/v1/refusals{}\">the API</a> lists them all.</p>",
            esc(api_query)
        );
    }
    s.push_str("</section>");
    s
}
