//! create, update (PUT), patch (JSON merge, JSON, strategic merge, server-side apply) and
//! delete, each one compare-and-swap on the datastore: an update based on a stale
//! resourceVersion is a 409 Conflict, an update without one is retried against the latest
//! object. Bodies are decoded strictly (400 for malformed input), checked against the schema
//! (`fieldValidation`), prepared, defaulted and validated by the kind's strategy (422),
//! recorded in `managedFields`, then stored.

use super::{
    Filter, Rest, metadata_str, namespace_of, now_seconds, object_key, present, store_error,
};
use crate::cache;
use crate::keys;
use crate::request::{FieldValidation, ListOptions, Query, Target, WriteOptions};
use crate::response::{self, Body};
use crate::services::Reservation;
use bytes::Bytes;
use capstan_api::registry::{self, ResourceType};
use capstan_api::table::format_rfc3339;
use capstan_api::{ApiError, openapi, strategy};
use capstan_store::{KeyValue, LeaseId, Revision, StoreError};
use hyper::{Response, StatusCode};
use serde_json::{Map, Value, json};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many times a write without a resourceVersion precondition is retried after losing a
/// compare-and-swap race.
const RETRIES: usize = 8;
/// Events expire an hour after their last write, as upstream's `--event-ttl`.
const EVENT_TTL: Duration = Duration::from_secs(3600);
/// Events written within this window share one datastore lease.
const EVENT_LEASE_REUSE: Duration = Duration::from_secs(60);

pub(super) async fn create(
    rest: &Rest,
    target: &Target,
    options: &WriteOptions,
    user_agent: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let resource = target.resource;
    let mut object = decode_body(resource, content_type, body)?;
    let warnings = check_body(resource, &object, options.field_validation, content_type, body)?;
    place_in_namespace(target, &mut object)?;
    let manager = options.manager(user_agent);
    let created = create_object(rest, resource, object, options.dry_run, Some(&manager)).await?;
    Ok(answer(StatusCode::CREATED, resource, &created, &warnings))
}

/// The written object as the requested version shows it, with the schema's warnings.
fn answer(
    status: StatusCode,
    resource: &ResourceType,
    object: &Value,
    warnings: &[String],
) -> Response<Body> {
    let mut response = response::json(status, &present(resource, object));
    response::add_warnings(&mut response, warnings);
    response
}

/// Creates an object the server itself owns (the bootstrap namespaces and Service).
pub(crate) async fn create_internal(
    rest: &Rest,
    resource: &ResourceType,
    object: Value,
) -> Result<Value, ApiError> {
    create_object(rest, resource, object, false, Some(INTERNAL_MANAGER)).await
}

/// The field manager of what the server writes itself.
const INTERNAL_MANAGER: &str = "capstan-apiserver";

