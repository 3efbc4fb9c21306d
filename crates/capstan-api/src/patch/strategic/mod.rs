//! Strategic merge patch, applied as kube-apiserver applies it (apimachinery's
//! `StrategicMergeMapPatch`, server side: parallel lists merged, unmatched `null`s dropped).
//!
//! A map merges key by key; `null` deletes a key. A list merges when its field's patch
//! strategy is `merge`: items that are maps by their merge key (new keys appended, known ones
//! merged recursively), primitives as a set. Any other list, and any value of another type,
//! is replaced. Directives steer the merge: `$patch` (`replace`, `delete`) in a map or a list
//! item, `$retainKeys` (keys to keep), `$setElementOrder/<list>` (the order of a merged list)
//! and `$deleteFromPrimitiveList/<list>` (values to remove).
//!
//! Where this differs from upstream, it is on purpose and only at the edges: values the patch
//! adds are cleared of `null`s and directives (upstream leaves them to its decoder, which
//! drops them or zeroes the field), an order directive for an empty list orders nothing
//! instead of failing, and errors upstream answers with a 500 are sorted into 400s and 422s.

mod order;
#[cfg(test)]
mod tests;

use super::PatchError;
use crate::openapi::Schema;
use order::{Kind, Ordering};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::mem;

/// The key of the `$patch` directive, and its values.
const DIRECTIVE: &str = "$patch";
const DELETE: &str = "delete";
const REPLACE: &str = "replace";
const MERGE: &str = "merge";
const RETAIN_KEYS: &str = "$retainKeys";
const RETAIN_KEYS_STRATEGY: &str = "retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

/// Who an error is to be laid at: the patch (400) or the stored object (422).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blame {
    Patch,
    Object,
}

impl Blame {
    fn error(self, message: String) -> PatchError {
        match self {
            Blame::Patch => PatchError::Malformed(message),
            Blame::Object => PatchError::Inapplicable(message),
        }
    }
}

/// Applies `patch` to a copy of `target`, with `schema` the kind's schema (none: every field
/// merges as in a JSON merge patch, with the directives still honoured).
pub(super) fn apply(
    schema: Option<Schema>,
    target: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    let patch = match patch {
        // Go decodes `null` into an empty patch map.
        Value::Null => return Ok(target.clone()),
        Value::Object(patch) => patch,
        other => {
            return Err(PatchError::Malformed(format!(
                "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                match other {
                    Value::Bool(_) => "bool",
                    Value::Number(_) => "number",
                    Value::String(_) => "string",
                    _ => "array",
                }
            )));
        }
    };
    let Value::Object(target) = target else {
        return Err(PatchError::Inapplicable("invalid JSON document".to_owned()));
    };
    merge_map(target.clone(), patch.clone(), schema).map(Value::Object)
}

/// What the schema says of one field: its own schema and how it merges.
#[derive(Debug, Clone, Copy, Default)]
struct Field {
    schema: Option<Schema>,
    /// `merge` or `replace`; `retainKeys` is not a strategy of its own here, as upstream
    /// honours `$retainKeys` wherever it appears.
    strategy: Option<&'static str>,
    merge_key: Option<&'static str>,
}

impl Field {
    /// The field `key` of an object whose schema is `parent`: a property of a struct, or the
    /// values of a map. Unknown fields have no schema and merge as JSON merge patch does.
    fn of(parent: Option<Schema>, key: &str) -> Result<Field, PatchError> {
        let Some(parent) = parent else { return Ok(Field::default()) };
        let schema = if parent.is_struct() { parent.field(key) } else { parent.values() };
        let Some(schema) = schema else { return Ok(Field::default()) };
        Ok(Field {
            schema: Some(schema),
            strategy: strategy(schema.patch_strategy())?,
            merge_key: schema.patch_merge_key().filter(|key| !key.is_empty()),
        })
    }

    fn items(&self) -> Option<Schema> {
        self.schema.and_then(|schema| schema.items())
    }
}

