//! The Deployment controller, as upstream's: a Deployment owns one ReplicaSet per pod
//! template (named `<deployment>-<pod-template-hash>`, the hash also labelling its pods), the
//! one matching the current template being the new set and the others old. Each reconcile
//! adopts orphaned sets its selector matches, finds or creates the new set (a revision one
//! above every old set's), moves replicas from old to new by the strategy (RollingUpdate
//! within maxSurge/maxUnavailable, or Recreate), scales proportionally when the Deployment is
//! resized mid-rollout, keeps `revisionHistoryLimit` old sets, and writes the status and
//! conditions `kubectl rollout status` reads. Rollback (`kubectl rollout undo`) is the client
//! copying an old set's template back: to the controller it is an ordinary template change.

mod rollout;

pub(crate) use rollout::template_hash;

use crate::Context;
use crate::context::controller_reference;
use capstan_kube::events::{EventType, Recorder, reference_to};
use capstan_kube::selector;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use rollout::Set;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const HASH_LABEL: &str = "pod-template-hash";
/// Annotations of the Deployment that are not copied to its ReplicaSets.
const NOT_COPIED: [&str; 4] =
    [REVISION, DESIRED_REPLICAS, MAX_REPLICAS, "kubectl.kubernetes.io/last-applied-configuration"];

struct Ctx {
    context: Arc<Context>,
    events: Recorder,
}

#[derive(Debug, thiserror::Error)]
enum DeploymentError {
    #[error("deployment {deployment}: {action}")]
    Api {
        deployment: String,
        action: String,
        #[source]
        source: kube::Error,
    },
}

pub(crate) async fn run(context: Arc<Context>) {
    let deployments: Api<Deployment> = Api::all(context.client.clone());
    let sets: Api<ReplicaSet> = Api::all(context.client.clone());
    let ctx = Arc::new(Ctx { events: context.recorder("deployment-controller"), context });
    Controller::new(deployments, watcher::Config::default())
        .owns(sets, watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "deployment reconcile failed");
            }
        })
        .await;
}

fn error_policy(_deployment: Arc<Deployment>, error: &DeploymentError, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(%error, "deployment controller: retrying");
    Action::requeue(Duration::from_secs(5))
}

/// One Deployment's view of the world for a reconcile.
struct View<'a> {
    deployment: &'a Deployment,
    name: String,
    namespace: String,
    api: Api<ReplicaSet>,
    ctx: &'a Ctx,
}

impl View<'_> {
    fn failed(
        &self,
        action: impl Into<String>,
    ) -> impl FnOnce(kube::Error) -> DeploymentError + '_ {
        let action = action.into();
        move |source| DeploymentError::Api {
            deployment: format!("{}/{}", self.namespace, self.name),
            action,
            source,
        }
    }
}

async fn reconcile(deployment: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, DeploymentError> {
    if deployment.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(spec) = deployment.spec.as_ref() else { return Ok(Action::await_change()) };
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let namespace = deployment.metadata.namespace.clone().unwrap_or_default();
    let api: Api<ReplicaSet> = Api::namespaced(ctx.context.client.clone(), &namespace);
    let view = View { deployment: &deployment, name, namespace, api, ctx: &ctx };
    if selector::is_empty(&spec.selector) {
        return Ok(Action::await_change());
    }
    let mut sets = owned_sets(&view, &spec.selector).await?;
    let desired = spec.replicas.unwrap_or(1);
    let paused = spec.paused.unwrap_or(false);
    let new_set = match find_new_set(&view, &sets) {
        Some(index) => Some(ensure_newest_revision(&view, &mut sets, index).await?),
        None if paused => None,
        None => Some(create_new_set(&view, &mut sets).await?),
    };
    let mut complete = false;
    if let Some(new_index) = new_set {
        if paused {
            scale_proportionally(&view, &mut sets, new_index, desired).await?;
        } else if spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate") {
            recreate(&view, &mut sets, new_index, desired).await?;
        } else {
            rolling_update(&view, &mut sets, new_index, desired).await?;
        }
        complete = is_complete(&sets, new_index, desired);
        clean_up_history(&view, &sets, new_index).await?;
    }
    let progress_deadline = write_status(&view, &sets, new_set, desired, complete).await?;
    Ok(match progress_deadline {
        Some(wait) => Action::requeue(wait),
        None => Action::requeue(Duration::from_secs(300)),
    })
}

