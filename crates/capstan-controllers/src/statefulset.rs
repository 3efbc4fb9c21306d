//! The StatefulSet controller, as upstream's: pods with stable names `<set>-<ordinal>`, stable
//! host names under the governing Service (`subdomain`), and a PersistentVolumeClaim per
//! volume claim template and ordinal (`<template>-<set>-<ordinal>`), kept across pod
//! replacements. With `OrderedReady` (the default) pods are created one at a time in
//! ordinal order, each once its predecessors are Running and Ready, and removed one at a time
//! from the highest ordinal; `Parallel` does all at once. A RollingUpdate replaces pods at or
//! above `partition` whose revision is not the update revision, highest ordinal first, one at
//! a time, each once every pod is Ready; OnDelete leaves them. Templates are recorded as
//! ControllerRevisions, and the status carries the current and update revisions
//! `kubectl rollout status` compares.

use crate::Context;
use crate::context::controller_reference;
use crate::deployment::template_hash;
use crate::revisions::{self, HASH_LABEL};
use capstan_kube::events::{EventType, Recorder, reference_to};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

struct Ctx {
    context: Arc<Context>,
    events: Recorder,
}

#[derive(Debug, thiserror::Error)]
#[error("stateful set {set}: {action}")]
struct StatefulSetError {
    set: String,
    action: String,
    #[source]
    source: kube::Error,
}

pub(crate) async fn run(context: Arc<Context>) {
    let client = context.client.clone();
    let ctx = Arc::new(Ctx { events: context.recorder("statefulset-controller"), context });
    Controller::new(Api::<StatefulSet>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Pod>::all(client), watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "stateful set reconcile failed");
            }
        })
        .await;
}

fn error_policy(_set: Arc<StatefulSet>, error: &StatefulSetError, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(%error, "stateful set controller: retrying");
    Action::requeue(Duration::from_secs(5))
}

/// The ordinal of a pod named `<set>-<n>`.
fn ordinal(set_name: &str, pod: &Pod) -> Option<i32> {
    pod.metadata.name.as_deref()?.strip_prefix(set_name)?.strip_prefix('-')?.parse().ok()
}

/// Running and Ready: what OrderedReady waits for before the next ordinal.
fn is_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        && crate::pod_conditions::is_ready(pod)
}

fn revision_of(pod: &Pod) -> Option<&str> {
    pod.metadata.labels.as_ref()?.get(HASH_LABEL).map(String::as_str)
}

/// The claim name of template `claim` for the pod of `ordinal`.
fn claim_name(claim: &PersistentVolumeClaim, set_name: &str, ordinal: i32) -> String {
    format!("{}-{set_name}-{ordinal}", claim.metadata.name.as_deref().unwrap_or_default())
}

/// The pod of `ordinal` from the template: name, host name, labels, claims, owner.
fn pod_for(set: &StatefulSet, revision: &str, ordinal: i32) -> Option<Pod> {
    let spec = set.spec.as_ref()?;
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let name = format!("{set_name}-{ordinal}");
    let mut pod = json!({"metadata": spec.template.metadata.clone().unwrap_or_default(), "spec": spec.template.spec.clone()?});
    pod["metadata"]["name"] = json!(name);
    pod["metadata"]["namespace"] = json!(set.metadata.namespace);
    pod["metadata"]["labels"][HASH_LABEL] = json!(revision);
    pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] = json!(name);
    pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"] = json!(ordinal.to_string());
    pod["metadata"]["ownerReferences"] = json!([controller_reference(set)]);
    pod["spec"]["hostname"] = json!(name);
    if let Some(service) = spec.service_name.as_deref().filter(|s| !s.is_empty()) {
        pod["spec"]["subdomain"] = json!(service);
    }
    let mut volumes: Vec<Value> = pod["spec"]["volumes"].as_array().cloned().unwrap_or_default();
    for claim in spec.volume_claim_templates.iter().flatten() {
        let volume_name = claim.metadata.name.clone().unwrap_or_default();
        volumes.retain(|v| v["name"] != json!(volume_name));
        volumes.push(json!({"name": volume_name, "persistentVolumeClaim": {"claimName": claim_name(claim, &set_name, ordinal)}}));
    }
    if !volumes.is_empty() {
        pod["spec"]["volumes"] = Value::Array(volumes);
    }
    serde_json::from_value(pod).ok()
}

