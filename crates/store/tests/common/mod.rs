//! Store checks shared by every backend: each test file opens its backend and runs these bodies against it, so
//! SQLite and PostgreSQL are held to the same answers.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::sync::Arc;

use spendgate_core::query::{Filters, GroupBy, NO_TEAM_FILTER};
use spendgate_core::time::{now_ms, DAY_MS, HOUR_MS};
use spendgate_core::{
    Attribution, CacheOutcome, Money, PriceConfidence, RequestStatus, SpendEvent, Usage,
    UsageSource,
};
use spendgate_store::Store;
use uuid::Uuid;

mod controls;
pub mod logs;
pub mod pairs;
pub mod pg;
pub mod refusals;

// Not every test file runs the control checks.
#[allow(unused_imports)]
pub use controls::*;

pub fn event(
    ts: i64,
    team: Option<&str>,
    user: &str,
    model: &str,
    input: u64,
    output: u64,
    cost_picos: i128,
) -> SpendEvent {
    SpendEvent {
        id: Uuid::now_v7(),
        started_at_ms: ts - 100,
        finished_at_ms: ts,
        latency_ms: 100,
        gateway: "gw-1".into(),
        provider: "mock".into(),
        model: model.into(),
        endpoint: "chat.completions".into(),
        stream: false,
        attribution: Attribution {
            key_id: 1,
            user: user.into(),
            team: team.map(str::to_string),
            workflow: None,
            workflow_requested: None,
        },
        cache_outcome: CacheOutcome::NotCacheable,
        status: RequestStatus::Ok,
        http_status: 200,
        usage: Usage {
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: 0,
            cache_write_tokens: 0,
            ..Usage::default()
        },
        usage_source: UsageSource::Reported,
        cost: Money::from_picos(cost_picos),
        price_confidence: PriceConfidence::Exact,
        price_lines: vec![],
        error: None,
        wallet_id: None,
        fingerprint: Some(42),
        leases: Vec::new(),
        attempts: 1,
        failed_attempts: Vec::new(),
        avoided_cost: Money::ZERO,
        upstream_api: None,
    }
}

/// Writes a batch that stays available for writing again.
pub async fn write(
    store: &dyn Store,
    batch: &Arc<Vec<SpendEvent>>,
) -> spendgate_store::WriteReport {
    store.write_batch(Arc::clone(batch)).await.unwrap()
}

pub fn window(from: i64, to: i64) -> Filters {
    Filters {
        from_ms: from,
        to_ms: to,
        ..Filters::default()
    }
}

