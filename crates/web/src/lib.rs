//! spendgate's HTTP surface for people and scripts: the JSON API (usage, spend logs, keys, pricing), its
//! authentication, and the pages (`/overview`, `/usage`, request details) with their login and live
//! updates. The client-facing proxy API lives in `spendgate-gateway`.

mod api;
mod auth;
mod controls_api;
mod export;
mod insights_api;
mod keys_api;
mod metrics;
pub mod openapi;
mod pages;
mod params;
mod rate_limits_api;
mod refusals_api;
mod wallets_api;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use spendgate_core::Catalog;
use spendgate_gateway::GatewayStats;
use spendgate_store::{SpendWriter, Store, WriterStats};

pub use auth::AdminToken;

/// What the web handlers share.
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// The routes in force, shared with the gateway; the catalog in force is theirs.
    pub routes: Arc<spendgate_gateway::SharedRoutes>,
    /// Reloads prices from the configuration file (`POST /api/v1/pricing/reload`), given the actor to record;
    /// `None` when the gateway was started without one.
    pub reload_pricing: Option<ReloadPricing>,
    pub writer_stats: Arc<WriterStats>,
    /// For commit notices (live page updates); the web layer never records events itself.
    pub writer: SpendWriter,
    pub gateway_stats: Arc<GatewayStats>,
    pub gateway_name: Arc<str>,
    /// A replica whose last heartbeat is older than this is shown as not responding.
    pub gateway_stale_after_ms: i64,
    pub admin_token: AdminToken,
    pub version: &'static str,
    /// In `demo` the pages are open to anyone who can reach them; everywhere else they need a login.
    pub open_pages: bool,
    /// Budget and wallet enforcement: admin changes go through it so that the request path sees them at once.
    pub controls: Arc<spendgate_gateway::controls::Controls>,
    /// The anomaly detectors' thresholds, for answering `/api/v1/insights/anomalies` on demand.
    pub anomalies: spendgate_core::anomaly::AnomalyConfig,
    /// The largest body any of these routes reads (`limits.max_admin_body_bytes`): JSON bodies of the admin API
    /// and the forms of the pages are small, and the login reads its form before anyone is authenticated.
    pub max_body_bytes: usize,
    /// The workflow labels the gateway keeps apart, for the status.
    pub workflows: Arc<spendgate_gateway::workflows::WorkflowLabels>,
}

/// Reloads prices and routes from the configuration file and answers what changed (or why nothing could be).
pub type ReloadPricing = Arc<
    dyn Fn(
            String,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<serde_json::Value, String>> + Send>,
        > + Send
        + Sync,
>;

impl AppState {
    /// The pricing catalog in force.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.routes
            .current()
            .catalog()
            .unwrap_or_else(|| Arc::new(Catalog::empty()))
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("gateway", &self.gateway_name)
            .finish()
    }
}

/// `/healthz`, the admin JSON API under `/api/v1`, and the pages with their login, static files and live
/// events.
///
/// Every body these routes read is bounded by `state.max_body_bytes`: one that announces more is refused before
/// it arrives, and one that does not announce its length is cut off when it passes the limit.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.max_body_bytes;
    let writer = state.writer.clone();
    api::router(Arc::clone(&state))
        .merge(pages::router(state))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(limit, announced_body_limit))
        .layer(middleware::from_fn_with_state(writer, freshen))
}

/// Before a read (a page, the API, the metrics), has the writer store what finished `flush_interval` ago or
/// more: while nobody watches the live pages it may hold a batch for longer, and no reader may see that
/// (`SpendWriter::freshen`; an atomic load when nothing waits). Writes need not wait for it.
async fn freshen(State(writer): State<SpendWriter>, req: Request, next: Next) -> Response {
    if req.method() == axum::http::Method::GET || req.method() == axum::http::Method::HEAD {
        writer.freshen().await;
    }
    next.run(req).await
}

/// Whether a path answers in JSON (the API, health and metrics) rather than with a page.
fn is_api_path(path: &str) -> bool {
    path.starts_with("/api/") || path == "/healthz" || path == "/metrics"
}

/// Refuses a request whose `Content-Length` announces more than `limit` bytes with 413 at once, before its body
/// arrives: in the API's error shape on API paths, as a short page elsewhere.
async fn announced_body_limit(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let announced = spendgate_gateway::limits::announced_length(req.headers());
    if announced.is_some_and(|n| n > limit as u64) {
        return too_large(req.uri().path(), limit);
    }
    next.run(req).await
}

/// The 413 answer of these routes.
pub(crate) fn too_large(path: &str, limit: usize) -> Response {
    if is_api_path(path) {
        spendgate_gateway::ApiError::too_large(limit).into_response()
    } else {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::response::Html(format!(
                "<!doctype html><title>Too large</title><p>The request is larger than this page accepts ({limit} \
                 bytes).</p>"
            )),
        )
            .into_response()
    }
}