/// The strategy other than `retainKeys` in `x-kubernetes-patch-strategy`.
fn strategy(declared: Option<&'static str>) -> Result<Option<&'static str>, PatchError> {
    let Some(declared) = declared else { return Ok(None) };
    let strategies: Vec<&'static str> = declared.split(',').collect();
    let other = match strategies.as_slice() {
        [single] if *single == RETAIN_KEYS_STRATEGY => None,
        [single] => Some(*single),
        [first, second] if *first == RETAIN_KEYS_STRATEGY => Some(*second),
        [first, second] if *second == RETAIN_KEYS_STRATEGY => Some(*first),
        _ => {
            return Err(PatchError::Inapplicable(format!(
                "unexpected patch strategy: [{}]",
                strategies.join(" ")
            )));
        }
    };
    Ok(other.filter(|strategy| !strategy.is_empty()))
}

/// Merges `patch` into `original`, both maps whose schema is `schema`.
fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: Option<Schema>,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some(REPLACE) => {
                patch.shift_remove(DIRECTIVE);
                Ok(clean_map(patch))
            }
            Some(DELETE) => Ok(Map::new()),
            _ => Err(PatchError::Malformed(format!(
                "unknown patch type: {} in map: {}",
                go_text(directive),
                go_text(&Value::Object(patch.clone()))
            ))),
        };
    }
    retain_keys(&mut original, &mut patch)?;
    merge_ordered_lists(&mut original, &mut patch, schema)?;
    // Upstream walks the patch in Go's random map order; deletions from primitive lists go
    // first here, so that the result does not depend on the order of the patch's keys.
    let (deletions, changes): (Vec<_>, Vec<_>) =
        patch.into_iter().partition(|(key, _)| key.starts_with(DELETE_FROM_PRIMITIVE_LIST));
    for (key, value) in deletions.into_iter().chain(changes) {
        merge_field(&mut original, key, value, schema)?;
    }
    Ok(original)
}

/// Merges one key of a patch into `original`.
fn merge_field(
    original: &mut Map<String, Value>,
    key: String,
    value: Value,
    schema: Option<Schema>,
) -> Result<(), PatchError> {
    let (key, deletion_list) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
        (directive_target(&key, DELETE_FROM_PRIMITIVE_LIST)?, true)
    } else {
        (key, false)
    };
    if value.is_null() {
        original.shift_remove(&key);
        return Ok(());
    }
    let merged = match (original.get_mut(&key), value) {
        // A deletion list for a list that is not there (or is not a list) does nothing.
        (None, _) if deletion_list => return Ok(()),
        (None, value) => clean(value),
        (Some(Value::Object(current)), Value::Object(patch)) => {
            let field = Field::of(schema, &key)?;
            Some(Value::Object(if field.strategy == Some(REPLACE) {
                clean_map(patch)
            } else {
                merge_map(mem::take(current), patch, field.schema)?
            }))
        }
        (Some(Value::Array(current)), Value::Array(patch)) => {
            let field = Field::of(schema, &key)?;
            Some(Value::Array(merge_list(mem::take(current), patch, &field, deletion_list)?))
        }
        (Some(_), _) if deletion_list => return Ok(()),
        (Some(_), value) => clean(value),
    };
    match merged {
        Some(value) => {
            original.insert(key, value);
        }
        None => {
            original.shift_remove(&key);
        }
    }
    Ok(())
}

/// `$retainKeys`: the keys of `original` to keep; every key the patch sets must be listed.
fn retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retained) = patch.shift_remove(RETAIN_KEYS) else { return Ok(()) };
    let bad_format = || PatchError::Malformed("invalid patch format of retainKeys".to_owned());
    let Value::Array(retained) = retained else { return Err(bad_format()) };
    let retained: HashSet<&str> = retained.iter().filter_map(Value::as_str).collect();
    let unlisted = patch.iter().any(|(key, value)| {
        !value.is_null()
            && !key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            && !key.starts_with(SET_ELEMENT_ORDER)
            && !retained.contains(key.as_str())
    });
    if unlisted {
        return Err(bad_format());
    }
    original.retain(|key, _| retained.contains(key.as_str()));
    Ok(())
}

/// Every `$setElementOrder/<list>` of `patch`: merges `<list>` (taking it out of the patch)
/// and puts the result in the order given. Items the directive lists come in its order;
/// items only the server has keep their places relative to those, as far as they can.
fn merge_ordered_lists(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    schema: Option<Schema>,
) -> Result<(), PatchError> {
    let directives: Vec<String> =
        patch.keys().filter(|key| key.starts_with(SET_ELEMENT_ORDER)).cloned().collect();
    for directive in directives {
        let Some(order) = patch.shift_remove(&directive) else { continue };
        let Value::Array(order) = order else {
            return Err(PatchError::Malformed(bad_arg_type("[]interface {}", &order)));
        };
        let key = directive_target(&directive, SET_ELEMENT_ORDER)?;
        let current = match original.get(&key) {
            None => None,
            Some(Value::Array(items)) => Some(items.clone()),
            Some(other) => {
                return Err(PatchError::Inapplicable(bad_arg_type("[]interface {}", other)));
            }
        };
        let patched = match patch.get(&key) {
            None => None,
            Some(Value::Array(items)) => Some(items.clone()),
            Some(other) => {
                return Err(PatchError::Malformed(bad_arg_type("[]interface {}", other)));
            }
        };
        let field = Field::of(schema, &key)?;
        check_order_directive(patched.as_deref().unwrap_or_default(), &order, field.merge_key)?;
        let merged = match (&current, &patched) {
            (None, None) => continue,
            (Some(current), None) => current.clone(),
            (None, Some(patched)) => clean_list(patched.clone()),
            (Some(current), Some(patched)) => {
                merge_list(current.clone(), patched.clone(), &field, false)?
            }
        };
        patch.shift_remove(&key);
        let current = current.unwrap_or_default();
        let merged = match Kind::of_items(&[&current, &patched.unwrap_or_default()])? {
            Some(kind) => {
                let ordering = Ordering { kind, merge_key: field.merge_key };
                let (listed, server_only) = ordering.partition(merged, &order)?;
                ordering.interleave(listed, &order, server_only, &current)?
            }
            // Upstream fails here ("no elements in any of the given slices"); an empty
            // list has nothing to order.
            None => merged,
        };
        original.insert(key, Value::Array(merged));
    }
    Ok(())
}

