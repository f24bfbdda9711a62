//! Virtual keys and team viewer tokens: creating, listing, revoking and rotating them (admin only). A secret is in
//! the answer that creates it and never again; the store keeps its hash.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Digest;
use spendgate_gateway::ApiError;

use spendgate_core::time::{parse_rfc3339, to_rfc3339};

use crate::api::{store_error, Checked, JsonBody};
use crate::controls_api::{actor, audit};
use crate::openapi::{f, Access, ApiRouter, Op, Ty};
use crate::AppState;

const CREATE_KEY: Op = Op::post(
    "/api/v1/keys",
    "Creates a virtual key; the key is in the answer and shown only this once.",
    Access::Admin,
)
.body(&[
    f("user", Ty::Name, true, "Who the key belongs to."),
    f(
        "team",
        Ty::NameOrBlank,
        false,
        "The user's team; without one (or blank), the key's traffic is No team.",
    ),
    f(
        "expires_at",
        Ty::Time,
        false,
        "When the key stops working (refused with 401 after it); without one, it works until revoked. A time \
         already past is a conflict (409).",
    ),
])
.statuses(&[201, 409]);
const REVOKE_KEY: Op = Op::post(
    "/api/v1/keys/{id}/revoke",
    "Revokes a virtual key: refused (401) on this replica at once and on every replica sharing the store before \
     the answer; recorded in the audit log. Revoking again changes nothing.",
    Access::Admin,
)
.statuses(&[404]);
const ROTATE_KEY: Op = Op::post(
    "/api/v1/keys/{id}/rotate",
    "Gives a virtual key a new secret, shown only this once; same id, user, team, budgets and history. The old \
     secret is refused everywhere before the answer.",
    Access::Admin,
)
.statuses(&[404, 409]);
const LIST_VIEWERS: Op = Op::get(
    "/api/v1/viewer-tokens",
    "The team viewer tokens not revoked (id, team, name, created_at, expires_at, expired), never their secrets.",
    Access::Admin,
);
const REVOKE_VIEWER: Op = Op::post(
    "/api/v1/viewer-tokens/{id}/revoke",
    "Revokes a team viewer token: the API refuses it at once, and page sessions made with it end at their next \
     request.",
    Access::Admin,
)
.statuses(&[404]);
const LIST_KEYS: Op = Op::get(
    "/api/v1/keys",
    "Every virtual key (hints only; keys are stored hashed).",
    Access::Admin,
);
const CREATE_VIEWER: Op = Op::post(
    "/api/v1/viewer-tokens",
    "Creates a read-only token confined to one team; shown once.",
    Access::Admin,
)
.body(&[
    f("team", Ty::Name, true, "The team it may read."),
    f("name", Ty::Text, false, "A name for the token (default: \"<team> viewer\")."),
    f(
        "expires_at",
        Ty::Time,
        false,
        "When the token stops working, for the API and for page sessions made with it (default: 90 days from \
         now). A time already past is a conflict (409).",
    ),
])
.statuses(&[201, 409]);

/// The key and viewer-token operations, in the order the API document lists them.
pub(crate) fn routes() -> ApiRouter {
    ApiRouter::default()
        .op(&CREATE_KEY, post(create_key))
        .op(&LIST_KEYS, get(list_keys))
        .op(&REVOKE_KEY, post(revoke_key))
        .op(&ROTATE_KEY, post(rotate_key))
        .op(&CREATE_VIEWER, post(create_viewer_token))
        .op(&LIST_VIEWERS, get(list_viewer_tokens))
        .op(&REVOKE_VIEWER, post(revoke_viewer_token))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    user: String,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
}

/// A key as the API shows it: never its secret, only the hint.
fn key_view(k: &spendgate_store::KeyRecord) -> Value {
    json!({
        "id": k.id, "user": k.user, "team": k.team, "hint": k.hint,
        "created_at": to_rfc3339(k.created_at_ms),
        "revoked_at": k.revoked_at_ms.map(to_rfc3339),
        "expires_at": k.expires_at_ms.map(to_rfc3339),
    })
}

