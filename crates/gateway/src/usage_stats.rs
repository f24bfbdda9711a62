//! Running totals of what this process metered, by team, provider and model, for `GET /metrics`.
//!
//! The totals are per process (Prometheus counters restart with the process and are summed across replicas by
//! the query), and they are bounded: at most [`MAX_SERIES`] (team, provider, model) combinations are kept apart;
//! traffic of any further combination is counted under `team="other", model="other"` of its provider, so a flood
//! of distinct names can never grow the scrape or the memory without bound.

use std::collections::HashMap;
use std::sync::Mutex;

use spendgate_core::{Money, Totals, Usage};

/// Distinct (team, provider, model) series kept before new ones fold into "other".
pub const MAX_SERIES: usize = 1_000;

/// The label value for traffic folded together once [`MAX_SERIES`] is reached.
pub const OTHER: &str = "other";

/// The labels of one series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// The team name, or `None` for the No team bucket.
    pub team: Option<String>,
    pub provider: String,
    pub model: String,
}

/// What one request cost, avoided, and whether it failed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Amounts {
    pub cost: Money,
    /// What a cache hit would have cost.
    pub avoided_cost: Money,
    pub error: bool,
}

/// Totals by series, behind one short lock per metered request.
#[derive(Debug, Default)]
pub struct UsageStats {
    series: Mutex<HashMap<SeriesKey, Totals>>,
}

impl UsageStats {
    /// Adds one metered request.
    pub fn record(
        &self,
        team: Option<&str>,
        provider: &str,
        model: &str,
        usage: &Usage,
        amounts: Amounts,
    ) {
        let mut map = match self.series.lock() {
            Ok(m) => m,
            // The map holds plain counters; a panic elsewhere cannot leave it half-updated in a way that matters.
            Err(poisoned) => poisoned.into_inner(),
        };
        let key = SeriesKey {
            team: team.map(str::to_string),
            provider: provider.to_string(),
            model: model.to_string(),
        };
        let key = if map.contains_key(&key) || map.len() < MAX_SERIES {
            key
        } else {
            // The No team bucket stays itself even when folded: unattributed spend is never hidden.
            SeriesKey {
                team: team.map(|_| OTHER.to_string()),
                provider: provider.to_string(),
                model: OTHER.to_string(),
            }
        };
        map.entry(key).or_default().add(&Totals {
            cost: amounts.cost,
            requests: 1,
            errors: u64::from(amounts.error),
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cached_input_tokens: usage.cached_input_tokens,
            cache_write_tokens: usage.cache_write_tokens,
            avoided_cost: amounts.avoided_cost,
        });
    }

    /// Every series, sorted by its labels so that scrapes list them in a stable order.
    pub fn snapshot(&self) -> Vec<(SeriesKey, Totals)> {
        let map = match self.series.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut out: Vec<_> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_bounded_and_fold_into_other() {
        let s = UsageStats::default();
        let u = Usage {
            input_tokens: 10,
            output_tokens: 5,
            cached_input_tokens: 2,
            cache_write_tokens: 1,
            ..Usage::default()
        };
        for i in 0..(MAX_SERIES + 50) {
            s.record(
                Some(&format!("t{i}")),
                "openai",
                "m",
                &u,
                Amounts {
                    cost: Money::from_picos(3),
                    ..Amounts::default()
                },
            );
        }
        s.record(
            None,
            "openai",
            "m",
            &u,
            Amounts {
                cost: Money::from_picos(3),
                error: true,
                ..Amounts::default()
            },
        );
        let snap = s.snapshot();
        assert_eq!(snap.len(), MAX_SERIES + 2);
        let other = snap
            .iter()
            .find(|(k, _)| k.team.as_deref() == Some(OTHER))
            .map(|(_, t)| *t);
        assert_eq!(other.map(|t| t.requests), Some(50));
        // The No team request came after the bound: it folds into model "other" but stays No team.
        let no_team = snap.iter().find(|(k, _)| k.team.is_none());
        assert_eq!(
            no_team.map(|(k, t)| (k.model.as_str(), t.errors)),
            Some((OTHER, 1))
        );
        let total: Money = snap.iter().map(|(_, t)| t.cost).sum();
        assert_eq!(total, Money::from_picos(3 * (MAX_SERIES as i128 + 51)));
    }
}
