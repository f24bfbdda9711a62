//! The write path: spend logs and rollups of one batch in one transaction, idempotent by event id. The batch is
//! folded into rollup rows by `crate::sql::batch`, shared with PostgreSQL.

use rusqlite::{params, Connection, OptionalExtension, ToSql};
use spendgate_core::time::now_ms;
use spendgate_core::SpendEvent;

use super::schema::ROLLUP_TABLES;
use super::{LabelCache, WriterConn};
use crate::sql::batch::{
    self, Aggregates, Dims, ADD_MEASURES, MAINTENANCE_EVERY_MS, ROLLUP_DIMS, ROLLUP_MEASURES,
};
use crate::sql::plan::{LabelKind, NARROW_TABLES, PAIR_KEY, PAIR_TABLES};
use crate::sql::{detail::detail_text, rows::fingerprint_to_sql};
use crate::{Result, StoreError, WriteReport};

fn label_id(conn: &Connection, cache: &mut LabelCache, kind: LabelKind, name: &str) -> Result<i64> {
    let by_name = cache.entry(kind).or_default();
    if let Some(&id) = by_name.get(name) {
        return Ok(id);
    }
    conn.execute(
        "INSERT INTO labels (kind, name) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![kind.code(), name],
    )?;
    let id: i64 = conn.query_row(
        "SELECT id FROM labels WHERE kind = ?1 AND name = ?2",
        params![kind.code(), name],
        |r| r.get(0),
    )?;
    by_name.insert(name.to_string(), id);
    Ok(id)
}

/// Looks a label up without creating it (for filters): `None` when no such name was ever recorded.
pub(super) fn find_label(conn: &Connection, kind: LabelKind, name: &str) -> Result<Option<i64>> {
    Ok(conn
        .query_row(
            "SELECT id FROM labels WHERE kind = ?1 AND name = ?2",
            params![kind.code(), name],
            |r| r.get(0),
        )
        .optional()?)
}

/// `?1, ?2, ... ?n`.
fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Adds rows (`keys` key columns named `key_columns`, then the measures) to a rollup, one cached upsert each.
fn upsert<R: IntoIterator<Item = i64>>(
    tx: &Connection,
    table: &str,
    key_columns: &str,
    keys: usize,
    rows: impl Iterator<Item = R>,
) -> Result<()> {
    let mut up = tx.prepare_cached(&format!(
        "INSERT INTO {table} AS r ({key_columns}, {ROLLUP_MEASURES}) VALUES ({})
         ON CONFLICT DO UPDATE SET {ADD_MEASURES}",
        placeholders(keys + batch::MEASURE_COUNT)
    ))?;
    for row in rows {
        up.execute(rusqlite::params_from_iter(row))?;
    }
    Ok(())
}

/// Batches at least this large fold their rollup rows on a second thread: below it, starting the thread costs
/// about what it saves.
const PARALLEL_FOLD_FROM: usize = 1024;

/// A wallet charge posted with a batch: (wallet, amount, time, event id).
type Charge = (i64, i64, i64, [u8; 16]);

/// Inserts the batch's spend logs, noting in `fresh` which were new (a repeated event id is skipped) and
/// collecting the wallet charges of the new ones.
fn insert_logs(
    tx: &Connection,
    events: &[SpendEvent],
    dims: &[Dims],
    fresh: &mut Vec<bool>,
    charges: &mut Vec<Charge>,
    report: &mut WriteReport,
) -> Result<()> {
    let mut ins = tx.prepare_cached(&format!(
        "INSERT INTO spend_logs (event_id, endpoint, detail, stream, fingerprint, {}) VALUES ({})
         ON CONFLICT (ts_ms, event_id) DO NOTHING",
        batch::LOG_INT_COLUMNS.join(", "),
        placeholders(5 + batch::LOG_INT_COLUMNS.len())
    ))?;
    for (e, d) in events.iter().zip(dims) {
        let cost = batch::cost_of(e)?;
        let avoided = batch::avoided_of(e)?;
        let (id, detail) = (&e.id.as_bytes()[..], detail_text(e));
        let fingerprint = e.fingerprint.map(fingerprint_to_sql);
        let ints = batch::log_ints(e, d, cost, avoided);
        let mut params: Vec<&dyn ToSql> = vec![&id, &e.endpoint, &detail, &e.stream, &fingerprint];
        params.extend(ints.iter().map(|v| v as &dyn ToSql));
        let new = ins.execute(&*params)? != 0;
        fresh.push(new);
        if !new {
            report.duplicates += 1;
            continue;
        }
        report.inserted += 1;
        if let Some(wallet) = e.wallet_id {
            // The charge lands in the wallet's ledger in the same transaction as the spend log, so the two can
            // never disagree.
            charges.push((wallet, -cost, e.finished_at_ms, *e.id.as_bytes()));
        }
    }
    Ok(())
}

