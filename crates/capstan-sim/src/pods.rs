//! The pod half of a hollow kubelet: one watch of every bound pod (a kube-runtime
//! controller), and for pods on our nodes the status a kubelet would write: Running at once,
//! Succeeded after a while for pods that do not restart, and the final deletion of pods
//! being deleted.
//!
//! Reconciles run on `pod_workers` tasks at most, never inline in the watch, so the watch
//! keeps up with hundreds of bindings a second. What this process did to each pod is kept
//! in [`PodRecord`]s, so a reconcile that reads a pod from before our own update does not
//! repeat or undo it.

use crate::config::SimConfig;
use crate::error::{SimError, describe, is_conflict, is_not_found};
use crate::nodes::{SimNode, SimNodes, patch_params};
use crate::pod_status::{
    PodRecord, Stage, Step, next_step, running_status, succeeded_status, uses_host_network,
    whole_seconds,
};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, Preconditions};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The field selector of pods bound to some node.
const BOUND_PODS: &str = "spec.nodeName!=";

/// How long a failed reconcile waits before it is tried again.
const RETRY_DELAY: Duration = Duration::from_secs(2);

/// How often records of pods that left the cluster are dropped (and their IPs released).
/// Deletions this process carries out release at once; this catches forced deletions.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// What every reconcile shares.
struct PodContext {
    client: kube::Client,
    config: Arc<SimConfig>,
    nodes: Arc<SimNodes>,
    /// By pod uid.
    records: Mutex<HashMap<String, PodRecord>>,
}

impl std::fmt::Debug for PodContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodContext").field("nodes", &self.nodes.len()).finish_non_exhaustive()
    }
}

impl PodContext {
    fn records(&self) -> MutexGuard<'_, HashMap<String, PodRecord>> {
        // Records are replaced whole under the lock, so a poisoned lock holds no half-made one.
        self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set_stage(&self, uid: &str, stage: Stage) {
        if let Some(record) = self.records().get_mut(uid) {
            record.stage = stage;
        }
    }

    /// Takes over a pod some earlier run reported Running: its IP stays taken and its run
    /// time counts from its start.
    fn adopt(
        &self,
        pod: &Pod,
        node: &SimNode,
        uid: &str,
        pod_ip: Option<Ipv4Addr>,
        started_at: Timestamp,
    ) {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        if let Some(address) = pod_ip
            && !uses_host_network(pod)
            && !node.ipam().reserve(uid, address)
        {
            tracing::debug!(pod = %format!("{namespace}/{name}"), %address, "the pod's IP is not ours to reserve");
        }
        self.records().insert(
            uid.to_owned(),
            PodRecord {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                node: node.node.name.clone(),
                started_at,
                stage: Stage::Running,
            },
        );
    }

    /// Adopts every pod on our nodes that an earlier run left Running, before any new pod
    /// gets an IP: otherwise a new pod reconciled first could be handed an address a running
    /// pod still has. Failures are only logged; reconciles adopt the pods later instead.
    async fn adopt_running_pods(&self) {
        let api: Api<Pod> = Api::all(self.client.clone());
        let pods = match api.list(&ListParams::default().fields(BOUND_PODS)).await {
            Ok(pods) => pods,
            Err(error) => {
                tracing::warn!(error = %describe(&error), "listing pods to adopt failed");
                return;
            }
        };
        let now = Timestamp::now();
        let mut adopted = 0;
        for pod in &pods.items {
            let node_name = pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref());
            let Some(node) = node_name.and_then(|name| self.nodes.get(name)) else { continue };
            let Some(uid) = pod.metadata.uid.as_deref() else { continue };
            if let Step::Adopt { pod_ip, started_at } =
                next_step(pod, None, now, self.config.succeed_after)
            {
                self.adopt(pod, node, uid, pod_ip, started_at);
                adopted += 1;
            }
        }
        if adopted > 0 {
            tracing::info!("adopted {adopted} running pods");
        }
    }

    /// Forgets a pod that is gone and gives its IP back.
    fn forget(&self, uid: &str, node: &SimNode) {
        self.records().remove(uid);
        node.ipam().release(uid);
    }
}

/// Runs the pod watch and its workers until the future is dropped.
pub(crate) async fn run(
    client: kube::Client,
    config: Arc<SimConfig>,
    nodes: Arc<SimNodes>,
) -> Result<(), SimError> {
    let api: Api<Pod> = Api::all(client.clone());
    // Only bound pods concern a kubelet; unbound ones (most of them while a benchmark creates
    // pods) are not sent at all.
    let watch = watcher::Config::default().fields(BOUND_PODS);
    let controller = Controller::new(api, watch)
        .with_config(controller::Config::default().concurrency(config.pod_workers));
    let store = controller.store();
    let context =
        Arc::new(PodContext { client, config, nodes, records: Mutex::new(HashMap::new()) });
    context.adopt_running_pods().await;
    let sweeper = sweep(Arc::clone(&context), store);
    let controller =
        controller.run(reconcile, error_policy, context).for_each(|result| async move {
            match result {
                Ok(_) => {}
                // `error_policy` logged it already.
                Err(controller::Error::ReconcilerFailed(..)) => {}
                Err(controller::Error::ObjectNotFound(object)) => {
                    tracing::debug!(pod = %object, "the pod left before it was reconciled");
                }
                Err(error) => tracing::warn!(error = %describe(&error), "watching pods failed"),
            }
        });
    tokio::select! {
        () = controller => Err(SimError::PodWatchEnded),
        () = sweeper => Err(SimError::PodWatchEnded),
    }
}

