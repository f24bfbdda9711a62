//! Keys, viewer tokens, budgets, wallets, rate limits, ledger, alerts, deliveries and audit log on PostgreSQL. The wallet
//! arithmetic and the row mappers are shared with SQLite (`crate::sql::{ledger, rows}`).

use spendgate_core::time::now_ms;
use spendgate_core::Money;
use tokio_postgres::{Client, GenericClient};

use super::{all, first};
use crate::controls::{
    AlertRecord, AuditEntry, AuditRecord, BudgetRecord, Delivery, LedgerEntry, NewAlert, NewBudget,
    NewRateLimit, NewWallet, RateLimitRecord, Transfer, WalletRecord,
};
use crate::sql::ledger::{self, pico, Posting};
use crate::sql::rows::{self, BUDGET_COLUMNS, LEDGER_COLUMNS, RATE_LIMIT_COLUMNS, WALLET_COLUMNS};
use crate::{KeyRecord, NewKey, Result, StoreError, ViewerToken};

async fn new_id(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<i64> {
    Ok(c.query_one(sql, params).await?.try_get(0)?)
}

pub(super) async fn create_key(c: &Client, key: NewKey) -> Result<KeyRecord> {
    let now = now_ms();
    let id = new_id(
        c,
        "INSERT INTO keys (hash, hint, user_name, team_name, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        &[&&key.hash[..], &key.hint, &key.user, &key.team, &now, &key.expires_at_ms],
    )
    .await?;
    Ok(KeyRecord {
        id,
        user: key.user,
        team: key.team,
        hint: key.hint,
        created_at_ms: now,
        revoked_at_ms: None,
        expires_at_ms: key.expires_at_ms,
    })
}

pub(super) async fn create_viewer(
    c: &Client,
    hash: [u8; 32],
    team: String,
    name: String,
    expires_at_ms: Option<i64>,
) -> Result<ViewerToken> {
    let now = now_ms();
    let id = new_id(
        c,
        "INSERT INTO viewer_tokens (hash, team, name, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5) \
         RETURNING id",
        &[&&hash[..], &team, &name, &now, &expires_at_ms],
    )
    .await?;
    Ok(ViewerToken {
        id,
        team,
        name,
        created_at_ms: now,
        expires_at_ms,
    })
}

/// Creates a budget, or updates the one with the same scope and period. Returns (before, after).
pub(super) async fn upsert_budget(
    c: &mut Client,
    b: &NewBudget,
) -> Result<(Option<BudgetRecord>, BudgetRecord)> {
    let tx = c.transaction().await?;
    let (kind, subject, period) = (b.scope.kind(), b.scope.subject(), b.period.as_str());
    let select = format!(
        "SELECT {BUDGET_COLUMNS} FROM budgets WHERE scope = $1 AND subject = $2 AND period = $3 FOR UPDATE"
    );
    let before = first(&tx, &select, &[&kind, &subject, &period], rows::budget).await?;
    tx.execute(
        "INSERT INTO budgets (name, scope, subject, period, amount_pico, thresholds, hard_limit, created_at_ms, updated_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
         ON CONFLICT (scope, subject, period) DO UPDATE SET name = excluded.name, amount_pico = excluded.amount_pico,
            thresholds = excluded.thresholds, hard_limit = excluded.hard_limit, updated_at_ms = excluded.updated_at_ms",
        &[&b.name, &kind, &subject, &period, &pico(b.amount)?, &ledger::thresholds_text(&b.thresholds), &b.hard_limit, &now_ms()],
    )
    .await?;
    let after = first(&tx, &select, &[&kind, &subject, &period], rows::budget)
        .await?
        .ok_or(StoreError::WorkerGone)?;
    tx.commit().await?;
    Ok((before, after))
}

/// Creates the rate limit of a key or team, or changes the one it has. Returns (before, after).
pub(super) async fn upsert_rate_limit(
    c: &mut Client,
    r: &NewRateLimit,
) -> Result<(Option<RateLimitRecord>, RateLimitRecord)> {
    r.check().map_err(StoreError::Invalid)?;
    let tx = c.transaction().await?;
    let (kind, subject) = (r.scope.kind(), r.scope.subject());
    let select = format!(
        "SELECT {RATE_LIMIT_COLUMNS} FROM rate_limits WHERE scope = $1 AND subject = $2 FOR UPDATE"
    );
    let before = first(&tx, &select, &[&kind, &subject], rows::rate_limit).await?;
    let (rpm, tpm) = r.columns();
    tx.execute(
        "INSERT INTO rate_limits (scope, subject, rpm, tpm, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $5)
         ON CONFLICT (scope, subject) DO UPDATE SET rpm = excluded.rpm, tpm = excluded.tpm,
            updated_at_ms = excluded.updated_at_ms",
        &[&kind, &subject, &rpm, &tpm, &now_ms()],
    )
    .await?;
    let after = first(&tx, &select, &[&kind, &subject], rows::rate_limit)
        .await?
        .ok_or(StoreError::WorkerGone)?;
    tx.commit().await?;
    Ok((before, after))
}

/// Deletes a rate limit and returns it; `None` if none has this id.
pub(super) async fn delete_rate_limit(c: &Client, id: i64) -> Result<Option<RateLimitRecord>> {
    let sql = format!("DELETE FROM rate_limits WHERE id = $1 RETURNING {RATE_LIMIT_COLUMNS}");
    first(c, &sql, &[&id], rows::rate_limit).await
}

pub(super) async fn create_wallet(c: &Client, w: &NewWallet) -> Result<WalletRecord> {
    ledger::check_new_wallet(w)?;
    let row = c
        .query_opt(
            "INSERT INTO wallets (name, scope, subject, low_pico, created_at_ms) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (scope, subject) DO NOTHING RETURNING id",
            &[&w.name, &w.scope.kind(), &w.scope.subject(), &pico(w.low_threshold)?, &now_ms()],
        )
        .await?;
    let Some(row) = row else {
        return Err(ledger::duplicate_wallet(w));
    };
    wallet(c, row.try_get(0)?)
        .await?
        .ok_or(StoreError::WorkerGone)
}

async fn wallet(c: &impl GenericClient, id: i64) -> Result<Option<WalletRecord>> {
    let sql = format!("SELECT {WALLET_COLUMNS} FROM wallets WHERE id = $1");
    first(c, &sql, &[&id], rows::wallet).await
}

/// Moves a wallet's derived balances and adds the ledger entry, in the caller's transaction.
async fn post(
    tx: &impl GenericClient,
    p: &Posting,
    (actor, reason): (&str, &str),
    at_ms: i64,
) -> Result<()> {
    let (allocated, spent) = p.effect();
    let n = tx
        .execute(
            "UPDATE wallets SET balance_pico = balance_pico + $2, allocated_pico = allocated_pico + $3,
                spent_pico = spent_pico + $4 WHERE id = $1",
            &[&p.wallet, &p.amount, &allocated, &spent],
        )
        .await?;
    if n == 0 {
        return Err(ledger::missing_wallet(p.wallet));
    }
    tx.execute(
        "INSERT INTO ledger (wallet_id, kind, amount_pico, actor, reason, counterparty, at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &p.wallet,
            &p.kind.as_str(),
            &p.amount,
            &actor,
            &reason,
            &p.counterparty,
            &at_ms,
        ],
    )
    .await?;
    Ok(())
}

