//! Enforcement of budgets, wallets and rate limits on the request path, in memory.
//!
//! Before a request goes upstream, [`Controls::reserve`] holds its worst-case cost against every hard-limited
//! budget that covers it and against the wallet that pays for it, all under one lock, so concurrent requests
//! can never together pass a limit. When the request ends its [`Hold`] is settled to the exact cost (or
//! released: a failed call costs nothing). A hold that is dropped without being settled releases itself.
//!
//! The store stays the truth: budgets' spend is loaded from the rollups when a period starts, and a wallet's
//! balance from its ledger; afterwards both move in memory with every settlement, while the same charges reach
//! the store through the spend-event writer (a wallet's `settle` ledger entry is written in the same
//! transaction as the spend log).
//!
//! Rate limits (requests and tokens a minute for a key or a team) are counted apart, in `rates.rs`: a request is
//! admitted by them before anything is held for it. `leases.rs` shares budgets and wallets between replicas,
//! `alerting.rs` raises the alerts the controls see, and `admin.rs` applies changes from the admin API.

mod admin;
mod alerting;
mod leases;
mod rates;

use std::sync::{Arc, Mutex};

use jiff::tz::TimeZone;
use spendgate_core::controls::{budget_state, crossed, wallet_status, BudgetState, Scope};
use spendgate_core::query::Filters;
use spendgate_core::time::now_ms;
use spendgate_core::Money;
use spendgate_store::controls::{BudgetRecord, NewAlert, WalletRecord};
use spendgate_store::{KeyRecord, Store, StoreError};
use tokio::sync::mpsc;

pub use leases::LeaseSettings;
use leases::{LeaseNeed, LocalLease};
pub use rates::{RateCover, RateHold, RateRefusal};
use spendgate_store::replicas::LeaseTarget;

#[derive(Debug, Clone)]
pub struct ControlsConfig {
    /// The zone budget periods follow (a "day" starts at local midnight).
    pub time_zone: TimeZone,
    /// Output tokens assumed for a reservation when the request sets no max_tokens and the catalog knows no cap.
    pub default_max_output_tokens: u64,
    /// Share hard limits with other replicas through leases (see `leases.rs`); `None` on a single replica.
    pub leases: Option<LeaseSettings>,
}

impl Default for ControlsConfig {
    fn default() -> Self {
        ControlsConfig {
            time_zone: TimeZone::UTC,
            default_max_output_tokens: 4096,
            leases: None,
        }
    }
}

/// How many times a request asks for more lease before it is refused.
const MAX_LEASE_ATTEMPTS: usize = 16;

/// The outcome of one attempt to hold a request's cost.
enum Attempt {
    Held(Hold),
    Refused(Refusal),
    /// It could run if this replica had (more of) these leases.
    NeedLeases(Vec<LeaseNeed>),
}

/// Why a request was refused: what the client is told (`description`), and for the refusal's record the control
/// that refused it and a short `detail` ("budget 'support daily' is hard and full").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A hard-limited budget has no room left for this request until it resets.
    Budget {
        description: String,
        retry_after_secs: u64,
        budget_id: i64,
        detail: String,
    },
    /// No wallet that could pay for the request holds enough. `wallet_id` is the nearest wallet covering it (the
    /// user's, else the team's, else the org's).
    Funds {
        description: String,
        wallet_id: Option<i64>,
        detail: String,
    },
}

struct LiveBudget {
    rec: BudgetRecord,
    start_ms: i64,
    end_ms: i64,
    spent: Money,
    reserved: Money,
    lease: Option<LocalLease>,
    /// When this hard budget first refused a request this period: it is blocking its subject, whatever its
    /// percentage (a burst of holds can refuse well before the spend reaches the amount).
    refused_at_ms: Option<i64>,
}

struct LiveWallet {
    rec: WalletRecord,
    balance: Money,
    reserved: Money,
    /// When the wallet last became healthy: low and depleted alerts fire once per such epoch.
    epoch_ms: i64,
    lease: Option<LocalLease>,
    /// When this wallet first refused a request since it last received money: it is blocking whoever it pays
    /// for, and the first refusal raises an alert (once per epoch).
    refused_at_ms: Option<i64>,
}

