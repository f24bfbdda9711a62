//! spendgate's domain model: exact money, the pricing catalog, token usage, spend events, refusals and the query
//! model.
//!
//! This crate does no IO and knows nothing of HTTP, SQL or async runtimes, so that every rule about money can
//! be tested as plain functions.

pub mod anomaly;
pub mod controls;
pub mod event;
pub mod hash;
pub mod insights;
pub mod money;
pub mod pricing;
pub mod query;
pub mod refusal;
pub mod time;
pub mod usage;

pub use event::{Attribution, CacheOutcome, FailedAttempt, RequestStatus, SpendEvent};
pub use money::{Money, PricePerMtok};
pub use pricing::{Catalog, ModelPrice, PriceConfidence, UnknownModelPolicy};
pub use query::{Filters, GroupBy, GroupRow, SortBy, Totals};
pub use refusal::{RefusalEvent, RefusalReason};
pub use usage::{ServiceTier, Usage, UsageSource};

/// Names of teams, users, workflows and gateways: what spendgate accepts.
///
/// Names are shown on pages and used as filter values, so they are kept printable and short; the leading '@' is
/// reserved for special filter values such as `@none`.
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    // Characters, not bytes: "128 characters" is what the message and the API's document promise.
    if name.is_empty() || name.chars().count() > 128 {
        return Err(format!("{what} name must be 1 to 128 characters long"));
    }
    if name.starts_with('@') {
        return Err(format!(
            "{what} name must not start with '@' (reserved for filters such as @none)"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{what} name must not contain control characters"));
    }
    // The labels the pages give to traffic without a team or a workflow: a team or workflow of that name would
    // be shown, and added up, as if it were that bucket.
    for reserved in [
        query::NO_TEAM_LABEL,
        query::NO_WORKFLOW_LABEL,
        query::OTHER_WORKFLOW_LABEL,
    ] {
        if name.trim().eq_ignore_ascii_case(reserved) {
            return Err(format!(
                "{what} name '{reserved}' is reserved for traffic that has none; choose another name"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod name_tests {
    #[test]
    fn the_labels_of_the_no_team_and_no_workflow_buckets_are_reserved() {
        for name in [
            "No team",
            "no TEAM",
            " No team ",
            "(none)",
            "(NONE)",
            "(other)",
        ] {
            assert!(super::validate_name("team", name).is_err(), "{name}");
        }
        assert!(super::validate_name("workflow", "none").is_ok());
        assert!(super::validate_name("team", "No teams").is_ok());
    }
}
