//! Wallet arithmetic shared by the backends: which ledger entries a transfer posts, how an entry moves a wallet's
//! derived balances, and what the store refuses.

use spendgate_core::controls::Scope;
use spendgate_core::Money;

use crate::controls::{LedgerKind, NewWallet, Transfer, WalletRecord};
use crate::{Result, StoreError};

/// An amount as stored in a 64-bit column.
pub fn pico(m: Money) -> Result<i64> {
    i64::try_from(m.picos())
        .map_err(|_| StoreError::Invalid(format!("the amount {m} is too large")))
}

/// One ledger entry to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub wallet: i64,
    pub kind: LedgerKind,
    /// Signed: positive adds to the balance.
    pub amount: i64,
    pub counterparty: Option<i64>,
}

impl Posting {
    /// How the entry moves the wallet's derived totals: (allocated, spent), beside the balance moving by `amount`.
    pub fn effect(&self) -> (i64, i64) {
        settle_effect(self.kind, self.amount)
    }
}

/// How a batch's request charges move each wallet: (balance, allocated, spent) summed per wallet, in wallet
/// order (both backends update wallets in this order, so concurrent writers never deadlock on them).
pub fn settle_totals(
    charges: impl IntoIterator<Item = (i64, i64)>,
) -> std::collections::BTreeMap<i64, [i64; 3]> {
    let mut per_wallet = std::collections::BTreeMap::<i64, [i64; 3]>::new();
    for (wallet, amount) in charges {
        let (allocated, spent) = settle_effect(LedgerKind::Settle, amount);
        let t = per_wallet.entry(wallet).or_default();
        t[0] += amount;
        t[1] += allocated;
        t[2] += spent;
    }
    per_wallet
}

/// (allocated, spent) moved by an entry of `kind` and `amount`.
pub fn settle_effect(kind: LedgerKind, amount: i64) -> (i64, i64) {
    match kind {
        LedgerKind::TopUp | LedgerKind::Allocate | LedgerKind::Reclaim | LedgerKind::Refund => {
            (amount.max(0), 0)
        }
        LedgerKind::Settle => (0, -amount),
    }
}

/// The entries an admin transfer posts, in order, and the wallets it touches.
pub fn postings(t: &Transfer) -> Result<(Vec<Posting>, Vec<i64>)> {
    let positive = |m: Money| -> Result<i64> {
        let v = pico(m)?;
        if v <= 0 {
            return Err(StoreError::Invalid(
                "the amount must be more than zero".into(),
            ));
        }
        Ok(v)
    };
    let one = |wallet: i64, kind, amount, counterparty| Posting {
        wallet,
        kind,
        amount,
        counterparty,
    };
    Ok(match t {
        Transfer::TopUp { wallet, amount } => (
            vec![one(*wallet, LedgerKind::TopUp, positive(*amount)?, None)],
            vec![*wallet],
        ),
        Transfer::Refund { wallet, amount } => (
            vec![one(*wallet, LedgerKind::Refund, positive(*amount)?, None)],
            vec![*wallet],
        ),
        Transfer::Allocate { from, to, amount } => {
            let v = positive(*amount)?;
            (
                vec![
                    one(*from, LedgerKind::Allocate, -v, Some(*to)),
                    one(*to, LedgerKind::Allocate, v, Some(*from)),
                ],
                vec![*from, *to],
            )
        }
        Transfer::Reclaim {
            parent,
            child,
            amount,
        } => {
            let v = positive(*amount)?;
            (
                vec![
                    one(*child, LedgerKind::Reclaim, -v, Some(*parent)),
                    one(*parent, LedgerKind::Reclaim, v, Some(*child)),
                ],
                vec![*child, *parent],
            )
        }
    })
}

/// Refuses what could never be right after a transfer: a missing wallet or a negative balance. Sufficient funds
/// are checked by the caller, which also knows what is held for requests in flight.
/// A wallet after a transfer: it must still hold what it has, less what gateway replicas hold of it on lease
/// for requests (`leased`; zero on a single replica).
pub fn check_after(id: i64, w: Option<WalletRecord>, leased: i128) -> Result<WalletRecord> {
    let w = w.ok_or_else(|| missing_wallet(id))?;
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
    Ok(w)
}

pub fn missing_wallet(id: i64) -> StoreError {
    StoreError::Invalid(format!("wallet {id} does not exist"))
}

/// A wallet belongs to the org, a team or a user.
pub fn check_new_wallet(w: &NewWallet) -> Result<()> {
    if matches!(w.scope, Scope::Key(_)) {
        return Err(StoreError::Invalid(
            "a wallet belongs to the org, a team or a user, not to a key".into(),
        ));
    }
    Ok(())
}

pub fn duplicate_wallet(w: &NewWallet) -> StoreError {
    StoreError::Invalid(format!(
        "{} already has a wallet; top it up instead",
        w.scope.describe()
    ))
}

/// Budget thresholds as stored: "80,100".
pub fn thresholds_text(t: &[u32]) -> String {
    t.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// Page sizes of the control lists, bounded.
pub fn limit(n: usize, max: usize) -> i64 {
    i64::try_from(n.clamp(1, max)).unwrap_or(100)
}
