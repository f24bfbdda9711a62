//! Spend logs read back: what a spend log keeps beside its columns survives the store.

use std::sync::Arc;

use spendgate_core::pricing::{ModelKind, ModelPrice};
use spendgate_core::query::GroupBy;
use spendgate_core::time::{now_ms, HOUR_MS};
use spendgate_core::{PricePerMtok, Usage};
use spendgate_store::Store;

use super::event;

/// A spend log reads back as the event it was written from: its price lines (kept as bare prices when the token
/// columns rebuild them, as JSON otherwise), its error, its failed attempts and the API
/// its provider was reached through.
pub async fn spend_logs_read_back_as_written(store: &dyn Store) {
    let price = ModelPrice {
        provider: "mock".into(),
        model: "m".into(),
        aliases: Vec::new(),
        kind: ModelKind::Chat,
        input_per_mtok: PricePerMtok::parse("3.00").unwrap(),
        output_per_mtok: PricePerMtok::parse("15.00").unwrap(),
        cached_input_per_mtok: Some(PricePerMtok::parse("0.30").unwrap()),
        cache_write_per_mtok: Some(PricePerMtok::parse("3.75").unwrap()),
        max_output_tokens: None,
        context_window: None,
        source: None,
        checked: None,
        ..ModelPrice::default()
    };
    let priced = |usage: Usage, error: Option<&str>| {
        let p = price.price(&usage);
        let mut e = event(now_ms(), Some("t"), "u", "m", 0, 0, 0);
        e.usage = usage;
        e.cost = p.cost;
        e.price_lines = p.billed_lines();
        e.error = error.map(str::to_string);
        e
    };
    let usage = |input, output, cached, write| Usage {
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: cached,
        cache_write_tokens: write,
        ..Usage::default()
    };
    let mut retried = priced(usage(900, 40, 0, 0), None);
    retried.attempts = 2;
    retried.failed_attempts = vec![spendgate_core::FailedAttempt {
        provider: "first".into(),
        model: "m".into(),
        http_status: 503,
        error: "overloaded".into(),
    }];
    let mut odd_line = priced(usage(500, 10, 0, 0), None);
    odd_line.price_lines[0].tokens = 499;
    // A chat completion answered by a provider reached through Anthropic's Messages API (translated).
    let mut translated = priced(usage(1_200, 30, 0, 0), None);
    translated.upstream_api = Some("messages".into());
    let events = vec![
        priced(usage(2_656, 19, 0, 0), None),
        priced(usage(10_000, 700, 6_000, 1_500), None),
        priced(
            usage(0, 0, 0, 0),
            Some("The provider failed: upstream answered 502."),
        ),
        priced(
            usage(120, 0, 0, 0),
            Some("The client went away mid-stream."),
        ),
        retried,
        odd_line,
        translated,
    ];
    store.write_batch(Arc::new(events.clone())).await.unwrap();
    for e in &events {
        let stored = store.spend_log(e.id).await.unwrap().expect("the spend log");
        assert_eq!(stored.event, *e);
    }
}

/// A spend log is found by its id alone, wherever its time lies against the time in its id: a request's log
/// ends after its id was made (seconds or hours later), and a log written with an earlier time than its id (a
/// backfill, a wall clock stepped back) is found too. An id the store does not hold finds nothing, and writing the
/// same events again stores none of them twice.
pub async fn spend_logs_are_found_by_id_wherever_their_time_lies(store: &dyn Store) {
    let now = now_ms();
    let id_at = |ms: i64, n: u8| {
        uuid::Builder::from_unix_timestamp_millis(u64::try_from(ms).unwrap(), &[n; 10]).into_uuid()
    };
    let at = |finished: i64, id: uuid::Uuid| {
        let mut e = event(finished, Some("t"), "u", "m", 10, 1, 100);
        e.id = id;
        e
    };
    let events = vec![
        // Ended two seconds after it started.
        at(now - 60_000, id_at(now - 62_000, 1)),
        // A stream that ran for two hours.
        at(now - 1_000, id_at(now - 7_200_000, 2)),
        // Logged three days before the time in its id.
        at(now - 3 * 86_400_000, id_at(now, 3)),
        // Another request that ended at the same moment as the first.
        at(now - 60_000, id_at(now - 61_000, 4)),
    ];
    store.write_batch(Arc::new(events.clone())).await.unwrap();
    for e in &events {
        let stored = store.spend_log(e.id).await.unwrap();
        assert_eq!(stored.map(|s| s.event.id), Some(e.id));
    }
    for missing in [id_at(now - 62_000, 9), uuid::Uuid::from_u128(42)] {
        assert!(store.spend_log(missing).await.unwrap().is_none());
    }
    let again = store.write_batch(Arc::new(events.clone())).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, events.len()));
}

/// A batch larger than one chunk of a copy (PostgreSQL sends spend logs by `COPY` in chunks of 256 KB, about
/// 750 rows) whose last event in key order is stored already: the store keeps that one once and stores every
/// other, and the rollups count each event once. PostgreSQL meets the stored event only at the end of its copy,
/// after the server has taken thousands of rows, and must undo them all before storing the batch the careful way.
pub async fn a_stored_event_at_the_end_of_a_large_batch_leaves_the_rest_stored_once(
    store: &dyn Store,
) {
    let now = now_ms();
    let events: Vec<_> = (0..5_000i64)
        .map(|i| {
            event(
                now - 1_000 - i,
                Some(["red", "blue"][(i % 2) as usize]),
                &format!("u{}", i % 9),
                "m",
                10 + i as u64,
                5,
                1_000 + i128::from(i),
            )
        })
        .collect();
    // The ids are time-ordered (v7) and made in this order, so the last one is the largest: the last in key order.
    let last = events.last().cloned().unwrap();
    assert!(events.iter().all(|e| e.id <= last.id));
    assert_eq!(
        store
            .write_batch(Arc::new(vec![last]))
            .await
            .unwrap()
            .inserted,
        1
    );
    let report = store.write_batch(Arc::new(events.clone())).await.unwrap();
    assert_eq!((report.inserted, report.duplicates), (4_999, 1));
    let f = super::window(now - HOUR_MS, now + HOUR_MS);
    let total = store.summary(&f).await.unwrap();
    assert_eq!(total.requests, 5_000);
    assert_eq!(total.cost, events.iter().map(|e| e.cost).sum());
    let by_team = store.explorer(&f, GroupBy::Team).await.unwrap();
    assert_eq!(
        by_team.iter().map(|r| r.totals.requests).sum::<u64>(),
        5_000
    );
    let (mut logs, mut cursor) = (0, None::<String>);
    loop {
        let page = store
            .spend_logs(&f, 1_000, cursor.as_deref())
            .await
            .unwrap();
        logs += page.items.len();
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(logs, 5_000);
}