/// The ReplicaSets this Deployment controls, adopting orphans its selector matches.
async fn owned_sets(
    view: &View<'_>,
    wanted: &LabelSelector,
) -> Result<Vec<ReplicaSet>, DeploymentError> {
    let uid = view.deployment.metadata.uid.clone().unwrap_or_default();
    let listed =
        view.api.list(&ListParams::default()).await.map_err(view.failed("listing replica sets"))?;
    let mut owned = Vec::new();
    for set in listed.items {
        let controller =
            set.metadata.owner_references.iter().flatten().find(|r| r.controller == Some(true));
        match controller {
            Some(reference) if reference.uid == uid => owned.push(set),
            Some(_) => {}
            None => {
                let labels = set.metadata.labels.clone().unwrap_or_default();
                if set.metadata.deletion_timestamp.is_none() && selector::matches(wanted, &labels) {
                    let set_name = set.metadata.name.clone().unwrap_or_default();
                    let patch = json!({"metadata": {"ownerReferences": [controller_reference(view.deployment)],
                        "uid": set.metadata.uid}});
                    let adopted = view
                        .api
                        .patch(&set_name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map_err(view.failed(format!("adopting replica set {set_name}")))?;
                    owned.push(adopted);
                }
            }
        }
    }
    // Oldest first, as upstream orders old sets for scaling down.
    owned.sort_by_key(|s| {
        (s.metadata.creation_timestamp.clone().map(|t| t.0), s.metadata.name.clone())
    });
    Ok(owned)
}

/// The template without the hash label, for comparing a set's template with the
/// Deployment's.
fn comparable(template: Option<&PodTemplateSpec>) -> Value {
    let mut value = serde_json::to_value(template).unwrap_or(Value::Null);
    if let Some(labels) = value.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove(HASH_LABEL);
    }
    value
}

fn find_new_set(view: &View<'_>, sets: &[ReplicaSet]) -> Option<usize> {
    let wanted = comparable(view.deployment.spec.as_ref().map(|s| &s.template));
    sets.iter()
        .position(|set| comparable(set.spec.as_ref().and_then(|s| s.template.as_ref())) == wanted)
}

fn revision_of(set: &ReplicaSet) -> i64 {
    set.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn max_old_revision(sets: &[ReplicaSet], except: Option<usize>) -> i64 {
    sets.iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != except)
        .map(|(_, s)| revision_of(s))
        .max()
        .unwrap_or(0)
}

