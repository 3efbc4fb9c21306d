//! Objects seen through their kind's schema, as structured-merge-diff's `typed` package sees
//! them: which positions are leaves (scalars, atomic lists and maps, owned as a unit), which
//! are granular (structs, maps, list-maps by their keys, sets by their values), and the four
//! walks server-side apply is made of: the set of fields a value sets, the comparison of two
//! values, the merge of a configuration into an object, and the pruning of fields an
//! applier stopped setting.
//!
//! Schema rules follow upstream's conversion of OpenAPI into structured-merge-diff types:
//! `x-kubernetes-list-type` first; without it, `x-kubernetes-patch-strategy: merge` with a
//! merge key makes a list-map and without one a set; every other list is atomic.
//! `x-kubernetes-map-type: atomic` makes a struct or map a leaf. Where there is no schema
//! (preserved unknown fields, kinds Capstan has none for) values are "deduced": objects are
//! granular maps, lists atomic.
//!
//! The walks never fail on stored objects: a list whose items cannot all be keyed is
//! handled as atomic there. An applied configuration is checked first ([`validate`]), as
//! upstream refuses one with duplicate or unkeyable items.

use super::fieldpath::{PathElement, Set, path_string, values_equal};
use crate::openapi::{Schema, named};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// The type at a position.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ty {
    Schema(Schema),
    /// No schema: objects are granular maps of deduced values, everything else a leaf.
    Deduced,
    /// The top of a kind without a schema: its top-level keys are named fields (as in any
    /// structural schema) and `metadata` is ObjectMeta.
    DeducedRoot,
}

/// How a value is walked at a position.
enum Node {
    /// Owned and compared as a unit.
    Leaf,
    /// A granular object (`null` is an empty one).
    Object(ObjectTy),
    /// An associative list (`null` is an empty one).
    List(ListTy),
}

#[derive(Clone, Copy)]
enum ObjectTy {
    Struct(Schema),
    Map(Ty),
    Deduced,
    DeducedRoot,
}

#[derive(Clone)]
struct ListTy {
    items: Option<Schema>,
    /// The list-map keys; empty for a set.
    keys: Vec<&'static str>,
}

/// What a schema says, before looking at a value.
enum Shape {
    Leaf,
    Deduced,
    Object(ObjectTy),
    List(ListTy),
}

