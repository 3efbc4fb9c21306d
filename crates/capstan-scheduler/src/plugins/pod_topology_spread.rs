//! The PodTopologySpread plugin: keeps the pods a spread constraint selects evenly spread
//! over the constraint's topology domains (the values of a node label such as the zone).
//! `DoNotSchedule` constraints filter nodes whose domain would exceed `maxSkew`;
//! `ScheduleAnyway` constraints prefer nodes whose domain holds fewer matching pods.
//!
//! Known gap: upstream applies system default constraints (zone `maxSkew` 5, hostname
//! `maxSkew` 3, `ScheduleAnyway`) to pods without constraints of their own that belong to a
//! Service, ReplicaSet, ReplicationController or StatefulSet. That needs those objects in the
//! snapshot and is not done here: such pods get no spreading score.

use crate::framework::selectors::{label_selector, pod_matches_node};
use crate::framework::taints::first_untolerated;
use crate::framework::{
    ClusterEvent, CycleState, MAX_NODE_SCORE, NodeInfo, Plugin, PodInfo, Snapshot, Status,
};
use capstan_api::{LabelSelector, Operator, Requirement};
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration, TopologySpreadConstraint};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const CONSTRAINTS_NOT_MATCH: &str = "node(s) didn't match pod topology spread constraints";
const NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

const DO_NOT_SCHEDULE: &str = "DoNotSchedule";
const SCHEDULE_ANYWAY: &str = "ScheduleAnyway";

/// Spreading over hostnames is scored by counting the node's own pods, as upstream does.
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// The taint effects a node must not have untolerated to count under `nodeTaintsPolicy:
/// Honor` (the ones the TaintToleration filter enforces).
const DO_NOT_SCHEDULE_EFFECTS: &[&str] = &["NoSchedule", "NoExecute"];

/// Upstream's `PodTopologySpread` plugin, without system default constraints (see the module
/// comment).
#[derive(Debug, Default)]
pub struct PodTopologySpread;

/// Whether a node inclusion policy takes the node's affinity or taints into account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InclusionPolicy {
    Honor,
    Ignore,
}

impl InclusionPolicy {
    fn parse(value: Option<&str>, default: InclusionPolicy) -> InclusionPolicy {
        match value {
            Some("Honor") => InclusionPolicy::Honor,
            Some("Ignore") => InclusionPolicy::Ignore,
            _ => default,
        }
    }
}

/// One spread constraint of the pod, with its selector parsed and defaults applied.
#[derive(Debug, Clone)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    /// `None` (the selector was absent or invalid) selects no pod.
    selector: Option<LabelSelector>,
    /// Below this many eligible domains the global minimum counts as 0 (default 1).
    min_domains: usize,
    /// Default Honor: only nodes matching the pod's node selector and required node affinity
    /// are domains.
    node_affinity_policy: InclusionPolicy,
    /// Default Ignore: tainted nodes are domains too.
    node_taints_policy: InclusionPolicy,
}

impl Constraint {
    /// Parses one constraint of a pod labelled `pod_labels`: each `matchLabelKeys` key the
    /// pod has narrows the selector to pods with the same value of that key.
    fn new(constraint: &TopologySpreadConstraint, pod_labels: &BTreeMap<String, String>) -> Self {
        let mut selector = label_selector(constraint.label_selector.as_ref());
        if let Some(selector) = selector.as_mut() {
            for key in constraint.match_label_keys.iter().flatten() {
                if let Some(value) = pod_labels.get(key) {
                    selector.requirements.push(Requirement {
                        key: key.clone(),
                        operator: Operator::In,
                        values: vec![value.clone()],
                    });
                }
            }
        }
        Constraint {
            max_skew: i64::from(constraint.max_skew),
            topology_key: constraint.topology_key.clone(),
            selector,
            // A negative value cannot pass validation; reading it as 0 never lowers the
            // minimum.
            min_domains: usize::try_from(constraint.min_domains.unwrap_or(1)).unwrap_or(0),
            node_affinity_policy: InclusionPolicy::parse(
                constraint.node_affinity_policy.as_deref(),
                InclusionPolicy::Honor,
            ),
            node_taints_policy: InclusionPolicy::parse(
                constraint.node_taints_policy.as_deref(),
                InclusionPolicy::Ignore,
            ),
        }
    }

