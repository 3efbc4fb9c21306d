//! The REST machinery: the verbs of every resource type over the datastore and the watch
//! cache. `read` serves get and list, `watch` streams changes, `write` creates, updates,
//! patches and deletes; `node_proxy` relays the subresources kubelets serve (logs, exec,
//! attach, port-forward, `nodes/proxy`).

mod admission;
mod duplicates;
mod node_proxy;
mod read;
mod reviews;
mod subresources;
mod watch;
mod write;

use crate::auth::User;
use crate::cache::WatchCache;
use crate::keys;
use crate::request::{ListOptions, Query, Target, WriteOptions};
use crate::response::{self, Body};
use crate::tokens::TokenIssuer;
use bytes::Bytes;
use capstan_api::registry::ResourceType;
use capstan_api::table::{IncludeObject, TableOptions};
use capstan_api::{ApiError, strategy};
use capstan_store::{Store, StoreError};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use node_proxy::Kubelets;
pub(crate) use subresources::grant_is_current;
pub(crate) use write::{Leases, create_internal, new_uid};

/// How long a read waits for the watch cache to reach the revision it needs.
const CACHE_PATIENCE: Duration = Duration::from_secs(3);

/// What the REST handlers share.
#[derive(Debug)]
pub(crate) struct Rest {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) cache: Arc<WatchCache>,
    pub(crate) leases: Leases,
    pub(crate) tokens: TokenIssuer,
    pub(crate) kubelets: Kubelets,
    /// Cluster IPs and node ports of Services.
    pub(crate) services: crate::services::ServiceAllocator,
}

/// One request to a resource path, its body already read.
#[derive(Debug)]
pub(crate) struct ResourceRequest<'a> {
    pub(crate) method: &'a Method,
    pub(crate) target: Target,
    pub(crate) query: &'a Query,
    pub(crate) accept: &'a str,
    pub(crate) content_type: &'a str,
    pub(crate) user_agent: &'a str,
    pub(crate) user: &'a User,
    pub(crate) body: Bytes,
}

pub(crate) async fn handle(rest: &Rest, request: ResourceRequest<'_>) -> Response<Body> {
    match dispatch(rest, request).await {
        Ok(response) => response,
        Err(error) => response::error(&error),
    }
}

/// Whether a request goes to [`connect`] rather than [`handle`]: a subresource that is
/// relayed to a kubelet, whose body is streamed rather than read first.
pub(crate) fn is_connect(target: &Target) -> bool {
    target.subresource.as_deref().is_some_and(node_proxy::is_connect)
}

/// Serves a request for which [`is_connect`] holds, body unread, connection upgradable.
pub(crate) async fn connect(
    rest: &Rest,
    target: &Target,
    request: Request<Incoming>,
) -> Response<Body> {
    let query = Query::parse(request.uri().query());
    let served = match allowed_verb(request.method(), target, &query) {
        Ok(_) => node_proxy::serve(rest, target, request).await,
        Err(error) => {
            node_proxy::discard_body(request).await;
            Err(error)
        }
    };
    served.unwrap_or_else(|error| response::error(&error))
}

/// The request's verb, if the target's type (or subresource) has it.
fn allowed_verb(method: &Method, target: &Target, query: &Query) -> Result<&'static str, ApiError> {
    let resource = target.resource;
    if let Some(subresource) = &target.subresource
        && resource.subresource(subresource).is_none()
    {
        return Err(ApiError::path_not_found());
    }
    let verb = verb(method, target, query)?;
    let allowed = match &target.subresource {
        Some(subresource) => subresources::verbs(subresource).contains(&verb),
        None => resource.has_verb(verb),
    };
    if !allowed {
        return Err(ApiError::method_not_supported(resource, verb));
    }
    Ok(verb)
}

