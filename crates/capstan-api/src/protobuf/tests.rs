//! The decoder against hand-encoded bodies of the kinds kubectl sends, written the way
//! gogo-protobuf writes them (every non-pointer field, zero or not); every served kind,
//! filled in from its descriptor, against Capstan's own schemas; and random and mutated
//! bodies, which must never panic.

use super::descriptors::{Cardinality, Descriptors, FieldType, Scalar, Special};
use super::object::{Decoder, MAX_DEPTH};
use super::{DecodeError, MAGIC, decode};
use crate::registry::{self, ResourceType, Scope};
use serde_json::{Value, json};

/// A test-only protobuf writer: each call appends one field.
#[derive(Debug, Clone, Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn new() -> Self {
        Writer::default()
    }

    fn raw_varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn tag(&mut self, field: u32, wire_type: u8) {
        self.raw_varint((u64::from(field) << 3) | u64::from(wire_type));
    }

    fn varint(mut self, field: u32, value: u64) -> Self {
        self.tag(field, 0);
        self.raw_varint(value);
        self
    }

    /// int32 and int64 alike: negative values sign-extend to ten bytes, as Go writes them.
    fn int(self, field: u32, value: i64) -> Self {
        self.varint(field, value as u64)
    }

    fn bool(self, field: u32, value: bool) -> Self {
        self.varint(field, u64::from(value))
    }

    fn fixed64(mut self, field: u32, value: u64) -> Self {
        self.tag(field, 1);
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }

    fn bytes(mut self, field: u32, bytes: &[u8]) -> Self {
        self.tag(field, 2);
        self.raw_varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
        self
    }

    fn string(self, field: u32, value: &str) -> Self {
        self.bytes(field, value.as_bytes())
    }

    fn message(self, field: u32, message: Writer) -> Self {
        self.bytes(field, &message.0)
    }

    fn entry(self, field: u32, key: &str, value: &str) -> Self {
        self.message(field, Writer::new().string(1, key).string(2, value))
    }

    fn entry_bytes(self, field: u32, key: &str, value: &[u8]) -> Self {
        self.message(field, Writer::new().string(1, key).bytes(2, value))
    }

    fn entry_message(self, field: u32, key: &str, value: Writer) -> Self {
        self.message(field, Writer::new().string(1, key).message(2, value))
    }
}

/// A request body: the magic, then `runtime.Unknown` as the protobuf serializer writes it.
fn body(api_version: &str, kind: &str, object: Writer) -> Vec<u8> {
    let type_meta = Writer::new().string(1, api_version).string(2, kind);
    let unknown =
        Writer::new().message(1, type_meta).message(2, object).string(3, "").string(4, "");
    [MAGIC, &unknown.0].concat()
}

/// `metav1.ObjectMeta` as gogo writes a fresh object's: the zero scalars and the zero
/// creation time included.
fn meta(name: &str, namespace: &str) -> Writer {
    Writer::new()
        .string(1, name)
        .string(2, "")
        .string(3, namespace)
        .string(4, "")
        .string(5, "")
        .string(6, "")
        .int(7, 0)
        .message(8, Writer::new())
}

/// A quantity.
fn quantity(text: &str) -> Writer {
    Writer::new().string(1, text)
}

fn check(body: &[u8], expected: Value) {
    assert_eq!(decode(body).unwrap(), expected);
}

#[test]
fn a_configmap_has_data_binary_data_and_labels() {
    let object = Writer::new()
        .message(1, meta("settings", "default").entry(11, "app", "web").entry(12, "note", ""))
        .entry(2, "a", "b")
        .entry(2, "empty", "")
        .entry_bytes(3, "bin", &[0, 1, 2, 255]);
    check(
        &body("v1", "ConfigMap", object),
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "settings",
                "namespace": "default",
                "labels": {"app": "web"},
                "annotations": {"note": ""},
            },
            "data": {"a": "b", "empty": ""},
            "binaryData": {"bin": "AAEC/w=="},
        }),
    );
}

#[test]
fn a_namespace_keeps_its_empty_spec_and_status() {
    let object = Writer::new()
        .message(1, meta("team-a", ""))
        .message(2, Writer::new())
        .message(3, Writer::new().string(1, ""));
    check(
        &body("v1", "Namespace", object),
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "team-a"},
            "spec": {},
            "status": {},
        }),
    );
}

