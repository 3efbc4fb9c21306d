//! The order of a merged list, as upstream decides it: the items the patch names in the
//! patch's order (or the `$setElementOrder` list's), the items only the server has in the
//! server's order, and the two interleaved so that a server-only item stays in front of the
//! patch items it preceded on the server.

use super::{Blame, DELETE, DIRECTIVE, bad_arg_type, no_merge_key};
use crate::patch::PatchError;
use serde_json::Value;
use std::collections::HashMap;

/// The type of a list's items, as Go tells them apart (integers and floats differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Null,
    Bool,
    Integer,
    Float,
    String,
    List,
    Object,
}

impl Kind {
    fn of(value: &Value) -> Kind {
        match value {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(number) if number.is_i64() => Kind::Integer,
            Value::Number(_) => Kind::Float,
            Value::String(_) => Kind::String,
            Value::Array(_) => Kind::List,
            Value::Object(_) => Kind::Object,
        }
    }

    /// The one type of every item of `lists`; `None` when they are all empty.
    pub(super) fn of_items(lists: &[&Vec<Value>]) -> Result<Option<Kind>, PatchError> {
        let mut kinds = lists.iter().flat_map(|list| list.iter()).map(Kind::of);
        let Some(first) = kinds.next() else { return Ok(None) };
        if first == Kind::List {
            return Err(PatchError::Inapplicable("lists of lists are not supported".to_owned()));
        }
        if kinds.any(|kind| kind != first) {
            let lists: Vec<Value> = lists.iter().map(|list| Value::Array(list.to_vec())).collect();
            return Err(PatchError::Inapplicable(format!(
                "list element types are not identical: {}",
                super::go_text(&Value::Array(lists))
            )));
        }
        Ok(Some(first))
    }
}

/// How the items of one list are told apart: maps by their merge key, anything else by its
/// value.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ordering {
    pub(super) kind: Kind,
    pub(super) merge_key: Option<&'static str>,
}

