//! Which pods go first when there are too many: upstream's `getPodsToDelete` and the order
//! of `ActivePodsWithRanks` (with pod deletion cost and logarithmic scale-down, both on by
//! default in v1.33). Pods that cost least to lose come first: unassigned before assigned,
//! Pending before Unknown before Running, not ready before ready, lower deletion cost first,
//! more pods of the same family on their node first, ready for less time first, more
//! restarts first, newer first.

use super::pod;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

/// The annotation that tells controllers which pods to delete first (lower first).
const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Picks `count` pods of `candidates` to delete. `related` are the pods of every owner that
/// shares this owner's controller (a Deployment's ReplicaSets); a pod on a node crowded with
/// them goes first. `now` places creation and ready times on a logarithmic scale.
pub(crate) fn pods_to_delete(
    candidates: &[Arc<Pod>],
    related: &[Arc<Pod>],
    count: usize,
    now: Timestamp,
) -> Vec<Arc<Pod>> {
    // Deleting every candidate needs no order.
    if count >= candidates.len() {
        return candidates.to_vec();
    }
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for pod in related.iter().filter(|pod| pod::is_active(pod)) {
        *on_node.entry(node_name(pod)).or_default() += 1;
    }
    let ranked: Vec<Ranked<'_>> = candidates
        .iter()
        .map(|pod| Ranked { pod, colocated: on_node.get(node_name(pod)).copied().unwrap_or(0) })
        .collect();
    let sorted = merge_sort(ranked, &|a, b| deletion_order(a, b, now) == Ordering::Less);
    sorted.into_iter().take(count).map(|ranked| Arc::clone(ranked.pod)).collect()
}

/// A candidate with the number of related active pods on its node.
#[derive(Debug, Clone, Copy)]
struct Ranked<'a> {
    pod: &'a Arc<Pod>,
    colocated: usize,
}

fn node_name(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()).unwrap_or_default()
}

