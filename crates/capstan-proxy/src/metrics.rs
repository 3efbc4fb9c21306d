//! The proxy's metrics, in upstream's names and Prometheus' text format: sync durations
//! (`kubeproxy_sync_proxy_rules_duration_seconds`, split into full and partial syncs as
//! upstream does), failed syncs, and the size of the last script.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::syncer::{SyncKind, SyncReport};

/// Counters of every proxy in the process (a node runs one).
#[derive(Debug, Default)]
pub struct ProxyMetrics {
    full_syncs: AtomicU64,
    full_micros: AtomicU64,
    partial_syncs: AtomicU64,
    partial_micros: AtomicU64,
    unchanged_syncs: AtomicU64,
    failed_syncs: AtomicU64,
    last_micros: AtomicU64,
    last_script_bytes: AtomicU64,
}

static METRICS: ProxyMetrics = ProxyMetrics {
    full_syncs: AtomicU64::new(0),
    full_micros: AtomicU64::new(0),
    partial_syncs: AtomicU64::new(0),
    partial_micros: AtomicU64::new(0),
    unchanged_syncs: AtomicU64::new(0),
    failed_syncs: AtomicU64::new(0),
    last_micros: AtomicU64::new(0),
    last_script_bytes: AtomicU64::new(0),
};

/// The process' proxy metrics.
pub fn metrics() -> &'static ProxyMetrics {
    &METRICS
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

impl ProxyMetrics {
    /// Counts one sync that took `duration`; `None` for a sync that failed.
    pub fn observe(&self, outcome: Option<&SyncReport>, duration: Duration) {
        let micros = micros(duration);
        self.last_micros.store(micros, Ordering::Relaxed);
        let Some(report) = outcome else {
            self.failed_syncs.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let (count, total) = match report.kind {
            SyncKind::Full => (&self.full_syncs, &self.full_micros),
            SyncKind::Incremental => (&self.partial_syncs, &self.partial_micros),
            SyncKind::Unchanged => {
                self.unchanged_syncs.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        count.fetch_add(1, Ordering::Relaxed);
        total.fetch_add(micros, Ordering::Relaxed);
        let bytes = u64::try_from(report.script_bytes).unwrap_or(u64::MAX);
        self.last_script_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Syncs that re-created the tables.
    pub fn full_syncs(&self) -> u64 {
        self.full_syncs.load(Ordering::Relaxed)
    }

    /// Syncs that wrote only a change.
    pub fn partial_syncs(&self) -> u64 {
        self.partial_syncs.load(Ordering::Relaxed)
    }

    /// Syncs nftables refused.
    pub fn failed_syncs(&self) -> u64 {
        self.failed_syncs.load(Ordering::Relaxed)
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let seconds = |counter: &AtomicU64| load(counter) as f64 / 1e6;
        let mut out = String::new();
        for (name, count, total) in [
            (
                "kubeproxy_sync_full_proxy_rules_duration_seconds",
                &self.full_syncs,
                &self.full_micros,
            ),
            (
                "kubeproxy_sync_partial_proxy_rules_duration_seconds",
                &self.partial_syncs,
                &self.partial_micros,
            ),
        ] {
            let _ = writeln!(out, "# TYPE {name} summary");
            let _ = writeln!(out, "{name}_sum {}", seconds(total));
            let _ = writeln!(out, "{name}_count {}", load(count));
        }
        let _ = writeln!(out, "# TYPE kubeproxy_sync_proxy_rules_last_duration_seconds gauge");
        let _ = writeln!(
            out,
            "kubeproxy_sync_proxy_rules_last_duration_seconds {}",
            seconds(&self.last_micros)
        );
        let _ = writeln!(out, "# TYPE kubeproxy_sync_proxy_rules_unchanged_total counter");
        let _ = writeln!(
            out,
            "kubeproxy_sync_proxy_rules_unchanged_total {}",
            load(&self.unchanged_syncs)
        );
        let _ = writeln!(out, "# TYPE kubeproxy_sync_proxy_rules_nftables_failures_total counter");
        let _ = writeln!(
            out,
            "kubeproxy_sync_proxy_rules_nftables_failures_total {}",
            load(&self.failed_syncs)
        );
        let _ = writeln!(out, "# TYPE kubeproxy_sync_proxy_rules_last_script_bytes gauge");
        let _ = writeln!(
            out,
            "kubeproxy_sync_proxy_rules_last_script_bytes {}",
            load(&self.last_script_bytes)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_are_counted_by_kind() {
        let metrics = ProxyMetrics::default();
        let full =
            SyncReport { kind: SyncKind::Full, script_bytes: 100, elements: 0, recovered: false };
        let partial = SyncReport {
            kind: SyncKind::Incremental,
            script_bytes: 10,
            elements: 3,
            recovered: false,
        };
        metrics.observe(Some(&full), Duration::from_millis(20));
        metrics.observe(Some(&partial), Duration::from_millis(2));
        metrics.observe(None, Duration::from_millis(1));
        assert_eq!(
            (metrics.full_syncs(), metrics.partial_syncs(), metrics.failed_syncs()),
            (1, 1, 1)
        );
        let text = metrics.render();
        assert!(
            text.contains("kubeproxy_sync_full_proxy_rules_duration_seconds_sum 0.02\n"),
            "{text}"
        );
        assert!(
            text.contains("kubeproxy_sync_partial_proxy_rules_duration_seconds_count 1\n"),
            "{text}"
        );
        assert!(text.contains("kubeproxy_sync_proxy_rules_last_script_bytes 10\n"), "{text}");
    }
}
