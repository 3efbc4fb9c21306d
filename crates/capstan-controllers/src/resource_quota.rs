//! The resource quota controller: `status.used` of every ResourceQuota, for each resource its
//! `spec.hard` names: object counts (`pods`, `services`, `configmaps`, `secrets`,
//! `persistentvolumeclaims`, `replicationcontrollers`, `resourcequotas`,
//! `services.nodeports`, `services.loadbalancers`, and `count/<plural>[.<group>]` for any
//! type), and compute sums over the namespace's non-terminal pods (`requests.cpu`,
//! `requests.memory`, `limits.cpu`, `limits.memory`, `cpu`, `memory`, and
//! `requests.storage` over claims). Quota scopes narrow which pods count. Enforcement at
//! admission is the API server's, not this controller's.

use crate::Context;
use capstan_api::Quantity;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ResourceQuota, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::{ApiResource, Discovery};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Usage is recomputed at least this often, as upstream's quota resync.
const RESYNC: Duration = Duration::from_secs(10);

struct Ctx {
    context: Arc<Context>,
    discovery: Option<Discovery>,
}

#[derive(Debug, thiserror::Error)]
#[error("resource quota {quota}: {action}")]
struct QuotaError {
    quota: String,
    action: String,
    #[source]
    source: kube::Error,
}

pub(crate) async fn run(context: Arc<Context>) {
    let client = context.client.clone();
    let discovery = Discovery::new(client.clone()).run().await.ok();
    let controller =
        Controller::new(Api::<ResourceQuota>::all(client.clone()), watcher::Config::default());
    let quotas = controller.store();
    let ctx = Arc::new(Ctx { context, discovery });
    controller
        .watches(Api::<Pod>::all(client), watcher::Config::default(), move |pod: Pod| {
            let namespace = pod.metadata.namespace.clone();
            quotas
                .state()
                .iter()
                .filter(|q| q.metadata.namespace == namespace)
                .map(|q| ObjectRef::from_obj(q.as_ref()))
                .collect::<Vec<_>>()
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "resource quota reconcile failed");
            }
        })
        .await;
}

fn error_policy(_quota: Arc<ResourceQuota>, error: &QuotaError, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(%error, "resource quota controller: retrying");
    Action::requeue(Duration::from_secs(5))
}

/// Whether a pod counts under the quota's scopes (none: every non-terminal pod).
fn in_scope(pod: &Pod, scopes: &[String]) -> bool {
    let spec = pod.spec.as_ref();
    let terminating = spec.and_then(|s| s.active_deadline_seconds).is_some();
    let best_effort = spec.is_some_and(|s| {
        s.containers.iter().chain(s.init_containers.iter().flatten()).all(|c| {
            c.resources.as_ref().is_none_or(|r| {
                r.requests.as_ref().is_none_or(BTreeMap::is_empty)
                    && r.limits.as_ref().is_none_or(BTreeMap::is_empty)
            })
        })
    });
    scopes.iter().all(|scope| match scope.as_str() {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => best_effort,
        "NotBestEffort" => !best_effort,
        _ => true,
    })
}

/// A pod's requests or limits (`which`) of `resource`: regular containers summed, the init
/// containers' peak if larger, plus overhead.
fn pod_amount(pod: &Pod, which: &str, resource: &str) -> Option<Quantity> {
    let spec = pod.spec.as_ref()?;
    let of = |c: &k8s_openapi::api::core::v1::Container| -> Option<Quantity> {
        let resources = c.resources.as_ref()?;
        let list =
            if which == "limits" { resources.limits.as_ref() } else { resources.requests.as_ref() };
        Quantity::parse(&list?.get(resource)?.0).ok()
    };
    let mut total: Option<Quantity> = None;
    for container in &spec.containers {
        if let Some(amount) = of(container) {
            total = Some(total.map_or(amount, |t| t + amount));
        }
    }
    for container in spec.init_containers.iter().flatten() {
        if let Some(amount) = of(container)
            && total.is_none_or(|t| amount > t)
        {
            total = Some(amount);
        }
    }
    if let Some(overhead) = spec
        .overhead
        .as_ref()
        .and_then(|o| o.get(resource))
        .and_then(|q| Quantity::parse(&q.0).ok())
    {
        total = Some(total.map_or(overhead, |t| t + overhead));
    }
    total
}

