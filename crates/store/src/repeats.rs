//! The retry-loop detector's counts, kept as the writer stores events.
//!
//! The detector asks which key sent the same request (the same fingerprint) many times within the last few
//! minutes. It used to ask the store, grouping the spend logs of the window: at 40,000 requests a second that is
//! about 12 million rows read every 15 seconds, and the process's memory grew with the traffic (issue #26). Here
//! every event the writer records adds one to a count per key and fingerprint, so the detector reads a map whose
//! size follows keys and distinct requests, not requests, and is bounded. Events are counted once their batch is
//! committed, not when they are recorded: the detector then explains a loop from the store's rollups, which hold
//! every request it counted (a batch waits up to `writer.flush_ms` before it is written).
//!
//! The window is cut into [`SLICES`] slices of time; a slice older than the window is dropped whole, so the
//! detector sees between the window and one slice less of it. A slice holds at most [`MAX_PER_SLICE`] counts:
//! when it is full, the requests seen only once in it are forgotten (a loop repeats, so it is never among them
//! for long), and when even that frees nothing, new requests go uncounted until the next slice
//! ([`Repeats::uncounted`]).
//!
//! Each replica counts the requests it recorded itself: with several replicas behind a load balancer, a loop
//! spread over them trips the detector once one replica's share of it reaches the threshold.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use spendgate_core::anomaly::RepeatedRequest;
use spendgate_core::{Money, SpendEvent};

/// The slices a window is cut into.
pub const SLICES: i64 = 10;
/// The most counts one slice keeps (about 100 bytes each).
pub const MAX_PER_SLICE: usize = 16_384;

/// Recent requests counted per key and fingerprint.
#[derive(Debug)]
pub struct Repeats {
    window_ms: i64,
    slice_ms: i64,
    slices: Mutex<VecDeque<Slice>>,
    uncounted: AtomicU64,
}

#[derive(Debug)]
struct Slice {
    start_ms: i64,
    counts: HashMap<(i64, u64), Tally>,
}

#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    first_ms: i64,
    last_ms: i64,
    cost: Money,
    /// The team and workflow of the latest such request, kept from its second one on (`named`): most requests
    /// are seen once, and copying their names would cost each of them two allocations for nothing. A loop has
    /// at least two requests in some slice of its window, so its row always finds a named tally.
    named: bool,
    team: Option<String>,
    workflow: Option<String>,
}

impl Repeats {
    /// Counts over the last `window_ms` (at least one slice of a millisecond each).
    pub fn new(window_ms: i64) -> Repeats {
        let window_ms = window_ms.max(SLICES);
        Repeats {
            window_ms,
            slice_ms: window_ms / SLICES,
            slices: Mutex::new(VecDeque::new()),
            uncounted: AtomicU64::new(0),
        }
    }

    /// Counts a stored event (one without a fingerprint, or from no key, is not a request to count).
    pub fn note(&self, e: &SpendEvent) {
        let Some(fingerprint) = e.fingerprint else {
            return;
        };
        let key = e.attribution.key_id;
        let at = e.finished_at_ms;
        let mut slices = self.slices.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = slices
            .back()
            .is_none_or(|s| at >= s.start_ms + self.slice_ms);
        if fresh {
            slices.push_back(Slice {
                start_ms: at - at.rem_euclid(self.slice_ms),
                counts: HashMap::new(),
            });
            // Slices that lie wholly before the window that ends now cannot count any more.
            while slices
                .front()
                .is_some_and(|s| s.start_ms + self.slice_ms <= at - self.window_ms)
            {
                slices.pop_front();
            }
        }
        let Some(slice) = slices.back_mut() else {
            return;
        };
        let full = slice.counts.len() >= MAX_PER_SLICE;
        if full && !slice.counts.contains_key(&(key, fingerprint)) {
            slice.counts.retain(|_, t| t.requests > 1);
            if slice.counts.len() >= MAX_PER_SLICE {
                self.uncounted.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let t = slice
            .counts
            .entry((key, fingerprint))
            .or_insert_with(|| Tally {
                first_ms: at,
                last_ms: at,
                ..Tally::default()
            });
        if t.requests > 0 && at >= t.last_ms {
            // Names are copied only when they change: a repeated request keeps its team and workflow.
            if !t.named || t.team != e.attribution.team {
                t.team.clone_from(&e.attribution.team);
            }
            if !t.named || t.workflow != e.attribution.workflow {
                t.workflow.clone_from(&e.attribution.workflow);
            }
            t.named = true;
        }
        t.requests += 1;
        t.first_ms = t.first_ms.min(at);
        t.last_ms = t.last_ms.max(at);
        t.cost += e.cost;
    }

    /// Every key and fingerprint counted at least `min_repeats` times since `since_ms`, as the store's spend logs
    /// would have grouped them (at slice precision), most repeated first.
    pub fn repeated(&self, since_ms: i64, min_repeats: u64) -> Vec<RepeatedRequest> {
        let slices = self.slices.lock().unwrap_or_else(|p| p.into_inner());
        // Each row with the time of the tally its names came from.
        let mut merged: HashMap<(i64, u64), (RepeatedRequest, i64)> = HashMap::new();
        for s in slices
            .iter()
            .filter(|s| s.start_ms + self.slice_ms > since_ms)
        {
            for (&(key_id, fingerprint), t) in &s.counts {
                let (r, named_at) = merged.entry((key_id, fingerprint)).or_insert((
                    RepeatedRequest {
                        key_id,
                        team: None,
                        workflow: None,
                        fingerprint,
                        requests: 0,
                        first_ms: t.first_ms,
                        last_ms: t.last_ms,
                        cost: Money::ZERO,
                    },
                    i64::MIN,
                ));
                r.requests += t.requests;
                r.first_ms = r.first_ms.min(t.first_ms);
                if t.named && t.last_ms >= *named_at {
                    r.team.clone_from(&t.team);
                    r.workflow.clone_from(&t.workflow);
                    *named_at = t.last_ms;
                }
                r.last_ms = r.last_ms.max(t.last_ms);
                r.cost += t.cost;
            }
        }
        let mut out: Vec<RepeatedRequest> = merged
            .into_values()
            .map(|(r, _)| r)
            .filter(|r| r.requests >= min_repeats)
            .collect();
        out.sort_by(|a, b| {
            (b.requests, a.key_id, a.fingerprint).cmp(&(a.requests, b.key_id, b.fingerprint))
        });
        out.truncate(100);
        out
    }

    /// The counts this replica keeps now, over every slice.
    pub fn len(&self) -> usize {
        let slices = self.slices.lock().unwrap_or_else(|p| p.into_inner());
        slices.iter().map(|s| s.counts.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Requests that went uncounted because their slice was full of repeated requests.
    pub fn uncounted(&self) -> u64 {
        self.uncounted.load(Ordering::Relaxed)
    }
}
