//! What a scheduling decision writes to the API, in background tasks so the loop moves on:
//! the binding (`pods/binding`), the `PodScheduled` condition and `nominatedNodeName` of a pod
//! that does not fit, the `Scheduled`/`FailedScheduling`/`Preempted` Events, and the eviction
//! of preemption victims. A failed binding undoes the assumption and requeues the pod.

use super::{Decision, Metrics, Shared};
use crate::framework::PodInfo;
use crate::queue::QueuedPod;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;

/// Repeats of one event (same pod, reason and message) within this window become a series
/// on the first Event instead of new Events, as upstream's event aggregation does.
const EVENT_SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// Normal or Warning.
#[derive(Debug, Clone, Copy)]
enum EventType {
    Normal,
    Warning,
}

/// What makes two Events the same: the pod's uid, the reason and the message.
type EventKey = (String, String, String);

/// An Event already written, which repeats extend.
#[derive(Debug, Clone)]
struct Recorded {
    name: String,
    namespace: String,
    count: i32,
    first: Instant,
}

#[derive(Clone)]
pub(super) struct Writer {
    client: kube::Client,
    scheduler_name: String,
    metrics: Arc<Metrics>,
    /// Events by (pod uid, reason, message).
    recorded: Arc<Mutex<HashMap<EventKey, Recorded>>>,
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
        Writer { client, scheduler_name, metrics, recorded: Arc::default() }
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

    /// Writes an events.k8s.io Event about the pod, or counts a repeat into the series of
    /// the same Event written within the last minutes.
    async fn event(
        &self,
        info: &PodInfo,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let key = (info.uid().to_owned(), reason.to_owned(), note.clone());
        let repeat = {
            let mut recorded =
                self.recorded.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            recorded.retain(|_, event| event.first.elapsed() < EVENT_SERIES_WINDOW);
            recorded.get_mut(&key).map(|event| {
                event.count += 1;
                event.clone()
            })
        };
        let now = MicroTime(jiff_now());
        if let Some(event) = repeat {
            let api: Api<Event> = Api::namespaced(self.client.clone(), &event.namespace);
            let series = EventSeries { count: event.count, last_observed_time: now };
            let patch = json!({"series": series});
            if let Err(error) =
                api.patch(&event.name, &PatchParams::default(), &Patch::Merge(&patch)).await
            {
                tracing::debug!(pod = %info.key(), reason, %error, "cannot update an event series");
            }
            return;
        }
        let name = format!("{}.{:x}", info.name(), jiff_now().as_nanosecond());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(info.namespace().to_owned()),
                ..ObjectMeta::default()
            },
            event_time: Some(now),
            action: Some(action.to_owned()),
            reason: Some(reason.to_owned()),
            note: Some(note),
            regarding: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(info.name().to_owned()),
                namespace: Some(info.namespace().to_owned()),
                uid: info.pod.metadata.uid.clone(),
                ..ObjectReference::default()
            }),
            reporting_controller: Some(self.scheduler_name.clone()),
            reporting_instance: Some(self.scheduler_name.clone()),
            type_: Some(match type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), info.namespace());
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                let recorded = Recorded {
                    name,
                    namespace: info.namespace().to_owned(),
                    count: 1,
                    first: Instant::now(),
                };
                self.recorded
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(key, recorded);
            }
            Err(error) => {
                tracing::debug!(pod = %info.key(), reason, %error, "cannot publish an event")
            }
        }
    }
}

/// Now, as the API's timestamps are made.
fn jiff_now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}
