//! `/budgets`: one row per budget with a bar of spend against its amount (what requests in flight hold, the
//! alert thresholds and the forecast at period end marked on it), its state, hard or soft, and when it resets;
//! then the rate limits (`rate_limits.rs`).
//! Also the compact budget-alert panel that `/usage` shows for its current filters.
//!
//! The figures come from [`crate::controls_api::budget_view`], the same function that answers
//! `GET /api/v1/budgets`, so the page, the API and the CLI never disagree. Changes go through the API or the CLI;
//! the page only reads.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use serde::Deserialize;
use spendgate_core::query::{format_share, share_bp, Filters, NO_TEAM_FILTER};
use spendgate_core::time::{now_ms, parse_rfc3339};
use spendgate_core::Money;
use spendgate_gateway::ApiError;
use spendgate_store::controls::{AlertRecord, BudgetRecord};

use super::html::{ago, date_time, duration, esc, layout, query_string, updated};
use super::{error_page, host, html_response, wants_fragment, Pages, SessionCsrf};
use crate::AppState;

/// Budgets the `/usage` panel lists at most; the rest are one click away on `/budgets`.
const PANEL_BUDGETS: usize = 6;
/// Alerts the `/usage` panel lists at most.
const PANEL_ALERTS: usize = 5;
/// Width of a budget bar in pixels. The SVG is drawn at its real size (no stretching), so markers stay crisp.
const BAR_W: u32 = 320;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct BudgetParams {
    fragment: Option<String>,
}

/// A budget as `budget_view` describes it, read back from its JSON into types (money stays exact: the JSON
/// carries decimal strings).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BudgetRow {
    pub id: i64,
    pub name: Option<String>,
    pub scope: String,
    pub subject: Option<String>,
    pub period: String,
    pub amount: Money,
    pub thresholds: Vec<u32>,
    pub hard_limit: bool,
    pub spent: Money,
    pub reserved: Money,
    pub percent_used: u32,
    pub state: String,
    pub period_start: String,
    pub resets_at: String,
    pub forecast: Money,
    /// The forecast's range (the rate since the first request this period against the last hour's); absent
    /// from older servers' views.
    #[serde(default)]
    pub forecast_low: Option<Money>,
    #[serde(default)]
    pub forecast_high: Option<Money>,
    /// The rate the forecast extends and the window it is over.
    #[serde(default)]
    pub forecast_rate: Option<super::wallets::BurnRow>,
}

impl BudgetRow {
    /// Over first, then near, then ok; within a state the fullest first.
    fn severity(&self) -> u8 {
        match self.state.as_str() {
            "blocking" | "over" => 0,
            "near" => 1,
            _ => 2,
        }
    }
}

/// The current standing of `records`, from `budget_view`.
pub(crate) async fn budget_rows(
    app: &AppState,
    records: &[BudgetRecord],
) -> Result<Vec<BudgetRow>, ApiError> {
    let mut rows = Vec::with_capacity(records.len());
    for b in records {
        let v = crate::controls_api::budget_view(app, b).await?;
        let row: BudgetRow = serde_json::from_value(v).map_err(|e| {
            // Only a change to budget_view's shape gets here; say so rather than showing half a page.
            tracing::error!(error = %e, "A budget view did not have the shape the budgets page reads.");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "budget_view_shape",
                "A budget could not be read for this page.",
            )
        })?;
        rows.push(row);
    }
    rows.sort_by(|a, b| {
        a.severity()
            .cmp(&b.severity())
            .then(b.percent_used.cmp(&a.percent_used))
            .then(a.id.cmp(&b.id))
    });
    Ok(rows)
}

/// An error page for an API-shaped error (the store could not answer, most often).
pub(crate) fn api_error_page(p: &Pages, csrf: &SessionCsrf, e: &ApiError) -> Response {
    error_page(
        p,
        csrf,
        e.status,
        "This page could not be shown",
        &e.message,
    )
}

