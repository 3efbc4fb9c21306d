//! What every controller shares: the API client, the configuration, and Event recorders
//! named after upstream's controllers.

use capstan_kube::events::Recorder;

/// How the controller manager runs.
#[derive(Debug, Clone)]
pub struct ControllerManagerConfig {
    /// The cluster CA certificate (PEM) published as `kube-root-ca.crt` in every namespace.
    pub root_ca_pem: String,
    /// The pods' address ranges, one per IP family, comma-separated (`10.42.0.0/16` or
    /// `10.42.0.0/16,fd42::/56`), out of which node IPAM gives each node its pod CIDRs.
    pub cluster_cidr: String,
    /// The prefix length of each node's IPv4 pod CIDR.
    pub node_cidr_mask_size_ipv4: u8,
    /// The prefix length of each node's IPv6 pod CIDR.
    pub node_cidr_mask_size_ipv6: u8,
    /// Terminated pods beyond this many are deleted, oldest first (0: never).
    pub terminated_pod_gc_threshold: usize,
    /// How long a node's kubelet may go without renewing its Lease or posting its Ready
    /// heartbeat before the node counts as unreachable (`--node-monitor-grace-period`).
    pub node_monitor_grace_period: std::time::Duration,
}

impl Default for ControllerManagerConfig {
    /// k3s's defaults: pods in 10.42.0.0/16, a /24 (or an IPv6 /64) per node; upstream's
    /// 12,500 terminated pods and 50 s node monitor grace period.
    fn default() -> Self {
        ControllerManagerConfig {
            root_ca_pem: String::new(),
            cluster_cidr: "10.42.0.0/16".into(),
            node_cidr_mask_size_ipv4: 24,
            node_cidr_mask_size_ipv6: 64,
            terminated_pod_gc_threshold: 12_500,
            node_monitor_grace_period: std::time::Duration::from_secs(50),
        }
    }
}

/// Shared by every controller.
pub struct Context {
    pub client: kube::Client,
    pub config: ControllerManagerConfig,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(client: kube::Client, config: ControllerManagerConfig) -> Context {
        Context { client, config }
    }

    /// An Event recorder reporting as `controller` (upstream's names:
    /// `replicaset-controller`, `namespace-controller`, …).
    pub fn recorder(&self, controller: &str) -> Recorder {
        Recorder::new(self.client.clone(), controller)
    }
}

/// An error and its causes, `: `-separated, for a log line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The reference a controller puts on what it owns: `controller` and `blockOwnerDeletion`
/// set (so foreground deletion waits for the dependent). Default (empty) only for an object
/// without name or uid, which objects read from the API always have.
pub(crate) fn controller_reference<K>(
    owner: &K,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference
where
    K: kube::Resource<DynamicType = ()>,
{
    let reference = owner.controller_owner_ref(&()).unwrap_or_default();
    k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        block_owner_deletion: Some(true),
        ..reference
    }
}
