//! The columns and cells kube-apiserver's printers give each kind (its
//! `pkg/printers/internalversion`), written anew from their documented behaviour.

use super::{Column, Printer, age};
use serde_json::{Value, json};

const NAME: Column = Column {
    name: "Name",
    type_name: "string",
    format: "name",
    description: "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated.",
    priority: 0,
};

const AGE: Column = Column {
    name: "Age",
    type_name: "string",
    format: "",
    description: "CreationTimestamp is a timestamp representing the server time when this object was created.",
    priority: 0,
};

const fn column(
    name: &'static str,
    type_name: &'static str,
    description: &'static str,
    priority: i32,
) -> Column {
    Column { name, type_name, format: "", description, priority }
}

/// A string field at a path of object keys, if present.
fn text<'a>(object: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(object, |value, key| value.get(key))?.as_str()
}

fn name(object: &Value) -> Value {
    json!(text(object, &["metadata", "name"]).unwrap_or(""))
}

fn object_age(object: &Value, now: i64) -> Value {
    json!(age(text(object, &["metadata", "creationTimestamp"]), now))
}

/// The number of entries of a map (or items of a list) field.
fn count(object: &Value, field: &str) -> usize {
    match object.get(field) {
        Some(Value::Object(map)) => map.len(),
        Some(Value::Array(items)) => items.len(),
        _ => 0,
    }
}

/// Kinds with no printer get upstream's default table: the name and when it was created.
pub(super) const DEFAULT: Printer = Printer {
    columns: &[
        NAME,
        Column {
            name: "Created At",
            type_name: "date",
            format: "",
            description: "CreationTimestamp is a timestamp representing the server time when this object was created.",
            priority: 0,
        },
    ],
    cells: |object, _| vec![name(object), json!(text(object, &["metadata", "creationTimestamp"]))],
};

const NAMESPACE: Printer = Printer {
    columns: &[NAME, column("Status", "string", "The status of the namespace", 0), AGE],
    cells: |object, now| {
        vec![
            name(object),
            json!(text(object, &["status", "phase"]).unwrap_or("")),
            object_age(object, now),
        ]
    },
};

const CONFIG_MAP: Printer = Printer {
    columns: &[NAME, column("Data", "string", "Data contains the configuration data.", 0), AGE],
    cells: |object, now| {
        let entries = count(object, "data") + count(object, "binaryData");
        vec![name(object), json!(entries), object_age(object, now)]
    },
};

const SECRET: Printer = Printer {
    columns: &[
        NAME,
        column("Type", "string", "The type of the secret", 0),
        column("Data", "string", "The number of entries in the secret", 0),
        AGE,
    ],
    cells: |object, now| {
        vec![
            name(object),
            json!(text(object, &["type"]).unwrap_or("")),
            json!(count(object, "data")),
            object_age(object, now),
        ]
    },
};

const SERVICE_ACCOUNT: Printer = Printer {
    columns: &[
        NAME,
        column(
            "Secrets",
            "string",
            "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
            0,
        ),
        AGE,
    ],
    cells: |object, now| {
        vec![name(object), json!(count(object, "secrets")), object_age(object, now)]
    },
};

/// The printer of a kind, when kube-apiserver has one.
pub(super) fn for_kind(group: &str, kind: &str) -> Option<Printer> {
    Some(match (group, kind) {
        ("", "Namespace") => NAMESPACE,
        ("", "ConfigMap") => CONFIG_MAP,
        ("", "Secret") => SECRET,
        ("", "ServiceAccount") => SERVICE_ACCOUNT,
        _ => return None,
    })
}
