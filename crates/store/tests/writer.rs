//! The batching writer's bound on memory: when the store falls behind, records wait for room instead of the
//! queue growing, and every one of them is stored exactly once when the store catches up.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use spendgate_store::journal::JournalConfig;
use spendgate_store::sqlite::SqliteOptions;
use spendgate_store::{spawn_writer, SqliteStore, Store, WriterConfig};

/// A SQLite store whose database the returned connection holds the write lock of, as another process could: the
/// store cannot commit until the test lets go (`ROLLBACK`). Each attempt fails soon; the writer keeps its batch and
/// retries it.
fn locked_store() -> (tempfile::TempDir, Arc<dyn Store>, rusqlite::Connection) {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions {
        busy_timeout: Duration::from_millis(20),
        ..SqliteOptions::default()
    };
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path(), options).unwrap());
    let lock = rusqlite::Connection::open(dir.path().join("spendgate.db")).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    (dir, store, lock)
}

/// A store that cannot commit (the test holds the database's write lock from a connection of its own, as
/// another process could) while 600 requests record their events, with room in the writer's queue for about a
/// hundred. The queue's bytes never pass the bound: the rest wait for room, their acknowledgements pending. Once
/// the lock is let go, every acknowledgement resolves, and the store holds every event once: 600 spend logs and
/// 600 requests in the rollups. With and without the journal in front of the writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_falls_behind_makes_records_wait_for_room_and_loses_none() {
    const EVENTS: i64 = 600;
    const BOUND: usize = 64 << 10;
    for journaled in [false, true] {
        let (dir, store, lock) = locked_store();

        let config = WriterConfig {
            max_queue_bytes: BOUND,
            // Long enough never to pass while the test runs: nothing is queued over the bound.
            max_wait: Duration::from_secs(3600),
            flush_interval: Duration::from_millis(5),
            ..WriterConfig::default()
        };
        let journal = journaled.then(|| JournalConfig::new(dir.path().join("journal")));
        let (writer, handle) = spawn_writer(Arc::clone(&store), config, journal).unwrap();
        let now = spendgate_core::time::now_ms();
        let events: Vec<_> = (0..EVENTS)
            .map(|i| common::event(now - i, Some("t"), "u", "m", 3, 2, 10))
            .collect();
        let mut acks = tokio::task::JoinSet::new();
        for e in &events {
            let ack = writer.record(e.clone());
            acks.spawn(ack);
        }
        // Every record is queued or waiting now; none can leave the queue while the lock is held.
        let room = writer.stats().snapshot().room;
        assert!(
            room.peak_bytes <= BOUND as u64,
            "journaled {journaled}: {room:?}"
        );
        assert!(room.waited > 0, "journaled {journaled}: nothing waited");
        let mut resolved = 0;
        while let Some(done) = acks.try_join_next() {
            assert!(done.unwrap());
            resolved += 1;
        }
        assert!(
            resolved < EVENTS,
            "journaled {journaled}: every record was acknowledged while the store could not commit"
        );

        lock.execute_batch("ROLLBACK").unwrap();
        while let Some(done) = acks.join_next().await {
            assert!(done.unwrap(), "journaled {journaled}: a record was refused");
        }
        handle.shutdown().await;
        let room = writer.stats().snapshot().room;
        assert!(
            room.peak_bytes <= BOUND as u64,
            "journaled {journaled}: {room:?}"
        );
        assert_eq!(room.over_bound, 0);
        assert_eq!(room.queued_bytes, 0, "journaled {journaled}: {room:?}");
        // What waited went to the store together: the queue state tells how large a backlog's batches grew.
        let largest = writer.stats().snapshot().largest_batch;
        assert!(
            largest > 1 && largest <= EVENTS as u64,
            "journaled {journaled}: largest batch {largest}"
        );

        let window = common::window(now - 60_000, now + 60_000);
        let totals = store.summary(&window).await.unwrap();
        assert_eq!(totals.requests, EVENTS as u64, "journaled {journaled}");
        let mut ids = std::collections::HashSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = store
                .spend_logs(&window, 500, cursor.as_deref())
                .await
                .unwrap();
            ids.extend(page.items.iter().map(|l| l.event.id));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(ids.len(), EVENTS as usize, "journaled {journaled}");
        assert!(events.iter().all(|e| ids.contains(&e.id)));
    }
}

/// A record that waits for room longer than `max_wait` is queued over the bound, so that a store that stays down
/// does not hold answers back for as long as it is down; it is counted, and still stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_waits_too_long_is_queued_over_the_bound() {
    let (_dir, store, lock) = locked_store();
    let config = WriterConfig {
        // Room for one event.
        max_queue_bytes: 1_000,
        max_wait: Duration::from_millis(1),
        flush_interval: Duration::from_millis(5),
        ..WriterConfig::default()
    };
    let (writer, handle) = spawn_writer(Arc::clone(&store), config, None).unwrap();
    let now = spendgate_core::time::now_ms();
    let events: Vec<_> = (0..3)
        .map(|i| common::event(now - i, Some("t"), "u", "m", 3, 2, 10))
        .collect();
    // The first takes the room; the others wait for it in vain, then are queued over the bound.
    for e in &events {
        assert!(writer.record(e.clone()).await);
    }
    let room = writer.stats().snapshot().room;
    assert_eq!(room.over_bound, 2, "{room:?}");
    assert!(room.queued_bytes > room.bound_bytes, "{room:?}");
    lock.execute_batch("ROLLBACK").unwrap();
    handle.shutdown().await;
    let totals = store
        .summary(&common::window(now - 60_000, now + 60_000))
        .await
        .unwrap();
    assert_eq!(totals.requests, 3);
    assert_eq!(writer.stats().snapshot().room.queued_bytes, 0);
}

