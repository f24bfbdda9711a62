//! The admin API of budgets, wallets and alerts. Every change goes through the gateway's `Controls`, so the
//! request path enforces it at once, and is written to the audit log with its before and after.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use spendgate_core::controls::{percent_used, wallet_status, Period, Scope};
use spendgate_core::time::{now_ms, to_rfc3339};
use spendgate_core::Money;
use spendgate_gateway::controls::Controls;
use spendgate_gateway::ApiError;
use spendgate_store::controls::{
    AuditEntry, BudgetRecord, NewBudget, NewWallet, Transfer, WalletRecord, WALLET_MAX,
};
use spendgate_store::StoreError;

use crate::api::{store_error, Checked, JsonBody};
use crate::openapi::{f, p, Access, ApiRouter, Field, Op, Ty, ID};
use crate::AppState;

/// The scopes of a budget or wallet, each with the subject it needs: none for the org (a subject given is
/// ignored), a name for a team or a user, a key id for a key.
const ORG_SCOPE: &[Field] = &[
    f("scope", Ty::Word(&["org"]), true, "The whole organisation."),
    f("subject", Ty::Text, false, "Ignored for the org."),
];
const NAMED_SCOPE: &[Field] = &[
    f(
        "scope",
        Ty::Word(&["team", "user"]),
        true,
        "A team or a user.",
    ),
    f("subject", Ty::Name, true, "The team's or user's name."),
];
const KEY_SCOPE: &[Field] = &[
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
const CREATE_WALLET: Op = Op::post(
    "/api/v1/wallets",
    "Creates a prepaid wallet for the org, a team or a user.",
    Access::Admin,
)
.body(&[
    f("name", Ty::Text, false, "A name for pages and alerts."),
    f(
        "low_threshold",
        Ty::Usd,
        false,
        "US dollars under which the wallet is low (default 5).",
    ),
    f(
        "initial_balance",
        Ty::Usd,
        false,
        "A first top-up, US dollars.",
    ),
])
.variants(&[ORG_SCOPE, NAMED_SCOPE])
.statuses(&[201, 409]);
const LIST_WALLETS: Op = Op::get(
    "/api/v1/wallets",
    "Every wallet with its balance, reserved amount, burn rate and projected depletion.",
    Access::Admin,
);
const MOVE_BODY: &[Field] = &[
    f("amount", Ty::Usd, true, "US dollars as a decimal string."),
    f("reason", Ty::Text, false, "Recorded on the ledger entry."),
];
/// The other wallet of an allocation or a reclaim.
const CHILD: &[Field] = &[
    f("amount", Ty::Usd, true, "US dollars as a decimal string."),
    f("reason", Ty::Text, false, "Recorded on the ledger entry."),
    f(
        "wallet",
        ID,
        true,
        "allocate: the child wallet receiving; reclaim: the child giving back.",
    ),
];
/// What a transfer answers beside 200: a wallet that does not exist (404), or one that cannot take part: not
/// parent and child, not enough available, or more than a wallet holds (409).
const MOVE_STATUSES: &[u16] = &[404, 409];
const TOPUP: Op = Op::post(
    "/api/v1/wallets/{id}/topup",
    "Adds money to a wallet.",
    Access::Admin,
)
.body(MOVE_BODY)
.statuses(MOVE_STATUSES);
const ALLOCATE: Op = Op::post(
    "/api/v1/wallets/{id}/allocate",
    "Moves money from this wallet to a child wallet.",
    Access::Admin,
)
.body(CHILD)
.statuses(MOVE_STATUSES);
const RECLAIM: Op = Op::post(
    "/api/v1/wallets/{id}/reclaim",
    "Moves money back from a child wallet to this one.",
    Access::Admin,
)
.body(CHILD)
.statuses(MOVE_STATUSES);
const LEDGER: Op = Op::get(
    "/api/v1/wallets/{id}/ledger",
    "A wallet's ledger, newest first.",
    Access::Admin,
)
.query(&[
    p("limit", Ty::Int(1, 1000), "Entries (default 100)."),
    p(
        "before",
        ID,
        "Entries before this ledger id (paging: next_before of the previous page).",
    ),
])
.statuses(&[404]);
const ALERTS: Op = Op::get(
    "/api/v1/alerts",
    "The latest budget, wallet and anomaly alerts and their webhook deliveries.",
    Access::Admin,
);

pub fn routes() -> ApiRouter {
    ApiRouter::default()
        .op(&SET_BUDGET, post(set_budget))
        .op(&LIST_BUDGETS, get(list_budgets))
        .op(&CREATE_WALLET, post(create_wallet))
        .op(&LIST_WALLETS, get(list_wallets))
        .op(&TOPUP, post(topup))
        .op(&ALLOCATE, post(allocate))
        .op(&RECLAIM, post(reclaim))
        .op(&LEDGER, get(ledger))
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
fn scope_of(kind: &str, subject: Option<&str>) -> Result<Scope, ApiError> {
    let scope =
        Scope::parse(kind, subject).map_err(|m| ApiError::invalid_request("invalid_scope", m))?;
    scope
        .check_subject()
        .map_err(|m| ApiError::invalid_request("invalid_scope", m))?;
    Ok(scope)
}

/// The wallet with this id among `wallets`: 400 for an id no wallet can have, 404 for one that does not exist.
fn find_wallet(wallets: &[WalletRecord], id: i64) -> Result<&WalletRecord, ApiError> {
    if id <= 0 {
        return Err(ApiError::invalid_request(
            "invalid_wallet",
            format!("{id} is not a wallet id: wallet ids are positive integers (GET /api/v1/wallets lists them)"),
        ));
    }
    wallets.iter().find(|w| w.id == id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "wallet_not_found",
            format!("there is no wallet {id}; GET /api/v1/wallets lists the wallets"),
        )
    })
}

