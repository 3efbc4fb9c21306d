//! get and list, with upstream's resourceVersion semantics: no resourceVersion is a
//! consistent read, `0` is whatever the cache holds, `N` is "not older than N" (or exactly
//! N with `resourceVersionMatch=Exact` or a paged legacy list). Lists come from the watch
//! cache; only exact reads and the later pages of a paged list go to the datastore, at the
//! revision of the first page.

use super::{
    CACHE_PATIENCE, Filter, Presentation, Rest, metadata_str, namespace_of, object_key, present,
    store_error,
};
use crate::cache::{self, Snapshot};
use crate::keys;
use crate::request::{ListOptions, Query, Target, VersionMatch, parse_revision};
use crate::response::{self, Body};
use base64::Engine;
use capstan_api::ApiError;
use capstan_api::registry::ResourceType;
use capstan_api::table;
use capstan_store::{RangeRequest, Revision};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

pub(super) async fn get(
    rest: &Rest,
    target: &Target,
    query: &Query,
    presentation: Presentation,
) -> Result<Response<Body>, ApiError> {
    let name = target.name.as_deref().unwrap_or_default();
    let key = object_key(target, name);
    let object = match query.get("resourceVersion").filter(|v| !v.is_empty()) {
        // Consistent: straight from the datastore.
        None => {
            let (kv, _) = rest.store.get(&key, None).await.map_err(store_error)?;
            kv.and_then(|kv| cache::decode(&kv.key, &kv.value, kv.mod_revision)).map(Arc::new)
        }
        Some(version) => {
            let revision = parse_revision(version)?;
            super::wait_for_revision(rest, revision).await?;
            rest.cache.get(&key).0
        }
    };
    let object = object.ok_or_else(|| ApiError::not_found(target.resource, name))?;
    Ok(match presentation {
        Presentation::Object => response::json(StatusCode::OK, &present(target.resource, &object)),
        Presentation::Table(include) => {
            let version = metadata_str(&object, "resourceVersion").unwrap_or_default().to_owned();
            let options = Presentation::table_options(include, version);
            let table =
                table::table(target.resource, &[present(target.resource, &object)], &options);
            response::json(StatusCode::OK, &table)
        }
    })
}

/// One page of a list.
pub(super) struct Page {
    pub(super) objects: Vec<Arc<Value>>,
    /// The objects' JSON as the cache keeps it, when the page came from the cache.
    pub(super) json: Vec<bytes::Bytes>,
    pub(super) revision: Revision,
    pub(super) continue_token: Option<String>,
    pub(super) remaining: Option<usize>,
}

pub(super) async fn list(
    rest: &Rest,
    target: &Target,
    options: &ListOptions,
    presentation: Presentation,
) -> Result<Response<Body>, ApiError> {
    let page = list_page(rest, target, options).await?;
    Ok(match presentation {
        Presentation::Object => {
            response::respond(StatusCode::OK, "application/json", list_body(target, &page))
        }
        Presentation::Table(include) => {
            let mut table_options = Presentation::table_options(include, page.revision.to_string());
            table_options.continue_token = page.continue_token.clone();
            let objects: Vec<Value> =
                page.objects.iter().map(|o| present(target.resource, o)).collect();
            response::json(StatusCode::OK, &table::table(target.resource, &objects, &table_options))
        }
    })
}

