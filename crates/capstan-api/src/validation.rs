//! Validation every kind shares: the name rules, qualified names and label values of
//! apimachinery's `util/validation`, and the checks of `metadata` (name or generateName,
//! namespace by scope, labels, annotations, finalizers), with upstream's messages so that
//! kubectl's 422s read as against kube-apiserver.

use crate::registry::{ResourceType, Scope};
use crate::status::FieldError;
use serde_json::Value;

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const QUALIFIED_NAME_MAX: usize = 63;
const LABEL_VALUE_MAX: usize = 63;
/// All annotations of one object together, keys and values.
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

const DNS1123_LABEL_MESSAGE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_MESSAGE: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_MESSAGE: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MESSAGE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn too_long(max: usize) -> String {
    format!("must be no more than {max} characters")
}

fn is_dns1123_label_shape(value: &str) -> bool {
    let lower_alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !value.is_empty()
        && value.starts_with(lower_alnum)
        && value.ends_with(lower_alnum)
        && value.chars().all(|c| lower_alnum(c) || c == '-')
}

/// Problems with `value` as an RFC 1123 label (namespace names, and most label-like names).
pub fn dns1123_label(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > DNS1123_LABEL_MAX {
        problems.push(too_long(DNS1123_LABEL_MAX));
    }
    if !is_dns1123_label_shape(value) {
        problems.push(DNS1123_LABEL_MESSAGE.to_owned());
    }
    problems
}

/// Problems with `value` as an RFC 1123 subdomain (most object names).
pub fn dns1123_subdomain(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        problems.push(too_long(DNS1123_SUBDOMAIN_MAX));
    }
    if !value.split('.').all(is_dns1123_label_shape) {
        problems.push(DNS1123_SUBDOMAIN_MESSAGE.to_owned());
    }
    problems
}

/// Problems with `value` as an RFC 1035 label (Service names: they become DNS names).
pub fn dns1035_label(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > DNS1123_LABEL_MAX {
        problems.push(too_long(DNS1123_LABEL_MAX));
    }
    let shape =
        is_dns1123_label_shape(value) && value.starts_with(|c: char| c.is_ascii_lowercase());
    if !shape {
        problems.push(DNS1035_LABEL_MESSAGE.to_owned());
    }
    problems
}

/// Problems with `value` as a path segment (RBAC object names).
pub fn path_segment(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value == "." || value == ".." {
        problems.push(format!("may not be '{value}'"));
    }
    for forbidden in ["/", "%"] {
        if value.contains(forbidden) {
            problems.push(format!("may not contain '{forbidden}'"));
        }
    }
    problems
}

fn is_name_part(part: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    !part.is_empty()
        && part.starts_with(alnum)
        && part.ends_with(alnum)
        && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Problems with `value` as a qualified name (`name` or `prefix/name`): label and annotation
/// keys, finalizers.
pub fn qualified_name(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let (prefix, name) = match value.split('/').collect::<Vec<_>>().as_slice() {
        [name] => (None, *name),
        [prefix, name] => (Some(*prefix), *name),
        _ => {
            problems.push("a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".to_owned());
            return problems;
        }
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            problems.push("prefix part must be non-empty".to_owned());
        } else {
            problems
                .extend(dns1123_subdomain(prefix).into_iter().map(|p| format!("prefix part {p}")));
        }
    }
    if name.is_empty() {
        problems.push("name part must be non-empty".to_owned());
    } else {
        if name.len() > QUALIFIED_NAME_MAX {
            problems.push(format!("name part {}", too_long(QUALIFIED_NAME_MAX)));
        }
        if !is_name_part(name) {
            problems.push(QUALIFIED_NAME_MESSAGE.to_owned());
        }
    }
    problems
}

/// Problems with `value` as a label value (may be empty).
pub fn label_value(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > LABEL_VALUE_MAX {
        problems.push(too_long(LABEL_VALUE_MAX));
    }
    if !value.is_empty() && !is_name_part(value) {
        problems.push(LABEL_VALUE_MESSAGE.to_owned());
    }
    problems
}

/// Which rule an object's name follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    Dns1123Subdomain,
    Dns1123Label,
    Dns1035Label,
    PathSegment,
}

