//! The embedded store's single writer: a thread that owns the write connection and commits
//! every write queued while the previous commit was syncing as one transaction (group
//! commit), so concurrent writers share one fsync. A write is answered only after the commit
//! that holds it has returned, that is after its fsync.

use super::checkpoint;
use super::reader::{Db, key_value_at};
use crate::{Deleted, Event, EventKind, KeyValue, LeaseId, Result, Revision, StoreError};
use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, oneshot};

/// Most writes committed in one transaction: bounds the latency one commit adds to the writes
/// queued behind it.
const MAX_BATCH: usize = 1024;

/// Longest a batch waits for writers to come back (see `Writer::gather`).
const MAX_LINGER: Duration = Duration::from_micros(150);

/// A change to make, as queued for the writer.
#[derive(Debug)]
pub(super) enum WriteOp {
    Create {
        key: String,
        value: Bytes,
        lease: Option<LeaseId>,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
        lease: Option<LeaseId>,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    GrantLease {
        ttl_seconds: i64,
    },
    RevokeLease {
        lease: LeaseId,
    },
    /// Deletes the keys of every lease whose time is up, then the leases.
    ExpireLeases,
    Compact {
        revision: Revision,
    },
}

/// What a write produced.
#[derive(Debug)]
pub(super) enum WriteOutcome {
    Put(KeyValue),
    Deleted(Deleted),
    Lease(LeaseId),
    Done,
}

#[derive(Debug)]
pub(super) struct WriteRequest {
    pub(super) op: WriteOp,
    pub(super) reply: oneshot::Sender<Result<WriteOutcome>>,
}

/// The changes of one commit, in revision order, as broadcast to watches.
#[derive(Debug)]
pub(super) struct CommittedBatch {
    /// The store's revision after the commit.
    pub(super) revision: Revision,
    pub(super) events: Vec<Event>,
}

/// The writer's state that outlives one commit.
pub(super) struct Writer {
    pub(super) conn: Connection,
    /// The lock that makes this the database's only writer; released after the connection
    /// closed.
    pub(super) lock: std::fs::File,
    /// Told once the connection is closed and the lock released.
    pub(super) done: oneshot::Sender<()>,
    /// Frames in the write-ahead log after the last commit, as SQLite's WAL hook reports.
    pub(super) wal_frames: Arc<std::sync::atomic::AtomicI64>,
    /// The log length at the last restart that could not finish (a reader still needed old
    /// frames); the next try waits for the log to grow a little more.
    pub(super) failed_restart_at: i64,
    pub(super) db: Arc<Db>,
    pub(super) events: broadcast::Sender<Arc<CommittedBatch>>,
    /// When the soonest lease expires (ms since the epoch), for the expiry ticker.
    pub(super) next_lease_expiry: Arc<std::sync::atomic::AtomicI64>,
}

/// What one transaction accumulates.
struct Batch {
    revision: Revision,
    events: Vec<Event>,
    now_ms: i64,
    /// Whether a lease was granted or ended, so the next expiry must be looked up again.
    leases_changed: bool,
}

impl Writer {
    /// Serves write requests until every sender is gone.
    pub(super) fn run(mut self, requests: mpsc::Receiver<WriteRequest>) {
        let mut previous_batch = 1;
        while let Ok(first) = requests.recv() {
            let queued = gather(first, &requests, previous_batch);
            previous_batch = queued.len();
            self.commit(queued);
            self.restart_log_if_due();
        }
        // The store is closed. Readers go first, so that the last connection to close is a
        // read-write one, which folds the write-ahead log into the file and removes it.
        self.db.close_readers();
        if let Err(error) = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
            tracing::warn!(path = %self.db.path.display(), %error, "final datastore checkpoint failed");
        }
        let Writer { conn, lock, done, db, .. } = self;
        drop(conn);
        drop(lock);
        tracing::debug!(path = %db.path.display(), "datastore writer stopped");
        let _ = done.send(());
    }

