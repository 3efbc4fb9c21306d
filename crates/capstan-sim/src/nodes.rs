//! The node half of a hollow kubelet: registering each Node (or taking over one that exists),
//! then renewing its Lease and re-posting its status for as long as the simulator runs.

use crate::config::SimConfig;
use crate::error::{SimError, describe, is_conflict, is_not_found, is_transient};
use crate::network::{PodIpam, PodRange};
use crate::node::{
    HollowNode, LEASE_NAMESPACE, build_lease, build_node, build_node_status, lease_renewal,
};
use crate::pod_status::whole_seconds;
use futures_util::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior, interval_at};

/// The field manager Capstan's hollow nodes write as.
pub(crate) const FIELD_MANAGER: &str = "capstan-sim";

/// How often registering one node is tried before the simulator gives up.
const REGISTRATION_ATTEMPTS: u32 = 5;

/// One simulated node and the pod IPs it handed out, shared by its heartbeat (which learns
/// the Node's `spec.podCIDR`) and the pod workers (which allocate from it).
#[derive(Debug)]
pub(crate) struct SimNode {
    pub(crate) node: HollowNode,
    ipam: Mutex<PodIpam>,
}

impl SimNode {
    pub(crate) fn new(node: HollowNode) -> Self {
        let ipam = Mutex::new(PodIpam::new(node.default_pod_range()));
        SimNode { node, ipam }
    }

    /// The node's pod IPs.
    pub(crate) fn ipam(&self) -> MutexGuard<'_, PodIpam> {
        // A panic while the lock was held cannot leave the IPAM half-changed in a way that
        // matters to a simulator, so a poisoned lock is used as it is.
        self.ipam.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Moves pod IP allocation to the Node's `spec.podCIDR` when it has a usable one.
    fn follow_pod_cidr(&self, node: &Node) {
        let cidr = node.spec.as_ref().and_then(|spec| spec.pod_cidr.as_deref());
        if let Some(range) = cidr.and_then(PodRange::parse) {
            self.ipam().set_range(range);
        }
    }
}

/// The simulated nodes by name.
pub(crate) type SimNodes = HashMap<String, Arc<SimNode>>;

/// A node that registered: the uid its Lease refers to, and since when it is Ready.
#[derive(Debug, Clone)]
pub(crate) struct Registered {
    pub(crate) node: Arc<SimNode>,
    uid: String,
    since: Timestamp,
}

/// Registers every node, `registration_concurrency` at a time, in index order. A node that
/// cannot register after a few attempts fails the whole run: its error names it.
pub(crate) async fn register_all(
    client: &kube::Client,
    config: &SimConfig,
    nodes: &SimNodes,
) -> Result<Vec<Registered>, SimError> {
    let in_order: Vec<Arc<SimNode>> =
        config.indexes().filter_map(|index| nodes.get(&config.node_name(index)).cloned()).collect();
    stream::iter(in_order)
        .map(|node| register_with_retries(client, config, node))
        .buffered(config.registration_concurrency)
        .try_collect()
        .await
}

async fn register_with_retries(
    client: &kube::Client,
    config: &SimConfig,
    node: Arc<SimNode>,
) -> Result<Registered, SimError> {
    let mut delay = Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        match register(client, config, &node).await {
            Ok(registered) => return Ok(registered),
            Err(error) if is_transient(&error) && attempt < REGISTRATION_ATTEMPTS => {
                tracing::warn!(node = %node.node.name, error = %describe(&error), "registering the node failed, trying again");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(source) => return Err(SimError::Register { node: node.node.name.clone(), source }),
        }
    }
}

