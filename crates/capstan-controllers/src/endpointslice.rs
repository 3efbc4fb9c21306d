//! The EndpointSlice controller, upstream's `pkg/controller/endpointslice`: every Service with
//! a selector (and not of type ExternalName) gets `discovery.k8s.io/v1` EndpointSlices of at
//! most 100 endpoints, labelled with its name and owned by it (the garbage collector deletes
//! them with it), their content computed by `service_endpoints`. Slices are updated in place
//! when possible and written only when they change. A sync waits until the cache shows this
//! controller's own earlier writes of the Service's slices, so that a slice just created is
//! never created twice.

use crate::Context;
use crate::endpoints::error_chain;
use crate::service_endpoints::{
    MANAGED_BY_LABEL, MAX_ENDPOINTS_PER_SLICE, SERVICE_NAME_LABEL, SLICE_CONTROLLER_NAME,
    SliceChanges, manages_endpoints, selects, slice_changes,
};
use crate::service_triggers::{ListSignals, Listed, Relists, Watches, changes, pod_triggers};
use capstan_kube::events::{EventType, Recorder, reference_to};
use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::Event;
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Every Service is looked at again this often, whatever happened.
const RESYNC: Duration = Duration::from_secs(300);
/// A failed sync is retried after this long.
const RETRY: Duration = Duration::from_secs(5);
/// How long a sync waits for the cache to show this controller's own last writes.
const STALE_RETRY: Duration = Duration::from_secs(1);
/// After this long a write the cache still does not show is no longer waited for.
const STALE_LIMIT: Duration = Duration::from_secs(30);
/// The node label whose value becomes the zone of the endpoints on the node.
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// What the cache should show of a slice this controller wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expected {
    /// The slice at this generation or a later one.
    AtLeast(i64),
    /// No slice: it was deleted.
    Gone,
}

/// A Service: its namespace and name.
type ServiceKey = (String, String);

/// By slice name: what the cache should show of it, and since when.
type Expectations = HashMap<String, (Expected, Instant)>;

/// The writes of each Service's slices the cache may not show yet, upstream's
/// `EndpointSliceTracker`: by Service (namespace, name), then by slice name.
#[derive(Debug, Default)]
struct SliceTracker {
    expected: Mutex<HashMap<ServiceKey, Expectations>>,
}

impl SliceTracker {
    fn record(&self, service: &ServiceKey, slice: String, expected: Expected) {
        let mut all = self.expected.lock().unwrap_or_else(PoisonError::into_inner);
        // Expectations of Services that are not synced again (deleted ones) expire here.
        all.retain(|_, expected| {
            expected.retain(|_, (_, at)| at.elapsed() < STALE_LIMIT);
            !expected.is_empty()
        });
        all.entry(service.clone()).or_default().insert(slice, (expected, Instant::now()));
    }

    /// Whether the cached slices of the Service lag behind what was written; expectations
    /// met (or too old to wait for) are forgotten.
    fn is_behind(&self, service: &ServiceKey, cached: &[Arc<EndpointSlice>]) -> bool {
        let mut all = self.expected.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(expected) = all.get_mut(service) else { return false };
        expected.retain(|name, (expected, at)| {
            let slice = cached.iter().find(|s| s.metadata.name.as_deref() == Some(name.as_str()));
            let met = match (expected, slice) {
                (Expected::Gone, slice) => slice.is_none(),
                (Expected::AtLeast(generation), Some(slice)) => {
                    slice.metadata.generation.unwrap_or_default() >= *generation
                }
                (Expected::AtLeast(_), None) => false,
            };
            !met && at.elapsed() < STALE_LIMIT
        });
        let behind = !expected.is_empty();
        if !behind {
            all.remove(service);
        }
        behind
    }
}

struct State {
    client: kube::Client,
    recorder: Recorder,
    pods: Store<Pod>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    /// Whether every cache has been filled once.
    listed: Listed,
    tracker: SliceTracker,
}