pub(crate) async fn page(
    State(p): State<Arc<Pages>>,
    Extension(csrf): Extension<SessionCsrf>,
    headers: HeaderMap,
    params: Result<Query<BudgetParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let params = params.map(|Query(q)| q).unwrap_or_default();
    let records = match p.app.store.list_budgets().await {
        Ok(r) => r,
        Err(e) => return super::store_error_page(&p, &csrf, e),
    };
    let rows = match budget_rows(&p.app, &records).await {
        Ok(r) => r,
        Err(e) => return api_error_page(&p, &csrf, &e),
    };
    // Rate limits are controls too: they are listed under the budgets.
    let rates = match p.app.store.list_rate_limits().await {
        Ok(list) => list
            .iter()
            .map(|r| crate::rate_limits_api::rate_limit_view(&p.app, r))
            .collect::<Vec<_>>(),
        Err(e) => return super::store_error_page(&p, &csrf, e),
    };
    let mut main = render(&rows, now_ms(), &host(&headers));
    main.push_str(&super::rate_limits::render(&rates, &host(&headers)));
    if wants_fragment(params.fragment.as_deref()) {
        return html_response(StatusCode::OK, main);
    }
    html_response(
        StatusCode::OK,
        layout(&p.chrome("Budgets", "/budgets", &csrf, true), "", &main),
    )
}

/// "team <a>support</a>", "the organisation", ...: who a budget or wallet covers, linked to its usage.
pub(crate) fn scope_html(scope: &str, subject: Option<&str>, from: Option<&str>) -> String {
    let subject = subject.unwrap_or_default();
    let param = match scope {
        "team" => "team",
        "user" => "user",
        "key" => "key",
        _ => return "<span class=\"scope\">Organisation</span>".into(),
    };
    let mut pairs = vec![(param, subject.to_string())];
    match from {
        Some(f) => pairs.push(("from", f.to_string())),
        None => pairs.push(("window", "24h".into())),
    }
    pairs.push((
        "group_by",
        if param == "team" { "user" } else { "model" }.into(),
    ));
    format!(
        "<span class=\"scope\">{} <a href=\"{}\">{}{}</a></span>",
        esc(scope),
        esc(&format!("/usage{}", query_string(&pairs))),
        if param == "key" { "#" } else { "" },
        esc(subject)
    )
}

/// The badge of a budget state.
pub(crate) fn state_badge(state: &str) -> String {
    let cls = match state {
        "blocking" | "over" => "bad",
        "near" => "warn",
        _ => "ok",
    };
    format!(
        "<span class=\"status {cls}\" data-state=\"{}\">{}</span>",
        esc(state),
        esc(state)
    )
}

/// Position of `m` on a bar whose full width stands for `scale`, in pixels (integer arithmetic).
fn pos(m: Money, scale: Money) -> u32 {
    share_bp(m.picos(), scale.picos()).min(10_000) * BAR_W / 10_000
}

