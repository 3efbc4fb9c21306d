//! The spec/status split and `metadata.generation`: what upstream's `PrepareForCreate` and
//! `PrepareForUpdate` do for each kind, including the initial status some kinds start with
//! (a Pod's phase and QoS class, a Namespace's `Active`).

use super::access::{self, content};
use crate::Quantity;
use crate::registry::ResourceType;
use serde_json::{Map, Value, json};

/// Kinds whose `metadata.generation` counts changes of the spec: 1 on create, one more on
/// each update that changes anything but metadata and status. HorizontalPodAutoscaler joins
/// them only in later releases (the `HPAGeneration` feature gate).
const GENERATION_TRACKED: &[(&str, &str)] = &[
    ("", "Pod"),
    ("", "ReplicationController"),
    ("apps", "Deployment"),
    ("apps", "ReplicaSet"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("batch", "Job"),
    ("batch", "CronJob"),
    ("policy", "PodDisruptionBudget"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("networking.k8s.io", "NetworkPolicy"),
    ("networking.k8s.io", "Ingress"),
    ("networking.k8s.io", "IngressClass"),
    ("discovery.k8s.io", "EndpointSlice"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
];

pub(super) fn tracks_generation(resource: &ResourceType) -> bool {
    GENERATION_TRACKED.contains(&(resource.group, resource.kind))
}

fn has_status_subresource(resource: &ResourceType) -> bool {
    resource.subresource("status").is_some()
}

fn metadata_mut(object: &mut Value) -> Option<&mut Map<String, Value>> {
    access::object_mut(object, &["metadata"])
}

/// Clears the status a client may not set and sets the initial status and generation.
pub(super) fn prepare_for_create(resource: &ResourceType, object: &mut Value) {
    // Nodes may be created with their status: kubelets register that way.
    if has_status_subresource(resource) && resource.kind != "Node" {
        let status = initial_status(resource, object);
        if let Some(map) = object.as_object_mut() {
            map.insert("status".to_owned(), status);
        }
    }
    if resource.kind == "Namespace" && resource.group.is_empty() {
        require_kubernetes_finalizer(object);
    }
    if tracks_generation(resource)
        && let Some(metadata) = metadata_mut(object)
    {
        metadata.insert("generation".to_owned(), json!(1));
    }
}

/// The status an object starts with, as upstream's `PrepareForCreate` leaves it. Required
/// (non-`omitempty`) fields of the v1 status types appear with their zero values, as
/// kube-apiserver serialises them.
fn initial_status(resource: &ResourceType, object: &Value) -> Value {
    match (resource.group, resource.version, resource.kind) {
        ("", _, "Pod") => pod_initial_status(object),
        ("", _, "Namespace") => json!({"phase": "Active"}),
        ("", _, "PersistentVolume") => persistent_volume_initial_status(object),
        ("", _, "Service") | ("networking.k8s.io", _, "Ingress") => json!({"loadBalancer": {}}),
        ("", _, "ReplicationController") | ("apps", _, "ReplicaSet") => json!({"replicas": 0}),
        ("apps", _, "StatefulSet") => json!({"replicas": 0, "availableReplicas": 0}),
        ("apps", _, "DaemonSet") => json!({
            "currentNumberScheduled": 0,
            "numberMisscheduled": 0,
            "desiredNumberScheduled": 0,
            "numberReady": 0,
        }),
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => {
            json!({"currentReplicas": 0, "desiredReplicas": 0})
        }
        ("autoscaling", _, "HorizontalPodAutoscaler") => json!({"desiredReplicas": 0}),
        ("policy", _, "PodDisruptionBudget") => json!({
            "disruptionsAllowed": 0,
            "currentHealthy": 0,
            "desiredHealthy": 0,
            "expectedPods": 0,
        }),
        ("storage.k8s.io", _, "VolumeAttachment") => json!({"attached": false}),
        ("apiextensions.k8s.io", _, "CustomResourceDefinition") => crd_initial_status(object),
        _ => json!({}),
    }
}

/// `Pending`, the QoS class, and the `PodScheduled=False` condition of a pod held back by
/// scheduling gates.
fn pod_initial_status(pod: &Value) -> Value {
    let mut status = json!({"phase": "Pending", "qosClass": pod_qos_class(pod)});
    if !access::list(pod, &["spec", "schedulingGates"]).is_empty() {
        status["conditions"] = json!([{
            "type": "PodScheduled",
            "status": "False",
            "lastProbeTime": null,
            "lastTransitionTime": null,
            "reason": "SchedulingGated",
            "message": "Scheduling is blocked due to non-empty scheduling gates",
        }]);
    }
    status
}

/// Upstream stamps the phase transition with the time of creation; the caller's
/// `metadata.creationTimestamp` is that time, when it is already set.
fn persistent_volume_initial_status(volume: &Value) -> Value {
    let mut status = json!({"phase": "Pending"});
    let created = access::text(volume, &["metadata", "creationTimestamp"]);
    if !created.is_empty() {
        status["lastPhaseTransitionTime"] = json!(created);
    }
    status
}

/// The accepted names start empty; the storage version is recorded as stored.
fn crd_initial_status(crd: &Value) -> Value {
    let stored: Vec<&str> = access::list(crd, &["spec", "versions"])
        .iter()
        .filter(|version| version.get("storage").and_then(Value::as_bool) == Some(true))
        .map(|version| access::text(version, &["name"]))
        .take(1)
        .collect();
    json!({"acceptedNames": {"plural": "", "kind": ""}, "storedVersions": stored})
}

/// A new namespace always carries the `kubernetes` finalizer.
fn require_kubernetes_finalizer(namespace: &mut Value) {
    let Some(spec) = access::object_mut(namespace, &["spec"]) else { return };
    let finalizers = spec.entry("finalizers").or_insert_with(|| json!([]));
    if finalizers.is_null() {
        *finalizers = json!([]);
    }
    if let Some(list) = finalizers.as_array_mut()
        && !list.iter().any(|f| f == "kubernetes")
    {
        list.push(json!("kubernetes"));
    }
}

/// Keeps what an update of the main resource may not change and counts the generation.
pub(super) fn prepare_for_update(resource: &ResourceType, object: &mut Value, old: &Value) {
    if has_status_subresource(resource)
        && let Some(map) = object.as_object_mut()
    {
        match old.get("status") {
            Some(status) => map.insert("status".to_owned(), status.clone()),
            None => map.remove("status"),
        };
    }
    // As upstream's `BeforeUpdate`: an update that names no UID keeps the stored one.
    if access::text(object, &["metadata", "uid"]).is_empty()
        && let (Some(uid), Some(metadata)) =
            (access::get(old, &["metadata", "uid"]).cloned(), metadata_mut(object))
    {
        metadata.insert("uid".to_owned(), uid);
    }
    match (resource.group, resource.kind) {
        // Finalizers are changed only through the `finalize` subresource.
        ("", "Namespace") => keep_field(object, old, &["spec"], "finalizers"),
        ("", "Service") => keep_allocated_service_fields(object, old),
        _ => {}
    }
    update_generation(resource, object, old);
}

/// Copies `old`'s `key` under `path` into `object` (removing it when `old` has none).
fn keep_field(object: &mut Value, old: &Value, path: &[&str], key: &str) {
    let previous = access::object(old, path).and_then(|map| map.get(key)).cloned();
    let Some(map) = access::object_mut(object, path) else { return };
    match previous {
        Some(value) => map.insert(key.to_owned(), value),
        None => map.remove(key),
    };
}

/// `kubectl apply` sends a Service without the cluster IPs and node ports the server
/// allocated; as upstream's service storage does, the allocated values carry over when the
/// update leaves them out.
fn keep_allocated_service_fields(service: &mut Value, old: &Value) {
    let old_type = access::text(old, &["spec", "type"]);
    let new_type = access::text(service, &["spec", "type"]).to_owned();
    let external_name = |kind: &str| kind == "ExternalName";
    if external_name(old_type) || external_name(&new_type) {
        return;
    }
    let Some(old_spec) = access::object(old, &["spec"]) else { return };
    let Some(spec) = access::object_mut(service, &["spec"]) else { return };
    if access::is_zero(spec, "clusterIP") && !access::is_zero(old_spec, "clusterIP") {
        for key in ["clusterIP", "clusterIPs"] {
            if let Some(value) = old_spec.get(key) {
                spec.insert(key.to_owned(), value.clone());
            }
        }
    }
    for key in ["ipFamilies", "ipFamilyPolicy", "healthCheckNodePort"] {
        if access::is_zero(spec, key)
            && let Some(value) = old_spec.get(key)
        {
            spec.insert(key.to_owned(), value.clone());
        }
    }
    let needs_node_ports = |kind: &str| matches!(kind, "NodePort" | "LoadBalancer");
    if needs_node_ports(old_type) && needs_node_ports(&new_type) {
        keep_node_ports(spec, old_spec);
    }
}

/// A port without a node port keeps the one the old port of the same number and protocol had.
fn keep_node_ports(spec: &mut Map<String, Value>, old_spec: &Map<String, Value>) {
    let old_ports = old_spec.get("ports").and_then(Value::as_array).cloned().unwrap_or_default();
    let protocol = |port: &Value| match access::text(port, &["protocol"]) {
        "" => "TCP".to_owned(),
        other => other.to_owned(),
    };
    for port in access::each_mut(spec, "ports") {
        if !access::is_zero(port, "nodePort") {
            continue;
        }
        let this = Value::Object(port.clone());
        let matching = old_ports
            .iter()
            .find(|old| old.get("port") == this.get("port") && protocol(old) == protocol(&this));
        if let Some(node_port) = matching.and_then(|old| old.get("nodePort")) {
            port.insert("nodePort".to_owned(), node_port.clone());
        }
    }
}

/// An update starts from the stored generation (clients cannot set it); kinds that track it
/// add one when their content changed. The stored object is defaulted and the new one not yet
/// (defaults come after this step), so the comparison defaults a copy first, as upstream
/// compares two decoded, hence defaulted, objects.
fn update_generation(resource: &ResourceType, object: &mut Value, old: &Value) {
    let old_generation = access::get(old, &["metadata", "generation"]).cloned();
    let changed = tracks_generation(resource) && {
        let mut defaulted = object.clone();
        if access::text(&defaulted, &["metadata", "uid"]).is_empty()
            && let (Some(uid), Some(metadata)) =
                (access::get(old, &["metadata", "uid"]), metadata_mut(&mut defaulted))
        {
            metadata.insert("uid".to_owned(), uid.clone());
        }
        super::defaults::apply(resource, &mut defaulted);
        content(&defaulted) != content(old)
    };
    let Some(metadata) = metadata_mut(object) else { return };
    match old_generation {
        Some(generation) if changed => {
            let next = generation.as_i64().unwrap_or(0) + 1;
            metadata.insert("generation".to_owned(), json!(next));
        }
        Some(generation) => {
            metadata.insert("generation".to_owned(), generation);
        }
        None => {
            metadata.remove("generation");
        }
    }
}

/// The pod's QoS class, as upstream's `qos.GetPodQOS`: only CPU and memory count, requests
/// default to limits (as the Pod defaults do), and only positive amounts count.
pub(super) fn pod_qos_class(pod: &Value) -> &'static str {
    let mut requests: Vec<(String, Quantity)> = Vec::new();
    let mut limits: Vec<(String, Quantity)> = Vec::new();
    let mut guaranteed = true;
    let containers = access::list(pod, &["spec", "initContainers"])
        .iter()
        .chain(access::list(pod, &["spec", "containers"]));
    for container in containers {
        let container_limits = compute_amounts(access::object(container, &["resources", "limits"]));
        let mut container_requests =
            compute_amounts(access::object(container, &["resources", "requests"]));
        for (name, amount) in &container_limits {
            if !container_requests.iter().any(|(n, _)| n == name) {
                container_requests.push((name.clone(), *amount));
            }
        }
        add_amounts(&mut requests, container_requests);
        let has = |name: &str| container_limits.iter().any(|(n, _)| n == name);
        if !(has("cpu") && has("memory")) {
            guaranteed = false;
        }
        add_amounts(&mut limits, container_limits);
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    let requests_match_limits = requests
        .iter()
        .all(|(name, request)| limits.iter().any(|(n, limit)| n == name && limit == request));
    if guaranteed && requests_match_limits && requests.len() == limits.len() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The positive CPU and memory amounts of a resource list.
fn compute_amounts(list: Option<&Map<String, Value>>) -> Vec<(String, Quantity)> {
    list.into_iter()
        .flatten()
        .filter(|(name, _)| matches!(name.as_str(), "cpu" | "memory"))
        .filter_map(|(name, value)| {
            let amount = Quantity::parse(value.as_str()?).ok()?;
            (amount.nano_value() > 0).then(|| (name.clone(), amount))
        })
        .collect()
}

fn add_amounts(total: &mut Vec<(String, Quantity)>, amounts: Vec<(String, Quantity)>) {
    for (name, amount) in amounts {
        match total.iter_mut().find(|(n, _)| *n == name) {
            Some((_, sum)) => *sum = *sum + amount,
            None => total.push((name, amount)),
        }
    }
}
