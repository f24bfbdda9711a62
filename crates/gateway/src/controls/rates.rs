//! Rate limits on the request path: at most so many requests and tokens a minute for one key or one team, counted
//! in memory, so that checking one costs no store round trip.
//!
//! Each limit counts over a **sliding window** of the last 60 seconds in one-second slots: a request is counted in
//! the second it is admitted and leaves the window 60 seconds later. So N + k requests sent together let N
//! through whenever they are sent (there is no minute boundary to burst across), and `Retry-After` is the number
//! of seconds until enough of what was counted has left the window for the refused request to fit.
//!
//! Tokens are counted when a request is admitted at what it may use (its prompt estimated at four bytes a token,
//! images and tools as `protocol::extent` counts them, and its output limit) and corrected to the usage the
//! provider reported when it ends (in the slot it was counted in, while that slot is still in the window). A
//! request refused after its admission (by a budget, say) is not counted at all.
//!
//! Across replicas (`replicas.leases`) a replica counts against a **lease**: a share of the limit the store grants
//! it (`spendgate_store::replicas`) only out of what the other replicas' shares leave. A replica never keeps less
//! than it counted in the last minute, so the counts of every replica over any minute add up to at most the
//! limit. Shares follow traffic: a request that does not fit this replica's share asks for more (one round trip),
//! and every renewal sizes the share to the last interval's rate, giving back what an idle replica does not use.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use spendgate_core::controls::Scope;
use spendgate_core::time::now_ms;
use spendgate_store::controls::{NewRateLimit, RateLimitRecord};
use spendgate_store::replicas::{
    count_of, units, LeaseGrant, LeaseTarget, RateMeasure, RATE_WINDOW_MS,
};
use spendgate_store::StoreError;

use super::leases::{LeaseSettings, EXHAUSTED_BACKOFF_MS};
use super::{Controls, MAX_LEASE_ATTEMPTS};

/// One-second slots in a window.
const SLOTS: i64 = RATE_WINDOW_MS / 1000;

/// What one measure counted over the last minute, by second: slot `s mod SLOTS` holds second `s`.
#[derive(Debug, Clone)]
pub(super) struct Window {
    slots: [(i64, u64); SLOTS as usize],
}

impl Window {
    fn new() -> Window {
        Window {
            slots: [(i64::MIN, 0); SLOTS as usize],
        }
    }

    fn slot(&mut self, second: i64) -> &mut (i64, u64) {
        // `rem_euclid` of a positive divisor is never negative and below SLOTS.
        &mut self.slots[usize::try_from(second.rem_euclid(SLOTS)).unwrap_or(0)]
    }

    /// (second, amount) of every second still in the window at `now_s` (the current one and the 59 before it).
    fn live(&self, now_s: i64) -> impl Iterator<Item = (i64, u64)> + '_ {
        self.slots
            .iter()
            .copied()
            .filter(move |&(s, n)| n > 0 && s > now_s - SLOTS && s <= now_s)
    }

    /// What was counted in the window at `now_s`.
    pub(super) fn total(&self, now_s: i64) -> u64 {
        self.counted_after(now_s - SLOTS, now_s)
    }

    /// What was counted in the seconds after `from_s` up to `now_s`.
    fn counted_after(&self, from_s: i64, now_s: i64) -> u64 {
        self.live(now_s)
            .filter(|&(s, _)| s > from_s)
            .fold(0u64, |sum, (_, n)| sum.saturating_add(n))
    }

    fn add(&mut self, second: i64, n: u64) {
        let slot = self.slot(second);
        if slot.0 != second {
            *slot = (second, 0);
        }
        slot.1 = slot.1.saturating_add(n);
    }

    /// Replaces `held`, counted in `second`, with `actual`; nothing if that second has left the window.
    fn replace(&mut self, second: i64, held: u64, actual: u64) {
        let slot = self.slot(second);
        if slot.0 == second {
            slot.1 = slot.1.saturating_sub(held).saturating_add(actual);
        }
    }

    /// Seconds from `now_s` until `need` more fits under `cap` (0: it fits now), or `None` if it never will.
    fn wait_for(&self, now_s: i64, need: u64, cap: u64) -> Option<u64> {
        if need > cap {
            return None;
        }
        let mut left = self.total(now_s);
        let mut live: Vec<(i64, u64)> = self.live(now_s).collect();
        live.sort_unstable();
        let mut leaves = live.into_iter();
        let mut wait = 0;
        while left.saturating_add(need) > cap {
            let (second, n) = leaves.next()?;
            left = left.saturating_sub(n);
            wait = second + SLOTS - now_s;
        }
        u64::try_from(wait).ok()
    }
}

