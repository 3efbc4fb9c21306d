//! The endpoints controller, upstream's `pkg/controller/endpoint`: every Service with a
//! selector (and not of type ExternalName) gets an Endpoints object of its name listing its
//! pods' addresses and ports (computed by `service_endpoints`), written only when it differs
//! from the cached one. Services without a selector keep the Endpoints their users write.
//! When a Service is deleted its Endpoints go too; Endpoints left without a Service while the
//! controller was not running are deleted when it starts.

use crate::Context;
use crate::service_endpoints::{endpoints_to_write, manages_endpoints, selects};
use crate::service_triggers::{Listed, Relists, Watches, changes, pod_triggers};
use capstan_kube::events::{EventType, Recorder, reference_to};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Every Service is looked at again this often, whatever happened.
const RESYNC: Duration = Duration::from_secs(300);
/// A failed sync is retried after this long.
const RETRY: Duration = Duration::from_secs(5);
/// How long a sync waits for the cache to show this controller's own last write.
const STALE_RETRY: Duration = Duration::from_secs(1);
/// After this long a write the cache still does not show is no longer waited for.
const STALE_LIMIT: Duration = Duration::from_secs(30);
/// Endpoints carrying this annotation are leader-election locks, never deleted as leftovers.
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// A Service, and its Endpoints: namespace and name.
type ServiceKey = (String, String);

/// A write whose result the cache may not show yet.
#[derive(Debug)]
struct Written {
    /// The resource version the cache showed before the write (`None`: no object).
    before: Option<String>,
    at: Instant,
}

struct State {
    client: kube::Client,
    recorder: Recorder,
    services: Store<Service>,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
    /// Whether every cache has been filled once.
    listed: Listed,
    /// This controller's last write of each Endpoints object, until the cache shows it.
    written: Mutex<HashMap<ServiceKey, Written>>,
}

