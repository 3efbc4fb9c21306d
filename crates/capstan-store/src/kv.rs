//! The values the store deals in: revisions, key-value pairs, events, range requests.

use bytes::Bytes;

/// A point in the store's history. One global counter: every successful create, update or
/// delete takes the next revision, which becomes the written key's `mod_revision` (and, at the
/// API, the object's `resourceVersion`). An empty store is at revision 1, as etcd is.
pub type Revision = i64;

/// Identifies a lease: keys attached to it are deleted when it expires or is revoked.
pub type LeaseId = i64;

/// The largest value a write accepts: 1.5 MiB, etcd's default request limit, so that a value
/// accepted by one backend is accepted by the other. Larger writes fail with
/// [`StoreError::ValueTooLarge`](crate::StoreError::ValueTooLarge).
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;

/// A key with its value as of some revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// The revision of the write that created the key (since it last did not exist).
    pub create_revision: Revision,
    /// The revision of the write that produced this value.
    pub mod_revision: Revision,
    /// The lease the key is attached to, if any.
    pub lease: Option<LeaseId>,
}

/// What a watch reports for one revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or updated.
    Put,
    /// The key was deleted (explicitly, or by its lease expiring).
    Delete,
}

/// One change, as delivered by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For a put, the new value. For a delete, the key with an empty value, its
    /// `mod_revision` being the revision of the delete.
    pub kv: KeyValue,
    /// The value the key had before this change, when the store still has it (history older
    /// than the compaction point may be gone).
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision this event happened at.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// What a successful delete reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// The revision of the delete.
    pub revision: Revision,
    /// The value the key had just before it was deleted.
    pub prev: KeyValue,
}

/// A read of all keys starting with `prefix`, in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeRequest {
    pub prefix: String,
    /// Start at this key (inclusive) instead of at `prefix`: the `next` of a previous page.
    pub start: Option<String>,
    /// At most this many keys; `None` or 0 reads them all.
    pub limit: Option<usize>,
    /// Read the state as of this revision; `None` reads the current state. Continuing a paged
    /// read passes the first page's `revision` so that every page shows one consistent state.
    pub revision: Option<Revision>,
}

/// One page of a range read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// The revision the read observed: the store's state at exactly this revision.
    pub revision: Revision,
    /// Where the next page starts, when the limit cut this page short.
    pub next: Option<String>,
}

/// The exclusive upper bound of the keys starting with `prefix` (the prefix with its last
/// byte incremented, dropping trailing 0xff bytes), or `None` when every key from `prefix` on
/// matches.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The key right after `key` in byte order: where the page after one ending at `key` starts.
pub(crate) fn key_after(key: &str) -> String {
    let mut next = String::with_capacity(key.len() + 1);
    next.push_str(key);
    next.push('\0');
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/pods/"), Some(b"/pods0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn key_after_sorts_right_after_the_key() {
        let next = key_after("/a");
        assert!(next.as_str() > "/a");
        assert!(next.as_str() < "/a\u{1}");
    }
}
