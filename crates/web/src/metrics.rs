//! `GET /metrics`: Prometheus text exposition (format 0.0.4) of what this process metered and where it stands.
//!
//! Series and their labels (every series also carries `gateway`, this replica's name):
//! - `spendgate_requests_total`, `spendgate_request_errors_total`, `spendgate_tokens_total{kind}` and
//!   `spendgate_cost_usd_total`, by `team` (`No team` for unattributed traffic), `provider` and `model`. At most
//!   1,000 team/provider/model combinations are kept apart; later ones are counted as `team="other"`,
//!   `model="other"` (`gateway::usage_stats`), so the cardinality is bounded whatever clients send.
//!   `spendgate_cache_avoided_usd_total` (same labels): what response-cache hits would have cost.
//! - `spendgate_request_duration_seconds` (histogram), `spendgate_rejected_requests_total` (and, of them,
//!   `spendgate_rejected_requests_by_reason_total{reason="rate_limit"}`), `spendgate_upstream_errors_total`.
//! - `spendgate_queue_pending_events`, `spendgate_queue_oldest_pending_age_seconds`,
//!   `spendgate_events_written_total`, `spendgate_store_failed_writes_total`.
//! - `spendgate_budget_spent_usd`, `spendgate_budget_amount_usd`, `spendgate_budget_utilisation_ratio` by
//!   `budget`, `scope`, `subject`, `period`; `spendgate_wallet_balance_usd`, `spendgate_wallet_reserved_usd` by
//!   `wallet`, `scope`, `subject` (as many as the admin created, at most 1,000 each).
//! - `spendgate_build_info{version}`, `spendgate_start_time_seconds`.
//!
//! Money is formatted exactly from integer picodollars; Prometheus reads it as a float, which is its business.
//! Counters are per process and start at zero with it; sum them across replicas in the query.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use spendgate_core::controls::Scope;
use spendgate_core::money::format_scaled;
use spendgate_core::query::NO_TEAM_LABEL;
use spendgate_core::Money;
use spendgate_gateway::stats::LATENCY_BOUNDS_MS;
use spendgate_gateway::ApiError;

use crate::auth::{bearer, role_of, Role};
use crate::AppState;

/// Budgets and wallets listed at most.
const MAX_CONTROL_SERIES: usize = 1_000;

/// The scrape. Outside `demo` it needs the admin token (`Authorization: Bearer`), like the rest of the admin
/// API; Prometheus sends it with `authorization: { credentials_file: ... }`.
pub(crate) async fn metrics(State(s): State<Arc<AppState>>, req: Request) -> Response {
    if !s.open_pages {
        let role = match bearer(&req) {
            Some(t) => role_of(&s, t).await.ok(),
            None => None,
        };
        if role != Some(Role::Admin) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "missing_admin_token",
                "/metrics needs the admin token: configure the scrape with 'Authorization: Bearer <token>' \
                 (the token is in <data-dir>/admin-token).",
            )
            .into_response();
        }
    }
    let body = render(&s).await;
    let mut res = (StatusCode::OK, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

/// A label value, escaped as the exposition format requires.
fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn usd(m: Money) -> String {
    m.to_usd_string()
}

/// Milliseconds as seconds, exactly.
fn seconds_ms(ms: i64) -> String {
    format_scaled(i128::from(ms), 3, 0)
}

/// One metric family: its help and type lines, written once before its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: &str) {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
        }
    }
}

