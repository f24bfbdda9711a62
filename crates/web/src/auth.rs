//! The admin token: a bearer secret for the JSON API, compared in constant time and never printed.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use spendgate_gateway::ApiError;

use crate::AppState;

/// The admin token. Only its SHA-256 is kept in memory after start-up.
#[derive(Clone)]
pub struct AdminToken {
    hash: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    pub fn new(secret: &str) -> AdminToken {
        AdminToken {
            hash: Sha256::digest(secret.as_bytes()).into(),
        }
    }

    /// Constant-time comparison of hashes, so timing says nothing about the token.
    pub fn matches(&self, candidate: &str) -> bool {
        let h: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        h.iter()
            .zip(self.hash.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

pub(crate) fn bearer(req: &Request) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::trim)
}

tokio::task_local! {
    /// The team a team viewer is confined to, for the request being handled. Set by the authentication
    /// middleware around the handler, read by [`crate::params::FilterParams::to_filters`] so that every query
    /// built from a URL carries the scope, whichever page or route builds it.
    static VIEWER_TEAM: Option<String>;
}

/// The team the current request is confined to, if it comes from a team viewer.
pub(crate) fn viewer_team() -> Option<String> {
    VIEWER_TEAM.try_with(|t| t.clone()).ok().flatten()
}

/// Whether the current caller may see a spend log.
pub(crate) fn visible(log: &spendgate_store::StoredSpendLog) -> bool {
    match viewer_team() {
        Some(team) => log.event.attribution.team.as_deref() == Some(team.as_str()),
        None => true,
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Read-only, one team's data, through the viewer token with this id (a page session made with it asks
    /// whether the token is still active on every request).
    Viewer { team: String, token_id: i64 },
}

/// Why a bearer token gives no role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Neither the admin token nor a viewer token that was not revoked.
    Unknown,
    /// A viewer token past its expiry (at this time).
    Expired { at_ms: i64 },
}

impl Refused {
    /// What the caller reads: for an expired viewer token, when it expired and how to get a new one.
    pub(crate) fn message(self) -> String {
        match self {
            Refused::Unknown => "The token is not valid. The admin token is in <data-dir>/admin-token, or set by \
                                 SPENDGATE_ADMIN_TOKEN; a viewer token may have been revoked."
                .into(),
            Refused::Expired { at_ms } => format!(
                "This viewer token expired at {}. Ask an admin for a new one (POST /api/v1/viewer-tokens with the \
                 team, and an expires_at if 90 days is not right).",
                spendgate_core::time::to_rfc3339(at_ms)
            ),
        }
    }
}

/// The role a bearer token gives: the admin token, or a team viewer token that is neither revoked nor expired.
pub(crate) async fn role_of(state: &AppState, token: &str) -> Result<Role, Refused> {
    if state.admin_token.matches(token) {
        return Ok(Role::Admin);
    }
    let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    match state.store.viewer_by_hash(hash).await {
        Ok(Some(v)) => match v.expires_at_ms {
            Some(at_ms) if v.expired_at(spendgate_core::time::now_ms()) => {
                Err(Refused::Expired { at_ms })
            }
            _ => Ok(Role::Viewer {
                team: v.team,
                token_id: v.id,
            }),
        },
        Ok(None) => Err(Refused::Unknown),
        Err(e) => {
            tracing::warn!(error = %e, "Looking up a viewer token failed.");
            Err(Refused::Unknown)
        }
    }
}

/// Runs `fut` with the caller's scope in force.
pub(crate) async fn in_scope<F: std::future::Future>(role: &Role, fut: F) -> F::Output {
    let team = match role {
        Role::Admin => None,
        Role::Viewer { team, .. } => Some(team.clone()),
    };
    VIEWER_TEAM.scope(team, fut).await
}

/// Middleware: the request must carry the admin token or a team viewer token. The role goes into the request's
/// extensions, and a viewer's team scope is in force while the handler runs.
pub(crate) async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let role = match bearer(&req) {
        Some(t) => role_of(&state, t).await,
        None => {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "missing_admin_token",
                "This API needs the admin token: send 'Authorization: Bearer <token>'. It is in <data-dir>/admin-token.",
            )
            .into_response()
        }
    };
    let role = match role {
        Ok(role) => role,
        Err(refused) => {
            let code = match refused {
                Refused::Unknown => "invalid_admin_token",
                Refused::Expired { .. } => "viewer_token_expired",
            };
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                code,
                refused.message(),
            )
            .into_response();
        }
    };
    req.extensions_mut().insert(role.clone());
    in_scope(&role, next.run(req)).await
}

/// Middleware for admin-only routes (after [`authenticate`]).
pub(crate) async fn admin_only(req: Request, next: Next) -> Response {
    match req.extensions().get::<Role>() {
        Some(Role::Admin) => next.run(req).await,
        _ => ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "admin_only",
            "This needs the admin token; a team viewer token can read its team's usage and spend logs only.",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_matches_only_itself_and_never_prints() {
        let t = AdminToken::new("s3cret");
        assert!(t.matches("s3cret"));
        assert!(!t.matches("s3cret "));
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
