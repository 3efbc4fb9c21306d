//! Admission that needs other objects than the one written: upstream's `Priority` plugin,
//! which resolves a pod's `priorityClassName` into `spec.priority` and
//! `spec.preemptionPolicy` when the pod is created, and its `ServiceAccount` plugin, which
//! gives a pod its service account and the projected `kube-api-access-*` volume (a bound
//! token, the cluster CA and the namespace). (Namespace lifecycle lives in `write.rs`.)

use super::Rest;
use crate::{cache, keys};
use capstan_api::{ApiError, registry};
use serde_json::{Value, json};

/// The priority of a pod without a class when no class is the global default.
const DEFAULT_PRIORITY: i64 = 0;

/// Sets the priority of a pod being created from its PriorityClass (or the global default
/// class). Refuses (403) a class that does not exist, or a `spec.priority` that disagrees with
/// the class, with upstream's messages.
pub(super) async fn admit_pod_priority(rest: &Rest, pod: &mut Value) -> Result<(), ApiError> {
    let classes = registry::find("scheduling.k8s.io", "v1", "priorityclasses")
        .ok_or_else(|| ApiError::internal("the registry has no priorityclasses"))?;
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
    let class_name = pod
        .pointer("/spec/priorityClassName")
        .and_then(Value::as_str)
        .filter(|class| !class.is_empty())
        .map(str::to_owned);
    let class = match &class_name {
        Some(class_name) => {
            let key = keys::object_key(classes, None, class_name);
            let class = match rest.cache.get(&key).0 {
                Some(class) => Some(class),
                None => {
                    let (kv, _) = rest.store.get(&key, None).await.map_err(super::store_error)?;
                    kv.and_then(|kv| cache::decode(&kv.key, &kv.value, kv.mod_revision))
                        .map(std::sync::Arc::new)
                }
            };
            let Some(class) = class else {
                return Err(forbidden(
                    &name,
                    &format!("no PriorityClass with name {class_name} was found"),
                ));
            };
            Some(class)
        }
        None => {
            let prefix = keys::list_prefix(classes, None);
            let defaults = rest
                .cache
                .list(&prefix, |class| class.get("globalDefault") == Some(&Value::Bool(true)));
            // Upstream picks the lowest-valued default when several claim to be it.
            defaults
                .objects
                .into_iter()
                .min_by_key(|class| class.get("value").and_then(Value::as_i64).unwrap_or(0))
        }
    };
    let priority = class
        .as_ref()
        .and_then(|class| class.get("value"))
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_PRIORITY);
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
    if let Some(given) = spec.get("priority").and_then(Value::as_i64)
        && given != priority
    {
        return Err(forbidden(
            &name,
            &format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
            ),
        ));
    }
    spec.insert("priority".into(), json!(priority));
    if let Some(class) = &class {
        if class_name.is_none() {
            let default_name = class.pointer("/metadata/name").cloned().unwrap_or(Value::Null);
            spec.insert("priorityClassName".into(), default_name);
        }
        if let Some(policy) = class.get("preemptionPolicy").filter(|p| p.is_string()) {
            spec.entry("preemptionPolicy").or_insert_with(|| policy.clone());
        }
    }
    spec.entry("preemptionPolicy").or_insert_with(|| json!("PreemptLowerPriority"));
    Ok(())
}

/// Where service account credentials appear in containers.
const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Upstream's ServiceAccount admission for a pod being created: `serviceAccountName`
/// defaults to `default`, and unless automounting is off (on the pod, or on its service
/// account) a projected `kube-api-access-<suffix>` volume is added and mounted read-only at
/// the token path in every container that does not mount something there already. Mirror
/// pods are left alone. A missing service account is not refused here (upstream refuses
/// it); the kubelet's token request fails until the account exists.
pub(super) fn admit_pod_service_account(rest: &Rest, pod: &mut Value) {
    let is_mirror = pod.pointer("/metadata/annotations/kubernetes.io~1config.mirror").is_some();
    let namespace =
        pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default").to_owned();
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
    if is_mirror {
        return;
    }
    let account = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .or_else(|| spec.get("serviceAccount").and_then(Value::as_str).filter(|n| !n.is_empty()))
        .unwrap_or("default")
        .to_owned();
    spec.insert("serviceAccountName".into(), json!(account));
    spec.insert("serviceAccount".into(), json!(account));
    let automount = match spec.get("automountServiceAccountToken").and_then(Value::as_bool) {
        Some(automount) => automount,
        None => registry::find("", "v1", "serviceaccounts")
            .and_then(|accounts| {
                rest.cache.get(&keys::object_key(accounts, Some(&namespace), &account)).0
            })
            .and_then(|account| {
                account.get("automountServiceAccountToken").and_then(Value::as_bool)
            })
            .unwrap_or(true),
    };
    if !automount {
        return;
    }
    let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
    let Some(volumes) = volumes.as_array_mut() else { return };
    let existing = volumes.iter().find_map(|v| {
        let name = v.get("name").and_then(Value::as_str)?;
        name.starts_with("kube-api-access-").then(|| name.to_owned())
    });
    let name = match existing {
        Some(name) => name,
        None => {
            let suffix: String = (0..5)
                .map(|_| {
                    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
                    char::from(alphabet[fastrand::usize(..alphabet.len())])
                })
                .collect();
            let name = format!("kube-api-access-{suffix}");
            volumes.push(json!({
                "name": name,
                "projected": {
                    "defaultMode": 420,
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                    ],
                },
            }));
            name
        }
    };
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else { continue };
        for container in containers {
            let Some(container) = container.as_object_mut() else { continue };
            let mounts = container.entry("volumeMounts").or_insert_with(|| json!([]));
            let Some(mounts) = mounts.as_array_mut() else { continue };
            let taken = mounts.iter().any(|m| {
                m.get("mountPath").and_then(Value::as_str).map(|p| p.trim_end_matches('/'))
                    == Some(TOKEN_MOUNT_PATH)
            });
            if !taken {
                mounts.push(json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH}));
            }
        }
    }
}

/// `pods "<name>" is forbidden: <message>`.
fn forbidden(name: &str, message: &str) -> ApiError {
    let mut error = ApiError::forbidden(format!("pods \"{name}\" is forbidden: {message}"));
    error.details = Some(Box::new(capstan_api::Details {
        name: Some(name.to_owned()),
        kind: Some("pods".into()),
        ..Default::default()
    }));
    error
}
