//! Validation of pods and pod templates, as upstream's `ValidatePodSpec` and
//! `ValidatePodUpdate`: containers (names, images, ports, environment, mounts, probes,
//! resources), volumes, policies, and what an update of a running pod may change.

use super::super::defaults::pod::{SpecOwner, VOLUME_SOURCES};
use super::rules::{
    Errors, PORT_RANGE, as_text, config_key, diff, dns_label, dns_subdomain, env_var_name,
    invalid_each, is_port_number, labels, non_negative, one_of, optional_one_of, port_name,
    port_number_or_name, same,
};
use crate::Quantity;
use crate::status::FieldError;
use crate::validation::qualified_name;
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashSet};

const QUANTITY_FORMAT: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// A Pod's spec and the checks only Pods get (not templates).
pub(crate) fn pod(errors: &mut Errors, pod: &Value) {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    pod_spec(errors, "spec", spec, SpecOwner::Pod);
    for key in ["containers", "initContainers"] {
        for (index, container) in list(spec, key).iter().enumerate() {
            let image = as_text(container.get("image"));
            if image.trim() != image {
                errors.push(FieldError::invalid(
                    format!("spec.{key}[{index}].image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
}

/// The checks of a Pod create on top of [`pod`].
pub(crate) fn pod_create(errors: &mut Errors, object: &Value) {
    pod(errors, object);
    let spec = object.get("spec").unwrap_or(&Value::Null);
    if !list(spec, "ephemeralContainers").is_empty() {
        errors.push(FieldError::forbidden("spec.ephemeralContainers", "cannot be set on create"));
    }
    if !as_text(spec.get("nodeName")).is_empty() && !list(spec, "schedulingGates").is_empty() {
        errors.push(FieldError::forbidden(
            "spec.nodeName",
            "cannot be set until all schedulingGates have been cleared",
        ));
    }
}

/// A template's labels, annotations and spec; templates may not hold ephemeral containers.
/// Upstream reports template label errors at `<template>.labels`.
pub(crate) fn pod_template(errors: &mut Errors, path: &str, template: &Value) {
    labels(
        errors,
        &format!("{path}.labels"),
        template.get("metadata").and_then(|m| m.get("labels")),
    );
    let spec = template.get("spec").unwrap_or(&Value::Null);
    let spec_path = format!("{path}.spec");
    pod_spec(errors, &spec_path, spec, SpecOwner::Template);
    if !list(spec, "ephemeralContainers").is_empty() {
        errors.push(FieldError::forbidden(
            format!("{spec_path}.ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
}

fn list<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// `ValidatePodSpec`, in upstream's order.
pub(crate) fn pod_spec(errors: &mut Errors, path: &str, spec: &Value, owner: SpecOwner) {
    if spec.get("terminationGracePeriodSeconds").is_none_or(Value::is_null) {
        errors.push(FieldError::required(format!("{path}.terminationGracePeriodSeconds"), ""));
    }
    let volumes = self::volumes(errors, &format!("{path}.volumes"), list(spec, "volumes"));
    containers(errors, path, spec, &volumes);
    init_containers(errors, path, spec, &volumes);
    host_network_ports(errors, path, spec, owner);
    one_of(
        errors,
        &format!("{path}.restartPolicy"),
        spec.get("restartPolicy"),
        &["Always", "OnFailure", "Never"],
    );
    one_of(
        errors,
        &format!("{path}.dnsPolicy"),
        spec.get("dnsPolicy"),
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
    );
    labels(errors, &format!("{path}.nodeSelector"), spec.get("nodeSelector"));
    dns_config(errors, path, spec);
    for (index, gate) in list(spec, "readinessGates").iter().enumerate() {
        let condition = as_text(gate.get("conditionType"));
        let at = format!("{path}.readinessGates[{index}].conditionType");
        invalid_each(errors, &at, condition, qualified_name(condition));
    }
    scheduling_gates(errors, path, spec);
    named_references(errors, path, spec);
    if let Some(deadline) = spec.get("activeDeadlineSeconds").filter(|v| !v.is_null()) {
        let value = deadline.as_i64().unwrap_or(0);
        if !(1..=i64::from(i32::MAX)).contains(&value) {
            errors.push(FieldError::invalid(
                format!("{path}.activeDeadlineSeconds"),
                deadline.clone(),
                format!("must be between 1 and {}, inclusive", i32::MAX),
            ));
        }
    }
    for key in ["hostname", "subdomain"] {
        let value = as_text(spec.get(key));
        if !value.is_empty() {
            dns_label(errors, &format!("{path}.{key}"), value);
        }
    }
    tolerations(errors, &format!("{path}.tolerations"), list(spec, "tolerations"));
    optional_one_of(
        errors,
        &format!("{path}.preemptionPolicy"),
        spec.get("preemptionPolicy"),
        &["PreemptLowerPriority", "Never"],
    );
}

/// Names of other objects the spec refers to.
fn named_references(errors: &mut Errors, path: &str, spec: &Value) {
    for key in ["serviceAccountName", "nodeName", "priorityClassName", "runtimeClassName"] {
        let value = as_text(spec.get(key));
        if !value.is_empty() {
            dns_subdomain(errors, &format!("{path}.{key}"), value);
        }
    }
}

fn dns_config(errors: &mut Errors, path: &str, spec: &Value) {
    if as_text(spec.get("dnsPolicy")) != "None" {
        return;
    }
    match spec.get("dnsConfig").filter(|c| !c.is_null()) {
        None => errors.push(FieldError::required(
            format!("{path}.dnsConfig"),
            "must provide `dnsConfig` when `dnsPolicy` is None",
        )),
        Some(config) if list(config, "nameservers").is_empty() => {
            errors.push(FieldError::required(
                format!("{path}.dnsConfig.nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            ))
        }
        Some(_) => {}
    }
}

fn scheduling_gates(errors: &mut Errors, path: &str, spec: &Value) {
    let mut seen = HashSet::new();
    for (index, gate) in list(spec, "schedulingGates").iter().enumerate() {
        let name = as_text(gate.get("name"));
        let at = format!("{path}.schedulingGates[{index}]");
        invalid_each(errors, &at, name, qualified_name(name));
        if !seen.insert(name) {
            errors.push(FieldError::duplicate(at, name));
        }
    }
}

/// `ValidateTolerations`.
fn tolerations(errors: &mut Errors, path: &str, tolerations: &[Value]) {
    for (index, toleration) in tolerations.iter().enumerate() {
        let at = format!("{path}[{index}]");
        let key = as_text(toleration.get("key"));
        let operator = as_text(toleration.get("operator"));
        let value = as_text(toleration.get("value"));
        let effect = as_text(toleration.get("effect"));
        if !key.is_empty() {
            invalid_each(errors, &format!("{at}.key"), key, qualified_name(key));
        }
        if key.is_empty() && operator != "Exists" {
            errors.push(FieldError::invalid(
                format!("{at}.operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if toleration.get("tolerationSeconds").is_some_and(|s| !s.is_null())
            && effect != "NoExecute"
        {
            errors.push(FieldError::invalid(
                format!("{at}.effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            "Equal" | "" => {
                let problems = crate::validation::label_value(value);
                if !problems.is_empty() {
                    errors.push(FieldError::invalid(
                        format!("{at}.operator"),
                        value,
                        problems.join(";"),
                    ));
                }
            }
            "Exists" if !value.is_empty() => errors.push(FieldError::invalid(
                format!("{at}.operator"),
                value,
                "value must be empty when `operator` is 'Exists'",
            )),
            "Exists" => {}
            other => errors.push(FieldError::not_supported(
                format!("{at}.operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
        {
            errors.push(FieldError::not_supported(
                format!("{at}.effect"),
                effect,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
    }
}

/// `ValidateVolumes`: returns the names of the volumes that passed, which mounts may use.
fn volumes(errors: &mut Errors, path: &str, volumes: &[Value]) -> HashSet<String> {
    let mut valid = HashSet::new();
    let mut seen = HashSet::new();
    for (index, volume) in volumes.iter().enumerate() {
        let at = format!("{path}[{index}]");
        let mut own = Vec::new();
        volume_source(&mut own, &at, volume);
        let name = as_text(volume.get("name"));
        if name.is_empty() {
            own.push(FieldError::required(format!("{at}.name"), ""));
        } else {
            dns_label(&mut own, &format!("{at}.name"), name);
        }
        if !seen.insert(name.to_owned()) {
            own.push(FieldError::duplicate(format!("{at}.name"), name));
        }
        if own.is_empty() {
            valid.insert(name.to_owned());
        }
        errors.extend(own);
    }
    valid
}

/// Exactly one source, and the required fields of the common ones.
fn volume_source(errors: &mut Errors, path: &str, volume: &Value) {
    let present: Vec<&str> = VOLUME_SOURCES
        .iter()
        .copied()
        .filter(|key| volume.get(key).is_some_and(|v| !v.is_null()))
        .collect();
    match present.as_slice() {
        [] => errors.push(FieldError::required(path, "must specify a volume type")),
        [_, rest @ ..] => {
            for extra in rest {
                errors.push(FieldError::forbidden(
                    format!("{path}.{extra}"),
                    "may not specify more than 1 volume type",
                ));
            }
        }
    }
    let required = |errors: &mut Errors, source: &str, field: &str| {
        if let Some(value) = volume.get(source).filter(|v| v.is_object())
            && as_text(value.get(field)).is_empty()
        {
            errors.push(FieldError::required(format!("{path}.{source}.{field}"), ""));
        }
    };
    required(errors, "hostPath", "path");
    required(errors, "secret", "secretName");
    required(errors, "configMap", "name");
    required(errors, "persistentVolumeClaim", "claimName");
    required(errors, "nfs", "server");
    required(errors, "nfs", "path");
    required(errors, "csi", "driver");
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        let mode = volume.get(source).and_then(|s| s.get("defaultMode")).and_then(Value::as_i64);
        if let Some(mode) = mode.filter(|m| !(0..=0o777).contains(m)) {
            errors.push(FieldError::invalid(
                format!("{path}.{source}.defaultMode"),
                mode,
                "must be a number between 0 and 0777 (octal), both inclusive",
            ));
        }
    }
    if let Some(host_path) = volume.get("hostPath") {
        optional_one_of(
            errors,
            &format!("{path}.hostPath.type"),
            host_path.get("type").filter(|t| t.as_str() != Some("")),
            &[
                "DirectoryOrCreate",
                "Directory",
                "FileOrCreate",
                "File",
                "Socket",
                "CharDevice",
                "BlockDevice",
            ],
        );
    }
}

/// `validateContainers`: at least one; names unique among them.
fn containers(errors: &mut Errors, path: &str, spec: &Value, volumes: &HashSet<String>) {
    let containers = list(spec, "containers");
    let at = format!("{path}.containers");
    if containers.is_empty() {
        errors.push(FieldError::required(at, ""));
        return;
    }
    let mut names = HashSet::new();
    for (index, container) in containers.iter().enumerate() {
        let container_path = format!("{at}[{index}]");
        container_common(errors, &container_path, container, volumes);
        let name = as_text(container.get("name"));
        if !names.insert(name) {
            errors.push(FieldError::duplicate(format!("{container_path}.name"), name));
        }
        probes_and_lifecycle(errors, &container_path, container);
        if container.get("restartPolicy").is_some_and(|p| !p.is_null()) {
            errors.push(FieldError::forbidden(
                format!("{container_path}.restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    host_port_conflicts(errors, &at, containers);
}

/// `validateInitContainers`: names unique among init and regular containers; probes and
/// lifecycle only for restartable (sidecar) init containers.
fn init_containers(errors: &mut Errors, path: &str, spec: &Value, volumes: &HashSet<String>) {
    let mut names: HashSet<&str> =
        list(spec, "containers").iter().map(|c| as_text(c.get("name"))).collect();
    let at = format!("{path}.initContainers");
    for (index, container) in list(spec, "initContainers").iter().enumerate() {
        let container_path = format!("{at}[{index}]");
        container_common(errors, &container_path, container, volumes);
        let restart_policy = container.get("restartPolicy").filter(|p| !p.is_null());
        if let Some(policy) = restart_policy {
            optional_one_of(
                errors,
                &format!("{container_path}.restartPolicy"),
                Some(policy),
                &["Always"],
            );
        }
        let name = as_text(container.get("name"));
        if names.contains(name) {
            errors.push(FieldError::duplicate(format!("{container_path}.name"), name));
        } else if !name.is_empty() {
            names.insert(name);
        }
        host_port_conflicts(errors, &at, std::slice::from_ref(container));
        if restart_policy.and_then(Value::as_str) == Some("Always") {
            probes_and_lifecycle(errors, &container_path, container);
            continue;
        }
        for key in ["lifecycle", "livenessProbe", "readinessProbe", "startupProbe"] {
            if container.get(key).is_some_and(|v| !v.is_null()) {
                errors.push(FieldError::forbidden(
                    format!("{container_path}.{key}"),
                    "may not be set for init containers without restartPolicy=Always",
                ));
            }
        }
    }
}

/// `validateContainerCommon`, in upstream's order.
fn container_common(errors: &mut Errors, path: &str, container: &Value, volumes: &HashSet<String>) {
    let name = as_text(container.get("name"));
    if name.is_empty() {
        errors.push(FieldError::required(format!("{path}.name"), ""));
    } else {
        dns_label(errors, &format!("{path}.name"), name);
    }
    if as_text(container.get("image")).is_empty() {
        errors.push(FieldError::required(format!("{path}.image"), ""));
    }
    one_of(
        errors,
        &format!("{path}.terminationMessagePolicy"),
        container.get("terminationMessagePolicy"),
        &["File", "FallbackToLogsOnError"],
    );
    container_ports(errors, &format!("{path}.ports"), list(container, "ports"));
    env(errors, &format!("{path}.env"), list(container, "env"));
    env_from(errors, &format!("{path}.envFrom"), list(container, "envFrom"));
    volume_mounts(
        errors,
        &format!("{path}.volumeMounts"),
        list(container, "volumeMounts"),
        volumes,
    );
    one_of(
        errors,
        &format!("{path}.imagePullPolicy"),
        container.get("imagePullPolicy"),
        &["Always", "IfNotPresent", "Never"],
    );
    resources(errors, &format!("{path}.resources"), container.get("resources"));
}

/// `validateContainerPorts`: names unique within the container.
fn container_ports(errors: &mut Errors, path: &str, ports: &[Value]) {
    let mut names = HashSet::new();
    for (index, port) in ports.iter().enumerate() {
        let at = format!("{path}[{index}]");
        let name = as_text(port.get("name"));
        if !name.is_empty() {
            let problems = port_name(name);
            if !problems.is_empty() {
                invalid_each(errors, &format!("{at}.name"), name, problems);
            } else if !names.insert(name) {
                errors.push(FieldError::duplicate(format!("{at}.name"), name));
            }
        }
        match port.get("containerPort").and_then(Value::as_i64) {
            None | Some(0) => errors.push(FieldError::required(format!("{at}.containerPort"), "")),
            Some(number) if !is_port_number(number) => {
                errors.push(FieldError::invalid(format!("{at}.containerPort"), number, PORT_RANGE))
            }
            Some(_) => {}
        }
        if let Some(host_port) = port.get("hostPort").and_then(Value::as_i64)
            && host_port != 0
            && !is_port_number(host_port)
        {
            errors.push(FieldError::invalid(format!("{at}.hostPort"), host_port, PORT_RANGE));
        }
        one_of(errors, &format!("{at}.protocol"), port.get("protocol"), &["SCTP", "TCP", "UDP"]);
    }
}

/// Host ports are unique per protocol and host IP across the given containers.
fn host_port_conflicts(errors: &mut Errors, path: &str, containers: &[Value]) {
    let mut seen = HashSet::new();
    for (container_index, container) in containers.iter().enumerate() {
        for (port_index, port) in list(container, "ports").iter().enumerate() {
            let host_port = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
            if host_port == 0 {
                continue;
            }
            let key = format!(
                "{}/{}/{host_port}",
                as_text(port.get("protocol")),
                as_text(port.get("hostIP"))
            );
            if !seen.insert(key.clone()) {
                errors.push(FieldError::duplicate(
                    format!("{path}[{container_index}].ports[{port_index}].hostPort"),
                    key,
                ));
            }
        }
    }
}

/// With host networking a Pod's host ports equal its container ports; a template may leave
/// them unset (they are defaulted on the Pod).
fn host_network_ports(errors: &mut Errors, path: &str, spec: &Value, owner: SpecOwner) {
    if spec.get("hostNetwork").and_then(Value::as_bool) != Some(true) {
        return;
    }
    for (container_index, container) in list(spec, "containers").iter().enumerate() {
        for (port_index, port) in list(container, "ports").iter().enumerate() {
            let host_port = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
            let container_port = port.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
            if (owner == SpecOwner::Pod || host_port != 0) && host_port != container_port {
                errors.push(FieldError::invalid(
                    format!("{path}.containers[{container_index}].ports[{port_index}].hostPort"),
                    host_port,
                    "must match `containerPort` when `hostNetwork` is true",
                ));
            }
        }
    }
}

/// Field paths the downward API may expose through environment variables.
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// Field paths the v1 downward API knows at all (others fail conversion).
const KNOWN_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.schedulerName",
    "status.phase",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// `ValidateEnv`.
fn env(errors: &mut Errors, path: &str, variables: &[Value]) {
    for (index, variable) in variables.iter().enumerate() {
        let at = format!("{path}[{index}]");
        let name = as_text(variable.get("name"));
        if name.is_empty() {
            errors.push(FieldError::required(format!("{at}.name"), ""));
        } else {
            invalid_each(errors, &format!("{at}.name"), name, env_var_name(name));
        }
        if let Some(source) = variable.get("valueFrom").filter(|v| !v.is_null()) {
            let has_value = !as_text(variable.get("value")).is_empty();
            value_from(errors, &format!("{at}.valueFrom"), source, has_value);
        }
    }
}

fn value_from(errors: &mut Errors, path: &str, source: &Value, has_value: bool) {
    let mut count = 0;
    if let Some(field_ref) = source.get("fieldRef").filter(|v| !v.is_null()) {
        count += 1;
        object_field_selector(errors, &format!("{path}.fieldRef"), field_ref);
    }
    if let Some(resource_ref) = source.get("resourceFieldRef").filter(|v| !v.is_null()) {
        count += 1;
        let resource = as_text(resource_ref.get("resource"));
        let supported = [
            "limits.cpu",
            "limits.ephemeral-storage",
            "limits.memory",
            "requests.cpu",
            "requests.ephemeral-storage",
            "requests.memory",
        ];
        let at = format!("{path}.resourceFieldRef.resource");
        if resource.is_empty() {
            errors.push(FieldError::required(at, ""));
        } else if !supported.contains(&resource)
            && !resource.starts_with("requests.hugepages-")
            && !resource.starts_with("limits.hugepages-")
        {
            errors.push(FieldError::not_supported(at, resource, &supported));
        }
    }
    for key in ["configMapKeyRef", "secretKeyRef"] {
        if let Some(selector) = source.get(key).filter(|v| !v.is_null()) {
            count += 1;
            key_selector(errors, &format!("{path}.{key}"), selector);
        }
    }
    if count == 0 {
        errors.push(FieldError::invalid(
            path,
            "",
            "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
        ));
    } else if has_value {
        errors.push(FieldError::invalid(
            path,
            "",
            "may not be specified when `value` is not empty",
        ));
    } else if count > 1 {
        errors.push(FieldError::invalid(
            path,
            "",
            "may not have more than one field specified at a time",
        ));
    }
}

fn object_field_selector(errors: &mut Errors, path: &str, selector: &Value) {
    let api_version = as_text(selector.get("apiVersion"));
    let field_path = as_text(selector.get("fieldPath"));
    if api_version.is_empty() {
        errors.push(FieldError::required(format!("{path}.apiVersion"), ""));
        return;
    }
    if field_path.is_empty() {
        errors.push(FieldError::required(format!("{path}.fieldPath"), ""));
        return;
    }
    if let Some((base, subscript)) = field_path.strip_suffix("']").and_then(|p| p.split_once("['"))
    {
        match base {
            "metadata.annotations" => {
                let key = subscript.to_ascii_lowercase();
                invalid_each(errors, path, &key, qualified_name(&key));
            }
            "metadata.labels" => invalid_each(errors, path, subscript, qualified_name(subscript)),
            _ => errors.push(FieldError::invalid(path, base, "does not support subscript")),
        }
        return;
    }
    if !KNOWN_FIELD_PATHS.contains(&field_path) {
        errors.push(FieldError::invalid(
            format!("{path}.fieldPath"),
            field_path,
            format!("error converting fieldPath: field label not supported: {field_path}"),
        ));
    } else if !ENV_FIELD_PATHS.contains(&field_path) {
        let mut supported = ENV_FIELD_PATHS.to_vec();
        supported.sort_unstable();
        errors.push(FieldError::not_supported(format!("{path}.fieldPath"), field_path, &supported));
    }
}

/// A `configMapKeyRef` or `secretKeyRef`: a valid object name and a config key.
fn key_selector(errors: &mut Errors, path: &str, selector: &Value) {
    let name = as_text(selector.get("name"));
    dns_subdomain(errors, &format!("{path}.name"), name);
    let key = as_text(selector.get("key"));
    if key.is_empty() {
        errors.push(FieldError::required(format!("{path}.key"), ""));
    } else {
        invalid_each(errors, &format!("{path}.key"), key, config_key(key));
    }
}

/// `ValidateEnvFrom`.
fn env_from(errors: &mut Errors, path: &str, sources: &[Value]) {
    for (index, source) in sources.iter().enumerate() {
        let at = format!("{path}[{index}]");
        let prefix = as_text(source.get("prefix"));
        if !prefix.is_empty() {
            invalid_each(errors, &format!("{at}.prefix"), prefix, env_var_name(prefix));
        }
        let mut count = 0;
        for key in ["configMapRef", "secretRef"] {
            if let Some(reference) = source.get(key).filter(|v| !v.is_null()) {
                count += 1;
                let name = as_text(reference.get("name"));
                if name.is_empty() {
                    errors.push(FieldError::required(format!("{at}.{key}.name"), ""));
                } else {
                    dns_subdomain(errors, &format!("{at}.{key}.name"), name);
                }
            }
        }
        match count {
            0 => errors.push(FieldError::invalid(
                path,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            )),
            1 => {}
            _ => errors.push(FieldError::invalid(
                path,
                "",
                "may not have more than one field specified at a time",
            )),
        }
    }
}

/// `ValidateVolumeMounts`.
fn volume_mounts(errors: &mut Errors, path: &str, mounts: &[Value], volumes: &HashSet<String>) {
    let mut mount_paths = HashSet::new();
    for (index, mount) in mounts.iter().enumerate() {
        let at = format!("{path}[{index}]");
        let name = as_text(mount.get("name"));
        if name.is_empty() {
            errors.push(FieldError::required(format!("{at}.name"), ""));
        }
        if !volumes.contains(name) {
            errors.push(FieldError::not_found(format!("{at}.name"), name));
        }
        let mount_path = as_text(mount.get("mountPath"));
        if mount_path.is_empty() {
            errors.push(FieldError::required(format!("{at}.mountPath"), ""));
        }
        if !mount_paths.insert(mount_path) {
            errors.push(FieldError::invalid(
                format!("{at}.mountPath"),
                mount_path,
                "must be unique",
            ));
        }
        for key in ["subPath", "subPathExpr"] {
            let sub_path = as_text(mount.get(key));
            // Upstream reports these at the list's path, not the mount's.
            local_descending_path(errors, &format!("{path}.{key}"), sub_path);
        }
        if !as_text(mount.get("subPath")).is_empty()
            && !as_text(mount.get("subPathExpr")).is_empty()
        {
            errors.push(FieldError::invalid(
                format!("{at}.subPathExpr"),
                as_text(mount.get("subPathExpr")),
                "subPathExpr and subPath are mutually exclusive",
            ));
        }
    }
}

/// `validateLocalDescendingPath`: relative and without `..` steps.
fn local_descending_path(errors: &mut Errors, path: &str, value: &str) {
    if value.is_empty() {
        return;
    }
    if value.starts_with('/') {
        errors.push(FieldError::invalid(path, value, "must be a relative path"));
    }
    if value.split('/').any(|part| part == "..") {
        errors.push(FieldError::invalid(path, value, "must not contain '..'"));
    }
}

/// Probes and lifecycle handlers of a container that may have them.
fn probes_and_lifecycle(errors: &mut Errors, path: &str, container: &Value) {
    if let Some(lifecycle) = container.get("lifecycle").filter(|v| !v.is_null()) {
        for key in ["postStart", "preStop"] {
            if let Some(handler) = lifecycle.get(key).filter(|v| !v.is_null()) {
                self::handler(
                    errors,
                    &format!("{path}.lifecycle.{key}"),
                    handler,
                    &["exec", "httpGet", "tcpSocket", "sleep"],
                );
            }
        }
    }
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(probe) = container.get(key).filter(|v| !v.is_null()) else { continue };
        let at = format!("{path}.{key}");
        handler(errors, &at, probe, &["exec", "httpGet", "tcpSocket", "grpc"]);
        for field in [
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ] {
            non_negative(errors, &format!("{at}.{field}"), probe.get(field));
        }
        let success = probe.get("successThreshold").and_then(Value::as_i64).unwrap_or(0);
        if key != "readinessProbe" && success != 1 {
            errors.push(FieldError::invalid(
                format!("{at}.successThreshold"),
                success,
                "must be 1",
            ));
        }
        if key == "readinessProbe"
            && probe.get("terminationGracePeriodSeconds").is_some_and(|v| !v.is_null())
        {
            errors.push(FieldError::invalid(
                format!("{at}.terminationGracePeriodSeconds"),
                probe["terminationGracePeriodSeconds"].clone(),
                "must not be set for readinessProbes",
            ));
        }
    }
}

/// `validateHandler`: exactly one action among `kinds`.
fn handler(errors: &mut Errors, path: &str, handler: &Value, kinds: &[&str]) {
    let mut count = 0;
    for kind in kinds {
        let Some(action) = handler.get(kind).filter(|v| !v.is_null()) else { continue };
        let at = format!("{path}.{kind}");
        if count > 0 {
            errors.push(FieldError::forbidden(at, "may not specify more than 1 handler type"));
            continue;
        }
        count += 1;
        match *kind {
            "exec" if list(action, "command").is_empty() => {
                errors.push(FieldError::required(format!("{at}.command"), ""))
            }
            "httpGet" => {
                if as_text(action.get("path")).is_empty() {
                    errors.push(FieldError::required(format!("{at}.path"), ""));
                }
                port_number_or_name(errors, &format!("{at}.port"), action.get("port"));
                let scheme = as_text(action.get("scheme"));
                if !matches!(scheme, "HTTP" | "HTTPS") {
                    errors.push(FieldError::not_supported(
                        format!("{at}.scheme"),
                        scheme,
                        &["HTTP", "HTTPS"],
                    ));
                }
            }
            "tcpSocket" | "grpc" => {
                port_number_or_name(errors, &format!("{at}.port"), action.get("port"))
            }
            _ => {}
        }
    }
    if count == 0 {
        errors.push(FieldError::required(path, "must specify a handler type"));
    }
}

/// Whether a resource name is Kubernetes' own (no prefix, or a `kubernetes.io` one).
fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_huge_pages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

/// `validateContainerResourceName`.
fn resource_name(errors: &mut Errors, path: &str, name: &str) {
    invalid_each(errors, path, name, qualified_name(name));
    let standard = matches!(name, "cpu" | "memory" | "ephemeral-storage") || is_huge_pages(name);
    if !name.contains('/') && !standard {
        errors.push(FieldError::invalid(path, name, "must be a standard resource for containers"));
    }
}

/// Parses a quantity, reporting it at `path` when it does not parse or is negative; extended
/// resources must be whole numbers.
fn resource_amount(errors: &mut Errors, path: &str, name: &str, value: &Value) -> Option<Quantity> {
    let text = value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
    let Ok(amount) = Quantity::parse(&text) else {
        errors.push(FieldError::invalid(path, value.clone(), QUANTITY_FORMAT));
        return None;
    };
    if amount.nano_value() < 0 {
        errors.push(FieldError::invalid(path, amount.to_string(), super::rules::NON_NEGATIVE));
    }
    if !is_native_resource(name) && amount.milli_value() % 1000 != 0 {
        errors.push(FieldError::invalid(path, amount.to_string(), "must be an integer"));
    }
    Some(amount)
}

/// `ValidateContainerResourceRequirements`: names, amounts, and requests within limits.
fn resources(errors: &mut Errors, path: &str, resources: Option<&Value>) {
    let Some(resources) = resources else { return };
    let empty = Map::new();
    let entries = |key: &str| resources.get(key).and_then(Value::as_object).unwrap_or(&empty);
    let (limits, requests) = (entries("limits"), entries("requests"));
    let mut limit_amounts = Vec::new();
    for (name, value) in limits {
        let at = format!("{path}.limits[{name}]");
        resource_name(errors, &at, name);
        if let Some(amount) = resource_amount(errors, &at, name, value) {
            limit_amounts.push((name.as_str(), amount));
        }
    }
    for (name, value) in requests {
        let at = format!("{path}.requests[{name}]");
        resource_name(errors, &at, name);
        let Some(request) = resource_amount(errors, &at, name, value) else { continue };
        let overcommit = is_native_resource(name) && !is_huge_pages(name);
        match limit_amounts.iter().find(|(n, _)| n == name) {
            Some((_, limit)) if !overcommit && request != *limit => {
                errors.push(FieldError::invalid(
                    format!("{path}.requests"),
                    request.to_string(),
                    format!("must be equal to {name} limit of {limit}"),
                ))
            }
            Some((_, limit)) if request > *limit => errors.push(FieldError::invalid(
                format!("{path}.requests"),
                request.to_string(),
                format!("must be less than or equal to {name} limit of {limit}"),
            )),
            None if !overcommit => errors.push(FieldError::required(
                format!("{path}.limits"),
                "Limit must be set for non overcommitable resources",
            )),
            _ => {}
        }
    }
}

/// The fields an update of a Pod may change, as upstream lists them.
const UPDATABLE_POD_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `ValidatePodUpdate` after the metadata checks: only images, the active deadline (down),
/// tolerations (additions) and scheduling gates (removals) may change.
pub(crate) fn pod_update(errors: &mut Errors, new: &Value, old: &Value) {
    pod(errors, new);
    let new_spec = new.get("spec").unwrap_or(&Value::Null);
    let old_spec = old.get("spec").unwrap_or(&Value::Null);
    for key in ["containers", "initContainers"] {
        let (new_list, old_list) = (list(new_spec, key), list(old_spec, key));
        if new_list.len() != old_list.len() {
            errors.push(FieldError::forbidden(
                format!("spec.{key}"),
                "pod updates may not add or remove containers",
            ));
            return;
        }
    }
    if !active_deadline_update(errors, new_spec, old_spec) {
        return;
    }
    added_tolerations_only(errors, new_spec, old_spec);
    removed_scheduling_gates_only(errors, new_spec, old_spec);
    if same(Some(new_spec), Some(old_spec)) {
        return;
    }
    let munged = munged_pod_spec(new_spec, old_spec);
    if !same(Some(&munged), Some(old_spec)) {
        let message = format!(
            "pod updates may not change fields other than {UPDATABLE_POD_FIELDS}\n{}",
            diff(old_spec, &munged)
        );
        errors.push(FieldError::forbidden("spec", message));
    }
}

/// The deadline may be set, or lowered; it may not be raised or removed. False stops the
/// update's validation, as upstream returns early.
fn active_deadline_update(errors: &mut Errors, new_spec: &Value, old_spec: &Value) -> bool {
    let path = "spec.activeDeadlineSeconds";
    let new_value = new_spec.get("activeDeadlineSeconds").and_then(Value::as_i64);
    let old_value = old_spec.get("activeDeadlineSeconds").and_then(Value::as_i64);
    match (new_value, old_value) {
        (Some(new), _) if !(0..=i64::from(i32::MAX)).contains(&new) => {
            errors.push(FieldError::invalid(
                path,
                new,
                format!("must be between 0 and {}, inclusive", i32::MAX),
            ));
            false
        }
        (Some(new), Some(old)) if old < new => {
            errors.push(FieldError::invalid(
                path,
                new,
                "must be less than or equal to previous value",
            ));
            false
        }
        (None, Some(_)) => {
            errors.push(FieldError::invalid(
                path,
                Value::Null,
                "must not update from a positive integer to nil value",
            ));
            true
        }
        _ => true,
    }
}

/// Existing tolerations stay (their `tolerationSeconds` may change); new ones may be added.
fn added_tolerations_only(errors: &mut Errors, new_spec: &Value, old_spec: &Value) {
    let without_seconds = |t: &Value| {
        let mut t = t.clone();
        if let Some(map) = t.as_object_mut() {
            map.remove("tolerationSeconds");
        }
        t
    };
    let new_list: Vec<Value> = list(new_spec, "tolerations").iter().map(without_seconds).collect();
    for old in list(old_spec, "tolerations") {
        if !new_list.iter().any(|new| same(Some(new), Some(&without_seconds(old)))) {
            errors.push(FieldError::forbidden(
                "spec.tolerations",
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            return;
        }
    }
}

/// Scheduling gates may only be removed.
fn removed_scheduling_gates_only(errors: &mut Errors, new_spec: &Value, old_spec: &Value) {
    let old_names: BTreeSet<&str> =
        list(old_spec, "schedulingGates").iter().map(|g| as_text(g.get("name"))).collect();
    for (index, gate) in list(new_spec, "schedulingGates").iter().enumerate() {
        let name = as_text(gate.get("name"));
        if !old_names.contains(name) {
            errors.push(FieldError::forbidden(
                format!("spec.schedulingGates[{index}].name"),
                format!("only deletion is allowed, but found new scheduling gate '{name}'"),
            ));
        }
    }
}

/// The new spec with the updatable fields taken from the old one.
fn munged_pod_spec(new_spec: &Value, old_spec: &Value) -> Value {
    let mut munged = new_spec.clone();
    for key in ["containers", "initContainers"] {
        let old_images: Vec<Value> = list(old_spec, key)
            .iter()
            .map(|c| c.get("image").cloned().unwrap_or(Value::Null))
            .collect();
        if let Some(containers) = munged.get_mut(key).and_then(Value::as_array_mut) {
            for (container, image) in containers.iter_mut().zip(old_images) {
                if let Some(map) = container.as_object_mut() {
                    map.insert("image".to_owned(), image);
                }
            }
        }
    }
    if let Some(map) = munged.as_object_mut() {
        for key in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
            match old_spec.get(key) {
                Some(value) => map.insert(key.to_owned(), value.clone()),
                None => map.remove(key),
            };
        }
        let old_grace = old_spec.get("terminationGracePeriodSeconds").and_then(Value::as_i64);
        let new_grace = map.get("terminationGracePeriodSeconds").and_then(Value::as_i64);
        if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
            map.insert("terminationGracePeriodSeconds".to_owned(), json!(old_grace));
        }
    }
    munged
}
