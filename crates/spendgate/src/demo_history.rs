//! The demo's past: at least 30 days of spend (back to the start of last month, so month-to-date comparisons
//! have a whole span to compare with) written straight into an empty store before the demo serves, so every
//! comparison, chart and explanation has a baseline from the first minute.
//!
//! Each actor of the live traffic (`demo::ACTORS`) sends, hour by hour, the requests its [`Past`] describes: the
//! same request bodies the live traffic builds, answered with the usage the mock provider reports for them
//! (`mock_usage`) and priced with the catalog exactly as the gateway prices them (`ModelPrice::price`). The
//! events go through `Store::write_batch`, one transaction a day, which writes the rollups with them. The story:
//!
//! - team support's triage rolled out further 7 days ago: 40% more requests of the same size (volume);
//! - team growth's campaign prompts grew over the last 3 days to 2.5 times their size (intensity; the anomaly
//!   detector flags it as prompt expansion, since the volume stayed the same);
//! - team search's reranker moved from gpt-4.1-mini to gpt-4.1 5 days ago (price/mix);
//! - the integration whose key has no team creeps up from 60% to 140% of its rate (unattributed spend);
//! - people work by day and less at weekends; the growth team's generator is a scheduled job, around the clock.
//!
//! About 1,300 events a day (40,000 to 80,000 in all, by the day of the month): seconds on a small machine.

use std::collections::HashMap;
use std::sync::Arc;

use spendgate_core::anomaly::fingerprint;
use spendgate_core::time::{DAY_MS, HOUR_MS};
use spendgate_core::{
    Attribution, CacheOutcome, Catalog, Filters, RequestStatus, SpendEvent, UsageSource,
};
use spendgate_gateway::providers::mock::mock_usage;
use spendgate_store::{Store, StoreError};

use crate::demo::{body, prompt, Actor, Story, ACTORS, DEMO_ACTOR};

/// The fewest days of history the demo starts with.
pub const HISTORY_DAYS: i64 = 30;

/// Where the history begins: 30 days back, or the start of last month (UTC) when that is earlier, so that
/// "month to date against the same span last month" on `/overview` compares two whole spans.
pub fn history_start(now_ms: i64) -> i64 {
    let month_start = |ms: i64| {
        let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let first = t.date().replace_day(1).unwrap_or(t.date());
        first.midnight().assume_utc().unix_timestamp() * 1000
    };
    let last_month = month_start(month_start(now_ms) - 1);
    (now_ms - HISTORY_DAYS * DAY_MS).min(last_month)
}

/// The audit action recorded once the history is written.
const HISTORY_WRITTEN: &str = "demo.history";

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("writing the demo's history failed: {0}; check that the data directory is writable, or start the demo with an empty --data-dir")]
    Store(#[from] StoreError),
    #[error("the catalog has no price for the demo's model '{0}'; the demo's actors must use catalog models")]
    UnknownModel(String),
}

/// How far the history has been written (for a progress line): `day` of `days`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub day: i64,
    pub days: i64,
    pub events: usize,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    pub events: usize,
    pub days: i64,
    /// The key of each actor with a history, by user (the live traffic goes on with the same keys).
    pub keys: HashMap<String, String>,
}

