//! The NodeAffinity plugin: keeps a pod off nodes that fail its `nodeSelector` or required
//! node affinity, and prefers nodes that match its preferred node affinity terms.

use crate::framework::selectors::{pod_matches_node, term_matches};
use crate::framework::{
    ClusterEvent, CycleState, MAX_NODE_SCORE, NodeInfo, Plugin, PodInfo, Snapshot, Status,
    default_normalize_score,
};
use k8s_openapi::api::core::v1::{NodeAffinity as ApiNodeAffinity, NodeSelector, Pod};
use std::collections::BTreeSet;

/// Why a node fails the pod's `nodeSelector` or required node affinity.
const REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";
/// Why no node at all can match: every required term pins the pod to node names, and the
/// names each term allows leave nothing.
const REASON_CONFLICT: &str = "pod affinity terms conflict";

/// Upstream's `NodeAffinity` plugin (without the scheduler-enforced `addedAffinity` of the
/// plugin's arguments, which Capstan's profiles do not set).
#[derive(Debug, Default)]
pub struct NodeAffinity;

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    /// A node's labels decide this plugin's verdict, so only new or changed nodes can turn a
    /// rejection around.
    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdd, ClusterEvent::NodeUpdate]
    }

    fn filters(&self) -> bool {
        true
    }

    fn scores(&self) -> bool {
        true
    }

    fn pre_filter(&self, _state: &mut CycleState, pod: &PodInfo, _snapshot: &Snapshot) -> Status {
        let spec = pod.pod.spec.as_ref();
        let required = required_affinity(&pod.pod);
        if required.is_none() && spec.and_then(|spec| spec.node_selector.as_ref()).is_none() {
            return Status::skip();
        }
        if required.is_some_and(names_conflict) {
            return Status::unresolvable(REASON_CONFLICT);
        }
        Status::success()
    }

    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if pod_matches_node(&pod.pod, &node.node) {
            Status::success()
        } else {
            Status::unresolvable(REASON_POD)
        }
    }

    fn pre_score(
        &self,
        _state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
        _feasible: &[&NodeInfo],
    ) -> Status {
        let preferred = node_affinity(&pod.pod).and_then(|affinity| {
            affinity.preferred_during_scheduling_ignored_during_execution.as_ref()
        });
        if preferred.is_none() {
            return Status::skip();
        }
        Status::success()
    }

    /// The sum of the weights of the preferred terms the node matches.
    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        node_affinity(&pod.pod)
            .and_then(|affinity| {
                affinity.preferred_during_scheduling_ignored_during_execution.as_ref()
            })
            .into_iter()
            .flatten()
            .filter(|term| term.weight != 0 && term_matches(&term.preference, &node.node))
            .map(|term| i64::from(term.weight))
            .sum()
    }

    fn normalize_scores(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) {
        default_normalize_score(MAX_NODE_SCORE, false, scores);
    }

    fn weight(&self) -> i64 {
        2
    }
}

fn node_affinity(pod: &Pod) -> Option<&ApiNodeAffinity> {
    pod.spec.as_ref()?.affinity.as_ref()?.node_affinity.as_ref()
}

fn required_affinity(pod: &Pod) -> Option<&NodeSelector> {
    node_affinity(pod)?.required_during_scheduling_ignored_during_execution.as_ref()
}

