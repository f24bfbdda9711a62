//! The record of one finished request: the unit that spendgate stores, rolls up and reconciles.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::Money;
use crate::pricing::{PriceConfidence, PriceLine};
use crate::usage::{Usage, UsageSource};

/// Who a request is charged to. Resolved from the virtual key at the gateway's door.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    pub key_id: i64,
    pub user: String,
    /// `None` is the **No team** bucket: a real row everywhere, never dropped.
    pub team: Option<String>,
    /// From the `x-spendgate-workflow` header; `None` when absent. `(other)` when the header named a label past
    /// `limits.max_workflows` (`OTHER_WORKFLOW_LABEL`).
    pub workflow: Option<String>,
    /// The label the header named when it was recorded as `(other)`; `None` otherwise. Kept with the spend log
    /// only (its `detail`), never as a label of its own, so that it costs no rollup row and no memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_requested: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheOutcome {
    Hit,
    Miss,
    Bypass,
    NotCacheable,
}

impl CacheOutcome {
    pub const ALL: [CacheOutcome; 4] = [
        CacheOutcome::Hit,
        CacheOutcome::Miss,
        CacheOutcome::Bypass,
        CacheOutcome::NotCacheable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Bypass => "bypass",
            CacheOutcome::NotCacheable => "not_cacheable",
        }
    }
    pub fn code(self) -> i64 {
        match self {
            CacheOutcome::Hit => 1,
            CacheOutcome::Miss => 2,
            CacheOutcome::Bypass => 3,
            CacheOutcome::NotCacheable => 0,
        }
    }
    pub fn from_code(c: i64) -> CacheOutcome {
        match c {
            1 => CacheOutcome::Hit,
            2 => CacheOutcome::Miss,
            3 => CacheOutcome::Bypass,
            _ => CacheOutcome::NotCacheable,
        }
    }
    pub fn parse(s: &str) -> Option<CacheOutcome> {
        CacheOutcome::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// The upstream answered with success and the client received it all.
    Ok,
    /// The upstream answered with an error status, timed out or could not be reached.
    UpstreamError,
    /// The client went away before the end of a stream; the request was still billed (see ARCHITECTURE.md).
    ClientDisconnected,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Ok => "ok",
            RequestStatus::UpstreamError => "upstream_error",
            RequestStatus::ClientDisconnected => "client_disconnected",
        }
    }
    pub fn code(self) -> i64 {
        match self {
            RequestStatus::Ok => 0,
            RequestStatus::UpstreamError => 1,
            RequestStatus::ClientDisconnected => 2,
        }
    }
    pub fn from_code(c: i64) -> RequestStatus {
        match c {
            1 => RequestStatus::UpstreamError,
            2 => RequestStatus::ClientDisconnected,
            _ => RequestStatus::Ok,
        }
    }
    pub fn is_error(self) -> bool {
        self == RequestStatus::UpstreamError
    }
}

/// One finished request, priced. Events are immutable and identified by `id`: writing the same event twice
/// must count it once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendEvent {
    pub id: Uuid,
    /// When the request arrived, in milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    /// When the response ended. Rollups bucket events by this time.
    pub finished_at_ms: i64,
    pub latency_ms: u32,
    pub gateway: String,
    pub provider: String,
    pub model: String,
    /// The API route, e.g. "chat.completions" or "embeddings".
    pub endpoint: String,
    pub stream: bool,
    pub attribution: Attribution,
    pub cache_outcome: CacheOutcome,
    pub status: RequestStatus,
    pub http_status: u16,
    pub usage: Usage,
    pub usage_source: UsageSource,
    pub cost: Money,
    pub price_confidence: PriceConfidence,
    /// The price lines the cost was computed from, for the request detail page.
    pub price_lines: Vec<PriceLine>,
    /// A short error description for failed requests. Never holds a key or a prompt.
    pub error: Option<String>,
    /// The wallet that paid, if any: its ledger gets a `settle` entry for `cost` in the same transaction as this
    /// spend log.
    #[serde(default)]
    pub wallet_id: Option<i64>,
    /// A hash of the request (endpoint and body, see `anomaly::fingerprint`), so that a key sending the same
    /// request again and again can be told apart from one sending many different ones. Never the prompt.
    #[serde(default)]
    pub fingerprint: Option<u64>,
    /// The budget and wallet leases this request was held against (replicated mode, see ARCHITECTURE.md
    /// "Leases"): the store adds `cost` to each lease's recorded spend in the same transaction as this spend log,
    /// so what a lease still holds back is always exactly what its replica may spend but has not yet written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<i64>,
    /// Upstream calls made for this request: 1, or more when its route retried or fell back to another target
    /// (after an upstream 5xx, a connect error or a timeout, before any byte reached the client). `provider` is
    /// the one that answered last.
    #[serde(default = "one")]
    pub attempts: u32,
    /// The attempts that failed before the last one, in order (empty when the first attempt answered).
    #[serde(default)]
    pub failed_attempts: Vec<FailedAttempt>,
    /// For a cache hit: what the cached answer's usage costs at today's price, i.e. what the hit saved (its own
    /// `cost` is zero). Zero for every other request; events journaled before the cache existed read as zero.
    #[serde(default)]
    pub avoided_cost: Money,
    /// The API the provider was reached through when the gateway translated the request into another API than
    /// the client spoke (`endpoint`), e.g. "messages" for a chat completion answered by a Claude model; `None`
    /// when the request went upstream in the client's own API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_api: Option<String>,
}

fn one() -> u32 {
    1
}

/// One upstream call of a request that failed and was followed by another attempt. Costs nothing: providers do
/// not bill errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedAttempt {
    pub provider: String,
    /// The model name the upstream was asked for.
    pub model: String,
    /// The upstream's HTTP status, or the status the gateway would have answered (502 for a connect error, 504
    /// for a timeout).
    pub http_status: u16,
    /// What went wrong, in a few words. Never a key or a prompt.
    pub error: String,
}
