//! The scheduler's view of one node ([`NodeInfo`]) and of one pod ([`PodInfo`]): the API
//! objects plus what every cycle would otherwise recompute (requests, parsed affinity terms,
//! used host ports, images).

use super::resource::Resource;
use super::selectors;
use capstan_api::LabelSelector;
use k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm, WeightedPodAffinityTerm};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// One required pod (anti-)affinity term, parsed: it matches pods in `namespaces` or in
/// namespaces whose labels match `namespace_selector`, whose labels match `selector`.
#[derive(Debug, Clone)]
pub struct AffinityTerm {
    pub namespaces: BTreeSet<String>,
    /// `None` selects no namespace (the field was absent); an empty selector selects all.
    pub namespace_selector: Option<LabelSelector>,
    /// `None` selects no pod (the field was absent); an empty selector selects all.
    pub selector: Option<LabelSelector>,
    pub topology_key: String,
}

impl AffinityTerm {
    /// Parses a term of `owner`'s (anti-)affinity. Without namespaces and namespace selector
    /// the term is about the owner's own namespace.
    pub fn new(term: &PodAffinityTerm, owner: &Pod) -> AffinityTerm {
        let mut namespaces: BTreeSet<String> = term.namespaces.iter().flatten().cloned().collect();
        let namespace_selector =
            term.namespace_selector.as_ref().map(|s| selectors::label_selector(Some(s)));
        let namespace_selector = namespace_selector.flatten();
        if namespaces.is_empty() && term.namespace_selector.is_none() {
            namespaces.insert(owner.metadata.namespace.clone().unwrap_or_default());
        }
        AffinityTerm {
            namespaces,
            namespace_selector,
            selector: selectors::label_selector(term.label_selector.as_ref()),
            topology_key: term.topology_key.clone(),
        }
    }

    /// Whether `pod` (living in a namespace labelled `namespace_labels`) matches this term.
    pub fn matches(&self, pod: &Pod, namespace_labels: Option<&BTreeMap<String, String>>) -> bool {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let in_namespace = self.namespaces.contains(namespace)
            || self.namespace_selector.as_ref().is_some_and(|selector| {
                selector.matches(namespace_labels.unwrap_or(&BTreeMap::new()))
            });
        in_namespace && self.selector.as_ref().is_some_and(|selector| selector.matches(labels(pod)))
    }
}

/// A preferred term and its weight (1..=100).
#[derive(Debug, Clone)]
pub struct WeightedAffinityTerm {
    pub term: AffinityTerm,
    pub weight: i32,
}

fn labels(pod: &Pod) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    pod.metadata.labels.as_ref().unwrap_or(&EMPTY)
}

