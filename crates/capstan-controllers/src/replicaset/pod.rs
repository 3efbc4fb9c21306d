//! Facts about one pod that the controller's decisions rest on, as upstream's pod utilities
//! define them: active, ready, available, and which controller owns it.

use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// The pod's phase, empty when it has none yet.
pub(crate) fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|status| status.phase.as_deref()).unwrap_or_default()
}

/// Whether the pod still counts as a replica: it has not finished (Succeeded or Failed) and
/// nobody asked for its deletion.
pub(crate) fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

/// The pod's first `Ready` condition, as upstream reads it.
fn ready_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|condition| condition.type_ == "Ready")
}

pub(crate) use crate::pod_conditions::is_ready;

/// Since when the pod is ready: the last transition of its True `Ready` condition (`None`
/// when it is not ready, or the time is missing).
pub(crate) fn ready_since(pod: &Pod) -> Option<Timestamp> {
    ready_condition(pod)
        .filter(|condition| condition.status == "True")
        .and_then(|condition| condition.last_transition_time.as_ref())
        .map(|time| time.0)
}

/// When a ready pod becomes available, that is ready for `min_ready_seconds`: `None` for a
/// pod that is not ready, or ready since an unknown time with `min_ready_seconds` above 0
/// (upstream never counts those as available).
pub(crate) fn available_at(pod: &Pod, min_ready_seconds: i32) -> Option<Timestamp> {
    if !is_ready(pod) {
        return None;
    }
    if min_ready_seconds <= 0 {
        return Some(Timestamp::MIN);
    }
    let since = ready_since(pod)?;
    since.checked_add(SignedDuration::from_secs(i64::from(min_ready_seconds))).ok()
}

/// Whether the pod is available at `now`: ready, and for at least `min_ready_seconds`
/// (strictly longer, as upstream compares).
pub(crate) fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if min_ready_seconds <= 0 {
        return is_ready(pod);
    }
    available_at(pod, min_ready_seconds).is_some_and(|at| at < now)
}

/// The owner reference marked `controller: true`, if any.
pub(crate) fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.as_ref()?.iter().find(|reference| reference.controller == Some(true))
}

/// `namespace/name`, for logs and messages.
pub(crate) fn key(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A pod from JSON, for the tests of every module.
    pub(crate) fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    pub(crate) fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn check(pod_json: serde_json::Value, min_ready: i32, now: &str, expected: (bool, bool, bool)) {
        let pod = pod(pod_json.clone());
        let got = (is_active(&pod), is_ready(&pod), is_available(&pod, min_ready, at(now)));
        assert_eq!(got, expected, "{pod_json} with minReadySeconds {min_ready}");
    }

    #[test]
    fn activity_readiness_and_availability() {
        let ready = |since: &str| {
            json!({"metadata": {}, "status": {"phase": "Running", "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True", "lastTransitionTime": since}]}})
        };
        let now = "2025-01-01T00:01:00Z";
        check(json!({"metadata": {}}), 0, now, (true, false, false));
        check(
            json!({"metadata": {}, "status": {"phase": "Succeeded"}}),
            0,
            now,
            (false, false, false),
        );
        check(
            json!({"metadata": {}, "status": {"phase": "Failed"}}),
            0,
            now,
            (false, false, false),
        );
        check(
            json!({"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"}}),
            0,
            now,
            (false, false, false),
        );
        check(ready("2025-01-01T00:00:00Z"), 0, now, (true, true, true));
        check(ready("2025-01-01T00:00:00Z"), 59, now, (true, true, true));
        // Exactly minReadySeconds ago is not yet available: upstream compares strictly.
        check(ready("2025-01-01T00:00:00Z"), 60, now, (true, true, false));
        check(ready("2025-01-01T00:00:30Z"), 60, now, (true, true, false));
        let not_ready = json!({"metadata": {}, "status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "False", "lastTransitionTime": "2025-01-01T00:00:00Z"}]}});
        check(not_ready, 0, now, (true, false, false));
        let unknown_since = json!({"metadata": {}, "status": {"conditions": [
            {"type": "Ready", "status": "True"}]}});
        check(unknown_since.clone(), 0, now, (true, true, true));
        check(unknown_since, 10, now, (true, true, false));
    }

    #[test]
    fn the_controller_reference() {
        let owned = pod(json!({"metadata": {"ownerReferences": [
            {"apiVersion": "v1", "kind": "Other", "name": "o", "uid": "1"},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "2", "controller": true}]}}));
        assert_eq!(controller_of(&owned.metadata).map(|r| r.uid.as_str()), Some("2"));
        let orphan = pod(json!({"metadata": {"ownerReferences": [
            {"apiVersion": "v1", "kind": "Other", "name": "o", "uid": "1", "controller": false}]}}));
        assert_eq!(controller_of(&orphan.metadata), None);
    }
}
