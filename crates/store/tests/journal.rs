//! The journal's record format: what a journal holds reads back whole, a torn or damaged record costs only itself,
//! a record of an unknown version is skipped rather than misread, and a journal in the JSON format of earlier
//! builds is still replayed, once however often.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use spendgate_core::pricing::{PriceLine, Rate, TokenKind};
use spendgate_core::{
    CacheOutcome, FailedAttempt, Money, PricePerMtok, RefusalReason, RequestStatus, ServiceTier,
    SpendEvent,
};
use spendgate_store::journal::{read_records, replay, JournalConfig};
use spendgate_store::sqlite::SqliteOptions;
use spendgate_store::{spawn_writer, Record, SqliteStore, Store, WriterConfig};

/// An event with every optional field set and every field away from its default.
fn everything(now: i64) -> SpendEvent {
    let mut e = common::event(now, Some("team é\"\n"), "user ü", "gpt-4o", 1234, 567, 0);
    e.started_at_ms = now - 98_765;
    e.stream = true;
    e.attribution.key_id = -3;
    e.attribution.workflow = Some("(other)".into());
    e.attribution.workflow_requested = Some("nightly \u{1f600}".into());
    e.cache_outcome = CacheOutcome::Bypass;
    e.status = RequestStatus::ClientDisconnected;
    e.http_status = 499;
    e.usage.cached_input_tokens = 100;
    e.usage.cache_write_tokens = 50;
    e.usage.cache_write_1h_tokens = 20;
    e.usage.reasoning_tokens = 300;
    e.usage.audio_input_tokens = 7;
    e.usage.audio_output_tokens = 8;
    e.usage.web_search_calls = 2;
    e.usage.service_tier = ServiceTier::Priority;
    e.usage.provider_cost = Some(Money::from_picos(-17));
    e.usage_source = spendgate_core::UsageSource::Estimated;
    e.cost = Money::from_picos(-123_456_789_012_345);
    e.price_confidence = spendgate_core::PriceConfidence::Inferred;
    e.price_lines = vec![
        PriceLine {
            kind: TokenKind::CacheWrite1h,
            tokens: 20,
            price_per_mtok: PricePerMtok::from_micros(5_000_000),
            cost: Money::from_picos(100_000_000),
            rate: Rate::LongContext,
        },
        PriceLine::of(TokenKind::WebSearch, PricePerMtok::from_micros(1), &e.usage),
    ];
    e.error = Some("upstream said \"no\"".into());
    e.wallet_id = Some(9);
    e.fingerprint = Some(u64::MAX - 1);
    e.leases = vec![1, -2, i64::MAX];
    e.attempts = 3;
    e.failed_attempts = vec![FailedAttempt {
        provider: "openai".into(),
        model: "gpt-4o".into(),
        http_status: 503,
        error: "overloaded".into(),
    }];
    e.avoided_cost = Money::from_picos(42);
    e.upstream_api = Some("messages".into());
    e
}

/// Writes `records` through a journaled writer (with its own store in `dir`) and returns the journal's directory.
async fn journal_of(dir: &Path, records: &[Record]) -> PathBuf {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.join("store"), SqliteOptions::default()).unwrap());
    let journal_dir = dir.join("journal");
    let (writer, handle) = spawn_writer(
        store,
        WriterConfig::default(),
        Some(JournalConfig::new(journal_dir.clone())),
    )
    .unwrap();
    for r in records {
        let ok = match r {
            Record::Spend(e) => writer.record(e.clone()).await,
            Record::Refusal(r) => writer.record_refusal(r.clone()).await,
        };
        assert!(ok);
    }
    // The open segment stays until it holds 1 MB, so the records are all in it (the store has them too).
    drop(handle);
    journal_dir
}

fn only_segment(dir: &Path) -> PathBuf {
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().unwrap()
}

