//! The write path on PostgreSQL: one transaction per batch, a handful of statements whatever its size.
//!
//! 1. Labels the batch names for the first time are interned in one statement (`INSERT ... ON CONFLICT DO
//!    NOTHING`, then one `SELECT` for their ids), outside the transaction: an orphan label is harmless, and
//!    several processes may intern the same name at once. Ids are cached.
//! 2. The months of the batch get their spend-log partition if they have none (`partitions.rs`).
//! 3. All spend logs go in one binary `COPY` (`copy.rs`) under a savepoint. When one of them is stored already
//!    (a replay), the copy fails, is undone, and the batch goes by `COPY` into a staging table and one
//!    `INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING event_id` instead (`store_spend_logs`): the ids
//!    returned are exactly the events stored for the first time, and only they are folded into the rollups and
//!    charged to wallets, so a replayed batch counts nothing twice.
//! 4. The rollup rows (`crate::sql::batch`, shared with SQLite; folded on another thread while the server stores
//!    the spend logs) go by `COPY` into staging tables and are upserted with one statement per table, adding to
//!    the rows already there. While the writer is behind, a batch carries its rollup sums in memory instead and
//!    writes a pending row that says so; a later batch upserts what was carried with its own (`carry.rs`).
//! 5. Wallet charges: one ledger row per charged event and each wallet's balance moved by their sum; then the
//!    leases the events were drawn against.
//!
//! **No deadlocks.** Two writers (two gateways on one database) whose batches share rows must never each hold a
//! row the other waits for. Every statement that writes rows several writers may share therefore takes them in
//! one global order: its rows sorted by the table's key, and the tables always in the order above (labels, a
//! writer's pending rows of carried batches, spend logs by `(event_id, ts_ms)`, the rollup tables in `ROLLUP_TABLES`, `NARROW_TABLES`, `PAIR_TABLES` order,
//! wallets by id, leases by id). A writer waiting for a row then holds only rows that come before it, so no
//! cycle of waits can form. A `COPY` takes its rows in the order they are sent, and an `INSERT ... SELECT` from a
//! staging table in the order they were copied there (`copy.rs`, "Order"); an `UPDATE ... FROM unnest(...)`
//! takes them in whatever order its plan reads the table, so wallets and leases
//! are locked first, in id order (`lock_in_order`). Admin transfers lock their wallets the same way, and the
//! pruning of old minute rollups runs after the batch's commit, in key order, in a statement of its own. Labels
//! were once interned in hash order, and two writers meeting the same new names deadlocked on them (the test
//! `two_writers_sharing_rows_never_deadlock_and_sum_exactly` saw 3 in 60 rounds).

use std::collections::HashSet;
use std::sync::Arc;

use spendgate_core::time::now_ms;
use spendgate_core::SpendEvent;
use tokio_postgres::{Client, GenericClient, Transaction};
use uuid::Uuid;

use super::carry::{self, Carry};
use super::copy::{self, CopyIn};
use super::labels::{intern_labels, label_id, LabelCache};
use super::{partitions, pool::Pool, PostgresOptions, WriterState};
use crate::controls::LedgerKind;
use crate::sql::batch::{
    self, Acc, Aggregates, ADD_MEASURES, MAINTENANCE_EVERY_MS, ROLLUP_DIMS, ROLLUP_MEASURES,
};
use crate::sql::ledger::settle_totals;
use crate::sql::plan::{NARROW_TABLES, PAIR_KEY, PAIR_TABLES, ROLLUP_TABLES};
use crate::sql::{detail::detail_text, rows::fingerprint_to_sql};
use crate::{Result, StoreError, WriteReport};

/// `unnest($first::bigint[], ...)` over `n` integer arrays numbered from `first`.
pub(super) fn unnest_ints(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}::bigint[]"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Upserts rollup rows (key columns first, then the measures), adding to existing rows: the rows go by `COPY` into
/// the table's staging table, then one statement moves them, in the order they were sent (`copy.rs`).
async fn upsert_rollup<const N: usize>(
    tx: &Transaction<'_>,
    table: &str,
    key: &str,
    rows: impl ExactSizeIterator<Item = [i64; N]>,
) -> Result<()> {
    if rows.len() == 0 {
        return Ok(());
    }
    let staging = copy::staging(table);
    let mut copy = CopyIn::start(tx, &staging, N).await?;
    for row in rows {
        copy.rows().row().ints(&row);
        copy.row_done().await?;
    }
    copy.finish().await?;
    let sql = format!(
        "INSERT INTO {table} AS r ({key}, {ROLLUP_MEASURES}) SELECT {key}, {ROLLUP_MEASURES} FROM {staging}
         ON CONFLICT ({key}) DO UPDATE SET {ADD_MEASURES}"
    );
    tx.execute(sql.as_str(), &[]).await?;
    Ok(())
}

