//! The query plans SQLite picks for the reads whose cost must not grow with the whole history: checked with
//! `EXPLAIN QUERY PLAN` on a real (empty) store, so an index change that turns one of them into a full scan fails
//! here rather than in a benchmark at 10 million spend logs.

#![cfg(test)]

use rusqlite::Connection;

use crate::sql::queries;
use crate::sql::{Dialect, Query};
use crate::ResolvedWindow;
use spendgate_core::time::{now_ms, Grain, DAY_MS, HOUR_MS};

fn plan(c: &Connection, q: &Query) -> String {
    let mut st = c
        .prepare(&format!("EXPLAIN QUERY PLAN {}", q.sql))
        .expect("the query prepares");
    let rows = st
        .query_map(rusqlite::params_from_iter(q.params.iter()), |r| {
            r.get::<_, String>(3)
        })
        .expect("the plan is readable");
    rows.map(|r| r.expect("a plan row"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn store() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let s = super::SqliteStore::open(dir.path(), Default::default()).expect("a store");
    let c = Connection::open(s.path()).expect("a connection");
    (dir, c)
}

#[test]
fn the_retry_loop_detector_reads_recent_spend_logs_by_time() {
    let (_dir, c) = store();
    let p = plan(
        &c,
        &queries::repeated_query(Dialect::Sqlite, now_ms() - 600_000, 5),
    );
    assert!(p.contains("spend_logs_ts"), "{p}");
    assert!(!p.contains("SCAN spend_logs"), "{p}");
}

#[test]
fn rollup_reads_of_one_team_user_or_model_use_its_index_or_the_pair_rollups() {
    let (_dir, c) = store();
    // Thirty days from 13:00, so that hours (the first day's last eleven) are read as well as days.
    let now = now_ms();
    let w = ResolvedWindow {
        from_ms: Grain::Day.floor(now) - 30 * DAY_MS + 13 * HOUR_MS,
        to_ms: now,
        open_end: true,
    };
    for (column, group, name) in [
        ("team_id", "user_id", "team"),
        ("user_id", "model_id", "user"),
    ] {
        let q = queries::rollup_query(Dialect::Sqlite, Some(group), w, &[(column, 7)]);
        let p = plan(&c, &q);
        assert!(p.contains(&format!("rollup_day_{name}")), "{p}");
        assert!(p.contains(&format!("rollup_hour_{name}")), "{p}");
    }
    // A model's days come from the pair rollups, its hours from the index alone (it carries the measures); a
    // provider's both from the pairs; with two filters, the model index still narrows the days.
    let pair_day = "rollup_pair_day USING PRIMARY KEY (fdim=? AND fvalue=? AND dim=? AND bucket>? AND bucket<?)";
    // (grouped by, filters, what the plan must name)
    type Case<'a> = (&'a str, &'a [(&'a str, i64)], [&'a str; 2]);
    let cases: [Case; 3] = [
        (
            "team_id",
            &[("model_id", 7)],
            [pair_day, "USING COVERING INDEX rollup_hour_model"],
        ),
        (
            "user_id",
            &[("provider_id", 7)],
            [pair_day, "SEARCH rollup_pair_hour USING PRIMARY KEY"],
        ),
        (
            "user_id",
            &[("model_id", 7), ("provider_id", 2)],
            ["rollup_day_model", "rollup_hour_model"],
        ),
    ];
    for (group, dims, expected) in cases {
        let p = plan(
            &c,
            &queries::rollup_query(Dialect::Sqlite, Some(group), w, dims),
        );
        for e in expected {
            assert!(p.contains(e), "{group} {dims:?}: {p}");
        }
    }
}

/// A page of spend logs after a cursor reads from the cursor on, not from the window's end down to it: the time
/// index holds (time, event id), so the cursor's (time, seq) pair alone does not bound its range. Counted in
/// SQLite's virtual-machine steps, which grow with the rows a statement reads.
#[test]
fn a_page_of_spend_logs_after_a_cursor_reads_from_the_cursor_on() {
    use rusqlite::StatementStatus;
    use spendgate_core::query::Filters;

    let (_dir, c) = store();
    // 20,000 logs one millisecond apart, every column but the id and the time the same.
    c.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
         INSERT INTO spend_logs (event_id, ts_ms, started_ms, latency_ms, gateway_id, provider_id, model_id,
             key_id, user_id, team_id, workflow_id, endpoint, stream, cache_outcome, status, http_status,
             input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, cost_pico, usage_source,
             price_confidence, detail)
         SELECT randomblob(16), 1000000 + i, 1000000 + i, 1, 0, 0, 0, 1, 0, 0, 0, 'chat', 0, 0, 0, 200,
             1, 1, 0, 0, 1, 0, 0, '{}' FROM n;",
    )
    .expect("the logs are written");
    let f = Filters {
        from_ms: 0,
        to_ms: 10_000_000,
        ..Filters::default()
    };
    let steps = |cursor: Option<(i64, i64)>| {
        let q = queries::spend_logs_query(Dialect::Sqlite, &f, &[], 50, cursor);
        let mut st = c.prepare(&q.sql).expect("the query prepares");
        let rows = st
            .query_map(rusqlite::params_from_iter(q.params.iter()), |r| {
                r.get::<_, i64>(0)
            })
            .expect("the query runs")
            .count();
        assert_eq!(rows, 51);
        st.get_status(StatementStatus::VmStep)
    };
    let first = steps(None);
    // A cursor near the oldest log: 19,900 newer logs lie between it and the window's end.
    let deep = steps(Some((1_000_100, 100)));
    assert!(
        deep < 3 * first,
        "{deep} steps after the cursor, {first} for the first page"
    );
}
