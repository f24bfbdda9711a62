//! The writer's bound on memory: the records handed to it and not yet in the store are counted in bytes, and
//! a request whose record finds no room waits for the writer to make some (back-pressure), rather than the queue
//! growing while the store falls behind.
//!
//! Room is a semaphore of bytes. A record takes its size from it on the request path, without waiting when there
//! is room (the usual case: one atomic operation), and gives it back when its batch is committed. A record that
//! finds none waits in a task of its own, so that the request's `Ack` (which it awaits before its last byte)
//! resolves only once the record is queued, and so that a dropped `Ack` cannot lose the record. The wait is
//! bounded (`WriterConfig::max_wait`): past it the record is queued over the bound and the fact logged, so that
//! a store that is down does not hold every answer back for as long as it is down; the journal, when there is one,
//! holds those records on disk meanwhile, as it holds every record.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use spendgate_core::pricing::PriceLine;
use spendgate_core::FailedAttempt;
use tokio::sync::{Semaphore, TryAcquireError};

use super::Record;

/// A record on its way to the store, with the bytes it counts for and whether it holds room for them (false when
/// it was queued over the bound after waiting `max_wait`).
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) record: Record,
    pub(crate) bytes: u32,
    pub(crate) held: bool,
}

/// The room left in the writer's queue, and what it saw.
#[derive(Debug)]
pub(crate) struct Room {
    permits: Semaphore,
    /// The bound, in bytes.
    bound: u32,
    max_wait: Duration,
    /// Bytes of the records queued and not yet committed (those queued over the bound included), and the most
    /// there ever were.
    queued: AtomicU64,
    peak: AtomicU64,
    /// Records that had to wait for room, and those queued over the bound after waiting in vain.
    waited: AtomicU64,
    over: AtomicU64,
    /// Records waiting for room now.
    waiting: AtomicU64,
}

/// What [`Room`] saw, for the queue's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoomState {
    pub bound_bytes: u64,
    pub queued_bytes: u64,
    pub peak_bytes: u64,
    pub waited: u64,
    pub over_bound: u64,
}

impl Room {
    pub(crate) fn new(bound_bytes: usize, max_wait: Duration) -> Room {
        // Tokio's semaphore takes at most `u32::MAX` permits at once, so a larger bound is cut to 4 GB.
        let bound = u32::try_from(bound_bytes.max(1)).unwrap_or(u32::MAX);
        Room {
            permits: Semaphore::new(bound as usize),
            bound,
            max_wait,
            queued: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            waited: AtomicU64::new(0),
            over: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
        }
    }

    /// The bytes `record` counts for: the record itself and the text and lists it points to (a record larger
    /// than the whole bound counts as the bound, so that it can be queued at all).
    fn size_of(&self, record: &Record) -> u32 {
        u32::try_from(approx_bytes(record))
            .unwrap_or(u32::MAX)
            .min(self.bound)
    }

    /// Queues `record` if there is room for it now; gives it back otherwise.
    // Boxing the record would cost an allocation per request, for the rare case it is given back.
    #[allow(clippy::result_large_err)]
    pub(crate) fn try_take(&self, record: Record) -> Result<Entry, Record> {
        let bytes = self.size_of(&record);
        match self.permits.try_acquire_many(bytes) {
            Ok(p) => {
                p.forget();
                Ok(self.queued(record, bytes, true))
            }
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => {
                self.waited.fetch_add(1, Ordering::Relaxed);
                Err(record)
            }
        }
    }

    /// Waits for room for `record` (which `try_take` gave back), at most `max_wait`; then queues it, over the bound
    /// if there is still none.
    pub(crate) async fn take(&self, record: Record) -> Entry {
        let bytes = self.size_of(&record);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let room = tokio::time::timeout(self.max_wait, self.permits.acquire_many(bytes)).await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        match room {
            Ok(Ok(p)) => {
                p.forget();
                self.queued(record, bytes, true)
            }
            _ => {
                if self.over.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(
                        bound_bytes = self.bound,
                        max_wait_ms = self.max_wait.as_millis() as u64,
                        "The store has fallen behind the writer's queue for longer than the longest wait: records \
                         are queued over its bound (counted in the queue's state; logged once)."
                    );
                }
                self.queued(record, bytes, false)
            }
        }
    }

    /// Queues `record` over the bound at once.
    pub(crate) fn over(&self, record: Record) -> Entry {
        let bytes = self.size_of(&record);
        self.queued(record, bytes, false)
    }

    fn queued(&self, record: Record, bytes: u32, held: bool) -> Entry {
        let now = self.queued.fetch_add(u64::from(bytes), Ordering::Relaxed) + u64::from(bytes);
        self.peak.fetch_max(now, Ordering::Relaxed);
        Entry {
            record,
            bytes,
            held,
        }
    }

    /// Gives back the room of committed records: `bytes` in all, of which `held` were taken within the bound.
    pub(crate) fn release(&self, bytes: u64, held: u64) {
        self.queued.fetch_sub(bytes, Ordering::Relaxed);
        if held > 0 {
            self.permits
                .add_permits(usize::try_from(held).unwrap_or(usize::MAX));
        }
    }

    /// Whether a record waits for room now: the queue is full, and records are held back behind it.
    pub(crate) fn someone_waits(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }

    pub(crate) fn state(&self) -> RoomState {
        RoomState {
            bound_bytes: u64::from(self.bound),
            queued_bytes: self.queued.load(Ordering::Relaxed),
            peak_bytes: self.peak.load(Ordering::Relaxed),
            waited: self.waited.load(Ordering::Relaxed),
            over_bound: self.over.load(Ordering::Relaxed),
        }
    }
}

/// About what a record holds in memory: counted on the request path, so it adds lengths only.
fn approx_bytes(record: &Record) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    std::mem::size_of::<Record>()
        + match record {
            Record::Spend(e) => {
                let a = &e.attribution;
                e.gateway.len()
                    + e.provider.len()
                    + e.model.len()
                    + e.endpoint.len()
                    + a.user.len()
                    + opt(&a.team)
                    + opt(&a.workflow)
                    + opt(&a.workflow_requested)
                    + opt(&e.error)
                    + opt(&e.upstream_api)
                    + e.price_lines.len() * std::mem::size_of::<PriceLine>()
                    + e.leases.len() * std::mem::size_of::<i64>()
                    + e.failed_attempts
                        .iter()
                        .map(|f| {
                            std::mem::size_of::<FailedAttempt>()
                                + f.provider.len()
                                + f.model.len()
                                + f.error.len()
                        })
                        .sum::<usize>()
            }
            Record::Refusal(r) => {
                opt(&r.user)
                    + opt(&r.team)
                    + opt(&r.model)
                    + r.endpoint.len()
                    + r.gateway.len()
                    + r.detail.len()
            }
        }
}