/// What one reconcile does to pods, decided from the ordinals present; pure.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Create(i32),
    Delete(i32),
    Wait,
    Done,
}

/// The next step for a set of `replicas` whose pods are `present` (ordinal → (ready,
/// terminating, up to date)); `ordered` is OrderedReady; `partition` applies to updates when
/// `rolling`. Parallel sets get every creation and deletion at once (all `Create`/`Delete`
/// steps are returned); ordered ones one step.
fn plan(
    replicas: i32,
    present: &BTreeMap<i32, (bool, bool, bool)>,
    ordered: bool,
    rolling: bool,
    partition: i32,
) -> Vec<Step> {
    let mut steps = Vec::new();
    for ordinal in 0..replicas {
        match present.get(&ordinal) {
            None => {
                steps.push(Step::Create(ordinal));
                if ordered {
                    return steps;
                }
            }
            Some((ready, terminating, _)) if ordered && (!ready || *terminating) => {
                return vec![Step::Wait];
            }
            Some(_) => {}
        }
    }
    let surplus: Vec<i32> = present.keys().copied().filter(|o| *o >= replicas).rev().collect();
    for ordinal in surplus {
        let (_, terminating, _) = present[&ordinal];
        if terminating {
            if ordered {
                return vec![Step::Wait];
            }
            continue;
        }
        steps.push(Step::Delete(ordinal));
        if ordered {
            return steps;
        }
    }
    if !steps.is_empty() {
        return steps;
    }
    if rolling {
        if present.values().any(|(ready, terminating, _)| !ready || *terminating) {
            return vec![Step::Wait];
        }
        let outdated = (partition.max(0)..replicas)
            .rev()
            .find(|o| present.get(o).is_some_and(|(_, _, current)| !current));
        if let Some(ordinal) = outdated {
            return vec![Step::Delete(ordinal)];
        }
    }
    vec![Step::Done]
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, StatefulSetError> {
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(spec) = set.spec.as_ref() else { return Ok(Action::await_change()) };
    let name = set.metadata.name.clone().unwrap_or_default();
    let namespace = set.metadata.namespace.clone().unwrap_or_default();
    let failed = |action: &str| {
        let (set, action) = (format!("{namespace}/{name}"), action.to_owned());
        move |source| StatefulSetError { set, action, source }
    };
    let client = ctx.context.client.clone();
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let pods: Vec<Pod> = pods_api
        .list(&ListParams::default())
        .await
        .map_err(failed("listing pods"))?
        .items
        .into_iter()
        .filter(|p| {
            p.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.controller == Some(true) && r.uid == uid)
        })
        .collect();
    let canonical = serde_json::to_string(&spec.template).unwrap_or_default();
    let update_hash =
        template_hash(&canonical, set.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0));
    let update_revision = revisions::record(
        &client,
        &namespace,
        &controller_reference(set.as_ref()),
        &spec.template,
        &update_hash,
    )
    .await
    .map_err(failed("recording the revision"))?;
    let by_ordinal: BTreeMap<i32, &Pod> =
        pods.iter().filter_map(|p| Some((ordinal(&name, p)?, p))).collect();

    // Failed pods are replaced: delete them first.
    for pod in by_ordinal
        .values()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"))
    {
        delete_pod(&ctx, &set, &pods_api, pod).await.map_err(failed("deleting a failed pod"))?;
    }
    let present: BTreeMap<i32, (bool, bool, bool)> = by_ordinal
        .iter()
        .map(|(o, p)| {
            (
                *o,
                (
                    is_ready(p),
                    p.metadata.deletion_timestamp.is_some(),
                    revision_of(p) == Some(update_hash.as_str()),
                ),
            )
        })
        .collect();
    let replicas = spec.replicas.unwrap_or(1);
    let ordered = spec.pod_management_policy.as_deref() != Some("Parallel");
    let strategy = spec.update_strategy.as_ref();
    let rolling = strategy.and_then(|s| s.type_.as_deref()) != Some("OnDelete");
    let partition =
        strategy.and_then(|s| s.rolling_update.as_ref()).and_then(|r| r.partition).unwrap_or(0);
    let steps = plan(replicas, &present, ordered, rolling, partition);
    for step in &steps {
        match step {
            Step::Create(ordinal) => create_pod(&ctx, &set, &pods_api, &update_hash, *ordinal)
                .await
                .map_err(failed("creating a pod"))?,
            Step::Delete(ordinal) => {
                if let Some(pod) = by_ordinal.get(ordinal) {
                    delete_pod(&ctx, &set, &pods_api, pod)
                        .await
                        .map_err(failed("deleting a pod"))?;
                }
            }
            Step::Wait | Step::Done => {}
        }
    }

    let live: Vec<&Pod> = pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
    let updated =
        live.iter().filter(|p| revision_of(p) == Some(update_hash.as_str())).count() as i32;
    let ready = live.iter().filter(|p| is_ready(p)).count() as i32;
    let previous_current = set.status.as_ref().and_then(|s| s.current_revision.clone());
    let current_revision = if updated == replicas && live.len() as i32 == replicas {
        update_revision.clone()
    } else {
        previous_current.unwrap_or_else(|| update_revision.clone())
    };
    let current_hash =
        current_revision.strip_prefix(&format!("{name}-")).unwrap_or_default().to_owned();
    let current =
        live.iter().filter(|p| revision_of(p) == Some(current_hash.as_str())).count() as i32;
    let status = json!({"status": {
        "observedGeneration": set.metadata.generation, "replicas": live.len(), "readyReplicas": ready,
        "availableReplicas": ready, "currentReplicas": current, "updatedReplicas": updated,
        "currentRevision": current_revision, "updateRevision": update_revision,
    }});
    let previous = serde_json::to_value(&set.status).unwrap_or(Value::Null);
    if status["status"]
        .as_object()
        .is_some_and(|f| f.iter().any(|(k, v)| previous.get(k) != Some(v)))
    {
        Api::<StatefulSet>::namespaced(client, &namespace)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map_err(failed("writing status"))?;
    }
    let settled = steps == [Step::Done];
    Ok(Action::requeue(Duration::from_secs(if settled { 60 } else { 1 })))
}

