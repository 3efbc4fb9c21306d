//! The delay before a Job replaces failed pods: 10 s after the first failure since the last
//! success, doubling with each further failure up to 10 minutes, as upstream's pod failure
//! back-off.

use crate::job::pods::finish_time;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use std::time::Duration;

/// The delay after the first failure.
const BASE: Duration = Duration::from_secs(10);
/// The longest delay.
const MAX: Duration = Duration::from_secs(10 * 60);

/// Failures since the last success, and when the last of them happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BackoffRecord {
    pub(crate) failures_after_last_success: u32,
    pub(crate) last_failure: Option<Timestamp>,
}

impl BackoffRecord {
    /// The record once the newly finished pods are taken into account: a success resets it,
    /// except for failures that happened after the latest success.
    pub(crate) fn updated(&self, new_succeeded: &[&Pod], new_failed: &[&Pod]) -> BackoffRecord {
        let mut failures: Vec<Timestamp> = new_failed.iter().map(|p| finish_time(p)).collect();
        failures.sort_unstable();
        let last_success = new_succeeded.iter().map(|p| finish_time(p)).max();
        match last_success {
            None if failures.is_empty() => self.clone(),
            None => BackoffRecord {
                failures_after_last_success: self.failures_after_last_success
                    + failures.len() as u32,
                last_failure: failures.last().copied(),
            },
            Some(success) => {
                let after: Vec<Timestamp> = failures.into_iter().filter(|f| *f > success).collect();
                BackoffRecord {
                    failures_after_last_success: after.len() as u32,
                    last_failure: after.last().copied(),
                }
            }
        }
    }

    /// How long to wait, from `now`, before creating replacement pods.
    pub(crate) fn remaining(&self, now: Timestamp) -> Duration {
        let Some(last) = self.last_failure else { return Duration::ZERO };
        if self.failures_after_last_success == 0 {
            return Duration::ZERO;
        }
        let mut delay = BASE;
        for _ in 1..self.failures_after_last_success {
            delay = (delay * 2).min(MAX);
            if delay == MAX {
                break;
            }
        }
        let elapsed = Duration::try_from(now.duration_since(last)).unwrap_or(Duration::ZERO);
        delay.saturating_sub(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn finished(name: &str, at: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "creationTimestamp": at},
            "status": {"conditions": [{"type": "Ready", "status": "False",
                "lastTransitionTime": at}]}}))
        .unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn check(record: &BackoffRecord, now: &str, expected_secs: u64) {
        assert_eq!(record.remaining(at(now)), Duration::from_secs(expected_secs), "{record:?}");
    }

    #[test]
    fn failures_double_the_delay_and_successes_reset_it() {
        let f1 = finished("f1", "2026-01-01T00:00:00Z");
        let f2 = finished("f2", "2026-01-01T00:00:10Z");
        let s1 = finished("s1", "2026-01-01T00:00:05Z");
        let empty = BackoffRecord::default();
        check(&empty, "2026-01-01T00:00:00Z", 0);
        let one = empty.updated(&[], &[&f1]);
        check(&one, "2026-01-01T00:00:00Z", 10);
        check(&one, "2026-01-01T00:00:04Z", 6);
        check(&one, "2026-01-01T00:01:00Z", 0);
        let two = one.updated(&[], &[&f2]);
        assert_eq!(two.failures_after_last_success, 2);
        check(&two, "2026-01-01T00:00:10Z", 20);
        // A success between the two failures leaves only the later one.
        let mixed = empty.updated(&[&s1], &[&f1, &f2]);
        assert_eq!(
            mixed,
            BackoffRecord {
                failures_after_last_success: 1,
                last_failure: Some(at("2026-01-01T00:00:10Z"))
            }
        );
        assert_eq!(two.updated(&[&finished("s2", "2026-01-01T00:00:20Z")], &[]), empty);
        let many = BackoffRecord {
            failures_after_last_success: 30,
            last_failure: Some(at("2026-01-01T00:00:00Z")),
        };
        check(&many, "2026-01-01T00:00:00Z", 600);
    }
}
