//! Field selectors: the fields each kind lets `?fieldSelector=` filter on, and their values
//! rendered as upstream's `ToSelectableFields` functions render them.

use super::access::{get, text};
use crate::registry::ResourceType;
use serde_json::Value;

/// The kind's own selectable fields (`metadata.*` excluded).
fn kind_fields(resource: &ResourceType) -> &'static [&'static str] {
    match (resource.group, resource.kind) {
        ("", "Pod") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "Node") => &["spec.unschedulable"],
        // `name` is a historical alias upstream keeps for compatibility.
        ("", "Namespace") => &["status.phase", "name"],
        ("", "Secret") => &["type"],
        ("", "Service") => &["spec.clusterIP", "spec.type"],
        ("", "ReplicationController") | ("apps", "ReplicaSet") => &["status.replicas"],
        ("", "Event") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("events.k8s.io", "Event") => &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ],
        ("batch", "Job") => &["status.successful"],
        ("certificates.k8s.io", "CertificateSigningRequest") => &["spec.signerName"],
        _ => &[],
    }
}

pub(super) fn selectable_fields(resource: &ResourceType) -> Vec<&'static str> {
    let mut fields = vec!["metadata.name"];
    if resource.is_namespaced() {
        fields.push("metadata.namespace");
    }
    fields.extend(kind_fields(resource));
    fields
}

pub(super) fn field_values(resource: &ResourceType, object: &Value) -> Vec<(&'static str, String)> {
    selectable_fields(resource)
        .into_iter()
        .map(|field| (field, value(resource, object, field)))
        .collect()
}

/// One field's value as a string; absent values are empty, as Go's zero values print.
fn value(resource: &ResourceType, object: &Value, field: &'static str) -> String {
    let path: Vec<&str> = field.split('.').collect();
    match (resource.kind, field) {
        ("Pod", "spec.hostNetwork") | ("Node", "spec.unschedulable") => {
            let set = get(object, &path).and_then(Value::as_bool).unwrap_or(false);
            set.to_string()
        }
        ("Pod", "status.podIP") => {
            let first = get(object, &["status", "podIPs"])
                .and_then(Value::as_array)
                .and_then(|ips| ips.first())
                .map(|ip| text(ip, &["ip"]));
            first.unwrap_or_else(|| text(object, &["status", "podIP"])).to_owned()
        }
        (_, "status.replicas" | "status.successful") => {
            let key = if field == "status.successful" { "succeeded" } else { "replicas" };
            get(object, &["status", key]).and_then(Value::as_i64).unwrap_or(0).to_string()
        }
        ("Namespace", "name") => text(object, &["metadata", "name"]).to_owned(),
        ("Event", "source") if resource.group.is_empty() => {
            text(object, &["source", "component"]).to_owned()
        }
        ("Event", "reportingComponent") => text(object, &["reportingComponent"]).to_owned(),
        _ => text(object, &path).to_owned(),
    }
}
