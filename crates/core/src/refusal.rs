//! The record of one request refused at the gateway's door: the second thing spendgate stores, beside spend.
//!
//! A refused request reached no provider and costs nothing, so it writes no spend log; yet a team whose hard
//! budget is full, or whose wallet is empty, is blocked, and someone must be able to see who was refused, when
//! and why. Each refusal is kept (for a bounded time) and counted in rollups per key, user, team and reason.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a request was refused. The codes are stored; never renumber one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// No key, a malformed one, or one this gateway does not know.
    Auth,
    Revoked,
    Expired,
    /// A hard-limited budget has no room left.
    Budget,
    /// No wallet that pays for the request holds enough.
    Wallet,
    BodyTooLarge,
    HeaderTooLarge,
    /// The key already has as many streams open as it may.
    StreamLimit,
    /// A request-rate limit (of a key, user or team) has no room left this instant.
    RateLimit,
    /// The model is not served by this gateway.
    UnknownModel,
    /// The store is down and a hard budget covers the key (`limits.fail_closed_for_hard_limits`), or the key
    /// store could not be read.
    Unavailable,
    /// Anything else the gateway refused before calling a provider: a body that is not JSON, no model named, a
    /// malformed workflow header, a model that does not speak the route's API, an unboundable request.
    InvalidRequest,
}

impl RefusalReason {
    pub const ALL: [RefusalReason; 12] = [
        RefusalReason::Auth,
        RefusalReason::Revoked,
        RefusalReason::Expired,
        RefusalReason::Budget,
        RefusalReason::Wallet,
        RefusalReason::BodyTooLarge,
        RefusalReason::HeaderTooLarge,
        RefusalReason::StreamLimit,
        RefusalReason::RateLimit,
        RefusalReason::UnknownModel,
        RefusalReason::Unavailable,
        RefusalReason::InvalidRequest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::Auth => "auth",
            RefusalReason::Revoked => "revoked",
            RefusalReason::Expired => "expired",
            RefusalReason::Budget => "budget",
            RefusalReason::Wallet => "wallet",
            RefusalReason::BodyTooLarge => "body_too_large",
            RefusalReason::HeaderTooLarge => "header_too_large",
            RefusalReason::StreamLimit => "stream_limit",
            RefusalReason::RateLimit => "rate_limit",
            RefusalReason::UnknownModel => "unknown_model",
            RefusalReason::Unavailable => "unavailable",
            RefusalReason::InvalidRequest => "invalid_request",
        }
    }

    /// What the reason is called on pages.
    pub fn label(self) -> &'static str {
        match self {
            RefusalReason::Auth => "bad key",
            RefusalReason::Revoked => "revoked key",
            RefusalReason::Expired => "expired key",
            RefusalReason::Budget => "budget full",
            RefusalReason::Wallet => "wallet empty",
            RefusalReason::BodyTooLarge => "body too large",
            RefusalReason::HeaderTooLarge => "headers too large",
            RefusalReason::StreamLimit => "too many streams",
            RefusalReason::RateLimit => "rate limited",
            RefusalReason::UnknownModel => "unknown model",
            RefusalReason::Unavailable => "store unavailable",
            RefusalReason::InvalidRequest => "invalid request",
        }
    }

    /// The stored code.
    pub fn code(self) -> i64 {
        match self {
            RefusalReason::Auth => 1,
            RefusalReason::Revoked => 2,
            RefusalReason::Expired => 3,
            RefusalReason::Budget => 4,
            RefusalReason::Wallet => 5,
            RefusalReason::BodyTooLarge => 6,
            RefusalReason::HeaderTooLarge => 7,
            RefusalReason::StreamLimit => 8,
            RefusalReason::UnknownModel => 9,
            RefusalReason::Unavailable => 10,
            RefusalReason::InvalidRequest => 11,
            RefusalReason::RateLimit => 12,
        }
    }

    pub fn from_code(c: i64) -> Option<RefusalReason> {
        RefusalReason::ALL.into_iter().find(|r| r.code() == c)
    }

    pub fn parse(s: &str) -> Option<RefusalReason> {
        RefusalReason::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether the refusal is a spending control doing its job (a full budget, an empty wallet): the kind that
    /// blocks a team until someone acts.
    pub fn is_control(self) -> bool {
        matches!(self, RefusalReason::Budget | RefusalReason::Wallet)
    }
}

/// One refused request. Immutable and identified by `id`: writing the same refusal twice counts it once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalEvent {
    pub id: Uuid,
    /// When the gateway refused it, in milliseconds since the Unix epoch. Rollups bucket refusals by this time.
    pub at_ms: i64,
    pub reason: RefusalReason,
    /// The HTTP status the client received.
    pub http_status: u16,
    /// The key, when the request's key was recognised (revoked and expired keys included); `None` for a missing
    /// or unknown key, which has no user and is counted in the No team bucket.
    pub key_id: Option<i64>,
    pub user: Option<String>,
    /// `None` is the No team bucket.
    pub team: Option<String>,
    /// The model the request named, once its body was read.
    pub model: Option<String>,
    /// The route called, e.g. "chat.completions".
    pub endpoint: String,
    pub gateway: String,
    /// The hard budget that refused it (reason `budget`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_id: Option<i64>,
    /// The wallet that could not pay (reason `wallet`): the nearest one that covers the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallet_id: Option<i64>,
    /// Why, in a short human sentence ("budget 'support daily' is hard and full"). Never holds a key or a prompt.
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_are_distinct_and_read_back() {
        let mut codes: Vec<i64> = RefusalReason::ALL.iter().map(|r| r.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), RefusalReason::ALL.len());
        for r in RefusalReason::ALL {
            assert_eq!(RefusalReason::from_code(r.code()), Some(r));
            assert_eq!(RefusalReason::parse(r.as_str()), Some(r));
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
        }
        assert_eq!(RefusalReason::from_code(0), None);
    }
}
