//! WAL checkpoints on a thread of their own.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, on the writer's thread: the
//! batch behind it waits while every page of the WAL is copied into the database file and synced. At ingest
//! rates that was a fifth of each 65,536-event batch (issue 9). Here the writer's commit only notes the WAL's
//! size (SQLite's WAL hook) and wakes a second connection, which checkpoints while the writer goes on with the
//! next batch. Both run at once: a passive checkpoint copies what is committed and never blocks a writer.

use std::ffi::c_int;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;

use rusqlite::hooks::Wal;
use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, DEFAULT_NAME};

use crate::Result;

/// A checkpoint is asked for once this many pages (~16 MB) follow what the last one copied: a rollup page updated by many batches
/// is then copied into the database file once per checkpoint rather than once per batch.
pub(super) const CHECKPOINT_PAGES: c_int = 4_000;

/// A passive checkpoint copies the WAL but cannot restart it: only a write that begins after everything was
/// copied starts the WAL over from its first page, and a writer that never pauses (a backlog, the benchmark's
/// ingest) keeps appending. Should the WAL reach this many pages (~256 MB), the writer makes a restarting
/// checkpoint itself, after its commit: it waits for the checkpointer's copy to end and for readers to leave
/// the WAL, so its next write starts the WAL over. That bounds the WAL, as SQLite's own checkpoint would, at
/// the price of a pause in the rare case it is needed. A batch of 262,144 events writes 16,000-28,000 pages
/// (63-110 MB) of WAL, so at ~64 MB the writer waited for such a checkpoint after almost every batch; at
/// ~256 MB, ingest went from 164,026-171,044 to 170,619-194,786 events/s (docs/BENCHMARKS-HISTORY.md).
const WRITER_CHECKPOINT_PAGES: c_int = 64 * 1_024;

/// Once the WAL starts over, its file is cut back to this size: a backlog that grew it towards
/// `WRITER_CHECKPOINT_PAGES` does not keep holding that much disk afterwards.
const WAL_FILE_LIMIT_BYTES: i64 = 64 << 20;

/// Hands `writer`'s checkpoints to a thread that makes them on `checkpointer`, a second connection to the same
/// file. The thread ends when
/// the writer connection is closed. Without a thread (the system refused one), the writer keeps SQLite's
/// automatic checkpoint at `CHECKPOINT_PAGES`.
pub(super) fn start(writer: &mut Connection, checkpointer: Connection) -> Result<()> {
    writer.pragma_update(None, "journal_size_limit", WAL_FILE_LIMIT_BYTES)?;
    let (wake, woken) = sync_channel::<()>(1);
    // How far into the WAL the last checkpoint copied, in pages. A checkpoint is asked for when that many new
    // pages follow it, not whenever the WAL is large: a WAL that has not restarted yet stays large, and asking
    // at every commit would then make a checkpoint, with its two syncs, for every small batch of a busy gateway.
    let copied = Arc::new(AtomicI32::new(0));
    let copied_by_thread = Arc::clone(&copied);
    let spawned = std::thread::Builder::new()
        .name("spendgate-checkpoint".into())
        .spawn(move || {
            while woken.recv().is_ok() {
                match checkpointer.wal_checkpoint_v2(DEFAULT_NAME, CheckpointMode::PASSIVE) {
                    Ok((_, done)) => copied_by_thread.store(done.max(0), Ordering::Relaxed),
                    Err(e) => tracing::warn!(
                        error = %e,
                        "A WAL checkpoint failed; the next commit asks for another."
                    ),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "No thread for WAL checkpoints: the writer makes them itself.");
        writer.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_PAGES)?;
        return Ok(());
    }
    let mut last_pages = 0;
    writer.wal_hook(Some(move |wal: &mut Wal, pages: c_int| {
        if pages < last_pages {
            // The WAL started over: nothing in it has been copied yet.
            copied.store(0, Ordering::Relaxed);
        }
        last_pages = pages;
        if pages >= WRITER_CHECKPOINT_PAGES {
            // An error returned here would fail the statement whose commit has already happened; it is logged
            // instead (a reader that holds the WAL past the busy timeout), and the next commit tries again.
            match wal.checkpoint_v2(CheckpointMode::RESTART) {
                Ok((_, done)) => copied.store(done.max(0), Ordering::Relaxed),
                Err(e) => {
                    tracing::warn!(error = %e, pages, "The writer's own WAL checkpoint failed.")
                }
            }
        } else if pages - copied.load(Ordering::Relaxed).min(pages) >= CHECKPOINT_PAGES {
            // A full channel means a checkpoint is already asked for; a closed one means the thread is gone,
            // and the writer's own checkpoint above takes over at its larger size.
            let _ = wake.try_send(());
        }
        Ok(())
    }))?;
    Ok(())
}
