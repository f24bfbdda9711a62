//! The query model shared by the API, the pages and the store: filters, groupings and what comes back.

use serde::Serialize;

use crate::event::CacheOutcome;
use crate::money::Money;

/// The value a filter takes to select the **No team** bucket (`team=@none`). Team names cannot start with '@'.
pub const NO_TEAM_FILTER: &str = "@none";
/// What the No team bucket is called wherever it is shown.
pub const NO_TEAM_LABEL: &str = "No team";
/// What requests without a workflow header are grouped under.
pub const NO_WORKFLOW_LABEL: &str = "(none)";
/// What requests are recorded under whose workflow label came after `limits.max_workflows` distinct ones.
pub const OTHER_WORKFLOW_LABEL: &str = "(other)";

/// Which requests a query covers. Every field is optional; all given fields must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// Inclusive start, milliseconds since the epoch.
    pub from_ms: i64,
    /// Exclusive end.
    pub to_ms: i64,
    /// A team name, or [`NO_TEAM_FILTER`].
    pub team: Option<String>,
    pub user: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub gateway: Option<String>,
    /// A workflow name, or [`NO_WORKFLOW_LABEL`] for requests without one.
    pub workflow: Option<String>,
    pub cache_outcome: Option<CacheOutcome>,
    pub key_id: Option<i64>,
    /// The one team the caller may see (a team viewer's token). Unlike `team`, no view ever drops it: the store
    /// applies it to every query, so the No team bucket and other teams stay invisible.
    pub scope_team: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupBy {
    Team,
    User,
    Key,
    Provider,
    Model,
    Gateway,
    Workflow,
    CacheOutcome,
}

impl GroupBy {
    pub const ALL: [GroupBy; 8] = [
        GroupBy::Team,
        GroupBy::User,
        GroupBy::Key,
        GroupBy::Provider,
        GroupBy::Model,
        GroupBy::Gateway,
        GroupBy::Workflow,
        GroupBy::CacheOutcome,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Team => "team",
            GroupBy::User => "user",
            GroupBy::Key => "key",
            GroupBy::Provider => "provider",
            GroupBy::Model => "model",
            GroupBy::Gateway => "gateway",
            GroupBy::Workflow => "workflow",
            GroupBy::CacheOutcome => "cache_outcome",
        }
    }

    pub fn parse(s: &str) -> Option<GroupBy> {
        GroupBy::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SortBy {
    #[default]
    Cost,
    Requests,
    Tokens,
}

impl SortBy {
    pub fn as_str(self) -> &'static str {
        match self {
            SortBy::Cost => "cost",
            SortBy::Requests => "requests",
            SortBy::Tokens => "tokens",
        }
    }
    pub fn parse(s: &str) -> Option<SortBy> {
        [SortBy::Cost, SortBy::Requests, SortBy::Tokens]
            .into_iter()
            .find(|g| g.as_str() == s)
    }
}

/// Sums over a set of requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub cost: Money,
    pub requests: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_tokens: u64,
    /// What cache hits would have cost had they gone to the provider (priced when they were answered); zero
    /// for every other request. Summed like `cost`, never part of it.
    pub avoided_cost: Money,
}

impl Totals {
    pub fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    pub fn add(&mut self, o: &Totals) {
        self.cost += o.cost;
        self.requests += o.requests;
        self.errors += o.errors;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.cached_input_tokens += o.cached_input_tokens;
        self.cache_write_tokens += o.cache_write_tokens;
        self.avoided_cost += o.avoided_cost;
    }

    /// Cost per request, exact to the picodollar (rounded down).
    pub fn cost_per_request(&self) -> Money {
        if self.requests == 0 {
            Money::ZERO
        } else {
            Money::from_picos(self.cost.picos() / i128::from(self.requests))
        }
    }

    pub fn tokens_per_request(&self) -> u64 {
        self.tokens().checked_div(self.requests).unwrap_or(0)
    }

    pub fn metric(&self, sort: SortBy) -> i128 {
        match sort {
            SortBy::Cost => self.cost.picos(),
            SortBy::Requests => i128::from(self.requests),
            SortBy::Tokens => i128::from(self.tokens()),
        }
    }
}

/// One row of the explorer: a group and its totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRow {
    /// The group's identity as a filter value: a name, a key id, or `None` for the No team bucket.
    pub key: Option<String>,
    /// What a person reads.
    pub label: String,
    pub totals: Totals,
}

/// Share of `part` in `whole`, in basis points (1/100 of a percent), rounded down. Integer so that it is
/// deterministic; shown as a percentage.
pub fn share_bp(part: i128, whole: i128) -> u32 {
    if whole <= 0 || part <= 0 {
        return 0;
    }
    u32::try_from(part.saturating_mul(10_000) / whole).unwrap_or(10_000)
}

/// "12.34" for 1234 basis points.
pub fn format_share(bp: u32) -> String {
    format!("{}.{:02}", bp / 100, bp % 100)
}

/// Sorts rows by a metric, largest first, with a stable tie-break by label.
pub fn sort_rows(rows: &mut [GroupRow], sort: SortBy) {
    rows.sort_by(|a, b| {
        b.totals
            .metric(sort)
            .cmp(&a.totals.metric(sort))
            .then_with(|| a.label.cmp(&b.label))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_is_integer_basis_points() {
        assert_eq!(share_bp(1, 3), 3333);
        assert_eq!(format_share(3333), "33.33");
        assert_eq!(share_bp(5, 0), 0);
        assert_eq!(format_share(10_000), "100.00");
    }

    #[test]
    fn per_request_averages_separate_small_and_large_requests() {
        let many_small = Totals {
            requests: 100,
            input_tokens: 10_000,
            cost: Money::from_picos(100),
            ..Totals::default()
        };
        let few_large = Totals {
            requests: 2,
            input_tokens: 10_000,
            cost: Money::from_picos(100),
            ..Totals::default()
        };
        assert_eq!(many_small.tokens_per_request(), 100);
        assert_eq!(few_large.tokens_per_request(), 5_000);
        assert!(few_large.cost_per_request() > many_small.cost_per_request());
    }
}