#[test]
fn a_deployment_keeps_zero_replicas_and_its_pod_template() {
    let port = Writer::new().string(1, "").int(2, 0).int(3, 8080).string(4, "").string(5, "");
    let resources = Writer::new().entry_message(1, "memory", quantity("128Mi")).entry_message(
        2,
        "cpu",
        quantity("500m"),
    );
    let container = Writer::new()
        .string(1, "nginx")
        .string(2, "nginx:1.27")
        .string(3, "nginx")
        .string(3, "-g")
        .string(5, "")
        .message(6, port)
        .message(8, resources)
        .string(13, "")
        .string(20, "")
        .string(14, "")
        .bool(16, false)
        .bool(17, false)
        .bool(18, false);
    let pod_spec = Writer::new()
        .message(2, container)
        .string(3, "")
        .string(6, "")
        .string(8, "")
        .string(9, "")
        .string(10, "")
        .bool(11, false);
    let template =
        Writer::new().message(1, meta("", "").entry(11, "app", "web")).message(2, pod_spec);
    let rolling = Writer::new()
        .message(1, Writer::new().int(1, 0).int(2, 0).string(3, ""))
        .message(2, Writer::new().int(1, 1).int(2, 0).string(3, "25%"));
    let spec = Writer::new()
        .int(1, 0)
        .message(2, Writer::new().entry(1, "app", "web"))
        .message(3, template)
        .message(4, Writer::new().string(1, "RollingUpdate").message(2, rolling))
        .int(5, 0)
        .bool(7, false);
    let object = Writer::new()
        .message(1, meta("web", "default").entry(11, "app", "web"))
        .message(2, spec)
        .message(3, Writer::new().int(1, 0).int(2, 0));
    check(
        &body("apps/v1", "Deployment", object),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "nginx",
                            "image": "nginx:1.27",
                            "command": ["nginx", "-g"],
                            "ports": [{"containerPort": 8080}],
                            "resources": {
                                "limits": {"memory": "128Mi"},
                                "requests": {"cpu": "500m"},
                            },
                        }],
                    },
                },
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
                },
            },
            "status": {},
        }),
    );
}

#[test]
fn a_secret_has_base64_data() {
    let object = Writer::new()
        .message(1, meta("db", "default"))
        .entry_bytes(2, "password", b"s3cr3t\n")
        .entry(4, "user", "admin")
        .string(3, "Opaque");
    check(
        &body("v1", "Secret", object),
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db", "namespace": "default"},
            "data": {"password": "czNjcjN0Cg=="},
            "stringData": {"user": "admin"},
            "type": "Opaque",
        }),
    );
}

#[test]
fn a_self_subject_access_review_keeps_allowed_false() {
    let attributes = Writer::new()
        .string(1, "default")
        .string(2, "create")
        .string(3, "")
        .string(4, "")
        .string(5, "pods")
        .string(6, "")
        .string(7, "");
    let object = Writer::new()
        .message(1, meta("", ""))
        .message(2, Writer::new().message(1, attributes))
        .message(3, Writer::new().bool(1, false).bool(4, false).string(2, "").string(3, ""));
    check(
        &body("authorization.k8s.io/v1", "SelfSubjectAccessReview", object),
        json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "metadata": {},
            "spec": {
                "resourceAttributes": {"namespace": "default", "verb": "create", "resource": "pods"},
            },
            "status": {"allowed": false},
        }),
    );
}

#[test]
fn extra_values_are_arrays() {
    let spec = Writer::new()
        .string(3, "jane")
        .string(4, "dev")
        .entry_message(5, "scopes", Writer::new().string(1, "a").string(1, "b"))
        .entry_message(5, "none", Writer::new());
    let object = Writer::new().message(1, meta("", "")).message(2, spec);
    let decoded = decode(&body("authorization.k8s.io/v1", "SubjectAccessReview", object)).unwrap();
    assert_eq!(
        decoded["spec"],
        json!({"user": "jane", "groups": ["dev"], "extra": {"scopes": ["a", "b"], "none": []}})
    );
}

