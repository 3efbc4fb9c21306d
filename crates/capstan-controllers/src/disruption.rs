//! The disruption controller: the status of every PodDisruptionBudget, which eviction and
//! preemption consult. Expected pods are the matching pods for an integer `minAvailable`, else
//! the scale of the pods' controllers (ReplicaSet, ReplicationController, StatefulSet, or the
//! Deployment above a ReplicaSet), as upstream; healthy pods are the Ready ones not being
//! deleted; `disruptionsAllowed` is how many more may go.

use crate::Context;
use crate::pod_conditions::is_ready;
use capstan_kube::selector;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("pod disruption budget {budget}: {action}")]
struct DisruptionError {
    budget: String,
    action: String,
    #[source]
    source: kube::Error,
}

pub(crate) async fn run(context: Arc<Context>) {
    let client = context.client.clone();
    let controller = Controller::new(
        Api::<PodDisruptionBudget>::all(client.clone()),
        watcher::Config::default(),
    );
    let budgets = controller.store();
    controller
        // A pod's change matters to the budgets of its namespace.
        .watches(Api::<Pod>::all(client), watcher::Config::default(), move |pod: Pod| {
            let namespace = pod.metadata.namespace.clone();
            budgets
                .state()
                .iter()
                .filter(|b| b.metadata.namespace == namespace)
                .map(|b| ObjectRef::from_obj(b.as_ref()))
                .collect::<Vec<_>>()
        })
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "disruption reconcile failed");
            }
        })
        .await;
}

fn error_policy(
    _budget: Arc<PodDisruptionBudget>,
    error: &DisruptionError,
    _context: Arc<Context>,
) -> Action {
    tracing::warn!(%error, "disruption controller: retrying");
    Action::requeue(Duration::from_secs(5))
}

/// `value` of `total`: a count, or a percentage rounded up.
fn scaled_up(value: &IntOrString, total: i32) -> i32 {
    match value {
        IntOrString::Int(n) => *n,
        IntOrString::String(p) => {
            let percent: i64 = p.trim_end_matches('%').parse().unwrap_or(0);
            i32::try_from((percent * i64::from(total) + 99) / 100).unwrap_or(i32::MAX)
        }
    }
}

/// (expected, desired healthy) from the budget's spec, the matching pods' count and the
/// scale of their controllers.
fn desired_healthy(
    min_available: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    pods: i32,
    scale: i32,
) -> (i32, i32) {
    match (min_available, max_unavailable) {
        (Some(IntOrString::Int(n)), _) => (pods, *n),
        (Some(percent), _) => (scale, scaled_up(percent, scale)),
        (None, Some(max)) => (scale, (scale - scaled_up(max, scale)).max(0)),
        (None, None) => (pods, 0),
    }
}

