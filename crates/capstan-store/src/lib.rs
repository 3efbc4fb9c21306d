//! Capstan's datastore: a revisioned key-value store with watch, the contract every backend
//! honours, and the two backends.
//!
//! The [`Store`] trait is the whole contract (see its documentation for the guarantees). Two
//! backends implement it:
//! - [`EmbeddedStore`], the default: SQLite in WAL mode with group commit, one file under the
//!   data directory;
//! - [`EtcdStore`]: an etcd v3 cluster, whose revision is Capstan's revision.
//!
//! Both pass one conformance suite (`tests/conformance.rs`) unchanged. Callers pick a backend
//! with a [`DatastoreEndpoint`] and [`open`], and from then on only see `dyn Store`.

mod embedded;
mod endpoint;
mod error;
mod etcd;
mod kv;
mod store;
mod watch;

pub use embedded::{EmbeddedConfig, EmbeddedStore};
pub use endpoint::{DatastoreEndpoint, open};
pub use error::StoreError;
pub use etcd::{EtcdConfig, EtcdStore};
pub use kv::{
    Deleted, Event, EventKind, KeyValue, LeaseId, MAX_VALUE_BYTES, RangeRequest, RangeResult,
    Revision,
};
pub use store::Store;
pub use watch::{WatchRequest, WatchResponse, Watcher};

/// The result type of every store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
