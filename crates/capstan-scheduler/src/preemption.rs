//! Preemption (upstream's DefaultPreemption PostFilter): when a pod fits no node, find a node
//! where evicting pods of lower priority would make it fit, choosing the victims so that as
//! few PodDisruptionBudgets as possible are violated and as little as possible is evicted.
//! Pure: the caller deletes the victims and records the nomination.

use crate::framework::{CycleState, NodeInfo, PodInfo, Snapshot, Status, selectors};
use crate::schedule::{FitError, Profile, reasons_histogram, run_filters_with_nominated_pods};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use std::cmp::Reverse;
use std::collections::BTreeMap;

/// A node where preemption makes the pod fit, and who must go.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: String,
    /// The pods to evict, most important first.
    pub victims: Vec<PodInfo>,
    /// How many victims' eviction violates a PodDisruptionBudget.
    pub pdb_violations: usize,
}

/// What preemption decided for a pod.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Evict the victims on the node and nominate the pod there.
    Preempt(Candidate),
    /// The pod may not preempt (its policy is `Never`, or an earlier preemption for it is
    /// still under way): the message says why.
    NotEligible(String),
    /// No node would fit even after evicting: the message is the "preemption: …" part of the
    /// FailedScheduling message.
    NoCandidate(String),
}

/// Looks for a preemption that makes `pod` fit. `state` is the pod's cycle state after its
/// pre-filters; `fit_error` says which nodes rejected it and how.
pub fn preempt(
    profile: &Profile,
    state: &CycleState,
    pod: &PodInfo,
    snapshot: &Snapshot,
    fit_error: &FitError,
) -> Outcome {
    if let Some(reason) = not_eligible(pod, snapshot) {
        return Outcome::NotEligible(reason);
    }
    let helpful = fit_error.nodes_preemption_may_help();
    let mut statuses: BTreeMap<String, Status> = BTreeMap::new();
    let mut candidates = Vec::new();
    for node in &snapshot.nodes {
        if !helpful.contains(node.name()) {
            statuses.insert(
                node.name().to_owned(),
                Status::unresolvable("Preemption is not helpful for scheduling"),
            );
            continue;
        }
        match select_victims(profile, state, pod, node, snapshot) {
            Some(candidate) => candidates.push(candidate),
            None => {
                statuses.insert(
                    node.name().to_owned(),
                    Status::unschedulable("No preemption victims found for incoming pod"),
                );
            }
        }
    }
    match pick_candidate(candidates) {
        Some(candidate) => Outcome::Preempt(candidate),
        None => Outcome::NoCandidate(format!(
            "preemption: 0/{} nodes are available: {}.",
            snapshot.nodes.len(),
            reasons_histogram(statuses.values())
        )),
    }
}

/// Why the pod may not preempt now, if it may not.
fn not_eligible(pod: &PodInfo, snapshot: &Snapshot) -> Option<String> {
    let spec = pod.pod.spec.as_ref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Some("not eligible due to preemptionPolicy=Never.".to_owned());
    }
    // A pod already nominated to a node where lower-priority pods are still terminating waits
    // for them instead of evicting more.
    let nominated = pod.pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref());
    if let Some(node) = nominated.and_then(|name| snapshot.node(name)) {
        let terminating = node.pods.iter().any(|other| {
            other.pod.metadata.deletion_timestamp.is_some() && other.priority() < pod.priority()
        });
        if terminating {
            return Some("not eligible due to a terminating pod on the nominated node.".to_owned());
        }
    }
    None
}

/// The victims that make `pod` fit on `node`, or `None` when evicting every lower-priority
/// pod would not be enough. Starts from removing all of them, then gives back (reprieves) as
/// many as still let the pod fit, most important first — PDB-protected ones before others.
fn select_victims(
    profile: &Profile,
    state: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
    snapshot: &Snapshot,
) -> Option<Candidate> {
    let mut trial = node.clone();
    let mut trial_state = state.clone();
    let mut lower: Vec<PodInfo> =
        node.pods.iter().filter(|other| other.priority() < pod.priority()).cloned().collect();
    if lower.is_empty() {
        return None;
    }
    for victim in &lower {
        trial.remove_pod(victim.uid());
        for plugin in &profile.plugins {
            plugin.remove_pod(&mut trial_state, pod, victim, &trial, snapshot);
        }
    }
    if !run_filters_with_nominated_pods(profile, &trial_state, pod, &trial, snapshot).is_success() {
        return None;
    }
    lower.sort_by(more_important);
    let (violating, respecting) = split_by_pdb(lower, &snapshot.pdbs);
    let mut victims = Vec::new();
    let mut pdb_violations = 0;
    for (group, violates) in [(violating, true), (respecting, false)] {
        for candidate in group {
            trial.add_pod(candidate.clone());
            for plugin in &profile.plugins {
                plugin.add_pod(&mut trial_state, pod, &candidate, &trial, snapshot);
            }
            if run_filters_with_nominated_pods(profile, &trial_state, pod, &trial, snapshot)
                .is_success()
            {
                continue;
            }
            trial.remove_pod(candidate.uid());
            for plugin in &profile.plugins {
                plugin.remove_pod(&mut trial_state, pod, &candidate, &trial, snapshot);
            }
            pdb_violations += usize::from(violates);
            victims.push(candidate);
        }
    }
    victims.sort_by(more_important);
    Some(Candidate { node: node.name().to_owned(), victims, pdb_violations })
}

