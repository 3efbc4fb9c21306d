//! The patch engines: JSON patch (RFC 6902) and strategic merge patch, the way
//! kube-apiserver applies them. (JSON merge patch, RFC 7396, is `crate::merge_patch`.)
//!
//! - [`json_patch`] follows the evanphx/json-patch v4 library kube-apiserver links, quirks
//!   included: negative array indices count from the end, `replace` of a missing object key
//!   adds it, `copy` from a missing object key copies `null`.
//! - [`strategic_merge_patch`] follows apimachinery's `strategicpatch.StrategicMergeMapPatch`,
//!   with the merge keys and strategies of the kind's OpenAPI schema standing in for the Go
//!   struct tags upstream reads (they are generated from those tags, so they agree).
//!
//! Neither engine modifies its inputs: each returns a new document or, on any error, nothing.

mod json;
mod strategic;

#[cfg(test)]
mod properties;

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
    /// path, a strategic merge of lists whose items differ in type, ...).
    #[error("{0}")]
    Inapplicable(String),
}

/// Applies a JSON patch (RFC 6902: add, remove, replace, move, copy, test) to `target`.
///
/// A patch that is not an array of objects, or whose `op`, `path` or `from` is not a
/// string, is [`PatchError::Malformed`] (upstream's 400). Everything that goes wrong while
/// applying the operations — an unknown `op`, a missing `path`, a path that does not
/// resolve, an index out of range, a failed `test` — is [`PatchError::Inapplicable`]
/// (upstream's 422), with evanphx/json-patch's message. A `null` patch changes nothing.
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    json::apply(target, patch)
}

/// Applies a strategic merge patch to `target`, an object of `resource`'s kind, with the
/// merge keys and strategies of its schema and every directive (`$patch`,
/// `$setElementOrder/…`, `$retainKeys`, `$deleteFromPrimitiveList/…`).
///
/// Maps merge key by key and `null` deletes a key; lists with patch strategy `merge` merge
/// by their merge key (lists of primitives as sets), every other list is replaced; fields
/// the schema does not know merge as JSON merge patch does. The result never holds a
/// directive. A patch that is not an object (or `null`, which changes nothing) is
/// [`PatchError::Malformed`], as are directives that do not parse; a patch that does not
/// fit the object (lists of lists, a list whose items are of different types, a stored
/// list item without its merge key) is [`PatchError::Inapplicable`].
pub fn strategic_merge_patch(
    resource: &ResourceType,
    target: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    strategic::apply(crate::openapi::schema_of(resource), target, patch)
}
