//! An owner's status from its pods, as upstream's `calculateStatus`: how many pods it has,
//! how many carry all of the template's labels, are ready, are available; the generation
//! acted on; and the `ReplicaFailure` condition while creating or deleting pods fails.

use super::pod;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The condition type that reports failures to create or delete pods.
const REPLICA_FAILURE: &str = "ReplicaFailure";

/// The status of a ReplicaSet or ReplicationController (both have this shape).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ReplicaStatus {
    pub(crate) replicas: i32,
    pub(crate) fully_labeled_replicas: i32,
    pub(crate) ready_replicas: i32,
    pub(crate) available_replicas: i32,
    pub(crate) observed_generation: i64,
    pub(crate) conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    pub(crate) type_: String,
    pub(crate) status: String,
    pub(crate) reason: String,
    pub(crate) message: String,
    pub(crate) last_transition_time: Option<Timestamp>,
}

/// How the last attempt to create or delete pods went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Outcome<'a> {
    /// Nothing failed (or nothing was attempted).
    Fine,
    /// Creating pods failed with this message.
    CreateFailed(&'a str),
    /// Deleting pods failed with this message.
    DeleteFailed(&'a str),
}

/// What the status is computed from.
#[derive(Debug)]
pub(crate) struct Inputs<'a> {
    /// The owner's active pods.
    pub(crate) pods: &'a [Arc<Pod>],
    pub(crate) template_labels: Option<&'a BTreeMap<String, String>>,
    pub(crate) min_ready_seconds: i32,
    pub(crate) generation: i64,
    pub(crate) previous: &'a ReplicaStatus,
    pub(crate) outcome: Outcome<'a>,
    pub(crate) now: Timestamp,
}

/// The status the owner should have.
pub(crate) fn calculate(inputs: &Inputs<'_>) -> ReplicaStatus {
    let empty = BTreeMap::new();
    let template_labels = inputs.template_labels.unwrap_or(&empty);
    let mut status = inputs.previous.clone();
    let fully_labeled = |pod: &Pod| {
        let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        template_labels.iter().all(|(key, value)| labels.get(key) == Some(value))
    };
    let count = |keep: &dyn Fn(&Pod) -> bool| {
        let n = inputs.pods.iter().filter(|pod| keep(pod)).count();
        i32::try_from(n).unwrap_or(i32::MAX)
    };
    status.replicas = count(&|_| true);
    status.fully_labeled_replicas = count(&fully_labeled);
    status.ready_replicas = count(&pod::is_ready);
    status.available_replicas =
        count(&|pod| pod::is_available(pod, inputs.min_ready_seconds, inputs.now));
    status.observed_generation = inputs.generation;

    let has_failure = status.conditions.iter().any(|c| c.type_ == REPLICA_FAILURE);
    let failure = match inputs.outcome {
        Outcome::Fine => None,
        Outcome::CreateFailed(message) => Some(("FailedCreate", message)),
        Outcome::DeleteFailed(message) => Some(("FailedDelete", message)),
    };
    match failure {
        // As upstream, a failure already reported keeps its first message and time.
        Some((reason, message)) if !has_failure => status.conditions.push(Condition {
            type_: REPLICA_FAILURE.into(),
            status: "True".into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: Some(inputs.now),
        }),
        None if has_failure => status.conditions.retain(|c| c.type_ != REPLICA_FAILURE),
        _ => {}
    }
    status
}

/// When the status must be computed again because a ready pod becomes available: a little
/// after the first of them does (`None` when no pod is waiting for that).
pub(crate) fn next_availability(
    pods: &[Arc<Pod>],
    min_ready_seconds: i32,
    now: Timestamp,
) -> Option<Duration> {
    let first = pods
        .iter()
        .filter(|pod| !pod::is_available(pod, min_ready_seconds, now))
        .filter_map(|pod| pod::available_at(pod, min_ready_seconds))
        .min()?;
    let wait = Duration::try_from(first.duration_since(now)).unwrap_or_default();
    // A second more, so that the pod is available by then whatever the clocks' rounding.
    Some(wait + Duration::from_secs(1))
}

/// The merge patch of the `/status` subresource that writes `status`. Fields the API omits
/// when zero or empty are removed, so that the object reads as upstream's would.
pub(crate) fn patch(status: &ReplicaStatus) -> Value {
    let omit_zero = |n: i32| if n == 0 { Value::Null } else { json!(n) };
    let conditions: Vec<Value> = status
        .conditions
        .iter()
        .map(|c| {
            let mut condition = json!({"type": c.type_, "status": c.status});
            if let Some(time) = c.last_transition_time {
                condition["lastTransitionTime"] = json!(Time(time));
            }
            if !c.reason.is_empty() {
                condition["reason"] = json!(c.reason);
            }
            if !c.message.is_empty() {
                condition["message"] = json!(c.message);
            }
            condition
        })
        .collect();
    json!({"status": {
        "replicas": status.replicas,
        "fullyLabeledReplicas": omit_zero(status.fully_labeled_replicas),
        "readyReplicas": omit_zero(status.ready_replicas),
        "availableReplicas": omit_zero(status.available_replicas),
        "observedGeneration": if status.observed_generation == 0 { Value::Null } else { json!(status.observed_generation) },
        "conditions": if conditions.is_empty() { Value::Null } else { Value::Array(conditions) },
    }})
}

