//! What a request asks for: the route its path names and the options its query carries.
//! Parsing only: nothing here reads the datastore.

use capstan_api::ApiError;
use capstan_api::registry::{self, ResourceType};
use std::collections::HashMap;

/// Where a path leads.
#[derive(Debug)]
pub(crate) enum Route {
    Version,
    Health,
    /// `/cacerts`: the cluster CA, served without authentication (k3s's supervisor path)
    /// so that a joining agent can fetch it and check it against its token.
    CaCerts,
    /// `/metrics`: the Prometheus text of the components in this process.
    Metrics,
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    Group(String),
    /// `/api/v1`, `/apis/<group>/<version>`: the APIResourceList.
    GroupVersion(String, String),
    OpenApiIndex,
    /// `/openapi/v3/<path>`.
    OpenApiDocument(String),
    Resource(Target),
    NotFound,
}

/// A path naming a resource type, maybe one object, maybe a subresource.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) resource: &'static ResourceType,
    /// The namespace in the path (`/namespaces/<ns>/...`), for namespaced types.
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) subresource: Option<String>,
    /// The deprecated `/watch/` form of a list path.
    pub(crate) watch_path: bool,
    /// What follows `…/<name>/proxy/` (`healthz` in `nodes/n1/proxy/healthz`), as sent.
    pub(crate) proxy_path: Option<String>,
}

pub(crate) fn route(path: &str) -> Route {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["version"] => Route::Version,
        ["cacerts"] => Route::CaCerts,
        ["metrics"] => Route::Metrics,
        ["healthz" | "livez" | "readyz"] => Route::Health,
        [probe, _check] if matches!(*probe, "healthz" | "livez" | "readyz") => Route::Health,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["api", "v1"] => Route::GroupVersion(String::new(), "v1".into()),
        ["apis", group] => Route::Group((*group).into()),
        ["apis", group, version] => Route::GroupVersion((*group).into(), (*version).into()),
        ["openapi", "v3"] => Route::OpenApiIndex,
        ["openapi", "v3", rest @ ..] if !rest.is_empty() => Route::OpenApiDocument(rest.join("/")),
        ["api", "v1", rest @ ..] => resource_route("", "v1", rest),
        ["apis", group, version, rest @ ..] => resource_route(group, version, rest),
        _ => Route::NotFound,
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let (watch_path, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    // `namespaces/<ns>/<plural>...` unless it is the namespace itself with a subresource
    // (`namespaces/<name>/status`, `namespaces/<name>/finalize`).
    let namespaces = registry::find(group, version, "namespaces");
    let (namespace, rest) = match rest {
        ["namespaces", namespace, plural, rest @ ..]
            if namespaces.is_none_or(|t| t.subresource(plural).is_none()) =>
        {
            let mut tail = vec![*plural];
            tail.extend_from_slice(rest);
            (Some((*namespace).to_owned()), tail)
        }
        _ => (None, rest.to_vec()),
    };
    let (plural, name, subresource, proxy_path) = match tail(&rest) {
        Some(parts) => parts,
        None => return Route::NotFound,
    };
    let Some(resource) = registry::find(group, version, plural) else {
        return Route::NotFound;
    };
    if namespace.is_some() && !resource.is_namespaced() {
        return Route::NotFound;
    }
    if resource.is_namespaced() && namespace.is_none() && name.is_some() {
        return Route::NotFound;
    }
    if name.is_some_and(str::is_empty) || namespace.as_deref().is_some_and(str::is_empty) {
        return Route::NotFound;
    }
    Route::Resource(Target {
        resource,
        namespace,
        name: name.map(str::to_owned),
        subresource: subresource.map(str::to_owned),
        watch_path,
        proxy_path,
    })
}

/// The plural, the name, the subresource and the path a proxy subresource carries on.
type Tail<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<String>);

fn tail<'a>(rest: &[&'a str]) -> Option<Tail<'a>> {
    match *rest {
        [plural] => Some((plural, None, None, None)),
        [plural, name] => Some((plural, Some(name), None, None)),
        [plural, name, subresource] => Some((plural, Some(name), Some(subresource), None)),
        [plural, name, "proxy", ref path @ ..] => {
            Some((plural, Some(name), Some("proxy"), Some(path.join("/"))))
        }
        _ => None,
    }
}

