//! The read side of the embedded store: a pool of read-only connections, each read one SQLite
//! transaction, so that it observes exactly one revision.

use super::schema;
use crate::kv::{key_after, prefix_end};
use crate::{Event, EventKind, KeyValue, RangeRequest, RangeResult, Result, Revision, StoreError};
use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Row, Transaction};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

/// The database as readers see it, shared by the store, its writer and its watches.
#[derive(Debug)]
pub(super) struct Db {
    pub(super) path: PathBuf,
    /// The revision of the last committed write: set by the writer after each commit, before
    /// anyone is told of it.
    pub(super) revision: AtomicI64,
    idle: Mutex<Vec<Connection>>,
}

/// The store's revision and compaction point as one read transaction sees them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Snapshot {
    pub(super) revision: Revision,
    pub(super) compacted: Revision,
}

/// A half-open range of keys in byte order: `[start, end)`, `end` `None` meaning unbounded.
#[derive(Debug, Clone)]
pub(super) struct KeyRange {
    pub(super) start: Vec<u8>,
    pub(super) end: Option<Vec<u8>>,
}

impl KeyRange {
    pub(super) fn new(key: &str, prefix: bool) -> Self {
        let end = if prefix { prefix_end(key.as_bytes()) } else { Some(key_after(key).into()) };
        KeyRange { start: key.as_bytes().to_vec(), end }
    }

    pub(super) fn contains(&self, key: &str) -> bool {
        let key = key.as_bytes();
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|end| key < end)
    }
}

impl Db {
    pub(super) fn new(path: PathBuf, revision: Revision) -> Self {
        Db { path, revision: AtomicI64::new(revision), idle: Mutex::new(Vec::new()) }
    }

    /// Runs `read` in one read transaction on a pooled connection, off the async threads.
    pub(super) async fn read<T, F>(self: &std::sync::Arc<Self>, read: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Reader<'_>) -> Result<T> + Send + 'static,
    {
        let db = std::sync::Arc::clone(self);
        tokio::task::spawn_blocking(move || db.read_blocking(read))
            .await
            .map_err(|_| StoreError::Closed)?
    }

    pub(super) fn read_blocking<T>(
        &self,
        read: impl FnOnce(&Reader<'_>) -> Result<T>,
    ) -> Result<T> {
        let pooled = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => schema::open_reader(&self.path)?,
        };
        let outcome = (|| {
            let tx = conn.transaction().map_err(|e| self.sqlite(e))?;
            let outcome = read(&Reader { tx: &tx, path: &self.path, revision: &self.revision })?;
            tx.finish().map_err(|e| self.sqlite(e))?;
            Ok(outcome)
        })();
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(conn);
        outcome
    }

    pub(super) fn sqlite(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite { path: self.path.clone(), source }
    }

    /// Closes the idle read connections (a read in progress keeps its own until it ends).
    pub(super) fn close_readers(&self) {
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }
}

/// One read transaction.
pub(super) struct Reader<'a> {
    tx: &'a Transaction<'a>,
    path: &'a Path,
    /// The store's revision: raised to what this read observed, so that `current_revision`
    /// after a read never reports less than the read saw.
    revision: &'a AtomicI64,
}

