//! JSON patch (RFC 6902) as kube-apiserver applies it, which is evanphx/json-patch v4's
//! reading of the RFC: the same operations and pointers, with that library's leniencies
//! (negative and zero-padded array indices, `replace` of a missing object key adding it,
//! `copy` of a missing object key copying `null`, a missing `value` meaning `null`) and its
//! error messages, which kubectl shows verbatim.

use super::PatchError;
use serde_json::{Map, Value};

/// Upstream's wording for "this part of the document is absent"; it ends most messages.
const MISSING: &str = "missing value";

/// Applies `patch` to a copy of `target`.
pub(super) fn apply(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    let operations = match patch {
        // Go decodes `null` into an empty list of operations.
        Value::Null => return Ok(target.clone()),
        Value::Array(operations) => operations,
        other => {
            return Err(PatchError::Malformed(format!(
                "json: cannot unmarshal {} into Go value of type jsonpatch.Patch",
                json_kind(other)
            )));
        }
    };
    // Upstream decodes the whole patch before applying any of it, so a malformed operation
    // anywhere wins over a failing one before it.
    let operations = operations.iter().map(Operation::parse).collect::<Result<Vec<_>, _>>()?;
    let mut document = target.clone();
    for operation in &operations {
        operation.apply(&mut document).map_err(PatchError::Inapplicable)?;
    }
    Ok(document)
}

/// One decoded operation. Fields are absent when the patch left them out (or set `null`,
/// which upstream reads the same way); `value` keeps an explicit `null` apart.
#[derive(Debug)]
struct Operation<'a> {
    op: Option<&'a str>,
    path: Option<&'a str>,
    from: Option<&'a str>,
    value: Option<&'a Value>,
}

