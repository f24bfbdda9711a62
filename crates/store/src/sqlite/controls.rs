//! Budgets, wallets, rate limits, ledger, alerts, deliveries and audit log on SQLite. The wallet arithmetic and the row
//! mappers are shared with PostgreSQL (`crate::sql::{ledger, rows}`).

use rusqlite::{params, Connection, Transaction};
use spendgate_core::time::now_ms;
use spendgate_core::Money;

use super::{all, first};
use crate::controls::{
    AlertRecord, AuditEntry, AuditRecord, BudgetRecord, Delivery, LedgerEntry, NewAlert, NewBudget,
    NewRateLimit, NewWallet, RateLimitRecord, Transfer, WalletRecord,
};
use crate::sql::ledger::{self, pico, Posting};
use crate::sql::rows::{self, BUDGET_COLUMNS, LEDGER_COLUMNS, RATE_LIMIT_COLUMNS, WALLET_COLUMNS};
use crate::{Result, StoreError};

/// Creates a budget, or updates the one with the same scope and period. Returns (before, after).
pub(super) fn upsert_budget(
    c: &mut Connection,
    b: &NewBudget,
) -> Result<(Option<BudgetRecord>, BudgetRecord)> {
    let tx = immediate(c)?;
    let (kind, subject) = (b.scope.kind(), b.scope.subject());
    let select = format!(
        "SELECT {BUDGET_COLUMNS} FROM budgets WHERE scope = ?1 AND subject = ?2 AND period = ?3"
    );
    let key = params![kind, subject, b.period.as_str()];
    let before = first(&tx, &select, key, rows::budget)?;
    tx.execute(
        "INSERT INTO budgets (name, scope, subject, period, amount_pico, thresholds, hard_limit, created_at_ms, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
         ON CONFLICT (scope, subject, period) DO UPDATE SET name = excluded.name, amount_pico = excluded.amount_pico,
            thresholds = excluded.thresholds, hard_limit = excluded.hard_limit, updated_at_ms = excluded.updated_at_ms",
        params![b.name, kind, subject, b.period.as_str(), pico(b.amount)?, ledger::thresholds_text(&b.thresholds), b.hard_limit, now_ms()],
    )?;
    let after = first(&tx, &select, key, rows::budget)?.ok_or(crate::StoreError::WorkerGone)?;
    tx.commit()?;
    Ok((before, after))
}

pub(super) fn list_budgets(c: &Connection) -> Result<Vec<BudgetRecord>> {
    let mut st = c.prepare(&format!("SELECT {BUDGET_COLUMNS} FROM budgets ORDER BY id"))?;
    all(&mut st, [], rows::budget)
}

/// Creates the rate limit of a key or team, or changes the one it has. Returns (before, after).
pub(super) fn upsert_rate_limit(
    c: &mut Connection,
    r: &NewRateLimit,
) -> Result<(Option<RateLimitRecord>, RateLimitRecord)> {
    r.check().map_err(StoreError::Invalid)?;
    let tx = immediate(c)?;
    let (kind, subject) = (r.scope.kind(), r.scope.subject());
    let select =
        format!("SELECT {RATE_LIMIT_COLUMNS} FROM rate_limits WHERE scope = ?1 AND subject = ?2");
    let before = first(&tx, &select, params![kind, subject], rows::rate_limit)?;
    let (rpm, tpm) = r.columns();
    tx.execute(
        "INSERT INTO rate_limits (scope, subject, rpm, tpm, created_at_ms, updated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?5)
         ON CONFLICT (scope, subject) DO UPDATE SET rpm = excluded.rpm, tpm = excluded.tpm,
            updated_at_ms = excluded.updated_at_ms",
        params![kind, subject, rpm, tpm, now_ms()],
    )?;
    let after = first(&tx, &select, params![kind, subject], rows::rate_limit)?
        .ok_or(StoreError::WorkerGone)?;
    tx.commit()?;
    Ok((before, after))
}

pub(super) fn list_rate_limits(c: &Connection) -> Result<Vec<RateLimitRecord>> {
    let mut st = c.prepare(&format!(
        "SELECT {RATE_LIMIT_COLUMNS} FROM rate_limits ORDER BY id"
    ))?;
    all(&mut st, [], rows::rate_limit)
}

/// Deletes a rate limit and returns it; `None` if none has this id.
pub(super) fn delete_rate_limit(c: &Connection, id: i64) -> Result<Option<RateLimitRecord>> {
    let sql = format!("DELETE FROM rate_limits WHERE id = ?1 RETURNING {RATE_LIMIT_COLUMNS}");
    first(c, &sql, [id], rows::rate_limit)
}

