//! Validation of the core kinds other than pods: Service, ConfigMap, Secret, Namespace,
//! Node, PersistentVolume and PersistentVolumeClaim, with their update rules
//! (`pkg/apis/core/validation`).

use super::super::base64;
use super::rules::{
    Errors, IMMUTABLE, PORT_RANGE, as_text, config_key, diff, dns_label, dns_subdomain, immutable,
    invalid_each, is_port_number, labels, one_of, optional_one_of, port_number_or_name, same,
};
use crate::Quantity;
use crate::status::{FieldError, FieldErrorKind};
use crate::validation::qualified_name;
use serde_json::{Map, Value};
use std::collections::HashSet;

/// ConfigMaps and Secrets hold at most 1 MiB.
const MAX_DATA_BYTES: usize = 1024 * 1024;

fn spec(object: &Value) -> &Value {
    object.get("spec").unwrap_or(&Value::Null)
}

fn too_long(field: &str) -> FieldError {
    FieldError {
        field: field.to_owned(),
        kind: FieldErrorKind::TooLong(Value::Null, MAX_DATA_BYTES),
        detail: String::new(),
    }
}

/// `ValidateService`, without the cluster IP allocation (the allocator's).
pub(crate) fn service(errors: &mut Errors, object: &Value) {
    let spec = spec(object);
    let service_type = as_text(spec.get("type"));
    let cluster_ip = as_text(spec.get("clusterIP"));
    let headless = cluster_ip == "None";
    let ports = spec.get("ports").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    if ports.is_empty() && !headless && service_type != "ExternalName" {
        errors.push(FieldError::required("spec.ports", ""));
    }
    match service_type {
        "LoadBalancer" | "NodePort" if headless => errors.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            cluster_ip,
            format!("may not be set to 'None' for {service_type} services"),
        )),
        "ExternalName" => external_name(errors, spec),
        _ => {}
    }
    let mut names = HashSet::new();
    for (index, port) in ports.iter().enumerate() {
        service_port(errors, &format!("spec.ports[{index}]"), port, ports.len() > 1, &mut names);
    }
    if let Some(selector) = spec.get("selector").filter(|s| !s.is_null()) {
        labels(errors, "spec.selector", Some(selector));
    }
    one_of(errors, "spec.sessionAffinity", spec.get("sessionAffinity"), &["ClientIP", "None"]);
    if as_text(spec.get("sessionAffinity")) == "None"
        && spec.get("sessionAffinityConfig").is_some_and(|c| !c.is_null())
    {
        errors.push(FieldError::forbidden(
            "spec.sessionAffinityConfig",
            "must not be set when session affinity is None",
        ));
    }
    if !cluster_ip.is_empty() && !headless && cluster_ip.parse::<std::net::IpAddr>().is_err() {
        errors.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            cluster_ip,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }
    one_of(
        errors,
        "spec.type",
        spec.get("type"),
        &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
    );
    node_ports(errors, service_type, ports);
    duplicate_ports(errors, ports);
    if service_type != "LoadBalancer"
        && spec.get("allocateLoadBalancerNodePorts").is_some_and(|v| !v.is_null())
    {
        errors.push(FieldError::forbidden(
            "spec.allocateLoadBalancerNodePorts",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    traffic_policies(errors, spec, service_type);
}

fn external_name(errors: &mut Errors, spec: &Value) {
    if !as_text(spec.get("clusterIP")).is_empty() {
        errors.push(FieldError::forbidden(
            "spec.clusterIPs",
            "may not be set for ExternalName services",
        ));
    }
    if spec.get("ipFamilies").and_then(Value::as_array).is_some_and(|f| !f.is_empty()) {
        errors.push(FieldError::forbidden(
            "spec.ipFamilies",
            "may not be set for ExternalName services",
        ));
    }
    if spec.get("ipFamilyPolicy").is_some_and(|p| !p.is_null()) {
        errors.push(FieldError::forbidden(
            "spec.ipFamilyPolicy",
            "may not be set for ExternalName services",
        ));
    }
    let name = as_text(spec.get("externalName"));
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        errors.push(FieldError::required("spec.externalName", ""));
    } else {
        dns_subdomain(errors, "spec.externalName", name);
    }
}

/// `validateServicePort`: names (required when there are several), numbers, protocols and
/// target ports.
fn service_port(
    errors: &mut Errors,
    path: &str,
    port: &Value,
    require_name: bool,
    names: &mut HashSet<String>,
) {
    let name = as_text(port.get("name"));
    if require_name && name.is_empty() {
        errors.push(FieldError::required(format!("{path}.name"), ""));
    } else if !name.is_empty() {
        dns_label(errors, &format!("{path}.name"), name);
        if !names.insert(name.to_owned()) {
            errors.push(FieldError::duplicate(format!("{path}.name"), name));
        }
    }
    let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
    if !is_port_number(number) {
        errors.push(FieldError::invalid(format!("{path}.port"), number, PORT_RANGE));
    }
    one_of(errors, &format!("{path}.protocol"), port.get("protocol"), &["SCTP", "TCP", "UDP"]);
    port_number_or_name(errors, &format!("{path}.targetPort"), port.get("targetPort"));
    if let Some(protocol) = port.get("appProtocol").and_then(Value::as_str) {
        invalid_each(errors, &format!("{path}.appProtocol"), protocol, qualified_name(protocol));
    }
}

/// Node ports: none for ClusterIP services, port numbers for the others, unique per protocol.
/// Whether a port lies in the cluster's node port range is the allocator's check (the range
/// is the API server's `--service-node-port-range`).
fn node_ports(errors: &mut Errors, service_type: &str, ports: &[Value]) {
    let mut seen = HashSet::new();
    for (index, port) in ports.iter().enumerate() {
        let node_port = port.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
        if node_port == 0 {
            continue;
        }
        let path = format!("spec.ports[{index}].nodePort");
        match service_type {
            "ClusterIP" => errors.push(FieldError::forbidden(
                path.clone(),
                "may not be used when `type` is 'ClusterIP'",
            )),
            "NodePort" | "LoadBalancer" if !(1..=65535).contains(&node_port) => {
                errors.push(FieldError::invalid(
                    path.clone(),
                    node_port,
                    "must be between 1 and 65535, inclusive",
                ))
            }
            _ => {}
        }
        if !seen.insert((as_text(port.get("protocol")).to_owned(), node_port)) {
            errors.push(FieldError::duplicate(path, node_port));
        }
    }
}

/// Each (protocol, port) pair appears once.
fn duplicate_ports(errors: &mut Errors, ports: &[Value]) {
    let mut seen = HashSet::new();
    for (index, port) in ports.iter().enumerate() {
        let protocol = as_text(port.get("protocol")).to_owned();
        let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !seen.insert((protocol.clone(), number)) {
            errors.push(FieldError::duplicate(
                format!("spec.ports[{index}]"),
                serde_json::json!({"port": number, "protocol": protocol}),
            ));
        }
    }
}

fn traffic_policies(errors: &mut Errors, spec: &Value, service_type: &str) {
    let has_external_ips =
        spec.get("externalIPs").and_then(Value::as_array).is_some_and(|ips| !ips.is_empty());
    let externally_accessible = matches!(service_type, "LoadBalancer" | "NodePort")
        || (service_type == "ClusterIP" && has_external_ips);
    let external = spec.get("externalTrafficPolicy").filter(|p| p.as_str() != Some(""));
    if externally_accessible {
        one_of(errors, "spec.externalTrafficPolicy", external, &["Cluster", "Local"]);
    } else if let Some(policy) = external.filter(|p| !p.is_null()) {
        errors.push(FieldError::invalid(
            "spec.externalTrafficPolicy",
            policy.clone(),
            "may only be set for externally-accessible services",
        ));
    }
    let internal = spec.get("internalTrafficPolicy").filter(|p| !p.is_null());
    match internal {
        None if matches!(service_type, "NodePort" | "LoadBalancer" | "ClusterIP") => {
            errors.push(FieldError::required("spec.internalTrafficPolicy", ""))
        }
        None => {}
        Some(policy) => optional_one_of(
            errors,
            "spec.internalTrafficPolicy",
            Some(policy),
            &["Cluster", "Local"],
        ),
    }
}

/// `ValidateServiceUpdate`: allocated cluster IPs and IP families stay (unless the type
/// goes to or from ExternalName).
pub(crate) fn service_update(errors: &mut Errors, new: &Value, old: &Value) {
    let (new_spec, old_spec) = (spec(new), spec(old));
    let external = |spec: &Value| as_text(spec.get("type")) == "ExternalName";
    if external(new_spec) || external(old_spec) {
        return;
    }
    let ips = |spec: &Value| -> Vec<Value> {
        match spec.get("clusterIPs").and_then(Value::as_array) {
            Some(list) if !list.is_empty() => list.clone(),
            _ => match as_text(spec.get("clusterIP")) {
                "" => Vec::new(),
                ip => vec![Value::from(ip)],
            },
        }
    };
    let (new_ips, old_ips) = (ips(new_spec), ips(old_spec));
    let headless = |ips: &[Value]| ips.first().is_some_and(|ip| ip == "None");
    if headless(&new_ips) && headless(&old_ips) {
        return;
    }
    if !old_ips.is_empty() && new_ips.is_empty() {
        errors.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            Value::Array(new_ips),
            "primary clusterIP can not be unset",
        ));
        return;
    }
    for (index, (old_ip, new_ip)) in old_ips.iter().zip(&new_ips).enumerate() {
        if old_ip != new_ip && (index == 0 || new_ips.len() == old_ips.len()) {
            errors.push(FieldError::invalid(
                format!("spec.clusterIPs[{index}]"),
                Value::Array(new_ips.clone()),
                "may not change once set",
            ));
        }
    }
    let families = |spec: &Value| {
        spec.get("ipFamilies").and_then(Value::as_array).cloned().unwrap_or_default()
    };
    let (new_families, old_families) = (families(new_spec), families(old_spec));
    if let (Some(new_first), Some(old_first)) = (new_families.first(), old_families.first())
        && new_first != old_first
    {
        errors.push(FieldError::invalid(
            "spec.ipFamilies[0]",
            new_first.clone(),
            "may not change once set",
        ));
    }
}

