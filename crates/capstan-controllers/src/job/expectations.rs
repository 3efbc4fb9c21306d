//! What the Job controller has asked for and not yet seen in its pod watch, so that a slow
//! watch never makes it create (or delete) the same pods twice: pending creations and
//! deletions per Job, as upstream's `ControllerExpectations` (forgotten after five minutes,
//! in case an event was lost), and pods whose tracking finalizer it removed.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// After this long, expectations are assumed lost and the Job is synced regardless.
const EXPIRY: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, Copy)]
struct Pending {
    creations: i64,
    deletions: i64,
    since: Instant,
}

/// Pending pod creations and deletions, and finalizer removals, by Job key
/// (`namespace/name`).
#[derive(Debug, Default)]
pub(crate) struct Expectations {
    pods: Mutex<HashMap<String, Pending>>,
    finalizers: Mutex<HashMap<String, HashSet<String>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the maps whole, so a poisoned lock holds valid data.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Expectations {
    /// Whether everything asked for has been observed (or waited for too long).
    pub(crate) fn satisfied(&self, key: &str) -> bool {
        lock(&self.pods).get(key).is_none_or(|pending| {
            (pending.creations <= 0 && pending.deletions <= 0) || pending.since.elapsed() > EXPIRY
        })
    }

    /// Expects `count` new pods (replacing earlier expectations, which were satisfied).
    pub(crate) fn expect_creations(&self, key: &str, count: usize) {
        let pending = Pending { creations: count as i64, deletions: 0, since: Instant::now() };
        lock(&self.pods).insert(key.to_owned(), pending);
    }

    /// Expects `count` pods to be marked deleted or to go.
    pub(crate) fn expect_deletions(&self, key: &str, count: usize) {
        let pending = Pending { creations: 0, deletions: count as i64, since: Instant::now() };
        lock(&self.pods).insert(key.to_owned(), pending);
    }

    /// A pod of the Job appeared (or a creation failed and will never appear).
    pub(crate) fn creation_observed(&self, key: &str) {
        if let Some(pending) = lock(&self.pods).get_mut(key) {
            pending.creations -= 1;
        }
    }

    /// A pod of the Job was marked deleted or went (or a deletion failed).
    pub(crate) fn deletion_observed(&self, key: &str) {
        if let Some(pending) = lock(&self.pods).get_mut(key) {
            pending.deletions -= 1;
        }
    }

    /// Expects the finalizers of these pods to be seen removed.
    pub(crate) fn expect_finalizers_removed(
        &self,
        key: &str,
        uids: impl IntoIterator<Item = String>,
    ) {
        lock(&self.finalizers).entry(key.to_owned()).or_default().extend(uids);
    }

    /// The pod's finalizer is seen gone (or its removal failed).
    pub(crate) fn finalizer_removal_observed(&self, key: &str, uid: &str) {
        let mut finalizers = lock(&self.finalizers);
        if let Some(uids) = finalizers.get_mut(key) {
            uids.remove(uid);
            if uids.is_empty() {
                finalizers.remove(key);
            }
        }
    }

    /// Pods whose finalizer removal has not been seen yet.
    pub(crate) fn finalizers_going(&self, key: &str) -> HashSet<String> {
        lock(&self.finalizers).get(key).cloned().unwrap_or_default()
    }

    /// Forgets a deleted Job.
    pub(crate) fn forget(&self, key: &str) {
        lock(&self.pods).remove(key);
        lock(&self.finalizers).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_are_satisfied_once_observed() {
        let expectations = Expectations::default();
        assert!(expectations.satisfied("d/j"));
        expectations.expect_creations("d/j", 2);
        assert!(!expectations.satisfied("d/j"));
        expectations.creation_observed("d/j");
        assert!(!expectations.satisfied("d/j"));
        expectations.creation_observed("d/j");
        assert!(expectations.satisfied("d/j"));
        expectations.expect_deletions("d/j", 1);
        assert!(!expectations.satisfied("d/j"));
        expectations.deletion_observed("d/j");
        assert!(expectations.satisfied("d/j"));
        // Observations of other Jobs change nothing.
        expectations.expect_creations("d/j", 1);
        expectations.creation_observed("d/other");
        assert!(!expectations.satisfied("d/j"));
        expectations.forget("d/j");
        assert!(expectations.satisfied("d/j"));

        expectations.expect_finalizers_removed("d/j", ["a".to_owned(), "b".to_owned()]);
        expectations.finalizer_removal_observed("d/j", "a");
        assert_eq!(expectations.finalizers_going("d/j"), HashSet::from(["b".to_owned()]));
        expectations.finalizer_removal_observed("d/j", "b");
        assert!(expectations.finalizers_going("d/j").is_empty());
    }
}
