//! Copying the write-ahead log into the database file off the writing thread.
//!
//! In WAL mode SQLite appends every commit to `<file>-wal` and copies the log into the
//! database file at a checkpoint, which also syncs both files. Left to SQLite, the
//! checkpoint runs on the connection that writes: inline in the commit that fills
//! `wal_autocheckpoint` pages, and for all that is left when the connection closes. A replay
//! then ends with the whole log copied and synced on one core (a tenth of a second for the
//! million records of `make bench`, longer for a bigger replay's log), and a long
//! `keywatch run` stalls the batch whose commit fills the log.
//!
//! A [`Checkpointer`] runs SQLite's passive checkpoint from a connection and thread of its
//! own, at most every [`INTERVAL`] while commits come. A passive checkpoint never waits for
//! the writer nor blocks it; after one that copied the whole log the writer starts the log
//! again from its beginning, so the log (and what is left to copy on close) stays about what
//! the writer commits in one interval. A checkpoint that fails, or a connection that cannot
//! open, only leaves the work to SQLite's own checkpoints, as without a checkpointer.

use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The least time between two checkpoints: each syncs the log and the database file.
pub const INTERVAL: Duration = Duration::from_millis(250);

/// A thread that checkpoints a database file's log when told that commits came.
pub struct Checkpointer {
    /// Tells the thread that a commit came; dropped to stop it.
    commits: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread for the database file at `path` (its connection opens there).
    pub fn start(path: PathBuf) -> Self {
        let (commits, told) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("keywatch-checkpoint".into())
            .spawn(move || {
                let Ok(conn) = open(&path) else { return };
                let mut last: Option<Instant> = None;
                // Each round: a commit came; wait out the interval since the last checkpoint
                // (commits in the meantime join this round), then checkpoint.
                while told.recv().is_ok() {
                    if let Some(deadline) = last.map(|l| l + INTERVAL) {
                        loop {
                            let left = deadline.saturating_duration_since(Instant::now());
                            match told.recv_timeout(left) {
                                Ok(()) => continue,
                                Err(RecvTimeoutError::Timeout) => break,
                                // Stopping: the closing connection copies what is left.
                                Err(RecvTimeoutError::Disconnected) => return,
                            }
                        }
                    }
                    // (busy, frames in the log, frames copied): nothing to act on here.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    last = Some(Instant::now());
                }
            })
            .ok();
        Checkpointer {
            commits: Some(commits),
            thread,
        }
    }

    /// Tells the thread a commit came (without waiting: one already told is enough).
    pub fn committed(&self) {
        if let Some(commits) = &self.commits {
            // Full: told already. Disconnected: the thread could not open its connection.
            let _ = commits.try_send(());
        }
    }
}

fn open(path: &std::path::Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    // A checkpoint syncs as the writing connection's do.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

impl Drop for Checkpointer {
    /// Stops the thread, after the checkpoint it may be running, and closes its connection:
    /// the writing connection, closed after it, is then the last and copies what is left.
    fn drop(&mut self) {
        drop(self.commits.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
