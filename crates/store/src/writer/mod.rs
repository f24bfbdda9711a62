//! The batching writer: the only path from the hot path to the store.
//!
//! Request handlers call [`SpendWriter::record`] (a finished request) or [`SpendWriter::record_refusal`] (a
//! request refused at the door), which never block and never touch a database. Both go the same way, through
//! the journal when there is one, in one order. One task collects them into batches (written when
//! `flush_events` records are waiting, or `flush_interval` after the first of them was recorded, whichever comes
//! first) and writes each batch with [`Store::write_batch`] and [`Store::write_refusals`]. A failed write is
//! retried with backoff and the batch is kept, never dropped; shutdown drains every pending record. A batch
//! written while more records wait behind it goes by [`Store::write_batch_behind`], which lets a store carry its
//! rollups to a later batch; the writer has them written ([`Store::flush_rollups`]) once its queue stays empty
//! for `flush_interval`, when [`SpendWriter::flush`] asks, and at shutdown.
//!
//! The queue is bounded in bytes (`max_queue_bytes`, see `room`): a record that finds it full waits for the
//! store to catch up, and a batch takes at most half of it, so that the next one gathers while it is written.

mod room;
mod stats;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spendgate_core::time::now_ms;
use spendgate_core::{RefusalEvent, SpendEvent};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::journal::{Append, Journal, JournalConfig, SyncMode};
use crate::Store;
pub(crate) use room::Entry;
use room::Room;
pub use room::RoomState;
pub use stats::{QueueState, WriterStats};

#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// The most records one batch holds.
    pub max_batch: usize,
    /// The longest a record waits for its batch to be written: how stale the pages may be.
    pub flush_interval: Duration,
    /// A batch is written as soon as this many records wait, without waiting out `flush_interval`.
    pub flush_events: usize,
    /// How long a batch may wait while no page watches the live updates, instead of `flush_interval`; `None`
    /// (or no longer than `flush_interval`) always waits `flush_interval`. A reader does not see the longer wait:
    /// it calls [`SpendWriter::freshen`] first, which commits at once whatever finished more than
    /// `flush_interval` ago, so every read sees what it would if the writer committed every `flush_interval`.
    /// Each commit writes every page it changed, whole, so at low rates fewer commits write far less to disk.
    /// Only for a store no other replica reads, and with a journal (a crash loses nothing that waits).
    pub quiet_interval: Option<Duration>,
    /// The most the records handed to the writer and not yet written may hold in memory; a batch holds at most
    /// half of it.
    pub max_queue_bytes: usize,
    /// The longest a record waits for room in a full queue before it is queued over the bound.
    pub max_wait: Duration,
    /// Count stored requests per key and fingerprint over this window, for the retry-loop detector
    /// ([`crate::repeats`]); `None` when no detector runs.
    pub repeats_window_ms: Option<i64>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            // A batch only grows this large when events wait while the previous batch is written, and a larger
            // batch folds more events into each rollup row it updates: SQLite's ingest rate went from ~37,000 to
            // ~65,000 events/s when this rose from 8,192 to 32,768, and to ~80,000 at 65,536
            // (docs/BENCHMARKS-HISTORY.md).
            // The rollup rows a batch writes grow far slower than its events (in the benchmark's traffic, 15,000-
            // 22,000 per grain for 65,536 events, 26,000-39,000 for 262,144): at 262,144, ingest on a later
            // machine went from 131,657-133,591 to 146,293-175,521 events/s, and PostgreSQL's from ~32,000 to
            // ~45,000.
            max_batch: 262_144,
            // Every commit writes each page it changed, whole, and a batch of a few events changes about as many
            // pages (rollup rows of every grain and dimension) as one of a hundred: committing every 5 ms cost
            // about 17 KB of disk a request at 500 requests/s, every 250 ms about 2 KB, within figure 5's second
            // (docs/BENCHMARKS-HISTORY.md, tenth session). At higher rates `flush_events` commits sooner: a
            // batch of 512 spreads a commit's pages thinly enough.
            flush_interval: Duration::from_millis(250),
            flush_events: 512,
            quiet_interval: None,
            // About 90,000 of the gateway's events (an event holds about 700 bytes in memory), in batches of up to
            // 45,000 when the store falls behind. A batch folds its events into rollup rows, so smaller ones cost
            // more per event: with 32 MB, the ingest figure through the writer fell from 69,000-103,000 to
            // 38,000-44,000 events/s (batches of 262,144 before the bound; docs/BENCHMARKS-HISTORY.md, tenth
            // session). The gateway stays under issue #26's 128 MB with a full queue.
            max_queue_bytes: 64 << 20,
            max_wait: Duration::from_secs(2),
            repeats_window_ms: None,
        }
    }
}

