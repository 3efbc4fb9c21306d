//! The schema check behind `fieldValidation`: walks an object against its kind's schema and
//! reports what upstream's strict JSON decoding (sigs.k8s.io/json into the Go types) would:
//! unknown fields, named by their path with list indices (`spec.containers[0].foo`), and
//! values of the wrong JSON type, in encoding/json's words.
//!
//! The schemas are compiled once into a graph of [`Node`]s, so a check is one walk of the
//! object with a hash lookup per field.

use super::SchemaReport;
use super::schemas::{CATALOG, reference};
use crate::registry::ResourceType;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::LazyLock;

type NodeId = usize;

/// What a schema accepts.
#[derive(Debug)]
enum Shape {
    /// Anything: free-form JSON (`x-kubernetes-preserve-unknown-fields`, RawExtension,
    /// FieldsV1, an object schema without properties).
    Any,
    /// A Go struct: known fields only.
    Struct {
        name: String,
        fields: HashMap<String, NodeId>,
    },
    /// A Go map: any keys, values of one schema.
    Map(NodeId),
    Array(NodeId),
    String,
    /// A Go integer of this many bits.
    Integer(u32),
    Number,
    Boolean,
    /// One of several shapes, told apart by the value's JSON type (IntOrString, Quantity,
    /// JSONSchemaPropsOrBool).
    OneOf(Vec<NodeId>),
}

#[derive(Debug)]
struct Node {
    shape: Shape,
    /// The Go type as encoding/json names it in errors: `int32`, `v1.PodSpec`,
    /// `[]v1.Container`, `map[string]string`.
    go_type: String,
}

#[derive(Debug)]
struct Graph {
    nodes: Vec<Node>,
    named: HashMap<String, NodeId>,
}

static GRAPH: LazyLock<Graph> = LazyLock::new(|| Graph::compile(&CATALOG.schemas));

pub(super) fn check(resource: &ResourceType, object: &Value) -> SchemaReport {
    let mut report = SchemaReport::default();
    let Some(name) = CATALOG.schema_of(resource.group, resource.version, resource.kind) else {
        return report;
    };
    let graph = &*GRAPH;
    let Some(&root) = graph.named.get(name) else { return report };
    let mut walk = Walk { graph, report: &mut report, path: String::new(), fields: Vec::new() };
    match (&graph.nodes[root].shape, object) {
        (Shape::Struct { name, fields }, Value::Object(members)) => {
            walk.members(name, fields, members);
        }
        _ => {
            let found = json_kind(object, false);
            let go_type = &graph.nodes[root].go_type;
            walk.report
                .type_errors
                .push(format!("json: cannot unmarshal {found} into Go value of type {go_type}"));
        }
    }
    report
}

impl Graph {
    fn compile(schemas: &Map<String, Value>) -> Graph {
        let mut graph = Graph { nodes: Vec::new(), named: HashMap::new() };
        // Named schemas first, as placeholders, so that references (and recursion, as in
        // JSONSchemaProps) resolve before their targets are compiled.
        for (id, name) in schemas.keys().enumerate() {
            graph.named.insert(name.clone(), id);
            graph.nodes.push(Node { shape: Shape::Any, go_type: go_type_of_schema(name) });
        }
        for (id, schema) in schemas.values().enumerate() {
            graph.nodes[id].shape = graph.shape(schema, Some(id));
        }
        graph
    }

    /// Compiles an inline schema to a node, or finds the named one it refers to.
    fn node(&mut self, schema: &Value) -> NodeId {
        if let Some(&id) = reference(schema).and_then(|target| self.named.get(target)) {
            return id;
        }
        let id = self.nodes.len();
        self.nodes.push(Node { shape: Shape::Any, go_type: String::new() });
        let shape = self.shape(schema, None);
        let go_type = match &shape {
            Shape::Any => "interface {}".to_owned(),
            Shape::Struct { name, .. } => name.clone(),
            Shape::Map(values) => format!("map[string]{}", self.nodes[*values].go_type),
            Shape::Array(items) => format!("[]{}", self.nodes[*items].go_type),
            Shape::String if schema.get("format").and_then(Value::as_str) == Some("byte") => {
                "[]uint8".to_owned()
            }
            Shape::String => "string".to_owned(),
            Shape::Integer(bits) => format!("int{bits}"),
            Shape::Number => "float64".to_owned(),
            Shape::Boolean => "bool".to_owned(),
            Shape::OneOf(_) => "interface {}".to_owned(),
        };
        self.nodes[id] = Node { shape, go_type };
        id
    }