/// The create path after decoding: system metadata, strategy, validation, namespace
/// lifecycle, then a create-if-absent in the datastore.
async fn create_object(
    rest: &Rest,
    resource: &ResourceType,
    mut object: Value,
    dry_run: bool,
    manager: Option<&str>,
) -> Result<Value, ApiError> {
    let metadata = metadata_mut(&mut object)?;
    if metadata.get("resourceVersion").and_then(Value::as_str).is_some_and(|v| !v.is_empty()) {
        return Err(ApiError::bad_request(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    for field in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"]
    {
        metadata.remove(field);
    }
    let generated_prefix = match metadata.get("name").and_then(Value::as_str) {
        Some(name) if !name.is_empty() => None,
        _ => metadata.get("generateName").and_then(Value::as_str).map(str::to_owned),
    };
    metadata.insert("uid".into(), Value::String(new_uid()));
    metadata.insert("creationTimestamp".into(), Value::String(format_rfc3339(now_seconds())));
    if resource.is_namespaced() {
        let namespace = metadata_str(&object, "namespace").unwrap_or_default().to_owned();
        if !namespace.is_empty() {
            check_namespace_open(rest, &namespace).await?;
        }
    }
    if resource.group.is_empty() && resource.plural == "pods" {
        super::admission::admit_pod_priority(rest, &mut object).await?;
        super::admission::admit_pod_service_account(rest, &mut object);
    }
    for attempt in 0..4 {
        if let Some(prefix) = generated_prefix.as_deref().filter(|p| !p.is_empty()) {
            metadata_mut(&mut object)?.insert("name".into(), Value::String(generate_name(prefix)));
        }
        let mut candidate = object.clone();
        strategy::prepare_for_create(resource, &mut candidate);
        strategy::apply_defaults(resource, &mut candidate);
        // A Service's cluster IPs and node ports are reserved before it is validated and
        // stored, as upstream's service storage does; released again if it is not stored.
        let mut reservation = Reservation::default();
        let mut allocated = Ok(());
        if is_service(resource) {
            allocated =
                rest.services.allocate(rest, &mut candidate, None, dry_run, &mut reservation).await;
        }
        let outcome = match allocated {
            Ok(()) => store_new(rest, resource, candidate, dry_run, manager).await,
            Err(error) => Err(error),
        };
        match outcome {
            Ok(Some(created)) => return Ok(created),
            // A generated name that is taken: try another, as upstream's clients would.
            Ok(None) if generated_prefix.is_some() && attempt < 3 => {
                rest.services.settle(rest, reservation, None, None).await;
            }
            Ok(None) => {
                rest.services.settle(rest, reservation, None, None).await;
                let name = metadata_str(&object, "name").unwrap_or_default();
                return Err(ApiError::already_exists(resource, name));
            }
            Err(error) => {
                rest.services.settle(rest, reservation, None, None).await;
                return Err(error);
            }
        }
    }
    Err(ApiError::already_exists(resource, generated_prefix.as_deref().unwrap_or_default()))
}

fn is_service(resource: &ResourceType) -> bool {
    resource.group.is_empty() && resource.plural == "services"
}

/// Validates a prepared object and creates it if its name is free: the stored object, or
/// `None` when the name is taken.
async fn store_new(
    rest: &Rest,
    resource: &ResourceType,
    mut candidate: Value,
    dry_run: bool,
    manager: Option<&str>,
) -> Result<Option<Value>, ApiError> {
    let name = metadata_str(&candidate, "name").unwrap_or_default().to_owned();
    let errors = strategy::validate_create(resource, &candidate);
    if !errors.is_empty() {
        return Err(ApiError::invalid(resource, &name, &errors));
    }
    if let Some(manager) = manager {
        let now = format_rfc3339(now_seconds());
        capstan_api::apply::track_update(resource, None, &mut candidate, manager, "", &now);
    }
    let namespace = metadata_str(&candidate, "namespace").map(str::to_owned);
    let key = keys::object_key(resource, namespace.as_deref(), &name);
    if dry_run {
        if rest.store.get(&key, None).await.map_err(store_error)?.0.is_some() {
            return Ok(None);
        }
        return Ok(Some(candidate));
    }
    let lease = rest.leases.for_resource(rest, resource).await?;
    match rest.store.create(&key, encode(&stored_form(resource, &candidate)), lease).await {
        Ok(kv) => {
            cache::set_resource_version(&mut candidate, kv.mod_revision);
            Ok(Some(candidate))
        }
        Err(StoreError::AlreadyExists { .. }) => Ok(None),
        Err(error) => Err(store_error(error)),
    }
}

pub(super) async fn update(
    rest: &Rest,
    target: &Target,
    options: &WriteOptions,
    user_agent: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let resource = target.resource;
    let mut object = decode_body(resource, content_type, body)?;
    let mut warnings = check_body(resource, &object, options.field_validation, content_type, body)?;
    place_in_namespace(target, &mut object)?;
    let name = target.name.as_deref().unwrap_or_default();
    let metadata = metadata_mut(&mut object)?;
    match metadata.get("name").and_then(Value::as_str) {
        None | Some("") => {
            metadata.insert("name".into(), Value::String(name.to_owned()));
        }
        Some(given) if given != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({given}) does not match the name on the URL ({name})"
            )));
        }
        Some(_) => {}
    }
    let manager = options.manager(user_agent);
    let write = Write {
        dry_run: options.dry_run,
        precondition: resource_version_of(&object)?,
        manager: Some(&manager),
    };
    let subresource = target.subresource.as_deref();
    let (updated, _) =
        guarded_update(rest, target, &write, |old| Ok(slice_of(subresource, old, &object))).await?;
    warnings.dedup();
    Ok(answer(StatusCode::OK, resource, &updated, &warnings))
}

pub(super) async fn patch(
    rest: &Rest,
    target: &Target,
    options: &WriteOptions,
    user_agent: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let resource = target.resource;
    let media = content_type.split(';').next().unwrap_or("").trim();
    if media == "application/apply-patch+yaml" {
        return server_side_apply(rest, target, options, body).await;
    }
    let manager = options.manager(user_agent);
    // A merge patch may carry a resourceVersion: a precondition, as in an update.
    let precondition = match media {
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            serde_json::from_slice::<Value>(body)
                .ok()
                .map(|patch| resource_version_of(&patch))
                .transpose()?
                .flatten()
        }
        _ => None,
    };
    let write = Write { dry_run: options.dry_run, precondition, manager: Some(&manager) };
    let subresource = target.subresource.as_deref();
    let mut warnings = Vec::new();
    let (updated, _) = guarded_update(rest, target, &write, |old| {
        let patched = apply_patch_document(resource, old, media, body)?;
        warnings = check_schema(resource, &patched, options.field_validation)?;
        Ok(slice_of(subresource, old, &patched))
    })
    .await?;
    Ok(answer(StatusCode::OK, resource, &updated, &warnings))
}

