//! The CRI configs of a pod's sandbox and containers, built from the pod spec: names and
//! labels the kubelet finds them by again, DNS, hostname, ports, namespaces, cgroups from
//! the QoS class, and per-container resources, security settings and log paths.

use super::status::qos_class;
use crate::runtime::cri_api::*;
use capstan_api::Quantity;
use k8s_openapi::api::core::v1::{Container, Pod, PodDNSConfig};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

pub(crate) const POD_NAME: &str = "io.kubernetes.pod.name";
pub(crate) const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub(crate) const POD_UID: &str = "io.kubernetes.pod.uid";
pub(crate) const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Marks what this kubelet made, so it never touches other clients' containers.
pub(crate) const MANAGED_BY: &str = "io.capstan.kubelet";

/// What the sandbox needs beyond the pod.
#[derive(Debug, Clone)]
pub(crate) struct SandboxEnvironment<'a> {
    pub log_directory: &'a Path,
    pub cluster_dns: &'a [IpAddr],
    pub cluster_domain: &'a str,
    /// The host's resolv.conf search domains and name servers (dnsPolicy Default and the
    /// searches ClusterFirst appends).
    pub host_searches: &'a [String],
    pub host_servers: &'a [String],
}

fn labels(pod: &Pod) -> HashMap<String, String> {
    let meta = &pod.metadata;
    let mut labels: HashMap<String, String> =
        meta.labels.clone().unwrap_or_default().into_iter().collect();
    labels.insert(POD_NAME.into(), meta.name.clone().unwrap_or_default());
    labels.insert(POD_NAMESPACE.into(), meta.namespace.clone().unwrap_or_default());
    labels.insert(POD_UID.into(), meta.uid.clone().unwrap_or_default());
    labels.insert(MANAGED_BY.into(), "true".into());
    labels
}

/// The pod's cgroup parent under the cgroupfs driver: `/kubepods/<qos>/pod<uid>`
/// (Guaranteed pods sit directly under `/kubepods`), as upstream lays it out.
pub(crate) fn cgroup_parent(pod: &Pod) -> String {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    match qos_class(pod) {
        "Guaranteed" => format!("/kubepods/pod{uid}"),
        "Burstable" => format!("/kubepods/burstable/pod{uid}"),
        _ => format!("/kubepods/besteffort/pod{uid}"),
    }
}

/// The pod's DNS settings from its dnsPolicy (ClusterFirst by default; host networking
/// falls back to the host's unless ClusterFirstWithHostNet).
pub(crate) fn dns_config(pod: &Pod, env: &SandboxEnvironment<'_>) -> Option<DnsConfig> {
    let spec = pod.spec.as_ref()?;
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let domain = env.cluster_domain;
    let mut config = match policy {
        "None" => DnsConfig::default(),
        "Default" => DnsConfig {
            servers: env.host_servers.to_vec(),
            searches: env.host_searches.to_vec(),
            options: Vec::new(),
        },
        "ClusterFirst" if host_network => DnsConfig {
            servers: env.host_servers.to_vec(),
            searches: env.host_searches.to_vec(),
            options: Vec::new(),
        },
        _ if env.cluster_dns.is_empty() => DnsConfig {
            servers: env.host_servers.to_vec(),
            searches: env.host_searches.to_vec(),
            options: Vec::new(),
        },
        _ => {
            let mut searches = vec![
                format!("{namespace}.svc.{domain}"),
                format!("svc.{domain}"),
                domain.to_owned(),
            ];
            searches.extend(env.host_searches.iter().cloned());
            DnsConfig {
                servers: env.cluster_dns.iter().map(ToString::to_string).collect(),
                searches,
                options: vec!["ndots:5".into()],
            }
        }
    };
    if let Some(PodDNSConfig { nameservers, options, searches }) = spec.dns_config.clone() {
        config.servers.extend(nameservers.unwrap_or_default());
        config.searches.extend(searches.unwrap_or_default());
        for option in options.unwrap_or_default() {
            let name = option.name.unwrap_or_default();
            config.options.retain(|o| o.split(':').next() != Some(name.as_str()));
            config.options.push(match option.value {
                Some(value) => format!("{name}:{value}"),
                None => name,
            });
        }
    }
    config.searches.dedup();
    config.searches.truncate(32);
    config.servers.truncate(3);
    Some(config)
}

/// The pod's hostname: spec.hostname, else the pod name, cut to 63 characters.
pub(crate) fn hostname(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    let name = spec
        .and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    let mut name: String = name.chars().take(63).collect();
    while name.ends_with(['-', '.']) {
        name.pop();
    }
    name
}

