//! What exists in every cluster from the start: the namespaces `default`, `kube-system`,
//! `kube-public` and `kube-node-lease`, the `kubernetes` Service in `default` that
//! points at the API server, and the PriorityClasses `system-node-critical` and
//! `system-cluster-critical`. Created once; a later start leaves them as they are.

use crate::rest::{Rest, create_internal};
use capstan_api::registry;
use serde_json::json;

pub(crate) async fn ensure(rest: &Rest, https_port: u16) -> Result<(), capstan_api::ApiError> {
    let namespaces = registry::find("", "v1", "namespaces")
        .ok_or_else(|| capstan_api::ApiError::internal("the registry has no namespaces"))?;
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let namespace =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        created(create_internal(rest, namespaces, namespace).await, "namespace", name)?;
    }
    let services = registry::find("", "v1", "services")
        .ok_or_else(|| capstan_api::ApiError::internal("the registry has no services"))?;
    // The first address of the primary service CIDR (10.43.0.1 by default), reserved like
    // any requested address.
    let (address, family) = rest.services.kubernetes_ip();
    let address = address.to_string();
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": address,
            "clusterIPs": [address],
            "ipFamilies": [family],
            "ipFamilyPolicy": "SingleStack",
            "sessionAffinity": "None",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": https_port}],
        },
    });
    // Created only when missing: creating it again would not be a 409 but a 422, its
    // address being taken (by itself), as upstream's allocator answers.
    let key = crate::keys::object_key(services, Some("default"), "kubernetes");
    let existing = rest.store.get(&key, None).await.map_err(crate::rest::store_error)?.0;
    if existing.is_none() {
        created(create_internal(rest, services, service).await, "service", "default/kubernetes")?;
    }
    let classes = registry::find("scheduling.k8s.io", "v1", "priorityclasses")
        .ok_or_else(|| capstan_api::ApiError::internal("the registry has no priorityclasses"))?;
    for (name, value, description) in SYSTEM_PRIORITY_CLASSES {
        let class = json!({
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": value,
            "description": description,
            "preemptionPolicy": "PreemptLowerPriority",
        });
        created(create_internal(rest, classes, class).await, "priorityclass", name)?;
    }
    Ok(())
}

/// Upstream's built-in classes for pods the cluster cannot run without.
const SYSTEM_PRIORITY_CLASSES: [(&str, i64, &str); 2] = [
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// An object that already exists is fine: an earlier start created it.
fn created(
    result: Result<serde_json::Value, capstan_api::ApiError>,
    what: &str,
    name: &str,
) -> Result<(), capstan_api::ApiError> {
    match result {
        Ok(_) => {
            tracing::info!(what, name, "created");
            Ok(())
        }
        Err(error) if error.code == 409 => Ok(()),
        Err(error) => Err(error),
    }
}