/// The usage of the compute resources in `hard` over these pods; pure.
fn compute_usage(hard: &BTreeMap<String, ApiQuantity>, pods: &[&Pod]) -> BTreeMap<String, String> {
    let mut used = BTreeMap::new();
    for name in hard.keys() {
        let (which, resource) = match name.as_str() {
            "cpu" | "memory" | "ephemeral-storage" => ("requests", name.as_str()),
            other => match other.split_once('.') {
                Some((which @ ("requests" | "limits"), resource)) if resource != "storage" => {
                    (which, resource)
                }
                _ => continue,
            },
        };
        let zero = Quantity::from_units(0, capstan_api::Format::DecimalSi);
        let sum = pods
            .iter()
            .filter_map(|p| pod_amount(p, which, resource))
            .reduce(|a, b| a + b)
            .unwrap_or(zero);
        used.insert(name.clone(), sum.to_string());
    }
    used
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

async fn reconcile(quota: Arc<ResourceQuota>, ctx: Arc<Ctx>) -> Result<Action, QuotaError> {
    let name = quota.metadata.name.clone().unwrap_or_default();
    let namespace = quota.metadata.namespace.clone().unwrap_or_default();
    let failed = |action: &str| {
        let (quota, action) = (format!("{namespace}/{name}"), action.to_owned());
        move |source| QuotaError { quota, action, source }
    };
    let hard = quota.spec.as_ref().and_then(|s| s.hard.clone()).unwrap_or_default();
    let scopes = quota.spec.as_ref().and_then(|s| s.scopes.clone()).unwrap_or_default();
    let client = ctx.context.client.clone();
    let params = ListParams::default();
    let all_pods = Api::<Pod>::namespaced(client.clone(), &namespace)
        .list(&params)
        .await
        .map_err(failed("listing pods"))?
        .items;
    let pods: Vec<&Pod> =
        all_pods.iter().filter(|p| !is_terminal(p) && in_scope(p, &scopes)).collect();
    let mut used = compute_usage(&hard, &pods);
    for resource in hard.keys() {
        let count = match resource.as_str() {
            "pods" | "count/pods" => Some(pods.len()),
            "services" | "count/services" | "services.nodeports" | "services.loadbalancers" => {
                let services = Api::<Service>::namespaced(client.clone(), &namespace)
                    .list(&params)
                    .await
                    .map_err(failed("listing services"))?
                    .items;
                let of_type = |t: &str| {
                    services
                        .iter()
                        .filter(|s| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some(t))
                        .count()
                };
                Some(match resource.as_str() {
                    "services.nodeports" => of_type("NodePort"),
                    "services.loadbalancers" => of_type("LoadBalancer"),
                    _ => services.len(),
                })
            }
            "requests.storage" | "persistentvolumeclaims" | "count/persistentvolumeclaims" => {
                let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &namespace)
                    .list(&params)
                    .await
                    .map_err(failed("listing claims"))?
                    .items;
                if resource == "requests.storage" {
                    let zero = Quantity::from_units(0, capstan_api::Format::BinarySi);
                    let total = claims
                        .iter()
                        .filter_map(|c| {
                            c.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?.get("storage")
                        })
                        .filter_map(|q| Quantity::parse(&q.0).ok())
                        .reduce(|a, b| a + b)
                        .unwrap_or(zero);
                    used.insert(resource.clone(), total.to_string());
                    None
                } else {
                    Some(claims.len())
                }
            }
            other => match count_resource(&ctx, other) {
                Some(api_resource) => {
                    let api: Api<DynamicObject> =
                        Api::namespaced_with(client.clone(), &namespace, &api_resource);
                    Some(
                        api.list_metadata(&params)
                            .await
                            .map_err(failed("counting objects"))?
                            .items
                            .len(),
                    )
                }
                None => None,
            },
        };
        if let Some(count) = count {
            used.insert(resource.clone(), count.to_string());
        }
    }
    let current: BTreeMap<String, String> = quota
        .status
        .as_ref()
        .and_then(|s| s.used.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    let hard_recorded = quota.status.as_ref().and_then(|s| s.hard.clone()).unwrap_or_default();
    if current != used || hard_recorded != hard {
        let status = json!({"status": {"hard": hard, "used": used}});
        Api::<ResourceQuota>::namespaced(client, &namespace)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map_err(failed("writing status"))?;
    }
    Ok(Action::requeue(RESYNC))
}

/// The resource type a quota name stands for: `configmaps`, `secrets`,
/// `replicationcontrollers`, `resourcequotas`, or `count/<plural>[.<group>]`.
fn count_resource(ctx: &Ctx, name: &str) -> Option<ApiResource> {
    let target = match name {
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => name,
        other => other.strip_prefix("count/")?,
    };
    let (plural, group) = target.split_once('.').unwrap_or((target, ""));
    let group = ctx.discovery.as_ref()?.get(group)?;
    group
        .recommended_resources()
        .into_iter()
        .map(|(resource, _)| resource)
        .find(|r| r.plural == plural)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    #[test]
    fn sums_requests_and_limits_of_pods_in_scope() {
        let a = pod(json!({"containers": [{"name": "a", "image": "i",
            "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1"}}}]}));
        let b = pod(
            json!({"containers": [{"name": "b", "image": "i", "resources": {"requests": {"cpu": "500m"}}}],
            "initContainers": [{"name": "i", "image": "i", "resources": {"requests": {"cpu": "2"}}}]}),
        );
        let best_effort =
            pod(json!({"containers": [{"name": "c", "image": "i"}], "activeDeadlineSeconds": 5}));
        let hard: BTreeMap<String, ApiQuantity> = ["requests.cpu", "limits.cpu", "memory"]
            .iter()
            .map(|k| (k.to_string(), ApiQuantity("10".into())))
            .collect();
        let used = compute_usage(&hard, &[&a, &b, &best_effort]);
        assert_eq!(used["requests.cpu"], "2250m");
        assert_eq!(used["limits.cpu"], "1");
        assert_eq!(used["memory"], "64Mi");
        assert!(in_scope(&best_effort, &["BestEffort".into(), "Terminating".into()]));
        assert!(!in_scope(&a, &["BestEffort".into()]));
        assert!(in_scope(&a, &["NotTerminating".into()]));
    }
}