/// Notice that a batch reached the store: pages listen for it to refresh.
#[derive(Debug, Clone, Copy)]
pub struct Committed {
    pub events: usize,
    pub at_ms: i64,
}

/// What the hot path hands the writer: a finished request's spend event, or a request refused at the door.
#[derive(Debug, Clone, PartialEq, Eq)]
// Refusals are rare beside spend events; boxing the spend event would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
pub enum Record {
    Spend(SpendEvent),
    Refusal(RefusalEvent),
}

/// Where [`SpendWriter::record`] sends an event: through the journal, or straight to the batcher.
#[derive(Clone)]
enum Inlet {
    Direct(mpsc::UnboundedSender<Entry>),
    /// `SyncMode::Write`: the request writes its own event into the journal. A `write` into the page cache takes
    /// microseconds, less than handing the event to another thread and being woken by its answer (the median
    /// added latency fell by 60-80 us, and the streaming p99 at 2,000 rps from 12-62 ms to 4-5 ms).
    Shared(Arc<Mutex<Journal>>),
    /// `SyncMode::Fsync`: the journal thread writes each group of waiting events with one disk flush.
    Thread(std::sync::mpsc::Sender<Append>),
}

/// The handle the hot path records events with. Cheap to clone.
#[derive(Clone)]
pub struct SpendWriter {
    inlet: Inlet,
    stats: Arc<WriterStats>,
    /// Cuts the current batch's wait short (`SpendWriter::flush`).
    flush_now: Arc<tokio::sync::Notify>,
    committed: broadcast::Sender<Committed>,
    repeats: Option<Arc<crate::repeats::Repeats>>,
    /// `flush_interval` in milliseconds when the writer may wait longer than it while nobody watches
    /// (`WriterConfig::quiet_interval`): how old a waiting event may be before a reader has it committed.
    fresh_within_ms: Option<i64>,
}

/// Resolves when an event is safe in the journal (at once when there is no journal). `true` when it is; `false`
/// when the writer had stopped.
#[derive(Debug)]
pub struct Ack(Option<tokio::sync::oneshot::Receiver<()>>, bool);

impl Ack {
    fn ready(ok: bool) -> Ack {
        Ack(None, ok)
    }
}

impl std::future::Future for Ack {
    type Output = bool;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<bool> {
        let ok = self.1;
        match self.0.as_mut() {
            None => std::task::Poll::Ready(ok),
            Some(rx) => std::pin::Pin::new(rx).poll(cx).map(|r| r.is_ok()),
        }
    }
}

impl std::fmt::Debug for SpendWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpendWriter").finish()
    }
}

impl SpendWriter {
    /// Queues an event for writing. Never blocks. The returned [`Ack`] resolves once the event is in the
    /// journal: a response must not send its last byte before that. It resolves to false only when the writer
    /// has shut down (only while the process is stopping); the caller logs it.
    pub fn record(&self, event: SpendEvent) -> Ack {
        self.stats.submitted.fetch_add(1, Ordering::Relaxed);
        self.send(Record::Spend(event)).unwrap_or_else(|| {
            self.stats.submitted.fetch_sub(1, Ordering::Relaxed);
            Ack::ready(false)
        })
    }