/// This replica's share of one of a rate limit's counts.
#[derive(Debug, Clone)]
pub(super) struct RateLease {
    id: i64,
    granted: u64,
    /// Counting against it stops here, a third of its lifetime before the store lets it go.
    usable_until_ms: i64,
    /// What the store said was left for everyone else at the last grant.
    unleased: u64,
}

impl RateLease {
    /// What this replica may count in a minute now.
    fn cap(&self, now: i64) -> u64 {
        if now < self.usable_until_ms {
            self.granted
        } else {
            0
        }
    }
}

/// One count (requests or tokens) of a rate limit.
#[derive(Debug, Clone)]
pub(super) struct Counter {
    measure: RateMeasure,
    limit: u64,
    window: Window,
    lease: Option<RateLease>,
    /// After the store had no room (or could not be asked), requests that do not fit this replica's share are
    /// refused without asking again until then: an exhausted limit costs one round trip a second, not one per
    /// request.
    backoff_until_ms: i64,
}

/// A rate limit as enforced: its definition and its counts.
pub(super) struct LiveRate {
    rec: RateLimitRecord,
    counters: Vec<Counter>,
}

impl LiveRate {
    /// The limit `rec`, keeping what `before` (the same limit as enforced until now) counted. A changed limit's
    /// lease is kept (it still holds what was counted) but not used until the store grants it again against the
    /// new limit.
    fn new(rec: RateLimitRecord, before: Option<LiveRate>) -> LiveRate {
        let changed = before.as_ref().is_some_and(|b| b.rec.def != rec.def);
        let mut old = before.map(|b| b.counters).unwrap_or_default();
        let counters = [
            (RateMeasure::Requests, rec.def.rpm),
            (RateMeasure::Tokens, rec.def.tpm),
        ]
        .into_iter()
        .filter_map(|(measure, limit)| {
            let limit = limit?;
            let (window, mut lease, backoff_until_ms) =
                match old.iter().position(|c| c.measure == measure) {
                    Some(i) => {
                        let c = old.swap_remove(i);
                        (c.window, c.lease, c.backoff_until_ms)
                    }
                    None => (Window::new(), None, 0),
                };
            if changed {
                if let Some(l) = lease.as_mut() {
                    l.usable_until_ms = 0;
                }
            }
            Some(Counter {
                measure,
                limit,
                window,
                lease,
                backoff_until_ms: if changed { 0 } else { backoff_until_ms },
            })
        })
        .collect();
        LiveRate { rec, counters }
    }

    fn target(&self, c: &Counter) -> LeaseTarget {
        LeaseTarget::Rate {
            id: self.rec.id,
            measure: c.measure,
            limit: c.limit,
        }
    }

    fn covers(&self, key_id: i64, team: Option<&str>) -> bool {
        match &self.rec.def.scope {
            Scope::Key(k) => *k == key_id,
            Scope::Team(t) => team == Some(t.as_str()),
            _ => false,
        }
    }
}

/// The rate limits this replica enforces.
#[derive(Default)]
pub(super) struct Rates {
    limits: Vec<LiveRate>,
}

/// Which rate limits cover a request's key and team: none, only requests a minute, or tokens too (then the
/// request's tokens must be estimated before it is admitted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateCover {
    None,
    Requests,
    Tokens,
}

/// Why a request was refused by a rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateRefusal {
    pub measure: RateMeasure,
    pub description: String,
    /// Seconds until the request would fit; `None` when it never can (alone it may use more than the limit).
    pub retry_after_secs: Option<u64>,
}

/// What a request counted against rate limits. Settle it with the tokens the request used; dropping it (the
/// request never reached a provider) takes its counts back.
pub struct RateHold {
    controls: Option<Arc<Controls>>,
    /// (rate limit id, measure, second, amount) of each count the request added.
    counted: Vec<(i64, RateMeasure, i64, u64)>,
}