/// A set that becomes new again (a rollback) gets the next revision, as upstream does.
async fn ensure_newest_revision(
    view: &View<'_>,
    sets: &mut [ReplicaSet],
    index: usize,
) -> Result<usize, DeploymentError> {
    let newest = max_old_revision(sets, Some(index));
    if revision_of(&sets[index]) > newest {
        return Ok(index);
    }
    let set_name = sets[index].metadata.name.clone().unwrap_or_default();
    let mut annotations = copied_annotations(view.deployment);
    annotations.insert(REVISION.into(), (newest + 1).to_string());
    let patch = json!({"metadata": {"annotations": annotations}});
    sets[index] = view
        .api
        .patch(&set_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(view.failed(format!("updating the revision of {set_name}")))?;
    Ok(index)
}

fn copied_annotations(deployment: &Deployment) -> BTreeMap<String, String> {
    let mut annotations = deployment.metadata.annotations.clone().unwrap_or_default();
    annotations.retain(|key, _| !NOT_COPIED.contains(&key.as_str()));
    annotations
}

async fn create_new_set(
    view: &View<'_>,
    sets: &mut Vec<ReplicaSet>,
) -> Result<usize, DeploymentError> {
    let spec = view.deployment.spec.as_ref().map(|s| (s.template.clone(), s.selector.clone()));
    let (mut template, mut selector) = spec.unwrap_or_default();
    let collisions = view.deployment.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
    let canonical = serde_json::to_string(&template).unwrap_or_default();
    let hash = rollout::template_hash(&canonical, collisions);
    let metadata = template.metadata.get_or_insert_with(ObjectMeta::default);
    metadata.labels.get_or_insert_with(BTreeMap::new).insert(HASH_LABEL.into(), hash.clone());
    selector.match_labels.get_or_insert_with(BTreeMap::new).insert(HASH_LABEL.into(), hash.clone());
    let mut labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.clone());
    let desired = view.deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let surge = surge_of(view.deployment, desired);
    let mut annotations = copied_annotations(view.deployment);
    annotations.insert(REVISION.into(), (max_old_revision(sets, None) + 1).to_string());
    annotations.insert(DESIRED_REPLICAS.into(), desired.to_string());
    annotations.insert(MAX_REPLICAS.into(), (desired + surge).to_string());
    let set_name = format!("{}-{hash}", view.name);
    let set: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": set_name, "namespace": view.namespace, "labels": labels,
            "annotations": annotations, "ownerReferences": [controller_reference(view.deployment)]},
        "spec": {"replicas": 0, "minReadySeconds": view.deployment.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0),
            "selector": selector, "template": template},
    }))
    .unwrap_or_default();
    match view.api.create(&PostParams::default(), &set).await {
        Ok(created) => {
            let note = format!("Created new replica set \"{set_name}\"");
            set_progressing(view, "True", "NewReplicaSetCreated", &note).await?;
            sets.push(created);
            Ok(sets.len() - 1)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            // A set of that name with another template: count the collision so the next hash
            // differs (upstream's collisionCount).
            let patch = json!({"status": {"collisionCount": collisions + 1}});
            Api::<Deployment>::namespaced(view.ctx.context.client.clone(), &view.namespace)
                .patch_status(&view.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(view.failed("counting a hash collision"))?;
            Err(DeploymentError::Api {
                deployment: format!("{}/{}", view.namespace, view.name),
                action: format!("replica set {set_name} exists with another template"),
                source: kube::Error::Api(status),
            })
        }
        Err(source) => Err(view.failed(format!("creating replica set {set_name}"))(source)),
    }
}

fn surge_of(deployment: &Deployment, desired: i32) -> i32 {
    fenceposts(deployment, desired).0
}

fn fenceposts(deployment: &Deployment, desired: i32) -> (i32, i32) {
    let strategy = deployment.spec.as_ref().and_then(|s| s.strategy.as_ref());
    if strategy.and_then(|s| s.type_.as_deref()) == Some("Recreate") {
        return (0, desired);
    }
    let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
    rollout::fenceposts(
        rolling.and_then(|r| r.max_surge.as_ref()),
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        desired,
    )
}

fn as_set(set: &ReplicaSet) -> Set {
    Set {
        name: set.metadata.name.clone().unwrap_or_default(),
        replicas: set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
        available: set.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0),
    }
}