/// Refuses a transfer that is wrong whatever the balances: a wallet that does not exist, money moved between
/// wallets that are not parent and child (or from a wallet to itself), or an amount the receiving wallet cannot
/// hold. Whether the giving wallet holds enough is for `Controls::transfer`, which knows what requests hold.
fn check_transfer(wallets: &[WalletRecord], t: &Transfer) -> Result<(), ApiError> {
    let room = |w: &WalletRecord, amount: Money| {
        w.check_room(amount).map_err(|m| conflict("wallet_full", m))
    };
    let (parent, child, receiver, amount) = match t {
        Transfer::TopUp { wallet, amount } | Transfer::Refund { wallet, amount } => {
            return room(find_wallet(wallets, *wallet)?, *amount);
        }
        Transfer::Allocate { from, to, amount } => (*from, *to, *to, *amount),
        Transfer::Reclaim {
            parent,
            child,
            amount,
        } => (*parent, *child, *parent, *amount),
    };
    let (p, c) = (find_wallet(wallets, parent)?, find_wallet(wallets, child)?);
    if parent == child {
        return Err(conflict(
            "invalid_wallet",
            format!("wallet {parent} cannot move money to or from itself; name another wallet in \"wallet\""),
        ));
    }
    if !p.def.scope.is_parent_of(&c.def.scope) {
        return Err(conflict(
            "invalid_wallet",
            format!(
                "wallet {child} ({}) is not a child of wallet {parent} ({}): money moves from the org's wallet to a \
                 team's or a user's, or from a team's to a user's, and is reclaimed the same way back",
                c.def.scope.describe(),
                p.def.scope.describe()
            ),
        ));
    }
    let receiver = if receiver == parent { p } else { c };
    room(receiver, amount)
}

/// A 409: the request is well formed, but what it names cannot take part as things stand (wallets that are not
/// parent and child, a balance that would pass what a wallet holds, money a wallet does not have).
fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "invalid_request_error", code, message)
}