async fn render(s: &AppState) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let mut m = Family { out: &mut out };
    let gw = format!("gateway=\"{}\"", label(&s.gateway_name));

    m.head(
        "spendgate_build_info",
        "gauge",
        "The running version; always 1.",
    );
    m.sample(
        "spendgate_build_info",
        &format!("{gw},version=\"{}\"", label(s.version)),
        "1",
    );
    let g = s.gateway_stats.snapshot();
    m.head(
        "spendgate_start_time_seconds",
        "gauge",
        "When this process started, in seconds since the Unix epoch.",
    );
    m.sample(
        "spendgate_start_time_seconds",
        &gw,
        &seconds_ms(g.started_at_ms),
    );

    // Usage by team, provider and model.
    let series = s.gateway_stats.usage.snapshot();
    let labels: Vec<String> = series
        .iter()
        .map(|(k, _)| {
            format!(
                "{gw},team=\"{}\",provider=\"{}\",model=\"{}\"",
                label(k.team.as_deref().unwrap_or(NO_TEAM_LABEL)),
                label(&k.provider),
                label(&k.model)
            )
        })
        .collect();
    m.head(
        "spendgate_requests_total",
        "counter",
        "Requests that reached a provider and were metered, by team, provider and model.",
    );
    for (l, (_, t)) in labels.iter().zip(&series) {
        m.sample("spendgate_requests_total", l, &t.requests.to_string());
    }
    m.head(
        "spendgate_request_errors_total",
        "counter",
        "Metered requests that ended in an upstream error or a client disconnect.",
    );
    for (l, (_, t)) in labels.iter().zip(&series) {
        m.sample("spendgate_request_errors_total", l, &t.errors.to_string());
    }
    m.head(
        "spendgate_tokens_total",
        "counter",
        "Tokens metered, by kind: input (all prompt tokens), output, cached_input (read from a prompt cache), cache_write.",
    );
    for (l, (_, t)) in labels.iter().zip(&series) {
        for (kind, n) in [
            ("input", t.input_tokens),
            ("output", t.output_tokens),
            ("cached_input", t.cached_input_tokens),
            ("cache_write", t.cache_write_tokens),
        ] {
            m.sample(
                "spendgate_tokens_total",
                &format!("{l},kind=\"{kind}\""),
                &n.to_string(),
            );
        }
    }
    m.head(
        "spendgate_cost_usd_total",
        "counter",
        "Cost metered, in US dollars (exact to the picodollar).",
    );
    for (l, (_, t)) in labels.iter().zip(&series) {
        m.sample("spendgate_cost_usd_total", l, &usd(t.cost));
    }

    m.head(
        "spendgate_cache_avoided_usd_total",
        "counter",
        "What cache hits would have cost, in US dollars (the answers they replayed, priced now).",
    );
    for (l, (_, t)) in labels.iter().zip(&series) {
        m.sample("spendgate_cache_avoided_usd_total", l, &usd(t.avoided_cost));
    }

    // Latency and refusals.
    m.head(
        "spendgate_request_duration_seconds",
        "histogram",
        "Time from a request's arrival to its last byte, for metered requests.",
    );
    let mut cumulative = 0u64;
    for (i, n) in g.latency_buckets.iter().enumerate() {
        cumulative += n;
        let le = match LATENCY_BOUNDS_MS.get(i) {
            Some(b) => seconds_ms(i64::try_from(*b).unwrap_or(i64::MAX)),
            None => "+Inf".to_string(),
        };
        m.sample(
            "spendgate_request_duration_seconds_bucket",
            &format!("{gw},le=\"{le}\""),
            &cumulative.to_string(),
        );
    }
    m.sample(
        "spendgate_request_duration_seconds_sum",
        &gw,
        &format_scaled(i128::from(g.latency_sum_us), 6, 0),
    );
    m.sample(
        "spendgate_request_duration_seconds_count",
        &gw,
        &cumulative.to_string(),
    );
    m.head(
        "spendgate_rejected_requests_total",
        "counter",
        "Requests refused before reaching a provider (bad key, bad body, unknown model, limits, budgets).",
    );
    m.sample(
        "spendgate_rejected_requests_total",
        &gw,
        &g.rejected.to_string(),
    );
    m.head(
        "spendgate_rejected_requests_by_reason_total",
        "counter",
        "Of the refused requests, those refused for a reason told apart (rate_limit: a key's or team's rate limit).",
    );
    m.sample(
        "spendgate_rejected_requests_by_reason_total",
        &format!("{gw},reason=\"rate_limit\""),
        &g.rate_limited.to_string(),
    );
    m.head(
        "spendgate_upstream_errors_total",
        "counter",
        "Requests a provider answered with an error or did not answer.",
    );
    m.sample(
        "spendgate_upstream_errors_total",
        &gw,
        &g.upstream_errors.to_string(),
    );

    // The writer's queue.
    let q = s.writer_stats.snapshot();
    m.head(
        "spendgate_queue_pending_events",
        "gauge",
        "Spend events waiting to be written to the store.",
    );
    m.sample(
        "spendgate_queue_pending_events",
        &gw,
        &q.pending.to_string(),
    );
    m.head(
        "spendgate_queue_oldest_pending_age_seconds",
        "gauge",
        "Age of the oldest spend event not yet written (0 when none waits).",
    );
    m.sample(
        "spendgate_queue_oldest_pending_age_seconds",
        &gw,
        &seconds_ms(q.oldest_pending_age_ms),
    );
    m.head(
        "spendgate_events_written_total",
        "counter",
        "Spend events written to the store by this process.",
    );
    m.sample(
        "spendgate_events_written_total",
        &gw,
        &q.written_total.to_string(),
    );
    m.head(
        "spendgate_store_failed_writes_total",
        "counter",
        "Batch writes the store refused (each is retried until it succeeds).",
    );
    m.sample(
        "spendgate_store_failed_writes_total",
        &gw,
        &q.failed_writes.to_string(),
    );

    controls(s, &mut m, &gw).await;
    out
}

