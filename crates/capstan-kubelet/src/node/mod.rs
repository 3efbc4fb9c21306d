//! The kubelet's node: registering the Node object, then keeping it alive with two
//! heartbeats, as the kubelet does: the Lease in `kube-node-lease`, renewed every 10 s,
//! and the node status (capacity, conditions, images, addresses, `nodeInfo`), posted every
//! 10 s and at once when a condition changes.
//!
//! - `host`: the machine's readings behind [`HostInfo`];
//! - `status`: the Node and its status as pure functions of those readings;
//! - `lease`: the Lease and its renewal.

mod host;
mod lease;
mod status;

pub use host::{FilesystemReading, HostError, HostInfo, LocalHost, MemoryReading, SystemIdentity};
pub use lease::LEASE_NAMESPACE;
pub use status::kubelet_version;

use crate::KubeletConfig;
use crate::runtime::{Runtime, RuntimeError};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use status::{Observed, Resources};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the full status is posted (the kubelet's `nodeStatusUpdateFrequency`).
const STATUS_UPDATE_INTERVAL: Duration = Duration::from_secs(10);
/// How often the conditions are checked for a change that is posted without waiting.
const CONDITION_PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// How soon a failed Lease renewal is retried.
const LEASE_RETRY: Duration = Duration::from_secs(1);
/// The field manager of the kubelet's writes.
const FIELD_MANAGER: &str = "kubelet";

/// A failure to register the node or post its status.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot {action} {object}")]
    Api {
        action: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot read the host's resources")]
    Host(#[from] HostError),
    #[error("cannot ask the container runtime")]
    Runtime(#[from] RuntimeError),
}

fn api_error(action: &'static str, object: String) -> impl FnOnce(kube::Error) -> NodeError {
    move |source| NodeError::Api { action, object, source }
}

fn has_code(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

fn patch_params() -> PatchParams {
    PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PatchParams::default() }
}

/// Creates the Node `config.node_name`, or brings an existing one in line (our labels
/// applied, our taints added; `spec.podCIDR` and whatever else others set is kept), then
/// posts its full status.
pub async fn register(
    client: &kube::Client,
    config: &KubeletConfig,
    runtime: &dyn Runtime,
) -> Result<(), NodeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let name = &config.node_name;
    let wanted = status::build_node(config);
    let post =
        PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PostParams::default() };
    match nodes.create(&post, &wanted).await {
        Ok(_) => tracing::info!(node = %name, "registered the node"),
        Err(error) if has_code(&error, 409) => {
            update_existing(&nodes, &wanted, name).await?;
            tracing::info!(node = %name, "the node was already registered");
        }
        Err(error) => return Err(api_error("create", format!("node {name}"))(error)),
    }
    post_status(&nodes, config, runtime, &LocalHost).await?;
    Ok(())
}

/// Applies [`status::reconcile_existing`], retrying when someone else changed the Node
/// between our read and our patch.
async fn update_existing(nodes: &Api<Node>, wanted: &Node, name: &str) -> Result<(), NodeError> {
    const ATTEMPTS: u32 = 5;
    for attempt in 1..=ATTEMPTS {
        let existing = nodes.get(name).await.map_err(api_error("read", format!("node {name}")))?;
        let Some(patch) = status::reconcile_existing(&existing, wanted) else {
            return Ok(());
        };
        match nodes.patch(name, &patch_params(), &Patch::Merge(&patch)).await {
            Ok(_) => return Ok(()),
            Err(error) if has_code(&error, 409) && attempt < ATTEMPTS => continue,
            Err(error) => return Err(api_error("update", format!("node {name}"))(error)),
        }
    }
    Ok(())
}

/// Renews the node's Lease and posts the node's status until `stop` turns true. Failures
/// are logged and retried: the Lease after [`LEASE_RETRY`], the status at the next tick.
pub async fn run_heartbeats(
    client: kube::Client,
    config: KubeletConfig,
    runtime: Arc<dyn Runtime>,
    mut stop: watch::Receiver<bool>,
) {
    let host = LocalHost;
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    let name = config.node_name.clone();
    let mut lease_timer = tokio::time::interval(lease::RENEW_INTERVAL);
    let mut status_timer = tokio::time::interval(STATUS_UPDATE_INTERVAL);
    let mut probe_timer = tokio::time::interval(CONDITION_PROBE_INTERVAL);
    for timer in [&mut lease_timer, &mut status_timer, &mut probe_timer] {
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    // The conditions last posted: a probe that sees different ones posts at once.
    let mut posted: Option<Vec<Observed>> = None;
    loop {
        tokio::select! {
            () = until_stopped(&mut stop) => return,
            _ = lease_timer.tick() => {
                if let Err(error) = renew_lease(&leases, &nodes, &name).await {
                    tracing::warn!(node = %name, error = %error_chain(&error), "cannot renew the node's lease");
                    lease_timer.reset_after(LEASE_RETRY);
                }
            }
            _ = status_timer.tick() => {
                match post_status(&nodes, &config, runtime.as_ref(), &host).await {
                    Ok(conditions) => posted = Some(conditions),
                    Err(error) => tracing::warn!(node = %name, error = %error_chain(&error), "cannot post the node's status"),
                }
            }
            _ = probe_timer.tick() => {
                let Some(last) = &posted else { continue };
                match observe(&config, runtime.as_ref(), &host).await {
                    Ok(now) if status::conditions_changed(last, &now.conditions) => {
                        tracing::info!(node = %name, conditions = ?describe(&now.conditions), "node conditions changed");
                        status_timer.reset_immediately();
                    }
                    Ok(_) => {}
                    Err(error) => tracing::debug!(error = %error_chain(&error), "cannot read the node's conditions"),
                }
            }
        }
    }
}

/// The error and its causes on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn describe(conditions: &[Observed]) -> Vec<String> {
    conditions.iter().map(|c| format!("{}={}", c.type_, c.status)).collect()
}

/// Completes once the stop flag is set (or its sender is gone).
async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it before this future yields.
    let _ = stop.wait_for(|stop| *stop).await.map(|_| ());
}