#[derive(Debug, thiserror::Error)]
enum SliceError {
    #[error("the caches are gone")]
    CachesGone,
    #[error("failed to create EndpointSlice for Service {namespace}/{name}")]
    Create {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to update {slice} EndpointSlice for Service {namespace}/{name}")]
    Update {
        namespace: String,
        name: String,
        slice: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to delete {slice} EndpointSlice for Service {namespace}/{name}")]
    Delete {
        namespace: String,
        name: String,
        slice: String,
        #[source]
        source: kube::Error,
    },
    #[error("skipping Pod {pod} for Service {namespace}/{name}: Node {node} Not Found")]
    UnknownNode { namespace: String, name: String, pod: String, node: String },
}

pub(crate) async fn run(context: Arc<Context>) {
    let client = context.client.clone();
    let (mut watches, relists) = Watches::new();
    let config = watcher::Config::default();

    let (services, writer) = reflector::store();
    let api: Api<Service> = Api::all(client.clone());
    let service_changes =
        changes(watcher(api, config.clone()).reflect(writer), watches.signals(Relists::All));
    let (pods, writer) = reflector::store();
    let api: Api<Pod> = Api::all(client.clone());
    let (pod_changes, pod_services) = pod_triggers(
        watcher(api, config.clone()).reflect(writer),
        watches.signals(Relists::AfterFirst),
        services.clone(),
        pods.clone(),
    );
    let (slices, writer) = reflector::store();
    let api: Api<EndpointSlice> = Api::all(client.clone());
    let managed = config.clone().labels(&format!("{MANAGED_BY_LABEL}={SLICE_CONTROLLER_NAME}"));
    let slice_changes_stream =
        changes(watcher(api, managed).reflect(writer), watches.signals(Relists::AfterFirst));
    let (nodes, writer) = reflector::store();
    let api: Api<Node> = Api::all(client.clone());
    let (node_changes, node_services) = node_triggers(
        watcher(api, config).reflect(writer),
        watches.signals(Relists::AfterFirst),
        services.clone(),
        pods.clone(),
        nodes.clone(),
    );

    let state = Arc::new(State {
        client,
        recorder: context.recorder("endpoint-slice-controller"),
        pods,
        slices,
        nodes,
        listed: watches.listed(),
        tracker: SliceTracker::default(),
    });
    // A slice requeues its Service, so that what someone else changed is put back.
    let known = services.clone();
    let slice_service = move |slice: EndpointSlice| {
        let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
        let service = ObjectRef::<Service>::new(name).within(slice.metadata.namespace.as_deref()?);
        known.get(&service).is_some().then_some(service)
    };
    Controller::for_stream(service_changes, services.clone())
        .watches_stream(pod_changes, pod_services)
        .watches_stream(slice_changes_stream, slice_service)
        .watches_stream(node_changes, node_services)
        .reconcile_all_on(relists)
        .run(reconcile, error_policy, state)
        .for_each(|result| {
            if let Err(error) = result {
                tracing::debug!(%error, "endpointslice controller");
            }
            std::future::ready(())
        })
        .await;
}

/// The node changes of `events` (a reflector's stream filling `nodes`) to trigger on, and
/// their mapping to the Services of the node's pods: only a node whose zone changed, or that
/// appeared or went, requeues anything, so that heartbeats do not.
fn node_triggers(
    events: impl Stream<Item = Result<Event<Node>, watcher::Error>>,
    signals: ListSignals,
    services: Store<Service>,
    pods: Store<Pod>,
    nodes: Store<Node>,
) -> (
    impl Stream<Item = Result<Node, watcher::Error>>,
    impl Fn(Node) -> Vec<ObjectRef<Service>> + Send + Sync + 'static,
) {
    // The zone each node was last seen in; nodes a list brings are remembered there.
    let zones: Arc<Mutex<HashMap<String, Option<String>>>> = Arc::default();
    let listing = Arc::clone(&zones);
    let events = events.inspect(move |event| {
        if let Ok(Event::InitApply(node)) = event {
            let name = node.metadata.name.clone().unwrap_or_default();
            listing.lock().unwrap_or_else(PoisonError::into_inner).insert(name, zone_of(node));
        }
    });
    let mapper = move |node: Node| {
        let name = node.metadata.name.clone().unwrap_or_default();
        let zone = zone_of(&node);
        // The reflector applied the event before passing the node on.
        let present = nodes.get(&ObjectRef::new(&name)).is_some();
        let changed = {
            let mut zones = zones.lock().unwrap_or_else(PoisonError::into_inner);
            if present {
                zones.insert(name.clone(), zone.clone()) != Some(zone)
            } else {
                zones.remove(&name);
                true
            }
        };
        if !changed {
            return Vec::new();
        }
        let on_node = pods
            .state_filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&name));
        let mut requeue = HashSet::new();
        for pod in &on_node {
            for service in services.state_filter(|service| selects(service, pod)) {
                requeue.insert(ObjectRef::from_obj(service.as_ref()));
            }
        }
        requeue.into_iter().collect::<Vec<_>>()
    };
    (changes(events, signals), mapper)
}

