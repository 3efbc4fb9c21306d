//! The informers: one kube-rs watcher per kind the scheduler consults, each feeding the
//! cluster state and telling the queue what happened. After a relist (a watch that could not
//! resume) objects missing from the new list are treated as deleted.

use super::Shared;
use crate::framework::ClusterEvent;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource, ResourceExt};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

/// What an informer saw, for the handler of its kind.
enum Change<K> {
    Applied(K),
    Deleted(K),
    /// A relist finished: these keys are all that exist.
    Listed(HashSet<String>),
}

/// Runs a watcher for `K` forever (reconnecting with backoff), handing every change to
/// `handle`. The key of an object is what `key` says (uid for pods, name or ns/name else).
async fn inform<K>(
    api: Api<K>,
    shared: Arc<Shared>,
    key: fn(&K) -> String,
    handle: impl Fn(&Shared, Change<K>),
) where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let mut stream = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
    let mut listing: Option<HashSet<String>> = None;
    let mut synced = false;
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => listing = Some(HashSet::new()),
            Ok(Event::InitApply(object)) => {
                listing.get_or_insert_with(HashSet::new).insert(key(&object));
                handle(&shared, Change::Applied(object));
            }
            Ok(Event::InitDone) => {
                let listed = listing.take().unwrap_or_default();
                tracing::debug!(kind, objects = listed.len(), "informer listed");
                handle(&shared, Change::Listed(listed));
                if !synced {
                    synced = true;
                    shared.synced_informers.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
            Ok(Event::Apply(object)) => handle(&shared, Change::Applied(object)),
            Ok(Event::Delete(object)) => handle(&shared, Change::Deleted(object)),
            Err(error) => tracing::warn!(kind, %error, "watch failed; retrying"),
        }
        shared.wake.notify_one();
    }
}

fn name_key<K: ResourceExt>(object: &K) -> String {
    object.name_any()
}

fn namespaced_key<K: ResourceExt>(object: &K) -> String {
    format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any())
}

fn uid_key(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

/// The number of informers `run` starts (the scheduler waits for all of them to list).
pub(super) const INFORMERS: usize = 7;

/// Starts every informer; the futures end only when dropped.
pub(super) fn all(client: kube::Client, shared: &Arc<Shared>) -> Vec<tokio::task::JoinHandle<()>> {
    let s = Arc::clone;
    vec![
        tokio::spawn(inform(
            Api::<Pod>::all(client.clone()),
            s(shared),
            uid_key,
            |shared, change| {
                let now = Instant::now();
                let mut state = shared.lock();
                let event = match change {
                    Change::Applied(pod) => state.apply_pod(Arc::new(pod), now),
                    Change::Deleted(pod) => state.delete_pod(&uid_key(&pod)),
                    Change::Listed(uids) => {
                        state.retain_pods(&uids).then_some(ClusterEvent::AssignedPodDelete)
                    }
                };
                if let Some(event) = event {
                    state.queue.on_event(event, now);
                }
            },
        )),
        tokio::spawn(inform(
            Api::<Node>::all(client.clone()),
            s(shared),
            name_key,
            |shared, change| {
                let now = Instant::now();
                let mut state = shared.lock();
                let event = match change {
                    Change::Applied(node) => Some(state.apply_node(Arc::new(node))),
                    Change::Deleted(node) => {
                        state.delete_node(&node.name_any());
                        None
                    }
                    Change::Listed(names) => {
                        state.retain_nodes(&names);
                        None
                    }
                };
                if let Some(event) = event {
                    state.queue.on_event(event, now);
                }
            },
        )),
        tokio::spawn(inform(
            Api::<Namespace>::all(client.clone()),
            s(shared),
            name_key,
            |shared, change| {
                let mut state = shared.lock();
                let labels = &mut state.snapshot.namespace_labels;
                match change {
                    Change::Applied(namespace) => {
                        labels.insert(namespace.name_any(), namespace.labels().clone());
                    }
                    Change::Deleted(namespace) => {
                        labels.remove(&namespace.name_any());
                    }
                    Change::Listed(names) => labels.retain(|name, _| names.contains(name)),
                }
                state.queue.on_event(ClusterEvent::NamespaceChange, Instant::now());
            },
        )),
        tokio::spawn(inform(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            s(shared),
            namespaced_key,
            |shared, change| {
                let mut state = shared.lock();
                let claims = &mut state.snapshot.pvcs;
                match change {
                    Change::Applied(claim) => {
                        claims.insert(namespaced_key(&claim), Arc::new(claim));
                    }
                    Change::Deleted(claim) => {
                        claims.remove(&namespaced_key(&claim));
                    }
                    Change::Listed(keys) => claims.retain(|key, _| keys.contains(key)),
                }
                state.queue.on_event(ClusterEvent::PvcChange, Instant::now());
            },
        )),
        tokio::spawn(inform(
            Api::<PersistentVolume>::all(client.clone()),
            s(shared),
            name_key,
            |shared, change| {
                let mut state = shared.lock();
                let volumes = &mut state.snapshot.pvs;
                match change {
                    Change::Applied(volume) => {
                        volumes.insert(volume.name_any(), Arc::new(volume));
                    }
                    Change::Deleted(volume) => {
                        volumes.remove(&volume.name_any());
                    }
                    Change::Listed(names) => volumes.retain(|name, _| names.contains(name)),
                }
                state.queue.on_event(ClusterEvent::PvChange, Instant::now());
            },
        )),
        tokio::spawn(inform(
            Api::<StorageClass>::all(client.clone()),
            s(shared),
            name_key,
            |shared, change| {
                let mut state = shared.lock();
                let classes = &mut state.snapshot.storage_classes;
                match change {
                    Change::Applied(class) => {
                        classes.insert(class.name_any(), Arc::new(class));
                    }
                    Change::Deleted(class) => {
                        classes.remove(&class.name_any());
                    }
                    Change::Listed(names) => classes.retain(|name, _| names.contains(name)),
                }
                state.queue.on_event(ClusterEvent::StorageClassChange, Instant::now());
            },
        )),
        tokio::spawn(inform(
            Api::<PodDisruptionBudget>::all(client),
            s(shared),
            namespaced_key,
            |shared, change| {
                let mut state = shared.lock();
                let budgets = &mut state.snapshot.pdbs;
                match change {
                    Change::Applied(budget) => {
                        let key = namespaced_key(&budget);
                        budgets.retain(|known| namespaced_key(known.as_ref()) != key);
                        budgets.push(Arc::new(budget));
                    }
                    Change::Deleted(budget) => {
                        let key = namespaced_key(&budget);
                        budgets.retain(|known| namespaced_key(known.as_ref()) != key);
                    }
                    Change::Listed(keys) => {
                        budgets.retain(|known| keys.contains(&namespaced_key(known.as_ref())))
                    }
                }
            },
        )),
    ]
}
