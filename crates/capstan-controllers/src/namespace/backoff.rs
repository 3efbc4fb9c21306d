//! Per-object retry delays after failed reconciles, as upstream's default controller rate
//! limiter spaces the retries of one work-queue key: 5 ms, doubling with every consecutive
//! failure, at most 1000 s, and back to the start once a reconcile succeeds.
//!
//! kube-runtime leaves the delay after an error to `error_policy`, which sees neither how
//! often the object failed nor when it last succeeded; this keeps that count. The
//! namespace-scoped controllers (service accounts, the root CA, namespace deletion) share it.

use kube::runtime::controller::Action;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// The first retry delay.
const BASE: Duration = Duration::from_millis(5);
/// The longest retry delay.
const MAX: Duration = Duration::from_secs(1000);

/// Consecutive failures per object key.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Counts one more failure of `key` and returns how long to wait before retrying it.
    pub(crate) fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let count = failures.entry(key.to_owned()).or_default();
        let delay = delay_after(*count);
        *count = count.saturating_add(1);
        delay
    }

    /// What `error_policy` does: logs the failure of `key` with its causes and schedules the
    /// retry after the next delay.
    pub(crate) fn retry(
        &self,
        key: &str,
        controller: &str,
        error: &dyn std::error::Error,
    ) -> Action {
        let delay = self.failed(key);
        tracing::warn!(controller, error = %crate::context::error_chain(error), retry_in = ?delay, "reconcile failed");
        Action::requeue(delay)
    }

    /// Forgets the failures of `key`: it reconciled.
    pub(crate) fn succeeded(&self, key: &str) {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }
}

/// The delay before the retry that follows `previous` earlier consecutive failures.
fn delay_after(previous: u32) -> Duration {
    // 2^18 × 5 ms already exceeds the cap, so larger exponents need not be computed.
    let factor = 1u32 << previous.min(18);
    BASE.saturating_mul(factor).min(MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(failures: &[&str], successes_before_last: &[&str], key: &str, expected: Duration) {
        let backoff = Backoff::default();
        let mut delay = Duration::ZERO;
        for failed in failures {
            delay = backoff.failed(failed);
        }
        for succeeded in successes_before_last {
            backoff.succeeded(succeeded);
        }
        if !successes_before_last.is_empty() {
            delay = backoff.failed(key);
        }
        assert_eq!(
            delay, expected,
            "failures {failures:?}, then successes {successes_before_last:?}"
        );
    }

    #[test]
    fn delays_double_per_key_and_reset_on_success() {
        let ms = Duration::from_millis;
        check(&["a"], &[], "a", ms(5));
        check(&["a", "a"], &[], "a", ms(10));
        check(&["a", "a", "a", "a"], &[], "a", ms(40));
        // Another key's failures do not lengthen this one's delay.
        check(&["b", "b", "b", "a"], &[], "a", ms(5));
        // A success starts the key over; other keys keep their count.
        check(&["a", "a", "a"], &["a"], "a", ms(5));
        check(&["a", "a", "a"], &["b"], "a", ms(40));
        check(&["a"; 40], &[], "a", Duration::from_secs(1000));
    }
}
