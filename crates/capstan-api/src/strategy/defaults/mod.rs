//! Defaulting: what upstream's generated `SetObjectDefaults_*` functions fill when an object
//! is decoded, kind by kind.

mod core_group;
mod other;
pub(crate) mod pod;
mod workloads;

use crate::registry::ResourceType;
use serde_json::Value;

/// Fills the defaults of `object`, a `resource` in its wire form.
pub(crate) fn apply(resource: &ResourceType, object: &mut Value) {
    match (resource.group, resource.version, resource.kind) {
        ("", _, "Pod") => {
            if let Some(spec) = super::access::existing_mut(object, &["spec"]) {
                pod::pod_spec(spec, pod::SpecOwner::Pod);
            }
        }
        ("", _, "PodTemplate") => workloads::template(object, &["template"]),
        ("", _, "ReplicationController") => workloads::replication_controller(object),
        ("", _, "Service") => core_group::service(object),
        ("", _, "Namespace") => core_group::namespace(object),
        ("", _, "Secret") => core_group::secret(object),
        ("", _, "PersistentVolume") => core_group::persistent_volume(object),
        ("", _, "PersistentVolumeClaim") => core_group::persistent_volume_claim(object),
        ("", _, "Node") => core_group::node(object),
        ("", _, "Endpoints") => core_group::endpoints(object),
        ("", _, "LimitRange") => core_group::limit_range(object),
        ("apps", _, "Deployment") => workloads::deployment(object),
        ("apps", _, "ReplicaSet") => workloads::replica_set(object),
        ("apps", _, "StatefulSet") => workloads::stateful_set(object),
        ("apps", _, "DaemonSet") => workloads::daemon_set(object),
        ("batch", _, "Job") => workloads::job(object),
        ("batch", _, "CronJob") => workloads::cron_job(object),
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => {
            other::horizontal_pod_autoscaler_v1(object)
        }
        ("autoscaling", _, "HorizontalPodAutoscaler") => {
            other::horizontal_pod_autoscaler_v2(object)
        }
        ("rbac.authorization.k8s.io", _, "RoleBinding" | "ClusterRoleBinding") => {
            other::role_binding(object)
        }
        ("networking.k8s.io", _, "NetworkPolicy") => other::network_policy(object),
        ("scheduling.k8s.io", _, "PriorityClass") => other::priority_class(object),
        ("discovery.k8s.io", _, "EndpointSlice") => other::endpoint_slice(object),
        ("storage.k8s.io", _, "StorageClass") => other::storage_class(object),
        ("admissionregistration.k8s.io", _, "MutatingWebhookConfiguration") => {
            other::webhook_configuration(object, true)
        }
        ("admissionregistration.k8s.io", _, "ValidatingWebhookConfiguration") => {
            other::webhook_configuration(object, false)
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