/// Writes the history from [`history_start`] to `now_ms` when the store holds no spend at all; `None` when it holds some (a
/// restart on an existing data directory, or a store with real traffic), which is never touched.
pub async fn write_if_empty(
    store: &Arc<dyn Store>,
    catalog: &Catalog,
    gateway: &str,
    now_ms: i64,
    mut progress: impl FnMut(Progress),
) -> Result<Option<Written>, HistoryError> {
    let everything = Filters {
        from_ms: 0,
        to_ms: now_ms + DAY_MS,
        ..Filters::default()
    };
    if store.summary(&everything).await?.requests > 0 {
        return Ok(None);
    }
    let mut keys = HashMap::new();
    let mut actors = Vec::new();
    for actor in ACTORS.iter().filter(|a| a.history.is_some()) {
        let (rec, secret) =
            spendgate_gateway::keys::create_key(&**store, actor.user, actor.team, None).await?;
        keys.insert(actor.user.to_string(), secret);
        actors.push((actor, rec.id));
    }
    let start = history_start(now_ms);
    let days = (now_ms - start + DAY_MS - 1) / DAY_MS;
    let mut rng = fastrand::Rng::with_seed(2026);
    let mut events = 0;
    for day in 0..days {
        let from = start + day * DAY_MS;
        let to = (from + DAY_MS).min(now_ms);
        let mut batch = Vec::new();
        for &(actor, key_id) in &actors {
            for hour in (from..to).step_by(usize::try_from(HOUR_MS).unwrap_or(3_600_000)) {
                let end = (hour + HOUR_MS).min(to);
                day_hour(
                    &mut rng,
                    catalog,
                    gateway,
                    actor,
                    key_id,
                    (hour, end),
                    (start, now_ms),
                    &mut batch,
                )?;
            }
        }
        events += batch.len();
        store.write_batch(Arc::new(batch)).await?;
        progress(Progress {
            day: day + 1,
            days,
            events,
        });
    }
    let entry = spendgate_store::controls::AuditEntry {
        actor: DEMO_ACTOR.into(),
        action: HISTORY_WRITTEN.into(),
        target: format!("gateway:{gateway}"),
        before: None,
        after: Some(serde_json::json!({ "days": days, "events": events })),
    };
    store.record_audit(entry).await?;
    tracing::info!(events, days, "Wrote the demo's history.");
    Ok(Some(Written { events, days, keys }))
}

/// Requests an hour at `t`, in thousandths: the actor's rate shaped by the time of day, the weekday and its story.
fn rate_milli(actor: &Actor, t: i64, (start_ms, now_ms): (i64, i64)) -> u64 {
    let Some(past) = &actor.history else {
        return 0;
    };
    let mut milli = u64::from(past.per_hour) * 1000;
    if !past.around_the_clock {
        // UTC hours: busy 9 to 18, shoulders around them, quiet at night.
        let hour = t.rem_euclid(DAY_MS) / HOUR_MS;
        milli = milli
            * match hour {
                9..=17 => 100,
                7..=8 | 18..=20 => 60,
                _ => 30,
            }
            / 100;
        // 1970-01-01 was a Thursday: days since then, plus 3, modulo 7 is 0 on Monday.
        let weekday = (t.div_euclid(DAY_MS) + 3).rem_euclid(7);
        if weekday >= 5 {
            milli = milli * 50 / 100;
        }
    }
    match past.story {
        Story::Rollout if t >= now_ms - 7 * DAY_MS => milli * 140 / 100,
        Story::Creep => {
            let span = (now_ms - start_ms).max(1);
            let into = (t - start_ms).clamp(0, span);
            // 60% at the start to 140% now, in thousandths of the rate.
            let pct = 60 + 80 * into / span;
            milli * u64::try_from(pct).unwrap_or(100) / 100
        }
        _ => milli,
    }
}

/// The actor's prompt size and models at `t` (today's, or what its story says they were).
fn shape_at(actor: &Actor, t: i64, now_ms: i64) -> ((usize, usize), &'static [&'static str]) {
    let today = (actor.prompt_words, actor.models);
    match actor.history.as_ref().map(|p| &p.story) {
        Some(Story::PromptGrowth { before }) => {
            let ramp = 3 * DAY_MS;
            let into = (t - (now_ms - ramp)).clamp(0, ramp);
            // Linear from `before` to today's sizes over the last three days.
            let mix = |old: usize, new: usize| {
                let (old, new) = (old as i64, new as i64);
                usize::try_from(old + (new - old) * into / ramp).unwrap_or(old as usize)
            };
            (
                (
                    mix(before.0, actor.prompt_words.0),
                    mix(before.1, actor.prompt_words.1),
                ),
                actor.models,
            )
        }
        Some(Story::ModelMove { before, days_ago }) if t < now_ms - days_ago * DAY_MS => {
            (actor.prompt_words, before)
        }
        _ => today,
    }
}