/// The objects a list asks for, from the cache or the datastore as its options require.
pub(super) async fn list_page(
    rest: &Rest,
    target: &Target,
    options: &ListOptions,
) -> Result<Page, ApiError> {
    let filter = Filter::new(target.resource, options);
    let prefix = keys::list_prefix(target.resource, namespace_of(target));
    if let Some(token) = &options.continue_token {
        if options.resource_version.is_some() {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let (revision, start) = decode_continue(token)?;
        return store_page(
            rest,
            &prefix,
            Some(format!("{prefix}{start}")),
            revision,
            options,
            filter,
        )
        .await
        .map_err(|error| match error.code {
            410 => ApiError::expired(
                "The provided continue parameter is too old to display a consistent list \
                     result. Start a new list without the continue parameter.",
            ),
            _ => error,
        });
    }
    let requested = options.resource_version.as_deref().map(parse_revision).transpose()?;
    match (requested, options.version_match) {
        (None | Some(0), VersionMatch::Exact) => Err(ApiError::bad_request(
            "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\" or unset",
        )),
        (None, VersionMatch::NotOlderThan) => Err(ApiError::bad_request(
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        )),
        // Consistent: wait until the cache has seen the datastore's current revision.
        (None, VersionMatch::Unset) => {
            let current = rest.store.current_revision().await.map_err(store_error)?;
            if !rest.cache.wait_for(current, CACHE_PATIENCE).await {
                return store_page(rest, &prefix, None, current, options, filter).await;
            }
            Ok(cache_page(rest, &prefix, options, filter))
        }
        // Any recent state will do.
        (Some(0), _) => Ok(cache_page(rest, &prefix, options, filter)),
        (Some(revision), VersionMatch::NotOlderThan) => {
            wait_not_older(rest, revision).await?;
            Ok(cache_page(rest, &prefix, options, filter))
        }
        (Some(revision), VersionMatch::Unset) if options.limit.is_none() => {
            wait_not_older(rest, revision).await?;
            Ok(cache_page(rest, &prefix, options, filter))
        }
        // Exactly at that revision: only the datastore still has it.
        (Some(revision), _) => store_page(rest, &prefix, None, revision, options, filter)
            .await
            .map_err(|error| match error.code {
                410 => ApiError::expired("The resourceVersion for the provided list is too old."),
                _ => error,
            }),
    }
}

async fn wait_not_older(rest: &Rest, revision: Revision) -> Result<(), ApiError> {
    super::wait_for_revision(rest, revision).await
}

fn cache_page(rest: &Rest, prefix: &str, options: &ListOptions, filter: Filter<'_>) -> Page {
    let (Snapshot { mut objects, revision }, mut json) =
        rest.cache.list_with_json(prefix, |o| filter.matches(o));
    let mut continue_token = None;
    let mut remaining = None;
    if let Some(limit) = options.limit.filter(|limit| objects.len() > *limit) {
        let total = objects.len();
        objects.truncate(limit);
        json.truncate(limit);
        if let Some(last) = objects.last() {
            continue_token =
                Some(encode_continue(revision, &key_suffix(filter.resource(), last, prefix)));
        }
        remaining = filter.is_everything().then(|| total.saturating_sub(limit));
    }
    Page { objects, json, revision, continue_token, remaining }
}

/// A page read from the datastore at `revision`, starting at `start`.
async fn store_page(
    rest: &Rest,
    prefix: &str,
    start: Option<String>,
    revision: Revision,
    options: &ListOptions,
    filter: Filter<'_>,
) -> Result<Page, ApiError> {
    let limit = options.limit;
    let mut objects = Vec::new();
    let mut request = RangeRequest {
        prefix: prefix.to_owned(),
        start,
        limit: Some(limit.unwrap_or(1000).clamp(1, 1000)),
        revision: Some(revision),
    };
    let more = loop {
        let result = rest.store.range(request.clone()).await.map_err(store_error)?;
        for kv in result.kvs {
            if limit.is_some_and(|limit| objects.len() >= limit) {
                break;
            }
            if let Some(object) = cache::decode(&kv.key, &kv.value, kv.mod_revision)
                && filter.matches(&object)
            {
                objects.push(Arc::new(object));
            }
        }
        let full = limit.is_some_and(|limit| objects.len() >= limit);
        match result.next {
            Some(next) if !full => request.start = Some(next),
            Some(_) => break true,
            None => break false,
        }
    };
    let continue_token = match objects.last() {
        Some(last) if more => {
            Some(encode_continue(revision, &key_suffix(filter.resource(), last, prefix)))
        }
        _ => None,
    };
    Ok(Page { objects, json: Vec::new(), revision, continue_token, remaining: None })
}

/// The key of an object relative to a list prefix, for a continue token: the next page
/// starts right after it.
fn key_suffix(resource: &ResourceType, object: &Value, prefix: &str) -> String {
    let name = metadata_str(object, "name").unwrap_or_default();
    let namespace = metadata_str(object, "namespace");
    let key = keys::object_key(resource, namespace, name);
    let suffix = key.strip_prefix(prefix).unwrap_or(&key);
    // The same key with a NUL appended sorts right after it.
    format!("{suffix}\u{0}")
}

fn encode_continue(revision: Revision, start: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": start});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(Revision, String), ApiError> {
    let invalid = || ApiError::bad_request(format!("invalid continue token {token:?}"));
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|_| invalid())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let revision =
        value.get("rv").and_then(Value::as_i64).filter(|r| *r > 0).ok_or_else(invalid)?;
    let start = value.get("start").and_then(Value::as_str).ok_or_else(invalid)?;
    if start.contains("..") || start.starts_with('/') {
        return Err(invalid());
    }
    Ok((revision, start.to_owned()))
}

/// A list response: `{"kind":"PodList","apiVersion":"v1","metadata":{...},"items":[...]}`,
/// written item by item so the cached objects are not copied.
pub(super) fn list_body(target: &Target, page: &Page) -> Vec<u8> {
    let resource = target.resource;
    let mut metadata = serde_json::Map::new();
    metadata.insert("resourceVersion".into(), json!(page.revision.to_string()));
    if let Some(token) = &page.continue_token {
        metadata.insert("continue".into(), json!(token));
    }
    if let Some(remaining) = page.remaining {
        metadata.insert("remainingItemCount".into(), json!(remaining));
    }
    let mut body = format!(
        "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
        resource.kind,
        resource.api_version(),
        Value::Object(metadata)
    )
    .into_bytes();
    let api_version = resource.api_version();
    for (index, object) in page.objects.iter().enumerate() {
        if index > 0 {
            body.push(b',');
        }
        let as_served =
            object.get("apiVersion").and_then(Value::as_str) == Some(api_version.as_str());
        if let (true, Some(json)) = (as_served, page.json.get(index)) {
            body.extend_from_slice(json);
        } else if as_served {
            body.extend_from_slice(object.to_string().as_bytes());
        } else {
            body.extend_from_slice(present(resource, object).to_string().as_bytes());
        }
    }
    body.extend_from_slice(b"]}\n");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_refuse_garbage() {
        let token = encode_continue(42, "default/web\u{0}");
        assert_eq!(decode_continue(&token).unwrap(), (42, "default/web\u{0}".to_owned()));
        for bad in ["", "!!!", "e30=", &encode_continue(0, "x"), &encode_continue(5, "/abs")] {
            assert_eq!(decode_continue(bad).unwrap_err().code, 400, "{bad}");
        }
    }
}