/// A patch of any of the three kinds applied to a document (an object, or a Scale).
pub(super) fn apply_patch_document(
    resource: &ResourceType,
    document: &Value,
    media: &str,
    patch: &[u8],
) -> Result<Value, ApiError> {
    let parse = || -> Result<Value, ApiError> {
        serde_json::from_slice(patch)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
    };
    let engine_error = |error: capstan_api::patch::PatchError| match error {
        capstan_api::patch::PatchError::Malformed(message) => ApiError::bad_request(message),
        capstan_api::patch::PatchError::Inapplicable(message) => {
            ApiError::new(422, "Invalid", message)
        }
    };
    match media {
        "application/merge-patch+json" => {
            let patch = parse()?;
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            let mut patched = document.clone();
            capstan_api::merge_patch(&mut patched, &patch);
            Ok(patched)
        }
        "application/strategic-merge-patch+json" => {
            capstan_api::patch::strategic_merge_patch(resource, document, &parse()?)
                .map_err(engine_error)
        }
        "application/json-patch+json" => {
            capstan_api::patch::json_patch(document, &parse()?).map_err(engine_error)
        }
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

/// `application/apply-patch+yaml`: the manager's whole intent, merged with server-side
/// apply's ownership rules; an apply to a missing object creates it.
async fn server_side_apply(
    rest: &Rest,
    target: &Target,
    options: &WriteOptions,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let resource = target.resource;
    let Some(manager) = options.field_manager.clone() else {
        return Err(ApiError::bad_request(
            "PATCH requests with apply content type must have a fieldManager",
        ));
    };
    let mut applied: Value = serde_yaml::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !applied.is_object() {
        return Err(ApiError::bad_request("an apply patch must be an object"));
    }
    let warnings = check_schema(resource, &applied, options.field_validation)?;
    if target.subresource.is_none() {
        place_in_namespace(target, &mut applied)?;
    }
    let subresource = target.subresource.clone().unwrap_or_default();
    let now = format_rfc3339(now_seconds());
    let conflict = |live: Option<&Value>, error: capstan_api::apply::ApplyError| {
        apply_error(resource, target, live, error)
    };
    let write = Write { dry_run: options.dry_run, precondition: None, manager: None };
    let updated = guarded_update(rest, target, &write, |old| {
        let merged = capstan_api::apply::apply(
            resource,
            Some(old),
            &applied,
            &manager,
            &subresource,
            options.force,
            &now,
        )
        .map_err(|error| conflict(Some(old), error))?;
        Ok(slice_of(target.subresource.as_deref(), old, &merged))
    })
    .await;
    match updated {
        Ok((object, _)) => Ok(answer(StatusCode::OK, resource, &object, &warnings)),
        Err(error) if error.code == 404 && target.subresource.is_none() => {
            let object = capstan_api::apply::apply(
                resource,
                None,
                &applied,
                &manager,
                "",
                options.force,
                &now,
            )
            .map_err(|error| conflict(None, error))?;
            let created = create_object(rest, resource, object, options.dry_run, None).await?;
            Ok(answer(StatusCode::CREATED, resource, &created, &warnings))
        }
        Err(error) => Err(error),
    }
}

/// An apply's failure as the API reports it: conflicts are a 409 naming every manager and
/// field.
fn apply_error(
    resource: &ResourceType,
    target: &Target,
    live: Option<&Value>,
    error: capstan_api::apply::ApplyError,
) -> ApiError {
    match error {
        capstan_api::apply::ApplyError::Conflicts(conflicts) => {
            let name = target.name.as_deref().unwrap_or_default();
            let api_version = resource.api_version();
            let mut status = ApiError::conflict(resource, name);
            status.message =
                capstan_api::apply::conflict_message_in(live, &conflicts, &api_version);
            let causes = conflicts
                .iter()
                .map(|c| capstan_api::Cause {
                    reason: "FieldManagerConflict".into(),
                    message: capstan_api::apply::conflict_cause_in(live, c, &api_version),
                    field: c.field.clone(),
                })
                .collect();
            if let Some(details) = status.details.as_mut() {
                details.causes = causes;
            }
            status
        }
        capstan_api::apply::ApplyError::Invalid(message) => ApiError::bad_request(message),
    }
}

/// How a guarded update writes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Write<'a> {
    pub(super) dry_run: bool,
    /// A resourceVersion the object must still have (409 otherwise); without one a lost
    /// race is retried.
    pub(super) precondition: Option<Revision>,
    /// Who the write's fields are recorded under; `None` when the change records its own
    /// (server-side apply).
    pub(super) manager: Option<&'a str>,
}

/// Rewrites an object without the kind's update strategy: for the server's own changes
/// (a pod's binding, a budget's disruptions), retried until the compare-and-swap holds.
pub(super) async fn rewrite(
    rest: &Rest,
    target: &Target,
    mut change: impl FnMut(&Value) -> Result<Value, ApiError>,
) -> Result<Value, ApiError> {
    let resource = target.resource;
    let name = target.name.as_deref().unwrap_or_default();
    let key = object_key(target, name);
    for _ in 0..RETRIES {
        let (kv, stored) = current(rest, &key, resource, name).await?;
        let old = present(resource, &stored);
        let mut new = change(&old)?;
        match rest
            .store
            .update(&key, encode(&stored_form(resource, &new)), kv.mod_revision, None)
            .await
        {
            Ok(kv) => {
                cache::set_resource_version(&mut new, kv.mod_revision);
                return Ok(new);
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(StoreError::NotFound { .. }) => return Err(ApiError::not_found(resource, name)),
            Err(error) => return Err(store_error(error)),
        }
    }
    Err(ApiError::conflict(resource, name))
}

/// Reads the current object, builds the new one with `change`, and writes it if it is
/// still current. With a resourceVersion precondition a lost race is a 409; without one the
/// change is retried against the newer object. A change that alters nothing writes
/// nothing. Returns the object as stored and whether it was written.
pub(super) async fn guarded_update(
    rest: &Rest,
    target: &Target,
    write: &Write<'_>,
    change: impl FnMut(&Value) -> Result<Value, ApiError>,
) -> Result<(Value, bool), ApiError> {
    let mut service = ServiceUpdate {
        active: is_service(target.resource) && target.subresource.is_none(),
        ..ServiceUpdate::default()
    };
    let result = update_attempts(rest, target, write, change, &mut service).await;
    if service.active {
        let ServiceUpdate { reservation, old, kept, .. } = service;
        let kept = match &kept {
            Some(kept) => kept.as_ref(),
            None => old.as_ref(),
        };
        rest.services.settle(rest, reservation, old.as_ref(), kept).await;
    }
    result
}

/// What an update of a Service tracks across its attempts for the allocator.
#[derive(Debug, Default)]
struct ServiceUpdate {
    active: bool,
    reservation: Reservation,
    /// The stored Service the last attempt started from.
    old: Option<Value>,
    /// What is stored after a successful write: the new Service, or `None` when the write
    /// completed its deletion.
    kept: Option<Option<Value>>,
}

async fn update_attempts(
    rest: &Rest,
    target: &Target,
    write: &Write<'_>,
    mut change: impl FnMut(&Value) -> Result<Value, ApiError>,
    service: &mut ServiceUpdate,
) -> Result<(Value, bool), ApiError> {
    let (dry_run, precondition) = (write.dry_run, write.precondition);
    let resource = target.resource;
    let name = target.name.as_deref().unwrap_or_default();
    let key = object_key(target, name);
    for _ in 0..RETRIES {
        let (kv, stored) = current(rest, &key, resource, name).await?;
        let old = present(resource, &stored);
        if precondition.is_some_and(|expected| expected != kv.mod_revision) {
            return Err(ApiError::conflict(resource, name));
        }
        let mut new = change(&old)?;
        keep_system_metadata(&mut new, &old)?;
        // A write to a slice (`/status`, ...) was built from the stored object with only
        // that slice replaced; the main resource's preparation would put the old one back.
        let subresource = target.subresource.as_deref();
        if subresource.is_none() {
            strategy::prepare_for_update(resource, &mut new, &old);
        }
        strategy::apply_defaults(resource, &mut new);
        if service.active {
            service.old = Some(old.clone());
            let reservation = &mut service.reservation;
            rest.services.allocate(rest, &mut new, Some(&old), dry_run, reservation).await?;
        }
        // The pod's own update rules forbid what `/ephemeralcontainers` and `/resize` exist
        // to change; those slices are checked by their own narrow construction instead.
        if !matches!(subresource, Some("ephemeralcontainers" | "resize" | "finalize")) {
            let errors = strategy::validate_update(resource, &new, &old);
            if !errors.is_empty() {
                return Err(ApiError::invalid(resource, name, &errors));
            }
        }
        if let Some(manager) = write.manager {
            let now = format_rfc3339(now_seconds());
            let sub = subresource.unwrap_or_default();
            capstan_api::apply::track_update(resource, Some(&old), &mut new, manager, sub, &now);
        }
        if without_version(&new) == without_version(&old) {
            return Ok((old, false));
        }
        if dry_run {
            return Ok((new, false));
        }
        // The last finalizer of an object being deleted is gone: the deletion completes.
        let finalized = new.pointer("/metadata/deletionTimestamp").is_some()
            && finalizers(&new).is_empty()
            && !namespace_still_finalizing(resource, &new);
        let written = if finalized {
            rest.store.delete(&key, Some(kv.mod_revision)).await.map(|deleted| deleted.revision)
        } else {
            let lease = rest.leases.for_resource(rest, resource).await?;
            let value = encode(&stored_form(resource, &new));
            rest.store.update(&key, value, kv.mod_revision, lease).await.map(|kv| kv.mod_revision)
        };
        match written {
            Ok(revision) => {
                cache::set_resource_version(&mut new, revision);
                if service.active {
                    service.kept = Some((!finalized).then(|| new.clone()));
                }
                return Ok((new, true));
            }
            Err(StoreError::Conflict { .. }) if precondition.is_none() => continue,
            Err(StoreError::Conflict { .. }) => return Err(ApiError::conflict(resource, name)),
            Err(StoreError::NotFound { .. }) => return Err(ApiError::not_found(resource, name)),
            Err(error) => return Err(store_error(error)),
        }
    }
    Err(ApiError::conflict(resource, name))
}

pub(super) async fn delete(
    rest: &Rest,
    target: &Target,
    query: &Query,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let options = DeleteOptions::parse(query, body)?;
    let name = target.name.as_deref().unwrap_or_default();
    let deleted = delete_object(rest, target, name, &options).await?;
    Ok(response::json(StatusCode::OK, &present(target.resource, &deleted)))
}

pub(super) async fn delete_collection(
    rest: &Rest,
    target: &Target,
    list_options: &ListOptions,
    query: &Query,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let options = DeleteOptions::parse(query, body)?;
    let mut all = list_options.clone();
    all.limit = None;
    let page = super::read::list_page(rest, target, &all).await?;
    let filter = Filter::new(target.resource, list_options);
    let mut deleted = Vec::new();
    for object in page.objects.iter().filter(|o| filter.matches(o)) {
        let name = metadata_str(object, "name").unwrap_or_default();
        let mut one = target.clone();
        one.namespace = metadata_str(object, "namespace").map(str::to_owned);
        match delete_object(rest, &one, name, &options).await {
            Ok(object) => deleted.push(present(target.resource, &object)),
            Err(error) if error.code == 404 => {}
            Err(error) => return Err(error),
        }
    }
    let list = json!({
        "kind": format!("{}List", target.resource.kind),
        "apiVersion": target.resource.api_version(),
        "metadata": {"resourceVersion": rest.cache.revision().to_string()},
        "items": deleted,
    });
    Ok(response::json(StatusCode::OK, &list))
}

/// What a delete asks for, from the body (`DeleteOptions`) and the query.
#[derive(Debug, Default)]
pub(super) struct DeleteOptions {
    dry_run: bool,
    grace_period_seconds: Option<i64>,
    propagation: Option<String>,
    uid: Option<String>,
    resource_version: Option<Revision>,
}

impl DeleteOptions {
    /// The options of a `DeleteOptions` object alone (an Eviction's `deleteOptions`).
    pub(super) fn from_body(body: &Value) -> Result<Self, ApiError> {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        Self::parse(&Query::default(), &bytes)
    }

    fn parse(query: &Query, body: &[u8]) -> Result<Self, ApiError> {
        let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Map::new())
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
        };
        let write = WriteOptions::parse(query)?;
        let dry_run = write.dry_run
            || body
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| v.as_str() == Some("All")));
        let grace_period_seconds = match query.number("gracePeriodSeconds")? {
            Some(seconds) => Some(seconds),
            None => body.get("gracePeriodSeconds").and_then(Value::as_i64),
        };
        let orphan = query.flag("orphanDependents")?
            || body.get("orphanDependents").and_then(Value::as_bool) == Some(true);
        let propagation = query
            .get("propagationPolicy")
            .map(str::to_owned)
            .or_else(|| body.get("propagationPolicy").and_then(Value::as_str).map(str::to_owned))
            .or_else(|| orphan.then(|| "Orphan".to_owned()));
        if let Some(policy) = &propagation
            && !matches!(policy.as_str(), "Orphan" | "Background" | "Foreground")
        {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: {policy:?}: supported values: \
                     \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
        let preconditions = body.get("preconditions");
        let uid =
            preconditions.and_then(|p| p.get("uid")).and_then(Value::as_str).map(str::to_owned);
        let resource_version = preconditions
            .and_then(|p| p.get("resourceVersion"))
            .and_then(Value::as_str)
            .map(crate::request::parse_revision)
            .transpose()?;
        Ok(DeleteOptions { dry_run, grace_period_seconds, propagation, uid, resource_version })
    }
}