/// The `<list>` of `$setElementOrder/<list>` or `$deleteFromPrimitiveList/<list>`.
fn directive_target(key: &str, prefix: &str) -> Result<String, PatchError> {
    match key.split_once('/') {
        Some((head, target)) if head == prefix => Ok(target.to_owned()),
        _ if prefix == SET_ELEMENT_ORDER => {
            Err(PatchError::Malformed("invalid patch format of setElementOrder list".to_owned()))
        }
        _ => Err(PatchError::Malformed("invalid patch format of primitive list".to_owned())),
    }
}

/// Checks that the items of a patch list (deletions and directives aside) appear in the
/// `$setElementOrder` list, in the same order.
fn check_order_directive(
    patched: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<(), PatchError> {
    if order.is_empty() || patched.is_empty() {
        return Ok(());
    }
    let mut listed = Vec::with_capacity(patched.len());
    for item in patched {
        if merge_key.is_some() {
            let Value::Object(fields) = item else {
                return Err(PatchError::Malformed(bad_arg_type("map[string]interface {}", item)));
            };
            if fields.get(DIRECTIVE).and_then(Value::as_str) == Some(DELETE) {
                continue;
            }
        }
        listed.push(item);
    }
    let (mut in_patch, mut in_order) = (0, 0);
    while in_patch < listed.len() && in_order < order.len() {
        if has_directive(listed[in_patch]) {
            in_patch += 1;
            continue;
        }
        if same_item(listed[in_patch], &order[in_order], merge_key)? {
            in_patch += 1;
        }
        in_order += 1;
    }
    if in_patch < listed.len() {
        return Err(PatchError::Malformed(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER} list:\n{}\n",
            go_text(&Value::Array(patched.to_vec())),
            go_text(&Value::Array(order.to_vec()))
        )));
    }
    Ok(())
}

/// Whether two items of a patch list name the same item: equal values, or maps with equal
/// merge keys.
fn same_item(left: &Value, right: &Value, merge_key: Option<&str>) -> Result<bool, PatchError> {
    let Some(merge_key) = merge_key else { return Ok(left == right) };
    let key_of = |item: &Value| -> Result<Value, PatchError> {
        let Value::Object(fields) = item else {
            return Err(PatchError::Malformed(bad_arg_type("map[string]interface {}", item)));
        };
        fields.get(merge_key).cloned().ok_or_else(|| no_merge_key(fields, merge_key, Blame::Patch))
    };
    Ok(key_of(left)? == key_of(right)?)
}