/// Creates the Node (or takes over the existing one), posts its status and creates its
/// Lease.
async fn register(
    client: &kube::Client,
    config: &SimConfig,
    node: &Arc<SimNode>,
) -> Result<Registered, kube::Error> {
    let name = &node.node.name;
    let api: Api<Node> = Api::all(client.clone());
    let post =
        PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PostParams::default() };
    let created = match api.create(&post, &build_node(config, &node.node)).await {
        Ok(created) => created,
        // A Node left by an earlier run (or a kubelet restart): take it over as it is.
        Err(error) if is_conflict(&error) => {
            tracing::debug!(node = %name, "the node exists: taking it over");
            api.get(name).await?
        }
        Err(error) => return Err(error),
    };
    node.follow_pod_cidr(&created);
    let uid = created.metadata.uid.clone().unwrap_or_default();
    let since = whole_seconds(Timestamp::now());
    post_status(client, config, node, since).await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let lease = build_lease(config, name, &uid, Timestamp::now());
    match leases.create(&post, &lease).await {
        Ok(_) => {}
        // The Lease of an earlier run: writing ours over it renews it and points it at this
        // Node (which may be a new one of the same name).
        Err(error) if is_conflict(&error) => {
            leases.patch(name, &patch_params(), &Patch::Merge(&lease)).await?;
        }
        Err(error) => return Err(error),
    }
    Ok(Registered { node: Arc::clone(node), uid, since })
}

/// Writes the node's whole status through `nodes/status`. A strategic merge patch merges the
/// conditions by type, so conditions other writers add (NetworkUnavailable, say) stay.
async fn post_status(
    client: &kube::Client,
    config: &SimConfig,
    node: &SimNode,
    since: Timestamp,
) -> Result<(), kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let status = build_node_status(config, &node.node, since, Timestamp::now());
    let patch = Patch::Strategic(serde_json::json!({ "status": status }));
    let updated = api.patch_status(&node.node.name, &patch_params(), &patch).await?;
    node.follow_pod_cidr(&updated);
    Ok(())
}

async fn renew_lease(
    client: &kube::Client,
    config: &SimConfig,
    name: &str,
) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let patch = Patch::Merge(lease_renewal(config, name, Timestamp::now()));
    leases.patch(name, &patch_params(), &patch).await.map(drop)
}

pub(crate) fn patch_params() -> PatchParams {
    PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PatchParams::default() }
}

/// Keeps one registered node alive until the task is dropped: renews its Lease every
/// `lease_renew_interval` and re-posts its status every `status_report_frequency`. The
/// node's `position` among `count` spreads its first renewal (and report) over one
/// interval, so that a thousand nodes do not all write in the same instant.
pub(crate) async fn keep_alive(
    client: kube::Client,
    config: Arc<SimConfig>,
    registered: Registered,
    position: u32,
) {
    let count = config.count.max(1);
    let spread = |interval: Duration| interval * (position % count + 1) / count;
    let now = Instant::now();
    let mut lease_ticks =
        interval_at(now + spread(config.lease_renew_interval), config.lease_renew_interval);
    lease_ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut status_ticks =
        interval_at(now + spread(config.status_report_frequency), config.status_report_frequency);
    status_ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let name = registered.node.node.name.clone();
    loop {
        tokio::select! {
            _ = lease_ticks.tick() => {
                if let Err(error) = ensure_lease(&client, &config, &registered).await {
                    tracing::warn!(node = %name, error = %describe(&error), "renewing the node lease failed");
                }
            }
            _ = status_ticks.tick() => {
                if let Err(error) = post_status(&client, &config, &registered.node, registered.since).await {
                    tracing::warn!(node = %name, error = %describe(&error), "posting the node status failed");
                }
            }
        }
    }
}

/// Renews the node's Lease, creating it again if someone deleted it.
async fn ensure_lease(
    client: &kube::Client,
    config: &SimConfig,
    registered: &Registered,
) -> Result<(), kube::Error> {
    let name = &registered.node.node.name;
    match renew_lease(client, config, name).await {
        Err(error) if is_not_found(&error) => {
            let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
            let lease = build_lease(config, name, &registered.uid, Timestamp::now());
            let post = PostParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PostParams::default()
            };
            leases.create(&post, &lease).await.map(drop)
        }
        other => other,
    }
}
