//! Leases and heartbeats in SQLite (see `crate::replicas` for what they mean). One SQLite file can be shared
//! by several spendgate processes on one machine; the lease transaction runs on the writer connection with an
//! immediate lock, so two grants can never both see the same room.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use spendgate_core::Money;

use crate::replicas::{GatewayBeat, LeaseGrant, LeaseRecord, LeaseRequest, LeaseTarget};
use crate::sql::lease::{self, money, pico};
use crate::{ResolvedWindow, Result, StoreError};

/// The tables: one row per lease (replica, target, period) and one per gateway name.
pub const REPLICAS: &str = r#"
CREATE TABLE leases (
    id             INTEGER PRIMARY KEY,
    kind           TEXT NOT NULL,
    target_id      INTEGER NOT NULL,
    period_start   INTEGER NOT NULL,
    gateway        TEXT NOT NULL,
    granted_pico   INTEGER NOT NULL,
    recorded_pico  INTEGER NOT NULL DEFAULT 0,
    expires_at_ms  INTEGER NOT NULL,
    UNIQUE (kind, target_id, period_start, gateway)
);
CREATE INDEX leases_target ON leases (kind, target_id, period_start);
CREATE TABLE gateways (
    name                TEXT PRIMARY KEY,
    version             TEXT NOT NULL,
    started_at_ms       INTEGER NOT NULL,
    last_seen_ms        INTEGER NOT NULL,
    requests_per_minute INTEGER NOT NULL,
    error_rate_bp       INTEGER NOT NULL,
    latency_p50_ms      INTEGER,
    latency_p95_ms      INTEGER,
    queue_pending       INTEGER NOT NULL,
    queue_oldest_age_ms INTEGER NOT NULL,
    stopped             INTEGER NOT NULL DEFAULT 0
);
"#;

/// The controls' epoch and each replica's acknowledgement of it (`crate::Store::controls_epoch`).
pub const CONTROL_EPOCH: &str = r#"
CREATE TABLE control_epoch (id INTEGER PRIMARY KEY CHECK (id = 1), epoch INTEGER NOT NULL);
INSERT INTO control_epoch (id, epoch) VALUES (1, 0);
CREATE TABLE control_acks (gateway TEXT PRIMARY KEY, epoch INTEGER NOT NULL, at_ms INTEGER NOT NULL);
"#;

pub(super) fn controls_epoch(conn: &Connection) -> Result<i64> {
    Ok(
        conn.query_row("SELECT epoch FROM control_epoch WHERE id = 1", [], |r| {
            r.get(0)
        })?,
    )
}

pub(super) fn bump_controls_epoch(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row(
        "UPDATE control_epoch SET epoch = epoch + 1 WHERE id = 1 RETURNING epoch",
        [],
        |r| r.get(0),
    )?)
}

pub(super) fn ack_controls_epoch(
    conn: &Connection,
    gateway: &str,
    epoch: i64,
    now_ms: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO control_acks (gateway, epoch, at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (gateway) DO UPDATE SET epoch = max(epoch, excluded.epoch), at_ms = excluded.at_ms",
        params![gateway, epoch, now_ms],
    )?;
    Ok(())
}

