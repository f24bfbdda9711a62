//! The admin API of rate limits: requests and tokens a minute for one key or one team. Every change goes through
//! the gateway's `Controls`, so every live replica enforces it before the answer, and into the audit log with its
//! before and after.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use spendgate_core::controls::Scope;
use spendgate_core::time::to_rfc3339;
use spendgate_gateway::ApiError;
use spendgate_store::controls::{NewRateLimit, RateLimitRecord, RATE_LIMIT_MAX};
use spendgate_store::replicas::RateMeasure;

use crate::api::{store_error, Checked, JsonBody};
use crate::controls_api::{actor, audit};
use crate::openapi::{f, Access, ApiRouter, Field, Op, Ty, ID};
use crate::AppState;

const SET_RATE_LIMIT: Op = Op::post(
    "/api/v1/rate-limits",
    "Creates the rate limit of a key or a team, or replaces the one it has (requests and tokens a minute).",
    Access::Admin,
)
.body(&[
    f(
        "rpm",
        LIMIT,
        false,
        "Requests a minute, from 1; left out, requests are not limited.",
    ),
    f(
        "tpm",
        LIMIT,
        false,
        "Tokens a minute (prompt and output), from 1; left out, tokens are not limited. At least one of rpm and \
         tpm (409 without either).",
    ),
])
.variants(&[TEAM_SCOPE, KEY_SCOPE])
.statuses(&[201, 404, 409]);
/// A limit's value: a whole number from 1 to `RATE_LIMIT_MAX`.
const LIMIT: Ty = Ty::Int(1, RATE_LIMIT_MAX as i64);
const TEAM_SCOPE: &[Field] = &[
    f("scope", Ty::Word(&["team"]), true, "One team."),
    f("subject", Ty::Name, true, "The team's name."),
];
const KEY_SCOPE: &[Field] = &[
    f("scope", Ty::Word(&["key"]), true, "One virtual key."),
    f(
        "subject",
        crate::controls_api::KEY_SUBJECT,
        true,
        "The key's id, as text (404 for no such key, 409 for a revoked one).",
    ),
];
const LIST_RATE_LIMITS: Op = Op::get(
    "/api/v1/rate-limits",
    "Every rate limit, with what this gateway counted against it in the last minute.",
    Access::Admin,
);
const DELETE_RATE_LIMIT: Op = Op::delete(
    "/api/v1/rate-limits/{id}",
    "Deletes a rate limit: its key or team is no longer limited, on every replica.",
    Access::Admin,
)
.id(ID)
.statuses(&[404]);

pub fn routes() -> ApiRouter {
    ApiRouter::default()
        .op(&SET_RATE_LIMIT, post(set_rate_limit))
        .op(&LIST_RATE_LIMITS, get(list_rate_limits))
        .op(&DELETE_RATE_LIMIT, delete(delete_rate_limit))
}

fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_request(code, message)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitBody {
    scope: String,
    /// A team's name, or a key's id as text.
    #[serde(default)]
    subject: Option<Value>,
    #[serde(default)]
    rpm: Option<Value>,
    #[serde(default)]
    tpm: Option<Value>,
}

/// `rpm` or `tpm` from the body: absent or null for no limit, else a whole number from 1.
fn limit_of(name: &str, v: Option<&Value>) -> Result<Option<u64>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        // A whole number written with a fraction of zero (`7.0`) is a whole number, as JSON Schema counts.
        Some(v) => v
            .as_u64()
            .or_else(|| {
                v.as_f64()
                    .filter(|f| f.fract() == 0.0 && (1.0..=RATE_LIMIT_MAX as f64).contains(f))
                    .map(|f| f as u64)
            })
            .filter(|n| (1..=RATE_LIMIT_MAX).contains(n))
            .map(Some)
            .ok_or_else(|| {
                invalid(
                    "invalid_limit",
                    format!(
                        "{name} must be a whole number from 1 to {RATE_LIMIT_MAX}, not {v}; leave it out for no \
                         limit"
                    ),
                )
            }),
    }
}

