//! The journal: an append-only file that every spend event reaches before its response's last byte is sent, so
//! that no acknowledged request is lost if the process dies before the store has it.
//!
//! By default (`SyncMode::Write`) each request appends its own event under a lock, with one `write` into the page
//! cache, and passes it on to the batching writer before the lock is released, so events reach the writer in
//! journal order. With `SyncMode::Fsync` one thread owns the file instead: requests hand it events; it writes all
//! that are waiting with one `write` and one `fdatasync` (group commit), then acknowledges each request and passes
//! the events on, in order. The file is split into segments; a segment is deleted once every event in it is
//! committed to the store (the writer counts committed events, and order is preserved end to end). On start,
//! segments left by a previous process are replayed into the store; writes are idempotent by event id, so an
//! event that was both journaled and committed before a crash is not counted twice.
//!
//! Refused requests (`RefusalEvent`) take the same way, in the same order, so that a crash loses neither.
//!
//! Format: binary records, each framed by its length and a checksum and carrying a version byte (`codec`), in
//! segments named `segment-N.rec`. Journals written before 2026-12-08 hold JSON lines (`segment-N.jsonl`); they
//! are still read and replayed (`read`). A torn last record (the process died mid-write) is skipped: its request
//! was never acknowledged.

mod codec;
mod read;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

pub use read::{read_leftovers, read_records, Leftovers};
use read::{segment_path, segments, Format};

use crate::writer::Entry;
use crate::{Store, StoreError};

/// How hard the journal pushes each write to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// `write` only: the event survives a crash of the process (kill -9), not a power cut. The default: it
    /// costs microseconds.
    #[default]
    Write,
    /// `write` then `fdatasync` per group: survives a power cut too, at the cost of a disk flush per group.
    Fsync,
}

#[derive(Debug, Clone)]
pub struct JournalConfig {
    pub dir: PathBuf,
    pub sync: SyncMode,
    /// A segment is closed when it grows past this.
    pub segment_bytes: u64,
}

impl JournalConfig {
    pub fn new(dir: PathBuf) -> JournalConfig {
        JournalConfig {
            dir,
            sync: SyncMode::Write,
            segment_bytes: 16 << 20,
        }
    }
}

/// A request waiting for its event to be in the journal.
// The small variant is sent once per process; boxing the large one would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Append {
    Event {
        entry: Entry,
        ack: Option<oneshot::Sender<()>>,
    },
    /// Everything sent before this is journaled and forwarded; then the thread ends.
    Stop,
}

