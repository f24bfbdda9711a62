//! The replica's heartbeat: every few seconds it writes who it is and how it is doing to the shared store, so
//! that any replica's `/overview` can list them all and tell one that stopped beating.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use spendgate_core::time::now_ms;
use spendgate_store::replicas::GatewayBeat;
use spendgate_store::{Store, WriterStats};

use crate::GatewayStats;

/// What a heartbeat is made from.
#[derive(Clone)]
pub struct Heart {
    pub name: String,
    pub version: String,
    pub stats: Arc<GatewayStats>,
    pub writer: Arc<WriterStats>,
    pub store: Arc<dyn Store>,
}

impl std::fmt::Debug for Heart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heart").field("name", &self.name).finish()
    }
}

/// (time, requests, errors) samples of the last minute, for requests per minute and the error rate.
#[derive(Debug, Default)]
struct Window {
    samples: VecDeque<(i64, u64, u64)>,
}

impl Window {
    /// Adds a sample and returns (requests, errors) over the last minute (or since the oldest sample kept).
    fn add(&mut self, at_ms: i64, requests: u64, errors: u64) -> (u64, u64) {
        self.samples.push_back((at_ms, requests, errors));
        while self.samples.get(1).is_some_and(|s| at_ms - s.0 >= 60_000) {
            self.samples.pop_front();
        }
        let (_, r0, e0) = self
            .samples
            .front()
            .copied()
            .unwrap_or((at_ms, requests, errors));
        (requests.saturating_sub(r0), errors.saturating_sub(e0))
    }
}

impl Heart {
    fn beat(&self, window: &mut Window, stopped: bool) -> GatewayBeat {
        let now = now_ms();
        let g = self.stats.snapshot();
        let (requests, errors) = window.add(now, g.requests, g.upstream_errors);
        let q = self.writer.snapshot();
        GatewayBeat {
            name: self.name.clone(),
            version: self.version.clone(),
            started_at_ms: g.started_at_ms,
            last_seen_ms: now,
            requests_per_minute: requests,
            error_rate_bp: u32::try_from(
                errors
                    .saturating_mul(10_000)
                    .checked_div(requests)
                    .unwrap_or(0),
            )
            .unwrap_or(10_000),
            latency_p50_ms: g.latency_percentile_ms(50),
            latency_p95_ms: g.latency_percentile_ms(95),
            queue_pending: q.pending,
            queue_oldest_age_ms: q.oldest_pending_age_ms,
            stopped,
        }
    }

    /// Beats every `every` until the returned handle is aborted.
    pub fn spawn(self, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut window = Window::default();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let beat = self.beat(&mut window, false);
                if let Err(e) = self.store.heartbeat(beat).await {
                    tracing::warn!(error = %e, "Writing this gateway's heartbeat failed.");
                }
            }
        })
    }

    /// The last beat, saying the replica stopped on purpose.
    pub async fn goodbye(&self) {
        let beat = self.beat(&mut Window::default(), true);
        if let Err(e) = self.store.heartbeat(beat).await {
            tracing::warn!(error = %e, "Writing this gateway's last heartbeat failed.");
        }
    }
}

/// Watches the shared store for spend written by other replicas (the newest spend log changes) and announces it
/// to this replica's live pages, every `every`. Runs while replicas share the store.
pub fn watch_other_replicas(
    store: Arc<dyn Store>,
    writer: spendgate_store::SpendWriter,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // The newest spend log seen; `None` until the first look (which sets the baseline, announcing nothing).
        let mut newest: Option<Option<uuid::Uuid>> = None;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = now_ms();
            let recent = spendgate_core::Filters {
                from_ms: now - 3_600_000,
                to_ms: now + 60_000,
                ..Default::default()
            };
            match store.spend_logs(&recent, 1, None).await {
                Ok(page) => {
                    let id = page.items.first().map(|l| l.event.id);
                    if newest.is_some_and(|n| n != id) {
                        writer.announce_external(1);
                    }
                    newest = Some(id);
                }
                Err(e) => tracing::debug!(error = %e, "Looking for other replicas' spend failed."),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_counts_the_last_minute() {
        let mut w = Window::default();
        assert_eq!(w.add(0, 100, 1), (0, 0));
        assert_eq!(w.add(30_000, 160, 1), (60, 0));
        assert_eq!(w.add(60_000, 220, 3), (120, 2));
        // The sample at 0 is now a minute old; the window starts at 30 s.
        assert_eq!(w.add(90_000, 250, 3), (90, 2));
    }
}