impl NameRule {
    /// The rule kube-apiserver applies to objects of this type.
    pub fn of(resource: &ResourceType) -> Self {
        match (resource.group, resource.kind) {
            ("", "Namespace") => NameRule::Dns1123Label,
            ("", "Service") => NameRule::Dns1035Label,
            ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
            _ => NameRule::Dns1123Subdomain,
        }
    }

    pub fn check(self, name: &str) -> Vec<String> {
        match self {
            NameRule::Dns1123Subdomain => dns1123_subdomain(name),
            NameRule::Dns1123Label => dns1123_label(name),
            NameRule::Dns1035Label => dns1035_label(name),
            NameRule::PathSegment => path_segment(name),
        }
    }
}

/// Checks an object's `metadata` for a create: a valid name or generateName, a valid
/// namespace when the type is namespaced, and valid labels, annotations and finalizers. The
/// caller clears `metadata.namespace` of cluster-scoped objects first, as upstream does.
pub fn object_meta(metadata: &Value, resource: &ResourceType) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let text = |field: &str| metadata.get(field).and_then(Value::as_str).unwrap_or("");
    let rule = NameRule::of(resource);
    let (name, generate_name) = (text("name"), text("generateName"));
    if name.is_empty() && generate_name.is_empty() {
        errors.push(FieldError::required("metadata.name", "name or generateName is required"));
    }
    if !name.is_empty() {
        errors.extend(
            rule.check(name).into_iter().map(|p| FieldError::invalid("metadata.name", name, p)),
        );
    }
    if !generate_name.is_empty() {
        // A prefix: a random suffix follows, so a trailing '-' is fine.
        let prefix = generate_name.strip_suffix('-').unwrap_or(generate_name);
        errors.extend(
            rule.check(prefix)
                .into_iter()
                .map(|p| FieldError::invalid("metadata.generateName", generate_name, p)),
        );
    }
    let namespace = text("namespace");
    match resource.scope {
        Scope::Namespaced if namespace.is_empty() => {
            errors.push(FieldError::required("metadata.namespace", ""))
        }
        Scope::Namespaced => errors.extend(
            dns1123_label(namespace)
                .into_iter()
                .map(|p| FieldError::invalid("metadata.namespace", namespace, p)),
        ),
        // kube-apiserver clears the namespace of a cluster-scoped object before validating
        // it, so that `kubectl apply` of one that names a namespace still works.
        Scope::Cluster => {}
    }
    errors.extend(string_map(metadata, "labels", |errors, key, value| {
        errors.extend(
            qualified_name(key).into_iter().map(|p| FieldError::invalid("metadata.labels", key, p)),
        );
        errors.extend(
            label_value(value)
                .into_iter()
                .map(|p| FieldError::invalid("metadata.labels", value, p)),
        );
    }));
    let mut annotation_bytes = 0;
    errors.extend(string_map(metadata, "annotations", |errors, key, value| {
        annotation_bytes += key.len() + value.len();
        let lowered = key.to_ascii_lowercase();
        errors.extend(
            qualified_name(&lowered)
                .into_iter()
                .map(|p| FieldError::invalid("metadata.annotations", key, p)),
        );
    }));
    if annotation_bytes > ANNOTATIONS_MAX_BYTES {
        errors.push(FieldError {
            field: "metadata.annotations".into(),
            kind: crate::status::FieldErrorKind::TooLong(Value::Null, ANNOTATIONS_MAX_BYTES),
            detail: String::new(),
        });
    }
    if let Some(finalizers) = metadata.get("finalizers").and_then(Value::as_array) {
        for (index, finalizer) in finalizers.iter().enumerate() {
            let field = format!("metadata.finalizers[{index}]");
            match finalizer.as_str() {
                Some(finalizer) => errors.extend(
                    qualified_name(finalizer)
                        .into_iter()
                        .map(|p| FieldError::invalid(field.clone(), finalizer, p)),
                ),
                None => {
                    errors.push(FieldError::invalid(field, finalizer.clone(), "must be a string"))
                }
            }
        }
    }
    errors
}