/// Replays leftover events and refusals into the store (idempotent) and removes their segments. Returns how many
/// events were replayed and how many of them the store already had.
pub async fn replay(store: &dyn Store, dir: &Path) -> Result<(usize, usize), StoreError> {
    let Leftovers {
        events,
        refusals,
        files,
    } = read_records(dir)?;
    let mut inserted = 0;
    let mut duplicates = 0;
    for chunk in events.chunks(8192) {
        let r = store.write_batch(Arc::new(chunk.to_vec())).await?;
        inserted += r.inserted;
        duplicates += r.duplicates;
    }
    for chunk in refusals.chunks(8192) {
        store.write_refusals(Arc::new(chunk.to_vec())).await?;
    }
    for f in files {
        std::fs::remove_file(&f).map_err(|e| StoreError::Open {
            path: f.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    if !events.is_empty() || !refusals.is_empty() {
        tracing::info!(
            events = events.len(),
            refusals = refusals.len(),
            inserted,
            duplicates,
            "Replayed the journal left by the previous run."
        );
    }
    Ok((inserted, duplicates))
}

struct Segment {
    n: u64,
    file: File,
    bytes: u64,
}

/// A segment at least this large is closed and deleted as soon as the store has all of it.
const QUIET_CLOSE_BYTES: u64 = 1 << 20;

/// The journal's files and counts: the open segment, the closed ones the store has not caught up with yet, and
/// how many events went in. Owned by the journal thread (`SyncMode::Fsync`) or shared behind a mutex by the
/// requests themselves (`SyncMode::Write`, see `crate::writer`).
pub(crate) struct Journal {
    config: JournalConfig,
    next_n: u64,
    /// (end sequence, path) of each closed segment.
    closed: Vec<(u64, PathBuf)>,
    current: Option<Segment>,
    seq: u64,
    buf: Vec<u8>,
    group: Vec<(Entry, Option<oneshot::Sender<()>>)>,
    forward: tokio::sync::mpsc::UnboundedSender<Entry>,
    committed: Arc<AtomicU64>,
    journaled: Arc<AtomicU64>,
    /// Set at shutdown: nothing more is written.
    shut: bool,
    /// Writes that failed since the last one that worked (a full or read-only disk). Only the first of them and
    /// the recovery are logged: a full disk must not also fill the log, one line per request.
    failed_writes: u64,
}

impl Journal {
    /// A journal in `config.dir` that hands what it writes to `forward`. `committed` counts the events the store
    /// has; `journaled` is set to the number written here.
    pub(crate) fn new(
        config: JournalConfig,
        forward: tokio::sync::mpsc::UnboundedSender<Entry>,
        committed: Arc<AtomicU64>,
        journaled: Arc<AtomicU64>,
    ) -> Journal {
        let next_n = segments(&config.dir)
            .ok()
            .and_then(|s| s.last().map(|(n, _, _)| n + 1))
            .unwrap_or(0);
        Journal {
            config,
            next_n,
            closed: Vec::new(),
            current: None,
            seq: 0,
            buf: Vec::with_capacity(1 << 16),
            group: Vec::new(),
            forward,
            committed,
            journaled,
            shut: false,
            failed_writes: 0,
        }
    }

    /// Refuses every later event: the writer is stopping, and the journal may be deleted once the store has what
    /// it holds.
    pub(crate) fn close(&mut self) {
        self.shut = true;
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.shut
    }

    /// Adds a record to the next write; `ack` is told once it is written.
    pub(crate) fn push(&mut self, entry: Entry, ack: Option<oneshot::Sender<()>>) {
        self.group.push((entry, ack));
    }

    /// Deletes the segments the store has caught up with.
    pub(crate) fn tidy(&mut self) {
        let done = self.committed.load(Ordering::Acquire);
        // In a quiet moment everything journaled may already be committed: close the segment and drop it, so the
        // journal holds only what the store does not have yet. A small segment stays open: closing it would make
        // the next request create a file, and on a quiet gateway that is every request (replaying a segment the
        // store already has costs only the reading).
        if done >= self.seq
            && self
                .current
                .as_ref()
                .is_some_and(|s| s.bytes >= QUIET_CLOSE_BYTES)
        {
            self.close_current();
        }
        self.closed.retain(|(end, path)| {
            if *end <= done {
                let _ = std::fs::remove_file(path);
                false
            } else {
                true
            }
        });
    }

    /// Logs the first write of a run of failed ones, and the write that ends the run, with its count.
    fn note(&mut self, written: &std::io::Result<()>) {
        match written {
            // The events still go to the store; they are only less protected against a crash meanwhile.
            Err(e) => {
                if self.failed_writes == 0 {
                    tracing::error!(
                        error = %e,
                        dir = %self.config.dir.display(),
                        "Writing the journal failed: events go on to the store unjournaled, so a crash now would \
                         lose the ones not yet stored. Free space in the journal's directory (or make it \
                         writable); until it works again, failures are counted, not logged."
                    );
                }
                self.failed_writes += 1;
            }
            Ok(()) if self.failed_writes > 0 => {
                tracing::warn!(
                    failed_writes = self.failed_writes,
                    "The journal is written again; the events of the failed writes went on to the store unjournaled."
                );
                self.failed_writes = 0;
            }
            Ok(()) => {}
        }
    }

    fn close_current(&mut self) {
        if let Some(seg) = self.current.take() {
            self.closed.push((
                self.seq,
                segment_path(&self.config.dir, seg.n, Format::Binary),
            ));
        }
    }

    /// Writes every pushed event with one `write` (and `fdatasync` in `SyncMode::Fsync`), then hands them on in
    /// order and acknowledges them. Returns false when the writer behind has stopped (the events are in the
    /// journal all the same, and the next start replays them).
    pub(crate) fn flush(&mut self) -> bool {
        if self.group.is_empty() {
            return true;
        }
        self.buf.clear();
        for (entry, _) in &self.group {
            codec::encode(&mut self.buf, &entry.record);
        }
        // Rotate before writing when the segment is full.
        if self
            .current
            .as_ref()
            .is_some_and(|seg| seg.bytes >= self.config.segment_bytes)
        {
            self.close_current();
        }
        let mut open_failed = None;
        if self.current.is_none() {
            let path = segment_path(&self.config.dir, self.next_n, Format::Binary);
            match OpenOptions::new().create(true).append(true).open(&path) {
                Ok(file) => {
                    self.current = Some(Segment {
                        n: self.next_n,
                        file,
                        bytes: 0,
                    });
                    self.next_n += 1;
                }
                Err(e) => {
                    open_failed = Some(std::io::Error::new(
                        e.kind(),
                        format!("could not open {}: {e}", path.display()),
                    ))
                }
            }
        }
        let written = match self.current.as_mut() {
            Some(seg) => {
                let r = seg
                    .file
                    .write_all(&self.buf)
                    .and_then(|()| match self.config.sync {
                        SyncMode::Write => Ok(()),
                        SyncMode::Fsync => seg.file.sync_data(),
                    });
                if r.is_ok() {
                    seg.bytes += self.buf.len() as u64;
                }
                r
            }
            None => Err(open_failed.unwrap_or_else(|| std::io::Error::other("no segment is open"))),
        };
        if written.is_err() {
            // A write that failed partway (a disk filling up) leaves a torn record at the segment's end. The next
            // write goes to a new segment, so that a reader need not look past the torn record for it: the segment
            // is closed here, torn record last.
            self.close_current();
        }
        self.note(&written);
        let mut forwarded = true;
        for (entry, ack) in self.group.drain(..) {
            self.seq += 1;
            if self.forward.send(entry).is_err() {
                forwarded = false;
            }
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
        }
        if !forwarded {
            tracing::error!("The writer stopped before the journal; events were not forwarded.");
        }
        self.journaled.store(self.seq, Ordering::Release);
        forwarded
    }
}

/// Runs the journal thread (`SyncMode::Fsync`: one disk flush per group of waiting requests) until the append
/// channel closes.
pub(crate) fn run(mut journal: Journal, rx: std::sync::mpsc::Receiver<Append>) {
    loop {
        // Wait for work, waking now and then to delete segments the store has caught up with.
        let mut stop = false;
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Append::Event { entry, ack }) => journal.push(entry, ack),
            Ok(Append::Stop) => stop = true,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => stop = true,
        }
        while journal.group.len() < 4096 && !stop {
            match rx.try_recv() {
                Ok(Append::Event { entry, ack }) => journal.push(entry, ack),
                Ok(Append::Stop) => stop = true,
                Err(_) => break,
            }
        }
        journal.tidy();
        journal.flush();
        if stop {
            break;
        }
    }
    // Shutdown: the writer drains what was forwarded; segments stay until the next start confirms them, unless
    // everything was committed, which the caller checks after the writer stops.
}

/// Deletes every segment in `dir` (after a clean shutdown in which the store committed everything).
pub fn clear(dir: &Path) {
    if let Ok(list) = segments(dir) {
        for (_, p, _) in list {
            let _ = std::fs::remove_file(p);
        }
    }
}