impl LiveWallet {
    fn available(&self) -> Money {
        self.balance - self.reserved
    }
}

#[derive(Default)]
struct State {
    budgets: Vec<LiveBudget>,
    wallets: Vec<LiveWallet>,
}

pub struct Controls {
    store: Arc<dyn Store>,
    config: ControlsConfig,
    state: Mutex<State>,
    alerts: mpsc::UnboundedSender<NewAlert>,
    /// Lease requests sent to the store (on demand and renewals), for status and benchmarks.
    lease_round_trips: std::sync::atomic::AtomicU64,
    /// One lease request at a time per replica; requests waiting for it are counted to size it.
    lease_gate: tokio::sync::Mutex<()>,
    lease_waiters: std::sync::atomic::AtomicUsize,
    /// The gateway's key cache, so that a key revoked or rotated here or on another replica is forgotten before
    /// the change is confirmed (`keys.rs`). Set once at start by [`Controls::attach_keys`].
    keys: std::sync::OnceLock<Arc<crate::keys::KeyCache>>,
    /// Rate limits and what they counted (`rates.rs`), under a lock of their own.
    rates: Mutex<rates::Rates>,
    /// Whether any rate limit exists: without one, a request is admitted without taking the lock.
    rates_on: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Controls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controls").finish()
    }
}

/// What a request holds while it runs. Settle it with the exact cost; dropping it releases it.
pub struct Hold {
    controls: Option<Arc<Controls>>,
    /// Every budget covering the request (id, amount held; zero for budgets without a hard limit).
    budgets: Vec<(i64, Money)>,
    wallet: Option<(i64, Money)>,
    /// The leases the request was held against (replicated mode).
    leases: Vec<i64>,
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hold")
            .field("budgets", &self.budgets.len())
            .field("wallet", &self.wallet)
            .finish()
    }
}

impl Hold {
    /// A hold on nothing, for when no control applies.
    pub fn none() -> Hold {
        Hold {
            controls: None,
            budgets: Vec::new(),
            wallet: None,
            leases: Vec::new(),
        }
    }

    /// The leases the request was held against, for its spend event.
    pub fn lease_ids(&self) -> Vec<i64> {
        self.leases.clone()
    }

    /// The wallet paying for the request, if any.
    pub fn wallet_id(&self) -> Option<i64> {
        self.wallet.map(|w| w.0)
    }

    /// Replaces what was held with what the request really cost.
    pub fn settle(mut self, actual: Money) {
        if let Some(c) = self.controls.take() {
            c.settle(&self.budgets, self.wallet, &self.leases, actual);
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(c) = self.controls.take() {
            c.settle(&self.budgets, self.wallet, &self.leases, Money::ZERO);
        }
    }
}

fn filters_for(scope: &Scope, from_ms: i64, to_ms: i64) -> Filters {
    let mut f = Filters {
        from_ms,
        to_ms,
        ..Filters::default()
    };
    match scope {
        Scope::Org => {}
        Scope::Team(t) => f.team = Some(t.clone()),
        Scope::User(u) => f.user = Some(u.clone()),
        Scope::Key(k) => f.key_id = Some(*k),
    }
    f
}

/// How a budget is named in a refusal's detail: by its name, else by its period and scope.
fn budget_name(rec: &BudgetRecord) -> String {
    match &rec.def.name {
        Some(n) => format!("budget '{n}'"),
        None => format!(
            "the {} budget of {}",
            rec.def.period.as_str(),
            rec.def.scope.describe()
        ),
    }
}

impl Controls {
    /// Loads budgets and wallets from the store and starts the alert channel; alerts are read from the
    /// returned receiver (see [`crate::alerts`]).
    pub async fn load(
        store: Arc<dyn Store>,
        config: ControlsConfig,
    ) -> Result<(Arc<Controls>, mpsc::UnboundedReceiver<NewAlert>), StoreError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let controls = Arc::new(Controls {
            store,
            config,
            state: Mutex::new(State::default()),
            alerts: tx,
            lease_round_trips: Default::default(),
            lease_gate: tokio::sync::Mutex::new(()),
            lease_waiters: Default::default(),
            keys: std::sync::OnceLock::new(),
            rates: Mutex::default(),
            rates_on: Default::default(),
        });
        for b in controls.store.list_budgets().await? {
            controls.install_budget(b).await?;
        }
        for w in controls.store.list_wallets().await? {
            controls.install_wallet(w);
        }
        controls.install_rates(controls.store.list_rate_limits().await?);
        Ok((controls, rx))
    }

