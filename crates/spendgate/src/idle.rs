//! Memory given back after a burst. A burst fills the embedded store's page caches (up to 32 MB a connection),
//! and they stay full however long the gateway then sits idle; once it has served no request and stored no spend
//! event for a whole minute, it asks the store to empty them (`Store::release_memory`), once per idle spell. The
//! next request reads its pages from the file again, which the operating system usually still caches.
//! Measured (docs/BENCHMARKS-HISTORY.md, twelfth session): 69.6 MB held a minute after a 40 s burst, 38.7 MB once
//! given back.

use std::sync::Arc;
use std::time::Duration;

use spendgate_gateway::GatewayStats;
use spendgate_store::{Store, WriterStats};
use tokio::task::JoinHandle;

/// How long the gateway must have been idle before it gives its caches back.
const IDLE_FOR: Duration = Duration::from_secs(60);

/// Tells from counts of work done, looked at every `IDLE_FOR`, when an idle spell begins.
#[derive(Debug, Default)]
struct Spells {
    seen: Option<(u64, u64)>,
    given_back: bool,
}

impl Spells {
    /// Takes the counts of this look (requests served, spend events stored); true when nothing moved since the
    /// last look and the caches were not given back yet in this spell.
    fn idle_now(&mut self, counts: (u64, u64)) -> bool {
        if self.seen != Some(counts) {
            self.seen = Some(counts);
            self.given_back = false;
            return false;
        }
        !std::mem::replace(&mut self.given_back, true)
    }
}

/// Starts the task; it ends when `stop` turns true (or its sender is gone).
pub(crate) fn spawn_trim(
    store: Arc<dyn Store>,
    gateway: Arc<GatewayStats>,
    writer: Arc<WriterStats>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(IDLE_FOR);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut spells = Spells::default();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                    continue;
                }
            }
            let counts = (gateway.snapshot().requests, writer.snapshot().written_total);
            if spells.idle_now(counts) {
                store.release_memory().await;
                tracing::debug!("Idle for a minute: the store's page caches were given back.");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The caches are given back once per idle spell: not at the first look, not while requests or writes move,
    /// once when a whole interval passed without either, and again only after work resumed and stopped.
    #[test]
    fn caches_go_back_once_per_idle_spell() {
        let mut s = Spells::default();
        let looks = [
            ((0, 0), false),
            ((0, 0), true),
            ((0, 0), false),
            ((5, 0), false),
            ((5, 5), false),
            ((5, 5), true),
            ((5, 5), false),
            ((9, 5), false),
            ((9, 5), true),
        ];
        for (i, (counts, want)) in looks.into_iter().enumerate() {
            assert_eq!(s.idle_now(counts), want, "look {i}: {counts:?}");
        }
    }
}
