//! One group-version's OpenAPI v3 document, as kube-apiserver serves it under
//! `/openapi/v3/<api/v1 | apis/group/version>`: an operation per resource path and verb, each
//! naming its kind (`x-kubernetes-group-version-kind`) and action (`x-kubernetes-action`), and
//! the schemas those operations reach.

use super::schemas::{CATALOG, REF_PREFIX};
use crate::registry::{self, GroupVersionKind, ResourceType, Subresource};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Media types of an object response.
const OBJECT_MEDIA: &[&str] =
    &["application/json", "application/vnd.kubernetes.protobuf", "application/yaml"];
/// Media types of a list or watch response.
const STREAM_MEDIA: &[&str] = &[
    "application/json",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf",
    "application/vnd.kubernetes.protobuf;stream=watch",
    "application/yaml",
];
/// The patch types a PATCH accepts; kubectl picks one per request.
const PATCH_MEDIA: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";

/// The query parameters, by name: `(name, type, description)`.
const QUERY_PARAMETERS: &[(&str, &str, &str)] = &[
    ("allowWatchBookmarks", "boolean", "Asks a watch for BOOKMARK events; ignored by a list."),
    ("container", "string", "The container whose log to return; optional if the pod has one."),
    ("continue", "string", "The token from a previous chunked list's metadata.continue."),
    (
        "dryRun",
        "string",
        "When present, the request is processed but nothing is persisted. The only valid value is All.",
    ),
    ("fieldManager", "string", "The name of the actor making the change, for managedFields."),
    ("fieldSelector", "string", "Restricts the listed objects by their fields."),
    (
        "fieldValidation",
        "string",
        "How the server treats unknown and duplicate fields in the request body: Ignore, Warn or Strict.",
    ),
    ("follow", "boolean", "Streams the log as it grows."),
    ("force", "boolean", "Takes over conflicting fields in an apply patch; apply patches only."),
    ("gracePeriodSeconds", "integer", "Seconds before the object is deleted; zero is at once."),
    (
        "ignoreStoreReadErrorWithClusterBreakingPotential",
        "boolean",
        "Deletes an object that cannot be read from storage.",
    ),
    ("labelSelector", "string", "Restricts the listed objects by their labels."),
    ("limit", "integer", "The most objects a list returns; more are fetched with continue."),
    ("limitBytes", "integer", "The most bytes of log to return."),
    ("orphanDependents", "boolean", "Deprecated: use propagationPolicy."),
    ("pretty", "string", "If 'true', the output is indented."),
    ("previous", "boolean", "Returns the log of the container's previous instance."),
    (
        "propagationPolicy",
        "string",
        "How dependents are deleted: Orphan, Background or Foreground.",
    ),
    ("resourceVersion", "string", "The resource version a read is served at or after."),
    (
        "resourceVersionMatch",
        "string",
        "How resourceVersion applies to a list: Exact or NotOlderThan.",
    ),
    ("sendInitialEvents", "boolean", "Starts a watch with synthetic events for the current state."),
    ("sinceSeconds", "integer", "Returns log lines newer than this many seconds."),
    ("tailLines", "integer", "Returns this many lines from the end of the log."),
    ("timeoutSeconds", "integer", "Ends a list or watch after this many seconds."),
    ("timestamps", "boolean", "Prefixes every log line with its timestamp."),
    ("watch", "boolean", "Watches for changes instead of listing."),
];

const LIST_PARAMETERS: &[&str] = &[
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
];
const WRITE_PARAMETERS: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];
const PATCH_PARAMETERS: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "force"];
const DELETE_PARAMETERS: &[&str] = &[
    "dryRun",
    "gracePeriodSeconds",
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "orphanDependents",
    "propagationPolicy",
];
const DELETE_COLLECTION_PARAMETERS: &[&str] = &[
    "continue",
    "dryRun",
    "fieldSelector",
    "gracePeriodSeconds",
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "labelSelector",
    "limit",
    "orphanDependents",
    "propagationPolicy",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
];
const LOG_PARAMETERS: &[&str] =
    &["container", "follow", "limitBytes", "previous", "sinceSeconds", "tailLines", "timestamps"];

