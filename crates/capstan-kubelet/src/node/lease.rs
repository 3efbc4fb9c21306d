//! The node's Lease in `kube-node-lease`: the cheap heartbeat the node lifecycle controller
//! watches, renewed every [`RENEW_INTERVAL`] and owned by the Node so that it goes with it.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use std::time::Duration;

/// The namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How long a renewal counts (the kubelet's default `nodeLeaseDurationSeconds`).
pub(crate) const LEASE_DURATION_SECONDS: i32 = 40;
/// How often the Lease is renewed: a quarter of its duration, as the kubelet does.
pub(crate) const RENEW_INTERVAL: Duration = Duration::from_secs(10);

/// The node's Lease as first created, owned by the Node `node_uid`.
pub(crate) fn build_lease(node_name: &str, node_uid: &str, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(node_name.to_owned()),
            namespace: Some(LEASE_NAMESPACE.to_owned()),
            owner_references: Some(vec![owner(node_name, node_uid)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec(node_name, now)),
    }
}

/// The merge patch that renews the Lease at `now`; with `node_uid`, it also sets the owner
/// (a Lease created before its Node had one, say).
pub(crate) fn renewal(
    node_name: &str,
    node_uid: Option<&str>,
    now: Timestamp,
) -> serde_json::Value {
    let mut patch = serde_json::json!({ "spec": spec(node_name, now) });
    if let Some(uid) = node_uid {
        patch["metadata"] = serde_json::json!({ "ownerReferences": [owner(node_name, uid)] });
    }
    patch
}

/// The reference the kubelet puts on its Lease: the Node, without `controller` or
/// `blockOwnerDeletion`.
fn owner(node_name: &str, node_uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "v1".to_owned(),
        kind: "Node".to_owned(),
        name: node_name.to_owned(),
        uid: node_uid.to_owned(),
        ..OwnerReference::default()
    }
}

fn spec(node_name: &str, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(node_name.to_owned()),
        lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
        renew_time: Some(MicroTime(now)),
        ..LeaseSpec::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lease_and_renewal() {
        let now: Timestamp = "2025-01-01T00:00:00.5Z".parse().unwrap();
        assert_eq!(
            serde_json::to_value(build_lease("n1", "uid-1", now)).unwrap(),
            json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": "n1",
                    "namespace": "kube-node-lease",
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "uid-1"}],
                },
                "spec": {
                    "holderIdentity": "n1",
                    "leaseDurationSeconds": 40,
                    "renewTime": "2025-01-01T00:00:00.500000Z",
                },
            })
        );
        assert_eq!(
            renewal("n1", None, now),
            json!({"spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40, "renewTime": "2025-01-01T00:00:00.500000Z"}})
        );
        assert_eq!(renewal("n1", Some("u"), now)["metadata"]["ownerReferences"][0]["uid"], "u");
    }
}
