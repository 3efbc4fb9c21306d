//! What the controllers read from a pod's conditions, in one place.

use k8s_openapi::api::core::v1::Pod;

/// Whether the pod's `Ready` condition is True.
pub(crate) fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
}