/// `ValidateConfigMap`: keys, no key in both maps, 1 MiB in all.
pub(crate) fn config_map(errors: &mut Errors, object: &Value) {
    let empty = Map::new();
    let data = object.get("data").and_then(Value::as_object).unwrap_or(&empty);
    let binary = object.get("binaryData").and_then(Value::as_object).unwrap_or(&empty);
    let mut total = 0;
    for (key, value) in data {
        let path = format!("data[{key}]");
        invalid_each(errors, &path, key, config_key(key));
        if binary.contains_key(key) {
            errors.push(FieldError::invalid(
                path,
                key.as_str(),
                "duplicate of key present in binaryData",
            ));
        }
        total += value.as_str().map_or(0, str::len);
    }
    for (key, value) in binary {
        let path = format!("binaryData[{key}]");
        invalid_each(errors, &path, key, config_key(key));
        total += decoded_len(errors, &path, value);
    }
    if total > MAX_DATA_BYTES {
        errors.push(too_long(""));
    }
}

/// The decoded size of a base64 value, reporting what does not decode.
fn decoded_len(errors: &mut Errors, path: &str, value: &Value) -> usize {
    match base64::decode(value.as_str().unwrap_or("")) {
        Ok(bytes) => bytes.len(),
        Err(problem) => {
            errors.push(FieldError::invalid(path, "<secret contents redacted>", problem));
            0
        }
    }
}

