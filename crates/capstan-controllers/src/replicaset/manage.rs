//! Creating and deleting pods to reach an owner's desired count (upstream's
//! `manageReplicas`): at most [`BURST_REPLICAS`] per sync, creations in slow-start batches,
//! deletions of the pods that cost least to lose, every one announced to the expectations
//! first and reported as an Event.

use super::kind::Replicated;
use super::sync::Shared;
use super::{Error, api_message, controller_reference, owner_label, pod, ranking};
use capstan_kube::events::{EventType, reference_to};
use futures_util::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// The most pods one sync creates or deletes, as upstream: the rest waits for the next sync.
pub(crate) const BURST_REPLICAS: usize = 500;

/// The first slow-start batch (upstream's `SlowStartInitialBatchSize`).
const INITIAL_BATCH: usize = 1;

/// Creates or deletes pods so that `pods` (the owner's active pods) reach its desired count.
pub(crate) async fn manage_replicas<K: Replicated>(
    owner: &K,
    pods: &[Arc<Pod>],
    shared: &Shared<K>,
) -> Result<(), Error> {
    let meta = owner.meta();
    let uid = meta.uid.as_deref().unwrap_or_default();
    let api = Api::<Pod>::namespaced(
        shared.client.clone(),
        meta.namespace.as_deref().unwrap_or_default(),
    );
    let desired = usize::try_from(owner.desired_replicas()).unwrap_or(0);
    if pods.len() < desired {
        let count = (desired - pods.len()).min(BURST_REPLICAS);
        tracing::debug!(owner = %owner_label(owner), desired, creating = count, "too few replicas");
        let template = pod_from_template(owner);
        // Expected before the first creation, so that the watch cannot show a creation
        // before it is expected.
        shared.expectations.expect_creations(uid, count, Instant::now());
        let (created, error) =
            slow_start(count, INITIAL_BATCH, || create_pod(owner, &template, &api, shared)).await;
        // The creations that failed or were never attempted will never be shown.
        for _ in created..count {
            shared.expectations.creation_observed(uid);
        }
        return error.map_or(Ok(()), Err);
    }
    if pods.len() > desired {
        let count = (pods.len() - desired).min(BURST_REPLICAS);
        tracing::debug!(owner = %owner_label(owner), desired, deleting = count, "too many replicas");
        let related = related_pods(owner, shared);
        let victims = ranking::pods_to_delete(pods, &related, count, Timestamp::now());
        let uids: HashSet<String> =
            victims.iter().filter_map(|pod| pod.metadata.uid.clone()).collect();
        shared.expectations.expect_deletions(uid, uids, Instant::now());
        let results =
            join_all(victims.iter().map(|pod| delete_pod(owner, pod, &api, shared))).await;
        let mut first_error = None;
        for (victim, result) in victims.iter().zip(results) {
            let Err(source) = result else { continue };
            // A deletion that failed will never be shown.
            shared
                .expectations
                .deletion_observed(uid, victim.metadata.uid.as_deref().unwrap_or_default());
            if !is_not_found(&source) && first_error.is_none() {
                let pod = pod::key(&victim.metadata);
                first_error = Some(Error::DeletePod { owner: owner_label(owner), pod, source });
            }
        }
        return first_error.map_or(Ok(()), Err);
    }
    Ok(())
}