/// The bar of one budget as SVG (the page's CSP allows no inline styles, so colours come from classes).
///
/// The bar's full width is the largest of the amount, spend plus holds and the forecast, but at most one and a
/// half times the amount: the limit line then always sits in the bar's first two thirds, and a runaway forecast
/// cannot squash everything else into a sliver. What lies past the edge is marked with an arrow.
fn bar(b: &BudgetRow) -> String {
    let held = b.spent + b.reserved;
    let cap = Money::from_picos(b.amount.picos().saturating_mul(3) / 2);
    let high = b.forecast_high.unwrap_or(b.forecast).max(b.forecast);
    let low = b.forecast_low.unwrap_or(b.forecast).min(b.forecast);
    let widest = b.amount.max(held).max(high);
    let scale = if b.amount > Money::ZERO {
        widest.min(cap)
    } else {
        widest.max(Money::from_picos(1))
    };
    let state = match b.state.as_str() {
        "blocking" | "over" => "over",
        "near" => "near",
        _ => "ok",
    };
    let (spent_x, held_x) = (pos(b.spent, scale), pos(held, scale));
    let mut s = format!(
        "<svg class=\"budget-bar\" viewBox=\"-6 0 {w} 26\" width=\"{w}\" height=\"26\" role=\"img\" aria-label=\"{} of {} spent, forecast {}\">\
         <rect class=\"track\" x=\"0\" y=\"8\" width=\"{BAR_W}\" height=\"12\" rx=\"3\"/>\
         <rect class=\"spent {state}\" x=\"0\" y=\"8\" width=\"{spent_x}\" height=\"12\" rx=\"3\"/>",
        esc(&b.spent.display_usd()),
        esc(&b.amount.display_usd()),
        esc(&b.forecast.display_usd()),
        // Six pixels either side, so the forecast's marker is whole at either end.
        w = BAR_W + 14,
    );
    if held_x > spent_x {
        let _ = write!(
            s,
            "<rect class=\"held\" x=\"{spent_x}\" y=\"8\" width=\"{}\" height=\"12\"><title>{} held by requests in flight</title></rect>",
            held_x - spent_x,
            esc(&b.reserved.display_usd())
        );
    }
    for t in &b.thresholds {
        let at = Money::from_picos(b.amount.picos().saturating_mul(i128::from(*t)) / 100);
        if *t == 100 || at > scale {
            continue;
        }
        let x = pos(at, scale);
        let _ = write!(
            s,
            "<line class=\"threshold\" x1=\"{x}\" x2=\"{x}\" y1=\"6\" y2=\"22\"><title>alert at {t}%</title></line>"
        );
    }
    if b.amount > Money::ZERO {
        let x = pos(b.amount, scale);
        let _ = write!(
            s,
            "<line class=\"limit\" x1=\"{x}\" x2=\"{x}\" y1=\"3\" y2=\"25\"><title>amount {}</title></line>",
            esc(&b.amount.display_usd())
        );
    }
    // The forecast's range as a thin band under the bar, when it is a range at all.
    let (lx, hx) = (pos(low, scale), pos(high, scale));
    if hx > lx {
        let _ = write!(
            s,
            "<rect class=\"range\" x=\"{lx}\" y=\"22\" width=\"{}\" height=\"3\"><title>forecast range {} to {}</title></rect>",
            hx - lx,
            esc(&low.display_usd()),
            esc(&high.display_usd())
        );
    }
    let fx = pos(b.forecast, scale);
    let _ = write!(
        s,
        "<g class=\"forecast{}\"><line x1=\"{fx}\" x2=\"{fx}\" y1=\"6\" y2=\"22\"/><path d=\"M{} 0 L{} 0 L{fx} 6 Z\"/>\
         <title>forecast at period end: {}</title></g>",
        if b.forecast > b.amount { " over" } else { "" },
        fx.saturating_sub(4),
        fx + 4,
        esc(&b.forecast.display_usd())
    );
    if widest > scale {
        let _ = write!(
            s,
            "<path class=\"beyond\" d=\"M{} 9 L{} 14 L{} 19 Z\"><title>continues past the edge</title></path>",
            BAR_W + 1,
            BAR_W + 7,
            BAR_W + 1
        );
    }
    s.push_str("</svg>");
    s
}

/// "42%", "0.43%" under ten percent (so a budget just begun does not read 0%), or "≥ 1000×" when the API caps
/// it.
fn percent(b: &BudgetRow) -> String {
    let p = b.percent_used;
    if p >= 100_000 {
        "≥ 1000×".into()
    } else if p < 10 && b.amount > Money::ZERO {
        format!(
            "{}%",
            format_share(share_bp(b.spent.picos(), b.amount.picos()))
        )
    } else {
        format!("{p}%")
    }
}

