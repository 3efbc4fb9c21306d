//! Validation of the workload kinds: Deployment, ReplicaSet, StatefulSet, DaemonSet
//! (`pkg/apis/apps/validation`), Job and CronJob (`pkg/apis/batch/validation`),
//! ReplicationController and PodTemplate, with their immutable fields on update.

use super::cron;
use super::pod::pod_template;
use super::rules::{
    Errors, IMMUTABLE, SELECTOR_MISMATCH, as_text, immutable, int_or_percent,
    int_or_percent_is_zero, label_selector, map_selector_matches, non_negative, one_of, same,
    selector_is_empty, selector_matches,
};
use crate::status::FieldError;
use serde_json::{Value, json};

fn spec(object: &Value) -> &Value {
    object.get("spec").unwrap_or(&Value::Null)
}

fn template_labels(template: &Value) -> Option<&Value> {
    template.get("metadata").and_then(|m| m.get("labels"))
}

/// Validates `spec.selector` (required, valid, non-empty) and returns whether it parsed, so
/// that the template may be matched against it.
fn required_selector(errors: &mut Errors, spec: &Value, kind: &str) -> bool {
    let Some(selector) = spec.get("selector").filter(|s| !s.is_null()) else {
        errors.push(FieldError::required("spec.selector", ""));
        return true;
    };
    let before = errors.len();
    label_selector(errors, "spec.selector", selector);
    let parsed = errors.len() == before;
    if selector_is_empty(selector) {
        errors.push(FieldError::invalid(
            "spec.selector",
            selector.clone(),
            format!("empty selector is invalid for {kind}"),
        ));
    }
    parsed
}

/// The template's labels must be selected by the selector (a missing selector selects
/// nothing; an empty one everything, as upstream's `LabelSelectorAsSelector`).
fn template_selected(errors: &mut Errors, spec: &Value) {
    let template = spec.get("template").unwrap_or(&Value::Null);
    let labels = template_labels(template);
    let selected = match spec.get("selector").filter(|s| !s.is_null()) {
        None => false,
        Some(selector) => selector_is_empty(selector) || selector_matches(selector, labels),
    };
    if !selected {
        errors.push(FieldError::invalid(
            "spec.template.metadata.labels",
            labels.cloned().unwrap_or_else(|| json!({})),
            SELECTOR_MISMATCH,
        ));
    }
}

/// Pods of replicated controllers restart always and have no deadline.
fn always_restarting_template(errors: &mut Errors, template: &Value, owner: &str) {
    let restart_policy = as_text(template.get("spec").and_then(|s| s.get("restartPolicy")));
    if restart_policy != "Always" {
        errors.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            restart_policy,
            &["Always"],
        ));
    }
    let deadline = template.get("spec").and_then(|s| s.get("activeDeadlineSeconds"));
    if deadline.is_some_and(|d| !d.is_null()) {
        errors.push(FieldError::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            format!("activeDeadlineSeconds in {owner} is not Supported"),
        ));
    }
}

/// `ValidatePodTemplateSpecForReplicaSet`, shared by Deployments and ReplicaSets.
fn replica_set_template(errors: &mut Errors, spec: &Value, selector_parsed: bool) {
    let template = spec.get("template").unwrap_or(&Value::Null);
    if selector_parsed {
        template_selected(errors, spec);
    }
    pod_template(errors, "spec.template", template);
    always_restarting_template(errors, template, "ReplicaSet");
}

pub(crate) fn deployment(errors: &mut Errors, object: &Value) {
    let spec = spec(object);
    non_negative(errors, "spec.replicas", spec.get("replicas"));
    let parsed = required_selector(errors, spec, "deployment");
    replica_set_template(errors, spec, parsed);
    deployment_strategy(errors, spec.get("strategy").unwrap_or(&Value::Null));
    non_negative(errors, "spec.minReadySeconds", spec.get("minReadySeconds"));
    non_negative(errors, "spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"));
    if let Some(deadline) = spec.get("progressDeadlineSeconds").filter(|d| !d.is_null()) {
        non_negative(errors, "spec.progressDeadlineSeconds", Some(deadline));
        let min_ready = spec.get("minReadySeconds").and_then(Value::as_i64).unwrap_or(0);
        if deadline.as_i64().is_some_and(|d| d <= min_ready) {
            errors.push(FieldError::invalid(
                "spec.progressDeadlineSeconds",
                deadline.clone(),
                "must be greater than minReadySeconds",
            ));
        }
    }
}