    /// Queues a refused request for writing, the same way as a spend event (journal first, when there is one),
    /// so that a crash loses neither. Never blocks; the [`Ack`] means the same as [`SpendWriter::record`]'s.
    pub fn record_refusal(&self, refusal: RefusalEvent) -> Ack {
        self.stats.refusals.fetch_add(1, Ordering::Relaxed);
        self.send(Record::Refusal(refusal))
            .unwrap_or_else(|| Ack::ready(false))
    }

    /// Hands a record on; `None` when the writer has stopped. A record that finds the queue full waits for room
    /// in a task of its own, and its `Ack` resolves once it is queued.
    fn send(&self, record: Record) -> Option<Ack> {
        match self.stats.room.try_take(record) {
            Ok(entry) => self.queue(entry),
            Err(record) => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    // Outside a runtime there is nothing to wait with: the record is queued over the bound.
                    return self.queue(self.stats.room.over(record));
                };
                let writer = self.clone();
                let (tx, rx) = tokio::sync::oneshot::channel();
                runtime.spawn(async move {
                    let entry = writer.stats.room.take(record).await;
                    let ok = match writer.queue(entry) {
                        Some(ack) => ack.await,
                        None => false,
                    };
                    // Refused, the request counts it as not recorded, as when the writer has stopped.
                    if ok {
                        let _ = tx.send(());
                    }
                });
                Some(Ack(Some(rx), true))
            }
        }
    }

    /// Hands a record that has room on; `None` when the writer has stopped (its room is then never given back:
    /// nothing is queued any more).
    fn queue(&self, entry: Entry) -> Option<Ack> {
        match &self.inlet {
            Inlet::Direct(tx) => tx.send(entry).is_ok().then(|| Ack::ready(true)),
            Inlet::Shared(journal) => {
                // A panic elsewhere while holding the lock leaves the journal's state consistent (it only
                // pushes, writes and counts), so a poisoned lock is used as it is.
                let mut j = journal.lock().unwrap_or_else(|e| e.into_inner());
                if j.is_closed() {
                    None
                } else {
                    j.push(entry, None);
                    j.flush().then(|| Ack::ready(true))
                }
            }
            Inlet::Thread(tx) => {
                let (ack, rx) = tokio::sync::oneshot::channel();
                tx.send(Append::Event {
                    entry,
                    ack: Some(ack),
                })
                .is_ok()
                .then(|| Ack(Some(rx), true))
            }
        }
    }

    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }

    /// The requests stored lately, counted per key and fingerprint as their batches commit (when
    /// `WriterConfig::repeats_window_ms` asked for them), so that a detector reading them and then the store finds
    /// every request it counted there.
    pub fn repeats(&self) -> Option<&Arc<crate::repeats::Repeats>> {
        self.repeats.as_ref()
    }

    /// Has the writer write what waits now rather than at the end of its interval, and returns once every spend
    /// event recorded before the call is stored (or after 5 s, should the store be failing). A replica calls it
    /// before it reads the spend of a control another replica changed, so that its own spend of the last interval
    /// counts.
    pub async fn flush(&self) {
        let target = self.stats.submitted.load(Ordering::Relaxed);
        let mut notices = self.committed.subscribe();
        self.flush_now.notify_one();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let done = self.stats.written.load(Ordering::Relaxed)
                + self.stats.duplicates.load(Ordering::Relaxed);
            if done >= target {
                // Stored, and their rollups too unless the store still carries some: then the writer is asked
                // to have them written (it does at once when its queue is empty).
                if !self.stats.carrying.load(Ordering::Acquire) {
                    return;
                }
                self.flush_now.notify_one();
            }
            match tokio::time::timeout_at(deadline, notices.recv()).await {
                Ok(Ok(_) | Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => return,
            }
        }
    }

    /// Makes the store answer a reader as if the writer committed every `flush_interval`: when the writer may
    /// hold a batch longer while nobody watches (`WriterConfig::quiet_interval`) and a waiting spend event
    /// finished `flush_interval` ago or more, has the batch written now and returns once it is stored. Otherwise
    /// returns at once (an atomic load). Readers of spend (pages, the API) call it before they read.
    pub async fn freshen(&self) {
        let Some(within) = self.fresh_within_ms else {
            return;
        };
        // A store that refuses writes would hold every reader for the flush's 5 s to no avail: readers see what
        // is stored, and the queue state says what waits.
        if self.stats.store_failing() {
            return;
        }
        let oldest = self.stats.oldest_pending_ms.load(Ordering::Relaxed);
        if oldest != 0 && now_ms() - oldest >= within {
            self.flush().await;
        }
    }

    /// Subscribes to commit notices. While anyone holds a receiver, the writer commits every `flush_interval`
    /// (the live pages listen for commits).
    pub fn subscribe(&self) -> broadcast::Receiver<Committed> {
        self.committed.subscribe()
    }

    /// Announces spend another replica wrote to the shared store, so that this replica's live pages refresh
    /// for it as for its own.
    pub fn announce_external(&self, events: usize) {
        let _ = self.committed.send(Committed {
            events,
            at_ms: now_ms(),
        });
    }
}