async fn dispatch(rest: &Rest, request: ResourceRequest<'_>) -> Result<Response<Body>, ApiError> {
    let target = &request.target;
    let resource = target.resource;
    let verb = allowed_verb(request.method, target, request.query)?;
    if is_connect(target) {
        // The server sends these to `connect` before reading the body.
        return Err(ApiError::internal("a proxied subresource reached the REST handlers"));
    }
    let (content_type, body, agent) = (request.content_type, &request.body[..], request.user_agent);
    match target.subresource.as_deref() {
        Some("scale") => {
            return subresources::scale(
                rest,
                target,
                verb,
                request.query,
                agent,
                content_type,
                body,
            )
            .await;
        }
        Some("binding") => return subresources::bind(rest, target, content_type, body).await,
        Some("eviction") => return subresources::evict(rest, target, content_type, body).await,
        Some("token") => return subresources::token(rest, target, content_type, body).await,
        _ => {}
    }
    if verb == "create" && reviews::is_review(resource) {
        return reviews::review(rest, resource, request.user, content_type, body);
    }
    let presentation = Presentation::of(request.accept, request.query)?;
    match verb {
        "get" => read::get(rest, target, request.query, presentation).await,
        "list" | "watch" => {
            let options = ListOptions::parse(request.query, resource)?;
            if verb == "watch" {
                watch::watch(rest, target, options, presentation).await
            } else {
                read::list(rest, target, &options, presentation).await
            }
        }
        "create" => {
            let options = WriteOptions::parse(request.query)?;
            write::create(rest, target, &options, agent, content_type, body).await
        }
        "update" => {
            let options = WriteOptions::parse(request.query)?;
            write::update(rest, target, &options, agent, content_type, body).await
        }
        "patch" => {
            let options = WriteOptions::parse(request.query)?;
            write::patch(rest, target, &options, agent, content_type, body).await
        }
        "delete" => write::delete(rest, target, request.query, body).await,
        "deletecollection" => {
            let options = ListOptions::parse(request.query, resource)?;
            write::delete_collection(rest, target, &options, request.query, body).await
        }
        _ => Err(ApiError::method_not_supported(resource, verb)),
    }
}

/// The Kubernetes verb of a request.
fn verb(method: &Method, target: &Target, query: &Query) -> Result<&'static str, ApiError> {
    let named = target.name.is_some();
    Ok(match *method {
        Method::GET | Method::HEAD if target.watch_path || (!named && query.flag("watch")?) => {
            "watch"
        }
        Method::GET | Method::HEAD if named => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST if !named || target.subresource.is_some() => "create",
        Method::PUT if named => "update",
        Method::PATCH if named => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => return Err(ApiError::method_not_supported(target.resource, method.as_str())),
    })
}

/// How objects go out: as themselves, or as a `meta.k8s.io/v1` Table (`kubectl get`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Presentation {
    Object,
    Table(IncludeObject),
}

impl Presentation {
    fn of(accept: &str, query: &Query) -> Result<Self, ApiError> {
        let wants_table =
            accept.split(',').any(|media| media.split(';').any(|param| param.trim() == "as=Table"));
        if !wants_table {
            return Ok(Presentation::Object);
        }
        let include = match query.get("includeObject") {
            None | Some("") | Some("Metadata") => IncludeObject::Metadata,
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "includeObject: Unsupported value: {other:?}"
                )));
            }
        };
        Ok(Presentation::Table(include))
    }

    fn table_options(include: IncludeObject, resource_version: String) -> TableOptions {
        TableOptions {
            now: now_seconds(),
            include_object: include,
            resource_version,
            continue_token: None,
            omit_columns: false,
        }
    }
}

/// The object as the requested version shows it: versions that share storage (autoscaling
/// v1 and v2, core and events.k8s.io Events) are converted; others only carry the requested
/// `apiVersion`.
fn present(resource: &ResourceType, object: &Value) -> Value {
    capstan_api::conversion::convert(object, resource)
}