#[test]
fn a_token_request_keeps_its_expiration() {
    let spec = Writer::new().string(1, "https://kubernetes.default.svc").int(4, 3600);
    let object = Writer::new()
        .message(1, meta("builder", "default"))
        .message(2, spec)
        .message(3, Writer::new().string(1, "").message(2, Writer::new()));
    check(
        &body("authentication.k8s.io/v1", "TokenRequest", object),
        json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {"name": "builder", "namespace": "default"},
            "spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3600},
            "status": {"token": ""},
        }),
    );
}

#[test]
fn an_eviction_keeps_a_zero_grace_period() {
    let options = Writer::new().int(1, 0).string(5, "All");
    let object = Writer::new().message(1, meta("web-1", "default")).message(2, options);
    check(
        &body("policy/v1", "Eviction", object),
        json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": "web-1", "namespace": "default"},
            "deleteOptions": {"gracePeriodSeconds": 0, "dryRun": ["All"]},
        }),
    );
}

#[test]
fn delete_options_decode_under_any_group_version() {
    let options = Writer::new().string(4, "Foreground");
    check(
        &body("apps/v1", "DeleteOptions", options),
        json!({"apiVersion": "apps/v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground"}),
    );
}

#[test]
fn a_service_keeps_a_zero_target_port_and_a_volume_claim_an_empty_class() {
    let port = Writer::new()
        .string(1, "")
        .string(2, "TCP")
        .int(3, 80)
        .message(4, Writer::new().int(1, 0).int(2, 0).string(3, ""))
        .int(5, 0);
    let object = Writer::new()
        .message(1, meta("web", "default"))
        .message(2, Writer::new().message(1, port).entry(2, "app", "web").string(4, "ClusterIP"));
    let decoded = decode(&body("v1", "Service", object)).unwrap();
    assert_eq!(
        decoded["spec"],
        json!({
            "ports": [{"protocol": "TCP", "port": 80, "targetPort": 0}],
            "selector": {"app": "web"},
            "type": "ClusterIP",
        })
    );
    let spec = Writer::new().string(3, "").string(5, "");
    let object = Writer::new().message(1, meta("data", "default")).message(2, spec);
    let decoded = decode(&body("v1", "PersistentVolumeClaim", object)).unwrap();
    assert_eq!(decoded["spec"], json!({"storageClassName": ""}));
}