impl std::fmt::Debug for RateHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateHold")
            .field("counted", &self.counted)
            .finish()
    }
}

impl RateHold {
    /// Counts against nothing, for when no rate limit applies.
    pub fn none() -> RateHold {
        RateHold {
            controls: None,
            counted: Vec::new(),
        }
    }

    /// The request ran: it stays counted as a request, and its held tokens become the `tokens` it used.
    pub fn settle(mut self, tokens: u64) {
        if let Some(c) = self.controls.take() {
            c.uncount(&self.counted, Some(tokens));
        }
    }
}

impl Drop for RateHold {
    fn drop(&mut self) {
        if let Some(c) = self.controls.take() {
            c.uncount(&self.counted, None);
        }
    }
}

/// A lease a request is waiting for.
struct RateNeed {
    target: LeaseTarget,
    at_least: u64,
}

enum Attempt {
    Counted(RateHold),
    Refused(RateRefusal),
    NeedLeases(Vec<RateNeed>),
}

fn refusal(scope: &Scope, c: &Counter, need: u64, wait: Option<u64>) -> RateRefusal {
    let (who, limit) = (scope.describe(), c.limit);
    let description = match (c.measure, wait) {
        (RateMeasure::Tokens, None) => format!(
            "This request may use {need} tokens (its prompt, estimated, and its output limit), more than {who} may use \
             in a minute ({limit} tokens a minute). Lower max_tokens or send a shorter prompt, or ask an operator to \
             raise the limit."
        ),
        (RateMeasure::Tokens, Some(w)) => format!(
            "Rate limit reached: {who} may use {limit} tokens a minute, and this request may use {need} (its prompt, \
             estimated, and its output limit). Retry after {w} s, lower max_tokens, or ask an operator to raise the \
             limit."
        ),
        (RateMeasure::Requests, w) => format!(
            "Rate limit reached: {who} may send {limit} requests a minute. Retry after {} s, or ask an operator to \
             raise the limit.",
            w.unwrap_or(1)
        ),
    };
    RateRefusal {
        measure: c.measure,
        description,
        retry_after_secs: wait,
    }
}

/// How much more of a limit to ask for: enough for the lease horizon at the rate of the last renewal interval, at
/// least `floor`, and at most half of what the store last said was left (never less than `floor`), so that a
/// small remainder is shared rather than taken by one replica.
fn want(c: &Counter, floor: u64, now_s: i64, s: &LeaseSettings) -> u64 {
    let interval_ms = (s.ttl_ms / 3).max(1000);
    let recent = c.window.counted_after(now_s - interval_ms / 1000, now_s);
    let rate_based =
        u64::try_from(i128::from(recent) * i128::from(s.horizon_ms) / i128::from(interval_ms))
            .unwrap_or(u64::MAX);
    let half_left = c.lease.as_ref().map_or(c.limit, |l| l.unleased) / 2;
    rate_based.max(floor).min(half_left.max(floor))
}

impl Controls {
    fn rates(&self) -> std::sync::MutexGuard<'_, Rates> {
        // Every update under this lock is a few additions: a poisoned lock still holds usable counts.
        self.rates.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Enforces `list` from now on, keeping what the limits already enforced have counted.
    pub(super) fn install_rates(&self, list: Vec<RateLimitRecord>) {
        let mut st = self.rates();
        let mut before = std::mem::take(&mut st.limits);
        for rec in list {
            let old = before
                .iter()
                .position(|r| r.rec.id == rec.id)
                .map(|i| before.swap_remove(i));
            st.limits.push(LiveRate::new(rec, old));
        }
        self.rates_on
            .store(!st.limits.is_empty(), Ordering::Relaxed);
    }

    /// Reloads the rate limits from the store (another replica may have changed one).
    pub(super) async fn refresh_rates(&self) {
        match self.store.list_rate_limits().await {
            Ok(list) => self.install_rates(list),
            Err(e) => {
                tracing::warn!(error = %e, "Listing rate limits failed; the ones in force stay.")
            }
        }
    }

    /// Creates or changes the rate limit of a key or team and enforces it here and, before this returns, on
    /// every other live replica. Returns (before, after).
    pub async fn set_rate_limit(
        &self,
        def: NewRateLimit,
    ) -> Result<(Option<RateLimitRecord>, RateLimitRecord), StoreError> {
        let changed = self.store.upsert_rate_limit(def).await?;
        self.refresh_rates().await;
        self.announce_change().await;
        Ok(changed)
    }

