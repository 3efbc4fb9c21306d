//! Reading and filling fields of JSON objects by path, with Go's notion of a zero value, so
//! that defaulting reads like upstream's `if obj.X == "" { obj.X = ... }`.

use serde_json::{Map, Value};

/// The value at `path` (object keys), if every step exists.
pub(super) fn get<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |current, key| current.get(key))
}

/// The string at `path`, or `""` when it is absent or not a string (Go's zero value).
pub(super) fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    get(value, path).and_then(Value::as_str).unwrap_or("")
}

/// The array at `path`, or an empty slice.
pub(super) fn list<'a>(value: &'a Value, path: &[&str]) -> &'a [Value] {
    get(value, path).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// The object at `path`, if it is one.
pub(super) fn object<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Map<String, Value>> {
    get(value, path).and_then(Value::as_object)
}

/// The object at `path`, created (with every missing step) when absent or null. `None` when
/// something other than an object is in the way: the caller then leaves the value alone and
/// validation reports it.
pub(super) fn object_mut<'a>(
    value: &'a mut Value,
    path: &[&str],
) -> Option<&'a mut Map<String, Value>> {
    let mut current = value;
    for key in path {
        let map = current.as_object_mut()?;
        let entry = map.entry((*key).to_owned()).or_insert(Value::Null);
        if entry.is_null() {
            *entry = Value::Object(Map::new());
        }
        current = entry;
    }
    current.as_object_mut()
}

/// The object at `path` if it already exists; nothing is created.
pub(super) fn existing_mut<'a>(
    value: &'a mut Value,
    path: &[&str],
) -> Option<&'a mut Map<String, Value>> {
    path.iter().try_fold(value, |current, key| current.get_mut(key))?.as_object_mut()
}

/// The object at `path` below a map, if it already exists; nothing is created.
pub(super) fn existing_mut_in<'a>(
    map: &'a mut Map<String, Value>,
    path: &[&str],
) -> Option<&'a mut Map<String, Value>> {
    let (first, rest) = path.split_first()?;
    existing_mut(map.get_mut(*first)?, rest)
}

/// Each object in the array at `key`, mutably.
pub(super) fn each_mut<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    map.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// Whether a field is unset for a pointer field in Go: absent or null.
pub(super) fn is_unset(map: &Map<String, Value>, key: &str) -> bool {
    map.get(key).is_none_or(Value::is_null)
}

/// Whether a field holds Go's zero value for a non-pointer field: unset, `""` or `0`.
pub(super) fn is_zero(map: &Map<String, Value>, key: &str) -> bool {
    match map.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(text)) => text.is_empty(),
        Some(Value::Number(number)) => number.as_f64() == Some(0.0),
        Some(_) => false,
    }
}

/// Sets `key` to `value` when it is unset (a Go pointer default).
pub(super) fn default_unset(map: &mut Map<String, Value>, key: &str, value: Value) {
    if is_unset(map, key) {
        map.insert(key.to_owned(), value);
    }
}

/// Sets `key` to `value` when it holds a zero value (a Go non-pointer default).
pub(super) fn default_zero(map: &mut Map<String, Value>, key: &str, value: Value) {
    if is_zero(map, key) {
        map.insert(key.to_owned(), value);
    }
}

/// Whether a map-valued field is absent, null or empty (Go's `len(m) == 0`).
pub(super) fn is_empty_map(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::Object(map)) => map.is_empty(),
        Some(_) => false,
    }
}

/// The object without `metadata`, `status`, `apiVersion` and `kind`: what a change of
/// generation is measured against.
pub(super) fn content(object: &Value) -> Map<String, Value> {
    let mut map = object.as_object().cloned().unwrap_or_default();
    for key in ["metadata", "status", "apiVersion", "kind"] {
        map.remove(key);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn zero_values_follow_go() {
        let map = json!({"a": "", "b": 0, "c": null, "d": false, "e": "x"});
        let map = map.as_object().unwrap();
        for (key, zero) in [("a", true), ("b", true), ("c", true), ("d", false), ("e", false)] {
            assert_eq!(is_zero(map, key), zero, "{key}");
        }
        assert!(is_zero(map, "missing"));
        assert!(!is_unset(map, "a"));
    }

    #[test]
    fn object_mut_creates_missing_steps_but_not_through_scalars() {
        let mut value = json!({"spec": {"x": 1}});
        object_mut(&mut value, &["spec", "template", "spec"]).unwrap().insert("a".into(), 1.into());
        assert_eq!(value, json!({"spec": {"x": 1, "template": {"spec": {"a": 1}}}}));
        assert!(object_mut(&mut value, &["spec", "x", "y"]).is_none());
    }
}
