//! Changes from the admin API (budgets, wallets, transfers) and reloads from the store: each is applied to the
//! store first, then to what the request path enforces, and announced to the other replicas.

use spendgate_core::controls::{wallet_status, WalletStatus};
use spendgate_core::time::now_ms;
use spendgate_core::Money;
use spendgate_store::controls::{BudgetRecord, NewBudget, NewWallet, Transfer, WalletRecord};
use spendgate_store::StoreError;

use super::Controls;

impl Controls {
    /// Reloads budgets' spend, wallets' balances and rate limits from the store, so that a replica sees what the
    /// others spent and changed.
    pub async fn refresh_from_store(&self) {
        self.refresh_budgets().await;
        self.refresh_rates().await;
        match self.store.list_wallets().await {
            Ok(list) => {
                for w in list {
                    self.install_wallet(w);
                }
            }
            Err(e) => tracing::warn!(error = %e, "Listing wallets failed."),
        }
    }

    /// Reloads every budget's period spend from the store (after a period rolls over).
    pub async fn refresh_budgets(&self) {
        match self.store.list_budgets().await {
            Ok(list) => {
                for b in list {
                    if let Err(e) = self.install_budget(b).await {
                        tracing::warn!(error = %e, "Refreshing a budget failed; it keeps its in-memory figures.");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "Listing budgets failed."),
        }
    }

    /// Creates or updates a budget and starts enforcing it.
    pub async fn set_budget(
        &self,
        def: NewBudget,
    ) -> Result<(Option<BudgetRecord>, BudgetRecord), StoreError> {
        let (before, after) = self.store.upsert_budget(def).await?;
        self.install_budget(after.clone()).await?;
        self.announce_change().await;
        Ok((before, after))
    }

    pub async fn create_wallet(&self, def: NewWallet) -> Result<WalletRecord, StoreError> {
        let w = self.store.create_wallet(def).await?;
        self.install_wallet(w.clone());
        self.announce_change().await;
        Ok(w)
    }

    /// Moves money. Outgoing amounts are first held in memory, so a transfer can never take money that requests
    /// in flight already hold.
    pub async fn transfer(
        &self,
        t: Transfer,
        actor: &str,
        reason: &str,
    ) -> Result<Vec<WalletRecord>, StoreError> {
        let (source, amount) = match &t {
            Transfer::TopUp { .. } | Transfer::Refund { .. } => (None, Money::ZERO),
            Transfer::Allocate { from, amount, .. } => (Some(*from), *amount),
            Transfer::Reclaim { child, amount, .. } => (Some(*child), *amount),
        };
        if let Some(src) = source {
            let mut st = self.lock();
            let w = st
                .wallets
                .iter_mut()
                .find(|w| w.rec.id == src)
                .ok_or_else(|| StoreError::Invalid(format!("wallet {src} does not exist")))?;
            if w.available() < amount {
                return Err(StoreError::Invalid(format!(
                    "wallet {src} has {} available (balance less what requests in flight hold); it cannot give {}",
                    w.available().to_usd_string(),
                    amount.to_usd_string()
                )));
            }
            w.reserved += amount;
        }
        // What the transfer does to each wallet, applied to the in-memory balances once the store has it. (The
        // store's balance cannot simply be copied: ours also counts settles the writer has not committed yet.)
        let moves: Vec<(i64, Money)> = match &t {
            Transfer::TopUp { wallet, amount } | Transfer::Refund { wallet, amount } => {
                vec![(*wallet, *amount)]
            }
            Transfer::Allocate { from, to, amount } => {
                vec![(*from, Money::ZERO - *amount), (*to, *amount)]
            }
            Transfer::Reclaim {
                parent,
                child,
                amount,
            } => vec![(*child, Money::ZERO - *amount), (*parent, *amount)],
        };
        let result = self.store.transfer(t, actor, reason).await;
        // The lock is held in a block of its own: it must not be alive across the announcement's awaits.
        let touched = {
            let mut st = self.lock();
            if let Some(src) = source {
                if let Some(w) = st.wallets.iter_mut().find(|w| w.rec.id == src) {
                    w.reserved = w.reserved.saturating_sub(amount);
                }
            }
            let touched = result?;
            let now = now_ms();
            for (id, delta) in moves {
                if let Some(w) = st.wallets.iter_mut().find(|w| w.rec.id == id) {
                    w.balance += delta;
                    // Money arrived: the next refusal, if any, is news again.
                    if delta > Money::ZERO {
                        w.refused_at_ms = None;
                    }
                    if let Some(rec) = touched.iter().find(|r| r.id == id) {
                        w.rec = rec.clone();
                    }
                    if wallet_status(w.available(), w.rec.def.low_threshold)
                        == WalletStatus::Healthy
                    {
                        w.epoch_ms = now;
                    }
                }
            }
            touched
        };
        self.announce_change().await;
        Ok(touched)
    }
}