impl<'a> Operation<'a> {
    fn parse(operation: &'a Value) -> Result<Operation<'a>, PatchError> {
        let operation = match operation {
            Value::Object(fields) => fields,
            // A `null` operation decodes as an empty one, which fails as an unknown kind.
            Value::Null => {
                return Ok(Operation { op: None, path: None, from: None, value: None });
            }
            other => {
                return Err(PatchError::Malformed(format!(
                    "json: cannot unmarshal {} into Go value of type jsonpatch.Operation",
                    json_kind(other)
                )));
            }
        };
        Ok(Operation {
            op: string_field(operation, "op")?,
            path: string_field(operation, "path")?,
            from: string_field(operation, "from")?,
            value: operation.get("value"),
        })
    }

    fn value(&self) -> Value {
        self.value.cloned().unwrap_or(Value::Null)
    }

    fn apply(&self, document: &mut Value) -> Result<(), String> {
        match self.op.unwrap_or("unknown") {
            "add" => self.add(document),
            "remove" => self.remove(document),
            "replace" => self.replace(document),
            "move" => self.move_value(document),
            "copy" => self.copy(document),
            "test" => self.test(document),
            other => Err(format!("Unexpected kind: {other}")),
        }
    }

    fn add(&self, document: &mut Value) -> Result<(), String> {
        let path =
            self.path.ok_or_else(|| format!("add operation failed to decode path: {MISSING}"))?;
        let (container, key) = parent(document, path).ok_or_else(|| {
            format!("add operation does not apply: doc is missing path: \"{path}\": {MISSING}")
        })?;
        insert(container, &key, self.value())
            .map_err(|error| format!("error in add for path: '{path}': {error}"))
    }

    fn remove(&self, document: &mut Value) -> Result<(), String> {
        let path = self
            .path
            .ok_or_else(|| format!("remove operation failed to decode path: {MISSING}"))?;
        let (container, key) = parent(document, path).ok_or_else(|| {
            format!("remove operation does not apply: doc is missing path: \"{path}\": {MISSING}")
        })?;
        take(container, &key)
            .map(drop)
            .map_err(|error| format!("error in remove for path: '{path}': {error}"))
    }

    fn replace(&self, document: &mut Value) -> Result<(), String> {
        let path = self.path.ok_or_else(|| {
            format!("replace operation failed to decode path: {}", missing_field("path"))
        })?;
        if path.is_empty() {
            return match self.value {
                Some(value @ (Value::Object(_) | Value::Array(_))) => {
                    *document = value.clone();
                    Ok(())
                }
                _ => Err("replace operation value must be object or array".to_owned()),
            };
        }
        let (container, key) = parent(document, path).ok_or_else(|| {
            format!("replace operation does not apply: doc is missing path: {path}: {MISSING}")
        })?;
        match container {
            // Upstream looks the key up without checking that it exists, then sets it.
            Value::Object(fields) => {
                fields.insert(key, self.value());
            }
            Value::Array(items) => {
                let index = existing_index(items.len(), &key).map_err(|_| {
                    format!(
                        "replace operation does not apply: doc is missing key: {path}: {MISSING}"
                    )
                })?;
                items[index] = self.value();
            }
            _ => {
                return Err(format!(
                    "replace operation does not apply: doc is missing path: {path}: {MISSING}"
                ));
            }
        }
        Ok(())
    }

    fn move_value(&self, document: &mut Value) -> Result<(), String> {
        let from = self.from.ok_or_else(|| {
            format!("move operation failed to decode from: {}", missing_field("from"))
        })?;
        let (container, key) = parent(document, from).ok_or_else(|| {
            format!("move operation does not apply: doc is missing from path: {from}: {MISSING}")
        })?;
        let value = take(container, &key)
            .map_err(|error| format!("error in move for path: '{key}': {error}"))?;
        let path = self.path.ok_or_else(|| {
            format!("move operation failed to decode path: {}", missing_field("path"))
        })?;
        // Moving a value into itself fails here: its old place is gone already.
        let (container, key) = parent(document, path).ok_or_else(|| {
            format!(
                "move operation does not apply: doc is missing destination path: {path}: {MISSING}"
            )
        })?;
        insert(container, &key, value)
            .map_err(|error| format!("error in move for path: '{path}': {error}"))
    }

    fn copy(&self, document: &mut Value) -> Result<(), String> {
        let from = self.from.ok_or_else(|| {
            format!("copy operation failed to decode from: {}", missing_field("from"))
        })?;
        let (container, key) = parent(document, from).ok_or_else(|| {
            format!("copy operation does not apply: doc is missing from path: {from}: {MISSING}")
        })?;
        let value = get(container, &key)
            .map_err(|error| format!("error in copy for from: '{from}': {error}"))?
            .cloned()
            .unwrap_or(Value::Null);
        let path =
            self.path.ok_or_else(|| format!("copy operation failed to decode path: {MISSING}"))?;
        let (container, key) = parent(document, path).ok_or_else(|| {
            format!(
                "copy operation does not apply: doc is missing destination path: {path}: {MISSING}"
            )
        })?;
        insert(container, &key, value)
            .map_err(|error| format!("error while adding value during copy: {error}"))
    }

    fn test(&self, document: &mut Value) -> Result<(), String> {
        let path = self.path.ok_or_else(|| {
            format!("test operation failed to decode path: {}", missing_field("path"))
        })?;
        let failed = || format!("testing value {path} failed: test failed");
        if path.is_empty() {
            return if self.value == Some(&*document) { Ok(()) } else { Err(failed()) };
        }
        let (container, key) = parent(document, path).ok_or_else(|| {
            format!("test operation does not apply: is missing path: {path}: {MISSING}")
        })?;
        let actual = get(container, &key)
            .map_err(|error| format!("error in test for path: '{path}': {error}"))?;
        // Upstream cannot tell a missing key from a `null` one, on either side.
        let matches = match (actual.filter(|value| !value.is_null()), self.value) {
            (None, None | Some(Value::Null)) => true,
            (Some(actual), Some(expected)) => actual == expected,
            _ => false,
        };
        if matches { Ok(()) } else { Err(failed()) }
    }
}

fn string_field<'a>(
    operation: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, PatchError> {
    match operation.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(PatchError::Malformed(format!(
            "error decoding patch: json: cannot unmarshal {} into Go struct field jsonPatchOp.{name} of type string",
            json_kind(other)
        ))),
    }
}

