//! The running proxy: reflectors on Services and EndpointSlices (all namespaces) wake a sync
//! loop, which computes the [`ProxyState`] from the stores and hands it to the [`Syncer`].
//!
//! Syncs are at least `min_sync` apart, so a burst of changes costs one sync (upstream's
//! `minSyncPeriod`); nothing is written before both stores have listed once, so a restart
//! never installs a partial ruleset. Stopping leaves the tables in place: flows keep working
//! while the proxy is down, and a restarted proxy writes the same names.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::metrics::metrics;
use crate::nft::Nft;
use crate::state::{CidrError, NodeFacts, ProxyState};
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
        service_events.for_each(wake(&changed, "services")),
        slice_events.for_each(wake(&changed, "endpointslices")),
    );
    let sync_loop =
        SyncLoop { config, facts, services, slices, changed: Arc::clone(&changed), nft };
    tokio::select! {
        _ = watches => Ok(()),
        result = sync_loop.run(stop) => result,
    }
}

struct SyncLoop {
    config: ProxyConfig,
    facts: NodeFacts,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
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
        let mut syncer = Some(Syncer::new(Arc::clone(&self.nft), &table));
        loop {
            let started = Instant::now();
            let state = ProxyState::compute(
                self.services.state().iter().map(|service| &**service),
                self.slices.state().iter().map(|slice| &**slice),
                &self.facts,
            );
            let Some(mut current) = syncer.take() else { return Ok(()) };
            let now = started.into_std();
            let (current, result) = tokio::task::spawn_blocking(move || {
                let result = current.sync(&state, now);
                (current, result)
            })
            .await
            .map_err(|source| ProxyError::SyncPanicked { table: table.clone(), source })?;
            metrics().observe(result.as_ref().ok(), started.elapsed());
            let mut wake_at = current.next_housekeeping().map(Instant::from_std);
            match result {
                Ok(report) => {
                    tracing::debug!(?report, elapsed = ?started.elapsed(), table, "proxy: synced");
                }
                Err(error) => {
                    tracing::warn!(%error, table, "proxy: sync failed; retrying");
                    wake_at = Some(started + RETRY_AFTER);
                }
            }
            syncer = Some(current);
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
}

/// The handler of a reflector's events: any event, even a failure, may have changed the
/// store, so each wakes the sync loop.
fn wake<T>(
    changed: &Arc<Notify>,
    kind: &'static str,
) -> impl FnMut(Result<T, watcher::Error>) -> std::future::Ready<()> + use<T> {
    let changed = Arc::clone(changed);
    move |event| {
        if let Err(error) = event {
            tracing::debug!(%error, kind, "proxy: watch failed");
        }
        changed.notify_one();
        std::future::ready(())
    }
}

/// Resolves once `stop` is true or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means stop.
    let _ = stop.wait_for(|stop| *stop).await;
}
