//! Validation: the checks of upstream's `Validate` and `ValidateUpdate` strategies, kind by
//! kind, after the `metadata` checks every kind shares. Kinds without an entry here get the
//! metadata checks only.

mod core_group;
mod cron;
mod other;
mod pod;
mod rules;
mod workloads;

use crate::registry::ResourceType;
use crate::status::FieldError;
use rules::Errors;
use serde_json::Value;

fn metadata(object: &Value) -> &Value {
    object.get("metadata").unwrap_or(&Value::Null)
}

/// The create rules: metadata, then the kind's own.
pub(crate) fn create(resource: &ResourceType, object: &Value) -> Vec<FieldError> {
    let mut errors = crate::validation::object_meta(metadata(object), resource);
    if (resource.group, resource.kind) == ("", "Pod") {
        pod::pod_create(&mut errors, object);
    } else {
        kind(&mut errors, resource, object);
    }
    errors
}

/// The update rules: metadata that never changes, the kind's rules on the new object, and
/// the kind's immutable fields.
pub(crate) fn update(resource: &ResourceType, object: &Value, old: &Value) -> Vec<FieldError> {
    let mut errors = crate::validation::object_meta(metadata(object), resource);
    metadata_update(&mut errors, metadata(object), metadata(old));
    // Upstream checks what may not change before the new object's own rules for these kinds,
    // and after them for the others; the order shows in the 422's list.
    let immutable_first =
        matches!((resource.group, resource.kind), ("", "Secret" | "ConfigMap" | "Service"));
    if immutable_first {
        immutable_fields(&mut errors, resource, object, old);
    }
    match (resource.group, resource.kind) {
        ("", "Pod") => pod::pod_update(&mut errors, object, old),
        _ => kind(&mut errors, resource, object),
    }
    if !immutable_first {
        immutable_fields(&mut errors, resource, object, old);
    }
    errors
}

/// `ValidateObjectMetaUpdate`, in the part a client can get wrong: the identity.
fn metadata_update(errors: &mut Errors, new: &Value, old: &Value) {
    for key in ["name", "namespace"] {
        let (new_value, old_value) = (rules::as_text(new.get(key)), rules::as_text(old.get(key)));
        if new_value != old_value {
            errors.push(FieldError::invalid(
                format!("metadata.{key}"),
                new_value,
                rules::IMMUTABLE,
            ));
        }
    }
    let new_uid = rules::as_text(new.get("uid"));
    if !new_uid.is_empty() && new_uid != rules::as_text(old.get("uid")) {
        errors.push(FieldError::invalid("metadata.uid", new_uid, rules::IMMUTABLE));
    }
}

/// The kind's own rules, shared by create and update.
fn kind(errors: &mut Errors, resource: &ResourceType, object: &Value) {
    match (resource.group, resource.kind) {
        ("", "PodTemplate") => workloads::pod_template_kind(errors, object),
        ("", "ReplicationController") => workloads::replication_controller(errors, object),
        ("", "Service") => core_group::service(errors, object),
        ("", "ConfigMap") => core_group::config_map(errors, object),
        ("", "Secret") => core_group::secret(errors, object),
        ("", "Namespace") => core_group::namespace(errors, object),
        ("", "Node") => core_group::node(errors, object),
        ("", "PersistentVolumeClaim") => core_group::persistent_volume_claim(errors, object),
        ("", "PersistentVolume") => core_group::persistent_volume(errors, object),
        ("apps", "Deployment") => workloads::deployment(errors, object),
        ("apps", "ReplicaSet") => workloads::replica_set(errors, object),
        ("apps", "StatefulSet") => workloads::stateful_set(errors, object),
        ("apps", "DaemonSet") => workloads::daemon_set(errors, object),
        ("batch", "Job") => workloads::job(errors, object),
        ("batch", "CronJob") => workloads::cron_job(errors, object),
        ("rbac.authorization.k8s.io", "Role") => other::role(errors, object, true),
        ("rbac.authorization.k8s.io", "ClusterRole") => other::role(errors, object, false),
        ("rbac.authorization.k8s.io", "RoleBinding") => other::role_binding(errors, object, true),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            other::role_binding(errors, object, false)
        }
        ("coordination.k8s.io", "Lease") => other::lease(errors, object),
        ("scheduling.k8s.io", "PriorityClass") => other::priority_class(errors, object),
        ("networking.k8s.io", "Ingress") => other::ingress(errors, object),
        ("networking.k8s.io", "NetworkPolicy") => other::network_policy(errors, object),
        ("autoscaling", "HorizontalPodAutoscaler") => {
            other::horizontal_pod_autoscaler(errors, object)
        }
        ("policy", "PodDisruptionBudget") => other::pod_disruption_budget(errors, object),
        _ => {}
    }
}

/// What an update may not change, kind by kind.
fn immutable_fields(errors: &mut Errors, resource: &ResourceType, new: &Value, old: &Value) {
    match (resource.group, resource.kind) {
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") => {
            workloads::selector_unchanged(errors, new, old)
        }
        ("apps", "StatefulSet") => workloads::stateful_set_update(errors, new, old),
        ("batch", "Job") => workloads::job_update(errors, new, old),
        ("", "Service") => core_group::service_update(errors, new, old),
        ("", "ConfigMap") => core_group::immutable_data(errors, new, old, &["data", "binaryData"]),
        ("", "Secret") => core_group::secret_update(errors, new, old),
        ("", "Node") => core_group::node_update(errors, new, old),
        ("", "PersistentVolumeClaim") => {
            core_group::persistent_volume_claim_update(errors, new, old)
        }
        ("", "PersistentVolume") => core_group::persistent_volume_update(errors, new, old),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            other::role_binding_update(errors, new, old)
        }
        ("scheduling.k8s.io", "PriorityClass") => other::priority_class_update(errors, new, old),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
