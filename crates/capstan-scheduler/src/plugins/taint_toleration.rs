//! The TaintToleration plugin: keeps a pod off nodes with `NoSchedule` or `NoExecute` taints
//! it does not tolerate, and prefers nodes with fewer untolerated `PreferNoSchedule` taints.

use crate::framework::taints::{first_untolerated, tolerated};
use crate::framework::{
    ClusterEvent, CycleState, MAX_NODE_SCORE, NodeInfo, Plugin, PodInfo, Snapshot, Status,
    default_normalize_score,
};
use k8s_openapi::api::core::v1::{Taint, Toleration};

/// The taint effects the filter enforces; `PreferNoSchedule` only lowers the score.
const FILTERED_EFFECTS: &[&str] = &["NoSchedule", "NoExecute"];
const PREFER_NO_SCHEDULE: &str = "PreferNoSchedule";

/// Upstream's `TaintToleration` plugin.
#[derive(Debug, Default)]
pub struct TaintToleration;

/// What `pre_score` keeps for `score`: the pod's tolerations that can tolerate a
/// `PreferNoSchedule` taint (that effect, or no effect, which means every effect).
#[derive(Debug, Clone)]
struct PreScoreState {
    tolerations: Vec<Toleration>,
}

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    /// Only a node's taints decide the verdict, so only new or changed nodes can turn a
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

    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(taint) =
            first_untolerated(node_taints(node), pod_tolerations(pod), FILTERED_EFFECTS)
        else {
            return Status::success();
        };
        // Upstream prints the taint with Go's `%s`, so a taint without a value reads `{key: }`.
        Status::unresolvable(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            taint.key,
            taint.value.as_deref().unwrap_or_default()
        ))
    }

    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
        _feasible: &[&NodeInfo],
    ) -> Status {
        let tolerations = pod_tolerations(pod)
            .iter()
            .filter(|toleration| {
                let effect = toleration.effect.as_deref().unwrap_or_default();
                effect.is_empty() || effect == PREFER_NO_SCHEDULE
            })
            .cloned()
            .collect();
        state.insert(self.name(), PreScoreState { tolerations });
        Status::success()
    }

    /// How many `PreferNoSchedule` taints of the node the pod does not tolerate; fewer is
    /// better, so normalizing reverses the scale.
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        // `pre_score` always runs before `score` and always stores the state; without it no
        // toleration applies, which is the conservative reading.
        let tolerations = state
            .get::<PreScoreState>(self.name())
            .map(|state| state.tolerations.as_slice())
            .unwrap_or_default();
        let untolerated = node_taints(node)
            .iter()
            .filter(|taint| taint.effect == PREFER_NO_SCHEDULE && !tolerated(tolerations, taint))
            .count();
        i64::try_from(untolerated).unwrap_or(i64::MAX)
    }

    fn normalize_scores(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) {
        default_normalize_score(MAX_NODE_SCORE, true, scores);
    }

    fn weight(&self) -> i64 {
        3
    }
}

fn node_taints(node: &NodeInfo) -> &[Taint] {
    node.node.spec.as_ref().and_then(|spec| spec.taints.as_deref()).unwrap_or_default()
}