async fn reconcile(
    budget: Arc<PodDisruptionBudget>,
    context: Arc<Context>,
) -> Result<Action, DisruptionError> {
    let name = budget.metadata.name.clone().unwrap_or_default();
    let namespace = budget.metadata.namespace.clone().unwrap_or_default();
    let failed = |action: &str| {
        let (budget, action) = (format!("{namespace}/{name}"), action.to_owned());
        move |source| DisruptionError { budget, action, source }
    };
    let Some(spec) = budget.spec.as_ref() else { return Ok(Action::await_change()) };
    let client = context.client.clone();
    let empty = BTreeMap::new();
    let pods: Vec<Pod> = match &spec.selector {
        Some(wanted) => Api::<Pod>::namespaced(client.clone(), &namespace)
            .list(&ListParams::default())
            .await
            .map_err(failed("listing pods"))?
            .items
            .into_iter()
            .filter(|p| selector::matches(wanted, p.metadata.labels.as_ref().unwrap_or(&empty)))
            .filter(|p| {
                !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
            .collect(),
        None => Vec::new(),
    };
    let needs_scale = !matches!(spec.min_available, Some(IntOrString::Int(_)));
    let scale = if needs_scale {
        controllers_scale(&client, &namespace, &pods)
            .await
            .map_err(failed("reading controllers' scale"))?
    } else {
        0
    };
    let (expected, desired) = desired_healthy(
        spec.min_available.as_ref(),
        spec.max_unavailable.as_ref(),
        pods.len() as i32,
        scale,
    );
    let healthy =
        pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p)).count()
            as i32;
    let allowed = (healthy - desired).max(0);
    let previous = budget.status.as_ref();
    let (condition_status, reason) =
        if allowed > 0 { ("True", "SufficientPods") } else { ("False", "InsufficientPods") };
    let old_condition = previous
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "DisruptionAllowed"));
    let unchanged = previous.is_some_and(|s| {
        s.current_healthy == healthy
            && s.desired_healthy == desired
            && s.expected_pods == expected
            && s.disruptions_allowed == allowed
            && s.observed_generation == budget.metadata.generation
    }) && old_condition
        .is_some_and(|c| c.status == condition_status && c.reason == reason);
    if unchanged {
        return Ok(Action::requeue(Duration::from_secs(60)));
    }
    let transition = match old_condition {
        Some(c) if c.status == condition_status => c.last_transition_time.clone(),
        _ => Time(k8s_openapi::jiff::Timestamp::now()),
    };
    let status = json!({"status": {
        "observedGeneration": budget.metadata.generation, "currentHealthy": healthy,
        "desiredHealthy": desired, "expectedPods": expected, "disruptionsAllowed": allowed,
        "conditions": [{"type": "DisruptionAllowed", "status": condition_status, "reason": reason,
            "message": "", "lastTransitionTime": transition, "observedGeneration": budget.metadata.generation}],
    }});
    Api::<PodDisruptionBudget>::namespaced(client, &namespace)
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map_err(failed("writing status"))?;
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// The summed `spec.replicas` of the controllers of these pods (each counted once; a
/// ReplicaSet owned by a Deployment counts as the Deployment).
async fn controllers_scale(
    client: &kube::Client,
    namespace: &str,
    pods: &[Pod],
) -> Result<i32, kube::Error> {
    let mut seen = HashSet::new();
    let mut total = 0;
    for pod in pods {
        let Some(owner) =
            pod.metadata.owner_references.iter().flatten().find(|o| o.controller == Some(true))
        else {
            continue;
        };
        if !seen.insert(owner.uid.clone()) {
            continue;
        }
        total += match owner.kind.as_str() {
            "ReplicaSet" => {
                let set = Api::<ReplicaSet>::namespaced(client.clone(), namespace)
                    .get_opt(&owner.name)
                    .await?;
                let parent = set.as_ref().and_then(|s| {
                    s.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .find(|o| o.controller == Some(true) && o.kind == "Deployment")
                        .cloned()
                });
                match parent {
                    Some(parent) if seen.insert(parent.uid.clone()) => {
                        let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
                            .get_opt(&parent.name)
                            .await?;
                        deployment.and_then(|d| d.spec?.replicas).unwrap_or(1)
                    }
                    Some(_) => 0,
                    None => set.and_then(|s| s.spec?.replicas).unwrap_or(1),
                }
            }
            "StatefulSet" => Api::<StatefulSet>::namespaced(client.clone(), namespace)
                .get_opt(&owner.name)
                .await?
                .and_then(|s| s.spec?.replicas)
                .unwrap_or(1),
            "ReplicationController" => {
                Api::<ReplicationController>::namespaced(client.clone(), namespace)
                    .get_opt(&owner.name)
                    .await?
                    .and_then(|s| s.spec?.replicas)
                    .unwrap_or(1)
            }
            _ => 0,
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_healthy_follows_upstream() {
        let int = IntOrString::Int;
        let pct = |p: &str| IntOrString::String(p.into());
        assert_eq!(desired_healthy(Some(&int(2)), None, 3, 0), (3, 2));
        assert_eq!(desired_healthy(Some(&pct("50%")), None, 3, 5), (5, 3));
        assert_eq!(desired_healthy(None, Some(&int(1)), 3, 4), (4, 3));
        assert_eq!(desired_healthy(None, Some(&pct("30%")), 3, 10), (10, 7));
        assert_eq!(desired_healthy(None, None, 3, 0), (3, 0));
    }
}
