//! Brings nftables to a desired [`ProxyState`]: a full sync first, every hour and after any
//! failure; otherwise an incremental script whose size follows the change.
//!
//! The syncer is stepped by its caller with the current time, so its decisions are tested
//! without clocks or a kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::nft::{Nft, NftError};
use crate::script::{self, ChainRef};
use crate::state::ProxyState;

/// How often the tables are re-created whole, repairing anything changed behind our back.
pub const FULL_SYNC_PERIOD: Duration = Duration::from_secs(3600);

/// How long an emptied chain waits before it is deleted (see [`script::Diff::newly_stale`]).
pub const STALE_CHAIN_DELAY: Duration = Duration::from_secs(1);

/// What a sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    /// The tables were re-created whole.
    Full,
    /// Only what changed was written.
    Incremental,
    /// Nothing differed; nftables was not called.
    Unchanged,
}

/// The outcome of one successful [`Syncer::sync`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    pub kind: SyncKind,
    /// The size of the script applied.
    pub script_bytes: usize,
    /// Whether an incremental script failed and a full sync repaired it.
    pub recovered: bool,
}

/// Keeps the state last applied and turns each desired state into the smallest script.
#[derive(Debug)]
pub struct Syncer {
    nft: Arc<dyn Nft>,
    table: String,
    /// What nftables holds, as far as we know; `None` forces the next sync to be full.
    applied: Option<ProxyState>,
    last_full: Option<Instant>,
    /// Chains emptied by an earlier script, with when, awaiting deletion.
    stale: BTreeMap<ChainRef, Instant>,
}

impl Syncer {
    pub fn new(nft: Arc<dyn Nft>, table: &str) -> Self {
        Self {
            nft,
            table: table.to_owned(),
            applied: None,
            last_full: None,
            stale: BTreeMap::new(),
        }
    }

