//! The API's selector structs, evaluated: label selectors (`matchLabels`/`matchExpressions`)
//! and node selectors (`nodeSelector`, node affinity terms). Shared by NodeAffinity,
//! InterPodAffinity and PodTopologySpread.

use capstan_api::{LabelSelector, Operator, Requirement};
use k8s_openapi::api::core::v1::{
    Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as ApiLabelSelector;
use std::collections::BTreeMap;

/// Converts a `metav1.LabelSelector`. `None` (the field absent) gives `None`, which callers
/// treat as matching nothing; an empty selector matches everything. An unknown operator
/// makes the selector match nothing, as upstream's conversion error does.
pub fn label_selector(selector: Option<&ApiLabelSelector>) -> Option<LabelSelector> {
    let selector = selector?;
    let mut requirements = Vec::new();
    for (key, value) in selector.match_labels.iter().flatten() {
        requirements.push(Requirement {
            key: key.clone(),
            operator: Operator::In,
            values: vec![value.clone()],
        });
    }
    for expression in selector.match_expressions.iter().flatten() {
        let operator = match expression.operator.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            _ => return None,
        };
        requirements.push(Requirement {
            key: expression.key.clone(),
            operator,
            values: expression.values.clone().unwrap_or_default(),
        });
    }
    Some(LabelSelector { requirements })
}

/// Whether a label selector (`None`: nothing) matches these labels.
pub fn selector_matches(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.is_some_and(|selector| selector.matches(labels))
}

/// Whether one node selector requirement holds for these labels (operators In, NotIn, Exists,
/// DoesNotExist, Gt, Lt).
pub fn requirement_matches(
    requirement: &NodeSelectorRequirement,
    labels: &BTreeMap<String, String>,
) -> bool {
    let operator = match requirement.operator.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        "Gt" => Operator::GreaterThan,
        "Lt" => Operator::LessThan,
        _ => return false,
    };
    Requirement {
        key: requirement.key.clone(),
        operator,
        values: requirement.values.clone().unwrap_or_default(),
    }
    .matches(labels)
}

/// Whether a node selector term holds for the node: every label expression and every field
/// expression (only `metadata.name` exists) holds. A term with neither matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    if !expressions.iter().all(|requirement| requirement_matches(requirement, labels)) {
        return false;
    }
    let name = node.metadata.name.clone().unwrap_or_default();
    let field_labels = BTreeMap::from([("metadata.name".to_owned(), name)]);
    fields.iter().all(|requirement| {
        requirement.key == "metadata.name" && requirement_matches(requirement, &field_labels)
    })
}

/// Whether any term of a node selector holds (no terms: nothing matches).
pub fn node_selector_matches(selector: &NodeSelector, node: &Node) -> bool {
    selector.node_selector_terms.iter().any(|term| term_matches(term, node))
}

/// Whether the node satisfies the pod's `nodeSelector` and its required node affinity: the
/// node filter of NodeAffinity, also used by PodTopologySpread to find eligible domains.
pub fn pod_matches_node(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = &pod.spec else { return true };
    if let Some(wanted) = &spec.node_selector {
        let empty = BTreeMap::new();
        let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
        if !wanted.iter().all(|(key, value)| labels.get(key) == Some(value)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref());
    required.is_none_or(|selector| node_selector_matches(selector, node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": "n1", "labels": {"zone": "a", "gen": "5"}}}),
        )
        .unwrap()
    }

    fn check(pod_spec: serde_json::Value, expected: bool) {
        let mut spec = json!({"containers": [{"name": "c", "image": "i"}]});
        spec.as_object_mut().unwrap().extend(pod_spec.as_object().unwrap().clone());
        let pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap();
        assert_eq!(pod_matches_node(&pod, &node()), expected, "{pod_spec}");
    }

    fn required(terms: serde_json::Value) -> serde_json::Value {
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}})
    }

    #[test]
    fn node_selection() {
        check(json!({}), true);
        check(json!({"nodeSelector": {"zone": "a"}}), true);
        check(json!({"nodeSelector": {"zone": "b"}}), false);
        check(
            required(
                json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]),
            ),
            true,
        );
        check(
            required(
                json!([{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}]),
            ),
            false,
        );
        check(
            required(
                json!([{"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}]}]),
            ),
            true,
        );
        check(
            required(
                json!([{"matchExpressions": [{"key": "gen", "operator": "Lt", "values": ["4"]}]}]),
            ),
            false,
        );
        // Terms are ORed; requirements within a term ANDed.
        check(
            required(json!([
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
                {"matchExpressions": [{"key": "zone", "operator": "Exists"}, {"key": "gpu", "operator": "DoesNotExist"}]}
            ])),
            true,
        );
        check(
            required(
                json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]),
            ),
            true,
        );
        check(
            required(
                json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]),
            ),
            false,
        );
        check(required(json!([])), false);
        check(required(json!([{}])), false);
    }

    #[test]
    fn label_selectors() {
        let selector: ApiLabelSelector =
            serde_json::from_value(json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}))
            .unwrap();
        let selector = label_selector(Some(&selector));
        let labels = |pairs: &[(&str, &str)]| {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert!(selector_matches(selector.as_ref(), &labels(&[("app", "web")])));
        assert!(!selector_matches(selector.as_ref(), &labels(&[("app", "web"), ("tier", "db")])));
        assert!(!selector_matches(None, &labels(&[("app", "web")])));
        let everything = label_selector(Some(&ApiLabelSelector::default()));
        assert!(selector_matches(everything.as_ref(), &labels(&[])));
    }
}