/// Renews the Lease with a merge patch; creates it, owned by the Node, when it is missing.
async fn renew_lease(leases: &Api<Lease>, nodes: &Api<Node>, name: &str) -> Result<(), NodeError> {
    let object = || format!("lease {LEASE_NAMESPACE}/{name}");
    let now = Timestamp::now();
    let renewal = lease::renewal(name, None, now);
    match leases.patch(name, &patch_params(), &Patch::Merge(&renewal)).await {
        Ok(renewed) => {
            if renewed.metadata.owner_references.as_ref().is_none_or(Vec::is_empty) {
                let uid = node_uid(nodes, name).await?;
                let owned = lease::renewal(name, Some(&uid), now);
                leases
                    .patch(name, &patch_params(), &Patch::Merge(&owned))
                    .await
                    .map_err(api_error("update", object()))?;
            }
            Ok(())
        }
        Err(error) if has_code(&error, 404) => {
            let uid = node_uid(nodes, name).await?;
            let post = PostParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PostParams::default()
            };
            match leases.create(&post, &lease::build_lease(name, &uid, now)).await {
                Ok(_) => Ok(()),
                // Created meanwhile (by an earlier, slow attempt): renewed next time.
                Err(error) if has_code(&error, 409) => Ok(()),
                Err(error) => Err(api_error("create", object())(error)),
            }
        }
        Err(error) => Err(api_error("renew", object())(error)),
    }
}

async fn node_uid(nodes: &Api<Node>, name: &str) -> Result<String, NodeError> {
    let node = nodes.get(name).await.map_err(api_error("read", format!("node {name}")))?;
    Ok(node.metadata.uid.unwrap_or_default())
}

/// What the host and the runtime say now.
#[derive(Debug)]
struct Observation {
    resources: Resources,
    conditions: Vec<Observed>,
}

async fn observe(
    config: &KubeletConfig,
    runtime: &dyn Runtime,
    host: &dyn HostInfo,
) -> Result<Observation, NodeError> {
    let memory = host.memory()?;
    let filesystem = host.filesystem(&existing_ancestor(&config.data_dir))?;
    let resources = Resources {
        cpus: host.online_cpus()?,
        memory_bytes: memory.total,
        ephemeral_storage_bytes: filesystem.capacity_bytes,
        pods: config.max_pods,
    };
    let runtime_status = runtime.status().await;
    let problems = status::runtime_problems(runtime_status.as_ref());
    let conditions =
        status::observe_conditions(&memory, &filesystem, config.eviction_nodefs_percent, &problems);
    Ok(Observation { resources, conditions })
}

/// `path`, or its nearest ancestor that exists: the filesystem the data directory is (or
/// will be) on.
fn existing_ancestor(path: &Path) -> PathBuf {
    path.ancestors().find(|dir| dir.exists()).unwrap_or(Path::new("/")).to_owned()
}

/// Posts the whole status with a merge patch of `nodes/<name>/status`; returns the
/// conditions posted. Transition times are worked out against the Node as read now, as
/// the kubelet does, so that a status someone else changed (the node lifecycle
/// controller's Unknown) counts as a transition.
async fn post_status(
    nodes: &Api<Node>,
    config: &KubeletConfig,
    runtime: &dyn Runtime,
    host: &dyn HostInfo,
) -> Result<Vec<Observed>, NodeError> {
    let name = &config.node_name;
    let observation = observe(config, runtime, host).await?;
    let current =
        nodes.get_status(name).await.map_err(api_error("read", format!("node {name}")))?;
    let current_status = current.status.unwrap_or_default();
    // The runtime version and images are best effort: when the runtime does not answer,
    // the previous values stay (the images are left out of the patch).
    let runtime_version = match runtime.version().await {
        Ok(version) => version,
        Err(_) => current_status
            .node_info
            .as_ref()
            .and_then(|info| info.container_runtime_version.split_once("://"))
            .map(|(name, version)| (name.to_owned(), version.to_owned()))
            .unwrap_or_default(),
    };
    let images = runtime.list_images().await.ok().map(status::node_images);
    let internal_ips = if config.node_ips.is_empty() {
        host.default_ipv4().map(IpAddr::V4).into_iter().collect()
    } else {
        config.node_ips.clone()
    };
    let previous = current_status.conditions.unwrap_or_default();
    let parts = status::StatusParts {
        resources: observation.resources,
        conditions: status::next_conditions(&previous, &observation.conditions, Timestamp::now()),
        addresses: status::addresses(&internal_ips, name),
        node_info: status::node_info(&host.identity(), &runtime_version),
        images: Vec::new(),
        kubelet_port: config.kubelet_port,
    };
    let mut node_status = status::build_status(parts);
    node_status.images = images;
    let patch = serde_json::json!({ "status": node_status });
    nodes
        .patch_status(name, &patch_params(), &Patch::Merge(&patch))
        .await
        .map_err(api_error("update the status of", format!("node {name}")))?;
    Ok(observation.conditions)
}