/// The query string's parameters, percent-decoded; a repeated key keeps its first value.
#[derive(Debug, Default)]
pub(crate) struct Query(HashMap<String, String>);

impl Query {
    pub(crate) fn parse(query: Option<&str>) -> Self {
        let mut params = HashMap::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            params.entry(percent_decode(key)).or_insert_with(|| percent_decode(value));
        }
        Query(params)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A boolean parameter: `true`/`1` (or present with no value) as Go's `strconv.ParseBool`.
    pub(crate) fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None => Ok(false),
            Some("" | "1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid value for {key}: {other:?} is not a boolean"
            ))),
        }
    }

    /// A non-negative integer parameter.
    pub(crate) fn number(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(text) => text.parse::<i64>().map(Some).map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid value for {key}: {text:?} is not an integer"
                ))
            }),
        }
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', high, low]) => hex(*high).zip(hex(*low)),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some((high, low)), _) => {
                // Two hex digits make at most 0xff.
                decoded.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                i += 3;
                continue;
            }
            (None, b'+') => decoded.push(b' '),
            (None, other) => decoded.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// `?fieldValidation=`: what to do with unknown fields in a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

/// The options every write takes.
#[derive(Debug, Clone)]
pub(crate) struct WriteOptions {
    pub(crate) dry_run: bool,
    pub(crate) field_validation: FieldValidation,
    /// `?fieldManager=`: who owns the fields this write sets.
    pub(crate) field_manager: Option<String>,
    /// `?force=true`: an apply takes over conflicting fields.
    pub(crate) force: bool,
}

impl WriteOptions {
    /// The manager a write is recorded under: `?fieldManager=`, else the first word of the
    /// client's User-Agent (`kubectl`), as kube-apiserver does.
    pub(crate) fn manager(&self, user_agent: &str) -> String {
        match &self.field_manager {
            Some(manager) => manager.clone(),
            None => {
                let prefix = user_agent.split('/').next().unwrap_or("").trim();
                let prefix: String = prefix.chars().take(128).collect();
                if prefix.is_empty() { "unknown".to_owned() } else { prefix }
            }
        }
    }

    pub(crate) fn parse(query: &Query) -> Result<Self, ApiError> {
        let dry_run = match query.get("dryRun") {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "Invalid dry run value: {other:?}: supported values: \"All\""
                )));
            }
        };
        // kube-apiserver's default is Warn since 1.27.
        let field_validation = match query.get("fieldValidation") {
            None | Some("") | Some("Warn") => FieldValidation::Warn,
            Some("Strict") => FieldValidation::Strict,
            Some("Ignore") => FieldValidation::Ignore,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "fieldValidation: Unsupported value: {other:?}: supported values: \
                     \"Ignore\", \"Strict\", \"Warn\""
                )));
            }
        };
        let field_manager = query.get("fieldManager").filter(|m| !m.is_empty()).map(str::to_owned);
        if let Some(manager) = &field_manager
            && (manager.chars().count() > 128 || manager.chars().any(char::is_control))
        {
            return Err(ApiError::bad_request(format!(
                "fieldManager: Invalid value: {manager:?}: must be at most 128 printable \
                     characters"
            )));
        }
        let force = query.flag("force")?;
        Ok(WriteOptions { dry_run, field_validation, field_manager, force })
    }
}

/// `?resourceVersionMatch=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VersionMatch {
    /// Not given: the legacy meaning of `resourceVersion` applies.
    Unset,
    NotOlderThan,
    Exact,
}

/// The options of list and watch.
#[derive(Debug, Clone)]
pub(crate) struct ListOptions {
    pub(crate) label_selector: capstan_api::LabelSelector,
    pub(crate) field_selector: capstan_api::FieldSelector,
    pub(crate) limit: Option<usize>,
    pub(crate) continue_token: Option<String>,
    /// `None` when unset or empty.
    pub(crate) resource_version: Option<String>,
    pub(crate) version_match: VersionMatch,
    pub(crate) allow_bookmarks: bool,
    pub(crate) send_initial_events: Option<bool>,
    pub(crate) timeout_seconds: Option<u64>,
}