/// Owns the writer task (and the journal thread); [`WriterHandle::shutdown`] drains them.
pub struct WriterHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<()>,
    journal: Option<JournalParts>,
    processed: Arc<AtomicU64>,
}

/// What shutting down needs of the journal: its thread or the journal the requests write, and its count of
/// events.
struct JournalParts {
    thread: Option<(std::sync::mpsc::Sender<Append>, std::thread::JoinHandle<()>)>,
    shared: Option<Arc<Mutex<Journal>>>,
    journaled: Arc<AtomicU64>,
    dir: std::path::PathBuf,
}

impl std::fmt::Debug for WriterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterHandle").finish()
    }
}

impl WriterHandle {
    /// Stops accepting events, writes every pending one, and returns when they are in the store. The journal
    /// is emptied only if the store has every event it held; otherwise the next start replays it.
    pub async fn shutdown(mut self) {
        // Everything journaled is handed to the batcher before it is told to stop, and nothing is journaled
        // after (it could be deleted with the journal below without ever reaching the store): the journal the
        // requests write is closed, the journal thread is stopped and joined.
        let journal = match self.journal.take() {
            Some(JournalParts {
                thread,
                shared,
                journaled,
                dir,
            }) => {
                if let Some(j) = shared {
                    j.lock().unwrap_or_else(|e| e.into_inner()).close();
                }
                if let Some((tx, thread)) = thread {
                    let _ = tx.send(Append::Stop);
                    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
                }
                Some((journaled, dir))
            }
            None => None,
        };
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        if let Some((journaled, dir)) = journal {
            if self.processed.load(Ordering::Acquire) >= journaled.load(Ordering::Acquire) {
                crate::journal::clear(&dir);
            }
        }
    }
}

/// Starts the writer, with a journal in front of it when `journal` is given. Replay leftovers first
/// ([`crate::journal::replay`]).
pub fn spawn_writer(
    store: Arc<dyn Store>,
    config: WriterConfig,
    journal: Option<JournalConfig>,
) -> Result<(SpendWriter, WriterHandle), crate::StoreError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let stats = Arc::new(WriterStats::new(Room::new(
        config.max_queue_bytes,
        config.max_wait,
    )));
    let (committed, _) = broadcast::channel(64);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let processed = Arc::new(AtomicU64::new(0));
    let mut shared = None;
    let (inlet, journal) = match journal {
        None => (Inlet::Direct(tx), None),
        Some(jc) => {
            let dir = jc.dir.clone();
            let open_error = |e: std::io::Error| crate::StoreError::Open {
                path: dir.display().to_string(),
                reason: e.to_string(),
            };
            std::fs::create_dir_all(&dir).map_err(open_error)?;
            let journaled = Arc::new(AtomicU64::new(0));
            let sync = jc.sync;
            let j = Journal::new(jc, tx, Arc::clone(&processed), Arc::clone(&journaled));
            let (inlet, thread) = match sync {
                SyncMode::Write => {
                    let j = Arc::new(Mutex::new(j));
                    shared = Some(Arc::clone(&j));
                    (Inlet::Shared(j), None)
                }
                SyncMode::Fsync => {
                    let (jtx, jrx) = std::sync::mpsc::channel();
                    let thread = std::thread::Builder::new()
                        .name("spendgate-journal".into())
                        .spawn(move || crate::journal::run(j, jrx))
                        .map_err(open_error)?;
                    (Inlet::Thread(jtx.clone()), Some((jtx, thread)))
                }
            };
            let parts = JournalParts {
                thread,
                shared: shared.clone(),
                journaled,
                dir,
            };
            (inlet, Some(parts))
        }
    };
    let flush_now = Arc::new(tokio::sync::Notify::new());
    let writer = SpendWriter {
        inlet,
        stats: Arc::clone(&stats),
        flush_now: Arc::clone(&flush_now),
        committed: committed.clone(),
        repeats: config
            .repeats_window_ms
            .map(|w| Arc::new(crate::repeats::Repeats::new(w))),
        fresh_within_ms: quiet_interval(&config)
            .map(|_| i64::try_from(config.flush_interval.as_millis()).unwrap_or(i64::MAX)),
    };
    let task = tokio::spawn(run(
        store,
        config,
        rx,
        stop_rx,
        stats,
        committed,
        Progress {
            processed: Arc::clone(&processed),
            journal: shared,
            repeats: writer.repeats.clone(),
            flush_now,
        },
    ));
    Ok((
        writer,
        WriterHandle {
            stop: Some(stop_tx),
            task,
            journal,
            processed,
        },
    ))
}

