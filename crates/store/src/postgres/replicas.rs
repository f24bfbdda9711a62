//! Leases and heartbeats on PostgreSQL (see `crate::replicas` for what they mean; `sqlite/replicas.rs` is the
//! same on SQLite). A grant runs in one transaction holding an advisory lock on its target, so two replicas can
//! never both be granted the same room; it reads the live leases before the period's spend, so a batch committed
//! in between can only make it count a request twice (refusing more), never miss one.

use std::collections::BTreeMap;

use spendgate_core::Money;
use tokio_postgres::{Client, GenericClient, Row, Transaction};

use crate::replicas::{GatewayBeat, LeaseGrant, LeaseRecord, LeaseRequest, LeaseTarget};
use crate::sql::lease::{self, money, pico};
use crate::{ResolvedWindow, Result, StoreError};

/// The advisory lock key of a lease target (distinct from the migration lock's key space by its high bits, and
/// rate limits' from budgets' and wallets').
fn lock_key(kind: &str, target_id: i64) -> i64 {
    let kind_bit = i64::from(kind == "wallet" || kind == "tpm");
    let space = if kind == "rpm" || kind == "tpm" {
        0x5348_i64
    } else {
        0x5347
    };
    (space << 48) ^ (target_id << 1) ^ kind_bit
}

const LIVE_OTHERS: &str = "SELECT COALESCE(SUM(GREATEST(granted_pico - recorded_pico, 0)), 0)::BIGINT FROM leases
    WHERE kind = $1 AND target_id = $2 AND period_start = $3 AND gateway <> $4 AND expires_at_ms > $5";

pub(super) async fn lease(
    c: &mut Client,
    req: &LeaseRequest,
    now_ms: i64,
    budget_window: Option<ResolvedWindow>,
) -> Result<LeaseGrant> {
    let tx = c.transaction().await?;
    let (kind, target_id, period) = req.target.key();
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&lock_key(kind, target_id)],
    )
    .await?;
    let mine = tx
        .query_opt(
            "SELECT id, recorded_pico FROM leases
              WHERE kind = $1 AND target_id = $2 AND period_start = $3 AND gateway = $4",
            &[&kind, &target_id, &period, &req.gateway],
        )
        .await?
        .map(|r| -> Result<(i64, i64)> { Ok((r.try_get(0)?, r.try_get(1)?)) })
        .transpose()?;
    let my_recorded = mine.map_or(0, |m| m.1);
    let others: i64 = tx
        .query_one(
            LIVE_OTHERS,
            &[
                &kind,
                &target_id,
                &period,
                &req.gateway,
                &req.target.live_after(now_ms),
            ],
        )
        .await?
        .try_get(0)?;
    let room = match &req.target {
        LeaseTarget::Budget {
            filters, amount, ..
        } => {
            let w = budget_window.ok_or_else(|| {
                StoreError::Invalid("a budget lease needs the budget's period window".into())
            })?;
            let spent = pico(super::read::summary(&tx, filters, w).await?.cost)?;
            pico(*amount)? - spent - others
        }
        LeaseTarget::Wallet { id } => {
            let balance: i64 = tx
                .query_opt("SELECT balance_pico FROM wallets WHERE id = $1", &[id])
                .await?
                .ok_or_else(|| StoreError::Invalid(format!("wallet {id} does not exist")))?
                .try_get(0)?;
            balance - others
        }
        LeaseTarget::Rate { limit, .. } => i64::try_from(*limit).unwrap_or(i64::MAX) - others,
    };
    let g = lease::grant(req, my_recorded, room)?;
    let granted = g.granted;
    let expires = now_ms + req.ttl_ms.max(1);
    let id: i64 = match mine {
        Some((id, _)) => {
            tx.execute(
                "UPDATE leases SET granted_pico = $1, expires_at_ms = $2 WHERE id = $3",
                &[&granted, &expires, &id],
            )
            .await?;
            id
        }
        None => tx
            .query_one(
                "INSERT INTO leases (kind, target_id, period_start, gateway, granted_pico, expires_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[&kind, &target_id, &period, &req.gateway, &granted, &expires],
            )
            .await?
            .try_get(0)?,
    };
    tx.commit().await?;
    Ok(g.answer(id, expires))
}

pub(super) async fn release(c: &Client, id: i64, keep: Money, now_ms: i64) -> Result<()> {
    c.execute(
        "UPDATE leases SET granted_pico = GREATEST($1, recorded_pico), expires_at_ms = LEAST(expires_at_ms, $2)
          WHERE id = $3",
        &[&pico(keep)?, &now_ms, &id],
    )
    .await?;
    Ok(())
}

/// Adds logged spend to the leases it was drawn against, in the spend logs' transaction.
pub(super) async fn record_spend(
    tx: &Transaction<'_>,
    by_lease: &BTreeMap<i64, i64>,
) -> Result<()> {
    if by_lease.is_empty() {
        return Ok(());
    }
    let (ids, costs): (Vec<i64>, Vec<i64>) = by_lease.iter().map(|(k, v)| (*k, *v)).unzip();
    super::write::lock_in_order(tx, "leases", &ids).await?;
    tx.execute(
        "UPDATE leases AS l SET recorded_pico = l.recorded_pico + d.cost
           FROM unnest($1::bigint[], $2::bigint[]) AS d (id, cost) WHERE l.id = d.id",
        &[&ids, &costs],
    )
    .await?;
    Ok(())
}

