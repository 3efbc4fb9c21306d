//! The DaemonSet controller, as upstream's: one pod per eligible node (the template's node
//! selector and required affinity match the node, and its taints are tolerated once the
//! daemon tolerations are added), placed by the default scheduler through a node affinity to
//! that node's name. Pods on nodes that stop being eligible, surplus pods and failed pods are
//! deleted. Templates are recorded as ControllerRevisions (`kubectl rollout history|undo`),
//! pods carry the `controller-revision-hash` of theirs, and a RollingUpdate replaces old pods
//! node by node within `maxUnavailable` (OnDelete leaves them).

use crate::Context;
use crate::context::controller_reference;
use crate::deployment::template_hash;
use crate::pod_conditions::is_ready;
use capstan_kube::events::{EventType, Recorder, reference_to};
use capstan_kube::selector;
use capstan_scheduler::framework::{selectors, taints};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod, Toleration};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::revisions::{self, HASH_LABEL};

struct Ctx {
    context: Arc<Context>,
    events: Recorder,
}

#[derive(Debug, thiserror::Error)]
#[error("daemon set {daemon_set}: {action}")]
struct DaemonSetError {
    daemon_set: String,
    action: String,
    #[source]
    source: kube::Error,
}

pub(crate) async fn run(context: Arc<Context>) {
    let client = context.client.clone();
    let controller =
        Controller::new(Api::<DaemonSet>::all(client.clone()), watcher::Config::default());
    let daemon_sets = controller.store();
    let ctx = Arc::new(Ctx { events: context.recorder("daemonset-controller"), context });
    controller
        .owns(Api::<Pod>::all(client.clone()), watcher::Config::default())
        // Any node change may make a node eligible or not, for any daemon set.
        .watches(Api::<Node>::all(client), watcher::Config::default(), move |_node: Node| {
            daemon_sets
                .state()
                .iter()
                .map(|ds| ObjectRef::from_obj(ds.as_ref()))
                .collect::<Vec<_>>()
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "daemon set reconcile failed");
            }
        })
        .await;
}

fn error_policy(_ds: Arc<DaemonSet>, error: &DaemonSetError, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(%error, "daemon set controller: retrying");
    Action::requeue(Duration::from_secs(5))
}

/// The tolerations every daemon pod gets, so that daemons keep running on nodes that are
/// not ready, under pressure or cordoned, as upstream adds them.
fn daemon_tolerations() -> Vec<Toleration> {
    let toleration = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Toleration::default()
    };
    vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ]
}

/// The pod a daemon set runs on `node`: its template, the hash label, the daemon
/// tolerations, and a required node affinity to exactly that node.
fn pod_for(ds: &DaemonSet, hash: &str, node: &str) -> Option<Pod> {
    let template = &ds.spec.as_ref()?.template;
    let mut pod = json!({"metadata": template.metadata.clone().unwrap_or_default(), "spec": template.spec.clone()?});
    let name = ds.metadata.name.clone().unwrap_or_default();
    pod["metadata"]["generateName"] = json!(format!("{name}-"));
    pod["metadata"]["namespace"] = json!(ds.metadata.namespace);
    pod["metadata"]["labels"][HASH_LABEL] = json!(hash);
    pod["metadata"]["ownerReferences"] = json!([controller_reference(ds)]);
    let mut tolerations: Vec<Value> =
        pod["spec"]["tolerations"].as_array().cloned().unwrap_or_default();
    for extra in daemon_tolerations() {
        let extra = serde_json::to_value(extra).ok()?;
        if !tolerations.contains(&extra) {
            tolerations.push(extra);
        }
    }
    pod["spec"]["tolerations"] = Value::Array(tolerations);
    pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = json!({
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]
    });
    serde_json::from_value(pod).ok()
}

/// Whether the daemon set should run on the node: selector, affinity and taints.
fn should_run(ds: &DaemonSet, node: &Node) -> bool {
    let Some(template) = ds.spec.as_ref().and_then(|s| s.template.spec.as_ref()) else {
        return false;
    };
    // The template's own selector and affinity decide, not the affinity pinning a daemon
    // pod to its node; its tolerations count with the daemon tolerations added.
    let probe = Pod { spec: Some(template.clone()), ..Pod::default() };
    let mut tolerations = template.tolerations.clone().unwrap_or_default();
    tolerations.extend(daemon_tolerations());
    let node_taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    selectors::pod_matches_node(&probe, node)
        && taints::first_untolerated(node_taints, &tolerations, &["NoSchedule", "NoExecute"])
            .is_none()
}