pub(super) fn controls_acks(conn: &Connection) -> Result<Vec<(String, i64)>> {
    let mut st = conn.prepare("SELECT gateway, epoch FROM control_acks ORDER BY gateway")?;
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Grants a lease (see [`crate::Store::lease`]). `budget_window` is the budget's period so far as the rollups
/// hold it; `spend_in` reads the spend of a budget's scope in it.
pub(super) fn lease(
    conn: &mut Connection,
    req: &LeaseRequest,
    now_ms: i64,
    budget_window: Option<ResolvedWindow>,
) -> Result<LeaseGrant> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let (kind, target_id, period) = req.target.key();
    let mine: Option<(i64, i64)> = tx
        .query_row(
            "SELECT id, recorded_pico FROM leases
              WHERE kind = ?1 AND target_id = ?2 AND period_start = ?3 AND gateway = ?4",
            params![kind, target_id, period, req.gateway],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let my_recorded = mine.map_or(0, |m| m.1);
    let others: i64 = tx.query_row(
        "SELECT COALESCE(SUM(MAX(granted_pico - recorded_pico, 0)), 0) FROM leases
          WHERE kind = ?1 AND target_id = ?2 AND period_start = ?3 AND gateway <> ?4 AND expires_at_ms > ?5",
        params![kind, target_id, period, req.gateway, req.target.live_after(now_ms)],
        |r| r.get(0),
    )?;
    let room = match &req.target {
        LeaseTarget::Budget {
            filters, amount, ..
        } => {
            let w = budget_window.ok_or_else(|| {
                StoreError::Invalid("a budget lease needs the budget's period window".into())
            })?;
            let spent = pico(super::read::summary(&tx, filters, w)?.cost)?;
            pico(*amount)? - spent - others
        }
        LeaseTarget::Wallet { id } => {
            let balance: Option<i64> = tx
                .query_row(
                    "SELECT balance_pico FROM wallets WHERE id = ?1",
                    [id],
                    |r| r.get(0),
                )
                .optional()?;
            let balance = balance
                .ok_or_else(|| StoreError::Invalid(format!("wallet {id} does not exist")))?;
            balance - others
        }
        LeaseTarget::Rate { limit, .. } => i64::try_from(*limit).unwrap_or(i64::MAX) - others,
    };
    let g = lease::grant(req, my_recorded, room)?;
    let granted = g.granted;
    let expires = now_ms + req.ttl_ms.max(1);
    let id = match mine {
        Some((id, _)) => {
            tx.execute(
                "UPDATE leases SET granted_pico = ?1, expires_at_ms = ?2 WHERE id = ?3",
                params![granted, expires, id],
            )?;
            id
        }
        None => {
            tx.execute(
                "INSERT INTO leases (kind, target_id, period_start, gateway, granted_pico, expires_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![kind, target_id, period, req.gateway, granted, expires],
            )?;
            tx.last_insert_rowid()
        }
    };
    tx.commit()?;
    Ok(g.answer(id, expires))
}

pub(super) fn release(conn: &Connection, id: i64, keep: Money, now_ms: i64) -> Result<()> {
    conn.execute(
        "UPDATE leases SET granted_pico = MAX(?1, recorded_pico), expires_at_ms = MIN(expires_at_ms, ?2)
          WHERE id = ?3",
        params![pico(keep)?, now_ms, id],
    )?;
    Ok(())
}

/// Adds logged spend to the leases it was drawn against, in the spend logs' transaction.
pub(super) fn record_spend(tx: &Transaction<'_>, by_lease: &BTreeMap<i64, i64>) -> Result<()> {
    if by_lease.is_empty() {
        return Ok(());
    }
    let mut up =
        tx.prepare_cached("UPDATE leases SET recorded_pico = recorded_pico + ?1 WHERE id = ?2")?;
    for (id, cost) in by_lease {
        up.execute(params![cost, id])?;
    }
    Ok(())
}

/// How much of a wallet's balance live leases hold back, so that moving money out never takes it.
pub(super) fn wallet_leased(tx: &Connection, wallet: i64, now_ms: i64) -> Result<i64> {
    Ok(tx.query_row(
        "SELECT COALESCE(SUM(MAX(granted_pico - recorded_pico, 0)), 0) FROM leases
          WHERE kind = 'wallet' AND target_id = ?1 AND expires_at_ms > ?2",
        params![wallet, now_ms],
        |r| r.get(0),
    )?)
}

pub(super) fn list_leases(conn: &Connection, now_ms: i64) -> Result<Vec<LeaseRecord>> {
    let mut st = conn.prepare(
        "SELECT id, kind, target_id, period_start, gateway, granted_pico, recorded_pico, expires_at_ms
           FROM leases WHERE expires_at_ms > ?1 ORDER BY id",
    )?;
    let rows = st
        .query_map([now_ms], |r| {
            Ok(LeaseRecord {
                id: r.get(0)?,
                kind: r.get(1)?,
                target_id: r.get(2)?,
                period_start_ms: r.get(3)?,
                gateway: r.get(4)?,
                granted: money(r.get(5)?),
                recorded: money(r.get(6)?),
                expires_at_ms: r.get(7)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

fn u(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn heartbeat(conn: &Connection, b: &GatewayBeat) -> Result<()> {
    conn.execute(
        "INSERT INTO gateways (name, version, started_at_ms, last_seen_ms, requests_per_minute, error_rate_bp,
             latency_p50_ms, latency_p95_ms, queue_pending, queue_oldest_age_ms, stopped)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (name) DO UPDATE SET version = excluded.version, started_at_ms = excluded.started_at_ms,
             last_seen_ms = excluded.last_seen_ms, requests_per_minute = excluded.requests_per_minute,
             error_rate_bp = excluded.error_rate_bp, latency_p50_ms = excluded.latency_p50_ms,
             latency_p95_ms = excluded.latency_p95_ms, queue_pending = excluded.queue_pending,
             queue_oldest_age_ms = excluded.queue_oldest_age_ms, stopped = excluded.stopped",
        params![
            b.name,
            b.version,
            b.started_at_ms,
            b.last_seen_ms,
            u(b.requests_per_minute),
            b.error_rate_bp,
            b.latency_p50_ms.map(u),
            b.latency_p95_ms.map(u),
            u(b.queue_pending),
            b.queue_oldest_age_ms,
            b.stopped,
        ],
    )?;
    Ok(())
}

pub(super) fn list_gateways(conn: &Connection) -> Result<Vec<GatewayBeat>> {
    let mut st = conn.prepare(
        "SELECT name, version, started_at_ms, last_seen_ms, requests_per_minute, error_rate_bp, latency_p50_ms,
                latency_p95_ms, queue_pending, queue_oldest_age_ms, stopped
           FROM gateways ORDER BY last_seen_ms DESC, name",
    )?;
    let rows = st
        .query_map([], |r| {
            let n = |i: usize| -> rusqlite::Result<u64> {
                Ok(u64::try_from(r.get::<_, i64>(i)?).unwrap_or(0))
            };
            let opt = |i: usize| -> rusqlite::Result<Option<u64>> {
                Ok(r.get::<_, Option<i64>>(i)?
                    .map(|v| u64::try_from(v).unwrap_or(0)))
            };
            Ok(GatewayBeat {
                name: r.get(0)?,
                version: r.get(1)?,
                started_at_ms: r.get(2)?,
                last_seen_ms: r.get(3)?,
                requests_per_minute: n(4)?,
                error_rate_bp: r.get(5)?,
                latency_p50_ms: opt(6)?,
                latency_p95_ms: opt(7)?,
                queue_pending: n(8)?,
                queue_oldest_age_ms: r.get(9)?,
                stopped: r.get(10)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}