/// How much of a wallet's balance live leases hold back.
pub(super) async fn wallet_leased(c: &impl GenericClient, wallet: i64, now_ms: i64) -> Result<i64> {
    Ok(c.query_one(
        "SELECT COALESCE(SUM(GREATEST(granted_pico - recorded_pico, 0)), 0)::BIGINT FROM leases
              WHERE kind = 'wallet' AND target_id = $1 AND expires_at_ms > $2",
        &[&wallet, &now_ms],
    )
    .await?
    .try_get(0)?)
}

fn lease_record(r: &Row) -> Result<LeaseRecord> {
    Ok(LeaseRecord {
        id: r.try_get(0)?,
        kind: r.try_get(1)?,
        target_id: r.try_get(2)?,
        period_start_ms: r.try_get(3)?,
        gateway: r.try_get(4)?,
        granted: money(r.try_get(5)?),
        recorded: money(r.try_get(6)?),
        expires_at_ms: r.try_get(7)?,
    })
}

pub(super) async fn list_leases(c: &Client, now_ms: i64) -> Result<Vec<LeaseRecord>> {
    c.query(
        "SELECT id, kind, target_id, period_start, gateway, granted_pico, recorded_pico, expires_at_ms
           FROM leases WHERE expires_at_ms > $1 ORDER BY id",
        &[&now_ms],
    )
    .await?
    .iter()
    .map(lease_record)
    .collect()
}

fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn small(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(super) async fn controls_epoch(c: &Client) -> Result<i64> {
    Ok(
        c.query_one("SELECT epoch FROM control_epoch WHERE id = 1", &[])
            .await?
            .try_get(0)?,
    )
}

pub(super) async fn bump_controls_epoch(c: &Client) -> Result<i64> {
    Ok(c.query_one(
        "UPDATE control_epoch SET epoch = epoch + 1 WHERE id = 1 RETURNING epoch",
        &[],
    )
    .await?
    .try_get(0)?)
}

pub(super) async fn ack_controls_epoch(
    c: &Client,
    gateway: &str,
    epoch: i64,
    now_ms: i64,
) -> Result<()> {
    c.execute(
        "INSERT INTO control_acks (gateway, epoch, at_ms) VALUES ($1, $2, $3)
         ON CONFLICT (gateway) DO UPDATE SET epoch = GREATEST(control_acks.epoch, EXCLUDED.epoch),
             at_ms = EXCLUDED.at_ms",
        &[&gateway, &epoch, &now_ms],
    )
    .await?;
    Ok(())
}

pub(super) async fn controls_acks(c: &Client) -> Result<Vec<(String, i64)>> {
    c.query(
        "SELECT gateway, epoch FROM control_acks ORDER BY gateway",
        &[],
    )
    .await?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect()
}

pub(super) async fn heartbeat(c: &Client, b: &GatewayBeat) -> Result<()> {
    c.execute(
        "INSERT INTO gateways (name, version, started_at_ms, last_seen_ms, requests_per_minute, error_rate_bp,
             latency_p50_ms, latency_p95_ms, queue_pending, queue_oldest_age_ms, stopped)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version, started_at_ms = EXCLUDED.started_at_ms,
             last_seen_ms = EXCLUDED.last_seen_ms, requests_per_minute = EXCLUDED.requests_per_minute,
             error_rate_bp = EXCLUDED.error_rate_bp, latency_p50_ms = EXCLUDED.latency_p50_ms,
             latency_p95_ms = EXCLUDED.latency_p95_ms, queue_pending = EXCLUDED.queue_pending,
             queue_oldest_age_ms = EXCLUDED.queue_oldest_age_ms, stopped = EXCLUDED.stopped",
        &[
            &b.name,
            &b.version,
            &b.started_at_ms,
            &b.last_seen_ms,
            &big(b.requests_per_minute),
            &i64::from(b.error_rate_bp),
            &b.latency_p50_ms.map(big),
            &b.latency_p95_ms.map(big),
            &big(b.queue_pending),
            &b.queue_oldest_age_ms,
            &b.stopped,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn list_gateways(c: &Client) -> Result<Vec<GatewayBeat>> {
    c.query(
        "SELECT name, version, started_at_ms, last_seen_ms, requests_per_minute, error_rate_bp, latency_p50_ms,
                latency_p95_ms, queue_pending, queue_oldest_age_ms, stopped
           FROM gateways ORDER BY last_seen_ms DESC, name",
        &[],
    )
    .await?
    .iter()
    .map(|r| -> Result<GatewayBeat> {
        Ok(GatewayBeat {
            name: r.try_get(0)?,
            version: r.try_get(1)?,
            started_at_ms: r.try_get(2)?,
            last_seen_ms: r.try_get(3)?,
            requests_per_minute: small(r.try_get(4)?),
            error_rate_bp: u32::try_from(r.try_get::<_, i64>(5)?).unwrap_or(0),
            latency_p50_ms: r.try_get::<_, Option<i64>>(6)?.map(small),
            latency_p95_ms: r.try_get::<_, Option<i64>>(7)?.map(small),
            queue_pending: small(r.try_get(8)?),
            queue_oldest_age_ms: r.try_get(9)?,
            stopped: r.try_get(10)?,
        })
    })
    .collect()
}
