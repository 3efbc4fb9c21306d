//! What the Job controller reads off a pod: active, terminating, failed, ready, when it
//! finished, its tracking finalizer, and which active pods to remove first.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::jiff::Timestamp;
use std::cmp::Ordering;

/// The finalizer that keeps a Job's pod until the controller has counted it.
pub(crate) const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";

pub(crate) fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

pub(crate) fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

fn terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Running or about to: not finished and not being deleted.
pub(crate) fn is_active(pod: &Pod) -> bool {
    !terminal(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// Being deleted before it finished.
pub(crate) fn is_terminating(pod: &Pod) -> bool {
    !terminal(pod) && pod.metadata.deletion_timestamp.is_some()
}

/// Failed, or — unless only failed pods are replaced — deleted before it succeeded: a pod
/// that never gets to report Failed (its node vanished) still counts as a failure.
pub(crate) fn is_failed(pod: &Pod, only_replace_failed: bool) -> bool {
    match phase(pod) {
        "Failed" => true,
        "Succeeded" => false,
        _ => !only_replace_failed && pod.metadata.deletion_timestamp.is_some(),
    }
}

pub(crate) fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.metadata.finalizers.as_ref().is_some_and(|f| f.iter().any(|f| f == TRACKING_FINALIZER))
}

fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(ready.last_transition_time.as_ref().map(|t| t.0))
}

pub(crate) use crate::pod_conditions::is_ready;

/// When the pod finished: its last container's exit, else when it stopped being ready, else
/// its deletion (minus the grace period), else its creation.
pub(crate) fn finish_time(pod: &Pod) -> Timestamp {
    let status = pod.status.as_ref();
    let containers: &[ContainerStatus] =
        status.and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
    let exits: Option<Vec<Timestamp>> = containers
        .iter()
        .map(|c| Some(c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref()?.0))
        .collect();
    if let Some(latest) = exits.and_then(|exits| exits.into_iter().max()) {
        return latest;
    }
    let not_ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready" && c.status == "False"))
        .and_then(|c| c.last_transition_time.as_ref());
    if let Some(time) = not_ready {
        return time.0;
    }
    if let Some(deleted) = &pod.metadata.deletion_timestamp {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
        return deleted
            .0
            .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(grace))
            .unwrap_or(deleted.0);
    }
    pod.metadata.creation_timestamp.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0)
}

/// Upstream's order of active pods for removal (`controller.ActivePods`): unscheduled before
/// scheduled, pending before unknown before running, not ready before ready, ready for less
/// time before ready for longer, more restarts first, newer before older.
pub(crate) fn removal_order(a: &Pod, b: &Pod) -> Ordering {
    let scheduled =
        |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some_and(|n| !n.is_empty());
    let phase_rank = |p: &Pod| match phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    };
    let restarts = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map_or(0, |c| c.iter().map(|c| c.restart_count).max().unwrap_or(0))
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    scheduled(a)
        .cmp(&scheduled(b))
        .then(phase_rank(a).cmp(&phase_rank(b)))
        .then(is_ready(a).cmp(&is_ready(b)))
        .then_with(|| match (ready_since(a).flatten(), ready_since(b).flatten()) {
            (Some(a), Some(b)) => b.cmp(&a),
            _ => Ordering::Equal,
        })
        .then(restarts(b).cmp(&restarts(a)))
        .then(created(b).cmp(&created(a)))
}

/// The restarts of the containers of running and pending pods, which count against
/// `backoffLimit` when pods restart their containers (`restartPolicy: OnFailure`).
pub(crate) fn restarts_of_live_pods<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> i32 {
    pods.into_iter()
        .filter(|p| matches!(phase(p), "Running" | "Pending"))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            let init = s.init_container_statuses.iter().flatten();
            init.chain(s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn pod(value: Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn states_of_pods() {
        let running = pod(json!({"metadata": {"name": "r"}, "status": {"phase": "Running"}}));
        let deleting = pod(json!({"metadata": {"name": "d",
            "deletionTimestamp": "2026-01-01T00:00:30Z", "deletionGracePeriodSeconds": 30},
            "status": {"phase": "Running"}}));
        let failed = pod(json!({"metadata": {"name": "f"}, "status": {"phase": "Failed"}}));
        let succeeded = pod(json!({"metadata": {"name": "s"}, "status": {"phase": "Succeeded"}}));
        // (pod, active, terminating, failed, failed when only failed pods are replaced)
        let cases = [
            (&running, true, false, false, false),
            (&deleting, false, true, true, false),
            (&failed, false, false, true, true),
            (&succeeded, false, false, false, false),
        ];
        for (pod, active, terminating, failed, strictly_failed) in cases {
            let name = pod.metadata.name.as_deref().unwrap();
            assert_eq!(is_active(pod), active, "{name}");
            assert_eq!(is_terminating(pod), terminating, "{name}");
            assert_eq!(is_failed(pod, false), failed, "{name}");
            assert_eq!(is_failed(pod, true), strictly_failed, "{name}");
        }
        assert_eq!(finish_time(&deleting).to_string(), "2026-01-01T00:00:00Z");
    }

    #[test]
    fn pods_removed_first_are_the_least_advanced() {
        let make = |name: &str, node: &str, phase: &str, ready: bool, created: &str| {
            pod(json!({"metadata": {"name": name, "creationTimestamp": created},
                "spec": {"containers": [], "nodeName": node},
                "status": {"phase": phase, "conditions": [{"type": "Ready",
                    "status": if ready { "True" } else { "False" }}]}}))
        };
        let mut pods = [
            make("ready-old", "n", "Running", true, "2026-01-01T00:00:00Z"),
            make("ready-new", "n", "Running", true, "2026-01-01T00:00:09Z"),
            make("pending", "n", "Pending", false, "2026-01-01T00:00:00Z"),
            make("unscheduled", "", "Pending", false, "2026-01-01T00:00:00Z"),
            make("running", "n", "Running", false, "2026-01-01T00:00:00Z"),
        ];
        pods.sort_by(removal_order);
        let names: Vec<&str> = pods.iter().map(|p| p.metadata.name.as_deref().unwrap()).collect();
        assert_eq!(names, ["unscheduled", "pending", "running", "ready-new", "ready-old"]);
    }
}