    /// Makes nftables hold `desired`. On error nothing is assumed about nftables any more, so
    /// the next call re-creates the tables whole.
    pub fn sync(&mut self, desired: &ProxyState, now: Instant) -> Result<SyncReport, NftError> {
        let full_due =
            self.last_full.is_none_or(|last| now.duration_since(last) >= FULL_SYNC_PERIOD);
        let Some(applied) = self.applied.take().filter(|_| !full_due) else {
            return self.full(desired, now, false);
        };
        let due: BTreeSet<ChainRef> = self
            .stale
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= STALE_CHAIN_DELAY)
            .map(|(chain, _)| chain.clone())
            .collect();
        let all_stale: BTreeSet<ChainRef> = self.stale.keys().cloned().collect();
        let diff = script::render_diff(&self.table, &applied, desired, &all_stale, &due);
        if diff.script.is_empty() {
            self.applied = Some(applied);
            return Ok(SyncReport { kind: SyncKind::Unchanged, script_bytes: 0, recovered: false });
        }
        match self.nft.apply(&diff.script) {
            Ok(()) => {
                for chain in due.iter().chain(&diff.revived) {
                    self.stale.remove(chain);
                }
                self.stale.retain(|(family, _), _| desired.tables.contains_key(family));
                for chain in diff.newly_stale {
                    self.stale.insert(chain, now);
                }
                self.applied = Some(desired.clone());
                Ok(SyncReport {
                    kind: SyncKind::Incremental,
                    script_bytes: diff.script.len(),
                    recovered: false,
                })
            }
            Err(error) => {
                tracing::warn!(%error, table = %self.table, "proxy: incremental sync failed, syncing in full");
                self.full(desired, now, true)
            }
        }
    }

    /// When the syncer next has work of its own: deleting stale chains or the hourly full
    /// sync. `None` before the first sync.
    pub fn next_housekeeping(&self) -> Option<Instant> {
        let full = self.last_full.map(|last| last + FULL_SYNC_PERIOD)?;
        let stale = self.stale.values().min().map(|since| *since + STALE_CHAIN_DELAY);
        Some(stale.map_or(full, |stale| stale.min(full)))
    }

    fn full(
        &mut self,
        desired: &ProxyState,
        now: Instant,
        recovered: bool,
    ) -> Result<SyncReport, NftError> {
        self.applied = None;
        let script = script::render_full(&self.table, desired);
        self.nft.apply(&script)?;
        // The tables were re-created: no stale chain survives.
        self.stale.clear();
        self.applied = Some(desired.clone());
        self.last_full = Some(now);
        Ok(SyncReport { kind: SyncKind::Full, script_bytes: script.len(), recovered })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::RecordingNft;
    use crate::state::ProxyState;
    use crate::state::tests::{cluster_ip_service, node, slice};

    fn state(endpoints: &[&str]) -> ProxyState {
        let services = [cluster_ip_service("ns", "web", "10.96.0.10", 80)];
        let slices = [slice("ns", "web", "web-1", 8080, endpoints)];
        ProxyState::compute(&services, &slices, &node())
    }

    #[test]
    fn first_sync_is_full_then_incremental_then_unchanged() {
        let nft = Arc::new(RecordingNft::new());
        let mut syncer = Syncer::new(nft.clone(), "t");
        let start = Instant::now();
        let first = syncer.sync(&state(&["10.1.0.1"]), start).unwrap();
        assert_eq!(first.kind, SyncKind::Full);
        let second = syncer.sync(&state(&["10.1.0.1", "10.1.0.2"]), start).unwrap();
        assert_eq!(second.kind, SyncKind::Incremental);
        assert!(second.script_bytes < first.script_bytes);
        let third = syncer.sync(&state(&["10.1.0.1", "10.1.0.2"]), start).unwrap();
        assert_eq!(third.kind, SyncKind::Unchanged);
        assert_eq!(nft.scripts().len(), 2);
    }

    #[test]
    fn a_failed_incremental_sync_falls_back_to_a_full_one() {
        let nft = Arc::new(RecordingNft::new());
        let mut syncer = Syncer::new(nft.clone(), "t");
        let start = Instant::now();
        syncer.sync(&state(&["10.1.0.1"]), start).unwrap();
        nft.fail_next("Error: Could not process rule: No such file or directory");
        let report = syncer.sync(&state(&["10.1.0.2"]), start).unwrap();
        assert_eq!(report.kind, SyncKind::Full);
        assert!(report.recovered);
        let scripts = nft.scripts();
        assert_eq!(scripts.len(), 3);
        assert!(scripts[2].starts_with("add table ip t\ndelete table ip t\n"), "{}", scripts[2]);
    }

    #[test]
    fn a_failed_full_sync_is_retried_in_full() {
        let nft = Arc::new(RecordingNft::new());
        let mut syncer = Syncer::new(nft.clone(), "t");
        let start = Instant::now();
        nft.fail_next("Error: boom");
        assert!(syncer.sync(&state(&["10.1.0.1"]), start).is_err());
        let report = syncer.sync(&state(&["10.1.0.1"]), start).unwrap();
        assert_eq!(report.kind, SyncKind::Full);
    }

    #[test]
    fn the_tables_are_recreated_every_hour() {
        let nft = Arc::new(RecordingNft::new());
        let mut syncer = Syncer::new(nft, "t");
        let start = Instant::now();
        syncer.sync(&state(&["10.1.0.1"]), start).unwrap();
        assert_eq!(syncer.next_housekeeping(), Some(start + FULL_SYNC_PERIOD));
        let later = start + FULL_SYNC_PERIOD;
        assert_eq!(syncer.sync(&state(&["10.1.0.1"]), later).unwrap().kind, SyncKind::Full);
    }

    #[test]
    fn emptied_chains_are_deleted_a_second_later() {
        let nft = Arc::new(RecordingNft::new());
        let mut syncer = Syncer::new(nft.clone(), "t");
        let start = Instant::now();
        syncer.sync(&state(&["10.1.0.1", "10.1.0.2"]), start).unwrap();
        syncer.sync(&state(&["10.1.0.1"]), start).unwrap();
        let removal = nft.scripts()[1].clone();
        let gone = removal
            .lines()
            .find_map(|line| {
                line.strip_prefix("flush chain ip t endpoint-").filter(|c| c.contains("10.1.0.2"))
            })
            .map(|rest| format!("endpoint-{rest}"))
            .unwrap();
        assert!(!removal.contains("delete chain"), "{removal}");
        assert_eq!(syncer.next_housekeeping(), Some(start + STALE_CHAIN_DELAY));
        // Not yet due: nothing to do.
        assert_eq!(syncer.sync(&state(&["10.1.0.1"]), start).unwrap().kind, SyncKind::Unchanged);
        let later = start + STALE_CHAIN_DELAY;
        assert_eq!(syncer.sync(&state(&["10.1.0.1"]), later).unwrap().kind, SyncKind::Incremental);
        assert_eq!(nft.scripts()[2], format!("delete chain ip t {gone}\n"));
        assert_eq!(syncer.next_housekeeping(), Some(start + FULL_SYNC_PERIOD));
    }

    #[test]
    fn a_stale_chain_used_again_is_not_deleted() {
        let nft = Arc::new(RecordingNft::new());
        let mut syncer = Syncer::new(nft.clone(), "t");
        let start = Instant::now();
        syncer.sync(&state(&["10.1.0.1", "10.1.0.2"]), start).unwrap();
        syncer.sync(&state(&["10.1.0.1"]), start).unwrap();
        let later = start + STALE_CHAIN_DELAY;
        syncer.sync(&state(&["10.1.0.1", "10.1.0.2"]), later).unwrap();
        let script = &nft.scripts()[2];
        assert!(!script.contains("delete chain"), "{script}");
        assert!(script.contains("add chain ip t endpoint-"), "{script}");
        assert_eq!(syncer.next_housekeeping(), Some(start + FULL_SYNC_PERIOD));
    }
}
