//! What replicas share through the store: their heartbeats, and leases on budgets and wallets.
//!
//! A **lease** is a slice of a hard-limited budget's (or a wallet's) remaining amount, reserved for one replica
//! in one transaction. The replica spends from it in memory and renews it before it runs out or expires. Each
//! lease row keeps `granted` (what the replica may spend in all) and `recorded` (what spend logs drawn against
//! it have been written: the store adds each logged request's cost in the same transaction as its spend log). So
//! `granted - recorded` is exactly what the replica may still spend without it being visible in the rollups or
//! the wallet's balance, and a new grant is only given out of
//!
//! - budget: `amount - spend in the period (rollups) - Σ (granted - recorded) of the other live leases`;
//! - wallet: `balance - Σ (granted - recorded) of the other live leases`,
//!
//! which keeps `what was spent + what may still be spent <= amount` whatever the number of replicas. A lease
//! that expires (its replica crashed or lost the store) stops counting; its replica stops spending from it
//! before that (it treats a lease as gone a third of its lifetime early).
//!
//! A **rate limit** (requests or tokens a minute) is shared the same way: a lease is a share of the limit, its
//! amounts are counts (one unit to a picodollar in the same columns), `recorded` stays zero, and a grant comes
//! out of `limit - Σ granted of the other leases`. A replica keeps at least what it counted in the last
//! [`RATE_WINDOW_MS`], so the counts of every replica over any minute add up to at most the limit. What a lease
//! counted stays in the minute after it ends, so a rate lease holds its room for [`RATE_WINDOW_MS`] past its
//! expiry.

use spendgate_core::query::Filters;
use spendgate_core::Money;

/// What a lease is taken on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseTarget {
    /// A hard-limited budget in one period. `filters` select the budget's scope over its period so far (the
    /// store reads the spend from its rollups); `amount` is the budget's amount.
    Budget {
        id: i64,
        period_start_ms: i64,
        filters: Box<Filters>,
        amount: Money,
    },
    /// A prepaid wallet.
    Wallet { id: i64 },
    /// One of a rate limit's two counts; `limit` is the most it allows in a minute.
    Rate {
        id: i64,
        measure: RateMeasure,
        limit: u64,
    },
}

/// What a rate limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateMeasure {
    /// Requests a minute (`rpm`).
    Requests,
    /// Tokens a minute (`tpm`).
    Tokens,
}

impl RateMeasure {
    pub fn as_str(self) -> &'static str {
        match self {
            RateMeasure::Requests => "rpm",
            RateMeasure::Tokens => "tpm",
        }
    }
}

/// The window a rate limit counts over: requests and tokens a minute.
pub const RATE_WINDOW_MS: i64 = 60_000;

impl LeaseTarget {
    /// The lease table's (kind, target id, period) for this target.
    pub fn key(&self) -> (&'static str, i64, i64) {
        match self {
            LeaseTarget::Budget {
                id,
                period_start_ms,
                ..
            } => ("budget", *id, *period_start_ms),
            LeaseTarget::Wallet { id } => ("wallet", *id, 0),
            LeaseTarget::Rate { id, measure, .. } => (measure.as_str(), *id, 0),
        }
    }

    /// Leases of this target still hold room at `now_ms` when they expire after the time returned: a rate
    /// lease's counts stay in the minute after it ends.
    pub fn live_after(&self, now_ms: i64) -> i64 {
        match self {
            LeaseTarget::Rate { .. } => now_ms - RATE_WINDOW_MS,
            _ => now_ms,
        }
    }
}

/// A count as a lease amount (one unit to a picodollar), and back.
pub fn units(n: u64) -> Money {
    Money::from_picos(i128::from(n))
}

pub fn count_of(m: Money) -> u64 {
    u64::try_from(m.picos().max(0)).unwrap_or(u64::MAX)
}

/// A request for a lease, or for more of one.
#[derive(Debug, Clone)]
pub struct LeaseRequest {
    pub target: LeaseTarget,
    pub gateway: String,
    /// How much of its current grant the replica keeps (what it spent plus what requests in flight hold); the
    /// rest of the current grant is given back. Zero for a new lease.
    pub keep: Money,
    /// How much more it would like on top of `keep`.
    pub want: Money,
    /// How long the lease lives unless renewed.
    pub ttl_ms: i64,
}

/// What the store granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseGrant {
    pub id: i64,
    /// The replica may spend this much in all against this lease (its `keep` plus what was added now).
    pub granted: Money,
    /// What was added now (at most `want`, possibly zero).
    pub added: Money,
    /// What is left for everyone else after this grant.
    pub unleased: Money,
    pub expires_at_ms: i64,
}

/// One lease as stored, for status pages and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub id: i64,
    pub kind: String,
    pub target_id: i64,
    pub period_start_ms: i64,
    pub gateway: String,
    pub granted: Money,
    pub recorded: Money,
    pub expires_at_ms: i64,
}

/// A replica's heartbeat: who it is and how it is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayBeat {
    pub name: String,
    pub version: String,
    pub started_at_ms: i64,
    pub last_seen_ms: i64,
    /// Requests metered in the last minute.
    pub requests_per_minute: u64,
    /// Errors among them, in basis points.
    pub error_rate_bp: u32,
    pub latency_p50_ms: Option<u64>,
    pub latency_p95_ms: Option<u64>,
    pub queue_pending: u64,
    pub queue_oldest_age_ms: i64,
    /// Set when the replica said goodbye (a clean shutdown), so pages tell it from one that stopped answering.
    pub stopped: bool,
}
