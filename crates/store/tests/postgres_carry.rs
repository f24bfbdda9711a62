//! Rollups carried across batches on PostgreSQL (`postgres/carry.rs`): however the carried sums reach the
//! rollup tables (with a later batch, by a flush, refolded by the same writer after it lost its connection, or by
//! another writer after the first one stopped), the tables end up holding exactly the rows they hold when every
//! batch writes its own rollups, and the pending rows are gone. The server is `SPENDGATE_TEST_PG`; when it cannot
//! be reached each test says so on stderr and returns.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use std::sync::Arc;

use common::pg::scratch;
use common::{event, window};
use spendgate_core::time::{now_ms, DAY_MS, HOUR_MS};
use spendgate_core::{CacheOutcome, Money, RequestStatus, SpendEvent};
use spendgate_store::postgres::scratch::ScratchDatabase;
use spendgate_store::postgres::PostgresOptions;
use spendgate_store::{spawn_writer, PostgresStore, Store, WriterConfig};

/// The rollup tables, every kind and grain.
const ROLLUPS: [&str; 7] = [
    "rollup_minute",
    "rollup_hour",
    "rollup_day",
    "rollup_dim_hour",
    "rollup_dim_day",
    "rollup_pair_hour",
    "rollup_pair_day",
];

/// The key of the advisory locks writers hold on their ids (`carry.rs`, `LOCK_CLASS`).
const LOCK_CLASS: i64 = 0x5347_5243;

async fn open(db: &ScratchDatabase) -> PostgresStore {
    PostgresStore::connect(PostgresOptions::new(db.url()))
        .await
        .unwrap()
}

async fn admin(db: &ScratchDatabase) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// Four batches of 1,500 events over three days, with teams, the No team bucket, errors, cache hits and
/// workflows; the last batch repeats 200 events of the second (a replay), which must count once. Every batch
/// names every label, so two databases written in the same order give them the same ids.
fn batches() -> Vec<Arc<Vec<SpendEvent>>> {
    let now = now_ms();
    let mut all: Vec<Vec<SpendEvent>> = (0..4i64)
        .map(|b| {
            (0..1_500i64)
                .map(|i| {
                    let n = b * 1_500 + i;
                    let ts = now - (n * 43_201) % (3 * DAY_MS);
                    let team = [Some("search"), Some("support"), None][(n % 3) as usize];
                    let user = format!("u{}", n % 11);
                    let model = ["a", "b", "c"][(n % 5 % 3) as usize];
                    let mut e = event(
                        ts,
                        team,
                        &user,
                        model,
                        10 + n as u64,
                        3,
                        1_000 + i128::from(n),
                    );
                    e.attribution.key_id = 1 + n % 4;
                    e.attribution.workflow = (n % 2 == 0).then(|| "triage".to_string());
                    e.latency_ms = (n % 900) as u32;
                    e.usage.cached_input_tokens = (n % 7) as u64;
                    if n % 13 == 0 {
                        e.status = RequestStatus::UpstreamError;
                    }
                    if n % 5 == 0 {
                        e.cache_outcome = CacheOutcome::Hit;
                        e.avoided_cost = e.cost;
                        e.cost = Money::ZERO;
                    }
                    e
                })
                .collect()
        })
        .collect();
    let replayed: Vec<SpendEvent> = all[1][..200].to_vec();
    all[3].extend(replayed);
    all.into_iter().map(Arc::new).collect()
}

/// Each rollup table's rows, as text in key order.
async fn rollups(c: &tokio_postgres::Client) -> Vec<(String, i64, String)> {
    let mut out = Vec::new();
    for t in ROLLUPS {
        let r = c
            .query_one(
                &format!(
                    "SELECT count(*), coalesce(string_agg(t::text, ';' ORDER BY t::text), '') FROM {t} t"
                ),
                &[],
            )
            .await
            .unwrap();
        out.push((t.to_string(), r.get(0), r.get(1)));
    }
    out
}

async fn pending(c: &tokio_postgres::Client) -> i64 {
    c.query_one("SELECT count(*) FROM rollup_pending", &[])
        .await
        .unwrap()
        .get(0)
}