/// A small bar of spend against the amount (capped at the amount) for the compact panel.
fn mini_bar(b: &BudgetRow) -> String {
    let state = match b.state.as_str() {
        "blocking" | "over" => "over",
        "near" => "near",
        _ => "ok",
    };
    let w = if b.amount > Money::ZERO {
        share_bp(b.spent.picos(), b.amount.picos()).min(10_000) * 80 / 10_000
    } else {
        80
    };
    format!(
        "<svg class=\"budget-bar mini\" viewBox=\"0 0 80 8\" width=\"80\" height=\"8\" aria-hidden=\"true\">\
         <rect class=\"track\" width=\"80\" height=\"8\" rx=\"2\"/><rect class=\"spent {state}\" width=\"{w}\" height=\"8\" rx=\"2\"/></svg>"
    )
}

/// "<br>$0.80 – $1.40" under the forecast, when its range is not a single figure, and the rate it extends
/// with the window that rate is over ("at $0.05/h over the last 12 minutes").
fn forecast_range(b: &BudgetRow) -> String {
    let mut out = match (b.forecast_low, b.forecast_high) {
        (Some(l), Some(h)) if l != h => format!(
            "<br><span class=\"small muted\" title=\"from the rate since the first request this period and the last hour's\">{} – {}</span>",
            esc(&l.display_usd()),
            esc(&h.display_usd())
        ),
        _ => String::new(),
    };
    if let Some(r) = &b.forecast_rate {
        let _ = write!(
            out,
            "<br><span class=\"small muted forecast-rate\" title=\"{}\">at {}/h over the last {}</span>",
            esc(&r.description),
            esc(&r.per_hour.display_usd()),
            esc(&spendgate_core::controls::describe_window(r.window_seconds.saturating_mul(1000)))
        );
    }
    out
}

/// "in 3h 5m" until a period's end.
fn resets(b: &BudgetRow, now: i64) -> String {
    match parse_rfc3339(&b.resets_at) {
        Some(ms) => format!(
            "<span title=\"{}\">in {}</span>",
            esc(&date_time(ms)),
            esc(&duration(ms - now))
        ),
        None => esc(&b.resets_at),
    }
}