impl ListOptions {
    pub(crate) fn parse(query: &Query, resource: &ResourceType) -> Result<Self, ApiError> {
        let label_selector =
            capstan_api::LabelSelector::parse(query.get("labelSelector").unwrap_or(""))
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        let field_selector =
            capstan_api::FieldSelector::parse(query.get("fieldSelector").unwrap_or(""))
                .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?;
        let supported = capstan_api::strategy::selectable_fields(resource);
        if let Some(field) = field_selector.fields().find(|f| !supported.contains(f)) {
            return Err(ApiError::bad_request(format!("field label not supported: {field}")));
        }
        let limit = match query.number("limit")? {
            Some(n) if n > 0 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            _ => None,
        };
        let version_match = match query.get("resourceVersionMatch") {
            None | Some("") => VersionMatch::Unset,
            Some("NotOlderThan") => VersionMatch::NotOlderThan,
            Some("Exact") => VersionMatch::Exact,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "resourceVersionMatch: Unsupported value: {other:?}: supported values: \
                     \"Exact\", \"NotOlderThan\""
                )));
            }
        };
        let send_initial_events = match query.get("sendInitialEvents") {
            None => None,
            Some(_) => Some(query.flag("sendInitialEvents")?),
        };
        let timeout_seconds = query.number("timeoutSeconds")?.map(|n| n.max(0).unsigned_abs());
        Ok(ListOptions {
            label_selector,
            field_selector,
            limit,
            continue_token: query.get("continue").filter(|t| !t.is_empty()).map(str::to_owned),
            resource_version: query
                .get("resourceVersion")
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            version_match,
            allow_bookmarks: query.flag("allowWatchBookmarks")?,
            send_initial_events,
            timeout_seconds,
        })
    }
}

/// A resourceVersion parameter as a revision: `Err` names the bad value (400).
pub(crate) fn parse_revision(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version: {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A route as `plural namespace/name/subresource`, `-` for what is absent.
    fn target(path: &str) -> String {
        match route(path) {
            Route::Resource(t) => {
                let part = |p: Option<String>| p.unwrap_or_else(|| "-".into());
                format!(
                    "{} {}/{}/{}",
                    t.resource.plural,
                    part(t.namespace),
                    part(t.name),
                    part(t.subresource)
                )
            }
            _ => "not found".into(),
        }
    }

    #[test]
    fn routes_resource_paths() {
        for (path, expected) in [
            ("/api/v1/pods", "pods -/-/-"),
            ("/api/v1/namespaces/default/pods/web", "pods default/web/-"),
            ("/apis/apps/v1/namespaces/a/deployments/d/scale", "deployments a/d/scale"),
            ("/api/v1/namespaces", "namespaces -/-/-"),
            ("/api/v1/namespaces/kube-system", "namespaces -/kube-system/-"),
            ("/api/v1/namespaces/x/status", "namespaces -/x/status"),
            ("/api/v1/nodes/n1", "nodes -/n1/-"),
            // A namespaced object needs its namespace; a cluster-scoped one has none.
            ("/api/v1/pods/web", "not found"),
            ("/api/v1/namespaces/a/nodes/n1", "not found"),
            ("/api/v1/nothings", "not found"),
            ("/api/v1/namespaces/a/pods/b/c/d", "not found"),
            ("/api/v1/nodes/n1/proxy/metrics/cadvisor", "nodes -/n1/proxy"),
        ] {
            assert_eq!(target(path), expected, "{path}");
        }
        assert!(
            matches!(route("/api/v1/watch/namespaces/a/pods"), Route::Resource(t) if t.watch_path)
        );
        assert!(matches!(
            route("/api/v1/nodes/n1/proxy/metrics/cadvisor"),
            Route::Resource(t) if t.proxy_path.as_deref() == Some("metrics/cadvisor")
        ));
        assert!(matches!(
            route("/api/v1/nodes/n1/proxy"),
            Route::Resource(t) if t.proxy_path.is_none()
        ));
    }

    #[test]
    fn decodes_query_parameters() {
        let query = Query::parse(Some("labelSelector=app%3Dweb%2Ctier+in+(a)&watch=1&limit=5"));
        assert_eq!(query.get("labelSelector"), Some("app=web,tier in (a)"));
        assert_eq!(query.flag("watch"), Ok(true));
        assert_eq!(query.number("limit"), Ok(Some(5)));
        assert!(Query::parse(Some("watch=maybe")).flag("watch").is_err());
        assert_eq!(Query::parse(Some("a=%zz%4")).get("a"), Some("%zz%4"));
    }
}
