//! The garbage collector: deletes objects whose owners are gone (background deletion),
//! deletes the dependents of an owner deleted in the foreground before letting the owner go,
//! and releases the dependents of an owner deleted with `orphan`. Like upstream's, it watches
//! the metadata of every resource type that can be listed, watched and deleted (Events
//! excepted) and keeps the ownership graph in memory (`graph.rs` decides; this file acts).
//! An owner missing from the graph is looked up through the API before anything is deleted,
//! so a graph that is still filling never causes a deletion.

mod graph;

use crate::Context;
use futures_util::StreamExt;
use graph::{Action, Graph, Location, Object};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, PartialObjectMeta, Patch, PatchParams, PropagationPolicy,
};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope, verbs};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long to wait before looking at an object again after a failed API call.
const RETRY: Duration = Duration::from_secs(2);

/// What the watchers and the worker share.
struct Shared {
    graph: Mutex<Graph>,
    /// Resource types by `api_version/plural`, to act on objects.
    resources: HashMap<(String, String), (ApiResource, ApiCapabilities)>,
    discovery: Discovery,
    attend: mpsc::UnboundedSender<String>,
    synced: AtomicUsize,
}

impl Shared {
    fn graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn attend_all(&self, uids: Vec<String>) {
        for uid in uids {
            let _ = self.attend.send(uid);
        }
    }
}

pub(crate) async fn run(context: Arc<Context>) {
    let client = context.client.clone();
    let discovery = loop {
        match Discovery::new(client.clone()).run().await {
            Ok(discovery) => break discovery,
            Err(error) => {
                tracing::warn!(%error, "garbage collector: discovery failed; retrying");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    let mut resources = HashMap::new();
    for group in discovery.groups() {
        for (resource, capabilities) in group.recommended_resources() {
            let usable = [verbs::LIST, verbs::WATCH, verbs::DELETE]
                .iter()
                .all(|verb| capabilities.supports_operation(verb));
            if !usable || resource.plural == "events" {
                continue;
            }
            resources.insert(
                (resource.api_version.clone(), resource.plural.clone()),
                (resource, capabilities),
            );
        }
    }
    let (attend, mut attending) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        graph: Mutex::new(Graph::default()),
        resources,
        discovery,
        attend,
        synced: AtomicUsize::new(0),
    });
    let monitors: Vec<_> = shared
        .resources
        .values()
        .map(|(resource, _)| {
            tokio::spawn(monitor(client.clone(), resource.clone(), Arc::clone(&shared)))
        })
        .collect();
    tracing::info!(resources = monitors.len(), "garbage collector monitoring");
    while shared.synced.load(Ordering::SeqCst) < monitors.len() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One object at a time: the graph changes between decisions, and each decision reads it
    // afresh. Duplicate requests for one uid collapse while it waits.
    while let Some(uid) = attending.recv().await {
        let mut batch = HashSet::from([uid]);
        while let Ok(more) = attending.try_recv() {
            batch.insert(more);
        }
        for uid in batch {
            attend_object(&client, &shared, &uid).await;
        }
    }
    for monitor in monitors {
        monitor.abort();
    }
}

/// Watches the metadata of one resource type into the graph.
async fn monitor(client: kube::Client, resource: ApiResource, shared: Arc<Shared>) {
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &resource);
    let mut stream = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
    let mut known: HashSet<String> = HashSet::new();
    let mut listing: Option<HashSet<String>> = None;
    let mut synced = false;
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => listing = Some(HashSet::new()),
            Ok(Event::InitApply(meta)) | Ok(Event::Apply(meta)) => {
                let Some(object) = object_of(&resource, &meta.metadata) else { continue };
                if let Some(listing) = listing.as_mut() {
                    listing.insert(object.uid.clone());
                }
                known.insert(object.uid.clone());
                let attend = shared.graph().upsert(object);
                shared.attend_all(attend);
            }
            Ok(Event::Delete(meta)) => {
                let Some(uid) = meta.metadata.uid else { continue };
                known.remove(&uid);
                let attend = shared.graph().remove(&uid);
                shared.attend_all(attend);
            }
            Ok(Event::InitDone) => {
                let listed = listing.take().unwrap_or_default();
                for uid in known.difference(&listed).cloned().collect::<Vec<_>>() {
                    known.remove(&uid);
                    let attend = shared.graph().remove(&uid);
                    shared.attend_all(attend);
                }
                if !synced {
                    synced = true;
                    shared.synced.fetch_add(1, Ordering::SeqCst);
                }
            }
            Err(error) => {
                tracing::debug!(resource = %resource.plural, %error, "garbage collector watch failed; retrying")
            }
        }
    }
}