/// Upserts every rollup row of finished sums, table by table in the lock order (`ROLLUP_TABLES`,
/// `NARROW_TABLES`, `PAIR_TABLES`).
pub(super) async fn upsert_aggregates(tx: &Transaction<'_>, agg: &Aggregates) -> Result<()> {
    for (i, table) in ROLLUP_TABLES.iter().enumerate() {
        let rows = agg.grains[i].iter().map(|((bucket, d), a)| {
            let mut row = [0i64; 9 + batch::MEASURE_COUNT];
            row[0] = *bucket;
            row[1..9].copy_from_slice(&d.values());
            row[9..].copy_from_slice(&a.values());
            row
        });
        upsert_rollup(tx, table, ROLLUP_DIMS, rows).await?;
    }
    for (i, table) in NARROW_TABLES.iter().enumerate() {
        let rows = agg.narrow[i].iter().map(|((code, bucket, value), a)| {
            let mut row = [0i64; 3 + batch::MEASURE_COUNT];
            row[..3].copy_from_slice(&[*code, *bucket, *value]);
            row[3..].copy_from_slice(&a.values());
            row
        });
        upsert_rollup(tx, table, "dim, bucket, value", rows).await?;
    }
    for (i, table) in PAIR_TABLES.iter().enumerate() {
        let rows = agg.pairs[i]
            .iter()
            .map(|((f, fv, code, bucket, value), a)| {
                let mut row = [0i64; 5 + batch::MEASURE_COUNT];
                row[..5].copy_from_slice(&[*f, *fv, *code, *bucket, *value]);
                row[5..].copy_from_slice(&a.values());
                row
            });
        upsert_rollup(tx, table, PAIR_KEY, rows).await?;
    }
    Ok(())
}

/// Copies the spend logs of a batch into `target` (a table and its columns, in `copy::spend_log_columns` order).
async fn copy_spend_logs(
    tx: &Transaction<'_>,
    target: &str,
    live: &[&SpendEvent],
    dims: &[batch::Dims],
    sums: &[Acc],
) -> std::result::Result<(), tokio_postgres::Error> {
    let mut copy = CopyIn::start(tx, target, 5 + batch::LOG_INT_COLUMNS.len()).await?;
    for ((e, d), a) in live.iter().zip(dims).zip(sums) {
        copy.rows()
            .row()
            .uuid(e.id)
            .text(&e.endpoint)
            .text(&detail_text(e))
            .bool(e.stream)
            .opt_int8(e.fingerprint.map(fingerprint_to_sql))
            .ints(&batch::log_ints(e, d, a.cost, a.avoided));
        copy.row_done().await?;
    }
    copy.finish().await?;
    Ok(())
}

/// Stores the spend logs of a batch. Returns `None` when every one was new (the common case), or the ids stored
/// for the first time when some were there already.
///
/// The fast way is a `COPY` straight into `spend_logs`: the server inserts the rows in bulk (many to a heap page
/// and a WAL record), about a third cheaper than the `INSERT ... ON CONFLICT DO NOTHING` of an unnested or staged
/// batch, which makes a speculative insertion per row (docs/BENCHMARKS-HISTORY.md, tenth session). A row already
/// stored, which only a replay brings (or another writer storing the same events at the same time), fails the
/// copy with a unique violation; the copy is then undone to a savepoint and the batch goes the careful way: by
/// `COPY` into this connection's staging table, then `INSERT ... ON CONFLICT DO NOTHING RETURNING`, which skips
/// the rows already stored (waiting, like the copy, for a writer that is storing them) and names the new ones.
/// Both take the rows in the order they were sent, so the order that keeps writers from deadlocking holds
/// either way.
async fn store_spend_logs(
    tx: &Transaction<'_>,
    live: &[&SpendEvent],
    dims: &[batch::Dims],
    sums: &[Acc],
) -> Result<Option<HashSet<Uuid>>> {
    if live.is_empty() {
        return Ok(None);
    }
    let columns = copy::spend_log_columns();
    tx.batch_execute("SAVEPOINT spend_logs").await?;
    let direct = format!("spend_logs ({columns})");
    match copy_spend_logs(tx, &direct, live, dims, sums).await {
        Ok(()) => {
            tx.batch_execute("RELEASE SAVEPOINT spend_logs").await?;
            return Ok(None);
        }
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT spend_logs").await?;
        }
        Err(e) => return Err(e.into()),
    }
    let staging = copy::staging("spend_logs");
    copy_spend_logs(tx, &staging, live, dims, sums).await?;
    let careful = format!(
        "INSERT INTO spend_logs ({columns}) SELECT {columns} FROM {staging}
         ON CONFLICT DO NOTHING RETURNING event_id"
    );
    let mut fresh = HashSet::new();
    for r in tx.query(careful.as_str(), &[]).await? {
        fresh.insert(r.try_get(0)?);
    }
    Ok(Some(fresh))
}

