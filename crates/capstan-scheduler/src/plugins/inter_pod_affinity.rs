//! The InterPodAffinity plugin: places a pod near the pods its required affinity names, away
//! from those its required anti-affinity names, and away from pods whose own required
//! anti-affinity names it; scores nodes by preferred terms in both directions.
//!
//! Everything is counted per topology pair (a topology key and its value on a node): a term
//! that matches a pod on node N counts for every node sharing N's value of the term's key.

use crate::framework::{
    AffinityTerm, ClusterEvent, CycleState, MAX_NODE_SCORE, NodeInfo, Plugin, PodInfo, Snapshot,
    Status, WeightedAffinityTerm,
};
use k8s_openapi::api::core::v1::{Node, Pod};
use std::collections::BTreeMap;
use std::sync::Arc;

const AFFINITY_RULES_NOT_MATCH: &str = "node(s) didn't match pod affinity rules";
const ANTI_AFFINITY_RULES_NOT_MATCH: &str = "node(s) didn't match pod anti-affinity rules";
const EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// Upstream's default `hardPodAffinityWeight`: how much an existing pod's *required* affinity
/// term that the incoming pod matches adds to the score of the nodes in that topology.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// Upstream's `InterPodAffinity` plugin with its default arguments (`hardPodAffinityWeight`
/// 1, `ignorePreferredTermsOfExistingPods` false).
#[derive(Debug, Default)]
pub struct InterPodAffinity;

/// Counts (or score sums) per topology key, then per value of that key. Entries that drop to
/// zero are removed, so emptiness means "nothing matched anywhere", as upstream relies on.
#[derive(Debug, Clone, Default, PartialEq)]
struct TopologyCounts(BTreeMap<String, BTreeMap<String, i64>>);

impl TopologyCounts {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn get(&self, key: &str, value: &str) -> i64 {
        self.0.get(key).and_then(|values| values.get(value)).copied().unwrap_or(0)
    }

    /// Adds `delta` to the pair (`key`, the node's value of `key`); nodes without the key
    /// belong to no topology of that key and are not counted.
    fn add(&mut self, node: &Node, key: &str, delta: i64) {
        let Some(value) = node_labels(node).get(key) else { return };
        let values = self.0.entry(key.to_owned()).or_default();
        let count = values.entry(value.clone()).or_default();
        *count += delta;
        if *count == 0 {
            values.remove(value);
            if values.is_empty() {
                self.0.remove(key);
            }
        }
    }

    /// Adds `delta` for `term` on `node` when `pod` (in a namespace labelled
    /// `namespace_labels`) matches the term.
    fn add_if_term_matches(
        &mut self,
        term: &AffinityTerm,
        delta: i64,
        pod: &Pod,
        namespace_labels: Option<&BTreeMap<String, String>>,
        node: &Node,
    ) {
        if term.matches(pod, namespace_labels) {
            self.add(node, &term.topology_key, delta);
        }
    }

    /// Counts `pod` on `node` for every term, but only when it matches all of them: a pod
    /// satisfies an affinity only by matching every required term at once.
    fn add_if_matches_all(&mut self, terms: &[AffinityTerm], pod: &Pod, node: &Node, delta: i64) {
        if matches_all(terms, pod) {
            for term in terms {
                self.add(node, &term.topology_key, delta);
            }
        }
    }

    /// Counts `pod` on `node` for each anti-affinity term it matches; `namespace_labels` are
    /// the labels of `pod`'s namespace, for terms that select namespaces by label.
    fn add_each_match(
        &mut self,
        terms: &[AffinityTerm],
        pod: &Pod,
        namespace_labels: Option<&BTreeMap<String, String>>,
        node: &Node,
        delta: i64,
    ) {
        for term in terms {
            self.add_if_term_matches(term, delta, pod, namespace_labels, node);
        }
    }
}

/// Whether `pod` matches every term (and there is at least one). The terms are the incoming
/// pod's, whose namespace selectors were resolved into namespaces, so no labels are needed.
fn matches_all(terms: &[AffinityTerm], pod: &Pod) -> bool {
    !terms.is_empty() && terms.iter().all(|term| term.matches(pod, None))
}

/// The incoming pod as `pre_filter` saw it: its required terms with namespace selectors
/// resolved, and its namespace's labels. Shared, because preemption clones the state often.
#[derive(Debug)]
struct IncomingPod {
    pod: Arc<Pod>,
    required_affinity_terms: Vec<AffinityTerm>,
    required_anti_affinity_terms: Vec<AffinityTerm>,
    namespace_labels: Option<BTreeMap<String, String>>,
}