/// Applies an admin transfer in one transaction (see `ledger::check_after` for what the store refuses).
pub(super) async fn transfer(
    c: &mut Client,
    t: &Transfer,
    actor: &str,
    reason: &str,
) -> Result<Vec<WalletRecord>> {
    let (postings, touched) = ledger::postings(t)?;
    let tx = c.transaction().await?;
    // A reclaim posts to the child first; locking both wallets in id order first keeps the order every batch's
    // charges take them in (`write::lock_in_order`), so a transfer and a batch never deadlock.
    super::write::lock_in_order(&tx, "wallets", &touched).await?;
    let now = now_ms();
    for p in &postings {
        post(&tx, p, (actor, reason), now).await?;
    }
    let mut out = Vec::new();
    for id in touched {
        // Money leased to replicas is spoken for: a transfer may not take it.
        let leased = i128::from(super::replicas::wallet_leased(&tx, id, now).await?);
        out.push(ledger::check_after(id, wallet(&tx, id).await?, leased)?);
    }
    tx.commit().await?;
    Ok(out)
}

pub(super) async fn ledger(
    c: &Client,
    wallet: i64,
    limit: usize,
    before_id: Option<i64>,
) -> Result<Vec<LedgerEntry>> {
    let sql = format!(
        "SELECT {LEDGER_COLUMNS} FROM ledger WHERE wallet_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
    );
    let before = before_id.unwrap_or(i64::MAX);
    let n = ledger::limit(limit, 1000);
    all(c, &sql, &[&wallet, &before, &n], rows::ledger_entry).await
}

