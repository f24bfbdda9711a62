//! Rollups carried across batches while the writer is behind.
//!
//! Most of what a batch costs PostgreSQL is upserting its rollup rows (three quarters of the server's work in the
//! ingest benchmark, docs/BENCHMARKS-HISTORY.md, twelfth session), and a backlog's batches meet the same rows
//! again and again: every batch of one hour's traffic adds to that hour's rows. So while the writer is behind (the
//! batching writer says so: more events wait behind the batch, `Store::write_batch_behind`), a batch commits its
//! spend logs, wallet charges and lease spend as usual, but its rollup sums are added to a carry in memory, which
//! grows with the rows it touches, not with the events. The carry is upserted with the first batch written while
//! the writer is not behind, by `Store::flush_rollups` once the queue is empty, or as soon as it is
//! [`MAX_AGE_MS`] old or holds [`MAX_ROWS`] rows. Freshness is already lost while the writer is behind: the
//! pages miss the events still queued, and now for a few seconds those whose rollups are carried.
//!
//! **Nothing lost, nothing counted twice.** A carried batch writes a `rollup_pending` row in its own
//! transaction: its writer's id, a sequence number and the ids (and times) of the events it stored for the first
//! time. The transaction that upserts the carry deletes those rows first and fails unless it deleted every one.
//! Whoever deletes a pending row adds its events' rollups, in the same transaction: the owner from its carry, or
//! anyone else by folding the events again from the spend logs ([`refold`]). A writer whose carry is lost (a
//! failed write, a lost connection) refolds its own pending rows before it writes again.
//!
//! **Whose rows are whose.** Each writer connection takes a new id and holds a session advisory lock on it for
//! its life, so a lock that can be taken means its owner's connection is gone, and with it the owner's carry
//! (a writer that reconnects drops its carry and takes a new id). A writer refolds the rows of ids whose lock it
//! can take: at start, and every [`ORPHAN_CHECK_MS`] while it writes. Pending rows come first in the write
//! path's lock order (`write.rs`, "No deadlocks"): every transaction that deletes them does so before it touches
//! a rollup row.

use tokio_postgres::{Client, Transaction};
use uuid::Uuid;

use super::{pool::Pool, WriterState};
use crate::sql::batch::{Acc, Aggregates, Dims};
use crate::{Result, StoreError};

/// The longest a carry waits to be upserted, measured from the commit of its first batch: while the writer is
/// behind, the pages are this much further behind than its queue makes them. A third of a million events of the
/// benchmark's traffic ended within it on this machine, so a backlog that size pays for each rollup row once.
pub(super) const MAX_AGE_MS: i64 = 10_000;

/// A carry with this many all-dimension rollup rows (over the three grains) takes no more batches; the last one
/// it took may add its own. By estimate (not measured) 150-300 bytes a row in memory (hash maps grow by doubling), so some 20-40 MB
/// beside the writer's 64 MB queue. The benchmark's traffic reached 170,000 in ten seconds.
pub(super) const MAX_ROWS: usize = 131_072;

/// How often a writer looks for pending rows that a writer gone away left behind.
const ORPHAN_CHECK_MS: i64 = 30_000;

/// The first key of the advisory locks on writer ids (the two-key form, apart from the migration lock's).
const LOCK_CLASS: i32 = 0x5347_5243;

/// The rollup sums of batches committed without them.
pub(super) struct Carry {
    sums: Aggregates,
    /// The writer id the batches' pending rows were written under, and their sequence numbers.
    writer: i32,
    seqs: Vec<i64>,
    opened_ms: i64,
    /// The earliest event the sums hold, for the answers kept for past days (`crate::sealed`).
    pub(super) oldest_ms: i64,
}

impl Carry {
    pub(super) fn new(writer: i32, opened_ms: i64) -> Carry {
        Carry {
            sums: Aggregates::default(),
            writer,
            seqs: Vec::new(),
            opened_ms,
            oldest_ms: i64::MAX,
        }
    }