/// A pod as the scheduler handles it.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    /// What the pod requests (for filtering).
    pub requests: Resource,
    /// What the pod requests with defaults for missing CPU and memory (for scoring).
    pub non_zero_requests: Resource,
    pub required_affinity_terms: Vec<AffinityTerm>,
    pub required_anti_affinity_terms: Vec<AffinityTerm>,
    pub preferred_affinity_terms: Vec<WeightedAffinityTerm>,
    pub preferred_anti_affinity_terms: Vec<WeightedAffinityTerm>,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let affinity = pod.spec.as_ref().and_then(|spec| spec.affinity.as_ref());
        let pod_affinity = affinity.and_then(|a| a.pod_affinity.as_ref());
        let pod_anti_affinity = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let required = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms.into_iter().flatten().map(|term| AffinityTerm::new(term, &pod)).collect()
        };
        let preferred =
            |terms: Option<&Vec<WeightedPodAffinityTerm>>| -> Vec<WeightedAffinityTerm> {
                terms
                    .into_iter()
                    .flatten()
                    .map(|weighted| WeightedAffinityTerm {
                        term: AffinityTerm::new(&weighted.pod_affinity_term, &pod),
                        weight: weighted.weight,
                    })
                    .collect()
            };
        PodInfo {
            requests: Resource::pod_requests(&pod),
            non_zero_requests: Resource::pod_non_zero_requests(&pod),
            required_affinity_terms: required(
                pod_affinity
                    .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()),
            ),
            required_anti_affinity_terms: required(
                pod_anti_affinity
                    .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()),
            ),
            preferred_affinity_terms: preferred(
                pod_affinity
                    .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()),
            ),
            preferred_anti_affinity_terms: preferred(
                pod_anti_affinity
                    .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()),
            ),
            pod,
        }
    }

    pub fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or_default()
    }

    pub fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or_default()
    }

    pub fn uid(&self) -> &str {
        self.pod.metadata.uid.as_deref().unwrap_or_default()
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace(), self.name())
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        labels(&self.pod)
    }

    /// `spec.priority`, which the API server's priority admission set (0 without a class).
    pub fn priority(&self) -> i32 {
        self.pod.spec.as_ref().and_then(|spec| spec.priority).unwrap_or(0)
    }

    /// `spec.nodeName`, or "" while unassigned.
    pub fn node_name(&self) -> &str {
        self.pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()).unwrap_or_default()
    }

    pub fn has_affinity(&self) -> bool {
        !self.required_affinity_terms.is_empty()
            || !self.required_anti_affinity_terms.is_empty()
            || !self.preferred_affinity_terms.is_empty()
            || !self.preferred_anti_affinity_terms.is_empty()
    }

    pub fn has_required_anti_affinity(&self) -> bool {
        !self.required_anti_affinity_terms.is_empty()
    }

    /// The host ports the pod's containers ask for (port 0 means none).
    pub fn host_ports(&self) -> Vec<HostPort> {
        let Some(spec) = &self.pod.spec else { return Vec::new() };
        let mut ports = Vec::new();
        for container in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
            for port in container.ports.iter().flatten() {
                let Some(host_port) = port.host_port.filter(|p| *p > 0) else { continue };
                ports.push(HostPort {
                    ip: port
                        .host_ip
                        .clone()
                        .filter(|ip| !ip.is_empty())
                        .unwrap_or_else(|| "0.0.0.0".to_owned()),
                    protocol: port.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
                    port: host_port,
                });
            }
        }
        ports
    }
}

/// A host port in use: `ip` is "0.0.0.0" for all addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Two host ports conflict on the same protocol and port when either takes all addresses
    /// or both take the same one.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.protocol == other.protocol
            && self.port == other.port
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// An image on a node: its size, and on how many nodes of the cluster it is (filled in by
/// the snapshot; 0 until then).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageState {
    pub size_bytes: i64,
    pub num_nodes: usize,
}

