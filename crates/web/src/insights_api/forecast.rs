//! Burn rates and period-end forecasts over the time that really elapsed.
//!
//! A rate is spend divided by the time it was spent in, so the time must be real: a wallet created ten minutes
//! ago has ten minutes of history, not a week, and a budget whose team started spending this morning has
//! spent its month's money since this morning. Wallets are measured from their creation (at most the trailing
//! week); budgets and month-end forecasts from the subject's first spend in the period (its first minute with
//! requests in the rollups). Every answer says which window its rate is over, and its range spans the
//! window's rate and the last hour's.

use std::collections::HashMap;

use serde_json::{json, Value};
use spendgate_core::controls::{
    burn, depletion_in_ms, describe_window, forecast_range, rate_window_ms, Burn, Forecast,
    MIN_RATE_WINDOW_MS,
};
use spendgate_core::query::{Filters, GroupBy};
use spendgate_core::time::{to_rfc3339, Grain, DAY_MS, HOUR_MS};
use spendgate_core::Money;
use spendgate_store::{Store, StoreError};

/// The longest window a wallet's burn is measured over: the trailing week.
pub(crate) const WALLET_WINDOW_MS: i64 = 7 * DAY_MS;
/// The recent part of a window whose rate bounds the range.
pub(crate) const RECENT_MS: i64 = HOUR_MS;
/// How far back the first spend is found to the minute. The minute rollups are kept 48 hours; further back
/// the hour it fell in is precise enough (an hour in more than a day).
const MINUTE_PRECISION_MS: i64 = DAY_MS;

/// When each group (by its label; `None` without a grouping) first spent in `filters`' window: the start of
/// its first minute with requests, or of its first hour where that is more than a day ago. Groups that spent
/// nothing are absent. Reads two rollup series, never the spend logs.
pub(crate) async fn first_spend(
    store: &dyn Store,
    filters: &Filters,
    group_by: Option<GroupBy>,
    now: i64,
) -> Result<HashMap<Option<String>, i64>, StoreError> {
    let mut first: HashMap<Option<String>, i64> = HashMap::new();
    let note = |first: &mut HashMap<Option<String>, i64>, p: &spendgate_store::SeriesPoint| {
        if p.totals.requests > 0 {
            let at = first.entry(p.group.clone()).or_insert(p.bucket_start_ms);
            *at = (*at).min(p.bucket_start_ms);
        }
    };
    for p in store.series(filters, Grain::Hour, group_by).await? {
        note(&mut first, &p);
    }
    // The hours that began within the last day are read again by the minute, from the earliest of them.
    let recent = first
        .values()
        .copied()
        .filter(|h| *h >= now - MINUTE_PRECISION_MS)
        .min();
    if let Some(from) = recent {
        let minutes = Filters {
            from_ms: from.max(filters.from_ms),
            ..filters.clone()
        };
        let mut exact: HashMap<Option<String>, i64> = HashMap::new();
        for p in store.series(&minutes, Grain::Minute, group_by).await? {
            note(&mut exact, &p);
        }
        for (group, at) in first.iter_mut() {
            if let Some(m) = exact.get(group) {
                if *m >= *at && *m < *at + HOUR_MS {
                    *at = *m;
                }
            }
        }
    }
    Ok(first)
}

/// The start of the window a period's rate is taken over: the subject's first spend, not before the period
/// and at least [`MIN_RATE_WINDOW_MS`] before now; the period start when it spent nothing.
pub(crate) fn rate_from(first: Option<i64>, period_start: i64, now: i64) -> i64 {
    match first {
        Some(f) => f
            .max(period_start)
            .min(now - MIN_RATE_WINDOW_MS)
            .max(period_start),
        None => period_start,
    }
}

/// A period-end forecast with its window: `spent` is the period's spend, all of it since `from`, and
/// `recent` that of the last [`RECENT_MS`].
pub(crate) fn period_forecast(
    spent: Money,
    recent: Money,
    from: i64,
    end: i64,
    now: i64,
) -> (Forecast, Value) {
    let f = forecast_range(spent, recent, RECENT_MS, from, end, now);
    let window = (now - from).max(1);
    let b = burn(spent, window, recent, RECENT_MS);
    (
        f,
        rate_json(&b, from, now, "since the first request this period"),
    )
}

/// The JSON that says what a rate is and what it is over.
pub(crate) fn rate_json(b: &Burn, from: i64, now: i64, since: &str) -> Value {
    json!({
        "per_hour": b.per_hour,
        "low_per_hour": b.low_per_hour,
        "high_per_hour": b.high_per_hour,
        "window_from": to_rfc3339(from),
        "window_to": to_rfc3339(now),
        "window_seconds": b.window_ms / 1000,
        "recent_seconds": b.recent_ms / 1000,
        "description": format!(
            "over the last {} ({since}); the range spans that and the last {}'s rate",
            describe_window(b.window_ms),
            describe_window(b.recent_ms)
        ),
    })
}

/// A wallet's burn and depletion: measured from its creation (at most the trailing week), the range from the
/// last hour's rate. Adds `burn_per_day` (the window's rate, for older clients), `burn` and the projected
/// depletion with its earliest and latest times to `v`.
pub(crate) async fn wallet_burn(
    store: &dyn Store,
    wallet: i64,
    created_ms: i64,
    available: Money,
    now: i64,
    v: &mut Value,
) -> Result<(), StoreError> {
    let window = rate_window_ms(created_ms, now, WALLET_WINDOW_MS);
    let recent_ms = RECENT_MS.min(window);
    let (spent, recent) = tokio::join!(
        store.wallet_spent_since(wallet, now - window),
        store.wallet_spent_since(wallet, now - recent_ms)
    );
    let b = burn(spent?, window, recent?, recent_ms);
    let since = if now - created_ms <= WALLET_WINDOW_MS {
        "since the wallet was created"
    } else {
        "the trailing week"
    };
    let at = |per_hour: Money| {
        depletion_in_ms(available, per_hour).map(|ms| to_rfc3339(now.saturating_add(ms)))
    };
    v["burn_per_day"] = json!(Money::from_picos(b.per_hour.picos().saturating_mul(24)));
    v["burn"] = rate_json(&b, now - window, now, since);
    v["projected_depletion"] = json!(at(b.per_hour));
    v["projected_depletion_earliest"] = json!(at(b.high_per_hour));
    v["projected_depletion_latest"] = json!(at(b.low_per_hour));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_starts_at_the_first_spend_within_the_period() {
        let (start, now) = (0, 10 * DAY_MS);
        assert_eq!(rate_from(Some(9 * DAY_MS), start, now), 9 * DAY_MS);
        assert_eq!(rate_from(None, start, now), start);
        // A first spend seconds ago still gives a minute.
        assert_eq!(
            rate_from(Some(now - 5_000), start, now),
            now - MIN_RATE_WINDOW_MS
        );
        // Never before the period.
        assert_eq!(rate_from(Some(start + 10), start, start + 20), start);
    }
}