/// Calls `attempt` `count` times: one batch of `initial` calls at once, then batches twice as
/// large while every call of a batch succeeds. A batch with a failure ends it, so that an
/// error every call would meet (a quota, say) costs a few calls rather than `count`.
/// Returns how many calls succeeded and the first error.
pub(crate) async fn slow_start<F, Fut, E>(
    count: usize,
    initial: usize,
    mut attempt: F,
) -> (usize, Option<E>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut remaining = count;
    let mut succeeded = 0;
    let mut batch = initial.min(remaining);
    while batch > 0 {
        let results = join_all((0..batch).map(|_| attempt())).await;
        let mut first_error = None;
        for result in results {
            match result {
                Ok(()) => succeeded += 1,
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        if first_error.is_some() {
            return (succeeded, first_error);
        }
        remaining -= batch;
        batch = (2 * batch).min(remaining);
    }
    (succeeded, None)
}

/// The pod the owner's template describes (upstream's `GetPodFromTemplate`): its labels,
/// annotations and finalizers, a name generated from the owner's, the owner as controller.
pub(crate) fn pod_from_template<K: Replicated>(owner: &K) -> Pod {
    let template = owner.template().cloned().unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();
    let name = owner.meta().name.as_deref().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            labels: template_meta.labels,
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: controller_reference(owner).map(|reference| vec![reference]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Creates one pod from `template`, with its Event. A namespace being deleted refuses every
/// pod; that is no failure of the owner's (upstream stays silent too).
async fn create_pod<K: Replicated>(
    owner: &K,
    template: &Pod,
    api: &Api<Pod>,
    shared: &Shared<K>,
) -> Result<(), Error> {
    if template.metadata.labels.as_ref().is_none_or(|labels| labels.is_empty()) {
        return Err(Error::NoLabels { owner: owner_label(owner) });
    }
    let regarding = reference_to(owner);
    match api.create(&PostParams::default(), template).await {
        Ok(created) => {
            let name = created.metadata.name.unwrap_or_default();
            tracing::debug!(owner = %owner_label(owner), pod = name, "created pod");
            let note = format!("Created pod: {name}");
            shared
                .recorder
                .publish(&regarding, EventType::Normal, "SuccessfulCreate", "Create", note)
                .await;
            Ok(())
        }
        Err(source) if namespace_terminating(&source) => Ok(()),
        Err(source) => {
            let note = format!("Error creating: {}", api_message(&source));
            shared
                .recorder
                .publish(&regarding, EventType::Warning, "FailedCreate", "Create", note)
                .await;
            Err(Error::CreatePod { owner: owner_label(owner), source })
        }
    }
}

/// Deletes one pod, with its Event (none when it was already gone).
async fn delete_pod<K: Replicated>(
    owner: &K,
    victim: &Pod,
    api: &Api<Pod>,
    shared: &Shared<K>,
) -> Result<(), kube::Error> {
    let name = victim.metadata.name.as_deref().unwrap_or_default();
    let regarding = reference_to(owner);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            tracing::debug!(owner = %owner_label(owner), pod = name, "deleted pod");
            let note = format!("Deleted pod: {name}");
            shared
                .recorder
                .publish(&regarding, EventType::Normal, "SuccessfulDelete", "Delete", note)
                .await;
            Ok(())
        }
        Err(error) if is_not_found(&error) => Err(error),
        Err(error) => {
            let note = format!("Error deleting: {}", api_message(&error));
            shared
                .recorder
                .publish(&regarding, EventType::Warning, "FailedDelete", "Delete", note)
                .await;
            Err(error)
        }
    }
}

/// The pods of every owner that shares this owner's controller (the ReplicaSets of one
/// Deployment), each once; none when the owner has no controller.
fn related_pods<K: Replicated>(owner: &K, shared: &Shared<K>) -> Vec<Arc<Pod>> {
    let Some(controller) = pod::controller_of(owner.meta()) else { return Vec::new() };
    let all_pods = shared.pods.state();
    let mut seen = HashSet::new();
    let mut related = Vec::new();
    for sibling in shared.owners.state() {
        if pod::controller_of(sibling.meta()).is_none_or(|r| r.uid != controller.uid) {
            continue;
        }
        // A sibling whose selector does not parse selects no pod.
        let Ok(selector) = sibling.pod_selector() else { continue };
        let namespace = sibling.meta().namespace.as_deref();
        for candidate in &all_pods {
            if candidate.metadata.namespace.as_deref() == namespace
                && selector.matches(candidate.metadata.labels.as_ref())
                && seen.insert(candidate.metadata.uid.clone())
            {
                related.push(Arc::clone(candidate));
            }
        }
    }
    related
}

pub(crate) fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.is_not_found())
}

/// Whether the API refused a creation because the namespace is being deleted.
fn namespace_terminating(error: &kube::Error) -> bool {
    let kube::Error::Api(status) = error else { return false };
    let causes =
        status.details.as_ref().map(|details| details.causes.as_slice()).unwrap_or_default();
    causes.iter().any(|cause| cause.reason == "NamespaceTerminating")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Runs a slow start of `count` calls where the calls numbered in `failing` (from 0)
    /// fail; checks the batch sizes seen, the successes and whether an error came back.
    fn check(count: usize, failing: &[usize], batches: &[usize], succeeded: usize, failed: bool) {
        let calls = AtomicUsize::new(0);
        // join_all makes every future of a batch before polling any, so the number of calls
        // a future sees when first polled is where its batch ends.
        let batch_ends = std::sync::Mutex::new(Vec::<usize>::new());
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (got, error) = runtime.block_on(slow_start(count, 1, || {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            let fails = failing.contains(&call);
            let (calls, batch_ends) = (&calls, &batch_ends);
            async move {
                let end = calls.load(Ordering::SeqCst);
                let mut ends = batch_ends.lock().unwrap();
                if ends.last() != Some(&end) {
                    ends.push(end);
                }
                if fails { Err(call) } else { Ok(()) }
            }
        }));
        let ends = batch_ends.into_inner().unwrap();
        let sizes: Vec<usize> =
            ends.iter().scan(0, |start, &end| Some(end - std::mem::replace(start, end))).collect();
        assert_eq!(sizes, batches, "batches of {count} failing at {failing:?}");
        assert_eq!((got, error.is_some()), (succeeded, failed));
    }

    #[test]
    fn slow_start_batches() {
        check(0, &[], &[], 0, false);
        check(1, &[], &[1], 1, false);
        check(10, &[], &[1, 2, 4, 3], 10, false);
        check(500, &[], &[1, 2, 4, 8, 16, 32, 64, 128, 245], 500, false);
        // The first call fails: nothing more is tried.
        check(10, &[0], &[1], 0, true);
        // A failure in the third batch ends it after that batch.
        check(10, &[4], &[1, 2, 4], 6, true);
        check(10, &[3, 5], &[1, 2, 4], 5, true);
    }

    #[test]
    fn pods_from_templates() {
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "rs-uid"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {
                "metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}, "name": "ignored"},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}))
        .unwrap();
        let pod = pod_from_template(&rs);
        assert_eq!(
            serde_json::to_value(&pod).unwrap(),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"annotations": {"a": "b"}, "generateName": "web-", "labels": {"app": "web"},
                    "ownerReferences": [{"apiVersion": "apps/v1", "blockOwnerDeletion": true,
                        "controller": true, "kind": "ReplicaSet", "name": "web", "uid": "rs-uid"}]},
                   "spec": {"containers": [{"image": "nginx", "name": "c"}]}})
        );
    }
}