pub async fn writes_are_idempotent_and_rollups_match_spend_logs(store: &dyn Store) {
    let now = now_ms();
    // Events spread over three days, so the query reads day, hour and minute rollups at once.
    let mut events = Vec::new();
    for i in 0..3_000i64 {
        let ts = now - (i * 97_003) % (3 * DAY_MS);
        let team = match i % 3 {
            0 => Some("support"),
            1 => Some("search"),
            _ => None,
        };
        let mut e = event(
            ts,
            team,
            &format!("u{}", i % 7),
            if i % 2 == 0 { "a" } else { "b" },
            10 + i as u64,
            5,
            1_000 + i as i128,
        );
        // Every fifth request is a cache hit: no cost, and the cost it avoided summed beside cost.
        if i % 5 == 0 {
            e.cache_outcome = CacheOutcome::Hit;
            e.avoided_cost = e.cost;
            e.cost = Money::ZERO;
        }
        // Some took a fallback: the attempts and the failed ones come back from the spend log.
        if i % 11 == 0 {
            e.attempts = 2;
            e.failed_attempts = vec![spendgate_core::FailedAttempt {
                provider: "first".into(),
                model: "m".into(),
                http_status: 503,
                error: "overloaded".into(),
            }];
        }
        events.push(e);
    }
    let batch = Arc::new(events.clone());
    let r1 = store.write_batch(Arc::clone(&batch)).await.unwrap();
    assert_eq!(r1.inserted, 3_000);
    let r2 = store.write_batch(batch).await.unwrap();
    assert_eq!(
        (r2.inserted, r2.duplicates),
        (0, 3_000),
        "the same events must not count twice"
    );

    let f = window(now - 4 * DAY_MS, now + HOUR_MS);
    let total = store.summary(&f).await.unwrap();
    let expected: Money = events.iter().map(|e| e.cost).sum();
    assert_eq!(total.requests, 3_000);
    assert_eq!(total.cost, expected);
    let avoided: Money = events.iter().map(|e| e.avoided_cost).sum();
    assert!(avoided > Money::ZERO);
    assert_eq!(total.avoided_cost, avoided);
    assert_eq!(
        total.input_tokens,
        events.iter().map(|e| e.usage.input_tokens).sum::<u64>()
    );

    let rows = store.explorer(&f, GroupBy::Team).await.unwrap();
    assert_eq!(rows.len(), 3);
    let no_team = rows
        .iter()
        .find(|r| r.key.is_none())
        .expect("the No team row is present");
    assert_eq!(no_team.label, "No team");
    assert_eq!(no_team.totals.requests, 1_000);
    assert_eq!(rows.iter().map(|r| r.totals.cost).sum::<Money>(), expected);

    // Filtering on the No team bucket gives the same figures as its explorer row.
    let nt = store
        .summary(&Filters {
            team: Some(NO_TEAM_FILTER.into()),
            ..f.clone()
        })
        .await
        .unwrap();
    assert_eq!(nt, no_team.totals);

    // The per-dimension rollups (read when one dimension is grouped and nothing else filtered) and the
    // all-dimension ones (read when another dimension is filtered) give the same figures.
    let by_user = store.explorer(&f, GroupBy::User).await.unwrap();
    for u in &by_user {
        let only_u = Filters {
            user: u.key.clone(),
            ..f.clone()
        };
        let by_model = store.explorer(&only_u, GroupBy::Model).await.unwrap();
        let mut sum = spendgate_core::Totals::default();
        for r in &by_model {
            sum.add(&r.totals);
        }
        assert_eq!(sum, u.totals, "user {}", u.label);
        assert_eq!(store.summary(&only_u).await.unwrap(), u.totals);
    }
    let per_hour = store
        .series(&f, spendgate_core::time::Grain::Hour, Some(GroupBy::Team))
        .await
        .unwrap();
    let hourly: Money = per_hour.iter().map(|p| p.totals.cost).sum();
    let wide_hourly = hourly_cost(store, &f, "a").await + hourly_cost(store, &f, "b").await;
    assert_eq!(hourly, expected);
    assert_eq!(wide_hourly, expected);
    // Avoided cost sums alike in both rollup shapes: grouped by cache outcome (per-dimension rollups) and
    // filtered to hits with a model (all-dimension rollups).
    let by_outcome = store.explorer(&f, GroupBy::CacheOutcome).await.unwrap();
    let hit_row = by_outcome
        .iter()
        .find(|r| r.key.as_deref() == Some("hit"))
        .expect("a hit row");
    assert_eq!(hit_row.totals.avoided_cost, avoided);
    let mut wide_avoided = Money::ZERO;
    for model in ["a", "b"] {
        let hits = Filters {
            model: Some(model.into()),
            cache_outcome: Some(CacheOutcome::Hit),
            ..f.clone()
        };
        wide_avoided += store.summary(&hits).await.unwrap().avoided_cost;
    }
    assert_eq!(wide_avoided, avoided);

    // The activity history (per key, workflow and gateway, from the hour rollups) sums alike and names No team.
    let activity = store
        .request_activity(&f, spendgate_core::time::Grain::Hour)
        .await
        .unwrap();
    assert_eq!(
        activity.iter().map(|a| a.totals.cost).sum::<Money>(),
        expected
    );
    assert!(activity.iter().any(|a| a.team.is_none()));
    assert!(activity
        .iter()
        .all(|a| a.gateway == "gw-1" && !a.user.is_empty()));

    // A viewer of one team sees that team only, whatever else the view asks for.
    let support = rows
        .iter()
        .find(|r| r.key.as_deref() == Some("support"))
        .unwrap();
    let viewer = Filters {
        scope_team: Some("support".into()),
        ..f.clone()
    };
    assert_eq!(store.summary(&viewer).await.unwrap(), support.totals);
    let seen = store.explorer(&viewer, GroupBy::Team).await.unwrap();
    assert_eq!(seen.len(), 1);
    let no_team_as_viewer = Filters {
        team: Some(NO_TEAM_FILTER.into()),
        ..viewer.clone()
    };
    assert_eq!(store.summary(&no_team_as_viewer).await.unwrap().requests, 0);

    // Paging through every spend log gives each event once, newest first, and the same sum.
    let mut seen = 0usize;
    let mut sum = Money::ZERO;
    let mut avoided_in_logs = Money::ZERO;
    let mut fallbacks = 0;
    let mut cursor: Option<String> = None;
    let mut last_ts = i64::MAX;
    loop {
        let page = store.spend_logs(&f, 700, cursor.as_deref()).await.unwrap();
        for l in &page.items {
            assert!(l.event.finished_at_ms <= last_ts);
            last_ts = l.event.finished_at_ms;
            sum += l.event.cost;
            avoided_in_logs += l.event.avoided_cost;
            if l.event.attempts == 2 {
                fallbacks += 1;
                assert_eq!(l.event.failed_attempts.len(), 1);
                assert_eq!(l.event.failed_attempts[0].http_status, 503);
            }
        }
        seen += page.items.len();
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, 3_000);
    assert_eq!(sum, expected);
    assert_eq!(avoided_in_logs, avoided);
    assert_eq!(fallbacks, events.iter().filter(|e| e.attempts == 2).count());
}

