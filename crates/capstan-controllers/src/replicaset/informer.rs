//! The pod watch both controllers share: one kube-rs watcher feeding one reflector store, and
//! for every change of a pod, upstream's pod event handlers: the expectations it fulfils and
//! the owners that must sync (the pod's controller, its previous controller, or for an orphan
//! every owner whose selector matches it, which may adopt it).
//!
//! The store is written before the expectations are lowered and the owners triggered, so
//! that a sync that finds its expectations fulfilled also finds the pods that fulfilled them.

use super::expectations::Expectations;
use super::kind::Replicated;
use super::pod;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::watcher::{self, Event};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// One change of one pod: `old` is the pod as the store had it (`None` for a new pod), `new`
/// as it is now (`None` once deleted).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PodChange<'a> {
    pub(crate) old: Option<&'a Pod>,
    pub(crate) new: Option<&'a Pod>,
}

/// What one pod change means to the controller of one kind.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Effects {
    /// Owners (by uid) that see one of their creations.
    pub(crate) created: Vec<String>,
    /// Owners (by uid) that see the deletion of a pod (by uid).
    pub(crate) deleted: Vec<(String, String)>,
    /// Owners to sync, by name in the pod's namespace.
    pub(crate) sync: Vec<String>,
    /// The pod is an orphan that every matching owner should consider adopting.
    pub(crate) orphan: bool,
}

/// What `change` means to the controller of owners of `kind`.
pub(crate) fn effects(change: PodChange<'_>, kind: &str) -> Effects {
    let mut effects = Effects::default();
    match (change.old, change.new) {
        (None, Some(pod)) => added(&mut effects, pod, kind),
        (Some(old), Some(new)) => updated(&mut effects, old, new, kind),
        (Some(pod), None) => deleted(&mut effects, pod, kind),
        (None, None) => {}
    }
    effects.sync.dedup();
    effects
}

fn added(effects: &mut Effects, pod: &Pod, kind: &str) {
    // A pod first seen already being deleted (after a restart, say) is no creation.
    if pod.metadata.deletion_timestamp.is_some() {
        return deleted(effects, pod, kind);
    }
    match pod::controller_of(&pod.metadata) {
        Some(reference) if reference.kind == kind => {
            effects.created.push(reference.uid.clone());
            effects.sync.push(reference.name.clone());
        }
        // Another kind's: none of our business.
        Some(_) => {}
        // No creation is observed for orphans: nobody expects them.
        None => effects.orphan = true,
    }
}

fn updated(effects: &mut Effects, old: &Pod, new: &Pod, kind: &str) {
    if old.metadata.resource_version == new.metadata.resource_version {
        return;
    }
    let labels_changed = old.metadata.labels != new.metadata.labels;
    if new.metadata.deletion_timestamp.is_some() {
        // A graceful deletion started: the owner counts the pod as gone now rather than
        // when the kubelet finally removes it.
        deleted(effects, new, kind);
        if labels_changed {
            deleted(effects, old, kind);
        }
        return;
    }
    let (old_controller, new_controller) =
        (pod::controller_of(&old.metadata), pod::controller_of(&new.metadata));
    let controller_changed = old_controller != new_controller;
    if controller_changed && let Some(previous) = old_controller.filter(|r| r.kind == kind) {
        effects.sync.push(previous.name.clone());
    }
    match new_controller {
        Some(current) if current.kind == kind => effects.sync.push(current.name.clone()),
        Some(_) => {}
        None => effects.orphan = labels_changed || controller_changed,
    }
}

fn deleted(effects: &mut Effects, pod: &Pod, kind: &str) {
    let Some(reference) = pod::controller_of(&pod.metadata).filter(|r| r.kind == kind) else {
        return;
    };
    let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
    effects.deleted.push((reference.uid.clone(), pod_uid));
    effects.sync.push(reference.name.clone());
}

