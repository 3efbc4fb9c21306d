//! The NodePorts plugin: a pod that asks for host ports fits only nodes where no other pod
//! holds a conflicting one (same protocol and port, overlapping address).

use crate::framework::{
    ClusterEvent, CycleState, HostPort, NodeInfo, Plugin, PodInfo, Snapshot, Status,
};

/// Upstream's reason for a port conflict.
const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// The pod's host ports, computed once per cycle.
#[derive(Debug, Clone)]
struct WantedPorts(Vec<HostPort>);

/// Upstream's `NodePorts` plugin.
#[derive(Debug, Default)]
pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }

    /// A new node has free ports; a deleted pod frees the ports it held.
    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdd, ClusterEvent::AssignedPodDelete]
    }

    fn filters(&self) -> bool {
        true
    }

    /// Most pods ask for no host port: the filter is then skipped for them.
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, _snapshot: &Snapshot) -> Status {
        let ports = pod.host_ports();
        if ports.is_empty() {
            return Status::skip();
        }
        state.insert(self.name(), WantedPorts(ports));
        Status::success()
    }

    /// Unschedulable rather than unresolvable: evicting the pod that holds a port frees it.
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let WantedPorts(wanted) = match state.require::<WantedPorts>(self.name()) {
            Ok(wanted) => wanted,
            Err(status) => return status,
        };
        let conflict =
            wanted.iter().any(|port| node.used_ports.iter().any(|used| port.conflicts(used)));
        if conflict { Status::unschedulable(REASON) } else { Status::success() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::framework::testing::{node_info, pod, pod_info, simple_node, snapshot};
    use serde_json::{Value, json};

    /// A pod whose single container asks for these ports.
    fn pod_with_ports(name: &str, ports: Value) -> Value {
        json!({"metadata": {"name": name}, "spec": {"containers": [
            {"name": "c", "image": "busybox", "ports": ports}]}})
    }

    /// Runs pre-filter and filter for a pod asking for `wanted` on a node whose one pod holds
    /// `used`; `None` expects the filter to be skipped.
    fn check(wanted: Value, used: Value, expected: Option<Result<(), &str>>) {
        let holder = pod(pod_with_ports("holder", used.clone()));
        let pod = pod_info(pod_with_ports("p", wanted.clone()));
        let node = node_info(simple_node("n", json!({}), "1", "1Gi"), vec![holder]);
        let snapshot = snapshot(vec![node.clone()]);
        let mut state = CycleState::default();
        let pre_filter = NodePorts.pre_filter(&mut state, &pod, &snapshot);
        let Some(expected) = expected else {
            assert_eq!(pre_filter.code, Code::Skip, "{wanted}");
            return;
        };
        assert!(pre_filter.is_success(), "{wanted}: {pre_filter:?}");
        let status = NodePorts.filter(&state, &pod, &node);
        match expected {
            Ok(()) => assert!(status.is_success(), "{wanted} vs {used}: {status:?}"),
            Err(reason) => {
                assert_eq!(status.code, Code::Unschedulable, "{wanted} vs {used}");
                assert_eq!(status.reasons, [reason], "{wanted} vs {used}");
            }
        }
    }

    #[test]
    fn filter_verdicts() {
        let conflict = Some(Err("node(s) didn't have free ports for the requested pod ports"));
        let http = json!([{"containerPort": 80, "hostPort": 8080}]);
        check(json!([]), http.clone(), None);
        check(json!([{"containerPort": 80}]), http.clone(), None);
        check(http.clone(), json!([]), Some(Ok(())));
        check(http.clone(), http.clone(), conflict);
        check(json!([{"containerPort": 80, "hostPort": 8081}]), http.clone(), Some(Ok(())));
        check(
            json!([{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}]),
            http.clone(),
            Some(Ok(())),
        );
        // A specific address conflicts with all addresses, and with itself, but not with
        // another specific address.
        let on_ip = |ip: &str| json!([{"containerPort": 80, "hostPort": 8080, "hostIP": ip}]);
        check(on_ip("10.0.0.1"), http.clone(), conflict);
        check(http, on_ip("10.0.0.1"), conflict);
        check(on_ip("10.0.0.1"), on_ip("10.0.0.1"), conflict);
        check(on_ip("10.0.0.1"), on_ip("10.0.0.2"), Some(Ok(())));
    }
}
