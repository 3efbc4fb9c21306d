//! Subresources that are more than a slice of their object: `/scale` (an autoscaling/v1
//! Scale over a workload's replicas), `pods/binding` (the scheduler's decision),
//! `pods/eviction` (a delete that honours PodDisruptionBudgets) and
//! `serviceaccounts/token` (a signed, audience-bound, expiring token). `/status`,
//! `/ephemeralcontainers`, `/resize` and `namespaces/finalize` are slices of their object
//! and go through the ordinary update and patch paths (`write.rs`).

use super::write::{
    DeleteOptions, Write, apply_patch_document, current, decode_document, delete_object,
    guarded_update, rewrite,
};
use super::{Rest, metadata_str, namespace_of, now_seconds};
use crate::keys;
use crate::request::{Query, Target, WriteOptions};
use crate::response::{self, Body};
use crate::tokens::{Grant, ISSUER};
use capstan_api::registry::{self, ResourceType};
use capstan_api::table::format_rfc3339;
use capstan_api::{ApiError, Cause, Details, FieldError};
use hyper::{Response, StatusCode};
use serde_json::{Map, Value, json};

/// The verbs a subresource serves.
pub(super) fn verbs(subresource: &str) -> &'static [&'static str] {
    match subresource {
        "status" | "ephemeralcontainers" | "resize" | "scale" => &["get", "update", "patch"],
        "finalize" => &["update"],
        "binding" | "eviction" | "token" => &["create"],
        // Served by the node's kubelet, through `node_proxy`.
        "log" => &["get"],
        "exec" | "attach" | "portforward" => &["create", "get"],
        "proxy" => &["create", "delete", "get", "patch", "update"],
        _ => &[],
    }
}

/// The object a subresource request is about, as a plain target.
fn main_target(target: &Target) -> Target {
    Target { subresource: None, ..target.clone() }
}

fn success(code: u16) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code})
}

// ---- scale ----

/// `GET`, `PUT` and `PATCH` of `…/scale`.
pub(super) async fn scale(
    rest: &Rest,
    target: &Target,
    verb: &str,
    query: &Query,
    user_agent: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let resource = target.resource;
    let name = target.name.as_deref().unwrap_or_default();
    let main = main_target(target);
    if verb == "get" {
        let key = keys::object_key(resource, namespace_of(target), name);
        let (_, object) = current(rest, &key, resource, name).await?;
        return Ok(response::json(StatusCode::OK, &to_scale(resource, &object)));
    }
    let options = WriteOptions::parse(query)?;
    let request = match verb {
        "update" => ScaleChange::Replace(decode_document(content_type, body)?),
        _ => ScaleChange::Patch(content_type.to_owned(), body.to_vec()),
    };
    let precondition = match &request {
        ScaleChange::Replace(scale) => match metadata_str(scale, "resourceVersion") {
            None | Some("") => None,
            Some(text) => Some(crate::request::parse_revision(text)?),
        },
        ScaleChange::Patch(..) => None,
    };
    let manager = options.manager(user_agent);
    let write = Write { dry_run: options.dry_run, precondition, manager: Some(&manager) };
    let (updated, _) = guarded_update(rest, &main, &write, |old| {
        let wanted = match &request {
            ScaleChange::Replace(scale) => scale.clone(),
            ScaleChange::Patch(media, patch) => {
                apply_patch_document(scale_resource(), &to_scale(resource, old), media, patch)?
            }
        };
        let replicas = wanted.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
        if replicas < 0 {
            return Err(ApiError::invalid(
                scale_resource(),
                name,
                &[FieldError::invalid(
                    "spec.replicas",
                    replicas,
                    "must be greater than or equal to 0",
                )],
            ));
        }
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(replicas);
        Ok(new)
    })
    .await?;
    Ok(response::json(StatusCode::OK, &to_scale(resource, &updated)))
}

enum ScaleChange {
    Replace(Value),
    /// The content type and the patch, applied to the current Scale.
    Patch(String, Vec<u8>),
}

