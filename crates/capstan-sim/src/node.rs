//! The objects a hollow node writes about itself: its Node, the Node's status and its Lease
//! in `kube-node-lease`, built the way a v1.33 kubelet fills them.

use crate::config::SimConfig;
use crate::network::{PodRange, default_pod_range, node_internal_ip};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// The port the Node says its kubelet listens on (nothing listens: the node is hollow).
const KUBELET_PORT: i32 = 10250;

/// Who one hollow node is: its index, name, address and zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HollowNode {
    pub index: u32,
    pub name: String,
    pub internal_ip: Ipv4Addr,
    pub zone: Option<String>,
}

impl HollowNode {
    pub fn new(config: &SimConfig, index: u32) -> Self {
        HollowNode {
            index,
            name: config.node_name(index),
            internal_ip: node_internal_ip(index),
            zone: config.zone(index),
        }
    }

    /// Where pod IPs come from when the Node has no `spec.podCIDR`.
    pub fn default_pod_range(&self) -> PodRange {
        default_pod_range(self.index)
    }
}

/// The Node to create: name, labels and taints. Its status is posted separately, through
/// `nodes/status`.
pub fn build_node(config: &SimConfig, node: &HollowNode) -> Node {
    let mut labels = BTreeMap::new();
    labels.insert("kubernetes.io/hostname".to_owned(), node.name.clone());
    labels.insert("kubernetes.io/os".to_owned(), "linux".to_owned());
    labels.insert("kubernetes.io/arch".to_owned(), "amd64".to_owned());
    labels.insert("node.kubernetes.io/instance-type".to_owned(), "hollow".to_owned());
    if let Some(zone) = &node.zone {
        labels.insert("topology.kubernetes.io/zone".to_owned(), zone.clone());
    }
    // Flags come last, so a `--label` may override a standard label, as the kubelet's
    // `--node-labels` can.
    for label in &config.labels {
        labels.insert(label.key.clone(), label.value.clone());
    }
    let taints: Vec<Taint> = config.taints.iter().map(Taint::from).collect();
    Node {
        metadata: ObjectMeta {
            name: Some(node.name.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            taints: (!taints.is_empty()).then_some(taints),
            ..NodeSpec::default()
        }),
        status: None,
    }
}

/// The node's status as of `now`: a healthy kubelet with the configured capacity. Condition
/// transitions are dated `since`, the moment this process took the node over, so that
/// re-posting the status only moves the heartbeats.
pub fn build_node_status(
    config: &SimConfig,
    node: &HollowNode,
    since: Timestamp,
    now: Timestamp,
) -> NodeStatus {
    let capacity: BTreeMap<String, Quantity> = [
        ("cpu", config.cpu.clone()),
        ("memory", config.memory.clone()),
        ("pods", config.max_pods.to_string()),
        ("ephemeral-storage", "100Gi".to_owned()),
    ]
    .into_iter()
    .map(|(name, amount)| (name.to_owned(), Quantity(amount)))
    .collect();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(Time(since)),
    };
    NodeStatus {
        capacity: Some(capacity.clone()),
        allocatable: Some(capacity),
        conditions: Some(vec![
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ]),
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".to_owned(), address: node.internal_ip.to_string() },
            NodeAddress { type_: "Hostname".to_owned(), address: node.name.clone() },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: KUBELET_PORT }),
        }),
        node_info: Some(NodeSystemInfo {
            machine_id: format!("{:032x}", u128::from(node.index) + 1),
            system_uuid: fake_uuid(node.index),
            boot_id: fake_uuid(node.index),
            kernel_version: "6.1.0-capstan-hollow".to_owned(),
            os_image: "Capstan hollow node".to_owned(),
            container_runtime_version: "capstan-hollow://0".to_owned(),
            kubelet_version: "v1.33.0".to_owned(),
            kube_proxy_version: String::new(),
            operating_system: "linux".to_owned(),
            architecture: "amd64".to_owned(),
            swap: None,
        }),
        ..NodeStatus::default()
    }
}

/// A UUID-shaped identifier unique to the node index.
fn fake_uuid(index: u32) -> String {
    format!("00000000-0000-4000-8000-{:012x}", u64::from(index) + 1)
}

/// The node's Lease, owned by its Node (`node_uid`) so that it goes when the Node goes.
pub fn build_lease(config: &SimConfig, node_name: &str, node_uid: &str, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(node_name.to_owned()),
            namespace: Some(LEASE_NAMESPACE.to_owned()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".to_owned(),
                kind: "Node".to_owned(),
                name: node_name.to_owned(),
                uid: node_uid.to_owned(),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(lease_spec(config, node_name, now)),
    }
}

/// A merge patch that renews the node's Lease at `now`.
pub fn lease_renewal(config: &SimConfig, node_name: &str, now: Timestamp) -> serde_json::Value {
    serde_json::json!({ "spec": lease_spec(config, node_name, now) })
}