/// When the first spend event among `entries` finished (never 0, which means "none").
fn first_spend_at(entries: &[Entry]) -> Option<i64> {
    entries.iter().find_map(|e| match &e.record {
        Record::Spend(e) => Some(e.finished_at_ms.max(1)),
        Record::Refusal(_) => None,
    })
}

/// The longer wait of `WriterConfig::quiet_interval`, when it is longer than `flush_interval`.
fn quiet_interval(config: &WriterConfig) -> Option<Duration> {
    config.quiet_interval.filter(|q| *q > config.flush_interval)
}

/// How far the store has caught up with the journal.
struct Progress {
    /// Events committed (or found already stored), counted in journal order.
    processed: Arc<AtomicU64>,
    /// The journal the requests write themselves, whose segments the writer deletes once committed.
    journal: Option<Arc<Mutex<Journal>>>,
    /// The retry-loop detector's counts, which take each spend event once it is stored.
    repeats: Option<Arc<crate::repeats::Repeats>>,
    /// Told when a batch should be written without waiting out its interval.
    flush_now: Arc<tokio::sync::Notify>,
}

impl Progress {
    fn committed(&self, n: u64) {
        // Events reach the batcher in journal order, so this count marks how much of the journal is committed.
        self.processed.fetch_add(n, Ordering::Release);
        // Without a journal thread, the writer is the one that notices when segments can go.
        if let Some(j) = &self.journal {
            j.lock().unwrap_or_else(|e| e.into_inner()).tidy();
        }
    }
}