    /// Deletes a rate limit here and, before this returns, on every other live replica. `None` if none has this
    /// id.
    pub async fn delete_rate_limit(&self, id: i64) -> Result<Option<RateLimitRecord>, StoreError> {
        let gone = self.store.delete_rate_limit(id).await?;
        if gone.is_some() {
            self.refresh_rates().await;
            self.announce_change().await;
        }
        Ok(gone)
    }

    /// Which rate limits cover requests by this key and team.
    pub fn rate_cover(&self, key_id: i64, team: Option<&str>) -> RateCover {
        if !self.rates_on.load(Ordering::Relaxed) {
            return RateCover::None;
        }
        let st = self.rates();
        let mut cover = RateCover::None;
        for r in st.limits.iter().filter(|r| r.covers(key_id, team)) {
            if r.rec.def.tpm.is_some() {
                return RateCover::Tokens;
            }
            cover = RateCover::Requests;
        }
        cover
    }

    /// (measure, counted in the last minute on this replica, this replica's share when leased) of each count of
    /// a rate limit, for the API and pages.
    pub fn rate_live(&self, id: i64) -> Vec<(RateMeasure, u64, Option<u64>)> {
        let now = now_ms();
        let st = self.rates();
        st.limits
            .iter()
            .filter(|r| r.rec.id == id)
            .flat_map(|r| &r.counters)
            .map(|c| {
                (
                    c.measure,
                    c.window.total(now.div_euclid(1000)),
                    c.lease.as_ref().map(|l| l.cap(now)),
                )
            })
            .collect()
    }

    /// Counts a request (and `tokens`, its most likely use, against tokens-a-minute limits) against every rate
    /// limit of its key and team, or says which one has no room. With leases, asks the store for a larger share
    /// when this replica's is too small.
    pub async fn admit(
        self: &Arc<Self>,
        key_id: i64,
        team: Option<&str>,
        tokens: u64,
    ) -> Result<RateHold, RateRefusal> {
        if !self.rates_on.load(Ordering::Relaxed) {
            return Ok(RateHold::none());
        }
        // Requests of a burst race for the room a grant brings; one that lost the race asks again.
        for _ in 0..MAX_LEASE_ATTEMPTS {
            match self.try_admit(key_id, team, tokens, self.leased()) {
                Attempt::Counted(h) => return Ok(h),
                Attempt::Refused(r) => return Err(r),
                Attempt::NeedLeases(needs) => self.acquire_rates(needs).await,
            }
        }
        match self.try_admit(key_id, team, tokens, false) {
            Attempt::Counted(h) => Ok(h),
            Attempt::Refused(r) => Err(r),
            // Not returned when leases may not be asked for; refused all the same should that ever change.
            Attempt::NeedLeases(_) => Err(RateRefusal {
                measure: RateMeasure::Requests,
                description: "Rate limit reached on this gateway; retry shortly.".into(),
                retry_after_secs: Some(1),
            }),
        }
    }