/// Deletes one object: at once, or — when finalizers remain, or a pod on a node must stop
/// gracefully — by setting `deletionTimestamp` and leaving the rest to whoever owns the
/// finalizers.
pub(super) async fn delete_object(
    rest: &Rest,
    target: &Target,
    name: &str,
    options: &DeleteOptions,
) -> Result<Value, ApiError> {
    let resource = target.resource;
    let key = object_key(target, name);
    for _ in 0..RETRIES {
        let (kv, old) = current(rest, &key, resource, name).await?;
        if let Some(uid) = &options.uid {
            let actual = metadata_str(&old, "uid").unwrap_or_default();
            if uid != actual {
                return Err(precondition_failed(resource, name, "UID", uid, actual));
            }
        }
        if let Some(expected) = options.resource_version
            && expected != kv.mod_revision
        {
            return Err(precondition_failed(
                resource,
                name,
                "ResourceVersion",
                &expected.to_string(),
                &kv.mod_revision.to_string(),
            ));
        }
        let mut marked = old.clone();
        let graceful = mark_for_deletion(resource, &mut marked, options);
        if !graceful
            && finalizers(&marked).is_empty()
            && !namespace_still_finalizing(resource, &marked)
        {
            if options.dry_run {
                return Ok(old);
            }
            match rest.store.delete(&key, Some(kv.mod_revision)).await {
                Ok(deleted) => {
                    if is_service(resource) {
                        let nothing = Reservation::default();
                        rest.services.settle(rest, nothing, Some(&old), None).await;
                    }
                    let mut last = old;
                    cache::set_resource_version(&mut last, deleted.revision);
                    return Ok(last);
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound { .. }) => {
                    return Err(ApiError::not_found(resource, name));
                }
                Err(error) => return Err(store_error(error)),
            }
        }
        if without_version(&marked) == without_version(&old) || options.dry_run {
            return Ok(marked);
        }
        match rest.store.update(&key, encode(&marked), kv.mod_revision, None).await {
            Ok(kv) => {
                cache::set_resource_version(&mut marked, kv.mod_revision);
                return Ok(marked);
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(StoreError::NotFound { .. }) => return Err(ApiError::not_found(resource, name)),
            Err(error) => return Err(store_error(error)),
        }
    }
    Err(ApiError::conflict(resource, name))
}

/// Records a deletion request on the object: the propagation policy as a finalizer, the
/// `deletionTimestamp`, a terminating namespace's phase. Returns whether a pod bound to a
/// node waits for its kubelet instead of going at once.
fn mark_for_deletion(resource: &ResourceType, object: &mut Value, options: &DeleteOptions) -> bool {
    let finalizer = match options.propagation.as_deref() {
        Some("Foreground") => Some("foregroundDeletion"),
        Some("Orphan") => Some("orphan"),
        _ => None,
    };
    let mut list = finalizers(object);
    if let Some(finalizer) = finalizer
        && !list.iter().any(|f| f == finalizer)
    {
        list.push(finalizer.to_owned());
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert("finalizers".into(), json!(list));
        }
    }
    let is_pod = resource.group.is_empty() && resource.kind == "Pod";
    let on_node =
        object.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
    let terminated = matches!(
        object.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    let grace = options.grace_period_seconds.unwrap_or_else(|| {
        object.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(30)
    });
    let graceful = is_pod && on_node && !terminated && grace > 0;
    let lingering = graceful || !list.is_empty() || namespace_still_finalizing(resource, object);
    if lingering {
        let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
            return graceful;
        };
        if !metadata.contains_key("deletionTimestamp") {
            let when = now_seconds() + if graceful { grace } else { 0 };
            metadata.insert("deletionTimestamp".into(), json!(format_rfc3339(when)));
            metadata.insert(
                "deletionGracePeriodSeconds".into(),
                json!(if graceful { grace } else { 0 }),
            );
        }
        if resource.group.is_empty() && resource.kind == "Namespace" {
            object["status"]["phase"] = json!("Terminating");
        }
    }
    graceful
}

