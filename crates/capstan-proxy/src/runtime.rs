//! The running proxy: reflectors on Services and EndpointSlices (all namespaces) record which
//! Services changed and wake a sync loop, which recomputes those Services only (a
//! [`DesiredState`]) and hands the changes to the [`Syncer`].
//!
//! Syncs are at least `min_sync` apart, so a burst of changes costs one sync (upstream's
//! `minSyncPeriod`); nothing is written before both stores have listed once, so a restart
//! never installs a partial ruleset. After a watch relists (it may have missed deletions),
//! every Service is recomputed. Stopping leaves the tables in place: flows keep working
//! while the proxy is down, and a restarted proxy writes the same names.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::desired::DesiredState;
use crate::metrics::metrics;
use crate::nft::Nft;
use crate::state::{CidrError, NodeFacts, ServiceKey};
use crate::syncer::Syncer;

/// How long to wait before retrying after nftables refused a sync.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The proxy's configuration.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// This node's name: endpoints on it are local.
    pub node_name: String,
    /// This node's addresses; they choose the families when `cluster_cidrs` is empty.
    pub node_ips: Vec<IpAddr>,
    /// The pod networks (`10.42.0.0/16`, `fd42::/56`).
    pub cluster_cidrs: Vec<String>,
    /// The nftables table, in each family; `capstan-proxy` by default.
    pub table_name: String,
    /// The least time between two syncs.
    pub min_sync: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            node_name: String::new(),
            node_ips: Vec::new(),
            cluster_cidrs: Vec::new(),
            table_name: "capstan-proxy".to_owned(),
            min_sync: Duration::from_millis(100),
        }
    }
}

