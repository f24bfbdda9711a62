//! Budget and wallet leases: how several replicas share hard limits without a store round trip per request.
//! (Rate limits' shares go through the same store calls, request gate and renewal; their side is `rates.rs`.)
//!
//! With leases on, a replica checks a hard-limited budget or a wallet against its own **lease** (a slice of the
//! remaining amount the store reserved for it, see `spendgate_store::replicas`) instead of the whole amount:
//! requests are held against `granted - used` in memory, exactly as before. The store is asked only when a
//! lease is missing, too small for a request, or due for renewal:
//!
//! - **on demand**: a request that does not fit asks for a lease big enough for itself and the next few
//!   (one round trip, then retried once; still no room means 429 / 402);
//! - **renewal**: every third of the lease lifetime a background task renews every lease, sizing it to the
//!   spend of the last interval times [`LeaseSettings::horizon_ms`], never more than half of what is left
//!   unleased (so a small remainder is shared, not stranded on one replica), and giving back what an idle
//!   replica does not need;
//! - **shutdown**: every lease is given back, keeping only what was spent.
//!
//! A lease is used only until a third of its lifetime before it expires in the store, so a replica that loses
//! the store stops spending from it before anyone else can be granted the same money. Crashed replicas' leases
//! simply expire.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use spendgate_core::time::now_ms;
use spendgate_core::Money;
use spendgate_store::replicas::{units, LeaseGrant, LeaseRequest, LeaseTarget};

use super::{Controls, LiveBudget};

/// How often a replica reads the controls' epoch: a change made on another replica binds here within this.
const EPOCH_POLL: Duration = Duration::from_millis(100);
/// The longest a change of controls waits for the other replicas to confirm it.
const ANNOUNCE_WAIT: Duration = Duration::from_secs(3);

/// How long requests that do not fit are refused locally after the store said it had no room.
pub(super) const EXHAUSTED_BACKOFF_MS: i64 = 1_000;

/// Lease settings (`[replicas]` in the config).
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// This replica's name: one lease per replica, target and period.
    pub gateway: String,
    /// How long a lease lives in the store unless renewed.
    pub ttl_ms: i64,
    /// How much spend a lease should cover: the last interval's spend rate times this.
    pub horizon_ms: i64,
    /// This replica's writer: flushed before the replica reads the spend of a control that changed, so that its
    /// own spend still waiting for a batch (up to `writer.flush_ms`) counts.
    pub writer: Option<spendgate_store::SpendWriter>,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            gateway: "gateway".into(),
            ttl_ms: 30_000,
            horizon_ms: 10_000,
            writer: None,
        }
    }
}

/// This replica's side of one lease.
#[derive(Debug, Clone)]
pub(super) struct LocalLease {
    pub id: i64,
    /// The budget period it belongs to (0 for wallets).
    pub period_start_ms: i64,
    pub granted: Money,
    /// Settled spend drawn against it.
    pub used: Money,
    /// `used` at the last renewal, for the spend rate.
    pub used_at_renewal: Money,
    /// Spending from it stops here, a third of the lifetime before the store lets it go.
    pub usable_until_ms: i64,
    /// What the store said was left for everyone else at the last grant.
    pub unleased: Money,
    /// After the store had no room for a request, requests that do not fit are refused here without asking
    /// again until this time, so an exhausted budget costs one round trip a second, not one per request.
    pub exhausted_until_ms: i64,
}

impl LocalLease {
    /// Whether asking the store for more is pointless right now (it just said it had no room).
    pub fn exhausted(&self, now: i64) -> bool {
        now < self.exhausted_until_ms
    }

    /// Whether `reserved` (already held by requests in flight) plus `estimate` fit in the lease now.
    pub fn fits(&self, reserved: Money, estimate: Money, now: i64, period_start_ms: i64) -> bool {
        now < self.usable_until_ms
            && self.period_start_ms == period_start_ms
            && self.used + reserved + estimate <= self.granted
    }
}

/// A lease a request is waiting for.
#[derive(Debug, Clone)]
pub(super) struct LeaseNeed {
    pub target: LeaseTarget,
    /// At least this much more room.
    pub at_least: Money,
}

