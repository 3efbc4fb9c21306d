//! Label selectors (`metav1.LabelSelector`) evaluated against labels, as the controllers
//! match pods and ReplicaSets: `matchLabels` and `matchExpressions` (In, NotIn, Exists,
//! DoesNotExist) all hold. An empty selector matches everything; an unknown operator
//! matches nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

/// Whether `labels` satisfy `selector`.
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labelled =
        selector.match_labels.iter().flatten().all(|(key, value)| labels.get(key) == Some(value));
    labelled
        && selector.match_expressions.iter().flatten().all(|expression| {
            let value = labels.get(&expression.key);
            let values = expression.values.as_deref().unwrap_or_default();
            match expression.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Whether the selector selects nothing at all (no requirements): upstream refuses to let
/// such a selector adopt every pod.
pub fn is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(selector: serde_json::Value, labels: &[(&str, &str)], expected: bool) {
        let selector: LabelSelector = serde_json::from_value(selector.clone()).unwrap();
        let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(matches(&selector, &labels), expected, "{selector:?} on {labels:?}");
    }

    #[test]
    fn selection() {
        check(json!({}), &[], true);
        check(json!({"matchLabels": {"app": "web"}}), &[("app", "web"), ("x", "y")], true);
        check(json!({"matchLabels": {"app": "web"}}), &[("app", "db")], false);
        let expressions = json!({"matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["a", "b"]},
            {"key": "canary", "operator": "DoesNotExist"}]});
        check(expressions.clone(), &[("tier", "a")], true);
        check(expressions.clone(), &[("tier", "a"), ("canary", "1")], false);
        check(expressions, &[("tier", "c")], false);
        check(
            json!({"matchExpressions": [{"key": "k", "operator": "Bogus"}]}),
            &[("k", "v")],
            false,
        );
    }
}