fn shape(schema: Schema) -> Shape {
    if schema.type_name() == Some("array") || schema.items().is_some() {
        let keys = match schema.list_type() {
            Some("map") => schema.list_map_keys(),
            Some("set") => Vec::new(),
            Some(_) => return Shape::Leaf,
            None => match schema.patch_strategy() {
                Some("merge" | "merge,retainKeys") => {
                    schema.patch_merge_key().into_iter().collect()
                }
                _ => return Shape::Leaf,
            },
        };
        if schema.list_type() == Some("map") && keys.is_empty() {
            // A list-map without keys is a schema error upstream; own it whole.
            return Shape::Leaf;
        }
        return Shape::List(ListTy { items: schema.items(), keys });
    }
    let atomic = schema.map_type() == Some("atomic");
    if schema.is_struct() {
        return if atomic { Shape::Leaf } else { Shape::Object(ObjectTy::Struct(schema)) };
    }
    if let Some(values) = schema.values() {
        return if atomic { Shape::Leaf } else { Shape::Object(ObjectTy::Map(Ty::Schema(values))) };
    }
    let int_or_string =
        schema.extension("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
    match schema.type_name() {
        _ if schema.preserves_unknown_fields() => Shape::Deduced,
        Some("object") => Shape::Deduced,
        None if !int_or_string => Shape::Deduced,
        _ => Shape::Leaf,
    }
}

fn node(ty: Ty, value: &Value) -> Node {
    let deduced = |object: ObjectTy| match value {
        Value::Object(_) => Node::Object(object),
        _ => Node::Leaf,
    };
    match ty {
        Ty::Deduced => deduced(ObjectTy::Deduced),
        Ty::DeducedRoot => deduced(ObjectTy::DeducedRoot),
        Ty::Schema(schema) => match shape(schema) {
            Shape::Leaf => Node::Leaf,
            Shape::Deduced => deduced(ObjectTy::Deduced),
            Shape::Object(object) => match value {
                Value::Object(_) | Value::Null => Node::Object(object),
                _ => Node::Leaf,
            },
            Shape::List(list) => match value {
                Value::Array(_) | Value::Null => Node::List(list),
                _ => Node::Leaf,
            },
        },
    }
}

/// The node two values share at a position; a leaf when their shapes differ.
fn common_node(ty: Ty, lhs: Option<&Value>, rhs: Option<&Value>) -> Node {
    match (lhs, rhs) {
        (Some(lhs), Some(rhs)) => match (node(ty, lhs), node(ty, rhs)) {
            (Node::Object(object), Node::Object(_)) => Node::Object(object),
            (Node::List(list), Node::List(_)) => Node::List(list),
            _ => Node::Leaf,
        },
        (Some(value), None) | (None, Some(value)) => node(ty, value),
        (None, None) => Node::Leaf,
    }
}

impl ObjectTy {
    /// The type of a key's value, and whether the key is a named field of a struct (whose
    /// presence alone is not owned) rather than a map entry (which is).
    fn child(self, key: &str) -> (Ty, bool) {
        match self {
            ObjectTy::Struct(schema) => match schema.field(key) {
                Some(field) => (Ty::Schema(field), true),
                None => (schema.values().map_or(Ty::Deduced, Ty::Schema), false),
            },
            ObjectTy::Map(ty) => (ty, false),
            ObjectTy::Deduced => (Ty::Deduced, false),
            ObjectTy::DeducedRoot => {
                let ty = match key {
                    "metadata" => named(OBJECT_META).map_or(Ty::Deduced, Ty::Schema),
                    _ => Ty::Deduced,
                };
                (ty, true)
            }
        }
    }
}

impl ListTy {
    fn item_ty(&self) -> Ty {
        self.items.map_or(Ty::Deduced, Ty::Schema)
    }

    /// The element that names an item: its key fields, or its value in a set.
    fn key_of(&self, item: &Value) -> Result<PathElement, String> {
        if self.keys.is_empty() {
            return match item {
                Value::Object(_) => {
                    Err("associative list without keys has an element that's a map type".into())
                }
                Value::Array(_) => {
                    Err("not supported: associative list with lists as elements".into())
                }
                Value::Null => {
                    Err("associative list without keys has an element that's an explicit null"
                        .into())
                }
                _ => Ok(PathElement::Value(item.clone())),
            };
        }
        let fields = match item {
            Value::Object(fields) => fields,
            Value::Null => {
                return Err("associative list with keys may not have a null element".into());
            }
            _ => return Err("associative list with keys may not have non-map elements".into()),
        };
        let mut key = Vec::new();
        for name in &self.keys {
            if let Some(value) = fields.get(*name) {
                key.push(((*name).to_owned(), value.clone()));
            } else if let Some(default) = self.key_default(name) {
                key.push(((*name).to_owned(), default));
            }
        }
        if key.is_empty() {
            return Err(format!(
                "associative list with keys has an element that omits all key fields {:?} \
                 (and doesn't have default values for any key fields)",
                self.keys
            ));
        }
        key.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(PathElement::Key(key))
    }

    /// A key field's default. Upstream reads it from the schema; Capstan's schemas (from
    /// k8s-openapi) carry no defaults, so the one key with a default in the built-in API,
    /// the ports' `protocol`, is known here.
    fn key_default(&self, name: &str) -> Option<Value> {
        let from_schema = self
            .items
            .and_then(|items| items.field(name))
            .and_then(|field| field.extension("default"))
            .cloned();
        from_schema.or_else(|| (name == "protocol").then(|| Value::from("TCP")))
    }

    /// Every item's element, or `None` if one cannot be keyed (the list is then atomic).
    fn keys_of(&self, items: &[Value]) -> Option<Vec<PathElement>> {
        items.iter().map(|item| self.key_of(item).ok()).collect()
    }
}

fn is_empty_container(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Null => true,
        _ => false,
    }
}