/// A database written batch by batch with `write_batch` (each batch its own rollups): what the others must match.
async fn reference(batches: &[Arc<Vec<SpendEvent>>]) -> Option<Vec<(String, i64, String)>> {
    let db = scratch().await?;
    let store = open(&db).await;
    for b in batches {
        store.write_batch(Arc::clone(b)).await.unwrap();
    }
    Some(rollups(&admin(&db).await).await)
}

fn assert_same(got: &[(String, i64, String)], want: &[(String, i64, String)]) {
    for ((table, n, rows), (_, m, expected)) in got.iter().zip(want) {
        assert_eq!(n, m, "{table}: rows");
        assert!(rows == expected, "{table}: the rows differ");
    }
    assert!(want.iter().all(|(_, n, _)| *n > 0));
}

/// Ends the connection of the writer holding a writer-id lock in this database, as a crash or a network cut
/// would, and returns once the server has ended it.
async fn end_writer_connection(c: &tokio_postgres::Client) {
    let ended: i64 = c
        .query_one(
            "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_locks
              WHERE locktype = 'advisory' AND classid = $1::bigint::oid
                AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[&LOCK_CLASS],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ended, 1, "one writer held a writer-id lock");
}

#[tokio::test]
async fn carried_rollups_are_written_once_with_a_later_batch_or_a_flush() {
    let b = batches();
    let Some(want) = reference(&b).await else {
        return;
    };
    let db = scratch().await.unwrap();
    let a = open(&db).await;
    let c = admin(&db).await;
    let everything = window(now_ms() - 4 * DAY_MS, now_ms() + HOUR_MS);
    a.write_batch_behind(Arc::clone(&b[0])).await.unwrap();
    a.write_batch_behind(Arc::clone(&b[1])).await.unwrap();
    // The spend logs are stored; their rollups wait in memory, each batch marked pending.
    assert_eq!(a.summary(&everything).await.unwrap().requests, 0);
    assert_eq!(pending(&c).await, 2);
    let logs: i64 = c
        .query_one("SELECT count(*) FROM spend_logs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(logs, 3_000);

    // A second writer starting meanwhile leaves the live writer's pending batches alone.
    let other = open(&db).await;
    assert_eq!(pending(&c).await, 2);
    drop(other);

    // A batch written while the writer is not behind writes the carry with its own rollups.
    a.write_batch(Arc::clone(&b[2])).await.unwrap();
    assert_eq!(pending(&c).await, 0);
    assert_eq!(a.summary(&everything).await.unwrap().requests, 4_500);

    // A replaying batch carried, then a flush; a second flush has nothing left to write.
    let r = a.write_batch_behind(Arc::clone(&b[3])).await.unwrap();
    assert_eq!((r.inserted, r.duplicates), (1_500, 200));
    assert_eq!(pending(&c).await, 1);
    assert!(a.flush_rollups().await.unwrap());
    assert!(!a.flush_rollups().await.unwrap());
    assert_eq!(pending(&c).await, 0);
    assert_same(&rollups(&c).await, &want);
    assert_eq!(a.retried_batches(), 0);
}

#[tokio::test]
async fn a_writer_gone_with_its_carry_has_its_batches_refolded_by_the_next() {
    let b = batches();
    let Some(want) = reference(&b).await else {
        return;
    };
    let db = scratch().await.unwrap();
    let c = admin(&db).await;
    let a = open(&db).await;
    for batch in &b[..3] {
        a.write_batch_behind(Arc::clone(batch)).await.unwrap();
    }
    assert_eq!(pending(&c).await, 3);
    // The process stops: its connection ends and its carry is gone with it.
    end_writer_connection(&c).await;
    drop(a);

    let next = open(&db).await;
    assert_eq!(pending(&c).await, 0, "refolded when the next writer opened");
    next.write_batch(Arc::clone(&b[3])).await.unwrap();
    assert_same(&rollups(&c).await, &want);
}

/// A writer whose connection ends while it carries rollups drops its carry and refolds its own pending batches
/// on its new connection; when another writer refolded them first, it counts them no more.
#[tokio::test]
async fn a_writer_that_loses_its_connection_refolds_its_carry_once() {
    let b = batches();
    let Some(want) = reference(&b).await else {
        return;
    };
    for another_writer_first in [false, true] {
        let db = scratch().await.unwrap();
        let c = admin(&db).await;
        let a = open(&db).await;
        a.write_batch_behind(Arc::clone(&b[0])).await.unwrap();
        a.write_batch_behind(Arc::clone(&b[1])).await.unwrap();
        end_writer_connection(&c).await;
        if another_writer_first {
            let other = open(&db).await;
            assert_eq!(
                pending(&c).await,
                0,
                "the lock of a lost connection is free"
            );
            drop(other);
        }
        // The first attempt may meet the dead connection; the writer retries a batch, as here.
        let mut written = None;
        for _ in 0..2 {
            if let Ok(r) = a.write_batch_behind(Arc::clone(&b[2])).await {
                written = Some(r.inserted);
                break;
            }
        }
        assert_eq!(written, Some(1_500));
        a.write_batch(Arc::clone(&b[3])).await.unwrap();
        assert_eq!(pending(&c).await, 0);
        assert_same(&rollups(&c).await, &want);
    }
}

/// Through the batching writer, every batch full and so written behind (the last one too): `SpendWriter::flush`
/// returns once the events and their rollups are written (an interval of a minute would leave the carry open
/// until long after), and the tables match batch-by-batch writing.
#[tokio::test]
async fn the_batching_writer_writes_what_the_store_carried_before_flush_returns() {
    let b = batches();
    let all: Vec<SpendEvent> = b[..3].iter().flat_map(|v| v.iter().cloned()).collect();
    let Some(want) = reference(&[Arc::new(all.clone())]).await else {
        return;
    };
    let db = scratch().await.unwrap();
    let c = admin(&db).await;
    let store: Arc<dyn Store> = Arc::new(open(&db).await);
    let config = WriterConfig {
        max_batch: 500,
        flush_events: 500,
        flush_interval: std::time::Duration::from_secs(60),
        ..WriterConfig::default()
    };
    let (writer, handle) = spawn_writer(Arc::clone(&store), config, None).unwrap();
    let expected: Money = all.iter().map(|e| e.cost).sum();
    for e in all {
        writer.record(e).await;
    }
    writer.flush().await;
    let everything = window(now_ms() - 4 * DAY_MS, now_ms() + HOUR_MS);
    let totals = store.summary(&everything).await.unwrap();
    assert_eq!((totals.requests, totals.cost), (4_500, expected));
    assert_eq!(pending(&c).await, 0);
    assert_eq!(writer.stats().snapshot().largest_batch, 500);
    handle.shutdown().await;
    assert_same(&rollups(&c).await, &want);
}

/// Two writers on one database at once, both carrying rollups of batches that share every rollup row: neither
/// deadlocks (each counts the transactions the server aborted), and the tables match the same batches written
/// one after another. The labels are interned by a first batch on both databases, so their ids agree.
#[tokio::test]
async fn two_writers_carrying_at_once_neither_deadlock_nor_miscount() {
    let (first, second) = (batches(), batches());
    let mut sequential = vec![Arc::clone(&first[0])];
    sequential.extend(first[1..].iter().cloned());
    sequential.extend(second.iter().cloned());
    let Some(want) = reference(&sequential).await else {
        return;
    };
    let db = scratch().await.unwrap();
    let c = admin(&db).await;
    let (a, b) = (Arc::new(open(&db).await), Arc::new(open(&db).await));
    a.write_batch(Arc::clone(&first[0])).await.unwrap();
    let run = |store: Arc<PostgresStore>, list: Vec<Arc<Vec<SpendEvent>>>| async move {
        let last = list.len() - 1;
        for (i, batch) in list.into_iter().enumerate() {
            if i < last {
                store.write_batch_behind(batch).await.unwrap();
            } else {
                store.write_batch(batch).await.unwrap();
            }
        }
    };
    tokio::join!(
        run(Arc::clone(&a), first[1..].to_vec()),
        run(Arc::clone(&b), second.to_vec())
    );
    assert_eq!((a.retried_batches(), b.retried_batches()), (0, 0));
    assert_eq!(pending(&c).await, 0);
    assert_same(&rollups(&c).await, &want);
}