    /// The shape of a schema; `named` is the node of a named schema being compiled.
    fn shape(&mut self, schema: &Value, named: Option<NodeId>) -> Shape {
        if let Some(target) = reference(schema) {
            return match self.named.get(target) {
                Some(&id) => Shape::OneOf(vec![id]),
                None => Shape::Any,
            };
        }
        if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
            return Shape::Any;
        }
        if let Some(Value::Array(alternatives)) =
            schema.get("oneOf").or_else(|| schema.get("anyOf"))
        {
            return Shape::OneOf(
                alternatives.iter().map(|alternative| self.node(alternative)).collect(),
            );
        }
        match schema.get("type").and_then(Value::as_str) {
            Some("object") => {
                if let Some(Value::Object(properties)) = schema.get("properties") {
                    let name = match named {
                        Some(id) => struct_name(&self.nodes[id].go_type).to_owned(),
                        None => "struct".to_owned(),
                    };
                    let fields = properties
                        .iter()
                        .map(|(field, property)| (field.clone(), self.node(property)))
                        .collect();
                    Shape::Struct { name, fields }
                } else if let Some(values @ Value::Object(_)) = schema.get("additionalProperties") {
                    Shape::Map(self.node(values))
                } else {
                    Shape::Any
                }
            }
            Some("array") => match schema.get("items") {
                Some(items) => Shape::Array(self.node(items)),
                None => Shape::Array(self.any()),
            },
            Some("string") => Shape::String,
            Some("integer") => match schema.get("format").and_then(Value::as_str) {
                Some("int32") => Shape::Integer(32),
                _ => Shape::Integer(64),
            },
            Some("number") => Shape::Number,
            Some("boolean") => Shape::Boolean,
            _ => Shape::Any,
        }
    }

    fn any(&mut self) -> NodeId {
        self.nodes.push(Node { shape: Shape::Any, go_type: "interface {}".to_owned() });
        self.nodes.len() - 1
    }
}

/// `io.k8s.api.apps.v1.DeploymentSpec` → `v1.DeploymentSpec`: the Go package's name and the
/// type's, as encoding/json prints a type.
fn go_type_of_schema(name: &str) -> String {
    let mut segments = name.rsplit('.');
    match (segments.next(), segments.next()) {
        (Some(type_name), Some(package)) => format!("{package}.{type_name}"),
        _ => name.to_owned(),
    }
}

/// `v1.DeploymentSpec` → `DeploymentSpec`: a struct's name in a field error.
fn struct_name(go_type: &str) -> &str {
    go_type.rsplit('.').next().unwrap_or(go_type)
}

/// How encoding/json names a JSON value in an `UnmarshalTypeError`: numbers that do not fit
/// an integer are quoted (`number 1.5`).
fn json_kind(value: &Value, with_number: bool) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(number) if with_number => format!("number {number}"),
        Value::Number(_) => "number".into(),
        Value::String(_) => "string".into(),
        Value::Array(_) => "array".into(),
        Value::Object(_) => "object".into(),
    }
}

/// One walk over an object.
struct Walk<'a, 'r> {
    graph: &'a Graph,
    report: &'r mut SchemaReport,
    /// The strict-decoding path of the value being walked: `spec.containers[0]`.
    path: String,
    /// The Go field names from the root, without indices: what encoding/json's type errors
    /// name (`spec.template.spec.containers`).
    fields: Vec<&'a str>,
}