    fn try_admit(
        self: &Arc<Self>,
        key_id: i64,
        team: Option<&str>,
        tokens: u64,
        may_lease: bool,
    ) -> Attempt {
        let now = now_ms();
        let now_s = now.div_euclid(1000);
        let leased = self.leased();
        let renewal_secs = self
            .settings()
            .map_or(1, |s| u64::try_from(s.ttl_ms / 3000).unwrap_or(1).max(1));
        let mut st = self.rates();
        let mut needs = Vec::new();
        let mut fits = Vec::new();
        for (i, r) in st.limits.iter().enumerate() {
            if !r.covers(key_id, team) {
                continue;
            }
            for (j, c) in r.counters.iter().enumerate() {
                let need = match c.measure {
                    RateMeasure::Requests => 1,
                    RateMeasure::Tokens => tokens,
                };
                let total = c.window.total(now_s);
                if total.saturating_add(need) > c.limit {
                    return Attempt::Refused(refusal(
                        &r.rec.def.scope,
                        c,
                        need,
                        c.window.wait_for(now_s, need, c.limit),
                    ));
                }
                if leased {
                    let cap = c.lease.as_ref().map_or(0, |l| l.cap(now));
                    if total.saturating_add(need) > cap {
                        if may_lease && now >= c.backoff_until_ms {
                            needs.push(RateNeed {
                                target: r.target(c),
                                at_least: need,
                            });
                            continue;
                        }
                        // The other replicas hold the rest of the limit: room comes back when this replica's own
                        // counts leave its share, or when the others' renewals give back what they do not use.
                        let wait = c
                            .window
                            .wait_for(now_s, need, cap)
                            .filter(|w| *w > 0)
                            .unwrap_or(renewal_secs);
                        return Attempt::Refused(refusal(&r.rec.def.scope, c, need, Some(wait)));
                    }
                }
                fits.push((i, j, need));
            }
        }
        if !needs.is_empty() {
            return Attempt::NeedLeases(needs);
        }
        let mut counted = Vec::with_capacity(fits.len());
        for (i, j, need) in fits {
            let r = &mut st.limits[i];
            let c = &mut r.counters[j];
            c.window.add(now_s, need);
            counted.push((r.rec.id, c.measure, now_s, need));
        }
        Attempt::Counted(RateHold {
            controls: Some(Arc::clone(self)),
            counted,
        })
    }

    /// Takes a request's counts back (`tokens: None`: it never ran), or replaces its held tokens with the
    /// `tokens` it used.
    fn uncount(&self, counted: &[(i64, RateMeasure, i64, u64)], tokens: Option<u64>) {
        let mut st = self.rates();
        for &(id, measure, second, held) in counted {
            let actual = match (measure, tokens) {
                (_, None) => 0,
                (RateMeasure::Requests, Some(_)) => continue,
                (RateMeasure::Tokens, Some(t)) => t,
            };
            let counter = st
                .limits
                .iter_mut()
                .filter(|r| r.rec.id == id)
                .flat_map(|r| r.counters.iter_mut())
                .find(|c| c.measure == measure);
            if let Some(c) = counter {
                c.window.replace(second, held, actual);
            }
        }
    }

    /// (counted in the last minute, its lease, its backoff) of the count a lease target names, if it is still
    /// enforced.
    fn rate_position(
        &self,
        target: &LeaseTarget,
        now: i64,
    ) -> Option<(u64, Option<RateLease>, i64)> {
        let LeaseTarget::Rate { id, measure, .. } = target else {
            return None;
        };
        let st = self.rates();
        st.limits
            .iter()
            .filter(|r| r.rec.id == *id)
            .flat_map(|r| &r.counters)
            .find(|c| c.measure == *measure)
            .map(|c| {
                let counted = c.window.total(now.div_euclid(1000));
                (counted, c.lease.clone(), c.backoff_until_ms)
            })
    }

    /// Asks the store for the shares `needs` lists (one request asks at a time, for room for everyone waiting,
    /// as for budgets) and installs what it grants.
    async fn acquire_rates(&self, needs: Vec<RateNeed>) {
        let Some(s) = self.settings() else { return };
        let waiting = self.lease_waiters.fetch_add(1, Ordering::Relaxed) + 1;
        let _one_at_a_time = self.lease_gate.lock().await;
        self.lease_waiters.fetch_sub(1, Ordering::Relaxed);
        for need in needs {
            let now = now_ms();
            let Some((total, current, backoff_until_ms)) = self.rate_position(&need.target, now)
            else {
                continue;
            };
            let room_now = current
                .as_ref()
                .is_some_and(|l| total.saturating_add(need.at_least) <= l.cap(now));
            if room_now || now < backoff_until_ms {
                // The request before this one in the queue brought enough room, or learnt that there is none.
                continue;
            }
            // Asking on demand never shrinks a usable share (renewals do).
            let keep = total.max(current.as_ref().map_or(0, |l| l.cap(now)));
            let floor = need
                .at_least
                .saturating_mul(2)
                .saturating_mul(u64::try_from(waiting.max(2)).unwrap_or(2));
            let want = self
                .with_counter(&need.target, |c| want(c, floor, now.div_euclid(1000), s))
                .unwrap_or(floor);
            match self.ask(s, &need.target, units(keep), units(want)).await {
                Ok(grant) => {
                    let short = count_of(grant.granted) < total.saturating_add(need.at_least);
                    self.install_rate_lease(&need.target, &grant, s, short);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Taking a rate limit lease failed; requests it covers are refused.");
                    self.with_counter(&need.target, |c| {
                        c.backoff_until_ms = now_ms() + EXHAUSTED_BACKOFF_MS;
                    });
                }
            }
        }
    }

