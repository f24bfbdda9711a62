//! `/wallets`: every prepaid wallet with its balance, what requests in flight hold, what it was given and has
//! spent, its status, its burn per hour (over its own age, at most a week) and when it runs dry at that pace; `/wallets/{id}`: one wallet and its
//! ledger, newest first.
//!
//! The figures come from [`crate::wallets_api::wallet_view`], the function behind `GET /api/v1/wallets`.
//! Money moves through the API or the CLI; these pages only read.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use serde::Deserialize;
use spendgate_core::time::{now_ms, parse_rfc3339};
use spendgate_core::Money;
use spendgate_gateway::ApiError;
use spendgate_store::controls::{LedgerEntry, LedgerKind, WalletRecord};

use super::budgets::{api_error_page, scope_html};
use super::html::{date_time, duration, esc, layout, query_string, updated};
use super::{
    error_page, host, html_response, store_error_page, wants_fragment, Pages, SessionCsrf,
};
use crate::AppState;

/// Ledger entries per page of `/wallets/{id}`.
const LEDGER_PAGE: usize = 50;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WalletParams {
    fragment: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct LedgerParams {
    fragment: Option<String>,
    /// Entries older than this ledger id (the "Older" link).
    before: Option<i64>,
}

/// A wallet as `wallet_view` describes it, read back from its JSON into types (money stays exact: decimal
/// strings).
#[derive(Debug, Clone, Deserialize)]
struct WalletRow {
    id: i64,
    name: String,
    scope: String,
    subject: Option<String>,
    balance: Money,
    reserved: Money,
    available: Money,
    total_allocated: Money,
    total_spent: Money,
    low_threshold: Money,
    status: String,
    /// Since when the wallet has refused requests it could not pay for (until it receives money).
    #[serde(default)]
    refusing_since: Option<String>,
    burn: BurnRow,
    projected_depletion: Option<String>,
    projected_depletion_earliest: Option<String>,
    projected_depletion_latest: Option<String>,
}

/// A burn rate and the window it is over, as `insights_api::forecast::rate_json` writes it (wallets' burn,
/// budgets' forecast rate).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BurnRow {
    pub per_hour: Money,
    pub low_per_hour: Money,
    pub high_per_hour: Money,
    pub window_seconds: i64,
    pub description: String,
}

/// "$0.42/h" with its range and window in the hover text, and the window in words beneath when `long`.
fn burn_html(b: &BurnRow, long: bool) -> String {
    let window = spendgate_core::controls::describe_window(b.window_seconds.saturating_mul(1000));
    let range = if b.low_per_hour == b.high_per_hour {
        String::new()
    } else {
        format!(
            " <span class=\"muted\">({}–{})</span>",
            esc(&b.low_per_hour.display_usd()),
            esc(&b.high_per_hour.display_usd())
        )
    };
    format!(
        "<span title=\"${} per hour {}\">{}/h</span>{range}{}",
        b.per_hour.to_usd_string(),
        esc(&b.description),
        esc(&b.per_hour.display_usd()),
        if long {
            format!(
                "<br><span class=\"muted small\">over the last {}</span>",
                esc(&window)
            )
        } else {
            format!(" <span class=\"muted small\">over {}</span>", esc(&window))
        }
    )
}

async fn wallet_row(app: &AppState, w: &WalletRecord) -> Result<WalletRow, ApiError> {
    let v = crate::wallets_api::wallet_view(app, w).await?;
    serde_json::from_value(v).map_err(|e| {
        // Only a change to wallet_view's shape gets here; say so rather than showing half a page.
        tracing::error!(error = %e, "A wallet view did not have the shape the wallets page reads.");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "wallet_view_shape",
            "A wallet could not be read for this page.",
        )
    })
}

fn status_badge(status: &str) -> String {
    let (cls, label) = match status {
        "healthy" => ("ok", "Healthy"),
        "low" => ("warn", "Low"),
        "depleted" => ("bad", "Depleted"),
        other => ("warn", other),
    };
    format!(
        "<span class=\"status {cls}\" data-status=\"{}\">{}</span>",
        esc(status),
        esc(label)
    )
}

/// The wallet's status, and "refusing" beside it while it refuses requests it cannot pay for: whoever it pays
/// for is blocked, whatever its balance says.
fn status_html(w: &WalletRow) -> String {
    let mut out = status_badge(&w.status);
    if let Some(since) = &w.refusing_since {
        out.push_str(&format!(
            " <span class=\"status bad\" data-status=\"refusing\" title=\"refusing requests since {}\">refusing</span>",
            esc(since)
        ));
    }
    out
}

