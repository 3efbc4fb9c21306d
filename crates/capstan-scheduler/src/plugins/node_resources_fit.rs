//! The NodeResourcesFit plugin: a pod fits a node whose allocatable resources, less what the
//! pods already there request, cover the pod's requests; feasible nodes are scored by how
//! much of their resources would be requested with the pod there (least allocated first, by
//! default).

use crate::framework::{
    ClusterEvent, Code, CycleState, MAX_NODE_SCORE, NodeInfo, Plugin, PodInfo, Resource, Snapshot,
    Status,
};

/// The highest score of a RequestedToCapacityRatio shape point (upstream's
/// `MaxCustomPriorityScore`); shape scores are scaled from 0..=10 to 0..=MAX_NODE_SCORE.
const MAX_CUSTOM_PRIORITY_SCORE: i64 = 10;

/// Utilization is measured in percent.
const MAX_UTILIZATION: i64 = 100;

/// A resource the score takes into account, and how much it counts (upstream's
/// `ResourceSpec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceWeight {
    /// The resource's API name: `cpu`, `memory`, `ephemeral-storage`, or an extended one.
    pub name: String,
    pub weight: i64,
}

impl ResourceWeight {
    pub fn new(name: &str, weight: i64) -> ResourceWeight {
        ResourceWeight { name: name.to_owned(), weight }
    }
}

/// One point of a RequestedToCapacityRatio shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtilizationShapePoint {
    /// Percent of the node's allocatable requested, 0..=100.
    pub utilization: i64,
    /// The score at that utilization, 0..=10.
    pub score: i64,
}

/// How feasible nodes are scored (upstream's `ScoringStrategy.type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScoringStrategy {
    /// Favors nodes with the most resources left: pods spread out. The default.
    LeastAllocated,
    /// Favors nodes with the fewest resources left: pods are packed together.
    MostAllocated,
    /// Maps each resource's utilization through a piecewise-linear function given by its
    /// points, in increasing utilization (upstream validates that there is at least one).
    RequestedToCapacityRatio { shape: Vec<UtilizationShapePoint> },
}

/// Upstream's `NodeResourcesFit` plugin, configured as its `NodeResourcesFitArgs` would be.
#[derive(Debug, Clone)]
pub struct NodeResourcesFit {
    pub scoring_strategy: ScoringStrategy,
    /// The resources the score looks at, with their weights.
    pub resources: Vec<ResourceWeight>,
}

impl Default for NodeResourcesFit {
    /// The default profile's configuration: LeastAllocated over CPU and memory, weight 1 each.
    fn default() -> Self {
        NodeResourcesFit {
            scoring_strategy: ScoringStrategy::LeastAllocated,
            resources: vec![ResourceWeight::new("cpu", 1), ResourceWeight::new("memory", 1)],
        }
    }
}

/// The pod's requests, computed once per cycle for the filter.
#[derive(Debug, Clone)]
struct PodRequests(Resource);

/// Which sums the resource scores count for CPU and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RequestsView {
    /// What pods declare (BalancedAllocation).
    Declared,
    /// What pods declare, with a default for a container that declares no CPU or memory, so
    /// that best-effort pods still weigh on a node (NodeResourcesFit's scores).
    NonZero,
}

/// A node's allocatable amount of a resource and what would be requested of it with `pod`
/// there, as the resource scores see them; `None` when the resource is left out of the score:
/// the node has none of it, or it is an extended resource the pod does not ask for.
pub(super) fn allocatable_and_requested(
    node: &NodeInfo,
    pod: &PodInfo,
    name: &str,
    view: RequestsView,
) -> Option<(i64, i64)> {
    let (node_requested, pod_requested) = match view {
        RequestsView::Declared => (&node.requested, &pod.requests),
        RequestsView::NonZero => (&node.non_zero_requested, &pod.non_zero_requests),
    };
    let pod_request = pod_requested.get(name);
    let (allocatable, requested) = match name {
        "cpu" | "memory" => (node.allocatable.get(name), node_requested.get(name) + pod_request),
        // Storage and extended resources have no defaults: the declared sums count.
        "ephemeral-storage" => (node.allocatable.get(name), node.requested.get(name) + pod_request),
        _ if pod_request == 0 => return None,
        _ => {
            let allocatable = *node.allocatable.scalar.get(name)?;
            (allocatable, node.requested.get(name) + pod_request)
        }
    };
    (allocatable != 0).then_some((allocatable, requested))
}