impl Ordering {
    fn keyed(&self) -> Option<&'static str> {
        self.merge_key.filter(|_| self.kind == Kind::Object)
    }

    /// What identifies `item`, as text. A map without its merge key is identified as `null`,
    /// as Go reads a missing key.
    fn identity(&self, item: &Value) -> String {
        match self.keyed() {
            Some(key) => item.get(key).unwrap_or(&Value::Null).to_string(),
            None => item.to_string(),
        }
    }

    /// The first position of each identity in `order`.
    fn positions(&self, order: &[Value]) -> HashMap<String, usize> {
        let mut positions = HashMap::with_capacity(order.len());
        for (position, item) in order.iter().enumerate() {
            positions.entry(self.identity(item)).or_insert(position);
        }
        positions
    }

    /// Splits `merged` into the items `by` names and the others, each in `merged`'s order.
    pub(super) fn partition(
        &self,
        merged: Vec<Value>,
        by: &[Value],
    ) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
        let Some(key) = self.keyed() else {
            let positions = self.positions(by);
            return Ok(merged
                .into_iter()
                .partition(|item| positions.contains_key(&self.identity(item))));
        };
        // A map of `by` names an item when it has the same merge key; upstream scans `by` in
        // order for each item and fails on the first non-map it meets before a match.
        let first_not_map = by.iter().position(|item| !item.is_object());
        let mut positions = HashMap::with_capacity(by.len());
        for (position, item) in by.iter().enumerate() {
            if let Some(value) = item.get(key) {
                positions.entry(value.to_string()).or_insert(position);
            }
        }
        let (mut named, mut others) = (Vec::new(), Vec::new());
        for item in merged {
            let Value::Object(fields) = &item else {
                return Err(PatchError::Inapplicable(bad_arg_type(
                    "map[string]interface {}",
                    &item,
                )));
            };
            let value = fields.get(key).ok_or_else(|| no_merge_key(fields, key, Blame::Object))?;
            let found = positions.get(&value.to_string()).copied();
            if let Some(bad) = first_not_map.filter(|bad| found.is_none_or(|found| *bad < found)) {
                return Err(PatchError::Malformed(format!("value for key {bad} is not a map")));
            }
            if found.is_some() { named.push(item) } else { others.push(item) }
        }
        Ok((named, others))
    }

    /// Puts `named` in the order of `named_order` (the patch) and `server_only` in the order
    /// of `server_order` (the current list), then interleaves them: a server-only item goes
    /// before the next named item when the server had it before that one.
    pub(super) fn interleave(
        &self,
        named: Vec<Value>,
        named_order: &[Value],
        server_only: Vec<Value>,
        server_order: &[Value],
    ) -> Result<Vec<Value>, PatchError> {
        let named = self.sort(named, named_order, Blame::Patch)?;
        let server_only = self.sort(server_only, server_order, Blame::Object)?;
        let positions = self.positions(server_order);
        let position = |item: &Value| positions.get(&self.identity(item)).copied();
        let mut merged = Vec::with_capacity(named.len() + server_only.len());
        let mut named = named.into_iter().peekable();
        let mut server_only = server_only.into_iter().peekable();
        loop {
            let take_server_only = match (server_only.peek(), named.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(left), Some(right)) => match (position(left), position(right)) {
                    (Some(left), Some(right)) => left < right,
                    _ => false,
                },
            };
            let next = if take_server_only { server_only.next() } else { named.next() };
            merged.extend(next);
        }
        Ok(merged)
    }

    /// Sorts `items` by the first position of their identity in `order`, stably; maps marked
    /// `$patch: delete` go last.
    fn sort(
        &self,
        items: Vec<Value>,
        order: &[Value],
        order_blame: Blame,
    ) -> Result<Vec<Value>, PatchError> {
        if let Some(key) = self.keyed() {
            for (item, blame) in items
                .iter()
                .map(|item| (item, Blame::Object))
                .chain(order.iter().map(|item| (item, order_blame)))
            {
                let Value::Object(fields) = item else {
                    return Err(blame.error(bad_arg_type("map[string]interface {}", item)));
                };
                if !fields.contains_key(key) {
                    return Err(no_merge_key(fields, key, blame));
                }
            }
        }
        let (items, deleted): (Vec<Value>, Vec<Value>) = items.into_iter().partition(|item| {
            self.kind != Kind::Object || item.get(DIRECTIVE).and_then(Value::as_str) != Some(DELETE)
        });
        let positions = self.positions(order);
        let mut keyed: Vec<(Option<usize>, Value)> = items
            .into_iter()
            .map(|item| (positions.get(&self.identity(&item)).copied(), item))
            .collect();
        if keyed.iter().all(|(position, _)| position.is_some()) {
            keyed.sort_by_key(|(position, _)| *position);
        } else if keyed.len() <= GO_INSERTION_SORT_LIMIT {
            go_insertion_sort(&mut keyed);
        } else {
            // Past Go's insertion-sort block the outcome depends on its merge steps; this
            // keeps to what the insertion sort tends to: unlisted items first, latest first.
            let (mut unlisted, mut listed): (Vec<_>, Vec<_>) =
                keyed.into_iter().partition(|(position, _)| position.is_none());
            unlisted.reverse();
            listed.sort_by_key(|(position, _)| *position);
            keyed = unlisted.into_iter().chain(listed).collect();
        }
        Ok(keyed.into_iter().map(|(_, item)| item).chain(deleted).collect())
    }
}

/// How many items Go's stable sort orders by insertion alone.
const GO_INSERTION_SORT_LIMIT: usize = 20;

/// Upstream sorts with a comparison that calls an item the order does not list "less" than
/// anything (which only happens for an empty `$setElementOrder` list). Go's stable sort is an
/// insertion sort for up to 20 items, and this is that sort, so such lists come out as
/// upstream's do.
fn go_insertion_sort(items: &mut [(Option<usize>, Value)]) {
    let less = |a: Option<usize>, b: Option<usize>| match (a, b) {
        (Some(a), Some(b)) => a < b,
        _ => true,
    };
    for i in 1..items.len() {
        let mut j = i;
        while j > 0 && less(items[j].0, items[j - 1].0) {
            items.swap(j, j - 1);
            j -= 1;
        }
    }
}
