//! The write path: spend logs and rollups of one batch in one transaction, idempotent by event id. The batch is
//! folded into rollup rows by `crate::sql::batch`, shared with PostgreSQL.

use std::collections::{HashMap, HashSet};

use rusqlite::{params, CachedStatement, Connection, OptionalExtension, Statement};
use spendgate_core::time::now_ms;
use spendgate_core::SpendEvent;

use super::schema::ROLLUP_TABLES;
use super::{LabelCache, WriterConn};
use crate::sql::batch::{
    self, Acc, Aggregates, Dims, ADD_MEASURES, MAINTENANCE_EVERY_MS, ROLLUP_DIMS, ROLLUP_MEASURES,
};
use crate::sql::plan::{LabelKind, NARROW_TABLES, PAIR_KEY, PAIR_TABLES};
use crate::sql::{detail::detail_text, rows::fingerprint_to_sql};
use crate::{Result, StoreError, WriteReport};

pub(super) fn label_id(
    conn: &Connection,
    cache: &mut LabelCache,
    kind: LabelKind,
    name: &str,
) -> Result<i64> {
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

/// Rows written by one run of a statement. Each run costs SQLite a fixed amount beside its rows (opening and
/// closing its cursors, releasing its registers), which one row per run paid for every spend log and rollup row of
/// a batch: 32 rows per run took a spend log from about 17,900 instructions to 11,100, and a rollup row from about
/// 14,700 to 11,600 (callgrind, docs/BENCHMARKS-HISTORY.md, 2026-12-05, fifth session). More rows per run gained
/// little more.
const ROWS_PER_STATEMENT: usize = 32;

/// The smaller runs that write what is left of a batch after its runs of `ROWS_PER_STATEMENT`, largest first. A
/// gateway's batches are small (what arrives in 5 ms), yet one event adds about 60 rollup rows (16 per-dimension,
/// up to 42 pair rows), so most of their rows are such rest.
const REST_SIZES: [usize; 5] = [16, 8, 4, 2, 1];

/// The texts of the writer's statements by (table, rows per run), built once: building a 32-row statement's text
/// on every batch cost about 6,800 instructions a statement.
pub(super) type Texts = HashMap<(&'static str, usize), String>;

/// One row's values, bound to a statement's parameters from `first` (one-based) on.
trait BindRow {
    /// How many parameters a row takes.
    const WIDTH: usize;

    fn bind(&self, stmt: &mut Statement<'_>, first: usize) -> Result<()>;
}

/// A rollup row: its key columns, then the measures.
impl<const K: usize> BindRow for ([i64; K], Acc) {
    const WIDTH: usize = K + batch::MEASURE_COUNT;

    fn bind(&self, stmt: &mut Statement<'_>, first: usize) -> Result<()> {
        let (key, acc) = self;
        for (i, v) in key.iter().chain(&acc.values()).enumerate() {
            stmt.raw_bind_parameter(first + i, *v)?;
        }
        Ok(())
    }
}

/// `head VALUES (?, ...), ... tail` for `rows` rows of `width` values.
fn values_sql(head: &str, width: usize, rows: usize, tail: &str) -> String {
    let row = format!("({})", vec!["?"; width].join(", "));
    format!("{head} VALUES {} {tail}", vec![row; rows].join(", "))
}

/// How one table is written: its name (which keys the statement texts), and the text of its statement before and
/// after the rows, built only when a statement's text is not kept yet.
struct Target<'a> {
    table: &'static str,
    text: &'a dyn Fn() -> (String, String),
}

/// The prepared statement that writes `rows` rows of `width` values into `target`.
fn statement<'c>(
    tx: &'c Connection,
    texts: &mut Texts,
    target: &Target<'_>,
    width: usize,
    rows: usize,
) -> Result<CachedStatement<'c>> {
    let sql = texts.entry((target.table, rows)).or_insert_with(|| {
        let (head, tail) = (target.text)();
        values_sql(&head, width, rows, &tail)
    });
    Ok(tx.prepare_cached(sql)?)
}

