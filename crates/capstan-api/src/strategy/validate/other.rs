//! Validation of RBAC roles and bindings, Lease, PriorityClass, Ingress, NetworkPolicy,
//! HorizontalPodAutoscaler and PodDisruptionBudget, in the essentials upstream checks.

use super::rules::{
    Errors, PORT_RANGE, as_text, dns_subdomain, int_or_percent, invalid_each, is_port_number,
    label_selector, non_negative, one_of, optional_one_of, port_name,
};
use crate::status::FieldError;
use crate::validation::{dns1035_label, path_segment};
use serde_json::Value;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn spec(object: &Value) -> &Value {
    object.get("spec").unwrap_or(&Value::Null)
}

fn list<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// `ValidatePolicyRule` for each rule of a Role (`namespaced`) or ClusterRole.
pub(crate) fn role(errors: &mut Errors, object: &Value, namespaced: bool) {
    for (index, rule) in list(object, "rules").iter().enumerate() {
        let path = format!("rules[{index}]");
        if list(rule, "verbs").is_empty() {
            errors.push(FieldError::required(
                format!("{path}.verbs"),
                "verbs must contain at least one value",
            ));
        }
        let urls = list(rule, "nonResourceURLs");
        if !urls.is_empty() {
            if namespaced {
                errors.push(FieldError::invalid(
                    format!("{path}.nonResourceURLs"),
                    Value::from(urls.to_vec()),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            let any = |key: &str| !list(rule, key).is_empty();
            if any("apiGroups") || any("resources") || any("resourceNames") {
                errors.push(FieldError::invalid(
                    format!("{path}.nonResourceURLs"),
                    Value::from(urls.to_vec()),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if list(rule, "apiGroups").is_empty() {
            errors.push(FieldError::required(
                format!("{path}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if list(rule, "resources").is_empty() {
            errors.push(FieldError::required(
                format!("{path}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
}

/// `ValidateRoleBinding` (`namespaced`) and `ValidateClusterRoleBinding`.
pub(crate) fn role_binding(errors: &mut Errors, object: &Value, namespaced: bool) {
    let role_ref = object.get("roleRef").unwrap_or(&Value::Null);
    let group = as_text(role_ref.get("apiGroup"));
    if group != RBAC_GROUP {
        errors.push(FieldError::not_supported("roleRef.apiGroup", group, &[RBAC_GROUP]));
    }
    let kinds: &[&str] = if namespaced { &["Role", "ClusterRole"] } else { &["ClusterRole"] };
    let kind = as_text(role_ref.get("kind"));
    if !kinds.contains(&kind) {
        errors.push(FieldError::not_supported("roleRef.kind", kind, kinds));
    }
    let name = as_text(role_ref.get("name"));
    if name.is_empty() {
        errors.push(FieldError::required("roleRef.name", ""));
    } else {
        invalid_each(errors, "roleRef.name", name, path_segment(name));
    }
    for (index, subject) in list(object, "subjects").iter().enumerate() {
        self::subject(errors, &format!("subjects[{index}]"), subject, namespaced);
    }
}

fn subject(errors: &mut Errors, path: &str, subject: &Value, namespaced: bool) {
    let name = as_text(subject.get("name"));
    if name.is_empty() {
        errors.push(FieldError::required(format!("{path}.name"), ""));
    }
    let group = as_text(subject.get("apiGroup"));
    match as_text(subject.get("kind")) {
        "ServiceAccount" => {
            if !name.is_empty() {
                dns_subdomain(errors, &format!("{path}.name"), name);
            }
            if !group.is_empty() {
                errors.push(FieldError::not_supported(format!("{path}.apiGroup"), group, &[""]));
            }
            if !namespaced && as_text(subject.get("namespace")).is_empty() {
                errors.push(FieldError::required(format!("{path}.namespace"), ""));
            }
        }
        "User" | "Group" => {
            if group != RBAC_GROUP {
                errors.push(FieldError::not_supported(
                    format!("{path}.apiGroup"),
                    group,
                    &[RBAC_GROUP],
                ));
            }
        }
        other => errors.push(FieldError::not_supported(
            format!("{path}.kind"),
            other,
            &["ServiceAccount", "User", "Group"],
        )),
    }
}

/// The role a binding grants never changes.
pub(crate) fn role_binding_update(errors: &mut Errors, new: &Value, old: &Value) {
    let (new_ref, old_ref) = (new.get("roleRef"), old.get("roleRef"));
    if new_ref != old_ref {
        errors.push(FieldError::invalid(
            "roleRef",
            new_ref.cloned().unwrap_or(Value::Null),
            "cannot change roleRef",
        ));
    }
}

pub(crate) fn lease(errors: &mut Errors, object: &Value) {
    let spec = spec(object);
    if let Some(duration) =
        spec.get("leaseDurationSeconds").filter(|d| d.as_i64().is_some_and(|n| n <= 0))
    {
        errors.push(FieldError::invalid(
            "spec.leaseDurationSeconds",
            duration.clone(),
            "must be greater than 0",
        ));
    }
    non_negative(errors, "spec.leaseTransitions", spec.get("leaseTransitions"));
}

/// User-defined priorities stay below one billion; `system-` names are reserved.
pub(crate) fn priority_class(errors: &mut Errors, object: &Value) {
    const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;
    let name = as_text(object.get("metadata").and_then(|m| m.get("name")));
    match object.get("value").and_then(Value::as_i64) {
        None => errors.push(FieldError::required("value", "")),
        Some(_) if name.starts_with("system-") && !matches!(name, "system-node-critical" | "system-cluster-critical") => {
            errors.push(FieldError::forbidden(
                "metadata.name",
                format!("priority class names with 'system-' prefix are reserved for system use only. error: {name} is not a known system priority class"),
            ))
        }
        Some(value) if !name.starts_with("system-") && value > HIGHEST_USER_PRIORITY => errors.push(FieldError::forbidden(
            "value",
            format!("maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"),
        )),
        Some(_) => {}
    }
    optional_one_of(
        errors,
        "preemptionPolicy",
        object.get("preemptionPolicy"),
        &["PreemptLowerPriority", "Never"],
    );
}

pub(crate) fn priority_class_update(errors: &mut Errors, new: &Value, old: &Value) {
    if new.get("value") != old.get("value") {
        errors.push(FieldError::forbidden("value", "may not be changed in an update."));
    }
    super::rules::immutable(
        errors,
        "preemptionPolicy",
        new.get("preemptionPolicy"),
        old.get("preemptionPolicy"),
    );
}

/// `ValidateIngressSpec`, in its essentials: rules or a default backend; hosts, paths and
/// backends well formed.
pub(crate) fn ingress(errors: &mut Errors, object: &Value) {
    let spec = spec(object);
    let rules = list(spec, "rules");
    let default_backend = spec.get("defaultBackend").filter(|b| !b.is_null());
    if rules.is_empty() && default_backend.is_none() {
        errors.push(FieldError::invalid(
            "spec",
            Value::from(rules.to_vec()),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(backend) = default_backend {
        ingress_backend(errors, "spec.defaultBackend", backend);
    }
    let class = as_text(spec.get("ingressClassName"));
    if !class.is_empty() {
        dns_subdomain(errors, "spec.ingressClassName", class);
    }
    for (index, rule) in rules.iter().enumerate() {
        let path = format!("spec.rules[{index}]");
        let host = as_text(rule.get("host"));
        if !host.is_empty() {
            let bare = host.strip_prefix("*.").unwrap_or(host);
            dns_subdomain(errors, &format!("{path}.host"), bare);
        }
        let Some(http) = rule.get("http").filter(|h| !h.is_null()) else { continue };
        let paths = list(http, "paths");
        if paths.is_empty() {
            errors.push(FieldError::required(format!("{path}.http.paths"), ""));
        }
        for (path_index, entry) in paths.iter().enumerate() {
            let at = format!("{path}.http.paths[{path_index}]");
            let path_type = as_text(entry.get("pathType"));
            match path_type {
                "" => errors.push(FieldError::required(
                    format!("{at}.pathType"),
                    "pathType must be specified",
                )),
                "Exact" | "Prefix" | "ImplementationSpecific" => {}
                other => errors.push(FieldError::not_supported(
                    format!("{at}.pathType"),
                    other,
                    &["Exact", "ImplementationSpecific", "Prefix"],
                )),
            }
            let text = as_text(entry.get("path"));
            if matches!(path_type, "Exact" | "Prefix") && !text.starts_with('/') {
                errors.push(FieldError::invalid(
                    format!("{at}.path"),
                    text,
                    "must be an absolute path",
                ));
            }
            ingress_backend(
                errors,
                &format!("{at}.backend"),
                entry.get("backend").unwrap_or(&Value::Null),
            );
        }
    }
}

fn ingress_backend(errors: &mut Errors, path: &str, backend: &Value) {
    let service = backend.get("service").filter(|s| !s.is_null());
    let resource = backend.get("resource").filter(|r| !r.is_null());
    match (service, resource) {
        (Some(_), Some(_)) => errors.push(FieldError::invalid(
            path,
            backend.clone(),
            "cannot set both resource and service backends",
        )),
        (None, None) => errors.push(FieldError::invalid(
            path,
            backend.clone(),
            "resource or service backend is required",
        )),
        (Some(service), None) => {
            let name = as_text(service.get("name"));
            invalid_each(errors, &format!("{path}.service.name"), name, dns1035_label(name));
            let port = service.get("port").unwrap_or(&Value::Null);
            let port_name_value = as_text(port.get("name"));
            let number = port.get("number").and_then(Value::as_i64).unwrap_or(0);
            match (port_name_value.is_empty(), number) {
                (true, 0) => errors.push(FieldError::invalid(
                    format!("{path}.service.port"),
                    port.clone(),
                    "port name or number is required",
                )),
                (false, n) if n != 0 => errors.push(FieldError::invalid(
                    format!("{path}.service.port"),
                    port.clone(),
                    "cannot set both port name & port number",
                )),
                (false, _) => invalid_each(
                    errors,
                    &format!("{path}.service.port.name"),
                    port_name_value,
                    port_name(port_name_value),
                ),
                (true, n) if !is_port_number(n) => errors.push(FieldError::invalid(
                    format!("{path}.service.port.number"),
                    n,
                    PORT_RANGE,
                )),
                _ => {}
            }
        }
        (None, Some(_)) => {}
    }
}

/// `ValidateNetworkPolicySpec`, in its essentials.
pub(crate) fn network_policy(errors: &mut Errors, object: &Value) {
    let spec = spec(object);
    label_selector(errors, "spec.podSelector", spec.get("podSelector").unwrap_or(&Value::Null));
    for direction in ["ingress", "egress"] {
        let peers_key = if direction == "ingress" { "from" } else { "to" };
        for (index, rule) in list(spec, direction).iter().enumerate() {
            let path = format!("spec.{direction}[{index}]");
            for (port_index, port) in list(rule, "ports").iter().enumerate() {
                network_policy_port(errors, &format!("{path}.ports[{port_index}]"), port);
            }
            for (peer_index, peer) in list(rule, peers_key).iter().enumerate() {
                let at = format!("{path}.{peers_key}[{peer_index}]");
                for key in ["podSelector", "namespaceSelector"] {
                    if let Some(selector) = peer.get(key).filter(|s| !s.is_null()) {
                        label_selector(errors, &format!("{at}.{key}"), selector);
                    }
                }
            }
        }
    }
    let types = list(spec, "policyTypes");
    for (index, kind) in types.iter().enumerate() {
        let kind = kind.as_str().unwrap_or("");
        if !matches!(kind, "Ingress" | "Egress") {
            errors.push(FieldError::not_supported(
                format!("spec.policyTypes[{index}]"),
                kind,
                &["Ingress", "Egress"],
            ));
        }
    }
    if types.len() > 2 {
        errors.push(FieldError::invalid(
            "spec.policyTypes",
            Value::from(types.to_vec()),
            "may not specify more than two policyTypes",
        ));
    }
}

fn network_policy_port(errors: &mut Errors, path: &str, port: &Value) {
    optional_one_of(
        errors,
        &format!("{path}.protocol"),
        port.get("protocol"),
        &["SCTP", "TCP", "UDP"],
    );
    match port.get("port") {
        Some(Value::String(name)) => {
            invalid_each(errors, &format!("{path}.port"), name, port_name(name))
        }
        Some(number) if !number.is_null() && !number.as_i64().is_some_and(is_port_number) => {
            errors.push(FieldError::invalid(format!("{path}.port"), number.clone(), PORT_RANGE))
        }
        _ => {}
    }
    if let Some(end) = port.get("endPort").and_then(Value::as_i64) {
        let start = port.get("port").and_then(Value::as_i64);
        match start {
            None => errors.push(FieldError::required(
                format!("{path}.port"),
                "When endPort is specified, port must be specified",
            )),
            Some(start) if end < start => errors.push(FieldError::invalid(
                format!("{path}.endPort"),
                end,
                "must be greater than or equal to `port`",
            )),
            Some(_) if !is_port_number(end) => {
                errors.push(FieldError::invalid(format!("{path}.endPort"), end, PORT_RANGE))
            }
            Some(_) => {}
        }
    }
}

/// `ValidateHorizontalPodAutoscalerSpec`, in its essentials (both versions).
pub(crate) fn horizontal_pod_autoscaler(errors: &mut Errors, object: &Value) {
    let spec = spec(object);
    let min = spec.get("minReplicas").and_then(Value::as_i64);
    if let Some(min) = min.filter(|m| *m < 1) {
        errors.push(FieldError::invalid(
            "spec.minReplicas",
            min,
            "must be greater than or equal to 1",
        ));
    }
    let max = spec.get("maxReplicas").and_then(Value::as_i64).unwrap_or(0);
    if max < 1 {
        errors.push(FieldError::invalid("spec.maxReplicas", max, "must be greater than 0"));
    }
    if min.is_some_and(|min| max < min) {
        errors.push(FieldError::invalid(
            "spec.maxReplicas",
            max,
            "must be greater than or equal to `minReplicas`",
        ));
    }
    let target = spec.get("scaleTargetRef").unwrap_or(&Value::Null);
    for key in ["kind", "name"] {
        let value = as_text(target.get(key));
        let path = format!("spec.scaleTargetRef.{key}");
        if value.is_empty() {
            errors.push(FieldError::required(path, ""));
        } else {
            invalid_each(errors, &path, value, path_segment(value));
        }
    }
    if let Some(cpu) = spec.get("targetCPUUtilizationPercentage").and_then(Value::as_i64)
        && cpu < 1
    {
        errors.push(FieldError::invalid(
            "spec.targetCPUUtilizationPercentage",
            cpu,
            "must be greater than 0",
        ));
    }
}

/// `ValidatePodDisruptionBudgetSpec`.
pub(crate) fn pod_disruption_budget(errors: &mut Errors, object: &Value) {
    let spec = spec(object);
    let set = |key: &str| spec.get(key).filter(|v| !v.is_null());
    if set("minAvailable").is_some() && set("maxUnavailable").is_some() {
        errors.push(FieldError::invalid(
            "spec",
            spec.clone(),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    for key in ["minAvailable", "maxUnavailable"] {
        if let Some(value) = set(key) {
            int_or_percent(errors, &format!("spec.{key}"), Some(value), true);
        }
    }
    if let Some(selector) = set("selector") {
        label_selector(errors, "spec.selector", selector);
    }
    if let Some(policy) = set("unhealthyPodEvictionPolicy") {
        one_of(
            errors,
            "spec.unhealthyPodEvictionPolicy",
            Some(policy),
            &["AlwaysAllow", "IfHealthyBudget"],
        );
    }
}
