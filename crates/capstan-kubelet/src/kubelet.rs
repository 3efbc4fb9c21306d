//! The kubelet's configuration and its entry point, [`run`]: start (or connect to) the
//! container runtime, register the node, then keep the node's heartbeats, the pods bound to
//! it and the kubelet API running until told to stop.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

/// Everything one kubelet needs to know; `capstan server` and `capstan agent` fill it
/// from their flags.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// The node's name (default: the host name).
    pub node_name: String,
    /// The address the node advertises as its InternalIP (default: the address of the
    /// interface with the default route).
    pub node_ip: Option<IpAddr>,
    /// `<data-dir>`: the kubelet keeps everything under `<data-dir>/agent`.
    pub data_dir: PathBuf,
    /// An existing CRI socket to use instead of a supervised containerd.
    pub container_runtime_endpoint: Option<PathBuf>,
    /// The cluster CA (PEM): it signs the client certificates the kubelet API accepts.
    pub cluster_ca_pem: String,
    /// The kubelet API's address and port (default 0.0.0.0:10250).
    pub kubelet_bind: IpAddr,
    pub kubelet_port: u16,
    /// Cluster DNS servers and domain, written into pods' resolv.conf (ClusterFirst).
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    /// k3s-style `registries.yaml` (mirrors and credentials), if it exists.
    pub registries_config: PathBuf,
    /// Labels and taints the node registers with.
    pub node_labels: BTreeMap<String, String>,
    pub node_taints: Vec<k8s_openapi::api::core::v1::Taint>,
    /// The most pods the node accepts (`pods` capacity).
    pub max_pods: u32,
    /// Static pod manifests (default `<data-dir>/agent/pod-manifests`).
    pub pod_manifests_dir: PathBuf,
}

impl KubeletConfig {
    /// The defaults for a node called `node_name` keeping its state under `data_dir`.
    pub fn new(node_name: String, data_dir: PathBuf, cluster_ca_pem: String) -> Self {
        let pod_manifests_dir = data_dir.join("agent/pod-manifests");
        KubeletConfig {
            node_name,
            node_ip: None,
            data_dir,
            container_runtime_endpoint: None,
            cluster_ca_pem,
            kubelet_bind: IpAddr::from([0, 0, 0, 0]),
            kubelet_port: 10250,
            cluster_dns: vec![IpAddr::from([10, 43, 0, 10])],
            cluster_domain: "cluster.local".into(),
            registries_config: PathBuf::from("/etc/capstan/registries.yaml"),
            node_labels: BTreeMap::new(),
            node_taints: Vec::new(),
            max_pods: 110,
            pod_manifests_dir,
        }
    }

    /// `<data-dir>/agent`.
    pub fn agent_dir(&self) -> PathBuf {
        self.data_dir.join("agent")
    }
}
