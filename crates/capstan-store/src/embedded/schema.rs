//! The embedded database's layout, and the checks that refuse a damaged or foreign file at
//! open instead of serving wrong data from it.
//!
//! Layout: `log` holds every change by revision (the history that watches and past reads
//! use, trimmed by compaction); `current` maps each live key to the revision of its latest
//! value in `log`; `meta` holds the store's revision and compaction point; `lease` the leases.

use crate::{Result, Revision, StoreError};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::io::Read;
use std::path::Path;

/// Bumped whenever the layout changes; a file with another version is refused.
const SCHEMA_VERSION: i64 = 1;

/// The first 16 bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

const CREATE_SCHEMA: &str = "
CREATE TABLE meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    schema_version INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    compacted INTEGER NOT NULL
);
INSERT INTO meta (id, schema_version, revision, compacted) VALUES (1, ?1, 1, 0);
CREATE TABLE log (
    rev INTEGER PRIMARY KEY,
    key BLOB NOT NULL,
    deleted INTEGER NOT NULL,
    create_rev INTEGER NOT NULL,
    prev_rev INTEGER,
    lease INTEGER,
    value BLOB NOT NULL
);
CREATE INDEX log_key_rev ON log (key, rev);
CREATE TABLE current (
    key BLOB PRIMARY KEY,
    rev INTEGER NOT NULL,
    lease INTEGER
) WITHOUT ROWID;
CREATE INDEX current_lease ON current (lease) WHERE lease IS NOT NULL;
CREATE TABLE lease (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ttl_seconds INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
";

/// What the store needs to know about a database it has just opened.
#[derive(Debug, Clone, Copy)]
pub(super) struct OpenedState {
    pub(super) revision: Revision,
    pub(super) compacted: Revision,
}

/// Takes the lock that makes this store the database's only writer: `<file>.lock`, an
/// advisory lock held until the returned file is dropped (after the writer's connection has
/// closed). A separate file, because closing any descriptor of the database file itself would
/// drop SQLite's own POSIX locks.
pub(super) fn lock(path: &Path) -> Result<std::fs::File> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = std::path::PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError::Config(format!("cannot create {}: {e}", lock_path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(StoreError::InUse { path: path.to_owned(), lock: lock_path })
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(StoreError::Config(format!("cannot lock {}: {e}", lock_path.display())))
        }
    }
}

/// Opens (creating if needed) the database for writing, checks it thoroughly, and returns
/// the writer's connection with the state it holds. The caller holds `lock(path)`.
pub(super) fn open_writer(path: &Path) -> Result<(Connection, OpenedState)> {
    let corrupt = |reason: String| StoreError::Corrupt { path: path.to_owned(), reason };
    let existing = check_header(path)?;

    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| classify(path, e))?;
    // quick_check first: a damaged file may fail in any later statement, and every such
    // failure must be reported as damage, naming the file.
    if existing {
        let problems: Vec<String> = conn
            .prepare("PRAGMA quick_check(5)")
            .and_then(|mut stmt| {
                stmt.query_map([], |row| row.get::<_, String>(0))?.collect::<Result<_, _>>()
            })
            .map_err(|e| classify(path, e))?;
        if problems != ["ok"] {
            return Err(corrupt(format!("integrity check failed: {}", problems.join("; "))));
        }
    }
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|e| classify(path, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(corrupt(format!("cannot switch to WAL journal mode (got {mode})")));
    }
    // FULL: in WAL mode the WAL is fsynced at every commit, so a commit that returned is
    // durable. No automatic checkpoints: see `checkpoint` for how the log is kept short. A
    // log restarted after growing past 64 MiB is cut back to that size.
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0; PRAGMA cache_size = -65536;
         PRAGMA journal_size_limit = 67108864;",
    )
    .map_err(|e| classify(path, e))?;

    let has_meta: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |row| row.get::<_, i64>(0).map(|n| n > 0),
        )
        .map_err(|e| classify(path, e))?;
    if !has_meta {
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
            .map_err(|e| classify(path, e))?;
        if tables > 0 {
            return Err(corrupt("an SQLite database, but not a Capstan datastore".into()));
        }
        create_schema(path, &conn)?;
    }

    let (version, revision, compacted): (i64, i64, i64) = conn
        .query_row("SELECT schema_version, revision, compacted FROM meta WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(|e| corrupt(format!("cannot read the meta table: {e}")))?;
    if version != SCHEMA_VERSION {
        return Err(corrupt(format!(
            "schema version {version}; this Capstan reads version {SCHEMA_VERSION}"
        )));
    }
    let newest_logged: i64 = conn
        .query_row("SELECT coalesce(max(rev), 0) FROM log", [], |row| row.get(0))
        .map_err(|e| classify(path, e))?;
    if newest_logged > revision || compacted > revision || revision < 1 {
        return Err(corrupt(format!(
            "inconsistent revisions: store at {revision}, newest change {newest_logged}, \
             compacted to {compacted}"
        )));
    }
    Ok((conn, OpenedState { revision, compacted }))
}

/// Opens a read-only connection to a database `open_writer` has already checked.
pub(super) fn open_reader(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| classify(path, e))?;
    conn.execute_batch("PRAGMA cache_size = -16384;").map_err(|e| classify(path, e))?;
    Ok(conn)
}

/// Whether the file exists with content; refuses one that is not an SQLite database at all.
fn check_header(path: &Path) -> Result<bool> {
    let io_error = |e: std::io::Error| StoreError::Corrupt {
        path: path.to_owned(),
        reason: format!("cannot read the file: {e}"),
    };
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error(e)),
    };
    let len = file.metadata().map_err(io_error)?.len();
    if len == 0 {
        // A file created but never written: nothing was ever acknowledged from it.
        return Ok(false);
    }
    let mut header = [0u8; 16];
    if len < 16 || file.read_exact(&mut header).is_err() || &header != SQLITE_MAGIC {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            reason: "not an SQLite database (bad file header)".into(),
        });
    }
    Ok(true)
}

fn create_schema(path: &Path, conn: &Connection) -> Result<()> {
    let create = || -> rusqlite::Result<()> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut statements = CREATE_SCHEMA.split_inclusive(';').filter(|s| !s.trim().is_empty());
        statements.try_for_each(|sql| {
            if sql.contains("?1") {
                conn.execute(sql, [SCHEMA_VERSION]).map(drop)
            } else {
                conn.execute_batch(sql)
            }
        })?;
        conn.execute_batch("COMMIT")
    };
    create().map_err(|e| classify(path, e))
}

/// Turns an SQLite error met while opening into `Corrupt` when it says the file is damaged or
/// foreign, and into `Sqlite` otherwise.
pub(super) fn classify(path: &Path, error: rusqlite::Error) -> StoreError {
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            StoreError::Corrupt { path: path.to_owned(), reason: error.to_string() }
        }
        _ => StoreError::Sqlite { path: path.to_owned(), source: error },
    }
}
