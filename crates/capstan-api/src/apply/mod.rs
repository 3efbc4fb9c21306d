//! Field management and server-side apply: `metadata.managedFields` (FieldsV1) recorded for
//! every write, and apply patches (`application/apply-patch+yaml`) merged with upstream's
//! structured-merge semantics, conflicts and `force`.

use crate::registry::ResourceType;
use serde_json::Value;

/// A field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    /// The field as upstream names it in the 409: `.spec.replicas`,
    /// `.spec.containers[name="web"].image`.
    pub field: String,
}

/// Why an apply fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// 409 Conflict, listing every conflict.
    #[error("Apply failed with {} conflicts", .0.len())]
    Conflicts(Vec<Conflict>),
    /// 400/422: the applied configuration is malformed (not an object, wrong kind, a list item
    /// without its keys, ...).
    #[error("{0}")]
    Invalid(String),
}

/// What one write did, for field management.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Apply,
    Update,
}

/// Server-side apply: merges `applied` (the manager's whole intent) into `live` (`None`
/// when the object does not exist yet) and returns the new object with its managedFields.
/// Without `force`, fields owned by other managers with other values are conflicts.
/// `subresource` is `""` or `"status"`; `now` is the RFC 3339 time for the managedFields
/// entry.
pub fn apply(
    resource: &ResourceType,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    subresource: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApplyError> {
    let _ = (resource, live, applied, manager, subresource, force, now);
    Err(ApplyError::Invalid("server-side apply is not implemented yet".into()))
}

/// Records a non-apply write (create, update, patch) in `new`'s managedFields: the fields
/// that changed from `old` (all set fields on a create) become `manager`'s, with the
/// Update operation, and leave other managers' sets.
pub fn track_update(
    resource: &ResourceType,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: &str,
    now: &str,
) {
    let _ = (resource, old, new, manager, subresource, now);
}
