//! spendgate's proxy: authenticates virtual keys, routes each request to a provider, passes the answer back
//! byte for byte while reading its usage, and records one priced spend event per request.
//!
//! The layers a request goes through, in order (see `proxy.rs`):
//! 1. `authenticate`: `Authorization: Bearer sk-...` or `x-api-key: sk-...` -> the key's user and team (from
//!    memory);
//! 2. read the body under the size limit; parse only its head (model, stream, max tokens);
//! 3. route: model -> targets (provider, upstream model, price); unknown models are refused before any upstream
//!    call;
//! 4. reserve: the worst-case cost is held against hard budgets and the paying wallet (429 / 402 when not);
//! 5. forward, in a task of its own so that a client hanging up cannot stop the recording; a 5xx, connect error
//!    or timeout falls back to the route's next target (`forward.rs`);
//! 6. meter: usage from the body or the stream, read by the API's wire format (`protocol/`) ->
//!    [`spendgate_core::SpendEvent`] -> writer.
//!
//! A request refused at any step before 5 is recorded as a [`spendgate_core::RefusalEvent`] instead
//! (`refusals.rs`), through the same writer.

pub mod alerts;
pub mod anomalies;
pub mod cache;
pub mod controls;
pub mod error;
mod forward;
mod free;
mod gemini_route;
pub mod heartbeat;
pub mod keys;
pub mod limits;
pub mod meter;
mod mock_upstream;
pub mod models;
pub mod protocol;
pub mod provider;
pub mod providers;
mod proxy;
pub mod refusals;
pub mod routes;
pub mod sse;
pub mod stats;
mod strip;
pub mod translate;
pub mod unrouted;
pub mod usage_stats;
pub mod workflows;

use std::sync::Arc;
use std::time::Duration;

use spendgate_store::SpendWriter;

pub use error::ApiError;
pub use keys::KeyCache;
pub use mock_upstream::mock_upstream_router;
pub use proxy::router;
pub use routes::{Routes, SharedRoutes};
pub use stats::GatewayStats;

/// Limits on what a client may send.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// How long a stream may run, including reading it to the end after a client went away.
    pub max_stream_duration: Duration,
    pub max_header_bytes: usize,
    pub max_streams_per_key: usize,
    /// While the store refuses writes, refuse requests that a hard-limited budget covers (HTTP 503) instead of
    /// letting them through on in-memory figures alone. Off by default: traffic keeps flowing.
    pub fail_closed_for_hard_limits: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4 << 20,
            max_stream_duration: Duration::from_secs(600),
            max_header_bytes: 32 << 10,
            max_streams_per_key: 64,
            fail_closed_for_hard_limits: false,
        }
    }
}

/// The gateway: everything a request handler needs, shared by all requests.
pub struct Gateway {
    /// This replica's name, on every spend log.
    pub name: Arc<str>,
    /// Shared with the admin API, which reloads prices.
    pub routes: Arc<routes::SharedRoutes>,
    /// Shared with [`controls::Controls`], which forgets keys in it when one is revoked or rotated anywhere.
    pub keys: Arc<KeyCache>,
    pub writer: SpendWriter,
    pub limits: Limits,
    pub stats: Arc<GatewayStats>,
    pub controls: Arc<controls::Controls>,
    pub streams: Arc<limits::StreamSlots>,
    /// The response cache; `None` when `cache.enabled` is off.
    pub cache: Option<Arc<cache::ResponseCache>>,
    /// The workflow labels kept apart (`limits.max_workflows`); shared with the admin API's status.
    pub workflows: Arc<workflows::WorkflowLabels>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("name", &self.name).finish()
    }
}
