//! Refusals on SQLite: the batch transaction (rows, rollups, retention) and the reads, on the shared SQL of
//! `crate::sql::refusals`. Refusals are few beside spend events, so each row is one statement: `INSERT OR IGNORE`
//! says by its change count whether the refusal is new, and only new ones are counted in the rollups.

use rusqlite::{params, Connection};
use spendgate_core::time::now_ms;
use spendgate_core::{GroupBy, RefusalEvent};

use super::read::{labels_by_id, names_for, resolve};
use super::write::label_id;
use super::{run, WriterConn};
use crate::refusals::{RefusalCount, RefusalFilters, RefusalGroup, RefusalPage};
use crate::sql::batch::{minute_prune_cutoff, MAINTENANCE_EVERY_MS};
use crate::sql::refusals::{self as sql, ROLLUPS, ROLLUP_KEY};
use crate::sql::Dialect;
use crate::{ResolvedWindow, Result, WriteReport};

const D: Dialect = Dialect::Sqlite;

/// Retention of refusals and of the minute rollups, in the shape `write` needs.
#[derive(Debug, Clone, Copy)]
pub(super) struct Retention {
    pub days: u32,
    pub minute_ms: i64,
}

pub(super) fn write(
    w: &mut WriterConn,
    refusals: &[RefusalEvent],
    retention: Retention,
) -> Result<WriteReport> {
    let now = now_ms();
    let (live, mut report) = sql::live(refusals, retention.days, now);
    // Labels first, outside the transaction, as for spend logs.
    let dims = {
        let WriterConn { conn, labels, .. } = &mut *w;
        live.iter()
            .map(|r| sql::dims_of(r, |k, n| label_id(conn, labels, k, n)))
            .collect::<Result<Vec<_>>>()?
    };
    let maintain = now - w.last_refusal_prune_ms > MAINTENANCE_EVERY_MS;
    let tx = w.conn.transaction()?;
    let mut fresh = Vec::with_capacity(live.len());
    {
        let insert = format!(
            "INSERT OR IGNORE INTO refusals (event_id, model, endpoint, detail, {}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            sql::INT_COLUMNS.join(", ")
        );
        let mut st = tx.prepare_cached(&insert)?;
        for (r, d) in live.iter().zip(&dims) {
            let (model, detail) = sql::texts_of(r);
            let i = sql::ints_of(r, d);
            let changed = st.execute(params![
                &r.id.as_bytes()[..],
                model,
                r.endpoint,
                detail,
                i[0],
                i[1],
                i[2],
                i[3],
                i[4],
                i[5],
                i[6],
                i[7],
                i[8]
            ])?;
            if sql::tally(&mut report, changed == 1) {
                fresh.push((*r, d));
            }
        }
    }
    let grains = sql::fold(fresh.into_iter());
    for (table, rows) in ROLLUPS.iter().zip(&grains) {
        let mut st = tx.prepare_cached(&format!(
            "INSERT INTO {table} AS r ({ROLLUP_KEY}, refusals) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT DO UPDATE SET refusals = r.refusals + excluded.refusals"
        ))?;
        for ([bucket, team, user, key, reason], n) in rows {
            st.execute(params![bucket, team, user, key, reason, n])?;
        }
    }
    if maintain {
        tx.execute(
            "DELETE FROM refusals WHERE ts_ms < ?1",
            [sql::cutoff(retention.days, now)],
        )?;
        tx.execute(
            &format!("DELETE FROM {} WHERE bucket < ?1", ROLLUPS[0]),
            [minute_prune_cutoff(now, retention.minute_ms)],
        )?;
    }
    tx.commit()?;
    if maintain {
        w.last_refusal_prune_ms = now;
    }
    Ok(report)
}

pub(super) fn list(
    c: &Connection,
    f: &RefusalFilters,
    limit: usize,
    cursor: Option<(i64, i64)>,
) -> Result<RefusalPage> {
    sql::check(f)?;
    let Some(dims) = resolve(c, sql::terms(f))? else {
        return Ok(RefusalPage::default());
    };
    let limit = limit.clamp(1, 1000);
    let items = run(
        c,
        &sql::list_query(D, f, &dims, limit, cursor),
        sql::stored_refusal,
    )?;
    Ok(sql::page_of(items, limit))
}

pub(super) fn counts(
    c: &Connection,
    f: &RefusalFilters,
    w: ResolvedWindow,
    group: Option<RefusalGroup>,
) -> Result<Vec<RefusalCount>> {
    sql::check(f)?;
    let Some(dims) = resolve(c, sql::terms(f))? else {
        return Ok(Vec::new());
    };
    let raw = run(c, &sql::counts_query(D, group, w, &dims), sql::count_row)?;
    let names = match group {
        Some(RefusalGroup::Key) => names_for(c, GroupBy::Key)?,
        g => labels_by_id(c, &sql::label_ids(g, &raw))?,
    };
    Ok(sql::counts(group, raw, &names))
}