/// A namespace goes only once its `spec.finalizers` (the namespace controller's
/// `kubernetes`) are gone too.
fn namespace_still_finalizing(resource: &ResourceType, object: &Value) -> bool {
    resource.group.is_empty()
        && resource.kind == "Namespace"
        && object
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
}

fn finalizers(object: &Value) -> Vec<String> {
    strings_at(object, "/metadata/finalizers")
}

/// The strings of a list at a JSON pointer, or none.
pub(super) fn strings_at(object: &Value, pointer: &str) -> Vec<String> {
    object
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

fn precondition_failed(
    resource: &ResourceType,
    name: &str,
    what: &str,
    expected: &str,
    actual: &str,
) -> ApiError {
    let mut error = ApiError::conflict(resource, name);
    error.message = format!(
        "Operation cannot be fulfilled on {} {name:?}: Precondition failed: {what} in \
         precondition: {expected}, {what} in object meta: {actual}",
        qualified(resource)
    );
    error
}

fn qualified(resource: &ResourceType) -> String {
    if resource.group.is_empty() {
        resource.plural.to_owned()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    }
}

/// The stored object and its datastore entry, or 404.
pub(super) async fn current(
    rest: &Rest,
    key: &str,
    resource: &ResourceType,
    name: &str,
) -> Result<(KeyValue, Value), ApiError> {
    let (kv, _) = rest.store.get(key, None).await.map_err(store_error)?;
    let kv = kv.ok_or_else(|| ApiError::not_found(resource, name))?;
    let object = cache::decode(&kv.key, &kv.value, kv.mod_revision)
        .ok_or_else(|| ApiError::internal(format!("the stored value of {key} is not an object")))?;
    Ok((kv, object))
}

/// What a write through a subresource changes: the old object with only that slice of
/// `new` (`/status`: status; `/ephemeralcontainers`: `spec.ephemeralContainers`; `/resize`:
/// the containers' resources; `/finalize`: `spec.finalizers`). The main resource takes all
/// of `new`.
fn slice_of(subresource: Option<&str>, old: &Value, new: &Value) -> Value {
    let copy_at = |pointer_parent: &str, field: &str| {
        let mut result = old.clone();
        let source = new.pointer(pointer_parent).and_then(|p| p.get(field)).cloned();
        if let Some(parent) = result.pointer_mut(pointer_parent).and_then(Value::as_object_mut) {
            match source {
                Some(value) => parent.insert(field.into(), value),
                None => parent.remove(field),
            };
        }
        result
    };
    match subresource {
        None => new.clone(),
        Some("status") => with_status_of(old, new),
        Some("ephemeralcontainers") => copy_at("/spec", "ephemeralContainers"),
        Some("finalize") => copy_at("/spec", "finalizers"),
        Some("resize") => {
            let mut result = old.clone();
            let wanted = new.pointer("/spec/containers").and_then(Value::as_array);
            if let Some(containers) =
                result.pointer_mut("/spec/containers").and_then(Value::as_array_mut)
            {
                for container in containers {
                    let name = container.get("name").cloned();
                    let resources = wanted
                        .and_then(|list| list.iter().find(|c| c.get("name") == name.as_ref()))
                        .and_then(|c| c.get("resources"))
                        .cloned();
                    if let (Some(resources), Some(fields)) = (resources, container.as_object_mut())
                    {
                        fields.insert("resources".into(), resources);
                    }
                }
            }
            result
        }
        Some(_) => new.clone(),
    }
}

/// The old object with the status of `new`: what a write to `/status` changes.
fn with_status_of(old: &Value, new: &Value) -> Value {
    let mut result = old.clone();
    if let Some(fields) = result.as_object_mut() {
        match new.get("status") {
            Some(status) => fields.insert("status".into(), status.clone()),
            None => fields.remove("status"),
        };
    }
    result
}

/// Fields of `metadata` only the server sets survive any update.
fn keep_system_metadata(new: &mut Value, old: &Value) -> Result<(), ApiError> {
    let old_metadata = old.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
    let metadata = metadata_mut(new)?;
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "name",
        "namespace",
        "generation",
    ] {
        match old_metadata.get(field) {
            Some(value) => metadata.insert(field.into(), value.clone()),
            None => metadata.remove(field),
        };
    }
    metadata.remove("selfLink");
    Ok(())
}