pub(super) fn write_batch(
    w: &mut WriterConn,
    events: &[SpendEvent],
    minute_retention_ms: i64,
) -> Result<WriteReport> {
    // Labels are resolved first, each in its own tiny statement: an orphan label left by a failed batch is
    // harmless, and the cache never holds an id that a rolled-back transaction took away.
    let mut dims = Vec::with_capacity(events.len());
    {
        let WriterConn { conn, labels, .. } = &mut *w;
        for e in events {
            dims.push(batch::dims_of(e, |k, n| label_id(conn, labels, k, n))?);
        }
    }

    let mut report = WriteReport::default();
    let tx = w.conn.transaction()?;
    let mut charges = Vec::new();
    let mut fresh = Vec::with_capacity(events.len());
    // A large batch is folded into rollup rows on a second thread while its spend logs are inserted here. The
    // fold assumes every event is new; in the rare batch that repeats some (a replay after a crash), it is done
    // again below with the new ones only.
    let agg = std::thread::scope(|scope| -> Result<Aggregates> {
        // Without a thread (the system refused one), the fold below runs here instead.
        let folding = (events.len() >= PARALLEL_FOLD_FROM)
            .then(|| {
                std::thread::Builder::new()
                    .name("spendgate-fold".into())
                    .spawn_scoped(scope, || batch::fold(events.iter().zip(&dims)))
                    .ok()
            })
            .flatten();
        insert_logs(&tx, events, &dims, &mut fresh, &mut charges, &mut report)?;
        let folded = folding.map(|f| f.join().map_err(|_| StoreError::WorkerGone));
        match folded {
            Some(agg) if report.duplicates == 0 => agg?,
            _ => batch::fold(
                events
                    .iter()
                    .zip(&dims)
                    .zip(&fresh)
                    .filter_map(|(row, new)| new.then_some(row)),
            ),
        }
    })?;
    super::controls::settle(&tx, &charges)?;

    for (i, table) in ROLLUP_TABLES.iter().enumerate() {
        let rows = agg.grains[i]
            .iter()
            .map(|((bucket, d), a)| std::iter::once(*bucket).chain(d.values()).chain(a.values()));
        upsert(&tx, table, ROLLUP_DIMS, 9, rows)?;
    }
    for (i, table) in NARROW_TABLES.iter().enumerate() {
        let rows = agg.narrow[i].iter().map(|((code, bucket, value), a)| {
            [*code, *bucket, *value].into_iter().chain(a.values())
        });
        upsert(&tx, table, "dim, bucket, value", 3, rows)?;
    }
    for (i, table) in PAIR_TABLES.iter().enumerate() {
        let rows = agg.pairs[i]
            .iter()
            .map(|((f, fv, code, bucket, value), a)| {
                [*f, *fv, *code, *bucket, *value]
                    .into_iter()
                    .chain(a.values())
            });
        upsert(&tx, table, PAIR_KEY, 5, rows)?;
    }
    super::replicas::record_spend(&tx, &agg.leases)?;
    // Minute rollups are only kept for recent windows; prune them now and then.
    let now = now_ms();
    let prune = now - w.last_prune_ms > MAINTENANCE_EVERY_MS;
    if prune {
        let cutoff = batch::minute_prune_cutoff(now, minute_retention_ms);
        tx.execute("DELETE FROM rollup_minute WHERE bucket < ?1", [cutoff])?;
    }
    tx.commit()?;
    if prune {
        w.last_prune_ms = now;
    }
    Ok(report)
}
