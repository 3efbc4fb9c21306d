//! The two kinds this controller drives, ReplicaSet and ReplicationController, behind one
//! trait, so that the controller is written once (upstream converts ReplicationControllers
//! to ReplicaSets for the same reason). Their statuses have the same shape, read here into
//! [`ReplicaStatus`].

use super::status::{Condition, ReplicaStatus};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};
use kube::Resource;
use kube::core::{ParseExpressionError, Selector, SelectorExt};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;

/// Which pods an owner selects.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PodSelector {
    /// No selector at all (a ReplicationController without one): no pod.
    Nothing,
    /// Pods whose labels match; an empty selector matches every pod.
    Matching(Selector),
}

impl PodSelector {
    pub(crate) fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        match self {
            PodSelector::Nothing => false,
            PodSelector::Matching(selector) => selector.matches(labels.unwrap_or(&BTreeMap::new())),
        }
    }

    /// Whether it matches every pod (which upstream never lets adopt orphans on its own).
    pub(crate) fn selects_all(&self) -> bool {
        matches!(self, PodSelector::Matching(selector) if selector.selects_all())
    }
}

/// An owner of replicated pods.
pub(crate) trait Replicated:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The controller's name, which its Events report as (upstream's event source).
    const CONTROLLER: &'static str;

    /// The pods it selects; an error for a selector that does not parse.
    fn pod_selector(&self) -> Result<PodSelector, ParseExpressionError>;

    /// How many pods it wants (1 when unset, as the API defaults it).
    fn desired_replicas(&self) -> i32;

    fn min_ready_seconds(&self) -> i32;

    fn template(&self) -> Option<&PodTemplateSpec>;

    /// Its status as last written.
    fn replica_status(&self) -> ReplicaStatus;
}

impl Replicated for ReplicaSet {
    const CONTROLLER: &'static str = "replicaset-controller";

    fn pod_selector(&self) -> Result<PodSelector, ParseExpressionError> {
        // A ReplicaSet without a spec has the empty selector its spec's default would have.
        let selector = self.spec.as_ref().map(|spec| spec.selector.clone()).unwrap_or_default();
        Ok(PodSelector::Matching(Selector::try_from(selector)?))
    }

    fn desired_replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(1)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|spec| spec.min_ready_seconds).unwrap_or(0)
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn replica_status(&self) -> ReplicaStatus {
        let Some(status) = &self.status else { return ReplicaStatus::default() };
        ReplicaStatus {
            replicas: status.replicas,
            fully_labeled_replicas: status.fully_labeled_replicas.unwrap_or(0),
            ready_replicas: status.ready_replicas.unwrap_or(0),
            available_replicas: status.available_replicas.unwrap_or(0),
            observed_generation: status.observed_generation.unwrap_or(0),
            conditions: status
                .conditions
                .iter()
                .flatten()
                .map(|c| Condition {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone().unwrap_or_default(),
                    message: c.message.clone().unwrap_or_default(),
                    last_transition_time: c.last_transition_time.as_ref().map(|time| time.0),
                })
                .collect(),
        }
    }
}

impl Replicated for ReplicationController {
    const CONTROLLER: &'static str = "replication-controller";

    fn pod_selector(&self) -> Result<PodSelector, ParseExpressionError> {
        Ok(match self.spec.as_ref().and_then(|spec| spec.selector.clone()) {
            None => PodSelector::Nothing,
            Some(labels) => PodSelector::Matching(labels.into_iter().collect()),
        })
    }

    fn desired_replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(1)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|spec| spec.min_ready_seconds).unwrap_or(0)
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn replica_status(&self) -> ReplicaStatus {
        let Some(status) = &self.status else { return ReplicaStatus::default() };
        ReplicaStatus {
            replicas: status.replicas,
            fully_labeled_replicas: status.fully_labeled_replicas.unwrap_or(0),
            ready_replicas: status.ready_replicas.unwrap_or(0),
            available_replicas: status.available_replicas.unwrap_or(0),
            observed_generation: status.observed_generation.unwrap_or(0),
            conditions: status
                .conditions
                .iter()
                .flatten()
                .map(|c| Condition {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone().unwrap_or_default(),
                    message: c.message.clone().unwrap_or_default(),
                    last_transition_time: c.last_transition_time.as_ref().map(|time| time.0),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Whether the selector of `owner` matches each of `labels`.
    fn check<K: Replicated>(
        owner: serde_json::Value,
        labels: &[serde_json::Value],
        expected: &[bool],
    ) {
        let owner: K = serde_json::from_value(owner).unwrap();
        let selector = owner.pod_selector().unwrap();
        let got: Vec<bool> = labels
            .iter()
            .map(|l| {
                let labels: Option<BTreeMap<String, String>> =
                    serde_json::from_value(l.clone()).unwrap();
                selector.matches(labels.as_ref())
            })
            .collect();
        assert_eq!(got, expected, "{selector:?}");
    }

    #[test]
    fn selectors_of_both_kinds() {
        let labels = [
            json!({"app": "a", "tier": "web"}),
            json!({"app": "a"}),
            json!({"app": "b"}),
            json!(null),
        ];
        check::<ReplicaSet>(
            json!({"metadata": {}, "spec": {"selector": {"matchLabels": {"app": "a"}}}}),
            &labels,
            &[true, true, false, false],
        );
        check::<ReplicaSet>(
            json!({"metadata": {}, "spec": {"selector": {"matchExpressions": [
                {"key": "tier", "operator": "NotIn", "values": ["db"]},
                {"key": "app", "operator": "In", "values": ["a", "b"]}]}}}),
            &labels,
            &[true, true, true, false],
        );
        check::<ReplicationController>(
            json!({"metadata": {}, "spec": {"selector": {"app": "a", "tier": "web"}}}),
            &labels,
            &[true, false, false, false],
        );
        // A ReplicationController without a selector selects nothing.
        check::<ReplicationController>(
            json!({"metadata": {}, "spec": {}}),
            &labels,
            &[false, false, false, false],
        );
    }

    #[test]
    fn defaults_and_status() {
        let rc: ReplicationController = serde_json::from_value(json!({"metadata": {}, "spec": {}, "status": {
            "replicas": 2, "readyReplicas": 1, "observedGeneration": 3,
            "conditions": [{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate"}]}}))
        .unwrap();
        assert_eq!(rc.desired_replicas(), 1);
        assert_eq!(rc.min_ready_seconds(), 0);
        let status = rc.replica_status();
        assert_eq!((status.replicas, status.ready_replicas, status.observed_generation), (2, 1, 3));
        assert_eq!(status.conditions[0].reason, "FailedCreate");
        let bad: ReplicaSet = serde_json::from_value(json!({"metadata": {}, "spec": {"selector": {
            "matchExpressions": [{"key": "a", "operator": "In"}]}}}))
        .unwrap();
        assert!(bad.pod_selector().is_err());
    }
}
