//! Per-kind strategy: what kube-apiserver's `rest.RESTCreateStrategy` and
//! `RESTUpdateStrategy` do for each built-in kind — reset what a client may not set on
//! create, keep status across a main-resource update, fill defaults, validate (422 with
//! field-level causes), and name the fields a field selector may use.
//!
//! Every function takes the whole object as JSON. The API server calls them in this order:
//! create: `prepare_for_create`, `apply_defaults`, `validate_create`;
//! update: `prepare_for_update`, `apply_defaults`, `validate_update`.
//!
//! Upstream v1.33 is the specification: `pkg/apis/*/v1/defaults.go` for defaults,
//! `pkg/apis/*/validation` for validation (with its messages and field paths), and
//! `pkg/registry/*/strategy.go` for the spec/status split and `metadata.generation`.
//!
//! - `lifecycle`: initial status, status kept on update, generation;
//! - `defaults`: per-kind defaults, pod specs in every template;
//! - `default_tolerations`: the DefaultTolerationSeconds admission (pods only);
//! - `validate`: per-kind validation and immutable fields;
//! - `selectors`: field selectors.

mod access;
mod base64;
mod default_tolerations;
mod defaults;
mod lifecycle;
mod selectors;
#[cfg(test)]
#[cfg(test)]
mod testing;
mod validate;

use crate::FieldError;
use crate::registry::ResourceType;
use serde_json::Value;

/// Clears what a create may not set: `status` of kinds with a status subresource (some
/// kinds start with an initial status instead, such as a Pod's `phase: Pending`), and sets
/// `metadata.generation` to 1 for kinds that track it.
///
/// Pods also get the DefaultTolerationSeconds admission's tolerations here.
pub fn prepare_for_create(resource: &ResourceType, object: &mut Value) {
    if is_pod(resource) {
        default_tolerations::add(object);
    }
    lifecycle::prepare_for_create(resource, object);
}

/// Keeps the stored `status` when the main resource of a kind with a status subresource is
/// updated: an update never changes status. `metadata.generation` stays the stored one, plus
/// one when a kind that tracks it had its spec changed.
///
/// Pods get the DefaultTolerationSeconds admission's tolerations again (before the generation
/// is counted), as upstream's admission runs on updates too.
pub fn prepare_for_update(resource: &ResourceType, object: &mut Value, old: &Value) {
    if is_pod(resource) {
        default_tolerations::add(object);
    }
    lifecycle::prepare_for_update(resource, object, old);
}

fn is_pod(resource: &ResourceType) -> bool {
    resource.group.is_empty() && resource.kind == "Pod"
}

/// Fills the defaults upstream's defaulting functions fill.
pub fn apply_defaults(resource: &ResourceType, object: &mut Value) {
    defaults::apply(resource, object);
}

/// Validates a new object, `metadata` included.
pub fn validate_create(resource: &ResourceType, object: &Value) -> Vec<FieldError> {
    validate::create(resource, object)
}

/// Validates an update against the stored object: the create rules plus immutable fields.
pub fn validate_update(resource: &ResourceType, object: &Value, old: &Value) -> Vec<FieldError> {
    validate::update(resource, object, old)
}

/// The field selector labels the kind supports, `metadata.name` and `metadata.namespace`
/// (namespaced kinds) included.
pub fn selectable_fields(resource: &ResourceType) -> Vec<&'static str> {
    selectors::selectable_fields(resource)
}

/// The values of the selectable fields of an object, as a field selector compares them.
pub fn field_values(resource: &ResourceType, object: &Value) -> Vec<(&'static str, String)> {
    selectors::field_values(resource, object)
}