/// The document of `group`/`version`.
pub(super) fn build(group: &str, version: &str) -> Value {
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for resource in registry::builtin().iter().filter(|t| t.group == group && t.version == version)
    {
        ResourcePaths::new(resource).add_to(&mut paths);
    }
    let paths: Map<String, Value> =
        paths.into_iter().map(|(path, item)| (path, Value::Object(item))).collect();
    let mut roots = Vec::new();
    super::schemas::references(&Value::Object(paths.clone()), &mut |name| {
        roots.push(name.to_owned())
    });
    let schemas: Map<String, Value> = CATALOG
        .closure(roots)
        .into_iter()
        .filter_map(|name| CATALOG.schemas.get(&name).map(|schema| (name, schema.clone())))
        .collect();
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// The paths of one resource type and the names its operations are built from.
struct ResourcePaths<'a> {
    resource: &'a ResourceType,
    /// `/api/v1` or `/apis/<group>/<version>`.
    prefix: String,
    /// `CoreV1`, `AppsV1`, `RbacAuthorizationV1`: the middle of every operationId.
    id_infix: String,
    /// `core_v1`, `apps_v1`, `rbacAuthorization_v1`.
    tag: String,
}

impl<'a> ResourcePaths<'a> {
    fn new(resource: &'a ResourceType) -> Self {
        let prefix = if resource.group.is_empty() {
            format!("/api/{}", resource.version)
        } else {
            format!("/apis/{}/{}", resource.group, resource.version)
        };
        let group_words: String = if resource.group.is_empty() {
            "Core".into()
        } else {
            resource.group.trim_end_matches(".k8s.io").split('.').map(capitalized).collect()
        };
        let mut tag = group_words.clone();
        if let Some(first) = tag.get_mut(0..1) {
            first.make_ascii_lowercase();
        }
        ResourcePaths {
            resource,
            prefix,
            id_infix: format!("{group_words}{}", capitalized(resource.version)),
            tag: format!("{tag}_{}", resource.version),
        }
    }

