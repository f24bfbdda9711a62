//! The SQLite backend against a real database file: the shared store checks (`common`), each on a fresh file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use spendgate_store::sqlite::SqliteOptions;
use spendgate_store::{SqliteStore, Store};

fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    (dir, store)
}

#[tokio::test]
async fn a_large_batch_repeating_stored_events_adds_only_the_new_ones() {
    let (_dir, store) = open();
    common::pairs::a_large_batch_repeating_stored_events_adds_only_the_new_ones(&store).await;
}

#[tokio::test]
async fn spend_logs_read_back_as_written() {
    let (_dir, store) = open();
    common::logs::spend_logs_read_back_as_written(&store).await;
}

/// The migrations up to the last one these tests revert (`LOG_KEY`), and what the ones after it added.
const MIGRATIONS_UNDER_TEST: i64 = 12;
const LATER_UNDO: &str =
    "DROP TABLE control_epoch; DROP TABLE control_acks; ALTER TABLE keys DROP COLUMN expires_at_ms;
     DROP TABLE rate_limits; DROP TABLE refusals; DROP TABLE rollup_refusal_minute; DROP TABLE rollup_refusal_hour;
     DROP TABLE rollup_refusal_day; ALTER TABLE viewer_tokens DROP COLUMN expires_at_ms;";
/// How many migrations `LATER_UNDO` reverts.
const LATER_MIGRATIONS: i64 = 5;

/// Turns the closed store in `dir` into one of an earlier version (`undo` reverts what the last `versions`
/// migrations did) and opens it, which runs those migrations again.
fn reopen_as_older(dir: &std::path::Path, undo: &str, versions: i64) -> SqliteStore {
    let conn = rusqlite::Connection::open(dir.join("spendgate.db")).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(
        version,
        MIGRATIONS_UNDER_TEST + LATER_MIGRATIONS,
        "a new migration: add what it creates to LATER_UNDO"
    );
    // Migrations added after the ones a test reverts are reverted too (they only add tables of their own).
    conn.execute_batch(LATER_UNDO).unwrap();
    conn.execute_batch(undo).unwrap();
    conn.pragma_update(None, "user_version", MIGRATIONS_UNDER_TEST - versions)
        .unwrap();
    drop(conn);
    SqliteStore::open(dir, SqliteOptions::default()).unwrap()
}

#[tokio::test]
async fn spend_logs_are_found_by_id_wherever_their_time_lies() {
    let (_dir, store) = open();
    common::logs::spend_logs_are_found_by_id_wherever_their_time_lies(&store).await;
}

/// A store whose spend log was kept once by its id alone (a unique index on `event_id`, the time index on
/// `ts_ms`) is rebuilt when it opens: every log is still there and found by its id, and events written again are
/// still stored once.
#[tokio::test]
async fn an_older_store_keeps_every_spend_log_once_after_its_rebuild() {
    let (dir, store) = open();
    let now = spendgate_core::time::now_ms();
    let events: Vec<_> = (0..50)
        .map(|i| common::event(now - i * 1_000, Some("t"), "u", "m", 1, 1, 10))
        .collect();
    store
        .write_batch(std::sync::Arc::new(events.clone()))
        .await
        .unwrap();
    drop(store);
    let store = reopen_as_older(
        dir.path(),
        "DROP INDEX spend_logs_ts; CREATE INDEX spend_logs_ts ON spend_logs (ts_ms);
         CREATE UNIQUE INDEX spend_logs_event_id ON spend_logs (event_id);",
        1,
    );
    let ids = stored_ids(&store).await;
    assert_eq!(ids.len(), events.len());
    for e in &events {
        assert!(ids.contains(&e.id));
        assert!(store.spend_log(e.id).await.unwrap().is_some());
    }
    let again = store
        .write_batch(std::sync::Arc::new(events))
        .await
        .unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 50));
    let conn = rusqlite::Connection::open(dir.path().join("spendgate.db")).unwrap();
    let mut indexes: Vec<(String, bool)> = conn
        .prepare("SELECT name, \"unique\" FROM pragma_index_list('spend_logs')")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    indexes.sort();
    assert_eq!(
        indexes,
        [
            ("spend_logs_team_ts".into(), false),
            ("spend_logs_ts".into(), true)
        ]
    );
}