/// Appends the actor's requests in `[span.0, span.1)` to `out`.
#[allow(clippy::too_many_arguments)]
fn day_hour(
    rng: &mut fastrand::Rng,
    catalog: &Catalog,
    gateway: &str,
    actor: &Actor,
    key_id: i64,
    span: (i64, i64),
    history: (i64, i64),
    out: &mut Vec<SpendEvent>,
) -> Result<(), HistoryError> {
    let (from, to) = span;
    let now_ms = history.1;
    // A partial hour (the last one, up to now) gets its share of the hour's requests.
    let milli = rate_milli(actor, from, history) * u64::try_from(to - from).unwrap_or(0)
        / u64::try_from(HOUR_MS).unwrap_or(1);
    let n = milli / 1000 + u64::from(rng.u64(0..1000) < milli % 1000);
    for _ in 0..n {
        let started = rng.i64(from..to);
        let (words, models) = shape_at(actor, started, now_ms);
        let model = models[rng.usize(..models.len())];
        let stream = rng.u32(0..100) < actor.stream_percent;
        let text = prompt(rng, words);
        let request = body(model, &text, stream, actor.api).to_string();
        let endpoint = actor.api.endpoint();
        let usage = mock_usage(endpoint, request.as_bytes(), None, 1);
        let provider = actor.api.provider();
        let found = catalog
            .lookup(provider, model)
            .ok_or_else(|| HistoryError::UnknownModel(model.to_string()))?;
        let priced = found.price.price(&usage);
        let latency = 300 + rng.u32(0..2_500);
        let finished = (started + i64::from(latency)).min(now_ms);
        let mut random = [0u8; 10];
        rng.fill(&mut random);
        out.push(SpendEvent {
            id: uuid::Builder::from_unix_timestamp_millis(
                u64::try_from(started).unwrap_or(0),
                &random,
            )
            .into_uuid(),
            started_at_ms: started,
            finished_at_ms: finished,
            latency_ms: latency,
            gateway: gateway.to_string(),
            provider: provider.to_string(),
            model: model.to_string(),
            endpoint: endpoint.as_str().to_string(),
            stream,
            attribution: Attribution {
                key_id,
                user: actor.user.to_string(),
                team: actor.team.map(str::to_string),
                workflow: actor.workflow.map(str::to_string),
                workflow_requested: None,
            },
            cache_outcome: CacheOutcome::Miss,
            status: RequestStatus::Ok,
            http_status: 200,
            usage,
            usage_source: UsageSource::Reported,
            cost: priced.cost,
            price_confidence: found.confidence.with_usage(UsageSource::Reported),
            price_lines: priced.billed_lines(),
            error: None,
            wallet_id: None,
            fingerprint: Some(fingerprint(endpoint.as_str(), request.as_bytes())),
            leases: Vec::new(),
            attempts: 1,
            failed_attempts: Vec::new(),
            avoided_cost: spendgate_core::Money::ZERO,
            upstream_api: None,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stories_shape_the_rates_and_sizes() {
        let now: i64 = 1_800_000_000_000; // a Friday
        let by = |u: &str| ACTORS.iter().find(|a| a.user == u).unwrap();
        let h = (history_start(now), now);
        let alice = by("alice");
        let noon = now - now.rem_euclid(DAY_MS) + 12 * HOUR_MS;
        assert_eq!(
            rate_milli(alice, noon - 8 * DAY_MS, h) * 140 / 100,
            rate_milli(alice, noon - DAY_MS, h)
        );
        let erin = by("erin");
        assert_eq!(shape_at(erin, now, now).0, erin.prompt_words);
        assert!(shape_at(erin, now - 4 * DAY_MS, now).0 .1 < erin.prompt_words.0);
        let dave = by("dave");
        assert_eq!(shape_at(dave, now - 6 * DAY_MS, now).1, &["gpt-4.1-mini"]);
        assert_eq!(shape_at(dave, now - DAY_MS, now).1, dave.models);
        // A Saturday noon is half a Friday noon for people; the scheduled job does not notice.
        assert_eq!(
            rate_milli(alice, noon + DAY_MS, h) * 2,
            rate_milli(alice, noon, h)
        );
        assert_eq!(
            rate_milli(erin, noon + DAY_MS, h),
            rate_milli(erin, noon, h)
        );
    }
}
