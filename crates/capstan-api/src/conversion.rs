//! Versions that share storage, and conversion between them.
//!
//! Upstream keeps one stored form per resource and converts on the way in and out: the
//! HorizontalPodAutoscalers of `autoscaling/v1` and `autoscaling/v2` are the same objects
//! (stored as v2), and so are the Events of the core group and of `events.k8s.io/v1` (stored
//! in the core form, under the core group's place). Everything else has one version.
//!
//! What one version cannot say travels in annotations, as upstream does for HPAs
//! (`autoscaling.alpha.kubernetes.io/metrics`, `…/behavior`, `…/conditions` and their
//! `current-metrics` status counterpart), so a round trip through v1 loses nothing.

use crate::registry::{self, ResourceType};
use serde_json::{Map, Value, json};

const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";

/// The type whose form objects of `resource` are stored in.
pub fn storage_type(resource: &ResourceType) -> &'static ResourceType {
    let storage = match (resource.group, resource.kind) {
        ("autoscaling", "HorizontalPodAutoscaler") => {
            registry::find("autoscaling", "v2", resource.plural)
        }
        ("events.k8s.io", "Event") => registry::find("", "v1", "events"),
        _ => None,
    };
    storage
        .or_else(|| registry::find(resource.group, resource.version, resource.plural))
        .unwrap_or(&registry::builtin()[0])
}

/// `object` (of whatever served version its `apiVersion` names) in the form of `to`.
/// Objects already in that form, and kinds with one form, only get `to`'s `apiVersion`
/// and `kind`.
pub fn convert(object: &Value, to: &ResourceType) -> Value {
    let from = object.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let target = to.api_version();
    let mut converted = match (to.kind, from, target.as_str()) {
        ("HorizontalPodAutoscaler", "autoscaling/v2", "autoscaling/v1") => hpa_to_v1(object),
        ("HorizontalPodAutoscaler", "autoscaling/v1", "autoscaling/v2") => hpa_to_v2(object),
        ("Event", "v1", "events.k8s.io/v1") => rename(object, CORE_TO_EVENTS),
        ("Event", "events.k8s.io/v1", "v1") => rename(object, EVENTS_TO_CORE),
        _ => object.clone(),
    };
    if let Some(fields) = converted.as_object_mut() {
        fields.insert("apiVersion".into(), json!(target));
        fields.insert("kind".into(), json!(to.kind));
    }
    converted
}

/// Core v1 Event fields and their events.k8s.io/v1 names.
const CORE_TO_EVENTS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

const EVENTS_TO_CORE: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Renames top-level fields, keeping their order.
fn rename(object: &Value, names: &[(&str, &str)]) -> Value {
    let Some(fields) = object.as_object() else { return object.clone() };
    let renamed: Map<String, Value> = fields
        .iter()
        .map(|(key, value)| {
            let new_key = names.iter().find(|(old, _)| old == key).map_or(key.as_str(), |(_, n)| n);
            (new_key.to_owned(), value.clone())
        })
        .collect();
    Value::Object(renamed)
}

fn is_cpu_utilization(metric: &Value) -> bool {
    metric.get("type").and_then(Value::as_str) == Some("Resource")
        && metric.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
        && metric.pointer("/resource/target/type").and_then(Value::as_str) == Some("Utilization")
}

fn annotations(object: &mut Value) -> Option<&mut Map<String, Value>> {
    let metadata = object.as_object_mut()?.entry("metadata").or_insert_with(|| json!({}));
    let annotations = metadata.as_object_mut()?.entry("annotations").or_insert_with(|| json!({}));
    annotations.as_object_mut()
}

fn hpa_to_v1(object: &Value) -> Value {
    let mut v1 = object.clone();
    let spec = object.get("spec").cloned().unwrap_or_else(|| json!({}));
    let status = object.get("status").cloned();
    let metrics: Vec<Value> =
        spec.get("metrics").and_then(Value::as_array).cloned().unwrap_or_default();
    let (cpu, others): (Vec<Value>, Vec<Value>) = metrics.into_iter().partition(is_cpu_utilization);
    let mut new_spec = Map::new();
    for field in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
        if let Some(value) = spec.get(field) {
            new_spec.insert(field.into(), value.clone());
        }
    }
    if let Some(target) = cpu.first().and_then(|m| m.pointer("/resource/target/averageUtilization"))
    {
        new_spec.insert("targetCPUUtilizationPercentage".into(), target.clone());
    }
    v1["spec"] = Value::Object(new_spec);
    let mut extra = Vec::new();
    if !others.is_empty() {
        extra.push((METRICS, Value::Array(others).to_string()));
    }
    if let Some(behavior) = spec.get("behavior") {
        extra.push((BEHAVIOR, behavior.to_string()));
    }
    if let Some(status) = status {
        let mut new_status = Map::new();
        for field in ["observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas"] {
            if let Some(value) = status.get(field) {
                new_status.insert(field.into(), value.clone());
            }
        }
        let current: Vec<Value> =
            status.get("currentMetrics").and_then(Value::as_array).cloned().unwrap_or_default();
        let (cpu, others): (Vec<Value>, Vec<Value>) = current.into_iter().partition(|m| {
            m.get("type").and_then(Value::as_str) == Some("Resource")
                && m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
        });
        if let Some(value) =
            cpu.first().and_then(|m| m.pointer("/resource/current/averageUtilization"))
        {
            new_status.insert("currentCPUUtilizationPercentage".into(), value.clone());
        }
        if !others.is_empty() {
            extra.push((CURRENT_METRICS, Value::Array(others).to_string()));
        }
        if let Some(conditions) = status.get("conditions") {
            extra.push((CONDITIONS, conditions.to_string()));
        }
        v1["status"] = Value::Object(new_status);
    }
    if !extra.is_empty()
        && let Some(annotations) = annotations(&mut v1)
    {
        for (key, value) in extra {
            annotations.insert(key.into(), json!(value));
        }
    }
    v1
}