/// What the fold needs of each of a batch's events, in the batch's order.
struct FoldInput {
    finished: Vec<i64>,
    dims: Vec<batch::Dims>,
    sums: Vec<Acc>,
}

/// Rows given as arrays of integers, turned into one array per column.
pub(super) fn columns_of<const N: usize>(rows: impl Iterator<Item = [i64; N]>) -> Vec<Vec<i64>> {
    let mut cols = vec![Vec::new(); N];
    for row in rows {
        for (c, v) in cols.iter_mut().zip(row) {
            c.push(v);
        }
    }
    cols
}

/// Writes a batch; with `behind`, its rollups may be carried (`carry.rs`). Whatever fails, the carry is dropped
/// and its batches refolded before the next write.
pub(super) async fn write_batch(
    w: &mut WriterState,
    pool: &Pool,
    events: &[SpendEvent],
    options: &PostgresOptions,
    behind: bool,
) -> Result<WriteReport> {
    let result = write_batch_once(w, pool, events, options, behind).await;
    if result.is_err() {
        w.lose_carry();
    }
    result
}

async fn write_batch_once(
    w: &mut WriterState,
    pool: &Pool,
    events: &[SpendEvent],
    options: &PostgresOptions,
    behind: bool,
) -> Result<WriteReport> {
    let now = now_ms();
    let mut report = WriteReport::default();
    // Events of a month that retention dropped (or will drop) are not written again: their first copy may have
    // been counted in the rollups before its partition went, and nothing could tell a replay from a new event.
    let mut live = Vec::with_capacity(events.len());
    for e in events {
        if partitions::expired(e.finished_at_ms, options.retention_days, now)? {
            report.duplicates += 1;
        } else {
            live.push(e);
        }
    }
    // In the spend logs' key order: two writers given some of the same events (a replay) then meet them in the
    // same order.
    live.sort_unstable_by_key(|e| (e.id.as_u128(), e.finished_at_ms));
    let mut months = std::mem::take(&mut w.months);
    let mut labels = std::mem::take(&mut w.labels);
    let client = w.client(pool).await?;
    let prepared = prepare(client, &mut labels, &mut months, &live).await;
    w.labels = labels;
    w.months = months;
    let dims = prepared?;

    carry::tidy(w, pool, now).await?;
    let maintain = now - w.last_maintenance_ms > MAINTENANCE_EVERY_MS;
    w.staged_client(pool).await?;
    // Taken after the connection is known good: a new connection has dropped the carry.
    let carried = w.carry.take();
    let carry_this = behind && carried.as_ref().is_none_or(|c| c.has_room(now));
    let writer_id = w.carry_id.ok_or(StoreError::WorkerGone)?;
    let seq = w.next_seq;
    let client = w.client.as_mut().ok_or(StoreError::WorkerGone)?;
    let tx = client.transaction().await?;
    // A carry that is written now has its pending rows deleted first: they come first in the lock order.
    let (kept, flushed) = if carry_this {
        (carried, None)
    } else {
        (None, carried)
    };
    if let Some(c) = &flushed {
        c.claim(&tx).await?;
    }
    // Sums that are carried, or added to a carry's, are finished later (or by whoever upserts them).
    let finish_now = !carry_this && flushed.is_none();
    // What each event adds to its rollup rows (its cost and avoided cost are also two of its spend log's columns),
    // shared with the thread that folds them.
    let input = Arc::new(FoldInput {
        finished: live.iter().map(|e| e.finished_at_ms).collect(),
        sums: live
            .iter()
            .map(|e| Ok(batch::acc_of(e, batch::cost_of(e)?, batch::avoided_of(e)?)))
            .collect::<Result<Vec<Acc>>>()?,
        dims,
    });
    // A large batch is folded into rollup rows on another thread while the server stores its spend logs. The fold
    // assumes every event is new, as nearly always; when some were not (a replay), it is done again below for the
    // new ones alone.
    let folding = (live.len() >= batch::PARALLEL_FOLD_FROM).then(|| {
        let input = Arc::clone(&input);
        tokio::task::spawn_blocking(move || {
            let mut agg = Aggregates::default();
            for ((finished, d), a) in input.finished.iter().zip(&input.dims).zip(&input.sums) {
                agg.add_sums(*finished, d, *a, &[]);
            }
            if finish_now {
                agg.finish();
            }
            agg
        })
    });
    let (dims, sums) = (&input.dims, &input.sums);
    let fresh = store_spend_logs(&tx, &live, dims, sums).await?;

    // Whether some events were stored before: then only the ids in `fresh` are new.
    let replayed = fresh.is_some();
    let mut fresh = fresh.unwrap_or_default();
    let folding = folding.filter(|_| !replayed);
    let mut agg = Aggregates::default();
    let mut charges: Vec<[i64; 3]> = Vec::new();
    let mut charge_ids: Vec<Uuid> = Vec::new();
    // The events counted, for a carried batch's pending row.
    let (mut counted_ids, mut counted_ts) = (Vec::new(), Vec::new());
    for ((e, d), a) in live.iter().zip(dims).zip(sums) {
        // `remove`, so that an id twice in one batch counts once.
        if replayed && !fresh.remove(&e.id) {
            report.duplicates += 1;
            continue;
        }
        report.inserted += 1;
        if carry_this {
            counted_ids.push(e.id);
            counted_ts.push(e.finished_at_ms);
        }
        if folding.is_none() {
            agg.add_sums(e.finished_at_ms, d, *a, &e.leases);
        }
        if let Some(wallet) = e.wallet_id {
            charges.push([wallet, -a.cost, e.finished_at_ms]);
            charge_ids.push(e.id);
        }
    }
    let mut agg = match folding {
        Some(f) => {
            let mut agg = f
                .await
                .map_err(|e| StoreError::Database(format!("the rollup fold failed: {e}")))?;
            for (e, a) in live.iter().zip(sums) {
                agg.add_leases(&e.leases, a.cost);
            }
            agg
        }
        None => {
            if finish_now {
                agg.finish();
            }
            agg
        }
    };
    let carried_oldest = flushed.as_ref().map(|c| c.oldest_ms);
    if carry_this {
        if report.inserted > 0 {
            carry::mark(&tx, writer_id, seq, now, &counted_ids, &counted_ts).await?;
        }
    } else if let Some(c) = flushed {
        // The carry's sums and this batch's, finished together: each row they share is upserted once.
        let mut total = c.into_sums();
        let leases = std::mem::take(&mut agg.leases);
        total.absorb(std::mem::take(&mut agg));
        agg.leases = leases;
        let total = tokio::task::spawn_blocking(move || {
            total.finish();
            total
        })
        .await
        .map_err(|e| StoreError::Database(format!("the rollup fold failed: {e}")))?;
        upsert_aggregates(&tx, &total).await?;
    } else {
        upsert_aggregates(&tx, &agg).await?;
    }
    settle(&tx, &charges, &charge_ids).await?;
    super::replicas::record_spend(&tx, &std::mem::take(&mut agg.leases)).await?;

    tx.commit().await?;
    if carry_this {
        w.carry = if report.inserted > 0 {
            let mut c = kept.unwrap_or_else(|| Carry::new(writer_id, now));
            let oldest = counted_ts.iter().copied().min().unwrap_or(now);
            c.add(agg, seq, oldest);
            w.next_seq += 1;
            Some(c)
        } else {
            kept
        };
    }
    carry::note_rollups_of(w, carried_oldest);
    report.rollups_carried = w.carry.is_some();
    if maintain {
        w.last_maintenance_ms = now;
        let cutoff = batch::minute_prune_cutoff(
            now,
            crate::sql::plan::minute_retention_ms(options.minute_retention_hours),
        );
        let client = w.client(pool).await?;
        if let Err(e) = prune_minutes(client, cutoff).await {
            tracing::warn!(error = %e, "Pruning old minute rollups failed; the next maintenance retries.");
        }
        if let Some(days) = options.retention_days {
            // After the commit: dropping a partition takes a short exclusive lock, never held by a batch.
            let mut months = std::mem::take(&mut w.months);
            let client = w.client(pool).await?;
            let dropped = partitions::drop_expired(client, &mut months, days, now).await;
            w.months = months;
            if let Err(e) = dropped {
                tracing::warn!(error = %e, "Dropping expired spend-log partitions failed; the next maintenance retries.");
            }
        }
    }
    Ok(report)
}