/// The object without `metadata.resourceVersion`, for comparing what would be stored.
fn without_version(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(metadata) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
    }
    copy
}

/// An object of the requested version in the form its storage keeps.
fn stored_form(resource: &ResourceType, object: &Value) -> Value {
    let storage = capstan_api::conversion::storage_type(resource);
    if storage.api_version() == resource.api_version() {
        object.clone()
    } else {
        capstan_api::conversion::convert(object, storage)
    }
}

/// The stored form: compact JSON without `resourceVersion`, which the datastore's revision
/// supplies on every read.
pub(super) fn encode(object: &Value) -> Bytes {
    Bytes::from(without_version(object).to_string())
}

fn resource_version_of(object: &Value) -> Result<Option<Revision>, ApiError> {
    match metadata_str(object, "resourceVersion") {
        None | Some("") => Ok(None),
        Some(text) => crate::request::parse_revision(text).map(Some),
    }
}

fn metadata_mut(object: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let fields = object
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
    let metadata = fields.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if metadata.is_null() {
        *metadata = Value::Object(Map::new());
    }
    metadata.as_object_mut().ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

/// Decodes a request body (JSON or YAML) into an object of the target's kind: `apiVersion`
/// and `kind` must name it when given and are filled in when not.
fn decode_body(
    resource: &ResourceType,
    content_type: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let mut object = decode_document(content_type, body)?;
    let fields = object
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
    let api_version = resource.api_version();
    match fields.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            fields.insert("apiVersion".into(), json!(api_version));
        }
        Some(given) if given != api_version && !same_group(given, resource) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({given}) does not match the expected API version \
                 ({api_version})"
            )));
        }
        Some(_) => {
            fields.insert("apiVersion".into(), json!(api_version));
        }
    }
    match fields.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            fields.insert("kind".into(), json!(resource.kind));
        }
        Some(kind) if kind != resource.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                resource.kind
            )));
        }
        Some(_) => {}
    }
    Ok(object)
}

