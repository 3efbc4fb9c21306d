//! Keeping the write-ahead log short: a thread copies it into the database file in the
//! background, and the writer restarts it once it is long.
//!
//! SQLite starts the log over only when a checkpoint has copied every frame while no
//! transaction is appending. A PASSIVE checkpoint beside a busy writer never gets there (the
//! writer appends while it copies): under sustained writes the log grew to ~1 GB in 45 s, and
//! every fsync then had to extend the file. A RESTART from another thread does not help
//! either: it needs the write lock, which the writer takes again between batches faster than
//! SQLite's busy handler polls for it.
//!
//! So the work is split. This thread runs PASSIVE checkpoints, every `interval` and back to
//! back while a backlog remains, so that most frames are copied off the writer's path. The
//! writer learns the log's length after every commit (SQLite's WAL hook) and, once it passes
//! `RESTART_AFTER_FRAMES`, runs a RESTART checkpoint itself between two batches: it copies
//! only what this thread has not yet, and the next commit starts the log over. The log stays
//! bounded under any load; under extreme load the writer pays for copying, which slows writes
//! rather than growing the file.

use super::schema;
use crate::{Result, StoreError};
use rusqlite::Connection;
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

/// The writer restarts the log once it holds this many frames (pages; 16 MiB at 4 KiB).
pub(super) const RESTART_AFTER_FRAMES: i64 = 4096;

/// With more than this many frames left uncopied, the next PASSIVE round starts at once.
const BACKLOG_FRAMES: i64 = 1024;

/// Starts the thread; it ends when the returned sender is dropped.
pub(super) fn spawn(path: &Path, interval: Duration) -> Result<mpsc::Sender<()>> {
    let flags =
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| schema::classify(path, e))?;
    let (stop, stopped) = mpsc::channel::<()>();
    let path = path.to_owned();
    std::thread::Builder::new()
        .name("capstan-store-checkpoint".into())
        .spawn(move || run(&conn, &path, &stopped, interval))
        .map_err(|e| StoreError::Config(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(stop)
}

fn run(conn: &Connection, path: &Path, stopped: &mpsc::Receiver<()>, interval: Duration) {
    let mut wait = interval;
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
        let passive = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        wait = match passive {
            Ok((frames, copied)) if frames - copied > BACKLOG_FRAMES => Duration::ZERO,
            Ok(_) => interval,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "datastore checkpoint failed");
                interval
            }
        };
    }
}
