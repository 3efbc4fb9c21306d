//! Expectations, as upstream's `UIDTrackingControllerExpectations`: after a sync creates or
//! deletes pods for an owner, the owner's next syncs leave its pods alone until the pod watch
//! has shown every one of those changes (or five minutes passed). Without them a sync that
//! runs before the watch delivered its own creations would count too few pods and create
//! duplicates.
//!
//! Owners are keyed by uid, so that an owner deleted and created again under the same name
//! starts clean. Creations are counted (a pod's uid is unknown before it is created);
//! deletions are tracked by the uid of each pod, so that a deletion is counted once whether
//! the watch shows it as a deletion timestamp or as the pod's removal.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long expectations hold at most: a watch event lost for good must not stop an owner
/// forever.
pub(crate) const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// What one owner waits to see.
#[derive(Debug, Clone)]
struct Expectation {
    /// Pods created and not yet seen by the watch.
    creations: i64,
    /// Uids of pods deleted whose deletion the watch has not yet shown.
    deletions: HashSet<String>,
    /// When these were set, for the timeout.
    set_at: Instant,
}

impl Expectation {
    fn fulfilled(&self) -> bool {
        self.creations <= 0 && self.deletions.is_empty()
    }
}

/// The expectations of every owner of one kind, shared by the pod watch (which observes) and
/// the syncs (which expect and check).
#[derive(Debug, Default)]
pub(crate) struct Expectations {
    owners: Mutex<HashMap<String, Expectation>>,
}

impl Expectations {
    fn owners(&self) -> std::sync::MutexGuard<'_, HashMap<String, Expectation>> {
        // The map stays consistent whatever panicked while holding it: every change is one
        // insert, remove or counter update.
        self.owners.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the owner may create or delete pods now: it expects nothing more, or its
    /// expectations timed out.
    pub(crate) fn satisfied(&self, owner: &str, now: Instant) -> bool {
        match self.owners().get(owner) {
            None => true,
            Some(expectation) => {
                expectation.fulfilled()
                    || now.saturating_duration_since(expectation.set_at) > EXPECTATIONS_TIMEOUT
            }
        }
    }

    /// How long until unfulfilled expectations time out; `None` when they do not hold the
    /// owner back.
    pub(crate) fn time_left(&self, owner: &str, now: Instant) -> Option<Duration> {
        let owners = self.owners();
        let expectation = owners.get(owner).filter(|expectation| !expectation.fulfilled())?;
        let elapsed = now.saturating_duration_since(expectation.set_at);
        EXPECTATIONS_TIMEOUT.checked_sub(elapsed).filter(|left| !left.is_zero())
    }

    /// The owner is about to create `count` pods (replacing whatever it expected before).
    pub(crate) fn expect_creations(&self, owner: &str, count: usize, now: Instant) {
        let creations = i64::try_from(count).unwrap_or(i64::MAX);
        let expectation = Expectation { creations, deletions: HashSet::new(), set_at: now };
        self.owners().insert(owner.to_owned(), expectation);
    }

    /// The owner is about to delete the pods with these uids (replacing whatever it expected
    /// before).
    pub(crate) fn expect_deletions(&self, owner: &str, pods: HashSet<String>, now: Instant) {
        let expectation = Expectation { creations: 0, deletions: pods, set_at: now };
        self.owners().insert(owner.to_owned(), expectation);
    }

    /// The watch showed a new pod controlled by the owner (or a creation failed or was never
    /// attempted, and so will never be shown).
    pub(crate) fn creation_observed(&self, owner: &str) {
        if let Some(expectation) = self.owners().get_mut(owner) {
            expectation.creations -= 1;
        }
    }

    /// The watch showed the pod with this uid deleted or being deleted (or its deletion
    /// failed). Only pods the owner deleted count, each once.
    pub(crate) fn deletion_observed(&self, owner: &str, pod: &str) {
        if let Some(expectation) = self.owners().get_mut(owner) {
            expectation.deletions.remove(pod);
        }
    }

    /// The owner is gone: forget it.
    pub(crate) fn forget(&self, owner: &str) {
        self.owners().remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step of a scenario, at `seconds` after its start.
    #[derive(Debug, Clone)]
    enum Step {
        ExpectCreations(usize),
        ExpectDeletions(&'static [&'static str]),
        Created,
        Deleted(&'static str),
        Forget,
    }

    /// Runs `steps` for owner `o` and checks `satisfied` after each against `expected`.
    fn check(steps: &[(u64, Step)], expected: &[bool]) {
        let expectations = Expectations::default();
        let start = Instant::now();
        let mut got = Vec::new();
        for (seconds, step) in steps {
            let now = start + Duration::from_secs(*seconds);
            match step {
                Step::ExpectCreations(count) => expectations.expect_creations("o", *count, now),
                Step::ExpectDeletions(pods) => expectations.expect_deletions(
                    "o",
                    pods.iter().map(|pod| pod.to_string()).collect(),
                    now,
                ),
                Step::Created => expectations.creation_observed("o"),
                Step::Deleted(pod) => expectations.deletion_observed("o", pod),
                Step::Forget => expectations.forget("o"),
            }
            got.push(expectations.satisfied("o", now));
        }
        assert_eq!(got, expected, "{steps:?}");
    }

    #[test]
    fn creations_hold_until_observed() {
        use Step::*;
        check(
            &[(0, ExpectCreations(3)), (1, Created), (2, Created), (3, Created), (4, Created)],
            &[false, false, false, true, true],
        );
        check(&[(0, ExpectCreations(0))], &[true]);
        // A new expectation replaces the old one.
        check(
            &[(0, ExpectCreations(2)), (1, ExpectCreations(1)), (2, Created)],
            &[false, false, true],
        );
    }

    #[test]
    fn deletions_count_each_pod_once() {
        use Step::*;
        check(
            &[
                (0, ExpectDeletions(&["a", "b"])),
                (1, Deleted("a")),
                // The deletion timestamp and then the removal of the same pod.
                (2, Deleted("a")),
                // A pod this owner did not delete.
                (3, Deleted("c")),
                (4, Deleted("b")),
            ],
            &[false, false, false, false, true],
        );
    }

    #[test]
    fn expectations_time_out_after_five_minutes() {
        use Step::*;
        check(
            &[(0, ExpectCreations(1)), (300, Deleted("x")), (301, Deleted("x"))],
            &[false, false, true],
        );
        check(&[(0, ExpectDeletions(&["a"])), (301, Created)], &[false, true]);
    }

    #[test]
    fn unknown_and_forgotten_owners_are_satisfied() {
        use Step::*;
        check(&[(0, Created), (0, Deleted("a"))], &[true, true]);
        check(&[(0, ExpectCreations(5)), (1, Forget), (2, Created)], &[false, true, true]);
    }

    #[test]
    fn time_left_counts_down_while_unfulfilled() {
        let expectations = Expectations::default();
        let start = Instant::now();
        assert_eq!(expectations.time_left("o", start), None);
        expectations.expect_creations("o", 1, start);
        let later = start + Duration::from_secs(100);
        assert_eq!(expectations.time_left("o", later), Some(Duration::from_secs(200)));
        assert_eq!(expectations.time_left("o", start + Duration::from_secs(400)), None);
        expectations.creation_observed("o");
        assert_eq!(expectations.time_left("o", later), None);
    }
}