pub(crate) fn sandbox_config(
    pod: &Pod,
    attempt: u32,
    env: &SandboxEnvironment<'_>,
) -> PodSandboxConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.clone().unwrap_or_default())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| PortMapping {
            protocol: match p.protocol.as_deref() {
                Some("UDP") => Protocol::Udp as i32,
                Some("SCTP") => Protocol::Sctp as i32,
                _ => Protocol::Tcp as i32,
            },
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    let mode = |on: bool| if on { NamespaceMode::Node as i32 } else { NamespaceMode::Pod as i32 };
    let security = spec.security_context.clone().unwrap_or_default();
    let sysctls = security
        .sysctls
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.name, s.value))
        .collect();
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            attempt,
        }),
        hostname: if host_network { String::new() } else { hostname(pod) },
        log_directory: env.log_directory.display().to_string(),
        dns_config: dns_config(pod, env),
        port_mappings,
        labels: labels(pod),
        annotations: pod.metadata.annotations.clone().unwrap_or_default().into_iter().collect(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent(pod),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: mode(host_network),
                    pid: if spec.host_pid.unwrap_or(false) {
                        NamespaceMode::Node as i32
                    } else if spec.share_process_namespace.unwrap_or(false) {
                        NamespaceMode::Pod as i32
                    } else {
                        NamespaceMode::Container as i32
                    },
                    ipc: mode(spec.host_ipc.unwrap_or(false)),
                    ..NamespaceOption::default()
                }),
                run_as_user: security.run_as_user.map(|value| Int64Value { value }),
                run_as_group: security.run_as_group.map(|value| Int64Value { value }),
                supplemental_groups: security.supplemental_groups.clone().unwrap_or_default(),
                privileged: spec.containers.iter().any(|c| {
                    c.security_context.as_ref().and_then(|s| s.privileged).unwrap_or(false)
                }),
                ..LinuxSandboxSecurityContext::default()
            }),
            sysctls,
            ..LinuxPodSandboxConfig::default()
        }),
        windows: None,
    }
}

fn quantity(
    resources: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
    name: &str,
) -> Option<Quantity> {
    resources.and_then(|r| r.get(name)).and_then(|q| Quantity::parse(&q.0).ok())
}

/// CPU and memory settings from requests and limits, as the kubelet computes them for
/// the cgroupfs driver: shares from the cpu request (2 when none), a CFS quota from the
/// cpu limit, the memory limit, and an OOM score by QoS class.
pub(crate) fn linux_resources(
    pod: &Pod,
    container: &Container,
    node_memory: i64,
) -> LinuxContainerResources {
    let resources = container.resources.clone().unwrap_or_default();
    let requests = resources.requests.as_ref();
    let limits = resources.limits.as_ref();
    let cpu_request = quantity(requests, "cpu").or_else(|| quantity(limits, "cpu"));
    let cpu_limit = quantity(limits, "cpu");
    let memory_request = quantity(requests, "memory").or_else(|| quantity(limits, "memory"));
    let memory_limit = quantity(limits, "memory");
    let shares = cpu_request.map(|q| (q.milli_value() * 1024 / 1000).max(2)).unwrap_or(2);
    let period = 100_000;
    let quota = cpu_limit.map(|q| (q.milli_value() * period / 1000).max(1000)).unwrap_or(0);
    let oom_score_adj = match qos_class(pod) {
        "Guaranteed" => -997,
        "BestEffort" => 1000,
        _ => {
            let request = memory_request.map(|q| q.value()).unwrap_or(0);
            let score = if node_memory > 0 { 1000 - 1000 * request / node_memory } else { 999 };
            score.clamp(2, 999)
        }
    };
    LinuxContainerResources {
        cpu_period: if quota > 0 { period } else { 0 },
        cpu_quota: quota,
        cpu_shares: shares,
        memory_limit_in_bytes: memory_limit.map(|q| q.value()).unwrap_or(0),
        oom_score_adj,
        ..LinuxContainerResources::default()
    }
}