/// Writes `rows` into `target`, `ROWS_PER_STATEMENT` rows per run and the rest in runs of `REST_SIZES`. `after`
/// hears the rows of each run and how many rows it changed. Each statement is looked up once per call: the
/// lookup hashes the statement's text, which for 32 rows is a few kilobytes.
fn write_rows<R: BindRow>(
    tx: &Connection,
    texts: &mut Texts,
    target: &Target<'_>,
    rows: impl IntoIterator<Item = Result<R>>,
    mut after: impl FnMut(&[R], usize) -> Result<()>,
) -> Result<()> {
    let mut run = |stmt: &mut Statement<'_>, rows: &[R]| -> Result<()> {
        for (i, row) in rows.iter().enumerate() {
            row.bind(stmt, 1 + i * R::WIDTH)?;
        }
        let changed = stmt.raw_execute()?;
        after(rows, changed)
    };
    let mut full = None;
    let mut chunk = Vec::with_capacity(ROWS_PER_STATEMENT);
    for row in rows {
        chunk.push(row?);
        if chunk.len() == ROWS_PER_STATEMENT {
            let stmt = match &mut full {
                Some(stmt) => stmt,
                None => full.insert(statement(tx, texts, target, R::WIDTH, ROWS_PER_STATEMENT)?),
            };
            run(stmt, &chunk)?;
            chunk.clear();
        }
    }
    drop(full);
    let mut rest = &chunk[..];
    for size in REST_SIZES {
        if rest.len() < size {
            continue;
        }
        let mut stmt = statement(tx, texts, target, R::WIDTH, size)?;
        while rest.len() >= size {
            let (now, later) = rest.split_at(size);
            run(&mut stmt, now)?;
            rest = later;
        }
    }
    Ok(())
}

/// Adds rows (key columns named `key_columns`, then the measures) to a rollup.
fn upsert<const K: usize>(
    tx: &Connection,
    texts: &mut Texts,
    table: &'static str,
    key_columns: &str,
    rows: impl Iterator<Item = ([i64; K], Acc)>,
) -> Result<()> {
    let text = || {
        (
            format!("INSERT INTO {table} AS r ({key_columns}, {ROLLUP_MEASURES})"),
            format!("ON CONFLICT DO UPDATE SET {ADD_MEASURES}"),
        )
    };
    let target = Target { table, text: &text };
    write_rows(tx, texts, &target, rows.map(Ok), |_, _| Ok(()))
}

/// A wallet charge posted with a batch: (wallet, amount, time, event id).
type Charge = (i64, i64, i64, [u8; 16]);

/// One spend log row.
struct LogRow<'e> {
    event: &'e SpendEvent,
    detail: String,
    fingerprint: Option<i64>,
    cost: i64,
    ints: [i64; batch::LOG_INT_COLUMNS.len()],
}

impl BindRow for LogRow<'_> {
    const WIDTH: usize = 5 + batch::LOG_INT_COLUMNS.len();

    fn bind(&self, stmt: &mut Statement<'_>, first: usize) -> Result<()> {
        let e = self.event;
        stmt.raw_bind_parameter(first, &e.id.as_bytes()[..])?;
        stmt.raw_bind_parameter(first + 1, e.endpoint.as_str())?;
        stmt.raw_bind_parameter(first + 2, self.detail.as_str())?;
        stmt.raw_bind_parameter(first + 3, e.stream)?;
        stmt.raw_bind_parameter(first + 4, self.fingerprint)?;
        for (i, v) in self.ints.iter().enumerate() {
            stmt.raw_bind_parameter(first + 5 + i, *v)?;
        }
        Ok(())
    }
}

/// The ids of the spend logs that the last statement stored: its `stored` rows have the largest `seq`s, since
/// SQLite gives each new row one more than the largest `seq` there is. Only asked when a statement skipped some
/// of its rows (a batch repeating stored events).
fn last_stored(tx: &Connection, stored: usize) -> Result<HashSet<Vec<u8>>> {
    let mut q = tx.prepare_cached("SELECT event_id FROM spend_logs ORDER BY seq DESC LIMIT ?1")?;
    let ids = q.query_map([stored as i64], |r| r.get::<_, Vec<u8>>(0))?;
    Ok(ids.collect::<rusqlite::Result<_>>()?)
}