/// "2026-12-03 (in 4d 2h)" with the range of dates the burn's range gives, or a dash when nothing was spent
/// in the burn's window.
fn depletion(w: &WalletRow, now: i64) -> String {
    let at = |s: Option<&str>| s.and_then(parse_rfc3339);
    match at(w.projected_depletion.as_deref()) {
        None if w.available <= Money::ZERO => "<span class=\"muted\">now</span>".into(),
        None => format!(
            "<span class=\"muted\" title=\"nothing spent {}\">—</span>",
            esc(&w.burn.description)
        ),
        Some(ms) => {
            let (early, late) = (
                at(w.projected_depletion_earliest.as_deref()),
                at(w.projected_depletion_latest.as_deref()),
            );
            let range = match (early, late) {
                (Some(e), Some(l)) if e != l => format!(
                    " <span class=\"muted small\">({} to {})</span>",
                    esc(&until(e - now)),
                    esc(&until(l - now))
                ),
                (Some(e), None) if e != ms => format!(
                    " <span class=\"muted small\">(from {})</span>",
                    esc(&until(e - now))
                ),
                _ => String::new(),
            };
            format!(
                "<span title=\"{}\">{}</span> <span class=\"muted\">{}</span>{range}",
                esc(&date_time(ms)),
                esc(&super::html::date(ms)),
                esc(&until(ms - now))
            )
        }
    }
}

/// "in 3h 5m", "in 12 days", "in 78 years": precise when it is close, round when it is far (the date is beside
/// it).
fn until(ms: i64) -> String {
    let days = ms / spendgate_core::time::DAY_MS;
    if days >= 730 {
        format!("in {} years", days / 365)
    } else if days >= 3 {
        format!("in {days} days")
    } else {
        format!("in {}", duration(ms))
    }
}

fn usd(m: Money) -> String {
    format!(
        "<span title=\"${}\">{}</span>",
        m.to_usd_string(),
        esc(&m.display_usd())
    )
}

pub(crate) async fn page(
    State(p): State<Arc<Pages>>,
    Extension(csrf): Extension<SessionCsrf>,
    headers: HeaderMap,
    params: Result<Query<WalletParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let params = params.map(|Query(q)| q).unwrap_or_default();
    let records = match p.app.store.list_wallets().await {
        Ok(r) => r,
        Err(e) => return store_error_page(&p, &csrf, e),
    };
    let mut rows = Vec::with_capacity(records.len());
    for w in &records {
        match wallet_row(&p.app, w).await {
            Ok(r) => rows.push(r),
            Err(e) => return api_error_page(&p, &csrf, &e),
        }
    }
    let main = render_list(&rows, now_ms(), &host(&headers));
    if wants_fragment(params.fragment.as_deref()) {
        return html_response(StatusCode::OK, main);
    }
    html_response(
        StatusCode::OK,
        layout(&p.chrome("Wallets", "/wallets", &csrf, true), "", &main),
    )
}

