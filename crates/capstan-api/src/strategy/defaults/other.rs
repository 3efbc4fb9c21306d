//! Defaults of the kinds outside core and workloads: HorizontalPodAutoscaler (v1 and v2),
//! RBAC subjects, NetworkPolicy, PriorityClass, EndpointSlice, StorageClass and the
//! admission webhooks.

use super::super::access::{self, default_unset, default_zero, each_mut, object_mut};
use serde_json::{Map, Value, json};

/// `autoscaling/v1`: only the minimum.
pub(crate) fn horizontal_pod_autoscaler_v1(object: &mut Value) {
    if let Some(spec) = object_mut(object, &["spec"]) {
        default_unset(spec, "minReplicas", json!(1));
    }
}

/// `autoscaling/v2`: the minimum, an 80% CPU target when no metric is given, and the scaling
/// rules of a given `behavior` completed with upstream's defaults.
pub(crate) fn horizontal_pod_autoscaler_v2(object: &mut Value) {
    let Some(spec) = object_mut(object, &["spec"]) else { return };
    default_unset(spec, "minReplicas", json!(1));
    let no_metrics = spec.get("metrics").and_then(Value::as_array).is_none_or(Vec::is_empty);
    if no_metrics {
        spec.insert(
            "metrics".to_owned(),
            json!([{
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
            }]),
        );
    }
    let Some(behavior) = spec.get_mut("behavior").and_then(Value::as_object_mut) else { return };
    let scale_up = json!({
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 15},
            {"type": "Percent", "value": 100, "periodSeconds": 15},
        ],
    });
    let scale_down = json!({
        "selectPolicy": "Max",
        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
    });
    for (key, defaults) in [("scaleUp", scale_up), ("scaleDown", scale_down)] {
        let rules = behavior.get(key).and_then(Value::as_object).cloned();
        behavior.insert(key.to_owned(), scaling_rules(rules, defaults));
    }
}

/// Upstream's `copyHPAScalingRules`: each field given wins over the default.
fn scaling_rules(given: Option<Map<String, Value>>, defaults: Value) -> Value {
    let Value::Object(mut rules) = defaults else { return defaults };
    for (key, value) in given.into_iter().flatten() {
        if !value.is_null() {
            rules.insert(key, value);
        }
    }
    Value::Object(rules)
}

/// Subjects name the API group of their kind.
pub(crate) fn role_binding(object: &mut Value) {
    let Some(map) = object.as_object_mut() else { return };
    for subject in each_mut(map, "subjects") {
        let group = match subject.get("kind").and_then(Value::as_str) {
            Some("ServiceAccount") => "",
            Some("User" | "Group") => "rbac.authorization.k8s.io",
            _ => continue,
        };
        default_zero(subject, "apiGroup", json!(group));
    }
}

/// Policy types from the rules given; ports speak TCP unless told otherwise.
pub(crate) fn network_policy(object: &mut Value) {
    let Some(spec) = object_mut(object, &["spec"]) else { return };
    for direction in ["ingress", "egress"] {
        for rule in each_mut(spec, direction) {
            for port in each_mut(rule, "ports") {
                default_unset(port, "protocol", json!("TCP"));
            }
        }
    }
    let no_types = spec.get("policyTypes").and_then(Value::as_array).is_none_or(Vec::is_empty);
    if no_types {
        let has_egress =
            spec.get("egress").and_then(Value::as_array).is_some_and(|rules| !rules.is_empty());
        let types = if has_egress { json!(["Ingress", "Egress"]) } else { json!(["Ingress"]) };
        spec.insert("policyTypes".to_owned(), types);
    }
}

pub(crate) fn priority_class(object: &mut Value) {
    if let Some(map) = object.as_object_mut() {
        default_unset(map, "preemptionPolicy", json!("PreemptLowerPriority"));
    }
}

/// Ports get an empty name and TCP.
pub(crate) fn endpoint_slice(object: &mut Value) {
    let Some(map) = object.as_object_mut() else { return };
    for port in each_mut(map, "ports") {
        default_unset(port, "name", json!(""));
        default_unset(port, "protocol", json!("TCP"));
    }
}

pub(crate) fn storage_class(object: &mut Value) {
    if let Some(map) = object.as_object_mut() {
        default_unset(map, "reclaimPolicy", json!("Delete"));
        default_unset(map, "volumeBindingMode", json!("Immediate"));
    }
}

/// `admissionregistration.k8s.io/v1` webhook defaults; `mutating` adds the reinvocation
/// policy.
pub(crate) fn webhook_configuration(object: &mut Value, mutating: bool) {
    let Some(map) = object.as_object_mut() else { return };
    for webhook in each_mut(map, "webhooks") {
        default_unset(webhook, "failurePolicy", json!("Fail"));
        default_unset(webhook, "matchPolicy", json!("Equivalent"));
        default_unset(webhook, "namespaceSelector", json!({}));
        default_unset(webhook, "objectSelector", json!({}));
        default_unset(webhook, "timeoutSeconds", json!(10));
        if mutating {
            default_unset(webhook, "reinvocationPolicy", json!("Never"));
        }
        for rule in each_mut(webhook, "rules") {
            default_unset(rule, "scope", json!("*"));
        }
        if let Some(service) = access::existing_mut_in(webhook, &["clientConfig", "service"]) {
            default_unset(service, "port", json!(443));
        }
    }
}