    /// Whether the selector selects a pod with these labels.
    fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector.as_ref().is_some_and(|selector| selector.matches(labels))
    }

    /// Whether `node` is one of the domains `pod` spreads over under the inclusion policies.
    fn includes_node(&self, pod: &Pod, node: &Node) -> bool {
        if self.node_affinity_policy == InclusionPolicy::Honor && !pod_matches_node(pod, node) {
            return false;
        }
        self.node_taints_policy == InclusionPolicy::Ignore
            || first_untolerated(node_taints(node), pod_tolerations(pod), DO_NOT_SCHEDULE_EFFECTS)
                .is_none()
    }

    /// How many of `pods` in `namespace` the selector selects, leaving out terminating pods
    /// (they are on their way out). An empty selector counts nothing, as upstream's.
    fn count_matching(&self, pods: &[PodInfo], namespace: &str) -> i64 {
        let Some(selector) = self.selector.as_ref().filter(|selector| !selector.is_empty()) else {
            return 0;
        };
        let matching = pods
            .iter()
            .filter(|pod| pod.pod.metadata.deletion_timestamp.is_none())
            .filter(|pod| pod.namespace() == namespace && selector.matches(pod.labels()))
            .count();
        i64::try_from(matching).unwrap_or(i64::MAX)
    }
}

/// The pod's constraints with this `whenUnsatisfiable`.
fn constraints_of(pod: &PodInfo, action: &str) -> Vec<Constraint> {
    let spec_constraints =
        pod.pod.spec.as_ref().and_then(|spec| spec.topology_spread_constraints.as_ref());
    spec_constraints
        .into_iter()
        .flatten()
        .filter(|constraint| constraint.when_unsatisfiable == action)
        .map(|constraint| Constraint::new(constraint, pod.labels()))
        .collect()
}

/// Whether the node has every constraint's topology key: nodes lacking one are no domain of
/// any constraint.
fn has_all_keys(node: &Node, constraints: &[Constraint]) -> bool {
    let labels = node_labels(node);
    constraints.iter().all(|constraint| labels.contains_key(&constraint.topology_key))
}

fn node_labels(node: &Node) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    node.metadata.labels.as_ref().unwrap_or(&EMPTY)
}

fn node_taints(node: &Node) -> &[Taint] {
    node.spec.as_ref().and_then(|spec| spec.taints.as_deref()).unwrap_or_default()
}

fn pod_tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec.as_ref().and_then(|spec| spec.tolerations.as_deref()).unwrap_or_default()
}

/// What `pre_filter` computes for `filter`, per `DoNotSchedule` constraint.
#[derive(Debug, Clone)]
struct PreFilterState {
    /// Shared: preemption clones the state for every node it tries.
    constraints: Arc<[Constraint]>,
    /// Per constraint: the matching pods in each eligible domain (topology value).
    counts: Vec<BTreeMap<String, i64>>,
    /// Per constraint: the smallest count of a domain, kept exact through add/remove (upstream
    /// tracks only two domains, which can drift after several updates).
    min_counts: Vec<i64>,
}

impl PreFilterState {
    fn refresh_min(&mut self, index: usize) {
        // With no domain at all upstream starts from MaxInt32; only reachable with
        // `minDomains` 0, which validation forbids.
        self.min_counts[index] =
            self.counts[index].values().copied().min().unwrap_or(i64::from(i32::MAX));
    }

    /// The global minimum for a constraint's skew: 0 while there are fewer eligible domains
    /// than `minDomains`, so a pod may open a new domain.
    fn global_min(&self, index: usize) -> i64 {
        if self.counts[index].len() < self.constraints[index].min_domains {
            0
        } else {
            self.min_counts[index]
        }
    }

    /// Counts `other` on `node` in (`delta` 1) or out (`delta` -1) for the incoming `pod`.
    fn update_with_pod(&mut self, pod: &PodInfo, other: &PodInfo, node: &Node, delta: i64) {
        if other.namespace() != pod.namespace() || !has_all_keys(node, &self.constraints) {
            return;
        }
        let labels = node_labels(node);
        for index in 0..self.constraints.len() {
            let constraint = &self.constraints[index];
            if !constraint.selects(other.labels()) || !constraint.includes_node(&pod.pod, node) {
                continue;
            }
            let Some(value) = labels.get(&constraint.topology_key) else { continue };
            *self.counts[index].entry(value.clone()).or_default() += delta;
            self.refresh_min(index);
        }
    }
}