async fn run(
    store: Arc<dyn Store>,
    config: WriterConfig,
    mut rx: mpsc::UnboundedReceiver<Entry>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    stats: Arc<WriterStats>,
    committed: broadcast::Sender<Committed>,
    progress: Progress,
) {
    let max = config.max_batch.max(1);
    let early = config.flush_events.clamp(1, max);
    let quiet = quiet_interval(&config);
    let max_bytes = u64::try_from(config.max_queue_bytes / 2)
        .unwrap_or(u64::MAX)
        .max(1);
    // Records are taken from the channel this many at a time, so that the bounds are checked between takes.
    let chunk = max.min(1024);
    // Not allocated at the largest size: most batches are small, and a batch grows as records arrive.
    let mut incoming: Vec<Entry> = Vec::new();
    let mut batch = Batch::default();
    let mut stopping = false;
    // Whether the store holds rollups it has not written yet (`WriteReport::rollups_carried`).
    let carrying = || stats.carrying.load(Ordering::Acquire);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut incoming, chunk) => {
                if n == 0 {
                    break;
                }
            }
            _ = &mut stop, if !stopping => {
                // Refuse new events and fall through to drain the ones already queued.
                stopping = true;
                rx.close();
                continue;
            }
            // A store's carried rollups are written when the queue stays empty for an interval, or at once when
            // `SpendWriter::flush` asks.
            _ = tokio::time::sleep(config.flush_interval), if carrying() => {
                flush_carried(&store, &stats, &committed).await;
                continue;
            }
            _ = progress.flush_now.notified(), if carrying() => {
                flush_carried(&store, &stats, &committed).await;
                continue;
            }
        }
        let mut bytes: u64 = incoming.iter().map(|e| u64::from(e.bytes)).sum();
        stats
            .oldest_pending_ms
            .store(first_spend_at(&incoming).unwrap_or(0), Ordering::Relaxed);
        // The interval counts from when the first record was made, not from when the writer took it: records that
        // waited through the previous commit are not held back a whole interval more.
        let first_at = match incoming.first().map(|e| &e.record) {
            Some(Record::Spend(e)) => e.finished_at_ms,
            Some(Record::Refusal(r)) => r.at_ms,
            None => now_ms(),
        };
        let waited = Duration::from_millis(u64::try_from(now_ms() - first_at).unwrap_or(0));
        let start = Instant::now();
        let mut deadline = start + config.flush_interval.saturating_sub(waited);
        let quiet_deadline = quiet.map(|q| start + q.saturating_sub(waited));
        while incoming.len() < early && bytes < max_bytes {
            let before = incoming.len();
            tokio::select! {
                n = rx.recv_many(&mut incoming, chunk.min(max - before)) => if n == 0 { break },
                _ = tokio::time::sleep_until(deadline) => {
                    // While no page listens for commits the batch may wait longer (readers have it written
                    // first, `SpendWriter::freshen`); whether one listens is looked at again every interval, so
                    // a page opened meanwhile gets its updates at the usual pace from then on.
                    match quiet_deadline {
                        Some(q) if deadline < q && committed.receiver_count() == 0 => {
                            deadline = (deadline + config.flush_interval).min(q);
                            continue;
                        }
                        _ => break,
                    }
                }
                _ = progress.flush_now.notified() => break,
                // Shutdown cuts the wait short: what is queued is written now, not after the interval.
                _ = &mut stop, if !stopping => {
                    stopping = true;
                    rx.close();
                }
            }
            bytes += incoming[before..]
                .iter()
                .map(|e| u64::from(e.bytes))
                .sum::<u64>();
            // A batch that began with refusals gets its oldest spend event noted when the first one arrives, so
            // that `SpendWriter::freshen` knows it waits.
            if stats.oldest_pending_ms.load(Ordering::Relaxed) == 0 {
                if let Some(at) = first_spend_at(&incoming[before..]) {
                    stats.oldest_pending_ms.store(at, Ordering::Relaxed);
                }
            }
        }
        // Whatever else is already waiting joins the batch, within its bounds: a backlog is written in large
        // batches, which fold more events into each rollup row.
        while incoming.len() < max && bytes < max_bytes {
            match rx.try_recv() {
                Ok(e) => {
                    bytes += u64::from(e.bytes);
                    incoming.push(e);
                }
                Err(_) => break,
            }
        }
        // A batch that reached a bound, or left records waiting (in the queue, or for room in it), has a backlog
        // behind it.
        let behind = incoming.len() >= max
            || bytes >= max_bytes
            || !rx.is_empty()
            || stats.room.someone_waits();
        let n = incoming.len() as u64;
        let held = batch.sort(&mut incoming);
        stats
            .largest_batch
            .fetch_max(batch.spends.len() as u64, Ordering::Relaxed);
        if !batch.spends.is_empty() {
            let report = write_with_retry(
                &stats,
                "spend events",
                &mut batch.spends,
                |b| {
                    let store = Arc::clone(&store);
                    async move {
                        if behind {
                            store.write_batch_behind(b).await
                        } else {
                            store.write_batch(b).await
                        }
                    }
                },
                |stored| {
                    if let Some(r) = &progress.repeats {
                        stored.iter().for_each(|e| r.note(e));
                    }
                },
            )
            .await;
            stats
                .carrying
                .store(report.rollups_carried, Ordering::Release);
            stats
                .written
                .fetch_add(report.inserted as u64, Ordering::Relaxed);
            stats
                .duplicates
                .fetch_add(report.duplicates as u64, Ordering::Relaxed);
        }
        // After the spend events: a refusal's rollups are independent of them, and both writes are idempotent, so
        // a crash between the two only replays what the store already has.
        if !batch.refusals.is_empty() {
            write_with_retry(
                &stats,
                "refusals",
                &mut batch.refusals,
                |b| {
                    let store = Arc::clone(&store);
                    async move { store.write_refusals(b).await }
                },
                |_| {},
            )
            .await;
        }
        stats.room.release(bytes, held);
        let _ = committed.send(Committed {
            events: n as usize,
            at_ms: now_ms(),
        });
        progress.committed(n);
        stats.oldest_pending_ms.store(0, Ordering::Relaxed);
    }
    if carrying() {
        flush_carried(&store, &stats, &committed).await;
    }
}