/// Whether the required terms contradict each other on node names: every term restricts
/// `metadata.name` with `In`, and the names that pass each term (the intersection of its `In`
/// lists) add up to none. A term without such a restriction admits any name, so there is no
/// conflict; nor is there when there are no terms (that matches no node, which the filter
/// reports per node, as upstream does).
fn names_conflict(required: &NodeSelector) -> bool {
    let terms = &required.node_selector_terms;
    if terms.is_empty() {
        return false;
    }
    let mut allowed: BTreeSet<&str> = BTreeSet::new();
    for term in terms {
        let mut term_names: Option<BTreeSet<&str>> = None;
        let name_requirements = term
            .match_fields
            .iter()
            .flatten()
            .filter(|field| field.key == "metadata.name" && field.operator == "In");
        for requirement in name_requirements {
            let values: BTreeSet<&str> =
                requirement.values.iter().flatten().map(String::as_str).collect();
            term_names = Some(match term_names {
                None => values,
                Some(names) => names.intersection(&values).copied().collect(),
            });
        }
        let Some(term_names) = term_names else { return false };
        allowed.extend(term_names);
    }
    allowed.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::framework::testing::{node_info, pod_info, simple_node, snapshot};
    use serde_json::{Value, json};

    /// The plugin's verdict on one node, as the framework reaches it: the pre-filter's answer
    /// when it is not a plain success (a skip included), else the filter's.
    fn check_filter(pod_spec: Value, node_labels: Value, expected: Status) {
        let pod = pod_info(json!({"metadata": {"name": "p"}, "spec": pod_spec}));
        let node = node_info(simple_node("n1", node_labels, "1", "1Gi"), Vec::new());
        let plugin = NodeAffinity;
        let mut state = CycleState::default();
        let mut status = plugin.pre_filter(&mut state, &pod, &snapshot(vec![node.clone()]));
        if status.code == Code::Success {
            status = plugin.filter(&state, &pod, &node);
        }
        assert_eq!(status, expected, "pod spec {pod_spec}");
    }

    fn required(terms: Value) -> Value {
        json!({"affinity": {"nodeAffinity":
            {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}})
    }

    #[test]
    fn filter_verdicts() {
        let zone_a = json!({"zone": "a", "disk": "ssd"});
        let mismatch = Status::unresolvable(REASON_POD);
        check_filter(json!({}), zone_a.clone(), Status::skip());
        check_filter(json!({"nodeSelector": {"zone": "a"}}), zone_a.clone(), Status::success());
        check_filter(json!({"nodeSelector": {"zone": "b"}}), zone_a.clone(), mismatch.clone());
        check_filter(
            required(json!([{"matchExpressions":
                [{"key": "disk", "operator": "In", "values": ["ssd"]}]}])),
            zone_a.clone(),
            Status::success(),
        );
        check_filter(
            required(json!([{"matchExpressions":
                [{"key": "disk", "operator": "NotIn", "values": ["ssd"]}]}])),
            zone_a.clone(),
            mismatch.clone(),
        );
        // Both the selector and the affinity must hold.
        let mut both = required(json!([{"matchExpressions":
            [{"key": "disk", "operator": "Exists"}]}]));
        both["nodeSelector"] = json!({"zone": "b"});
        check_filter(both, zone_a.clone(), mismatch.clone());
        // No terms match no node.
        check_filter(required(json!([])), zone_a.clone(), mismatch.clone());
        check_filter(
            required(json!([{"matchFields":
                [{"key": "metadata.name", "operator": "In", "values": ["n1", "n2"]}]}])),
            zone_a.clone(),
            Status::success(),
        );
        check_filter(
            required(json!([{"matchFields":
                [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}])),
            zone_a.clone(),
            mismatch,
        );
        // Two name restrictions in one term leave nothing: no node can ever match.
        check_filter(
            required(json!([{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": ["n1"]},
                {"key": "metadata.name", "operator": "In", "values": ["n2"]}]}])),
            zone_a.clone(),
            Status::unresolvable(REASON_CONFLICT),
        );
        // A term without a name restriction lifts the conflict of the others.
        check_filter(
            required(json!([
                {"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": ["n1"]},
                    {"key": "metadata.name", "operator": "In", "values": ["n2"]}]},
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}])),
            zone_a,
            Status::success(),
        );
    }

    /// Normalized scores of the nodes (labelled as given), or `None` when the plugin skips
    /// scoring the pod.
    fn check_scores(pod_spec: Value, node_labels: &[Value], expected: Option<Vec<i64>>) {
        let pod = pod_info(json!({"metadata": {"name": "p"}, "spec": pod_spec}));
        let nodes: Vec<NodeInfo> = node_labels
            .iter()
            .enumerate()
            .map(|(i, labels)| {
                node_info(simple_node(&format!("n{i}"), labels.clone(), "1", "1Gi"), Vec::new())
            })
            .collect();
        let plugin = NodeAffinity;
        let mut state = CycleState::default();
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        let status = plugin.pre_score(&mut state, &pod, &snapshot(nodes.clone()), &feasible);
        let scores = (status.code != Code::Skip).then(|| {
            let mut scores: Vec<i64> =
                nodes.iter().map(|node| plugin.score(&state, &pod, node)).collect();
            plugin.normalize_scores(&state, &pod, &mut scores);
            scores
        });
        assert_eq!(scores, expected, "pod spec {pod_spec}");
    }

    fn preferred(terms: Value) -> Value {
        json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": terms}}})
    }

    #[test]
    fn scores() {
        let nodes =
            [json!({"zone": "a", "disk": "ssd"}), json!({"zone": "a"}), json!({"zone": "b"})];
        check_scores(json!({}), &nodes, None);
        let zone_a = json!({"weight": 2, "preference": {"matchExpressions":
            [{"key": "zone", "operator": "In", "values": ["a"]}]}});
        let ssd = json!({"weight": 6, "preference": {"matchExpressions":
            [{"key": "disk", "operator": "In", "values": ["ssd"]}]}});
        // 8, 2 and 0 scaled by the highest.
        check_scores(preferred(json!([zone_a, ssd])), &nodes, Some(vec![100, 25, 0]));
        check_scores(preferred(json!([zone_a])), &nodes, Some(vec![100, 100, 0]));
        // An empty preference matches nothing, so every node scores zero.
        check_scores(
            preferred(json!([{"weight": 5, "preference": {}}])),
            &nodes,
            Some(vec![0, 0, 0]),
        );
    }

    #[test]
    fn registration() {
        let plugin = NodeAffinity;
        assert_eq!(plugin.weight(), 2);
        assert!(plugin.filters() && plugin.scores());
        assert_eq!(plugin.events(), &[ClusterEvent::NodeAdd, ClusterEvent::NodeUpdate]);
    }
}