/// Scales one set, recording the Deployment's size on it and the `ScalingReplicaSet` Event.
async fn scale(
    view: &View<'_>,
    sets: &mut [ReplicaSet],
    index: usize,
    replicas: i32,
) -> Result<(), DeploymentError> {
    let current = as_set(&sets[index]);
    let desired = view.deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let surge = surge_of(view.deployment, desired);
    let annotations = sets[index].metadata.annotations.clone().unwrap_or_default();
    let recorded = annotations.get(DESIRED_REPLICAS) == Some(&desired.to_string())
        && annotations.get(MAX_REPLICAS) == Some(&(desired + surge).to_string());
    if current.replicas == replicas && recorded {
        return Ok(());
    }
    let patch = json!({"metadata": {"annotations": {DESIRED_REPLICAS: desired.to_string(),
        MAX_REPLICAS: (desired + surge).to_string()}}, "spec": {"replicas": replicas}});
    sets[index] = view
        .api
        .patch(&current.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(view.failed(format!("scaling replica set {}", current.name)))?;
    if current.replicas != replicas {
        let direction = if replicas > current.replicas { "up" } else { "down" };
        let note = format!(
            "Scaled {direction} replica set {} from {} to {replicas}",
            current.name, current.replicas
        );
        view.ctx
            .events
            .publish(
                &reference_to(view.deployment),
                EventType::Normal,
                "ScalingReplicaSet",
                "Scaling",
                note,
            )
            .await;
    }
    Ok(())
}

async fn rolling_update(
    view: &View<'_>,
    sets: &mut [ReplicaSet],
    new_index: usize,
    desired: i32,
) -> Result<(), DeploymentError> {
    let (surge, unavailable) = fenceposts(view.deployment, desired);
    let active_old =
        sets.iter().enumerate().filter(|(i, s)| *i != new_index && as_set(s).replicas > 0).count();
    let resized = sets[new_index]
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DESIRED_REPLICAS))
        .is_some_and(|recorded| *recorded != desired.to_string());
    if active_old > 0 && resized {
        return scale_proportionally(view, sets, new_index, desired).await;
    }
    let all: i32 = sets.iter().map(|s| as_set(s).replicas).sum();
    let target = rollout::new_set_target(desired, surge, all, as_set(&sets[new_index]).replicas);
    scale(view, sets, new_index, target).await?;
    let new_set = as_set(&sets[new_index]);
    let old: Vec<Set> =
        sets.iter().enumerate().filter(|(i, _)| *i != new_index).map(|(_, s)| as_set(s)).collect();
    for (name, replicas) in rollout::old_sets_scale_down(desired, unavailable, &new_set, &old) {
        if let Some(index) =
            sets.iter().position(|s| s.metadata.name.as_deref() == Some(name.as_str()))
        {
            scale(view, sets, index, replicas).await?;
        }
    }
    Ok(())
}

async fn recreate(
    view: &View<'_>,
    sets: &mut [ReplicaSet],
    new_index: usize,
    desired: i32,
) -> Result<(), DeploymentError> {
    for index in 0..sets.len() {
        if index != new_index && as_set(&sets[index]).replicas > 0 {
            scale(view, sets, index, 0).await?;
        }
    }
    // The new pods start only once every old pod is gone.
    let old_pods_remain = sets
        .iter()
        .enumerate()
        .any(|(i, s)| i != new_index && s.status.as_ref().is_some_and(|st| st.replicas > 0));
    if !old_pods_remain {
        scale(view, sets, new_index, desired).await?;
    }
    Ok(())
}

/// Spreads a resize over the active sets in proportion (during a rollout, or while paused).
async fn scale_proportionally(
    view: &View<'_>,
    sets: &mut [ReplicaSet],
    new_index: usize,
    desired: i32,
) -> Result<(), DeploymentError> {
    let active: Vec<usize> =
        (0..sets.len()).filter(|&i| i == new_index || as_set(&sets[i]).replicas > 0).collect();
    let surge = surge_of(view.deployment, desired);
    let total: i32 = active.iter().map(|&i| as_set(&sets[i]).replicas).sum();
    let allowed = if active.len() > 1 { desired + surge } else { desired };
    if total == allowed || (active.len() > 1 && total < allowed && total >= desired) {
        return Ok(());
    }
    // Newest first, so that the leftover of a scale-up favours the new set.
    let mut ordered = active.clone();
    ordered.sort_by_key(|&i| std::cmp::Reverse(revision_of(&sets[i])));
    let views: Vec<Set> = ordered.iter().map(|&i| as_set(&sets[i])).collect();
    for (index, replicas) in ordered.iter().zip(rollout::proportional(&views, allowed)) {
        scale(view, sets, *index, replicas).await?;
    }
    Ok(())
}

