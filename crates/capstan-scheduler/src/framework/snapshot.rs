//! A consistent view of the cluster for one scheduling cycle: every node with its pods, and
//! the other objects plugins consult (namespaces' labels, volumes). Node infos are shared
//! (`Arc`) with the scheduler's cache, which copies one only when it changes it.

use super::node_info::{NodeInfo, PodInfo};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Every node, in a stable order.
    pub nodes: Vec<Arc<NodeInfo>>,
    index: HashMap<String, usize>,
    /// Labels of each namespace, by name (for namespace selectors of affinity terms).
    pub namespace_labels: HashMap<String, BTreeMap<String, String>>,
    /// Claims by `namespace/name`.
    pub pvcs: HashMap<String, Arc<PersistentVolumeClaim>>,
    /// Volumes by name.
    pub pvs: HashMap<String, Arc<PersistentVolume>>,
    /// Storage classes by name.
    pub storage_classes: HashMap<String, Arc<StorageClass>>,
    /// On how many nodes each image (normalized name) is present.
    pub image_nodes: HashMap<String, usize>,
    /// Every PodDisruptionBudget (preemption prefers victims whose eviction they allow).
    pub pdbs: Vec<Arc<PodDisruptionBudget>>,
    /// Pending pods nominated to a node by preemption, by node name: filters count them on
    /// that node for pods of no higher priority, so the space preemption freed stays theirs.
    pub nominated_pods: HashMap<String, Vec<PodInfo>>,
}

impl Snapshot {
    /// A snapshot of these nodes (no namespaces or volumes: set those fields as needed).
    pub fn new(nodes: Vec<Arc<NodeInfo>>) -> Snapshot {
        let index = nodes.iter().enumerate().map(|(i, node)| (node.name().to_owned(), i)).collect();
        let mut image_nodes: HashMap<String, usize> = HashMap::new();
        for node in &nodes {
            for image in node.image_states.keys() {
                *image_nodes.entry(image.clone()).or_default() += 1;
            }
        }
        Snapshot { nodes, index, image_nodes, ..Snapshot::default() }
    }

    pub fn node(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// The position of the node in `nodes`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Nodes with at least one pod that has pod (anti-)affinity.
    pub fn nodes_with_affinity_pods(&self) -> impl Iterator<Item = &Arc<NodeInfo>> {
        self.nodes.iter().filter(|node| node.pods_with_affinity > 0)
    }

    /// Nodes with at least one pod that has required anti-affinity.
    pub fn nodes_with_required_anti_affinity_pods(&self) -> impl Iterator<Item = &Arc<NodeInfo>> {
        self.nodes.iter().filter(|node| node.pods_with_required_anti_affinity > 0)
    }

    pub fn namespace_labels(&self, namespace: &str) -> Option<&BTreeMap<String, String>> {
        self.namespace_labels.get(namespace)
    }
}
