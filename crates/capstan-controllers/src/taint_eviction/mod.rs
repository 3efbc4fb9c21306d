//! The taint eviction controller, upstream's `taint-eviction-controller` (the NoExecute taint
//! manager): pods on a node with NoExecute taints they do not tolerate are deleted at once;
//! pods that tolerate them for `tolerationSeconds` are deleted that long after the
//! controller first saw them under the taints; a pod whose node loses the taints in the
//! meantime stays. Before deleting, it marks the pod with the `DisruptionTarget` condition
//! (`DeletionByTaintManager`) and records a `TaintManagerEviction` Event. Deletion is
//! graceful: the kubelet finishes it, as after any other eviction.
//!
//! A kube-runtime controller over bound pods; node changes reach it through `watches`,
//! whose mapper records each node's NoExecute taints before it names the node's pods, so a
//! pod is always decided against taints at least as new as the event that woke it.
//! `decide.rs` holds the decisions.
//!
//! Known gap: a node's deletion reaches the mapper as its last state, so the pods of a
//! deleted tainted node are still evicted (upstream forgets the taints); pod GC deletes such
//! pods anyway.

mod decide;

use crate::Context;
use capstan_kube::events::{EventType, Recorder, reference_to};
use decide::Decision;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// Pods decided at once (upstream's eight workers).
const CONCURRENCY: u16 = 8;
/// How long to wait before trying a failed eviction again.
const RETRY: Duration = Duration::from_secs(1);

/// What the reconciler and the node mapper share.
struct Eviction {
    context: Arc<Context>,
    recorder: Recorder,
    pods: Store<Pod>,
    /// Each node's NoExecute taints as last seen; nodes without any are absent.
    tainted: Mutex<HashMap<String, Vec<Taint>>>,
    /// Since when each pod (by uid) has been seen under taints it tolerates for a while only.
    since: Mutex<HashMap<String, Instant>>,
}

#[derive(Debug, thiserror::Error)]
enum EvictionError {
    #[error("cannot mark pod {pod} as a disruption target")]
    Mark {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot delete pod {pod}")]
    Delete {
        pod: String,
        #[source]
        source: kube::Error,
    },
}

pub(crate) async fn run(context: Arc<Context>) {
    let client = context.client.clone();
    let bound = watcher::Config::default().fields("spec.nodeName!=");
    let controller = Controller::new(Api::<Pod>::all(client.clone()), bound)
        .with_config(Config::default().concurrency(CONCURRENCY));
    let eviction = Arc::new(Eviction {
        recorder: context.recorder("taint-eviction-controller"),
        context,
        pods: controller.store(),
        tainted: Mutex::new(HashMap::new()),
        since: Mutex::new(HashMap::new()),
    });
    let noticing = Arc::clone(&eviction);
    controller
        .watches(Api::<Node>::all(client), watcher::Config::default(), move |node| {
            noticing.node_changed(&node)
        })
        .run(reconcile, error_policy, eviction)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "taint eviction: reconcile failed");
            }
        })
        .await;
}

