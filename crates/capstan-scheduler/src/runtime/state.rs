//! The scheduler's memory of the cluster, fed by the informers: the snapshot scheduling
//! cycles read (nodes with their bound and assumed pods), the other objects plugins consult,
//! and the queue of pods waiting for a node. Synchronous; the runtime holds it in a mutex.

use crate::framework::{ClusterEvent, PodInfo, Snapshot};
use crate::queue::SchedulingQueue;
use k8s_openapi::api::core::v1::{Node, Pod};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Where a pod the cache knows of sits.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placement {
    node: String,
    /// Assumed by this scheduler while its binding is in flight; not yet seen bound.
    assumed: bool,
}

#[derive(Debug)]
pub(crate) struct ClusterState {
    pub(crate) snapshot: Snapshot,
    pub(crate) queue: SchedulingQueue,
    /// The scheduler name whose pods this scheduler places.
    scheduler_name: String,
    placements: HashMap<String, Placement>,
    /// Bound pods whose node the cache has not seen yet, by node name.
    orphans: HashMap<String, Vec<PodInfo>>,
}

impl ClusterState {
    pub(crate) fn new(queue: SchedulingQueue, scheduler_name: String) -> ClusterState {
        ClusterState {
            snapshot: Snapshot::default(),
            queue,
            scheduler_name,
            placements: HashMap::new(),
            orphans: HashMap::new(),
        }
    }

    /// Whether the pod is bound or assumed (a popped copy of it must not be scheduled again).
    pub(crate) fn is_placed(&self, uid: &str) -> bool {
        self.placements.contains_key(uid)
    }

    /// A pod was added or changed. Returns the cluster event it amounts to, if any.
    pub(crate) fn apply_pod(&mut self, pod: Arc<Pod>, now: Instant) -> Option<ClusterEvent> {
        let info = PodInfo::new(pod);
        let uid = info.uid().to_owned();
        let node = info.node_name().to_owned();
        let phase = info.pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let terminal = matches!(phase, Some("Succeeded" | "Failed"));
        if node.is_empty() {
            if self.placements.get(&uid).is_some_and(|p| p.assumed) {
                // An update from before the binding landed: the assumption stands.
                return None;
            }
            if info.pod.metadata.deletion_timestamp.is_some()
                || terminal
                || !self.responsible_for(&info)
            {
                self.queue.delete(&uid);
                return None;
            }
            self.queue.update(info, now);
            return None;
        }
        self.queue.delete(&uid);
        if terminal {
            // A finished pod holds nothing on its node.
            return self.remove_placed(&uid).then_some(ClusterEvent::AssignedPodDelete);
        }
        let known = self.placements.get(&uid).cloned();
        if let Some(placement) = &known {
            self.take_from_node(&uid, &placement.node);
        }
        self.placements.insert(uid, Placement { node: node.clone(), assumed: false });
        self.put_on_node(&node, info);
        match known {
            Some(placement) if !placement.assumed => Some(ClusterEvent::AssignedPodUpdate),
            _ => Some(ClusterEvent::AssignedPodAdd),
        }
    }

    /// A pod was deleted.
    pub(crate) fn delete_pod(&mut self, uid: &str) -> Option<ClusterEvent> {
        if self.remove_placed(uid) {
            return Some(ClusterEvent::AssignedPodDelete);
        }
        self.queue.delete(uid);
        Some(ClusterEvent::UnscheduledPodDelete)
    }

    /// Counts a pod on a node before its binding is confirmed.
    pub(crate) fn assume(&mut self, info: &PodInfo, node: &str) {
        self.placements
            .insert(info.uid().to_owned(), Placement { node: node.to_owned(), assumed: true });
        let mut bound = (*info.pod).clone();
        if let Some(spec) = bound.spec.as_mut() {
            spec.node_name = Some(node.to_owned());
        }
        self.put_on_node(node, PodInfo::new(Arc::new(bound)));
    }

    /// Drops an assumption whose binding failed.
    pub(crate) fn forget(&mut self, uid: &str) {
        if self.placements.get(uid).is_some_and(|p| p.assumed) {
            self.remove_placed(uid);
        }
    }

    pub(crate) fn apply_node(&mut self, node: Arc<Node>) -> ClusterEvent {
        let name = node.metadata.name.clone().unwrap_or_default();
        let added = self.snapshot.upsert_node(node);
        if let Some(pods) = self.orphans.remove(&name)
            && let Some(info) = self.snapshot.node_mut(&name)
        {
            pods.into_iter().for_each(|pod| info.add_pod(pod));
        }
        if added { ClusterEvent::NodeAdd } else { ClusterEvent::NodeUpdate }
    }

    pub(crate) fn delete_node(&mut self, name: &str) {
        if let Some(info) = self.snapshot.remove_node(name) {
            // Its pods wait for their node to come back (or for their own deletion).
            self.orphans.insert(name.to_owned(), info.pods.clone());
        }
    }

    /// Forgets every pod not in `uids` (after a relist: deletions missed while disconnected).
    pub(crate) fn retain_pods(&mut self, uids: &std::collections::HashSet<String>) -> bool {
        let gone: Vec<String> = self
            .placements
            .iter()
            .filter(|(uid, placement)| !placement.assumed && !uids.contains(*uid))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in &gone {
            self.remove_placed(uid);
        }
        !gone.is_empty()
    }

    /// Forgets every node not in `names` (after a relist).
    pub(crate) fn retain_nodes(&mut self, names: &std::collections::HashSet<String>) {
        let gone: Vec<String> = self
            .snapshot
            .nodes
            .iter()
            .map(|n| n.name().to_owned())
            .filter(|n| !names.contains(n))
            .collect();
        for name in gone {
            self.delete_node(&name);
        }
    }

