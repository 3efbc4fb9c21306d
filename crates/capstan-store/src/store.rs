//! The `Store` trait: the contract between the API server and a datastore backend.

use crate::{
    Deleted, KeyValue, LeaseId, RangeRequest, RangeResult, Result, Revision, WatchRequest, Watcher,
};
use async_trait::async_trait;
use bytes::Bytes;
use std::time::Duration;

/// A revisioned key-value store with watch: etcd's data model, which is what the Kubernetes
/// API server is built on.
///
/// Guarantees, which every backend must meet (the conformance suite checks them):
/// - **One global revision.** Each successful create, update or delete takes the next
///   revision; a failed one takes none. Revisions only grow, across restarts too.
/// - **Durable acknowledgement.** A write returns only once it is on stable storage; a write
///   that returned survives a crash of the process or the machine.
/// - **Compare-and-swap.** `update` and a guarded `delete` succeed only when the key is at the
///   expected revision, and otherwise fail with [`StoreError::Conflict`](crate::StoreError)
///   carrying the current value.
/// - **Consistent reads.** A read observes the state at exactly one revision, which it
///   reports; a read that starts after a write returned sees that write (reads never go back
///   in time).
/// - **History.** Reads at a past revision and watches from a past revision work until that
///   revision is compacted, then fail with `Compacted`.
/// - **Watch.** From a start revision, a watch delivers every later change under its key or
///   prefix exactly once, in revision order, with nothing skipped; progress notifications
///   report a revision up to which everything has been delivered.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// The current revision, read consistently: it is at least the revision of every write
    /// acknowledged before the call.
    async fn current_revision(&self) -> Result<Revision>;

    /// The key's value now, or as of `revision`; `None` when the key does not exist (then).
    /// Also returns the revision the read observed.
    async fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> Result<(Option<KeyValue>, Revision)>;

    /// One page of the keys under a prefix, in key order, all as of one revision.
    async fn range(&self, request: RangeRequest) -> Result<RangeResult>;

    /// Creates the key if it does not exist; fails with `AlreadyExists` otherwise.
    async fn create(&self, key: &str, value: Bytes, lease: Option<LeaseId>) -> Result<KeyValue>;

    /// Replaces the value of a key that is at revision `expected`.
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
        lease: Option<LeaseId>,
    ) -> Result<KeyValue>;

    /// Deletes a key, only if it is at revision `expected` when one is given.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Deleted>;

    /// Watches a key or a prefix from a start revision. The history may turn out to be
    /// compacted either at once (an `Err` here) or as the watcher's first item.
    async fn watch(&self, request: WatchRequest) -> Result<Watcher>;

    /// Forgets history older than `revision`: reads and watches below it then fail with
    /// `Compacted`; the state as of `revision` and later stays readable, and a watch from
    /// `revision` delivers its puts (a delete at exactly `revision` is forgotten with the
    /// history, as etcd does). Compacting to a revision at or below the current compaction
    /// point does nothing.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// Grants a lease that expires after `ttl` (rounded up to whole seconds, at least etcd's
    /// minimum of 2 s), deleting the keys attached to it.
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId>;

    /// Revokes a lease now, deleting the keys attached to it.
    async fn revoke_lease(&self, lease: LeaseId) -> Result<()>;
}

/// The lease TTL in whole seconds that both backends use for a requested duration.
pub(crate) fn lease_ttl_seconds(ttl: Duration) -> i64 {
    let rounded_up = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(rounded_up).unwrap_or(i64::MAX).max(2)
}

/// Rejects a value the store will not accept, identically for every backend.
pub(crate) fn check_value_size(key: &str, value: &[u8]) -> Result<()> {
    if value.len() > crate::MAX_VALUE_BYTES {
        return Err(crate::StoreError::ValueTooLarge {
            key: key.to_owned(),
            size: value.len(),
            limit: crate::MAX_VALUE_BYTES,
        });
    }
    Ok(())
}