    fn add_to(&self, paths: &mut BTreeMap<String, Map<String, Value>>) {
        let t = self.resource;
        let gvk = t.gvk();
        let schema = CATALOG.schema_of(t.group, t.version, t.kind).map(str::to_owned);
        let Some(schema) = schema else { return };
        let list_schema = format!("{schema}List");
        let (scope_path, scope_word) = if t.is_namespaced() {
            (format!("{}/namespaces/{{namespace}}", self.prefix), "Namespaced")
        } else {
            (self.prefix.clone(), "")
        };
        let kind = t.kind;
        let collection = format!("{scope_path}/{}", t.plural);
        let item = format!("{collection}/{{name}}");
        let id = |verb: &str, middle: &str, suffix: &str| {
            format!("{verb}{}{middle}{scope_word}{kind}{suffix}", self.id_infix)
        };
        let mut ops = |path: &str, method: &str, op: Value| {
            let entry = paths.entry(path.to_owned()).or_insert_with(|| self.path_item(path));
            entry.insert(method.to_owned(), op);
        };

        if t.has_verb("list") {
            let op = self
                .operation(
                    &id("list", "", ""),
                    "list",
                    gvk,
                    &format!("list or watch {kind} objects"),
                )
                .parameters(LIST_PARAMETERS)
                .responds(&[("200", "OK")], &list_schema, STREAM_MEDIA);
            ops(&collection, "get", op.0);
            if t.is_namespaced() {
                let op = self
                    .operation(
                        &format!("list{}{kind}ForAllNamespaces", self.id_infix),
                        "list",
                        gvk,
                        &format!("list or watch {kind} objects in every namespace"),
                    )
                    .parameters(LIST_PARAMETERS)
                    .responds(&[("200", "OK")], &list_schema, STREAM_MEDIA);
                ops(&format!("{}/{}", self.prefix, t.plural), "get", op.0);
            }
        }
        if t.has_verb("create") {
            let op = self
                .operation(&id("create", "", ""), "post", gvk, &format!("create a {kind}"))
                .parameters(WRITE_PARAMETERS)
                .body(&schema, &["*/*"])
                .responds(
                    &[("200", "OK"), ("201", "Created"), ("202", "Accepted")],
                    &schema,
                    OBJECT_MEDIA,
                );
            ops(&collection, "post", op.0);
        }
        if t.has_verb("deletecollection") {
            let op = self
                .operation(
                    &id("delete", "Collection", ""),
                    "deletecollection",
                    gvk,
                    &format!("delete a collection of {kind} objects"),
                )
                .parameters(DELETE_COLLECTION_PARAMETERS)
                .body(DELETE_OPTIONS, &["*/*"])
                .responds(&[("200", "OK")], STATUS, OBJECT_MEDIA);
            ops(&collection, "delete", op.0);
        }
        if t.has_verb("get") {
            let op = self
                .operation(&id("read", "", ""), "get", gvk, &format!("read the named {kind}"))
                .responds(&[("200", "OK")], &schema, OBJECT_MEDIA);
            ops(&item, "get", op.0);
        }
        if t.has_verb("update") {
            ops(&item, "put", self.replace(&id("replace", "", ""), gvk, &schema).0);
        }
        if t.has_verb("patch") {
            ops(&item, "patch", self.patch(&id("patch", "", ""), gvk, &schema).0);
        }
        if t.has_verb("delete") {
            let op = self
                .operation(
                    &id("delete", "", ""),
                    "delete",
                    gvk,
                    &format!("delete the named {kind}"),
                )
                .parameters(DELETE_PARAMETERS)
                .body(DELETE_OPTIONS, &["*/*"])
                .responds(&[("200", "OK"), ("202", "Accepted")], STATUS, OBJECT_MEDIA);
            ops(&item, "delete", op.0);
        }
        if t.has_verb("watch") {
            let watch_scope = if t.is_namespaced() {
                format!("{}/watch/namespaces/{{namespace}}", self.prefix)
            } else {
                format!("{}/watch", self.prefix)
            };
            let watch = |id: String, action: &str, what: String| {
                self.operation(&id, action, gvk, &what).responds(
                    &[("200", "OK")],
                    WATCH_EVENT,
                    STREAM_MEDIA,
                )
            };
            let list_watch =
                watch(id("watch", "", "List"), "watchlist", format!("watch {kind} objects"));
            ops(&format!("{watch_scope}/{}", t.plural), "get", list_watch.0);
            let one = watch(id("watch", "", ""), "watch", format!("watch the named {kind}"));
            ops(&format!("{watch_scope}/{}/{{name}}", t.plural), "get", one.0);
            if t.is_namespaced() {
                let all = watch(
                    format!("watch{}{kind}ListForAllNamespaces", self.id_infix),
                    "watchlist",
                    format!("watch {kind} objects in every namespace"),
                );
                ops(&format!("{}/watch/{}", self.prefix, t.plural), "get", all.0);
            }
        }
        for subresource in t.subresources {
            self.add_subresource(subresource, &item, scope_word, &mut ops);
        }
    }

    fn add_subresource(
        &self,
        subresource: &Subresource,
        item: &str,
        scope_word: &str,
        ops: &mut impl FnMut(&str, &str, Value),
    ) {
        let path = format!("{item}/{}", subresource.name);
        let gvk = subresource.kind;
        let suffix = capitalized(subresource.name);
        let parent = self.resource.kind;
        let id = |verb: &str| format!("{verb}{}{scope_word}{parent}{suffix}", self.id_infix);
        let body_schema = CATALOG.schema_of(gvk.group, gvk.version, gvk.kind).map(str::to_owned);
        let Some(schema) = body_schema else {
            // A connect subresource (exec, attach, portforward, proxy): its options are query
            // parameters and its response a stream.
            for verb in subresource.verbs {
                let method = match *verb {
                    "get" => "get",
                    "create" => "post",
                    "update" => "put",
                    "patch" => "patch",
                    "delete" => "delete",
                    _ => continue,
                };
                let op = self
                    .operation(
                        &format!(
                            "connect{}{}{scope_word}{parent}{suffix}",
                            self.id_infix,
                            capitalized(method)
                        ),
                        "connect",
                        gvk,
                        &format!(
                            "connect {} requests to {} of {parent}",
                            method.to_uppercase(),
                            subresource.name
                        ),
                    )
                    .responds_text("*/*");
                ops(&path, method, op.0);
            }
            return;
        };
        if subresource.name == "log" {
            let op = self
                .operation(&id("read"), "get", gvk, &format!("read the log of the named {parent}"))
                .parameters(LOG_PARAMETERS)
                .responds_text("text/plain");
            ops(&path, "get", op.0);
            return;
        }
        for verb in subresource.verbs {
            let what = format!("{} of the named {parent}", subresource.name);
            let (method, op) = match *verb {
                "get" => (
                    "get",
                    self.operation(&id("read"), "get", gvk, &format!("read {what}")).responds(
                        &[("200", "OK")],
                        &schema,
                        OBJECT_MEDIA,
                    ),
                ),
                "create" => (
                    "post",
                    self.operation(&id("create"), "post", gvk, &format!("create {what}"))
                        .parameters(WRITE_PARAMETERS)
                        .body(&schema, &["*/*"])
                        .responds(
                            &[("200", "OK"), ("201", "Created"), ("202", "Accepted")],
                            &schema,
                            OBJECT_MEDIA,
                        ),
                ),
                "update" => ("put", self.replace(&id("replace"), gvk, &schema)),
                "patch" => ("patch", self.patch(&id("patch"), gvk, &schema)),
                _ => continue,
            };
            ops(&path, method, op.0);
        }
    }

