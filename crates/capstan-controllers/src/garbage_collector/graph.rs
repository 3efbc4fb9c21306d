//! The garbage collector's dependency graph, pure: every object that has owners or is being
//! deleted with a GC finalizer, by uid, with its owner references, and the reverse index
//! from owner to dependents. `decide` says what an object needs, in upstream's terms:
//! dependents of an owner deleted in the background go when all their owners are gone;
//! an owner being deleted in the foreground waits (finalizer `foregroundDeletion`) until its
//! blocking dependents are gone, deleting them; an owner deleted with `orphan` first removes
//! itself from its dependents' owner references.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use std::collections::{BTreeSet, HashMap};

pub(crate) const FOREGROUND: &str = "foregroundDeletion";
pub(crate) const ORPHAN: &str = "orphan";

/// Where an object lives, to act on it through the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Location {
    /// `group/version` and plural, as discovery named its resource type.
    pub(crate) api_version: String,
    pub(crate) plural: String,
    pub(crate) namespace: Option<String>,
    pub(crate) name: String,
}

/// What the graph knows of one object.
#[derive(Debug, Clone)]
pub(crate) struct Object {
    pub(crate) uid: String,
    pub(crate) location: Location,
    pub(crate) owners: Vec<OwnerReference>,
    pub(crate) deleting: bool,
    pub(crate) finalizers: Vec<String>,
}

/// What to do about an object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Delete it (the dependents of a foreground deletion are deleted in the foreground
    /// themselves, so that the whole tree goes in order).
    Delete { uid: String, foreground: bool },
    /// Remove these owners from its owner references.
    RemoveOwners { uid: String, owners: Vec<String> },
    /// Remove a GC finalizer (the write that removes the last one deletes the object).
    RemoveFinalizer { uid: String, finalizer: &'static str },
    /// Some owners are not in the graph: ask the API whether they exist before acting.
    VerifyOwners { uid: String, absent: Vec<OwnerReference> },
}

#[derive(Debug, Default)]
pub(crate) struct Graph {
    objects: HashMap<String, Object>,
    dependents: HashMap<String, BTreeSet<String>>,
}

impl Graph {
    pub(crate) fn get(&self, uid: &str) -> Option<&Object> {
        self.objects.get(uid)
    }

    /// Adds or replaces an object; returns the uids whose decisions may have changed.
    pub(crate) fn upsert(&mut self, object: Object) -> Vec<String> {
        let uid = object.uid.clone();
        let mut attend = vec![uid.clone()];
        if let Some(old) = self.objects.remove(&uid) {
            for owner in &old.owners {
                self.unlink(&owner.uid, &uid);
                attend.push(owner.uid.clone());
            }
        }
        for owner in &object.owners {
            self.dependents.entry(owner.uid.clone()).or_default().insert(uid.clone());
            attend.push(owner.uid.clone());
        }
        attend.extend(self.dependents.get(&uid).into_iter().flatten().cloned());
        self.objects.insert(uid, object);
        attend
    }

    /// Forgets a deleted object; returns the uids whose decisions may have changed (its
    /// dependents, which may now be orphans, and its owners, which may be waiting for it).
    pub(crate) fn remove(&mut self, uid: &str) -> Vec<String> {
        let mut attend: Vec<String> =
            self.dependents.get(uid).into_iter().flatten().cloned().collect();
        if let Some(old) = self.objects.remove(uid) {
            for owner in &old.owners {
                self.unlink(&owner.uid, uid);
                attend.push(owner.uid.clone());
            }
        }
        attend
    }

    fn unlink(&mut self, owner: &str, dependent: &str) {
        if let Some(set) = self.dependents.get_mut(owner) {
            set.remove(dependent);
            if set.is_empty() {
                self.dependents.remove(owner);
            }
        }
    }

    fn dependents_of(&self, uid: &str) -> impl Iterator<Item = &Object> {
        self.dependents.get(uid).into_iter().flatten().filter_map(|d| self.objects.get(d))
    }

    /// What the object needs now; nothing when it is fine as it is.
    pub(crate) fn decide(&self, uid: &str) -> Vec<Action> {
        let Some(object) = self.objects.get(uid) else { return Vec::new() };
        if object.deleting && object.finalizers.iter().any(|f| f == ORPHAN) {
            let dependents: Vec<&Object> = self.dependents_of(uid).collect();
            if dependents.is_empty() {
                return vec![Action::RemoveFinalizer { uid: uid.to_owned(), finalizer: ORPHAN }];
            }
            return dependents
                .iter()
                .map(|d| Action::RemoveOwners { uid: d.uid.clone(), owners: vec![uid.to_owned()] })
                .collect();
        }
        if object.deleting && object.finalizers.iter().any(|f| f == FOREGROUND) {
            let mut actions: Vec<Action> = self
                .dependents_of(uid)
                .filter(|d| !d.deleting)
                .map(|d| Action::Delete { uid: d.uid.clone(), foreground: true })
                .collect();
            let blocked = self.dependents_of(uid).any(|d| {
                d.owners.iter().any(|o| o.uid == uid && o.block_owner_deletion == Some(true))
            });
            if !blocked {
                actions
                    .push(Action::RemoveFinalizer { uid: uid.to_owned(), finalizer: FOREGROUND });
            }
            return actions;
        }
        if object.owners.is_empty() || object.deleting {
            return Vec::new();
        }
        let absent: Vec<OwnerReference> =
            object.owners.iter().filter(|o| !self.objects.contains_key(&o.uid)).cloned().collect();
        if absent.is_empty() {
            return Vec::new();
        }
        vec![Action::VerifyOwners { uid: uid.to_owned(), absent }]
    }