impl<'a> Walk<'a, '_> {
    /// The members of a JSON object decoded into the struct `name`.
    fn members(
        &mut self,
        name: &'a str,
        fields: &'a HashMap<String, NodeId>,
        members: &'a Map<String, Value>,
    ) {
        for (key, value) in members {
            let saved = self.path.len();
            if !self.path.is_empty() {
                self.path.push('.');
            }
            self.path.push_str(key);
            match fields.get_key_value(key.as_str()) {
                Some((field, &node)) => {
                    self.fields.push(field);
                    self.value(node, value, name);
                    self.fields.pop();
                }
                None => self.report.unknown_fields.push(self.path.clone()),
            }
            self.path.truncate(saved);
        }
    }

    /// A value decoded into `node`, inside the struct `owner`.
    fn value(&mut self, node: NodeId, value: &'a Value, owner: &'a str) {
        let graph = self.graph;
        let target = &graph.nodes[node];
        match (&target.shape, value) {
            (_, Value::Null) | (Shape::Any, _) => {}
            (Shape::Struct { name, fields }, Value::Object(members)) => {
                self.members(name, fields, members);
            }
            (Shape::Map(values), Value::Object(members)) => {
                for (key, value) in members {
                    let saved = self.path.len();
                    self.path.push('.');
                    self.path.push_str(key);
                    self.value(*values, value, owner);
                    self.path.truncate(saved);
                }
            }
            (Shape::Array(items), Value::Array(elements)) => {
                for (index, element) in elements.iter().enumerate() {
                    let saved = self.path.len();
                    self.path.push_str(&format!("[{index}]"));
                    self.value(*items, element, owner);
                    self.path.truncate(saved);
                }
            }
            (Shape::String, Value::String(_))
            | (Shape::Number, Value::Number(_))
            | (Shape::Boolean, Value::Bool(_)) => {}
            (Shape::Integer(bits), Value::Number(number)) => {
                let fits = match number.as_i64() {
                    Some(integer) if *bits == 32 => i32::try_from(integer).is_ok(),
                    Some(_) => true,
                    None => false,
                };
                if !fits {
                    self.type_error(value, true, &target.go_type, owner);
                }
            }
            (Shape::OneOf(alternatives), _) => {
                let chosen = alternatives.iter().copied().find(|&alternative| {
                    accepts_json_type(&graph.nodes[alternative].shape, value, graph)
                });
                match chosen {
                    Some(alternative) => self.value(alternative, value, owner),
                    None => self.type_error(value, false, &target.go_type, owner),
                }
            }
            _ => self.type_error(value, false, &target.go_type, owner),
        }
    }

    fn type_error(&mut self, value: &Value, with_number: bool, go_type: &str, owner: &str) {
        let found = json_kind(value, with_number);
        let field = self.fields.join(".");
        self.report.type_errors.push(format!(
            "json: cannot unmarshal {found} into Go struct field {owner}.{field} of type {go_type}"
        ));
    }
}