/// A request body as JSON, whatever it was sent as: JSON, YAML or protobuf.
pub(super) fn decode_document(content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    let object: Value = match media {
        "" | "application/json" | "*/*" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("couldn't decode the body as JSON: {e}")))?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("couldn't decode the body as YAML: {e}")))?,
        "application/vnd.kubernetes.protobuf" => {
            capstan_api::protobuf::decode(body).map_err(|e| {
                ApiError::bad_request(format!("couldn't decode the protobuf body: {e}"))
            })?
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    if !object.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    Ok(object)
}

/// Whether `api_version` is another served version of the resource's group (autoscaling v1
/// for a v2 path): the object is then taken as the requested version.
fn same_group(api_version: &str, resource: &ResourceType) -> bool {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    group == resource.group && registry::find(group, version, resource.plural).is_some()
}

/// `check_schema` of a decoded body, plus the fields a JSON body repeats (which decoding
/// into a value hides): refused under `Strict`, reported under `Warn`.
fn check_body(
    resource: &ResourceType,
    object: &Value,
    validation: FieldValidation,
    content_type: &str,
    body: &[u8],
) -> Result<Vec<String>, ApiError> {
    let json =
        matches!(content_type.split(';').next().unwrap_or("").trim(), "" | "application/json");
    let duplicates: Vec<String> = if json && validation != FieldValidation::Ignore {
        super::duplicates::duplicate_fields(body)
            .into_iter()
            .map(|field| format!("duplicate field {field:?}"))
            .collect()
    } else {
        Vec::new()
    };
    match check_schema(resource, object, validation) {
        Ok(mut warnings) if validation == FieldValidation::Warn => {
            warnings.extend(duplicates);
            Ok(warnings)
        }
        Ok(warnings) if duplicates.is_empty() => Ok(warnings),
        Ok(_) => {
            Err(ApiError::bad_request(format!("strict decoding error: {}", duplicates.join(", "))))
        }
        Err(error)
            if error.message.starts_with("strict decoding error: ") && !duplicates.is_empty() =>
        {
            Err(ApiError::bad_request(format!("{}, {}", error.message, duplicates.join(", "))))
        }
        Err(error) => Err(error),
    }
}