/// Why the proxy stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("invalid proxy configuration")]
    Config(#[from] CidrError),
    #[error("the sync task of table {table} panicked")]
    SyncPanicked {
        table: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Runs the proxy until `stop` turns true (or its sender goes). Watch failures are retried
/// with backoff and nftables failures with a full sync, so only a bad configuration or a
/// bug ends it early.
pub async fn run(
    client: kube::Client,
    config: ProxyConfig,
    nft: Arc<dyn Nft>,
    stop: watch::Receiver<bool>,
) -> Result<(), ProxyError> {
    let facts = NodeFacts::new(&config.node_name, &config.node_ips, &config.cluster_cidrs)?;
    let changed = Arc::new(Notify::new());
    let tracker = Arc::new(Mutex::new(Tracker { everything: true, ..Tracker::default() }));
    let (services, service_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let service_events = reflector::reflector(
        service_writer,
        watcher(Api::<Service>::all(client.clone()), watcher::Config::default()).default_backoff(),
    );
    let slice_events = reflector::reflector(
        slice_writer,
        watcher(Api::<EndpointSlice>::all(client), watcher::Config::default()).default_backoff(),
    );
    let watches = futures_util::future::join(
        service_events.for_each(record(&tracker, &changed, "services", Tracker::service_event)),
        slice_events.for_each(record(&tracker, &changed, "endpointslices", Tracker::slice_event)),
    );
    let sync_loop = SyncLoop { config, facts, services, slices, tracker, changed, nft };
    tokio::select! {
        _ = watches => Ok(()),
        result = sync_loop.run(stop) => result,
    }
}

/// What the watches saw since the sync loop last looked, and which slices belong to which
/// Service (the stores are keyed by object, not by Service).
#[derive(Debug, Default)]
struct Tracker {
    /// Services whose object or slices changed.
    dirty: HashSet<ServiceKey>,
    /// A watch (re)listed: recompute every Service.
    everything: bool,
    owners: HashMap<ObjectRef<EndpointSlice>, ServiceKey>,
    slices: HashMap<ServiceKey, HashSet<ObjectRef<EndpointSlice>>>,
}

impl Tracker {
    fn service_event(&mut self, event: watcher::Event<Service>) {
        match event {
            watcher::Event::Apply(service) | watcher::Event::Delete(service) => {
                self.dirty.insert(ServiceKey::of_service(&service));
            }
            watcher::Event::InitDone => self.everything = true,
            // The store changes at `InitDone`, all at once.
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }

    fn slice_event(&mut self, event: watcher::Event<EndpointSlice>) {
        match event {
            watcher::Event::Apply(slice) => {
                let owner = ServiceKey::of_slice(&slice);
                self.set_owner(ObjectRef::from_obj(&slice), owner);
            }
            watcher::Event::Delete(slice) => self.set_owner(ObjectRef::from_obj(&slice), None),
            watcher::Event::InitDone => self.everything = true,
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }

    /// Records that `slice` now belongs to `owner`; its former and new Services are dirty.
    fn set_owner(&mut self, slice: ObjectRef<EndpointSlice>, owner: Option<ServiceKey>) {
        if let Some(former) = self.owners.remove(&slice) {
            if let Some(slices) = self.slices.get_mut(&former) {
                slices.remove(&slice);
                if slices.is_empty() {
                    self.slices.remove(&former);
                }
            }
            self.dirty.insert(former);
        }
        if let Some(owner) = owner {
            self.slices.entry(owner.clone()).or_default().insert(slice.clone());
            self.owners.insert(slice, owner.clone());
            self.dirty.insert(owner);
        }
    }

    /// Rebuilds the slice ownership from `slices` (after a relist, which may have missed
    /// deletions).
    fn reindex(&mut self, slices: &Store<EndpointSlice>) {
        self.owners.clear();
        self.slices.clear();
        for slice in slices.state() {
            if let Some(owner) = ServiceKey::of_slice(&slice) {
                let slice = ObjectRef::from_obj(&*slice);
                self.slices.entry(owner.clone()).or_default().insert(slice.clone());
                self.owners.insert(slice, owner);
            }
        }
    }
}

fn lock(tracker: &Mutex<Tracker>) -> MutexGuard<'_, Tracker> {
    tracker.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The handler of a reflector's events: records what changed and wakes the sync loop. A
/// failure changes nothing in the store (the watcher retries), but wakes it as well.
fn record<K>(
    tracker: &Arc<Mutex<Tracker>>,
    changed: &Arc<Notify>,
    kind: &'static str,
    handle: fn(&mut Tracker, watcher::Event<K>),
) -> impl FnMut(Result<watcher::Event<K>, watcher::Error>) -> std::future::Ready<()> + use<K> {
    let tracker = Arc::clone(tracker);
    let changed = Arc::clone(changed);
    move |event| {
        match event {
            Ok(event) => handle(&mut lock(&tracker), event),
            Err(error) => tracing::debug!(%error, kind, "proxy: watch failed"),
        }
        changed.notify_one();
        std::future::ready(())
    }
}

/// A Service to recompute: its current object (`None` once deleted) and its slices.
struct ChangedService {
    key: ServiceKey,
    service: Option<Arc<Service>>,
    slices: Vec<Arc<EndpointSlice>>,
}

/// The objects a sync recomputes: every Service, or the changed ones.
enum Inputs {
    Everything { services: Vec<Arc<Service>>, slices: Vec<Arc<EndpointSlice>> },
    Services(Vec<ChangedService>),
}

impl Inputs {
    fn apply(&self, desired: &mut DesiredState) {
        match self {
            Self::Everything { services, slices } => desired.replace_all(
                services.iter().map(|service| &**service),
                slices.iter().map(|slice| &**slice),
            ),
            Self::Services(services) => {
                for changed in services {
                    let slices: Vec<&EndpointSlice> =
                        changed.slices.iter().map(|slice| &**slice).collect();
                    desired.update(&changed.key, changed.service.as_deref(), &slices);
                }
            }
        }
    }
}

struct SyncLoop {
    config: ProxyConfig,
    facts: NodeFacts,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    tracker: Arc<Mutex<Tracker>>,
    changed: Arc<Notify>,
    nft: Arc<dyn Nft>,
}

impl SyncLoop {
    async fn run(self, mut stop: watch::Receiver<bool>) -> Result<(), ProxyError> {
        let ready = async {
            // The writers live as long as the watches, so neither wait ends in an error
            // before this loop does.
            let _ = self.services.wait_until_ready().await;
            let _ = self.slices.wait_until_ready().await;
        };
        tokio::select! {
            () = ready => {}
            () = stopped(&mut stop) => return Ok(()),
        }
        let table = self.config.table_name.clone();
        let mut current = Some((
            DesiredState::new(self.facts.clone()),
            Syncer::new(Arc::clone(&self.nft), &table, &self.facts),
        ));
        loop {
            let started = Instant::now();
            let inputs = self.take_inputs();
            let Some((mut desired, mut syncer)) = current.take() else { return Ok(()) };
            let now = started.into_std();
            let (desired, syncer, result) = tokio::task::spawn_blocking(move || {
                inputs.apply(&mut desired);
                let changes = desired.take_changes();
                let result = syncer.sync(desired.state(), &changes, now);
                (desired, syncer, result)
            })
            .await
            .map_err(|source| ProxyError::SyncPanicked { table: table.clone(), source })?;
            metrics().observe(result.as_ref().ok(), started.elapsed());
            let mut wake_at = syncer.next_housekeeping().map(Instant::from_std);
            match result {
                Ok(report) => {
                    tracing::debug!(?report, elapsed = ?started.elapsed(), table, "proxy: synced");
                }
                Err(error) => {
                    tracing::warn!(%error, table, "proxy: sync failed; retrying");
                    wake_at = Some(started + RETRY_AFTER);
                }
            }
            current = Some((desired, syncer));
            let housekeeping = async {
                match wake_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.changed.notified() => {}
                () = housekeeping => {}
                () = stopped(&mut stop) => return Ok(()),
            }
            // A burst of changes is one sync: wait out the rest of the minimum interval.
            tokio::select! {
                () = tokio::time::sleep_until(started + self.config.min_sync) => {}
                () = stopped(&mut stop) => return Ok(()),
            }
        }
    }

    /// What changed since the last sync, read from the stores.
    fn take_inputs(&self) -> Inputs {
        let mut tracker = lock(&self.tracker);
        let dirty = std::mem::take(&mut tracker.dirty);
        if std::mem::take(&mut tracker.everything) {
            tracker.reindex(&self.slices);
            return Inputs::Everything {
                services: self.services.state(),
                slices: self.slices.state(),
            };
        }
        let services = dirty
            .into_iter()
            .map(|key| {
                let service =
                    self.services.get(&ObjectRef::new(key.name()).within(key.namespace()));
                let slices = tracker
                    .slices
                    .get(&key)
                    .into_iter()
                    .flatten()
                    .filter_map(|slice| self.slices.get(slice))
                    .collect();
                ChangedService { key, service, slices }
            })
            .collect();
        Inputs::Services(services)
    }
}

/// Resolves once `stop` is true or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means stop.
    let _ = stop.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::{cluster_ip_service, slice};

    #[test]
    fn slices_moving_between_services_dirty_both() {
        let mut tracker = Tracker::default();
        let first = slice("ns", "web", "shared-1", 8080, &["10.42.1.1"]);
        tracker.slice_event(watcher::Event::Apply(first));
        let web = ServiceKey::new("ns", "web");
        assert_eq!(tracker.dirty.drain().collect::<Vec<_>>(), std::slice::from_ref(&web));

        let moved = slice("ns", "api", "shared-1", 8080, &["10.42.1.1"]);
        tracker.slice_event(watcher::Event::Apply(moved.clone()));
        let api = ServiceKey::new("ns", "api");
        assert_eq!(
            tracker.dirty.drain().collect::<HashSet<_>>(),
            HashSet::from([web, api.clone()])
        );
        assert_eq!(tracker.slices[&api].len(), 1);

        tracker.slice_event(watcher::Event::Delete(moved));
        assert_eq!(tracker.dirty.drain().collect::<Vec<_>>(), [api]);
        assert!(tracker.slices.is_empty() && tracker.owners.is_empty());

        tracker.service_event(watcher::Event::Apply(cluster_ip_service(
            "ns",
            "db",
            "10.96.0.3",
            53,
        )));
        assert!(tracker.dirty.contains(&ServiceKey::new("ns", "db")));
        tracker.slice_event(watcher::Event::InitDone);
        assert!(tracker.everything);
    }
}