async fn create_key(
    State(s): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    JsonBody(body): JsonBody<CreateKey>,
) -> Result<Response, ApiError> {
    // An empty team (after trimming, as every name is kept) means the key has none.
    let team = body
        .team
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let expires_at_ms = expires_at(body.expires_at.as_deref())?;
    let (rec, secret) =
        spendgate_gateway::keys::create_key(&*s.store, &body.user, team, expires_at_ms)
            .await
            .map_err(store_error)?;
    tracing::info!(key_id = rec.id, user = %rec.user, team = ?rec.team, "A virtual key was created.");
    let view = key_view(&rec);
    audit(
        &s,
        &actor(&headers),
        "key.create",
        format!("key:{}", rec.id),
        None,
        Some(view.clone()),
    )
    .await;
    let mut answer = view;
    answer["key"] = json!(secret);
    answer["note"] = json!("This is the only time the key is shown; store it now.");
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// An `expires_at` as given (`None` when absent): an RFC 3339 time ahead of now. One already past is well formed
/// but names a credential that could never be used, so it is a conflict with the clock (409), not a bad request.
fn expires_at(given: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(t) = given else { return Ok(None) };
    let at = parse_rfc3339(t).ok_or_else(|| {
        ApiError::invalid_request(
            "invalid_expires_at",
            format!("expires_at {t:?} is not an RFC 3339 time; send one such as \"2027-01-31T00:00:00Z\""),
        )
    })?;
    let now = spendgate_core::time::now_ms();
    if at <= now {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            "expires_at_past",
            format!(
                "expires_at {t} is already past (it is {} now); give a time ahead of now",
                to_rfc3339(now)
            ),
        ));
    }
    Ok(Some(at))
}

/// How long a viewer token works when its creation names no expiry.
pub const VIEWER_TOKEN_DAYS: i64 = 90;

/// A viewer token as the API shows it: never its secret.
fn viewer_view(v: &spendgate_store::ViewerToken, now: i64) -> Value {
    json!({
        "id": v.id, "team": v.team, "name": v.name,
        "created_at": to_rfc3339(v.created_at_ms),
        "expires_at": v.expires_at_ms.map(to_rfc3339),
        "expired": v.expired_at(now),
    })
}

/// The key with this id, or a 404 that says where the keys are listed.
pub(crate) async fn key_of(s: &AppState, id: i64) -> Result<spendgate_store::KeyRecord, ApiError> {
    let keys = s.store.list_keys().await.map_err(store_error)?;
    keys.into_iter().find(|k| k.id == id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "key_not_found",
            format!("there is no key {id}; GET /api/v1/keys lists the keys"),
        )
    })
}

/// Records a change of a key in the audit log (who, before, after) and returns the key as the API shows it.
async fn key_changed(
    s: &AppState,
    headers: &axum::http::HeaderMap,
    action: &str,
    before: &spendgate_store::KeyRecord,
    after: &spendgate_store::KeyRecord,
) -> Value {
    tracing::info!(key_id = after.id, action, "A virtual key was changed.");
    let view = key_view(after);
    let target = format!("key:{}", after.id);
    audit(
        s,
        &actor(headers),
        action,
        target,
        Some(key_view(before)),
        Some(view.clone()),
    )
    .await;
    view
}

/// Revokes a key everywhere (see `Controls::revoke_key`) and records who did it.
async fn revoke_key(
    State(s): State<Arc<AppState>>,
    Checked(Path(id)): Checked<Path<i64>>,
    headers: axum::http::HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let before = key_of(&s, id).await?;
    // Keys are never deleted, so a key found a moment ago is still there to revoke.
    let rec = s
        .controls
        .revoke_key(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::internal(format!("key {id} could not be revoked; retry")))?;
    Ok(Json(
        key_changed(&s, &headers, "key.revoke", &before, &rec).await,
    ))
}