    fn responsible_for(&self, info: &PodInfo) -> bool {
        let name = info
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or("default-scheduler");
        name == self.scheduler_name
    }

    fn remove_placed(&mut self, uid: &str) -> bool {
        let Some(placement) = self.placements.remove(uid) else { return false };
        self.take_from_node(uid, &placement.node);
        true
    }

    fn take_from_node(&mut self, uid: &str, node: &str) {
        match self.snapshot.node_mut(node) {
            Some(info) => {
                info.remove_pod(uid);
            }
            None => {
                if let Some(pods) = self.orphans.get_mut(node) {
                    pods.retain(|pod| pod.uid() != uid);
                }
            }
        }
    }

    fn put_on_node(&mut self, node: &str, info: PodInfo) {
        match self.snapshot.node_mut(node) {
            Some(node_info) => node_info.add_pod(info),
            None => self.orphans.entry(node.to_owned()).or_default().push(info),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testing::{pod, simple_node};
    use crate::queue::QueueConfig;
    use serde_json::{Value, json};

    fn state() -> ClusterState {
        let queue = SchedulingQueue::new(QueueConfig::default(), HashMap::new());
        let mut state = ClusterState::new(queue, "default-scheduler".into());
        state.apply_node(simple_node("n1", json!({}), "4", "8Gi"));
        state
    }

    fn a_pod(name: &str, spec: Value) -> Arc<Pod> {
        let mut spec = spec;
        spec.as_object_mut().map(|s| {
            s.entry("containers").or_insert(json!([{"name": "c", "image": "i",
            "resources": {"requests": {"cpu": "1"}}}]))
        });
        pod(json!({"metadata": {"name": name}, "spec": spec}))
    }

    fn requested_cpu(state: &ClusterState) -> i64 {
        state.snapshot.node("n1").map_or(-1, |n| n.requested.milli_cpu)
    }

    #[test]
    fn pending_pods_of_this_scheduler_are_queued() {
        let mut s = state();
        let now = Instant::now();
        assert_eq!(s.apply_pod(a_pod("mine", json!({})), now), None);
        assert_eq!(s.apply_pod(a_pod("other", json!({"schedulerName": "other"})), now), None);
        assert_eq!(s.queue.counts().active, 1);
        assert_eq!(s.delete_pod("mine"), Some(ClusterEvent::UnscheduledPodDelete));
        assert_eq!(s.queue.counts().active, 0);
    }

    #[test]
    fn assumptions_are_confirmed_or_forgotten() {
        let mut s = state();
        let now = Instant::now();
        let pending = a_pod("p", json!({}));
        s.apply_pod(Arc::clone(&pending), now);
        let info = PodInfo::new(pending.clone());
        s.assume(&info, "n1");
        assert!(s.is_placed("p"));
        assert_eq!(requested_cpu(&s), 1000);
        // A late update of the unbound pod does not undo the assumption.
        assert_eq!(s.apply_pod(Arc::clone(&pending), now), None);
        assert_eq!(requested_cpu(&s), 1000);
        // The bound pod confirms it, counted once.
        assert_eq!(
            s.apply_pod(a_pod("p", json!({"nodeName": "n1"})), now),
            Some(ClusterEvent::AssignedPodAdd)
        );
        assert_eq!(requested_cpu(&s), 1000);
        assert_eq!(
            s.apply_pod(a_pod("p", json!({"nodeName": "n1"})), now),
            Some(ClusterEvent::AssignedPodUpdate)
        );
        assert_eq!(requested_cpu(&s), 1000);
        // Forgetting a confirmed pod does nothing; forgetting an assumption frees its share.
        s.forget("p");
        assert_eq!(requested_cpu(&s), 1000);
        s.assume(&PodInfo::new(a_pod("q", json!({}))), "n1");
        s.forget("q");
        assert_eq!(requested_cpu(&s), 1000);
    }

    #[test]
    fn finished_and_deleted_pods_free_their_node() {
        let mut s = state();
        let now = Instant::now();
        s.apply_pod(a_pod("p", json!({"nodeName": "n1"})), now);
        let mut done = (*a_pod("p", json!({"nodeName": "n1"}))).clone();
        done.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());
        assert_eq!(s.apply_pod(Arc::new(done), now), Some(ClusterEvent::AssignedPodDelete));
        assert_eq!(requested_cpu(&s), 0);
        s.apply_pod(a_pod("r", json!({"nodeName": "n1"})), now);
        assert_eq!(s.delete_pod("r"), Some(ClusterEvent::AssignedPodDelete));
        assert_eq!(requested_cpu(&s), 0);
    }

    #[test]
    fn pods_wait_for_their_node_and_relists_forget_the_vanished() {
        let mut s = state();
        let now = Instant::now();
        s.apply_pod(a_pod("early", json!({"nodeName": "n2"})), now);
        assert_eq!(s.apply_node(simple_node("n2", json!({}), "4", "8Gi")), ClusterEvent::NodeAdd);
        assert_eq!(s.snapshot.node("n2").map(|n| n.pods.len()), Some(1));
        assert!(s.retain_pods(&std::collections::HashSet::new()));
        assert_eq!(s.snapshot.node("n2").map(|n| n.pods.len()), Some(0));
        s.retain_nodes(&std::collections::HashSet::from(["n1".to_owned()]));
        assert!(s.snapshot.node("n2").is_none());
    }
}
