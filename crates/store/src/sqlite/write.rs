//! The write path: spend logs and rollups of one batch in one transaction, idempotent by event id.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};
use spendgate_core::time::{now_ms, Grain, HOUR_MS};
use spendgate_core::SpendEvent;

use super::schema::{LabelKind, ROLLUP_TABLES};
use super::{LabelCache, WriterConn};
use crate::{Result, StoreError, WriteReport};

const INSERT_LOG: &str = "INSERT INTO spend_logs (
    event_id, ts_ms, started_ms, latency_ms, gateway_id, provider_id, model_id, key_id, user_id, team_id,
    workflow_id, endpoint, stream, cache_outcome, status, http_status, input_tokens, output_tokens,
    cached_input_tokens, cache_write_tokens, cost_pico, usage_source, price_confidence, detail, fingerprint,
    attempts, avoided_cost_pico)
  VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24,
    ?25, ?26, ?27)
  ON CONFLICT (event_id) DO NOTHING";

fn upsert_rollup_sql(table: &str) -> String {
    format!(
        "INSERT INTO {table} (bucket, team_id, user_id, key_id, provider_id, model_id, gateway_id, workflow_id,
            cache_outcome, requests, errors, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens,
            cost_pico, latency_ms_sum, avoided_cost_pico)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
         ON CONFLICT DO UPDATE SET {ADD_MEASURES}"
    )
}

/// How an upsert adds a batch's sums to a rollup row (both kinds of rollup share the measure columns).
const ADD_MEASURES: &str = "requests = requests + excluded.requests, errors = errors + excluded.errors,
    input_tokens = input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens,
    cached_input_tokens = cached_input_tokens + excluded.cached_input_tokens,
    cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens,
    cost_pico = cost_pico + excluded.cost_pico, latency_ms_sum = latency_ms_sum + excluded.latency_ms_sum,
    avoided_cost_pico = avoided_cost_pico + excluded.avoided_cost_pico";

/// The dimensions of one rollup row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Dims {
    team: i64,
    user: i64,
    key: i64,
    provider: i64,
    model: i64,
    gateway: i64,
    workflow: i64,
    cache_outcome: i64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    requests: i64,
    errors: i64,
    input: i64,
    output: i64,
    cached: i64,
    cache_write: i64,
    cost: i64,
    latency: i64,
    avoided: i64,
}

impl Acc {
    fn add(&mut self, o: &Acc) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.input += o.input;
        self.output += o.output;
        self.cached += o.cached;
        self.cache_write += o.cache_write;
        self.cost += o.cost;
        self.latency += o.latency;
        self.avoided += o.avoided;
    }
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn label_id(conn: &Connection, cache: &mut LabelCache, kind: LabelKind, name: &str) -> Result<i64> {
    let by_name = cache.entry(kind).or_default();
    if let Some(&id) = by_name.get(name) {
        return Ok(id);
    }
    conn.execute(
        "INSERT INTO labels (kind, name) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![kind as i64, name],
    )?;
    let id: i64 = conn.query_row(
        "SELECT id FROM labels WHERE kind = ?1 AND name = ?2",
        params![kind as i64, name],
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
            params![kind as i64, name],
            |r| r.get(0),
        )
        .optional()?)
}