/// Checks what upstream checks of an applied configuration: every associative list's items
/// can be keyed, and no two share a key.
pub(crate) fn validate(ty: Ty, value: &Value) -> Result<(), String> {
    validate_at(ty, value, &mut Vec::new())
}

fn validate_at(ty: Ty, value: &Value, path: &mut Vec<PathElement>) -> Result<(), String> {
    match node(ty, value) {
        Node::Leaf => Ok(()),
        Node::Object(object) => {
            for (key, child) in value.as_object().into_iter().flatten() {
                path.push(PathElement::field(key));
                validate_at(object.child(key).0, child, path)?;
                path.pop();
            }
            Ok(())
        }
        Node::List(list) => {
            let mut seen = BTreeSet::new();
            for (index, item) in value.as_array().into_iter().flatten().enumerate() {
                let key = list
                    .key_of(item)
                    .map_err(|err| format!("{}: element {index}: {err}", path_string(path)))?;
                if !seen.insert(key.clone()) {
                    return Err(format!(
                        "{}: duplicate entries for key {}",
                        path_string(path),
                        path_string(std::slice::from_ref(&key))
                    ));
                }
                path.push(key);
                validate_at(list.item_ty(), item, path)?;
                path.pop();
            }
            Ok(())
        }
    }
}

/// The fields a value sets: its leaves, its list items, its map entries, and its fields
/// that are explicitly null or empty.
pub(crate) fn field_set(ty: Ty, value: &Value) -> Set {
    let mut set = Set::default();
    field_set_at(ty, value, &mut Vec::new(), &mut set);
    set
}

fn field_set_at(ty: Ty, value: &Value, path: &mut Vec<PathElement>, set: &mut Set) {
    match node(ty, value) {
        Node::Leaf => set.insert(path),
        Node::Object(object) => {
            for (key, child) in value.as_object().into_iter().flatten() {
                let (child_ty, named) = object.child(key);
                path.push(PathElement::field(key));
                field_set_at(child_ty, child, path, set);
                let empty_object = child.as_object().is_some_and(Map::is_empty);
                if child.is_null() || empty_object || !named {
                    set.insert(path);
                }
                path.pop();
            }
        }
        Node::List(list) => {
            let items = value.as_array().map(Vec::as_slice).unwrap_or_default();
            let Some(keys) = list.keys_of(items) else {
                set.insert(path);
                return;
            };
            // Items sharing a key are owned as units, without their fields.
            let mut seen = BTreeSet::new();
            let mut duplicated = BTreeSet::new();
            for key in &keys {
                if !seen.insert(key) {
                    duplicated.insert(key);
                }
            }
            for (key, item) in keys.iter().zip(items) {
                path.push(key.clone());
                if !duplicated.contains(key) {
                    field_set_at(list.item_ty(), item, path, set);
                }
                set.insert(path);
                path.pop();
            }
        }
    }
}

/// What changed from one value to another: fields added, modified (leaves whose value
/// changed) and removed. A granular object or item that appears or disappears as a whole
/// is itself added or removed, as are its fields.
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    pub(crate) added: Set,
    pub(crate) modified: Set,
    pub(crate) removed: Set,
}

impl Comparison {
    /// Added or modified: what a write takes over.
    pub(crate) fn changed(&self) -> Set {
        self.added.union(&self.modified)
    }

