//! The SQLite backend against a real database file: idempotent writes, rollups that reconcile with spend logs,
//! and the No team bucket.
#![allow(
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
use spendgate_store::sqlite::SqliteOptions;
use spendgate_store::{SqliteStore, Store};
use uuid::Uuid;

fn event(
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
        },
        cache_outcome: CacheOutcome::NotCacheable,
        status: RequestStatus::Ok,
        http_status: 200,
        usage: Usage {
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: 0,
            cache_write_tokens: 0,
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
    }
}

fn window(from: i64, to: i64) -> Filters {
    Filters {
        from_ms: from,
        to_ms: to,
        ..Filters::default()
    }
}

#[tokio::test]
async fn writes_are_idempotent_and_rollups_match_spend_logs() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
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
    let wide_hourly: Money = store
        .series(
            &Filters {
                model: Some("a".into()),
                ..f.clone()
            },
            spendgate_core::time::Grain::Hour,
            Some(GroupBy::Team),
        )
        .await
        .unwrap()
        .iter()
        .chain(
            store
                .series(
                    &Filters {
                        model: Some("b".into()),
                        ..f.clone()
                    },
                    spendgate_core::time::Grain::Hour,
                    Some(GroupBy::Team),
                )
                .await
                .unwrap()
                .iter(),
        )
        .map(|p| p.totals.cost)
        .sum();
    assert_eq!(hourly, expected);
    assert_eq!(wide_hourly, expected);
    // Avoided cost sums alike in both rollup shapes: grouped by cache outcome (per-dimension rollups) and
    // filtered to hits (all-dimension rollups, once a second dimension is filtered).
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

    // Paging through every spend log gives each event once, newest first, and the same sum.
    let mut seen = 0usize;
    let mut sum = Money::ZERO;
    let mut avoided_in_logs = Money::ZERO;
    let mut cursor: Option<String> = None;
    let mut last_ts = i64::MAX;
    loop {
        let page = store.spend_logs(&f, 700, cursor.as_deref()).await.unwrap();
        for l in &page.items {
            assert!(l.event.finished_at_ms <= last_ts);
            last_ts = l.event.finished_at_ms;
            sum += l.event.cost;
            avoided_in_logs += l.event.avoided_cost;
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
}

#[tokio::test]
async fn unknown_filter_values_match_nothing_and_bad_cursors_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
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

#[tokio::test]
async fn repeated_requests_find_one_key_sending_one_fingerprint_many_times() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    let now = now_ms();
    let mut events = Vec::new();
    // Key 1 repeats one request 25 times in the last minute; its other requests all differ.
    for i in 0..25 {
        let mut e = event(
            now - 60_000 + i * 100,
            Some("support"),
            "bot",
            "m",
            10,
            1,
            5,
        );
        e.fingerprint = Some(u64::MAX - 1); // high bit set: must survive the signed SQLite integer
        events.push(e);
    }
    for i in 0..25 {
        let mut e = event(
            now - 60_000 + i * 100,
            Some("support"),
            "bot",
            "m",
            10,
            1,
            5,
        );
        e.fingerprint = Some(u64::try_from(i).unwrap());
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
