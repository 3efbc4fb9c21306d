//! Defaults of the workload kinds: Deployment, ReplicaSet, StatefulSet, DaemonSet
//! (`pkg/apis/apps/v1/defaults.go`), Job and CronJob (`pkg/apis/batch/v1/defaults.go`),
//! ReplicationController and PodTemplate, each with its pod template.

use super::super::access::{self, default_unset, default_zero, each_mut, object_mut};
use super::core_group::persistent_volume_claim;
use super::pod::{SpecOwner, pod_spec};
use serde_json::{Map, Value, json};

/// Fills the pod spec of the template at `path` (`spec.template`, `template`, ...).
pub(crate) fn template(object: &mut Value, path: &[&str]) {
    let mut spec_path = path.to_vec();
    spec_path.push("spec");
    if let Some(spec) = access::existing_mut(object, &spec_path) {
        pod_spec(spec, SpecOwner::Template);
    }
}

pub(crate) fn deployment(object: &mut Value) {
    template(object, &["spec", "template"]);
    let Some(spec) = object_mut(object, &["spec"]) else { return };
    default_unset(spec, "replicas", json!(1));
    if let Some(strategy) = object_mut_in(spec, "strategy") {
        default_zero(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(rolling) = object_mut_in(strategy, "rollingUpdate")
        {
            default_unset(rolling, "maxUnavailable", json!("25%"));
            default_unset(rolling, "maxSurge", json!("25%"));
        }
    }
    default_unset(spec, "revisionHistoryLimit", json!(10));
    default_unset(spec, "progressDeadlineSeconds", json!(600));
}

pub(crate) fn replica_set(object: &mut Value) {
    template(object, &["spec", "template"]);
    if let Some(spec) = object_mut(object, &["spec"]) {
        default_unset(spec, "replicas", json!(1));
    }
}

/// ReplicationControllers also take their selector and labels from the template's labels.
pub(crate) fn replication_controller(object: &mut Value) {
    template(object, &["spec", "template"]);
    let labels = access::get(object, &["spec", "template", "metadata", "labels"]).cloned();
    if let Some(labels) = labels.filter(Value::is_object) {
        if let Some(spec) = object_mut(object, &["spec"])
            && access::is_empty_map(spec.get("selector"))
        {
            spec.insert("selector".to_owned(), labels.clone());
        }
        if let Some(metadata) = object_mut(object, &["metadata"])
            && access::is_empty_map(metadata.get("labels"))
        {
            metadata.insert("labels".to_owned(), labels);
        }
    }
    if let Some(spec) = object_mut(object, &["spec"]) {
        default_unset(spec, "replicas", json!(1));
    }
}

pub(crate) fn stateful_set(object: &mut Value) {
    template(object, &["spec", "template"]);
    let Some(spec) = object_mut(object, &["spec"]) else { return };
    default_zero(spec, "podManagementPolicy", json!("OrderedReady"));
    if let Some(strategy) = object_mut_in(spec, "updateStrategy") {
        if access::is_zero(strategy, "type") {
            strategy.insert("type".to_owned(), json!("RollingUpdate"));
            default_unset(strategy, "rollingUpdate", json!({}));
        }
        let rolling_update = strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate");
        if let Some(rolling) = strategy.get_mut("rollingUpdate").and_then(Value::as_object_mut)
            && rolling_update
        {
            default_unset(rolling, "partition", json!(0));
        }
    }
    if let Some(policy) = object_mut_in(spec, "persistentVolumeClaimRetentionPolicy") {
        default_zero(policy, "whenDeleted", json!("Retain"));
        default_zero(policy, "whenScaled", json!("Retain"));
    }
    default_unset(spec, "replicas", json!(1));
    default_unset(spec, "revisionHistoryLimit", json!(10));
    for claim in each_mut(spec, "volumeClaimTemplates") {
        let mut claim_value = Value::Object(std::mem::take(claim));
        persistent_volume_claim(&mut claim_value);
        if let Value::Object(map) = claim_value {
            *claim = map;
        }
    }
}

pub(crate) fn daemon_set(object: &mut Value) {
    template(object, &["spec", "template"]);
    let Some(spec) = object_mut(object, &["spec"]) else { return };
    if let Some(strategy) = object_mut_in(spec, "updateStrategy") {
        default_zero(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(rolling) = object_mut_in(strategy, "rollingUpdate")
        {
            default_unset(rolling, "maxUnavailable", json!(1));
            default_unset(rolling, "maxSurge", json!(0));
        }
    }
    default_unset(spec, "revisionHistoryLimit", json!(10));
}

/// `SetDefaults_Job`, then the selector and labels upstream generates for a Job whose
/// selector is not manual (upstream does that at validation, once the UID is known; here the
/// caller has set `metadata.uid` before defaulting).
pub(crate) fn job(object: &mut Value) {
    template(object, &["spec", "template"]);
    let template_labels = access::get(object, &["spec", "template", "metadata", "labels"])
        .filter(|labels| !access::is_empty_map(Some(labels)))
        .cloned();
    if let (Some(labels), Some(metadata)) = (template_labels, object_mut(object, &["metadata"]))
        && access::is_empty_map(metadata.get("labels"))
    {
        metadata.insert("labels".to_owned(), labels);
    }
    let Some(spec) = object_mut(object, &["spec"]) else { return };
    job_spec(spec);
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    let uid = access::text(object, &["metadata", "uid"]).to_owned();
    if !manual && !uid.is_empty() {
        let name = access::text(object, &["metadata", "name"]).to_owned();
        generate_job_selector(object, &name, &uid);
    }
}

fn job_spec(spec: &mut Map<String, Value>) {
    if access::is_unset(spec, "completions") && access::is_unset(spec, "parallelism") {
        spec.insert("completions".to_owned(), json!(1));
        spec.insert("parallelism".to_owned(), json!(1));
    }
    default_unset(spec, "parallelism", json!(1));
    let per_index = !access::is_unset(spec, "backoffLimitPerIndex");
    default_unset(spec, "backoffLimit", json!(if per_index { i32::MAX } else { 6 }));
    default_unset(spec, "completionMode", json!("NonIndexed"));
    default_unset(spec, "suspend", json!(false));
    let has_failure_policy = !access::is_unset(spec, "podFailurePolicy");
    if let Some(policy) = spec.get_mut("podFailurePolicy").and_then(Value::as_object_mut) {
        for rule in each_mut(policy, "rules") {
            for pattern in each_mut(rule, "onPodConditions") {
                default_zero(pattern, "status", json!("True"));
            }
        }
    }
    let replacement = if has_failure_policy { "Failed" } else { "TerminatingOrFailed" };
    default_unset(spec, "podReplacementPolicy", json!(replacement));
}

/// Template labels `batch.kubernetes.io/controller-uid`, `batch.kubernetes.io/job-name`,
/// `controller-uid` and `job-name` (each unless already set), and a selector on the
/// controller UID.
fn generate_job_selector(object: &mut Value, name: &str, uid: &str) {
    if let Some(labels) = object_mut(object, &["spec", "template", "metadata", "labels"]) {
        for (key, value) in [
            ("batch.kubernetes.io/controller-uid", uid),
            ("batch.kubernetes.io/job-name", name),
            ("controller-uid", uid),
            ("job-name", name),
        ] {
            labels.entry(key).or_insert_with(|| json!(value));
        }
    }
    if let Some(match_labels) = object_mut(object, &["spec", "selector", "matchLabels"]) {
        match_labels.entry("batch.kubernetes.io/controller-uid").or_insert_with(|| json!(uid));
    }
}

/// `SetDefaults_CronJob` and the pod template of its job template (the job template's own
/// spec takes no Job defaults: those belong to the Job kind).
pub(crate) fn cron_job(object: &mut Value) {
    template(object, &["spec", "jobTemplate", "spec", "template"]);
    let Some(spec) = object_mut(object, &["spec"]) else { return };
    default_zero(spec, "concurrencyPolicy", json!("Allow"));
    default_unset(spec, "suspend", json!(false));
    default_unset(spec, "successfulJobsHistoryLimit", json!(3));
    default_unset(spec, "failedJobsHistoryLimit", json!(1));
}

/// The object at `key` below a map, created when unset.
fn object_mut_in<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    let entry = map.entry(key).or_insert(Value::Null);
    if entry.is_null() {
        *entry = json!({});
    }
    entry.as_object_mut()
}