    fn replace(&self, id: &str, gvk: GroupVersionKind, schema: &str) -> Operation {
        self.operation(id, "put", gvk, &format!("replace the named {}", gvk.kind))
            .parameters(WRITE_PARAMETERS)
            .body(schema, &["*/*"])
            .responds(&[("200", "OK"), ("201", "Created")], schema, OBJECT_MEDIA)
    }

    /// A PATCH declares `fieldValidation`: that is what makes kubectl's `--validate=strict`
    /// ask the server to validate.
    fn patch(&self, id: &str, gvk: GroupVersionKind, schema: &str) -> Operation {
        self.operation(id, "patch", gvk, &format!("partially update the named {}", gvk.kind))
            .parameters(PATCH_PARAMETERS)
            .body(PATCH, PATCH_MEDIA)
            .responds(&[("200", "OK"), ("201", "Created")], schema, OBJECT_MEDIA)
    }

    /// The parameters every operation of a path shares: its path parameters and `pretty`.
    fn path_item(&self, path: &str) -> Map<String, Value> {
        let mut parameters = Vec::new();
        if path.contains("{name}") {
            parameters.push(path_parameter("name", &format!("name of the {}", self.resource.kind)));
        }
        if path.contains("{namespace}") {
            parameters.push(path_parameter("namespace", "the namespace of the objects"));
        }
        parameters.push(query_parameter("pretty"));
        let mut item = Map::new();
        item.insert("parameters".into(), Value::Array(parameters));
        item
    }

    fn operation(
        &self,
        id: &str,
        action: &str,
        gvk: GroupVersionKind,
        description: &str,
    ) -> Operation {
        Operation(json!({
            "description": description,
            "operationId": id,
            "responses": {"401": {"description": "Unauthorized"}},
            "tags": [self.tag],
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": {"group": gvk.group, "kind": gvk.kind, "version": gvk.version},
        }))
    }
}

/// An operation object under construction.
struct Operation(Value);

impl Operation {
    fn parameters(mut self, names: &[&str]) -> Self {
        let parameters: Vec<Value> = names.iter().map(|name| query_parameter(name)).collect();
        self.0["parameters"] = Value::Array(parameters);
        self
    }

    fn body(mut self, schema: &str, media: &[&str]) -> Self {
        self.0["requestBody"] = json!({"content": content(schema, media), "required": true});
        self
    }

    fn responds(mut self, codes: &[(&str, &str)], schema: &str, media: &[&str]) -> Self {
        for (code, description) in codes {
            self.0["responses"][*code] =
                json!({"content": content(schema, media), "description": description});
        }
        self
    }

    fn responds_text(mut self, media: &str) -> Self {
        self.0["responses"]["200"] = json!({
            "content": {media: {"schema": {"type": "string"}}},
            "description": "OK",
        });
        self
    }
}

fn content(schema: &str, media: &[&str]) -> Value {
    let reference = json!({"schema": {"$ref": format!("{REF_PREFIX}{schema}")}});
    Value::Object(media.iter().map(|media| ((*media).to_owned(), reference.clone())).collect())
}

fn path_parameter(name: &str, description: &str) -> Value {
    json!({
        "description": description,
        "in": "path",
        "name": name,
        "required": true,
        "schema": {"type": "string", "uniqueItems": true},
    })
}

