//! The status conditions the namespace controller keeps on a terminating namespace, with
//! upstream's types, reasons and messages: each names a way deletion can be held up, and is
//! `False` with an "all is well" message while it is not.

use k8s_openapi::api::core::v1::NamespaceCondition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeMap;

/// What one pass over a namespace's content found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Findings {
    /// Why discovering the resource types failed, if it did.
    pub(crate) discovery_failure: Option<String>,
    /// Why deleting some resource types' content failed, one message per type.
    pub(crate) deletion_failures: Vec<String>,
    /// How many objects are left, per `resource.group` (`pods.` for core pods).
    pub(crate) remaining: BTreeMap<String, usize>,
    /// How many objects left carry each finalizer.
    pub(crate) finalizers: BTreeMap<String, usize>,
}

/// One condition type with the reason and message it has while nothing is wrong.
struct Kind {
    type_: &'static str,
    ok_reason: &'static str,
    ok_message: &'static str,
}

/// The types kept, in upstream's order.
const KINDS: [Kind; 5] = [
    Kind {
        type_: "NamespaceDeletionDiscoveryFailure",
        ok_reason: "ResourcesDiscovered",
        ok_message: "All resources successfully discovered",
    },
    // Discovery hands over parsed group versions, so this one never fails here; upstream
    // reports it all the same.
    Kind {
        type_: "NamespaceDeletionGroupVersionParsingFailure",
        ok_reason: "ParsedGroupVersions",
        ok_message: "All legacy kube types successfully parsed",
    },
    Kind {
        type_: "NamespaceDeletionContentFailure",
        ok_reason: "ContentDeleted",
        ok_message: "All content successfully deleted, may be waiting on finalization",
    },
    Kind {
        type_: "NamespaceContentRemaining",
        ok_reason: "ContentRemoved",
        ok_message: "All content successfully removed",
    },
    Kind {
        type_: "NamespaceFinalizersRemaining",
        ok_reason: "ContentHasNoFinalizers",
        ok_message: "All content-preserving finalizers finished",
    },
];

/// The failing reason and message for one condition type, or `None` while it is fine.
fn failure(type_: &str, findings: &Findings) -> Option<(&'static str, String)> {
    match type_ {
        "NamespaceDeletionDiscoveryFailure" => {
            findings.discovery_failure.clone().map(|message| ("DiscoveryFailed", message))
        }
        "NamespaceDeletionContentFailure" if !findings.deletion_failures.is_empty() => {
            let mut messages = findings.deletion_failures.clone();
            messages.sort();
            let message = format!(
                "Failed to delete all resource types, {} remaining: {}",
                messages.len(),
                messages.join(", ")
            );
            Some(("ContentDeletionFailed", message))
        }
        "NamespaceContentRemaining" if !findings.remaining.is_empty() => {
            let mut parts: Vec<String> = findings
                .remaining
                .iter()
                .filter(|(_, count)| **count > 0)
                .map(|(resource, count)| format!("{resource} has {count} resource instances"))
                .collect();
            parts.sort();
            let message = format!("Some resources are remaining: {}", parts.join(", "));
            Some(("SomeResourcesRemain", message))
        }
        "NamespaceFinalizersRemaining" if !findings.finalizers.is_empty() => {
            let mut parts: Vec<String> = findings
                .finalizers
                .iter()
                .filter(|(_, count)| **count > 0)
                .map(|(finalizer, count)| format!("{finalizer} in {count} resource instances"))
                .collect();
            parts.sort();
            let message = format!(
                "Some content in the namespace has finalizers remaining: {}",
                parts.join(", ")
            );
            Some(("SomeFinalizersRemain", message))
        }
        _ => None,
    }
}

