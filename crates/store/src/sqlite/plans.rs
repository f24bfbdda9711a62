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