    /// Whether another batch may be carried at `now_ms`.
    pub(super) fn has_room(&self, now_ms: i64) -> bool {
        now_ms - self.opened_ms < MAX_AGE_MS && self.sums.pending_rows() < MAX_ROWS
    }

    /// Adds a committed batch: its unfinished sums, the sequence number of its pending row, its earliest event.
    pub(super) fn add(&mut self, batch: Aggregates, seq: i64, oldest_ms: i64) {
        self.sums.absorb(batch);
        self.seqs.push(seq);
        self.oldest_ms = self.oldest_ms.min(oldest_ms);
    }

    /// The sums, to be added to a batch's before it is finished.
    pub(super) fn into_sums(self) -> Aggregates {
        self.sums
    }

    /// Deletes this carry's pending rows, first in a transaction that upserts its sums. Fails (to be run again)
    /// unless every one was still there: another writer that refolded one has counted it already.
    pub(super) async fn claim(&self, tx: &Transaction<'_>) -> Result<()> {
        let deleted = tx
            .execute(
                "DELETE FROM rollup_pending WHERE writer = $1 AND seq = ANY($2)",
                &[&self.writer, &self.seqs],
            )
            .await?;
        if deleted != self.seqs.len() as u64 {
            return Err(StoreError::Retry(format!(
                "{} of the {} batches whose rollups this writer carried were refolded by another writer; the \
                 carry is dropped and what is left of it refolded",
                self.seqs.len() as u64 - deleted,
                self.seqs.len()
            )));
        }
        Ok(())
    }
}

/// Records a carried batch's pending row in its transaction.
pub(super) async fn mark(
    tx: &Transaction<'_>,
    writer: i32,
    seq: i64,
    at_ms: i64,
    ids: &[Uuid],
    ts: &[i64],
) -> Result<()> {
    tx.execute(
        "INSERT INTO rollup_pending (writer, seq, at_ms, event_ids, ts_ms) VALUES ($1, $2, $3, $4, $5)",
        &[&writer, &seq, &at_ms, &ids, &ts],
    )
    .await?;
    Ok(())
}

/// Takes a new writer id for a new connection and locks it for the connection's life.
pub(super) async fn own_new_id(client: &Client) -> Result<i32> {
    loop {
        // Random (the standard library's hasher keys come from the system's random source), so that writers
        // never need to agree on ids; one that is taken (one in two billion) is skipped.
        let random =
            std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u8);
        let id = (random & 0x7fff_ffff) as i32;
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&LOCK_CLASS, &id])
            .await?
            .try_get(0)?;
        if locked {
            return Ok(id);
        }
    }
}

/// Deletes every pending row of `writer` and adds their events' rollups, folded again from the spend logs, in
/// one transaction. Returns the earliest event refolded, if any. Only for a writer whose carry is gone.
async fn refold(client: &mut Client, writer: i32) -> Result<Option<i64>> {
    let tx = client.transaction().await?;
    let mut ids: Vec<Uuid> = Vec::new();
    let mut ts: Vec<i64> = Vec::new();
    for r in tx
        .query(
            "DELETE FROM rollup_pending WHERE writer = $1 RETURNING event_ids, ts_ms",
            &[&writer],
        )
        .await?
    {
        ids.extend(r.try_get::<_, Vec<Uuid>>(0)?);
        ts.extend(r.try_get::<_, Vec<i64>>(1)?);
    }
    if ids.is_empty() {
        tx.rollback().await?;
        return Ok(None);
    }
    // Events of a partition that retention dropped meanwhile are gone, with the rest of their month.
    let rows = tx
        .query(
            "SELECT s.ts_ms, s.team_id, s.user_id, s.key_id, s.provider_id, s.model_id, s.gateway_id,
                    s.workflow_id, s.cache_outcome, s.status, s.input_tokens, s.output_tokens,
                    s.cached_input_tokens, s.cache_write_tokens, s.cost_pico, s.latency_ms, s.avoided_cost_pico
               FROM unnest($1::uuid[], $2::bigint[]) AS u (id, ts)
               JOIN spend_logs s ON s.event_id = u.id AND s.ts_ms = u.ts",
            &[&ids, &ts],
        )
        .await?;
    let mut agg = Aggregates::default();
    let mut oldest = None::<i64>;
    for r in &rows {
        let v = |i: usize| r.try_get::<_, i64>(i);
        let dims = Dims {
            team: v(1)?,
            user: v(2)?,
            key: v(3)?,
            provider: v(4)?,
            model: v(5)?,
            gateway: v(6)?,
            workflow: v(7)?,
            cache_outcome: v(8)?,
        };
        let one = Acc {
            requests: 1,
            errors: i64::from(spendgate_core::RequestStatus::from_code(v(9)?).is_error()),
            input: v(10)?,
            output: v(11)?,
            cached: v(12)?,
            cache_write: v(13)?,
            cost: v(14)?,
            latency: v(15)?,
            avoided: v(16)?,
        };
        let at = v(0)?;
        oldest = Some(oldest.map_or(at, |o| o.min(at)));
        agg.add_sums(at, &dims, one, &[]);
    }
    agg.finish();
    super::write::upsert_aggregates(&tx, &agg).await?;
    tx.commit().await?;
    tracing::info!(
        writer,
        events = rows.len(),
        "Added the rollups of batches a writer had carried and not written (refolded from their spend logs)."
    );
    Ok(oldest)
}

