//! Builders for unit tests: API objects from JSON, node infos with pods, snapshots.

use super::{NodeInfo, PodInfo, Snapshot};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};
use std::sync::Arc;

/// A pod from JSON; `metadata.namespace` defaults to "default", `metadata.uid` to the name,
/// and `spec.containers` to one container without requests.
pub(crate) fn pod(value: Value) -> Arc<Pod> {
    let mut value = value;
    let name = value["metadata"]["name"].as_str().unwrap_or("pod").to_owned();
    let metadata = value["metadata"].as_object_mut().expect("pod JSON has metadata");
    metadata.entry("namespace").or_insert(json!("default"));
    metadata.entry("uid").or_insert(json!(name));
    if value.get("spec").is_none() {
        value["spec"] = json!({});
    }
    let spec = value["spec"].as_object_mut().expect("spec is an object");
    spec.entry("containers").or_insert(json!([{"name": "c", "image": "busybox"}]));
    Arc::new(serde_json::from_value(value).expect("a valid Pod"))
}

/// A node from JSON.
pub(crate) fn node(value: Value) -> Arc<Node> {
    Arc::new(serde_json::from_value(value).expect("a valid Node"))
}

/// A node named `name` with labels and allocatable `cpu` (cores), `memory` and 110 pods.
pub(crate) fn simple_node(name: &str, labels: Value, cpu: &str, memory: &str) -> Arc<Node> {
    node(json!({"metadata": {"name": name, "labels": labels},
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}}))
}

/// A pod info from JSON (see [`pod`]).
pub(crate) fn pod_info(value: Value) -> PodInfo {
    PodInfo::new(pod(value))
}

/// A node info with these pods on it.
pub(crate) fn node_info(node: Arc<Node>, pods: Vec<Arc<Pod>>) -> NodeInfo {
    let mut info = NodeInfo::new(node);
    for pod in pods {
        info.add_pod(PodInfo::new(pod));
    }
    info
}

/// A snapshot of these node infos.
pub(crate) fn snapshot(nodes: Vec<NodeInfo>) -> Snapshot {
    Snapshot::new(nodes.into_iter().map(Arc::new).collect())
}