/// Gives a key a new secret everywhere (see `Controls::rotate_key`); the answer shows it once.
async fn rotate_key(
    State(s): State<Arc<AppState>>,
    Checked(Path(id)): Checked<Path<i64>>,
    headers: axum::http::HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let before = key_of(&s, id).await?;
    let revoked = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            "key_revoked",
            format!(
                "key {id} is revoked and cannot be rotated; create a new key (POST /api/v1/keys)"
            ),
        )
    };
    if before.revoked_at_ms.is_some() {
        return Err(revoked());
    }
    // `None` here means it was revoked in the meantime.
    let (rec, secret) = s
        .controls
        .rotate_key(id)
        .await
        .map_err(store_error)?
        .ok_or_else(revoked)?;
    let mut answer = key_changed(&s, &headers, "key.rotate", &before, &rec).await;
    answer["key"] = json!(secret);
    answer["note"] =
        json!("This is the only time the new key is shown; the old one no longer works anywhere.");
    Ok(Json(answer))
}

async fn list_viewer_tokens(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let tokens = s.store.list_viewer_tokens().await.map_err(store_error)?;
    let now = spendgate_core::time::now_ms();
    let items: Vec<_> = tokens.iter().map(|v| viewer_view(v, now)).collect();
    Ok(Json(json!({ "viewer_tokens": items })))
}

/// Revokes a viewer token. It is looked up in the store on every API request and every request of a page
/// session made with it, so nothing is cached to forget.
async fn revoke_viewer_token(
    State(s): State<Arc<AppState>>,
    Checked(Path(id)): Checked<Path<i64>>,
    headers: axum::http::HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let v = s
        .store
        .revoke_viewer_token(id, spendgate_core::time::now_ms())
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "viewer_token_not_found",
                format!("there is no active viewer token {id}; GET /api/v1/viewer-tokens lists the active ones"),
            )
        })?;
    let view = json!({ "id": v.id, "team": v.team, "name": v.name, "revoked": true });
    audit(
        &s,
        &actor(&headers),
        "viewer_token.revoke",
        format!("viewer:{id}"),
        None,
        Some(view.clone()),
    )
    .await;
    Ok(Json(view))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateViewer {
    team: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
}

/// Creates a read-only token confined to one team's usage and spend logs. Shown once; stored as a hash.
async fn create_viewer_token(
    State(s): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    JsonBody(body): JsonBody<CreateViewer>,
) -> Result<Response, ApiError> {
    let team = body.team.trim().to_string();
    spendgate_core::validate_name("team", &team)
        .map_err(|m| ApiError::invalid_request("invalid_team", m))?;
    let now = spendgate_core::time::now_ms();
    let expires_at_ms = expires_at(body.expires_at.as_deref())?
        .unwrap_or(now + VIEWER_TOKEN_DAYS * spendgate_core::time::DAY_MS);
    let g = spendgate_gateway::keys::generate_key("viewer", None)
        .map_err(|e| ApiError::internal(format!("no randomness available: {e}")))?;
    let secret = g
        .secret
        .replacen(spendgate_gateway::keys::KEY_PREFIX, "sgview-", 1);
    let hash: [u8; 32] = sha2::Sha256::digest(secret.as_bytes()).into();
    let name = body.name.unwrap_or_else(|| format!("{team} viewer"));
    let v = s
        .store
        .create_viewer_token(hash, team, name, Some(expires_at_ms))
        .await
        .map_err(store_error)?;
    let after = viewer_view(&v, now);
    audit(
        &s,
        &actor(&headers),
        "viewer_token.create",
        format!("viewer:{}", v.id),
        None,
        Some(after.clone()),
    )
    .await;
    let mut answer = after;
    answer["token"] = json!(secret);
    answer["note"] = json!(
        "This is the only time the token is shown. It reads this team's usage and spend logs, nothing else, until \
         expires_at."
    );
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

async fn list_keys(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let keys = s.store.list_keys().await.map_err(store_error)?;
    let items: Vec<_> = keys.iter().map(key_view).collect();
    Ok(Json(json!({ "keys": items })))
}