/// The wallet's balance recomputed from every ledger entry, to check that the derived balance never drifts.
pub(super) async fn ledger_sum(c: &Client, wallet: i64) -> Result<Money> {
    let sql = "SELECT CAST(COALESCE(SUM(amount_pico), 0) AS TEXT) FROM ledger WHERE wallet_id = $1";
    Ok(first(c, sql, &[&wallet], |r| r.money(0))
        .await?
        .unwrap_or(Money::ZERO))
}

/// What the wallet paid for requests since `since_ms`.
pub(super) async fn spent_since(c: &Client, wallet: i64, since_ms: i64) -> Result<Money> {
    let sql = "SELECT CAST(COALESCE(-SUM(amount_pico), 0) AS TEXT) FROM ledger
               WHERE wallet_id = $1 AND kind = 'settle' AND at_ms >= $2";
    Ok(first(c, sql, &[&wallet, &since_ms], |r| r.money(0))
        .await?
        .unwrap_or(Money::ZERO))
}

/// Records an alert unless the same crossing was already recorded; `None` then.
pub(super) async fn record_alert(c: &Client, a: &NewAlert) -> Result<Option<AlertRecord>> {
    let now = now_ms();
    let row = c
        .query_opt(
            "INSERT INTO alerts (kind, subject, team, period_start_ms, threshold, message, at_ms, link)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING id",
            &[&a.kind, &a.subject, &a.team, &a.period_start_ms, &i64::from(a.threshold), &a.message, &now, &a.link],
        )
        .await?;
    row.map(|r| {
        Ok(AlertRecord {
            id: r.try_get(0)?,
            alert: a.clone(),
            at_ms: now,
        })
    })
    .transpose()
}

pub(super) async fn list_alerts(c: &Client, limit: usize) -> Result<Vec<AlertRecord>> {
    let sql = format!(
        "SELECT {} FROM alerts ORDER BY id DESC LIMIT $1",
        rows::ALERT_COLUMNS
    );
    all(c, &sql, &[&ledger::limit(limit, 1000)], rows::alert).await
}

pub(super) async fn record_delivery(c: &Client, d: &Delivery) -> Result<()> {
    c.execute(
        "INSERT INTO deliveries (alert_id, target, attempt, ok, detail, at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&d.alert_id, &d.target, &i64::from(d.attempt), &d.ok, &d.detail, &d.at_ms],
    )
    .await?;
    Ok(())
}

pub(super) async fn list_deliveries(c: &Client, limit: usize) -> Result<Vec<Delivery>> {
    let sql = format!(
        "SELECT {} FROM deliveries ORDER BY id DESC LIMIT $1",
        rows::DELIVERY_COLUMNS
    );
    all(c, &sql, &[&ledger::limit(limit, 1000)], rows::delivery).await
}

pub(super) async fn record_audit(c: &Client, e: &AuditEntry) -> Result<()> {
    let json = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
    c.execute(
        "INSERT INTO audit_log (actor, action, target, before, after, at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&e.actor, &e.action, &e.target, &json(&e.before), &json(&e.after), &now_ms()],
    )
    .await?;
    Ok(())
}

pub(super) async fn list_audit(
    c: &Client,
    from_ms: i64,
    to_ms: i64,
    limit: usize,
) -> Result<Vec<AuditRecord>> {
    let sql = format!(
        "SELECT {} FROM audit_log WHERE at_ms >= $1 AND at_ms < $2 ORDER BY id DESC LIMIT $3",
        rows::AUDIT_COLUMNS
    );
    let n = ledger::limit(limit, 5000);
    all(c, &sql, &[&from_ms, &to_ms, &n], rows::audit).await
}
