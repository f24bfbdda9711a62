//! The read path on SQLite. The plans and SQL are shared with PostgreSQL (`crate::sql`); this file binds them
//! to SQLite connections. Summary, explorer and series read the rollups only; spend-log pages read the
//! spend-log table by index.

use std::collections::HashMap;

use rusqlite::Connection;
use spendgate_core::anomaly::RepeatedRequest;
use spendgate_core::query::{Filters, GroupBy, GroupRow, Totals};
use spendgate_core::time::Grain;
use uuid::Uuid;

use super::write::find_label;
use super::{all, first, run};
use crate::sql::plan::{self, group_column, group_kind, Term};
use crate::sql::queries::{self, LOG_SELECT};
use crate::sql::{rows, Dialect};
use crate::{ActivityRow, ResolvedWindow, Result, SeriesPoint, SpendLogPage, StoredSpendLog};

const D: Dialect = Dialect::Sqlite;

/// The dimension filters of a query as (column, id) pairs. `None` when a named value was never recorded, so no
/// row can match.
fn dimension_filters(c: &Connection, f: &Filters) -> Result<Option<Vec<(&'static str, i64)>>> {
    resolve(c, plan::filter_terms(f))
}

/// Filter terms as (column, id) pairs, with their names looked up. `None` when a named value was never recorded.
pub(super) fn resolve(
    c: &Connection,
    terms: Vec<Term>,
) -> Result<Option<Vec<(&'static str, i64)>>> {
    let mut found = HashMap::new();
    for t in &terms {
        if let Term::Named(_, kind, name) = t {
            if let Some(id) = find_label(c, *kind, name)? {
                found.insert((*kind, name.clone()), id);
            }
        }
    }
    Ok(plan::resolve_terms(terms, &found))
}

pub(super) fn summary(c: &Connection, f: &Filters, w: ResolvedWindow) -> Result<Totals> {
    let Some(dims) = dimension_filters(c, f)? else {
        return Ok(Totals::default());
    };
    let q = queries::rollup_query(D, None, w, &dims);
    Ok(run(c, &q, |r| rows::totals_at(r, 0))?
        .pop()
        .unwrap_or_default())
}

/// The names of every value of a grouping in one query (labels of its kind, or keys): naming a thousand rows
/// one query at a time would cost more than summing them.
pub(super) fn names_for(c: &Connection, g: GroupBy) -> Result<HashMap<i64, String>> {
    match (g, group_kind(g)) {
        (_, Some(kind)) => Ok(run(c, &queries::names_query(D, kind), rows::name_row)?
            .into_iter()
            .collect()),
        (GroupBy::Key, None) => {
            let mut st = c.prepare_cached(queries::KEY_NAMES)?;
            Ok(all(&mut st, [], rows::key_name_row)?.into_iter().collect())
        }
        _ => Ok(HashMap::new()),
    }
}

/// The names of these label ids.
pub(super) fn labels_by_id(c: &Connection, ids: &[i64]) -> Result<HashMap<i64, String>> {
    Ok(match queries::labels_by_id(D, ids) {
        Some(q) => run(c, &q, rows::name_row)?.into_iter().collect(),
        None => HashMap::new(),
    })
}

pub(super) fn explorer(
    c: &Connection,
    f: &Filters,
    w: ResolvedWindow,
    g: GroupBy,
) -> Result<Vec<GroupRow>> {
    let Some(dims) = dimension_filters(c, f)? else {
        return Ok(Vec::new());
    };
    let q = queries::rollup_query(D, Some(group_column(g)), w, &dims);
    let raw = run(c, &q, rows::group_row)?;
    Ok(plan::group_rows(g, raw, names_for(c, g)?))
}