/// The namespace's conditions after a pass that found `findings`, or `None` when they would
/// not change. Conditions of other types are kept; a condition's transition time moves only
/// when its status does.
pub(crate) fn updated(
    conditions: &[NamespaceCondition],
    findings: &Findings,
    now: &Time,
) -> Option<Vec<NamespaceCondition>> {
    let mut result = conditions.to_vec();
    let mut changed = false;
    for kind in &KINDS {
        let (status, reason, message) = match failure(kind.type_, findings) {
            Some((reason, message)) => ("True", reason, message),
            None => ("False", kind.ok_reason, kind.ok_message.to_owned()),
        };
        match result.iter_mut().find(|condition| condition.type_ == kind.type_) {
            None => {
                result.push(NamespaceCondition {
                    type_: kind.type_.to_owned(),
                    status: status.to_owned(),
                    reason: Some(reason.to_owned()),
                    message: Some(message),
                    last_transition_time: Some(now.clone()),
                });
                changed = true;
            }
            Some(old) => {
                let same = old.status == status
                    && old.reason.as_deref() == Some(reason)
                    && old.message.as_deref() == Some(message.as_str());
                if same {
                    continue;
                }
                if old.status != status {
                    old.last_transition_time = Some(now.clone());
                }
                old.status = status.to_owned();
                old.reason = Some(reason.to_owned());
                old.message = Some(message);
                changed = true;
            }
        }
    }
    changed.then_some(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const BEFORE: &str = "2025-01-01T00:00:00Z";
    const NOW: &str = "2025-01-01T00:01:00Z";

    fn check(conditions: Value, findings: Findings, expected: Option<Value>) {
        let conditions: Vec<NamespaceCondition> = serde_json::from_value(conditions).unwrap();
        let now: Time = serde_json::from_value(json!(NOW)).unwrap();
        let updated =
            updated(&conditions, &findings, &now).map(|c| serde_json::to_value(c).unwrap());
        assert_eq!(updated, expected, "findings {findings:?}");
    }

    fn condition(type_: &str, status: &str, reason: &str, message: &str, time: &str) -> Value {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": time})
    }

    /// Every condition as a clean pass leaves it, at `time`.
    fn all_well(time: &str) -> Vec<Value> {
        KINDS
            .iter()
            .map(|kind| condition(kind.type_, "False", kind.ok_reason, kind.ok_message, time))
            .collect()
    }

    #[test]
    fn conditions_follow_findings_with_upstream_messages() {
        // A first clean pass sets every condition False.
        check(json!([]), Findings::default(), Some(json!(all_well(NOW))));
        // A second one changes nothing.
        check(json!(all_well(BEFORE)), Findings::default(), None);

        // Remaining content and finalizers, sorted, with upstream's wording.
        let findings = Findings {
            remaining: BTreeMap::from([("pods.".into(), 2), ("configmaps.".into(), 1)]),
            finalizers: BTreeMap::from([("example.com/b".into(), 1), ("example.com/a".into(), 3)]),
            ..Findings::default()
        };
        let mut expected = all_well(BEFORE);
        expected[3] = condition(
            "NamespaceContentRemaining",
            "True",
            "SomeResourcesRemain",
            "Some resources are remaining: configmaps. has 1 resource instances, pods. has 2 resource instances",
            NOW,
        );
        expected[4] = condition(
            "NamespaceFinalizersRemaining",
            "True",
            "SomeFinalizersRemain",
            "Some content in the namespace has finalizers remaining: example.com/a in 3 resource instances, example.com/b in 1 resource instances",
            NOW,
        );
        check(json!(all_well(BEFORE)), findings, Some(json!(expected.clone())));

        // Failures to discover and to delete.
        let findings = Findings {
            discovery_failure: Some("the server is on fire".into()),
            deletion_failures: vec!["zeta failed".into(), "alpha failed".into()],
            ..Findings::default()
        };
        let mut expected = all_well(BEFORE);
        expected[0] = condition(
            "NamespaceDeletionDiscoveryFailure",
            "True",
            "DiscoveryFailed",
            "the server is on fire",
            NOW,
        );
        expected[2] = condition(
            "NamespaceDeletionContentFailure",
            "True",
            "ContentDeletionFailed",
            "Failed to delete all resource types, 2 remaining: alpha failed, zeta failed",
            NOW,
        );
        check(json!(all_well(BEFORE)), findings, Some(json!(expected)));

        // A message that changes without the status keeps the transition time.
        let old =
            condition("NamespaceContentRemaining", "True", "SomeResourcesRemain", "old", BEFORE);
        let mut conditions = all_well(BEFORE);
        conditions[3] = old;
        let findings =
            Findings { remaining: BTreeMap::from([("pods.".into(), 1)]), ..Findings::default() };
        let mut expected = all_well(BEFORE);
        expected[3] = condition(
            "NamespaceContentRemaining",
            "True",
            "SomeResourcesRemain",
            "Some resources are remaining: pods. has 1 resource instances",
            BEFORE,
        );
        check(json!(conditions), findings, Some(json!(expected)));

        // Conditions of other types stay where they are.
        let foreign = condition("Custom", "True", "Mine", "kept", BEFORE);
        let mut expected = vec![foreign.clone()];
        expected.extend(all_well(NOW));
        check(json!([foreign]), Findings::default(), Some(json!(expected)));
    }
}