/// `flush` writes what waits at once, however long the interval: a replica calls it before it reads the spend of
/// a control another replica changed, so that its own recent spend counts.
#[tokio::test]
async fn flush_stores_what_was_recorded_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap());
    let config = WriterConfig {
        flush_interval: Duration::from_secs(3600),
        ..WriterConfig::default()
    };
    let (writer, handle) = spawn_writer(Arc::clone(&store), config, None).unwrap();
    let now = spendgate_core::time::now_ms();
    let window = common::window(now - 60_000, now + 60_000);
    for i in 0..3 {
        assert!(
            writer
                .record(common::event(now - i, Some("t"), "u", "m", 3, 2, 10))
                .await
        );
        writer.flush().await;
        assert_eq!(store.summary(&window).await.unwrap().requests, i as u64 + 1);
    }
    handle.shutdown().await;
}

/// A journaled writer that commits every `flush` while a page listens, and may hold a batch for an hour otherwise.
fn quiet_writer(
    flush: Duration,
) -> (
    tempfile::TempDir,
    Arc<dyn Store>,
    spendgate_store::SpendWriter,
    spendgate_store::WriterHandle,
) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap());
    let config = WriterConfig {
        flush_interval: flush,
        quiet_interval: Some(Duration::from_secs(3600)),
        ..WriterConfig::default()
    };
    let journal = JournalConfig::new(dir.path().join("journal"));
    let (writer, handle) = spawn_writer(Arc::clone(&store), config, Some(journal)).unwrap();
    (dir, store, writer, handle)
}

/// A writer that may hold its batch for an hour while nobody watches (`quiet_interval`) still answers every
/// reader as if it committed every `flush_interval`: `freshen` has an event that finished longer ago than that
/// written before it returns, so the store counts it at once; an event younger than that is left waiting (the
/// reader may not see it yet, as with a commit every `flush_interval`).
#[tokio::test]
async fn a_quiet_writer_stores_what_a_reader_must_see_before_it_reads() {
    let (_dir, store, writer, handle) = quiet_writer(Duration::from_millis(200));
    let now = spendgate_core::time::now_ms();
    let window = common::window(now - 3_600_000, now + 3_600_000);
    // Finished a minute ago: any reader must see it.
    assert!(
        writer
            .record(common::event(now - 60_000, Some("t"), "u", "m", 3, 2, 10))
            .await
    );
    // The writer takes it from its queue on its own time; until then nothing is known to wait.
    while writer.stats().snapshot().oldest_pending_age_ms == 0 {
        tokio::task::yield_now().await;
    }
    writer.freshen().await;
    assert_eq!(store.summary(&window).await.unwrap().requests, 1);
    assert_eq!(writer.stats().snapshot().pending, 0);

    // Finishing later than now (a clock a little ahead): no reader need see it yet, and freshen leaves it to the
    // writer, whether or not the writer has taken it from its queue.
    assert!(
        writer
            .record(common::event(now + 600_000, Some("t"), "u", "m", 3, 2, 10))
            .await
    );
    writer.freshen().await;
    assert_eq!(writer.stats().snapshot().pending, 1);
    assert_eq!(store.summary(&window).await.unwrap().requests, 1);
    writer.flush().await;
    assert_eq!(store.summary(&window).await.unwrap().requests, 2);
    handle.shutdown().await;
}

/// While a page listens for commit notices, a quiet writer commits every `flush_interval` as usual, with no reader
/// asking: the live pages refresh on those notices. (Without the listener, the event would wait an hour.)
#[tokio::test]
async fn a_quiet_writer_commits_at_the_usual_pace_while_a_page_listens() {
    let (_dir, store, writer, handle) = quiet_writer(Duration::from_millis(50));
    let mut notices = writer.subscribe();
    let now = spendgate_core::time::now_ms();
    assert!(
        writer
            .record(common::event(now, Some("t"), "u", "m", 3, 2, 10))
            .await
    );
    // A generous bound only against hanging forever: the notice comes after about 50 ms.
    let notice = tokio::time::timeout(Duration::from_secs(600), notices.recv())
        .await
        .expect("no commit while a page listened")
        .unwrap();
    assert_eq!(notice.events, 1);
    let window = common::window(now - 60_000, now + 60_000);
    assert_eq!(store.summary(&window).await.unwrap().requests, 1);
    handle.shutdown().await;
}
