//! Where the records come from in a running cluster: reflectors of every Service and
//! EndpointSlice, rebuilt into a fresh [`Records`] snapshot after each burst of changes; and
//! [`run`], the whole DNS server as `capstan server` starts it.

use crate::error::DnsError;
use crate::forward::Forwarder;
use crate::records::{Records, fqdn};
use crate::server::Server;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, watch};

/// The cluster domain when none is configured.
pub const DEFAULT_ZONE: &str = "cluster.local";

/// The TTL of cluster records when none is configured (CoreDNS's default for the
/// `kubernetes` plugin).
pub const DEFAULT_TTL: u32 = 5;

/// How long a rebuild waits after a change, so that a burst of events (a rollout, the first
/// list) costs one rebuild rather than one per object.
const REBUILD_DELAY: Duration = Duration::from_millis(100);

/// The DNS server's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Addresses served over both UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// The cluster domain, such as `cluster.local`.
    pub zone: String,
    /// Resolvers for names outside the zone, tried in order.
    pub upstreams: Vec<SocketAddr>,
    /// The TTL of records in the zone, in seconds.
    pub ttl: u32,
}

impl DnsConfig {
    /// Serves `listen` with the default zone and TTL and forwards to `upstreams`.
    pub fn new(listen: Vec<SocketAddr>, upstreams: Vec<SocketAddr>) -> Self {
        Self { listen, zone: DEFAULT_ZONE.to_owned(), upstreams, ttl: DEFAULT_TTL }
    }
}

/// Binds every listen address, then serves the cluster zone from the API (Services and
/// EndpointSlices of all namespaces) and forwards other names, until `stop` turns true or
/// its sender is dropped. Until the first lists complete, names in the zone answer SERVFAIL.
/// Fails only at start: an invalid zone, no listen address, or an address that cannot be
/// bound. API errors are retried with backoff while the last snapshot keeps being served.
pub async fn run(
    client: kube::Client,
    config: DnsConfig,
    stop: watch::Receiver<bool>,
) -> Result<(), DnsError> {
    if fqdn(&config.zone).is_none() || config.zone.trim_end_matches('.').is_empty() {
        return Err(DnsError::InvalidZone { zone: config.zone });
    }
    let server = Server::bind(&config.listen).await?;
    tracing::info!(listen = ?server.local_addrs(), zone = %config.zone, upstreams = ?config.upstreams, "dns: serving");
    let (sender, records) = watch::channel(Arc::new(Records::unsynced(&config.zone, config.ttl)));
    let feed = feed(client, config.zone, config.ttl, sender);
    tokio::select! {
        () = server.serve(records, Forwarder::new(config.upstreams), stop) => {}
        () = feed => {}
    }
    Ok(())
}

/// Keeps `sender` holding a snapshot of the cluster's Services and EndpointSlices. Runs
/// until dropped.
pub async fn feed(
    client: kube::Client,
    zone: String,
    ttl: u32,
    sender: watch::Sender<Arc<Records>>,
) {
    let changed = Notify::new();
    let (services, service_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let service_events = reflector::reflector(
        service_writer,
        watcher::watcher(Api::<Service>::all(client.clone()), watcher::Config::default())
            .default_backoff(),
    );
    let slice_events = reflector::reflector(
        slice_writer,
        watcher::watcher(Api::<EndpointSlice>::all(client), watcher::Config::default())
            .default_backoff(),
    );
    // Plain `ready` futures: a closure returning a future that borrows `changed` would make
    // this future not `Send` (the borrow's lifetime would have to be higher-ranked).
    let service_watch = service_events.for_each(|event| {
        note(event, &changed, "services");
        std::future::ready(())
    });
    let slice_watch = slice_events.for_each(|event| {
        note(event, &changed, "endpointslices");
        std::future::ready(())
    });
    let rebuild = rebuild(&zone, ttl, &services, &slices, &changed, &sender);
    tokio::join!(service_watch, slice_watch, rebuild);
}

fn note<K>(event: Result<K, watcher::Error>, changed: &Notify, kind: &str) {
    match event {
        // A permit is stored when no rebuild is waiting, so no change goes unseen.
        Ok(_) => changed.notify_one(),
        Err(error) => tracing::debug!(%error, kind, "dns: watch failed"),
    }
}

/// Publishes a snapshot once both stores are listed, then again after every burst of
/// changes.
async fn rebuild(
    zone: &str,
    ttl: u32,
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
    changed: &Notify,
    sender: &watch::Sender<Arc<Records>>,
) {
    tokio::join!(capstan_kube::store::ready(services), capstan_kube::store::ready(slices));
    // The SOA serial starts at the clock so that it grows across restarts too.
    let mut serial = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |elapsed| u32::try_from(elapsed.as_secs()).unwrap_or(1));
    loop {
        let service_state = services.state();
        let slice_state = slices.state();
        let records = Records::build(
            zone,
            ttl,
            service_state.iter().map(AsRef::as_ref),
            slice_state.iter().map(AsRef::as_ref),
        )
        .with_serial(serial);
        sender.send_replace(Arc::new(records));
        serial = serial.wrapping_add(1);
        changed.notified().await;
        tokio::time::sleep(REBUILD_DELAY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compiles only while [`run`]'s future is `Send`: `capstan server` spawns it on its
    /// multi-threaded runtime.
    fn _run_is_send(
        client: kube::Client,
        config: DnsConfig,
        stop: watch::Receiver<bool>,
    ) -> impl Future<Output = Result<(), DnsError>> + Send {
        run(client, config, stop)
    }
}
