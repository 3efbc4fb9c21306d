//! Upstream's DefaultTolerationSeconds admission: every pod that does not already tolerate
//! the node controller's `not-ready` and `unreachable` NoExecute taints gets a toleration of
//! each for 300 seconds, so that a node going away evicts its pods after five minutes rather
//! than at once.
//!
//! Upstream runs the plugin on pod creates and updates (never on subresources); on an update
//! it puts back the tolerations a client's copy of the pod left out, which validation would
//! otherwise refuse as a removal.

use serde_json::{Value, json};

/// The taint the node lifecycle controller puts on a node whose Ready condition is False.
const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint it puts on a node whose Ready condition is Unknown.
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// `--default-not-ready-toleration-seconds` and `--default-unreachable-toleration-seconds`.
const DEFAULT_SECONDS: i64 = 300;

/// Adds the missing default tolerations to a pod, in upstream's order (not-ready first).
/// A pod whose `spec.tolerations` is not a list is left alone for validation to refuse.
pub(super) fn add(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
    let tolerations = spec.entry("tolerations").or_insert(Value::Null);
    if tolerations.is_null() {
        *tolerations = json!([]);
    }
    let Some(list) = tolerations.as_array_mut() else { return };
    let missing: Vec<&str> =
        [NOT_READY, UNREACHABLE].into_iter().filter(|key| !tolerates(list, key)).collect();
    for key in &missing {
        list.push(json!({
            "key": key,
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": DEFAULT_SECONDS,
        }));
    }
}

/// Whether some toleration already covers `key`'s NoExecute taint: its key is `key` or empty
/// (every key) and its effect NoExecute or empty (every effect). As upstream, the operator and
/// `tolerationSeconds` are not looked at.
fn tolerates(tolerations: &[Value], key: &str) -> bool {
    tolerations.iter().any(|toleration| {
        let field = |name: &str| toleration.get(name).and_then(Value::as_str).unwrap_or("");
        let covered_key = field("key");
        (covered_key.is_empty() || covered_key == key)
            && matches!(field("effect"), "" | "NoExecute")
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{created, updated};
    use serde_json::{Value, json};

    fn pod(tolerations: Value) -> Value {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]},
        });
        if !tolerations.is_null() {
            pod["spec"]["tolerations"] = tolerations;
        }
        pod
    }

    fn default(key: &str) -> Value {
        json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
    }

    fn check(tolerations: Value, expected: Value) {
        let stored = created("v1", "Pod", pod(tolerations.clone()));
        assert_eq!(stored["spec"]["tolerations"], expected, "create with {tolerations}");
    }

    #[test]
    fn adds_what_is_not_tolerated() {
        let not_ready = "node.kubernetes.io/not-ready";
        let unreachable = "node.kubernetes.io/unreachable";
        let short = json!({"key": unreachable, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5});
        let dedicated =
            json!({"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"});
        check(Value::Null, json!([default(not_ready), default(unreachable)]));
        check(json!([]), json!([default(not_ready), default(unreachable)]));
        check(json!([short]), json!([short, default(not_ready)]));
        check(json!([dedicated]), json!([dedicated, default(not_ready), default(unreachable)]));
        // An empty key tolerates every taint; an empty effect every effect.
        let everything = json!({"operator": "Exists"});
        check(json!([everything]), json!([everything]));
        let every_effect = json!({"key": not_ready, "operator": "Exists"});
        check(json!([every_effect]), json!([every_effect, default(unreachable)]));
        // A NoSchedule toleration of the same key does not count.
        let no_schedule = json!({"key": unreachable, "operator": "Exists", "effect": "NoSchedule"});
        check(json!([no_schedule]), json!([no_schedule, default(not_ready), default(unreachable)]));
    }

    #[test]
    fn updates_keep_the_defaults_a_client_left_out() {
        let old = created("v1", "Pod", pod(Value::Null));
        let mut new = pod(Value::Null);
        new["metadata"]["labels"] = json!({"a": "b"});
        let new = updated("v1", "Pod", &old, new);
        assert_eq!(new["spec"]["tolerations"], old["spec"]["tolerations"]);
        assert_eq!(new["metadata"]["generation"], 1, "the defaults are no change of the spec");
    }

    #[test]
    fn other_kinds_and_templates_get_nothing() {
        let deployment = created(
            "apps/v1",
            "Deployment",
            json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}}}}),
        );
        assert_eq!(deployment["spec"]["template"]["spec"].get("tolerations"), None);
    }
}