async fn create_pod(
    ctx: &Ctx,
    set: &StatefulSet,
    pods: &Api<Pod>,
    revision: &str,
    ordinal: i32,
) -> Result<(), kube::Error> {
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let namespace = set.metadata.namespace.clone().unwrap_or_default();
    let claims_api: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.context.client.clone(), &namespace);
    let selector_labels =
        set.spec.as_ref().and_then(|s| s.selector.match_labels.clone()).unwrap_or_default();
    for template in
        set.spec.as_ref().and_then(|s| s.volume_claim_templates.clone()).into_iter().flatten()
    {
        let claim_name = claim_name(&template, &set_name, ordinal);
        if claims_api.get_opt(&claim_name).await?.is_some() {
            continue;
        }
        let mut claim = template.clone();
        claim.metadata.name = Some(claim_name.clone());
        claim.metadata.namespace = Some(namespace.clone());
        claim.metadata.labels.get_or_insert_with(BTreeMap::new).extend(selector_labels.clone());
        claim.status = None;
        match claims_api.create(&PostParams::default(), &claim).await {
            Ok(_) => {
                let note = format!(
                    "create Claim {claim_name} Pod {set_name}-{ordinal} in StatefulSet {set_name} success"
                );
                ctx.events
                    .publish(
                        &reference_to(set),
                        EventType::Normal,
                        "SuccessfulCreate",
                        "Create",
                        note,
                    )
                    .await;
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => return Err(error),
        }
    }
    let Some(pod) = pod_for(set, revision, ordinal) else { return Ok(()) };
    match pods.create(&PostParams::default(), &pod).await {
        Ok(_) => {
            let note =
                format!("create Pod {set_name}-{ordinal} in StatefulSet {set_name} successful");
            ctx.events
                .publish(&reference_to(set), EventType::Normal, "SuccessfulCreate", "Create", note)
                .await;
            Ok(())
        }
        // The previous pod of this ordinal is still being deleted: the next reconcile retries.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(error),
    }
}