/// What of the pod's requests the node cannot hold, in upstream's words and order: the pod
/// count, CPU, memory, ephemeral storage, then extended resources (by name).
fn insufficient_resources(request: &Resource, node: &NodeInfo) -> Vec<String> {
    let mut reasons = Vec::new();
    if node.pods.len() as i64 + 1 > node.allocatable.allowed_pod_number {
        reasons.push("Too many pods".to_owned());
    }
    let requests_nothing = request.milli_cpu == 0
        && request.memory == 0
        && request.ephemeral_storage == 0
        && request.scalar.is_empty();
    if requests_nothing {
        return reasons;
    }
    let free = |name: &str| node.allocatable.get(name) - node.requested.get(name);
    for (name, wanted) in [
        ("cpu", request.milli_cpu),
        ("memory", request.memory),
        ("ephemeral-storage", request.ephemeral_storage),
    ]
    .into_iter()
    .chain(request.scalar.iter().map(|(name, wanted)| (name.as_str(), *wanted)))
    {
        // A resource the node lacks entirely has a free amount of zero: the pod is
        // unschedulable there like anywhere short of it, as upstream reports it.
        if wanted > 0 && wanted > free(name) {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    reasons
}

/// One resource of a node as the score sees it.
#[derive(Debug, Clone, Copy)]
struct ScoredResource {
    weight: i64,
    /// What the node's pods and the pod being scheduled request.
    requested: i64,
    /// Never zero: resources the node has none of are left out of the score.
    allocatable: i64,
}

impl NodeResourcesFit {
    /// The node's score under the scoring strategy.
    fn score_resources(&self, resources: &[ScoredResource]) -> i64 {
        match &self.scoring_strategy {
            ScoringStrategy::LeastAllocated => {
                weighted_average(resources, |requested, allocatable| {
                    if requested > allocatable {
                        0
                    } else {
                        (allocatable - requested) * MAX_NODE_SCORE / allocatable
                    }
                })
            }
            ScoringStrategy::MostAllocated => {
                weighted_average(resources, |requested, allocatable| {
                    // Requests may exceed the allocatable, as default requests are counted.
                    requested.min(allocatable) * MAX_NODE_SCORE / allocatable
                })
            }
            ScoringStrategy::RequestedToCapacityRatio { shape } => {
                requested_to_capacity_ratio(shape, resources)
            }
        }
    }
}

/// The weighted average of the resources' scores by `score(requested, allocatable)`, rounded
/// down.
fn weighted_average(resources: &[ScoredResource], score: impl Fn(i64, i64) -> i64) -> i64 {
    let mut total = 0;
    let mut weights = 0;
    for &ScoredResource { weight, requested, allocatable } in resources {
        total += score(requested, allocatable) * weight;
        weights += weight;
    }
    if weights == 0 { 0 } else { total / weights }
}

/// Upstream's RequestedToCapacityRatio: each resource's utilization is mapped through the
/// shape, and the resources scoring above zero are averaged by weight, rounded to nearest.
fn requested_to_capacity_ratio(
    shape: &[UtilizationShapePoint],
    resources: &[ScoredResource],
) -> i64 {
    let mut total = 0;
    let mut weights = 0;
    for &ScoredResource { weight, requested, allocatable } in resources {
        let utilization = if requested > allocatable {
            MAX_UTILIZATION
        } else {
            requested * MAX_UTILIZATION / allocatable
        };
        let score = broken_linear(shape, utilization);
        // A resource scoring zero does not drag the average down (upstream's rule).
        if score > 0 {
            total += score * weight;
            weights += weight;
        }
    }
    if weights == 0 { 0 } else { (total as f64 / weights as f64).round() as i64 }
}

/// The shape's piecewise-linear function at `utilization`, scaled to 0..=MAX_NODE_SCORE: the
/// first point's score below it, the last point's above it, linear in between.
fn broken_linear(shape: &[UtilizationShapePoint], utilization: i64) -> i64 {
    let scaled =
        |point: &UtilizationShapePoint| point.score * (MAX_NODE_SCORE / MAX_CUSTOM_PRIORITY_SCORE);
    let mut previous: Option<&UtilizationShapePoint> = None;
    for point in shape {
        if utilization <= point.utilization {
            let Some(previous) = previous else { return scaled(point) };
            // The utilization is above the previous point's (or that point would have
            // answered), so the two points' utilizations differ.
            return scaled(previous)
                + (scaled(point) - scaled(previous)) * (utilization - previous.utilization)
                    / (point.utilization - previous.utilization);
        }
        previous = Some(point);
    }
    previous.map_or(0, scaled)
}

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    /// Resources grow on a new or updated node (allocatable) and are freed when an assigned
    /// pod goes away or is resized down.
    fn events(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent::NodeAdd,
            ClusterEvent::NodeUpdate,
            ClusterEvent::AssignedPodDelete,
            ClusterEvent::AssignedPodUpdate,
        ]
    }

    fn filters(&self) -> bool {
        true
    }

    fn scores(&self) -> bool {
        true
    }

    /// Never skips: even a pod that requests nothing takes one of the node's pod slots.
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, _snapshot: &Snapshot) -> Status {
        state.insert(self.name(), PodRequests(pod.requests.clone()));
        Status::success()
    }

    /// Every shortfall is reported, not just the first. Unschedulable rather than
    /// unresolvable even when the node lacks a resource altogether, as in upstream v1.33.
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let PodRequests(request) = match state.require::<PodRequests>(self.name()) {
            Ok(requests) => requests,
            Err(status) => return status,
        };
        let reasons = insufficient_resources(request, node);
        if reasons.is_empty() {
            return Status::success();
        }
        Status { code: Code::Unschedulable, reasons, plugin: "" }
    }

    /// Scores with the non-zero requests, so that pods without requests still count.
    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let resources: Vec<ScoredResource> = self
            .resources
            .iter()
            .filter_map(|resource| {
                let (allocatable, requested) =
                    allocatable_and_requested(node, pod, &resource.name, RequestsView::NonZero)?;
                Some(ScoredResource { weight: resource.weight, requested, allocatable })
            })
            .collect();
        self.score_resources(&resources)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testing::{node, node_info, pod, pod_info, snapshot};
    use serde_json::{Value, json};

    /// A pod with one container requesting `requests` (no requests when `null`).
    fn pod_requesting(name: &str, requests: Value) -> Value {
        let resources = if requests.is_null() { json!({}) } else { json!({"requests": requests}) };
        json!({"metadata": {"name": name}, "spec": {"containers": [
            {"name": "c", "image": "busybox", "resources": resources}]}})
    }

    /// A node with this allocatable and pods requesting each of `pods`.
    fn node_with(allocatable: Value, pods: &[Value]) -> NodeInfo {
        let pods = pods
            .iter()
            .enumerate()
            .map(|(i, requests)| pod(pod_requesting(&format!("running-{i}"), requests.clone())))
            .collect();
        node_info(
            node(json!({"metadata": {"name": "n"}, "status": {"allocatable": allocatable}})),
            pods,
        )
    }

    /// Pre-filters and filters a pod requesting `requests` on a node with `allocatable` that
    /// already runs a pod requesting 1 CPU, 1Gi of memory and 5Gi of ephemeral storage.
    fn check_filter(allocatable: Value, requests: Value, expected: &[&str]) {
        let running = json!({"cpu": "1", "memory": "1Gi", "ephemeral-storage": "5Gi"});
        let node = node_with(allocatable.clone(), &[running]);
        let pod = pod_info(pod_requesting("p", requests.clone()));
        let fit = NodeResourcesFit::default();
        let mut state = CycleState::default();
        let pre_filter = fit.pre_filter(&mut state, &pod, &snapshot(vec![node.clone()]));
        assert!(pre_filter.is_success(), "{requests}: {pre_filter:?}");
        let status = fit.filter(&state, &pod, &node);
        if expected.is_empty() {
            assert!(status.is_success(), "{requests} on {allocatable}: {status:?}");
        } else {
            assert_eq!(status.code, Code::Unschedulable, "{requests} on {allocatable}");
            assert_eq!(status.reasons, expected, "{requests} on {allocatable}");
        }
    }

    #[test]
    fn filter_verdicts() {
        let node = json!({"cpu": "2", "memory": "2Gi", "ephemeral-storage": "10Gi", "pods": "3",
            "example.com/gpu": "1"});
        let full = json!({"cpu": "2", "memory": "2Gi", "pods": "1"});
        check_filter(node.clone(), Value::Null, &[]);
        check_filter(
            node.clone(),
            json!({"cpu": "1", "memory": "1Gi", "ephemeral-storage": "5Gi"}),
            &[],
        );
        check_filter(node.clone(), json!({"cpu": "1001m"}), &["Insufficient cpu"]);
        check_filter(
            node.clone(),
            json!({"cpu": "2", "memory": "2Gi"}),
            &["Insufficient cpu", "Insufficient memory"],
        );
        check_filter(
            node.clone(),
            json!({"ephemeral-storage": "6Gi"}),
            &["Insufficient ephemeral-storage"],
        );
        check_filter(node.clone(), json!({"example.com/gpu": "1"}), &[]);
        check_filter(
            node.clone(),
            json!({"example.com/gpu": "2"}),
            &["Insufficient example.com/gpu"],
        );
        // A resource the node does not offer at all is insufficient, and still Unschedulable.
        check_filter(
            node.clone(),
            json!({"example.com/fpga": "1"}),
            &["Insufficient example.com/fpga"],
        );
        check_filter(
            node,
            json!({"cpu": "3", "example.com/fpga": "1", "example.com/gpu": "2"}),
            &["Insufficient cpu", "Insufficient example.com/fpga", "Insufficient example.com/gpu"],
        );
        // A pod requesting nothing still needs a pod slot.
        check_filter(full.clone(), Value::Null, &["Too many pods"]);
        check_filter(full, json!({"memory": "1536Mi"}), &["Too many pods", "Insufficient memory"]);
    }

    #[test]
    fn filter_without_pre_filter_is_an_error() {
        let node = node_with(json!({"cpu": "1"}), &[]);
        let pod = pod_info(pod_requesting("p", Value::Null));
        let status = NodeResourcesFit::default().filter(&CycleState::default(), &pod, &node);
        assert_eq!(status.code, Code::Error);
    }

    /// Scores a pod requesting `requests` on each node.
    fn check_scores(fit: &NodeResourcesFit, requests: Value, nodes: &[NodeInfo], expected: &[i64]) {
        let pod = pod_info(pod_requesting("p", requests.clone()));
        let scores: Vec<i64> =
            nodes.iter().map(|node| fit.score(&CycleState::default(), &pod, node)).collect();
        assert_eq!(scores, expected, "{:?} for {requests}", fit.scoring_strategy);
    }

    /// Three nodes the scores are tried on: half the CPU and 40% of the memory requested with
    /// the pod; 1/6 of the CPU and 20% of the memory; more than everything.
    fn three_nodes() -> Vec<NodeInfo> {
        let running = json!({"cpu": "1", "memory": "2000Mi"});
        vec![
            node_with(json!({"cpu": "4", "memory": "10000Mi"}), std::slice::from_ref(&running)),
            node_with(json!({"cpu": "6", "memory": "10000Mi"}), &[]),
            node_with(json!({"cpu": "2", "memory": "3000Mi"}), &[running]),
        ]
    }

    fn with_strategy(scoring_strategy: ScoringStrategy) -> NodeResourcesFit {
        NodeResourcesFit { scoring_strategy, ..NodeResourcesFit::default() }
    }

    fn shape(points: &[(i64, i64)]) -> ScoringStrategy {
        let shape = points
            .iter()
            .map(|&(utilization, score)| UtilizationShapePoint { utilization, score })
            .collect();
        ScoringStrategy::RequestedToCapacityRatio { shape }
    }

    #[test]
    fn least_allocated_scores() {
        let fit = NodeResourcesFit::default();
        let requests = json!({"cpu": "1", "memory": "2000Mi"});
        // (50 + 60) / 2; (83 + 80) / 2; nothing left.
        check_scores(&fit, requests, &three_nodes(), &[55, 81, 0]);
        // A pod without requests counts as 100m and 200Mi, and so does a running one:
        // (2900/4000, 7800/10000) on the first node, (5900/6000, 9800/10000) on the second.
        let best_effort_running =
            node_with(json!({"cpu": "4", "memory": "10000Mi"}), &[Value::Null]);
        check_scores(&fit, Value::Null, &three_nodes()[..2], &[75, 98]);
        check_scores(&fit, json!({"cpu": "1", "memory": "2000Mi"}), &[best_effort_running], &[75]);
    }

    #[test]
    fn most_allocated_scores() {
        let fit = with_strategy(ScoringStrategy::MostAllocated);
        // (50 + 40) / 2; (16 + 20) / 2; requests above the allocatable count as full.
        check_scores(&fit, json!({"cpu": "1", "memory": "2000Mi"}), &three_nodes(), &[45, 18, 100]);
    }

    #[test]
    fn requested_to_capacity_ratio_scores() {
        let requests = json!({"cpu": "1", "memory": "2000Mi"});
        // Rising: the utilization itself; (16 + 20) / 2 rounds to 18.
        let packing = with_strategy(shape(&[(0, 0), (100, 10)]));
        check_scores(&packing, requests.clone(), &three_nodes(), &[45, 18, 100]);
        // Falling: 100 minus the utilization, rounded to nearest ((84 + 80) / 2 = 82, where
        // LeastAllocated has 81); on the full node both resources score 0 and are left out.
        let spreading = with_strategy(shape(&[(0, 10), (100, 0)]));
        check_scores(&spreading, requests.clone(), &three_nodes(), &[55, 82, 0]);
        // Flat below 20%, then rising to the top at 60%: cpu 50% → 75, memory 40% → 50,
        // (75 + 50) / 2 = 62.5 rounds to 63; cpu 16% → 0 is left out, memory 20% → 0 too.
        let stepped = with_strategy(shape(&[(20, 0), (60, 10)]));
        check_scores(&stepped, requests, &three_nodes(), &[63, 0, 100]);
    }

    #[test]
    fn weights_and_extended_resources() {
        let fit = NodeResourcesFit {
            resources: vec![
                ResourceWeight::new("cpu", 1),
                ResourceWeight::new("memory", 1),
                ResourceWeight::new("example.com/gpu", 2),
            ],
            ..NodeResourcesFit::default()
        };
        let with_gpus =
            node_with(json!({"cpu": "4", "memory": "10000Mi", "example.com/gpu": "4"}), &[]);
        let without_gpus = node_with(json!({"cpu": "4", "memory": "10000Mi"}), &[]);
        // cpu 75, memory 80, gpu 75 (weight 2): (75 + 80 + 150) / 4 = 76; without GPUs the
        // resource is left out: (75 + 80) / 2 = 77.
        let requests = json!({"cpu": "1", "memory": "2000Mi", "example.com/gpu": "1"});
        check_scores(&fit, requests, &[with_gpus.clone(), without_gpus], &[76, 77]);
        // A pod not asking for GPUs is not scored on them.
        check_scores(&fit, json!({"cpu": "1", "memory": "2000Mi"}), &[with_gpus], &[77]);
    }
}