    /// Keeps only the paths `keep` accepts (the reset fields filter).
    pub(crate) fn filter(&self, keep: impl Fn(&Set) -> Set) -> Comparison {
        Comparison {
            added: keep(&self.added),
            modified: keep(&self.modified),
            removed: keep(&self.removed),
        }
    }
}

pub(crate) fn compare(ty: Ty, lhs: Option<&Value>, rhs: Option<&Value>) -> Comparison {
    let mut out = Comparison::default();
    compare_at(ty, lhs, rhs, &mut Vec::new(), &mut out);
    out
}

fn compare_leaf(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    path: &[PathElement],
    out: &mut Comparison,
) {
    match (lhs, rhs) {
        (None, Some(_)) => out.added.insert(path),
        (Some(_), None) => out.removed.insert(path),
        (Some(lhs), Some(rhs)) if !values_equal(lhs, rhs) => out.modified.insert(path),
        _ => {}
    }
}

fn compare_at(
    ty: Ty,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    path: &mut Vec<PathElement>,
    out: &mut Comparison,
) {
    let both_empty = lhs.is_none_or(is_empty_container) && rhs.is_none_or(is_empty_container);
    match common_node(ty, lhs, rhs) {
        Node::Leaf => return compare_leaf(lhs, rhs, path, out),
        _ if both_empty => return compare_leaf(lhs, rhs, path, out),
        Node::Object(object) => {
            let empty = Map::new();
            let lmap = lhs.and_then(Value::as_object).unwrap_or(&empty);
            let rmap = rhs.and_then(Value::as_object).unwrap_or(&empty);
            for (key, lvalue) in lmap {
                path.push(PathElement::field(key));
                compare_at(object.child(key).0, Some(lvalue), rmap.get(key), path, out);
                path.pop();
            }
            for (key, rvalue) in rmap.iter().filter(|(key, _)| !lmap.contains_key(*key)) {
                path.push(PathElement::field(key));
                compare_at(object.child(key).0, None, Some(rvalue), path, out);
                path.pop();
            }
        }
        Node::List(list) => {
            let litems = lhs.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            let ritems = rhs.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            let (Some(lkeys), Some(rkeys)) = (list.keys_of(litems), list.keys_of(ritems)) else {
                return compare_leaf(lhs, rhs, path, out);
            };
            compare_items(&list, (&lkeys, litems), (&rkeys, ritems), path, out);
        }
    }
    // A granular node that appears or disappears is itself added or removed.
    match (lhs, rhs) {
        (None, Some(_)) => out.added.insert(path),
        (Some(_), None) => out.removed.insert(path),
        _ => {}
    }
}

/// Items grouped by key, in first-seen order (lhs first).
type Grouped<'a> = Vec<(&'a PathElement, Vec<&'a Value>, Vec<&'a Value>)>;

fn compare_items(
    list: &ListTy,
    (lkeys, litems): (&[PathElement], &[Value]),
    (rkeys, ritems): (&[PathElement], &[Value]),
    path: &mut Vec<PathElement>,
    out: &mut Comparison,
) {
    let mut grouped: Grouped<'_> = Vec::new();
    let mut index: BTreeMap<&PathElement, usize> = BTreeMap::new();
    for (side, keys, items) in [(0, lkeys, litems), (1, rkeys, ritems)] {
        for (key, item) in keys.iter().zip(items) {
            let at = *index.entry(key).or_insert_with(|| {
                grouped.push((key, Vec::new(), Vec::new()));
                grouped.len() - 1
            });
            let entry = &mut grouped[at];
            if side == 0 { entry.1.push(item) } else { entry.2.push(item) }
        }
    }
    let item_ty = list.item_ty();
    for (key, lvalues, rvalues) in grouped {
        path.push(key.clone());
        match (lvalues.len(), rvalues.len()) {
            (0..=1, 0..=1) => {
                compare_at(item_ty, lvalues.first().copied(), rvalues.first().copied(), path, out);
            }
            (2.., 2..) => {
                let equal = lvalues.len() == rvalues.len()
                    && lvalues.iter().zip(&rvalues).all(|(l, r)| values_equal(l, r));
                if !equal {
                    out.modified.insert(path);
                }
            }
            (2.., _) => {
                if let Some(rvalue) = rvalues.first() {
                    compare_at(item_ty, None, Some(rvalue), path, out);
                }
                out.removed.insert(path);
            }
            (_, _) => {
                if let Some(lvalue) = lvalues.first() {
                    compare_at(item_ty, Some(lvalue), None, path, out);
                }
                out.added.insert(path);
            }
        }
        path.pop();
    }
}

