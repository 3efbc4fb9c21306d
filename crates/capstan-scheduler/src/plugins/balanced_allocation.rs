//! The NodeResourcesBalancedAllocation plugin: favors nodes where, with the pod there, the
//! requested shares of CPU and of memory would be closest to each other.

use super::node_resources_fit::{RequestsView, allocatable_and_requested};
use crate::framework::{
    ClusterEvent, CycleState, MAX_NODE_SCORE, NodeInfo, Plugin, PodInfo, Snapshot, Status,
};

/// The resources balanced against each other (upstream's default arguments).
const RESOURCES: [&str; 2] = ["cpu", "memory"];

/// Upstream's `NodeResourcesBalancedAllocation` plugin.
#[derive(Debug, Default)]
pub struct BalancedAllocation;

/// The score from the requested shares: one minus their standard deviation, scaled to
/// 0..=MAX_NODE_SCORE and rounded down.
fn balance_score(fractions: &[f64]) -> i64 {
    let deviation = match fractions {
        // With two resources the standard deviation is half their difference.
        [first, second] => ((first - second) / 2.0).abs(),
        [_, _, ..] => {
            let count = fractions.len() as f64;
            let mean = fractions.iter().sum::<f64>() / count;
            let squares: f64 = fractions.iter().map(|f| (f - mean) * (f - mean)).sum();
            (squares / count).sqrt()
        }
        _ => 0.0,
    };
    ((1.0 - deviation) * MAX_NODE_SCORE as f64) as i64
}

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }

    /// A score plugin rejects no pod, so no event needs to bring one back.
    fn events(&self) -> &'static [ClusterEvent] {
        &[]
    }

    fn scores(&self) -> bool {
        true
    }

    /// A pod that requests neither CPU nor memory is not scored: it would not change any
    /// node's balance, and scoring it by the other pods alone drew best-effort pods to the
    /// same node (upstream issue 129138).
    fn pre_score(
        &self,
        _state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
        _feasible: &[&NodeInfo],
    ) -> Status {
        if RESOURCES.iter().all(|name| pod.requests.get(name) == 0) {
            Status::skip()
        } else {
            Status::success()
        }
    }

    /// Counts declared requests, not the scoring defaults NodeResourcesFit uses, as upstream
    /// has done since 1.23 so that best-effort pods do not skew the balance. A resource the
    /// node has none of is left out.
    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let fractions: Vec<f64> = RESOURCES
            .iter()
            .filter_map(|name| {
                let (allocatable, requested) =
                    allocatable_and_requested(node, pod, name, RequestsView::Declared)?;
                Some((requested as f64 / allocatable as f64).min(1.0))
            })
            .collect();
        balance_score(&fractions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::framework::testing::{node, node_info, pod, pod_info, snapshot};
    use serde_json::{Value, json};

    /// A pod with one container requesting `requests` (no requests when `null`).
    fn pod_requesting(name: &str, requests: Value) -> Value {
        let resources = if requests.is_null() { json!({}) } else { json!({"requests": requests}) };
        json!({"metadata": {"name": name}, "spec": {"containers": [
            {"name": "c", "image": "busybox", "resources": resources}]}})
    }

    /// A node with this allocatable, running one pod that requests `running`.
    fn node_with(allocatable: Value, running: Value) -> NodeInfo {
        let running = pod(pod_requesting("running", running));
        let node = node(json!({"metadata": {"name": "n"}, "status": {"allocatable": allocatable}}));
        node_info(node, vec![running])
    }

    /// Runs pre-score and score for a pod requesting `requests` on each node; `None` expects
    /// the plugin to skip the pod.
    fn check(requests: Value, nodes: &[NodeInfo], expected: Option<&[i64]>) {
        let pod = pod_info(pod_requesting("p", requests.clone()));
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        let mut state = CycleState::default();
        let status =
            BalancedAllocation.pre_score(&mut state, &pod, &snapshot(nodes.to_vec()), &feasible);
        let Some(expected) = expected else {
            assert_eq!(status.code, Code::Skip, "{requests}");
            return;
        };
        assert!(status.is_success(), "{requests}: {status:?}");
        let scores: Vec<i64> =
            nodes.iter().map(|node| BalancedAllocation.score(&state, &pod, node)).collect();
        assert_eq!(scores, expected, "{requests}");
    }

    #[test]
    fn scores() {
        let pod = json!({"cpu": "1", "memory": "1000Mi"});
        let nodes = [
            // cpu 2/4, memory 2000/8000: 1 - 0.125.
            node_with(json!({"cpu": "4", "memory": "8000Mi"}), pod.clone()),
            // cpu 1/4, memory 1000/4000 (a best-effort pod counts for nothing): balanced.
            node_with(json!({"cpu": "4", "memory": "4000Mi"}), Value::Null),
            // cpu 2/2, memory 2000/16000: 1 - 0.4375.
            node_with(json!({"cpu": "2", "memory": "16000Mi"}), pod.clone()),
            // cpu 2/1 is capped at 1, memory 2000/2000: balanced.
            node_with(json!({"cpu": "1", "memory": "2000Mi"}), pod.clone()),
            // No memory to balance against: nothing is unbalanced.
            node_with(json!({"cpu": "4"}), Value::Null),
        ];
        check(pod, &nodes, Some(&[87, 100, 56, 100, 100]));
        // Only CPU requested: cpu 1/4 against memory 0/4000.
        check(json!({"cpu": "1"}), &nodes[1..2], Some(&[87]));
    }

    #[test]
    fn best_effort_pods_are_skipped() {
        let nodes = [node_with(json!({"cpu": "4", "memory": "4000Mi"}), Value::Null)];
        check(Value::Null, &nodes, None);
        check(json!({"ephemeral-storage": "1Gi"}), &nodes, None);
    }

    #[test]
    fn deviation_of_more_than_two_resources() {
        assert_eq!(balance_score(&[0.5]), 100);
        assert_eq!(balance_score(&[0.0, 0.5, 1.0]), 59);
    }
}