/// An amount as the document gives it (`openapi::Ty::Usd`): digits, at most twelve decimals, at most 9,000,000
/// whole dollars (without a leading zero in seven digits). Nothing else is read, so what the document calls
/// invalid is refused and what it calls valid is taken.
fn money(field: &str, s: &str) -> Result<Money, ApiError> {
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WalletBody {
    #[serde(default)]
    name: Option<String>,
    scope: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    low_threshold: Option<String>,
    #[serde(default)]
    initial_balance: Option<String>,
}

/// A wallet with its balances, status, burn since its creation (at most a week) and projected depletion.
pub(crate) async fn wallet_view(s: &AppState, w: &WalletRecord) -> Result<Value, ApiError> {
    let now = now_ms();
    let (balance, reserved) = s
        .controls
        .wallet_live(w.id)
        .unwrap_or((w.balance, Money::ZERO));
    let available = balance - reserved;
    let mut v = json!({
        "id": w.id,
        "name": w.def.name,
        "scope": w.def.scope.kind(),
        "subject": match &w.def.scope { Scope::Org => Value::Null, other => json!(other.subject()) },
        "balance": balance,
        "reserved": reserved,
        "available": available,
        "total_allocated": w.total_allocated,
        "total_spent": w.total_spent,
        "low_threshold": w.def.low_threshold,
        "status": wallet_status(available, w.def.low_threshold).as_str(),
        // Since when it has refused requests it could not pay for (reset when it receives money): whoever it
        // pays for is blocked.
        "refusing_since": s.controls.wallet_refusing_since(w.id).map(to_rfc3339),
    });
    crate::insights_api::wallet_burn(&*s.store, w.id, w.created_at_ms, available, now, &mut v)
        .await
        .map_err(store_error)?;
    Ok(v)
}

async fn create_wallet(
    State(s): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    JsonBody(body): JsonBody<WalletBody>,
) -> Result<Response, ApiError> {
    let scope = scope_of(&body.scope, body.subject.as_deref())?;
    let low = match body.low_threshold.as_deref() {
        Some(l) => money("low_threshold", l)?,
        None => Money::parse_usd("5").unwrap_or_default(),
    };
    // Everything the request asks for is checked before the wallet is created, so a refusal leaves nothing.
    let initial = match body.initial_balance.as_deref() {
        Some(i) => money("initial_balance", i)?,
        None => Money::ZERO,
    };
    let room = |m: Money, field: &str| {
        if m > WALLET_MAX {
            return Err(ApiError::invalid_request(
                "invalid_amount",
                format!(
                    "{field}: a wallet holds at most {}; send a smaller amount",
                    WALLET_MAX.to_usd_string()
                ),
            ));
        }
        Ok(())
    };
    room(initial, "initial_balance")?;
    room(low, "low_threshold")?;
    let name = body
        .name
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| scope.describe());
    let who = actor(&headers);
    // The one refusal left is a subject that already has a wallet: the state of the wallets is in the way.
    let w = s
        .controls
        .create_wallet(NewWallet {
            name,
            scope,
            low_threshold: low,
        })
        .await
        .map_err(|e| match e {
            StoreError::Invalid(m) => conflict("wallet_exists", m),
            other => store_error(other),
        })?;
    let mut view = wallet_view(&s, &w).await?;
    audit(
        &s,
        &who,
        "wallet.create",
        format!("wallet:{}", w.id),
        None,
        Some(view.clone()),
    )
    .await;
    if initial > Money::ZERO {
        let topped = s
            .controls
            .transfer(
                Transfer::TopUp {
                    wallet: w.id,
                    amount: initial,
                },
                &who,
                "initial balance",
            )
            .await
            .map_err(store_error)?;
        let w = topped.into_iter().find(|x| x.id == w.id).unwrap_or(w);
        view = wallet_view(&s, &w).await?;
    }
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn list_wallets(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let mut out = Vec::new();
    for w in s.store.list_wallets().await.map_err(store_error)? {
        out.push(wallet_view(&s, &w).await?);
    }
    Ok(Json(json!({ "wallets": out })))
}

/// A top-up.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopUpBody {
    amount: String,
    #[serde(default)]
    reason: Option<String>,
}

/// An allocation or a reclaim.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    amount: String,
    #[serde(default)]
    reason: Option<String>,
    /// allocate: the child wallet receiving; reclaim: the child wallet giving back.
    #[serde(deserialize_with = "crate::api::whole::i64")]
    wallet: i64,
}

