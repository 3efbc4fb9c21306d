//! Deleting everything in a terminating namespace through the API, as upstream's namespaced
//! resources deleter does: discover every namespaced type that can be deleted, delete its
//! objects (one `deletecollection`, or one delete per object where that verb is missing),
//! then list what is left and estimate how long it will take to go.

use super::conditions::Findings;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams};
use kube::discovery::{Discovery, Scope, verbs};
use kube::{Api, ResourceExt};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long to assume objects held by finalizers take to go, when nothing better is known.
const FINALIZER_ESTIMATE_SECONDS: u64 = 15;

/// A namespaced type whose objects can be deleted, and how.
#[derive(Debug, Clone)]
struct Deletable {
    resource: ApiResource,
    list: bool,
    delete_collection: bool,
}

/// What one pass over a namespace's content found.
#[derive(Debug, Default)]
pub(crate) struct Pass {
    /// Seconds until what is left should be gone; zero when nothing is expected to linger.
    pub(crate) estimate: u64,
    pub(crate) findings: Findings,
}

impl Pass {
    /// The failures the pass met (as opposed to content that merely takes time to go).
    pub(crate) fn failures(&self) -> Vec<String> {
        let discovery = self.findings.discovery_failure.iter().cloned();
        discovery.chain(self.findings.deletion_failures.iter().cloned()).collect()
    }
}

/// What deleting one type's objects left behind.
#[derive(Debug, Default, PartialEq, Eq)]
struct Left {
    estimate: u64,
    count: usize,
    finalizers: BTreeMap<String, usize>,
}

/// Deletes what `namespace` holds, `since_deletion` after its deletion was asked for, and
/// reports what is left. Failures for one type do not stop the others.
pub(crate) async fn delete_all(
    client: &kube::Client,
    namespace: &str,
    since_deletion: Duration,
) -> Pass {
    let mut pass = Pass::default();
    let types = match discover(client).await {
        Ok(types) => types,
        Err(error) => {
            pass.findings.discovery_failure = Some(message(&error));
            Vec::new()
        }
    };
    for deletable in &types {
        let (left, failure) = delete_type(client, namespace, deletable, since_deletion).await;
        if let Some(failure) = failure {
            pass.findings.deletion_failures.push(failure);
        }
        pass.estimate = pass.estimate.max(left.estimate);
        if left.count > 0 {
            let resource = &deletable.resource;
            let label = format!("{}.{}", resource.plural, resource.group);
            pass.findings.remaining.insert(label, left.count);
            for (finalizer, count) in left.finalizers {
                *pass.findings.finalizers.entry(finalizer).or_default() += count;
            }
        }
    }
    tracing::debug!(namespace, types = types.len(), estimate = pass.estimate, "deleted content");
    pass
}

/// The namespaced types that support `delete`, each at its group's preferred version.
async fn discover(client: &kube::Client) -> Result<Vec<Deletable>, kube::Error> {
    let discovery = Discovery::new(client.clone()).run_aggregated().await?;
    let mut types = Vec::new();
    for group in discovery.groups() {
        for (resource, capabilities) in group.recommended_resources() {
            if capabilities.scope != Scope::Namespaced
                || !capabilities.supports_operation(verbs::DELETE)
            {
                continue;
            }
            types.push(Deletable {
                resource,
                list: capabilities.supports_operation(verbs::LIST),
                delete_collection: capabilities.supports_operation(verbs::DELETE_COLLECTION),
            });
        }
    }
    Ok(types)
}

/// Deletes one type's objects in `namespace`; returns what is left and why that failed, if
/// it did.
async fn delete_type(
    client: &kube::Client,
    namespace: &str,
    deletable: &Deletable,
    since_deletion: Duration,
) -> (Left, Option<String>) {
    let resource = &deletable.resource;
    // Pods on nodes end only once their kubelet stopped them, which takes up to their grace
    // period; other types have nothing to wait for.
    let estimate = if resource.group.is_empty() && resource.plural == "pods" {
        let pods = Api::<Pod>::namespaced(client.clone(), namespace);
        match pods.list(&ListParams::default()).await {
            Ok(list) => pod_estimate(&list.items, since_deletion),
            Err(error) => return (Left::default(), Some(message(&error))),
        }
    } else {
        0
    };
    let early = |failure| (Left { estimate, ..Left::default() }, failure);
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, resource);
    // Background propagation: dependents go through the garbage collector rather than an
    // orphan finalizer holding the deletion up, since everything in the namespace goes anyway.
    let background = DeleteParams::background();
    let mut collection_deleted = false;
    if deletable.delete_collection {
        match api.delete_collection(&background, &ListParams::default()).await {
            Ok(_) => collection_deleted = true,
            Err(error) if unsupported(&error) => {}
            Err(error) => return early(Some(message(&error))),
        }
    }
    if !deletable.list {
        return early(None);
    }
    if !collection_deleted {
        let items = match api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(error) if unsupported(&error) => return early(None),
            Err(error) => return early(Some(message(&error))),
        };
        for item in items {
            match api.delete(&item.name_any(), &background).await {
                Ok(_) => {}
                Err(error) if unsupported(&error) => {}
                Err(error) => return early(Some(message(&error))),
            }
        }
    }
    let items = match api.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(error) if unsupported(&error) => return early(None),
        Err(error) => return early(Some(message(&error))),
    };
    let finalizers: Vec<Vec<String>> =
        items.iter().map(|item| item.finalizers().to_vec()).collect();
    assess(namespace, deletable, &finalizers, estimate)
}