fn dims_of(w: &mut WriterConn, e: &SpendEvent) -> Result<Dims> {
    let WriterConn { conn, labels, .. } = w;
    let a = &e.attribution;
    Ok(Dims {
        team: match &a.team {
            Some(t) => label_id(conn, labels, LabelKind::Team, t)?,
            None => 0,
        },
        user: label_id(conn, labels, LabelKind::User, &a.user)?,
        key: a.key_id,
        provider: label_id(conn, labels, LabelKind::Provider, &e.provider)?,
        model: label_id(conn, labels, LabelKind::Model, &e.model)?,
        gateway: label_id(conn, labels, LabelKind::Gateway, &e.gateway)?,
        workflow: match &a.workflow {
            Some(wf) => label_id(conn, labels, LabelKind::Workflow, wf)?,
            None => 0,
        },
        cache_outcome: e.cache_outcome.code(),
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
    for e in events {
        dims.push(dims_of(w, e)?);
    }

    let mut report = WriteReport::default();
    let tx = w.conn.transaction()?;
    let mut rollups: [HashMap<(i64, Dims), Acc>; 3] = Default::default();
    let mut by_lease: HashMap<i64, i64> = HashMap::new();
    {
        let mut ins = tx.prepare_cached(INSERT_LOG)?;
        for (e, d) in events.iter().zip(&dims) {
            let cost = i64::try_from(e.cost.picos()).map_err(|_| {
                StoreError::Invalid(format!(
                    "the cost of request {} does not fit a spend log",
                    e.id
                ))
            })?;
            let avoided = i64::try_from(e.avoided_cost.picos()).map_err(|_| {
                StoreError::Invalid(format!(
                    "the avoided cost of request {} does not fit a spend log",
                    e.id
                ))
            })?;
            let detail = serde_json::json!({
                "price_lines": e.price_lines,
                "error": e.error,
                "failed_attempts": e.failed_attempts,
            })
            .to_string();
            let n = ins.execute(params![
                &e.id.as_bytes()[..],
                e.finished_at_ms,
                e.started_at_ms,
                e.latency_ms,
                d.gateway,
                d.provider,
                d.model,
                d.key,
                d.user,
                d.team,
                d.workflow,
                e.endpoint,
                e.stream,
                d.cache_outcome,
                e.status.code(),
                e.http_status,
                i64_of(e.usage.input_tokens),
                i64_of(e.usage.output_tokens),
                i64_of(e.usage.cached_input_tokens),
                i64_of(e.usage.cache_write_tokens),
                cost,
                e.usage_source.code(),
                e.price_confidence.code(),
                detail,
                e.fingerprint.map(super::fingerprint_to_sql),
                e.attempts,
                avoided,
            ])?;
            if n == 0 {
                report.duplicates += 1;
                continue;
            }
            report.inserted += 1;
            for lease in &e.leases {
                *by_lease.entry(*lease).or_default() += cost;
            }
            if let Some(wallet) = e.wallet_id {
                // The charge lands in the wallet's ledger in the same transaction as the spend log, so the two
                // can never disagree, and the unique request id keeps a replayed event from charging twice.
                super::controls::post(
                    &tx,
                    wallet,
                    crate::controls::LedgerKind::Settle,
                    -cost,
                    "gateway",
                    "request",
                    None,
                    Some(&e.id.as_bytes()[..]),
                    e.finished_at_ms,
                )?;
            }
            for (i, g) in Grain::ALL.iter().enumerate() {
                let acc = rollups[i]
                    .entry((g.bucket(e.finished_at_ms), *d))
                    .or_default();
                acc.requests += 1;
                acc.errors += i64::from(e.status.is_error());
                acc.input += i64_of(e.usage.input_tokens);
                acc.output += i64_of(e.usage.output_tokens);
                acc.cached += i64_of(e.usage.cached_input_tokens);
                acc.cache_write += i64_of(e.usage.cache_write_tokens);
                acc.cost += cost;
                acc.latency += i64::from(e.latency_ms);
                acc.avoided += avoided;
            }
        }
    }
    for (i, table) in ROLLUP_TABLES.iter().enumerate() {
        let mut up = tx.prepare_cached(&upsert_rollup_sql(table))?;
        for ((bucket, d), a) in &rollups[i] {
            up.execute(params![
                bucket,
                d.team,
                d.user,
                d.key,
                d.provider,
                d.model,
                d.gateway,
                d.workflow,
                d.cache_outcome,
                a.requests,
                a.errors,
                a.input,
                a.output,
                a.cached,
                a.cache_write,
                a.cost,
                a.latency,
                a.avoided
            ])?;
        }
    }
    // The per-dimension rollups, folded from this batch's hour and day aggregates (never from single events), so
    // they always hold exactly the sums of the all-dimension rows.
    for (i, table) in [(1usize, "rollup_dim_hour"), (2, "rollup_dim_day")] {
        let mut narrow: HashMap<(i64, i64, i64), Acc> = HashMap::new();
        for ((bucket, d), a) in &rollups[i] {
            let values = [
                d.team,
                d.user,
                d.key,
                d.provider,
                d.model,
                d.gateway,
                d.workflow,
                d.cache_outcome,
            ];
            for ((_, code), value) in super::schema::DIM_CODES.iter().zip(values) {
                narrow.entry((*bucket, *code, value)).or_default().add(a);
            }
        }
        let mut up = tx.prepare_cached(&format!(
            "INSERT INTO {table} (bucket, dim, value, requests, errors, input_tokens, output_tokens,
                cached_input_tokens, cache_write_tokens, cost_pico, latency_ms_sum, avoided_cost_pico)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT DO UPDATE SET {ADD_MEASURES}"
        ))?;
        for ((bucket, code, value), a) in &narrow {
            up.execute(params![
                bucket,
                code,
                value,
                a.requests,
                a.errors,
                a.input,
                a.output,
                a.cached,
                a.cache_write,
                a.cost,
                a.latency,
                a.avoided
            ])?;
        }
    }
    super::replicas::record_spend(&tx, &by_lease)?;
    // Minute rollups are only kept for recent windows; prune them now and then, with an hour of margin so that
    // a query resolved just before the prune still finds its rows.
    let now = now_ms();
    if now - w.last_prune_ms > 10 * 60_000 {
        let cutoff = Grain::Minute.bucket(now - minute_retention_ms - HOUR_MS);
        tx.execute("DELETE FROM rollup_minute WHERE bucket < ?1", [cutoff])?;
    }
    tx.commit()?;
    if now - w.last_prune_ms > 10 * 60_000 {
        w.last_prune_ms = now;
    }
    Ok(report)
}