#[test]
fn times_durations_and_embedded_json() {
    // 2026-11-23T00:00:00Z, with nanoseconds that RFC 3339 seconds leave out.
    let created = Writer::new().int(1, 1_795_392_000).int(2, 5);
    let managed = Writer::new()
        .string(1, "kubectl")
        .string(2, "Update")
        .message(4, created.clone())
        .string(6, "FieldsV1")
        .message(7, Writer::new().bytes(1, br#"{"f:data":{".":{}}}"#));
    let metadata = meta("x", "default").message(8, created).message(17, managed);
    let object = Writer::new()
        .message(1, metadata)
        .message(2, Writer::new().bytes(1, br#"{"spec":{"replicas":2}}"#))
        .int(3, 4);
    let decoded = decode(&body("apps/v1", "ControllerRevision", object)).unwrap();
    assert_eq!(decoded["metadata"]["creationTimestamp"], "2026-11-23T00:00:00Z");
    assert_eq!(
        decoded["metadata"]["managedFields"],
        json!([{
            "manager": "kubectl",
            "operation": "Update",
            "time": "2026-11-23T00:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {".": {}}},
        }])
    );
    assert_eq!(decoded["data"], json!({"spec": {"replicas": 2}}));
    assert_eq!(decoded["revision"], 4);

    let event_time = Writer::new().int(1, 1_795_392_000).int(2, 123_456_789);
    let object = Writer::new().message(1, meta("e", "default")).message(2, event_time);
    let decoded = decode(&body("events.k8s.io/v1", "Event", object)).unwrap();
    assert_eq!(decoded["eventTime"], "2026-11-23T00:00:00.123456Z");

    let descriptors = Descriptors::get().unwrap();
    let decoder = Decoder { descriptors };
    let duration = descriptors.by_name("k8s.io.apimachinery.pkg.apis.meta.v1.Duration").unwrap();
    let hour = Writer::new().int(1, 3_600_000_000_000);
    assert_eq!(decoder.message(duration, &hour.0, 0).unwrap(), "1h0m0s");
}

#[test]
fn raw_extensions_hold_json_nested_protobuf_or_bytes() {
    let inner = body("v1", "ConfigMap", Writer::new().message(1, meta("x", "")).entry(2, "a", "b"));
    let revision = |raw: &[u8]| {
        let object =
            Writer::new().message(1, meta("r", "")).message(2, Writer::new().bytes(1, raw));
        decode(&body("apps/v1", "ControllerRevision", object)).map(|v| v["data"].clone())
    };
    assert_eq!(
        revision(&inner).unwrap(),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b"}})
    );
    assert_eq!(revision(b"\x01\x02").unwrap(), "AQI=");
    assert_eq!(revision(b"").unwrap(), Value::Null, "an empty extension is left out");
}

#[test]
fn scalars_decode_as_go_writes_them() {
    // A negative int32 is a ten-byte varint; repeated scalars may come packed.
    let exit_codes = Writer::new().string(2, "In").bytes(3, &[0x01, 0x02, 0x96, 0x01]);
    let policy =
        Writer::new().message(1, Writer::new().string(1, "FailJob").message(2, exit_codes));
    let spec = Writer::new().int(1, -1).message(11, policy);
    let object = Writer::new().message(1, meta("j", "default")).message(2, spec);
    let decoded = decode(&body("batch/v1", "Job", object)).unwrap();
    assert_eq!(decoded["spec"]["parallelism"], -1);
    assert_eq!(
        decoded["spec"]["podFailurePolicy"]["rules"],
        json!([{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1, 2, 150]}}])
    );
    // Doubles travel as 64-bit values.
    let schema = Writer::new().string(5, "number").fixed64(9, 2.5f64.to_bits());
    let descriptors = Descriptors::get().unwrap();
    let props = descriptors
        .by_name("k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps")
        .unwrap();
    let decoded = Decoder { descriptors }.message(props, &schema.0, 0).unwrap();
    assert_eq!(decoded, json!({"type": "number", "maximum": 2.5}));
    let nan = Writer::new().fixed64(9, f64::NAN.to_bits());
    assert!(Decoder { descriptors }.message(props, &nan.0, 0).is_err());
}

#[test]
fn unknown_fields_are_skipped() {
    let object = Writer::new()
        .message(1, meta("x", "").string(999, "from the future"))
        .fixed64(50, 7)
        .entry(2, "a", "b");
    check(
        &body("v1", "ConfigMap", object),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b"}}),
    );
}

#[test]
fn malformed_bodies_are_errors() {
    let error = |body: &[u8]| decode(body).unwrap_err().0;
    assert_eq!(
        error(b"{\"kind\":\"ConfigMap\"}"),
        "not a Kubernetes protobuf body: the k8s\\0 prefix is missing"
    );
    assert_eq!(
        error(&body("v1", "Nonsense", Writer::new())),
        "no protobuf message is known for v1 Nonsense"
    );
    assert_eq!(
        error(&body("example.com/v1", "ConfigMap", Writer::new())),
        "no protobuf message is known for example.com/v1 ConfigMap"
    );
    assert_eq!(
        error(&body("", "ConfigMap", Writer::new())),
        "the protobuf body's type meta has no apiVersion or no kind"
    );
    let gzipped = [MAGIC, &Writer::new().string(3, "gzip").0].concat();
    assert_eq!(error(&gzipped), "protobuf content encoding \"gzip\" is not supported");
    assert_eq!(
        error(&body("v1", "ConfigMap", Writer::new().int(1, 5))),
        "protobuf field ConfigMap.metadata (1): is a message, not a varint value"
    );
    assert_eq!(
        error(&body("v1", "ConfigMap", Writer::new().message(4, Writer::new()))),
        "protobuf field ConfigMap.immutable (4): a Bool does not come as a length-delimited value"
    );
    let bad_int_or_string = Writer::new().message(
        2,
        Writer::new().message(
            4,
            Writer::new().message(2, Writer::new().message(1, Writer::new().int(1, 7))),
        ),
    );
    assert_eq!(
        error(&body("apps/v1", "Deployment", bad_int_or_string)),
        "IntOrString has invalid type 7"
    );
    let far_future = meta("x", "").message(8, Writer::new().int(1, i64::MAX));
    assert!(
        error(&body("v1", "ConfigMap", Writer::new().message(1, far_future))).contains("years")
    );
    let bad_fields =
        meta("x", "").message(17, Writer::new().message(7, Writer::new().bytes(1, b"{")));
    assert!(
        error(&body("v1", "ConfigMap", Writer::new().message(1, bad_fields)))
            .contains("invalid JSON")
    );
}

#[test]
fn nesting_is_bounded() {
    // A JSONSchemaProps `not` chain far deeper than the limit, decoded without overflowing.
    let mut schema = Writer::new().string(5, "object");
    for _ in 0..MAX_DEPTH + 10 {
        schema = Writer::new().message(28, schema);
    }
    let validation = Writer::new().message(1, schema);
    let version = Writer::new().string(1, "v1").message(4, validation);
    let spec = Writer::new().string(1, "example.com").message(7, version);
    let object = Writer::new().message(1, meta("x", "")).message(2, spec);
    let error = decode(&body("apiextensions.k8s.io/v1", "CustomResourceDefinition", object));
    assert_eq!(error, Err(DecodeError(format!("protobuf messages nest deeper than {MAX_DEPTH}"))));
    // And raw extensions nesting envelopes in envelopes.
    let mut nested = body("v1", "ConfigMap", Writer::new());
    for _ in 0..MAX_DEPTH {
        let revision = Writer::new().message(2, Writer::new().bytes(1, &nested));
        nested = body("apps/v1", "ControllerRevision", revision);
    }
    assert!(decode(&nested).unwrap_err().0.contains("nest deeper"));
}

#[test]
fn every_served_kind_has_a_message() {
    let descriptors = Descriptors::get().unwrap();
    for kind in served_kinds() {
        assert!(
            descriptors.kind(&kind.api_version(), kind.kind).is_some(),
            "{} {}",
            kind.api_version(),
            kind.kind
        );
    }
}

/// Every kind of the registry, and the kinds of subresources' bodies (Scale, Eviction,
/// TokenRequest, Binding), as resource types the schema check takes.
fn served_kinds() -> Vec<ResourceType> {
    let mut kinds: Vec<ResourceType> = registry::builtin().to_vec();
    for resource in registry::builtin() {
        for subresource in resource.subresources {
            let gvk = subresource.kind;
            if gvk.kind.ends_with("Options") || kinds.iter().any(|k| k.gvk() == gvk) {
                continue;
            }
            kinds.push(ResourceType {
                group: gvk.group,
                version: gvk.version,
                plural: "",
                singular: "",
                kind: gvk.kind,
                scope: Scope::Namespaced,
                verbs: &[],
                short_names: &[],
                categories: &[],
                subresources: &[],
            });
        }
    }
    kinds
}

/// A message with every field set to a non-zero value, nested messages filled in to a
/// bounded depth (the schema types recurse), special types in their valid forms.
fn fill(descriptors: &Descriptors, index: usize, depth: usize) -> Writer {
    let message = &descriptors.messages[index];
    let mut out = Writer::new();
    match message.special {
        Some(Special::Time | Special::MicroTime) => return out.int(1, 1_795_392_000).int(2, 1000),
        Some(Special::Duration) => return out.int(1, 1_000_000_000),
        Some(Special::Quantity) => return out.string(1, "1Gi"),
        Some(Special::IntOrString) => return out.int(1, 1).string(3, "25%"),
        Some(Special::RawExtension) => return out.bytes(1, br#"{"apiVersion":"v1","kind":"Pod"}"#),
        Some(Special::RawJson) => return out.bytes(1, br#"{"f:a":{}}"#),
        Some(Special::SchemaOrBool) => return out.bool(1, true),
        Some(Special::SchemaOrStringArray) => return out.string(2, "a"),
        Some(Special::Slice) => return out.string(1, "a"),
        Some(Special::SchemaOrArray) | None => {}
    }
    for field in &message.fields {
        let value = match field.field_type {
            FieldType::Scalar(scalar) => match scalar {
                Scalar::String => Writer::new().string(2, "x"),
                Scalar::Bytes => Writer::new().bytes(2, b"x"),
                Scalar::Double => Writer::new().fixed64(2, 1.5f64.to_bits()),
                Scalar::Float => continue,
                Scalar::Bool => Writer::new().bool(2, true),
                _ => Writer::new().int(2, 1),
            },
            FieldType::Message(_) if depth > 6 => continue,
            FieldType::Message(inner) => {
                Writer::new().message(2, fill(descriptors, inner, depth + 1))
            }
        };
        // `value` holds the value as field 2, the shape of a map entry's value; for other
        // fields it is re-tagged with the field's own number.
        let payload = value.0;
        out = match field.cardinality {
            Cardinality::Map => out
                .message(field.number, Writer([Writer::new().string(1, "k").0, payload].concat())),
            Cardinality::Singular | Cardinality::Repeated => {
                let mut retagged = Writer::new();
                retagged.tag(field.number, payload[0] & 7);
                retagged.0.extend_from_slice(&payload[1..]);
                Writer([out.0, retagged.0].concat())
            }
        };
    }
    out
}

#[test]
fn every_served_kind_decodes_to_what_its_schema_accepts() {
    let descriptors = Descriptors::get().unwrap();
    for kind in served_kinds() {
        let api_version = kind.api_version();
        let index = descriptors.kind(&api_version, kind.kind).unwrap();
        let object = fill(descriptors, index, 0);
        let decoded = decode(&body(&api_version, kind.kind, object))
            .unwrap_or_else(|error| panic!("{api_version} {}: {error}", kind.kind));
        let report = crate::openapi::check(&kind, &decoded);
        assert!(
            report.unknown_fields.is_empty() && report.type_errors.is_empty(),
            "{api_version} {}: {report:?}",
            kind.kind
        );
        assert!(decoded.as_object().unwrap().len() > 3, "{api_version} {}", kind.kind);
    }
}

/// Bodies of the kinds kubectl sends, filled in from descriptors or captured, to mutate.
fn samples() -> Vec<Vec<u8>> {
    let descriptors = Descriptors::get().unwrap();
    ["v1/ConfigMap", "apps/v1/Deployment", "v1/Pod", "policy/v1/Eviction", "v1/Service"]
        .iter()
        .map(|name| {
            let (api_version, kind) = name.rsplit_once('/').unwrap();
            let index = descriptors.kind(api_version, kind).unwrap();
            body(api_version, kind, fill(descriptors, index, 3))
        })
        .chain([
            include_bytes!("../../protobuf/testdata/kubectl-1.32/deployment.pb").to_vec(),
            include_bytes!("../../protobuf/testdata/kubectl-1.32/token.pb").to_vec(),
        ])
        .collect()
}

#[test]
fn random_and_mutated_bodies_never_panic() {
    let mut rng = fastrand::Rng::with_seed(0x6b38_7300);
    let samples = samples();
    let mut decoded = 0;
    for round in 0..20_000 {
        let mut body = match round % 5 {
            // Random bytes, with and without the magic.
            0 => {
                let length = rng.usize(..64);
                let mut bytes: Vec<u8> = (0..length).map(|_| rng.u8(..)).collect();
                if rng.bool() {
                    bytes.splice(0..0, MAGIC.iter().copied());
                }
                bytes
            }
            // A valid body truncated.
            1 => {
                let sample = &samples[rng.usize(..samples.len())];
                sample[..rng.usize(..=sample.len())].to_vec()
            }
            // A valid body with a few bytes flipped.
            2 => {
                let mut sample = samples[rng.usize(..samples.len())].clone();
                for _ in 0..rng.usize(1..4) {
                    let at = rng.usize(MAGIC.len()..sample.len());
                    sample[at] ^= 1 << rng.u8(..8);
                }
                sample
            }
            // A huge length prefix spliced in.
            3 => {
                let mut sample = samples[rng.usize(..samples.len())].clone();
                let at = rng.usize(MAGIC.len()..sample.len());
                let huge = [0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
                sample.splice(at..at, huge);
                sample
            }
            // Random bytes spliced into a valid body.
            _ => {
                let mut sample = samples[rng.usize(..samples.len())].clone();
                let at = rng.usize(MAGIC.len()..=sample.len());
                let noise: Vec<u8> = (0..rng.usize(1..16)).map(|_| rng.u8(..)).collect();
                sample.splice(at..at, noise);
                sample
            }
        };
        if body.is_empty() && rng.bool() {
            body.push(0);
        }
        if decode(&body).is_ok() {
            decoded += 1;
        }
    }
    // The mutations leave some bodies valid: the decoder is not failing everything.
    assert!(decoded > 100, "only {decoded} bodies decoded");
    for sample in samples {
        decode(&sample).unwrap();
    }
}

/// Bodies kubectl 1.32.4 sent (captured with a recording HTTP server), each with the JSON
/// the same command prints with `--dry-run=client -o json` (less `creationTimestamp: null`,
/// which the decoder leaves out) or, for the commands without a dry run, the same object
/// read by hand.
#[test]
fn bodies_kubectl_sends_decode_as_its_json() {
    macro_rules! fixture {
        ($name:literal) => {
            (
                $name,
                &include_bytes!(concat!("../../protobuf/testdata/kubectl-1.32/", $name, ".pb"))[..],
            )
        };
    }
    let cases = [
        (
            fixture!("configmap"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm1"},
                "data": {"a": "b", "empty": ""}}),
        ),
        (
            fixture!("configmap-binary"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm2"},
                "binaryData": {"bin": "AAH/"}}),
        ),
        (
            fixture!("namespace"),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns1"},
                "spec": {}, "status": {}}),
        ),
        (
            fixture!("secret"),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"},
                "data": {"password": "czNjcjN0"}}),
        ),
        (
            fixture!("deployment"),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "nginx", "image": "nginx",
                            "ports": [{"containerPort": 8080}], "resources": {}}]}},
                    "strategy": {}},
                "status": {}}),
        ),
        (
            fixture!("service"),
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "svc1", "labels": {"app": "svc1"}},
                "spec": {"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80,
                    "targetPort": 8080}], "selector": {"app": "svc1"}, "type": "ClusterIP"},
                "status": {"loadBalancer": {}}}),
        ),
        (
            fixture!("job"),
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j1"},
                "spec": {"template": {"metadata": {}, "spec": {"containers": [{"name": "j1",
                    "image": "busybox", "resources": {}}], "restartPolicy": "Never"}}},
                "status": {}}),
        ),
        (
            fixture!("cronjob"),
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cj1"},
                "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"metadata": {"name": "cj1"},
                    "spec": {"template": {"metadata": {}, "spec": {"containers": [{"name": "cj1",
                        "image": "busybox", "resources": {}}], "restartPolicy": "OnFailure"}}}}},
                "status": {}}),
        ),
        (
            fixture!("serviceaccount"),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa1"}}),
        ),
        (
            fixture!("rolebinding"),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "rb1"},
                "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io",
                    "name": "jane"}],
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "r1"}}),
        ),
        (
            fixture!("quota"),
            json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q1"},
                "spec": {"hard": {"cpu": "1", "memory": "1Gi"}}, "status": {}}),
        ),
        (
            fixture!("priorityclass"),
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": "pc1"}, "value": 0,
                "preemptionPolicy": "PreemptLowerPriority"}),
        ),
        (
            fixture!("poddisruptionbudget"),
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"name": "pdb1"},
                "spec": {"minAvailable": 0, "selector": {"matchLabels": {"app": "web"}}},
                "status": {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0,
                    "expectedPods": 0}}),
        ),
        (
            fixture!("token"),
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "metadata": {}, "spec": {"expirationSeconds": 3600}, "status": {"token": ""}}),
        ),
        (
            fixture!("selfsubjectaccessreview"),
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "metadata": {},
                "spec": {"resourceAttributes": {"namespace": "default", "verb": "create",
                    "resource": "pods"}},
                "status": {"allowed": false}}),
        ),
        (
            fixture!("selfsubjectrulesreview"),
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
                "metadata": {}, "spec": {"namespace": "default"},
                "status": {"incomplete": false}}),
        ),
        (
            fixture!("selfsubjectreview"),
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
                "metadata": {}, "status": {"userInfo": {}}}),
        ),
        (
            fixture!("ingress"),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": "ing1"},
                "spec": {"rules": [{"host": "a.com", "http": {"paths": [{"path": "/",
                    "pathType": "Exact",
                    "backend": {"service": {"name": "svc1", "port": {"number": 80}}}}]}}]},
                "status": {"loadBalancer": {}}}),
        ),
    ];
    let kinds = served_kinds();
    for ((name, body), expected) in cases {
        let decoded = decode(body).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(decoded, expected, "{name}");
        let kind = kinds
            .iter()
            .find(|k| k.api_version() == decoded["apiVersion"] && k.kind == decoded["kind"]);
        let report = crate::openapi::check(kind.unwrap(), &decoded);
        assert_eq!(report, Default::default(), "{name}");
    }
}