fn hpa_to_v2(object: &Value) -> Value {
    let mut v2 = object.clone();
    let mut taken = |key: &str| -> Option<Value> {
        let annotations = v2.pointer_mut("/metadata/annotations")?.as_object_mut()?;
        let text = annotations.remove(key)?;
        serde_json::from_str(text.as_str()?).ok()
    };
    let (metrics, behavior) = (taken(METRICS), taken(BEHAVIOR));
    let (current_metrics, conditions) = (taken(CURRENT_METRICS), taken(CONDITIONS));
    if v2.pointer("/metadata/annotations").and_then(Value::as_object).is_some_and(Map::is_empty)
        && let Some(metadata) = v2.get_mut("metadata").and_then(Value::as_object_mut)
    {
        metadata.remove("annotations");
    }
    let spec = object.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut new_spec = Map::new();
    for field in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
        if let Some(value) = spec.get(field) {
            new_spec.insert(field.into(), value.clone());
        }
    }
    let mut all_metrics = Vec::new();
    if let Some(target) = spec.get("targetCPUUtilizationPercentage") {
        all_metrics.push(json!({
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}},
        }));
    }
    if let Some(Value::Array(others)) = metrics {
        all_metrics.extend(others);
    }
    if !all_metrics.is_empty() {
        new_spec.insert("metrics".into(), Value::Array(all_metrics));
    }
    if let Some(behavior) = behavior {
        new_spec.insert("behavior".into(), behavior);
    }
    v2["spec"] = Value::Object(new_spec);
    if let Some(status) = object.get("status") {
        let mut new_status = Map::new();
        for field in ["observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas"] {
            if let Some(value) = status.get(field) {
                new_status.insert(field.into(), value.clone());
            }
        }
        let mut current = Vec::new();
        if let Some(value) = status.get("currentCPUUtilizationPercentage") {
            current.push(json!({
                "type": "Resource",
                "resource": {"name": "cpu", "current": {"averageUtilization": value}},
            }));
        }
        if let Some(Value::Array(others)) = current_metrics {
            current.extend(others);
        }
        if !current.is_empty() {
            new_status.insert("currentMetrics".into(), Value::Array(current));
        }
        if let Some(conditions) = conditions {
            new_status.insert("conditions".into(), conditions);
        }
        v2["status"] = Value::Object(new_status);
    }
    v2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(group: &str, version: &str, plural: &str) -> &'static ResourceType {
        registry::find(group, version, plural).unwrap()
    }

    #[test]
    fn shared_storage_types() {
        let hpa_v1 = find("autoscaling", "v1", "horizontalpodautoscalers");
        assert_eq!(storage_type(hpa_v1).version, "v2");
        assert_eq!(storage_type(find("events.k8s.io", "v1", "events")).group, "");
        let pods = find("", "v1", "pods");
        assert_eq!(storage_type(pods), pods);
    }

    #[test]
    fn hpas_round_trip_through_v1() {
        let v2 = json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1Gi"}}},
                ],
            },
            "status": {"currentReplicas": 2, "desiredReplicas": 2,
                "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 40}}}]},
        });
        let v1 = convert(&v2, find("autoscaling", "v1", "horizontalpodautoscalers"));
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 40);
        assert!(v1["metadata"]["annotations"][METRICS].as_str().unwrap().contains("memory"));
        let back = convert(&v1, find("autoscaling", "v2", "horizontalpodautoscalers"));
        assert_eq!(back, v2);
    }

    #[test]
    fn events_rename_between_groups() {
        let core = json!({
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web"}, "reason": "Started",
            "message": "Started container", "source": {"component": "kubelet"}, "count": 2,
            "type": "Normal", "reportingComponent": "kubelet",
        });
        let events = convert(&core, find("events.k8s.io", "v1", "events"));
        assert_eq!(events["apiVersion"], "events.k8s.io/v1");
        assert_eq!(events["regarding"]["name"], "web");
        assert_eq!(events["note"], "Started container");
        assert_eq!(events["deprecatedCount"], 2);
        assert_eq!(events["reportingController"], "kubelet");
        assert_eq!(convert(&events, find("", "v1", "events")), core);
    }
}