/// `ValidateSecret`: keys, base64 values, 1 MiB, and what each type requires.
pub(crate) fn secret(errors: &mut Errors, object: &Value) {
    let empty = Map::new();
    let data = object.get("data").and_then(Value::as_object).unwrap_or(&empty);
    let mut total = 0;
    let mut decoded = Map::new();
    for (key, value) in data {
        let path = format!("data[{key}]");
        invalid_each(errors, &path, key, config_key(key));
        let before = errors.len();
        total += decoded_len(errors, &path, value);
        if errors.len() == before {
            decoded.insert(key.clone(), value.clone());
        }
    }
    if total > MAX_DATA_BYTES {
        errors.push(too_long("data"));
    }
    let has = |key: &str| data.contains_key(key);
    let required = |errors: &mut Errors, key: &str| {
        errors.push(FieldError::required(format!("data[{key}]"), ""))
    };
    match as_text(object.get("type")) {
        "kubernetes.io/service-account-token" => {
            let annotation = object
                .get("metadata")
                .and_then(|m| m.get("annotations"))
                .and_then(|a| a.get("kubernetes.io/service-account.name"));
            if as_text(annotation).is_empty() {
                errors.push(FieldError::required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" => json_key(errors, &decoded, has(".dockercfg"), ".dockercfg"),
        "kubernetes.io/dockerconfigjson" => {
            json_key(errors, &decoded, has(".dockerconfigjson"), ".dockerconfigjson")
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            required(errors, "username");
            required(errors, "password");
        }
        "kubernetes.io/ssh-auth" => {
            let key = decoded
                .get("ssh-privatekey")
                .and_then(Value::as_str)
                .and_then(|v| base64::decode(v).ok());
            if key.is_none_or(|k| k.is_empty()) {
                required(errors, "ssh-privatekey");
            }
        }
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !has(key) {
                    required(errors, key);
                }
            }
        }
        _ => {}
    }
}

/// A docker config key must be present and hold a JSON object.
fn json_key(errors: &mut Errors, decoded: &Map<String, Value>, present: bool, key: &str) {
    if !present {
        errors.push(FieldError::required(format!("data[{key}]"), ""));
        return;
    }
    let Some(bytes) = decoded.get(key).and_then(Value::as_str).and_then(|v| base64::decode(v).ok())
    else {
        return;
    };
    if !serde_json::from_slice::<Value>(&bytes).is_ok_and(|v| v.is_object()) {
        errors.push(FieldError::invalid(
            format!("data[{key}]"),
            "<secret contents redacted>",
            "invalid character looking for beginning of value",
        ));
    }
}

/// `immutable: true` freezes the data (and itself); a Secret's type never changes.
pub(crate) fn immutable_data(errors: &mut Errors, new: &Value, old: &Value, keys: &[&str]) {
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    const MESSAGE: &str = "field is immutable when `immutable` is set";
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        errors.push(FieldError::forbidden("immutable", MESSAGE));
    }
    for key in keys {
        if !same(new.get(key), old.get(key)) {
            errors.push(FieldError::forbidden(*key, MESSAGE));
        }
    }
}