/// The registry's autoscaling/v1 Scale, for schema and error messages. Its type is served
/// as a subresource kind, not a resource: a stand-in with its group and kind.
fn scale_resource() -> &'static ResourceType {
    static SCALE: ResourceType = ResourceType {
        group: "autoscaling",
        version: "v1",
        plural: "scales",
        singular: "scale",
        kind: "Scale",
        scope: registry::Scope::Namespaced,
        verbs: &[],
        short_names: &[],
        categories: &[],
        subresources: &[],
    };
    &SCALE
}

/// A workload's replicas as an autoscaling/v1 Scale.
fn to_scale(resource: &ResourceType, object: &Value) -> Value {
    let metadata = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut scale_metadata = Map::new();
    for field in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
        if let Some(value) = metadata.get(field) {
            scale_metadata.insert(field.into(), value.clone());
        }
    }
    let replicas = object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let current = object.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0);
    let selector = object.pointer("/spec/selector").map(|s| selector_text(resource, s));
    let mut status = json!({"replicas": current});
    if let Some(selector) = selector.filter(|s| !s.is_empty()) {
        status["selector"] = json!(selector);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_metadata,
        "spec": {"replicas": replicas},
        "status": status,
    })
}

/// A selector as a label selector string (`app=web,tier in (a,b)`), requirements sorted by
/// key as apimachinery prints them. ReplicationControllers have a plain map.
fn selector_text(resource: &ResourceType, selector: &Value) -> String {
    let mut requirements: Vec<(String, String)> = Vec::new();
    let labels = if resource.kind == "ReplicationController" {
        selector.as_object()
    } else {
        selector.get("matchLabels").and_then(Value::as_object)
    };
    for (key, value) in labels.into_iter().flatten() {
        requirements.push((key.clone(), format!("{key}={}", value.as_str().unwrap_or_default())));
    }
    for expression in
        selector.get("matchExpressions").and_then(Value::as_array).into_iter().flatten()
    {
        let key = expression.get("key").and_then(Value::as_str).unwrap_or_default();
        let mut values: Vec<&str> = expression
            .get("values")
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        values.sort_unstable();
        let text = match expression.get("operator").and_then(Value::as_str) {
            Some("In") => format!("{key} in ({})", values.join(",")),
            Some("NotIn") => format!("{key} notin ({})", values.join(",")),
            Some("Exists") => key.to_owned(),
            Some("DoesNotExist") => format!("!{key}"),
            _ => continue,
        };
        requirements.push((key.to_owned(), text));
    }
    requirements.sort();
    requirements.into_iter().map(|(_, text)| text).collect::<Vec<_>>().join(",")
}

/// Whether a label selector (matchLabels, matchExpressions) selects `labels`. An empty
/// selector selects everything, as policy/v1 PodDisruptionBudgets read it.
fn selects(selector: &Value, labels: &Map<String, Value>) -> bool {
    let label = |key: &str| labels.get(key).and_then(Value::as_str);
    let matched = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(key, value)| label(key) == value.as_str());
    matched
        && selector.get("matchExpressions").and_then(Value::as_array).into_iter().flatten().all(
            |expression| {
                let key = expression.get("key").and_then(Value::as_str).unwrap_or_default();
                let values: Vec<&str> = expression
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|v| v.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                match expression.get("operator").and_then(Value::as_str) {
                    Some("In") => label(key).is_some_and(|v| values.contains(&v)),
                    Some("NotIn") => label(key).is_none_or(|v| !values.contains(&v)),
                    Some("Exists") => label(key).is_some(),
                    Some("DoesNotExist") => label(key).is_none(),
                    _ => false,
                }
            },
        )
}

// ---- binding ----