    fn commit(&mut self, queued: Vec<WriteRequest>) {
        let revision = self.db.revision.load(Ordering::Acquire);
        let mut batch =
            Batch { revision, events: Vec::new(), now_ms: now_ms(), leases_changed: false };
        let applied = (|| -> rusqlite::Result<Vec<Result<WriteOutcome>>> {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let outcomes = queued
                .iter()
                .map(|request| apply(&tx, &request.op, &mut batch))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            if batch.revision != revision {
                tx.execute("UPDATE meta SET revision = ?1 WHERE id = 1", [batch.revision])?;
            }
            tx.commit()?;
            Ok(outcomes)
        })();
        match applied {
            Ok(outcomes) => {
                self.db.revision.store(batch.revision, Ordering::Release);
                if batch.leases_changed {
                    self.refresh_next_lease_expiry();
                }
                if !batch.events.is_empty() {
                    let committed =
                        CommittedBatch { revision: batch.revision, events: batch.events };
                    // No receivers just means no watches.
                    let _ = self.events.send(Arc::new(committed));
                }
                for (request, outcome) in queued.into_iter().zip(outcomes) {
                    let _ = request.reply.send(outcome);
                }
            }
            Err(error) => {
                // The transaction rolled back: nothing of this batch happened.
                tracing::error!(path = %self.db.path.display(), %error, writes = queued.len(),
                    "datastore commit failed");
                let message = error.to_string();
                for request in queued {
                    let failure = rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                        Some(message.clone()),
                    );
                    let _ = request.reply.send(Err(self.db.sqlite(failure)));
                }
            }
        }
    }

    /// Restarts the write-ahead log once it is long (see `checkpoint`): between batches, after
    /// the previous batch was answered, so that only the next batch waits for it.
    fn restart_log_if_due(&mut self) {
        let frames = self.wal_frames.load(Ordering::Acquire);
        if frames < checkpoint::RESTART_AFTER_FRAMES
            || frames < self.failed_restart_at + checkpoint::RESTART_AFTER_FRAMES / 4
        {
            return;
        }
        let started = Instant::now();
        let restart =
            self.conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |row| row.get::<_, i64>(0));
        match restart {
            Ok(0) => {
                self.failed_restart_at = 0;
                tracing::debug!(frames, took = ?started.elapsed(), "datastore log restarted");
            }
            Ok(_busy) => self.failed_restart_at = frames,
            Err(error) => {
                self.failed_restart_at = frames;
                tracing::warn!(path = %self.db.path.display(), %error,
                    "restarting the datastore log failed");
            }
        }
    }

    fn refresh_next_lease_expiry(&self) {
        let next: rusqlite::Result<Option<i64>> =
            self.conn.query_row("SELECT min(expires_at_ms) FROM lease", [], |row| row.get(0));
        match next {
            Ok(next) => self.next_lease_expiry.store(next.unwrap_or(i64::MAX), Ordering::Release),
            // Keeps the previous value: the ticker then looks again at the next tick.
            Err(error) => tracing::warn!(%error, "looking up the next lease expiry failed"),
        }
    }
}

/// Collects the writes for one transaction: everything queued, and, when the previous batch
/// was larger, up to `MAX_LINGER` more waiting for it to fill again. Writers answered by the
/// previous commit come back within microseconds; without the wait they would straggle into a
/// run of small commits, each paying a whole fsync. A lone writer never waits.
fn gather(
    first: WriteRequest,
    requests: &mpsc::Receiver<WriteRequest>,
    previous_batch: usize,
) -> Vec<WriteRequest> {
    let mut queued = vec![first];
    queued.extend(requests.try_iter().take(MAX_BATCH - 1));
    // Sleeps rather than spins while waiting: on a small machine the writers that are about
    // to come back need this core.
    let deadline = Instant::now() + MAX_LINGER;
    while queued.len() < previous_batch.min(MAX_BATCH) {
        let left = deadline.saturating_duration_since(Instant::now());
        match requests.recv_timeout(left) {
            Ok(request) => queued.push(request),
            Err(_) => break,
        }
    }
    queued
}

