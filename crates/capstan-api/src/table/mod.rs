//! Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks for, with the
//! columns kube-apiserver's printers give each kind. Without it kubectl shows only NAME and
//! AGE: it has no client-side printers for built-in kinds.
//!
//! Pure like the rest of the crate: the caller passes the current time.

pub(crate) mod age;
mod printers;

pub use age::{age, format_rfc3339, human_duration, parse_rfc3339};

use crate::registry::ResourceType;
use serde_json::{Value, json};

/// One `columnDefinitions[]` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub type_name: &'static str,
    /// `name` for the name column, else usually empty.
    pub format: &'static str,
    pub description: &'static str,
    /// 0: always shown; 1 and up: only with `-o wide`.
    pub priority: i32,
}

/// How one kind is printed: its columns, and the cells of an object, given the time now.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub columns: &'static [Column],
    pub cells: fn(&Value, i64) -> Vec<Value>,
}

/// What each row's `object` holds (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    /// A `PartialObjectMetadata`: what kubectl needs for `-A` and `--show-labels`.
    #[default]
    Metadata,
    Object,
}

/// The list metadata and choices of one Table response.
#[derive(Debug, Clone, Default)]
pub struct TableOptions {
    /// The current time, Unix seconds, for ages.
    pub now: i64,
    pub include_object: IncludeObject,
    pub resource_version: String,
    pub continue_token: Option<String>,
    /// Whether to send `columnDefinitions` (a watch sends them with its first event only).
    pub omit_columns: bool,
}

/// The printer kube-apiserver uses for a type. Kinds that share storage with another share
/// its printer (events.k8s.io Events print as core Events).
pub fn printer(resource: &ResourceType) -> Printer {
    let printed = printed_type(resource);
    printers::for_kind(printed.group, printed.kind).unwrap_or(printers::DEFAULT)
}

/// The type whose form objects of `resource` are printed in.
fn printed_type(resource: &ResourceType) -> &ResourceType {
    match (resource.group, resource.kind) {
        ("events.k8s.io", "Event") => crate::conversion::storage_type(resource),
        _ => resource,
    }
}

/// The Table of `objects` (each a whole object as JSON).
pub fn table(resource: &ResourceType, objects: &[Value], options: &TableOptions) -> Value {
    let printer = printer(resource);
    let mut metadata = serde_json::Map::new();
    metadata.insert("resourceVersion".into(), json!(options.resource_version));
    if let Some(token) = &options.continue_token {
        metadata.insert("continue".into(), json!(token));
    }
    let columns: Vec<Value> = if options.omit_columns {
        Vec::new()
    } else {
        printer
            .columns
            .iter()
            .map(|c| {
                json!({"name": c.name, "type": c.type_name, "format": c.format,
                       "description": c.description, "priority": c.priority})
            })
            .collect()
    };
    let printed = printed_type(resource);
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let cells = if printed.group == resource.group {
                (printer.cells)(object, options.now)
            } else {
                (printer.cells)(&crate::conversion::convert(object, printed), options.now)
            };
            row_of(cells, object, options)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// One `rows[]` entry.
pub fn row(printer: &Printer, object: &Value, options: &TableOptions) -> Value {
    row_of((printer.cells)(object, options.now), object, options)
}

fn row_of(cells: Vec<Value>, object: &Value, options: &TableOptions) -> Value {
    match options.include_object {
        IncludeObject::None => json!({"cells": cells}),
        IncludeObject::Object => json!({"cells": cells, "object": object}),
        IncludeObject::Metadata => json!({
            "cells": cells,
            "object": {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;

    #[test]
    fn a_table_carries_columns_rows_and_list_metadata() {
        let namespaces = find("", "v1", "namespaces").unwrap();
        let object = json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"default","creationTimestamp":"1970-01-01T00:00:00Z","labels":{"a":"b"}},"status":{"phase":"Active"}});
        let options = TableOptions {
            now: 90,
            resource_version: "42".into(),
            continue_token: Some("abc".into()),
            ..Default::default()
        };
        let table = table(namespaces, &[object], &options);
        assert_eq!(table["kind"], "Table");
        assert_eq!(table["metadata"], json!({"resourceVersion":"42","continue":"abc"}));
        let names: Vec<&str> = table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Name", "Status", "Age"]);
        assert_eq!(table["rows"][0]["cells"], json!(["default", "Active", "90s"]));
        assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(table["rows"][0]["object"]["metadata"]["labels"]["a"], "b");
    }

    #[test]
    fn watch_events_after_the_first_omit_columns() {
        let namespaces = find("", "v1", "namespaces").unwrap();
        let options = TableOptions {
            omit_columns: true,
            include_object: IncludeObject::None,
            ..Default::default()
        };
        let table = table(namespaces, &[json!({"metadata":{"name":"x"}})], &options);
        assert_eq!(table["columnDefinitions"], json!([]));
        assert!(table["rows"][0].get("object").is_none());
    }
}
