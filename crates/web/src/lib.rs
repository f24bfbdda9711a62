//! spendgate's HTTP surface for people and scripts: the JSON API (usage, spend logs, keys, pricing), its
//! authentication, and the pages (`/overview`, `/usage`, request details) with their login and live
//! updates. The client-facing proxy API lives in `spendgate-gateway`.

mod api;
mod auth;
mod controls_api;
mod export;
mod insights_api;
mod metrics;
pub mod openapi;
mod pages;
mod params;

use std::sync::Arc;

use axum::Router;
use spendgate_core::Catalog;
use spendgate_gateway::GatewayStats;
use spendgate_store::{SpendWriter, Store, WriterStats};

pub use auth::AdminToken;

/// What the web handlers share.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub catalog: Arc<Catalog>,
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
pub fn router(state: Arc<AppState>) -> Router {
    api::router(Arc::clone(&state)).merge(pages::router(state))
}