/// Inserts the batch's spend logs, noting in `fresh` which were new (a repeated event id is skipped) and
/// collecting the wallet charges of the new ones.
fn insert_logs(
    tx: &Connection,
    texts: &mut Texts,
    events: &[SpendEvent],
    dims: &[Dims],
    fresh: &mut Vec<bool>,
    charges: &mut Vec<Charge>,
    report: &mut WriteReport,
) -> Result<()> {
    // `OR IGNORE` rather than `ON CONFLICT DO NOTHING`: a statement of many rows that a constraint could abort
    // keeps a journal of its own to undo its part, which took back most of the gain of many rows per run. Every
    // NOT NULL column is bound from a value that cannot be null, so the only row ever skipped is a repeated
    // `(ts_ms, event_id)`.
    let text = || {
        let head = format!(
            "INSERT OR IGNORE INTO spend_logs (event_id, endpoint, detail, stream, fingerprint, {})",
            batch::LOG_INT_COLUMNS.join(", ")
        );
        (head, String::new())
    };
    let target = Target {
        table: "spend_logs",
        text: &text,
    };
    let rows = events.iter().zip(dims).map(|(e, d)| {
        let cost = batch::cost_of(e)?;
        let ints = batch::log_ints(e, d, cost, batch::avoided_of(e)?);
        Ok(LogRow {
            event: e,
            detail: detail_text(e),
            fingerprint: e.fingerprint.map(fingerprint_to_sql),
            cost,
            ints,
        })
    });
    write_rows(tx, texts, &target, rows, |rows, stored| {
        let mut stored_ids = (stored < rows.len())
            .then(|| last_stored(tx, stored))
            .transpose()?;
        for row in rows {
            let e = row.event;
            // Of two rows with the same new id in one statement, the first was stored.
            let new = match &mut stored_ids {
                None => true,
                Some(ids) => ids.remove(&e.id.as_bytes()[..]),
            };
            fresh.push(new);
            if !new {
                report.duplicates += 1;
                continue;
            }
            report.inserted += 1;
            if let Some(wallet) = e.wallet_id {
                // The charge lands in the wallet's ledger in the same transaction as the spend log, so the
                // two can never disagree.
                charges.push((wallet, -row.cost, e.finished_at_ms, *e.id.as_bytes()));
            }
        }
        Ok(())
    })
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
    let WriterConn {
        conn,
        texts,
        last_prune_ms,
        ..
    } = &mut *w;
    let tx = conn.transaction()?;
    let mut charges = Vec::new();
    let mut fresh = Vec::with_capacity(events.len());
    // A large batch is folded into rollup rows on a second thread while its spend logs are inserted here. The
    // fold assumes every event is new; in the rare batch that repeats some (a replay after a crash), it is done
    // again below with the new ones only.
    let agg = std::thread::scope(|scope| -> Result<Aggregates> {
        // Without a thread (the system refused one), the fold below runs here instead.
        let folding = (events.len() >= batch::PARALLEL_FOLD_FROM)
            .then(|| {
                std::thread::Builder::new()
                    .name("spendgate-fold".into())
                    .spawn_scoped(scope, || batch::fold(events.iter().zip(&dims)))
                    .ok()
            })
            .flatten();
        insert_logs(
            &tx,
            texts,
            events,
            &dims,
            &mut fresh,
            &mut charges,
            &mut report,
        )?;
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
        let rows = agg.grains[i].iter().map(|((bucket, d), a)| {
            let [t, u, k, p, m, g, w, c] = d.values();
            ([*bucket, t, u, k, p, m, g, w, c], *a)
        });
        upsert(&tx, texts, table, ROLLUP_DIMS, rows)?;
    }
    for (i, table) in NARROW_TABLES.iter().enumerate() {
        let rows = agg.narrow[i]
            .iter()
            .map(|((code, bucket, value), a)| ([*code, *bucket, *value], *a));
        upsert(&tx, texts, table, "dim, bucket, value", rows)?;
    }
    for (i, table) in PAIR_TABLES.iter().enumerate() {
        let rows = agg.pairs[i]
            .iter()
            .map(|((f, fv, code, bucket, value), a)| ([*f, *fv, *code, *bucket, *value], *a));
        upsert(&tx, texts, table, PAIR_KEY, rows)?;
    }
    super::replicas::record_spend(&tx, &agg.leases)?;
    // Minute rollups are only kept for recent windows; prune them now and then.
    let now = now_ms();
    let prune = now - *last_prune_ms > MAINTENANCE_EVERY_MS;
    if prune {
        let cutoff = batch::minute_prune_cutoff(now, minute_retention_ms);
        tx.execute("DELETE FROM rollup_minute WHERE bucket < ?1", [cutoff])?;
    }
    tx.commit()?;
    if prune {
        *last_prune_ms = now;
    }
    Ok(report)
}