fn query_parameter(name: &str) -> Value {
    let (kind, description) = QUERY_PARAMETERS
        .iter()
        .find(|(known, _, _)| *known == name)
        .map_or(("string", ""), |(_, kind, description)| (*kind, *description));
    json!({
        "description": description,
        "in": "query",
        "name": name,
        "schema": {"type": kind, "uniqueItems": true},
    })
}

/// `apps` → `Apps`, `v1beta1` → `V1beta1`, `status` → `Status`.
fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map_or_else(String::new, |first| first.to_ascii_uppercase().to_string() + chars.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A group-version's served document, parsed back.
    fn served(path: &str) -> Value {
        serde_json::from_slice(super::super::document(path).unwrap()).unwrap()
    }

    fn schema<'a>(document: &'a Value, name: &str) -> &'a Value {
        let schema = &document["components"]["schemas"][name];
        assert!(schema.is_object(), "no schema {name}");
        schema
    }

    fn parameter_names(operation: &Value) -> Vec<&str> {
        operation["parameters"]
            .as_array()
            .map(|parameters| parameters.iter().filter_map(|p| p["name"].as_str()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_patch_declares_its_kind_field_validation_and_patch_types() {
        let apps = served("apis/apps/v1");
        assert_eq!(apps["openapi"], "3.0.0");
        let patch =
            &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
        assert_eq!(patch["x-kubernetes-action"], "patch");
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "kind": "Deployment", "version": "v1"})
        );
        assert_eq!(parameter_names(patch), ["dryRun", "fieldManager", "fieldValidation", "force"]);
        let body: Vec<&String> =
            patch["requestBody"]["content"].as_object().unwrap().keys().collect();
        assert_eq!(body, PATCH_MEDIA);
        assert_eq!(
            patch["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.Deployment"
        );
        let scale = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
        assert_eq!(scale["put"]["x-kubernetes-group-version-kind"]["group"], "autoscaling");
        assert_eq!(scale["patch"]["operationId"], "patchAppsV1NamespacedDeploymentScale");
        assert!(apps["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"].is_object());
    }

    #[test]
    fn core_paths_cover_collections_items_subresources_and_all_namespaces() {
        let core = served("api/v1");
        let paths = core["paths"].as_object().unwrap();
        for (path, method, action, id) in [
            ("/api/v1/namespaces/{namespace}/pods", "get", "list", "listCoreV1NamespacedPod"),
            ("/api/v1/namespaces/{namespace}/pods", "post", "post", "createCoreV1NamespacedPod"),
            (
                "/api/v1/namespaces/{namespace}/pods",
                "delete",
                "deletecollection",
                "deleteCoreV1CollectionNamespacedPod",
            ),
            ("/api/v1/namespaces/{namespace}/pods/{name}", "get", "get", "readCoreV1NamespacedPod"),
            (
                "/api/v1/namespaces/{namespace}/pods/{name}",
                "put",
                "put",
                "replaceCoreV1NamespacedPod",
            ),
            (
                "/api/v1/namespaces/{namespace}/pods/{name}",
                "delete",
                "delete",
                "deleteCoreV1NamespacedPod",
            ),
            ("/api/v1/pods", "get", "list", "listCoreV1PodForAllNamespaces"),
            (
                "/api/v1/namespaces/{namespace}/pods/{name}/status",
                "patch",
                "patch",
                "patchCoreV1NamespacedPodStatus",
            ),
            (
                "/api/v1/namespaces/{namespace}/pods/{name}/eviction",
                "post",
                "post",
                "createCoreV1NamespacedPodEviction",
            ),
            (
                "/api/v1/namespaces/{namespace}/pods/{name}/exec",
                "get",
                "connect",
                "connectCoreV1GetNamespacedPodExec",
            ),
            (
                "/api/v1/namespaces/{namespace}/pods/{name}/log",
                "get",
                "get",
                "readCoreV1NamespacedPodLog",
            ),
            (
                "/api/v1/watch/namespaces/{namespace}/pods",
                "get",
                "watchlist",
                "watchCoreV1NamespacedPodList",
            ),
            ("/api/v1/nodes/{name}", "patch", "patch", "patchCoreV1Node"),
            (
                "/api/v1/namespaces/{namespace}/bindings",
                "post",
                "post",
                "createCoreV1NamespacedBinding",
            ),
        ] {
            let operation = &paths[path][method];
            assert_eq!(operation["x-kubernetes-action"], action, "{method} {path}");
            assert_eq!(operation["operationId"], id, "{method} {path}");
        }
        let create = &paths["/api/v1/namespaces/{namespace}/pods"]["post"];
        assert_eq!(parameter_names(create), ["dryRun", "fieldManager", "fieldValidation"]);
        let item = &paths["/api/v1/namespaces/{namespace}/pods/{name}"];
        assert_eq!(parameter_names(item), ["name", "namespace", "pretty"]);
        assert!(!paths.contains_key("/api/v1/namespaces/{namespace}/pods/{name}/binding/x"));
        assert!(
            paths["/api/v1/componentstatuses/{name}"].get("patch").is_none(),
            "get and list only"
        );
    }

    #[test]
    fn schemas_carry_descriptions_and_the_extensions_clients_read() {
        let core = served("api/v1");
        let pod_spec = schema(&core, "io.k8s.api.core.v1.PodSpec");
        assert!(pod_spec["description"].as_str().unwrap().contains("pod"));
        let containers = &pod_spec["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-list-type"], "map");
        assert_eq!(
            pod_spec["properties"]["volumes"]["x-kubernetes-patch-strategy"],
            "merge,retainKeys"
        );
        let container = schema(&core, "io.k8s.api.core.v1.Container");
        assert_eq!(
            container["properties"]["ports"]["x-kubernetes-patch-merge-key"],
            "containerPort"
        );
        assert_eq!(
            container["properties"]["ports"]["x-kubernetes-list-map-keys"],
            json!(["containerPort", "protocol"])
        );
        assert_eq!(container["properties"]["env"]["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(
            container["properties"]["volumeMounts"]["x-kubernetes-patch-merge-key"],
            "mountPath"
        );
        let meta = schema(&core, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta");
        assert_eq!(meta["properties"]["finalizers"]["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(meta["properties"]["ownerReferences"]["x-kubernetes-patch-merge-key"], "uid");
        let condition = schema(&core, "io.k8s.api.core.v1.PodStatus");
        assert_eq!(condition["properties"]["conditions"]["x-kubernetes-patch-merge-key"], "type");
        assert_eq!(
            schema(&core, "io.k8s.api.core.v1.Pod")["x-kubernetes-group-version-kind"],
            json!([{"group": "", "kind": "Pod", "version": "v1"}])
        );
        assert_eq!(
            schema(&core, "io.k8s.api.core.v1.PodList")["x-kubernetes-group-version-kind"][0]["kind"],
            "PodList"
        );
        let int_or_string = schema(&core, "io.k8s.apimachinery.pkg.util.intstr.IntOrString");
        assert_eq!(int_or_string["x-kubernetes-int-or-string"], true);
        assert_eq!(int_or_string["oneOf"], json!([{"type": "integer"}, {"type": "string"}]));
        let delete_options = schema(&core, DELETE_OPTIONS);
        assert!(delete_options["x-kubernetes-group-version-kind"].as_array().unwrap().len() > 20);
        let selector = schema(&core, "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector");
        assert_eq!(selector["x-kubernetes-map-type"], "atomic");
        let crds = served("apis/apiextensions.k8s.io/v1");
        let json = schema(&crds, "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON");
        assert_eq!(json["x-kubernetes-preserve-unknown-fields"], true);
    }

    #[test]
    fn every_document_holds_exactly_the_schemas_it_refers_to() {
        for (path, _) in super::super::index()["paths"].as_object().unwrap() {
            let document = served(path);
            let schemas = document["components"]["schemas"].as_object().unwrap();
            let mut referenced = std::collections::BTreeSet::new();
            super::super::schemas::references(&document, &mut |name| {
                referenced.insert(name.to_owned());
            });
            let held: std::collections::BTreeSet<String> = schemas.keys().cloned().collect();
            assert_eq!(referenced, held, "{path}");
            assert!(!document["paths"].as_object().unwrap().is_empty(), "{path}");
        }
        let apps = served("apis/apps/v1");
        assert!(apps["components"]["schemas"].get("io.k8s.api.core.v1.Node").is_none());
    }
}