/// Merges a configuration into an object: the configuration's leaves win, granular
/// objects merge key by key, associative lists item by item (shared items in the
/// configuration's order, the object's other items where they were).
pub(crate) fn merge(ty: Ty, lhs: &Value, rhs: &Value) -> Value {
    let both_empty = is_empty_container(lhs) && is_empty_container(rhs);
    match common_node(ty, Some(lhs), Some(rhs)) {
        Node::Leaf => rhs.clone(),
        _ if both_empty => rhs.clone(),
        Node::Object(object) => {
            let empty = Map::new();
            let lmap = lhs.as_object().unwrap_or(&empty);
            let rmap = rhs.as_object().unwrap_or(&empty);
            let mut out = Map::new();
            for (key, lvalue) in lmap {
                let value = match rmap.get(key) {
                    Some(rvalue) => merge(object.child(key).0, lvalue, rvalue),
                    None => lvalue.clone(),
                };
                out.insert(key.clone(), value);
            }
            for (key, rvalue) in rmap.iter().filter(|(key, _)| !lmap.contains_key(*key)) {
                out.insert(key.clone(), rvalue.clone());
            }
            Value::Object(out)
        }
        Node::List(list) => {
            let litems = lhs.as_array().map(Vec::as_slice).unwrap_or_default();
            let ritems = rhs.as_array().map(Vec::as_slice).unwrap_or_default();
            match (list.keys_of(litems), list.keys_of(ritems)) {
                (Some(lkeys), Some(rkeys)) => {
                    Value::Array(merge_items(&list, (&lkeys, litems), (&rkeys, ritems)))
                }
                _ => rhs.clone(),
            }
        }
    }
}

/// Upstream's list merge order: walking both lists, an item only the object has stays in
/// place, an item both have comes when the configuration reaches it (merged), and an item
/// only the configuration has comes in the configuration's order. Items the object has
/// twice are not merged: the configuration's one replaces them.
fn merge_items(
    list: &ListTy,
    (lkeys, litems): (&[PathElement], &[Value]),
    (rkeys, ritems): (&[PathElement], &[Value]),
) -> Vec<Value> {
    // For each key of the object: its item, or None when the key is duplicated.
    let mut observed_lhs: BTreeMap<&PathElement, Option<&Value>> = BTreeMap::new();
    for (key, item) in lkeys.iter().zip(litems) {
        observed_lhs.entry(key).and_modify(|seen| *seen = None).or_insert(Some(item));
    }
    let observed_rhs: BTreeMap<&PathElement, &Value> = rkeys.iter().zip(ritems).collect();
    let mut shared = rkeys.iter().filter(|key| observed_lhs.contains_key(key));
    let mut next_shared = shared.next();
    let mut merged_rhs: BTreeSet<&PathElement> = BTreeSet::new();
    let item_ty = list.item_ty();
    let merge_item = |key: &PathElement, rvalue: &Value| match observed_lhs.get(key) {
        Some(Some(lvalue)) => merge(item_ty, lvalue, rvalue),
        _ => rvalue.clone(),
    };

    let mut out = Vec::with_capacity(litems.len().max(ritems.len()));
    let (mut l, mut r) = (0, 0);
    while l < lkeys.len() || r < rkeys.len() {
        if l < lkeys.len() && r < rkeys.len() {
            let key = &lkeys[l];
            if *key == rkeys[r] {
                merged_rhs.insert(key);
                out.push(merge_item(key, observed_rhs.get(key).copied().unwrap_or(&ritems[r])));
                l += 1;
                r += 1;
                next_shared = shared.next();
                continue;
            }
            if observed_rhs.contains_key(key) && next_shared.is_some_and(|next| next != key) {
                // Shared, but not the next one the configuration reaches: it comes later.
                l += 1;
                continue;
            }
        }
        if l < lkeys.len() {
            let key = &lkeys[l];
            if !observed_rhs.contains_key(key) {
                out.push(litems[l].clone());
                l += 1;
                continue;
            }
            if merged_rhs.contains(key) {
                l += 1;
                continue;
            }
        }
        if r < rkeys.len() {
            let key = &rkeys[r];
            merged_rhs.insert(key);
            out.push(merge_item(key, &ritems[r]));
            r += 1;
            if next_shared == Some(key) {
                next_shared = shared.next();
            }
        }
    }
    out
}