/// The limit the body asks for, checked: a key that exists and is not revoked, or a valid team (not `@none`),
/// and at least one of rpm and tpm.
async fn definition(s: &AppState, body: RateLimitBody) -> Result<NewRateLimit, ApiError> {
    if body.scope != "key" && body.scope != "team" {
        return Err(invalid(
            "invalid_scope",
            format!(
                "scope must be key or team, not '{}': a rate limit is for one key or one team",
                body.scope
            ),
        ));
    }
    let subject = match &body.subject {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(other) => {
            return Err(invalid(
                "invalid_scope",
                format!(
                    "subject must be text: the key id (\"12\") or the team's name, not {other}"
                ),
            ))
        }
    };
    let scope =
        Scope::parse(&body.scope, subject.as_deref()).map_err(|m| invalid("invalid_scope", m))?;
    let def = NewRateLimit {
        scope,
        rpm: limit_of("rpm", body.rpm.as_ref())?,
        tpm: limit_of("tpm", body.tpm.as_ref())?,
    };
    if def.rpm.is_none() && def.tpm.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            "nothing_to_limit",
            "a rate limit needs rpm (requests a minute), tpm (tokens a minute) or both; to lift a limit, DELETE \
             /api/v1/rate-limits/{id}",
        ));
    }
    // A key id that names no key (0 included) is not found, before the limit itself is checked.
    if let Scope::Key(id) = def.scope {
        let key = crate::keys_api::key_of(s, id).await.map_err(|_| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "key_not_found",
                format!("there is no key {id}; GET /api/v1/keys lists the keys"),
            )
        })?;
        if key.revoked_at_ms.is_some() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                "key_revoked",
                format!("key {id} is revoked: it sends no requests to limit"),
            ));
        }
    }
    def.check().map_err(|m| invalid("invalid_rate_limit", m))?;
    Ok(def)
}

fn definition_json(r: &RateLimitRecord) -> Value {
    json!({
        "id": r.id,
        "scope": r.def.scope.kind(),
        "subject": r.def.scope.subject(),
        "rpm": r.def.rpm,
        "tpm": r.def.tpm,
    })
}

/// A rate limit as the API shows it: its definition, and what this gateway counted against it in the last minute
/// (with leases on, also its share of the limit; the other replicas count theirs).
pub(crate) fn rate_limit_view(s: &AppState, r: &RateLimitRecord) -> Value {
    let mut v = definition_json(r);
    v["created_at"] = json!(to_rfc3339(r.created_at_ms));
    v["updated_at"] = json!(to_rfc3339(r.updated_at_ms));
    let (mut counted, mut share) = (json!({}), json!({}));
    for (measure, n, lease) in s.controls.rate_live(r.id) {
        let name = match measure {
            RateMeasure::Requests => "requests",
            RateMeasure::Tokens => "tokens",
        };
        counted[name] = json!(n);
        share[name] = json!(lease);
    }
    v["last_minute"] = counted;
    if s.controls.leased() {
        v["share"] = share;
    }
    v
}

async fn set_rate_limit(
    State(s): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    JsonBody(body): JsonBody<RateLimitBody>,
) -> Result<Response, ApiError> {
    let def = definition(&s, body).await?;
    let (before, after) = s.controls.set_rate_limit(def).await.map_err(store_error)?;
    audit(
        &s,
        &actor(&headers),
        "rate_limit.set",
        format!("rate_limit:{}", after.id),
        before.as_ref().map(definition_json),
        Some(definition_json(&after)),
    )
    .await;
    let status = if before.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(rate_limit_view(&s, &after))).into_response())
}

async fn list_rate_limits(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let list = s.store.list_rate_limits().await.map_err(store_error)?;
    let views: Vec<Value> = list.iter().map(|r| rate_limit_view(&s, r)).collect();
    Ok(Json(json!({ "rate_limits": views })))
}

async fn delete_rate_limit(
    State(s): State<Arc<AppState>>,
    Checked(Path(id)): Checked<Path<i64>>,
    headers: axum::http::HeaderMap,
) -> Result<Json<Value>, ApiError> {
    if id <= 0 {
        return Err(invalid(
            "invalid_rate_limit",
            format!(
                "{id} is not a rate limit id: they are positive integers (GET /api/v1/rate-limits lists them)"
            ),
        ));
    }
    let gone = s
        .controls
        .delete_rate_limit(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "rate_limit_not_found",
                format!("there is no rate limit {id}; GET /api/v1/rate-limits lists them"),
            )
        })?;
    let view = definition_json(&gone);
    audit(
        &s,
        &actor(&headers),
        "rate_limit.delete",
        format!("rate_limit:{id}"),
        Some(view.clone()),
        None,
    )
    .await;
    Ok(Json(json!({ "deleted": view })))
}