impl LiveBudget {
    /// This budget's current period as a lease target.
    pub(super) fn lease_target(&self, now: i64) -> LeaseTarget {
        LeaseTarget::Budget {
            id: self.rec.id,
            period_start_ms: self.start_ms,
            filters: Box::new(super::filters_for(
                &self.rec.def.scope,
                self.start_ms,
                now.max(self.start_ms + 1),
            )),
            amount: self.rec.def.amount,
        }
    }
}

impl LeaseSettings {
    pub(super) fn usable_until(&self, grant: &LeaseGrant) -> i64 {
        grant.expires_at_ms - self.ttl_ms / 3
    }

    /// How much to ask for on top of what is kept: enough for `horizon_ms` at the last interval's rate, at least
    /// `floor`, and at most half of what was left unleased (but never less than `floor`).
    fn want(&self, lease: Option<&LocalLease>, floor: Money, interval_ms: i64) -> Money {
        let Some(l) = lease else {
            return floor;
        };
        let spent = (l.used - l.used_at_renewal).max(Money::ZERO);
        let rate_based = Money::from_picos(
            spent.picos() * i128::from(self.horizon_ms) / i128::from(interval_ms.max(1)),
        );
        let half_left = Money::from_picos(l.unleased.picos() / 2);
        rate_based.max(floor).min(half_left.max(floor))
    }
}

impl Controls {
    pub(super) fn settings(&self) -> Option<&LeaseSettings> {
        self.config.leases.as_ref()
    }

    /// One lease request to the store.
    pub(super) async fn ask(
        &self,
        s: &LeaseSettings,
        target: &LeaseTarget,
        keep: Money,
        want: Money,
    ) -> Result<LeaseGrant, spendgate_store::StoreError> {
        self.count_round_trip();
        self.store
            .lease(LeaseRequest {
                target: target.clone(),
                gateway: s.gateway.clone(),
                keep,
                want,
                ttl_ms: s.ttl_ms,
            })
            .await
    }