/// Higher priority first, then the one that started earlier (upstream's `MoreImportantPod`).
fn more_important(a: &PodInfo, b: &PodInfo) -> std::cmp::Ordering {
    b.priority().cmp(&a.priority()).then_with(|| start_time(a).cmp(&start_time(b)))
}

fn start_time(pod: &PodInfo) -> Option<String> {
    let status = pod.pod.status.as_ref()?;
    status.start_time.as_ref().map(|time| time.0.to_string())
}

/// Splits pods (already ordered) into those whose eviction would violate a PDB and the rest,
/// spending each budget's allowed disruptions as it goes.
fn split_by_pdb(
    pods: Vec<PodInfo>,
    pdbs: &[std::sync::Arc<PodDisruptionBudget>],
) -> (Vec<PodInfo>, Vec<PodInfo>) {
    let mut allowed: Vec<i32> = pdbs
        .iter()
        .map(|pdb| pdb.status.as_ref().map_or(0, |status| status.disruptions_allowed))
        .collect();
    let mut violating = Vec::new();
    let mut respecting = Vec::new();
    for pod in pods {
        let mut violates = false;
        for (pdb, allowed) in pdbs.iter().zip(allowed.iter_mut()) {
            if pdb.metadata.namespace.as_deref() != Some(pod.namespace()) {
                continue;
            }
            let selector = pdb.spec.as_ref().and_then(|spec| spec.selector.as_ref());
            let selector = selectors::label_selector(selector);
            // policy/v1: an empty selector matches every pod of the namespace.
            if !selectors::selector_matches(selector.as_ref(), pod.labels()) {
                continue;
            }
            let already_disrupted = pdb
                .status
                .as_ref()
                .and_then(|status| status.disrupted_pods.as_ref())
                .is_some_and(|disrupted| disrupted.contains_key(pod.name()));
            if already_disrupted {
                continue;
            }
            *allowed -= 1;
            if *allowed < 0 {
                violates = true;
            }
        }
        if violates { violating.push(pod) } else { respecting.push(pod) }
    }
    (violating, respecting)
}

