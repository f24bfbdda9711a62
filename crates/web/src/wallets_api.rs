//! Prepaid wallets (admin only): creating and listing them, topping up, moving money between a parent and its
//! children, and each wallet's ledger. Budgets and alerts are in `controls_api`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use spendgate_core::controls::{wallet_status, Scope};
use spendgate_core::time::{now_ms, to_rfc3339};
use spendgate_core::Money;
use spendgate_gateway::ApiError;
use spendgate_store::controls::{NewWallet, Transfer, WalletRecord, WALLET_MAX};
use spendgate_store::StoreError;

use crate::api::{store_error, Checked, JsonBody};
use crate::controls_api::{actor, audit, conflict, money, scope_of, NAMED_SCOPE, ORG_SCOPE};
use crate::openapi::{f, p, Access, ApiRouter, Field, Op, Ty, ID};
use crate::AppState;

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

/// The wallet operations, in the order the API document lists them.
pub(crate) fn routes() -> ApiRouter {
    ApiRouter::default()
        .op(&CREATE_WALLET, post(create_wallet))
        .op(&LIST_WALLETS, get(list_wallets))
        .op(&TOPUP, post(topup))
        .op(&ALLOCATE, post(allocate))
        .op(&RECLAIM, post(reclaim))
        .op(&LEDGER, get(ledger))
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
    let to_child = |from, to, amount| Transfer::Allocate { from, to, amount };
    move_money(&s, id, &headers, b, to_child, "wallet.allocate").await
}

async fn reclaim(
    State(s): State<Arc<AppState>>,
    Checked(Path(id)): Checked<Path<i64>>,
    headers: axum::http::HeaderMap,
    JsonBody(b): JsonBody<MoveBody>,
) -> Result<Json<Value>, ApiError> {
    let from_child = |parent, child, amount| Transfer::Reclaim {
        parent,
        child,
        amount,
    };
    move_money(&s, id, &headers, b, from_child, "wallet.reclaim").await
}

/// Money moved between the path's wallet and the body's: `transfer` makes the move from the two ids and the amount.
async fn move_money(
    s: &AppState,
    id: i64,
    headers: &axum::http::HeaderMap,
    b: MoveBody,
    transfer: impl FnOnce(i64, i64, Money) -> Transfer,
    action: &'static str,
) -> Result<Json<Value>, ApiError> {
    let amount = money("amount", &b.amount)?;
    apply(s, headers, transfer(id, b.wallet, amount), action, b.reason).await
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