/// What `pre_filter` computes for `filter`.
#[derive(Debug, Clone)]
struct PreFilterState {
    incoming: Arc<IncomingPod>,
    /// Existing pods whose required anti-affinity terms match the incoming pod, per topology
    /// pair of the existing pod's node.
    existing_anti_affinity: TopologyCounts,
    /// Existing pods that match all of the incoming pod's required affinity terms.
    affinity: TopologyCounts,
    /// Existing pods that match the incoming pod's required anti-affinity terms.
    anti_affinity: TopologyCounts,
}

impl PreFilterState {
    /// Counts `other` on `node` in (`delta` 1) or out (`delta` -1).
    fn update_with_pod(&mut self, other: &PodInfo, node: &Node, delta: i64) {
        let incoming = &self.incoming;
        self.existing_anti_affinity.add_each_match(
            &other.required_anti_affinity_terms,
            &incoming.pod,
            incoming.namespace_labels.as_ref(),
            node,
            delta,
        );
        self.affinity.add_if_matches_all(
            &incoming.required_affinity_terms,
            &other.pod,
            node,
            delta,
        );
        self.anti_affinity.add_each_match(
            &incoming.required_anti_affinity_terms,
            &other.pod,
            None,
            node,
            delta,
        );
    }

    /// Whether the node has every topology key of the pod's affinity terms and a matching
    /// pod in each of those topologies, or the pod is the first of a group with affinity to
    /// itself.
    fn satisfies_affinity(&self, node: &Node) -> bool {
        let labels = node_labels(node);
        let mut pods_exist = true;
        for term in &self.incoming.required_affinity_terms {
            let Some(value) = labels.get(&term.topology_key) else { return false };
            if self.affinity.get(&term.topology_key, value) <= 0 {
                pods_exist = false;
            }
        }
        // Without this exception the first pod of a group that wants to be together would
        // wait forever: when no pod anywhere matches the terms and the pod matches its own
        // terms, any node with the topology keys will do.
        pods_exist
            || (self.affinity.is_empty()
                && matches_all(&self.incoming.required_affinity_terms, &self.incoming.pod))
    }

    /// Whether no pod matching the pod's anti-affinity terms shares a topology with the node.
    fn satisfies_anti_affinity(&self, node: &Node) -> bool {
        let labels = node_labels(node);
        self.incoming.required_anti_affinity_terms.iter().all(|term| {
            labels
                .get(&term.topology_key)
                .is_none_or(|value| self.anti_affinity.get(&term.topology_key, value) <= 0)
        })
    }

    /// Whether no existing pod whose anti-affinity matches the pod shares a topology (any
    /// label of the node) with it.
    fn satisfies_existing_anti_affinity(&self, node: &Node) -> bool {
        self.existing_anti_affinity.is_empty()
            || node_labels(node)
                .iter()
                .all(|(key, value)| self.existing_anti_affinity.get(key, value) <= 0)
    }
}

/// What `pre_score` computes for `score`: the summed weights per topology pair.
#[derive(Debug, Clone)]
struct PreScoreState {
    topology_scores: TopologyCounts,
}

/// A copy of `term` whose non-empty namespace selector is replaced by the namespaces it
/// selects now, as upstream does for the incoming pod's terms: matching then needs only the
/// other pod's namespace name. An empty selector (all namespaces) is kept as it is.
fn resolve_namespaces(term: &AffinityTerm, snapshot: &Snapshot) -> AffinityTerm {
    let mut term = term.clone();
    if let Some(selector) = term.namespace_selector.take_if(|selector| !selector.is_empty()) {
        let selected = snapshot
            .namespace_labels
            .iter()
            .filter(|(_, labels)| selector.matches(labels))
            .map(|(namespace, _)| namespace.clone());
        term.namespaces.extend(selected);
    }
    term
}

fn resolve_weighted(
    terms: &[WeightedAffinityTerm],
    snapshot: &Snapshot,
) -> Vec<WeightedAffinityTerm> {
    terms
        .iter()
        .map(|weighted| WeightedAffinityTerm {
            term: resolve_namespaces(&weighted.term, snapshot),
            weight: weighted.weight,
        })
        .collect()
}