fn missing_field(name: &str) -> String {
    match name {
        "path" => format!("operation missing path field: {MISSING}"),
        _ => format!("operation, missing {name} field: {MISSING}"),
    }
}

/// Resolves every token of `pointer` but the last, and returns that container (an object
/// or an array) with the last token, unescaped. `None` when the pointer is empty or does not
/// start at the root, or when any step is absent, `null` or not a container.
fn parent<'d>(document: &'d mut Value, pointer: &str) -> Option<(&'d mut Value, String)> {
    let rest = pointer.strip_prefix('/')?;
    let mut tokens: Vec<String> = rest.split('/').map(unescape).collect();
    let last = tokens.pop()?;
    let mut current = document;
    for token in tokens {
        current = match current {
            Value::Object(fields) => fields.get_mut(&token)?,
            Value::Array(items) => {
                let index = existing_index(items.len(), &token).ok()?;
                items.get_mut(index)?
            }
            _ => return None,
        };
    }
    match current {
        Value::Object(_) | Value::Array(_) => Some((current, last)),
        _ => None,
    }
}

/// RFC 6901: `~1` is `/` and `~0` is `~`, read left to right (so `~01` is `~1`). Other
/// sequences after `~` stay as they are, as upstream leaves them.
fn unescape(token: &str) -> String {
    let mut unescaped = String::with_capacity(token.len());
    let mut chars = token.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('~', Some('1')) => {
                unescaped.push('/');
                chars.next();
            }
            ('~', Some('0')) => {
                unescaped.push('~');
                chars.next();
            }
            _ => unescaped.push(c),
        }
    }
    unescaped
}

fn get<'c>(container: &'c Value, key: &str) -> Result<Option<&'c Value>, String> {
    match container {
        Value::Object(fields) => Ok(fields.get(key)),
        Value::Array(items) => Ok(items.get(existing_index(items.len(), key)?)),
        _ => Ok(None),
    }
}

fn insert(container: &mut Value, key: &str, value: Value) -> Result<(), String> {
    match container {
        Value::Object(fields) => {
            fields.insert(key.to_owned(), value);
        }
        Value::Array(items) if key == "-" => items.push(value),
        Value::Array(items) => {
            let index = go_atoi(key)
                .map_err(|error| format!("value was not a proper array index: '{key}': {error}"))?;
            // The new item may go anywhere up to one past the end; negative indices count
            // from that end.
            let index = resolve(index, items.len() + 1)?;
            items.insert(index, value);
        }
        _ => return Err(MISSING.to_owned()),
    }
    Ok(())
}

fn take(container: &mut Value, key: &str) -> Result<Value, String> {
    match container {
        Value::Object(fields) => fields
            .shift_remove(key)
            .ok_or_else(|| format!("Unable to remove nonexistent key: {key}: {MISSING}")),
        Value::Array(items) => {
            let index = existing_index(items.len(), key)?;
            Ok(items.remove(index))
        }
        _ => Err(MISSING.to_owned()),
    }
}

/// The position of an existing item: `key` as Go's `strconv.Atoi` reads it, negative
/// counting from the end.
fn existing_index(len: usize, key: &str) -> Result<usize, String> {
    resolve(go_atoi(key)?, len)
}

fn resolve(index: i64, len: usize) -> Result<usize, String> {
    let invalid = || format!("Unable to access invalid index: {index}: invalid index referenced");
    let len = i64::try_from(len).map_err(|_| invalid())?;
    let resolved = if index < 0 { index + len } else { index };
    if resolved < 0 || resolved >= len {
        return Err(invalid());
    }
    usize::try_from(resolved).map_err(|_| invalid())
}

/// Go's `strconv.Atoi`: an optional sign, then decimal digits (leading zeros allowed).
fn go_atoi(text: &str) -> Result<i64, String> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.Atoi: parsing {text:?}: invalid syntax"));
    }
    let magnitude = digits.bytes().try_fold(0_i128, |acc, digit| {
        let acc = acc * 10 + i128::from(digit - b'0');
        (acc <= i128::from(i64::MAX) + 1).then_some(acc)
    });
    let signed = magnitude.map(|m| if text.starts_with('-') { -m } else { m });
    signed
        .and_then(|value| i64::try_from(value).ok())
        .ok_or_else(|| format!("strconv.Atoi: parsing {text:?}: value out of range"))
}

