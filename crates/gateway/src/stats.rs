//! Counters the gateway keeps about itself, for `/overview`'s gateway status. Lock-free on the request path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (milliseconds) of the latency histogram's buckets; the last bucket is open.
pub const LATENCY_BOUNDS_MS: [u64; 14] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000,
];

#[derive(Debug)]
pub struct GatewayStats {
    pub started_at_ms: i64,
    requests: AtomicU64,
    upstream_errors: AtomicU64,
    rejected: AtomicU64,
    /// Of `rejected`, the requests a rate limit refused.
    rate_limited: AtomicU64,
    latency: [AtomicU64; LATENCY_BOUNDS_MS.len() + 1],
    latency_sum_us: AtomicU64,
    /// What was metered, by team, provider and model.
    pub usage: crate::usage_stats::UsageStats,
}

/// A snapshot of [`GatewayStats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySnapshot {
    pub started_at_ms: i64,
    pub requests: u64,
    pub upstream_errors: u64,
    pub rejected: u64,
    /// Of `rejected`, refused by a rate limit (reason `rate_limit`).
    pub rate_limited: u64,
    pub latency_buckets: Vec<u64>,
    /// The sum of all latencies, in microseconds (a histogram's `_sum`).
    pub latency_sum_us: u64,
}

impl GatewaySnapshot {
    /// The latency below which `pct` percent of requests finished, as a bucket's upper bound in milliseconds.
    pub fn latency_percentile_ms(&self, pct: u64) -> Option<u64> {
        let total: u64 = self.latency_buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let target = (total * pct).div_ceil(100);
        let mut seen = 0;
        for (i, n) in self.latency_buckets.iter().enumerate() {
            seen += n;
            if seen >= target {
                return Some(LATENCY_BOUNDS_MS.get(i).copied().unwrap_or(u64::MAX));
            }
        }
        None
    }
}

impl Default for GatewayStats {
    fn default() -> Self {
        GatewayStats {
            started_at_ms: spendgate_core::time::now_ms(),
            requests: AtomicU64::new(0),
            upstream_errors: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            latency: Default::default(),
            latency_sum_us: AtomicU64::new(0),
            usage: Default::default(),
        }
    }
}

impl GatewayStats {
    pub fn observe(&self, latency: Duration, upstream_error: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if upstream_error {
            self.upstream_errors.fetch_add(1, Ordering::Relaxed);
        }
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        let i = LATENCY_BOUNDS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        self.latency[i].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// A request refused before reaching a provider (bad key, bad body, unknown model).
    pub fn reject(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// A request a rate limit refused (also counted by [`GatewayStats::reject`], as every refusal is).
    pub fn refuse_rate_limit(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> GatewaySnapshot {
        GatewaySnapshot {
            started_at_ms: self.started_at_ms,
            requests: self.requests.load(Ordering::Relaxed),
            upstream_errors: self.upstream_errors.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            latency_buckets: self
                .latency
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .collect(),
            latency_sum_us: self.latency_sum_us.load(Ordering::Relaxed),
        }
    }
}
