//! Which pods an owner claims, as upstream's `PodControllerRefManager`: it keeps the pods it
//! controls that its selector still matches, adopts matching orphans, and releases the pods
//! it controls that no longer match. The patches are upstream's strategic merge patches,
//! which carry the pod's uid so that a pod deleted and created again under the same name is
//! never touched by mistake.

use super::kind::PodSelector;
use super::pod;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};

/// What to do with one active pod of the owner's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// It is the owner's and matches: one of its replicas.
    Keep,
    /// A matching orphan: make it the owner's.
    Adopt,
    /// The owner's but no longer matching: remove the owner's reference.
    Release,
    /// Another controller's, or not matching, or the owner is going away.
    Ignore,
}

/// The owner as claiming sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claimant<'a> {
    pub(crate) uid: &'a str,
    pub(crate) namespace: &'a str,
    /// Whether the owner has a deletion timestamp: it then neither adopts nor releases.
    pub(crate) deleting: bool,
    pub(crate) selector: &'a PodSelector,
}

/// Decides what `claimant` does with `pod`.
pub(crate) fn decide(claimant: &Claimant<'_>, pod: &Pod) -> Claim {
    let matches = claimant.selector.matches(pod.metadata.labels.as_ref());
    if let Some(controller) = pod::controller_of(&pod.metadata) {
        if controller.uid != claimant.uid {
            return Claim::Ignore;
        }
        if matches {
            return Claim::Keep;
        }
        // An owner being deleted leaves its pods to the garbage collector.
        return if claimant.deleting { Claim::Ignore } else { Claim::Release };
    }
    let same_namespace =
        pod.metadata.namespace.as_deref().unwrap_or_default() == claimant.namespace;
    if claimant.deleting || !matches || pod.metadata.deletion_timestamp.is_some() || !same_namespace
    {
        return Claim::Ignore;
    }
    Claim::Adopt
}

/// The strategic merge patch that makes `owner` the pod's controller.
pub(crate) fn adopt_patch(owner: &OwnerReference, pod_uid: &str) -> Value {
    json!({"metadata": {"ownerReferences": [owner], "uid": pod_uid}})
}

/// The strategic merge patch that removes the reference to the owner with `owner_uid`.
pub(crate) fn release_patch(owner_uid: &str, pod_uid: &str) -> Value {
    json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": owner_uid}], "uid": pod_uid}})
}

#[cfg(test)]
mod tests {
    use super::super::pod::tests::pod;
    use super::*;
    use kube::core::Selector;

    fn owned_by(uid: &str, controller: bool) -> Value {
        json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid,
                "controller": controller}])
    }

    /// Decides for a pod in namespace `ns` with labels and owner references, claimed by the
    /// owner `me` of namespace `ns` selecting app=a.
    fn check(
        labels: Value,
        owners: Value,
        pod_deleting: bool,
        owner_deleting: bool,
        expected: Claim,
    ) {
        let selector = PodSelector::Matching(Selector::from_iter([("app", "a")]));
        let claimant =
            Claimant { uid: "me", namespace: "ns", deleting: owner_deleting, selector: &selector };
        let mut metadata =
            json!({"name": "p", "namespace": "ns", "labels": labels, "ownerReferences": owners});
        if pod_deleting {
            metadata["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
        }
        let pod = pod(json!({ "metadata": metadata }));
        assert_eq!(decide(&claimant, &pod), expected, "{metadata}");
    }

    #[test]
    fn decisions() {
        let matching = json!({"app": "a"});
        let other = json!({"app": "b"});
        // Owned by us.
        check(matching.clone(), owned_by("me", true), false, false, Claim::Keep);
        check(matching.clone(), owned_by("me", true), false, true, Claim::Keep);
        check(other.clone(), owned_by("me", true), false, false, Claim::Release);
        check(other.clone(), owned_by("me", true), false, true, Claim::Ignore);
        // Owned by another controller.
        check(matching.clone(), owned_by("them", true), false, false, Claim::Ignore);
        // Orphans, including pods with a non-controller reference to us.
        check(matching.clone(), Value::Null, false, false, Claim::Adopt);
        check(matching.clone(), owned_by("me", false), false, false, Claim::Adopt);
        check(other, Value::Null, false, false, Claim::Ignore);
        check(matching.clone(), Value::Null, true, false, Claim::Ignore);
        check(matching, Value::Null, false, true, Claim::Ignore);
    }

    #[test]
    fn orphans_of_another_namespace_are_not_adopted() {
        let selector = PodSelector::Matching(Selector::default());
        let claimant =
            Claimant { uid: "me", namespace: "ns", deleting: false, selector: &selector };
        let pod = pod(json!({"metadata": {"name": "p", "namespace": "elsewhere"}}));
        assert_eq!(decide(&claimant, &pod), Claim::Ignore);
    }

    #[test]
    fn patches() {
        let owner = OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "rs".into(),
            uid: "me".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        assert_eq!(
            adopt_patch(&owner, "p1"),
            json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1",
                "blockOwnerDeletion": true, "controller": true, "kind": "ReplicaSet",
                "name": "rs", "uid": "me"}], "uid": "p1"}})
        );
        assert_eq!(
            release_patch("me", "p1"),
            json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": "me"}], "uid": "p1"}})
        );
    }
}
