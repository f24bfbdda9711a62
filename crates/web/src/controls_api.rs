//! The admin API of budgets and alerts, and what the other control APIs share (the actor and the audit entry of a
//! change, scopes, amounts). Every change goes through the gateway's `Controls`, so the request path enforces it
//! at once, and is written to the audit log with its before and after. Wallets are in `wallets_api`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use spendgate_core::controls::{percent_used, Period, Scope};
use spendgate_core::time::{now_ms, to_rfc3339};
use spendgate_core::Money;
use spendgate_gateway::controls::Controls;
use spendgate_gateway::ApiError;
use spendgate_store::controls::{AuditEntry, BudgetRecord, NewBudget};

use crate::api::{store_error, JsonBody};
use crate::openapi::{f, Access, ApiRouter, Field, Op, Ty};
use crate::AppState;

/// The scopes of a budget or wallet, each with the subject it needs: none for the org (a subject given is
/// ignored), a name for a team or a user, a key id for a key.
pub(crate) const ORG_SCOPE: &[Field] = &[
    f("scope", Ty::Word(&["org"]), true, "The whole organisation."),
    f("subject", Ty::Text, false, "Ignored for the org."),
];
pub(crate) const NAMED_SCOPE: &[Field] = &[
    f(
        "scope",
        Ty::Word(&["team", "user"]),
        true,
        "A team or a user.",
    ),
    f("subject", Ty::Name, true, "The team's or user's name."),
];
pub(crate) const KEY_SCOPE: &[Field] = &[
    f("scope", Ty::Word(&["key"]), true, "One virtual key."),
    f("subject", KEY_SUBJECT, true, "The key's id."),
];
/// A key id as a budget's subject (text, since other scopes name their subject): digits, with white space
/// around them trimmed.
pub(crate) const KEY_SUBJECT: Ty = Ty::Pattern(r"^ *[0-9]{1,18} *$");

const SET_BUDGET: Op = Op::post(
    "/api/v1/budgets",
    "Creates a budget (201), or changes the one with the same scope, subject and period (200).",
    Access::Admin,
)
.body(&[
    f("name", Ty::Text, false, "A name for pages and alerts."),
    f(
        "period",
        Ty::Word(&["day", "week", "month"]),
        true,
        "Calendar day, week or month, in budgets.time_zone.",
    ),
    f(
        "amount",
        Ty::Usd,
        true,
        "US dollars as a decimal string, e.g. \"250.00\".",
    ),
    f(
        "thresholds",
        Ty::Ints(1, 1000),
        false,
        "Alert thresholds in percent (default 80, 100).",
    ),
    f(
        "hard_limit",
        Ty::Bool,
        false,
        "Refuse requests (429) that would go over.",
    ),
])
.variants(&[ORG_SCOPE, NAMED_SCOPE, KEY_SCOPE])
.statuses(&[201]);
const LIST_BUDGETS: Op = Op::get(
    "/api/v1/budgets",
    "Every budget with its period spend, state, reset time and forecast.",
    Access::Admin,
);
const ALERTS: Op = Op::get(
    "/api/v1/alerts",
    "The latest budget, wallet and anomaly alerts and their webhook deliveries.",
    Access::Admin,
);

pub fn routes() -> ApiRouter {
    ApiRouter::default()
        .op(&SET_BUDGET, post(set_budget))
        .op(&LIST_BUDGETS, get(list_budgets))
        .merge(crate::wallets_api::routes())
        .op(&ALERTS, get(alerts))
}

/// Who made an admin change: the API only knows the admin token, so the actor is the token's role plus what the
/// caller says in `x-spendgate-actor` (free text, recorded as given).
pub(crate) fn actor(headers: &axum::http::HeaderMap) -> String {
    let who = headers
        .get("x-spendgate-actor")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty());
    match who {
        Some(w) => format!("admin:{}", w.chars().take(64).collect::<String>()),
        None => "admin".into(),
    }
}

/// A scope an admin sets a budget or wallet up for, with its subject checked (no No team bucket, valid names).
pub(crate) fn scope_of(kind: &str, subject: Option<&str>) -> Result<Scope, ApiError> {
    let scope =
        Scope::parse(kind, subject).map_err(|m| ApiError::invalid_request("invalid_scope", m))?;
    scope
        .check_subject()
        .map_err(|m| ApiError::invalid_request("invalid_scope", m))?;
    Ok(scope)
}