/// Where each record of a segment ends: a record is its payload's length (four bytes, little-endian), a
/// four-byte checksum and the payload.
fn ends(segment: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < segment.len() {
        let len = u32::from_le_bytes(segment[at..at + 4].try_into().unwrap()) as usize;
        at += 8 + len;
        out.push(at);
    }
    out
}

#[tokio::test]
async fn every_field_of_spend_events_and_refusals_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let now = spendgate_core::time::now_ms();
    let plain = common::event(now, None, "u", "m", 1, 1, 10);
    let full = everything(now);
    let known = common::refusals::refusal(now, 5, Some("t"), RefusalReason::Budget);
    let anonymous = common::refusals::refusal(now, 0, None, RefusalReason::Auth);
    let dir_j = journal_of(
        dir.path(),
        &[
            Record::Spend(plain.clone()),
            Record::Refusal(known.clone()),
            Record::Spend(full.clone()),
            Record::Refusal(anonymous.clone()),
        ],
    )
    .await;
    let left = read_records(&dir_j).unwrap();
    assert_eq!(left.events, vec![plain, full]);
    assert_eq!(left.refusals, vec![known, anonymous]);
}

/// A binary record is a fraction of the JSON line it replaces (about 800 bytes for the gateway's events).
#[tokio::test]
async fn a_record_is_far_smaller_than_its_json_line() {
    let dir = tempfile::tempdir().unwrap();
    let now = spendgate_core::time::now_ms();
    let mut e = common::event(now, Some("team-a"), "user-1", "gpt-4o-mini", 120, 40, 1_000);
    e.price_lines = vec![
        PriceLine::of(
            TokenKind::Input,
            PricePerMtok::from_micros(150_000),
            &e.usage,
        ),
        PriceLine::of(
            TokenKind::Output,
            PricePerMtok::from_micros(600_000),
            &e.usage,
        ),
    ];
    let json = serde_json::to_vec(&e).unwrap().len() + 1;
    let journal = journal_of(dir.path(), &[Record::Spend(e)]).await;
    let binary = std::fs::metadata(only_segment(&journal)).unwrap().len() as usize;
    println!("one event: {binary} bytes as a record, {json} as a JSON line");
    assert!(binary * 3 < json, "{binary} bytes against {json}");
}

/// A journal of `n` plain events in one segment: its directory's guard, the events, the journal's directory, the
/// segment and its bytes.
async fn segment_of(
    n: i64,
) -> (
    tempfile::TempDir,
    Vec<SpendEvent>,
    PathBuf,
    PathBuf,
    Vec<u8>,
) {
    let dir = tempfile::tempdir().unwrap();
    let now = spendgate_core::time::now_ms();
    let events: Vec<_> = (0..n)
        .map(|i| common::event(now - i, Some("t"), "u", "m", 1, 1, 10))
        .collect();
    let records: Vec<_> = events.iter().cloned().map(Record::Spend).collect();
    let journal = journal_of(dir.path(), &records).await;
    let segment = only_segment(&journal);
    let whole = std::fs::read(&segment).unwrap();
    (dir, events, journal, segment, whole)
}

/// A crash can cut the last record anywhere: every cut reads back the records before it, whole, and nothing of
/// the torn one.
#[tokio::test]
async fn a_torn_last_record_is_skipped_wherever_it_is_cut() {
    let (_dir, events, journal, segment, whole) = segment_of(3).await;
    let two = ends(&whole)[1];
    for cut in two..whole.len() {
        std::fs::write(&segment, &whole[..cut]).unwrap();
        let left = read_records(&journal).unwrap();
        assert_eq!(left.events, events[..2], "cut at byte {cut}");
    }
}