fn lease_spec(config: &SimConfig, node_name: &str, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(node_name.to_owned()),
        // Leases last tens of seconds; anything beyond i32 seconds is clamped.
        lease_duration_seconds: Some(
            i32::try_from(config.lease_duration.as_secs()).unwrap_or(i32::MAX),
        ),
        renew_time: Some(MicroTime(now)),
        ..LeaseSpec::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Label, TaintFlag};
    use serde_json::json;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn check(actual: impl k8s_openapi::serde::Serialize, expected: serde_json::Value) {
        let actual = serde_json::to_value(actual).unwrap();
        assert_eq!(actual, expected, "\n{}", serde_json::to_string_pretty(&actual).unwrap());
    }

    #[test]
    fn node_with_zone_labels_and_taints() {
        let config = SimConfig {
            zones: 3,
            labels: vec!["team=storage".parse::<Label>().unwrap()],
            taints: vec!["dedicated=infra:NoSchedule".parse::<TaintFlag>().unwrap()],
            ..SimConfig::new(10)
        };
        let node = HollowNode::new(&config, 7);
        check(
            build_node(&config, &node),
            json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "labels": {
                        "kubernetes.io/arch": "amd64",
                        "kubernetes.io/hostname": "hollow-7",
                        "kubernetes.io/os": "linux",
                        "node.kubernetes.io/instance-type": "hollow",
                        "team": "storage",
                        "topology.kubernetes.io/zone": "zone-1",
                    },
                    "name": "hollow-7",
                },
                "spec": {"taints": [{"effect": "NoSchedule", "key": "dedicated", "value": "infra"}]},
            }),
        );
    }

    #[test]
    fn node_without_zones_or_taints() {
        let config = SimConfig { name_prefix: "sim-".to_owned(), ..SimConfig::new(1) };
        let node = HollowNode::new(&config, 0);
        check(
            build_node(&config, &node),
            json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "labels": {
                        "kubernetes.io/arch": "amd64",
                        "kubernetes.io/hostname": "sim-0",
                        "kubernetes.io/os": "linux",
                        "node.kubernetes.io/instance-type": "hollow",
                    },
                    "name": "sim-0",
                },
                "spec": {},
            }),
        );
    }

    #[test]
    fn node_status() {
        let config = SimConfig { cpu: "8".to_owned(), max_pods: 50, ..SimConfig::new(1) };
        let node = HollowNode::new(&config, 300);
        let since = at("2025-01-01T00:00:00Z");
        let now = at("2025-01-01T00:05:00.75Z");
        let condition = |type_: &str, status: &str, reason: &str, message: &str| {
            json!({
                "lastHeartbeatTime": "2025-01-01T00:05:00Z",
                "lastTransitionTime": "2025-01-01T00:00:00Z",
                "message": message,
                "reason": reason,
                "status": status,
                "type": type_,
            })
        };
        let capacity =
            json!({"cpu": "8", "ephemeral-storage": "100Gi", "memory": "16Gi", "pods": "50"});
        check(
            build_node_status(&config, &node, since, now),
            json!({
                "addresses": [
                    {"address": "10.250.1.45", "type": "InternalIP"},
                    {"address": "hollow-300", "type": "Hostname"},
                ],
                "allocatable": capacity,
                "capacity": capacity,
                "conditions": [
                    condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                    condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                    condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                    condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {
                    "architecture": "amd64",
                    "bootID": "00000000-0000-4000-8000-00000000012d",
                    "containerRuntimeVersion": "capstan-hollow://0",
                    "kernelVersion": "6.1.0-capstan-hollow",
                    "kubeProxyVersion": "",
                    "kubeletVersion": "v1.33.0",
                    "machineID": "0000000000000000000000000000012d",
                    "operatingSystem": "linux",
                    "osImage": "Capstan hollow node",
                    "systemUUID": "00000000-0000-4000-8000-00000000012d",
                },
            }),
        );
    }

    #[test]
    fn lease_and_renewal() {
        let config = SimConfig::new(1);
        let now = at("2025-01-01T00:00:10.123456789Z");
        check(
            build_lease(&config, "hollow-0", "uid-0", now),
            json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": "hollow-0",
                    "namespace": "kube-node-lease",
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "hollow-0", "uid": "uid-0"}],
                },
                "spec": {
                    "holderIdentity": "hollow-0",
                    "leaseDurationSeconds": 40,
                    "renewTime": "2025-01-01T00:00:10.123456Z",
                },
            }),
        );
        check(
            lease_renewal(&config, "hollow-0", now),
            json!({"spec": {
                "holderIdentity": "hollow-0",
                "leaseDurationSeconds": 40,
                "renewTime": "2025-01-01T00:00:10.123456Z",
            }}),
        );
    }
}