    fn count_round_trip(&self) {
        self.lease_round_trips
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Lease requests sent to the store so far (on demand and renewals).
    pub fn lease_round_trips(&self) -> u64 {
        self.lease_round_trips
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether this replica enforces hard limits through leases.
    pub fn leased(&self) -> bool {
        self.config.leases.is_some()
    }

    /// Asks the store for the leases `needs` lists; installs what it grants. One request asks at a time (the
    /// others of a burst wait, then find the room it brought); each asks for room for everyone waiting.
    pub(super) async fn acquire(&self, needs: Vec<LeaseNeed>) {
        let Some(s) = self.settings() else { return };
        let waiting = self.lease_waiters.fetch_add(1, Ordering::Relaxed) + 1;
        let _one_at_a_time = self.lease_gate.lock().await;
        self.lease_waiters.fetch_sub(1, Ordering::Relaxed);
        for need in needs {
            let (mut keep, current) = self.lease_position(&need.target);
            let now = now_ms();
            if current.as_ref().is_some_and(|l| {
                l.fits(keep - l.used, need.at_least, now, l.period_start_ms) || l.exhausted(now)
            }) {
                // The request before this one in the queue brought enough room, or learnt that there is none.
                continue;
            }
            // Asking on demand never shrinks a lease (renewals do): what is granted stays granted.
            if let Some(l) = &current {
                keep = keep.max(l.granted);
            }
            // Room for this request and for every request waiting behind it, twice over, or the usual size if
            // that is larger.
            let per_request = need.at_least.picos().saturating_mul(2);
            let floor = Money::from_picos(
                per_request.saturating_mul(i128::try_from(waiting.max(2)).unwrap_or(2)),
            );
            let want = s
                .want(current.as_ref(), floor, s.ttl_ms / 3)
                .max(need.at_least);
            match self.ask(s, &need.target, keep, want).await {
                Ok(grant) => {
                    let short = grant.granted < keep + need.at_least;
                    self.install_lease(&need.target, &grant, s);
                    if short {
                        self.mark_exhausted(&need.target);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Taking a lease failed; requests it covers are refused.")
                }
            }
        }
    }

    /// (what this replica keeps of its lease on `target`: spent plus held, its current lease).
    fn lease_position(&self, target: &LeaseTarget) -> (Money, Option<LocalLease>) {
        let st = self.lock();
        match target {
            LeaseTarget::Budget {
                id,
                period_start_ms,
                ..
            } => st
                .budgets
                .iter()
                .find(|b| b.rec.id == *id)
                .map(|b| match &b.lease {
                    Some(l) if l.period_start_ms == *period_start_ms => {
                        (l.used + b.reserved, Some(l.clone()))
                    }
                    _ => (Money::ZERO, None),
                })
                .unwrap_or((Money::ZERO, None)),
            LeaseTarget::Wallet { id } => st
                .wallets
                .iter()
                .find(|w| w.rec.id == *id)
                .map(|w| match &w.lease {
                    Some(l) => (l.used + w.reserved, Some(l.clone())),
                    None => (Money::ZERO, None),
                })
                .unwrap_or((Money::ZERO, None)),
            // Rate limits keep their shares in their counters (`rates.rs`).
            LeaseTarget::Rate { .. } => (Money::ZERO, None),
        }
    }

    fn install_lease(&self, target: &LeaseTarget, grant: &LeaseGrant, s: &LeaseSettings) {
        let mut st = self.lock();
        let slot = match target {
            LeaseTarget::Budget { id, .. } => st
                .budgets
                .iter_mut()
                .find(|b| b.rec.id == *id)
                .map(|b| &mut b.lease),
            LeaseTarget::Wallet { id } => st
                .wallets
                .iter_mut()
                .find(|w| w.rec.id == *id)
                .map(|w| &mut w.lease),
            LeaseTarget::Rate { .. } => None,
        };
        let Some(slot) = slot else { return };
        let period_start_ms = target.key().2;
        match slot {
            Some(l) if l.id == grant.id && l.period_start_ms == period_start_ms => {
                l.granted = grant.granted;
                l.usable_until_ms = s.usable_until(grant);
                l.unleased = grant.unleased;
                l.used_at_renewal = l.used;
                if grant.added > Money::ZERO {
                    l.exhausted_until_ms = 0;
                }
            }
            _ => {
                *slot = Some(LocalLease {
                    id: grant.id,
                    period_start_ms,
                    granted: grant.granted,
                    used: Money::ZERO,
                    used_at_renewal: Money::ZERO,
                    usable_until_ms: s.usable_until(grant),
                    unleased: grant.unleased,
                    exhausted_until_ms: 0,
                })
            }
        }
    }

    fn mark_exhausted(&self, target: &LeaseTarget) {
        let until = now_ms() + EXHAUSTED_BACKOFF_MS;
        let mut st = self.lock();
        let lease = match target {
            LeaseTarget::Budget { id, .. } => st
                .budgets
                .iter_mut()
                .find(|b| b.rec.id == *id)
                .and_then(|b| b.lease.as_mut()),
            LeaseTarget::Wallet { id } => st
                .wallets
                .iter_mut()
                .find(|w| w.rec.id == *id)
                .and_then(|w| w.lease.as_mut()),
            LeaseTarget::Rate { .. } => None,
        };
        if let Some(l) = lease {
            l.exhausted_until_ms = until;
        }
    }

    /// The lease targets this replica holds now, for renewal and release.
    fn held_targets(&self) -> Vec<LeaseTarget> {
        let st = self.lock();
        let now = now_ms();
        let mut out = Vec::new();
        for b in &st.budgets {
            if b.lease
                .as_ref()
                .is_some_and(|l| l.period_start_ms == b.start_ms)
            {
                out.push(b.lease_target(now));
            }
        }
        for w in &st.wallets {
            if w.lease.is_some() {
                out.push(LeaseTarget::Wallet { id: w.rec.id });
            }
        }
        out
    }

    /// Renews every lease: extends it, and resizes it to the recent spend rate.
    pub async fn renew_leases(&self) {
        let Some(s) = self.settings() else { return };
        let interval = s.ttl_ms / 3;
        for target in self.held_targets() {
            let (keep, current) = self.lease_position(&target);
            let floor = Money::ZERO;
            let want = s.want(current.as_ref(), floor, interval);
            match self.ask(s, &target, keep, want).await {
                Ok(grant) => self.install_lease(&target, &grant, s),
                Err(e) => {
                    tracing::warn!(error = %e, "Renewing a lease failed; it lapses unless a later renewal succeeds.")
                }
            }
        }
        self.renew_rate_leases(s).await;
    }

    /// Gives every lease back, keeping what was spent (a clean shutdown).
    pub async fn release_leases(&self) {
        if self.settings().is_none() {
            return;
        }
        let held: Vec<(i64, Money)> = {
            let mut st = self.lock();
            let mut out = Vec::new();
            for b in st.budgets.iter_mut() {
                if let Some(l) = b.lease.take() {
                    out.push((l.id, l.used + b.reserved));
                }
            }
            for w in st.wallets.iter_mut() {
                if let Some(l) = w.lease.take() {
                    out.push((l.id, l.used + w.reserved));
                }
            }
            out
        };
        let rates = self
            .take_rate_leases()
            .into_iter()
            .map(|(id, n)| (id, units(n)));
        for (id, keep) in held.into_iter().chain(rates) {
            if let Err(e) = self.store.release_lease(id, keep).await {
                tracing::warn!(error = %e, lease = id, "Returning a lease failed; it will expire instead.");
            }
        }
    }

    /// Tells the other replicas that a control changed, and waits (at most [`ANNOUNCE_WAIT`]) until every live
    /// one says it enforces the change, so that a budget created, lowered or a wallet emptied through this
    /// replica binds the next request on any replica, not one after their next reload. A single replica has no
    /// one to tell.
    pub(crate) async fn announce_change(&self) {
        let Some(s) = self.settings() else { return };
        if let Some(w) = &s.writer {
            w.flush().await;
        }
        let epoch = match self.store.bump_controls_epoch().await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "Announcing a change of controls failed; other replicas see it at their next reload.");
                return;
            }
        };
        if let Err(e) = self
            .store
            .ack_controls_epoch(&s.gateway, epoch, now_ms())
            .await
        {
            tracing::warn!(error = %e, "Recording this replica's controls epoch failed.");
        }
        let deadline = tokio::time::Instant::now() + ANNOUNCE_WAIT;
        loop {
            let behind = self.replicas_behind(s, epoch).await;
            if behind.is_empty() {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(replicas = ?behind, epoch,
                    "Some replicas did not confirm a change of controls in time; they enforce it at their next reload.");
                return;
            }
            tokio::time::sleep(EPOCH_POLL).await;
        }
    }