fn zone_of(node: &Node) -> Option<String> {
    node.metadata.labels.as_ref().and_then(|labels| labels.get(ZONE_LABEL)).cloned()
}

async fn reconcile(service: Arc<Service>, state: Arc<State>) -> Result<Action, SliceError> {
    if !state.listed.wait().await {
        return Err(SliceError::CachesGone);
    }
    if !manages_endpoints(&service) {
        return Ok(Action::await_change());
    }
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let name = service.metadata.name.clone().unwrap_or_default();
    let key = (namespace.clone(), name.clone());
    let existing = state.slices.state_filter(|slice| {
        let labels = slice.metadata.labels.as_ref();
        slice.metadata.namespace.as_deref() == Some(namespace.as_str())
            && labels.and_then(|l| l.get(SERVICE_NAME_LABEL)) == Some(&name)
            && labels.and_then(|l| l.get(MANAGED_BY_LABEL)).map(String::as_str)
                == Some(SLICE_CONTROLLER_NAME)
            // Slices being deleted are on their way out; counting them could stall the sync.
            && slice.metadata.deletion_timestamp.is_none()
    });
    if state.tracker.is_behind(&key, &existing) {
        return Ok(Action::requeue(STALE_RETRY));
    }
    let pods = state.pods.state_filter(|pod| selects(&service, pod));
    let pods: Vec<&Pod> = pods.iter().map(AsRef::as_ref).collect();
    let zones: HashMap<String, Option<String>> = pods
        .iter()
        .filter_map(|pod| pod.spec.as_ref()?.node_name.clone())
        .filter_map(|node| {
            let known = state.nodes.get(&ObjectRef::new(&node))?;
            let zone = zone_of(&known);
            Some((node, zone))
        })
        .collect();
    let existing_refs: Vec<&EndpointSlice> = existing.iter().map(AsRef::as_ref).collect();
    let changes = slice_changes(&service, &pods, &zones, &existing_refs, MAX_ENDPOINTS_PER_SLICE);
    let result = match write(&service, &state, &key, changes).await {
        Ok(Some((pod, node))) => Err(SliceError::UnknownNode {
            namespace: namespace.clone(),
            name: name.clone(),
            pod,
            node,
        }),
        Ok(None) => Ok(Action::requeue(RESYNC)),
        Err(error) => Err(error),
    };
    if let Err(error) = &result {
        let note = format!(
            "Error updating Endpoint Slices for Service {namespace}/{name}: {}",
            error_chain(error)
        );
        state
            .recorder
            .publish(
                &reference_to(service.as_ref()),
                EventType::Warning,
                "FailedToUpdateEndpointSlices",
                "UpdateEndpointSlices",
                note,
            )
            .await;
    }
    result
}