fn node_labels(node: &Node) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    node.metadata.labels.as_ref().unwrap_or(&EMPTY)
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    /// Pods appearing, changing labels or leaving change which topologies hold matching
    /// pods; nodes appearing or changing labels change the topologies themselves; namespace
    /// labels change what namespace selectors select.
    fn events(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent::AssignedPodAdd,
            ClusterEvent::AssignedPodUpdate,
            ClusterEvent::AssignedPodDelete,
            ClusterEvent::NodeAdd,
            ClusterEvent::NodeUpdate,
            ClusterEvent::NamespaceChange,
        ]
    }

    fn filters(&self) -> bool {
        true
    }

    fn scores(&self) -> bool {
        true
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snapshot: &Snapshot) -> Status {
        let resolve = |terms: &[AffinityTerm]| {
            terms.iter().map(|t| resolve_namespaces(t, snapshot)).collect()
        };
        let incoming = IncomingPod {
            pod: Arc::clone(&pod.pod),
            required_affinity_terms: resolve(&pod.required_affinity_terms),
            required_anti_affinity_terms: resolve(&pod.required_anti_affinity_terms),
            namespace_labels: snapshot.namespace_labels(pod.namespace()).cloned(),
        };

        let mut existing_anti_affinity = TopologyCounts::default();
        for node in snapshot.nodes_with_required_anti_affinity_pods() {
            for existing in node.pods.iter().filter(|p| p.has_required_anti_affinity()) {
                existing_anti_affinity.add_each_match(
                    &existing.required_anti_affinity_terms,
                    &incoming.pod,
                    incoming.namespace_labels.as_ref(),
                    &node.node,
                    1,
                );
            }
        }

        let has_required_terms = !incoming.required_affinity_terms.is_empty()
            || !incoming.required_anti_affinity_terms.is_empty();
        let mut affinity = TopologyCounts::default();
        let mut anti_affinity = TopologyCounts::default();
        if has_required_terms {
            for node in &snapshot.nodes {
                for existing in &node.pods {
                    affinity.add_if_matches_all(
                        &incoming.required_affinity_terms,
                        &existing.pod,
                        &node.node,
                        1,
                    );
                    anti_affinity.add_each_match(
                        &incoming.required_anti_affinity_terms,
                        &existing.pod,
                        None,
                        &node.node,
                        1,
                    );
                }
            }
        }

        if existing_anti_affinity.is_empty() && !has_required_terms {
            return Status::skip();
        }
        state.insert(
            self.name(),
            PreFilterState {
                incoming: Arc::new(incoming),
                existing_anti_affinity,
                affinity,
                anti_affinity,
            },
        );
        Status::success()
    }

    fn add_pod(
        &self,
        state: &mut CycleState,
        _pod: &PodInfo,
        added: &PodInfo,
        node: &NodeInfo,
        _snapshot: &Snapshot,
    ) {
        // Without a state pre-filter skipped this plugin, and there is nothing to update.
        if let Some(state) = state.get_mut::<PreFilterState>(self.name()) {
            state.update_with_pod(added, &node.node, 1);
        }
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        _pod: &PodInfo,
        removed: &PodInfo,
        node: &NodeInfo,
        _snapshot: &Snapshot,
    ) {
        if let Some(state) = state.get_mut::<PreFilterState>(self.name()) {
            state.update_with_pod(removed, &node.node, -1);
        }
    }

    /// A missing affinity partner cannot be fixed by preemption (unresolvable); a conflicting
    /// pod can be evicted, so anti-affinity rejections are merely unschedulable, as upstream.
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let state = match state.require::<PreFilterState>(self.name()) {
            Ok(state) => state,
            Err(status) => return status,
        };
        if !state.satisfies_affinity(&node.node) {
            return Status::unresolvable(AFFINITY_RULES_NOT_MATCH);
        }
        if !state.satisfies_anti_affinity(&node.node) {
            return Status::unschedulable(ANTI_AFFINITY_RULES_NOT_MATCH);
        }
        if !state.satisfies_existing_anti_affinity(&node.node) {
            return Status::unschedulable(EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH);
        }
        Status::success()
    }

    /// Sums, per topology pair of every existing pod's node: the weights of the incoming
    /// pod's preferred affinity terms the pod matches (minus those of its preferred
    /// anti-affinity terms), and the weights of the existing pod's preferred affinity terms
    /// (minus its preferred anti-affinity terms, plus `HARD_POD_AFFINITY_WEIGHT` for each of
    /// its required affinity terms) that the incoming pod matches.
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
        feasible: &[&NodeInfo],
    ) -> Status {
        if feasible.is_empty() {
            return Status::skip();
        }
        let preferred_affinity = resolve_weighted(&pod.preferred_affinity_terms, snapshot);
        let preferred_anti_affinity =
            resolve_weighted(&pod.preferred_anti_affinity_terms, snapshot);
        let namespace_labels = snapshot.namespace_labels(pod.namespace());
        // Without preferred terms of its own, the incoming pod is scored only by existing
        // pods' terms, so pods without any affinity (and nodes without such pods) add nothing.
        let has_preferred_terms =
            !preferred_affinity.is_empty() || !preferred_anti_affinity.is_empty();

        let mut scores = TopologyCounts::default();
        for node_info in &snapshot.nodes {
            if !has_preferred_terms && node_info.pods_with_affinity == 0 {
                continue;
            }
            let node = &node_info.node;
            if node_labels(node).is_empty() {
                continue;
            }
            for existing in &node_info.pods {
                if !has_preferred_terms && !existing.has_affinity() {
                    continue;
                }
                for weighted in &preferred_affinity {
                    scores.add_if_term_matches(
                        &weighted.term,
                        weighted.weight.into(),
                        &existing.pod,
                        None,
                        node,
                    );
                }
                for weighted in &preferred_anti_affinity {
                    scores.add_if_term_matches(
                        &weighted.term,
                        -i64::from(weighted.weight),
                        &existing.pod,
                        None,
                        node,
                    );
                }
                for term in &existing.required_affinity_terms {
                    scores.add_if_term_matches(
                        term,
                        HARD_POD_AFFINITY_WEIGHT,
                        &pod.pod,
                        namespace_labels,
                        node,
                    );
                }
                for weighted in &existing.preferred_affinity_terms {
                    scores.add_if_term_matches(
                        &weighted.term,
                        weighted.weight.into(),
                        &pod.pod,
                        namespace_labels,
                        node,
                    );
                }
                for weighted in &existing.preferred_anti_affinity_terms {
                    scores.add_if_term_matches(
                        &weighted.term,
                        -i64::from(weighted.weight),
                        &pod.pod,
                        namespace_labels,
                        node,
                    );
                }
            }
        }
        if scores.is_empty() {
            return Status::skip();
        }
        state.insert(self.name(), PreScoreState { topology_scores: scores });
        Status::success()
    }

    /// The sum of the topology scores of the node's topology pairs (negative when
    /// anti-affinity outweighs affinity).
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        // `pre_score` stores the state whenever it does not skip, and skipped plugins are not
        // asked to score; without it the node earns nothing.
        let Some(state) = state.get::<PreScoreState>(self.name()) else { return 0 };
        node_labels(&node.node)
            .iter()
            .map(|(key, value)| state.topology_scores.get(key, value))
            .sum()
    }

    /// Maps the lowest score to 0 and the highest to MAX_NODE_SCORE linearly; all equal
    /// gives all 0.
    fn normalize_scores(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) {
        let (Some(&lowest), Some(&highest)) = (scores.iter().min(), scores.iter().max()) else {
            return;
        };
        let spread = highest - lowest;
        for score in scores.iter_mut() {
            *score = if spread > 0 {
                // Upstream computes in floating point and truncates; the same here keeps
                // rounding identical.
                (MAX_NODE_SCORE as f64 * ((*score - lowest) as f64 / spread as f64)) as i64
            } else {
                0
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

    const HOSTNAME: &str = "kubernetes.io/hostname";
    const ZONE: &str = "zone";

    /// A node labelled with its hostname and, unless `zone` is empty, a zone.
    fn zone_node(name: &str, zone: &str, pods: Vec<Arc<Pod>>) -> NodeInfo {
        let mut labels = json!({HOSTNAME: name});
        if !zone.is_empty() {
            labels[ZONE] = json!(zone);
        }
        node_info(node(json!({"metadata": {"name": name, "labels": labels}})), pods)
    }

    /// A running pod in `namespace` with these labels and, optionally, an affinity.
    fn running(namespace: &str, name: &str, labels: Value, affinity: Value) -> Arc<Pod> {
        let mut spec = json!({});
        if !affinity.is_null() {
            spec["affinity"] = affinity;
        }
        pod(json!({"metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": spec}))
    }

    fn web(name: &str) -> Arc<Pod> {
        running("default", name, json!({"app": "web"}), Value::Null)
    }

    fn db(name: &str) -> Arc<Pod> {
        running("default", name, json!({"app": "db"}), Value::Null)
    }

    /// A pod affinity term selecting `app=<app>` over `key`, with extra fields merged in.
    fn term(app: &str, key: &str, extra: Value) -> Value {
        let mut term = json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key});
        if let (Some(term), Some(extra)) = (term.as_object_mut(), extra.as_object()) {
            term.extend(extra.clone());
        }
        term
    }

    fn required(kind: &str, terms: Value) -> Value {
        json!({kind: {"requiredDuringSchedulingIgnoredDuringExecution": terms}})
    }

    fn preferred(kind: &str, weighted: &[(i32, Value)]) -> Value {
        let terms: Vec<Value> = weighted
            .iter()
            .map(|(weight, term)| json!({"weight": weight, "podAffinityTerm": term}))
            .collect();
        json!({kind: {"preferredDuringSchedulingIgnoredDuringExecution": terms}})
    }

    /// The incoming pod, in namespace "default".
    fn incoming(labels: Value, affinity: Value) -> PodInfo {
        PodInfo::new(running("default", "incoming", labels, affinity))
    }

    fn with_namespaces(nodes: Vec<NodeInfo>, namespaces: &[(&str, Value)]) -> Snapshot {
        let mut snapshot = snapshot(nodes);
        for (name, labels) in namespaces {
            let labels = serde_json::from_value(labels.clone()).expect("string labels");
            snapshot.namespace_labels.insert((*name).to_owned(), labels);
        }
        snapshot
    }

    fn ok() -> Status {
        Status::success()
    }

    fn no_affinity() -> Status {
        Status::unresolvable(AFFINITY_RULES_NOT_MATCH)
    }

    fn no_anti_affinity() -> Status {
        Status::unschedulable(ANTI_AFFINITY_RULES_NOT_MATCH)
    }

    fn no_existing() -> Status {
        Status::unschedulable(EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH)
    }

    /// Runs pre-filter and filter on every node, as the framework does (a skipped filter
    /// accepts every node).
    fn check_filter(name: &str, pod: PodInfo, snapshot: Snapshot, expected: &[Status]) {
        let plugin = InterPodAffinity;
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
    fn affinity_filters() {
        let affinity_to_db_zone = required("podAffinity", json!([term("db", ZONE, json!({}))]));
        check_filter(
            "affinity to the zone of a db pod",
            incoming(json!({"app": "web"}), affinity_to_db_zone.clone()),
            snapshot(vec![
                zone_node("n1", "a", vec![db("db1")]),
                zone_node("n2", "a", vec![]),
                zone_node("n3", "b", vec![web("w1")]),
                zone_node("n4", "", vec![]),
            ]),
            &[ok(), ok(), no_affinity(), no_affinity()],
        );
        check_filter(
            "no db pod anywhere and the pod is not a db itself",
            incoming(json!({"app": "web"}), affinity_to_db_zone),
            snapshot(vec![zone_node("n1", "a", vec![web("w1")]), zone_node("n2", "b", vec![])]),
            &[no_affinity(), no_affinity()],
        );
        let affinity_to_web_zone = required("podAffinity", json!([term("web", ZONE, json!({}))]));
        check_filter(
            "the first pod of a group with affinity to itself goes where the key exists",
            incoming(json!({"app": "web"}), affinity_to_web_zone.clone()),
            snapshot(vec![
                zone_node("n1", "a", vec![db("db1")]),
                zone_node("n2", "b", vec![]),
                zone_node("n3", "", vec![]),
            ]),
            &[ok(), ok(), no_affinity()],
        );
        check_filter(
            "once a group member runs, the others follow it",
            incoming(json!({"app": "web"}), affinity_to_web_zone),
            snapshot(vec![zone_node("n1", "a", vec![]), zone_node("n2", "b", vec![web("w1")])]),
            &[no_affinity(), ok()],
        );
        check_filter(
            "an existing pod must match all terms to count",
            incoming(
                json!({}),
                required(
                    "podAffinity",
                    json!([term("db", ZONE, json!({})), term("cache", HOSTNAME, json!({}))]),
                ),
            ),
            snapshot(vec![
                zone_node("n1", "a", vec![db("db1")]),
                zone_node(
                    "n2",
                    "a",
                    vec![running("default", "c", json!({"app": "cache"}), Value::Null)],
                ),
            ]),
            &[no_affinity(), no_affinity()],
        );
    }

    #[test]
    fn anti_affinity_filters() {
        let spread_web_over_hosts =
            required("podAntiAffinity", json!([term("web", HOSTNAME, json!({}))]));
        check_filter(
            "anti-affinity spreads web pods over hostnames",
            incoming(json!({"app": "web"}), spread_web_over_hosts.clone()),
            snapshot(vec![
                zone_node("n1", "a", vec![web("w1")]),
                zone_node("n2", "a", vec![db("db1")]),
                zone_node("n3", "b", vec![]),
            ]),
            &[no_anti_affinity(), ok(), ok()],
        );
        check_filter(
            "anti-affinity over zones keeps the whole zone free",
            incoming(
                json!({"app": "web"}),
                required("podAntiAffinity", json!([term("web", ZONE, json!({}))])),
            ),
            snapshot(vec![
                zone_node("n1", "a", vec![web("w1")]),
                zone_node("n2", "a", vec![]),
                zone_node("n3", "b", vec![]),
                zone_node("n4", "", vec![]),
            ]),
            &[no_anti_affinity(), no_anti_affinity(), ok(), ok()],
        );
        let existing_anti_affinity =
            required("podAntiAffinity", json!([term("web", ZONE, json!({}))]));
        check_filter(
            "an existing pod's anti-affinity keeps matching pods out of its zone",
            incoming(json!({"app": "web"}), Value::Null),
            snapshot(vec![
                zone_node(
                    "n1",
                    "a",
                    vec![running("default", "lonely", json!({}), existing_anti_affinity.clone())],
                ),
                zone_node("n2", "a", vec![]),
                zone_node("n3", "b", vec![]),
            ]),
            &[no_existing(), no_existing(), ok()],
        );
        check_filter(
            "an existing pod's anti-affinity does not concern non-matching pods",
            incoming(json!({"app": "db"}), Value::Null),
            snapshot(vec![
                zone_node(
                    "n1",
                    "a",
                    vec![running("default", "lonely", json!({}), existing_anti_affinity.clone())],
                ),
                zone_node("n2", "b", vec![]),
            ]),
            &[ok(), ok()],
        );
        check_filter(
            "an existing pod's anti-affinity is about its own namespace by default",
            incoming(json!({"app": "web"}), Value::Null),
            snapshot(vec![zone_node(
                "n1",
                "a",
                vec![running("other", "lonely", json!({}), existing_anti_affinity)],
            )]),
            &[ok()],
        );
        check_filter(
            "the incoming pod's anti-affinity is checked before existing pods'",
            incoming(json!({"app": "web"}), spread_web_over_hosts),
            snapshot(vec![zone_node(
                "n1",
                "a",
                vec![
                    web("w1"),
                    running(
                        "default",
                        "lonely",
                        json!({}),
                        required("podAntiAffinity", json!([term("web", ZONE, json!({}))])),
                    ),
                ],
            )]),
            &[no_anti_affinity()],
        );
    }

    #[test]
    fn namespaces_and_namespace_selectors() {
        let nodes = || {
            vec![
                zone_node(
                    "n1",
                    "a",
                    vec![running("other", "db1", json!({"app": "db"}), Value::Null)],
                ),
                zone_node(
                    "n2",
                    "b",
                    vec![running("third", "db2", json!({"app": "db"}), Value::Null)],
                ),
                zone_node("n3", "c", vec![db("db3")]),
            ]
        };
        let namespaces = [("other", json!({"team": "x"})), ("third", json!({"team": "y"}))];
        let affinity = |extra: Value| required("podAffinity", json!([term("db", ZONE, extra)]));
        check_filter(
            "without namespaces a term is about the pod's own namespace",
            incoming(json!({}), affinity(json!({}))),
            with_namespaces(nodes(), &namespaces),
            &[no_affinity(), no_affinity(), ok()],
        );
        check_filter(
            "listed namespaces",
            incoming(json!({}), affinity(json!({"namespaces": ["other"]}))),
            with_namespaces(nodes(), &namespaces),
            &[ok(), no_affinity(), no_affinity()],
        );
        check_filter(
            "a namespace selector selects namespaces by their labels",
            incoming(
                json!({}),
                affinity(json!({"namespaceSelector": {"matchLabels": {"team": "y"}}})),
            ),
            with_namespaces(nodes(), &namespaces),
            &[no_affinity(), ok(), no_affinity()],
        );
        check_filter(
            "namespaces and a namespace selector add up",
            incoming(
                json!({}),
                affinity(json!({"namespaces": ["other"],
                    "namespaceSelector": {"matchLabels": {"team": "y"}}})),
            ),
            with_namespaces(nodes(), &namespaces),
            &[ok(), ok(), no_affinity()],
        );
        check_filter(
            "an empty namespace selector selects every namespace",
            incoming(json!({}), affinity(json!({"namespaceSelector": {}}))),
            with_namespaces(nodes(), &namespaces),
            &[ok(), ok(), ok()],
        );
        check_filter(
            "anti-affinity with a namespace selector",
            incoming(
                json!({}),
                required(
                    "podAntiAffinity",
                    json!([term(
                        "db",
                        ZONE,
                        json!({"namespaceSelector": {"matchLabels": {"team": "x"}}})
                    )]),
                ),
            ),
            with_namespaces(nodes(), &namespaces),
            &[no_anti_affinity(), ok(), ok()],
        );
        // An existing pod's term selects the incoming pod's namespace by that namespace's labels.
        let guard = |selector: Value| {
            zone_node(
                "n1",
                "a",
                vec![running(
                    "other",
                    "guard",
                    json!({}),
                    required(
                        "podAntiAffinity",
                        json!([term("web", ZONE, json!({"namespaceSelector": selector}))]),
                    ),
                )],
            )
        };
        check_filter(
            "an existing pod's namespace selector matching the incoming pod's namespace",
            incoming(json!({"app": "web"}), Value::Null),
            with_namespaces(
                vec![guard(json!({"matchLabels": {"env": "prod"}})), zone_node("n2", "b", vec![])],
                &[("default", json!({"env": "prod"}))],
            ),
            &[no_existing(), ok()],
        );
        check_filter(
            "an existing pod's namespace selector not matching the incoming pod's namespace",
            incoming(json!({"app": "web"}), Value::Null),
            with_namespaces(
                vec![guard(json!({"matchLabels": {"env": "prod"}})), zone_node("n2", "b", vec![])],
                &[("default", json!({"env": "dev"}))],
            ),
            &[ok(), ok()],
        );
    }

    #[test]
    fn pre_filter_skips_pods_without_required_terms() {
        let plugin = InterPodAffinity;
        let web_only = snapshot(vec![zone_node("n1", "a", vec![web("w1")])]);
        let mut state = CycleState::default();
        let pod = incoming(
            json!({"app": "web"}),
            preferred("podAffinity", &[(10, term("web", ZONE, json!({})))]),
        );
        assert_eq!(plugin.pre_filter(&mut state, &pod, &web_only).code, Code::Skip);
        // An existing pod's anti-affinity that does not match the pod does not count either.
        let unrelated_guard = snapshot(vec![zone_node(
            "n1",
            "a",
            vec![running(
                "default",
                "g",
                json!({}),
                required("podAntiAffinity", json!([term("db", ZONE, json!({}))])),
            )],
        )]);
        assert_eq!(plugin.pre_filter(&mut state, &pod, &unrelated_guard).code, Code::Skip);
    }

    #[test]
    fn added_and_removed_pods_change_the_verdict() {
        let plugin = InterPodAffinity;
        let n1 = zone_node("n1", "a", vec![]);
        let n2 = zone_node("n2", "b", vec![db("db1")]);
        let snapshot = snapshot(vec![n1.clone(), n2.clone()]);
        let pod = incoming(
            json!({"app": "web"}),
            json!({
                "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("web", HOSTNAME, json!({}))]},
                "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("db", ZONE, json!({}))]}
            }),
        );
        let mut state = CycleState::default();
        assert!(plugin.pre_filter(&mut state, &pod, &snapshot).is_success());
        assert_eq!(plugin.filter(&state, &pod, &n1), no_affinity());
        assert_eq!(plugin.filter(&state, &pod, &n2), ok());

        // A web pod nominated to n2 conflicts with the pod's anti-affinity there.
        let other_web = pod_info(json!({"metadata": {"name": "w2", "labels": {"app": "web"}}}));
        plugin.add_pod(&mut state, &pod, &other_web, &n2, &snapshot);
        assert_eq!(plugin.filter(&state, &pod, &n2), no_anti_affinity());
        plugin.remove_pod(&mut state, &pod, &other_web, &n2, &snapshot);
        assert_eq!(plugin.filter(&state, &pod, &n2), ok());

        // Removing the only db pod leaves no affinity partner, and the pod (not a db itself)
        // cannot be the first of its group.
        let db1 = PodInfo::new(db("db1"));
        plugin.remove_pod(&mut state, &pod, &db1, &n2, &snapshot);
        assert_eq!(plugin.filter(&state, &pod, &n2), no_affinity());
        // A db pod added in zone a makes n1 feasible.
        plugin.add_pod(&mut state, &pod, &db1, &n1, &snapshot);
        assert_eq!(plugin.filter(&state, &pod, &n1), ok());
    }

    #[test]
    fn removing_an_existing_pod_with_anti_affinity_frees_its_zone() {
        let plugin = InterPodAffinity;
        let guard = running(
            "default",
            "guard",
            json!({}),
            required("podAntiAffinity", json!([term("web", ZONE, json!({}))])),
        );
        let n1 = zone_node("n1", "a", vec![Arc::clone(&guard)]);
        let n2 = zone_node("n2", "a", vec![]);
        let snapshot = snapshot(vec![n1.clone(), n2.clone()]);
        let pod = incoming(json!({"app": "web"}), Value::Null);
        let mut state = CycleState::default();
        assert!(plugin.pre_filter(&mut state, &pod, &snapshot).is_success());
        assert_eq!(plugin.filter(&state, &pod, &n2), no_existing());
        let mut preempted = state.clone();
        plugin.remove_pod(&mut preempted, &pod, &PodInfo::new(guard), &n1, &snapshot);
        assert_eq!(plugin.filter(&preempted, &pod, &n1), ok());
        assert_eq!(plugin.filter(&preempted, &pod, &n2), ok());
        // The original state is untouched by the what-if on its clone.
        assert_eq!(plugin.filter(&state, &pod, &n1), no_existing());
    }

    /// Runs pre-score, score and normalize over all nodes of the snapshot; `None` expects
    /// pre-score to skip.
    fn check_scores(name: &str, pod: PodInfo, snapshot: Snapshot, expected: Option<&[i64]>) {
        let plugin = InterPodAffinity;
        let mut state = CycleState::default();
        let feasible: Vec<&NodeInfo> = snapshot.nodes.iter().map(|node| node.as_ref()).collect();
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
        let nodes = || {
            vec![
                zone_node("n1", "a", vec![db("db1"), web("w1")]),
                zone_node("n2", "a", vec![]),
                zone_node("n3", "b", vec![]),
                zone_node("n4", "", vec![]),
            ]
        };
        check_scores(
            "preferred affinity to the zone of a db pod",
            incoming(json!({}), preferred("podAffinity", &[(10, term("db", ZONE, json!({})))])),
            snapshot(nodes()),
            Some(&[100, 100, 0, 0]),
        );
        check_scores(
            "preferred anti-affinity against a web pod's host",
            incoming(
                json!({}),
                preferred("podAntiAffinity", &[(10, term("web", HOSTNAME, json!({})))]),
            ),
            snapshot(nodes()),
            Some(&[0, 100, 100, 100]),
        );
        // Affinity 10 for zone a, anti-affinity 5 for n1: n1 = 5, n2 = 10, n3 = n4 = 0.
        check_scores(
            "affinity and anti-affinity add up, normalized between the lowest and highest",
            incoming(
                json!({}),
                json!({
                    "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 10, "podAffinityTerm": term("db", ZONE, json!({}))}]},
                    "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 5, "podAffinityTerm": term("web", HOSTNAME, json!({}))}]}
                }),
            ),
            snapshot(nodes()),
            Some(&[50, 100, 0, 0]),
        );
        check_scores(
            "nothing matches: skipped",
            incoming(json!({}), preferred("podAffinity", &[(10, term("cache", ZONE, json!({})))])),
            snapshot(nodes()),
            None,
        );
        check_scores(
            "no affinity anywhere: skipped",
            incoming(json!({"app": "web"}), Value::Null),
            snapshot(nodes()),
            None,
        );
        let with_existing = |affinity: Value| {
            snapshot(vec![
                zone_node("n1", "a", vec![]),
                zone_node("n2", "b", vec![running("default", "e", json!({}), affinity)]),
                zone_node("n3", "b", vec![]),
            ])
        };
        check_scores(
            "an existing pod's preferred affinity to the incoming pod",
            incoming(json!({"app": "web"}), Value::Null),
            with_existing(preferred("podAffinity", &[(30, term("web", ZONE, json!({})))])),
            Some(&[0, 100, 100]),
        );
        check_scores(
            "an existing pod's preferred anti-affinity against the incoming pod",
            incoming(json!({"app": "web"}), Value::Null),
            with_existing(preferred("podAntiAffinity", &[(30, term("web", HOSTNAME, json!({})))])),
            Some(&[100, 0, 100]),
        );
        check_scores(
            "an existing pod's required affinity counts with the hard weight",
            incoming(json!({"app": "web"}), Value::Null),
            with_existing(required("podAffinity", json!([term("web", ZONE, json!({}))]))),
            Some(&[0, 100, 100]),
        );
        check_scores(
            "an existing pod's term in another namespace does not select the pod",
            incoming(json!({"app": "web"}), Value::Null),
            snapshot(vec![
                zone_node("n1", "a", vec![]),
                zone_node(
                    "n2",
                    "b",
                    vec![running(
                        "other",
                        "e",
                        json!({}),
                        preferred("podAffinity", &[(30, term("web", ZONE, json!({})))]),
                    )],
                ),
            ]),
            None,
        );
        check_scores(
            "the incoming pod's preferred term with a namespace selector",
            incoming(
                json!({}),
                preferred(
                    "podAffinity",
                    &[(
                        10,
                        term(
                            "db",
                            ZONE,
                            json!({"namespaceSelector": {"matchLabels": {"team": "x"}}}),
                        ),
                    )],
                ),
            ),
            with_namespaces(
                vec![
                    zone_node("n1", "a", vec![db("db1")]),
                    zone_node(
                        "n2",
                        "b",
                        vec![running("other", "db2", json!({"app": "db"}), Value::Null)],
                    ),
                ],
                &[("other", json!({"team": "x"})), ("default", json!({"team": "y"}))],
            ),
            Some(&[0, 100]),
        );
    }

    #[test]
    fn registration() {
        let plugin = InterPodAffinity;
        assert_eq!(plugin.weight(), 2);
        assert!(plugin.filters() && plugin.scores());
        assert!(plugin.events().contains(&ClusterEvent::NamespaceChange));
        assert!(!plugin.events().contains(&ClusterEvent::PvcChange));
    }
}
