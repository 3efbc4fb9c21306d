//! What a scheduling decision writes to the API, in background tasks so the loop moves on:
//! the binding (`pods/binding`), the `PodScheduled` condition and `nominatedNodeName` of a pod
//! that does not fit, the `Scheduled`/`FailedScheduling`/`Preempted` Events, and the eviction
//! of preemption victims. A failed binding undoes the assumption and requeues the pod.

use super::{Decision, Metrics, Shared};
use crate::framework::PodInfo;
use crate::queue::QueuedPod;
use capstan_kube::events::{EventType, Recorder, reference_to};
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;

#[derive(Clone)]
pub(super) struct Writer {
    client: kube::Client,
    scheduler_name: String,
    metrics: Arc<Metrics>,
    events: Recorder,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("scheduler_name", &self.scheduler_name)
            .finish_non_exhaustive()
    }
}

impl Writer {
    pub(super) fn new(
        client: kube::Client,
        scheduler_name: String,
        metrics: Arc<Metrics>,
    ) -> Writer {
        let events = Recorder::new(client.clone(), scheduler_name.clone());
        Writer { client, scheduler_name, metrics, events }
    }

    /// Carries out a decision in a task that holds `permit` until its writes are done.
    pub(super) fn carry_out(
        &self,
        shared: Arc<Shared>,
        decision: Decision,
        started: Instant,
        permit: OwnedSemaphorePermit,
    ) {
        if matches!(decision, Decision::Skip) {
            return;
        }
        let writer = self.clone();
        tokio::spawn(async move {
            match decision {
                Decision::Skip => {}
                Decision::Bind { pod, node } => writer.bind(&shared, pod, &node, started).await,
                Decision::Unschedulable { pod, message, nominated, victims } => {
                    writer.metrics.unschedulable.fetch_add(1, Ordering::Relaxed);
                    if let Some(node) = &nominated {
                        for victim in &victims {
                            writer.evict(victim, &pod.info, node).await;
                        }
                    }
                    writer
                        .record_failure(&pod.info, "Unschedulable", &message, nominated.as_deref())
                        .await;
                }
                Decision::Failed { pod, message } => {
                    writer.metrics.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(pod = %pod.info.key(), %message, "scheduling failed");
                    writer.record_failure(&pod.info, "SchedulerError", &message, None).await;
                }
            }
            drop(permit);
        });
    }

    async fn bind(&self, shared: &Shared, pod: QueuedPod, node: &str, started: Instant) {
        let info = &pod.info;
        let api: Api<Pod> = Api::namespaced(self.client.clone(), info.namespace());
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(info.name().to_owned()),
                namespace: Some(info.namespace().to_owned()),
                uid: info.pod.metadata.uid.clone(),
                ..ObjectMeta::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.to_owned()),
                ..ObjectReference::default()
            },
        };
        let result = api
            .create_subresource::<_, serde_json::Value>(
                "binding",
                info.name(),
                &PostParams::default(),
                &binding,
            )
            .await;
        match result {
            Ok(_) => {
                self.metrics.scheduled.fetch_add(1, Ordering::Relaxed);
                self.metrics.attempt_duration.observe(started.elapsed());
                let first = pod.initial_attempt.unwrap_or(pod.timestamp);
                self.metrics.pod_scheduling_duration.observe(first.elapsed());
                tracing::debug!(pod = %info.key(), node, "bound");
                let note = format!("Successfully assigned {} to {node}", info.key());
                self.event(info, EventType::Normal, "Scheduled", "Binding", note).await;
            }
            Err(error) => {
                let gone = matches!(&error, kube::Error::Api(status) if status.code == 404 || status.code == 409);
                let mut state = shared.lock();
                state.forget(info.uid());
                if gone {
                    // Deleted, or bound by someone else: the informer brings the truth.
                    state.queue.done(info.uid());
                    tracing::debug!(pod = %info.key(), node, %error, "binding refused");
                } else {
                    self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(pod = %info.key(), node, %error, "binding failed; retrying with backoff");
                    state.queue.requeue_after_error(pod, Instant::now());
                }
                drop(state);
                shared.wake.notify_one();
            }
        }
    }

    /// Sets `PodScheduled=False` (with the reason and message) and `nominatedNodeName` unless
    /// the pod already says so, and emits `FailedScheduling`.
    async fn record_failure(
        &self,
        info: &PodInfo,
        reason: &str,
        message: &str,
        nominated: Option<&str>,
    ) {
        self.event(info, EventType::Warning, "FailedScheduling", "Scheduling", message.to_owned())
            .await;
        let status = info.pod.status.as_ref();
        let current = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|conditions| conditions.iter().find(|c| c.type_ == "PodScheduled"));
        let same_condition = current.is_some_and(|c| {
            c.status == "False"
                && c.reason.as_deref() == Some(reason)
                && c.message.as_deref() == Some(message)
        });
        let current_nomination = status.and_then(|s| s.nominated_node_name.as_deref());
        if same_condition && (nominated.is_none() || nominated == current_nomination) {
            return;
        }
        let now = Time(jiff_now());
        let transition = match current {
            Some(c) if c.status == "False" => c.last_transition_time.clone().unwrap_or(now),
            _ => now,
        };
        let mut patch = json!({"status": {"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": reason, "message": message,
            "lastProbeTime": null, "lastTransitionTime": transition,
        }]}});
        if let Some(node) = nominated {
            patch["status"]["nominatedNodeName"] = json!(node);
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), info.namespace());
        if let Err(error) =
            api.patch_status(info.name(), &PatchParams::default(), &Patch::Strategic(&patch)).await
        {
            tracing::debug!(pod = %info.key(), %error, "cannot record the scheduling failure");
        }
    }

    /// Evicts a preemption victim: marks it with the `DisruptionTarget` condition, deletes it
    /// (only that incarnation of it) and tells why with a `Preempted` Event.
    async fn evict(&self, victim: &PodInfo, preemptor: &PodInfo, node: &str) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), victim.namespace());
        let condition = json!({"status": {"conditions": [{
            "type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
            "message": format!("{}: preempting to accommodate a higher priority pod", self.scheduler_name),
            "lastTransitionTime": Time(jiff_now()),
        }]}});
        if let Err(error) = api
            .patch_status(victim.name(), &PatchParams::default(), &Patch::Strategic(&condition))
            .await
        {
            tracing::debug!(pod = %victim.key(), %error, "cannot mark the preemption victim");
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: victim.pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(victim.name(), &params).await {
            Ok(_) => {
                self.metrics.preemption_victims.fetch_add(1, Ordering::Relaxed);
                tracing::info!(victim = %victim.key(), preemptor = %preemptor.key(), node, "preempted");
                let note = format!("Preempted by pod {} on node {node}", preemptor.uid());
                self.event(victim, EventType::Normal, "Preempted", "Preempting", note).await;
            }
            Err(error) => {
                tracing::warn!(victim = %victim.key(), %error, "cannot delete the preemption victim")
            }
        }
    }

    /// Records an Event about the pod.
    async fn event(
        &self,
        info: &PodInfo,
        kind: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.events.publish(&reference_to(info.pod.as_ref()), kind, reason, action, note).await;
    }
}

/// Now, as the API's timestamps are made.
fn jiff_now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}
