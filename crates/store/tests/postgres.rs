//! The PostgreSQL backend against a real server: the shared store checks (`common`), then what only PostgreSQL
//! has: month partitions, retention that drops old spend logs and keeps rollups, and several stores (as several
//! processes would) writing the same labels at once. Each test creates its own database, so they run in
//! parallel. The server is `SPENDGATE_TEST_PG` (default `postgres://postgres@127.0.0.1:5432/postgres`); when it
//! cannot be reached each test says so on stderr and returns.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use std::sync::Arc;

use common::{event, window};
use spendgate_core::query::GroupBy;
use spendgate_core::time::{now_ms, DAY_MS, HOUR_MS};
use spendgate_core::Money;
use spendgate_store::postgres::scratch::ScratchDatabase;
use spendgate_store::postgres::PostgresOptions;
use spendgate_store::{PostgresStore, Store, StoreError};

/// A fresh database, or `None` (with the reason on stderr) when no server answers.
async fn scratch() -> Option<ScratchDatabase> {
    match ScratchDatabase::from_env("SPENDGATE_TEST_PG").await {
        (_, Ok(db)) => Some(db),
        (url, Err(e @ StoreError::Connect { .. })) => {
            eprintln!("skipped: PostgreSQL not reachable at {url} ({e})");
            None
        }
        (url, Err(e)) => panic!("PostgreSQL at {url} answered but refused a test database: {e}"),
    }
}