/// Applies one write inside the batch's transaction. The outer error aborts the whole batch
/// (SQLite failed); the inner one is this write's own outcome (a conflict, say).
fn apply(
    tx: &Transaction<'_>,
    op: &WriteOp,
    batch: &mut Batch,
) -> rusqlite::Result<Result<WriteOutcome>> {
    match op {
        WriteOp::Create { key, value, lease } => {
            if let Some(current) = current(tx, key)? {
                return Ok(Err(StoreError::AlreadyExists {
                    key: key.clone(),
                    current: Box::new(current),
                }));
            }
            if let Some(error) = missing_lease(tx, *lease)? {
                return Ok(Err(error));
            }
            let kv = put(tx, batch, key, value, *lease, None)?;
            Ok(Ok(WriteOutcome::Put(kv)))
        }
        WriteOp::Update { key, value, expected, lease } => {
            let current = match guarded_current(tx, key, Some(*expected))? {
                Ok(current) => current,
                Err(error) => return Ok(Err(error)),
            };
            if let Some(error) = missing_lease(tx, *lease)? {
                return Ok(Err(error));
            }
            let kv = put(tx, batch, key, value, *lease, Some(current))?;
            Ok(Ok(WriteOutcome::Put(kv)))
        }
        WriteOp::Delete { key, expected } => {
            let current = match guarded_current(tx, key, *expected)? {
                Ok(current) => current,
                Err(error) => return Ok(Err(error)),
            };
            let deleted = delete(tx, batch, current)?;
            Ok(Ok(WriteOutcome::Deleted(deleted)))
        }
        WriteOp::GrantLease { ttl_seconds } => {
            batch.leases_changed = true;
            tx.execute(
                "INSERT INTO lease (ttl_seconds, expires_at_ms) VALUES (?1, ?2)",
                params![ttl_seconds, batch.now_ms.saturating_add(ttl_seconds.saturating_mul(1000))],
            )?;
            Ok(Ok(WriteOutcome::Lease(tx.last_insert_rowid())))
        }
        WriteOp::RevokeLease { lease } => {
            if let Some(error) = missing_lease(tx, Some(*lease))? {
                return Ok(Err(error));
            }
            end_lease(tx, batch, *lease)?;
            Ok(Ok(WriteOutcome::Done))
        }
        WriteOp::ExpireLeases => {
            // Even when nothing expired: the ticker learns when to look next.
            batch.leases_changed = true;
            let expired: Vec<LeaseId> = tx
                .prepare_cached("SELECT id FROM lease WHERE expires_at_ms <= ?1 ORDER BY id")?
                .query_map([batch.now_ms], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for lease in expired {
                end_lease(tx, batch, lease)?;
            }
            Ok(Ok(WriteOutcome::Done))
        }
        WriteOp::Compact { revision } => compact(tx, batch, *revision),
    }
}

/// The key's current value, if it exists.
fn current(tx: &Transaction<'_>, key: &str) -> rusqlite::Result<Option<KeyValue>> {
    tx.prepare_cached(
        "SELECT c.key, l.rev, l.create_rev, l.lease, l.value
         FROM current c JOIN log l ON l.rev = c.rev WHERE c.key = ?1",
    )?
    .query_row([key.as_bytes()], |row| key_value_at(row, 0))
    .optional()
}

/// The key's current value when it exists and is at `expected` (if given), else the error
/// the write gets.
fn guarded_current(
    tx: &Transaction<'_>,
    key: &str,
    expected: Option<Revision>,
) -> rusqlite::Result<Result<KeyValue>> {
    Ok(match current(tx, key)? {
        None => Err(StoreError::NotFound { key: key.to_owned() }),
        Some(current) => match expected {
            Some(expected) if expected != current.mod_revision => Err(StoreError::Conflict {
                key: key.to_owned(),
                expected,
                current: Box::new(current),
            }),
            _ => Ok(current),
        },
    })
}

fn missing_lease(
    tx: &Transaction<'_>,
    lease: Option<LeaseId>,
) -> rusqlite::Result<Option<StoreError>> {
    let Some(lease) = lease else { return Ok(None) };
    let exists = tx
        .prepare_cached("SELECT 1 FROM lease WHERE id = ?1")?
        .query_row([lease], |_| Ok(()))
        .optional()?
        .is_some();
    Ok((!exists).then_some(StoreError::LeaseNotFound(lease)))
}

/// Writes a new value at the next revision.
fn put(
    tx: &Transaction<'_>,
    batch: &mut Batch,
    key: &str,
    value: &Bytes,
    lease: Option<LeaseId>,
    prev: Option<KeyValue>,
) -> rusqlite::Result<KeyValue> {
    batch.revision += 1;
    let revision = batch.revision;
    let create_revision = prev.as_ref().map_or(revision, |prev| prev.create_revision);
    tx.prepare_cached(
        "INSERT INTO log (rev, key, deleted, create_rev, prev_rev, lease, value)
         VALUES (?1, ?2, 0, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        revision,
        key.as_bytes(),
        create_revision,
        prev.as_ref().map(|prev| prev.mod_revision),
        lease,
        value.as_ref()
    ])?;
    tx.prepare_cached("INSERT OR REPLACE INTO current (key, rev, lease) VALUES (?1, ?2, ?3)")?
        .execute(params![key.as_bytes(), revision, lease])?;
    let kv = KeyValue {
        key: key.to_owned(),
        value: value.clone(),
        create_revision,
        mod_revision: revision,
        lease,
    };
    batch.events.push(Event { kind: EventKind::Put, kv: kv.clone(), prev });
    Ok(kv)
}

/// Deletes a key at the next revision, leaving a tombstone in the log for watches.
fn delete(tx: &Transaction<'_>, batch: &mut Batch, current: KeyValue) -> rusqlite::Result<Deleted> {
    batch.revision += 1;
    let revision = batch.revision;
    tx.prepare_cached(
        "INSERT INTO log (rev, key, deleted, create_rev, prev_rev, lease, value)
         VALUES (?1, ?2, 1, ?3, ?4, NULL, x'')",
    )?
    .execute(params![
        revision,
        current.key.as_bytes(),
        current.create_revision,
        current.mod_revision
    ])?;
    tx.prepare_cached("DELETE FROM current WHERE key = ?1")?.execute([current.key.as_bytes()])?;
    let tombstone = KeyValue {
        key: current.key.clone(),
        value: Bytes::new(),
        create_revision: 0,
        mod_revision: revision,
        lease: None,
    };
    batch.events.push(Event {
        kind: EventKind::Delete,
        kv: tombstone,
        prev: Some(current.clone()),
    });
    Ok(Deleted { revision, prev: current })
}

/// Deletes every key attached to a lease, then the lease.
fn end_lease(tx: &Transaction<'_>, batch: &mut Batch, lease: LeaseId) -> rusqlite::Result<()> {
    batch.leases_changed = true;
    let attached: Vec<KeyValue> = tx
        .prepare_cached(
            "SELECT c.key, l.rev, l.create_rev, l.lease, l.value
             FROM current c JOIN log l ON l.rev = c.rev WHERE c.lease = ?1 ORDER BY c.key",
        )?
        .query_map([lease], |row| key_value_at(row, 0))?
        .collect::<rusqlite::Result<_>>()?;
    for kv in attached {
        delete(tx, batch, kv)?;
    }
    tx.execute("DELETE FROM lease WHERE id = ?1", [lease])?;
    Ok(())
}

/// Drops the history older than `revision`: every version superseded at or before it, and
/// every tombstone at or below it (a delete at exactly `revision` goes too, as in etcd). The
/// newest live version of each key as of `revision` stays, so the state at `revision` remains
/// readable.
fn compact(
    tx: &Transaction<'_>,
    batch: &mut Batch,
    revision: Revision,
) -> rusqlite::Result<Result<WriteOutcome>> {
    if revision > batch.revision {
        return Ok(Err(StoreError::FutureRevision {
            requested: revision,
            current: batch.revision,
        }));
    }
    let compacted: Revision =
        tx.query_row("SELECT compacted FROM meta WHERE id = 1", [], |row| row.get(0))?;
    if revision <= compacted {
        return Ok(Ok(WriteOutcome::Done));
    }
    let removed = tx.execute(
        "DELETE FROM log WHERE rev IN (
            SELECT old.rev FROM log old
            WHERE old.rev <= ?1 AND (old.deleted = 1 OR EXISTS (
                SELECT 1 FROM log newer
                WHERE newer.key = old.key AND newer.rev > old.rev AND newer.rev <= ?1)))",
        [revision],
    )?;
    tx.execute("UPDATE meta SET compacted = ?1 WHERE id = 1", [revision])?;
    tracing::debug!(revision, removed, "datastore compacted");
    Ok(Ok(WriteOutcome::Done))
}

pub(super) fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}