/// The container's security settings.
pub(crate) fn linux_security(pod: &Pod, container: &Container) -> LinuxContainerSecurityContext {
    let pod_security =
        pod.spec.as_ref().and_then(|s| s.security_context.clone()).unwrap_or_default();
    let security = container.security_context.clone().unwrap_or_default();
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
    let capabilities = security.capabilities.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    LinuxContainerSecurityContext {
        capabilities: Some(Capability {
            add_capabilities: capabilities.add.unwrap_or_default(),
            drop_capabilities: capabilities.drop.unwrap_or_default(),
            ..Capability::default()
        }),
        privileged: security.privileged.unwrap_or(false),
        namespace_options: Some(NamespaceOption {
            network: if host_network {
                NamespaceMode::Node as i32
            } else {
                NamespaceMode::Pod as i32
            },
            pid: if spec.host_pid.unwrap_or(false) {
                NamespaceMode::Node as i32
            } else if spec.share_process_namespace.unwrap_or(false) {
                NamespaceMode::Pod as i32
            } else {
                NamespaceMode::Container as i32
            },
            ipc: if spec.host_ipc.unwrap_or(false) {
                NamespaceMode::Node as i32
            } else {
                NamespaceMode::Pod as i32
            },
            ..NamespaceOption::default()
        }),
        run_as_user: security
            .run_as_user
            .or(pod_security.run_as_user)
            .map(|value| Int64Value { value }),
        run_as_group: security
            .run_as_group
            .or(pod_security.run_as_group)
            .map(|value| Int64Value { value }),
        supplemental_groups: pod_security.supplemental_groups.unwrap_or_default(),
        readonly_rootfs: security.read_only_root_filesystem.unwrap_or(false),
        no_new_privs: security.allow_privilege_escalation == Some(false),
        masked_paths: if security.privileged.unwrap_or(false) {
            Vec::new()
        } else {
            default_masked_paths()
        },
        readonly_paths: if security.privileged.unwrap_or(false) {
            Vec::new()
        } else {
            default_readonly_paths()
        },
        ..LinuxContainerSecurityContext::default()
    }
}

fn default_masked_paths() -> Vec<String> {
    [
        "/proc/acpi",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
    ]
    .map(String::from)
    .to_vec()
}

fn default_readonly_paths() -> Vec<String> {
    ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        .map(String::from)
        .to_vec()
}

/// Labels of a container: the pod's identity and the container's name.
pub(crate) fn container_labels(pod: &Pod, container: &Container) -> HashMap<String, String> {
    let meta = &pod.metadata;
    HashMap::from([
        (POD_NAME.to_owned(), meta.name.clone().unwrap_or_default()),
        (POD_NAMESPACE.to_owned(), meta.namespace.clone().unwrap_or_default()),
        (POD_UID.to_owned(), meta.uid.clone().unwrap_or_default()),
        (CONTAINER_NAME.to_owned(), container.name.clone()),
        (MANAGED_BY.to_owned(), "true".to_owned()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "web-1", "namespace": "shop", "uid": "u1"}, "spec": spec}),
        )
        .unwrap_or_default()
    }

    fn env<'a>(
        dns: &'a [IpAddr],
        searches: &'a [String],
        servers: &'a [String],
    ) -> SandboxEnvironment<'a> {
        SandboxEnvironment {
            log_directory: Path::new("/logs"),
            cluster_dns: dns,
            cluster_domain: "cluster.local",
            host_searches: searches,
            host_servers: servers,
        }
    }

    #[test]
    fn cluster_first_dns_searches_the_namespace_first() {
        let dns = [IpAddr::from([10, 43, 0, 10])];
        let searches = vec!["example.com".to_owned()];
        let servers = vec!["1.1.1.1".to_owned()];
        let config = dns_config(&pod(json!({"containers": []})), &env(&dns, &searches, &servers));
        let config = config.unwrap_or_default();
        assert_eq!(config.servers, vec!["10.43.0.10"]);
        assert_eq!(
            config.searches,
            vec!["shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "example.com"]
        );
        assert_eq!(config.options, vec!["ndots:5"]);
        let host = dns_config(
            &pod(json!({"containers": [], "dnsPolicy": "Default"})),
            &env(&dns, &searches, &servers),
        );
        assert_eq!(host.unwrap_or_default().servers, vec!["1.1.1.1"]);
    }

    #[test]
    fn resources_follow_requests_and_limits() {
        let p = pod(
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}}}]}),
        );
        let spec = p.spec.clone().unwrap_or_default();
        let r = linux_resources(&p, &spec.containers[0], 1 << 30);
        assert_eq!(r.cpu_shares, 256);
        assert_eq!(r.cpu_quota, 50_000);
        assert_eq!(r.cpu_period, 100_000);
        assert_eq!(r.memory_limit_in_bytes, 128 << 20);
        assert!((2..=999).contains(&r.oom_score_adj));
        assert_eq!(cgroup_parent(&p), "/kubepods/burstable/podu1");
    }
}