async fn open(db: &ScratchDatabase, retention_days: Option<u32>) -> PostgresStore {
    PostgresStore::connect(PostgresOptions {
        retention_days,
        ..PostgresOptions::new(db.url())
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_large_batch_repeating_stored_events_adds_only_the_new_ones() {
    let Some(db) = scratch().await else { return };
    let store = open(&db, None).await;
    common::pairs::a_large_batch_repeating_stored_events_adds_only_the_new_ones(&store).await;
}

#[tokio::test]
async fn spend_logs_read_back_as_written() {
    let Some(db) = scratch().await else { return };
    let store = open(&db, None).await;
    common::logs::spend_logs_read_back_as_written(&store).await;
}

#[tokio::test]
async fn spend_logs_are_found_by_id_wherever_their_time_lies() {
    let Some(db) = scratch().await else { return };
    let store = open(&db, None).await;
    common::logs::spend_logs_are_found_by_id_wherever_their_time_lies(&store).await;
}

#[tokio::test]
async fn refusals_are_kept_once_counted_and_listed() {
    let Some(db) = scratch().await else { return };
    let store = open(&db, None).await;
    common::refusals::refusals_are_kept_once_counted_and_listed(&store).await;
}

#[tokio::test]
async fn refusals_past_their_retention_are_not_written() {
    let Some(db) = scratch().await else { return };
    let store = open(&db, None).await;
    common::refusals::refusals_past_their_retention_are_not_written(&store).await;
}

#[tokio::test]
async fn writes_are_idempotent_and_rollups_match_spend_logs() {
    let Some(db) = scratch().await else { return };
    let store = open(&db, None).await;
    common::writes_are_idempotent_and_rollups_match_spend_logs(&store).await;
}

#[tokio::test]
async fn windows_of_every_alignment_sum_exactly_the_events_inside() {
    let Some(db) = scratch().await else { return };
    let store = open(&db, None).await;
    common::windows_of_every_alignment_sum_exactly_the_events_inside(&store).await;
}

#[tokio::test]
async fn views_of_one_provider_or_gateway_sum_exactly_the_events_inside() {
    let Some(db) = scratch().await else { return };
    let store = open(&db, None).await;
    common::pairs::views_of_one_provider_or_gateway_sum_exactly_the_events_inside(&store).await;
}

#[tokio::test]
async fn kept_answers_for_past_days_follow_every_write() {
    let Some(db) = scratch().await else { return };
    let store = open(&db, None).await;
    common::kept_answers_for_past_days_follow_every_write(&store).await;
}

#[tokio::test]
async fn unknown_filter_values_match_nothing_and_bad_cursors_are_rejected() {
    let Some(db) = scratch().await else { return };
    let store = open(&db, None).await;
    common::unknown_filter_values_match_nothing_and_bad_cursors_are_rejected(&store).await;
}

#[tokio::test]
async fn repeated_requests_find_one_key_sending_one_fingerprint_many_times() {
    let Some(db) = scratch().await else { return };
    let store = open(&db, None).await;
    common::repeated_requests_find_one_key_sending_one_fingerprint_many_times(&store).await;
}

#[tokio::test]
async fn wallet_charges_keep_the_ledger_equal_to_the_balance() {
    let Some(db) = scratch().await else { return };
    let store = open(&db, None).await;
    common::wallet_charges_keep_the_ledger_equal_to_the_balance(&store).await;
}

#[tokio::test]
async fn controls_keys_and_audit_round_trip() {
    let Some(db) = scratch().await else { return };
    let store = open(&db, None).await;
    common::controls_keys_and_audit_round_trip(&store).await;
}

#[tokio::test]
async fn leases_never_grant_more_than_is_left() {
    let Some(db) = scratch().await else { return };
    let store = open(&db, None).await;
    common::leases_never_grant_more_than_is_left(&store).await;
}

#[tokio::test]
async fn months_get_partitions_and_retention_drops_old_spend_logs_but_keeps_rollups() {
    let Some(db) = scratch().await else { return };
    let now = now_ms();
    let old_ts = now - 120 * DAY_MS;
    let later_ts = now + 400 * DAY_MS;
    let store = open(&db, None).await;
    let before = store.partitions().await.unwrap();
    assert_eq!(
        before.len(),
        2,
        "this month and the next exist from the start: {before:?}"
    );
    let old = event(old_ts, Some("archive"), "u", "m", 10, 5, 1_234);
    let batch = Arc::new(vec![
        old.clone(),
        event(now, Some("live"), "u", "m", 10, 5, 99),
        event(later_ts, Some("future"), "u", "m", 10, 5, 7),
    ]);
    assert_eq!(common::write(&store, &batch).await.inserted, 3);
    let parts = store.partitions().await.unwrap();
    assert_eq!(
        parts.len(),
        4,
        "a batch creates the partitions its months need: {parts:?}"
    );
    for ts in [old_ts, now, later_ts] {
        assert!(
            parts.iter().any(|(_, a, b)| *a <= ts && ts < *b),
            "{ts} has a partition"
        );
    }
    let old_window = window(old_ts - HOUR_MS, old_ts + HOUR_MS);
    let old_totals = store.summary(&old_window).await.unwrap();
    assert_eq!(
        (old_totals.requests, old_totals.cost),
        (1, Money::from_picos(1_234))
    );
    drop(store);

    // A gateway configured with 60 days of retention drops the old month as it opens.
    let store = open(&db, Some(60)).await;
    let parts = store.partitions().await.unwrap();
    assert_eq!(parts.len(), 3, "{parts:?}");
    assert!(!parts.iter().any(|(_, a, b)| *a <= old_ts && old_ts < *b));
    assert!(store
        .spend_logs(&old_window, 10, None)
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(store.spend_log(old.id).await.unwrap().is_none());
    assert_eq!(
        store.summary(&old_window).await.unwrap(),
        old_totals,
        "rollups outlive their spend logs"
    );
    let by_team = store
        .explorer(&window(old_ts - DAY_MS, later_ts + DAY_MS), GroupBy::Team)
        .await
        .unwrap();
    assert_eq!(
        by_team.iter().map(|r| r.totals.cost).sum::<Money>(),
        Money::from_picos(1_234 + 99 + 7)
    );
    // Replaying the batch counts nothing twice: the dropped month's event is not written again.
    let again = store.write_batch(batch).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 3));
    assert_eq!(store.summary(&old_window).await.unwrap(), old_totals);
    assert_eq!(
        store.partitions().await.unwrap().len(),
        3,
        "no partition comes back for a dropped month"
    );
    assert!(store.drop_expired_partitions(now).await.unwrap().is_empty());
}

#[tokio::test]
async fn several_writers_intern_the_same_labels_and_count_every_event_once() {
    let Some(db) = scratch().await else { return };
    let stores: Vec<Arc<PostgresStore>> = vec![
        Arc::new(open(&db, None).await),
        Arc::new(open(&db, None).await),
    ];
    let now = now_ms();
    let batches: Vec<Vec<_>> = (0..6i64)
        .map(|b| {
            (0..500i64)
                .map(|i| {
                    let team = ["red", "blue", "green"][usize::try_from(i % 3).unwrap()];
                    event(
                        now - i * 7_000,
                        Some(team),
                        &format!("user{}", i % 11),
                        "m",
                        3,
                        4,
                        i128::from(b * 1_000 + i),
                    )
                })
                .collect()
        })
        .collect();
    let expected: Money = batches.iter().flatten().map(|e| e.cost).sum();
    let mut tasks = Vec::new();
    for (i, b) in batches.into_iter().enumerate() {
        let store = Arc::clone(&stores[i % 2]);
        let b = Arc::new(b);
        // Each batch is written by both stores at once: one of them inserts it, the other finds duplicates.
        let other = Arc::clone(&stores[(i + 1) % 2]);
        let b2 = Arc::clone(&b);
        tasks.push(tokio::spawn(async move { store.write_batch(b).await }));
        tasks.push(tokio::spawn(async move { other.write_batch(b2).await }));
    }
    let mut inserted = 0;
    for t in tasks {
        inserted += t.await.unwrap().unwrap().inserted;
    }
    assert_eq!(inserted, 3_000);
    let f = window(now - DAY_MS, now + HOUR_MS);
    for store in &stores {
        let total = store.summary(&f).await.unwrap();
        assert_eq!((total.requests, total.cost), (3_000, expected));
        let teams = store.explorer(&f, GroupBy::Team).await.unwrap();
        assert_eq!(teams.len(), 3);
        let users = store.explorer(&f, GroupBy::User).await.unwrap();
        assert_eq!(
            users.len(),
            11,
            "each name has one label whoever interned it"
        );
    }
}

#[tokio::test]
async fn a_store_reconnects_after_the_server_drops_its_connections() {
    let Some(db) = scratch().await else { return };
    let store = open(&db, None).await;
    let now = now_ms();
    let f = window(now - HOUR_MS, now + HOUR_MS);
    let first = Arc::new(vec![event(now, Some("t"), "u", "m", 1, 1, 11)]);
    assert_eq!(common::write(&store, &first).await.inserted, 1);
    assert_eq!(store.summary(&f).await.unwrap().requests, 1);

    // The server ends every connection of this database, as a restart or a failover would.
    let (admin, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        killed >= 2,
        "the writer's and a reader's connections were ended ({killed})"
    );

    // The batching writer retries a failed batch; here the caller does, at most twice: the first attempt may
    // meet the dead connection, the next one reconnects. The event counts once either way.
    let second = Arc::new(vec![event(now, Some("t"), "u", "m", 1, 1, 22)]);
    let mut written = None;
    for _ in 0..2 {
        if let Ok(r) = store.write_batch(Arc::clone(&second)).await {
            written = Some(r);
            break;
        }
    }
    assert_eq!(written.map(|r| r.inserted), Some(1));
    // A read on a pooled connection that died fails once; that connection is discarded and the next read opens
    // a new one.
    let mut totals = store.summary(&f).await;
    if totals.is_err() {
        totals = store.summary(&f).await;
    }
    let totals = totals.unwrap();
    assert_eq!((totals.requests, totals.cost), (2, Money::from_picos(33)));
}

#[tokio::test]
async fn rate_limits_round_trip_and_their_leases_share_the_limit() {
    let Some(db) = scratch().await else { return };
    let store = open(&db, None).await;
    common::rate_limits_round_trip_and_their_leases_share_the_limit(&store).await;
}