/// Takes one pod a step (or a few) further.
async fn reconcile(pod: Arc<Pod>, context: Arc<PodContext>) -> Result<Action, SimError> {
    let node_name = pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref());
    let Some(node) = node_name.and_then(|name| context.nodes.get(name)) else {
        return Ok(Action::await_change());
    };
    let Some(uid) = pod.metadata.uid.as_deref() else { return Ok(Action::await_change()) };
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(context.client.clone(), namespace);
    let full_name = format!("{namespace}/{name}");
    // Each step moves the record forward (Starting or none, to Running, to Finished or
    // Deleted), so this loop takes at most three turns.
    loop {
        let now = Timestamp::now();
        let record = context.records().get(uid).cloned();
        match next_step(&pod, record.as_ref(), now, context.config.succeed_after) {
            Step::Nothing => return Ok(Action::await_change()),
            Step::WaitToFinish(remaining) => return Ok(Action::requeue(remaining)),
            Step::Release => {
                node.ipam().release(uid);
                context.set_stage(uid, Stage::Finished);
                return Ok(Action::await_change());
            }
            Step::Delete => {
                tracing::debug!(pod = %full_name, "deleting");
                let params = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions {
                        uid: Some(uid.to_owned()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match pods.delete(name, &params).await {
                    Ok(_) => {}
                    // Gone already, or replaced by a pod of the same name: nothing to do.
                    Err(error) if is_not_found(&error) || is_conflict(&error) => {}
                    Err(source) => return Err(SimError::DeletePod { pod: full_name, source }),
                }
                node.ipam().release(uid);
                // Kept (as Deleted) until the pod leaves the cache, so that finalizers
                // holding it back do not make us delete it again at every change.
                let started_at = record.map_or(now, |record| record.started_at);
                context.records().insert(
                    uid.to_owned(),
                    PodRecord {
                        namespace: namespace.to_owned(),
                        name: name.to_owned(),
                        node: node.node.name.clone(),
                        started_at,
                        stage: Stage::Deleted,
                    },
                );
                return Ok(Action::await_change());
            }
            Step::Adopt { pod_ip, started_at } => {
                context.adopt(&pod, node, uid, pod_ip, started_at);
            }
            Step::Start => {
                let started_at = record.map_or_else(|| whole_seconds(now), |r| r.started_at);
                let pod_ip = if uses_host_network(&pod) {
                    node.node.internal_ip
                } else {
                    let mut ipam = node.ipam();
                    match ipam.allocate(uid) {
                        Some(address) => address,
                        None => {
                            return Err(SimError::PodRangeExhausted {
                                pod: full_name,
                                node: node.node.name.clone(),
                                range: ipam.range().to_string(),
                            });
                        }
                    }
                };
                context.records().insert(
                    uid.to_owned(),
                    PodRecord {
                        namespace: namespace.to_owned(),
                        name: name.to_owned(),
                        node: node.node.name.clone(),
                        started_at,
                        stage: Stage::Starting,
                    },
                );
                tracing::debug!(pod = %full_name, %pod_ip, "reporting running");
                let status = running_status(&pod, node.node.internal_ip, pod_ip, started_at);
                if !write_status(&pods, name, &full_name, status).await? {
                    context.forget(uid, node);
                    return Ok(Action::await_change());
                }
                context.set_stage(uid, Stage::Running);
            }
            Step::Finish => {
                let started_at = record.map_or(now, |record| record.started_at);
                tracing::debug!(pod = %full_name, "reporting succeeded");
                let status = succeeded_status(&pod, started_at, whole_seconds(now));
                if !write_status(&pods, name, &full_name, status).await? {
                    context.forget(uid, node);
                    return Ok(Action::await_change());
                }
                node.ipam().release(uid);
                context.set_stage(uid, Stage::Finished);
                return Ok(Action::await_change());
            }
        }
    }
}

/// Writes a pod's status through `pods/status`; `false` when the pod is gone. A strategic
/// merge patch merges conditions by type, so conditions other writers set stay.
async fn write_status(
    pods: &Api<Pod>,
    name: &str,
    full_name: &str,
    status: k8s_openapi::api::core::v1::PodStatus,
) -> Result<bool, SimError> {
    let patch = Patch::Strategic(serde_json::json!({ "status": status }));
    match pods.patch_status(name, &patch_params(), &patch).await {
        Ok(_) => Ok(true),
        Err(error) if is_not_found(&error) => Ok(false),
        Err(source) => Err(SimError::PodStatus { pod: full_name.to_owned(), source }),
    }
}

fn error_policy(pod: Arc<Pod>, error: &SimError, _context: Arc<PodContext>) -> Action {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    tracing::warn!(pod = %format!("{namespace}/{name}"), error = %describe(error), "pod update failed, trying again");
    Action::requeue(RETRY_DELAY)
}

/// Every `SWEEP_INTERVAL`, drops the records of pods no longer in the watch's cache (or
/// replaced by another pod of the same name) and releases their IPs.
async fn sweep(context: Arc<PodContext>, store: Store<Pod>) {
    // Before the watch's first list is in, every adopted pod would look gone. If the watch
    // ends before that, the controller's end ends the run anyway.
    if store.wait_until_ready().await.is_err() {
        return;
    }
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + SWEEP_INTERVAL, SWEEP_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let gone: Vec<(String, String)> = context
            .records()
            .iter()
            .filter(|(uid, record)| {
                let key = ObjectRef::<Pod>::new(&record.name).within(&record.namespace);
                let current = store.get(&key);
                current.and_then(|pod| pod.metadata.uid.clone()).as_deref() != Some(uid.as_str())
            })
            .map(|(uid, record)| (uid.clone(), record.node.clone()))
            .collect();
        for (uid, node) in gone {
            match context.nodes.get(&node) {
                Some(node) => context.forget(&uid, node),
                None => {
                    context.records().remove(&uid);
                }
            }
        }
    }
}
