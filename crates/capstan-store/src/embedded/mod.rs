//! The embedded backend: one SQLite file in WAL mode, one writer thread doing group commit,
//! a pool of read-only connections, and watches fed by the writer's broadcast.

mod checkpoint;
mod reader;
mod schema;
mod watch;
mod writer;

use crate::store::{check_value_size, lease_ttl_seconds};
use crate::{
    Deleted, KeyValue, LeaseId, RangeRequest, RangeResult, Result, Revision, Store, StoreError,
    WatchRequest, Watcher,
};
use async_trait::async_trait;
use bytes::Bytes;
use reader::Db;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{broadcast, oneshot};
use writer::{CommittedBatch, WriteOp, WriteOutcome, WriteRequest, Writer};

/// The shortest lease-check or checkpoint interval honoured: shorter ones would spin.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// Commits remembered for watches that are following live; one that falls further behind
/// replays from the database.
const BROADCAST_BUFFER: usize = 1024;

/// How the embedded store is set up.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// The database file; its directory must exist.
    pub path: PathBuf,
    /// How often expired leases are looked for.
    pub lease_check_interval: Duration,
    /// How often the write-ahead log is copied into the database file in the background.
    pub checkpoint_interval: Duration,
}

impl EmbeddedConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        EmbeddedConfig {
            path: path.into(),
            lease_check_interval: Duration::from_millis(500),
            checkpoint_interval: Duration::from_millis(200),
        }
    }
}

/// The embedded datastore. Cloning is cheap; the store closes when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Arc<Db>,
    /// Unbounded, yet never longer than the number of callers: each waits for its answer.
    writes: std::sync::mpsc::Sender<WriteRequest>,
    events: broadcast::Sender<Arc<CommittedBatch>>,
    /// Dropped with the store, which tells the checkpoint thread to finish at once.
    _checkpointer: std::sync::mpsc::Sender<()>,
    /// Answered when the writer has closed the database and released its lock.
    writer_done: std::sync::Mutex<Option<oneshot::Receiver<()>>>,
}

impl EmbeddedStore {
    /// Opens the database at `config.path`, creating it if absent. A damaged file, or one that
    /// is not a Capstan datastore, is refused with [`StoreError::Corrupt`] naming the file; one
    /// that another store has open, with [`StoreError::InUse`].
    /// Must be called inside a tokio runtime.
    pub async fn open(config: EmbeddedConfig) -> Result<Self> {
        let path = config.path.clone();
        let (lock, conn, state) = tokio::task::spawn_blocking(move || {
            let lock = schema::lock(&path)?;
            let (conn, state) = schema::open_writer(&path)?;
            Ok::<_, StoreError>((lock, conn, state))
        })
        .await
        .map_err(|_| StoreError::Closed)??;
        let db = Arc::new(Db::new(config.path.clone(), state.revision));
        let (events, _) = broadcast::channel(BROADCAST_BUFFER);
        let (writes, requests) = std::sync::mpsc::channel();
        let next_lease_expiry = Arc::new(AtomicI64::new(i64::MIN));
        let (done, writer_done) = oneshot::channel();
        let wal_frames = Arc::new(AtomicI64::new(0));
        let mut conn = conn;
        let frames = Arc::clone(&wal_frames);
        conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
            frames.store(i64::from(pages), Ordering::Release);
            Ok(())
        }))
        .map_err(|source| StoreError::Sqlite { path: config.path.clone(), source })?;
        let writer = Writer {
            conn,
            lock,
            done,
            wal_frames,
            failed_restart_at: 0,
            db: Arc::clone(&db),
            events: events.clone(),
            next_lease_expiry: Arc::clone(&next_lease_expiry),
        };
        std::thread::Builder::new()
            .name("capstan-store-writer".into())
            .spawn(move || writer.run(requests))
            .map_err(|e| StoreError::Config(format!("cannot start the writer thread: {e}")))?;
        let checkpointer =
            checkpoint::spawn(&config.path, config.checkpoint_interval.max(MIN_INTERVAL))?;
        let inner = Arc::new(Inner {
            db,
            writes,
            events,
            _checkpointer: checkpointer,
            writer_done: std::sync::Mutex::new(Some(writer_done)),
        });
        tokio::spawn(expire_leases(
            Arc::downgrade(&inner),
            next_lease_expiry,
            config.lease_check_interval,
        ));
        tracing::info!(path = %config.path.display(), revision = state.revision,
            compacted = state.compacted, "embedded datastore open");
        Ok(EmbeddedStore { inner })
    }

    /// Closes the store and waits until the database is closed and its lock released, so
    /// that it can be opened again at once. If other clones of this store are alive, it waits
    /// until they are dropped too. Dropping a store closes it as well, without waiting.
    pub async fn close(self) {
        let done =
            self.inner.writer_done.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        drop(self);
        if let Some(done) = done {
            // An error means the writer thread is gone, which is what was waited for.
            let _ = done.await;
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.db.path
    }

    async fn write(&self, op: WriteOp) -> Result<WriteOutcome> {
        self.inner.write(op).await
    }
}

