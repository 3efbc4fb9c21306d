//! An Event recorder: writes events.k8s.io/v1 Events about an object, and counts a repeat
//! (same object, reason and message within a few minutes) into the `series` of the Event
//! already written instead of writing another, as upstream's event aggregation does.
//! Failures to record are logged at debug level and otherwise ignored: an Event is a
//! courtesy, never a reason to fail the action it describes.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Repeats within this window extend the first Event's series.
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// What makes two Events the same: the object's uid (or namespace/name), reason and message.
type EventKey = (String, String, String);

/// An Event already written, which repeats extend.
#[derive(Debug, Clone)]
struct Recorded {
    name: String,
    count: i32,
    first: Instant,
}

/// Writes Events as one reporting controller (`default-scheduler`, `replicaset-controller`…).
#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    controller: String,
    recorded: Arc<Mutex<HashMap<EventKey, Recorded>>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("controller", &self.controller).finish_non_exhaustive()
    }
}

impl Recorder {
    pub fn new(client: kube::Client, controller: impl Into<String>) -> Recorder {
        Recorder { client, controller: controller.into(), recorded: Arc::default() }
    }

    /// Records that `action` happened to `regarding` for `reason`, with a human `note`.
    /// Cluster-scoped objects get their Events in `default`, as upstream.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        kind: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let namespace = regarding
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let object = regarding.uid.clone().unwrap_or_else(|| {
            format!("{namespace}/{}", regarding.name.as_deref().unwrap_or_default())
        });
        let key = (object, reason.to_owned(), note.clone());
        let repeat = {
            let mut recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
            recorded.retain(|_, event| event.first.elapsed() < SERIES_WINDOW);
            recorded.get_mut(&key).map(|event| {
                event.count += 1;
                event.clone()
            })
        };
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        if let Some(event) = repeat {
            let series = EventSeries { count: event.count, last_observed_time: now };
            let patch = json!({"series": series});
            if let Err(error) =
                api.patch(&event.name, &PatchParams::default(), &Patch::Merge(&patch)).await
            {
                tracing::debug!(event = %event.name, reason, %error, "cannot update an event series");
            }
            return;
        }
        let base = regarding.name.clone().unwrap_or_else(|| self.controller.clone());
        let name = format!("{base}.{:x}", k8s_openapi::jiff::Timestamp::now().as_nanosecond());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(now),
            action: Some(action.to_owned()),
            reason: Some(reason.to_owned()),
            note: Some(note),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.controller.clone()),
            type_: Some(match kind {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            ..Event::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                let recorded = Recorded { name, count: 1, first: Instant::now() };
                self.recorded.lock().unwrap_or_else(PoisonError::into_inner).insert(key, recorded);
            }
            Err(error) => tracing::debug!(reason, %error, "cannot publish an event"),
        }
    }
}

/// A reference to an object for `regarding`, from its type and metadata.
pub fn reference_to<K>(object: &K) -> ObjectReference
where
    K: kube::Resource<DynamicType = ()>,
{
    let meta = object.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}