fn render(rows: &[BudgetRow], now: i64, host: &str) -> String {
    let mut s = String::with_capacity(16 * 1024);
    let _ = write!(
        s,
        "<div class=\"page-head\"><h1>Budgets</h1><p class=\"window\">spend in the current period of each budget</p>{}</div>",
        updated(now)
    );
    if rows.is_empty() {
        let _ = write!(
            s,
            "<section class=\"panel empty\" id=\"budgets-empty\"><h2>No budgets yet</h2>\
             <p>A budget caps what a team, a user, a key or the whole organisation spends per day, week or month, \
             and alerts at its thresholds (80&nbsp;% and 100&nbsp;% unless you choose others). Create one with the \
             CLI:</p><pre>spendgate budgets set --scope team --subject support --period month --amount 250</pre>\
             <p>or the API (add <code>\"hard_limit\": true</code> to refuse requests once it is spent):</p>\
             <pre>curl -X POST http://{}/api/v1/budgets -H \"authorization: Bearer $SPENDGATE_ADMIN_TOKEN\" \\\n  \
             -H 'content-type: application/json' \\\n  \
             -d '{{\"scope\":\"team\",\"subject\":\"support\",\"period\":\"month\",\"amount\":\"250\",\"thresholds\":[80,100]}}'</pre>\
             <p>It appears here with its spend so far this period.</p></section>",
            esc(host)
        );
        return s;
    }
    let count = |st: &str| rows.iter().filter(|r| r.state == st).count();
    let hard = rows.iter().filter(|r| r.hard_limit).count();
    let _ = write!(
        s,
        "<section class=\"cards\" aria-label=\"Budgets at a glance\">\
         <div class=\"card\"><h3>Budgets</h3><p class=\"big\">{}</p><p class=\"sub\">{hard} with a hard limit</p></div>\
         <div class=\"card\"><h3>Over</h3><p class=\"big{}\">{}</p><p class=\"sub\">at or past 100&nbsp;%</p></div>\
         <div class=\"card\"><h3>Near</h3><p class=\"big{}\">{}</p><p class=\"sub\">past their first alert threshold</p></div>\
         <div class=\"card\"><h3>Heading over</h3><p class=\"big\">{}</p><p class=\"sub\">forecast past the amount by period end</p></div>\
         </section>",
        rows.len(),
        if count("over") > 0 { " bad" } else { "" },
        count("over"),
        if count("near") > 0 { " warn" } else { "" },
        count("near"),
        rows.iter().filter(|r| r.forecast > r.amount).count(),
    );
    s.push_str(
        "<section class=\"panel\"><table class=\"data budgets\" id=\"budgets\"><thead><tr><th>Budget</th><th>Period</th>\
         <th>Spent vs amount</th><th class=\"num\">Spent</th><th class=\"num\">Forecast</th><th>State</th>\
         <th>Limit</th><th>Resets</th></tr></thead><tbody>",
    );
    for b in rows {
        let id = b.id;
        let name = b
            .name
            .as_deref()
            .map_or(String::new(), |n| format!("<b>{}</b><br>", esc(n)));
        let _ = write!(
            s,
            "<tr id=\"budget-{id}\" data-budget=\"{id}\"><td>{name}{}</td><td>{}</td><td class=\"bar\">{}</td>\
             <td class=\"num\"><span title=\"${}\">{}</span> <span class=\"muted\">of {}</span><br>\
             <span class=\"small muted\">{}{}</span></td>\
             <td class=\"num{}\" title=\"${}\">{}{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            scope_html(&b.scope, b.subject.as_deref(), Some(&b.period_start)),
            esc(&b.period),
            bar(b),
            b.spent.to_usd_string(),
            esc(&b.spent.display_usd()),
            esc(&b.amount.display_usd()),
            percent(b),
            if b.reserved > Money::ZERO {
                format!(" · {} held", esc(&b.reserved.display_usd()))
            } else {
                String::new()
            },
            if b.forecast > b.amount { " warn" } else { "" },
            b.forecast.to_usd_string(),
            esc(&b.forecast.display_usd()),
            forecast_range(b),
            state_badge(&b.state),
            if b.hard_limit {
                "<span class=\"badge hard\" title=\"requests are refused (HTTP 429) once it is spent\">hard</span>"
            } else {
                "<span class=\"badge\" title=\"alerts only\">soft</span>"
            },
            resets(b, now),
        );
    }
    s.push_str(
        "</tbody></table><p class=\"legend budget-legend\"><span><i class=\"key spent-key\"></i>spent</span>\
         <span><i class=\"key held-key\"></i>held by requests in flight</span>\
         <span><i class=\"key limit-key\"></i>amount</span><span><i class=\"key threshold-key\"></i>alert threshold</span>\
         <span><i class=\"key forecast-key\"></i>forecast at period end (spend so far, extended at its pace since the first request this period)</span>\
         <span><i class=\"key range-key\"></i>forecast range (against the last hour's pace)</span></p>\
         <p class=\"muted small\">Change budgets with <code>spendgate budgets set</code> or <code>POST /api/v1/budgets</code>; \
         alerts are listed under <a href=\"/notifications\">Notifications</a>.</p></section>",
    );
    s
}

/// Whether a budget concerns the traffic `f` selects. Without a team, user or key filter every budget does;
/// with one, the budgets of that team, user or key do, and the organisation's (which covers everything).
/// A team viewer (`scope_team`) sees only its own team's budgets: an organisation budget's spend would reveal
/// other teams' traffic.
fn concerns(b: &BudgetRecord, f: &Filters) -> bool {
    use spendgate_core::controls::Scope;
    if let Some(own) = &f.scope_team {
        return matches!(&b.def.scope, Scope::Team(t) if t == own);
    }
    let filtered = f.team.is_some() || f.user.is_some() || f.key_id.is_some();
    match &b.def.scope {
        Scope::Org => true,
        _ if !filtered => true,
        Scope::Team(t) => f.team.as_deref() == Some(t.as_str()),
        Scope::User(u) => f.user.as_deref() == Some(u.as_str()),
        Scope::Key(k) => f.key_id == Some(*k),
    }
}