fn render_list(rows: &[WalletRow], now: i64, host: &str) -> String {
    let mut s = String::with_capacity(16 * 1024);
    let _ = write!(
        s,
        "<div class=\"page-head\"><h1>Wallets</h1><p class=\"window\">prepaid balances; a request is paid by its \
         user's wallet, else its team's, else the organisation's</p>{}</div>",
        updated(now)
    );
    if rows.is_empty() {
        let _ = write!(
            s,
            "<section class=\"panel empty\" id=\"wallets-empty\"><h2>No wallets yet</h2>\
             <p>A wallet is a prepaid balance for a team, a user or the organisation: each request holds its \
             worst-case cost while it runs and is charged its exact cost when it ends, and a request no wallet can \
             pay is refused (HTTP 402). Create one with the CLI:</p>\
             <pre>spendgate wallets create --scope team --subject support --initial 100 --low 10</pre>\
             <p>or the API:</p>\
             <pre>curl -X POST http://{}/api/v1/wallets -H \"authorization: Bearer $SPENDGATE_ADMIN_TOKEN\" \\\n  \
             -H 'content-type: application/json' \\\n  \
             -d '{{\"scope\":\"team\",\"subject\":\"support\",\"initial_balance\":\"100\",\"low_threshold\":\"10\"}}'</pre></section>",
            esc(host)
        );
        return s;
    }
    let total = |f: fn(&WalletRow) -> Money| rows.iter().map(f).sum::<Money>();
    let count = |st: &str| rows.iter().filter(|w| w.status == st).count();
    let _ = write!(
        s,
        "<section class=\"cards\" aria-label=\"Wallets at a glance\">\
         <div class=\"card\"><h3>Balance, all wallets</h3><p class=\"big\">{}</p><p class=\"sub\">{} wallets</p></div>\
         <div class=\"card\"><h3>Burn per hour</h3><p class=\"big\">{}</p><p class=\"sub\">each wallet since it was created, at most the last 7 days</p></div>\
         <div class=\"card\"><h3>Low</h3><p class=\"big{}\">{}</p><p class=\"sub\">under their low threshold</p></div>\
         <div class=\"card\"><h3>Depleted</h3><p class=\"big{}\">{}</p><p class=\"sub\">nothing left to spend</p></div>\
         </section>",
        usd(total(|w| w.balance)),
        rows.len(),
        esc(&format!("{}/h", total(|w| w.burn.per_hour).display_usd())),
        if count("low") > 0 { " warn" } else { "" },
        count("low"),
        if count("depleted") > 0 { " bad" } else { "" },
        count("depleted"),
    );
    s.push_str(
        "<section class=\"panel\"><table class=\"data\" id=\"wallets\"><thead><tr><th>Wallet</th><th>Scope</th>\
         <th class=\"num\">Balance</th><th class=\"num\" title=\"held by requests in flight\">Reserved</th>\
         <th class=\"num\">Total allocated</th><th class=\"num\">Total spent</th><th>Status</th>\
         <th class=\"num\" title=\"since the wallet was created, at most the last 7 days; the range spans that and the last hour\">Burn / hour</th><th>Projected depletion</th><th></th>\
         </tr></thead><tbody>",
    );
    for w in rows {
        let href = format!("/wallets/{}", w.id);
        let _ = write!(
            s,
            "<tr data-href=\"{href}\" data-wallet=\"{}\"><td><a href=\"{href}\">{}</a></td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td title=\"low under {}\">{}</td><td class=\"num\">{}</td><td>{}</td><td><a href=\"{href}\">Ledger →</a></td></tr>",
            w.id,
            esc(&w.name),
            scope_html(&w.scope, w.subject.as_deref(), None),
            usd(w.balance),
            usd(w.reserved),
            usd(w.total_allocated),
            usd(w.total_spent),
            esc(&w.low_threshold.display_usd()),
            status_html(w),
            burn_html(&w.burn, false),
            depletion(w, now),
        );
    }
    s.push_str(
        "</tbody></table><p class=\"muted small\">Top up with <code>spendgate wallets topup --id N --amount 50</code> \
         or <code>POST /api/v1/wallets/{id}/topup</code>; move money between wallets with <code>/allocate</code> and \
         <code>/reclaim</code>. Low and empty wallets raise alerts under <a href=\"/notifications\">Notifications</a>.</p></section>",
    );
    s
}

pub(crate) async fn ledger_page(
    State(p): State<Arc<Pages>>,
    Extension(csrf): Extension<SessionCsrf>,
    Path(id): Path<String>,
    params: Result<Query<LedgerParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let params = params.map(|Query(q)| q).unwrap_or_default();
    let not_found = |p: &Pages| {
        error_page(
            p,
            &csrf,
            StatusCode::NOT_FOUND,
            "No such wallet",
            "There is no wallet with this id. The Wallets page lists them all.",
        )
    };
    let Ok(id) = id.parse::<i64>() else {
        return not_found(&p);
    };
    let (wallets, entries) = tokio::join!(
        p.app.store.list_wallets(),
        p.app.store.ledger(id, LEDGER_PAGE, params.before)
    );
    let (wallets, entries) = match (wallets, entries) {
        (Ok(w), Ok(e)) => (w, e),
        (Err(e), _) | (_, Err(e)) => return store_error_page(&p, &csrf, e),
    };
    let Some(record) = wallets.iter().find(|w| w.id == id) else {
        return not_found(&p);
    };
    let row = match wallet_row(&p.app, record).await {
        Ok(r) => r,
        Err(e) => return api_error_page(&p, &csrf, &e),
    };
    let names: Vec<(i64, &str)> = wallets
        .iter()
        .map(|w| (w.id, w.def.name.as_str()))
        .collect();
    let main = render_ledger(&row, &entries, &names, params.before, now_ms());
    if wants_fragment(params.fragment.as_deref()) {
        return html_response(StatusCode::OK, main);
    }
    let title = format!("Wallet {}", row.name);
    html_response(
        StatusCode::OK,
        layout(&p.chrome(&title, "/wallets", &csrf, true), "", &main),
    )
}

fn kind_label(k: LedgerKind) -> &'static str {
    match k {
        LedgerKind::TopUp => "top-up",
        LedgerKind::Allocate => "allocation",
        LedgerKind::Reclaim => "reclaim",
        LedgerKind::Settle => "request",
        LedgerKind::Refund => "refund",
    }
}

