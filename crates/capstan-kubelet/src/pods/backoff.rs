//! Restart and image-pull back-off: 10 s doubling to 5 minutes per key, as the kubelet's
//! CrashLoopBackOff and ImagePullBackOff do.

use std::collections::HashMap;
use std::time::{Duration, Instant};

const INITIAL: Duration = Duration::from_secs(10);
const MAXIMUM: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
struct Entry {
    delay: Duration,
}

/// Per-key exponential back-off.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    entries: HashMap<String, Entry>,
}

impl Backoff {
    /// If `key` must still wait (measured from `since`, e.g. when the container exited),
    /// how long; `None` when it may go now.
    pub(crate) fn remaining(&self, key: &str, since: Instant, now: Instant) -> Option<Duration> {
        let entry = self.entries.get(key)?;
        let until = since + entry.delay;
        (until > now).then(|| until - now)
    }

    /// The current delay of `key` (for messages), if any.
    pub(crate) fn delay(&self, key: &str) -> Option<Duration> {
        self.entries.get(key).map(|e| e.delay)
    }

    /// Records a restart: the first after a failure sets 10 s before the next may follow,
    /// later ones double it.
    pub(crate) fn restarted(&mut self, key: &str) {
        match self.entries.get_mut(key) {
            Some(entry) => {
                entry.delay =
                    if entry.delay.is_zero() { INITIAL } else { (entry.delay * 2).min(MAXIMUM) };
            }
            None => {
                self.entries.insert(key.to_owned(), Entry { delay: INITIAL });
            }
        }
    }

    /// Forgets `key` (a success).
    pub(crate) fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_five_minutes() {
        let mut backoff = Backoff::default();
        let start = Instant::now();
        assert_eq!(backoff.remaining("c", start, start), None);
        backoff.restarted("c");
        assert_eq!(backoff.remaining("c", start, start), Some(INITIAL));
        assert_eq!(backoff.remaining("c", start, start + INITIAL), None);
        for _ in 0..10 {
            backoff.restarted("c");
        }
        assert_eq!(backoff.delay("c"), Some(MAXIMUM));
        backoff.reset("c");
        assert_eq!(backoff.delay("c"), None);
    }
}
