//! Temporary credentials kept fresh: the one seam every remote source (`web_identity.rs`, `container.rs`,
//! `imds.rs`) plugs into, and the cache in front of it.
//!
//! As AWS's SDKs do (aws-sdk-rust's `LazyCredentialsCache`, botocore's `RefreshableCredentials`), credentials are
//! fetched again some minutes before they expire ([`EARLY`]). Until they expire a request never waits for that:
//! it signs with the credentials in hand while one background task fetches new ones. Only a request that finds
//! no usable credentials (the first, or after expiry) waits for the fetch. One gate lets one fetch run at a time;
//! whoever waited at the gate looks again before fetching, so a burst of requests costs one fetch. A failed fetch
//! keeps the old credentials until they expire, logs a warning (the source and the reason, never a secret) and is
//! not tried again before [`RETRY`] has passed, so a broken endpoint is not hammered by every request.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::credentials::{Credentials, CredentialsError};
use super::remote::Expiring;

/// How long before their expiry credentials are fetched again (the SDKs take 5 minutes as well; STS hands out
/// credentials for an hour at least, ECS and EC2 renew theirs 5 minutes or more before expiry).
pub const EARLY: i64 = 5 * 60;
/// How long after a failed fetch the next one may start, in seconds.
pub const RETRY: i64 = 10;

/// The time now, in unix seconds: the wall clock outside tests, a hand-driven one in them.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| spendgate_core::time::now_ms().div_euclid(1000))
}

/// A place temporary credentials are fetched from.
#[async_trait]
pub trait Fetch: Send + Sync + std::fmt::Debug {
    /// The source's name, for logs and errors ("container credentials", ...).
    fn name(&self) -> &'static str;
    /// Fresh credentials, with their expiry.
    async fn fetch(&self) -> Result<Expiring, CredentialsError>;
}

/// The cache in front of one [`Fetch`].
pub struct Refreshing {
    fetch: Box<dyn Fetch>,
    clock: Clock,
    state: Mutex<State>,
    /// Held while a fetch runs.
    gate: tokio::sync::Mutex<()>,
    /// The last background refresh started, for tests to wait on.
    #[cfg(test)]
    background: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Default)]
struct State {
    current: Option<Held>,
    /// When the last fetch failed, and why.
    failed: Option<(i64, CredentialsError)>,
}

impl std::fmt::Debug for Refreshing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refreshing")
            .field("fetch", &self.fetch)
            .finish_non_exhaustive()
    }
}

/// Credentials in hand.
struct Held {
    credentials: Arc<Credentials>,
    /// When they stop working (unix seconds), if ever.
    expires_at: Option<i64>,
    /// When to fetch new ones: [`EARLY`] before expiry, but not sooner than [`RETRY`] after they came, so that
    /// credentials handed out with little time left are not fetched again by every request.
    refresh_at: Option<i64>,
}

/// What the credentials in hand are good for at a moment.
enum Standing {
    /// Use them; nothing to do.
    Fresh(Arc<Credentials>),
    /// Use them, and fetch new ones in the background: they expire within [`EARLY`].
    Expiring(Arc<Credentials>),
    /// None, or expired: fetch before anything can be signed.
    Missing,
}

impl Refreshing {
    pub fn new(fetch: Box<dyn Fetch>, clock: Clock) -> Arc<Refreshing> {
        Arc::new(Refreshing {
            fetch,
            clock,
            state: Mutex::new(State::default()),
            gate: tokio::sync::Mutex::new(()),
            #[cfg(test)]
            background: Mutex::new(None),
        })
    }

    pub fn source_name(&self) -> &'static str {
        self.fetch.name()
    }

    fn standing(&self, now: i64) -> Standing {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(held) = &state.current else {
            return Standing::Missing;
        };
        let c = Arc::clone(&held.credentials);
        match (held.expires_at, held.refresh_at) {
            (Some(expiry), _) if now >= expiry => Standing::Missing,
            (_, Some(due)) if now >= due => Standing::Expiring(c),
            _ => Standing::Fresh(c),
        }
    }

    /// The credentials to sign with now, fetched first when there are none that still work.
    pub async fn current(self: &Arc<Self>) -> Result<Arc<Credentials>, CredentialsError> {
        match self.standing((self.clock)()) {
            Standing::Fresh(c) => Ok(c),
            Standing::Expiring(c) => {
                // A fetch already under way will do; otherwise one starts, off this request's path.
                if self.gate.try_lock().is_ok() {
                    let me = Arc::clone(self);
                    let _task = tokio::spawn(async move {
                        let _ = me.refresh().await;
                    });
                    #[cfg(test)]
                    {
                        *self.background.lock().unwrap_or_else(|p| p.into_inner()) = Some(_task);
                    }
                }
                Ok(c)
            }
            Standing::Missing => self.refresh().await,
        }
    }

    /// Fetches new credentials unless someone did while this waited at the gate, or the last attempt failed
    /// less than [`RETRY`] ago; answers with the credentials to use (the old ones while they work, when the
    /// fetch failed).
    pub async fn refresh(&self) -> Result<Arc<Credentials>, CredentialsError> {
        let _gate = self.gate.lock().await;
        let now = (self.clock)();
        let still_valid = match self.standing(now) {
            Standing::Fresh(c) => return Ok(c),
            Standing::Expiring(c) => Some(c),
            Standing::Missing => None,
        };
        let recent_failure = {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state
                .failed
                .as_ref()
                .filter(|(at, _)| now < at + RETRY)
                .map(|(_, e)| e.clone())
        };
        if let Some(e) = recent_failure {
            return still_valid.ok_or(e);
        }
        match self.fetch.fetch().await {
            Ok(fresh) => {
                let c = Arc::new(fresh.credentials);
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                state.current = Some(Held {
                    credentials: Arc::clone(&c),
                    expires_at: fresh.expires_at,
                    refresh_at: fresh.expires_at.map(|at| (at - EARLY).max(now + RETRY)),
                });
                state.failed = None;
                Ok(c)
            }
            Err(e) => {
                tracing::warn!(
                    source = self.fetch.name(),
                    error = %e,
                    kept = still_valid.is_some(),
                    "AWS credentials could not be fetched; the credentials in hand are used until they expire, if there are any."
                );
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                state.failed = Some((now, e.clone()));
                still_valid.ok_or(e)
            }
        }
    }

    /// Waits for the last background refresh to end (tests, so that what it fetched is counted before the clock
    /// moves on).
    #[cfg(test)]
    pub async fn settle(&self) {
        let task = self
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}