/// `name` with `:latest` added when it has neither tag nor digest, as upstream compares
/// image names.
pub fn normalized_image_name(name: &str) -> String {
    let last_segment = name.rsplit('/').next().unwrap_or(name);
    if name.contains('@') || last_segment.contains(':') {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}

/// One node with the pods on it (bound, or assumed by the scheduler while their binding is
/// in flight).
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node: Arc<Node>,
    pub pods: Vec<PodInfo>,
    /// The sum of the pods' requests; `allowed_pod_number` counts the pods.
    pub requested: Resource,
    /// The sum of the pods' scoring requests.
    pub non_zero_requested: Resource,
    /// `status.allocatable`.
    pub allocatable: Resource,
    pub used_ports: Vec<HostPort>,
    /// Images by normalized name.
    pub image_states: BTreeMap<String, ImageState>,
    /// How many of `pods` have any pod (anti-)affinity, and required anti-affinity.
    pub pods_with_affinity: usize,
    pub pods_with_required_anti_affinity: usize,
    /// Bumped on every change; lets holders of a snapshot tell whether it is stale.
    pub generation: u64,
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let mut info = NodeInfo {
            node: Arc::clone(&node),
            pods: Vec::new(),
            requested: Resource::default(),
            non_zero_requested: Resource::default(),
            allocatable: Resource::default(),
            used_ports: Vec::new(),
            image_states: BTreeMap::new(),
            pods_with_affinity: 0,
            pods_with_required_anti_affinity: 0,
            generation: 0,
        };
        info.set_node(node);
        info
    }

    /// Replaces the node object (its allocatable and images are read again; pods stay).
    pub fn set_node(&mut self, node: Arc<Node>) {
        let status = node.status.as_ref();
        self.allocatable = status
            .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
            .map(Resource::from_list)
            .unwrap_or_default();
        self.image_states.clear();
        for image in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for name in image.names.iter().flatten() {
                let state = ImageState { size_bytes: image.size_bytes.unwrap_or(0), num_nodes: 0 };
                self.image_states.insert(normalized_image_name(name), state);
            }
        }
        self.node = node;
        self.generation += 1;
    }

    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or_default()
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.node.metadata.labels.as_ref().unwrap_or(&EMPTY)
    }

    /// Adds a pod and what it holds.
    pub fn add_pod(&mut self, pod: PodInfo) {
        let mut requests = pod.requests.clone();
        requests.allowed_pod_number = 1;
        self.requested.add(&requests);
        let mut non_zero = pod.non_zero_requests.clone();
        non_zero.allowed_pod_number = 1;
        self.non_zero_requested.add(&non_zero);
        self.used_ports.extend(pod.host_ports());
        self.pods_with_affinity += usize::from(pod.has_affinity());
        self.pods_with_required_anti_affinity += usize::from(pod.has_required_anti_affinity());
        self.pods.push(pod);
        self.generation += 1;
    }

    /// Removes the pod with this uid and gives back what it held; `None` if it is not here.
    pub fn remove_pod(&mut self, uid: &str) -> Option<PodInfo> {
        let position = self.pods.iter().position(|pod| pod.uid() == uid)?;
        let pod = self.pods.swap_remove(position);
        let mut requests = pod.requests.clone();
        requests.allowed_pod_number = 1;
        self.requested.sub(&requests);
        let mut non_zero = pod.non_zero_requests.clone();
        non_zero.allowed_pod_number = 1;
        self.non_zero_requested.sub(&non_zero);
        for port in pod.host_ports() {
            if let Some(index) = self.used_ports.iter().position(|used| *used == port) {
                self.used_ports.swap_remove(index);
            }
        }
        self.pods_with_affinity -= usize::from(pod.has_affinity());
        self.pods_with_required_anti_affinity -= usize::from(pod.has_required_anti_affinity());
        self.generation += 1;
        Some(pod)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testing::{node, pod};
    use serde_json::json;

    #[test]
    fn adding_and_removing_pods_keeps_the_sums() {
        let mut info = NodeInfo::new(node(json!({"metadata": {"name": "n"},
            "status": {"allocatable": {"cpu": "2", "memory": "1Gi", "pods": "10"}}})));
        assert_eq!(info.allocatable.milli_cpu, 2000);
        let p = pod(
            json!({"metadata": {"name": "a", "uid": "u1"}, "spec": {"containers": [{"name": "c", "image": "i",
            "resources": {"requests": {"cpu": "500m"}}, "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}),
        );
        info.add_pod(PodInfo::new(p));
        assert_eq!((info.requested.milli_cpu, info.requested.allowed_pod_number), (500, 1));
        assert_eq!(info.used_ports.len(), 1);
        assert!(info.remove_pod("u1").is_some());
        assert_eq!(info.requested, Resource::default());
        assert!(info.used_ports.is_empty());
    }

    #[test]
    fn image_names_get_a_latest_tag() {
        assert_eq!(normalized_image_name("busybox"), "busybox:latest");
        assert_eq!(
            normalized_image_name("localhost:5000/busybox"),
            "localhost:5000/busybox:latest"
        );
        assert_eq!(normalized_image_name("busybox:1.36"), "busybox:1.36");
        assert_eq!(normalized_image_name("busybox@sha256:ab"), "busybox@sha256:ab");
    }
}