/// Removes what the applier owned at its last apply (`last`) and owns no longer, unless
/// a manager (the applier's new configuration included, in `managed`) owns it. A struct
/// field counts as owned when something below it is; a list item or map entry only when
/// it is itself. A granular object or list left empty by the removal is removed too.
pub(crate) fn prune(ty: Ty, value: &mut Value, last: &Set, managed: &Set) {
    match node(ty, value) {
        Node::Leaf => {}
        Node::Object(object) => {
            let Value::Object(map) = value else { return };
            let empty = Set::default();
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let element = PathElement::field(&key);
                let (child_ty, named) = object.child(&key);
                let owned = |set: &Set| {
                    set.members.contains(&element) || (named && set.children.contains_key(&element))
                };
                if owned(last) && !owned(managed) {
                    map.shift_remove(&key);
                    continue;
                }
                let (Some(child_last), Some(child)) = (last.child(&element), map.get_mut(&key))
                else {
                    continue;
                };
                let had_contents = !is_empty_container(child);
                prune(child_ty, child, child_last, managed.child(&element).unwrap_or(&empty));
                if had_contents && is_empty_container(child) {
                    map.shift_remove(&key);
                }
            }
        }
        Node::List(list) => {
            let Value::Array(items) = value else { return };
            let Some(keys) = list.keys_of(items) else { return };
            let empty = Set::default();
            let item_ty = list.item_ty();
            let mut kept = Vec::with_capacity(items.len());
            for (key, mut item) in keys.into_iter().zip(std::mem::take(items)) {
                if last.members.contains(&key) && !managed.members.contains(&key) {
                    continue;
                }
                if let Some(item_last) = last.child(&key) {
                    let had_contents = !is_empty_container(&item);
                    prune(item_ty, &mut item, item_last, managed.child(&key).unwrap_or(&empty));
                    if had_contents && is_empty_container(&item) {
                        continue;
                    }
                }
                kept.push(item);
            }
            *items = kept;
        }
    }
}

/// Removes the explicit nulls the configuration brought (where the object had no null at
/// the same place): upstream's conversion to the kind's Go type drops them.
pub(crate) fn drop_new_nulls(value: &mut Value, before: Option<&Value>) {
    match value {
        Value::Object(map) => {
            let before = before.and_then(Value::as_object);
            map.retain(|key, child| {
                let old = before.and_then(|before| before.get(key));
                if child.is_null() && !old.is_some_and(Value::is_null) {
                    return false;
                }
                drop_new_nulls(child, old);
                true
            });
        }
        Value::Array(items) => {
            let before = before.and_then(Value::as_array);
            for (index, item) in items.iter_mut().enumerate() {
                drop_new_nulls(item, before.and_then(|before| before.get(index)));
            }
        }
        _ => {}
    }
}