fn scope_labels(scope: &Scope) -> String {
    format!(
        "scope=\"{}\",subject=\"{}\"",
        scope.kind(),
        label(&scope.subject())
    )
}

/// Budget utilisation and wallet balances, as enforced now (the in-memory figures requests are checked against).
async fn controls(s: &AppState, m: &mut Family<'_>, gw: &str) {
    let budgets = match s.store.list_budgets().await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "Listing budgets for /metrics failed.");
            Vec::new()
        }
    };
    let rows: Vec<(String, Money, Money)> = budgets
        .iter()
        .take(MAX_CONTROL_SERIES)
        .map(|b| {
            let (_, spent) = s.controls.budget_live(b.id).unwrap_or_default();
            let name = b
                .def
                .name
                .clone()
                .unwrap_or_else(|| format!("budget {}", b.id));
            let l = format!(
                "{gw},budget=\"{}\",{},period=\"{}\"",
                label(&name),
                scope_labels(&b.def.scope),
                b.def.period.as_str()
            );
            (l, spent, b.def.amount)
        })
        .collect();
    m.head(
        "spendgate_budget_spent_usd",
        "gauge",
        "Spend counted against a budget in its current period, in US dollars.",
    );
    for (l, spent, _) in &rows {
        m.sample("spendgate_budget_spent_usd", l, &usd(*spent));
    }
    m.head(
        "spendgate_budget_amount_usd",
        "gauge",
        "A budget's amount for its period, in US dollars.",
    );
    for (l, _, amount) in &rows {
        m.sample("spendgate_budget_amount_usd", l, &usd(*amount));
    }
    m.head(
        "spendgate_budget_utilisation_ratio",
        "gauge",
        "Spent divided by amount (1 = the whole budget), to four decimals.",
    );
    for (l, spent, amount) in &rows {
        m.sample(
            "spendgate_budget_utilisation_ratio",
            l,
            &utilisation(*spent, *amount),
        );
    }

    let wallets = match s.store.list_wallets().await {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "Listing wallets for /metrics failed.");
            Vec::new()
        }
    };
    let rows: Vec<(String, Money, Money)> = wallets
        .iter()
        .take(MAX_CONTROL_SERIES)
        .map(|w| {
            let (balance, reserved) = s
                .controls
                .wallet_live(w.id)
                .unwrap_or((w.balance, Money::ZERO));
            let l = format!(
                "{gw},wallet=\"{}\",{}",
                label(&w.def.name),
                scope_labels(&w.def.scope)
            );
            (l, balance, reserved)
        })
        .collect();
    m.head(
        "spendgate_wallet_balance_usd",
        "gauge",
        "A wallet's balance, in US dollars.",
    );
    for (l, balance, _) in &rows {
        m.sample("spendgate_wallet_balance_usd", l, &usd(*balance));
    }
    m.head(
        "spendgate_wallet_reserved_usd",
        "gauge",
        "Held in a wallet by requests in flight, in US dollars.",
    );
    for (l, _, reserved) in &rows {
        m.sample("spendgate_wallet_reserved_usd", l, &usd(*reserved));
    }
}

/// `spent / amount` to four decimals, by integer division (an amount of zero reads as fully used once anything
/// is spent).
fn utilisation(spent: Money, amount: Money) -> String {
    let (spent, amount) = (spent.picos().max(0), amount.picos());
    if amount <= 0 {
        return if spent > 0 { "1" } else { "0" }.to_string();
    }
    let ten_thousandths = spent.saturating_mul(10_000) / amount;
    format_scaled(ten_thousandths, 4, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn utilisation_is_exact_to_four_decimals() {
        let usd = |s: &str| Money::parse_usd(s).unwrap_or(Money::ZERO);
        assert_eq!(utilisation(usd("25"), usd("100")), "0.25");
        assert_eq!(utilisation(usd("1"), usd("3")), "0.3333");
        assert_eq!(utilisation(usd("150"), usd("100")), "1.5");
        assert_eq!(utilisation(usd("0"), usd("0")), "0");
    }

    #[test]
    fn seconds_are_exact() {
        assert_eq!(seconds_ms(1_500), "1.5");
        assert_eq!(seconds_ms(5), "0.005");
        assert_eq!(seconds_ms(30_000), "30");
    }
}