/// `POST pods/<name>/binding`: assigns the pod to a node, once.
pub(super) async fn bind(
    rest: &Rest,
    target: &Target,
    content_type: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let binding = decode_document(content_type, body)?;
    let name = target.name.as_deref().unwrap_or_default();
    if metadata_str(&binding, "name").is_some_and(|given| !given.is_empty() && given != name) {
        return Err(ApiError::bad_request(
            "the name of the binding does not match the name of the pod in the request path",
        ));
    }
    let node = binding.pointer("/target/name").and_then(Value::as_str).unwrap_or_default();
    let kind = binding.pointer("/target/kind").and_then(Value::as_str).unwrap_or("Node");
    if node.is_empty() || !matches!(kind, "" | "Node") {
        let errors = [FieldError::invalid("target", binding["target"].clone(), "must name a Node")];
        return Err(ApiError::invalid(binding_resource(), name, &errors));
    }
    let now = format_rfc3339(now_seconds());
    let annotations = binding.pointer("/metadata/annotations").cloned();
    rewrite(rest, &main_target(target), |pod| {
        if let Some(assigned) =
            pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty())
        {
            let mut error = ApiError::conflict(binding_resource(), name);
            error.message = format!(
                "Operation cannot be fulfilled on pods/binding {name:?}: pod {name} is already \
                 assigned to node {assigned:?}"
            );
            return Err(error);
        }
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            let mut error = ApiError::conflict(binding_resource(), name);
            error.message = format!(
                "Operation cannot be fulfilled on pods/binding {name:?}: pod {name} is being deleted, \
                 cannot be assigned to a host"
            );
            return Err(error);
        }
        let mut pod = pod.clone();
        pod["spec"]["nodeName"] = json!(node);
        if let Some(Value::Object(added)) = &annotations {
            let existing = &mut pod["metadata"]["annotations"];
            if !existing.is_object() {
                *existing = json!({});
            }
            for (key, value) in added {
                existing[key] = value.clone();
            }
        }
        set_condition(&mut pod, json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
        Ok(pod)
    })
    .await?;
    Ok(response::json(StatusCode::CREATED, &success(201)))
}

fn binding_resource() -> &'static ResourceType {
    registry::find("", "v1", "bindings").unwrap_or(&registry::builtin()[0])
}

/// Sets a pod condition of its type, keeping the transition time when the status stays.
fn set_condition(pod: &mut Value, condition: Value) {
    let conditions = &mut pod["status"]["conditions"];
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let Some(list) = conditions.as_array_mut() else { return };
    match list.iter_mut().find(|c| c.get("type") == condition.get("type")) {
        Some(existing) if existing.get("status") == condition.get("status") => {}
        Some(existing) => *existing = condition,
        None => list.push(condition),
    }
}

// ---- eviction ----

/// `POST pods/<name>/eviction`: deletes the pod unless a PodDisruptionBudget forbids it.
pub(super) async fn evict(
    rest: &Rest,
    target: &Target,
    content_type: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let eviction = decode_document(content_type, body)?;
    let name = target.name.as_deref().unwrap_or_default();
    let namespace = namespace_of(target).unwrap_or_default().to_owned();
    let main = main_target(target);
    let key = keys::object_key(target.resource, Some(&namespace), name);
    let (_, pod) = current(rest, &key, target.resource, name).await?;
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        return Ok(response::json(StatusCode::OK, &success(200)));
    }
    // Pods that are not running cannot disrupt anything: no budget applies to them.
    let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("Pending");
    if phase == "Running" {
        check_budgets(rest, &namespace, name, &pod).await?;
    }
    let delete_options = eviction.get("deleteOptions").cloned().unwrap_or_else(|| json!({}));
    let options = DeleteOptions::from_body(&delete_options)?;
    delete_object(rest, &main, name, &options).await?;
    Ok(response::json(StatusCode::CREATED, &success(201)))
}

