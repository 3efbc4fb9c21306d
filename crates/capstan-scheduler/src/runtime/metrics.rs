//! The scheduler's metrics, in upstream's names and Prometheus' text format:
//! `scheduler_schedule_attempts_total{result}`, `scheduler_scheduling_attempt_duration_seconds`
//! (one attempt: algorithm and binding) and `scheduler_pod_scheduling_sli_duration_seconds`
//! (from the pod's first entry in the queue to its binding, over every attempt).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the histogram buckets, in seconds: 1 ms doubling up to about 16 s, as
/// upstream's exponential buckets.
const BUCKETS: [f64; 15] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192, 16.384,
];

/// A lock-free histogram of durations.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        if let Some(index) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[index].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The upper bound of the bucket holding the `q` quantile (0..=1), in seconds; `None`
    /// when empty or beyond the last bucket.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let wanted = (q * count as f64).ceil() as u64;
        let mut seen = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            seen += bucket.load(Ordering::Relaxed);
            if seen >= wanted.max(1) {
                return Some(*bound);
            }
        }
        None
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let separator = if labels.is_empty() { "" } else { "," };
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ =
                writeln!(out, "{name}_bucket{{{labels}{separator}le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels}{separator}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// Everything the scheduler counts.
#[derive(Debug, Default)]
pub struct Metrics {
    pub scheduled: AtomicU64,
    pub unschedulable: AtomicU64,
    pub errors: AtomicU64,
    pub preemption_victims: AtomicU64,
    pub attempt_duration: Histogram,
    pub pod_scheduling_duration: Histogram,
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP scheduler_schedule_attempts_total Number of attempts to schedule pods, by the result.\n");
        out.push_str("# TYPE scheduler_schedule_attempts_total counter\n");
        for (result, counter) in [
            ("scheduled", &self.scheduled),
            ("unschedulable", &self.unschedulable),
            ("error", &self.errors),
        ] {
            let value = counter.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "scheduler_schedule_attempts_total{{profile=\"default-scheduler\",result=\"{result}\"}} {value}"
            );
        }
        out.push_str("# HELP scheduler_preemption_victims_total Number of pods preempted.\n");
        out.push_str("# TYPE scheduler_preemption_victims_total counter\n");
        let _ = writeln!(
            out,
            "scheduler_preemption_victims_total {}",
            self.preemption_victims.load(Ordering::Relaxed)
        );
        out.push_str("# HELP scheduler_scheduling_attempt_duration_seconds Scheduling attempt latency (algorithm and binding).\n");
        out.push_str("# TYPE scheduler_scheduling_attempt_duration_seconds histogram\n");
        self.attempt_duration.render(
            &mut out,
            "scheduler_scheduling_attempt_duration_seconds",
            "profile=\"default-scheduler\",result=\"scheduled\"",
        );
        out.push_str("# HELP scheduler_pod_scheduling_sli_duration_seconds Latency from a pod's first entry in the queue to its binding.\n");
        out.push_str("# TYPE scheduler_pod_scheduling_sli_duration_seconds histogram\n");
        self.pod_scheduling_duration.render(
            &mut out,
            "scheduler_pod_scheduling_sli_duration_seconds",
            "",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_and_quantiles() {
        let histogram = Histogram::default();
        for millis in [1, 3, 3, 100] {
            histogram.observe(Duration::from_millis(millis));
        }
        assert_eq!(histogram.quantile_bound(0.5), Some(0.004));
        assert_eq!(histogram.quantile_bound(0.99), Some(0.128));
        let mut text = String::new();
        histogram.render(&mut text, "x", "");
        assert!(text.contains("x_bucket{le=\"0.004\"} 3\n"), "{text}");
        assert!(text.contains("x_count 4\n"));
    }
}