fn is_complete(sets: &[ReplicaSet], new_index: usize, desired: i32) -> bool {
    let new_set = &sets[new_index];
    let status = new_set.status.as_ref();
    let updated = status.map_or(0, |s| s.replicas);
    let available = status.and_then(|s| s.available_replicas).unwrap_or(0);
    let total: i32 = sets.iter().map(|s| s.status.as_ref().map_or(0, |st| st.replicas)).sum();
    as_set(new_set).replicas == desired
        && updated == desired
        && available == desired
        && total == desired
}

/// Deletes the oldest fully scaled-down sets beyond `revisionHistoryLimit` (default 10).
async fn clean_up_history(
    view: &View<'_>,
    sets: &[ReplicaSet],
    new_index: usize,
) -> Result<(), DeploymentError> {
    let limit =
        view.deployment.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10).max(0)
            as usize;
    let idle: Vec<&ReplicaSet> = sets
        .iter()
        .enumerate()
        .filter(|(i, s)| {
            *i != new_index
                && as_set(s).replicas == 0
                && s.status.as_ref().is_none_or(|st| st.replicas == 0)
        })
        .map(|(_, s)| s)
        .collect();
    let surplus = idle.len().saturating_sub(limit);
    for set in idle.into_iter().take(surplus) {
        let set_name = set.metadata.name.clone().unwrap_or_default();
        match view.api.delete(&set_name, &DeleteParams::default()).await {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(source) => {
                return Err(view.failed(format!("deleting old replica set {set_name}"))(source));
            }
        }
    }
    Ok(())
}

fn condition(
    status: &str,
    reason: &str,
    message: &str,
    kind: &str,
    previous: Option<&DeploymentCondition>,
) -> Value {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let transition = match previous {
        Some(p) if p.status == status => {
            p.last_transition_time.clone().unwrap_or_else(|| now.clone())
        }
        _ => now.clone(),
    };
    json!({"type": kind, "status": status, "reason": reason, "message": message,
        "lastUpdateTime": now, "lastTransitionTime": transition})
}

async fn set_progressing(
    view: &View<'_>,
    status: &str,
    reason: &str,
    message: &str,
) -> Result<(), DeploymentError> {
    let previous = find_condition(view.deployment, "Progressing");
    let patch = json!({"status": {"conditions": [condition(status, reason, message, "Progressing", previous)]}});
    Api::<Deployment>::namespaced(view.ctx.context.client.clone(), &view.namespace)
        .patch_status(&view.name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .map_err(view.failed("recording progress"))?;
    Ok(())
}

fn find_condition<'a>(deployment: &'a Deployment, kind: &str) -> Option<&'a DeploymentCondition> {
    deployment.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == kind)
}