/// Windows that start early or late in a day, on and off the hour, that reach the present or end in the past:
/// each explorer row and the summary equal the sums of exactly the events inside the window, whichever rollup
/// pieces (added, or a first day less its early hours) the store read them from.
pub async fn windows_of_every_alignment_sum_exactly_the_events_inside(store: &dyn Store) {
    let now = now_ms();
    let mut events = Vec::new();
    for i in 0..4_000i64 {
        let ts = now - (i * 101_117) % (5 * DAY_MS);
        events.push(event(
            ts,
            Some("t"),
            &format!("u{}", i % 9),
            "m",
            1 + (i % 13) as u64,
            1,
            1_000 + i as i128,
        ));
    }
    let day_start = spendgate_core::time::Grain::Day.floor(now);
    // A user seen only in the first minutes of a day: a window starting later that day must not list it, even
    // when the store reads that whole day and takes its early hours away.
    events.push(event(
        day_start - 3 * DAY_MS + 60_000,
        Some("t"),
        "early",
        "m",
        5,
        1,
        777,
    ));
    store.write_batch(Arc::new(events.clone())).await.unwrap();
    let mut starts: Vec<i64> = (1..=23)
        .map(|h| day_start - 3 * DAY_MS + h * HOUR_MS + 7 * 60_000)
        .collect();
    starts.extend([
        now - 30 * 60_000,
        now - 3 * HOUR_MS - 60_000,
        now - 25 * HOUR_MS,
    ]);
    for from in starts {
        for to in [now, now - 5 * HOUR_MS - 11 * 60_000, now + DAY_MS] {
            if to <= from {
                continue;
            }
            let f = window(from, to);
            let w = store.resolve_window(&f);
            let inside: Vec<&SpendEvent> = events
                .iter()
                .filter(|e| e.finished_at_ms >= w.from_ms && e.finished_at_ms < w.to_ms)
                .collect();
            let total = store.summary(&f).await.unwrap();
            assert_eq!(total.requests, inside.len() as u64, "window {w:?}");
            assert_eq!(
                total.cost,
                inside.iter().map(|e| e.cost).sum::<Money>(),
                "window {w:?}"
            );
            let rows = store.explorer(&f, GroupBy::User).await.unwrap();
            let mut want = std::collections::BTreeMap::<String, (u64, u64, Money)>::new();
            for e in &inside {
                let slot = want.entry(e.attribution.user.clone()).or_default();
                slot.0 += 1;
                slot.1 += e.usage.input_tokens;
                slot.2 += e.cost;
            }
            let got: std::collections::BTreeMap<String, (u64, u64, Money)> = rows
                .iter()
                .map(|r| {
                    (
                        r.label.clone(),
                        (r.totals.requests, r.totals.input_tokens, r.totals.cost),
                    )
                })
                .collect();
            assert_eq!(got, want, "window {w:?}");
        }
    }
}

async fn series_of(store: &dyn Store, f: &Filters) -> Vec<spendgate_store::SeriesPoint> {
    store
        .series(f, spendgate_core::time::Grain::Day, Some(GroupBy::User))
        .await
        .unwrap()
}