#[tokio::test]
async fn refusals_are_kept_once_counted_and_listed() {
    let (_dir, store) = open();
    common::refusals::refusals_are_kept_once_counted_and_listed(&store).await;
}

#[tokio::test]
async fn refusals_past_their_retention_are_not_written() {
    let (_dir, store) = open();
    common::refusals::refusals_past_their_retention_are_not_written(&store).await;
}

#[tokio::test]
async fn a_stored_event_at_the_end_of_a_large_batch_leaves_the_rest_stored_once() {
    let (_dir, store) = open();
    common::logs::a_stored_event_at_the_end_of_a_large_batch_leaves_the_rest_stored_once(&store)
        .await;
}

#[tokio::test]
async fn writes_are_idempotent_and_rollups_match_spend_logs() {
    let (_dir, store) = open();
    common::writes_are_idempotent_and_rollups_match_spend_logs(&store).await;
}

#[tokio::test]
async fn unknown_filter_values_match_nothing_and_bad_cursors_are_rejected() {
    let (_dir, store) = open();
    common::unknown_filter_values_match_nothing_and_bad_cursors_are_rejected(&store).await;
}

#[tokio::test]
async fn repeated_requests_find_one_key_sending_one_fingerprint_many_times() {
    let (_dir, store) = open();
    common::repeated_requests_find_one_key_sending_one_fingerprint_many_times(&store).await;
}

#[tokio::test]
async fn wallet_charges_keep_the_ledger_equal_to_the_balance() {
    let (_dir, store) = open();
    common::wallet_charges_keep_the_ledger_equal_to_the_balance(&store).await;
}

#[tokio::test]
async fn controls_keys_and_audit_round_trip() {
    let (_dir, store) = open();
    common::controls_keys_and_audit_round_trip(&store).await;
}

#[tokio::test]
async fn leases_never_grant_more_than_is_left() {
    let (_dir, store) = open();
    common::leases_never_grant_more_than_is_left(&store).await;
}

#[tokio::test]
async fn windows_of_every_alignment_sum_exactly_the_events_inside() {
    let (_dir, store) = open();
    common::windows_of_every_alignment_sum_exactly_the_events_inside(&store).await;
}

#[tokio::test]
async fn views_of_one_provider_or_gateway_sum_exactly_the_events_inside() {
    let (_dir, store) = open();
    common::pairs::views_of_one_provider_or_gateway_sum_exactly_the_events_inside(&store).await;
}

/// A store written before the pair rollups existed gets them filled from its all-dimension rollups when it
/// opens: the same answers as a store that had them from the start.
#[tokio::test]
async fn an_older_store_gets_its_pair_rollups_filled_when_it_opens() {
    let (dir, store) = open();
    let events = common::pairs::provider_and_gateway_events();
    common::pairs::write_in_two_batches(&store, &events).await;
    drop(store);
    // A store of the version before the pair rollups: no pair tables, and the model index without measures. The
    // last three migrations (`PAIR_MIGRATION`, `MODEL_HOUR_INDEX`, `LOG_KEY`) then run when it opens.
    let store = reopen_as_older(
        dir.path(),
        "DROP TABLE rollup_pair_hour; DROP TABLE rollup_pair_day; DROP INDEX rollup_hour_model;
         CREATE INDEX rollup_hour_model ON rollup_hour (model_id, bucket);",
        3,
    );
    common::pairs::check_views_of_one_provider_or_gateway(&store, &events).await;
}

#[tokio::test]
async fn kept_answers_for_past_days_follow_every_write() {
    let (_dir, store) = open();
    common::kept_answers_for_past_days_follow_every_write(&store).await;
}

