//! What the writer has done: counters the hot path and the writer update, read as a `QueueState` by the
//! pages, the API and the metrics.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use spendgate_core::time::now_ms;

use super::room::{Room, RoomState};

/// What the writer has done, for `/overview`'s queue state.
#[derive(Debug)]
pub struct WriterStats {
    pub(super) submitted: AtomicU64,
    pub(super) written: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) failed_writes: AtomicU64,
    /// Finish time of the oldest event not yet written, or 0 when none is pending.
    pub(super) oldest_pending_ms: AtomicI64,
    pub(super) last_error: Mutex<Option<String>>,
    /// (time, written total) at the last rate sample, for events per second.
    rate: Mutex<RateSample>,
    /// Set while the store refuses writes (cleared by the next successful one): cheap to read per request.
    pub(super) failing: std::sync::atomic::AtomicBool,
    /// Refused requests handed to the writer since start.
    pub(super) refusals: AtomicU64,
    /// The most spend events one batch held: how large a backlog's batches grew.
    pub(super) largest_batch: AtomicU64,
    /// Whether the store holds rollups of stored events that it has not written (`WriteReport::rollups_carried`);
    /// cleared once they are.
    pub(super) carrying: std::sync::atomic::AtomicBool,
    /// The queue's bound and what it saw.
    pub(super) room: Room,
}

#[derive(Debug, Default, Clone, Copy)]
struct RateSample {
    at_ms: i64,
    written: u64,
    per_sec: u64,
}

/// A snapshot of [`WriterStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueState {
    pub pending: u64,
    pub oldest_pending_age_ms: i64,
    pub written_total: u64,
    pub duplicates_total: u64,
    pub failed_writes: u64,
    pub written_per_sec: u64,
    pub last_error: Option<String>,
    /// Refused requests recorded since start (they are not spend events, so not in `pending` or `written_total`).
    pub refusals_total: u64,
    /// The most spend events one batch held since start.
    pub largest_batch: u64,
    /// The bytes the queue holds against its bound, and the records that waited for room.
    pub room: RoomState,
}

impl WriterStats {
    pub(super) fn new(room: Room) -> WriterStats {
        WriterStats {
            submitted: AtomicU64::new(0),
            written: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            failed_writes: AtomicU64::new(0),
            oldest_pending_ms: AtomicI64::new(0),
            last_error: Mutex::new(None),
            rate: Mutex::new(RateSample::default()),
            failing: std::sync::atomic::AtomicBool::new(false),
            refusals: AtomicU64::new(0),
            largest_batch: AtomicU64::new(0),
            carrying: Default::default(),
            room,
        }
    }

    /// Whether the last attempt to write to the store failed (the store is down or full).
    pub fn store_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> QueueState {
        let submitted = self.submitted.load(Ordering::Relaxed);
        let written = self.written.load(Ordering::Relaxed);
        let dups = self.duplicates.load(Ordering::Relaxed);
        let oldest = self.oldest_pending_ms.load(Ordering::Relaxed);
        let now = now_ms();
        let per_sec = match self.rate.lock() {
            Ok(mut r) => {
                // Re-sample at most once a second so the rate covers a whole second.
                if now - r.at_ms >= 1000 {
                    let elapsed = u64::try_from(now - r.at_ms).unwrap_or(1).max(1);
                    r.per_sec = if r.at_ms == 0 {
                        0
                    } else {
                        (written - r.written) * 1000 / elapsed
                    };
                    r.at_ms = now;
                    r.written = written;
                }
                r.per_sec
            }
            Err(_) => 0,
        };
        QueueState {
            pending: submitted.saturating_sub(written + dups),
            oldest_pending_age_ms: if oldest == 0 {
                0
            } else {
                (now - oldest).max(0)
            },
            written_total: written,
            duplicates_total: dups,
            failed_writes: self.failed_writes.load(Ordering::Relaxed),
            written_per_sec: per_sec,
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
            refusals_total: self.refusals.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
            room: self.room.state(),
        }
    }
}