fn object_of(
    resource: &ApiResource,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<Object> {
    Some(Object {
        uid: meta.uid.clone()?,
        location: Location {
            api_version: resource.api_version.clone(),
            plural: resource.plural.clone(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone()?,
        },
        owners: meta.owner_references.clone().unwrap_or_default(),
        deleting: meta.deletion_timestamp.is_some(),
        finalizers: meta.finalizers.clone().unwrap_or_default(),
    })
}

/// Decides what an object needs and does it.
async fn attend_object(client: &kube::Client, shared: &Arc<Shared>, uid: &str) {
    let actions = shared.graph().decide(uid);
    for action in actions {
        let action = match action {
            Action::VerifyOwners { uid, absent } => {
                match verify(client, shared, &uid, &absent).await {
                    Ok(gone) => match shared.graph().resolve_absent(&uid, &gone) {
                        Some(action) => action,
                        None => continue,
                    },
                    Err(error) => {
                        tracing::debug!(uid, %error, "garbage collector cannot check owners; retrying");
                        retry_later(shared, uid);
                        continue;
                    }
                }
            }
            action => action,
        };
        if let Err(error) = act(client, shared, &action).await {
            tracing::debug!(?action, %error, "garbage collector action failed; retrying");
            if let Action::Delete { uid, .. }
            | Action::RemoveOwners { uid, .. }
            | Action::RemoveFinalizer { uid, .. } = action
            {
                retry_later(shared, uid);
            }
        }
    }
}

fn retry_later(shared: &Arc<Shared>, uid: String) {
    let attend = shared.attend.clone();
    tokio::spawn(async move {
        tokio::time::sleep(RETRY).await;
        let _ = attend.send(uid);
    });
}

/// Of the owners the graph does not know, the uids that really do not exist (not found, or
/// found with another uid: a new object of the same name).
async fn verify(
    client: &kube::Client,
    shared: &Shared,
    dependent: &str,
    absent: &[OwnerReference],
) -> Result<Vec<String>, kube::Error> {
    let namespace = shared.graph().get(dependent).and_then(|o| o.location.namespace.clone());
    let mut gone = Vec::new();
    for owner in absent {
        let (group, version) = match owner.api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", owner.api_version.as_str()),
        };
        let kind = kube::api::GroupVersionKind::gvk(group, version, &owner.kind);
        // An owner of a kind the server does not serve cannot be checked: leave it be.
        let Some((resource, capabilities)) = shared.discovery.resolve_gvk(&kind) else { continue };
        let api: Api<DynamicObject> = match (&capabilities.scope, &namespace) {
            (Scope::Namespaced, Some(namespace)) => {
                Api::namespaced_with(client.clone(), namespace, &resource)
            }
            (Scope::Namespaced, None) => {
                // A cluster-scoped object cannot be owned by a namespaced one.
                gone.push(owner.uid.clone());
                continue;
            }
            (Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
        };
        match api.get_metadata_opt(&owner.name).await? {
            Some(found) if found.metadata.uid.as_deref() == Some(owner.uid.as_str()) => {}
            _ => gone.push(owner.uid.clone()),
        }
    }
    Ok(gone)
}

async fn act(client: &kube::Client, shared: &Shared, action: &Action) -> Result<(), kube::Error> {
    let uid = match action {
        Action::Delete { uid, .. }
        | Action::RemoveOwners { uid, .. }
        | Action::RemoveFinalizer { uid, .. } => uid,
        Action::VerifyOwners { .. } => return Ok(()),
    };
    let Some(object) = shared.graph().get(uid).cloned() else { return Ok(()) };
    let key = (object.location.api_version.clone(), object.location.plural.clone());
    let Some((resource, _)) = shared.resources.get(&key) else { return Ok(()) };
    let api: Api<DynamicObject> = match &object.location.namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, resource),
        None => Api::all_with(client.clone(), resource),
    };
    let name = &object.location.name;
    match action {
        Action::Delete { foreground, .. } => {
            let params = DeleteParams {
                propagation_policy: Some(if *foreground {
                    PropagationPolicy::Foreground
                } else {
                    PropagationPolicy::Background
                }),
                preconditions: Some(kube::api::Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            tracing::info!(object = %describe(&object.location), foreground, "garbage collector deleting");
            ignore_gone(api.delete(name, &params).await.map(|_| ()))
        }
        Action::RemoveOwners { owners, .. } => {
            let remaining: Vec<&OwnerReference> =
                object.owners.iter().filter(|o| !owners.contains(&o.uid)).collect();
            let references = if remaining.is_empty() { json!(null) } else { json!(remaining) };
            let patch = json!({"metadata": {"uid": uid, "ownerReferences": references}});
            ignore_gone(
                api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ()),
            )
        }
        Action::RemoveFinalizer { finalizer, .. } => {
            let remaining: Vec<&String> =
                object.finalizers.iter().filter(|f| f != finalizer).collect();
            let finalizers = if remaining.is_empty() { json!(null) } else { json!(remaining) };
            let patch = json!({"metadata": {"uid": uid, "finalizers": finalizers}});
            tracing::debug!(object = %describe(&object.location), finalizer, "garbage collector removing its finalizer");
            ignore_gone(
                api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ()),
            )
        }
        Action::VerifyOwners { .. } => Ok(()),
    }
}

/// A 404 or 409 means the object is gone or changed: the watch brings the new state, which
/// is attended again.
fn ignore_gone(result: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match result {
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        other => other,
    }
}

fn describe(location: &Location) -> String {
    match &location.namespace {
        Some(namespace) => {
            format!("{}/{} {namespace}/{}", location.api_version, location.plural, location.name)
        }
        None => format!("{}/{} {}", location.api_version, location.plural, location.name),
    }
}
