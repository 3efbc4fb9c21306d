//! Brings nftables to a desired [`ProxyState`]: a full sync first, every hour and after any
//! failure; otherwise the [`Changes`] since the last sync, as a script for new chains, rules
//! and sets (when there are any) and a netlink batch for map and set elements, both sized by
//! the change.
//!
//! The syncer is stepped by its caller with the current time, so its decisions are tested
//! without clocks or a kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::desired::Changes;
use crate::nft::{Nft, NftError};
use crate::script::{self, ChainRef};
use crate::state::{NodeFacts, ProxyState};

/// How often the tables are re-created whole, repairing anything changed behind our back.
pub const FULL_SYNC_PERIOD: Duration = Duration::from_secs(3600);

/// How long an emptied chain waits before it is deleted (see [`script::Diff::newly_stale`]).
pub const STALE_CHAIN_DELAY: Duration = Duration::from_secs(1);

/// Element changes beyond which re-creating the tables is the simpler transaction (a
/// relist after a long disconnection, say).
const MAX_INCREMENTAL_ELEMENTS: usize = 50_000;

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
    /// The size of the `nft` script applied (none when only elements changed).
    pub script_bytes: usize,
    /// The map and set elements added or deleted over netlink.
    pub elements: usize,
    /// Whether an incremental sync failed and a full sync repaired it.
    pub recovered: bool,
}

/// Writes each desired state's changes with the smallest transactions, and the whole state
/// when in doubt.
#[derive(Debug)]
pub struct Syncer {
    nft: Arc<dyn Nft>,
    table: String,
    node: NodeFacts,
    /// Whether nftables holds what the last sync wrote, as far as we know; false forces
    /// the next sync to be full.
    in_sync: bool,
    last_full: Option<Instant>,
    /// Chains emptied by an earlier script, with when, awaiting deletion.
    stale: BTreeMap<ChainRef, Instant>,
}

impl Syncer {
    pub fn new(nft: Arc<dyn Nft>, table: &str, node: &NodeFacts) -> Self {
        Self {
            nft,
            table: table.to_owned(),
            node: node.clone(),
            in_sync: false,
            last_full: None,
            stale: BTreeMap::new(),
        }
    }

