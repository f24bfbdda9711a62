//! Budgets, wallets, ledger, alerts, deliveries and audit log on SQLite.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use spendgate_core::controls::{Period, Scope};
use spendgate_core::time::now_ms;
use spendgate_core::Money;

use crate::controls::{
    AlertRecord, AuditEntry, AuditRecord, BudgetRecord, Delivery, LedgerEntry, LedgerKind,
    NewAlert, NewBudget, NewWallet, Transfer, WalletRecord,
};
use crate::{Result, StoreError};

fn pico(m: Money) -> Result<i64> {
    i64::try_from(m.picos())
        .map_err(|_| StoreError::Invalid(format!("the amount {m} is too large")))
}

fn scope_of(kind: &str, subject: &str) -> Scope {
    Scope::parse(kind, Some(subject)).unwrap_or(Scope::Org)
}

const BUDGET_COLUMNS: &str =
    "id, name, scope, subject, period, amount_pico, thresholds, hard_limit, created_at_ms, updated_at_ms";

fn budget_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BudgetRecord> {
    let thresholds: String = r.get(6)?;
    Ok(BudgetRecord {
        id: r.get(0)?,
        def: NewBudget {
            name: r.get(1)?,
            scope: scope_of(&r.get::<_, String>(2)?, &r.get::<_, String>(3)?),
            period: Period::parse(&r.get::<_, String>(4)?).unwrap_or(Period::Month),
            amount: Money::from_picos(i128::from(r.get::<_, i64>(5)?)),
            thresholds: thresholds
                .split(',')
                .filter_map(|t| t.parse().ok())
                .collect(),
            hard_limit: r.get(7)?,
        },
        created_at_ms: r.get(8)?,
        updated_at_ms: r.get(9)?,
    })
}

/// Creates a budget, or updates the one with the same scope and period. Returns (before, after).
pub(super) fn upsert_budget(
    c: &mut Connection,
    b: &NewBudget,
) -> Result<(Option<BudgetRecord>, BudgetRecord)> {
    let tx = c.transaction()?;
    let (kind, subject) = (b.scope.kind(), b.scope.subject());
    let before = tx
        .query_row(
            &format!("SELECT {BUDGET_COLUMNS} FROM budgets WHERE scope = ?1 AND subject = ?2 AND period = ?3"),
            params![kind, subject, b.period.as_str()],
            budget_from_row,
        )
        .optional()?;
    let now = now_ms();
    let thresholds = b
        .thresholds
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    tx.execute(
        "INSERT INTO budgets (name, scope, subject, period, amount_pico, thresholds, hard_limit, created_at_ms, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
         ON CONFLICT (scope, subject, period) DO UPDATE SET name = excluded.name, amount_pico = excluded.amount_pico,
            thresholds = excluded.thresholds, hard_limit = excluded.hard_limit, updated_at_ms = excluded.updated_at_ms",
        params![b.name, kind, subject, b.period.as_str(), pico(b.amount)?, thresholds, b.hard_limit, now],
    )?;
    let after = tx.query_row(
        &format!("SELECT {BUDGET_COLUMNS} FROM budgets WHERE scope = ?1 AND subject = ?2 AND period = ?3"),
        params![kind, subject, b.period.as_str()],
        budget_from_row,
    )?;
    tx.commit()?;
    Ok((before, after))
}