impl Reader<'_> {
    fn sqlite(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite { path: self.path.to_owned(), source }
    }

    pub(super) fn snapshot(&self) -> Result<Snapshot> {
        let snapshot = self
            .tx
            .query_row("SELECT revision, compacted FROM meta WHERE id = 1", [], |row| {
                Ok(Snapshot { revision: row.get(0)?, compacted: row.get(1)? })
            })
            .map_err(|e| self.sqlite(e))?;
        self.revision.fetch_max(snapshot.revision, Ordering::AcqRel);
        Ok(snapshot)
    }

    /// Checks that the state as of `revision` is still (and already) known.
    pub(super) fn check_readable(&self, snapshot: Snapshot, revision: Revision) -> Result<()> {
        if revision > snapshot.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: snapshot.revision,
            });
        }
        if revision < snapshot.compacted {
            return Err(StoreError::Compacted {
                requested: revision,
                compacted: Some(snapshot.compacted),
            });
        }
        Ok(())
    }

    pub(super) fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> Result<(Option<KeyValue>, Revision)> {
        let snapshot = self.snapshot()?;
        // Revision 0 (or below) means "now", as in etcd.
        let Some(at) = revision.filter(|&at| at > 0 && at != snapshot.revision) else {
            let kv = self
                .tx
                .prepare_cached(
                    "SELECT c.key, l.rev, l.create_rev, l.lease, l.value
                     FROM current c JOIN log l ON l.rev = c.rev WHERE c.key = ?1",
                )
                .and_then(|mut stmt| stmt.query_row([key.as_bytes()], key_value).optional())
                .map_err(|e| self.sqlite(e))?;
            return Ok((kv, snapshot.revision));
        };
        self.check_readable(snapshot, at)?;
        let kv = self
            .tx
            .prepare_cached(
                "SELECT key, rev, create_rev, lease, value, deleted FROM log
                 WHERE key = ?1 AND rev <= ?2 ORDER BY rev DESC LIMIT 1",
            )
            .and_then(|mut stmt| {
                stmt.query_row(rusqlite::params![key.as_bytes(), at], live_key_value).optional()
            })
            .map_err(|e| self.sqlite(e))?
            .flatten();
        Ok((kv, at))
    }

    pub(super) fn range(&self, request: &RangeRequest) -> Result<RangeResult> {
        let snapshot = self.snapshot()?;
        let range = KeyRange::new(&request.prefix, true);
        let start = match &request.start {
            Some(start) if start.as_bytes() > range.start.as_slice() => start.as_bytes().to_vec(),
            _ => range.start.clone(),
        };
        let limit = request.limit.filter(|&limit| limit > 0);
        let at = request.revision.filter(|&at| at > 0).unwrap_or(snapshot.revision);
        // Reads one more than the limit, to learn whether a next page exists.
        let wanted = limit.map_or(usize::MAX, |limit| limit.saturating_add(1));
        let mut kvs = Vec::new();
        if at == snapshot.revision {
            let mut stmt = self
                .tx
                .prepare_cached(
                    "SELECT c.key, l.rev, l.create_rev, l.lease, l.value
                     FROM current c JOIN log l ON l.rev = c.rev
                     WHERE c.key >= ?1 AND (?2 IS NULL OR c.key < ?2) ORDER BY c.key LIMIT ?3",
                )
                .map_err(|e| self.sqlite(e))?;
            let sql_limit = i64::try_from(wanted).unwrap_or(-1);
            let rows = stmt
                .query_map(rusqlite::params![start, range.end, sql_limit], key_value)
                .map_err(|e| self.sqlite(e))?;
            for row in rows {
                kvs.push(row.map_err(|e| self.sqlite(e))?);
            }
        } else {
            self.check_readable(snapshot, at)?;
            // The newest version of each key at or below `at`; SQLite takes the bare columns
            // from the row that holds the max().
            let mut stmt = self
                .tx
                .prepare_cached(
                    "SELECT key, max(rev), create_rev, lease, value, deleted FROM log
                     WHERE key >= ?1 AND (?2 IS NULL OR key < ?2) AND rev <= ?3
                     GROUP BY key ORDER BY key",
                )
                .map_err(|e| self.sqlite(e))?;
            let mut rows =
                stmt.query(rusqlite::params![start, range.end, at]).map_err(|e| self.sqlite(e))?;
            while kvs.len() < wanted {
                let Some(row) = rows.next().map_err(|e| self.sqlite(e))? else { break };
                if let Some(kv) = live_key_value(row).map_err(|e| self.sqlite(e))? {
                    kvs.push(kv);
                }
            }
        }
        let next = match limit {
            Some(limit) if kvs.len() > limit => {
                kvs.truncate(limit);
                kvs.last().map(|kv| key_after(&kv.key))
            }
            _ => None,
        };
        Ok(RangeResult { kvs, revision: at, next })
    }

    /// Up to `limit` changes in `range` with revisions in `(after, upto]`, oldest first.
    pub(super) fn events(
        &self,
        range: &KeyRange,
        after: Revision,
        upto: Revision,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT l.key, l.rev, l.create_rev, l.lease, l.value, l.deleted,
                        p.key, p.rev, p.create_rev, p.lease, p.value
                 FROM log l LEFT JOIN log p ON p.rev = l.prev_rev
                 WHERE l.rev > ?1 AND l.rev <= ?2 AND l.key >= ?3 AND (?4 IS NULL OR l.key < ?4)
                 ORDER BY l.rev LIMIT ?5",
            )
            .map_err(|e| self.sqlite(e))?;
        let sql_limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(rusqlite::params![after, upto, range.start, range.end, sql_limit], |row| {
                let prev = match row.get::<_, Option<Vec<u8>>>(6)? {
                    Some(_) => Some(key_value_at(row, 6)?),
                    None => None,
                };
                let deleted: bool = row.get(5)?;
                let mut kv = key_value_at(row, 0)?;
                let kind = if deleted {
                    // A delete reports the key with an empty value, as etcd does.
                    kv.create_revision = 0;
                    kv.lease = None;
                    EventKind::Delete
                } else {
                    EventKind::Put
                };
                Ok(Event { kind, kv, prev })
            })
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.sqlite(e))
    }
}

/// Maps `key, rev, create_rev, lease, value` starting at column `first`.
pub(super) fn key_value_at(row: &Row<'_>, first: usize) -> rusqlite::Result<KeyValue> {
    let key: Vec<u8> = row.get(first)?;
    let key = String::from_utf8(key).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(first, rusqlite::types::Type::Blob, Box::new(e))
    })?;
    Ok(KeyValue {
        key,
        mod_revision: row.get(first + 1)?,
        create_revision: row.get(first + 2)?,
        lease: row.get(first + 3)?,
        value: Bytes::from(row.get::<_, Vec<u8>>(first + 4)?),
    })
}

fn key_value(row: &Row<'_>) -> rusqlite::Result<KeyValue> {
    key_value_at(row, 0)
}

/// Like `key_value`, with a sixth `deleted` column: `None` for a tombstone.
fn live_key_value(row: &Row<'_>) -> rusqlite::Result<Option<KeyValue>> {
    if row.get::<_, bool>(5)? { Ok(None) } else { key_value(row).map(Some) }
}

#[cfg(test)]
mod tests {
    use super::KeyRange;

    #[test]
    fn key_range_of_a_single_key_holds_only_that_key() {
        let range = KeyRange::new("/a/b", false);
        assert!(range.contains("/a/b"));
        assert!(!range.contains("/a/b/c"));
        assert!(!range.contains("/a/a"));
    }

    #[test]
    fn key_range_of_a_prefix_holds_the_keys_under_it() {
        let range = KeyRange::new("/a/", true);
        assert!(range.contains("/a/"));
        assert!(range.contains("/a/zzz"));
        assert!(!range.contains("/b"));
        assert!(KeyRange::new("", true).contains("anything"));
    }
}
