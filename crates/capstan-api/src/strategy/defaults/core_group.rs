//! Defaults of the core kinds other than pods: Service, Namespace, Secret, PersistentVolume
//! and PersistentVolumeClaim, Node, Endpoints and LimitRange
//! (`pkg/apis/core/v1/defaults.go`).

use super::super::access::{self, default_unset, default_zero, each_mut, object_mut};
use super::super::base64;
use super::pod::round_up_to_millis;
use serde_json::{Map, Value, json};

/// `SetDefaults_Service`. The IP family policy, which upstream's allocator fills, is
/// defaulted here too; the cluster IPs and IP families stay the allocator's.
pub(crate) fn service(object: &mut Value) {
    let Some(spec) = object_mut(object, &["spec"]) else { return };
    default_zero(spec, "sessionAffinity", json!("None"));
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            spec.remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|config| config.get("clientIP"))
                .and_then(|client| client.get("timeoutSeconds"))
                .is_some_and(|t| !t.is_null());
            if !timeout {
                spec.insert(
                    "sessionAffinityConfig".to_owned(),
                    json!({"clientIP": {"timeoutSeconds": 10800}}),
                );
            }
        }
        _ => {}
    }
    default_zero(spec, "type", json!("ClusterIP"));
    for port in each_mut(spec, "ports") {
        default_zero(port, "protocol", json!("TCP"));
        if access::is_zero(port, "targetPort")
            && let Some(number) = port.get("port").cloned()
        {
            port.insert("targetPort".to_owned(), number);
        }
    }
    let service_type = spec.get("type").and_then(Value::as_str).unwrap_or("").to_owned();
    let has_external_ips =
        spec.get("externalIPs").and_then(Value::as_array).is_some_and(|ips| !ips.is_empty());
    let externally_accessible = matches!(service_type.as_str(), "LoadBalancer" | "NodePort")
        || (service_type == "ClusterIP" && has_external_ips);
    if externally_accessible {
        default_zero(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if matches!(service_type.as_str(), "NodePort" | "LoadBalancer" | "ClusterIP") {
        default_unset(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if service_type == "LoadBalancer" {
        default_unset(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if service_type != "ExternalName" {
        let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
        let selectorless = access::is_empty_map(spec.get("selector"));
        let policy = if headless && selectorless { "RequireDualStack" } else { "SingleStack" };
        default_unset(spec, "ipFamilyPolicy", json!(policy));
    }
}

/// Every named namespace carries its name as the `kubernetes.io/metadata.name` label.
pub(crate) fn namespace(object: &mut Value) {
    let name = access::text(object, &["metadata", "name"]).to_owned();
    if !name.is_empty()
        && let Some(labels) = object_mut(object, &["metadata", "labels"])
    {
        labels.insert("kubernetes.io/metadata.name".to_owned(), json!(name));
    }
    if let Some(status) = object_mut(object, &["status"]) {
        default_zero(status, "phase", json!("Active"));
    }
}

/// `type: Opaque`, and `stringData` folded into `data` (base64), as upstream's conversion
/// does: `stringData` is write-only and never stored.
pub(crate) fn secret(object: &mut Value) {
    let Some(map) = object.as_object_mut() else { return };
    default_zero(map, "type", json!("Opaque"));
    let Some(Value::Object(string_data)) = map.remove("stringData") else { return };
    let data = map.entry("data").or_insert_with(|| json!({}));
    if data.is_null() {
        *data = json!({});
    }
    if let Some(data) = data.as_object_mut() {
        for (key, value) in string_data {
            let text = value.as_str().unwrap_or_default();
            data.insert(key, json!(base64::encode(text.as_bytes())));
        }
    }
}

pub(crate) fn persistent_volume(object: &mut Value) {
    if let Some(status) = object_mut(object, &["status"]) {
        default_zero(status, "phase", json!("Pending"));
    }
    let Some(spec) = object_mut(object, &["spec"]) else { return };
    default_zero(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
    default_unset(spec, "volumeMode", json!("Filesystem"));
    if let Some(capacity) = spec.get_mut("capacity").and_then(Value::as_object_mut) {
        round_up_to_millis(capacity);
    }
}

/// A claim, standalone or as a StatefulSet's claim template.
pub(crate) fn persistent_volume_claim(object: &mut Value) {
    if let Some(status) = object_mut(object, &["status"]) {
        default_zero(status, "phase", json!("Pending"));
    }
    if let Some(spec) = object_mut(object, &["spec"]) {
        default_unset(spec, "volumeMode", json!("Filesystem"));
    }
    for key in ["requests", "limits"] {
        if let Some(list) = access::existing_mut(object, &["spec", "resources", key]) {
            round_up_to_millis(list);
        }
    }
}

/// Allocatable defaults to the capacity.
pub(crate) fn node(object: &mut Value) {
    let Some(status) = access::existing_mut(object, &["status"]) else { return };
    if access::is_unset(status, "allocatable")
        && let Some(capacity) = status.get("capacity").filter(|c| c.is_object()).cloned()
    {
        status.insert("allocatable".to_owned(), capacity);
    }
}

pub(crate) fn endpoints(object: &mut Value) {
    let Some(map) = object.as_object_mut() else { return };
    for subset in each_mut(map, "subsets") {
        for port in each_mut(subset, "ports") {
            default_zero(port, "protocol", json!("TCP"));
        }
    }
}

/// For container limits: the default limit falls back to the max, the default request to the
/// default limit, then to the min.
pub(crate) fn limit_range(object: &mut Value) {
    let Some(spec) = access::existing_mut(object, &["spec"]) else { return };
    for item in each_mut(spec, "limits") {
        if item.get("type").and_then(Value::as_str) != Some("Container") {
            continue;
        }
        let list = |item: &Map<String, Value>, key: &str| {
            item.get(key).and_then(Value::as_object).cloned().unwrap_or_default()
        };
        let mut default = list(item, "default");
        let mut default_request = list(item, "defaultRequest");
        for (name, amount) in list(item, "max") {
            default.entry(name).or_insert(amount);
        }
        for (name, amount) in default.clone().into_iter().chain(list(item, "min")) {
            default_request.entry(name).or_insert(amount);
        }
        // Empty lists are omitted when serialised, as upstream's `omitempty` maps are.
        for (key, list) in [("default", default), ("defaultRequest", default_request)] {
            if !list.is_empty() {
                item.insert(key.to_owned(), Value::Object(list));
            }
        }
    }
}
