//! Field paths and sets of them, as structured-merge-diff's `fieldpath` package models
//! them: a path is a list of elements (a field name, a list-map key, a set value or a list
//! index); a [`Set`] is a tree of paths; `FieldsV1` is a set's JSON encoding
//! (`{"f:spec":{"f:replicas":{}}}`), the one `metadata.managedFields` carries.
//!
//! Sets are exact: `spec.replicas` in a set says nothing about `spec`, and removing
//! `spec` from a set leaves `spec.replicas` in it. Elements are ordered as upstream orders
//! them (fields, then keys, then values, then indices), which is also the order FieldsV1
//! lists them in.

use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// One step of a path.
#[derive(Debug, Clone)]
pub(crate) enum PathElement {
    /// A struct field or a map key: `f:replicas`, printed `.replicas`.
    Field(String),
    /// A list-map item, by its key fields sorted by name: `k:{"name":"web"}`, printed
    /// `[name="web"]`.
    Key(Vec<(String, Value)>),
    /// A set item, by its value: `v:"a"`, printed `[="a"]`.
    Value(Value),
    /// A positional item: `i:0`, printed `[0]`. Never produced here (lists without keys are
    /// atomic), but read and kept when found in stored managedFields.
    Index(usize),
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        use PathElement::{Field, Index, Key, Value};
        match (self, other) {
            (Field(a), Field(b)) => a.cmp(b),
            (Field(_), _) => Ordering::Less,
            (_, Field(_)) => Ordering::Greater,
            (Key(a), Key(b)) => compare_keys(a, b),
            (Key(_), _) => Ordering::Less,
            (_, Key(_)) => Ordering::Greater,
            (Value(a), Value(b)) => compare_values(a, b),
            (Value(_), _) => Ordering::Less,
            (_, Value(_)) => Ordering::Greater,
            (Index(a), Index(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

impl PathElement {
    pub(crate) fn field(name: &str) -> PathElement {
        PathElement::Field(name.to_owned())
    }

    /// The element as a FieldsV1 key: `f:name`, `k:{"name":"web"}`, `v:"a"`, `i:0`.
    pub(crate) fn serialize(&self) -> String {
        let mut out = String::new();
        match self {
            PathElement::Field(name) => {
                out.push_str("f:");
                out.push_str(name);
            }
            PathElement::Key(fields) => {
                out.push_str("k:{");
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    go_json_string(name, &mut out);
                    out.push(':');
                    go_json(value, &mut out);
                }
                out.push('}');
            }
            PathElement::Value(value) => {
                out.push_str("v:");
                go_json(value, &mut out);
            }
            PathElement::Index(index) => {
                let _ = write!(out, "i:{index}");
            }
        }
        out
    }

    /// Reads a FieldsV1 key. `Ok(None)` for a well-formed key of a kind this version does
    /// not know (`x:...`), which upstream drops rather than fails on.
    pub(crate) fn deserialize(text: &str) -> Result<Option<PathElement>, String> {
        let Some((kind, rest)) = text.split_at_checked(2) else {
            return Err(format!("key must be 2 characters long: {text:?}"));
        };
        if !kind.ends_with(':') {
            return Err(format!("missing colon: {text}"));
        }
        let element = match kind {
            "f:" => PathElement::Field(rest.to_owned()),
            "v:" => PathElement::Value(
                serde_json::from_str(rest).map_err(|err| format!("{text}: {err}"))?,
            ),
            "k:" => {
                let fields: Map<String, Value> =
                    serde_json::from_str(rest).map_err(|err| format!("{text}: {err}"))?;
                let mut fields: Vec<(String, Value)> = fields.into_iter().collect();
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                PathElement::Key(fields)
            }
            "i:" => PathElement::Index(rest.parse().map_err(|err| format!("{text}: {err}"))?),
            _ => return Ok(None),
        };
        Ok(Some(element))
    }
}

/// A path as upstream prints it in conflicts: `.spec.containers[name="web"].image`.
pub(crate) fn path_string(path: &[PathElement]) -> String {
    let mut out = String::new();
    for element in path {
        match element {
            PathElement::Field(name) => {
                out.push('.');
                out.push_str(name);
            }
            PathElement::Key(fields) => {
                out.push('[');
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(name);
                    out.push('=');
                    out.push_str(&value_string(value));
                }
                out.push(']');
            }
            PathElement::Value(value) => {
                out.push_str("[=");
                out.push_str(&value_string(value));
                out.push(']');
            }
            PathElement::Index(index) => {
                let _ = write!(out, "[{index}]");
            }
        }
    }
    out
}

/// A value as structured-merge-diff's `value.ToString` prints it (strings Go-quoted).
fn value_string(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => go_quote(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(value_string).collect();
            format!("[{}]", items.join(","))
        }
        Value::Object(map) => map.iter().map(|(k, v)| format!("{k}={}", value_string(v))).collect(),
    }
}

/// Go's `%q`: a double-quoted string with Go escapes.
fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// JSON as Go's `encoding/json` writes it: object keys sorted, `<`, `>`, `&`, U+2028 and
/// U+2029 escaped. Used for FieldsV1 keys and the last-applied annotation, whose bytes
/// clients compare.
pub(crate) fn go_json(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => go_json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json_string(key, out);
                out.push(':');
                go_json(item, out);
            }
            out.push('}');
        }
    }
}