/// How Go's decoder names a JSON value's type in its errors.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::super::{PatchError, json_patch};
    use serde_json::{Value, json};

    fn check_json_patch(target: Value, patch: Value, expected: Result<Value, PatchError>) {
        assert_eq!(json_patch(&target, &patch), expected, "{target} + {patch}");
    }

    fn inapplicable(message: &str) -> Result<Value, PatchError> {
        Err(PatchError::Inapplicable(message.to_owned()))
    }

    fn malformed(message: &str) -> Result<Value, PatchError> {
        Err(PatchError::Malformed(message.to_owned()))
    }

    /// The examples of RFC 6902 appendix A, in order.
    #[test]
    fn rfc_6902_appendix_a() {
        let cases = [
            (
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/baz", "value": "qux"}]),
                Ok(json!({"baz": "qux", "foo": "bar"})),
            ),
            (
                json!({"foo": ["bar", "baz"]}),
                json!([{"op": "add", "path": "/foo/1", "value": "qux"}]),
                Ok(json!({"foo": ["bar", "qux", "baz"]})),
            ),
            (
                json!({"baz": "qux", "foo": "bar"}),
                json!([{"op": "remove", "path": "/baz"}]),
                Ok(json!({"foo": "bar"})),
            ),
            (
                json!({"foo": ["bar", "qux", "baz"]}),
                json!([{"op": "remove", "path": "/foo/1"}]),
                Ok(json!({"foo": ["bar", "baz"]})),
            ),
            (
                json!({"baz": "qux", "foo": "bar"}),
                json!([{"op": "replace", "path": "/baz", "value": "boo"}]),
                Ok(json!({"baz": "boo", "foo": "bar"})),
            ),
            (
                json!({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}),
                json!([{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}]),
                Ok(json!({"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}})),
            ),
            (
                json!({"foo": ["all", "grass", "cows", "eat"]}),
                json!([{"op": "move", "from": "/foo/1", "path": "/foo/3"}]),
                Ok(json!({"foo": ["all", "cows", "eat", "grass"]})),
            ),
            (
                json!({"baz": "qux", "foo": ["a", 2, "c"]}),
                json!([{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}]),
                Ok(json!({"baz": "qux", "foo": ["a", 2, "c"]})),
            ),
            (
                json!({"baz": "qux"}),
                json!([{"op": "test", "path": "/baz", "value": "bar"}]),
                inapplicable("testing value /baz failed: test failed"),
            ),
            (
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/child", "value": {"grandchild": {}}}]),
                Ok(json!({"foo": "bar", "child": {"grandchild": {}}})),
            ),
            (
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}]),
                Ok(json!({"foo": "bar", "baz": "qux"})),
            ),
            (
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/baz/bat", "value": "qux"}]),
                inapplicable(
                    "add operation does not apply: doc is missing path: \"/baz/bat\": missing value",
                ),
            ),
            (
                json!({"/": 9, "~1": 10}),
                json!([{"op": "test", "path": "/~01", "value": 10}]),
                Ok(json!({"/": 9, "~1": 10})),
            ),
            (
                json!({"/": 9, "~1": 10}),
                json!([{"op": "test", "path": "/~01", "value": "10"}]),
                inapplicable("testing value /~01 failed: test failed"),
            ),
            (
                json!({"foo": ["bar"]}),
                json!([{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}]),
                Ok(json!({"foo": ["bar", ["abc", "def"]]})),
            ),
        ];
        for (target, patch, expected) in cases {
            check_json_patch(target, patch, expected);
        }
    }

    #[test]
    fn pointers_and_indices() {
        let doc = json!({"a/b": 1, "m~n": 2, "list": [1, 2, 3], "obj": {"x": null}});
        let cases = [
            (
                json!([{"op": "replace", "path": "/a~1b", "value": 5}]),
                Ok(json!({"a/b": 5, "m~n": 2, "list": [1, 2, 3], "obj": {"x": null}})),
            ),
            (
                json!([{"op": "remove", "path": "/m~0n"}]),
                Ok(json!({"a/b": 1, "list": [1, 2, 3], "obj": {"x": null}})),
            ),
            // Insert at the end (index == len) and append with `-`.
            (
                json!([{"op": "add", "path": "/list/3", "value": 4}]),
                Ok(json!({"a/b": 1, "m~n": 2, "list": [1, 2, 3, 4], "obj": {"x": null}})),
            ),
            (
                json!([{"op": "add", "path": "/list/-", "value": 4}]),
                Ok(json!({"a/b": 1, "m~n": 2, "list": [1, 2, 3, 4], "obj": {"x": null}})),
            ),
            (
                json!([{"op": "add", "path": "/list/4", "value": 4}]),
                inapplicable(
                    "error in add for path: '/list/4': Unable to access invalid index: 4: invalid index referenced",
                ),
            ),
            (
                json!([{"op": "remove", "path": "/list/3"}]),
                inapplicable(
                    "error in remove for path: '/list/3': Unable to access invalid index: 3: invalid index referenced",
                ),
            ),
            (
                json!([{"op": "replace", "path": "/list/3", "value": 0}]),
                inapplicable(
                    "replace operation does not apply: doc is missing key: /list/3: missing value",
                ),
            ),
            (
                json!([{"op": "test", "path": "/list/3", "value": 0}]),
                inapplicable(
                    "error in test for path: '/list/3': Unable to access invalid index: 3: invalid index referenced",
                ),
            ),
            // Upstream reads indices with strconv.Atoi: zero padding and negatives are fine.
            (
                json!([{"op": "replace", "path": "/list/01", "value": 0}]),
                Ok(json!({"a/b": 1, "m~n": 2, "list": [1, 0, 3], "obj": {"x": null}})),
            ),
            (
                json!([{"op": "remove", "path": "/list/-1"}]),
                Ok(json!({"a/b": 1, "m~n": 2, "list": [1, 2], "obj": {"x": null}})),
            ),
            (
                json!([{"op": "add", "path": "/list/-1", "value": 9}]),
                Ok(json!({"a/b": 1, "m~n": 2, "list": [1, 2, 3, 9], "obj": {"x": null}})),
            ),
            (
                json!([{"op": "remove", "path": "/list/-4"}]),
                inapplicable(
                    "error in remove for path: '/list/-4': Unable to access invalid index: -4: invalid index referenced",
                ),
            ),
            (
                json!([{"op": "add", "path": "/list/x", "value": 9}]),
                inapplicable(
                    "error in add for path: '/list/x': value was not a proper array index: 'x': strconv.Atoi: parsing \"x\": invalid syntax",
                ),
            ),
            (
                json!([{"op": "remove", "path": "/list/-"}]),
                inapplicable(
                    "error in remove for path: '/list/-': strconv.Atoi: parsing \"-\": invalid syntax",
                ),
            ),
            (
                json!([{"op": "add", "path": "/list/99999999999999999999", "value": 9}]),
                inapplicable(
                    "error in add for path: '/list/99999999999999999999': value was not a proper array index: '99999999999999999999': strconv.Atoi: parsing \"99999999999999999999\": value out of range",
                ),
            ),
            // Through a list into an object, and through a `null`, which is missing.
            (
                json!([{"op": "add", "path": "/obj/x/y", "value": 1}]),
                inapplicable(
                    "add operation does not apply: doc is missing path: \"/obj/x/y\": missing value",
                ),
            ),
            (
                json!([{"op": "add", "path": "/a~1b/y", "value": 1}]),
                inapplicable(
                    "add operation does not apply: doc is missing path: \"/a~1b/y\": missing value",
                ),
            ),
            // The root: upstream's add and remove do not reach it; replace and test do.
            (
                json!([{"op": "add", "path": "", "value": {}}]),
                inapplicable(
                    "add operation does not apply: doc is missing path: \"\": missing value",
                ),
            ),
            (json!([{"op": "replace", "path": "", "value": {"z": 1}}]), Ok(json!({"z": 1}))),
            (
                json!([{"op": "replace", "path": "", "value": 1}]),
                inapplicable("replace operation value must be object or array"),
            ),
            (
                json!([{"op": "test", "path": "", "value": {"a/b": 1, "m~n": 2, "list": [1, 2, 3], "obj": {"x": null}}}]),
                Ok(doc.clone()),
            ),
            (
                json!([{"op": "remove", "path": "nope"}]),
                inapplicable(
                    "remove operation does not apply: doc is missing path: \"nope\": missing value",
                ),
            ),
        ];
        for (patch, expected) in cases {
            check_json_patch(doc.clone(), patch, expected);
        }
    }

    #[test]
    fn operations_and_their_errors() {
        let doc = json!({"spec": {"replicas": 1, "template": {"x": [1]}}, "status": {}});
        let cases = [
            (
                json!([{"op": "remove", "path": "/spec/nope"}]),
                inapplicable(
                    "error in remove for path: '/spec/nope': Unable to remove nonexistent key: nope: missing value",
                ),
            ),
            // Upstream's replace does not check that an object's key exists.
            (
                json!([{"op": "replace", "path": "/spec/paused", "value": true}]),
                Ok(
                    json!({"spec": {"replicas": 1, "template": {"x": [1]}, "paused": true}, "status": {}}),
                ),
            ),
            (
                json!([{"op": "replace", "path": "/nope/paused", "value": true}]),
                inapplicable(
                    "replace operation does not apply: doc is missing path: /nope/paused: missing value",
                ),
            ),
            (
                json!([{"op": "move", "from": "/spec/template", "path": "/status/template"}]),
                Ok(json!({"spec": {"replicas": 1}, "status": {"template": {"x": [1]}}})),
            ),
            (
                json!([{"op": "move", "from": "/spec", "path": "/spec/inner"}]),
                inapplicable(
                    "move operation does not apply: doc is missing destination path: /spec/inner: missing value",
                ),
            ),
            (
                json!([{"op": "move", "from": "/spec/nope", "path": "/x"}]),
                inapplicable(
                    "error in move for path: 'nope': Unable to remove nonexistent key: nope: missing value",
                ),
            ),
            (
                json!([{"op": "move", "from": "/nope/x", "path": "/x"}]),
                inapplicable(
                    "move operation does not apply: doc is missing from path: /nope/x: missing value",
                ),
            ),
            (
                json!([{"op": "move", "path": "/x"}]),
                inapplicable(
                    "move operation failed to decode from: operation, missing from field: missing value",
                ),
            ),
            (
                json!([{"op": "copy", "from": "/spec/template/x", "path": "/status/x"}]),
                Ok(json!({"spec": {"replicas": 1, "template": {"x": [1]}}, "status": {"x": [1]}})),
            ),
            (
                json!([{"op": "copy", "from": "/spec/template/x/0", "path": "/spec/template/x/0"}]),
                Ok(json!({"spec": {"replicas": 1, "template": {"x": [1, 1]}}, "status": {}})),
            ),
            // Upstream copies a missing object key as `null`.
            (
                json!([{"op": "copy", "from": "/spec/nope", "path": "/status/x"}]),
                Ok(json!({"spec": {"replicas": 1, "template": {"x": [1]}}, "status": {"x": null}})),
            ),
            (
                json!([{"op": "copy", "from": "/spec/template/x/5", "path": "/status/x"}]),
                inapplicable(
                    "error in copy for from: '/spec/template/x/5': Unable to access invalid index: 5: invalid index referenced",
                ),
            ),
            (
                json!([{"op": "copy", "from": "/spec", "path": "/nope/x"}]),
                inapplicable(
                    "copy operation does not apply: doc is missing destination path: /nope/x: missing value",
                ),
            ),
            (
                json!([{"op": "copy", "from": "/spec"}]),
                inapplicable("copy operation failed to decode path: missing value"),
            ),
            // A missing value adds `null`; a missing or `null` key tests equal to `null`.
            (
                json!([{"op": "add", "path": "/status/x"}]),
                Ok(json!({"spec": {"replicas": 1, "template": {"x": [1]}}, "status": {"x": null}})),
            ),
            (json!([{"op": "test", "path": "/status/x", "value": null}]), Ok(doc.clone())),
            (json!([{"op": "test", "path": "/status/x"}]), Ok(doc.clone())),
            (
                json!([{"op": "test", "path": "/spec/replicas"}]),
                inapplicable("testing value /spec/replicas failed: test failed"),
            ),
            (
                json!([{"op": "test", "path": "/spec/template", "value": {"x": [1]}}]),
                Ok(doc.clone()),
            ),
            (
                json!([{"op": "test", "path": "/spec/template", "value": {"x": [1, 2]}}]),
                inapplicable("testing value /spec/template failed: test failed"),
            ),
            (
                json!([{"op": "test", "path": "/x/y", "value": 1}]),
                inapplicable("test operation does not apply: is missing path: /x/y: missing value"),
            ),
            (
                json!([{"op": "test", "value": 1}]),
                inapplicable(
                    "test operation failed to decode path: operation missing path field: missing value",
                ),
            ),
            // Operations apply in order, each on the last one's result; any failure undoes all.
            (
                json!([{"op": "add", "path": "/spec/replicas", "value": 3}, {"op": "test", "path": "/spec/replicas", "value": 3}, {"op": "remove", "path": "/status"}]),
                Ok(json!({"spec": {"replicas": 3, "template": {"x": [1]}}})),
            ),
            (
                json!([{"op": "remove", "path": "/status"}, {"op": "test", "path": "/status", "value": {}}]),
                inapplicable("testing value /status failed: test failed"),
            ),
            // What kubectl rollout undo sends.
            (
                json!([{"op": "replace", "path": "/spec/template", "value": {"y": 2}}]),
                Ok(json!({"spec": {"replicas": 1, "template": {"y": 2}}, "status": {}})),
            ),
        ];
        for (patch, expected) in cases {
            check_json_patch(doc.clone(), patch, expected);
        }
    }

    #[test]
    fn malformed_patches() {
        let doc = json!({"a": 1});
        let cases = [
            (
                json!({"op": "add"}),
                malformed("json: cannot unmarshal object into Go value of type jsonpatch.Patch"),
            ),
            (
                json!("x"),
                malformed("json: cannot unmarshal string into Go value of type jsonpatch.Patch"),
            ),
            (
                json!([1]),
                malformed(
                    "json: cannot unmarshal number into Go value of type jsonpatch.Operation",
                ),
            ),
            (
                json!([{"op": 1, "path": "/a"}]),
                malformed(
                    "error decoding patch: json: cannot unmarshal number into Go struct field jsonPatchOp.op of type string",
                ),
            ),
            (
                json!([{"op": "add", "path": ["a"]}]),
                malformed(
                    "error decoding patch: json: cannot unmarshal array into Go struct field jsonPatchOp.path of type string",
                ),
            ),
            // Decoding comes first: a malformed operation wins over an earlier failing one.
            (
                json!([{"op": "test", "path": "/a", "value": 2}, {"op": "add", "path": 5}]),
                malformed(
                    "error decoding patch: json: cannot unmarshal number into Go struct field jsonPatchOp.path of type string",
                ),
            ),
            // Upstream rejects these while applying (422), not while decoding.
            (
                json!([{"op": "frobnicate", "path": "/a"}]),
                inapplicable("Unexpected kind: frobnicate"),
            ),
            (json!([{"path": "/a"}]), inapplicable("Unexpected kind: unknown")),
            (json!([null]), inapplicable("Unexpected kind: unknown")),
            (
                json!([{"op": "add", "value": 1}]),
                inapplicable("add operation failed to decode path: missing value"),
            ),
            (
                json!([{"op": "remove"}]),
                inapplicable("remove operation failed to decode path: missing value"),
            ),
            (
                json!([{"op": "replace", "value": 1}]),
                inapplicable(
                    "replace operation failed to decode path: operation missing path field: missing value",
                ),
            ),
            // Nothing to do.
            (json!(null), Ok(doc.clone())),
            (json!([]), Ok(doc.clone())),
        ];
        for (patch, expected) in cases {
            check_json_patch(doc.clone(), patch, expected);
        }
    }
}