#[cfg(test)]
mod tests {
    use super::super::pod::tests::{at, pod};
    use super::*;

    const NOW: &str = "2025-01-01T00:10:00Z";

    /// A pod with these labels, ready since `ready` (or not ready).
    fn replica(labels: Value, ready: Option<&str>) -> Arc<Pod> {
        let conditions = match ready {
            Some(since) => {
                json!([{"type": "Ready", "status": "True", "lastTransitionTime": since}])
            }
            None => json!([{"type": "Ready", "status": "False"}]),
        };
        Arc::new(pod(json!({"metadata": {"labels": labels},
                            "status": {"phase": "Running", "conditions": conditions}})))
    }

    fn failure(reason: &str, message: &str, time: &str) -> Condition {
        Condition {
            type_: REPLICA_FAILURE.into(),
            status: "True".into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: Some(at(time)),
        }
    }

    /// Computes the status of `pods` (template labels app=a,tier=web, minReadySeconds 60,
    /// generation 4) after `outcome`, from `previous` conditions; compares the counts
    /// (replicas, fully labeled, ready, available) and the conditions.
    fn check(
        pods: &[Arc<Pod>],
        previous: Vec<Condition>,
        outcome: Outcome<'_>,
        expected_counts: [i32; 4],
        expected_conditions: Vec<Condition>,
    ) {
        let template: BTreeMap<String, String> =
            [("app", "a"), ("tier", "web")].map(|(k, v)| (k.into(), v.into())).into();
        let previous = ReplicaStatus { conditions: previous, ..ReplicaStatus::default() };
        let status = calculate(&Inputs {
            pods,
            template_labels: Some(&template),
            min_ready_seconds: 60,
            generation: 4,
            previous: &previous,
            outcome,
            now: at(NOW),
        });
        let counts = [
            status.replicas,
            status.fully_labeled_replicas,
            status.ready_replicas,
            status.available_replicas,
        ];
        assert_eq!(counts, expected_counts);
        assert_eq!(status.observed_generation, 4);
        assert_eq!(status.conditions, expected_conditions);
    }

    #[test]
    fn counts() {
        let full = json!({"app": "a", "tier": "web", "extra": "x"});
        let partial = json!({"app": "a"});
        let pods = [
            replica(full.clone(), Some("2025-01-01T00:00:00Z")),
            replica(full.clone(), Some("2025-01-01T00:09:30Z")),
            replica(partial.clone(), Some("2025-01-01T00:00:00Z")),
            replica(full, None),
            replica(partial, None),
        ];
        check(&pods, vec![], Outcome::Fine, [5, 3, 3, 2], vec![]);
        check(&[], vec![], Outcome::Fine, [0, 0, 0, 0], vec![]);
    }

    #[test]
    fn the_replica_failure_condition() {
        let old = failure("FailedCreate", "quota exceeded", "2025-01-01T00:00:00Z");
        check(
            &[],
            vec![],
            Outcome::CreateFailed("quota exceeded"),
            [0, 0, 0, 0],
            vec![failure("FailedCreate", "quota exceeded", NOW)],
        );
        check(
            &[],
            vec![],
            Outcome::DeleteFailed("forbidden"),
            [0, 0, 0, 0],
            vec![failure("FailedDelete", "forbidden", NOW)],
        );
        // A failure already reported stays as it was.
        check(
            &[],
            vec![old.clone()],
            Outcome::CreateFailed("other"),
            [0, 0, 0, 0],
            vec![old.clone()],
        );
        // Success clears it.
        check(&[], vec![old], Outcome::Fine, [0, 0, 0, 0], vec![]);
    }

    #[test]
    fn availability_wakes_up_a_second_after_the_first_pod_is_available() {
        let pods = [
            replica(json!({}), Some("2025-01-01T00:09:30Z")),
            replica(json!({}), Some("2025-01-01T00:09:50Z")),
            replica(json!({}), Some("2025-01-01T00:00:00Z")),
            replica(json!({}), None),
        ];
        assert_eq!(next_availability(&pods, 60, at(NOW)), Some(Duration::from_secs(31)));
        assert_eq!(next_availability(&pods[2..], 60, at(NOW)), None);
        assert_eq!(next_availability(&pods, 0, at(NOW)), None);
    }

    #[test]
    fn the_patch_omits_zeros() {
        let status = ReplicaStatus {
            replicas: 0,
            ready_replicas: 2,
            observed_generation: 3,
            conditions: vec![failure("FailedCreate", "no", "2025-01-01T00:00:00Z")],
            ..ReplicaStatus::default()
        };
        assert_eq!(
            patch(&status),
            json!({"status": {"replicas": 0, "fullyLabeledReplicas": null, "readyReplicas": 2,
                "availableReplicas": null, "observedGeneration": 3, "conditions": [{
                    "type": "ReplicaFailure", "status": "True",
                    "lastTransitionTime": "2025-01-01T00:00:00Z",
                    "reason": "FailedCreate", "message": "no"}]}})
        );
        let empty = patch(&ReplicaStatus::default());
        assert_eq!(empty["status"]["conditions"], Value::Null);
    }
}