fn go_json_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Upstream's total order of values: numbers, strings, booleans, lists, maps, null.
pub(crate) fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(value: &Value) -> u8 {
        match value {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let whole = |n: &serde_json::Number| {
                n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from))
            };
            match (whole(x), whole(y)) {
                (Some(x), Some(y)) => x.cmp(&y),
                _ => {
                    let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                    x.partial_cmp(&y).unwrap_or(Ordering::Equal)
                }
            }
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (x, y) in x.iter().zip(y) {
                match compare_values(x, y) {
                    Ordering::Equal => {}
                    other => return other,
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xs: Vec<(&String, &Value)> = x.iter().collect();
            let mut ys: Vec<(&String, &Value)> = y.iter().collect();
            xs.sort_by(|a, b| a.0.cmp(b.0));
            ys.sort_by(|a, b| a.0.cmp(b.0));
            for ((xk, xv), (yk, yv)) in xs.iter().zip(&ys) {
                match xk.cmp(yk).then_with(|| compare_values(xv, yv)) {
                    Ordering::Equal => {}
                    other => return other,
                }
            }
            xs.len().cmp(&ys.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Whether two values are equal as upstream compares them (`1` equals `1.0`).
pub(crate) fn values_equal(a: &Value, b: &Value) -> bool {
    compare_values(a, b) == Ordering::Equal
}

fn compare_keys(a: &[(String, Value)], b: &[(String, Value)]) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| {
        for ((an, av), (bn, bv)) in a.iter().zip(b) {
            match an.cmp(bn).then_with(|| compare_values(av, bv)) {
                Ordering::Equal => {}
                other => return other,
            }
        }
        Ordering::Equal
    })
}

/// A set of paths, as a tree: the elements that end a path here (`members`) and, per
/// element, the set below it (`children`, never empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Set {
    pub(crate) members: BTreeSet<PathElement>,
    pub(crate) children: BTreeMap<PathElement, Set>,
}

