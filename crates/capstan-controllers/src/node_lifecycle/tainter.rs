//! The per-zone queue of nodes waiting for a NoExecute taint, rate limited (upstream's
//! `RateLimitedTimedQueue`): tainting a node evicts its pods, so a zone's nodes are tainted
//! one at a time at the zone's rate, with a burst of one. Pure: every call is given the time.

use std::collections::HashSet;
use std::time::Duration;
use tokio::time::Instant;

/// A token bucket holding at most one token, refilled at `rate` tokens per second. A rate of
/// zero (or less) never lets anything through.
#[derive(Debug, Clone)]
struct Limiter {
    rate: f64,
    tokens: f64,
    refilled: Instant,
}

impl Limiter {
    /// A limiter whose first token is available at once.
    fn new(rate: f64, now: Instant) -> Limiter {
        Limiter { rate, tokens: 1.0, refilled: now }
    }

    /// Takes a token if one is available at `now`.
    fn try_accept(&mut self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(1.0);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A node waiting in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Waiting {
    pub(crate) node: String,
    /// When it may be tried (later than when it was added only after a failed try).
    due: Instant,
    /// Order of arrival, which breaks ties between nodes due at the same moment.
    arrival: u64,
}

/// One zone's queue. A node is taken at most once until it is removed: a node already
/// tainted stays a member, so the next pass that finds it unhealthy does not queue it again.
#[derive(Debug)]
pub(crate) struct TaintQueue {
    waiting: Vec<Waiting>,
    members: HashSet<String>,
    limiter: Limiter,
    arrivals: u64,
}

impl TaintQueue {
    pub(crate) fn new(rate: f64, now: Instant) -> TaintQueue {
        TaintQueue {
            waiting: Vec::new(),
            members: HashSet::new(),
            limiter: Limiter::new(rate, now),
            arrivals: 0,
        }
    }

    /// Queues `node` to be tried from `now`, unless it is already a member; returns whether
    /// it was added.
    pub(crate) fn add(&mut self, node: &str, now: Instant) -> bool {
        if !self.members.insert(node.to_owned()) {
            return false;
        }
        self.arrivals += 1;
        self.waiting.push(Waiting { node: node.to_owned(), due: now, arrival: self.arrivals });
        true
    }

    /// Forgets `node`, queued or already taken, so that it may be added again; returns
    /// whether it was a member.
    pub(crate) fn remove(&mut self, node: &str) -> bool {
        self.waiting.retain(|w| w.node != node);
        self.members.remove(node)
    }

    /// The node to try now, if one is due and the limiter has a token for it. The node stays
    /// queued until [`TaintQueue::done`] or [`TaintQueue::retry`].
    pub(crate) fn next(&mut self, now: Instant) -> Option<String> {
        let head = self.waiting.iter().min_by_key(|w| (w.due, w.arrival))?;
        if head.due > now || !self.limiter.try_accept(now) {
            return None;
        }
        Some(head.node.clone())
    }

    /// `node` was handled: it leaves the queue but stays a member.
    pub(crate) fn done(&mut self, node: &str) {
        self.waiting.retain(|w| w.node != node);
    }

    /// `node` could not be handled: try again `after` this long from `now`.
    pub(crate) fn retry(&mut self, node: &str, now: Instant, after: Duration) {
        if let Some(waiting) = self.waiting.iter_mut().find(|w| w.node == node) {
            waiting.due = now + after;
        }
    }

    /// Changes the zone's rate. As upstream, a limiter with no token left hands over an
    /// empty one, so that changing rates does not grant an extra taint.
    pub(crate) fn set_rate(&mut self, rate: f64, now: Instant) {
        if self.limiter.rate == rate {
            return;
        }
        let mut limiter = Limiter::new(rate, now);
        if rate > 0.0 && !self.limiter.try_accept(now) {
            limiter.try_accept(now);
        }
        self.limiter = limiter;
    }

    #[cfg(test)]
    fn queued(&self) -> Vec<&str> {
        let mut waiting: Vec<&Waiting> = self.waiting.iter().collect();
        waiting.sort_by_key(|w| (w.due, w.arrival));
        waiting.iter().map(|w| w.node.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step of a scenario, at a number of milliseconds from the start.
    enum Step {
        Add(&'static str, bool),
        Remove(&'static str, bool),
        /// Takes what is due; each taken node is then done or retried after the duration.
        Take(&'static [&'static str], Option<Duration>),
        Rate(f64),
    }

    fn check(rate: f64, steps: &[(u64, Step)]) {
        let start = Instant::now();
        let mut queue = TaintQueue::new(rate, start);
        for (index, (millis, step)) in steps.iter().enumerate() {
            let now = start + Duration::from_millis(*millis);
            match step {
                Step::Add(node, added) => assert_eq!(queue.add(node, now), *added, "step {index}"),
                Step::Remove(node, removed) => {
                    assert_eq!(queue.remove(node), *removed, "step {index}")
                }
                Step::Take(expected, retry) => {
                    let mut taken = Vec::new();
                    while let Some(node) = queue.next(now) {
                        match retry {
                            Some(after) => queue.retry(&node, now, *after),
                            None => queue.done(&node),
                        }
                        taken.push(node);
                    }
                    assert_eq!(taken, *expected, "step {index}, queue {:?}", queue.queued());
                }
                Step::Rate(rate) => queue.set_rate(*rate, now),
            }
        }
    }

    #[test]
    fn one_node_per_token_in_arrival_order() {
        use Step::*;
        check(
            0.1,
            &[
                (0, Add("a", true)),
                (0, Add("b", true)),
                (0, Add("a", false)),
                (0, Take(&["a"], None)),
                (5_000, Take(&[], None)),
                (10_000, Take(&["b"], None)),
                // Taken nodes stay members until removed.
                (10_000, Add("a", false)),
                (10_000, Remove("a", true)),
                (10_000, Remove("a", false)),
                (10_000, Add("a", true)),
                (15_000, Take(&[], None)),
                (20_000, Take(&["a"], None)),
                // Tokens do not pile up while nothing waits.
                (100_000, Add("c", true)),
                (100_000, Add("d", true)),
                (100_000, Take(&["c"], None)),
            ],
        );
    }

    #[test]
    fn failed_nodes_wait_and_others_go_first() {
        use Step::*;
        check(
            1.0,
            &[
                (0, Add("a", true)),
                (0, Take(&["a"], Some(Duration::from_secs(5)))),
                (500, Add("b", true)),
                (1_000, Take(&["b"], None)),
                (2_000, Take(&[], None)),
                (5_000, Take(&["a"], None)),
                // A node removed while it waits is gone.
                (6_000, Add("c", true)),
                (6_000, Remove("c", true)),
                (7_000, Take(&[], None)),
            ],
        );
    }

    #[test]
    fn rates_change_without_granting_extra_tokens() {
        use Step::*;
        check(
            0.1,
            &[
                (0, Add("a", true)),
                (0, Add("b", true)),
                (0, Add("c", true)),
                (0, Take(&["a"], None)),
                // Stopped: nothing moves, however long.
                (0, Rate(0.0)),
                (60_000, Take(&[], None)),
                // Back to 1/s: the stopped limiter had no token, so the new one starts empty.
                (60_000, Rate(1.0)),
                (60_000, Take(&[], None)),
                (61_000, Take(&["b"], None)),
                (62_000, Take(&["c"], None)),
                // The same rate again changes nothing.
                (62_000, Add("d", true)),
                (62_000, Rate(1.0)),
                (62_500, Take(&[], None)),
                (63_000, Take(&["d"], None)),
            ],
        );
    }
}
