//! The SQLite backend against a real database file: the shared store checks (`common`), each on a fresh file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use spendgate_store::sqlite::SqliteOptions;
use spendgate_store::SqliteStore;

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
    let conn = rusqlite::Connection::open(dir.path().join("spendgate.db")).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    // A store of the version before the pair rollups: no pair tables, and the model index without measures. The
    // last two migrations (`PAIR_MIGRATION`, `MODEL_HOUR_INDEX`) then run when it opens.
    conn.execute_batch(
        "DROP TABLE rollup_pair_hour; DROP TABLE rollup_pair_day; DROP INDEX rollup_hour_model;
         CREATE INDEX rollup_hour_model ON rollup_hour (model_id, bucket);",
    )
    .unwrap();
    conn.pragma_update(None, "user_version", version - 2)
        .unwrap();
    drop(conn);
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    common::pairs::check_views_of_one_provider_or_gateway(&store, &events).await;
}

#[tokio::test]
async fn kept_answers_for_past_days_follow_every_write() {
    let (_dir, store) = open();
    common::kept_answers_for_past_days_follow_every_write(&store).await;
}