impl Set {
    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds a path; the empty path (the root) is never a member.
    pub(crate) fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => {
                self.children.entry(first.clone()).or_default().insert(rest);
            }
        }
    }

    pub(crate) fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|child| child.has(rest)),
        }
    }

    /// The set below `element`.
    pub(crate) fn child(&self, element: &PathElement) -> Option<&Set> {
        self.children.get(element)
    }

    pub(crate) fn union_with(&mut self, other: &Set) {
        self.members.extend(other.members.iter().cloned());
        for (element, child) in &other.children {
            self.children.entry(element.clone()).or_default().union_with(child);
        }
    }

    pub(crate) fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    /// The paths of `self` that are not in `other`.
    pub(crate) fn difference(&self, other: &Set) -> Set {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(element, child)| {
                let rest = match other.children.get(element) {
                    Some(theirs) => child.difference(theirs),
                    None => child.clone(),
                };
                (!rest.is_empty()).then(|| (element.clone(), rest))
            })
            .collect();
        Set { members, children }
    }

    pub(crate) fn intersection(&self, other: &Set) -> Set {
        let members = self.members.intersection(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(element, child)| {
                let both = child.intersection(other.children.get(element)?);
                (!both.is_empty()).then(|| (element.clone(), both))
            })
            .collect();
        Set { members, children }
    }

    /// Every path, in upstream's iteration order: this level's members, then each child's
    /// paths.
    pub(crate) fn paths(&self) -> Vec<Vec<PathElement>> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
        for member in &self.members {
            let mut path = prefix.clone();
            path.push(member.clone());
            out.push(path);
        }
        for (element, child) in &self.children {
            prefix.push(element.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The set without the top-level field `name` and everything below it.
    pub(crate) fn without_field(&self, name: &str) -> Set {
        let element = PathElement::field(name);
        let mut out = self.clone();
        out.members.remove(&element);
        out.children.remove(&element);
        out
    }

    /// Only the top-level field `name` and what is below it.
    pub(crate) fn only_field(&self, name: &str) -> Set {
        let element = PathElement::field(name);
        let mut out = Set::default();
        if self.members.contains(&element) {
            out.members.insert(element.clone());
        }
        if let Some(child) = self.children.get(&element) {
            out.children.insert(element, child.clone());
        }
        out
    }

    /// The FieldsV1 encoding: each element a key, `{}` for a member, `"."` for a member
    /// that also has children.
    pub(crate) fn to_fields_v1(&self) -> Value {
        Value::Object(self.fields_v1_contents(false))
    }

    fn fields_v1_contents(&self, include_self: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if include_self && !self.is_empty() {
            out.insert(".".to_owned(), Value::Object(Map::new()));
        }
        let mut members = self.members.iter().peekable();
        let mut children = self.children.iter().peekable();
        loop {
            let order = match (members.peek(), children.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(member), Some((element, _))) => (*member).cmp(element),
            };
            match order {
                Ordering::Less => {
                    if let Some(member) = members.next() {
                        out.insert(member.serialize(), Value::Object(Map::new()));
                    }
                }
                Ordering::Greater => {
                    if let Some((element, child)) = children.next() {
                        out.insert(
                            element.serialize(),
                            Value::Object(child.fields_v1_contents(false)),
                        );
                    }
                }
                Ordering::Equal => {
                    members.next();
                    if let Some((element, child)) = children.next() {
                        out.insert(
                            element.serialize(),
                            Value::Object(child.fields_v1_contents(true)),
                        );
                    }
                }
            }
        }
        out
    }

    /// Reads FieldsV1. Keys of unknown kinds are dropped, as upstream does.
    pub(crate) fn from_fields_v1(value: &Value) -> Result<Set, String> {
        let Value::Object(map) = value else {
            return Err("FieldsV1 must be a JSON object".to_owned());
        };
        Ok(Set::read_contents(map)?.0)
    }

    /// The set an object's contents describe, and whether `"."` marked the path itself.
    fn read_contents(map: &Map<String, Value>) -> Result<(Set, bool), String> {
        let mut set = Set::default();
        let mut is_member = false;
        for (key, value) in map {
            if key == "." {
                is_member = true;
                continue;
            }
            let Some(element) = PathElement::deserialize(key)? else {
                continue;
            };
            let Value::Object(inner) = value else {
                return Err(format!("{key}: expected an object"));
            };
            let (child, child_is_member) = Set::read_contents(inner)?;
            if child_is_member {
                set.members.insert(element.clone());
            }
            if !child.is_empty() {
                set.children.entry(element).or_default().union_with(&child);
            }
        }
        // Nothing below (`{}`, or only keys of unknown kinds): the path is a member.
        if set.is_empty() {
            is_member = true;
        }
        Ok((set, is_member))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check_round_trip(fields: Value, paths: &[&str]) {
        let set = Set::from_fields_v1(&fields).unwrap();
        let printed: Vec<String> = set.paths().iter().map(|p| path_string(p)).collect();
        assert_eq!(printed, paths);
        assert_eq!(
            serde_json::to_string(&set.to_fields_v1()).unwrap(),
            serde_json::to_string(&fields).unwrap()
        );
    }

    #[test]
    fn fields_v1_round_trips_in_upstream_order() {
        check_round_trip(json!({}), &[]);
        check_round_trip(json!({"f:spec": {"f:replicas": {}}}), &[".spec.replicas"]);
        check_round_trip(
            json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}),
            &[".metadata.labels", ".metadata.labels.app"],
        );
        check_round_trip(
            json!({"f:spec": {"f:containers": {
                "k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}},
                "k:{\"name\":\"z\"}": {}
            }}}),
            &[
                ".spec.containers[name=\"web\"]",
                ".spec.containers[name=\"z\"]",
                ".spec.containers[name=\"web\"].image",
                ".spec.containers[name=\"web\"].name",
            ],
        );
        check_round_trip(
            json!({"f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {}}}),
            &[".ports[containerPort=80,protocol=\"TCP\"]"],
        );
        check_round_trip(
            json!({"f:finalizers": {".": {}, "v:\"a\"": {}, "v:\"b\"": {}}}),
            &[".finalizers", ".finalizers[=\"a\"]", ".finalizers[=\"b\"]"],
        );
        check_round_trip(
            json!({"f:x": {"i:0": {}, "i:2": {}, "i:10": {}}}),
            &[".x[0]", ".x[2]", ".x[10]"],
        );
    }

    #[test]
    fn unknown_element_kinds_are_dropped_and_malformed_ones_refused() {
        let set = Set::from_fields_v1(&json!({"f:a": {}, "x:b": {}})).unwrap();
        assert_eq!(set.paths().len(), 1);
        assert!(Set::from_fields_v1(&json!({"fa": {}})).is_err());
        assert!(Set::from_fields_v1(&json!({"k:{": {}})).is_err());
        assert!(Set::from_fields_v1(&json!({"f:a": 1})).is_err());
        assert!(Set::from_fields_v1(&json!([])).is_err());
    }

    #[test]
    fn set_operations_are_exact_on_paths() {
        let a = [PathElement::field("a")];
        let ab = [PathElement::field("a"), PathElement::field("b")];
        let mut left = Set::default();
        left.insert(&a);
        left.insert(&ab);
        let mut right = Set::default();
        right.insert(&a);
        let diff = left.difference(&right);
        assert!(!diff.has(&a));
        assert!(diff.has(&ab));
        let both = left.intersection(&right);
        assert!(both.has(&a) && !both.has(&ab));
        assert_eq!(left.union(&right), left);
        assert!(left.difference(&left).is_empty());
    }

    #[test]
    fn values_order_as_upstream() {
        let ordered = [
            json!(1),
            json!(2.5),
            json!(10),
            json!("a"),
            json!(false),
            json!(true),
            json!([1]),
            json!({}),
            json!(null),
        ];
        for pair in ordered.windows(2) {
            assert_eq!(compare_values(&pair[0], &pair[1]), Ordering::Less, "{pair:?}");
        }
        assert!(values_equal(&json!(1), &json!(1.0)));
        let mut out = String::new();
        go_json(&json!({"b": "<&>", "a": [1, null]}), &mut out);
        assert_eq!(out, r#"{"a":[1,null],"b":"\u003c\u0026\u003e"}"#);
    }
}