/// Whether a shape takes a value of this JSON type at all (deciding between alternatives).
fn accepts_json_type(shape: &Shape, value: &Value, graph: &Graph) -> bool {
    match (shape, value) {
        (Shape::Any, _) => true,
        (Shape::Struct { .. } | Shape::Map(_), Value::Object(_))
        | (Shape::Array(_), Value::Array(_))
        | (Shape::String, Value::String(_))
        | (Shape::Integer(_) | Shape::Number, Value::Number(_))
        | (Shape::Boolean, Value::Bool(_)) => true,
        (Shape::OneOf(alternatives), _) => alternatives
            .iter()
            .any(|&alternative| accepts_json_type(&graph.nodes[alternative].shape, value, graph)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;
    use serde_json::json;

    fn report(api_version: &str, kind: &str, object: Value) -> SchemaReport {
        let resource = registry::find_kind(api_version, kind).unwrap();
        super::check(resource, &object)
    }

    /// Checks that `object` has exactly the `unknown` fields and no type errors.
    fn check_unknown(api_version: &str, kind: &str, object: Value, unknown: &[&str]) {
        let report = report(api_version, kind, object);
        assert_eq!(report.unknown_fields, unknown, "{kind}");
        assert_eq!(report.type_errors, Vec::<String>::new(), "{kind}");
    }

    /// Checks that `object` has exactly the `errors` and no unknown fields.
    fn check_type_errors(api_version: &str, kind: &str, object: Value, errors: &[&str]) {
        let report = report(api_version, kind, object);
        assert_eq!(report.type_errors, errors, "{kind}");
        assert_eq!(report.unknown_fields, Vec::<String>::new(), "{kind}");
    }

    fn deployment(container: Value) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {"a": "b"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "a", "image": "nginx"}, container]},
                },
            },
        })
    }

    #[test]
    fn known_fields_pass() {
        let container = json!({
            "name": "b",
            "image": "nginx",
            "ports": [{"containerPort": 80, "protocol": "TCP"}],
            "env": [{"name": "A", "value": "1"}],
            "resources": {"limits": {"cpu": "500m", "memory": 1024}},
            "livenessProbe": {"httpGet": {"path": "/", "port": "http"}},
            "readinessProbe": {"tcpSocket": {"port": 8080}},
        });
        check_unknown("apps/v1", "Deployment", deployment(container), &[]);
        check_unknown(
            "v1",
            "ConfigMap",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"any-key": "v"}}),
            &[],
        );
        check_unknown("v1", "Pod", json!({"metadata": null, "spec": {"containers": null}}), &[]);
    }

    #[test]
    fn unknown_fields_are_named_by_their_path() {
        check_unknown(
            "apps/v1",
            "Deployment",
            deployment(
                json!({"name": "b", "imagePullPolice": "Always", "ports": [{"containerPort": 80, "hostIp": "x"}]}),
            ),
            &[
                "spec.template.spec.containers[1].imagePullPolice",
                "spec.template.spec.containers[1].ports[0].hostIp",
            ],
        );
        check_unknown(
            "apps/v1",
            "Deployment",
            json!({"foo": 1, "Spec": {}, "metadata": {"nmae": "x"}, "spec": {"foo": true}}),
            &["foo", "Spec", "metadata.nmae", "spec.foo"],
        );
        check_unknown(
            "v1",
            "Service",
            json!({"spec": {"selector": {"app": "x"}, "ports": [{"port": 80, "targetPort": "http", "extra": 1}]}}),
            &["spec.ports[0].extra"],
        );
    }

    #[test]
    fn values_of_the_wrong_type_are_reported_as_encoding_json_does() {
        check_type_errors(
            "apps/v1",
            "Deployment",
            json!({"spec": {"replicas": "three"}}),
            &[
                "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32",
            ],
        );
        check_type_errors(
            "apps/v1",
            "Deployment",
            deployment(json!({"name": "b", "ports": [{"containerPort": 1.5}], "stdin": "yes"})),
            &[
                "json: cannot unmarshal number 1.5 into Go struct field ContainerPort.spec.template.spec.containers.ports.containerPort of type int32",
                "json: cannot unmarshal string into Go struct field Container.spec.template.spec.containers.stdin of type bool",
            ],
        );
        check_type_errors(
            "v1",
            "Pod",
            json!({"metadata": {"labels": ["a"]}, "spec": {"containers": {"name": "a"}}}),
            &[
                "json: cannot unmarshal array into Go struct field ObjectMeta.metadata.labels of type map[string]string",
                "json: cannot unmarshal object into Go struct field PodSpec.spec.containers of type []v1.Container",
            ],
        );
        check_type_errors(
            "v1",
            "Pod",
            json!({"spec": {"containers": ["a"], "activeDeadlineSeconds": 99_999_999_999_i64}}),
            &[
                "json: cannot unmarshal string into Go struct field PodSpec.spec.containers of type v1.Container",
            ],
        );
        check_type_errors(
            "v1",
            "Pod",
            json!({"spec": {"priority": 3_000_000_000_i64}}),
            &[
                "json: cannot unmarshal number 3000000000 into Go struct field PodSpec.spec.priority of type int32",
            ],
        );
    }

    #[test]
    fn int_or_string_and_quantity_take_either_form() {
        let probe = |port: Value| {
            deployment(
                json!({"name": "b", "livenessProbe": {"httpGet": {"port": port}}, "resources": {"requests": {"cpu": 1}}}),
            )
        };
        check_unknown("apps/v1", "Deployment", probe(json!(8080)), &[]);
        check_unknown("apps/v1", "Deployment", probe(json!("http")), &[]);
        check_type_errors(
            "apps/v1",
            "Deployment",
            probe(json!(true)),
            &[
                "json: cannot unmarshal bool into Go struct field HTTPGetAction.spec.template.spec.containers.livenessProbe.httpGet.port of type intstr.IntOrString",
            ],
        );
    }

    #[test]
    fn free_form_fields_are_not_looked_into() {
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "spec": {
                "group": "example.com",
                "names": {"plural": "widgets", "kind": "Widget"},
                "scope": "Namespaced",
                "versions": [{
                    "name": "v1",
                    "served": true,
                    "storage": true,
                    "schema": {"openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": true,
                        "properties": {"spec": {"type": "object", "default": {"anything": [1, "x"]}, "bogus": 1}},
                        "additionalProperties": false,
                    }},
                }],
            },
        });
        check_unknown(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            crd,
            &["spec.versions[0].schema.openAPIV3Schema.properties.spec.bogus"],
        );
        check_unknown(
            "apps/v1",
            "ControllerRevision",
            json!({"revision": 1, "data": {"spec": {"anything": true}}}),
            &[],
        );
        check_unknown(
            "v1",
            "Pod",
            json!({"metadata": {"managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]}}),
            &[],
        );
    }

    #[test]
    fn every_kind_checks_an_empty_object_cleanly() {
        for t in registry::builtin() {
            let object =
                json!({"apiVersion": t.api_version(), "kind": t.kind, "metadata": {"name": "x"}});
            assert_eq!(super::check(t, &object), SchemaReport::default(), "{}", t.kind);
        }
    }
}