impl Inner {
    async fn write(&self, op: WriteOp) -> Result<WriteOutcome> {
        let (reply, outcome) = oneshot::channel();
        self.writes.send(WriteRequest { op, reply }).map_err(|_| StoreError::Closed)?;
        outcome.await.map_err(|_| StoreError::Closed)?
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.inner.db.revision.load(Ordering::Acquire))
    }

    async fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> Result<(Option<KeyValue>, Revision)> {
        let key = key.to_owned();
        self.inner.db.read(move |reader| reader.get(&key, revision)).await
    }

    async fn range(&self, request: RangeRequest) -> Result<RangeResult> {
        self.inner.db.read(move |reader| reader.range(&request)).await
    }

    async fn create(&self, key: &str, value: Bytes, lease: Option<LeaseId>) -> Result<KeyValue> {
        check_value_size(key, &value)?;
        match self.write(WriteOp::Create { key: key.to_owned(), value, lease }).await? {
            WriteOutcome::Put(kv) => Ok(kv),
            other => Err(unexpected(&other)),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
        lease: Option<LeaseId>,
    ) -> Result<KeyValue> {
        check_value_size(key, &value)?;
        match self.write(WriteOp::Update { key: key.to_owned(), value, expected, lease }).await? {
            WriteOutcome::Put(kv) => Ok(kv),
            other => Err(unexpected(&other)),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Deleted> {
        match self.write(WriteOp::Delete { key: key.to_owned(), expected }).await? {
            WriteOutcome::Deleted(deleted) => Ok(deleted),
            other => Err(unexpected(&other)),
        }
    }

    async fn watch(&self, request: WatchRequest) -> Result<Watcher> {
        watch::start(&self.inner.db, &self.inner.events, request)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.write(WriteOp::Compact { revision }).await.map(drop)
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        match self.write(WriteOp::GrantLease { ttl_seconds: lease_ttl_seconds(ttl) }).await? {
            WriteOutcome::Lease(lease) => Ok(lease),
            other => Err(unexpected(&other)),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        self.write(WriteOp::RevokeLease { lease }).await.map(drop)
    }
}

/// The writer answered a write with the outcome of another kind of write: a bug.
fn unexpected(outcome: &WriteOutcome) -> StoreError {
    StoreError::Config(format!("datastore writer answered with an unexpected {outcome:?}"))
}

/// Asks the writer to expire leases whenever the soonest one is due, until the store closes.
async fn expire_leases(store: Weak<Inner>, next_expiry: Arc<AtomicI64>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(store) = store.upgrade() else { return };
        // i64::MIN until the writer first looked: a lease may have expired while Capstan was
        // down.
        if next_expiry.load(Ordering::Acquire) > writer::now_ms() {
            continue;
        }
        match store.write(WriteOp::ExpireLeases).await {
            Ok(_) => {}
            Err(StoreError::Closed) => return,
            Err(error) => tracing::warn!(%error, "expiring datastore leases failed"),
        }
    }
}