/// Deletes the minute rollups before `cutoff`, locking them in key order first: a late event may be adding to
/// one of them in another writer's batch, which takes its rows in that order too. Its own transaction, after
/// the batch's, so that it never holds rows while the batch's later tables wait.
async fn prune_minutes(client: &Client, cutoff: i64) -> Result<()> {
    let sql = format!(
        "DELETE FROM rollup_minute WHERE bucket < $1 AND ctid = ANY (ARRAY(
           SELECT ctid FROM rollup_minute WHERE bucket < $1 ORDER BY {ROLLUP_DIMS} FOR UPDATE))"
    );
    client.execute(sql.as_str(), &[&cutoff]).await?;
    Ok(())
}

/// Locks rows of `table` by id, in id order, before a statement whose plan might take them in another order.
pub(super) async fn lock_in_order(tx: &impl GenericClient, table: &str, ids: &[i64]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let sql = format!("SELECT id FROM {table} WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE");
    tx.query(sql.as_str(), &[&sorted]).await?;
    Ok(())
}

/// Labels and partitions of a batch, before its transaction; returns the dimensions of each event.
///
/// Each label is looked up once per event: the dimensions of events whose labels are all cached are resolved in
/// the same pass that finds the names still to intern (all of them but the first batches' few), and only the
/// others are resolved again afterwards.
async fn prepare(
    client: &mut Client,
    labels: &mut LabelCache,
    months: &mut HashSet<i64>,
    live: &[&SpendEvent],
) -> Result<Vec<batch::Dims>> {
    let mut dims = Vec::with_capacity(live.len());
    let mut unresolved = Vec::new();
    for (i, e) in live.iter().enumerate() {
        match batch::dims_of(e, |kind, name| label_id(labels, kind, name)) {
            Ok(d) => dims.push(d),
            Err(_) => {
                unresolved.push(i);
                dims.push(batch::Dims::default());
            }
        }
    }
    if !unresolved.is_empty() {
        intern_labels(
            client,
            labels,
            unresolved.iter().flat_map(|i| batch::label_names(live[*i])),
        )
        .await?;
        for i in unresolved {
            dims[i] = batch::dims_of(live[i], |kind, name| label_id(labels, kind, name))?;
        }
    }
    // Months as ranges: a batch's events nearly all finish in one month, so one conversion serves them all.
    let mut needed = HashSet::new();
    let mut last: Option<(i64, i64, i64)> = None;
    for e in live {
        let t = e.finished_at_ms;
        if !last.is_some_and(|(from, to, _)| (from..to).contains(&t)) {
            let m = partitions::month_of(t)?;
            last = Some((
                partitions::month_start_ms(m)?,
                partitions::month_start_ms(m + 1)?,
                m,
            ));
            needed.insert(m);
        }
    }
    partitions::ensure(client, months, needed).await?;
    Ok(dims)
}