/// Pending, then Unknown, then Running; other phases count as Pending, as upstream's lookup
/// of a missing key gives 0.
fn phase_ordinal(pod: &Pod) -> u8 {
    match pod::phase(pod) {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

/// The pod's deletion cost; a missing or malformed annotation counts as 0.
fn deletion_cost(pod: &Pod) -> i32 {
    let annotations = pod.metadata.annotations.as_ref();
    annotations.and_then(|a| a.get(DELETION_COST)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The highest restart count of the pod's regular containers, then of its sidecars (init
/// containers that restart always).
fn max_restarts(pod: &Pod) -> (i32, i32) {
    let status = pod.status.as_ref();
    let regular = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    let sidecars: Vec<&str> = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.init_containers.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| c.name.as_str())
        .collect();
    let sidecar = status
        .and_then(|s| s.init_container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| sidecars.contains(&c.name.as_str()))
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    (regular, sidecar)
}

fn creation(pod: &Pod) -> Option<Timestamp> {
    pod.metadata.creation_timestamp.as_ref().map(|time| time.0)
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

/// Whether `a` is later than `b`, a missing time counting as the latest of all.
fn later_or_missing(a: Option<Timestamp>, b: Option<Timestamp>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a > b,
        (a, _) => a.is_none(),
    }
}

/// The base-2 logarithm of how long ago `time` was, in nanoseconds (-1 for the future).
fn log_age(time: Timestamp, now: Timestamp) -> i64 {
    let nanos = now.duration_since(time).as_nanos();
    if nanos <= 0 { -1 } else { i64::from(nanos.ilog2()) }
}

/// Upstream's comparison of two times that differ: on a logarithmic scale of age when both
/// are known (younger first), the uid breaking ties within one step of the scale.
fn compare_times(
    a: (Option<Timestamp>, &Pod),
    b: (Option<Timestamp>, &Pod),
    now: Timestamp,
) -> bool {
    match (a.0, b.0) {
        (Some(time_a), Some(time_b)) => match log_age(time_a, now).cmp(&log_age(time_b, now)) {
            Ordering::Equal => uid(a.1) < uid(b.1),
            order => order == Ordering::Less,
        },
        _ => later_or_missing(a.0, b.0),
    }
}

/// Upstream's `ActivePodsWithRanks.Less` as an ordering: `Less` when `a` should be deleted
/// before `b`.
fn deletion_order(a: &Ranked<'_>, b: &Ranked<'_>, now: Timestamp) -> Ordering {
    let less = |a_first: bool| if a_first { Ordering::Less } else { Ordering::Greater };
    let (pa, pb) = (a.pod.as_ref(), b.pod.as_ref());
    // 1. Unassigned before assigned.
    let (node_a, node_b) = (node_name(pa), node_name(pb));
    if node_a != node_b && (node_a.is_empty() || node_b.is_empty()) {
        return less(node_a.is_empty());
    }
    // 2. Pending, Unknown, Running.
    if phase_ordinal(pa) != phase_ordinal(pb) {
        return less(phase_ordinal(pa) < phase_ordinal(pb));
    }
    // 3. Not ready before ready.
    let (ready_a, ready_b) = (pod::is_ready(pa), pod::is_ready(pb));
    if ready_a != ready_b {
        return less(!ready_a);
    }
    // 4. Lower deletion cost first.
    if deletion_cost(pa) != deletion_cost(pb) {
        return less(deletion_cost(pa) < deletion_cost(pb));
    }
    // 5. More related pods on the same node first.
    if a.colocated != b.colocated {
        return less(a.colocated > b.colocated);
    }
    // 6. Ready for less time first.
    if ready_a && ready_b {
        let (since_a, since_b) = (pod::ready_since(pa), pod::ready_since(pb));
        if since_a != since_b {
            return less(compare_times((since_a, pa), (since_b, pb), now));
        }
    }
    // 7. More restarts first.
    if max_restarts(pa) != max_restarts(pb) {
        return less(max_restarts(pa) > max_restarts(pb));
    }
    // 8. Newer first.
    let (created_a, created_b) = (creation(pa), creation(pb));
    if created_a != created_b {
        return less(compare_times((created_a, pa), (created_b, pb), now));
    }
    Ordering::Equal
}

/// A stable merge sort by `less`. The order above is not always transitive (the uid breaks
/// ties only between times that differ), and the standard library's sorts may panic on such
/// orders; merging never does.
fn merge_sort<T: Copy>(items: Vec<T>, less: &impl Fn(&T, &T) -> bool) -> Vec<T> {
    if items.len() <= 1 {
        return items;
    }
    let mut left = items;
    let right = left.split_off(left.len() / 2);
    let (left, right) = (merge_sort(left, less), merge_sort(right, less));
    let mut merged = Vec::with_capacity(left.len() + right.len());
    let (mut i, mut j) = (0, 0);
    while i < left.len() && j < right.len() {
        if less(&right[j], &left[i]) {
            merged.push(right[j]);
            j += 1;
        } else {
            merged.push(left[i]);
            i += 1;
        }
    }
    merged.extend_from_slice(&left[i..]);
    merged.extend_from_slice(&right[j..]);
    merged
}

#[cfg(test)]
mod tests {
    use super::super::pod::tests::{at, pod};
    use super::*;
    use serde_json::{Value, json};

    const NOW: &str = "2025-01-01T12:00:00Z";

    /// A pod named `name`, created `age` seconds before NOW, with `extra` merged in (the
    /// top-level keys `spec`, `status` and `annotations`).
    fn candidate(name: &str, age: i64, extra: Value) -> Arc<Pod> {
        let created = at(NOW).checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(age));
        let mut value = json!({
            "metadata": {"name": name, "uid": format!("uid-{name}"),
                         "creationTimestamp": created.unwrap().to_string()},
            "spec": {"containers": []},
        });
        if let Some(annotations) = extra.get("annotations") {
            value["metadata"]["annotations"] = annotations.clone();
        }
        for key in ["spec", "status"] {
            if let Some(part) = extra.get(key) {
                for (field, v) in part.as_object().unwrap() {
                    value[key][field] = v.clone();
                }
            }
        }
        Arc::new(pod(value))
    }

    /// A Running pod on `node`, ready since `ready_age` seconds before NOW.
    fn running(node: &str, ready_age: i64) -> Value {
        let since = at(NOW).checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(ready_age));
        json!({"spec": {"nodeName": node}, "status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": since.unwrap().to_string()}]}})
    }

    /// Deleting `count` of `candidates` (and `related` on nodes) picks `expected`, in order.
    fn check(candidates: &[Arc<Pod>], related: &[Arc<Pod>], count: usize, expected: &[&str]) {
        let chosen = pods_to_delete(candidates, related, count, at(NOW));
        let names: Vec<&str> =
            chosen.iter().map(|pod| pod.metadata.name.as_deref().unwrap()).collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn every_rule_in_turn() {
        let mut restarted = running("n1", 1000);
        restarted["status"]["containerStatuses"] = json!([
            {"name": "c", "restartCount": 3, "ready": true, "image": "i", "imageID": ""}]);
        /// Each case deletes all but one of its candidates.
        struct Case {
            rule: &'static str,
            candidates: Vec<Arc<Pod>>,
            expected: &'static [&'static str],
        }
        let case = |rule, candidates, expected| Case { rule, candidates, expected };
        let cases = [
            case(
                "unassigned before assigned",
                vec![
                    candidate("assigned", 10, json!({"spec": {"nodeName": "n1"}})),
                    candidate("unassigned", 10, json!({})),
                ],
                &["unassigned"],
            ),
            case(
                "pending before unknown before running",
                vec![
                    candidate("running", 10, running("n1", 5)),
                    candidate(
                        "unknown",
                        10,
                        json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Unknown"}}),
                    ),
                    candidate(
                        "pending",
                        10,
                        json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Pending"}}),
                    ),
                ],
                &["pending", "unknown"],
            ),
            case(
                "not ready before ready",
                vec![
                    candidate("ready", 10, running("n1", 5)),
                    candidate(
                        "not-ready",
                        10,
                        json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}),
                    ),
                ],
                &["not-ready"],
            ),
            case(
                "lower deletion cost first, a malformed cost counting as 0",
                vec![
                    candidate("cost-5", 10, json!({"annotations": {DELETION_COST: "5"}})),
                    candidate("cost-bad", 10, json!({"annotations": {DELETION_COST: "x"}})),
                    candidate("cost-minus", 10, json!({"annotations": {DELETION_COST: "-1"}})),
                ],
                &["cost-minus", "cost-bad"],
            ),
            case(
                "ready for less time first, on a logarithmic scale",
                vec![
                    candidate("ready-long", 5000, running("n1", 4000)),
                    candidate("ready-short", 5000, running("n1", 60)),
                ],
                &["ready-short"],
            ),
            case(
                "more restarts first",
                vec![
                    candidate("calm", 1000, running("n1", 1000)),
                    candidate("restarted", 1000, restarted.clone()),
                ],
                &["restarted"],
            ),
            case(
                "newer first",
                vec![candidate("old", 100_000, json!({})), candidate("new", 100, json!({}))],
                &["new"],
            ),
        ];
        for Case { rule, candidates, expected } in cases {
            eprintln!("{rule}");
            check(&candidates, &[], candidates.len() - 1, expected);
        }
    }

    #[test]
    fn crowded_nodes_first() {
        let a = candidate("a", 100, running("n1", 50));
        let b = candidate("b", 100, running("n2", 50));
        let related = [
            Arc::clone(&a),
            Arc::clone(&b),
            candidate("sibling", 100, running("n2", 50)),
            // Finished pods do not crowd a node.
            candidate(
                "done-1",
                100,
                json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Succeeded"}}),
            ),
            candidate(
                "done-2",
                100,
                json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Failed"}}),
            ),
        ];
        check(&[Arc::clone(&a), Arc::clone(&b)], &related, 1, &["b"]);
        // Without related pods they are equal in every respect: the given order stands.
        check(&[Arc::clone(&b), Arc::clone(&a)], &[], 1, &["b"]);
    }

    #[test]
    fn times_within_one_step_of_the_scale_tie_on_the_uid() {
        // 600 s and 1000 s ago are in the same power-of-two bucket of nanoseconds (2^39 ns
        // is about 550 s, 2^40 ns about 1100 s), so the smaller uid goes first, older or not.
        let older = candidate("a-older", 1000, json!({}));
        let newer = candidate("z-newer", 600, json!({}));
        check(&[Arc::clone(&newer), Arc::clone(&older)], &[], 1, &["a-older"]);
        // A missing creation time counts as the newest.
        let mut unknown = (*candidate("unknown", 0, json!({}))).clone();
        unknown.metadata.creation_timestamp = None;
        check(&[older, Arc::new(unknown)], &[], 1, &["unknown"]);
    }

    #[test]
    fn deleting_all_keeps_the_given_order() {
        let pods = [candidate("x", 1, running("n1", 1)), candidate("y", 1, json!({}))];
        check(&pods, &[], 2, &["x", "y"]);
        check(&pods, &[], 5, &["x", "y"]);
        check(&pods, &[], 0, &[]);
    }
}