/// Whether an alert concerns the traffic `f` selects: its team is the filtered (or the viewer's) team, or it is
/// about one of the budgets shown. Without filters, every alert does.
fn alert_concerns(a: &AlertRecord, f: &Filters, shown: &[BudgetRow]) -> bool {
    if let Some(own) = &f.scope_team {
        return a.alert.team.as_deref() == Some(own.as_str());
    }
    if f.team.is_none() && f.user.is_none() && f.key_id.is_none() {
        return true;
    }
    let team_match = f
        .team
        .as_deref()
        .is_some_and(|t| t != NO_TEAM_FILTER && a.alert.team.as_deref() == Some(t));
    team_match
        || shown
            .iter()
            .any(|b| a.alert.subject == format!("budget:{}", b.id))
}

/// The budget-alert panel of `/usage`: the budgets whose scope matches the current filters, with their state
/// in the current period, and the recent alerts that concern them. A failure blanks only this panel.
pub(crate) async fn usage_panel(p: &Pages, f: &Filters) -> String {
    let (budgets, alerts) = tokio::join!(p.app.store.list_budgets(), p.app.store.list_alerts(100));
    let mut s = String::from(
        "<section class=\"panel budget-panel\" id=\"budget-alerts\"><div class=\"panel-head\"><h2>Budgets and alerts</h2>\
         <span class=\"muted\">for these filters, current budget periods</span>",
    );
    let viewer = f.scope_team.is_some();
    if !viewer {
        s.push_str(
            "<a class=\"more\" href=\"/budgets\">All budgets →</a><a href=\"/notifications\">Notifications →</a>",
        );
    }
    s.push_str("</div>");
    let records: Vec<BudgetRecord> = match budgets {
        Ok(b) => b.into_iter().filter(|b| concerns(b, f)).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "Reading budgets for the usage page failed.");
            s.push_str("<p class=\"placeholder\">Budgets could not be read right now; they reappear on the next update.</p></section>");
            return s;
        }
    };
    let rows = match budget_rows(&p.app, &records).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(message = %e.message, "Reading budget standings for the usage page failed.");
            s.push_str("<p class=\"placeholder\">Budgets could not be read right now; they reappear on the next update.</p></section>");
            return s;
        }
    };
    let now = now_ms();
    if rows.is_empty() {
        s.push_str("<p class=\"placeholder\">No budget covers these filters.");
        if !viewer {
            s.push_str(" Set one with <code>spendgate budgets set</code> or <code>POST /api/v1/budgets</code>; see <a href=\"/budgets\">Budgets</a>.");
        }
        s.push_str("</p>");
    } else {
        s.push_str("<table class=\"data compact-budgets\"><tbody>");
        for b in rows.iter().take(PANEL_BUDGETS) {
            let _ = write!(
                s,
                "<tr data-budget=\"{}\"><td>{}{} <span class=\"muted\">· {}</span></td><td class=\"num\"><span title=\"${}\">{}</span> \
                 <span class=\"muted\">of {}</span></td><td class=\"num\">{} {}</td><td>{}</td></tr>",
                b.id,
                b.name.as_deref().map_or(String::new(), |n| format!("<b>{}</b> ", esc(n))),
                scope_html(&b.scope, b.subject.as_deref(), Some(&b.period_start)),
                esc(&b.period),
                b.spent.to_usd_string(),
                esc(&b.spent.display_usd()),
                esc(&b.amount.display_usd()),
                mini_bar(b),
                percent(b),
                state_badge(&b.state),
            );
        }
        s.push_str("</tbody></table>");
        if rows.len() > PANEL_BUDGETS {
            let _ = write!(
                s,
                "<p class=\"muted small\">and {} more on <a href=\"/budgets\">Budgets</a>.</p>",
                rows.len() - PANEL_BUDGETS
            );
        }
    }
    s.push_str("<h3>Recent alerts</h3>");
    match alerts {
        Err(e) => {
            tracing::warn!(error = %e, "Reading alerts for the usage page failed.");
            s.push_str("<p class=\"placeholder\">Alerts could not be read right now.</p>");
        }
        Ok(alerts) => {
            let mine: Vec<&AlertRecord> = alerts
                .iter()
                .filter(|a| alert_concerns(a, f, &rows))
                .take(PANEL_ALERTS)
                .collect();
            if mine.is_empty() {
                s.push_str("<p class=\"placeholder\">No alerts for these filters.</p>");
            } else {
                s.push_str("<ul class=\"alerts\">");
                for a in mine {
                    let _ = write!(
                        s,
                        "<li data-alert=\"{}\">{} {}{} <span class=\"muted\" title=\"{}\">{}</span></li>",
                        a.id,
                        super::notifications::kind_badge(&a.alert.kind),
                        esc(&a.alert.message),
                        super::notifications::evidence(a),
                        esc(&date_time(a.at_ms)),
                        esc(&ago(a.at_ms, now)),
                    );
                }
                s.push_str("</ul>");
            }
        }
    }
    s.push_str("</section>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(amount: &str, spent: &str, forecast: &str) -> BudgetRow {
        let m = |s: &str| Money::parse_usd(s).unwrap_or_default();
        BudgetRow {
            id: 1,
            name: None,
            scope: "team".into(),
            subject: Some("<b>x</b>".into()),
            period: "day".into(),
            amount: m(amount),
            thresholds: vec![50, 100],
            hard_limit: false,
            spent: m(spent),
            reserved: Money::ZERO,
            percent_used: 0,
            state: "ok".into(),
            period_start: "2026-01-01T00:00:00Z".into(),
            resets_at: "2026-01-02T00:00:00Z".into(),
            forecast: m(forecast),
            forecast_low: None,
            forecast_high: None,
            forecast_rate: None,
        }
    }

    #[test]
    fn bar_positions_are_integer_shares_of_the_scale() {
        let one = Money::parse_usd("1").unwrap_or_default();
        let half = Money::parse_usd("0.5").unwrap_or_default();
        assert_eq!(pos(half, one), BAR_W / 2);
        assert_eq!(pos(one, one), BAR_W);
        // Past the edge is drawn at the edge.
        assert_eq!(pos(one + one, one), BAR_W);
        assert_eq!(pos(Money::ZERO, one), 0);
    }

    #[test]
    fn a_runaway_forecast_does_not_squash_the_bar() {
        let svg = bar(&row("1", "0.5", "100"));
        // The scale is capped at 1.5 x the amount: the limit sits at two thirds, spend at one third.
        assert!(svg.contains(&format!("class=\"limit\" x1=\"{}\"", BAR_W * 2 / 3)));
        assert!(svg.contains(&format!("width=\"{}\" height=\"12\" rx=\"3\"/>", BAR_W / 3)));
        assert!(svg.contains("class=\"beyond\""));
        assert!(svg.contains("forecast over"));
    }

    #[test]
    fn scopes_are_escaped_and_linked() {
        let h = scope_html("team", Some("<b>x</b>"), None);
        assert!(h.contains("&lt;b&gt;x&lt;/b&gt;"));
        assert!(!h.contains("<b>x</b>"));
        assert!(h.contains("team=%3Cb%3Ex%3C%2Fb%3E"));
        assert_eq!(
            scope_html("org", None, None),
            "<span class=\"scope\">Organisation</span>"
        );
    }
}