/// Takes one disruption from the budget that covers the pod, or refuses with 429.
async fn check_budgets(
    rest: &Rest,
    namespace: &str,
    pod_name: &str,
    pod: &Value,
) -> Result<(), ApiError> {
    let Some(budgets) = registry::find("policy", "v1", "poddisruptionbudgets") else {
        return Ok(());
    };
    let labels =
        pod.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default();
    let prefix = keys::list_prefix(budgets, Some(namespace));
    let matching = rest.cache.list(&prefix, |budget| {
        budget.pointer("/spec/selector").is_some_and(|selector| selects(selector, &labels))
    });
    let budget = match matching.objects.as_slice() {
        [] => return Ok(()),
        [one] => one.clone(),
        _ => {
            return Err(refusal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource \
                 does not support.",
                None,
            ));
        }
    };
    let budget_name = metadata_str(&budget, "name").unwrap_or_default().to_owned();
    let generation = budget.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
    let observed = budget.pointer("/status/observedGeneration").and_then(Value::as_i64);
    if observed.is_none_or(|observed| observed < generation) {
        return Err(refusal(
            "Cannot evict pod as it would violate the pod's disruption budget.",
            Some(format!(
                "The disruption budget {budget_name} is still being processed by the server."
            )),
        ));
    }
    let now = format_rfc3339(now_seconds());
    let budget_target = Target {
        resource: budgets,
        namespace: Some(namespace.to_owned()),
        name: Some(budget_name.clone()),
        subresource: None,
        watch_path: false,
        proxy_path: None,
    };
    rewrite(rest, &budget_target, |budget| {
        let allowed =
            budget.pointer("/status/disruptionsAllowed").and_then(Value::as_i64).unwrap_or(0);
        if allowed <= 0 {
            let desired =
                budget.pointer("/status/desiredHealthy").and_then(Value::as_i64).unwrap_or(0);
            let healthy =
                budget.pointer("/status/currentHealthy").and_then(Value::as_i64).unwrap_or(0);
            return Err(refusal(
                "Cannot evict pod as it would violate the pod's disruption budget.",
                Some(format!(
                    "The disruption budget {budget_name} needs {desired} healthy pods and has \
                     {healthy} currently"
                )),
            ));
        }
        let mut budget = budget.clone();
        budget["status"]["disruptionsAllowed"] = json!(allowed - 1);
        if !budget["status"]["disruptedPods"].is_object() {
            budget["status"]["disruptedPods"] = json!({});
        }
        budget["status"]["disruptedPods"][pod_name] = json!(now);
        Ok(budget)
    })
    .await?;
    Ok(())
}

/// 429 with a DisruptionBudget cause, as upstream refuses an eviction.
fn refusal(message: &str, cause: Option<String>) -> ApiError {
    let mut error = ApiError::new(429, "TooManyRequests", message);
    error.details = Some(Box::new(Details {
        causes: cause
            .into_iter()
            .map(|message| Cause {
                reason: "DisruptionBudget".into(),
                message,
                field: String::new(),
            })
            .collect(),
        ..Default::default()
    }));
    error.retry_after_seconds = Some(10);
    error
}

// ---- token ----

/// The shortest and longest token lifetimes a TokenRequest may ask for.
const MIN_EXPIRATION: i64 = 600;
const MAX_EXPIRATION: i64 = 1 << 32;
const DEFAULT_EXPIRATION: i64 = 3600;

/// `POST serviceaccounts/<name>/token`: a signed token for the service account.
pub(super) async fn token(
    rest: &Rest,
    target: &Target,
    content_type: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let request = decode_document(content_type, body)?;
    let name = target.name.as_deref().unwrap_or_default();
    let namespace = namespace_of(target).unwrap_or_default().to_owned();
    let request_resource =
        registry::find("authentication.k8s.io", "v1", "tokenreviews").unwrap_or(target.resource);
    let key = keys::object_key(target.resource, Some(&namespace), name);
    let (_, account) = current(rest, &key, target.resource, name).await?;
    let spec = request.get("spec").cloned().unwrap_or_else(|| json!({}));
    let expiration =
        spec.get("expirationSeconds").and_then(Value::as_i64).unwrap_or(DEFAULT_EXPIRATION);
    let too = |detail: &str| {
        let errors = [FieldError::invalid("spec.expirationSeconds", expiration, detail)];
        let mut error = ApiError::invalid(request_resource, name, &errors);
        error.message = error
            .message
            .replace("TokenReview.authentication.k8s.io", "TokenRequest.authentication.k8s.io");
        error
    };
    if expiration < MIN_EXPIRATION {
        return Err(too("may not specify a duration less than 10 minutes"));
    }
    if expiration > MAX_EXPIRATION {
        return Err(too("may not specify a duration larger than 2^32 seconds"));
    }
    let audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .filter(|a: &Vec<String>| !a.is_empty())
        .unwrap_or_else(|| vec![ISSUER.to_owned()]);
    let bound = match spec.get("boundObjectRef").filter(|r| r.is_object()) {
        Some(reference) => Some(bound_object(rest, &namespace, reference).await?),
        None => None,
    };
    let now = now_seconds();
    let grant = Grant {
        namespace: namespace.clone(),
        service_account: name.to_owned(),
        service_account_uid: metadata_str(&account, "uid").unwrap_or_default().to_owned(),
        audiences: audiences.clone(),
        expires: now + expiration,
        bound,
    };
    let token = rest
        .tokens
        .issue(&grant, now)
        .ok_or_else(|| ApiError::internal("signing the token failed"))?;
    let mut response_spec = spec.clone();
    response_spec["audiences"] = json!(audiences);
    response_spec["expirationSeconds"] = json!(expiration);
    let answer = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": format_rfc3339(now)},
        "spec": response_spec,
        "status": {"token": token, "expirationTimestamp": format_rfc3339(grant.expires)},
    });
    Ok(response::json(StatusCode::CREATED, &answer))
}

