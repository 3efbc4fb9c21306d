//! Container probes: one attempt of a startup, liveness or readiness probe ([`run_probe`]),
//! and the per-kubelet [`ProbeManager`] whose workers probe every running container on its
//! schedule and report what changed.
//!
//! Upstream's `pkg/probe` and `pkg/kubelet/prober` are the spec: the same handlers (exec,
//! httpGet, tcpSocket, grpc), the same defaults, thresholds and gating, and the same output
//! texts, so that events read as they do on a real kubelet.
//!
//! - `exec`: a command in the container through the runtime's `ExecSync`.
//! - `http`: an HTTP(S) GET, shared with the lifecycle hooks.
//! - `tcp`: a TCP connect.
//! - `grpc`: the standard `grpc.health.v1.Health/Check`.
//! - `manager`: the workers, thresholds and the readiness/started state.

mod exec;
mod grpc;
pub(crate) mod http;
mod manager;
mod tcp;

pub(crate) use exec::{ExecError, exec_in_container};
#[cfg(test)]
pub(crate) use manager::tests::FakeRuntime;
pub use manager::{ProbeManager, ProbeUpdate, Transition};

use crate::runtime::Runtime;
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// The Kubernetes minor version the prober claims in its `User-Agent` (`kube-probe/1.33`).
pub(crate) const KUBE_VERSION: &str = "1.33";

/// Which of a container's probes this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl fmt::Display for ProbeKind {
    /// Upstream's capitalised words, as they open event messages ("Readiness probe failed").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        })
    }
}

/// The outcome of one probe attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    Success,
    /// The container answered wrongly or not at all; the text is upstream's output, e.g.
    /// "HTTP probe failed with statuscode: 500" or the exec command's output.
    Failure(String),
    /// The probe could not be run (a named port that does not exist, the runtime failing
    /// the exec call): upstream's "probe errored"; it counts neither way.
    Unknown(String),
}

/// What a probe or hook is run against.
#[derive(Debug, Clone, Copy)]
pub struct ProbeTarget<'a> {
    pub runtime: &'a dyn Runtime,
    pub container_id: &'a str,
    pub pod_ip: Option<IpAddr>,
    pub container: &'a Container,
}

/// Why a probe or hook could not be run at all (the probe result is then `Unknown`).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("port {port:?} not found in container {container:?}")]
    PortNotFound { port: String, container: String },
    #[error("invalid port number: {port}")]
    InvalidPort { port: i64 },
    #[error("pod has no IP address yet")]
    NoPodIp,
}

/// Runs one attempt of `probe` against the target, bounded by its `timeoutSeconds`
/// (default 1). Never fails: trouble running the probe is `ProbeResult::Unknown`.
pub async fn run_probe(probe: &Probe, target: &ProbeTarget<'_>) -> ProbeResult {
    let timeout = Duration::from_secs(positive_or(probe.timeout_seconds, 1));
    if let Some(action) = &probe.exec {
        exec::probe(action, target, timeout).await
    } else if let Some(action) = &probe.http_get {
        http::probe(action, target, timeout).await
    } else if let Some(action) = &probe.tcp_socket {
        tcp::probe(action, target, timeout).await
    } else if let Some(action) = &probe.grpc {
        grpc::probe(action, target, timeout).await
    } else {
        ProbeResult::Unknown(format!(
            "missing probe handler for container {}",
            target.container.name
        ))
    }
}

/// An optional positive API integer, or the API's default for it when unset or not positive.
pub(crate) fn positive_or(value: Option<i32>, default: u64) -> u64 {
    value.and_then(|v| u64::try_from(v).ok()).filter(|v| *v > 0).unwrap_or(default)
}

/// Upstream's `ResolveContainerPort`: a number, a named port of the container, or a number
/// written as a string; 1–65535.
pub(crate) fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, ProbeError> {
    let number = match port {
        IntOrString::Int(number) => i64::from(*number),
        IntOrString::String(name) => {
            let named = container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| i64::from(p.container_port));
            match named.or_else(|| name.parse().ok()) {
                Some(number) => number,
                None => {
                    return Err(ProbeError::PortNotFound {
                        port: name.clone(),
                        container: container.name.clone(),
                    });
                }
            }
        }
    };
    u16::try_from(number).ok().filter(|p| *p > 0).ok_or(ProbeError::InvalidPort { port: number })
}

/// `host:port`, with brackets around an IPv6 host (Go's `net.JoinHostPort`).
pub(crate) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// The explicit host of an action, else the pod's IP.
pub(crate) fn host_or_pod_ip(
    host: Option<&str>,
    pod_ip: Option<IpAddr>,
) -> Result<String, ProbeError> {
    match host.filter(|h| !h.is_empty()) {
        Some(host) => Ok(host.to_owned()),
        None => pod_ip.map(|ip| ip.to_string()).ok_or(ProbeError::NoPodIp),
    }
}

/// The reason part of a failed dial as Go words it ("connect: connection refused",
/// "i/o timeout"), without Rust's "(os error N)" suffix.
pub(crate) fn dial_failure(error: &std::io::Error) -> String {
    if error.kind() == std::io::ErrorKind::ConnectionRefused {
        return "connect: connection refused".to_owned();
    }
    if error.kind() == std::io::ErrorKind::TimedOut {
        return "i/o timeout".to_owned();
    }
    let text = error.to_string();
    let text = text.split(" (os error").next().unwrap_or_default();
    let mut chars = text.chars();
    let lowered = match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect::<String>(),
        None => String::new(),
    };
    format!("connect: {lowered}")
}

/// A duration as Go prints whole seconds ("1s"), for messages that quote the timeout.
pub(crate) fn go_seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ContainerPort;

    fn container_with_port(name: &str, port: i32) -> Container {
        Container {
            name: "app".to_owned(),
            ports: Some(vec![ContainerPort {
                name: Some(name.to_owned()),
                container_port: port,
                ..ContainerPort::default()
            }]),
            ..Container::default()
        }
    }

    #[test]
    fn ports_resolve_by_number_name_or_numeric_string() {
        let container = container_with_port("http", 8080);
        let check = |port: IntOrString, expected: Option<u16>| {
            assert_eq!(resolve_port(&port, &container).ok(), expected, "{port:?}");
        };
        check(IntOrString::Int(80), Some(80));
        check(IntOrString::String("http".to_owned()), Some(8080));
        check(IntOrString::String("9090".to_owned()), Some(9090));
        check(IntOrString::String("metrics".to_owned()), None);
        check(IntOrString::Int(0), None);
        check(IntOrString::Int(70000), None);
    }

    #[test]
    fn hosts_join_like_go() {
        assert_eq!(join_host_port("10.42.0.5", 80), "10.42.0.5:80");
        assert_eq!(join_host_port("fd00::5", 80), "[fd00::5]:80");
    }

    #[test]
    fn dial_failures_read_like_go() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(dial_failure(&refused), "connect: connection refused");
        let unreachable = std::io::Error::from_raw_os_error(101);
        assert_eq!(dial_failure(&unreachable), "connect: network is unreachable");
    }
}
