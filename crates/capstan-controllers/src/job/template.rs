//! The pods a Job creates: its template, owned by the Job, with the tracking finalizer and,
//! for Indexed Jobs, the completion index (annotation, label, host name and the
//! `JOB_COMPLETION_INDEX` environment variable).

use crate::job::indexes::COMPLETION_INDEX;
use crate::job::pods::TRACKING_FINALIZER;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The environment variable through which a container learns its completion index.
const INDEX_VARIABLE: &str = "JOB_COMPLETION_INDEX";

/// Generated names add five random characters to a prefix of at most this length.
const MAX_PREFIX: usize = 63 - 5;

/// A new pod of `job`, for completion `index` in an Indexed Job.
pub(crate) fn new_pod(job: &Job, index: Option<i32>) -> Pod {
    let name = job.metadata.name.as_deref().unwrap_or_default();
    let template = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    let mut labels = template_meta.labels.unwrap_or_default();
    let mut annotations = template_meta.annotations.unwrap_or_default();
    let mut finalizers = template_meta.finalizers.unwrap_or_default();
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.to_owned());
    }
    let generate_name = match index {
        Some(index) => {
            annotations.insert(COMPLETION_INDEX.to_owned(), index.to_string());
            labels.insert(COMPLETION_INDEX.to_owned(), index.to_string());
            spec.hostname = Some(format!("{name}-{index}"));
            for container in
                spec.init_containers.iter_mut().flatten().chain(spec.containers.iter_mut())
            {
                add_index_variable(container);
            }
            indexed_prefix(name, index)
        }
        None => format!("{name}-"),
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.metadata.namespace.clone(),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![crate::context::controller_reference(job)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// `<job>-<index>-`, with the job name cut so that the whole stays a valid prefix.
fn indexed_prefix(name: &str, index: i32) -> String {
    let suffix = format!("-{index}-");
    let room = MAX_PREFIX.saturating_sub(suffix.len());
    let cut = name
        .char_indices()
        .map(|(at, _)| at)
        .chain([name.len()])
        .take_while(|at| *at <= room)
        .last()
        .unwrap_or(0);
    format!("{}{suffix}", &name[..cut])
}

fn add_index_variable(container: &mut Container) {
    let env = container.env.get_or_insert_with(Vec::new);
    if env.iter().any(|v| v.name == INDEX_VARIABLE) {
        return;
    }
    env.push(EnvVar {
        name: INDEX_VARIABLE.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: format!("metadata.labels['{COMPLETION_INDEX}']"),
            }),
            ..EnvVarSource::default()
        }),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn job(name: &str) -> Job {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "d", "uid": "u"},
            "spec": {"template": {"metadata": {"labels": {"job-name": name},
                "finalizers": ["example.com/keep"]},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}))
        .unwrap()
    }

    fn check(pod: &Pod, expected: Value) {
        assert_eq!(serde_json::to_value(pod).unwrap(), expected);
    }

    #[test]
    fn pods_carry_the_template_the_owner_and_the_finalizer() {
        let owner = json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "pi", "uid": "u",
            "controller": true, "blockOwnerDeletion": true}]);
        check(
            &new_pod(&job("pi"), None),
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": "pi-", "namespace": "d",
                "labels": {"job-name": "pi"},
                "finalizers": ["example.com/keep", "batch.kubernetes.io/job-tracking"],
                "ownerReferences": owner},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}),
        );
        check(
            &new_pod(&job("pi"), Some(2)),
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": "pi-2-", "namespace": "d",
                "labels": {"batch.kubernetes.io/job-completion-index": "2", "job-name": "pi"},
                "annotations": {"batch.kubernetes.io/job-completion-index": "2"},
                "finalizers": ["example.com/keep", "batch.kubernetes.io/job-tracking"],
                "ownerReferences": owner},
                "spec": {"restartPolicy": "Never", "hostname": "pi-2", "containers": [{"name": "c",
                    "image": "i", "env": [{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef":
                        {"fieldPath": "metadata.labels['batch.kubernetes.io/job-completion-index']"}}}]}]}}),
        );
        let long = "j".repeat(63);
        let prefix = indexed_prefix(&long, 12);
        assert_eq!(prefix.len(), MAX_PREFIX);
        assert!(prefix.ends_with("j-12-"), "{prefix}");
    }
}
