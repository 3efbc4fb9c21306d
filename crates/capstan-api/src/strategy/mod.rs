//! Per-kind strategy: what kube-apiserver's `rest.RESTCreateStrategy` and
//! `RESTUpdateStrategy` do for each built-in kind — reset what a client may not set on
//! create, keep status across a main-resource update, fill defaults, validate (422 with
//! field-level causes), and name the fields a field selector may use.
//!
//! Every function takes the whole object as JSON. The API server calls them in this order:
//! create: `prepare_for_create`, `apply_defaults`, `validate_create`;
//! update: `prepare_for_update`, `apply_defaults`, `validate_update`.

use crate::FieldError;
use crate::registry::ResourceType;
use serde_json::Value;

/// Clears what a create may not set: `status` of kinds with a status subresource (some
/// kinds start with an initial status instead, such as a Pod's `phase: Pending`).
pub fn prepare_for_create(resource: &ResourceType, object: &mut Value) {
    let _ = (resource, object);
}

/// Keeps the stored `status` when the main resource of a kind with a status subresource is
/// updated: an update never changes status.
pub fn prepare_for_update(resource: &ResourceType, object: &mut Value, old: &Value) {
    let _ = (resource, object, old);
}

/// Fills the defaults upstream's defaulting functions fill.
pub fn apply_defaults(resource: &ResourceType, object: &mut Value) {
    let _ = (resource, object);
}

/// Validates a new object, `metadata` included.
pub fn validate_create(resource: &ResourceType, object: &Value) -> Vec<FieldError> {
    crate::validation::object_meta(object.get("metadata").unwrap_or(&Value::Null), resource)
}

/// Validates an update against the stored object: the create rules plus immutable fields.
pub fn validate_update(resource: &ResourceType, object: &Value, old: &Value) -> Vec<FieldError> {
    let _ = old;
    validate_create(resource, object)
}

/// The field selector labels the kind supports, `metadata.name` and `metadata.namespace`
/// (namespaced kinds) included.
pub fn selectable_fields(resource: &ResourceType) -> Vec<&'static str> {
    if resource.is_namespaced() {
        vec!["metadata.name", "metadata.namespace"]
    } else {
        vec!["metadata.name"]
    }
}

/// The values of the selectable fields of an object, as a field selector compares them.
pub fn field_values(resource: &ResourceType, object: &Value) -> Vec<(&'static str, String)> {
    let metadata = object.get("metadata");
    let text = |field: &str| {
        metadata.and_then(|m| m.get(field)).and_then(Value::as_str).unwrap_or("").to_owned()
    };
    let mut values = vec![("metadata.name", text("name"))];
    if resource.is_namespaced() {
        values.push(("metadata.namespace", text("namespace")));
    }
    values
}