    /// Makes nftables hold `desired`, given the `changes` since the previous call (which
    /// must have been applied or have failed). On error nothing is assumed about nftables
    /// any more, so the next call re-creates the tables whole.
    pub fn sync(
        &mut self,
        desired: &ProxyState,
        changes: &Changes,
        now: Instant,
    ) -> Result<SyncReport, NftError> {
        let full_due =
            self.last_full.is_none_or(|last| now.duration_since(last) >= FULL_SYNC_PERIOD);
        if !self.in_sync || full_due {
            return self.full(desired, now, false);
        }
        let due: BTreeSet<ChainRef> = self
            .stale
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= STALE_CHAIN_DELAY)
            .map(|(chain, _)| chain.clone())
            .collect();
        let all_stale: BTreeSet<ChainRef> = self.stale.keys().cloned().collect();
        let diff = script::render_diff(&self.table, changes, desired, &all_stale, &due);
        if diff.is_empty() {
            return Ok(SyncReport {
                kind: SyncKind::Unchanged,
                script_bytes: 0,
                elements: 0,
                recovered: false,
            });
        }
        if diff.elements.len() > MAX_INCREMENTAL_ELEMENTS {
            return self.full(desired, now, false);
        }
        self.in_sync = false;
        // Chains and sets first: new elements may jump to the chains and fill the maps.
        let applied = (|| {
            if !diff.script.is_empty() {
                self.nft.apply(&diff.script)?;
            }
            if !diff.elements.is_empty() {
                self.nft.apply_elements(&diff.elements)?;
            }
            Ok::<(), NftError>(())
        })();
        match applied {
            Ok(()) => {
                for chain in due.iter().chain(&diff.revived) {
                    self.stale.remove(chain);
                }
                self.stale.retain(|(family, _), _| desired.tables.contains_key(family));
                for chain in diff.newly_stale {
                    self.stale.insert(chain, now);
                }
                self.in_sync = true;
                Ok(SyncReport {
                    kind: SyncKind::Incremental,
                    script_bytes: diff.script.len(),
                    elements: diff.elements.len(),
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
        self.in_sync = false;
        let script = script::render_full(&self.table, desired, &self.node);
        self.nft.apply(&script)?;
        // The tables were re-created: no stale chain survives.
        self.stale.clear();
        self.in_sync = true;
        self.last_full = Some(now);
        Ok(SyncReport { kind: SyncKind::Full, script_bytes: script.len(), elements: 0, recovered })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::RecordingNft;
    use crate::state::tests::{cluster_ip_service, node, slice};

    /// `web` with `endpoints`, and `db` when `with_db`.
    fn state(endpoints: &[&str], with_db: bool) -> ProxyState {
        let mut services = vec![cluster_ip_service("ns", "web", "10.96.0.10", 80)];
        let mut slices = vec![slice("ns", "web", "web-1", 8080, endpoints)];
        if with_db {
            services.push(cluster_ip_service("ns", "db", "10.96.0.11", 5432));
            slices.push(slice("ns", "db", "db-1", 5432, &["10.1.0.9"]));
        }
        ProxyState::compute(&services, &slices, &node())
    }

    /// A syncer and the state it was last given, so that tests can hand it whole states.
    struct Driver {
        syncer: Syncer,
        nft: Arc<RecordingNft>,
        last: ProxyState,
    }

    impl Driver {
        fn new() -> Self {
            let nft = Arc::new(RecordingNft::new());
            Self {
                syncer: Syncer::new(nft.clone(), "t", &node()),
                nft,
                last: ProxyState::default(),
            }
        }

        fn sync(&mut self, desired: ProxyState, now: Instant) -> Result<SyncReport, NftError> {
            let changes = Changes::between(&self.last, &desired);
            self.last = desired;
            self.syncer.sync(&self.last, &changes, now)
        }
    }

    #[test]
    fn first_sync_is_full_then_elements_then_unchanged() {
        let mut driver = Driver::new();
        let start = Instant::now();
        let first = driver.sync(state(&["10.1.0.1"], false), start).unwrap();
        assert_eq!(first.kind, SyncKind::Full);
        let second = driver.sync(state(&["10.1.0.1", "10.1.0.2"], false), start).unwrap();
        assert_eq!(second.kind, SyncKind::Incremental);
        assert_eq!(second.script_bytes, 0, "an endpoint is elements only");
        assert_eq!(second.elements, 1 + 2 + 1, "one range replaced by two, one hairpin address");
        let third = driver.sync(state(&["10.1.0.1", "10.1.0.2"], false), start).unwrap();
        assert_eq!(third.kind, SyncKind::Unchanged);
        assert_eq!(driver.nft.scripts().len(), 1);
        assert_eq!(driver.nft.batches().len(), 1);
    }

    #[test]
    fn a_failed_incremental_sync_falls_back_to_a_full_one() {
        let mut driver = Driver::new();
        let start = Instant::now();
        driver.sync(state(&["10.1.0.1"], false), start).unwrap();
        driver.nft.fail_next("Error: Could not process rule: No such file or directory");
        let report = driver.sync(state(&["10.1.0.2"], false), start).unwrap();
        assert_eq!(report.kind, SyncKind::Full);
        assert!(report.recovered);
        let scripts = driver.nft.scripts();
        assert_eq!(scripts.len(), 2);
        assert!(scripts[1].starts_with("add table ip t\ndelete table ip t\n"), "{}", scripts[1]);
        assert_eq!(driver.nft.batches().len(), 1, "the failed batch");
    }

    #[test]
    fn a_failed_full_sync_is_retried_in_full() {
        let mut driver = Driver::new();
        let start = Instant::now();
        driver.nft.fail_next("Error: boom");
        assert!(driver.sync(state(&["10.1.0.1"], false), start).is_err());
        let report = driver.sync(state(&["10.1.0.1"], false), start).unwrap();
        assert_eq!(report.kind, SyncKind::Full);
    }

    #[test]
    fn the_tables_are_recreated_every_hour() {
        let mut driver = Driver::new();
        let start = Instant::now();
        driver.sync(state(&["10.1.0.1"], false), start).unwrap();
        assert_eq!(driver.syncer.next_housekeeping(), Some(start + FULL_SYNC_PERIOD));
        let later = start + FULL_SYNC_PERIOD;
        let report = driver.sync(state(&["10.1.0.1"], false), later).unwrap();
        assert_eq!(report.kind, SyncKind::Full);
    }

    #[test]
    fn emptied_chains_are_deleted_a_second_later() {
        let mut driver = Driver::new();
        let start = Instant::now();
        driver.sync(state(&["10.1.0.1"], true), start).unwrap();
        driver.sync(state(&["10.1.0.1"], false), start).unwrap();
        let removal = driver.nft.scripts()[1].clone();
        let gone = removal
            .lines()
            .find_map(|line| line.strip_prefix("flush chain ip t "))
            .map(str::to_owned)
            .unwrap();
        assert!(gone.contains("ns/db/"), "{removal}");
        assert!(!removal.contains("delete chain"), "{removal}");
        assert_eq!(driver.syncer.next_housekeeping(), Some(start + STALE_CHAIN_DELAY));
        // Not yet due: nothing to do.
        let report = driver.sync(state(&["10.1.0.1"], false), start).unwrap();
        assert_eq!(report.kind, SyncKind::Unchanged);
        let later = start + STALE_CHAIN_DELAY;
        let report = driver.sync(state(&["10.1.0.1"], false), later).unwrap();
        assert_eq!(report.kind, SyncKind::Incremental);
        assert_eq!(driver.nft.scripts()[2], format!("delete chain ip t {gone}\n"));
        assert_eq!(driver.syncer.next_housekeeping(), Some(start + FULL_SYNC_PERIOD));
    }

    #[test]
    fn a_stale_chain_used_again_is_not_deleted() {
        let mut driver = Driver::new();
        let start = Instant::now();
        driver.sync(state(&["10.1.0.1"], true), start).unwrap();
        driver.sync(state(&["10.1.0.1"], false), start).unwrap();
        let later = start + STALE_CHAIN_DELAY;
        driver.sync(state(&["10.1.0.1"], true), later).unwrap();
        let script = &driver.nft.scripts()[2];
        assert!(!script.contains("delete chain"), "{script}");
        assert!(script.contains("add chain ip t service-"), "{script}");
        assert_eq!(driver.syncer.next_housekeeping(), Some(start + FULL_SYNC_PERIOD));
    }
}