/// The best candidate by upstream's order: fewest PDB violations, then the lowest
/// highest-priority victim, then the smallest sum of priorities, then the fewest victims,
/// then the latest start among the most important victims.
fn pick_candidate(candidates: Vec<Candidate>) -> Option<Candidate> {
    candidates.into_iter().min_by_key(|candidate| {
        let highest = candidate.victims.first().map_or(i32::MIN, PodInfo::priority);
        // Priorities may be negative: offset them so the sum compares as upstream's does.
        let sum: i64 = candidate
            .victims
            .iter()
            .map(|v| i64::from(v.priority()) + i64::from(i32::MAX) + 1)
            .sum();
        let earliest_start = candidate
            .victims
            .iter()
            .filter(|v| v.priority() == highest)
            .filter_map(start_time)
            .min();
        (candidate.pdb_violations, highest, sum, candidate.victims.len(), Reverse(earliest_start))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testing::{node_info, pod, pod_info, simple_node, snapshot};
    use crate::framework::{Code, Plugin};
    use serde_json::{Value, json};
    use std::sync::Arc;

    /// A filter that admits a pod where the other pods' requested CPU leaves room: enough to
    /// test the victim search without the real plugins.
    #[derive(Debug)]
    struct CpuFit;

    impl Plugin for CpuFit {
        fn name(&self) -> &'static str {
            "CpuFit"
        }

        fn filters(&self) -> bool {
            true
        }

        fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
            if node.requested.milli_cpu + pod.requests.milli_cpu > node.allocatable.milli_cpu {
                Status::unschedulable("Insufficient cpu")
            } else {
                Status::success()
            }
        }
    }

    fn profile() -> Profile {
        Profile {
            scheduler_name: "test".into(),
            plugins: vec![Box::new(CpuFit)],
            percentage_of_nodes_to_score: 0,
        }
    }

    fn running(
        name: &str,
        priority: i32,
        cpu: &str,
        labels: Value,
    ) -> Arc<k8s_openapi::api::core::v1::Pod> {
        pod(json!({"metadata": {"name": name, "labels": labels}, "spec": {"priority": priority,
            "containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu}}}]}}))
    }

    fn preemptor(priority: i32, cpu: &str) -> PodInfo {
        pod_info(json!({"metadata": {"name": "preemptor"}, "spec": {"priority": priority,
            "containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu}}}]}}))
    }

    fn fit_error(snapshot: &Snapshot) -> FitError {
        FitError {
            num_all_nodes: snapshot.nodes.len(),
            node_statuses: snapshot
                .nodes
                .iter()
                .map(|n| {
                    (
                        n.name().to_owned(),
                        Status { plugin: "CpuFit", ..Status::unschedulable("Insufficient cpu") },
                    )
                })
                .collect(),
            ..FitError::default()
        }
    }

    fn check(snapshot: Snapshot, pod: PodInfo, expected: Result<(&str, &[&str]), &str>) {
        let outcome =
            preempt(&profile(), &CycleState::default(), &pod, &snapshot, &fit_error(&snapshot));
        match (outcome, expected) {
            (Outcome::Preempt(candidate), Ok((node, victims))) => {
                assert_eq!(candidate.node, node);
                let names: Vec<&str> = candidate.victims.iter().map(PodInfo::name).collect();
                assert_eq!(names, victims);
            }
            (Outcome::NoCandidate(message) | Outcome::NotEligible(message), Err(expected)) => {
                assert_eq!(message, expected)
            }
            (outcome, expected) => panic!("got {outcome:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn evicts_the_fewest_lowest_priority_pods() {
        let n1 = node_info(
            simple_node("n1", json!({}), "2", "1Gi"),
            vec![running("low-a", 1, "1", json!({})), running("low-b", 2, "1", json!({}))],
        );
        let n2 = node_info(
            simple_node("n2", json!({}), "2", "1Gi"),
            vec![running("high", 100, "2", json!({}))],
        );
        // Only n1 has lower-priority pods; one of them is enough, and the lower one goes.
        check(snapshot(vec![n1, n2]), preemptor(50, "1"), Ok(("n1", &["low-a"])));
    }

    #[test]
    fn prefers_the_node_whose_victims_matter_least() {
        let n1 = node_info(
            simple_node("n1", json!({}), "1", "1Gi"),
            vec![running("mid", 20, "1", json!({}))],
        );
        let n2 = node_info(
            simple_node("n2", json!({}), "1", "1Gi"),
            vec![running("low", 10, "1", json!({}))],
        );
        check(snapshot(vec![n1, n2]), preemptor(50, "1"), Ok(("n2", &["low"])));
    }

    #[test]
    fn prefers_victims_without_a_disruption_budget() {
        let n1 = node_info(
            simple_node("n1", json!({}), "1", "1Gi"),
            vec![running("guarded", 1, "1", json!({"app": "db"}))],
        );
        let n2 = node_info(
            simple_node("n2", json!({}), "1", "1Gi"),
            vec![running("free", 5, "1", json!({"app": "web"}))],
        );
        let mut snap = snapshot(vec![n1, n2]);
        snap.pdbs.push(Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "db", "namespace": "default"},
                "spec": {"selector": {"matchLabels": {"app": "db"}}}, "status": {"disruptionsAllowed": 0,
                "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}}))
            .unwrap(),
        ));
        check(snap, preemptor(50, "1"), Ok(("n2", &["free"])));
    }

    #[test]
    fn says_why_nothing_can_be_preempted() {
        let n1 = node_info(
            simple_node("n1", json!({}), "1", "1Gi"),
            vec![running("high", 100, "1", json!({}))],
        );
        check(
            snapshot(vec![n1]),
            preemptor(50, "1"),
            Err(
                "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
            ),
        );
        let n1 = node_info(
            simple_node("n1", json!({}), "1", "1Gi"),
            vec![running("low", 1, "1", json!({}))],
        );
        let mut never = preemptor(50, "1");
        let mut pod = (*never.pod).clone();
        pod.spec.as_mut().unwrap().preemption_policy = Some("Never".into());
        never = PodInfo::new(Arc::new(pod));
        check(snapshot(vec![n1]), never, Err("not eligible due to preemptionPolicy=Never."));
    }

    #[test]
    fn unresolvable_nodes_are_not_tried() {
        let n1 = node_info(
            simple_node("n1", json!({}), "1", "1Gi"),
            vec![running("low", 1, "1", json!({}))],
        );
        let snap = snapshot(vec![n1]);
        let mut error = fit_error(&snap);
        error.node_statuses.values_mut().for_each(|s| s.code = Code::UnschedulableAndUnresolvable);
        match preempt(&profile(), &CycleState::default(), &preemptor(50, "1"), &snap, &error) {
            Outcome::NoCandidate(message) => {
                assert_eq!(
                    message,
                    "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
