//! The store's errors: the outcomes a caller acts on (conflicts, compaction, size) and the
//! failures it can only report.

use crate::{KeyValue, LeaseId, Revision};
use std::path::PathBuf;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `create` found the key already present.
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String, current: Box<KeyValue> },

    /// `update` or `delete` expected a revision the key no longer has; `current` is what the
    /// key holds now.
    #[error("key {key:?} is at revision {}, not the expected {expected}", current.mod_revision)]
    Conflict { key: String, expected: Revision, current: Box<KeyValue> },

    /// `update` or `delete` of a key that does not exist.
    #[error("key {key:?} not found")]
    NotFound { key: String },

    /// The requested revision is older than the compaction point: that history is gone. A
    /// watch that gets this must re-list and watch again from the list's revision.
    #[error("revision {requested} has been compacted")]
    Compacted { requested: Revision, compacted: Option<Revision> },

    /// A read asked for a revision the store has not reached yet.
    #[error("revision {requested} is in the future (current revision is {current})")]
    FutureRevision { requested: Revision, current: Revision },

    /// A value over [`MAX_VALUE_BYTES`](crate::MAX_VALUE_BYTES).
    #[error("value for key {key:?} is {size} bytes, over the {limit}-byte limit")]
    ValueTooLarge { key: String, size: usize, limit: usize },

    /// etcd refused a write within Capstan's value limit as too large: its members run with
    /// a `--max-request-bytes` below the 2 MiB that Capstan's 1.5 MiB values need.
    #[error(
        "etcd refused the write of key {key:?} as too large; start etcd with --max-request-bytes=2097152 or more"
    )]
    RequestTooLarge { key: String },

    /// A write named a lease that does not exist (never granted, expired or revoked).
    #[error("lease {0} not found")]
    LeaseNotFound(LeaseId),

    /// The embedded database file is damaged, or not a Capstan database: the store refuses to
    /// open it rather than serve wrong data.
    #[error("datastore file {path} is unusable: {reason}")]
    Corrupt { path: PathBuf, reason: String },

    /// Another store (in this process or another) has the embedded database open.
    #[error("datastore file {path} is in use by another Capstan (it holds the lock {lock})")]
    InUse { path: PathBuf, lock: PathBuf },

    /// An invalid datastore endpoint or configuration.
    #[error("invalid datastore configuration: {0}")]
    Config(String),

    /// The embedded database failed.
    #[error("sqlite datastore {path} failed")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    /// The etcd cluster failed or could not be reached.
    #[error("etcd datastore failed")]
    Etcd(#[source] etcd_client::Error),

    /// etcd answered something that breaks the protocol's promises.
    #[error("etcd datastore: {0}")]
    EtcdProtocol(String),

    /// The store was closed, or its background task died.
    #[error("datastore is closed")]
    Closed,
}

impl From<etcd_client::Error> for StoreError {
    fn from(source: etcd_client::Error) -> Self {
        StoreError::Etcd(source)
    }
}