/// What is left of one type, given the finalizers of each object still listed: content that
/// waits for a grace period or a finalizer is expected to go, anything else is a failure.
fn assess(
    namespace: &str,
    deletable: &Deletable,
    finalizers_per_item: &[Vec<String>],
    estimate: u64,
) -> (Left, Option<String>) {
    if finalizers_per_item.is_empty() {
        return (Left::default(), None);
    }
    let mut finalizers = BTreeMap::new();
    for finalizer in finalizers_per_item.iter().flatten() {
        *finalizers.entry(finalizer.clone()).or_default() += 1;
    }
    let count = finalizers_per_item.len();
    if estimate > 0 {
        return (Left { estimate, count, finalizers }, None);
    }
    if !finalizers.is_empty() {
        return (Left { estimate: FINALIZER_ESTIMATE_SECONDS, count, finalizers }, None);
    }
    let resource = &deletable.resource;
    // Upstream's rendering of a group-version-resource: `apps/v1, Resource=deployments`.
    let failure = format!(
        "unexpected items still remain in namespace: {namespace} for gvr: {}/{}, Resource={}",
        resource.group, resource.version, resource.plural
    );
    (Left { estimate, count, finalizers }, Some(failure))
}

/// How many seconds the pods still running may take to stop: the longest grace period of a
/// pod not yet finished, or zero once that much time has passed since the namespace's
/// deletion.
fn pod_estimate(pods: &[Pod], since_deletion: Duration) -> u64 {
    let longest = pods
        .iter()
        .filter(|pod| {
            let phase = pod.status.as_ref().and_then(|status| status.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .filter_map(|pod| pod.spec.as_ref().and_then(|spec| spec.termination_grace_period_seconds))
        .map(|grace| u64::try_from(grace).unwrap_or(0))
        .max()
        .unwrap_or(0);
    if since_deletion >= Duration::from_secs(longest) { 0 } else { longest }
}

/// Whether the server does not serve this verb on this type after all: the type is skipped,
/// as upstream skips it.
fn unsupported(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 405 || status.is_not_found())
}

/// An error as upstream's condition messages show it: the server's message, or the error.
fn message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::GroupVersionKind;
    use serde_json::json;

    fn check_pods(pods: serde_json::Value, since_deletion_seconds: u64, expected: u64) {
        let pods: Vec<Pod> = serde_json::from_value(pods).unwrap();
        let estimate = pod_estimate(&pods, Duration::from_secs(since_deletion_seconds));
        assert_eq!(estimate, expected, "{pods:?} {since_deletion_seconds} s after deletion");
    }

    fn pod(grace: i64, phase: &str) -> serde_json::Value {
        json!({"spec": {"containers": [], "terminationGracePeriodSeconds": grace},
            "status": {"phase": phase}})
    }

    #[test]
    fn pods_are_waited_for_up_to_their_grace_period() {
        check_pods(json!([]), 0, 0);
        check_pods(json!([pod(30, "Running"), pod(10, "Pending")]), 0, 30);
        check_pods(json!([pod(30, "Running")]), 29, 30);
        // The grace period has passed since the namespace's deletion: nothing to wait for.
        check_pods(json!([pod(30, "Running")]), 30, 0);
        // Finished pods do not hold anything up.
        check_pods(json!([pod(60, "Succeeded"), pod(90, "Failed"), pod(5, "Running")]), 0, 5);
    }

    fn check_assess(
        finalizers: &[&[&str]],
        estimate: u64,
        expected: (u64, usize, &[(&str, usize)]),
        failure: Option<&str>,
    ) {
        let gvk = GroupVersionKind::gvk("apps", "v1", "Deployment");
        let deletable = Deletable {
            resource: ApiResource::from_gvk_with_plural(&gvk, "deployments"),
            list: true,
            delete_collection: true,
        };
        let items: Vec<Vec<String>> =
            finalizers.iter().map(|f| f.iter().map(|s| s.to_string()).collect()).collect();
        let (left, got_failure) = assess("ns", &deletable, &items, estimate);
        let (estimate, count, finalizers) = expected;
        let finalizers = finalizers.iter().map(|(f, n)| (f.to_string(), *n)).collect();
        assert_eq!(left, Left { estimate, count, finalizers }, "{items:?}");
        assert_eq!(got_failure.as_deref(), failure, "{items:?}");
    }

    #[test]
    fn what_is_left_is_waited_for_or_a_failure() {
        // Nothing left.
        check_assess(&[], 0, (0, 0, &[]), None);
        check_assess(&[], 30, (0, 0, &[]), None);
        // Left while a grace period runs.
        check_assess(&[&[]], 30, (30, 1, &[]), None);
        // Held by finalizers: upstream's default wait, counted per finalizer.
        check_assess(
            &[&["a", "b"], &["a"]],
            0,
            (FINALIZER_ESTIMATE_SECONDS, 2, &[("a", 2), ("b", 1)]),
            None,
        );
        // Left for no reason.
        check_assess(
            &[&[], &[]],
            0,
            (0, 2, &[]),
            Some(
                "unexpected items still remain in namespace: ns for gvr: apps/v1, Resource=deployments",
            ),
        );
    }
}
