//! Stored shapes of budgets, wallets, rate limits, the wallet ledger, alerts, webhook deliveries and the audit log.

use serde::Serialize;
use spendgate_core::controls::{Period, Scope};
use spendgate_core::Money;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBudget {
    pub name: Option<String>,
    pub scope: Scope,
    pub period: Period,
    pub amount: Money,
    /// Alert thresholds in percent, ascending.
    pub thresholds: Vec<u32>,
    pub hard_limit: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRecord {
    pub id: i64,
    pub def: NewBudget,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWallet {
    pub name: String,
    /// Org, Team or User (a wallet does not belong to a key).
    pub scope: Scope,
    /// Under this, the wallet is Low.
    pub low_threshold: Money,
}

/// A wallet with its balances, derived from the ledger in the same transactions that write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletRecord {
    pub id: i64,
    pub def: NewWallet,
    pub balance: Money,
    pub total_allocated: Money,
    pub total_spent: Money,
    pub created_at_ms: i64,
}

/// The most a wallet can hold, and the most it can have been given in all: both backends keep a wallet's balance
/// and totals as 64-bit integers of picodollars (about $9.2 million).
pub const WALLET_MAX: Money = Money::from_picos(i64::MAX as i128);

impl WalletRecord {
    /// Refuses adding `amount` when the wallet's balance or its total allocated would pass [`WALLET_MAX`].
    pub fn check_room(&self, amount: Money) -> Result<(), String> {
        let after = |m: Money| m.checked_add(amount).filter(|a| *a <= WALLET_MAX);
        if after(self.balance).is_none() || after(self.total_allocated).is_none() {
            return Err(format!(
                "wallet {} cannot take {}: a wallet holds at most {} and is given at most that in all (it holds {} \
                 and was given {}); use a smaller amount or another wallet",
                self.id,
                amount.to_usd_string(),
                WALLET_MAX.to_usd_string(),
                self.balance.to_usd_string(),
                self.total_allocated.to_usd_string(),
            ));
        }
        Ok(())
    }
}

/// The largest requests or tokens per minute a rate limit may allow: far above any provider's limits, and small
/// enough that a minute's counts, summed over every replica, fit the 64-bit columns that carry them.
pub const RATE_LIMIT_MAX: u64 = 1_000_000_000_000;

/// A rate limit: at most `rpm` requests and `tpm` tokens a minute for one key or one team (at least one of the
/// two is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRateLimit {
    /// `Scope::Key` or `Scope::Team`.
    pub scope: Scope,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

impl NewRateLimit {
    /// Refuses a limit that could never be enforced as meant: another scope than a key or a team, the No team
    /// bucket, an invalid team name, no limit at all, or a limit of zero or above [`RATE_LIMIT_MAX`].
    pub fn check(&self) -> Result<(), String> {
        match &self.scope {
            Scope::Key(id) if *id <= 0 => {
                return Err(format!(
                    "{id} is not a key id: key ids are positive integers (GET /api/v1/keys lists them)"
                ))
            }
            Scope::Key(_) => {}
            Scope::Team(t) if t == spendgate_core::query::NO_TEAM_FILTER => {
                return Err(format!(
                    "{t} is the No team bucket (keys without a team), not a team: a limit on it would hold all of \
                     those keys to one shared rate. Give the keys a team, or limit each key"
                ))
            }
            Scope::Team(t) => spendgate_core::validate_name("team", t)?,
            other => {
                return Err(format!(
                    "a rate limit is for one key or one team, not {}; use scope key or team",
                    other.describe()
                ))
            }
        }
        if self.rpm.is_none() && self.tpm.is_none() {
            return Err(
                "a rate limit needs rpm (requests a minute), tpm (tokens a minute) or both".into(),
            );
        }
        for (name, v) in [("rpm", self.rpm), ("tpm", self.tpm)] {
            if let Some(v) = v.filter(|v| *v == 0 || *v > RATE_LIMIT_MAX) {
                return Err(format!(
                    "{name} must be a whole number from 1 to {RATE_LIMIT_MAX}, not {v}; leave it out for no limit"
                ));
            }
        }
        Ok(())
    }

    /// `rpm` and `tpm` as the store's integer columns (`check` keeps them far inside).
    pub fn columns(&self) -> (Option<i64>, Option<i64>) {
        let col = |v: Option<u64>| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        (col(self.rpm), col(self.tpm))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitRecord {
    pub id: i64,
    pub def: NewRateLimit,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    TopUp,
    /// Money moved in from a parent wallet (positive) or out to a child (negative).
    Allocate,
    /// Money taken back by a parent: negative on the child, positive on the parent.
    Reclaim,
    /// What a request cost, charged after it finished. The amount held for it while it ran is kept alongside.
    Settle,
    Refund,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::TopUp => "top_up",
            LedgerKind::Allocate => "allocate",
            LedgerKind::Reclaim => "reclaim",
            LedgerKind::Settle => "settle",
            LedgerKind::Refund => "refund",
        }
    }

    pub fn parse(s: &str) -> Option<LedgerKind> {
        [
            LedgerKind::TopUp,
            LedgerKind::Allocate,
            LedgerKind::Reclaim,
            LedgerKind::Settle,
            LedgerKind::Refund,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub id: i64,
    pub wallet_id: i64,
    pub kind: LedgerKind,
    /// Signed: positive adds to the balance.
    pub amount: Money,
    pub actor: String,
    pub reason: String,
    /// The other wallet of an allocate or reclaim.
    pub counterparty: Option<i64>,
    /// The spend log of a settle.
    pub request_id: Option<String>,
    pub at_ms: i64,
}

/// A money movement an admin asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transfer {
    TopUp {
        wallet: i64,
        amount: Money,
    },
    /// From a parent to a child.
    Allocate {
        from: i64,
        to: i64,
        amount: Money,
    },
    /// A parent takes back from a child.
    Reclaim {
        parent: i64,
        child: i64,
        amount: Money,
    },
    Refund {
        wallet: i64,
        amount: Money,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    /// budget_near, budget_over, wallet_low, wallet_depleted, or anomaly_retry_loop, anomaly_spend_rate,
    /// anomaly_prompt_expansion, anomaly_unattributed.
    pub kind: String,
    /// "budget:12", "wallet:3", "team:support", "workflow:ticket-triage" or "key:12".
    pub subject: String,
    /// The team it concerns, when it concerns one (for filtering).
    pub team: Option<String>,
    /// Start of the budget period (or the wallet's epoch, or an anomaly's episode): an alert fires once per
    /// crossing per period.
    pub period_start_ms: i64,
    pub threshold: u32,
    pub message: String,
    /// Where the evidence is (for anomalies: the filtered `/usage` view), when there is a page to point at.
    pub link: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRecord {
    pub id: i64,
    pub alert: NewAlert,
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub alert_id: i64,
    pub target: String,
    pub attempt: u32,
    pub ok: bool,
    pub detail: String,
    pub at_ms: i64,
}

/// One admin change, with the state before and after, for the activity history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub actor: String,
    /// e.g. "budget.set", "wallet.topup", "key.create".
    pub action: String,
    pub target: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub entry: AuditEntry,
    pub at_ms: i64,
}