/// Whether an object is stored in the form of the requested version.
fn in_form_of(resource: &ResourceType, object: &Value) -> bool {
    object.get("apiVersion").and_then(Value::as_str) == Some(resource.api_version().as_str())
}

/// Label and field selectors, applied to stored objects.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Filter<'a> {
    resource: &'a ResourceType,
    options: &'a ListOptions,
}

impl<'a> Filter<'a> {
    pub(crate) fn new(resource: &'a ResourceType, options: &'a ListOptions) -> Self {
        Filter { resource, options }
    }

    pub(crate) fn resource(&self) -> &'a ResourceType {
        self.resource
    }

    pub(crate) fn is_everything(&self) -> bool {
        self.options.label_selector.is_empty() && self.options.field_selector.is_empty()
    }

    pub(crate) fn matches(&self, object: &Value) -> bool {
        if self.is_everything() {
            return true;
        }
        if !in_form_of(self.resource, object) {
            return self.matches_converted(&present(self.resource, object));
        }
        self.matches_converted(object)
    }

    fn matches_converted(&self, object: &Value) -> bool {
        if !self.options.label_selector.is_empty() {
            let labels: BTreeMap<String, String> = object
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|labels| {
                    labels
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            if !self.options.label_selector.matches(&labels) {
                return false;
            }
        }
        if !self.options.field_selector.is_empty() {
            let values = strategy::field_values(self.resource, object);
            let lookup = |field: &str| {
                values.iter().find(|(name, _)| *name == field).map(|(_, value)| value.as_str())
            };
            if !self.options.field_selector.matches(lookup) {
                return false;
            }
        }
        true
    }
}

/// Waits until the cache has seen `revision`. A revision the datastore has not reached is
/// answered at once, one it has after at most `CACHE_PATIENCE`: both as upstream's 504
/// "Too large resource version", whose `ResourceVersionTooLarge` cause makes client-go and
/// kube-rs relist instead of retrying.
async fn wait_for_revision(rest: &Rest, revision: i64) -> Result<(), ApiError> {
    // Usually the cache is there already: no need to ask the datastore.
    if rest.cache.revision() >= revision {
        return Ok(());
    }
    let current = rest.store.current_revision().await.map_err(store_error)?;
    if revision <= current && rest.cache.wait_for(revision, CACHE_PATIENCE).await {
        return Ok(());
    }
    let mut error = ApiError::timeout(format!(
        "Too large resource version: {revision}, current: {}",
        rest.cache.revision()
    ));
    error.details = Some(Box::new(capstan_api::Details {
        causes: vec![capstan_api::Cause {
            reason: "ResourceVersionTooLarge".into(),
            message: "Too large resource version".into(),
            field: String::new(),
        }],
        ..Default::default()
    }));
    error.retry_after_seconds = Some(1);
    Err(error)
}

/// The namespace of a target as a key component: `None` for cluster-scoped types.
fn namespace_of(target: &Target) -> Option<&str> {
    if target.resource.is_namespaced() { target.namespace.as_deref() } else { None }
}

fn object_key(target: &Target, name: &str) -> String {
    keys::object_key(target.resource, namespace_of(target), name)
}

/// A datastore failure as the API reports it: compaction is 410, the rest is the server's
/// fault (500), never the client's.
pub(crate) fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::Compacted { .. } => {
            ApiError::expired("The resourceVersion for the provided request is too old.")
        }
        StoreError::FutureRevision { .. } => ApiError::timeout(
            "Too large resource version: the datastore has not reached the requested revision",
        ),
        StoreError::ValueTooLarge { .. } | StoreError::RequestTooLarge { .. } => {
            ApiError::too_large(capstan_store::MAX_VALUE_BYTES)
        }
        other => {
            tracing::error!(error = %other, "datastore request failed");
            ApiError::internal(format!("datastore request failed: {other}"))
        }
    }
}

pub(crate) fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn metadata_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str()
}