pub(super) fn create_wallet(c: &mut Connection, w: &NewWallet) -> Result<WalletRecord> {
    ledger::check_new_wallet(w)?;
    let n = c.execute(
        "INSERT INTO wallets (name, scope, subject, low_pico, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (scope, subject) DO NOTHING",
        params![w.name, w.scope.kind(), w.scope.subject(), pico(w.low_threshold)?, now_ms()],
    )?;
    if n == 0 {
        return Err(ledger::duplicate_wallet(w));
    }
    let id = c.last_insert_rowid();
    wallet(c, id)?.ok_or(crate::StoreError::WorkerGone)
}

pub(super) fn wallet(c: &Connection, id: i64) -> Result<Option<WalletRecord>> {
    let sql = format!("SELECT {WALLET_COLUMNS} FROM wallets WHERE id = ?1");
    first(c, &sql, [id], rows::wallet)
}

pub(super) fn list_wallets(c: &Connection) -> Result<Vec<WalletRecord>> {
    let mut st = c.prepare(&format!("SELECT {WALLET_COLUMNS} FROM wallets ORDER BY id"))?;
    all(&mut st, [], rows::wallet)
}

/// Adds one ledger entry and moves the wallet's derived balances with it, in the caller's transaction.
pub(super) fn post(
    tx: &Transaction<'_>,
    p: &Posting,
    (actor, reason): (&str, &str),
    request_id: Option<&[u8]>,
    at_ms: i64,
) -> Result<()> {
    tx.execute(
        "INSERT INTO ledger (wallet_id, kind, amount_pico, actor, reason, counterparty, request_id, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![p.wallet, p.kind.as_str(), p.amount, actor, reason, p.counterparty, request_id, at_ms],
    )?;
    let (allocated, spent) = p.effect();
    let n = tx.execute(
        "UPDATE wallets SET balance_pico = balance_pico + ?2, allocated_pico = allocated_pico + ?3,
            spent_pico = spent_pico + ?4 WHERE id = ?1",
        params![p.wallet, p.amount, allocated, spent],
    )?;
    if n == 0 {
        return Err(ledger::missing_wallet(p.wallet));
    }
    Ok(())
}

/// Charges wallets for a batch's newly stored events: one `settle` ledger row each (its unique request id keeps a
/// replayed event from charging twice), and each wallet's balance and totals moved once by their sum.
pub(super) fn settle(tx: &Transaction<'_>, charges: &[(i64, i64, i64, [u8; 16])]) -> Result<()> {
    if charges.is_empty() {
        return Ok(());
    }
    let mut insert = tx.prepare_cached(
        "INSERT INTO ledger (wallet_id, kind, amount_pico, actor, reason, request_id, at_ms)
         VALUES (?1, ?2, ?3, 'gateway', 'request', ?4, ?5)",
    )?;
    for (wallet, amount, at_ms, id) in charges {
        insert.execute(params![
            wallet,
            crate::controls::LedgerKind::Settle.as_str(),
            amount,
            &id[..],
            at_ms
        ])?;
    }
    let mut update = tx.prepare_cached(
        "UPDATE wallets SET balance_pico = balance_pico + ?2, allocated_pico = allocated_pico + ?3,
            spent_pico = spent_pico + ?4 WHERE id = ?1",
    )?;
    let totals = ledger::settle_totals(charges.iter().map(|(w, a, _, _)| (*w, *a)));
    for (wallet, [amount, allocated, spent]) in totals {
        if update.execute(params![wallet, amount, allocated, spent])? == 0 {
            return Err(ledger::missing_wallet(wallet));
        }
    }
    Ok(())
}

/// Applies an admin transfer in one transaction (see `ledger::check_after` for what the store refuses).
pub(super) fn transfer(
    c: &mut Connection,
    t: &Transfer,
    actor: &str,
    reason: &str,
) -> Result<Vec<WalletRecord>> {
    let (postings, touched) = ledger::postings(t)?;
    let tx = immediate(c)?;
    let now = now_ms();
    for p in &postings {
        post(&tx, p, (actor, reason), None, now)?;
    }
    let mut out = Vec::new();
    for id in touched {
        // Money leased to replicas is spoken for: a transfer may not take it.
        let leased = i128::from(super::replicas::wallet_leased(&tx, id, now)?);
        out.push(ledger::check_after(id, wallet(&tx, id)?, leased)?);
    }
    tx.commit()?;
    Ok(out)
}

