//! Pod garbage collection, upstream's podgc: every 20 s it force-deletes pods bound to nodes
//! that have not existed for 40 s (the quarantine: a node being created, or a pod bound a
//! moment before its node registers, is not mistaken for an orphan), pods being deleted that
//! were never scheduled, and the oldest terminated pods beyond `terminated_pod_gc_threshold`.

use crate::Context;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// How often the collector looks.
const PERIOD: Duration = Duration::from_secs(20);
/// How long a pod's node must be missing before the pod counts as orphaned.
const QUARANTINE: Duration = Duration::from_secs(40);

/// What one pass should delete, from the pods and node names it saw; pure.
fn select(pods: &[Pod], nodes: &HashSet<String>, threshold: usize) -> Vec<(Pod, &'static str)> {
    let mut doomed: Vec<(Pod, &'static str)> = Vec::new();
    let phase = |pod: &Pod| pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    let mut terminated: Vec<&Pod> =
        pods.iter().filter(|p| matches!(phase(p).as_str(), "Succeeded" | "Failed")).collect();
    if threshold > 0 && terminated.len() > threshold {
        terminated.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
        let surplus = terminated.len() - threshold;
        doomed.extend(terminated.into_iter().take(surplus).map(|p| (p.clone(), "terminated")));
    }
    for pod in pods {
        if doomed.iter().any(|(d, _)| d.metadata.uid == pod.metadata.uid) {
            continue;
        }
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        if !node.is_empty() && !nodes.contains(&node) {
            doomed.push((pod.clone(), "orphaned"));
        } else if node.is_empty() && pod.metadata.deletion_timestamp.is_some() {
            doomed.push((pod.clone(), "unscheduled-terminating"));
        }
    }
    doomed
}

pub(crate) async fn run(context: Arc<Context>) {
    let pods: Api<Pod> = Api::all(context.client.clone());
    let nodes: Api<Node> = Api::all(context.client.clone());
    let threshold = context.config.terminated_pod_gc_threshold;
    // When each pod was first seen on a missing node, by uid.
    let mut missing_since: std::collections::HashMap<String, std::time::Instant> =
        Default::default();
    loop {
        tokio::time::sleep(PERIOD).await;
        let (Ok(pod_list), Ok(node_list)) =
            (pods.list(&ListParams::default()).await, nodes.list(&ListParams::default()).await)
        else {
            tracing::debug!("pod GC: cannot list pods and nodes; trying again later");
            continue;
        };
        let names: HashSet<String> =
            node_list.items.iter().filter_map(|n| n.metadata.name.clone()).collect();
        let mut candidates = select(&pod_list.items, &names, threshold);
        let now = std::time::Instant::now();
        let orphans: HashSet<String> = candidates
            .iter()
            .filter(|(_, why)| *why == "orphaned")
            .filter_map(|(pod, _)| pod.metadata.uid.clone())
            .collect();
        missing_since.retain(|uid, _| orphans.contains(uid));
        for uid in &orphans {
            missing_since.entry(uid.clone()).or_insert(now);
        }
        candidates.retain(|(pod, why)| {
            *why != "orphaned"
                || pod
                    .metadata
                    .uid
                    .as_ref()
                    .and_then(|uid| missing_since.get(uid))
                    .is_some_and(|since| now - *since >= QUARANTINE)
        });
        for (pod, why) in candidates {
            delete(&context, &pod, why).await;
        }
    }
}

async fn delete(context: &Context, pod: &Pod, why: &str) {
    let (Some(name), Some(namespace)) =
        (pod.metadata.name.as_deref(), pod.metadata.namespace.as_deref())
    else {
        return;
    };
    let api: Api<Pod> = Api::namespaced(context.client.clone(), namespace);
    if why == "orphaned" {
        let condition = json!({"status": {"conditions": [{"type": "DisruptionTarget", "status": "True",
            "reason": "DeletionByPodGC", "message": "PodGC: node no longer exists",
            "lastTransitionTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())}]}});
        let _ =
            api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&condition)).await;
    }
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => {
            tracing::info!(pod = %format!("{namespace}/{name}"), reason = why, "pod GC: deleted")
        }
        Err(error) => {
            tracing::debug!(pod = %format!("{namespace}/{name}"), %error, "pod GC: cannot delete")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn pod(name: &str, node: &str, phase: &str, created: &str, deleting: bool) -> Pod {
        let mut value = json!({"metadata": {"name": name, "namespace": "d", "uid": name,
            "creationTimestamp": created}, "spec": {"containers": [], "nodeName": node},
            "status": {"phase": phase}});
        if deleting {
            value["metadata"]["deletionTimestamp"] = Value::from("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(value).unwrap()
    }

    fn check(pods: &[Pod], threshold: usize, expected: &[(&str, &str)]) {
        let nodes = HashSet::from(["n1".to_owned()]);
        let chosen: Vec<(String, &str)> = select(pods, &nodes, threshold)
            .into_iter()
            .map(|(p, why)| (p.metadata.name.unwrap_or_default(), why))
            .collect();
        let expected: Vec<(String, &str)> =
            expected.iter().map(|(n, w)| (n.to_string(), *w)).collect();
        assert_eq!(chosen, expected);
    }

    #[test]
    fn selects_orphans_unscheduled_terminating_and_old_terminated_pods() {
        let pods = [
            pod("ok", "n1", "Running", "2026-01-01T00:00:03Z", false),
            pod("orphan", "gone", "Running", "2026-01-01T00:00:03Z", false),
            pod("pending", "", "Pending", "2026-01-01T00:00:03Z", false),
            pod("cancelled", "", "Pending", "2026-01-01T00:00:03Z", true),
            pod("done-new", "n1", "Succeeded", "2026-01-01T00:00:02Z", false),
            pod("done-old", "n1", "Failed", "2026-01-01T00:00:01Z", false),
        ];
        check(&pods, 0, &[("orphan", "orphaned"), ("cancelled", "unscheduled-terminating")]);
        check(
            &pods,
            1,
            &[
                ("done-old", "terminated"),
                ("orphan", "orphaned"),
                ("cancelled", "unscheduled-terminating"),
            ],
        );
    }
}