/// A 409: the request is well formed, but what it names cannot take part as things stand (wallets that are not
/// parent and child, a balance that would pass what a wallet holds, money a wallet does not have).
pub(crate) fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "invalid_request_error", code, message)
}

/// An amount as the document gives it (`openapi::Ty::Usd`): digits, at most twelve decimals, at most 9,000,000
/// whole dollars (without a leading zero in seven digits). Nothing else is read, so what the document calls
/// invalid is refused and what it calls valid is taken.
pub(crate) fn money(field: &str, s: &str) -> Result<Money, ApiError> {
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (s, None),
    };
    let digits =
        |p: &str, max: usize| (1..=max).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    let whole_ok = digits(whole, 6)
        || (digits(whole, 7)
            && !whole.starts_with('0')
            && whole.parse::<u32>().is_ok_and(|w| w <= 9_000_000));
    let parsed = (whole_ok && frac.is_none_or(|f| digits(f, 12)))
        .then(|| Money::parse_non_negative_usd(s).ok())
        .flatten();
    parsed.ok_or_else(|| {
        ApiError::invalid_request(
            "invalid_amount",
            format!(
                "{field}: {s:?} is not an amount; send US dollars as a string of digits with at most 12 decimals \
                 and at most 9000000 whole dollars, such as \"25.00\""
            ),
        )
    })
}

pub(crate) async fn audit(
    s: &AppState,
    actor: &str,
    action: &str,
    target: String,
    before: Option<Value>,
    after: Option<Value>,
) {
    let entry = AuditEntry {
        actor: actor.to_string(),
        action: action.into(),
        target,
        before,
        after,
    };
    if let Err(e) = s.store.record_audit(entry).await {
        tracing::warn!(error = %e, "Recording an admin change in the audit log failed.");
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetBody {
    #[serde(default)]
    name: Option<String>,
    scope: String,
    #[serde(default)]
    subject: Option<String>,
    period: String,
    amount: String,
    #[serde(default, deserialize_with = "crate::api::whole::u32_list")]
    thresholds: Option<Vec<u32>>,
    #[serde(default)]
    hard_limit: Option<bool>,
}

fn budget_def_json(b: &BudgetRecord) -> Value {
    json!({
        "id": b.id,
        "name": b.def.name,
        "scope": b.def.scope.kind(),
        "subject": match &b.def.scope { Scope::Org => Value::Null, other => json!(other.subject()) },
        "period": b.def.period.as_str(),
        "amount": b.def.amount,
        "thresholds": b.def.thresholds,
        "hard_limit": b.def.hard_limit,
    })
}

/// A budget with where it stands: spend from the rollups (the numbers the pages show), what requests in flight
/// hold, the state, when it resets and where it is heading.
pub(crate) async fn budget_view(s: &AppState, b: &BudgetRecord) -> Result<Value, ApiError> {
    let now = now_ms();
    let (start, end) = b.def.period.bounds(&s.controls.config().time_zone, now);
    let mut f = spendgate_core::Filters {
        from_ms: start,
        to_ms: now.max(start + 1),
        ..Default::default()
    };
    match &b.def.scope {
        Scope::Org => {}
        Scope::Team(t) => f.team = Some(t.clone()),
        Scope::User(u) => f.user = Some(u.clone()),
        Scope::Key(k) => f.key_id = Some(*k),
    }
    let spent = s.store.summary(&f).await.map_err(store_error)?.cost;
    let (reserved, _) = s.controls.budget_live(b.id).unwrap_or_default();
    let mut v = budget_def_json(b);
    v["spent"] = json!(spent);
    v["reserved"] = json!(reserved);
    v["remaining"] = json!(b.def.amount.saturating_sub(spent).max(Money::ZERO));
    v["percent_used"] = json!(percent_used(spent, b.def.amount).min(100_000));
    // A hard budget that refused a request this period blocks its subject, whatever its percentage.
    let refusing = s.controls.budget_refusing_since(b.id);
    v["state"] = json!(if refusing.is_some() {
        "blocking"
    } else {
        Controls::state_of(b, spent).as_str()
    });
    v["refusing_since"] = json!(refusing.map(to_rfc3339));
    v["period_start"] = json!(to_rfc3339(start));
    v["resets_at"] = json!(to_rfc3339(end));
    // The rate is over the time since the subject's first spend this period, its range against the last hour.
    let first = crate::insights_api::first_spend(&*s.store, &f, None, now).await;
    let from =
        crate::insights_api::rate_from(first.map_err(store_error)?.remove(&None), start, now);
    let recent = spendgate_core::Filters {
        from_ms: (now - crate::insights_api::RECENT_MS).max(start),
        ..f
    };
    let recent_spent = s.store.summary(&recent).await.map_err(store_error)?.cost;
    let (range, rate) = crate::insights_api::period_forecast(spent, recent_spent, from, end, now);
    v["forecast"] = json!(range.expected);
    v["forecast_rate"] = rate;
    v["forecast_low"] = json!(range.low);
    v["forecast_high"] = json!(range.high);
    Ok(v)
}

async fn set_budget(
    State(s): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    JsonBody(body): JsonBody<BudgetBody>,
) -> Result<Response, ApiError> {
    let scope = scope_of(&body.scope, body.subject.as_deref())?;
    let period = Period::parse(&body.period).ok_or_else(|| {
        ApiError::invalid_request("invalid_period", "period must be day, week or month")
    })?;
    let amount = money("amount", &body.amount)?;
    let mut thresholds = body.thresholds.unwrap_or_else(|| vec![80, 100]);
    thresholds.sort_unstable();
    thresholds.dedup();
    if thresholds.is_empty() || thresholds.iter().any(|t| *t == 0 || *t > 1000) {
        return Err(ApiError::invalid_request(
            "invalid_thresholds",
            "thresholds are percentages from 1 to 1000, e.g. [80, 100]",
        ));
    }
    let def = NewBudget {
        name: body.name.filter(|n| !n.is_empty()),
        scope,
        period,
        amount,
        thresholds,
        hard_limit: body.hard_limit.unwrap_or(false),
    };
    let (before, after) = s.controls.set_budget(def).await.map_err(store_error)?;
    let who = actor(&headers);
    audit(
        &s,
        &who,
        "budget.set",
        format!("budget:{}", after.id),
        before.as_ref().map(budget_def_json),
        Some(budget_def_json(&after)),
    )
    .await;
    let status = if before.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(budget_view(&s, &after).await?)).into_response())
}