pub(super) fn ledger(
    c: &Connection,
    wallet: i64,
    limit: usize,
    before_id: Option<i64>,
) -> Result<Vec<LedgerEntry>> {
    let mut st = c.prepare(&format!(
        "SELECT {LEDGER_COLUMNS} FROM ledger WHERE wallet_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3"
    ))?;
    let before = before_id.unwrap_or(i64::MAX);
    all(
        &mut st,
        params![wallet, before, ledger::limit(limit, 1000)],
        rows::ledger_entry,
    )
}

/// The wallet's balance recomputed from every ledger entry, to check that the derived balance never drifts.
pub(super) fn ledger_sum(c: &Connection, wallet: i64) -> Result<Money> {
    let sql = "SELECT CAST(COALESCE(SUM(amount_pico), 0) AS TEXT) FROM ledger WHERE wallet_id = ?1";
    Ok(first(c, sql, [wallet], |r| rows::Cells::money(r, 0))?.unwrap_or(Money::ZERO))
}

/// What the wallet paid for requests since `since_ms`.
pub(super) fn spent_since(c: &Connection, wallet: i64, since_ms: i64) -> Result<Money> {
    let sql = "SELECT CAST(COALESCE(-SUM(amount_pico), 0) AS TEXT) FROM ledger
               WHERE wallet_id = ?1 AND kind = 'settle' AND at_ms >= ?2";
    Ok(first(c, sql, params![wallet, since_ms], |r| {
        rows::Cells::money(r, 0)
    })?
    .unwrap_or(Money::ZERO))
}

/// Records an alert unless the same crossing was already recorded; `None` then.
pub(super) fn record_alert(c: &Connection, a: &NewAlert) -> Result<Option<AlertRecord>> {
    let now = now_ms();
    let n = c.execute(
        "INSERT INTO alerts (kind, subject, team, period_start_ms, threshold, message, at_ms, link)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
        params![
            a.kind,
            a.subject,
            a.team,
            a.period_start_ms,
            a.threshold,
            a.message,
            now,
            a.link
        ],
    )?;
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(AlertRecord {
        id: c.last_insert_rowid(),
        alert: a.clone(),
        at_ms: now,
    }))
}

pub(super) fn list_alerts(c: &Connection, limit: usize) -> Result<Vec<AlertRecord>> {
    let mut st = c.prepare(&format!(
        "SELECT {} FROM alerts ORDER BY id DESC LIMIT ?1",
        rows::ALERT_COLUMNS
    ))?;
    all(&mut st, [ledger::limit(limit, 1000)], rows::alert)
}

pub(super) fn record_delivery(c: &Connection, d: &Delivery) -> Result<()> {
    c.execute(
        "INSERT INTO deliveries (alert_id, target, attempt, ok, detail, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![d.alert_id, d.target, d.attempt, d.ok, d.detail, d.at_ms],
    )?;
    Ok(())
}

pub(super) fn list_deliveries(c: &Connection, limit: usize) -> Result<Vec<Delivery>> {
    let mut st = c.prepare(&format!(
        "SELECT {} FROM deliveries ORDER BY id DESC LIMIT ?1",
        rows::DELIVERY_COLUMNS
    ))?;
    all(&mut st, [ledger::limit(limit, 1000)], rows::delivery)
}

pub(super) fn record_audit(c: &Connection, e: &AuditEntry) -> Result<()> {
    c.execute(
        "INSERT INTO audit_log (actor, action, target, before, after, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            e.actor,
            e.action,
            e.target,
            e.before.as_ref().map(|v| v.to_string()),
            e.after.as_ref().map(|v| v.to_string()),
            now_ms()
        ],
    )?;
    Ok(())
}

pub(super) fn list_audit(
    c: &Connection,
    from_ms: i64,
    to_ms: i64,
    limit: usize,
) -> Result<Vec<AuditRecord>> {
    let mut st = c.prepare(&format!(
        "SELECT {} FROM audit_log WHERE at_ms >= ?1 AND at_ms < ?2 ORDER BY id DESC LIMIT ?3",
        rows::AUDIT_COLUMNS
    ))?;
    all(
        &mut st,
        params![from_ms, to_ms, ledger::limit(limit, 5000)],
        rows::audit,
    )
}

/// A transaction that takes the write lock at its start. A control's write reads its row before it writes it:
/// in a deferred transaction, another process's commit in between (a replica's batch on the same file) fails the
/// write at once with `SQLITE_BUSY_SNAPSHOT`, without the busy timeout, and the admin API answered 503. Taken
/// first, the lock waits out the other's commit instead (as the leases' transaction does, `replicas.rs`).
fn immediate(c: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
}