pub(super) fn series(
    c: &Connection,
    f: &Filters,
    grain: Grain,
    g: Option<GroupBy>,
) -> Result<Vec<SeriesPoint>> {
    let Some(dims) = dimension_filters(c, f)? else {
        return Ok(Vec::new());
    };
    let raw = run(
        c,
        &queries::series_query(D, f, grain, g, &dims),
        rows::series_row,
    )?;
    let names = match g {
        Some(g) => names_for(c, g)?,
        None => HashMap::new(),
    };
    Ok(plan::series_points(g, grain, raw, &names))
}

/// Request activity for the activity history: totals per bucket of `grain`, key, workflow and gateway, read
/// from the rollup of that grain (never the spend logs). Rows come oldest bucket first.
pub(super) fn request_activity(
    c: &Connection,
    f: &Filters,
    grain: Grain,
) -> Result<Vec<ActivityRow>> {
    let Some(dims) = dimension_filters(c, f)? else {
        return Ok(Vec::new());
    };
    let raw = run(
        c,
        &queries::activity_query(D, f, grain, &dims),
        rows::activity_row,
    )?;
    let names = labels_by_id(c, &rows::activity_label_ids(&raw))?;
    Ok(rows::activity_rows(grain, raw, &names))
}

pub(super) fn spend_logs(
    c: &Connection,
    f: &Filters,
    limit: usize,
    cursor: Option<(i64, i64)>,
) -> Result<SpendLogPage> {
    let Some(dims) = dimension_filters(c, f)? else {
        return Ok(SpendLogPage {
            items: Vec::new(),
            next_cursor: None,
        });
    };
    let limit = limit.clamp(1, 1000);
    let q = queries::spend_logs_query(D, f, &dims, limit, cursor);
    let items = run(c, &q, rows::stored_log)?;
    Ok(plan::page_of(items, limit))
}

/// How far before the time in its id a request's spend log is looked for first: the id is made when the request
/// starts and the log's time is its end, so only a wall clock stepped back in between puts the log earlier (and
/// then the second read finds it). Every log that ended in this second is read on the way, so it stays short.
const ID_CLOCK_SLACK_MS: i64 = 1_000;

/// One spend log by its id. The time index holds (time, id), so the log is looked for from the time in the id
/// (a v7 id's first 48 bits, the request's start) onwards, where it is found among the requests that ended
/// while it ran; only an id that is not there (or not time-ordered) makes the rest of the index be read.
pub(super) fn spend_log(c: &Connection, id: Uuid) -> Result<Option<StoredSpendLog>> {
    let from = id
        .get_timestamp()
        .and_then(|t| {
            let (secs, nanos) = t.to_unix();
            let ms = i64::try_from(secs).ok()?.checked_mul(1000)?;
            Some(ms + i64::from(nanos / 1_000_000) - ID_CLOCK_SLACK_MS)
        })
        .unwrap_or(i64::MIN);
    let bytes = &id.as_bytes()[..];
    let after = format!("{LOG_SELECT} WHERE s.ts_ms >= ?1 AND s.event_id = ?2 LIMIT 1");
    if let Some(log) = first(c, &after, rusqlite::params![from, bytes], rows::stored_log)? {
        return Ok(Some(log));
    }
    let before = format!("{LOG_SELECT} WHERE s.ts_ms < ?1 AND s.event_id = ?2 LIMIT 1");
    first(c, &before, rusqlite::params![from, bytes], rows::stored_log)
}

/// Identical requests (same key and fingerprint) since `since_ms`, where one pair occurs at least `min_repeats`
/// times. It reads the spend logs by their time index, so it is meant for short windows (minutes): the
/// retry-loop detector's.
pub(super) fn repeated_requests(
    c: &Connection,
    since_ms: i64,
    min_repeats: u64,
) -> Result<Vec<RepeatedRequest>> {
    let raw = run(
        c,
        &queries::repeated_query(D, since_ms, min_repeats),
        rows::repeated_row,
    )?;
    let names = labels_by_id(c, &rows::repeated_label_ids(&raw))?;
    Ok(rows::repeated_rows(raw, &names))
}