/// A damaged byte inside a record (not at the end) costs that record only: the reader finds the next one.
#[tokio::test]
async fn a_damaged_record_costs_only_itself() {
    let (_dir, events, journal, segment, whole) = segment_of(3).await;
    let ends = ends(&whole);
    // Every byte of the middle record in turn, its length and checksum included.
    for at in ends[0]..ends[1] {
        let mut damaged = whole.clone();
        damaged[at] ^= 0x5a;
        std::fs::write(&segment, &damaged).unwrap();
        let left = read_records(&journal).unwrap();
        assert_eq!(
            left.events,
            vec![events[0].clone(), events[2].clone()],
            "byte {at}"
        );
    }
}

/// A record of a version this build does not know checks (its checksum holds) but is not misread: it is
/// skipped, and the records after it read.
#[tokio::test]
async fn a_record_of_an_unknown_version_is_skipped() {
    let (_dir, events, journal, segment, whole) = segment_of(2).await;
    // A version 2 record before them: length, checksum over the length and the payload, payload.
    let payload = [2u8, 1, 0xde, 0xad, 0xbe, 0xef];
    let len = (payload.len() as u32).to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len);
    crc.update(&payload);
    let mut file = len.to_vec();
    file.extend_from_slice(&crc.finalize().to_le_bytes());
    file.extend_from_slice(&payload);
    file.extend_from_slice(&whole);
    std::fs::write(&segment, &file).unwrap();
    assert_eq!(read_records(&journal).unwrap().events, events);
}

/// The upgrade path: a journal left by a build that wrote JSON lines (a spend event's line, a refusal's
/// `{"refusal":...}` line and a torn last line), beside a newer binary segment, is replayed into the store in
/// full, and replaying it again counts nothing twice.
#[tokio::test]
async fn a_json_journal_of_an_earlier_build_is_replayed_once() {
    let dir = tempfile::tempdir().unwrap();
    let now = spendgate_core::time::now_ms();
    // Without a wallet and leases, which this store does not have.
    let mut old_event = everything(now - 5);
    old_event.wallet_id = None;
    old_event.leases.clear();
    let old_refusal = common::refusals::refusal(now - 4, 2, Some("t"), RefusalReason::Wallet);
    let new_event = common::event(now - 3, Some("t"), "u", "m", 1, 1, 10);
    let journal = journal_of(dir.path(), &[Record::Spend(new_event.clone())]).await;
    // Segment 0 was in use when the binary journal started; the old build's segment gets number 0 here and the
    // binary one is renamed after it, as a newer build numbers its segments after those it finds.
    let binary = only_segment(&journal);
    std::fs::rename(&binary, journal.join("segment-000000000001.rec")).unwrap();
    let mut old = serde_json::to_vec(&old_event).unwrap();
    old.push(b'\n');
    old.extend_from_slice(
        &serde_json::to_vec(&serde_json::json!({ "refusal": old_refusal })).unwrap(),
    );
    old.push(b'\n');
    old.extend_from_slice(b"{\"id\":\"0190");
    std::fs::write(journal.join("segment-000000000000.jsonl"), &old).unwrap();

    let left = read_records(&journal).unwrap();
    assert_eq!(left.events, vec![old_event.clone(), new_event.clone()]);
    assert_eq!(left.refusals, vec![old_refusal.clone()]);

    let copy = tempfile::tempdir().unwrap();
    for f in &left.files {
        std::fs::copy(f, copy.path().join(f.file_name().unwrap())).unwrap();
    }
    let store_dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(store_dir.path(), SqliteOptions::default()).unwrap();
    assert_eq!(replay(&store, &journal).await.unwrap(), (2, 0));
    assert!(std::fs::read_dir(&journal).unwrap().next().is_none());
    assert_eq!(replay(&store, copy.path()).await.unwrap(), (0, 2));
    let f = common::window(now - 60_000, now + 60_000);
    let logs = store.spend_logs(&f, 10, None).await.unwrap();
    let mut ids: Vec<_> = logs.items.iter().map(|l| l.event.id).collect();
    ids.sort();
    let mut want = vec![old_event.id, new_event.id];
    want.sort();
    assert_eq!(ids, want);
}