    /// The live replicas (seen within a lease's lifetime, not stopped) other than this one that have not yet
    /// confirmed `epoch`.
    async fn replicas_behind(&self, s: &LeaseSettings, epoch: i64) -> Vec<String> {
        let (Ok(beats), Ok(acks)) = (
            self.store.list_gateways().await,
            self.store.controls_acks().await,
        ) else {
            return Vec::new();
        };
        let now = now_ms();
        beats
            .into_iter()
            .filter(|b| !b.stopped && b.name != s.gateway && now - b.last_seen_ms <= s.ttl_ms)
            .filter(|b| !acks.iter().any(|(g, e)| *g == b.name && *e >= epoch))
            .map(|b| b.name)
            .collect()
    }

    /// Watches the controls' epoch and reloads budgets and wallets (and forgets cached keys) as soon as another
    /// replica changed one, then confirms it (see [`Controls::announce_change`]).
    fn spawn_epoch_watch(self: &Arc<Self>, s: &LeaseSettings) {
        let me = Arc::downgrade(self);
        let gateway = s.gateway.clone();
        let writer = s.writer.clone();
        tokio::spawn(async move {
            let mut seen = None;
            let mut tick = tokio::time::interval(EPOCH_POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(c) = me.upgrade() else { return };
                let Ok(epoch) = c.store.controls_epoch().await else {
                    continue;
                };
                if seen == Some(epoch) {
                    continue;
                }
                // This replica's own recent spend first, so that the change binds it too.
                if let Some(w) = &writer {
                    w.flush().await;
                }
                c.refresh_from_store().await;
                // A key may have been revoked or rotated: the next request with any key asks the store again.
                c.forget_keys();
                match c.store.ack_controls_epoch(&gateway, epoch, now_ms()).await {
                    Ok(()) => seen = Some(epoch),
                    Err(e) => {
                        tracing::warn!(error = %e, "Confirming the controls epoch failed; retrying.")
                    }
                }
            }
        });
    }

    /// Renews leases every third of their lifetime, until the process ends.
    pub fn spawn_renewal(self: &Arc<Self>) {
        let Some(s) = self.settings() else { return };
        self.spawn_epoch_watch(s);
        let every = Duration::from_millis(u64::try_from(s.ttl_ms / 3).unwrap_or(10_000).max(100));
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(c) = me.upgrade() else { return };
                c.renew_leases().await;
                c.refresh_from_store().await;
            }
        });
    }
}