/// The explorer and the series keep their answers for the days before today (`store::sealed`): a late write to a
/// past day must show at once, as must new spend today, and a repeated question must answer the same.
pub async fn kept_answers_for_past_days_follow_every_write(store: &dyn Store) {
    let now = now_ms();
    let f = window(now - 7 * DAY_MS, now + 60_000);
    let requests = |rows: Vec<spendgate_core::query::GroupRow>| {
        rows.iter().map(|r| r.totals.requests).sum::<u64>()
    };
    let points =
        |p: Vec<spendgate_store::SeriesPoint>| p.iter().map(|p| p.totals.requests).sum::<u64>();
    let write = |ts: i64, user: &str| Arc::new(vec![event(ts, Some("t"), user, "m", 1, 1, 100)]);
    store
        .write_batch(write(now - 2 * DAY_MS, "a"))
        .await
        .unwrap();
    store.write_batch(write(now - 1, "b")).await.unwrap();
    assert_eq!(
        requests(store.explorer(&f, GroupBy::User).await.unwrap()),
        2
    );
    assert_eq!(points(series_of(store, &f).await), 2);
    // A late event for a past day: the kept answer must not hide it.
    store
        .write_batch(write(now - 3 * DAY_MS, "c"))
        .await
        .unwrap();
    assert_eq!(
        requests(store.explorer(&f, GroupBy::User).await.unwrap()),
        3
    );
    assert_eq!(points(series_of(store, &f).await), 3);
    // New spend today, then the same question twice.
    store.write_batch(write(now_ms(), "d")).await.unwrap();
    let rows = store.explorer(&f, GroupBy::User).await.unwrap();
    assert_eq!(requests(rows.clone()), 4);
    assert_eq!(store.explorer(&f, GroupBy::User).await.unwrap(), rows);
    assert_eq!(points(series_of(store, &f).await), 4);
    assert_eq!(
        rows.len(),
        4,
        "one row per user, the past and today's parts added up: {rows:?}"
    );
}

/// The cost of one model's hourly series by team: read from the all-dimension rollups (a filter on another
/// dimension than the grouping).
async fn hourly_cost(store: &dyn Store, f: &Filters, model: &str) -> Money {
    let only = Filters {
        model: Some(model.into()),
        ..f.clone()
    };
    store
        .series(
            &only,
            spendgate_core::time::Grain::Hour,
            Some(GroupBy::Team),
        )
        .await
        .unwrap()
        .iter()
        .map(|p| p.totals.cost)
        .sum()
}

pub async fn unknown_filter_values_match_nothing_and_bad_cursors_are_rejected(store: &dyn Store) {
    let now = now_ms();
    store
        .write_batch(Arc::new(vec![event(now, Some("t"), "u", "m", 1, 1, 5)]))
        .await
        .unwrap();
    let f = Filters {
        team: Some("nobody".into()),
        ..window(now - HOUR_MS, now + HOUR_MS)
    };
    assert_eq!(store.summary(&f).await.unwrap().requests, 0);
    assert!(store.explorer(&f, GroupBy::Model).await.unwrap().is_empty());
    let err = store
        .spend_logs(&window(0, now + 1), 10, Some("garbage"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("next_cursor"), "{err}");
    let one = store
        .spend_logs(&window(0, now + 1), 10, None)
        .await
        .unwrap();
    let got = store
        .spend_log(one.items[0].event.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.event.attribution.team.as_deref(), Some("t"));
}

pub async fn repeated_requests_find_one_key_sending_one_fingerprint_many_times(store: &dyn Store) {
    let now = now_ms();
    let mut events = Vec::new();
    // Key 1 repeats one request 25 times in the last minute (a fingerprint with the high bit set: it must survive
    // a signed database integer); its other 25 requests all differ.
    for i in 0..50i64 {
        let mut e = event(
            now - 60_000 + (i % 25) * 100,
            Some("support"),
            "bot",
            "m",
            10,
            1,
            5,
        );
        e.fingerprint = Some(if i < 25 {
            u64::MAX - 1
        } else {
            u64::try_from(i).unwrap()
        });
        events.push(e);
    }
    // Key 2 repeated the same request long ago: outside the window.
    for i in 0..25 {
        let mut e = event(now - HOUR_MS + i, None, "old", "m", 10, 1, 5);
        e.attribution.key_id = 2;
        e.fingerprint = Some(7);
        events.push(e);
    }
    store.write_batch(Arc::new(events)).await.unwrap();
    let rows = store.repeated_requests(now - 5 * 60_000, 20).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].key_id, 1);
    assert_eq!(rows[0].fingerprint, u64::MAX - 1);
    assert_eq!(rows[0].requests, 25);
    assert_eq!(rows[0].team.as_deref(), Some("support"));
    assert_eq!(rows[0].cost, Money::from_picos(125));
    // The fingerprint reads back with the spend log.
    let page = store
        .spend_logs(&window(now - 5 * 60_000, now + 1), 1, None)
        .await
        .unwrap();
    assert!(page.items[0].event.fingerprint.is_some());
}