/// Applies the schema: wrong types are always a 400; unknown fields are a 400 under
/// `Strict`, warnings under `Warn`, nothing under `Ignore`.
fn check_schema(
    resource: &ResourceType,
    object: &Value,
    validation: FieldValidation,
) -> Result<Vec<String>, ApiError> {
    let report = openapi::check(resource, object);
    // Upstream's decoder stops at the first wrong type; so does the message.
    if let Some(first) = report.type_errors.first() {
        return Err(ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: {first}",
            resource.kind, resource.version, resource.kind,
        )));
    }
    let unknown: Vec<String> =
        report.unknown_fields.iter().map(|field| format!("unknown field {field:?}")).collect();
    match validation {
        FieldValidation::Ignore => Ok(Vec::new()),
        FieldValidation::Warn => Ok(unknown),
        FieldValidation::Strict if unknown.is_empty() => Ok(Vec::new()),
        FieldValidation::Strict => {
            Err(ApiError::bad_request(format!("strict decoding error: {}", unknown.join(", "))))
        }
    }
}

/// Sets the object's namespace from the path (400 when the body names another one) and
/// clears it for cluster-scoped kinds.
fn place_in_namespace(target: &Target, object: &mut Value) -> Result<(), ApiError> {
    let path_namespace = namespace_of(target).map(str::to_owned);
    let metadata = metadata_mut(object)?;
    match path_namespace {
        Some(namespace) => {
            match metadata.get("namespace").and_then(Value::as_str) {
                Some(given) if !given.is_empty() && given != namespace => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent \
                         on the request",
                    ));
                }
                _ => {}
            }
            metadata.insert("namespace".into(), Value::String(namespace));
        }
        None if target.resource.is_namespaced() => {
            return Err(ApiError::bad_request(
                "the namespace of the object must be given in the request path",
            ));
        }
        None => {
            metadata.remove("namespace");
        }
    }
    Ok(())
}

/// Upstream's NamespaceLifecycle admission: no new content in a namespace that does not
/// exist (404) or is being deleted (403).
async fn check_namespace_open(rest: &Rest, namespace: &str) -> Result<(), ApiError> {
    let namespaces = registry::find("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("the registry has no namespaces"))?;
    let key = keys::object_key(namespaces, None, namespace);
    let object = match rest.cache.get(&key).0 {
        Some(object) => Some(object),
        // The cache may not have seen a namespace created a moment ago: ask the datastore.
        None => {
            let (kv, _) = rest.store.get(&key, None).await.map_err(store_error)?;
            kv.and_then(|kv| cache::decode(&kv.key, &kv.value, kv.mod_revision))
                .map(std::sync::Arc::new)
        }
    };
    let object = object.ok_or_else(|| ApiError::not_found(namespaces, namespace))?;
    let terminating = object.pointer("/metadata/deletionTimestamp").is_some()
        || object.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating");
    if terminating {
        let mut error = ApiError::forbidden(format!(
            "unable to create new content in namespace {namespace} because it is being terminated"
        ));
        error.details = Some(Box::new(capstan_api::Details {
            name: Some(namespace.to_owned()),
            kind: Some("namespaces".into()),
            ..Default::default()
        }));
        return Err(error);
    }
    Ok(())
}

/// A random version 4 UUID.
pub(crate) fn new_uid() -> String {
    let mut bytes = fastrand::u128(..).to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// `generateName` plus five random characters from upstream's alphabet (no vowels, no
/// look-alikes), the prefix cut so the name fits 63 characters.
fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let cut: String = prefix.chars().take(58).collect();
    let suffix: String =
        (0..5).map(|_| char::from(ALPHABET[fastrand::usize(..ALPHABET.len())])).collect();
    format!("{cut}{suffix}")
}

/// Datastore leases for kinds that expire: Events live an hour after their last write.
/// Writes within a minute share one lease, so a burst of events costs one lease.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    current: Mutex<Option<(LeaseId, Instant)>>,
}

impl Leases {
    async fn for_resource(
        &self,
        rest: &Rest,
        resource: &ResourceType,
    ) -> Result<Option<LeaseId>, ApiError> {
        if resource.kind != "Event" {
            return Ok(None);
        }
        if let Some((lease, granted)) = *self.lock()
            && granted.elapsed() < EVENT_LEASE_REUSE
        {
            return Ok(Some(lease));
        }
        let lease =
            rest.store.grant_lease(EVENT_TTL + EVENT_LEASE_REUSE).await.map_err(store_error)?;
        *self.lock() = Some((lease, Instant::now()));
        Ok(Some(lease))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(LeaseId, Instant)>> {
        self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_version_4() {
        let uid = new_uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(&uid[14..15], "4");
        assert!(matches!(&uid[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(uid, new_uid());
    }

    #[test]
    fn generated_names_fit() {
        let name = generate_name("web-");
        assert!(name.starts_with("web-") && name.len() == 9);
        assert_eq!(generate_name(&"a".repeat(80)).len(), 63);
    }
}
