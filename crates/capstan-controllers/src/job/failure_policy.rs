//! `spec.podFailurePolicy`: which rule a failed pod matches (by its containers' exit codes or
//! its conditions), and what that means for the Job: fail it at once, ignore the failure, or
//! count it towards `backoffLimit`.

use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// What a failed pod means under a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A `FailJob` rule matched: the Job fails with this message.
    FailJob(String),
    /// An `Ignore` rule matched: the failure does not count towards `backoffLimit`.
    Ignore,
    /// A `Count` rule matched, or none did: the failure counts.
    Count,
}

impl Verdict {
    /// Whether the failure counts towards `backoffLimit`.
    pub(crate) fn counts(&self) -> bool {
        !matches!(self, Verdict::Ignore)
    }
}

/// The verdict of the first rule `pod` matches; rules are tried in order. A pod without a
/// policy, or matching no rule, counts.
pub(crate) fn judge(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Verdict {
    let Some(policy) = policy else { return Verdict::Count };
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let status = pod.status.as_ref();
    for (index, rule) in policy.rules.iter().enumerate() {
        let matched = if let Some(requirement) = &rule.on_exit_codes {
            let containers = status.and_then(|s| s.container_statuses.as_deref());
            let init_containers = status.and_then(|s| s.init_container_statuses.as_deref());
            matching_container(containers, requirement)
                .or_else(|| matching_container(init_containers, requirement))
                .map(|(container, code)| {
                    format!(
                        "Container {container} for pod {namespace}/{name} failed with exit code {code} matching {} rule at index {index}",
                        rule.action
                    )
                })
        } else if let Some(patterns) = &rule.on_pod_conditions {
            let conditions = status.and_then(|s| s.conditions.as_deref()).unwrap_or_default();
            conditions
                .iter()
                .find(|condition| {
                    patterns.iter().any(|pattern| {
                        // The API defaults an empty status to True.
                        let wanted =
                            if pattern.status.is_empty() { "True" } else { &pattern.status };
                        pattern.type_ == condition.type_ && wanted == condition.status
                    })
                })
                .map(|condition| {
                    format!(
                        "Pod {namespace}/{name} has condition {} matching {} rule at index {index}",
                        condition.type_, rule.action
                    )
                })
        } else {
            None
        };
        let Some(message) = matched else { continue };
        // FailIndex needs per-index backoff, which this controller does not implement;
        // unknown actions are refused by validation. Both count like a plain failure.
        return match rule.action.as_str() {
            "FailJob" => Verdict::FailJob(message),
            "Ignore" => Verdict::Ignore,
            _ => Verdict::Count,
        };
    }
    Verdict::Count
}

/// The first terminated container (named as the requirement asks) whose non-zero exit code
/// the requirement's operator accepts.
fn matching_container(
    statuses: Option<&[ContainerStatus]>,
    requirement: &PodFailurePolicyOnExitCodesRequirement,
) -> Option<(String, i32)> {
    statuses.unwrap_or_default().iter().find_map(|status| {
        let code = status.state.as_ref()?.terminated.as_ref()?.exit_code;
        if code == 0 || requirement.container_name.as_ref().is_some_and(|c| *c != status.name) {
            return None;
        }
        let listed = requirement.values.contains(&code);
        let accepted = match requirement.operator.as_str() {
            "In" => listed,
            "NotIn" => !listed,
            _ => false,
        };
        accepted.then(|| (status.name.clone(), code))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn pod(status: Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "d"},
            "status": status}))
        .unwrap()
    }

    fn exited(name: &str, code: i32) -> Value {
        json!({"name": name, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code}}})
    }

    fn check(policy: Value, status: Value, expected: Verdict) {
        let policy: PodFailurePolicy = serde_json::from_value(policy).unwrap();
        assert_eq!(judge(Some(&policy), &pod(status.clone())), expected, "{status}");
    }

    #[test]
    fn rules_match_in_order() {
        let policy = json!({"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1, 2]}},
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1]}},
        ]});
        let disrupted = json!({"conditions": [{"type": "DisruptionTarget", "status": "True"}],
            "containerStatuses": [exited("main", 42)]});
        check(policy.clone(), disrupted, Verdict::Ignore);
        let not_disrupted = json!({"conditions": [{"type": "DisruptionTarget", "status": "False"}],
            "containerStatuses": [exited("main", 42)]});
        check(
            policy.clone(),
            not_disrupted,
            Verdict::FailJob(
                "Container main for pod d/p failed with exit code 42 matching FailJob rule at index 1"
                    .into(),
            ),
        );
        // The FailJob rule names another container; NotIn [1, 2] takes 42.
        check(policy.clone(), json!({"containerStatuses": [exited("side", 42)]}), Verdict::Count);
        check(
            policy.clone(),
            json!({"containerStatuses": [exited("main", 0), exited("side", 1)]}),
            Verdict::FailJob(
                "Container side for pod d/p failed with exit code 1 matching FailJob rule at index 3"
                    .into(),
            ),
        );
        // Exit code 2 matches nothing: it counts.
        check(policy.clone(), json!({"containerStatuses": [exited("x", 2)]}), Verdict::Count);
        // Init containers are looked at after the others.
        check(
            policy,
            json!({"initContainerStatuses": [exited("init", 1)]}),
            Verdict::FailJob(
                "Container init for pod d/p failed with exit code 1 matching FailJob rule at index 3"
                    .into(),
            ),
        );
        let conditions = json!({"rules": [{"action": "FailJob", "onPodConditions": [
            {"type": "ConfigIssue", "status": "True"}]}]});
        check(
            conditions,
            json!({"conditions": [{"type": "ConfigIssue", "status": "True"}]}),
            Verdict::FailJob(
                "Pod d/p has condition ConfigIssue matching FailJob rule at index 0".into(),
            ),
        );
        assert_eq!(judge(None, &pod(json!({}))), Verdict::Count);
    }
}
