//! Refused requests in the JSON API: the list (`GET /api/v1/refusals`, one indexed page at a time, like spend
//! logs), counts grouped by reason, team, user or key (`GET /api/v1/refusals/counts`, from the refusal rollups),
//! and the `refused` figures the usage summary and explorer carry. A team viewer sees its own team's refusals
//! only: the store applies the viewer's scope to every refusal query, as to spend.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use spendgate_core::time::to_rfc3339;
use spendgate_core::{Filters, RefusalReason};
use spendgate_gateway::ApiError;
use spendgate_store::{RefusalCount, RefusalFilters, RefusalGroup, StoredRefusal};

use crate::api::{store_error, Checked};
use crate::openapi::{Access, ApiRouter, Op, Param, Ty, FILTERS};
use crate::params::FilterParams;
use crate::AppState;

const REASON: Param = Param {
    name: "reason",
    description:
        "Only refusals of this reason: auth, revoked, expired, budget, wallet, body_too_large, \
        header_too_large, stream_limit, rate_limit, unknown_model, unavailable or invalid_request.",
    ty: Ty::Word(&[
        "auth",
        "revoked",
        "expired",
        "budget",
        "wallet",
        "body_too_large",
        "header_too_large",
        "stream_limit",
        "rate_limit",
        "unknown_model",
        "unavailable",
        "invalid_request",
    ]),
};

/// The usage filters refusals carry: a refused request reached no provider, model, gateway route or cache, so
/// those filters are not offered here (and refused with a 400 when sent).
const REFUSAL_FILTERS: &[Param] = &[
    FILTERS[0],
    FILTERS[1],
    FILTERS[2],
    FILTERS[3],
    FILTERS[4],
    FILTERS[10],
];

const REFUSALS: Op = Op::get(
    "/api/v1/refusals",
    "Requests the gateway refused before calling a provider (budget, wallet, key, limits, ...), newest first, \
     paged by cursor: when, why (reason and a sentence), who (key, user, team when the key was recognised), the \
     model, and the budget or wallet that refused it. Kept store.refusal_retention_days; provider, model, \
     gateway, workflow and cache_outcome filters do not apply (400).",
    Access::Reader,
)
.query(REFUSAL_FILTERS)
.also(&[
    REASON,
    Param {
        name: "limit",
        description: "Refusals per page, 1 to 1000 (default 50).",
        ty: Ty::Int(1, 1000),
    },
    Param {
        name: "cursor",
        description: "next_cursor of the previous page.",
        ty: crate::api::CURSOR,
    },
]);

const REFUSAL_COUNTS: Op = Op::get(
    "/api/v1/refusals/counts",
    "How many requests were refused in the window, in all and grouped by reason, team, user or key, most first \
     (from the refusal rollups, kept for good). Refusals without a recognised key are the No team bucket and \
     'unknown key'.",
    Access::Reader,
)
.query(REFUSAL_FILTERS)
.also(&[
    REASON,
    Param {
        name: "group_by",
        description: "reason (default), team, user or key.",
        ty: Ty::Word(&["reason", "team", "user", "key"]),
    },
]);

pub fn routes() -> ApiRouter {
    ApiRouter::default()
        .op(&REFUSALS, get(list))
        .op(&REFUSAL_COUNTS, get(counts))
}

#[derive(Debug, Deserialize)]
struct ListParams {
    #[serde(flatten)]
    filters: FilterParams,
    reason: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CountParams {
    #[serde(flatten)]
    filters: FilterParams,
    reason: Option<String>,
    group_by: Option<String>,
}

/// The refusal filters of a request: its usage filters, checked for ones refusals do not carry, and a reason.
pub(crate) fn refusal_filters(
    filters: Filters,
    reason: Option<&str>,
) -> Result<RefusalFilters, ApiError> {
    let reason = match reason.map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) => Some(RefusalReason::parse(r).ok_or_else(|| {
            let all: Vec<&str> = RefusalReason::ALL.iter().map(|r| r.as_str()).collect();
            ApiError::invalid_request(
                "invalid_filter",
                format!("reason '{r}' is not one of {}", all.join(", ")),
            )
        })?),
        None => None,
    };
    let f = RefusalFilters { filters, reason };
    if let Some(name) = f.unsupported() {
        return Err(ApiError::invalid_request(
            "invalid_filter",
            format!(
                "Refusals cannot be filtered by {name}: a refused request reached no provider, and refusals are \
                 counted per team, user, key and reason. Drop the {name} filter."
            ),
        ));
    }
    Ok(f)
}