/// Has the store write the rollups it carried (`Store::flush_rollups`), retrying like a batch, and tells the
/// pages, whose totals change with them.
async fn flush_carried(
    store: &Arc<dyn Store>,
    stats: &WriterStats,
    committed: &broadcast::Sender<Committed>,
) {
    write_with_retry(
        stats,
        "carried rollups",
        &mut Vec::<()>::new(),
        |_| {
            let store = Arc::clone(store);
            async move {
                store
                    .flush_rollups()
                    .await
                    .map(|_| crate::WriteReport::default())
            }
        },
        |_| {},
    )
    .await;
    stats.carrying.store(false, Ordering::Release);
    let _ = committed.send(Committed {
        events: 0,
        at_ms: now_ms(),
    });
}

/// One batch's records, sorted by kind: each kind has its own write. The vectors keep their capacity between
/// batches.
#[derive(Default)]
struct Batch {
    spends: Vec<SpendEvent>,
    refusals: Vec<RefusalEvent>,
}

impl Batch {
    /// Moves `incoming` into the batch, leaving it empty. Returns the bytes of those that hold room in the queue.
    fn sort(&mut self, incoming: &mut Vec<Entry>) -> u64 {
        let mut held = 0;
        for e in incoming.drain(..) {
            if e.held {
                held += u64::from(e.bytes);
            }
            match e.record {
                Record::Spend(e) => self.spends.push(e),
                Record::Refusal(r) => self.refusals.push(r),
            }
        }
        held
    }
}

/// Writes `items` with `write`, retrying with backoff until the store takes them, hands them to `stored`, then
/// empties `items` (keeping its buffer when it can). Returns what the successful write reported.
async fn write_with_retry<T, F, Fut>(
    stats: &WriterStats,
    what: &'static str,
    items: &mut Vec<T>,
    write: F,
    stored: impl FnOnce(&[T]),
) -> crate::WriteReport
where
    F: Fn(Arc<Vec<T>>) -> Fut,
    Fut: std::future::Future<Output = crate::Result<crate::WriteReport>>,
{
    let mut backoff = Duration::from_millis(50);
    let shared = Arc::new(std::mem::take(items));
    loop {
        match write(Arc::clone(&shared)).await {
            Ok(report) => {
                if let Ok(mut e) = stats.last_error.lock() {
                    *e = None;
                }
                stats.failing.store(false, Ordering::Relaxed);
                stored(&shared);
                // Take the buffer back to reuse its capacity for the next batch.
                if let Ok(mut v) = Arc::try_unwrap(shared) {
                    v.clear();
                    *items = v;
                }
                return report;
            }
            Err(err) => {
                stats.failed_writes.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %err, records = shared.len(), what, retry_in_ms = backoff.as_millis() as u64,
                    "Writing {what} failed; the batch is kept and will be retried.");
                if let Ok(mut e) = stats.last_error.lock() {
                    *e = Some(err.to_string());
                }
                stats.failing.store(true, Ordering::Relaxed);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