pub(super) fn list_budgets(c: &Connection) -> Result<Vec<BudgetRecord>> {
    let mut st = c.prepare(&format!("SELECT {BUDGET_COLUMNS} FROM budgets ORDER BY id"))?;
    let rows = st
        .query_map([], budget_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

const WALLET_COLUMNS: &str =
    "id, name, scope, subject, low_pico, balance_pico, allocated_pico, spent_pico, created_at_ms";

fn wallet_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WalletRecord> {
    let m = |i: usize| -> rusqlite::Result<Money> {
        Ok(Money::from_picos(i128::from(r.get::<_, i64>(i)?)))
    };
    Ok(WalletRecord {
        id: r.get(0)?,
        def: NewWallet {
            name: r.get(1)?,
            scope: scope_of(&r.get::<_, String>(2)?, &r.get::<_, String>(3)?),
            low_threshold: m(4)?,
        },
        balance: m(5)?,
        total_allocated: m(6)?,
        total_spent: m(7)?,
        created_at_ms: r.get(8)?,
    })
}

pub(super) fn create_wallet(c: &mut Connection, w: &NewWallet) -> Result<WalletRecord> {
    if matches!(w.scope, Scope::Key(_)) {
        return Err(StoreError::Invalid(
            "a wallet belongs to the org, a team or a user, not to a key".into(),
        ));
    }
    let n = c.execute(
        "INSERT INTO wallets (name, scope, subject, low_pico, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (scope, subject) DO NOTHING",
        params![w.name, w.scope.kind(), w.scope.subject(), pico(w.low_threshold)?, now_ms()],
    )?;
    if n == 0 {
        return Err(StoreError::Invalid(format!(
            "{} already has a wallet; top it up instead",
            w.scope.describe()
        )));
    }
    let id = c.last_insert_rowid();
    wallet(c, id)?.ok_or(StoreError::WorkerGone)
}

pub(super) fn wallet(c: &Connection, id: i64) -> Result<Option<WalletRecord>> {
    Ok(c.query_row(
        &format!("SELECT {WALLET_COLUMNS} FROM wallets WHERE id = ?1"),
        [id],
        wallet_from_row,
    )
    .optional()?)
}

pub(super) fn list_wallets(c: &Connection) -> Result<Vec<WalletRecord>> {
    let mut st = c.prepare(&format!("SELECT {WALLET_COLUMNS} FROM wallets ORDER BY id"))?;
    let rows = st
        .query_map([], wallet_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Adds one ledger entry and moves the wallet's derived balances with it, in the caller's transaction.
#[allow(clippy::too_many_arguments)]
pub(super) fn post(
    tx: &Transaction<'_>,
    wallet: i64,
    kind: LedgerKind,
    amount: i64,
    actor: &str,
    reason: &str,
    counterparty: Option<i64>,
    request_id: Option<&[u8]>,
    at_ms: i64,
) -> Result<()> {
    tx.execute(
        "INSERT INTO ledger (wallet_id, kind, amount_pico, actor, reason, counterparty, request_id, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![wallet, kind.as_str(), amount, actor, reason, counterparty, request_id, at_ms],
    )?;
    let (allocated, spent) = match kind {
        LedgerKind::TopUp | LedgerKind::Allocate | LedgerKind::Reclaim | LedgerKind::Refund => {
            (amount.max(0), 0)
        }
        LedgerKind::Settle => (0, -amount),
    };
    let n = tx.execute(
        "UPDATE wallets SET balance_pico = balance_pico + ?2, allocated_pico = allocated_pico + ?3,
            spent_pico = spent_pico + ?4 WHERE id = ?1",
        params![wallet, amount, allocated, spent],
    )?;
    if n == 0 {
        return Err(StoreError::Invalid(format!(
            "wallet {wallet} does not exist"
        )));
    }
    Ok(())
}

/// Applies an admin transfer in one transaction. Sufficient funds are checked by the caller, which also knows
/// what is held for requests in flight; the store refuses only what could never be right (a negative balance
/// after the move).
pub(super) fn transfer(
    c: &mut Connection,
    t: &Transfer,
    actor: &str,
    reason: &str,
) -> Result<Vec<WalletRecord>> {
    let tx = c.transaction()?;
    let now = now_ms();
    let mut touched = Vec::new();
    let positive = |m: Money| -> Result<i64> {
        let v = pico(m)?;
        if v <= 0 {
            return Err(StoreError::Invalid(
                "the amount must be more than zero".into(),
            ));
        }
        Ok(v)
    };
    match t {
        Transfer::TopUp { wallet, amount } => {
            post(
                &tx,
                *wallet,
                LedgerKind::TopUp,
                positive(*amount)?,
                actor,
                reason,
                None,
                None,
                now,
            )?;
            touched.push(*wallet);
        }
        Transfer::Refund { wallet, amount } => {
            post(
                &tx,
                *wallet,
                LedgerKind::Refund,
                positive(*amount)?,
                actor,
                reason,
                None,
                None,
                now,
            )?;
            touched.push(*wallet);
        }
        Transfer::Allocate { from, to, amount } => {
            let v = positive(*amount)?;
            post(
                &tx,
                *from,
                LedgerKind::Allocate,
                -v,
                actor,
                reason,
                Some(*to),
                None,
                now,
            )?;
            post(
                &tx,
                *to,
                LedgerKind::Allocate,
                v,
                actor,
                reason,
                Some(*from),
                None,
                now,
            )?;
            touched.extend([*from, *to]);
        }
        Transfer::Reclaim {
            parent,
            child,
            amount,
        } => {
            let v = positive(*amount)?;
            post(
                &tx,
                *child,
                LedgerKind::Reclaim,
                -v,
                actor,
                reason,
                Some(*parent),
                None,
                now,
            )?;
            post(
                &tx,
                *parent,
                LedgerKind::Reclaim,
                v,
                actor,
                reason,
                Some(*child),
                None,
                now,
            )?;
            touched.extend([*child, *parent]);
        }
    }
    let mut out = Vec::new();
    for id in touched {
        let w = wallet(&tx, id)?
            .ok_or_else(|| StoreError::Invalid(format!("wallet {id} does not exist")))?;
        // Money leased to replicas is spoken for: a transfer may not take it (leases are empty on one replica).
        let leased = i128::from(super::replicas::wallet_leased(&tx, id, now)?);
        if w.balance.picos() - leased < 0 {
            return Err(StoreError::Invalid(format!(
                "wallet {id} does not hold enough for this transfer: it would be {} short{}",
                Money::from_picos(leased - w.balance.picos()).to_usd_string(),
                if leased > 0 {
                    " (counting what gateway replicas hold on lease for requests)"
                } else {
                    ""
                }
            )));
        }
        out.push(w);
    }
    tx.commit()?;
    Ok(out)
}

fn ledger_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LedgerEntry> {
    let req: Option<Vec<u8>> = r.get(7)?;
    Ok(LedgerEntry {
        id: r.get(0)?,
        wallet_id: r.get(1)?,
        kind: LedgerKind::parse(&r.get::<_, String>(2)?).unwrap_or(LedgerKind::Settle),
        amount: Money::from_picos(i128::from(r.get::<_, i64>(3)?)),
        actor: r.get(4)?,
        reason: r.get(5)?,
        counterparty: r.get(6)?,
        request_id: req
            .and_then(|b| uuid::Uuid::from_slice(&b).ok())
            .map(|u| u.to_string()),
        at_ms: r.get(8)?,
    })
}

pub(super) fn ledger(
    c: &Connection,
    wallet: i64,
    limit: usize,
    before_id: Option<i64>,
) -> Result<Vec<LedgerEntry>> {
    let mut st = c.prepare(
        "SELECT id, wallet_id, kind, amount_pico, actor, reason, counterparty, request_id, at_ms FROM ledger
         WHERE wallet_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
    )?;
    let rows = st
        .query_map(
            params![
                wallet,
                before_id.unwrap_or(i64::MAX),
                i64::try_from(limit.clamp(1, 1000)).unwrap_or(100)
            ],
            ledger_from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// The wallet's balance recomputed from every ledger entry, to check that the derived balance never drifts.
pub(super) fn ledger_sum(c: &Connection, wallet: i64) -> Result<Money> {
    let v: i64 = c.query_row(
        "SELECT COALESCE(SUM(amount_pico), 0) FROM ledger WHERE wallet_id = ?1",
        [wallet],
        |r| r.get(0),
    )?;
    Ok(Money::from_picos(i128::from(v)))
}

/// What the wallet paid for requests since `since_ms`.
pub(super) fn spent_since(c: &Connection, wallet: i64, since_ms: i64) -> Result<Money> {
    let v: i64 = c.query_row(
        "SELECT COALESCE(-SUM(amount_pico), 0) FROM ledger WHERE wallet_id = ?1 AND kind = 'settle' AND at_ms >= ?2",
        params![wallet, since_ms],
        |r| r.get(0),
    )?;
    Ok(Money::from_picos(i128::from(v)))
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
    let mut st = c.prepare(
        "SELECT id, kind, subject, team, period_start_ms, threshold, message, at_ms, link FROM alerts ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = st
        .query_map([i64::try_from(limit.clamp(1, 1000)).unwrap_or(100)], |r| {
            Ok(AlertRecord {
                id: r.get(0)?,
                alert: NewAlert {
                    kind: r.get(1)?,
                    subject: r.get(2)?,
                    team: r.get(3)?,
                    period_start_ms: r.get(4)?,
                    threshold: r.get(5)?,
                    message: r.get(6)?,
                    link: r.get(8)?,
                },
                at_ms: r.get(7)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub(super) fn record_delivery(c: &Connection, d: &Delivery) -> Result<()> {
    c.execute(
        "INSERT INTO deliveries (alert_id, target, attempt, ok, detail, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![d.alert_id, d.target, d.attempt, d.ok, d.detail, d.at_ms],
    )?;
    Ok(())
}

pub(super) fn list_deliveries(c: &Connection, limit: usize) -> Result<Vec<Delivery>> {
    let mut st = c.prepare(
        "SELECT id, alert_id, target, attempt, ok, detail, at_ms FROM deliveries ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = st
        .query_map([i64::try_from(limit.clamp(1, 1000)).unwrap_or(100)], |r| {
            Ok(Delivery {
                id: r.get(0)?,
                alert_id: r.get(1)?,
                target: r.get(2)?,
                attempt: r.get(3)?,
                ok: r.get(4)?,
                detail: r.get(5)?,
                at_ms: r.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
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
    let mut st = c.prepare(
        "SELECT id, actor, action, target, before, after, at_ms FROM audit_log WHERE at_ms >= ?1 AND at_ms < ?2
         ORDER BY id DESC LIMIT ?3",
    )?;
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    let rows = st
        .query_map(
            params![
                from_ms,
                to_ms,
                i64::try_from(limit.clamp(1, 5000)).unwrap_or(100)
            ],
            |r| {
                Ok(AuditRecord {
                    id: r.get(0)?,
                    entry: AuditEntry {
                        actor: r.get(1)?,
                        action: r.get(2)?,
                        target: r.get(3)?,
                        before: json(r.get(4)?),
                        after: json(r.get(5)?),
                    },
                    at_ms: r.get(6)?,
                })
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}
