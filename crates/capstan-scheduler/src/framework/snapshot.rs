//! A consistent view of the cluster for one scheduling cycle: every node with its pods, and
//! the other objects plugins consult (namespaces' labels, volumes). Node infos are shared
//! (`Arc`) with the scheduler's cache, which copies one only when it changes it.

use super::node_info::{NodeInfo, PodInfo};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
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

    /// Adds a node, or replaces the node object of a known one (keeping its pods). Returns
    /// whether the node is new.
    pub fn upsert_node(&mut self, node: Arc<Node>) -> bool {
        let name = node.metadata.name.clone().unwrap_or_default();
        match self.index.get(&name) {
            Some(&position) => {
                let info = Arc::make_mut(&mut self.nodes[position]);
                let old_images: Vec<String> = info.image_states.keys().cloned().collect();
                info.set_node(node);
                let new_images: Vec<String> = info.image_states.keys().cloned().collect();
                self.count_images(&old_images, false);
                self.count_images(&new_images, true);
                false
            }
            None => {
                let info = NodeInfo::new(node);
                let images: Vec<String> = info.image_states.keys().cloned().collect();
                self.count_images(&images, true);
                self.index.insert(name, self.nodes.len());
                self.nodes.push(Arc::new(info));
                true
            }
        }
    }

    /// Removes a node (and, with it, what the snapshot knows of its pods).
    pub fn remove_node(&mut self, name: &str) -> Option<Arc<NodeInfo>> {
        let position = self.index.remove(name)?;
        let removed = self.nodes.swap_remove(position);
        if let Some(moved) = self.nodes.get(position) {
            self.index.insert(moved.name().to_owned(), position);
        }
        let images: Vec<String> = removed.image_states.keys().cloned().collect();
        self.count_images(&images, false);
        Some(removed)
    }

    /// The node to change; copied first if a reader still holds it.
    pub fn node_mut(&mut self, name: &str) -> Option<&mut NodeInfo> {
        let position = *self.index.get(name)?;
        Some(Arc::make_mut(&mut self.nodes[position]))
    }

    fn count_images(&mut self, images: &[String], add: bool) {
        for image in images {
            if add {
                *self.image_nodes.entry(image.clone()).or_default() += 1;
            } else if let Some(count) = self.image_nodes.get_mut(image) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.image_nodes.remove(image);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testing::{pod_info, simple_node};
    use serde_json::json;

    #[test]
    fn nodes_come_and_go_with_their_index() {
        let mut snapshot = Snapshot::default();
        for name in ["a", "b", "c"] {
            assert!(snapshot.upsert_node(simple_node(name, json!({}), "1", "1Gi")));
        }
        assert!(!snapshot.upsert_node(simple_node("b", json!({"x": "y"}), "2", "1Gi")));
        assert_eq!(snapshot.node("b").map(|n| n.allocatable.milli_cpu), Some(2000));
        if let Some(n) = snapshot.node_mut("c") {
            n.add_pod(pod_info(json!({"metadata": {"name": "p"}})));
        }
        snapshot.remove_node("a");
        assert_eq!(snapshot.nodes.len(), 2);
        assert_eq!(snapshot.node("c").map(|n| n.pods.len()), Some(1));
        assert_eq!(snapshot.position("c"), Some(0));
        assert!(snapshot.node("a").is_none());
    }
}
