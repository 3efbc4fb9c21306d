//! The patch engines: JSON patch (RFC 6902) and strategic merge patch, the way
//! kube-apiserver applies them. (JSON merge patch, RFC 7396, is `crate::merge_patch`.)

use crate::registry::ResourceType;
use serde_json::Value;

/// Why a patch cannot be applied: a 400 (malformed patch) or 422 (a `test` that failed,
/// a path that does not exist) at the API, with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch itself is malformed.
    #[error("{0}")]
    Malformed(String),
    /// The patch is well-formed but cannot apply to this object (a failed `test`, a missing
    /// path, a `$patch: delete` of something absent, ...).
    #[error("{0}")]
    Inapplicable(String),
}

/// Applies a JSON patch (RFC 6902: add, remove, replace, move, copy, test) to `target`.
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    let _ = (target, patch);
    Err(PatchError::Malformed("JSON patch is not implemented yet".into()))
}

/// Applies a strategic merge patch to `target`, an object of `resource`'s kind, with the
/// merge keys and strategies of its schema and every directive (`$patch`,
/// `$setElementOrder/…`, `$retainKeys`, `$deleteFromPrimitiveList/…`).
pub fn strategic_merge_patch(
    resource: &ResourceType,
    target: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    let _ = (resource, target, patch);
    Err(PatchError::Malformed("strategic merge patch is not implemented yet".into()))
}
