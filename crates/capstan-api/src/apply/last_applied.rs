//! Living with client-side apply, as upstream does for the manager `kubectl`: its
//! server-side apply takes over, without conflicts, the fields its earlier client-side
//! applies set (those the `kubectl.kubernetes.io/last-applied-configuration` annotation
//! lists with the values the object still has), and it keeps that annotation in step with
//! what it applies, so that going back to client-side apply still works.

use super::fieldpath::{Set, go_json};
use super::typed::{self, Ty};
use serde_json::Value;

pub(crate) const ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The manager whose applies upgrade from and sync with client-side apply.
pub(crate) const KUBECTL: &str = "kubectl";

fn annotation(object: &Value) -> Option<&str> {
    object
        .get("metadata")?
        .get("annotations")?
        .get(ANNOTATION)?
        .as_str()
        .filter(|text| !text.is_empty())
}

/// The fields a client-side apply set and the object still holds with the same value:
/// those `kubectl`'s server-side apply may take without a conflict. `None` when the object
/// has no usable annotation (absent, not JSON, another version, unkeyable lists).
pub(crate) fn allowed_conflicts(ty: Ty, api_version: &str, live: &Value) -> Option<Set> {
    let last: Value = serde_json::from_str(annotation(live)?).ok()?;
    if last.get("apiVersion").and_then(Value::as_str) != Some(api_version) {
        return None;
    }
    typed::validate(ty, &last).ok()?;
    let set = typed::field_set(ty, &last);
    let comparison = typed::compare(ty, Some(&last), Some(live));
    Some(
        set.difference(&comparison.modified)
            .difference(&comparison.added)
            .difference(&comparison.removed),
    )
}

/// After a successful apply by `kubectl`: an object that carries the annotation gets the
/// applied configuration in it (without the annotation itself), encoded as Go encodes it
/// (sorted keys, a trailing newline).
pub(crate) fn sync(object: &mut Value, applied: &Value) {
    if annotation(object).is_none() {
        return;
    }
    let mut config = applied.clone();
    if let Some(Value::Object(annotations)) =
        config.get_mut("metadata").and_then(|metadata| metadata.get_mut("annotations"))
    {
        annotations.shift_remove(ANNOTATION);
    }
    let mut text = String::new();
    go_json(&config, &mut text);
    text.push('\n');
    if let Some(Value::Object(annotations)) =
        object.get_mut("metadata").and_then(|metadata| metadata.get_mut("annotations"))
    {
        annotations.insert(ANNOTATION.to_owned(), Value::String(text));
    }
}