fn pod_tolerations(pod: &PodInfo) -> &[Toleration] {
    pod.pod.spec.as_ref().and_then(|spec| spec.tolerations.as_deref()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testing::{node, node_info, pod_info, snapshot};
    use serde_json::{Value, json};

    fn pod_with(tolerations: Value) -> PodInfo {
        pod_info(json!({"metadata": {"name": "p"}, "spec": {"tolerations": tolerations}}))
    }

    fn node_with(name: &str, taints: Value) -> NodeInfo {
        node_info(node(json!({"metadata": {"name": name}, "spec": {"taints": taints}})), Vec::new())
    }

    fn check_filter(tolerations: Value, taints: Value, expected: Status) {
        let pod = pod_with(tolerations.clone());
        let node = node_with("n1", taints.clone());
        let status = TaintToleration.filter(&CycleState::default(), &pod, &node);
        assert_eq!(status, expected, "tolerations {tolerations} vs taints {taints}");
    }

    #[test]
    fn filter_verdicts() {
        let untolerated = |text: &str| Status::unresolvable(text.to_owned());
        check_filter(json!([]), json!([]), Status::success());
        check_filter(
            json!([]),
            json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
            untolerated("node(s) had untolerated taint {dedicated: gpu}"),
        );
        // A taint without a value prints an empty value.
        check_filter(
            json!([]),
            json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
            untolerated("node(s) had untolerated taint {node.kubernetes.io/not-ready: }"),
        );
        // PreferNoSchedule never rejects.
        check_filter(
            json!([]),
            json!([{"key": "k", "value": "v", "effect": "PreferNoSchedule"}]),
            Status::success(),
        );
        check_filter(
            json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]),
            json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
            Status::success(),
        );
        check_filter(
            json!([{"key": "dedicated", "operator": "Exists"}]),
            json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
                   {"key": "dedicated", "value": "db", "effect": "NoExecute"}]),
            Status::success(),
        );
        // The first untolerated taint is the one reported.
        check_filter(
            json!([{"key": "a", "operator": "Exists", "effect": "NoSchedule"}]),
            json!([{"key": "a", "value": "1", "effect": "NoSchedule"},
                   {"key": "a", "value": "1", "effect": "NoExecute"},
                   {"key": "b", "value": "2", "effect": "NoSchedule"}]),
            untolerated("node(s) had untolerated taint {a: 1}"),
        );
        check_filter(
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
            json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
            untolerated("node(s) had untolerated taint {dedicated: gpu}"),
        );
        check_filter(
            json!([{"operator": "Exists"}]),
            json!([{"key": "anything", "value": "x", "effect": "NoExecute"}]),
            Status::success(),
        );
    }

    fn check_scores(tolerations: Value, node_taints: &[Value], expected: &[i64]) {
        let pod = pod_with(tolerations.clone());
        let nodes: Vec<NodeInfo> = node_taints
            .iter()
            .enumerate()
            .map(|(i, taints)| node_with(&format!("n{i}"), taints.clone()))
            .collect();
        let plugin = TaintToleration;
        let mut state = CycleState::default();
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        let status = plugin.pre_score(&mut state, &pod, &snapshot(nodes.clone()), &feasible);
        assert!(status.is_success());
        let mut scores: Vec<i64> =
            nodes.iter().map(|node| plugin.score(&state, &pod, node)).collect();
        plugin.normalize_scores(&state, &pod, &mut scores);
        assert_eq!(scores, expected, "tolerations {tolerations}");
    }

    #[test]
    fn scores() {
        let prefer = |key: &str| json!({"key": key, "value": "v", "effect": "PreferNoSchedule"});
        let nodes = [
            json!([prefer("a"), prefer("b")]),
            json!([prefer("a"), {"key": "c", "value": "v", "effect": "NoSchedule"}]),
            json!([]),
        ];
        // Untolerated counts 2, 1, 0: reversed, fewer is better.
        check_scores(json!([]), &nodes, &[0, 50, 100]);
        check_scores(
            json!([{"key": "a", "operator": "Exists", "effect": "PreferNoSchedule"}]),
            &nodes,
            &[0, 100, 100],
        );
        // A toleration without an effect covers PreferNoSchedule too.
        check_scores(json!([{"key": "b", "value": "v"}]), &nodes, &[0, 0, 100]);
        // A toleration for another effect does not.
        check_scores(
            json!([{"key": "a", "operator": "Exists", "effect": "NoSchedule"},
                   {"key": "b", "operator": "Exists", "effect": "NoSchedule"}]),
            &nodes,
            &[0, 50, 100],
        );
        check_scores(json!([{"operator": "Exists"}]), &nodes, &[100, 100, 100]);
    }

    #[test]
    fn registration() {
        let plugin = TaintToleration;
        assert_eq!(plugin.weight(), 3);
        assert!(plugin.filters() && plugin.scores());
        assert_eq!(plugin.events(), &[ClusterEvent::NodeAdd, ClusterEvent::NodeUpdate]);
    }
}