/// Charges wallets for newly stored events: one `settle` ledger row each, and every wallet's balance and
/// spent total moved by their sum (locked in wallet order first, so concurrent writers never deadlock).
async fn settle(tx: &Transaction<'_>, charges: &[[i64; 3]], ids: &[Uuid]) -> Result<()> {
    if charges.is_empty() {
        return Ok(());
    }
    let per_wallet = settle_totals(charges.iter().map(|[wallet, amount, _]| (*wallet, *amount)));
    let moves = columns_of(per_wallet.iter().map(|(w, [a, b, c])| [*w, *a, *b, *c]));
    lock_in_order(tx, "wallets", &moves[0]).await?;
    let mut updated = HashSet::new();
    for r in tx
        .query(
            "UPDATE wallets AS w SET balance_pico = w.balance_pico + d.amount,
                allocated_pico = w.allocated_pico + d.allocated, spent_pico = w.spent_pico + d.spent
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) AS d (id, amount, allocated, spent)
             WHERE w.id = d.id RETURNING w.id",
            &[&moves[0], &moves[1], &moves[2], &moves[3]],
        )
        .await?
    {
        updated.insert(r.try_get::<_, i64>(0)?);
    }
    if let Some(missing) = per_wallet.keys().find(|id| !updated.contains(*id)) {
        return Err(crate::sql::ledger::missing_wallet(*missing));
    }
    let cols = columns_of(charges.iter().copied());
    tx.execute(
        "INSERT INTO ledger (wallet_id, kind, amount_pico, actor, reason, request_id, at_ms)
         SELECT w, $5, a, 'gateway', 'request', r, t
           FROM unnest($1::bigint[], $2::bigint[], $3::uuid[], $4::bigint[]) AS u (w, a, r, t)",
        &[
            &cols[0],
            &cols[1],
            &ids,
            &cols[2],
            &LedgerKind::Settle.as_str(),
        ],
    )
    .await?;
    Ok(())
}