/// The object a token is bound to, checked to exist with the given uid.
async fn bound_object(
    rest: &Rest,
    namespace: &str,
    reference: &Value,
) -> Result<(String, String, String), ApiError> {
    let text = |field: &str| reference.get(field).and_then(Value::as_str).unwrap_or_default();
    let (kind, name, uid) = (text("kind"), text("name"), text("uid"));
    let plural = match kind {
        "Pod" => "pods",
        "Secret" => "secrets",
        _ => {
            return Err(ApiError::bad_request(format!(
                "cannot bind a token to a {kind:?}: only Pod and Secret are supported"
            )));
        }
    };
    let resource =
        registry::find("", "v1", plural).ok_or_else(|| ApiError::internal("no such kind"))?;
    let key = keys::object_key(resource, Some(namespace), name);
    let (_, object) = current(rest, &key, resource, name).await?;
    let actual = metadata_str(&object, "uid").unwrap_or_default();
    if !uid.is_empty() && uid != actual {
        let mut error = ApiError::conflict(resource, name);
        error.message = format!(
            "Operation cannot be fulfilled on {plural} {name:?}: the UID in the bound object \
             reference ({uid}) does not match the UID in record. The object might have been \
             deleted and then recreated"
        );
        return Err(error);
    }
    Ok((kind.to_owned(), name.to_owned(), actual.to_owned()))
}

/// Whether a token's service account, and the object it is bound to, still exist as they
/// were when it was issued.
pub(crate) fn grant_is_current(rest: &Rest, grant: &Grant) -> bool {
    let exists = |plural: &str, name: &str, uid: &str| {
        let Some(resource) = registry::find("", "v1", plural) else { return false };
        let key = keys::object_key(resource, Some(&grant.namespace), name);
        rest.cache
            .get(&key)
            .0
            .is_some_and(|object| uid.is_empty() || metadata_str(&object, "uid") == Some(uid))
    };
    exists("serviceaccounts", &grant.service_account, &grant.service_account_uid)
        && grant.bound.as_ref().is_none_or(|(kind, name, uid)| {
            exists(if kind == "pod" { "pods" } else { "secrets" }, name, uid)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_show_replicas_and_the_selector() {
        let deployments = registry::find("apps", "v1", "deployments").unwrap();
        let deployment = json!({
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "7", "labels": {"x": "y"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["b", "a"]}]}},
            "status": {"replicas": 2},
        });
        let scale = to_scale(deployments, &deployment);
        assert_eq!(scale["spec"]["replicas"], 3);
        assert_eq!(scale["status"], json!({"replicas": 2, "selector": "app=web,tier in (a,b)"}));
        assert_eq!(
            scale["metadata"],
            json!({"name": "web", "namespace": "default", "resourceVersion": "7"})
        );
        let controllers = registry::find("", "v1", "replicationcontrollers").unwrap();
        let rc = json!({"metadata": {"name": "r"}, "spec": {"selector": {"b": "2", "a": "1"}}});
        assert_eq!(to_scale(controllers, &rc)["status"]["selector"], "a=1,b=2");
    }

    #[test]
    fn budgets_select_pods_by_labels() {
        let labels = json!({"app": "web", "tier": "a"});
        let labels = labels.as_object().unwrap();
        assert!(selects(&json!({}), labels));
        assert!(selects(&json!({"matchLabels": {"app": "web"}}), labels));
        assert!(!selects(&json!({"matchLabels": {"app": "db"}}), labels));
        assert!(selects(
            &json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]}),
            labels
        ));
        assert!(selects(
            &json!({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}),
            labels
        ));
        assert!(!selects(
            &json!({"matchExpressions": [{"key": "x", "operator": "Exists"}]}),
            labels
        ));
    }
}
