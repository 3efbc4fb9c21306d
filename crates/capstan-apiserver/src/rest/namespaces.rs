//! Finishing the deletion of namespaces: delete everything in a terminating namespace, then
//! drop its `kubernetes` finalizer so the namespace itself goes.
//!
//! Upstream this is the namespace controller's job (kube-controller-manager). Until
//! Capstan's controller manager exists, the API server does it itself, so that
//! `kubectl delete namespace` completes; the controller will take it over and this module
//! will go.

use super::Rest;
use super::write::{DeleteOptions, delete_object};
use crate::keys;
use crate::request::Target;
use capstan_api::registry::{self, ResourceType};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// How often terminating namespaces are looked at.
const INTERVAL: Duration = Duration::from_secs(1);
const FINALIZER: &str = "kubernetes";

pub(crate) async fn run(rest: Arc<Rest>) {
    let Some(namespaces) = registry::find("", "v1", "namespaces") else { return };
    let mut ticker = tokio::time::interval(INTERVAL);
    loop {
        ticker.tick().await;
        let terminating = rest.cache.list(&keys::type_prefix(namespaces), |namespace| {
            namespace.pointer("/metadata/deletionTimestamp").is_some()
                && finalizers(namespace).iter().any(|f| f == FINALIZER)
        });
        for namespace in terminating.objects {
            let name = namespace.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
            if let Err(error) = finish(&rest, namespaces, name).await {
                tracing::warn!(namespace = name, %error, "deleting a namespace's contents failed");
            }
        }
    }
}

/// Deletes what is left in one namespace; once nothing is, removes the finalizer.
async fn finish(
    rest: &Rest,
    namespaces: &'static ResourceType,
    name: &str,
) -> Result<(), capstan_api::ApiError> {
    let mut remaining = 0;
    for resource in storage_types() {
        let prefix = keys::list_prefix(resource, Some(name));
        for object in rest.cache.list(&prefix, |_| true).objects {
            remaining += 1;
            if object.pointer("/metadata/deletionTimestamp").is_some() {
                continue;
            }
            let object_name = object.pointer("/metadata/name").and_then(Value::as_str);
            let target = Target {
                resource,
                namespace: Some(name.to_owned()),
                name: object_name.map(str::to_owned),
                subresource: None,
                watch_path: false,
            };
            let options = DeleteOptions::default();
            match delete_object(rest, &target, object_name.unwrap_or(""), &options).await {
                Ok(_) => {}
                Err(error) if error.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
    }
    if remaining > 0 {
        return Ok(());
    }
    // What upstream's `namespaces/<name>/finalize` does: an update of the main resource
    // keeps `spec.finalizers`, so this goes to the datastore directly. Without the
    // finalizer, and with no other finalizers, the namespace is gone.
    let key = keys::object_key(namespaces, None, name);
    let (kv, _) = rest.store.get(&key, None).await.map_err(super::store_error)?;
    let Some(kv) = kv else { return Ok(()) };
    let Some(mut current) = crate::cache::decode(&kv.key, &kv.value, kv.mod_revision) else {
        return Ok(());
    };
    let kept: Vec<String> = finalizers(&current).into_iter().filter(|f| f != FINALIZER).collect();
    let others = current
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|list| !list.is_empty());
    let written = if kept.is_empty() && !others {
        rest.store.delete(&key, Some(kv.mod_revision)).await.map(|_| ())
    } else {
        current["spec"]["finalizers"] = json!(kept);
        let value = super::write::encode(&current);
        rest.store.update(&key, value, kv.mod_revision, None).await.map(|_| ())
    };
    match written {
        Ok(()) => {}
        // Changed meanwhile: the next round looks again.
        Err(
            capstan_store::StoreError::Conflict { .. } | capstan_store::StoreError::NotFound { .. },
        ) => {
            return Ok(());
        }
        Err(error) => return Err(super::store_error(error)),
    }
    tracing::info!(namespace = name, "namespace deleted");
    Ok(())
}

/// One namespaced type per storage location (versions of a group share one).
fn storage_types() -> Vec<&'static ResourceType> {
    let mut seen = HashSet::new();
    registry::builtin()
        .iter()
        .filter(|resource| resource.is_namespaced() && resource.has_verb("delete"))
        .filter(|resource| seen.insert(keys::type_prefix(resource)))
        .collect()
}

fn finalizers(namespace: &Value) -> Vec<String> {
    super::write::strings_at(namespace, "/spec/finalizers")
}