/// Every spend log id in the store.
async fn stored_ids(store: &dyn spendgate_store::Store) -> std::collections::HashSet<uuid::Uuid> {
    let f = common::window(0, i64::MAX / 2);
    let mut ids = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.spend_logs(&f, 500, cursor.as_deref()).await.unwrap();
        ids.extend(page.items.iter().map(|l| l.event.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return ids,
        }
    }
}

/// Both ways of journaling (each request writing its own event, or a thread writing groups with a disk flush):
/// once an event is acknowledged it is in the journal or in the store at every moment, segments rotate and are
/// deleted only behind the store, and after shutdown the store has every event, the journal is empty and takes
/// nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_are_always_in_the_journal_or_the_store() {
    use spendgate_store::journal::{read_leftovers, JournalConfig, SyncMode};
    use spendgate_store::{spawn_writer, Store, WriterConfig};
    use std::sync::Arc;

    for sync in [SyncMode::Write, SyncMode::Fsync] {
        let (dir, store) = open();
        let store: Arc<dyn Store> = Arc::new(store);
        let journal_dir = dir.path().join("journal");
        let config = JournalConfig {
            sync,
            // Small segments, so that a few hundred events fill several.
            segment_bytes: 8 << 10,
            ..JournalConfig::new(journal_dir.clone())
        };
        let (writer, handle) =
            spawn_writer(Arc::clone(&store), WriterConfig::default(), Some(config)).unwrap();
        let now = spendgate_core::time::now_ms();
        let mut acked = Vec::new();
        for round in 0..6i64 {
            let events: Vec<_> = (0..100)
                .map(|i| common::event(now - round * 100 - i, Some("t"), "u", "m", 1, 1, 10))
                .collect();
            let acks: Vec<_> = events.iter().map(|e| writer.record(e.clone())).collect();
            for ack in acks {
                assert!(ack.await, "{sync:?}: an event was not acknowledged");
            }
            acked.extend(events.iter().map(|e| e.id));
            // The journal first, then the store: an event committed (and its segment deleted) between the two
            // reads is found by the second. A segment deleted while it is being listed fails the read; read again.
            let journaled = loop {
                if let Ok((events, _)) = read_leftovers(&journal_dir) {
                    break events;
                }
            };
            let mut found = stored_ids(&*store).await;
            found.extend(journaled.iter().map(|e| e.id));
            let missing = acked.iter().filter(|id| !found.contains(id)).count();
            assert_eq!(missing, 0, "{sync:?}: acknowledged events in neither place");
        }
        handle.shutdown().await;
        // After shutdown nothing is journaled: an event written now could be deleted with the journal without ever
        // reaching the store, so it is refused (its request logs that).
        let late = common::event(now, Some("t"), "u", "m", 1, 1, 10);
        assert!(
            !writer.record(late).await,
            "{sync:?}: an event was taken after shutdown"
        );
        assert_eq!(stored_ids(&*store).await.len(), acked.len(), "{sync:?}");
        let (left, files) = read_leftovers(&journal_dir).unwrap();
        assert!(
            left.is_empty() && files.is_empty(),
            "{sync:?}: {} files left",
            files.len()
        );
    }
}