pub(crate) fn secret_update(errors: &mut Errors, new: &Value, old: &Value) {
    immutable(errors, "type", new.get("type"), old.get("type"));
    immutable_data(errors, new, old, &["data"]);
}

/// Finalizer names: qualified, and standard unless they carry a prefix.
pub(crate) fn namespace(errors: &mut Errors, object: &Value) {
    let finalizers = spec(object).get("finalizers").and_then(Value::as_array);
    for finalizer in finalizers.into_iter().flatten() {
        let name = finalizer.as_str().unwrap_or("");
        invalid_each(errors, "spec.finalizers", name, qualified_name(name));
        if !name.contains('/') && name != "kubernetes" {
            errors.push(FieldError::invalid(
                "spec.finalizers",
                name,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
}

/// Taints: keys, values, effects, unique by key and effect.
pub(crate) fn node(errors: &mut Errors, object: &Value) {
    let taints = spec(object).get("taints").and_then(Value::as_array);
    let mut seen = HashSet::new();
    // Upstream reports taints under `metadata.taints`.
    for (index, taint) in taints.into_iter().flatten().enumerate() {
        let path = format!("metadata.taints[{index}]");
        let key = as_text(taint.get("key"));
        invalid_each(errors, &format!("{path}.key"), key, qualified_name(key));
        let value = as_text(taint.get("value"));
        let problems = crate::validation::label_value(value);
        if !problems.is_empty() {
            errors.push(FieldError::invalid(format!("{path}.value"), value, problems.join(";")));
        }
        let effect = as_text(taint.get("effect"));
        one_of(
            errors,
            &format!("{path}.effect"),
            taint.get("effect"),
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
        );
        if !seen.insert((key.to_owned(), effect.to_owned())) {
            let mut duplicate = FieldError::duplicate(path, taint.clone());
            duplicate.detail = "taints must be unique by key and effect pair".to_owned();
            errors.push(duplicate);
        }
    }
}

pub(crate) fn node_update(errors: &mut Errors, new: &Value, old: &Value) {
    let (new_spec, old_spec) = (spec(new), spec(old));
    let old_cidrs = old_spec.get("podCIDRs").and_then(Value::as_array).filter(|c| !c.is_empty());
    if old_cidrs.is_some() && !same(new_spec.get("podCIDRs"), old_spec.get("podCIDRs")) {
        errors.push(FieldError::forbidden(
            "spec.podCIDRs",
            "node updates may not change podCIDR except from \"\" to valid",
        ));
    }
    let old_provider = as_text(old_spec.get("providerID"));
    if !old_provider.is_empty() && old_provider != as_text(new_spec.get("providerID")) {
        errors.push(FieldError::forbidden(
            "spec.providerID",
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
}

const ACCESS_MODES: &[&str] =
    &["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"];

fn access_modes(errors: &mut Errors, path: &str, spec: &Value, detail: &str) {
    let modes = spec.get("accessModes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    if modes.is_empty() {
        errors.push(FieldError::required(path, detail));
    }
    let mut once_pod = false;
    let mut others = false;
    for mode in modes {
        let mode = mode.as_str().unwrap_or("");
        if !ACCESS_MODES.contains(&mode) {
            errors.push(FieldError::not_supported(path, mode, ACCESS_MODES));
        } else if mode == "ReadWriteOncePod" {
            once_pod = true;
        } else {
            others = true;
        }
    }
    if once_pod && others {
        errors.push(FieldError::forbidden(
            path,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

/// A storage amount: it must parse and be positive.
fn storage(errors: &mut Errors, path: &str, value: Option<&Value>) -> Option<Quantity> {
    let Some(value) = value else {
        errors.push(FieldError::required(path, ""));
        return None;
    };
    match value.as_str().map(Quantity::parse) {
        Some(Ok(amount)) if amount.nano_value() > 0 => Some(amount),
        Some(Ok(amount)) => {
            errors.push(FieldError::invalid(path, amount.to_string(), "must be greater than zero"));
            None
        }
        _ => {
            errors.push(FieldError::invalid(path, value.clone(), "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"));
            None
        }
    }
}

/// `ValidatePersistentVolumeClaimSpec`.
pub(crate) fn persistent_volume_claim(errors: &mut Errors, object: &Value) {
    claim_spec(errors, "spec", spec(object));
}

pub(crate) fn claim_spec(errors: &mut Errors, path: &str, spec: &Value) {
    access_modes(
        errors,
        &format!("{path}.accessModes"),
        spec,
        "at least 1 access mode is required",
    );
    if let Some(selector) = spec.get("selector").filter(|s| !s.is_null()) {
        super::rules::label_selector(errors, &format!("{path}.selector"), selector);
    }
    let request =
        spec.get("resources").and_then(|r| r.get("requests")).and_then(|r| r.get("storage"));
    storage(errors, &format!("{path}.resources[storage]"), request);
    let class = as_text(spec.get("storageClassName"));
    if !class.is_empty() {
        dns_subdomain(errors, &format!("{path}.storageClassName"), class);
    }
    optional_one_of(
        errors,
        &format!("{path}.volumeMode"),
        spec.get("volumeMode"),
        &["Block", "Filesystem"],
    );
}

/// A claim's spec is fixed once created, except the volume name (set once by the binder)
/// and, for bound claims, the storage request.
pub(crate) fn persistent_volume_claim_update(errors: &mut Errors, new: &Value, old: &Value) {
    let (new_spec, old_spec) = (spec(new), spec(old));
    let mut new_clone = new_spec.clone();
    let mut old_clone = old_spec.clone();
    if as_text(old_spec.get("volumeName")).is_empty()
        && let (Some(old_map), Some(name)) = (old_clone.as_object_mut(), new_spec.get("volumeName"))
    {
        old_map.insert("volumeName".to_owned(), name.clone());
    }
    let bound = as_text(new.get("status").and_then(|s| s.get("phase"))) == "Bound";
    let storage_of = |spec: &Value| {
        spec.get("resources")
            .and_then(|r| r.get("requests"))
            .and_then(|r| r.get("storage"))
            .cloned()
    };
    if bound {
        if let (Some(requests), Some(old_storage)) = (
            new_clone
                .get_mut("resources")
                .and_then(|r| r.get_mut("requests"))
                .and_then(Value::as_object_mut),
            storage_of(old_spec),
        ) {
            requests.insert("storage".to_owned(), old_storage);
        }
        for spec in [&mut new_clone, &mut old_clone] {
            if let Some(map) = spec.as_object_mut() {
                map.remove("volumeAttributesClassName");
            }
        }
    }
    if !same(Some(&new_clone), Some(&old_clone)) {
        errors.push(FieldError::forbidden(
            "spec",
            format!(
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{}",
                diff(&old_clone, &new_clone)
            ),
        ));
    }
    let amount =
        |value: Option<Value>| value.and_then(|v| v.as_str().and_then(|t| Quantity::parse(t).ok()));
    let (new_size, old_size) = (amount(storage_of(new_spec)), amount(storage_of(old_spec)));
    if let (Some(new_size), Some(old_size)) = (new_size, old_size) {
        let capacity = amount(
            old.get("status")
                .and_then(|s| s.get("capacity"))
                .and_then(|c| c.get("storage"))
                .cloned(),
        );
        let capacity_nanos = capacity.map_or(0, |c| c.nano_value());
        if new_size < old_size && new_size.nano_value() <= capacity_nanos {
            errors.push(FieldError::forbidden(
                "spec.resources.requests.storage",
                "field can not be less than status.capacity",
            ));
        }
    }
}

/// The volume sources a PersistentVolume may have.
const PERSISTENT_VOLUME_SOURCES: &[&str] = &[
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "hostPath",
    "glusterfs",
    "nfs",
    "rbd",
    "quobyte",
    "iscsi",
    "cinder",
    "cephfs",
    "fc",
    "flocker",
    "flexVolume",
    "azureFile",
    "vsphereVolume",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "local",
    "storageos",
    "csi",
];

/// `ValidatePersistentVolume`, for the common sources.
pub(crate) fn persistent_volume(errors: &mut Errors, object: &Value) {
    let spec = spec(object);
    access_modes(errors, "spec.accessModes", spec, "");
    let capacity = spec.get("capacity").and_then(Value::as_object);
    match capacity {
        None => errors.push(FieldError::required("spec.capacity", "")),
        Some(map) if map.is_empty() => errors.push(FieldError::required("spec.capacity", "")),
        Some(map) => {
            if !map.contains_key("storage") || map.len() > 1 {
                errors.push(FieldError::not_supported(
                    "spec.capacity",
                    Value::Object(map.clone()),
                    &["storage"],
                ));
            }
            if map.contains_key("storage") {
                storage(errors, "spec.capacity[storage]", map.get("storage"));
            }
        }
    }
    optional_one_of(
        errors,
        "spec.persistentVolumeReclaimPolicy",
        spec.get("persistentVolumeReclaimPolicy").filter(|p| p.as_str() != Some("")),
        &["Delete", "Recycle", "Retain"],
    );
    let class = as_text(spec.get("storageClassName"));
    if !class.is_empty() {
        dns_subdomain(errors, "spec.storageClassName", class);
    }
    optional_one_of(errors, "spec.volumeMode", spec.get("volumeMode"), &["Block", "Filesystem"]);
    let present: Vec<&str> = PERSISTENT_VOLUME_SOURCES
        .iter()
        .copied()
        .filter(|key| spec.get(key).is_some_and(|v| !v.is_null()))
        .collect();
    match present.as_slice() {
        [] => errors.push(FieldError::required("spec", "must specify a volume type")),
        [_, rest @ ..] => {
            for extra in rest {
                errors.push(FieldError::forbidden(
                    format!("spec.{extra}"),
                    "may not specify more than 1 volume type",
                ));
            }
        }
    }
    let required = |errors: &mut Errors, source: &str, field: &str| {
        if let Some(value) = spec.get(source).filter(|v| v.is_object())
            && as_text(value.get(field)).is_empty()
        {
            errors.push(FieldError::required(format!("spec.{source}.{field}"), ""));
        }
    };
    required(errors, "hostPath", "path");
    required(errors, "nfs", "server");
    required(errors, "nfs", "path");
    required(errors, "local", "path");
    required(errors, "csi", "driver");
    required(errors, "csi", "volumeHandle");
    if spec.get("local").is_some_and(|l| !l.is_null())
        && spec.get("nodeAffinity").is_none_or(Value::is_null)
    {
        errors
            .push(FieldError::required("spec.nodeAffinity", "Local volume requires node affinity"));
    }
}

/// A volume's source and mode never change; its node affinity only once set from nothing.
pub(crate) fn persistent_volume_update(errors: &mut Errors, new: &Value, old: &Value) {
    let (new_spec, old_spec) = (spec(new), spec(old));
    let source = |spec: &Value| -> Map<String, Value> {
        PERSISTENT_VOLUME_SOURCES
            .iter()
            .filter_map(|key| spec.get(*key).map(|v| ((*key).to_owned(), v.clone())))
            .collect()
    };
    if !same(Some(&Value::Object(source(new_spec))), Some(&Value::Object(source(old_spec)))) {
        errors.push(FieldError::forbidden(
            "spec.persistentvolumesource",
            "spec.persistentvolumesource is forbidden.",
        ));
    }
    immutable(errors, "volumeMode", new_spec.get("volumeMode"), old_spec.get("volumeMode"));
    if old_spec.get("nodeAffinity").is_some_and(|a| !a.is_null())
        && !same(new_spec.get("nodeAffinity"), old_spec.get("nodeAffinity"))
    {
        errors.push(FieldError::invalid(
            "spec.nodeAffinity",
            new_spec.get("nodeAffinity").cloned().unwrap_or(Value::Null),
            IMMUTABLE,
        ));
    }
}