/// Before a write: refolds this process's own pending rows when its carry was lost, and every
/// [`ORPHAN_CHECK_MS`] (and at start) those of writers whose connection is gone.
pub(super) async fn tidy(w: &mut WriterState, pool: &Pool, now_ms: i64) -> Result<()> {
    w.staged_client(pool).await?;
    if w.refold_own {
        let own: Vec<i32> = w.retired.iter().copied().chain(w.carry_id).collect();
        let client = w.client.as_mut().ok_or(StoreError::WorkerGone)?;
        let mut oldest = Vec::new();
        for id in own {
            oldest.extend(refold(client, id).await?);
        }
        w.retired.clear();
        w.refold_own = false;
        note_rollups_of(w, oldest);
    }
    if now_ms - w.last_orphan_check_ms >= ORPHAN_CHECK_MS {
        let mine = w.carry_id;
        let client = w.client.as_mut().ok_or(StoreError::WorkerGone)?;
        let oldest = refold_orphans(client, mine).await?;
        w.last_orphan_check_ms = now_ms;
        note_rollups_of(w, oldest);
    }
    Ok(())
}

/// Notes that rollups of events as old as the earliest of `times` were written, for the answers kept for past
/// days (`PostgresStore::write_events` passes it on).
pub(super) fn note_rollups_of(w: &mut WriterState, times: impl IntoIterator<Item = i64>) {
    if let Some(t) = times.into_iter().chain(w.flushed_oldest_ms).min() {
        w.flushed_oldest_ms = Some(t);
    }
}

/// Refolds the pending rows of every writer but `mine` whose lock can be taken (its connection is gone); returns
/// the earliest event refolded of each.
async fn refold_orphans(client: &mut Client, mine: Option<i32>) -> Result<Vec<i64>> {
    let writers: Vec<i32> = client
        .query("SELECT DISTINCT writer FROM rollup_pending", &[])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<std::result::Result<_, _>>()?;
    let mut oldest = Vec::new();
    for id in writers.into_iter().filter(|id| Some(*id) != mine) {
        let free: bool = client
            .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&LOCK_CLASS, &id])
            .await?
            .try_get(0)?;
        if !free {
            continue;
        }
        let refolded = refold(client, id).await;
        client
            .execute("SELECT pg_advisory_unlock($1, $2)", &[&LOCK_CLASS, &id])
            .await?;
        oldest.extend(refolded?);
    }
    Ok(oldest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_carry_has_room_until_it_is_old_or_large() {
        let c = Carry::new(7, 1_000);
        assert!(c.has_room(1_000));
        assert!(c.has_room(1_000 + MAX_AGE_MS - 1));
        assert!(!c.has_room(1_000 + MAX_AGE_MS));
    }
}