fn deployment_strategy(errors: &mut Errors, strategy: &Value) {
    let rolling = strategy.get("rollingUpdate").filter(|r| !r.is_null());
    match as_text(strategy.get("type")) {
        "Recreate" if rolling.is_some() => errors.push(FieldError::forbidden(
            "spec.strategy.rollingUpdate",
            "may not be specified when strategy `type` is 'Recreate'",
        )),
        "Recreate" => {}
        "RollingUpdate" => match rolling {
            None => errors.push(FieldError::required(
                "spec.strategy.rollingUpdate",
                "this should be defaulted and never be nil",
            )),
            Some(rolling) => {
                let (unavailable, surge) = (rolling.get("maxUnavailable"), rolling.get("maxSurge"));
                let path = "spec.strategy.rollingUpdate";
                int_or_percent(errors, &format!("{path}.maxUnavailable"), unavailable, false);
                int_or_percent(errors, &format!("{path}.maxSurge"), surge, false);
                if int_or_percent_is_zero(unavailable) && int_or_percent_is_zero(surge) {
                    errors.push(FieldError::invalid(
                        format!("{path}.maxUnavailable"),
                        unavailable.cloned().unwrap_or(json!(0)),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                int_or_percent(errors, &format!("{path}.maxUnavailable"), unavailable, true);
            }
        },
        _ => errors.push(FieldError::not_supported(
            "spec.strategy",
            strategy.clone(),
            &["Recreate", "RollingUpdate"],
        )),
    }
}

pub(crate) fn replica_set(errors: &mut Errors, object: &Value) {
    let spec = spec(object);
    non_negative(errors, "spec.replicas", spec.get("replicas"));
    non_negative(errors, "spec.minReadySeconds", spec.get("minReadySeconds"));
    // Upstream's message names deployments here too.
    let parsed = required_selector(errors, spec, "deployment");
    replica_set_template(errors, spec, parsed);
}

pub(crate) fn replication_controller(errors: &mut Errors, object: &Value) {
    let spec = spec(object);
    non_negative(errors, "spec.minReadySeconds", spec.get("minReadySeconds"));
    let selector = spec.get("selector").and_then(Value::as_object);
    if selector.is_none_or(|s| s.is_empty()) {
        errors.push(FieldError::required("spec.selector", ""));
    }
    non_negative(errors, "spec.replicas", spec.get("replicas"));
    let Some(template) = spec.get("template").filter(|t| !t.is_null()) else {
        errors.push(FieldError::required("spec.template", ""));
        return;
    };
    let labels = template_labels(template);
    if let Some(selector) = selector.filter(|s| !s.is_empty())
        && !map_selector_matches(selector, labels)
    {
        errors.push(FieldError::invalid(
            "spec.template.metadata.labels",
            labels.cloned().unwrap_or_else(|| json!({})),
            SELECTOR_MISMATCH,
        ));
    }
    pod_template(errors, "spec.template", template);
    always_restarting_template(errors, template, "ReplicationController");
}

pub(crate) fn pod_template_kind(errors: &mut Errors, object: &Value) {
    pod_template(errors, "template", object.get("template").unwrap_or(&Value::Null));
}

pub(crate) fn stateful_set(errors: &mut Errors, object: &Value) {
    let spec = spec(object);
    match as_text(spec.get("podManagementPolicy")) {
        "" => errors.push(FieldError::required("spec.podManagementPolicy", "")),
        "OrderedReady" | "Parallel" => {}
        other => errors.push(FieldError::invalid(
            "spec.podManagementPolicy",
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    stateful_set_strategy(errors, spec.get("updateStrategy").unwrap_or(&Value::Null));
    if let Some(policy) = spec.get("persistentVolumeClaimRetentionPolicy").filter(|p| !p.is_null())
    {
        for key in ["whenDeleted", "whenScaled"] {
            one_of(
                errors,
                &format!("spec.persistentVolumeClaimRetentionPolicy.{key}"),
                policy.get(key),
                &["Retain", "Delete"],
            );
        }
    }
    non_negative(errors, "spec.replicas", spec.get("replicas"));
    non_negative(errors, "spec.minReadySeconds", spec.get("minReadySeconds"));
    non_negative(errors, "spec.ordinals.start", spec.get("ordinals").and_then(|o| o.get("start")));
    let parsed = required_selector(errors, spec, "statefulset");
    let template = spec.get("template").unwrap_or(&Value::Null);
    if parsed {
        template_selected(errors, spec);
    }
    // Claim templates provide volumes the containers may mount: validate the pod spec with
    // them in the volume list.
    let mut with_claims = template.clone();
    let claims =
        spec.get("volumeClaimTemplates").and_then(Value::as_array).cloned().unwrap_or_default();
    if let Some(pod_spec) = with_claims.get_mut("spec").and_then(Value::as_object_mut) {
        let volumes = pod_spec.entry("volumes").or_insert_with(|| json!([]));
        if let Some(volumes) = volumes.as_array_mut() {
            for claim in &claims {
                let name = as_text(claim.get("metadata").and_then(|m| m.get("name")));
                volumes.push(json!({"name": name, "persistentVolumeClaim": {"claimName": name}}));
            }
        }
    }
    pod_template(errors, "spec.template", &with_claims);
    always_restarting_template(errors, template, "StatefulSet");
}

fn stateful_set_strategy(errors: &mut Errors, strategy: &Value) {
    let rolling = strategy.get("rollingUpdate").filter(|r| !r.is_null());
    match as_text(strategy.get("type")) {
        "" => errors.push(FieldError::required("spec.updateStrategy", "")),
        "OnDelete" if rolling.is_some() => errors.push(FieldError::invalid(
            "spec.updateStrategy.rollingUpdate",
            rolling.cloned().unwrap_or(Value::Null),
            "only allowed for updateStrategy 'RollingUpdate'",
        )),
        "OnDelete" => {}
        "RollingUpdate" => {
            let partition = rolling.and_then(|r| r.get("partition"));
            non_negative(errors, "spec.updateStrategy.rollingUpdate.partition", partition);
        }
        _ => errors.push(FieldError::invalid(
            "spec.updateStrategy",
            strategy.clone(),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
}

pub(crate) fn daemon_set(errors: &mut Errors, object: &Value) {
    let spec = spec(object);
    let selector = spec.get("selector").filter(|s| !s.is_null());
    let before = errors.len();
    if let Some(selector) = selector {
        label_selector(errors, "spec.selector", selector);
    }
    if errors.len() == before {
        template_selected(errors, spec);
    }
    if selector.is_some_and(selector_is_empty) {
        errors.push(FieldError::invalid(
            "spec.selector",
            selector.cloned().unwrap_or(Value::Null),
            "empty selector is invalid for daemonset",
        ));
    }
    let template = spec.get("template").unwrap_or(&Value::Null);
    pod_template(errors, "spec.template", template);
    always_restarting_template(errors, template, "DaemonSet");
    non_negative(errors, "spec.minReadySeconds", spec.get("minReadySeconds"));
    daemon_set_strategy(errors, spec.get("updateStrategy").unwrap_or(&Value::Null));
    non_negative(errors, "spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"));
}

fn daemon_set_strategy(errors: &mut Errors, strategy: &Value) {
    let path = "spec.updateStrategy";
    match as_text(strategy.get("type")) {
        "OnDelete" => {}
        "RollingUpdate" => {
            let Some(rolling) = strategy.get("rollingUpdate").filter(|r| !r.is_null()) else {
                errors.push(FieldError::required(format!("{path}.rollingUpdate"), ""));
                return;
            };
            let (unavailable, surge) = (rolling.get("maxUnavailable"), rolling.get("maxSurge"));
            int_or_percent(
                errors,
                &format!("{path}.rollingUpdate.maxUnavailable"),
                unavailable,
                true,
            );
            int_or_percent(errors, &format!("{path}.rollingUpdate.maxSurge"), surge, true);
            match (int_or_percent_is_zero(unavailable), int_or_percent_is_zero(surge)) {
                (false, false) => errors.push(FieldError::invalid(
                    format!("{path}.rollingUpdate.maxSurge"),
                    surge.cloned().unwrap_or(Value::Null),
                    "may not be set when maxUnavailable is non-zero",
                )),
                (true, true) => errors.push(FieldError::required(
                    format!("{path}.rollingUpdate.maxUnavailable"),
                    "cannot be 0 when maxSurge is 0",
                )),
                _ => {}
            }
        }
        _ => errors.push(FieldError::not_supported(
            path,
            strategy.clone(),
            &["RollingUpdate", "OnDelete"],
        )),
    }
}

/// The apps/v1 controllers' selectors never change.
pub(crate) fn selector_unchanged(errors: &mut Errors, new: &Value, old: &Value) {
    immutable(errors, "spec.selector", spec(new).get("selector"), spec(old).get("selector"));
}

/// Fields of a StatefulSet's spec an update may change.
const STATEFUL_SET_MUTABLE: &[&str] = &[
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

pub(crate) fn stateful_set_update(errors: &mut Errors, new: &Value, old: &Value) {
    let strip = |object: &Value| {
        let mut spec = spec(object).clone();
        if let Some(map) = spec.as_object_mut() {
            map.retain(|key, _| !STATEFUL_SET_MUTABLE.contains(&key.as_str()));
        }
        spec
    };
    if !same(Some(&strip(new)), Some(&strip(old))) {
        errors.push(FieldError::forbidden(
            "spec",
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        ));
    }
}

pub(crate) fn job(errors: &mut Errors, object: &Value) {
    generated_selector(errors, object);
    let spec = spec(object);
    job_spec(errors, "spec", spec);
    match spec.get("selector").filter(|s| !s.is_null()) {
        None => errors.push(FieldError::required("spec.selector", "")),
        Some(selector) => {
            let before = errors.len();
            label_selector(errors, "spec.selector", selector);
            let template = spec.get("template").unwrap_or(&Value::Null);
            if errors.len() == before && !selector_matches(selector, template_labels(template)) {
                errors.push(FieldError::invalid(
                    "spec.template.metadata.labels",
                    template_labels(template).cloned().unwrap_or_else(|| json!({})),
                    SELECTOR_MISMATCH,
                ));
            }
        }
    }
}

/// `ValidateGeneratedSelector`: a generated selector's labels must be the Job's own.
fn generated_selector(errors: &mut Errors, object: &Value) {
    let spec = spec(object);
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let template = spec.get("template").unwrap_or(&Value::Null);
    let Some(labels) = template_labels(template).filter(|l| l.is_object()) else { return };
    let metadata = object.get("metadata").unwrap_or(&Value::Null);
    let uid = as_text(metadata.get("uid"));
    let name = as_text(metadata.get("name"));
    if uid.is_empty() {
        errors.push(FieldError::required("metadata.uid", ""));
    }
    for (key, expected) in [("controller-uid", uid), ("job-name", name)] {
        let path = format!("spec.template.metadata.labels[{key}]");
        match labels.get(key).and_then(Value::as_str) {
            None => errors.push(FieldError::required(path, format!("must be '{expected}'"))),
            Some(actual) if actual != expected => errors.push(FieldError::invalid(
                path,
                labels.clone(),
                format!("must be '{expected}'"),
            )),
            Some(_) => {}
        }
    }
    if let Some(selector) = spec.get("selector").filter(|s| !s.is_null()) {
        let expected = json!({"batch.kubernetes.io/controller-uid": uid});
        let mut probe = Vec::new();
        label_selector(&mut probe, "spec.selector", selector);
        if probe.is_empty() && !selector_matches(selector, Some(&expected)) {
            errors.push(FieldError::invalid(
                "spec.selector",
                selector.clone(),
                "`selector` not auto-generated",
            ));
        }
    }
}

/// `validateJobSpec`: counts, modes and a template that never restarts always.
fn job_spec(errors: &mut Errors, path: &str, spec: &Value) {
    for key in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        non_negative(errors, &format!("{path}.{key}"), spec.get(key));
    }
    if let Some(mode) = spec.get("completionMode").filter(|m| !m.is_null()) {
        one_of(errors, &format!("{path}.completionMode"), Some(mode), &["NonIndexed", "Indexed"]);
        if mode == "Indexed" && spec.get("completions").is_none_or(Value::is_null) {
            errors.push(FieldError::required(
                format!("{path}.completions"),
                "when completion mode is Indexed",
            ));
        }
    }
    let template = spec.get("template").unwrap_or(&Value::Null);
    pod_template(errors, &format!("{path}.template"), template);
    let restart_policy = as_text(template.get("spec").and_then(|s| s.get("restartPolicy")));
    if !matches!(restart_policy, "OnFailure" | "Never") {
        errors.push(FieldError::not_supported(
            format!("{path}.template.spec.restartPolicy"),
            restart_policy,
            &["OnFailure", "Never"],
        ));
    }
}

/// The Job spec fields that never change, and a template that changes only while the Job is
/// suspended and has not started (then only its scheduling directives).
pub(crate) fn job_update(errors: &mut Errors, new: &Value, old: &Value) {
    let (new_spec, old_spec) = (spec(new), spec(old));
    let field = |spec: &Value, key: &str| spec.get(key).cloned();
    let elastic = as_text(new_spec.get("completionMode")) == "Indexed"
        && field(new_spec, "completions") == field(new_spec, "parallelism")
        && field(old_spec, "completions") == field(old_spec, "parallelism");
    if !elastic {
        immutable(
            errors,
            "spec.completions",
            new_spec.get("completions"),
            old_spec.get("completions"),
        );
    }
    for key in [
        "selector",
        "completionMode",
        "podFailurePolicy",
        "backoffLimitPerIndex",
        "managedBy",
        "successPolicy",
    ] {
        immutable(errors, &format!("spec.{key}"), new_spec.get(key), old_spec.get(key));
    }
    let strip = |template: Option<&Value>, scheduling: bool| {
        let mut template = template.cloned().unwrap_or(Value::Null);
        if scheduling {
            if let Some(pod_spec) = template.get_mut("spec").and_then(Value::as_object_mut) {
                for key in ["nodeSelector", "affinity", "tolerations", "schedulingGates"] {
                    pod_spec.remove(key);
                }
            }
            if let Some(metadata) = template.get_mut("metadata").and_then(Value::as_object_mut) {
                metadata.remove("labels");
                metadata.remove("annotations");
            }
        }
        template
    };
    let suspended_unstarted = old_spec.get("suspend").and_then(Value::as_bool) == Some(true)
        && old.get("status").and_then(|s| s.get("startTime")).is_none_or(Value::is_null);
    let new_template = strip(new_spec.get("template"), suspended_unstarted);
    let old_template = strip(old_spec.get("template"), suspended_unstarted);
    if !same(Some(&new_template), Some(&old_template)) {
        errors.push(FieldError::invalid(
            "spec.template",
            new_spec.get("template").cloned().unwrap_or(Value::Null),
            IMMUTABLE,
        ));
    }
}

/// CronJob names leave room for the 11-character suffix of the Jobs they create.
const CRON_JOB_NAME_MAX: usize = 52;

pub(crate) fn cron_job(errors: &mut Errors, object: &Value) {
    let name = as_text(object.get("metadata").and_then(|m| m.get("name")));
    if name.len() > CRON_JOB_NAME_MAX {
        errors.push(FieldError::invalid(
            "metadata.name",
            name,
            format!("must be no more than {CRON_JOB_NAME_MAX} characters"),
        ));
    }
    let spec = spec(object);
    let schedule = as_text(spec.get("schedule"));
    let time_zone = spec.get("timeZone").and_then(Value::as_str);
    if schedule.is_empty() {
        errors.push(FieldError::required("spec.schedule", ""));
    } else if schedule.contains("TZ") {
        let message = if time_zone.is_some() {
            "cannot use both timeZone field and TZ or CRON_TZ in schedule"
        } else {
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
        };
        errors.push(FieldError::invalid("spec.schedule", schedule, message));
    } else if let Err(problem) = cron::parse(schedule) {
        errors.push(FieldError::invalid("spec.schedule", schedule, problem));
    }
    non_negative(errors, "spec.startingDeadlineSeconds", spec.get("startingDeadlineSeconds"));
    if let Some(zone) = time_zone
        && let Err(problem) = cron::time_zone(zone)
    {
        errors.push(FieldError::invalid("spec.timeZone", zone, problem));
    }
    one_of(
        errors,
        "spec.concurrencyPolicy",
        spec.get("concurrencyPolicy"),
        &["Allow", "Forbid", "Replace"],
    );
    let job_template = spec.get("jobTemplate").unwrap_or(&Value::Null);
    let job_spec_value = job_template.get("spec").unwrap_or(&Value::Null);
    job_spec(errors, "spec.jobTemplate.spec", job_spec_value);
    if let Some(selector) = job_spec_value.get("selector").filter(|s| !s.is_null()) {
        errors.push(FieldError::invalid(
            "spec.jobTemplate.spec.selector",
            selector.clone(),
            "`selector` will be auto-generated",
        ));
    }
    if job_spec_value.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        errors.push(FieldError::not_supported(
            "spec.jobTemplate.spec.manualSelector",
            true,
            &["nil", "false"],
        ));
    }
    for key in ["successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        non_negative(errors, &format!("spec.{key}"), spec.get(key));
    }
}