/// Writes counts, `observedGeneration`, the Available and Progressing conditions and the
/// Deployment's revision annotation when they changed. Returns how long until the progress
/// deadline passes, when a rollout is under way.
async fn write_status(
    view: &View<'_>,
    sets: &[ReplicaSet],
    new_index: Option<usize>,
    desired: i32,
    complete: bool,
) -> Result<Option<Duration>, DeploymentError> {
    let deployment = view.deployment;
    let sum = |f: &dyn Fn(&ReplicaSet) -> i32| sets.iter().map(f).sum::<i32>();
    let replicas = sum(&|s| s.status.as_ref().map_or(0, |st| st.replicas));
    let ready = sum(&|s| s.status.as_ref().and_then(|st| st.ready_replicas).unwrap_or(0));
    let available = sum(&|s| s.status.as_ref().and_then(|st| st.available_replicas).unwrap_or(0));
    let updated = new_index.map_or(0, |i| sets[i].status.as_ref().map_or(0, |st| st.replicas));
    let (_, unavailable) = fenceposts(deployment, desired);
    let mut conditions = Vec::new();
    let previous_available = find_condition(deployment, "Available");
    conditions.push(if available >= desired - unavailable {
        condition(
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            "Available",
            previous_available,
        )
    } else {
        condition(
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            "Available",
            previous_available,
        )
    });
    let previous = find_condition(deployment, "Progressing");
    let set_name = new_index.and_then(|i| sets[i].metadata.name.clone()).unwrap_or_default();
    let paused = deployment.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    let deadline =
        deployment.spec.as_ref().and_then(|s| s.progress_deadline_seconds).unwrap_or(600);
    let mut wait = None;
    let progressing = if paused {
        Some(condition(
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused",
            "Progressing",
            previous,
        ))
    } else if complete {
        let message = format!("ReplicaSet \"{set_name}\" has successfully progressed.");
        Some(condition("True", "NewReplicaSetAvailable", &message, "Progressing", previous))
    } else if new_index.is_some() {
        let since = previous
            .filter(|p| p.reason.as_deref() != Some("NewReplicaSetAvailable"))
            .and_then(|p| p.last_update_time.as_ref())
            .map(|t| t.0);
        let now = k8s_openapi::jiff::Timestamp::now();
        let elapsed = since.map_or(0, |t| (now - t).get_seconds());
        if elapsed > i64::from(deadline) {
            let message = format!("ReplicaSet \"{set_name}\" has timed out progressing.");
            Some(condition("False", "ProgressDeadlineExceeded", &message, "Progressing", previous))
        } else {
            wait = Some(Duration::from_secs(
                u64::try_from(i64::from(deadline) - elapsed + 1).unwrap_or(1),
            ));
            let already = previous.is_some_and(|p| {
                p.status == "True" && p.reason.as_deref() != Some("NewReplicaSetAvailable")
            });
            // The clock of the deadline restarts only when progress starts, not on every step.
            (!already).then(|| {
                let message = format!("ReplicaSet \"{set_name}\" is progressing.");
                condition("True", "ReplicaSetUpdated", &message, "Progressing", previous)
            })
        }
    } else {
        None
    };
    conditions.extend(progressing);
    let current = deployment.status.clone().unwrap_or_default();
    let unchanged_condition = |new: &Value| {
        let kind = new["type"].as_str().unwrap_or_default();
        find_condition(deployment, kind).is_some_and(|old| {
            old.status == new["status"].as_str().unwrap_or_default()
                && old.reason.as_deref() == new["reason"].as_str()
                && old.message.as_deref() == new["message"].as_str()
        })
    };
    let counts_same = current.replicas == Some(replicas)
        && current.updated_replicas == Some(updated)
        && current.ready_replicas == Some(ready)
        && current.available_replicas == Some(available)
        && current.unavailable_replicas == Some((desired - available).max(0))
        && current.observed_generation == deployment.metadata.generation;
    conditions.retain(|c| !unchanged_condition(c));
    if !(counts_same && conditions.is_empty()) {
        let mut status = json!({
            "observedGeneration": deployment.metadata.generation,
            "replicas": replicas, "updatedReplicas": updated, "readyReplicas": ready,
            "availableReplicas": available, "unavailableReplicas": (desired - available).max(0),
        });
        if !conditions.is_empty() {
            status["conditions"] = Value::Array(conditions);
        }
        Api::<Deployment>::namespaced(view.ctx.context.client.clone(), &view.namespace)
            .patch_status(
                &view.name,
                &PatchParams::default(),
                &Patch::Strategic(&json!({"status": status})),
            )
            .await
            .map_err(view.failed("writing status"))?;
    }
    if let Some(index) = new_index {
        let revision = revision_of(&sets[index]).to_string();
        let recorded = deployment.metadata.annotations.as_ref().and_then(|a| a.get(REVISION));
        if recorded != Some(&revision) {
            let patch = json!({"metadata": {"annotations": {REVISION: revision}}});
            Api::<Deployment>::namespaced(view.ctx.context.client.clone(), &view.namespace)
                .patch(&view.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(view.failed("recording the revision"))?;
        }
    }
    Ok(wait)
}