fn render_ledger(
    w: &WalletRow,
    entries: &[LedgerEntry],
    names: &[(i64, &str)],
    before: Option<i64>,
    now: i64,
) -> String {
    let mut s = String::with_capacity(16 * 1024);
    let _ = write!(
        s,
        "<div class=\"page-head\"><h1><a href=\"/wallets\">Wallets</a> / {}</h1><p class=\"window\">{}</p>{}</div>",
        esc(&w.name),
        scope_html(&w.scope, w.subject.as_deref(), None),
        updated(now)
    );
    let _ = write!(
        s,
        "<section class=\"cards\" aria-label=\"Wallet\">\
         <div class=\"card\"><h3>Balance</h3><p class=\"big\" id=\"wallet-balance\">{}</p><p class=\"sub\">{} available, {} reserved</p></div>\
         <div class=\"card\"><h3>Status</h3><p class=\"big\">{}</p><p class=\"sub\">low under {}</p></div>\
         <div class=\"card\"><h3>Burn per hour</h3><p class=\"big\">{}</p><p class=\"sub\">runs dry: {}</p></div>\
         <div class=\"card\"><h3>Allocated / spent</h3><p class=\"big\">{}</p><p class=\"sub\">{} spent in total</p></div>\
         </section>",
        usd(w.balance),
        usd(w.available),
        usd(w.reserved),
        status_html(w),
        esc(&w.low_threshold.display_usd()),
        burn_html(&w.burn, true),
        depletion(w, now),
        usd(w.total_allocated),
        usd(w.total_spent),
    );
    s.push_str(
        "<section class=\"panel\" id=\"ledger\"><div class=\"panel-head\"><h2>Ledger</h2>\
         <span class=\"muted\">newest first; the balance is the sum of these entries</span></div>",
    );
    if entries.is_empty() {
        s.push_str(if before.is_some() {
            "<p class=\"placeholder\">No older entries.</p>"
        } else {
            "<p class=\"placeholder\">No entries yet. Top-ups, allocations and the cost of every request this wallet \
             pays for are listed here.</p>"
        });
    } else {
        s.push_str(
            "<table class=\"data\" id=\"ledger-table\"><thead><tr><th>Time (UTC)</th><th>Kind</th>\
             <th class=\"num\">Amount</th><th>Reason</th><th>By</th><th>Other wallet</th><th>Request</th></tr></thead><tbody>",
        );
        for e in entries {
            let cls = if e.amount < Money::ZERO {
                "down-amount"
            } else {
                "up-amount"
            };
            let sign = if e.amount > Money::ZERO { "+" } else { "" };
            let other = e.counterparty.map_or_else(String::new, |c| {
                let name = names
                    .iter()
                    .find(|(id, _)| *id == c)
                    .map_or_else(|| format!("#{c}"), |(_, n)| (*n).to_string());
                format!("<a href=\"/wallets/{c}\">{}</a>", esc(&name))
            });
            let request = e.request_id.as_deref().map_or_else(String::new, |r| {
                format!(
                    "<a href=\"/requests/{}\"><code>{}</code></a>",
                    super::url_encode(r),
                    // Request ids are time-ordered, so they share their first digits; the last ones tell them
                    // apart.
                    esc(r.get(r.len().saturating_sub(8)..).unwrap_or(r))
                )
            });
            let _ = write!(
                s,
                "<tr data-entry=\"{}\"><td title=\"{}\">{}</td><td>{}</td><td class=\"num {cls}\" title=\"{sign}{} USD\">{sign}{}</td>\
                 <td>{}</td><td class=\"muted\">{}</td><td>{other}</td><td>{request}</td></tr>",
                e.id,
                esc(&date_time(e.at_ms)),
                esc(&date_time(e.at_ms).replace(" UTC", "")),
                kind_label(e.kind),
                e.amount.to_usd_string(),
                esc(&e.amount.display_usd()),
                // A request's charge says "request" as its reason too; once is enough.
                if e.reason == kind_label(e.kind) || e.reason == e.kind.as_str() {
                    "<span class=\"muted\">—</span>".to_string()
                } else {
                    esc(&e.reason)
                },
                esc(&e.actor),
            );
        }
        s.push_str("</tbody></table><nav class=\"pager\">");
        if before.is_some() {
            let _ = write!(s, "<a href=\"/wallets/{}#ledger\">← Newest</a>", w.id);
        }
        if entries.len() == LEDGER_PAGE {
            if let Some(last) = entries.last() {
                let _ = write!(
                    s,
                    "<a href=\"/wallets/{}{}#ledger\" rel=\"next\">Older →</a>",
                    w.id,
                    esc(&query_string(&[("before", last.id.to_string())]))
                );
            }
        }
        s.push_str("</nav>");
    }
    s.push_str("</section>");
    s
}