pub(crate) fn refusal_json(s: &StoredRefusal) -> Value {
    let r = &s.refusal;
    json!({
        "id": r.id,
        "at": to_rfc3339(r.at_ms),
        "reason": r.reason.as_str(),
        "reason_label": r.reason.label(),
        "http_status": r.http_status,
        "key_id": r.key_id,
        "user": r.user,
        "team": r.team,
        "model": r.model,
        "endpoint": r.endpoint,
        "gateway": r.gateway,
        "budget_id": r.budget_id,
        "wallet_id": r.wallet_id,
        "detail": r.detail,
    })
}

fn count_json(c: &RefusalCount) -> Value {
    json!({ "key": c.key, "label": c.label, "refusals": c.refusals })
}

async fn list(
    State(s): State<Arc<AppState>>,
    Checked(Query(p)): Checked<Query<ListParams>>,
) -> Result<Json<Value>, ApiError> {
    let f = refusal_filters(p.filters.to_filters()?, p.reason.as_deref())?;
    let limit = crate::api::page_limit(p.limit.as_deref())?;
    let cursor = p.cursor.as_deref().filter(|c| !c.is_empty());
    let page = s
        .store
        .refusals(&f, limit, cursor)
        .await
        .map_err(store_error)?;
    Ok(Json(json!({
        "items": page.items.iter().map(refusal_json).collect::<Vec<_>>(),
        "next_cursor": page.next_cursor,
    })))
}

async fn counts(
    State(s): State<Arc<AppState>>,
    Checked(Query(p)): Checked<Query<CountParams>>,
) -> Result<Json<Value>, ApiError> {
    let f = refusal_filters(p.filters.to_filters()?, p.reason.as_deref())?;
    let group = match p
        .group_by
        .as_deref()
        .map(str::trim)
        .filter(|g| !g.is_empty())
    {
        None => RefusalGroup::Reason,
        Some(g) => RefusalGroup::parse(g).ok_or_else(|| {
            ApiError::invalid_request(
                "invalid_group_by",
                format!("group_by '{g}' is not one of reason, team, user, key"),
            )
        })?,
    };
    let rows = s
        .store
        .refusal_counts(&f, Some(group))
        .await
        .map_err(store_error)?;
    Ok(Json(json!({
        "window": crate::api::window_json_of(s.store.resolve_window(&f.filters)),
        "group_by": group.as_str(),
        "total": rows.iter().map(|r| r.refusals).sum::<u64>(),
        "rows": rows.iter().map(count_json).collect::<Vec<_>>(),
    })))
}

/// The `refused` figures of a usage summary: the total and the counts by reason and by team, or `null` when the
/// summary's filters are ones refusals do not carry.
pub(crate) async fn summary_json(s: &AppState, f: &Filters) -> Result<Value, ApiError> {
    let Ok(rf) = refusal_filters(f.clone(), None) else {
        return Ok(Value::Null);
    };
    let (by_reason, by_team) = tokio::try_join!(
        s.store.refusal_counts(&rf, Some(RefusalGroup::Reason)),
        s.store.refusal_counts(&rf, Some(RefusalGroup::Team)),
    )
    .map_err(store_error)?;
    Ok(json!({
        "total": by_reason.iter().map(|r| r.refusals).sum::<u64>(),
        "by_reason": by_reason.iter().map(count_json).collect::<Vec<_>>(),
        "by_team": by_team.iter().map(count_json).collect::<Vec<_>>(),
    }))
}

/// Refusal counts keyed like the explorer's rows of `group` (team, user or key), or `None` for groupings
/// refusals are not counted by or filters they do not carry.
pub(crate) async fn by_explorer_group(
    s: &AppState,
    f: &Filters,
    group: spendgate_core::GroupBy,
) -> Result<Option<Vec<RefusalCount>>, ApiError> {
    let group = match group {
        spendgate_core::GroupBy::Team => RefusalGroup::Team,
        spendgate_core::GroupBy::User => RefusalGroup::User,
        spendgate_core::GroupBy::Key => RefusalGroup::Key,
        _ => return Ok(None),
    };
    let Ok(rf) = refusal_filters(f.clone(), None) else {
        return Ok(None);
    };
    s.store
        .refusal_counts(&rf, Some(group))
        .await
        .map(Some)
        .map_err(store_error)
}
