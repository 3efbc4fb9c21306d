//! Admission that needs other objects than the one written: upstream's `Priority` plugin,
//! which resolves a pod's `priorityClassName` into `spec.priority` and
//! `spec.preemptionPolicy` when the pod is created. (Namespace lifecycle lives in `write.rs`.)

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