/// Receives every pod change.
pub(crate) trait PodRoute: Send + Sync {
    fn route(&self, change: PodChange<'_>);
}

/// Where pod changes go for the controller of `K`: its expectations, and the triggers of its
/// owners' syncs.
#[derive(Debug)]
pub(crate) struct Route<K: Replicated> {
    pub(crate) expectations: Arc<Expectations>,
    pub(crate) owners: Store<K>,
    pub(crate) triggers: mpsc::UnboundedSender<ObjectRef<K>>,
}

impl<K: Replicated> Route<K> {
    fn trigger(&self, name: &str, namespace: &str) {
        // The controller is gone only when the controller manager stops.
        let _ = self.triggers.send(ObjectRef::new(name).within(namespace));
    }
}

impl<K: Replicated> PodRoute for Route<K> {
    fn route(&self, change: PodChange<'_>) {
        let Some(pod) = change.new.or(change.old) else { return };
        let effects = effects(change, &K::kind(&()));
        for owner in &effects.created {
            self.expectations.creation_observed(owner);
        }
        for (owner, pod) in &effects.deleted {
            self.expectations.deletion_observed(owner, pod);
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        for name in &effects.sync {
            self.trigger(name, namespace);
        }
        if effects.orphan {
            for owner in self.owners.state() {
                let meta = owner.meta();
                if meta.namespace.as_deref() != Some(namespace) {
                    continue;
                }
                // Owners with an empty selector never adopt on a pod's account (upstream's
                // lister skips them), nor do those whose selector does not parse.
                let Ok(selector) = owner.pod_selector() else { continue };
                if !selector.selects_all() && selector.matches(pod.metadata.labels.as_ref()) {
                    self.trigger(meta.name.as_deref().unwrap_or_default(), namespace);
                }
            }
        }
    }
}

/// Watches every pod forever (reconnecting with backoff), keeping `writer`'s store and
/// handing every change to each of `routes`. After a relist, pods missing from the new list
/// count as deleted and pods whose version changed as updated.
pub(crate) async fn run(
    client: kube::Client,
    mut writer: Writer<Pod>,
    routes: Vec<Box<dyn PodRoute>>,
) {
    let store = writer.as_reader();
    let route = |change: PodChange<'_>| routes.iter().for_each(|route| route.route(change));
    let mut stream = watcher::watcher(Api::<Pod>::all(client), watcher::Config::default())
        .default_backoff()
        .boxed();
    // The store as it was when a relist began, to compare the new list with.
    let mut before_relist: Option<HashMap<ObjectRef<Pod>, Arc<Pod>>> = None;
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(%error, "pod watch failed; retrying");
                continue;
            }
        };
        match &event {
            Event::Apply(pod) => {
                let old = store.get(&ObjectRef::from_obj(pod));
                writer.apply_watcher_event(&event);
                route(PodChange { old: old.as_deref(), new: Some(pod) });
            }
            Event::Delete(pod) => {
                writer.apply_watcher_event(&event);
                route(PodChange { old: Some(pod), new: None });
            }
            Event::Init => {
                let known = store.state().into_iter().map(|pod| (ObjectRef::from_obj(&*pod), pod));
                before_relist = Some(known.collect());
                writer.apply_watcher_event(&event);
            }
            Event::InitApply(_) => writer.apply_watcher_event(&event),
            Event::InitDone => {
                writer.apply_watcher_event(&event);
                let mut before = before_relist.take().unwrap_or_default();
                let listed = store.state();
                tracing::debug!(pods = listed.len(), "pod watch listed");
                for pod in &listed {
                    let old = before.remove(&ObjectRef::from_obj(&**pod));
                    route(PodChange { old: old.as_deref(), new: Some(pod) });
                }
                for gone in before.values() {
                    route(PodChange { old: Some(gone), new: None });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::pod::tests::pod;
    use super::*;
    use serde_json::{Value, json};

    /// A pod `p` (uid `pod-uid`) at resourceVersion `rv` with these labels, controller
    /// (kind, name, uid) and deletion state.
    fn version(
        rv: &str,
        labels: Value,
        controller: Option<(&str, &str, &str)>,
        deleting: bool,
    ) -> Pod {
        let mut metadata = json!({"name": "p", "namespace": "ns", "uid": "pod-uid",
                                  "resourceVersion": rv, "labels": labels});
        if let Some((kind, name, uid)) = controller {
            metadata["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": kind,
                "name": name, "uid": uid, "controller": true}]);
        }
        if deleting {
            metadata["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
        }
        pod(json!({ "metadata": metadata }))
    }

    fn check(old: Option<&Pod>, new: Option<&Pod>, expected: Effects) {
        assert_eq!(effects(PodChange { old, new }, "ReplicaSet"), expected, "{old:?} -> {new:?}");
    }

    fn owners(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn additions() {
        let rs = Some(("ReplicaSet", "rs", "rs-uid"));
        let owned = version("1", json!({}), rs, false);
        check(
            None,
            Some(&owned),
            Effects { created: owners(&["rs-uid"]), sync: owners(&["rs"]), ..Effects::default() },
        );
        let deleting = version("1", json!({}), rs, true);
        check(
            None,
            Some(&deleting),
            Effects {
                deleted: vec![("rs-uid".into(), "pod-uid".into())],
                sync: owners(&["rs"]),
                ..Effects::default()
            },
        );
        let orphan = version("1", json!({"app": "a"}), None, false);
        check(None, Some(&orphan), Effects { orphan: true, ..Effects::default() });
        let foreign = version("1", json!({}), Some(("Job", "j", "job-uid")), false);
        check(None, Some(&foreign), Effects::default());
    }

    #[test]
    fn updates() {
        let rs = Some(("ReplicaSet", "rs", "rs-uid"));
        let v1 = version("1", json!({"app": "a"}), rs, false);
        // The same version again (a relist that changed nothing).
        check(Some(&v1), Some(&v1), Effects::default());
        let v2 = version("2", json!({"app": "a"}), rs, false);
        check(Some(&v1), Some(&v2), Effects { sync: owners(&["rs"]), ..Effects::default() });
        let deleting = version("2", json!({"app": "a"}), rs, true);
        check(
            Some(&v1),
            Some(&deleting),
            Effects {
                deleted: vec![("rs-uid".into(), "pod-uid".into())],
                sync: owners(&["rs"]),
                ..Effects::default()
            },
        );
        // Released: the previous owner syncs, and the orphan may be adopted by others.
        let released = version("2", json!({"app": "b"}), None, false);
        check(
            Some(&v1),
            Some(&released),
            Effects { sync: owners(&["rs"]), orphan: true, ..Effects::default() },
        );
        // Moved to another owner: both sync.
        let moved =
            version("2", json!({"app": "a"}), Some(("ReplicaSet", "rs2", "rs2-uid")), false);
        check(
            Some(&v1),
            Some(&moved),
            Effects { sync: owners(&["rs", "rs2"]), ..Effects::default() },
        );
        // An orphan's status changed: nobody new can want it.
        let orphan1 = version("1", json!({"app": "a"}), None, false);
        let orphan2 = version("2", json!({"app": "a"}), None, false);
        check(Some(&orphan1), Some(&orphan2), Effects::default());
        let relabelled = version("3", json!({"app": "c"}), None, false);
        check(Some(&orphan2), Some(&relabelled), Effects { orphan: true, ..Effects::default() });
    }

    #[test]
    fn deletions() {
        let owned = version("1", json!({}), Some(("ReplicaSet", "rs", "rs-uid")), false);
        check(
            Some(&owned),
            None,
            Effects {
                deleted: vec![("rs-uid".into(), "pod-uid".into())],
                sync: owners(&["rs"]),
                ..Effects::default()
            },
        );
        let other_kind =
            version("1", json!({}), Some(("ReplicationController", "rc", "rc-uid")), false);
        check(Some(&other_kind), None, Effects::default());
        let orphan = version("1", json!({}), None, false);
        check(Some(&orphan), None, Effects::default());
    }
}