/// With the writer's checkpoints handed to the checkpointer, WAL pages still reach the database file: once more
/// than `CHECKPOINT_PAGES` (~16 MB) of WAL is written, the file grows, although the writer itself only
/// checkpoints at ~256 MB. It fails if the checkpointer never copies (tried: a thread that ignores its wake-ups).
/// It does not tell which thread made the checkpoint, nor how often one is asked for.
#[tokio::test]
async fn the_wal_reaches_the_database_file_through_the_checkpointer() {
    let (dir, store) = open();
    let db = dir.path().join("spendgate.db");
    let empty = std::fs::metadata(&db).unwrap().len();
    // About 24 MB of WAL: a long error keeps each spend log's detail near 2 KB.
    let long_error = "e".repeat(2_000);
    let now = spendgate_core::time::now_ms();
    for round in 0..6 {
        let batch: Vec<_> = (0..2_000)
            .map(|i| {
                let mut e = common::event(now - round * 1_000 - i, Some("t"), "u", "m", 10, 5, 1);
                e.error = Some(long_error.clone());
                e
            })
            .collect();
        store.write_batch(std::sync::Arc::new(batch)).await.unwrap();
    }
    let t0 = std::time::Instant::now();
    loop {
        let len = std::fs::metadata(&db).unwrap().len();
        if len > empty + 8_000_000 {
            break;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "no checkpoint copied the WAL: the database file is still {len} bytes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Counts the error and warning events logged on the thread it is set on.
#[derive(Clone, Default)]
struct LogCount(std::sync::Arc<[std::sync::atomic::AtomicUsize; 2]>);

impl LogCount {
    fn errors_and_warnings(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.0[0].load(Relaxed), self.0[1].load(Relaxed))
    }
}

impl tracing::Subscriber for LogCount {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let slot = match *event.metadata().level() {
            tracing::Level::ERROR => 0,
            tracing::Level::WARN => 1,
            _ => return,
        };
        self.0[slot].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A journal that cannot be written (here its directory is a file; a full or read-only disk fails alike) logs its
/// first failure and then its recovery, not one line per request, and the events reach the store meanwhile.
/// Each request writes its own event to the journal, on the test's one thread, where the log is counted.
#[tokio::test]
async fn a_journal_that_cannot_be_written_logs_once_until_it_recovers() {
    let (dir, store) = open();
    let (store, journal_dir, writer, handle) = journaled(dir.path(), store);
    std::fs::remove_dir_all(&journal_dir).unwrap();
    std::fs::write(&journal_dir, b"not a directory").unwrap();
    let logs = LogCount::default();
    let guard = tracing::subscriber::set_default(logs.clone());
    let now = spendgate_core::time::now_ms();
    let event = |i: i64| common::event(now - i, Some("t"), "u", "m", 1, 1, 10);
    for i in 0..20 {
        assert!(writer.record(event(i)).await, "event {i} was refused");
    }
    assert_eq!(logs.errors_and_warnings(), (1, 0), "20 failed writes");
    std::fs::remove_file(&journal_dir).unwrap();
    std::fs::create_dir(&journal_dir).unwrap();
    for i in 20..25 {
        assert!(writer.record(event(i)).await, "event {i} was refused");
    }
    assert_eq!(logs.errors_and_warnings(), (1, 1), "the recovery");
    drop(guard);
    handle.shutdown().await;
    assert_eq!(stored_ids(&*store).await.len(), 25);
}

/// After a write fails on an open segment, the journal writes on in a new segment. A write that failed partway
/// (a disk filling up) leaves a torn record, and a reader would have to look past it for what came after. Here the segment is `/dev/full`, where every write fails, so the test shows which file the next write
/// goes to.
#[tokio::test]
async fn a_failed_journal_write_closes_its_segment() {
    use spendgate_store::journal::read_leftovers;

    if !std::path::Path::new("/dev/full").exists() {
        eprintln!("skipped: this machine has no /dev/full to make a journal write fail");
        return;
    }
    let (dir, store) = open();
    let (store, journal_dir, writer, handle) = journaled(dir.path(), store);
    // The journal starts with an empty directory, so its first segment is number 0.
    let full = journal_dir.join("segment-000000000000.rec");
    std::os::unix::fs::symlink("/dev/full", &full).unwrap();
    let logs = LogCount::default();
    let guard = tracing::subscriber::set_default(logs.clone());
    let now = spendgate_core::time::now_ms();
    let first = common::event(now, Some("t"), "u", "m", 1, 1, 10);
    let second = common::event(now - 1, Some("t"), "u", "m", 1, 1, 10);
    assert!(writer.record(first).await);
    assert_eq!(logs.errors_and_warnings(), (1, 0), "the failed write");
    assert!(writer.record(second.clone()).await);
    assert_eq!(logs.errors_and_warnings(), (1, 1), "the next write worked");
    drop(guard);
    // Reading /dev/full never ends, so the link goes before the journal is read (unless the journal has
    // already deleted it: the store holds everything written before it).
    let _ = std::fs::remove_file(&full);
    let (journaled, _) = read_leftovers(&journal_dir).unwrap();
    let ids: Vec<_> = journaled.iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        vec![second.id],
        "the second event, in a segment of its own"
    );
    handle.shutdown().await;
    assert_eq!(stored_ids(&*store).await.len(), 2);
}

/// The writer waits `flush_interval` after a batch's first event, but not once a whole batch is waiting: with
/// an interval of an hour, batches of three are written as soon as they fill, whether events come straight from
/// the requests or through the journal, and each event is written once.
#[tokio::test]
async fn a_full_batch_is_written_without_waiting_for_the_interval() {
    use spendgate_store::journal::JournalConfig;
    use spendgate_store::{spawn_writer, Store, WriterConfig};
    use std::sync::Arc;
    use std::time::Duration;

    for journaled in [false, true] {
        let (dir, store) = open();
        let store: Arc<dyn Store> = Arc::new(store);
        let config = WriterConfig {
            max_batch: 3,
            flush_interval: Duration::from_secs(3600),
            ..WriterConfig::default()
        };
        let journal = journaled.then(|| JournalConfig::new(dir.path().join("journal")));
        let (writer, handle) = spawn_writer(Arc::clone(&store), config, journal).unwrap();
        let mut committed = writer.subscribe();
        let now = spendgate_core::time::now_ms();
        let event = |i: i64| common::event(now - i, Some("t"), "u", "m", 1, 1, 10);
        assert!(writer.record(event(0)).await);
        // On this single-threaded runtime the writer runs now: it takes the first event alone and starts its
        // interval, so the next events arrive while it waits (sent all at once, they would fill its first take).
        tokio::task::yield_now().await;
        for i in 1..9 {
            assert!(writer.record(event(i)).await);
        }
        // Nine events make three full batches. A writer that waited for the interval would not commit within
        // the guard, which is there only to fail instead of hanging.
        let mut written = 0;
        while written < 9 {
            let notice = tokio::time::timeout(Duration::from_secs(60), committed.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("journaled={journaled}: full batches waited for the interval")
                })
                .unwrap();
            assert!(notice.events <= 3, "a batch larger than max_batch");
            written += notice.events;
        }
        assert_eq!(written, 9, "journaled={journaled}");
        assert_eq!(stored_ids(&*store).await.len(), 9, "journaled={journaled}");
        handle.shutdown().await;
    }
}

#[tokio::test]
async fn rate_limits_round_trip_and_their_leases_share_the_limit() {
    let (_dir, store) = open();
    common::rate_limits_round_trip_and_their_leases_share_the_limit(&store).await;
}

/// Events of the last minutes from three keys: loops of two fingerprints, scattered singles, another team.
fn recent_traffic(now: i64) -> Vec<spendgate_core::SpendEvent> {
    let mut events = Vec::new();
    for i in 0..300i64 {
        let key = 1 + i % 3;
        let mut e = common::event(
            now - 240_000 + i * 700,
            (key != 3).then_some("support"),
            "bot",
            "m",
            10,
            1,
            5 + i128::from(i % 7),
        );
        e.attribution.key_id = key;
        // Key 1 loops on one request, key 2 on two alternately, key 3 never repeats.
        e.fingerprint = Some(match key {
            1 => 11,
            2 => 20 + u64::try_from(i % 2).unwrap(),
            _ => 1_000 + u64::try_from(i).unwrap(),
        });
        if i == 297 {
            e.attribution.workflow = Some("triage".into());
        }
        events.push(e);
    }
    events
}

#[tokio::test]
async fn the_writers_request_counts_agree_with_the_spend_logs_grouped_by_key_and_fingerprint() {
    use spendgate_store::repeats::Repeats;
    let (_dir, store) = open();
    let now = spendgate_core::time::now_ms();
    let events = recent_traffic(now);
    let repeats = Repeats::new(5 * 60_000);
    for e in &events {
        repeats.note(e);
    }
    store
        .write_batch(std::sync::Arc::new(events))
        .await
        .unwrap();
    let since = now - 5 * 60_000;
    for min in [2, 20, 60] {
        // The store leaves the order of equal counts open.
        let by_key = |mut rows: Vec<spendgate_core::anomaly::RepeatedRequest>| {
            rows.sort_by_key(|r| (r.key_id, r.fingerprint));
            rows
        };
        let from_logs = by_key(store.repeated_requests(since, min).await.unwrap());
        let counted = by_key(repeats.repeated(since, min));
        assert_eq!(counted, from_logs, "at least {min} repeats");
    }
    let rows = repeats.repeated(since, 20);
    assert_eq!(
        rows.iter()
            .map(|r| (r.key_id, r.fingerprint, r.requests))
            .collect::<Vec<_>>(),
        [(1, 11, 100), (2, 20, 50), (2, 21, 50)]
    );
    // The latest request's names: key 1's last one carried a workflow.
    assert_eq!(rows[0].workflow.as_deref(), Some("triage"));
    assert_eq!(rows[0].team.as_deref(), Some("support"));
}

#[test]
fn request_counts_forget_what_left_the_window_and_stay_bounded_under_a_flood_of_distinct_requests()
{
    use spendgate_store::repeats::{Repeats, MAX_PER_SLICE};
    let window = 5 * 60_000;
    let repeats = Repeats::new(window);
    let now = spendgate_core::time::now_ms();
    let at = |ts: i64, key: i64, fingerprint: u64| {
        let mut e = common::event(ts, Some("t"), "u", "m", 1, 1, 1);
        e.attribution.key_id = key;
        e.fingerprint = Some(fingerprint);
        e
    };
    // A loop ten minutes ago, then a flood of distinct requests (three times what one slice keeps) with a new
    // loop woven through it.
    for i in 0..30 {
        repeats.note(&at(now - 2 * window + i, 9, 99));
    }
    let flood = 3 * MAX_PER_SLICE as i64;
    for i in 0..flood {
        let ts = now - 20_000 + i * 20_000 / flood;
        repeats.note(&at(ts, 1, 1_000_000 + u64::try_from(i).unwrap()));
        if i % 1_000 == 0 {
            repeats.note(&at(ts, 2, 42));
        }
    }
    let rows = repeats.repeated(now - window, 20);
    assert_eq!(
        rows.iter()
            .map(|r| (r.key_id, r.fingerprint, r.requests))
            .collect::<Vec<_>>(),
        [(2, 42, u64::try_from((flood - 1) / 1_000 + 1).unwrap())],
        "the old loop is forgotten and the new one counted whole"
    );
    // Memory follows the bound, not the flood: at most the slices of one window, each at most full.
    let slices = usize::try_from(spendgate_store::repeats::SLICES + 1).unwrap();
    assert!(
        repeats.len() <= slices * MAX_PER_SLICE,
        "{} counts",
        repeats.len()
    );
    assert!(repeats.len() < usize::try_from(flood).unwrap());
    // The requests seen once were forgotten to make room, so no new request went uncounted.
    assert_eq!(repeats.uncounted(), 0);
}

/// A store from before viewer tokens expired: its unrevoked tokens get the default lifetime (90 days) from the
/// upgrade, so that none stops working at once and none works forever.
#[tokio::test]
async fn viewer_tokens_made_before_expiry_existed_get_ninety_days_from_the_upgrade() {
    let (dir, store) = open();
    store
        .create_viewer_token([1; 32], "t".into(), "old".into(), None)
        .await
        .unwrap();
    drop(store);
    // Back to the version before the expiry column (the last migration so far: `reopen_as_older` checks the
    // count), then opened again.
    let conn = rusqlite::Connection::open(dir.path().join("spendgate.db")).unwrap();
    conn.execute_batch("ALTER TABLE viewer_tokens DROP COLUMN expires_at_ms;")
        .unwrap();
    conn.pragma_update(
        None,
        "user_version",
        MIGRATIONS_UNDER_TEST + LATER_MIGRATIONS - 1,
    )
    .unwrap();
    drop(conn);
    let before = spendgate_core::time::now_ms();
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    let after = spendgate_core::time::now_ms();
    let expires = store
        .viewer_by_hash([1; 32])
        .await
        .unwrap()
        .and_then(|v| v.expires_at_ms)
        .unwrap();
    let days_90 = 90 * spendgate_core::time::DAY_MS;
    // SQLite's clock is read in whole seconds.
    assert!(
        (before / 1000 * 1000 + days_90..=after + days_90).contains(&expires),
        "{expires} is not 90 days from the upgrade ({before}..{after})"
    );
}

/// A writer with a journal in `dir/journal`, in front of `store`.
fn journaled(
    dir: &std::path::Path,
    store: SqliteStore,
) -> (
    std::sync::Arc<dyn Store>,
    std::path::PathBuf,
    spendgate_store::SpendWriter,
    spendgate_store::WriterHandle,
) {
    use spendgate_store::journal::JournalConfig;
    use spendgate_store::{spawn_writer, WriterConfig};
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(store);
    let journal_dir = dir.join("journal");
    let (writer, handle) = spawn_writer(
        std::sync::Arc::clone(&store),
        WriterConfig::default(),
        Some(JournalConfig::new(journal_dir.clone())),
    )
    .unwrap();
    (store, journal_dir, writer, handle)
}

/// A refused request takes the spend events' way: into the journal, in order with them, and from a journal left
/// by a crash into the store, once however often it is replayed.
#[tokio::test]
async fn refusals_are_journaled_and_replayed_like_spend_events() {
    use spendgate_store::journal::{read_records, replay};
    use spendgate_store::{RefusalFilters, Store};
    use std::sync::Arc;

    let (dir, store) = open();
    let (store, journal_dir, writer, handle) = journaled(dir.path(), store);
    let now = spendgate_core::time::now_ms();
    let spend = common::event(now, Some("t"), "u", "m", 1, 1, 10);
    let refused =
        common::refusals::refusal(now, 1, Some("t"), spendgate_core::RefusalReason::Wallet);
    assert!(writer.record(spend.clone()).await);
    assert!(writer.record_refusal(refused.clone()).await);
    // The open segment is kept until it is large (a quiet gateway must not create a file per request), so both
    // are still in it, as after a crash: a spend event's line and a refusal's.
    let left = read_records(&journal_dir).unwrap();
    assert_eq!(left.events, vec![spend.clone()]);
    assert_eq!(left.refusals, vec![refused.clone()]);
    let f = RefusalFilters {
        filters: common::window(now - 60_000, now + 60_000),
        reason: None,
    };
    let listed = |s: Arc<dyn Store>| {
        let f = f.clone();
        async move {
            let page = s.refusals(&f, 10, None).await.unwrap();
            page.items
                .into_iter()
                .map(|i| i.refusal)
                .collect::<Vec<_>>()
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while listed(Arc::clone(&store)).await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the refusal never reached the store"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(listed(Arc::clone(&store)).await, vec![refused.clone()]);

    // Two copies of the journal as a crash would leave it (replay deletes what it replayed).
    let copies = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for copy in &copies {
        for f in &left.files {
            std::fs::copy(f, copy.path().join(f.file_name().unwrap())).unwrap();
        }
    }
    // Replayed into a store that never had them (the process died before its writer wrote them) ...
    let (_other_dir, other) = open();
    let other: Arc<dyn Store> = Arc::new(other);
    replay(&*other, copies[0].path()).await.unwrap();
    assert_eq!(listed(Arc::clone(&other)).await, vec![refused.clone()]);
    assert_eq!(
        stored_ids(&*other).await,
        std::collections::HashSet::from([spend.id])
    );
    // ... and into one that had them: counted once.
    handle.shutdown().await;
    replay(&*store, copies[1].path()).await.unwrap();
    assert_eq!(listed(Arc::clone(&store)).await, vec![refused]);
    let counts = store
        .refusal_counts(&f, Some(spendgate_store::RefusalGroup::Reason))
        .await
        .unwrap();
    assert_eq!(counts.iter().map(|c| c.refusals).sum::<u64>(), 1);
}