/// The node a daemon pod is for: where it is bound, or where its affinity pins it.
fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = spec.node_name.clone().filter(|n| !n.is_empty()) {
        return Some(node);
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|f| f.key == "metadata.name")?
        .values
        .as_ref()?
        .first()
        .cloned()
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, DaemonSetError> {
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(spec) = ds.spec.as_ref() else { return Ok(Action::await_change()) };
    let name = ds.metadata.name.clone().unwrap_or_default();
    let namespace = ds.metadata.namespace.clone().unwrap_or_default();
    let failed = |action: &str| {
        let (daemon_set, action) = (format!("{namespace}/{name}"), action.to_owned());
        move |source| DaemonSetError { daemon_set, action, source }
    };
    let client = ctx.context.client.clone();
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(failed("listing nodes"))?
        .items;
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let pods: Vec<Pod> = pods_api
        .list(&ListParams::default())
        .await
        .map_err(failed("listing pods"))?
        .items
        .into_iter()
        .filter(|pod| {
            pod.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.controller == Some(true) && r.uid == uid)
                && selector::matches(
                    &spec.selector,
                    pod.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
                )
        })
        .collect();
    let canonical = serde_json::to_string(&spec.template).unwrap_or_default();
    let hash =
        template_hash(&canonical, ds.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0));
    revisions::record(
        &client,
        &namespace,
        &controller_reference(ds.as_ref()),
        &spec.template,
        &hash,
    )
    .await
    .map_err(failed("recording the revision"))?;

    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in &pods {
        if let Some(node) = target_node(pod) {
            by_node.entry(node).or_default().push(pod);
        }
    }
    let mut to_create = Vec::new();
    let mut to_delete: Vec<&Pod> = Vec::new();
    let mut desired = 0;
    let mut misscheduled = 0;
    let mut old_pods: Vec<&Pod> = Vec::new();
    let mut unavailable = 0;
    for node in &nodes {
        let node_name = node.metadata.name.clone().unwrap_or_default();
        let here: Vec<&Pod> = by_node.remove(&node_name).unwrap_or_default();
        let live: Vec<&Pod> =
            here.iter().copied().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
        if should_run(&ds, node) {
            desired += 1;
            let failed_pods: Vec<&Pod> =
                live.iter().copied().filter(|p| phase(p) == "Failed").collect();
            to_delete.extend(failed_pods.iter().copied());
            let mut running: Vec<&Pod> =
                live.iter().copied().filter(|p| phase(p) != "Failed").collect();
            running.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
            match running.split_first() {
                None if here.len() == live.len() => {
                    to_create.push(node_name.clone());
                    unavailable += 1;
                }
                None => unavailable += 1,
                Some((kept, extra)) => {
                    to_delete.extend(extra.iter().copied());
                    if !is_ready(kept) {
                        unavailable += 1;
                    }
                    if kept.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL)) != Some(&hash)
                    {
                        old_pods.push(kept);
                    }
                }
            }
        } else if !live.is_empty() {
            misscheduled += 1;
            to_delete.extend(live);
        }
    }
    // Pods for nodes that no longer exist.
    to_delete.extend(
        by_node.into_values().flatten().filter(|p| p.metadata.deletion_timestamp.is_none()),
    );

    let rolling =
        spec.update_strategy.as_ref().and_then(|s| s.type_.as_deref()) != Some("OnDelete");
    if rolling {
        let max_unavailable = spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.max_unavailable.clone())
            .unwrap_or(IntOrString::Int(1));
        let budget = match max_unavailable {
            IntOrString::Int(n) => n,
            IntOrString::String(p) => {
                (p.trim_end_matches('%').parse::<i32>().unwrap_or(0) * desired) / 100
            }
        }
        .max(1);
        // Old pods that are not available anyway go first; then as many as the budget allows.
        old_pods.sort_by_key(|p| is_ready(p));
        let mut allowed = budget - unavailable;
        for pod in old_pods {
            if !is_ready(pod) {
                to_delete.push(pod);
            } else if allowed > 0 {
                to_delete.push(pod);
                allowed -= 1;
            }
        }
    }

    let events = &ctx.events;
    for node in &to_create {
        let Some(pod) = pod_for(&ds, &hash, node) else { continue };
        match pods_api.create(&PostParams::default(), &pod).await {
            Ok(created) => {
                let note = format!("Created pod: {}", created.metadata.name.unwrap_or_default());
                events
                    .publish(
                        &reference_to(ds.as_ref()),
                        EventType::Normal,
                        "SuccessfulCreate",
                        "Create",
                        note,
                    )
                    .await;
            }
            Err(error) => {
                let note = format!("Error creating: {error}");
                events
                    .publish(
                        &reference_to(ds.as_ref()),
                        EventType::Warning,
                        "FailedCreate",
                        "Create",
                        note,
                    )
                    .await;
            }
        }
    }
    for pod in to_delete {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        if pods_api.delete(&pod_name, &params).await.is_ok() {
            let note = format!("Deleted pod: {pod_name}");
            events
                .publish(
                    &reference_to(ds.as_ref()),
                    EventType::Normal,
                    "SuccessfulDelete",
                    "Delete",
                    note,
                )
                .await;
        }
    }

    let current = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && target_node(p).is_some())
        .count() as i32;
    let ready =
        pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p)).count()
            as i32;
    let updated = pods
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL)) == Some(&hash)
        })
        .count() as i32;
    let status = json!({"status": {
        "observedGeneration": ds.metadata.generation,
        "desiredNumberScheduled": desired, "currentNumberScheduled": current.min(desired),
        "numberMisscheduled": misscheduled, "numberReady": ready, "numberAvailable": ready,
        "numberUnavailable": (desired - ready).max(0), "updatedNumberScheduled": updated,
    }});
    let previous = serde_json::to_value(&ds.status).unwrap_or(Value::Null);
    let changed = status["status"]
        .as_object()
        .is_some_and(|fields| fields.iter().any(|(k, v)| previous.get(k) != Some(v)));
    if changed {
        Api::<DaemonSet>::namespaced(client, &namespace)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map_err(failed("writing status"))?;
    }
    Ok(Action::requeue(Duration::from_secs(if ready < desired || updated < desired {
        2
    } else {
        60
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemon_set(spec_extra: Value) -> DaemonSet {
        let mut template_spec = json!({"containers": [{"name": "c", "image": "i"}]});
        template_spec.as_object_mut().unwrap().extend(spec_extra.as_object().unwrap().clone());
        serde_json::from_value(json!({"metadata": {"name": "ds", "namespace": "d", "uid": "u"},
            "spec": {"selector": {"matchLabels": {"app": "d"}},
                "template": {"metadata": {"labels": {"app": "d"}}, "spec": template_spec}}}))
        .unwrap()
    }

    fn node(labels: Value, taints: Value) -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": "n1", "labels": labels}, "spec": {"taints": taints}}),
        )
        .unwrap()
    }

    #[test]
    fn eligibility_follows_selectors_and_taints() {
        let check = |ds: &DaemonSet, node: &Node, expected: bool| {
            assert_eq!(should_run(ds, node), expected)
        };
        let plain = daemon_set(json!({}));
        check(&plain, &node(json!({}), json!([])), true);
        check(
            &plain,
            &node(
                json!({}),
                json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
            ),
            true,
        );
        check(
            &plain,
            &node(json!({}), json!([{"key": "dedicated", "value": "x", "effect": "NoSchedule"}])),
            false,
        );
        check(
            &plain,
            &node(json!({}), json!([{"key": "soft", "effect": "PreferNoSchedule"}])),
            true,
        );
        let picky = daemon_set(json!({"nodeSelector": {"disk": "ssd"}}));
        check(&picky, &node(json!({"disk": "ssd"}), json!([])), true);
        check(&picky, &node(json!({}), json!([])), false);
    }

    #[test]
    fn pods_are_pinned_to_their_node() {
        let pod = pod_for(&daemon_set(json!({})), "h", "n7").unwrap();
        assert_eq!(target_node(&pod), Some("n7".into()));
        assert_eq!(pod.metadata.labels.unwrap().get(HASH_LABEL).map(String::as_str), Some("h"));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("ds-"));
        assert_eq!(pod.spec.unwrap().tolerations.unwrap().len(), 6);
    }
}