/// Merges a patch list into the list `current` of `field`: item by item when the field's
/// strategy is `merge` (or the patch list is a `$deleteFromPrimitiveList`), else replacing it.
fn merge_list(
    current: Vec<Value>,
    patch: Vec<Value>,
    field: &Field,
    deletion_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if field.strategy != Some(MERGE) && !deletion_list {
        return Ok(clean_list(patch));
    }
    if current.is_empty() && patch.is_empty() {
        return Ok(current);
    }
    let Some(kind) = Kind::of_items(&[&current, &patch])? else { return Ok(current) };
    if kind != Kind::Object {
        if deletion_list {
            let deleted: HashSet<String> = patch.iter().map(Value::to_string).collect();
            return Ok(current
                .into_iter()
                .filter(|item| !deleted.contains(&item.to_string()))
                .collect());
        }
        let mut seen = HashSet::new();
        let merged: Vec<Value> = current
            .iter()
            .chain(&patch)
            .filter(|item| seen.insert(item.to_string()))
            .cloned()
            .collect();
        let ordering = Ordering { kind, merge_key: None };
        let (listed, server_only) = ordering.partition(merged, &patch)?;
        return ordering.interleave(listed, &patch, server_only, &current);
    }
    let Some(merge_key) = field.merge_key else {
        let element = match field.items() {
            Some(items) if items.is_struct() => "struct",
            Some(_) => "map",
            None => "interface",
        };
        return Err(PatchError::Malformed(format!(
            "cannot merge lists without merge key for {element}"
        )));
    };
    let (current, patch) = list_directives(current, patch, merge_key)?;
    let mut merged = current.clone();
    for item in &patch {
        let Value::Object(fields) = item else { continue };
        let value =
            fields.get(merge_key).ok_or_else(|| no_merge_key(fields, merge_key, Blame::Patch))?;
        let existing = merged.iter_mut().find_map(|candidate| match candidate {
            Value::Object(candidate) if candidate.get(merge_key) == Some(value) => Some(candidate),
            _ => None,
        });
        match existing {
            Some(existing) => {
                *existing = merge_map(mem::take(existing), fields.clone(), field.items())?
            }
            None => merged.extend(clean(item.clone())),
        }
    }
    let ordering = Ordering { kind, merge_key: Some(merge_key) };
    let (listed, server_only) = ordering.partition(merged, &patch)?;
    ordering.interleave(listed, &patch, server_only, &current)
}

/// The `$patch` items of a patch list of maps: `delete` removes every current item with
/// that merge key, `replace` makes the rest of the patch list the whole list. Returns the
/// current list and the patch's plain items still to merge into it.
fn list_directives(
    mut current: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Value::Object(fields) = &item else { continue };
        let Some(directive) = fields.get(DIRECTIVE) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some(DELETE) => {
                let value = fields
                    .get(merge_key)
                    .ok_or_else(|| no_merge_key(fields, merge_key, Blame::Patch))?;
                current.retain(|candidate| candidate.get(merge_key) != Some(value));
            }
            Some(REPLACE) => replace = true,
            Some(MERGE) => {
                return Err(PatchError::Malformed(
                    "merging lists cannot yet be specified in the patch".to_owned(),
                ));
            }
            _ => {
                return Err(PatchError::Malformed(format!(
                    "unknown patch type: {} in map: {}",
                    go_text(directive),
                    go_text(&item)
                )));
            }
        }
    }
    if replace {
        return Ok((clean_list(plain), Vec::new()));
    }
    Ok((current, plain))
}

fn has_directive(item: &Value) -> bool {
    item.as_object().is_some_and(|fields| fields.contains_key(DIRECTIVE))
}

/// A value the patch brings in whole: without `null` fields or directives, and gone
/// altogether (`None`) when it is a map carrying `$patch`.
fn clean(value: Value) -> Option<Value> {
    match value {
        Value::Object(fields) if fields.contains_key(DIRECTIVE) => None,
        Value::Object(fields) => Some(Value::Object(clean_map(fields))),
        Value::Array(items) => Some(Value::Array(clean_list(items))),
        other => Some(other),
    }
}

fn clean_map(fields: Map<String, Value>) -> Map<String, Value> {
    fields
        .into_iter()
        .filter(|(key, value)| !value.is_null() && !is_directive(key))
        .filter_map(|(key, value)| clean(value).map(|value| (key, value)))
        .collect()
}

fn clean_list(items: Vec<Value>) -> Vec<Value> {
    items.into_iter().filter_map(clean).collect()
}

fn is_directive(key: &str) -> bool {
    key == DIRECTIVE
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

/// Upstream's `ErrNoMergeKey`.
fn no_merge_key(fields: &Map<String, Value>, merge_key: &str, blame: Blame) -> PatchError {
    blame.error(format!(
        "map: {} does not contain declared merge key: {merge_key}",
        go_text(&Value::Object(fields.clone()))
    ))
}

/// Upstream's `ErrBadArgType`, with Go's names for the types.
fn bad_arg_type(expected: &str, actual: &Value) -> String {
    let actual = match actual {
        Value::Null => "%!s(<nil>)",
        Value::Bool(_) => "bool",
        Value::Number(number) if number.is_i64() => "int64",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    };
    format!("expected a {expected}, but received a {actual}")
}

/// A value as Go's `%v` prints it, which upstream's messages embed: `map[a:1 b:[x y]]`.
fn go_text(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".to_owned(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => text.clone(),
        Value::Array(items) => {
            format!("[{}]", items.iter().map(go_text).collect::<Vec<_>>().join(" "))
        }
        Value::Object(fields) => {
            let mut entries: Vec<String> =
                fields.iter().map(|(key, value)| format!("{key}:{}", go_text(value))).collect();
            entries.sort();
            format!("map[{}]", entries.join(" "))
        }
    }
}