async fn list_budgets(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let mut out = Vec::new();
    for b in s.store.list_budgets().await.map_err(store_error)? {
        out.push(budget_view(&s, &b).await?);
    }
    Ok(Json(json!({ "budgets": out })))
}

async fn alerts(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let alerts = s.store.list_alerts(200).await.map_err(store_error)?;
    let deliveries = s.store.list_deliveries(200).await.map_err(store_error)?;
    Ok(Json(json!({
        "alerts": alerts.iter().map(|a| json!({
            "id": a.id, "kind": a.alert.kind, "subject": a.alert.subject, "team": a.alert.team,
            "threshold": a.alert.threshold, "message": a.alert.message, "at": to_rfc3339(a.at_ms),
            "period_start": to_rfc3339(a.alert.period_start_ms), "link": a.alert.link,
        })).collect::<Vec<_>>(),
        "deliveries": deliveries.iter().map(|d| json!({
            "alert_id": d.alert_id, "target": d.target, "attempt": d.attempt, "ok": d.ok, "detail": d.detail,
            "at": to_rfc3339(d.at_ms),
        })).collect::<Vec<_>>(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_read_exactly_as_the_document_gives_them() {
        for ok in [
            "0",
            "25",
            "25.00",
            "9000000",
            "9000000.5",
            "123456.123456789012",
            "0000.1",
            "8999999",
        ] {
            assert!(money("amount", ok).is_ok(), "{ok}");
        }
        assert_eq!(
            money("amount", "9000000.5").ok(),
            Money::parse_usd("9000000.5").ok()
        );
        for bad in [
            "",
            "+1",
            " 1",
            "1 ",
            "1.",
            ".5",
            "-1",
            "0000001",
            "9000001",
            "10000000",
            "1.0000000000000",
            "1e3",
            "1,5",
        ] {
            assert!(money("amount", bad).is_err(), "{bad:?}");
        }
    }
}
