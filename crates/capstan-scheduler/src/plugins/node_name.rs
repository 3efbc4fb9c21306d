//! The NodeName plugin: a pod that names its node in `spec.nodeName` fits that node only.

use crate::framework::{ClusterEvent, CycleState, NodeInfo, Plugin, PodInfo, Status};

/// Upstream's reason when the pod asked for another node.
const REASON: &str = "node(s) didn't match the requested node name";

/// Upstream's `NodeName` plugin.
#[derive(Debug, Default)]
pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }

    /// Only a new node can carry the requested name: the names of existing nodes never change.
    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdd]
    }

    fn filters(&self) -> bool {
        true
    }

    /// Unresolvable: evicting pods never renames a node.
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let wanted = pod.node_name();
        if wanted.is_empty() || wanted == node.name() {
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
    use crate::framework::testing::{node_info, pod_info, simple_node};
    use serde_json::{Value, json};

    /// Filters a pod with this spec on a node named "n1".
    fn check(spec: Value, expected: Option<&str>) {
        let pod = pod_info(json!({"metadata": {"name": "p"}, "spec": spec}));
        let node = node_info(simple_node("n1", json!({}), "1", "1Gi"), vec![]);
        let status = NodeName.filter(&CycleState::default(), &pod, &node);
        match expected {
            None => assert!(status.is_success(), "{spec}: {status:?}"),
            Some(reason) => {
                assert_eq!(status.code, Code::UnschedulableAndUnresolvable, "{spec}");
                assert_eq!(status.reasons, [reason], "{spec}");
            }
        }
    }

    #[test]
    fn filter_verdicts() {
        check(json!({}), None);
        check(json!({"nodeName": ""}), None);
        check(json!({"nodeName": "n1"}), None);
        check(json!({"nodeName": "n2"}), Some("node(s) didn't match the requested node name"));
    }
}
