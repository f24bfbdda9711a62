//! The journal: an append-only file that every spend event reaches before its response's last byte is sent, so
//! that no acknowledged request is lost if the process dies before the store has it.
//!
//! One thread owns the journal file. Requests hand it events; it writes all that are waiting with one `write`
//! (group commit), optionally `fdatasync`s, then acknowledges each request and passes the events on, in order,
//! to the batching writer. The file is split into segments; a segment is deleted once every event in it is
//! committed to the store (the writer counts committed events, and order is preserved end to end). On start,
//! segments left by a previous process are replayed into the store; writes are idempotent by event id, so an
//! event that was both journaled and committed before a crash is not counted twice.
//!
//! Format: one JSON-encoded [`SpendEvent`] per line. A torn last line (the process died mid-write) is skipped:
//! its request was never acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use spendgate_core::SpendEvent;
use tokio::sync::oneshot;

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
        event: SpendEvent,
        ack: Option<oneshot::Sender<()>>,
    },
    /// Everything sent before this is journaled and forwarded; then the thread ends.
    Stop,
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("segment-{n:012}.jsonl"))
}

fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let n = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("segment-"))
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = n {
            out.push((n, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads every event left in the journal by an earlier process.
pub fn read_leftovers(dir: &Path) -> Result<(Vec<SpendEvent>, Vec<PathBuf>), StoreError> {
    let io = |e: std::io::Error| StoreError::Open {
        path: dir.display().to_string(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut events = Vec::new();
    let mut files = Vec::new();
    for (_, path) in segments(dir).map_err(io)? {
        let f = File::open(&path).map_err(io)?;
        for line in BufReader::new(f).split(b'\n') {
            let line = line.map_err(io)?;
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<SpendEvent>(&line) {
                Ok(e) => events.push(e),
                // Only the last line of a segment can be torn by a crash; its request was never answered.
                Err(err) => {
                    tracing::warn!(file = %path.display(), error = %err, "Skipped a torn journal line.")
                }
            }
        }
        files.push(path);
    }
    Ok((events, files))
}

/// Replays leftover events into the store (idempotent) and removes their segments. Returns how many events were
/// replayed and how many of them the store already had.
pub async fn replay(store: &dyn Store, dir: &Path) -> Result<(usize, usize), StoreError> {
    let (events, files) = read_leftovers(dir)?;
    let mut inserted = 0;
    let mut duplicates = 0;
    for chunk in events.chunks(8192) {
        let r = store.write_batch(Arc::new(chunk.to_vec())).await?;
        inserted += r.inserted;
        duplicates += r.duplicates;
    }
    for f in files {
        std::fs::remove_file(&f).map_err(|e| StoreError::Open {
            path: f.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    if !events.is_empty() {
        tracing::info!(
            events = events.len(),
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

/// Runs the journal thread until the append channel closes.
pub(crate) fn run(
    config: JournalConfig,
    rx: std::sync::mpsc::Receiver<Append>,
    forward: tokio::sync::mpsc::UnboundedSender<SpendEvent>,
    committed: Arc<AtomicU64>,
    journaled: Arc<AtomicU64>,
) {
    let mut next_n = segments(&config.dir)
        .ok()
        .and_then(|s| s.last().map(|(n, _)| n + 1))
        .unwrap_or(0);
    let mut closed: Vec<(u64, PathBuf)> = Vec::new(); // (end sequence, path)
    let mut current: Option<Segment> = None;
    let mut seq: u64 = 0;
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut group: Vec<(SpendEvent, Option<oneshot::Sender<()>>)> = Vec::new();
    loop {
        // Wait for work, waking now and then to delete segments the store has caught up with.
        let mut stop = false;
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Append::Event { event, ack }) => group.push((event, ack)),
            Ok(Append::Stop) => stop = true,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => stop = true,
        }
        while group.len() < 4096 && !stop {
            match rx.try_recv() {
                Ok(Append::Event { event, ack }) => group.push((event, ack)),
                Ok(Append::Stop) => stop = true,
                Err(_) => break,
            }
        }
        let done = committed.load(Ordering::Acquire);
        // In a quiet moment everything journaled may already be committed: close the segment and drop it, so the
        // journal holds only what the store does not have yet.
        if done >= seq && current.as_ref().is_some_and(|s| s.bytes > 0) {
            if let Some(seg) = current.take() {
                closed.push((seq, segment_path(&config.dir, seg.n)));
            }
        }
        closed.retain(|(end, path)| {
            if *end <= done {
                let _ = std::fs::remove_file(path);
                false
            } else {
                true
            }
        });
        if group.is_empty() {
            if stop {
                break;
            }
            continue;
        }
        buf.clear();
        for (event, _) in &group {
            if serde_json::to_writer(&mut buf, event).is_ok() {
                buf.push(b'\n');
            }
        }
        // Rotate before writing when the segment is full.
        if let Some(seg) = &current {
            if seg.bytes >= config.segment_bytes {
                if let Some(seg) = current.take() {
                    closed.push((seq, segment_path(&config.dir, seg.n)));
                }
            }
        }
        if current.is_none() {
            let path = segment_path(&config.dir, next_n);
            match OpenOptions::new().create(true).append(true).open(&path) {
                Ok(file) => {
                    current = Some(Segment {
                        n: next_n,
                        file,
                        bytes: 0,
                    });
                    next_n += 1;
                }
                Err(e) => {
                    tracing::error!(error = %e, path = %path.display(), "Could not open a journal segment.")
                }
            }
        }
        let written = match current.as_mut() {
            Some(seg) => {
                let r = seg.file.write_all(&buf).and_then(|()| match config.sync {
                    SyncMode::Write => Ok(()),
                    SyncMode::Fsync => seg.file.sync_data(),
                });
                if r.is_ok() {
                    seg.bytes += buf.len() as u64;
                }
                r
            }
            None => Err(std::io::Error::other("no journal segment is open")),
        };
        if let Err(e) = &written {
            // The events still go to the store; they are only less protected against a crash meanwhile.
            tracing::error!(error = %e, "Writing the journal failed; events go on to the store unjournaled.");
        }
        for (event, ack) in group.drain(..) {
            seq += 1;
            if forward.send(event).is_err() {
                tracing::error!(
                    "The writer stopped before the journal; an event was not forwarded."
                );
            }
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
        }
        journaled.store(seq, Ordering::Release);
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
        for (_, p) in list {
            let _ = std::fs::remove_file(p);
        }
    }
}