async fn delete_pod(
    ctx: &Ctx,
    set: &StatefulSet,
    pods: &Api<Pod>,
    pod: &Pod,
) -> Result<(), kube::Error> {
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match pods.delete(&pod_name, &params).await {
        Ok(_) => {
            let set_name = set.metadata.name.clone().unwrap_or_default();
            let note = format!("delete Pod {pod_name} in StatefulSet {set_name} successful");
            ctx.events
                .publish(&reference_to(set), EventType::Normal, "SuccessfulDelete", "Delete", note)
                .await;
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        replicas: i32,
        present: &[(i32, bool, bool, bool)],
        ordered: bool,
        partition: i32,
        expected: Vec<Step>,
    ) {
        let present: BTreeMap<i32, (bool, bool, bool)> =
            present.iter().map(|(o, r, t, c)| (*o, (*r, *t, *c))).collect();
        assert_eq!(
            plan(replicas, &present, ordered, true, partition),
            expected,
            "{replicas} replicas, {present:?}"
        );
    }

    #[test]
    fn ordered_sets_go_one_pod_at_a_time() {
        check(3, &[], true, 0, vec![Step::Create(0)]);
        check(3, &[(0, false, false, true)], true, 0, vec![Step::Wait]);
        check(3, &[(0, true, false, true)], true, 0, vec![Step::Create(1)]);
        check(
            1,
            &[(0, true, false, true), (1, true, false, true), (2, true, false, true)],
            true,
            0,
            vec![Step::Delete(2)],
        );
        check(
            1,
            &[(0, true, false, true), (1, true, false, true), (2, false, true, true)],
            true,
            0,
            vec![Step::Wait],
        );
        check(2, &[(0, true, false, true), (1, true, false, true)], true, 0, vec![Step::Done]);
    }

    #[test]
    fn parallel_sets_do_everything_at_once() {
        check(3, &[], false, 0, vec![Step::Create(0), Step::Create(1), Step::Create(2)]);
        check(
            0,
            &[(0, true, false, true), (1, false, false, true)],
            false,
            0,
            vec![Step::Delete(1), Step::Delete(0)],
        );
    }

    #[test]
    fn rolling_updates_go_down_from_the_top_and_respect_the_partition() {
        let old = |o| (o, true, false, false);
        check(3, &[old(0), old(1), old(2)], true, 0, vec![Step::Delete(2)]);
        check(3, &[old(0), old(1), (2, true, false, true)], true, 0, vec![Step::Delete(1)]);
        check(3, &[old(0), old(1), (2, true, false, true)], true, 2, vec![Step::Done]);
        check(
            3,
            &[old(0), (1, false, false, true), (2, true, false, true)],
            true,
            0,
            vec![Step::Wait],
        );
    }

    #[test]
    fn pods_get_stable_identities_and_claims() {
        let set: StatefulSet = serde_json::from_value(json!({"metadata": {"name": "db", "namespace": "d", "uid": "u"},
            "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}}))
        .unwrap();
        let pod = pod_for(&set, "h", 2).unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("db-2"));
        assert_eq!(ordinal("db", &pod), Some(2));
        let spec = pod.spec.unwrap();
        assert_eq!(
            (spec.hostname.as_deref(), spec.subdomain.as_deref()),
            (Some("db-2"), Some("db"))
        );
        let claim = spec.volumes.unwrap()[0].persistent_volume_claim.clone().unwrap();
        assert_eq!(claim.claim_name, "data-db-2");
    }
}