/// What `pre_score` computes for `score` and `normalize_scores`, per `ScheduleAnyway`
/// constraint.
#[derive(Debug, Clone)]
struct PreScoreState {
    constraints: Vec<Constraint>,
    /// Feasible nodes lacking a constraint's topology key: they score 0.
    ignored: BTreeSet<String>,
    /// For each feasible node in the order `pre_score` got them (the order the framework
    /// scores and normalizes in), whether it is ignored.
    ignored_in_order: Vec<bool>,
    /// Per constraint: the matching pods in each domain of a feasible node (hostname
    /// constraints count on the node itself instead).
    counts: Vec<BTreeMap<String, i64>>,
    /// Per constraint: ln(domains + 2), so that a constraint over few domains is not watered
    /// down by one over many.
    weights: Vec<f64>,
}

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    /// Pods appearing, changing labels or leaving change the counts; nodes appearing or
    /// changing labels change the domains.
    fn events(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent::AssignedPodAdd,
            ClusterEvent::AssignedPodUpdate,
            ClusterEvent::AssignedPodDelete,
            ClusterEvent::NodeAdd,
            ClusterEvent::NodeUpdate,
        ]
    }

    fn filters(&self) -> bool {
        true
    }

    fn scores(&self) -> bool {
        true
    }

    /// Counts, per `DoNotSchedule` constraint, the matching pods of the pod's namespace in
    /// each domain of the eligible nodes (all of the cluster's, not only feasible ones).
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snapshot: &Snapshot) -> Status {
        let constraints = constraints_of(pod, DO_NOT_SCHEDULE);
        if constraints.is_empty() {
            return Status::skip();
        }
        let mut counts = vec![BTreeMap::<String, i64>::new(); constraints.len()];
        for node_info in &snapshot.nodes {
            let node = &node_info.node;
            if !has_all_keys(node, &constraints) {
                continue;
            }
            let labels = node_labels(node);
            for (constraint, counts) in constraints.iter().zip(counts.iter_mut()) {
                if !constraint.includes_node(&pod.pod, node) {
                    continue;
                }
                let Some(value) = labels.get(&constraint.topology_key) else { continue };
                *counts.entry(value.clone()).or_default() +=
                    constraint.count_matching(&node_info.pods, pod.namespace());
            }
        }
        let mut pre_filter = PreFilterState {
            min_counts: vec![0; constraints.len()],
            constraints: constraints.into(),
            counts,
        };
        for index in 0..pre_filter.constraints.len() {
            pre_filter.refresh_min(index);
        }
        state.insert(self.name(), pre_filter);
        Status::success()
    }

    fn add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        added: &PodInfo,
        node: &NodeInfo,
        _snapshot: &Snapshot,
    ) {
        // Without a state pre-filter skipped this plugin, and there is nothing to update.
        if let Some(state) = state.get_mut::<PreFilterState>(self.name()) {
            state.update_with_pod(pod, added, &node.node, 1);
        }
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        removed: &PodInfo,
        node: &NodeInfo,
        _snapshot: &Snapshot,
    ) {
        if let Some(state) = state.get_mut::<PreFilterState>(self.name()) {
            state.update_with_pod(pod, removed, &node.node, -1);
        }
    }

    /// Rejects a node lacking a topology key (no preemption can add a label), and a node
    /// whose domain would hold more than `maxSkew` matching pods above the global minimum
    /// once the pod is there (evicting pods can fix that).
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let state = match state.require::<PreFilterState>(self.name()) {
            Ok(state) => state,
            Err(status) => return status,
        };
        let labels = node_labels(&node.node);
        for (index, constraint) in state.constraints.iter().enumerate() {
            let Some(value) = labels.get(&constraint.topology_key) else {
                return Status::unresolvable(NODE_LABEL_NOT_MATCH);
            };
            let self_match = i64::from(constraint.selects(pod.labels()));
            let count = state.counts[index].get(value).copied().unwrap_or(0);
            if count + self_match - state.global_min(index) > constraint.max_skew {
                return Status::unschedulable(CONSTRAINTS_NOT_MATCH);
            }
        }
        Status::success()
    }

    /// Finds the domains of the feasible nodes for each `ScheduleAnyway` constraint and
    /// counts the matching pods in them over the whole cluster.
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
        feasible: &[&NodeInfo],
    ) -> Status {
        if feasible.is_empty() || snapshot.nodes.is_empty() {
            return Status::skip();
        }
        let constraints = constraints_of(pod, SCHEDULE_ANYWAY);
        if constraints.is_empty() {
            return Status::skip();
        }
        let mut counts = vec![BTreeMap::<String, i64>::new(); constraints.len()];
        let mut ignored = BTreeSet::new();
        let mut ignored_in_order = Vec::with_capacity(feasible.len());
        for node_info in feasible {
            let node = &node_info.node;
            let lacks_keys = !has_all_keys(node, &constraints);
            ignored_in_order.push(lacks_keys);
            if lacks_keys {
                ignored.insert(node_info.name().to_owned());
                continue;
            }
            let labels = node_labels(node);
            for (constraint, counts) in constraints.iter().zip(counts.iter_mut()) {
                if constraint.topology_key == HOSTNAME_LABEL {
                    continue;
                }
                if let Some(value) = labels.get(&constraint.topology_key) {
                    counts.entry(value.clone()).or_insert(0);
                }
            }
        }
        let scored_nodes = feasible.len() - ignored.len();
        let weights = constraints
            .iter()
            .zip(&counts)
            .map(|(constraint, counts)| {
                let domains = if constraint.topology_key == HOSTNAME_LABEL {
                    scored_nodes
                } else {
                    counts.len()
                };
                (domains as f64 + 2.0).ln()
            })
            .collect();

        for node_info in &snapshot.nodes {
            let node = &node_info.node;
            if !has_all_keys(node, &constraints) {
                continue;
            }
            let labels = node_labels(node);
            for (constraint, counts) in constraints.iter().zip(counts.iter_mut()) {
                if !constraint.includes_node(&pod.pod, node) {
                    continue;
                }
                // Only domains of feasible nodes matter (hostname domains are never listed).
                let count = labels.get(&constraint.topology_key).and_then(|v| counts.get_mut(v));
                if let Some(count) = count {
                    *count += constraint.count_matching(&node_info.pods, pod.namespace());
                }
            }
        }
        state.insert(
            self.name(),
            PreScoreState { constraints, ignored, ignored_in_order, counts, weights },
        );
        Status::success()
    }

    /// Per constraint, the matching pods in the node's domain times the constraint's weight,
    /// plus `maxSkew - 1` (which softens the differences a larger skew tolerates).
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        // `pre_score` stores the state whenever it does not skip, and skipped plugins are not
        // asked to score; without it the node earns nothing.
        let Some(state) = state.get::<PreScoreState>(self.name()) else { return 0 };
        if state.ignored.contains(node.name()) {
            return 0;
        }
        let labels = node_labels(&node.node);
        let mut score = 0.0;
        for (index, constraint) in state.constraints.iter().enumerate() {
            let Some(value) = labels.get(&constraint.topology_key) else { continue };
            let count = if constraint.topology_key == HOSTNAME_LABEL {
                constraint.count_matching(&node.pods, pod.namespace())
            } else {
                state.counts[index].get(value).copied().unwrap_or(0)
            };
            score += count as f64 * state.weights[index] + (constraint.max_skew - 1) as f64;
        }
        score.round() as i64
    }

    /// Reverses the scale so that the node with the fewest matching pods scores
    /// MAX_NODE_SCORE: `MAX * (max + min - score) / max`. Ignored nodes score 0.
    fn normalize_scores(&self, state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) {
        let Some(state) = state.get::<PreScoreState>(self.name()) else { return };
        let is_ignored = |index: usize| state.ignored_in_order.get(index).copied().unwrap_or(false);
        let considered =
            || scores.iter().enumerate().filter(|(i, _)| !is_ignored(*i)).map(|(_, s)| *s);
        let lowest = considered().min().unwrap_or(i64::MAX);
        let highest = considered().max().unwrap_or(0).max(0);
        for (index, score) in scores.iter_mut().enumerate() {
            *score = if is_ignored(index) {
                0
            } else if highest == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (highest + lowest - *score) / highest
            };
        }
    }

    fn weight(&self) -> i64 {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::framework::testing::{node, node_info, pod, pod_info, snapshot};
    use serde_json::{Value, json};

    const ZONE: &str = "zone";

    /// A node with its hostname label, `zone` unless empty, and extra labels and spec.
    fn spread_node(name: &str, zone: &str, extra: Value, pods: Vec<Arc<Pod>>) -> NodeInfo {
        let mut labels = json!({HOSTNAME_LABEL: name});
        if !zone.is_empty() {
            labels[ZONE] = json!(zone);
        }
        if let (Some(labels), Some(extra)) = (labels.as_object_mut(), extra["labels"].as_object()) {
            labels.extend(extra.clone());
        }
        let spec = extra.get("spec").cloned().unwrap_or(json!({}));
        node_info(node(json!({"metadata": {"name": name, "labels": labels}, "spec": spec})), pods)
    }

    fn zone_node(name: &str, zone: &str, pods: Vec<Arc<Pod>>) -> NodeInfo {
        spread_node(name, zone, json!({}), pods)
    }

    /// `count` running pods labelled `labels` in namespace "default", named after `prefix`.
    fn running(prefix: &str, count: usize, labels: Value) -> Vec<Arc<Pod>> {
        (0..count)
            .map(|i| pod(json!({"metadata": {"name": format!("{prefix}-{i}"), "labels": labels}})))
            .collect()
    }

    fn web(prefix: &str, count: usize) -> Vec<Arc<Pod>> {
        running(prefix, count, json!({"app": "web"}))
    }

    /// A constraint over `key` selecting `app=web`, with extra fields merged in.
    fn constraint(max_skew: i32, key: &str, when: &str, extra: Value) -> Value {
        let mut constraint = json!({"maxSkew": max_skew, "topologyKey": key,
            "whenUnsatisfiable": when, "labelSelector": {"matchLabels": {"app": "web"}}});
        if let (Some(constraint), Some(extra)) = (constraint.as_object_mut(), extra.as_object()) {
            constraint.extend(extra.clone());
        }
        constraint
    }

    fn hard(max_skew: i32, extra: Value) -> Value {
        constraint(max_skew, ZONE, DO_NOT_SCHEDULE, extra)
    }

    /// The incoming pod with these labels and constraints, and extra spec fields.
    fn incoming(labels: Value, constraints: Value, spec: Value) -> PodInfo {
        let mut full_spec = json!({"topologySpreadConstraints": constraints});
        if let (Some(full), Some(extra)) = (full_spec.as_object_mut(), spec.as_object()) {
            full.extend(extra.clone());
        }
        pod_info(json!({"metadata": {"name": "incoming", "labels": labels}, "spec": full_spec}))
    }

    fn web_pod(constraints: Value) -> PodInfo {
        incoming(json!({"app": "web"}), constraints, json!({}))
    }

    fn ok() -> Status {
        Status::success()
    }

    fn skewed() -> Status {
        Status::unschedulable(CONSTRAINTS_NOT_MATCH)
    }

    fn missing_label() -> Status {
        Status::unresolvable(NODE_LABEL_NOT_MATCH)
    }

    /// Runs pre-filter and filter on every node, as the framework does (a skipped filter
    /// accepts every node).
    fn check_filter(name: &str, pod: PodInfo, nodes: Vec<NodeInfo>, expected: &[Status]) {
        let plugin = PodTopologySpread;
        let snapshot = snapshot(nodes);
        let mut state = CycleState::default();
        let pre_filter = plugin.pre_filter(&mut state, &pod, &snapshot);
        let verdicts: Vec<Status> = snapshot
            .nodes
            .iter()
            .map(|node| match pre_filter.code {
                Code::Skip => Status::success(),
                _ => plugin.filter(&state, &pod, node),
            })
            .collect();
        assert_eq!(verdicts, expected, "{name}");
    }

    #[test]
    fn max_skew_over_zones() {
        check_filter(
            "two zones: the fuller one is over the skew",
            web_pod(json!([hard(1, json!({}))])),
            vec![
                zone_node("n1", "a", web("a", 2)),
                zone_node("n2", "b", web("b", 1)),
                zone_node("n3", "", vec![]),
            ],
            &[skewed(), ok(), missing_label()],
        );
        check_filter(
            "three zones, one of them empty",
            web_pod(json!([hard(1, json!({}))])),
            vec![
                zone_node("n1", "a", web("a", 1)),
                zone_node("n2", "b", vec![]),
                zone_node("n3", "c", running("db", 3, json!({"app": "db"}))),
            ],
            &[skewed(), ok(), ok()],
        );
        check_filter(
            "a larger max skew tolerates more",
            web_pod(json!([hard(2, json!({}))])),
            vec![zone_node("n1", "a", web("a", 2)), zone_node("n2", "b", web("b", 1))],
            &[ok(), ok()],
        );
        check_filter(
            "a pod its own selector does not select adds nothing to the skew",
            incoming(json!({"app": "db"}), json!([hard(1, json!({}))]), json!({})),
            vec![zone_node("n1", "a", web("a", 2)), zone_node("n2", "b", web("b", 1))],
            &[ok(), ok()],
        );
        check_filter(
            "zones on several nodes add up",
            web_pod(json!([hard(1, json!({}))])),
            vec![
                zone_node("n1", "a", web("a1", 1)),
                zone_node("n2", "a", web("a2", 1)),
                zone_node("n3", "b", web("b", 1)),
            ],
            &[skewed(), skewed(), ok()],
        );
        check_filter(
            "every constraint must hold",
            web_pod(json!([
                hard(1, json!({})),
                constraint(1, HOSTNAME_LABEL, DO_NOT_SCHEDULE, json!({}))
            ])),
            vec![
                zone_node("n1", "a", vec![]),
                zone_node("n2", "a", web("a", 1)),
                zone_node("n3", "b", web("b", 2)),
            ],
            &[ok(), skewed(), skewed()],
        );
        check_filter(
            "a node lacking one constraint's key is no domain of the others either",
            web_pod(json!([hard(1, json!({})), constraint(5, "rack", DO_NOT_SCHEDULE, json!({}))])),
            vec![
                spread_node("n1", "a", json!({"labels": {"rack": "r1"}}), web("a", 1)),
                spread_node("n2", "b", json!({"labels": {"rack": "r2"}}), vec![]),
                zone_node("n3", "b", web("b", 3)),
            ],
            &[skewed(), ok(), missing_label()],
        );
    }

    #[test]
    fn what_counts() {
        let other_namespace: Vec<Arc<Pod>> = (0..2)
            .map(|i| {
                pod(json!({"metadata": {"name": format!("o{i}"), "namespace": "other",
                    "labels": {"app": "web"}}}))
            })
            .collect();
        check_filter(
            "pods of other namespaces do not count",
            web_pod(json!([hard(1, json!({}))])),
            vec![zone_node("n1", "a", other_namespace), zone_node("n2", "b", vec![])],
            &[ok(), ok()],
        );
        let terminating: Vec<Arc<Pod>> = (0..2)
            .map(|i| {
                pod(json!({"metadata": {"name": format!("t{i}"), "labels": {"app": "web"},
                    "deletionTimestamp": "2025-01-01T00:00:00Z"}}))
            })
            .collect();
        check_filter(
            "terminating pods do not count",
            web_pod(json!([hard(1, json!({}))])),
            vec![zone_node("n1", "a", terminating), zone_node("n2", "b", vec![])],
            &[ok(), ok()],
        );
        check_filter(
            "an empty selector counts no pod, but the pod still matches itself",
            web_pod(json!([hard(1, json!({"labelSelector": {}}))])),
            vec![zone_node("n1", "a", web("a", 3)), zone_node("n2", "b", vec![])],
            &[ok(), ok()],
        );
        // Only pods with the pod's version count: zone a holds two v1 pods, zone b one v2.
        let versioned = |prefix: &str, count: usize, version: &str| {
            running(prefix, count, json!({"app": "web", "version": version}))
        };
        let nodes = || {
            vec![
                zone_node("n1", "a", versioned("a", 2, "v1")),
                zone_node("n2", "b", versioned("b", 1, "v2")),
            ]
        };
        check_filter(
            "match label keys narrow the selector to the pod's value",
            incoming(
                json!({"app": "web", "version": "v2"}),
                json!([hard(1, json!({"matchLabelKeys": ["version"]}))]),
                json!({}),
            ),
            nodes(),
            &[ok(), skewed()],
        );
        check_filter(
            "match label keys the pod lacks are left out",
            incoming(
                json!({"app": "web"}),
                json!([hard(1, json!({"matchLabelKeys": ["version"]}))]),
                json!({}),
            ),
            nodes(),
            &[skewed(), ok()],
        );
    }

    #[test]
    fn min_domains() {
        let nodes = || vec![zone_node("n1", "a", web("a", 1)), zone_node("n2", "b", web("b", 1))];
        check_filter(
            "enough domains: the global minimum is the emptiest domain's",
            web_pod(json!([hard(1, json!({"minDomains": 2}))])),
            nodes(),
            &[ok(), ok()],
        );
        check_filter(
            "fewer domains than min domains: the global minimum is 0",
            web_pod(json!([hard(1, json!({"minDomains": 3}))])),
            nodes(),
            &[skewed(), skewed()],
        );
        check_filter(
            "a larger skew still fits with a global minimum of 0",
            web_pod(json!([hard(2, json!({"minDomains": 3}))])),
            nodes(),
            &[ok(), ok()],
        );
    }

    #[test]
    fn node_inclusion_policies() {
        // n2 (zone b, empty) is not a node the pod may go to: only when it counts as a domain
        // does zone a's single pod become a skew.
        let ssd = json!({"labels": {"disk": "ssd"}});
        let nodes = || {
            vec![
                spread_node("n1", "a", ssd.clone(), web("a", 1)),
                spread_node("n2", "b", json!({}), vec![]),
            ]
        };
        let on_ssd = |extra: Value| {
            incoming(
                json!({"app": "web"}),
                json!([hard(1, extra)]),
                json!({"nodeSelector": {"disk": "ssd"}}),
            )
        };
        check_filter(
            "node affinity policy Honor (the default) leaves out nodes the pod cannot use",
            on_ssd(json!({})),
            nodes(),
            &[ok(), ok()],
        );
        check_filter(
            "node affinity policy Ignore counts every node",
            on_ssd(json!({"nodeAffinityPolicy": "Ignore"})),
            nodes(),
            &[skewed(), ok()],
        );
        let affinity_to_ssd = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}}});
        check_filter(
            "required node affinity counts like a node selector",
            incoming(json!({"app": "web"}), json!([hard(1, json!({}))]), affinity_to_ssd),
            nodes(),
            &[ok(), ok()],
        );

        let tainted = || {
            vec![
                zone_node("n1", "a", web("a", 1)),
                spread_node(
                    "n2",
                    "b",
                    json!({"spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}}),
                    vec![],
                ),
            ]
        };
        check_filter(
            "node taints policy Ignore (the default) counts tainted nodes",
            web_pod(json!([hard(1, json!({}))])),
            tainted(),
            &[skewed(), ok()],
        );
        check_filter(
            "node taints policy Honor leaves out nodes with untolerated taints",
            web_pod(json!([hard(1, json!({"nodeTaintsPolicy": "Honor"}))])),
            tainted(),
            &[ok(), ok()],
        );
        check_filter(
            "node taints policy Honor keeps tolerated nodes",
            incoming(
                json!({"app": "web"}),
                json!([hard(1, json!({"nodeTaintsPolicy": "Honor"}))]),
                json!({"tolerations": [{"key": "dedicated", "operator": "Exists"}]}),
            ),
            tainted(),
            &[skewed(), ok()],
        );
    }

    #[test]
    fn pre_filter_skips_without_hard_constraints() {
        let plugin = PodTopologySpread;
        let nodes = snapshot(vec![zone_node("n1", "a", web("a", 1))]);
        for constraints in [json!([]), json!([constraint(1, ZONE, SCHEDULE_ANYWAY, json!({}))])] {
            let mut state = CycleState::default();
            let status = plugin.pre_filter(&mut state, &web_pod(constraints.clone()), &nodes);
            assert_eq!(status.code, Code::Skip, "{constraints}");
        }
    }

    #[test]
    fn added_and_removed_pods_change_the_verdict() {
        let plugin = PodTopologySpread;
        let n1 = zone_node("n1", "a", web("a", 1));
        let n2 = zone_node("n2", "b", vec![]);
        let snapshot = snapshot(vec![n1.clone(), n2.clone()]);
        let pod = web_pod(json!([hard(1, json!({}))]));
        let mut state = CycleState::default();
        assert!(plugin.pre_filter(&mut state, &pod, &snapshot).is_success());
        assert_eq!(plugin.filter(&state, &pod, &n1), skewed());

        // A web pod nominated to zone b evens the zones out.
        let nominated =
            pod_info(json!({"metadata": {"name": "nominated", "labels": {"app": "web"}}}));
        let mut with_nominated = state.clone();
        plugin.add_pod(&mut with_nominated, &pod, &nominated, &n2, &snapshot);
        assert_eq!(plugin.filter(&with_nominated, &pod, &n1), ok());
        plugin.remove_pod(&mut with_nominated, &pod, &nominated, &n2, &snapshot);
        assert_eq!(plugin.filter(&with_nominated, &pod, &n1), skewed());

        // Pods of another namespace or not selected change nothing.
        let elsewhere = pod_info(
            json!({"metadata": {"name": "x", "namespace": "other", "labels": {"app": "web"}}}),
        );
        let unselected = pod_info(json!({"metadata": {"name": "y", "labels": {"app": "db"}}}));
        plugin.add_pod(&mut state, &pod, &elsewhere, &n2, &snapshot);
        plugin.add_pod(&mut state, &pod, &unselected, &n2, &snapshot);
        assert_eq!(plugin.filter(&state, &pod, &n1), skewed());

        // Preempting zone a's pod makes room there.
        plugin.remove_pod(&mut state, &pod, &n1.pods[0], &n1, &snapshot);
        assert_eq!(plugin.filter(&state, &pod, &n1), ok());
        assert_eq!(plugin.filter(&state, &pod, &n2), ok());
    }

    #[test]
    fn the_global_minimum_stays_exact_through_updates() {
        // Three zones with one pod each; adding to two of them must leave zone c's count of
        // 1 as the minimum (upstream's two-domain shortcut would report 2).
        let plugin = PodTopologySpread;
        let nodes: Vec<NodeInfo> = ["a", "b", "c"]
            .iter()
            .map(|zone| zone_node(&format!("n-{zone}"), zone, web(zone, 1)))
            .collect();
        let snapshot = snapshot(nodes.clone());
        let pod = web_pod(json!([hard(1, json!({}))]));
        let mut state = CycleState::default();
        assert!(plugin.pre_filter(&mut state, &pod, &snapshot).is_success());
        let extra = pod_info(json!({"metadata": {"name": "extra", "labels": {"app": "web"}}}));
        plugin.add_pod(&mut state, &pod, &extra, &nodes[0], &snapshot);
        plugin.add_pod(&mut state, &pod, &extra, &nodes[1], &snapshot);
        assert_eq!(plugin.filter(&state, &pod, &nodes[0]), skewed());
        assert_eq!(plugin.filter(&state, &pod, &nodes[2]), ok());
    }

    /// Runs pre-score, score and normalize over the feasible nodes (by name); `None`
    /// expects pre-score to skip.
    fn check_scores(
        name: &str,
        pod: PodInfo,
        nodes: Vec<NodeInfo>,
        feasible: &[&str],
        expected: Option<&[i64]>,
    ) {
        let plugin = PodTopologySpread;
        let snapshot = snapshot(nodes);
        let feasible: Vec<&NodeInfo> = feasible
            .iter()
            .filter_map(|name| snapshot.node(name))
            .map(|node| node.as_ref())
            .collect();
        let mut state = CycleState::default();
        let status = plugin.pre_score(&mut state, &pod, &snapshot, &feasible);
        if status.code == Code::Skip {
            assert_eq!(expected, None, "{name}: pre-score skipped");
            return;
        }
        assert!(status.is_success(), "{name}: {status:?}");
        let mut scores: Vec<i64> =
            feasible.iter().map(|node| plugin.score(&state, &pod, node)).collect();
        plugin.normalize_scores(&state, &pod, &mut scores);
        assert_eq!(Some(scores.as_slice()), expected, "{name}");
    }

    #[test]
    fn scores() {
        let soft = |max_skew: i32, key: &str| constraint(max_skew, key, SCHEDULE_ANYWAY, json!({}));
        let nodes = || {
            vec![
                zone_node("n1", "a", web("a", 2)),
                zone_node("n2", "a", vec![]),
                zone_node("n3", "b", web("b", 1)),
                zone_node("n4", "", vec![]),
            ]
        };
        let all = ["n1", "n2", "n3", "n4"];
        // Two zone domains weigh ln(4): zone a scores round(2 × 1.39) = 3, zone b 1; n4 has
        // no zone and is ignored. Normalized: 100 × (3 + 1 - s) / 3.
        check_scores(
            "fewer matching pods in the zone score higher",
            web_pod(json!([soft(1, ZONE)])),
            nodes(),
            &all,
            Some(&[33, 33, 100, 0]),
        );
        // maxSkew 3 adds 2 everywhere: 5 and 3, normalized 100 × (5 + 3 - s) / 5.
        check_scores(
            "a larger max skew softens the differences",
            web_pod(json!([soft(3, ZONE)])),
            nodes(),
            &all,
            Some(&[60, 60, 100, 0]),
        );
        // Three hosts weigh ln(5): round(2 × 1.61) = 3, 0 and round(1.61) = 2.
        check_scores(
            "spreading over hostnames counts each node's own pods",
            web_pod(json!([soft(1, HOSTNAME_LABEL)])),
            nodes(),
            &["n1", "n2", "n3"],
            Some(&[0, 100, 33]),
        );
        // n2 is not feasible, but its pods still count for zone a.
        check_scores(
            "pods on infeasible nodes count for the domains of feasible ones",
            web_pod(json!([soft(1, ZONE)])),
            vec![
                zone_node("n1", "a", vec![]),
                zone_node("n2", "a", web("a", 2)),
                zone_node("n3", "b", web("b", 1)),
            ],
            &["n1", "n3"],
            Some(&[33, 100]),
        );
        check_scores(
            "no matching pods: every node scores the maximum",
            web_pod(json!([soft(1, ZONE)])),
            vec![zone_node("n1", "a", vec![]), zone_node("n2", "b", vec![])],
            &["n1", "n2"],
            Some(&[100, 100]),
        );
        // Under the default Honor policy n2 (no ssd) is no domain, so zone a holds no pod.
        check_scores(
            "node affinity policy applies to scoring",
            incoming(
                json!({"app": "web"}),
                json!([soft(1, ZONE)]),
                json!({"nodeSelector": {"disk": "ssd"}}),
            ),
            vec![
                spread_node("n1", "a", json!({"labels": {"disk": "ssd"}}), vec![]),
                spread_node("n2", "a", json!({}), web("a", 2)),
                spread_node("n3", "b", json!({"labels": {"disk": "ssd"}}), web("b", 1)),
            ],
            &["n1", "n3"],
            Some(&[100, 0]),
        );
        check_scores(
            "only hard constraints: skipped",
            web_pod(json!([hard(1, json!({}))])),
            nodes(),
            &all,
            None,
        );
        check_scores("no constraints: skipped", web_pod(json!([])), nodes(), &all, None);
    }

    #[test]
    fn registration() {
        let plugin = PodTopologySpread;
        assert_eq!(plugin.weight(), 2);
        assert!(plugin.filters() && plugin.scores());
        assert!(plugin.events().contains(&ClusterEvent::AssignedPodDelete));
        assert!(!plugin.events().contains(&ClusterEvent::NamespaceChange));
    }
}
