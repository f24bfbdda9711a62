//! WAL checkpoints on a thread of their own.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, on the writer's thread: the
//! batch behind it waits while every page of the WAL is copied into the database file and synced. At ingest
//! rates that was a fifth of each 65,536-event batch (issue 9). Here the writer's commit only notes the WAL's
//! size (SQLite's WAL hook) and wakes a second connection, which checkpoints while the writer goes on with the
//! next batch. Both run at once: a passive checkpoint copies what is committed and never blocks a writer.

use std::ffi::c_int;
use std::sync::mpsc::{sync_channel, TrySendError};

use rusqlite::hooks::Wal;
use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, DEFAULT_NAME};

use crate::Result;

/// A checkpoint is asked for once the WAL holds this many pages (~16 MB): a rollup page updated by many batches
/// is then copied into the database file once per checkpoint rather than once per batch.
pub(super) const CHECKPOINT_PAGES: c_int = 4_000;

/// A passive checkpoint copies the WAL but cannot restart it: only a write that begins after everything was
/// copied starts the WAL over from its first page, and a writer that never pauses (a backlog, the benchmark's
/// ingest) keeps appending. Should the WAL reach this many pages (~64 MB), the writer makes a restarting
/// checkpoint itself, after its commit: it waits for the checkpointer's copy to end and for readers to leave
/// the WAL, so its next write starts the WAL over. That bounds the WAL, as SQLite's own checkpoint would, at
/// the price of a pause in the rare case it is needed.
const WRITER_CHECKPOINT_PAGES: c_int = 16 * 1_024;

/// Starts the checkpointer for the store at `path` and hands `writer`'s checkpoints to it. The thread ends when
/// the writer connection is closed. Without a thread (the system refused one), the writer keeps SQLite's
/// automatic checkpoint at `CHECKPOINT_PAGES`.
pub(super) fn start(writer: &mut Connection, checkpointer: Connection) -> Result<()> {
    let (wake, woken) = sync_channel::<()>(1);
    let spawned = std::thread::Builder::new()
        .name("spendgate-checkpoint".into())
        .spawn(move || {
            while woken.recv().is_ok() {
                if let Err(e) = checkpointer.wal_checkpoint_v2(DEFAULT_NAME, CheckpointMode::PASSIVE) {
                    tracing::warn!(error = %e, "A WAL checkpoint failed; the next commit asks for another.");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "No thread for WAL checkpoints: the writer makes them itself.");
        writer.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_PAGES)?;
        return Ok(());
    }
    writer.wal_hook(Some(move |wal: &mut Wal, pages: c_int| {
        if pages >= WRITER_CHECKPOINT_PAGES {
            // An error returned here would fail the statement whose commit has already happened; it is logged
            // instead (a reader that holds the WAL past the busy timeout), and the next commit tries again.
            if let Err(e) = wal.checkpoint_v2(CheckpointMode::RESTART) {
                tracing::warn!(error = %e, pages, "The writer's own WAL checkpoint failed.");
            }
        } else if pages >= CHECKPOINT_PAGES {
            // Full means a checkpoint is already asked for; Disconnected means the thread is gone, and the
            // writer's own checkpoint above takes over at its larger size.
            if let Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) =
                wake.try_send(())
            {}
        }
        Ok(())
    }))?;
    Ok(())
}
