//! Refused requests as the store keeps them: a table of recent refusals (read by index, a page at a time, like
//! spend logs) and rollups of their counts per minute, hour and day, by team, user, key and reason (what pages
//! read). Both backends write and read them through the shared SQL in `crate::sql::refusals`.

use spendgate_core::query::Filters;
use spendgate_core::{RefusalEvent, RefusalReason};

pub use crate::sql::refusals::{DEFAULT_RETENTION_DAYS, UNKNOWN_KEY_LABEL};

/// A refusal as read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRefusal {
    pub seq: i64,
    pub refusal: RefusalEvent,
}

/// A page of refusals, newest first.
#[derive(Debug, Clone, Default)]
pub struct RefusalPage {
    pub items: Vec<StoredRefusal>,
    pub next_cursor: Option<String>,
}

/// What refusal counts are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalGroup {
    Reason,
    Team,
    User,
    Key,
}

impl RefusalGroup {
    pub const ALL: [RefusalGroup; 4] = [
        RefusalGroup::Reason,
        RefusalGroup::Team,
        RefusalGroup::User,
        RefusalGroup::Key,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefusalGroup::Reason => "reason",
            RefusalGroup::Team => "team",
            RefusalGroup::User => "user",
            RefusalGroup::Key => "key",
        }
    }

    pub fn parse(s: &str) -> Option<RefusalGroup> {
        RefusalGroup::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

/// The count of one group: `key` is what a filter takes to narrow to it (a team name, `@none`'s bucket is
/// `None`, a user name, a key id, a reason code such as `budget`), `label` what a page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalCount {
    pub key: Option<String>,
    pub label: String,
    pub refusals: u64,
}

/// Which refusals a query covers: the usage filters that refusals carry (window, team, user, key and the
/// viewer's team) and a reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefusalFilters {
    pub filters: Filters,
    pub reason: Option<RefusalReason>,
}

impl RefusalFilters {
    /// The usage filter that refusals cannot be narrowed by, if the filters set one: a refusal has no provider
    /// (it reached none), no cache outcome and no workflow, and its counts are kept per team, user, key and
    /// reason only.
    pub fn unsupported(&self) -> Option<&'static str> {
        let f = &self.filters;
        [
            ("provider", f.provider.is_some()),
            ("model", f.model.is_some()),
            ("gateway", f.gateway.is_some()),
            ("workflow", f.workflow.is_some()),
            ("cache_outcome", f.cache_outcome.is_some()),
        ]
        .into_iter()
        .find_map(|(name, set)| set.then_some(name))
    }
}