    fn with_counter<T>(
        &self,
        target: &LeaseTarget,
        f: impl FnOnce(&mut Counter) -> T,
    ) -> Option<T> {
        let LeaseTarget::Rate { id, measure, .. } = target else {
            return None;
        };
        let mut st = self.rates();
        st.limits
            .iter_mut()
            .filter(|r| r.rec.id == *id)
            .flat_map(|r| r.counters.iter_mut())
            .find(|c| c.measure == *measure)
            .map(f)
    }

    fn install_rate_lease(
        &self,
        target: &LeaseTarget,
        grant: &LeaseGrant,
        s: &LeaseSettings,
        short: bool,
    ) {
        let now = now_ms();
        self.with_counter(target, |c| {
            c.backoff_until_ms = if short { now + EXHAUSTED_BACKOFF_MS } else { 0 };
            c.lease = Some(RateLease {
                id: grant.id,
                granted: count_of(grant.granted),
                usable_until_ms: s.usable_until(grant),
                unleased: count_of(grant.unleased),
            });
        });
    }

    /// Renews every rate limit share this replica holds, sized to its recent rate (see [`want`]); an idle
    /// replica keeps only what it counted in the last minute.
    pub(super) async fn renew_rate_leases(&self, s: &LeaseSettings) {
        let now = now_ms();
        let held: Vec<(LeaseTarget, u64, u64)> = {
            let st = self.rates();
            st.limits
                .iter()
                .flat_map(|r| r.counters.iter().map(move |c| (r, c)))
                .filter(|(_, c)| c.lease.is_some())
                .map(|(r, c)| {
                    let now_s = now.div_euclid(1000);
                    (r.target(c), c.window.total(now_s), want(c, 0, now_s, s))
                })
                .collect()
        };
        for (target, keep, want) in held {
            match self.ask(s, &target, units(keep), units(want)).await {
                Ok(grant) => self.install_rate_lease(&target, &grant, s, false),
                Err(e) => {
                    tracing::warn!(error = %e, "Renewing a rate limit lease failed; it lapses unless a later renewal succeeds.")
                }
            }
        }
    }

    /// (lease id, what to keep) of every rate limit share, taken out of the counters (a clean shutdown): each
    /// keeps what it counted in the last minute.
    pub(super) fn take_rate_leases(&self) -> Vec<(i64, u64)> {
        let now_s = now_ms().div_euclid(1000);
        let mut st = self.rates();
        st.limits
            .iter_mut()
            .flat_map(|r| r.counters.iter_mut())
            .filter_map(|c| {
                let total = c.window.total(now_s);
                c.lease.take().map(|l| (l.id, total))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_counts_the_last_sixty_seconds_and_says_when_room_returns() {
        let mut w = Window::new();
        w.add(100, 3);
        w.add(130, 5);
        assert_eq!(w.total(130), 8);
        // Second 100 leaves the window at second 160, second 130 at 190.
        assert_eq!(w.total(159), 8);
        assert_eq!(w.total(160), 5);
        assert_eq!(w.total(190), 0);
        // With a cap of 10 at second 140: 2 fit now, 4 need second 100 gone (20 s), 9 need both (50 s).
        assert_eq!(w.wait_for(140, 2, 10), Some(0));
        assert_eq!(w.wait_for(140, 4, 10), Some(20));
        assert_eq!(w.wait_for(140, 9, 10), Some(50));
        assert_eq!(w.wait_for(140, 11, 10), None);
        // A slot is reused by the second 60 s later, starting from zero.
        w.add(160, 1);
        assert_eq!(w.total(160), 6);
    }

    #[test]
    fn a_correction_reaches_only_its_own_second() {
        let mut w = Window::new();
        w.add(10, 500);
        w.replace(10, 500, 120);
        assert_eq!(w.total(10), 120);
        // Second 10's slot now holds second 70: a late correction of second 10 leaves it alone.
        w.add(70, 7);
        w.replace(10, 120, 0);
        assert_eq!(w.total(70), 7);
    }
}