    /// Hands the gateway's key cache to the controls (once, at start): revocations and rotations made through
    /// them, and every change of the controls' epoch, forget cached keys.
    pub fn attach_keys(&self, keys: Arc<crate::keys::KeyCache>) {
        let _ = self.keys.set(keys);
    }

    /// Forgets every cached key: another replica may have revoked or rotated one.
    pub(crate) fn forget_keys(&self) {
        if let Some(k) = self.keys.get() {
            k.clear();
        }
    }

    /// Revokes a key: refused at once on this replica, and on every other live replica before this returns
    /// (they confirm the controls' epoch after forgetting their cached keys). `None` if no key has this id.
    pub async fn revoke_key(&self, id: i64) -> Result<Option<KeyRecord>, StoreError> {
        let rec = self.store.revoke_key(id, now_ms()).await?;
        if rec.is_some() {
            self.key_changed(id).await;
        }
        Ok(rec)
    }

    /// Gives a key a new secret, returned with the record (the only time it is shown). The old secret is refused
    /// at once here and on every other live replica before this returns. `None` if no unrevoked key has this id.
    pub async fn rotate_key(&self, id: i64) -> Result<Option<(KeyRecord, String)>, StoreError> {
        let g = crate::keys::generate_key("", None)
            .map_err(|e| StoreError::Invalid(format!("no randomness available: {e}")))?;
        let Some(rec) = self
            .store
            .rotate_key(id, g.new_key.hash, g.new_key.hint)
            .await?
        else {
            return Ok(None);
        };
        self.key_changed(id).await;
        Ok(Some((rec, g.secret)))
    }

    async fn key_changed(&self, id: i64) {
        if let Some(k) = self.keys.get() {
            k.forget(id);
        }
        self.announce_change().await;
    }