#[derive(Debug, thiserror::Error)]
enum EndpointsError {
    #[error("the caches are gone")]
    CachesGone,
    #[error("cannot create the endpoints of service {namespace}/{name}")]
    Create {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot update the endpoints of service {namespace}/{name}")]
    Update {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
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
    let (endpoints, writer) = reflector::store();
    let api: Api<Endpoints> = Api::all(client.clone());
    let endpoint_changes =
        changes(watcher(api, config).reflect(writer), watches.signals(Relists::AfterFirst));

    let state = Arc::new(State {
        client,
        recorder: context.recorder("endpoint-controller"),
        services: services.clone(),
        pods,
        endpoints,
        listed: watches.listed(),
        written: Mutex::new(HashMap::new()),
    });
    tokio::spawn(remove_leftovers(Arc::clone(&state)));
    let known = services.clone();
    // An Endpoints object requeues its Service, which puts back what someone else changed; one
    // without a Service is left alone, as its Service may be about to be created.
    let endpoints_service = move |endpoints: Endpoints| {
        let service = ObjectRef::<Service>::new(endpoints.metadata.name.as_deref()?)
            .within(endpoints.metadata.namespace.as_deref()?);
        known.get(&service).is_some().then_some(service)
    };
    Controller::for_stream(service_changes, services.clone())
        .watches_stream(pod_changes, pod_services)
        .watches_stream(endpoint_changes, endpoints_service)
        .reconcile_all_on(relists)
        .run(reconcile, error_policy, Arc::clone(&state))
        .for_each(|result| {
            match result {
                Ok(_) => {}
                // A Service requeued after its deletion: its Endpoints go with it.
                Err(controller::Error::ObjectNotFound(service)) => {
                    if let Some(namespace) = service.namespace.clone() {
                        tokio::spawn(remove_orphan(Arc::clone(&state), namespace, service.name));
                    }
                }
                Err(error) => tracing::debug!(%error, "endpoints controller"),
            }
            std::future::ready(())
        })
        .await;
}

async fn reconcile(service: Arc<Service>, state: Arc<State>) -> Result<Action, EndpointsError> {
    if !state.listed.wait().await {
        return Err(EndpointsError::CachesGone);
    }
    if !manages_endpoints(&service) {
        return Ok(Action::await_change());
    }
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let name = service.metadata.name.clone().unwrap_or_default();
    let pods = state.pods.state_filter(|pod| selects(&service, pod));
    let pods: Vec<&Pod> = pods.iter().map(AsRef::as_ref).collect();
    let current = state.endpoints.get(&ObjectRef::new(&name).within(&namespace));
    let key = (namespace.clone(), name.clone());
    if state.cache_is_behind(&key, current.as_deref()) {
        return Ok(Action::requeue(STALE_RETRY));
    }
    let Some(desired) = endpoints_to_write(&service, &pods, current.as_deref()) else {
        return Ok(Action::requeue(RESYNC));
    };
    let api: Api<Endpoints> = Api::namespaced(state.client.clone(), &namespace);
    let before = current.as_ref().and_then(|c| c.metadata.resource_version.clone());
    let written = match current {
        None => api.create(&PostParams::default(), &desired).await,
        Some(_) => api.replace(&name, &PostParams::default(), &desired).await,
    };
    match written {
        Ok(written) => {
            if written.metadata.resource_version != before {
                let mut writes = state.written.lock().unwrap_or_else(PoisonError::into_inner);
                // Writes of Services that are not synced again (deleted ones) expire here.
                writes.retain(|_, write| write.at.elapsed() < STALE_LIMIT);
                writes.insert(key, Written { before: before.clone(), at: Instant::now() });
            }
            tracing::debug!(service = %format!("{namespace}/{name}"), "endpoints written");
            Ok(Action::requeue(RESYNC))
        }
        // Nothing can be created in a namespace being deleted, nor needs to be.
        Err(error) if before.is_none() && namespace_terminating(&error) => {
            Ok(Action::await_change())
        }
        Err(source) => {
            let (reason, action, note) = if before.is_none() {
                let note =
                    format!("Failed to create endpoint for service {namespace}/{name}: {source}");
                ("FailedToCreateEndpoint", "CreateEndpoints", note)
            } else {
                let note = format!("Failed to update endpoint {namespace}/{name}: {source}");
                ("FailedToUpdateEndpoint", "UpdateEndpoints", note)
            };
            state
                .recorder
                .publish(&reference_to(&desired), EventType::Warning, reason, action, note)
                .await;
            Err(if before.is_none() {
                EndpointsError::Create { namespace, name, source }
            } else {
                EndpointsError::Update { namespace, name, source }
            })
        }
    }
}

fn error_policy(_service: Arc<Service>, error: &EndpointsError, _state: Arc<State>) -> Action {
    let conflict = matches!(
        error,
        EndpointsError::Update { source: kube::Error::Api(status), .. } if status.is_conflict()
    );
    if conflict {
        tracing::debug!(error = %error_chain(error), "endpoints controller: the cache was behind; retrying");
    } else {
        tracing::warn!(error = %error_chain(error), "endpoints controller: retrying");
    }
    Action::requeue(RETRY)
}

/// The error and its causes, `: `-separated, for logs and Events.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

impl State {
    /// Whether the cache still shows the Endpoints as they were before this controller's last
    /// write of them, so that a sync now would undo or repeat that write.
    fn cache_is_behind(&self, key: &ServiceKey, cached: Option<&Endpoints>) -> bool {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(write) = written.get(key) else { return false };
        let cached_version = cached.and_then(|c| c.metadata.resource_version.clone());
        if cached_version == write.before && write.at.elapsed() < STALE_LIMIT {
            return true;
        }
        written.remove(key);
        false
    }
}

/// Whether the API server refused a create because the namespace is being deleted.
fn namespace_terminating(error: &kube::Error) -> bool {
    let kube::Error::Api(status) = error else { return false };
    let causes = status.details.as_ref().map(|d| d.causes.as_slice()).unwrap_or_default();
    status.is_forbidden() && causes.iter().any(|cause| cause.reason == "NamespaceTerminating")
}

/// Deletes the Endpoints of a Service that no longer exists. The cache may be behind a
/// Service created again under the same name, so the API server is asked first.
async fn remove_orphan(state: Arc<State>, namespace: String, name: String) {
    let services: Api<Service> = Api::namespaced(state.client.clone(), &namespace);
    match services.get_opt(&name).await {
        Ok(None) => {}
        Ok(Some(_)) => return,
        Err(error) => {
            tracing::debug!(service = %format!("{namespace}/{name}"), %error, "endpoints controller: cannot check that a service is gone");
            return;
        }
    }
    let endpoints: Api<Endpoints> = Api::namespaced(state.client.clone(), &namespace);
    match endpoints.delete(&name, &DeleteParams::default()).await {
        Ok(_) => {
            tracing::info!(endpoints = %format!("{namespace}/{name}"), "endpoints of a deleted service deleted")
        }
        Err(kube::Error::Api(status)) if status.is_not_found() => {}
        Err(error) => {
            tracing::warn!(endpoints = %format!("{namespace}/{name}"), %error, "endpoints controller: cannot delete the endpoints of a deleted service")
        }
    }
}

/// Once both caches are filled: deletes Endpoints whose Service was deleted while this
/// controller was not running (leader-election locks aside), as upstream does on start.
async fn remove_leftovers(state: Arc<State>) {
    if !state.listed.wait().await {
        return;
    }
    for endpoints in state.endpoints.state() {
        let (Some(namespace), Some(name)) =
            (endpoints.metadata.namespace.clone(), endpoints.metadata.name.clone())
        else {
            continue;
        };
        let lock = endpoints
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(LEADER_ANNOTATION));
        let service = ObjectRef::<Service>::new(&name).within(&namespace);
        if !lock && state.services.get(&service).is_none() {
            remove_orphan(Arc::clone(&state), namespace, name).await;
        }
    }
}