    /// After the API confirmed that `gone` owners do not exist: delete the object if it has
    /// no owner left, else remove the dangling references.
    pub(crate) fn resolve_absent(&self, uid: &str, gone: &[String]) -> Option<Action> {
        let object = self.objects.get(uid)?;
        if gone.is_empty() {
            return None;
        }
        let remaining = object.owners.iter().filter(|o| !gone.contains(&o.uid)).count();
        if remaining == 0 {
            Some(Action::Delete { uid: uid.to_owned(), foreground: false })
        } else {
            Some(Action::RemoveOwners { uid: uid.to_owned(), owners: gone.to_vec() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: format!("rs-{uid}"),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(block),
        }
    }

    fn object(
        uid: &str,
        owners: Vec<OwnerReference>,
        finalizers: &[&str],
        deleting: bool,
    ) -> Object {
        Object {
            uid: uid.into(),
            location: Location {
                api_version: "v1".into(),
                plural: "pods".into(),
                namespace: Some("default".into()),
                name: uid.into(),
            },
            owners,
            deleting,
            finalizers: finalizers.iter().map(|f| f.to_string()).collect(),
        }
    }

    fn check(graph: &Graph, uid: &str, expected: Vec<Action>) {
        assert_eq!(graph.decide(uid), expected, "decision for {uid}");
    }

    #[test]
    fn background_deletion_removes_dependents_without_owners() {
        let mut graph = Graph::default();
        graph.upsert(object("rs", vec![], &[], false));
        graph.upsert(object("pod", vec![owner("rs", true)], &[], false));
        check(&graph, "pod", vec![]);
        let attend = graph.remove("rs");
        assert!(attend.contains(&"pod".to_owned()));
        let absent = vec![owner("rs", true)];
        check(&graph, "pod", vec![Action::VerifyOwners { uid: "pod".into(), absent }]);
        assert_eq!(
            graph.resolve_absent("pod", &["rs".into()]),
            Some(Action::Delete { uid: "pod".into(), foreground: false })
        );
    }

    #[test]
    fn a_dependent_with_another_owner_only_loses_the_reference() {
        let mut graph = Graph::default();
        graph.upsert(object("a", vec![], &[], false));
        graph.upsert(object("pod", vec![owner("a", false), owner("b", false)], &[], false));
        check(
            &graph,
            "pod",
            vec![Action::VerifyOwners { uid: "pod".into(), absent: vec![owner("b", false)] }],
        );
        assert_eq!(
            graph.resolve_absent("pod", &["b".into()]),
            Some(Action::RemoveOwners { uid: "pod".into(), owners: vec!["b".into()] })
        );
    }

    #[test]
    fn orphaning_removes_references_then_the_finalizer() {
        let mut graph = Graph::default();
        graph.upsert(object("rs", vec![], &[ORPHAN], true));
        graph.upsert(object("pod", vec![owner("rs", true)], &[], false));
        check(
            &graph,
            "rs",
            vec![Action::RemoveOwners { uid: "pod".into(), owners: vec!["rs".into()] }],
        );
        graph.upsert(object("pod", vec![], &[], false));
        check(&graph, "rs", vec![Action::RemoveFinalizer { uid: "rs".into(), finalizer: ORPHAN }]);
    }

    #[test]
    fn foreground_deletion_waits_for_blocking_dependents() {
        let mut graph = Graph::default();
        graph.upsert(object("rs", vec![], &[FOREGROUND], true));
        graph.upsert(object("blocking", vec![owner("rs", true)], &[], false));
        graph.upsert(object("free", vec![owner("rs", false)], &[], false));
        check(
            &graph,
            "rs",
            vec![
                Action::Delete { uid: "blocking".into(), foreground: true },
                Action::Delete { uid: "free".into(), foreground: true },
            ],
        );
        graph.upsert(object("blocking", vec![owner("rs", true)], &[], true));
        graph.remove("free");
        check(&graph, "rs", vec![]);
        graph.remove("blocking");
        check(
            &graph,
            "rs",
            vec![Action::RemoveFinalizer { uid: "rs".into(), finalizer: FOREGROUND }],
        );
    }
}