    pub fn config(&self) -> &ControlsConfig {
        &self.config
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The period bounds and the spend so far (from the rollups) of a budget.
    async fn period_spend(
        &self,
        rec: &BudgetRecord,
        now: i64,
    ) -> Result<(i64, i64, Money), StoreError> {
        let (start, end) = rec.def.period.bounds(&self.config.time_zone, now);
        let f = filters_for(&rec.def.scope, start, now.max(start + 1));
        let spent = self.store.summary(&f).await?.cost;
        Ok((start, end, spent))
    }

    async fn install_budget(&self, rec: BudgetRecord) -> Result<(), StoreError> {
        let (start_ms, end_ms, spent) = self.period_spend(&rec, now_ms()).await?;
        // Crossings that happened while the gateway was down are reported now; the store keeps them unique.
        for t in crossed(Money::ZERO, spent, rec.def.amount, &rec.def.thresholds) {
            self.alert_budget(&rec, start_ms, t, spent);
        }
        let mut st = self.lock();
        // Still refusing after a reload, unless the budget changed (a raised amount may have room) or a new
        // period began.
        let (reserved, lease, refused_at_ms) = st
            .budgets
            .iter_mut()
            .find(|b| b.rec.id == rec.id)
            .map_or((Money::ZERO, None, None), |b| {
                let same = b.rec.def == rec.def && b.start_ms == start_ms;
                (b.reserved, b.lease.take(), b.refused_at_ms.filter(|_| same))
            });
        st.budgets.retain(|b| b.rec.id != rec.id);
        st.budgets.push(LiveBudget {
            rec,
            start_ms,
            end_ms,
            spent,
            reserved,
            lease,
            refused_at_ms,
        });
        Ok(())
    }

    fn install_wallet(&self, rec: WalletRecord) {
        let mut st = self.lock();
        // A reload keeps the refusal unless the wallet now holds more (another replica topped it up).
        let (reserved, epoch_ms, lease, refused_at_ms) = st
            .wallets
            .iter_mut()
            .find(|w| w.rec.id == rec.id)
            .map_or((Money::ZERO, rec.created_at_ms, None, None), |w| {
                let refused = w.refused_at_ms.filter(|_| rec.balance <= w.balance);
                (w.reserved, w.epoch_ms, w.lease.take(), refused)
            });
        st.wallets.retain(|w| w.rec.id != rec.id);
        let balance = rec.balance;
        st.wallets.push(LiveWallet {
            rec,
            balance,
            reserved,
            epoch_ms,
            lease,
            refused_at_ms,
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the numbers half-updated (every update is a few
        // additions), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds `estimate` for a request by (key, user, team), or says why it cannot run. With leases on, a
    /// request that does not fit this replica's leases is refused; [`Controls::reserve_leased`] asks for more.
    pub fn reserve(
        self: &Arc<Self>,
        key_id: i64,
        user: &str,
        team: Option<&str>,
        estimate: Money,
    ) -> Result<Hold, Refusal> {
        match self.try_reserve(key_id, user, team, estimate, false) {
            Attempt::Held(h) => Ok(h),
            Attempt::Refused(r) => Err(r),
            // Not asked for: `may_lease` is false.
            Attempt::NeedLeases(_) => Err(Refusal::Funds {
                description: "No lease covers this request; retry.".into(),
                wallet_id: None,
                detail: "no lease covered the request".into(),
            }),
        }
    }

    /// Like [`Controls::reserve`], but when this replica's leases are too small it asks the store for more (one
    /// round trip) and tries once more.
    pub async fn reserve_leased(
        self: &Arc<Self>,
        key_id: i64,
        user: &str,
        team: Option<&str>,
        estimate: Money,
    ) -> Result<Hold, Refusal> {
        // Requests of a burst race for the room a grant brings; a request that lost the race asks again. A store
        // that has no more room marks the lease exhausted, and the next attempt is refused without asking.
        for _ in 0..MAX_LEASE_ATTEMPTS {
            match self.try_reserve(key_id, user, team, estimate, true) {
                Attempt::Held(h) => return Ok(h),
                Attempt::Refused(r) => return Err(r),
                Attempt::NeedLeases(needs) => self.acquire(needs).await,
            }
        }
        self.reserve(key_id, user, team, estimate)
    }

    fn try_reserve(
        self: &Arc<Self>,
        key_id: i64,
        user: &str,
        team: Option<&str>,
        estimate: Money,
        may_lease: bool,
    ) -> Attempt {
        let now = now_ms();
        let leased = self.config.leases.is_some();
        let mut st = self.lock();
        if st.budgets.is_empty() && st.wallets.is_empty() {
            return Attempt::Held(Hold::none());
        }
        let mut stale = false;
        for b in st.budgets.iter_mut().filter(|b| now >= b.end_ms) {
            // A new period: spend starts again from zero (refreshed from the store in the background).
            let (s, e) = b.rec.def.period.bounds(&self.config.time_zone, now);
            b.start_ms = s;
            b.end_ms = e;
            b.spent = Money::ZERO;
            b.refused_at_ms = None;
            stale = true;
        }
        if stale {
            let me = Arc::clone(self);
            tokio::spawn(async move { me.refresh_budgets().await });
        }
        let covering: Vec<usize> = st
            .budgets
            .iter()
            .enumerate()
            .filter(|(_, b)| b.rec.def.scope.covers(key_id, user, team))
            .map(|(i, _)| i)
            .collect();
        let mut needs = Vec::new();
        for &i in &covering {
            let b = &st.budgets[i];
            if !b.rec.def.hard_limit {
                continue;
            }
            let over_locally = b.spent + b.reserved + estimate > b.rec.def.amount;
            let lease_fits = b
                .lease
                .as_ref()
                .is_some_and(|l| l.fits(b.reserved, estimate, now, b.start_ms));
            let exhausted = b.lease.as_ref().is_some_and(|l| l.exhausted(now));
            if !over_locally && leased && !lease_fits && may_lease && !exhausted {
                needs.push(LeaseNeed {
                    target: b.lease_target(now),
                    at_least: estimate,
                });
                continue;
            }
            if over_locally || (leased && !lease_fits) {
                let retry = u64::try_from((b.end_ms - now).max(1000) / 1000).unwrap_or(1);
                let description = format!(
                    "The {} budget of {} ({} a {}) has no room left for this request; it resets in {} s.",
                    b.rec.def.period.as_str(),
                    b.rec.def.scope.describe(),
                    b.rec.def.amount.display_usd(),
                    b.rec.def.period.as_str(),
                    retry
                );
                let detail = format!(
                    "{} is hard and full ({} a {})",
                    budget_name(&b.rec),
                    b.rec.def.amount.display_usd(),
                    b.rec.def.period.as_str()
                );
                // The first refusal of the period tells someone: a blocked team must not find out from its users.
                let b = &mut st.budgets[i];
                if b.refused_at_ms.is_none() {
                    b.refused_at_ms = Some(now);
                    self.alert_budget_refusing(&b.rec, b.start_ms, user, team);
                }
                return Attempt::Refused(Refusal::Budget {
                    description,
                    retry_after_secs: retry,
                    budget_id: b.rec.id,
                    detail,
                });
            }
        }
        // The paying wallet: the user's, else the team's, else the org's; the first of them that can cover it.
        let chain = [Scope::User(user.to_string())]
            .into_iter()
            .chain(team.map(|t| Scope::Team(t.to_string())))
            .chain([Scope::Org]);
        let mut payer = None;
        let mut nearest = None;
        for scope in chain {
            if let Some(i) = st.wallets.iter().position(|w| w.rec.def.scope == scope) {
                nearest = nearest.or(Some(i));
                let w = &st.wallets[i];
                if !leased {
                    if w.available() >= estimate {
                        payer = Some(i);
                        break;
                    }
                    continue;
                }
                if w.lease
                    .as_ref()
                    .is_some_and(|l| l.fits(w.reserved, estimate, now, 0))
                {
                    payer = Some(i);
                    break;
                }
                let exhausted = w.lease.as_ref().is_some_and(|l| l.exhausted(now));
                if may_lease && !exhausted && w.available() >= estimate {
                    needs.push(LeaseNeed {
                        target: LeaseTarget::Wallet { id: w.rec.id },
                        at_least: estimate,
                    });
                    break;
                }
            }
        }
        if !needs.is_empty() {
            return Attempt::NeedLeases(needs);
        }
        if let (Some(i), None) = (nearest, payer) {
            let w = &mut st.wallets[i];
            let available = w.available();
            let detail = if available <= Money::ZERO {
                format!("wallet '{}' is empty", w.rec.def.name)
            } else {
                format!(
                    "wallet '{}' holds too little: {} available, the request may cost up to {}",
                    w.rec.def.name,
                    available.display_usd(),
                    estimate.display_usd()
                )
            };
            // The first refusal since the wallet last received money tells someone, as a hard budget's does.
            if w.refused_at_ms.is_none() {
                w.refused_at_ms = Some(now);
                self.alert_wallet_refusing(w, user, team);
            }
            return Attempt::Refused(Refusal::Funds {
                description: format!(
                    "No wallet that pays for this request holds enough: it may cost up to {}. Ask an admin to top up \
                     the wallet of user {user}{}.",
                    estimate.display_usd(),
                    team.map(|t| format!(", team {t}")).unwrap_or_default()
                ),
                wallet_id: Some(w.rec.id),
                detail,
            });
        }
        let mut leases = Vec::new();
        let wallet = payer.map(|i| {
            let w = &mut st.wallets[i];
            w.reserved += estimate;
            leases.extend(w.lease.as_ref().map(|l| l.id));
            (w.rec.id, estimate)
        });
        let mut budgets = Vec::with_capacity(covering.len());
        for i in covering {
            let b = &mut st.budgets[i];
            let held = if b.rec.def.hard_limit {
                leases.extend(b.lease.as_ref().filter(|_| leased).map(|l| l.id));
                estimate
            } else {
                Money::ZERO
            };
            b.reserved += held;
            budgets.push((b.rec.id, held));
        }
        Attempt::Held(Hold {
            controls: Some(Arc::clone(self)),
            budgets,
            wallet,
            leases,
        })
    }

    fn settle(
        &self,
        budgets: &[(i64, Money)],
        wallet: Option<(i64, Money)>,
        leases: &[i64],
        actual: Money,
    ) {
        let drew_on = |l: &mut Option<LocalLease>| {
            if let Some(l) = l.as_mut().filter(|l| leases.contains(&l.id)) {
                l.used += actual;
            }
        };
        let mut alerts = Vec::new();
        {
            let mut st = self.lock();
            for (id, held) in budgets {
                if let Some(b) = st.budgets.iter_mut().find(|b| b.rec.id == *id) {
                    b.reserved = b.reserved.saturating_sub(*held).max(Money::ZERO);
                    drew_on(&mut b.lease);
                    let before = b.spent;
                    b.spent += actual;
                    for t in crossed(before, b.spent, b.rec.def.amount, &b.rec.def.thresholds) {
                        alerts.push((b.rec.clone(), b.start_ms, t, b.spent));
                    }
                }
            }
            if let Some((id, held)) = wallet {
                if let Some(w) = st.wallets.iter_mut().find(|w| w.rec.id == id) {
                    w.reserved = w.reserved.saturating_sub(held).max(Money::ZERO);
                    drew_on(&mut w.lease);
                    let before = wallet_status(w.available() + actual, w.rec.def.low_threshold);
                    w.balance = w.balance - actual;
                    let after = wallet_status(w.available(), w.rec.def.low_threshold);
                    if before != after {
                        self.alert_wallet(w, after);
                    }
                }
            }
        }
        for (rec, start, t, spent) in alerts {
            self.alert_budget(&rec, start, t, spent);
        }
    }

    /// Since when a wallet has been refusing requests (since it last received money), if it has.
    pub fn wallet_refusing_since(&self, id: i64) -> Option<i64> {
        self.lock()
            .wallets
            .iter()
            .find(|w| w.rec.id == id)
            .and_then(|w| w.refused_at_ms)
    }

    /// Since when a hard budget has been refusing requests this period, if it has.
    pub fn budget_refusing_since(&self, id: i64) -> Option<i64> {
        self.lock()
            .budgets
            .iter()
            .find(|b| b.rec.id == id)
            .and_then(|b| b.refused_at_ms)
    }

    /// Whether a hard-limited budget covers requests by (key, user, team).
    pub fn hard_limited(&self, key_id: i64, user: &str, team: Option<&str>) -> bool {
        self.lock()
            .budgets
            .iter()
            .any(|b| b.rec.def.hard_limit && b.rec.def.scope.covers(key_id, user, team))
    }

    /// Whether any budget or wallet is configured: without one, no request needs a hold.
    pub fn has_any(&self) -> bool {
        let st = self.lock();
        !(st.budgets.is_empty() && st.wallets.is_empty())
    }

    /// Whether a wallet pays for requests of (key, user, team): the user's, the team's or the org's.
    pub fn pays_from_wallet(&self, _key_id: i64, user: &str, team: Option<&str>) -> bool {
        self.lock().wallets.iter().any(|w| match &w.rec.def.scope {
            Scope::User(u) => u == user,
            Scope::Team(t) => Some(t.as_str()) == team,
            Scope::Org => true,
            _ => false,
        })
    }

    /// Figures for the API and pages: (reserved, enforced spend) of a budget.
    pub fn budget_live(&self, id: i64) -> Option<(Money, Money)> {
        self.lock()
            .budgets
            .iter()
            .find(|b| b.rec.id == id)
            .map(|b| (b.reserved, b.spent))
    }

    /// (balance, reserved) of a wallet as enforced now.
    pub fn wallet_live(&self, id: i64) -> Option<(Money, Money)> {
        self.lock()
            .wallets
            .iter()
            .find(|w| w.rec.id == id)
            .map(|w| (w.balance, w.reserved))
    }

    /// The state of a budget given its spend.
    pub fn state_of(rec: &BudgetRecord, spent: Money) -> BudgetState {
        budget_state(spent, rec.def.amount, &rec.def.thresholds)
    }
}