impl Eviction {
    fn tainted(&self) -> MutexGuard<'_, HashMap<String, Vec<Taint>>> {
        self.tainted.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn since(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        self.since.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the node's NoExecute taints; when they changed, the node's pods are decided
    /// again.
    fn node_changed(&self, node: &Node) -> Vec<ObjectRef<Pod>> {
        let name = node.name_any();
        let taints: Vec<Taint> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .into_iter()
            .flatten()
            .filter(|t| t.effect == "NoExecute")
            .cloned()
            .collect();
        {
            let mut tainted = self.tainted();
            if tainted.get(&name).map(Vec::as_slice).unwrap_or_default() == taints.as_slice() {
                return Vec::new();
            }
            tracing::debug!(node = %name, taints = taints.len(), "taint eviction: node's NoExecute taints changed");
            if taints.is_empty() {
                tainted.remove(&name);
            } else {
                tainted.insert(name.clone(), taints);
            }
        }
        let pods = self.pods.state();
        // Deadlines of pods that are gone are of no more use.
        let present: HashSet<&str> =
            pods.iter().filter_map(|p| p.metadata.uid.as_deref()).collect();
        self.since().retain(|uid, _| present.contains(uid.as_str()));
        pods.iter()
            .filter(|pod| node_of(pod) == Some(name.as_str()))
            .map(|pod| ObjectRef::from_obj(pod.as_ref()))
            .collect()
    }

    /// Marks the pod as a disruption target, then deletes it (gracefully, if it is still the
    /// same pod). A pod already gone counts as evicted.
    async fn evict(&self, pod: &Pod) -> Result<(), EvictionError> {
        let name = pod.name_any();
        let namespace = pod.namespace().unwrap_or_default();
        let full = format!("{namespace}/{name}");
        let note = format!("Marking for deletion Pod {full}");
        self.recorder
            .publish(
                &reference_to(pod),
                EventType::Normal,
                "TaintManagerEviction",
                "Evicting",
                note,
            )
            .await;
        tracing::info!(pod = %full, node = node_of(pod).unwrap_or_default(), "taint eviction: deleting pod");
        let api: Api<Pod> = Api::namespaced(self.context.client.clone(), &namespace);
        if !is_disruption_target(pod) {
            let now = Time(k8s_openapi::jiff::Timestamp::now());
            let condition = json!({"status": {"conditions": [{
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint",
                "lastTransitionTime": now,
            }]}});
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&condition))
                .await
            {
                Ok(_) => {}
                Err(error) if is_not_found(&error) => return Ok(()),
                Err(source) => return Err(EvictionError::Mark { pod: full, source }),
            }
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => Ok(()),
            Err(error) if is_not_found(&error) => Ok(()),
            Err(source) => Err(EvictionError::Delete { pod: full, source }),
        }
    }
}

async fn reconcile(pod: Arc<Pod>, eviction: Arc<Eviction>) -> Result<Action, EvictionError> {
    let Some(node) = node_of(&pod) else { return Ok(Action::await_change()) };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        // Already on its way out; nothing to add.
        eviction.since().remove(&uid);
        return Ok(Action::await_change());
    }
    let taints = eviction.tainted().get(node).cloned().unwrap_or_default();
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
    let now = Instant::now();
    let since = eviction.since().get(&uid).copied();
    match decide::decide(&taints, &tolerations, since, now) {
        Decision::Stay => {
            if eviction.since().remove(&uid).is_some() {
                let full = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
                tracing::info!(pod = %full, node, "taint eviction: deletion cancelled");
                let note = format!("Cancelling deletion of Pod {full}");
                eviction
                    .recorder
                    .publish(
                        &reference_to(pod.as_ref()),
                        EventType::Normal,
                        "TaintManagerEviction",
                        "CancellingEviction",
                        note,
                    )
                    .await;
            }
            Ok(Action::await_change())
        }
        Decision::EvictAt { deadline, since } => {
            if eviction.since().insert(uid, since).is_none() {
                tracing::debug!(pod = %pod.name_any(), node, seconds = (deadline - now).as_secs(), "taint eviction: deletion scheduled");
            }
            Ok(Action::requeue(deadline - now))
        }
        Decision::Evict => {
            eviction.evict(&pod).await?;
            eviction.since().remove(&uid);
            Ok(Action::await_change())
        }
    }
}

fn error_policy(_pod: Arc<Pod>, error: &EvictionError, _eviction: Arc<Eviction>) -> Action {
    tracing::warn!(error = %error, source = ?std::error::Error::source(error).map(ToString::to_string), "taint eviction: retrying");
    Action::requeue(RETRY)
}

/// The node a pod is bound to.
fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref().filter(|n| !n.is_empty())
}

fn is_disruption_target(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.conditions.as_ref()).into_iter().flatten().any(|c| {
        c.type_ == "DisruptionTarget"
            && c.status == "True"
            && c.reason.as_deref() == Some("DeletionByTaintManager")
    })
}

fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.is_not_found())
}