/// Creates, updates and deletes what `changes` says, recording each write in the tracker;
/// returns a pod left out for its unknown node, if any.
async fn write(
    service: &Service,
    state: &State,
    key: &ServiceKey,
    changes: SliceChanges,
) -> Result<Option<(String, String)>, SliceError> {
    let (namespace, name) = key.clone();
    let api: Api<EndpointSlice> = Api::namespaced(state.client.clone(), &namespace);
    let service_name = format!("{namespace}/{name}");
    // New slices for a Service being deleted would only race the garbage collector.
    if service.metadata.deletion_timestamp.is_none() {
        for slice in &changes.create {
            match api.create(&PostParams::default(), slice).await {
                Ok(created) => {
                    let slice_name = created.metadata.name.clone().unwrap_or_default();
                    let generation = created.metadata.generation.unwrap_or_default();
                    state.tracker.record(key, slice_name.clone(), Expected::AtLeast(generation));
                    tracing::debug!(service = %service_name, slice = %slice_name, "endpointslice created");
                }
                Err(error) if namespace_terminating(&error) => return Ok(None),
                Err(source) => {
                    return Err(SliceError::Create { namespace, name, source });
                }
            }
        }
    }
    for slice in &changes.update {
        let slice_name = slice.metadata.name.clone().unwrap_or_default();
        match api.replace(&slice_name, &PostParams::default(), slice).await {
            Ok(updated) => {
                let generation = updated.metadata.generation.unwrap_or_default();
                state.tracker.record(key, slice_name.clone(), Expected::AtLeast(generation));
                tracing::debug!(service = %service_name, slice = %slice_name, "endpointslice updated");
            }
            Err(source) => {
                return Err(SliceError::Update { namespace, name, slice: slice_name, source });
            }
        }
    }
    for slice in &changes.delete {
        let slice_name = slice.metadata.name.clone().unwrap_or_default();
        match api.delete(&slice_name, &DeleteParams::default()).await {
            Ok(_) => {
                state.tracker.record(key, slice_name.clone(), Expected::Gone);
                tracing::debug!(service = %service_name, slice = %slice_name, "endpointslice deleted");
            }
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(source) => {
                return Err(SliceError::Delete { namespace, name, slice: slice_name, source });
            }
        }
    }
    Ok(changes.unknown_nodes.into_iter().next())
}

fn error_policy(_service: Arc<Service>, error: &SliceError, _state: Arc<State>) -> Action {
    let conflict = matches!(
        error,
        SliceError::Update { source: kube::Error::Api(status), .. } if status.is_conflict()
    );
    if conflict || matches!(error, SliceError::UnknownNode { .. }) {
        tracing::debug!(error = %error_chain(error), "endpointslice controller: retrying");
    } else {
        tracing::warn!(error = %error_chain(error), "endpointslice controller: retrying");
    }
    Action::requeue(RETRY)
}

/// Whether the API server refused a create because the namespace is being deleted.
fn namespace_terminating(error: &kube::Error) -> bool {
    let kube::Error::Api(status) = error else { return false };
    let causes = status.details.as_ref().map(|d| d.causes.as_slice()).unwrap_or_default();
    status.is_forbidden() && causes.iter().any(|cause| cause.reason == "NamespaceTerminating")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cached(name: &str, generation: i64) -> Arc<EndpointSlice> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "generation": generation},
                "addressType": "IPv4", "endpoints": []}))
            .unwrap(),
        )
    }

    #[test]
    fn tracker_waits_for_the_cache_to_show_writes() {
        let tracker = SliceTracker::default();
        let service = ("d".to_owned(), "web".to_owned());
        assert!(!tracker.is_behind(&service, &[]));
        tracker.record(&service, "web-a".into(), Expected::AtLeast(2));
        tracker.record(&service, "web-b".into(), Expected::Gone);
        let cases: [(&[Arc<EndpointSlice>], bool); 4] = [
            // web-a not there yet, web-b still there.
            (&[cached("web-b", 1)], true),
            // web-a at an older generation.
            (&[cached("web-a", 1), cached("web-b", 1)], true),
            // web-a met, web-b still there.
            (&[cached("web-a", 2), cached("web-b", 1)], true),
            // Both met.
            (&[cached("web-a", 3)], false),
        ];
        for (slices, behind) in cases {
            assert_eq!(tracker.is_behind(&service, slices), behind, "{slices:?}");
        }
        // Met expectations are forgotten.
        assert!(!tracker.is_behind(&service, &[]));
    }
}
