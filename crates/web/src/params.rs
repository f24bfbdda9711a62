//! Query-string parameters shared by the API and the pages: time windows and filters.

use serde::Deserialize;
use spendgate_core::query::{Filters, GroupBy, SortBy};
use spendgate_core::time::{now_ms, parse_rfc3339, DAY_MS, HOUR_MS};
use spendgate_core::CacheOutcome;
use spendgate_gateway::ApiError;

/// Filters as they arrive in a URL. Empty values mean "any", so HTML forms can submit every field.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct FilterParams {
    pub window: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub team: Option<String>,
    pub user: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub gateway: Option<String>,
    pub workflow: Option<String>,
    pub cache_outcome: Option<String>,
    pub key: Option<String>,
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The presets a window can be given as.
pub const WINDOWS: &[&str] = crate::openapi::WINDOW_WORDS;

/// Start of the current calendar month in UTC.
pub(crate) fn month_start(now: i64) -> i64 {
    let t = time::OffsetDateTime::from_unix_timestamp(now / 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let first = t.date().replace_day(1).unwrap_or(t.date());
    first.midnight().assume_utc().unix_timestamp() * 1000
}

impl FilterParams {
    pub fn to_filters(&self) -> Result<Filters, ApiError> {
        let now = now_ms();
        let to = match non_empty(&self.to) {
            Some(s) => parse_time(&s).ok_or_else(|| bad_time("to", &s))?,
            None => now,
        };
        // The preset is checked even when `from` makes it unused, so that a wrong one is never silently taken.
        let back = match non_empty(&self.window).as_deref().unwrap_or("24h") {
            "1h" => to - HOUR_MS,
            "24h" => to - DAY_MS,
            "7d" => to - 7 * DAY_MS,
            "30d" => to - 30 * DAY_MS,
            "mtd" => month_start(to),
            other => {
                return Err(ApiError::invalid_request(
                    "invalid_window",
                    format!(
                        "window '{other}' is not known; use one of {} or give from/to",
                        WINDOWS.join(", ")
                    ),
                ))
            }
        };
        let from = match non_empty(&self.from) {
            Some(s) => parse_time(&s).ok_or_else(|| bad_time("from", &s))?,
            None => back,
        };
        // A window that does not start before it ends (a start in the future, or from and to swapped) selects
        // nothing: it is answered as the empty window at its end, as a window with no traffic would be.
        let from = from.min(to);
        let cache_outcome = match non_empty(&self.cache_outcome) {
            Some(s) => Some(CacheOutcome::parse(&s).ok_or_else(|| {
                ApiError::invalid_request(
                    "invalid_filter",
                    format!("cache_outcome '{s}' is not one of hit, miss, bypass, not_cacheable"),
                )
            })?),
            None => None,
        };
        let key_id = match non_empty(&self.key) {
            Some(s) => Some(s.parse::<i64>().ok().filter(|k| *k > 0).ok_or_else(|| {
                ApiError::invalid_request(
                    "invalid_filter",
                    format!("key '{s}' is not a key id (a positive number; GET /api/v1/keys lists them)"),
                )
            })?),
            None => None,
        };
        Ok(Filters {
            from_ms: from,
            to_ms: to,
            team: non_empty(&self.team),
            user: non_empty(&self.user),
            provider: non_empty(&self.provider),
            model: non_empty(&self.model),
            gateway: non_empty(&self.gateway),
            workflow: non_empty(&self.workflow),
            cache_outcome,
            key_id,
            scope_team: crate::auth::viewer_team(),
        })
    }
}

/// An RFC 3339 time, or a browser's `datetime-local` value (`2026-11-28T12:00`, seconds optional), read as UTC
/// like every time the pages show.
pub(crate) fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    parse_rfc3339(s).or_else(|| match s.len() {
        16 => parse_rfc3339(&format!("{s}:00Z")),
        19 => parse_rfc3339(&format!("{s}Z")),
        _ => None,
    })
}

fn bad_time(which: &str, value: &str) -> ApiError {
    ApiError::invalid_request(
        "invalid_time",
        format!("'{which}' must be an RFC 3339 time such as 2026-11-28T12:00:00Z; got '{value}'"),
    )
}

pub fn parse_group_by(s: Option<&str>) -> Result<GroupBy, ApiError> {
    let s = s.unwrap_or("team");
    GroupBy::parse(s).ok_or_else(|| {
        let all: Vec<_> = GroupBy::ALL.iter().map(|g| g.as_str()).collect();
        ApiError::invalid_request(
            "invalid_group_by",
            format!("group_by '{s}' is not one of {}", all.join(", ")),
        )
    })
}

pub fn parse_sort(s: Option<&str>) -> Result<SortBy, ApiError> {
    let s = s.unwrap_or("cost");
    SortBy::parse(s).ok_or_else(|| {
        ApiError::invalid_request(
            "invalid_sort",
            format!("sort '{s}' is not one of cost, requests, tokens"),
        )
    })
}
