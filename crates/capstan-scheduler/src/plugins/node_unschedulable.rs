//! The NodeUnschedulable plugin: a cordoned node (`spec.unschedulable`) takes only pods that
//! tolerate the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use crate::framework::taints::tolerated;
use crate::framework::{ClusterEvent, CycleState, NodeInfo, Plugin, PodInfo, Status};
use k8s_openapi::api::core::v1::Taint;

/// The taint a cordoned node is treated as having (the node lifecycle controller also adds it).
const UNSCHEDULABLE_TAINT_KEY: &str = "node.kubernetes.io/unschedulable";

/// Upstream's reason for a cordoned node.
const REASON: &str = "node(s) were unschedulable";

/// Upstream's `NodeUnschedulable` plugin.
#[derive(Debug, Default)]
pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }

    /// A new node, or an uncordoned one, may take the pod.
    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdd, ClusterEvent::NodeUpdate]
    }

    fn filters(&self) -> bool {
        true
    }

    /// Unresolvable: evicting pods does not uncordon a node.
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let cordoned = node.node.spec.as_ref().and_then(|spec| spec.unschedulable).unwrap_or(false);
        if !cordoned {
            return Status::success();
        }
        let taint = Taint {
            key: UNSCHEDULABLE_TAINT_KEY.to_owned(),
            effect: "NoSchedule".to_owned(),
            ..Taint::default()
        };
        let tolerations = pod.pod.spec.as_ref().and_then(|spec| spec.tolerations.as_deref());
        if tolerated(tolerations.unwrap_or_default(), &taint) {
            Status::success()
        } else {
            Status::unresolvable(REASON)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::framework::testing::{node, node_info, pod_info};
    use serde_json::{Value, json};

    /// Filters a pod with these tolerations on a node with this spec.
    fn check(node_spec: Value, tolerations: Value, expected: Option<&str>) {
        let pod =
            pod_info(json!({"metadata": {"name": "p"}, "spec": {"tolerations": tolerations}}));
        let node = node_info(node(json!({"metadata": {"name": "n"}, "spec": node_spec})), vec![]);
        let status = NodeUnschedulable.filter(&CycleState::default(), &pod, &node);
        match expected {
            None => assert!(status.is_success(), "{node_spec} {tolerations}: {status:?}"),
            Some(reason) => {
                assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
                assert_eq!(status.reasons, [reason], "{node_spec} {tolerations}");
            }
        }
    }

    #[test]
    fn filter_verdicts() {
        let cordoned = json!({"unschedulable": true});
        let rejected = Some("node(s) were unschedulable");
        check(json!({}), json!([]), None);
        check(json!({"unschedulable": false}), json!([]), None);
        check(cordoned.clone(), json!([]), rejected);
        check(
            cordoned.clone(),
            json!([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]),
            None,
        );
        // Tolerating every taint tolerates this one too.
        check(cordoned.clone(), json!([{"operator": "Exists"}]), None);
        check(
            cordoned.clone(),
            json!([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoExecute"}]),
            rejected,
        );
        check(cordoned, json!([{"key": "other", "operator": "Exists"}]), rejected);
    }
}