/// Runs `check` over a `metadata.<field>` map of strings, reporting non-string values.
fn string_map(
    metadata: &Value,
    field: &str,
    mut check: impl FnMut(&mut Vec<FieldError>, &str, &str),
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let Some(map) = metadata.get(field) else { return errors };
    let Some(map) = map.as_object() else {
        if !map.is_null() {
            errors.push(FieldError::invalid(
                format!("metadata.{field}"),
                map.clone(),
                "must be a map of strings",
            ));
        }
        return errors;
    };
    for (key, value) in map {
        match value.as_str() {
            Some(value) => check(&mut errors, key, value),
            None => errors.push(FieldError::invalid(
                format!("metadata.{field}"),
                value.clone(),
                format!("the value of {key:?} must be a string"),
            )),
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;
    use serde_json::json;

    #[test]
    fn name_rules() {
        for ok in ["a", "web-1", "a.b.c", "0abc"] {
            assert!(dns1123_subdomain(ok).is_empty(), "{ok}");
        }
        for bad in ["", "Web", "-a", "a-", "a..b", "a_b", &"a".repeat(254)] {
            assert!(!dns1123_subdomain(bad).is_empty(), "{bad}");
        }
        assert!(dns1123_label("a.b").len() == 1);
        assert!(dns1035_label("1abc").len() == 1, "DNS-1035 labels start with a letter");
        assert!(dns1035_label("abc-1").is_empty());
        assert_eq!(dns1123_label(&"a".repeat(64)), ["must be no more than 63 characters"]);
        assert_eq!(path_segment("a/b"), ["may not contain '/'"]);
        assert!(path_segment("system:controller:x").is_empty());
    }

    #[test]
    fn qualified_names_and_label_values() {
        for ok in ["app", "app.kubernetes.io/name", "A_b.C-1", "example.com/MyName"] {
            assert!(qualified_name(ok).is_empty(), "{ok}");
        }
        assert_eq!(qualified_name("/x"), ["prefix part must be non-empty"]);
        assert_eq!(qualified_name("example.com/"), ["name part must be non-empty"]);
        assert!(qualified_name("a/b/c")[0].starts_with("a qualified name must consist"));
        assert!(
            qualified_name("Example.com/x")[0]
                .starts_with("prefix part a lowercase RFC 1123 subdomain")
        );
        assert!(label_value("").is_empty());
        assert_eq!(label_value("-x"), [LABEL_VALUE_MESSAGE]);
    }

    fn problems(metadata: Value, plural: &str) -> Vec<String> {
        let resource = match plural {
            "namespaces" | "pods" | "services" => find("", "v1", plural).unwrap(),
            other => find("rbac.authorization.k8s.io", "v1", other).unwrap(),
        };
        object_meta(&metadata, resource).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn metadata_of_a_valid_object_passes() {
        assert_eq!(
            problems(
                json!({"name":"web","namespace":"default","labels":{"app":"web"},"annotations":{"Note":"x"},"finalizers":["example.com/cleanup"]}),
                "pods"
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            problems(json!({"generateName":"web-","namespace":"default"}), "pods"),
            Vec::<String>::new()
        );
        assert_eq!(problems(json!({"name":"kube-system"}), "namespaces"), Vec::<String>::new());
        assert_eq!(problems(json!({"name":"system:node"}), "clusterroles"), Vec::<String>::new());
    }

    #[test]
    fn metadata_errors_read_as_upstreams() {
        assert_eq!(
            problems(json!({"namespace":"default"}), "pods"),
            ["metadata.name: Required value: name or generateName is required"]
        );
        assert_eq!(problems(json!({"name":"web"}), "pods"), ["metadata.namespace: Required value"]);
        let service = problems(json!({"name":"1web","namespace":"default"}), "services");
        assert_eq!(service.len(), 1);
        assert!(
            service[0].starts_with("metadata.name: Invalid value: \"1web\": a DNS-1035 label"),
            "{service:?}"
        );
        let labels =
            problems(json!({"name":"web","namespace":"default","labels":{"bad key":"-v"}}), "pods");
        assert_eq!(labels.len(), 2, "{labels:?}");
        assert!(
            labels[0]
                .starts_with("metadata.labels: Invalid value: \"bad key\": name part must consist")
        );
        assert!(
            labels[1].starts_with("metadata.labels: Invalid value: \"-v\": a valid label must")
        );
        let huge = "x".repeat(ANNOTATIONS_MAX_BYTES);
        assert_eq!(
            problems(json!({"name":"web","namespace":"default","annotations":{"a":huge}}), "pods"),
            ["metadata.annotations: Too long: may not be more than 262144 bytes"]
        );
        assert_eq!(
            problems(json!({"name":"web","namespace":"default","labels":{"n":1}}), "pods").len(),
            1
        );
    }
}
