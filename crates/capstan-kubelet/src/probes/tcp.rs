//! TCP probes: success when a connection to the port opens within the timeout.

use super::{ProbeResult, ProbeTarget, dial_failure, host_or_pod_ip, join_host_port, resolve_port};
use k8s_openapi::api::core::v1::TCPSocketAction;
use std::time::Duration;
use tokio::net::TcpStream;

/// One TCP probe attempt against `host` (default the pod IP) and the resolved port.
pub(super) async fn probe(
    action: &TCPSocketAction,
    target: &ProbeTarget<'_>,
    timeout: Duration,
) -> ProbeResult {
    let host = match host_or_pod_ip(action.host.as_deref(), target.pod_ip) {
        Ok(host) => host,
        Err(error) => return ProbeResult::Unknown(error.to_string()),
    };
    let port = match resolve_port(&action.port, target.container) {
        Ok(port) => port,
        Err(error) => return ProbeResult::Unknown(error.to_string()),
    };
    let address = join_host_port(&host, port);
    match tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port))).await {
        Ok(Ok(_connection)) => ProbeResult::Success,
        Ok(Err(error)) => {
            ProbeResult::Failure(format!("dial tcp {address}: {}", dial_failure(&error)))
        }
        Err(_elapsed) => ProbeResult::Failure(format!("dial tcp {address}: i/o timeout")),
    }
}