async fn apply(
    s: &AppState,
    headers: &axum::http::HeaderMap,
    t: Transfer,
    action: &str,
    reason: Option<String>,
) -> Result<Json<Value>, ApiError> {
    let who = actor(headers);
    let reason = reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| action.replace("wallet.", ""));
    let before = s.store.list_wallets().await.map_err(store_error)?;
    check_transfer(&before, &t)?;
    // What the checks above leave is a question of balances (what a wallet has available as requests hold it),
    // or a wallet changed in the meantime: the state of the wallets, not the request, is in the way.
    let touched = s
        .controls
        .transfer(t.clone(), &who, &reason)
        .await
        .map_err(|e| match e {
            StoreError::Invalid(m) => conflict("wallet_conflict", m),
            other => store_error(other),
        })?;
    let mut views = Vec::new();
    for w in &touched {
        let b = before
            .iter()
            .find(|x| x.id == w.id)
            .map(|x| json!({ "balance": x.balance }));
        audit(
            s,
            &who,
            action,
            format!("wallet:{}", w.id),
            b,
            Some(json!({ "balance": w.balance, "reason": reason })),
        )
        .await;
        views.push(wallet_view(s, w).await?);
    }
    Ok(Json(json!({ "wallets": views })))
}

async fn topup(
    State(s): State<Arc<AppState>>,
    Checked(Path(id)): Checked<Path<i64>>,
    headers: axum::http::HeaderMap,
    JsonBody(b): JsonBody<TopUpBody>,
) -> Result<Json<Value>, ApiError> {
    let amount = money("amount", &b.amount)?;
    apply(
        &s,
        &headers,
        Transfer::TopUp { wallet: id, amount },
        "wallet.topup",
        b.reason,
    )
    .await
}

async fn allocate(
    State(s): State<Arc<AppState>>,
    Checked(Path(id)): Checked<Path<i64>>,
    headers: axum::http::HeaderMap,
    JsonBody(b): JsonBody<MoveBody>,
) -> Result<Json<Value>, ApiError> {
    let amount = money("amount", &b.amount)?;
    apply(
        &s,
        &headers,
        Transfer::Allocate {
            from: id,
            to: b.wallet,
            amount,
        },
        "wallet.allocate",
        b.reason,
    )
    .await
}

async fn reclaim(
    State(s): State<Arc<AppState>>,
    Checked(Path(id)): Checked<Path<i64>>,
    headers: axum::http::HeaderMap,
    JsonBody(b): JsonBody<MoveBody>,
) -> Result<Json<Value>, ApiError> {
    let amount = money("amount", &b.amount)?;
    apply(
        &s,
        &headers,
        Transfer::Reclaim {
            parent: id,
            child: b.wallet,
            amount,
        },
        "wallet.reclaim",
        b.reason,
    )
    .await
}

#[derive(Debug, Deserialize)]
struct LedgerParams {
    limit: Option<String>,
    before: Option<String>,
}

/// A query parameter that is a number from `min` to `max`, or empty or absent for none.
fn number_param(name: &str, v: Option<&str>, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
    match v.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .map(Some)
            .ok_or_else(|| {
                ApiError::invalid_request(
                    "invalid_query",
                    format!("{name} must be a number from {min} to {max}, not {v:?}"),
                )
            }),
    }
}

async fn ledger(
    State(s): State<Arc<AppState>>,
    Checked(Path(id)): Checked<Path<i64>>,
    Checked(Query(p)): Checked<Query<LedgerParams>>,
) -> Result<Json<Value>, ApiError> {
    let limit = number_param("limit", p.limit.as_deref(), 1, 1000)?
        .map_or(100, |n| usize::try_from(n).unwrap_or(100));
    let before = number_param("before", p.before.as_deref(), 1, i64::MAX)?;
    find_wallet(&s.store.list_wallets().await.map_err(store_error)?, id)?;
    let entries = s
        .store
        .ledger(id, limit, before)
        .await
        .map_err(store_error)?;
    let next = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    let items: Vec<_> = entries
        .iter()
        .map(|e| {
            json!({
                "id": e.id, "kind": e.kind.as_str(), "amount": e.amount, "actor": e.actor, "reason": e.reason,
                "counterparty": e.counterparty, "request_id": e.request_id, "at": to_rfc3339(e.at_ms),
            })
        })
        .collect();
    Ok(Json(json!({ "entries": items, "next_before": next })))
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
