//! The node's object and status as pure functions of what was read from the host and the
//! runtime: labels and taints, capacity and allocatable, the four conditions with their
//! transition times, the images, addresses and `nodeInfo`.

use super::host::{FilesystemReading, MemoryReading, SystemIdentity};
use crate::KubeletConfig;
use crate::runtime::cri_api;
use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints,
    NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The kubelet's default hard eviction threshold `memory.available<100Mi`: memory the
/// node keeps back from pods, and below which it reports MemoryPressure.
pub(crate) const MEMORY_EVICTION_BYTES: u64 = 100 * 1024 * 1024;
/// `nodefs.available<10%`.
pub(crate) const NODEFS_EVICTION_PERCENT: u64 = 10;
/// `nodefs.inodesFree<5%`.
pub(crate) const INODES_EVICTION_PERCENT: u64 = 5;
/// The kubelet reports at most this many images, the largest first...
pub(crate) const MAX_IMAGES: usize = 50;
/// ...and at most this many names of each.
pub(crate) const MAX_NAMES_PER_IMAGE: usize = 5;

/// The version this kubelet reports: the same `gitVersion` as Capstan's API server's
/// `/version`, since both come from one build.
pub fn kubelet_version() -> String {
    format!("v1.33.0-capstan.{}", env!("CARGO_PKG_VERSION"))
}

/// The architecture in Go's spelling, as Kubernetes labels and reports it.
pub(crate) fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        "x86" => "386",
        other => other,
    }
}

/// The Node to register: name, the standard labels, the configured labels (which may
/// override the standard ones, as `--node-labels` can) and taints.
pub(crate) fn build_node(config: &KubeletConfig) -> Node {
    let arch = go_arch();
    let mut labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", config.node_name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", arch),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", arch),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect();
    labels.extend(config.node_labels.clone());
    let taints = config.node_taints.clone();
    Node {
        metadata: ObjectMeta {
            name: Some(config.node_name.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            taints: (!taints.is_empty()).then_some(taints),
            ..NodeSpec::default()
        }),
        status: None,
    }
}

/// The merge patch that brings an existing Node in line with `wanted` without undoing what
/// others set: our labels are (re)applied, our taints added when missing; other labels,
/// taints, `spec.podCIDR` and the rest are kept. `None` when nothing differs. The patch
/// carries the resourceVersion read, so that a concurrent change to the taints fails it
/// instead of being lost.
pub(crate) fn reconcile_existing(existing: &Node, wanted: &Node) -> Option<serde_json::Value> {
    let existing_labels = existing.metadata.labels.clone().unwrap_or_default();
    let changed_labels: BTreeMap<&String, &String> = wanted
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(key, value)| existing_labels.get(*key) != Some(*value))
        .collect();
    let existing_taints =
        existing.spec.as_ref().and_then(|spec| spec.taints.clone()).unwrap_or_default();
    let missing_taints: Vec<&Taint> = wanted
        .spec
        .as_ref()
        .and_then(|spec| spec.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|taint| {
            !existing_taints.iter().any(|t| t.key == taint.key && t.effect == taint.effect)
        })
        .collect();
    if changed_labels.is_empty() && missing_taints.is_empty() {
        return None;
    }
    let mut patch = serde_json::json!({
        "metadata": {"resourceVersion": existing.metadata.resource_version},
    });
    if !changed_labels.is_empty() {
        patch["metadata"]["labels"] = serde_json::json!(changed_labels);
    }
    if !missing_taints.is_empty() {
        let mut taints = existing_taints.clone();
        taints.extend(missing_taints.into_iter().cloned());
        patch["spec"] = serde_json::json!({ "taints": taints });
    }
    Some(patch)
}

/// What the node has, before anything is kept back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resources {
    pub(crate) cpus: u32,
    pub(crate) memory_bytes: u64,
    pub(crate) ephemeral_storage_bytes: u64,
    pub(crate) pods: u32,
}

/// `status.capacity`.
pub(crate) fn capacity(resources: &Resources) -> BTreeMap<String, Quantity> {
    quantities(resources)
}

/// `status.allocatable`: the capacity minus the hard eviction thresholds (100Mi of memory,
/// 10% of the node filesystem), as the kubelet computes it with no reservations configured.
pub(crate) fn allocatable(resources: &Resources) -> BTreeMap<String, Quantity> {
    let storage = resources.ephemeral_storage_bytes;
    // floor(storage × percent / 100), computed without the overflow of the product:
    // storage = 100q + r gives q × percent + floor(r × percent / 100).
    let reserved =
        storage / 100 * NODEFS_EVICTION_PERCENT + storage % 100 * NODEFS_EVICTION_PERCENT / 100;
    quantities(&Resources {
        memory_bytes: resources.memory_bytes.saturating_sub(MEMORY_EVICTION_BYTES),
        ephemeral_storage_bytes: storage - reserved,
        ..*resources
    })
}

fn quantities(resources: &Resources) -> BTreeMap<String, Quantity> {
    [
        ("cpu", resources.cpus.to_string()),
        ("memory", binary_quantity(resources.memory_bytes)),
        ("ephemeral-storage", binary_quantity(resources.ephemeral_storage_bytes)),
        ("pods", resources.pods.to_string()),
    ]
    .into_iter()
    .map(|(name, amount)| (name.to_owned(), Quantity(amount)))
    .collect()
}

/// A byte count in the canonical form of a binary-SI quantity: the largest suffix that
/// divides it exactly (`8Gi`, `16318432Ki`), plain bytes otherwise.
pub(crate) fn binary_quantity(bytes: u64) -> String {
    const SUFFIXES: [(&str, u32); 6] =
        [("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)];
    if bytes == 0 {
        return "0".to_owned();
    }
    SUFFIXES
        .iter()
        .find(|(_, shift)| bytes.trailing_zeros() >= *shift)
        .map_or_else(|| bytes.to_string(), |(suffix, shift)| format!("{}{suffix}", bytes >> shift))
}

/// One condition as observed now, before transition times are worked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observed {
    pub(crate) type_: &'static str,
    /// `"True"` or `"False"`.
    pub(crate) status: &'static str,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

/// What is wrong with the runtime, from its CRI `Status` (or the failure to get it), in the
/// kubelet's words; empty when the runtime and its network are ready.
pub(crate) fn runtime_problems(
    status: Result<&cri_api::StatusResponse, &crate::runtime::RuntimeError>,
) -> Vec<String> {
    let status = match status {
        Ok(status) => status,
        Err(error) => return vec![format!("container runtime is down: {error}")],
    };
    let conditions = status.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    let find = |type_: &str| conditions.iter().find(|c| c.r#type == type_);
    let describe = |c: &cri_api::RuntimeCondition| {
        format!("{}={} reason:{} message:{}", c.r#type, c.status, c.reason, c.message)
    };
    let mut problems = Vec::new();
    match find("RuntimeReady") {
        Some(condition) if condition.status => {}
        Some(condition) => {
            problems.push(format!("container runtime not ready: {}", describe(condition)));
        }
        None => problems.push("container runtime not ready: RuntimeReady is not set".to_owned()),
    }
    match find("NetworkReady") {
        Some(condition) if condition.status => {}
        Some(condition) => {
            problems.push(format!("container runtime network not ready: {}", describe(condition)));
        }
        None => {
            problems.push("container runtime network not ready: NetworkReady is not set".to_owned())
        }
    }
    problems
}

/// The four conditions the kubelet owns, in the kubelet's order, as of the given readings.
pub(crate) fn observe_conditions(
    memory: &MemoryReading,
    filesystem: &FilesystemReading,
    nodefs_percent: u64,
    runtime_problems: &[String],
) -> Vec<Observed> {
    let memory_pressure = memory.available < MEMORY_EVICTION_BYTES;
    let disk_pressure = filesystem.available_bytes
        < filesystem.capacity_bytes / 100 * nodefs_percent
        || filesystem.inodes_free < filesystem.inodes / 100 * INODES_EVICTION_PERCENT;
    let ready = match runtime_problems {
        [] => Observed {
            type_: "Ready",
            status: "True",
            reason: "KubeletReady",
            message: "kubelet is posting ready status".to_owned(),
        },
        // One problem is said as is; several as a bracketed list, as the kubelet's
        // aggregated error reads.
        [only] => Observed {
            type_: "Ready",
            status: "False",
            reason: "KubeletNotReady",
            message: only.clone(),
        },
        several => Observed {
            type_: "Ready",
            status: "False",
            reason: "KubeletNotReady",
            message: format!("[{}]", several.join(", ")),
        },
    };
    vec![
        if memory_pressure {
            Observed {
                type_: "MemoryPressure",
                status: "True",
                reason: "KubeletHasInsufficientMemory",
                message: "kubelet has insufficient memory available".to_owned(),
            }
        } else {
            Observed {
                type_: "MemoryPressure",
                status: "False",
                reason: "KubeletHasSufficientMemory",
                message: "kubelet has sufficient memory available".to_owned(),
            }
        },
        if disk_pressure {
            Observed {
                type_: "DiskPressure",
                status: "True",
                reason: "KubeletHasDiskPressure",
                message: "kubelet has disk pressure".to_owned(),
            }
        } else {
            Observed {
                type_: "DiskPressure",
                status: "False",
                reason: "KubeletHasNoDiskPressure",
                message: "kubelet has no disk pressure".to_owned(),
            }
        },
        // The kubelet has no default PID eviction threshold, so it never reports pressure
        // unless one is configured (Capstan has no such setting).
        Observed {
            type_: "PIDPressure",
            status: "False",
            reason: "KubeletHasSufficientPID",
            message: "kubelet has sufficient PID available".to_owned(),
        },
        ready,
    ]
}

/// The conditions to post at `now`: every observed condition gets `now` as its heartbeat;
/// its transition time stays that of the posted condition of the same type while the status
/// is unchanged, and becomes `now` when the status changes or the condition is new. Other
/// conditions (set by others) are kept as they are.
pub(crate) fn next_conditions(
    previous: &[NodeCondition],
    observed: &[Observed],
    now: Timestamp,
) -> Vec<NodeCondition> {
    let mut conditions: Vec<NodeCondition> = previous
        .iter()
        .filter(|condition| !observed.iter().any(|o| o.type_ == condition.type_))
        .cloned()
        .collect();
    for observation in observed {
        let before = previous.iter().find(|c| c.type_ == observation.type_);
        let transition = match before {
            Some(before) if before.status == observation.status => {
                before.last_transition_time.clone().unwrap_or(Time(now))
            }
            _ => Time(now),
        };
        conditions.push(NodeCondition {
            type_: observation.type_.to_owned(),
            status: observation.status.to_owned(),
            reason: Some(observation.reason.to_owned()),
            message: Some(observation.message.clone()),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(transition),
        });
    }
    conditions
}

/// Whether posting `observed` would change a condition's status, reason or message
/// compared with `posted` (heartbeat times aside).
pub(crate) fn conditions_changed(posted: &[Observed], observed: &[Observed]) -> bool {
    posted != observed
}

/// `status.images`: the largest images first, at most [`MAX_IMAGES`], each with its
/// digests then its tags (at most [`MAX_NAMES_PER_IMAGE`]). Images without any name are
/// left out: there is nothing a pod could refer to them by.
pub(crate) fn node_images(mut images: Vec<cri_api::Image>) -> Vec<ContainerImage> {
    images.sort_by_key(|image| std::cmp::Reverse(image.size));
    images
        .into_iter()
        .filter_map(|image| {
            let names: Vec<String> = image
                .repo_digests
                .into_iter()
                .chain(image.repo_tags)
                .take(MAX_NAMES_PER_IMAGE)
                .collect();
            (!names.is_empty()).then(|| ContainerImage {
                names: Some(names),
                size_bytes: i64::try_from(image.size).ok(),
            })
        })
        .take(MAX_IMAGES)
        .collect()
}

/// `status.nodeInfo`. `runtime` is the CRI `Version` answer: (name, version).
pub(crate) fn node_info(identity: &SystemIdentity, runtime: &(String, String)) -> NodeSystemInfo {
    NodeSystemInfo {
        machine_id: identity.machine_id.clone(),
        system_uuid: identity.system_uuid.clone(),
        boot_id: identity.boot_id.clone(),
        kernel_version: identity.kernel_version.clone(),
        os_image: identity.os_image.clone(),
        container_runtime_version: format!("{}://{}", runtime.0, runtime.1),
        kubelet_version: kubelet_version(),
        kube_proxy_version: kubelet_version(),
        operating_system: "linux".to_owned(),
        architecture: go_arch().to_owned(),
        swap: None,
    }
}

/// `status.addresses`: the InternalIP (when known) and the Hostname, which is the node name.
pub(crate) fn addresses(internal_ips: &[IpAddr], node_name: &str) -> Vec<NodeAddress> {
    internal_ips
        .iter()
        .map(|ip| NodeAddress { type_: "InternalIP".to_owned(), address: ip.to_string() })
        .chain([NodeAddress { type_: "Hostname".to_owned(), address: node_name.to_owned() }])
        .collect()
}

/// Everything a full status post is made of.
#[derive(Debug, Clone)]
pub(crate) struct StatusParts {
    pub(crate) resources: Resources,
    pub(crate) conditions: Vec<NodeCondition>,
    pub(crate) addresses: Vec<NodeAddress>,
    pub(crate) node_info: NodeSystemInfo,
    pub(crate) images: Vec<ContainerImage>,
    pub(crate) kubelet_port: u16,
}

/// The node status, ready for a merge patch of `nodes/<name>/status`.
pub(crate) fn build_status(parts: StatusParts) -> NodeStatus {
    NodeStatus {
        capacity: Some(capacity(&parts.resources)),
        allocatable: Some(allocatable(&parts.resources)),
        conditions: Some(parts.conditions),
        addresses: Some(parts.addresses),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: i32::from(parts.kubelet_port) }),
        }),
        node_info: Some(parts.node_info),
        images: Some(parts.images),
        ..NodeStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GI: u64 = 1024 * 1024 * 1024;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn check(actual: impl serde::Serialize, expected: serde_json::Value) {
        let actual = serde_json::to_value(actual).unwrap();
        assert_eq!(actual, expected, "\n{}", serde_json::to_string_pretty(&actual).unwrap());
    }

    #[test]
    fn binary_quantities() {
        for (bytes, expected) in [
            (0, "0"),
            (1000, "1000"),
            (1024, "1Ki"),
            (100 * 1024 * 1024, "100Mi"),
            (8 * GI, "8Gi"),
            (16_318_432 * 1024, "16318432Ki"),
            (94_580_335_255, "94580335255"),
        ] {
            assert_eq!(binary_quantity(bytes), expected, "{bytes}");
        }
    }

    #[test]
    fn capacity_and_allocatable() {
        let resources = Resources {
            cpus: 2,
            memory_bytes: 8 * GI,
            ephemeral_storage_bytes: 100 * GI,
            pods: 110,
        };
        check(
            capacity(&resources),
            json!({"cpu": "2", "ephemeral-storage": "100Gi", "memory": "8Gi", "pods": "110"}),
        );
        // 8Gi - 100Mi = 8092Mi; 100Gi - 10% = 90Gi.
        check(
            allocatable(&resources),
            json!({"cpu": "2", "ephemeral-storage": "90Gi", "memory": "8092Mi", "pods": "110"}),
        );
        // Less memory than the threshold leaves nothing, not an underflow; an odd size
        // loses exactly a tenth, rounded down.
        let small = Resources {
            memory_bytes: 50 * 1024 * 1024,
            ephemeral_storage_bytes: 1001,
            ..resources
        };
        check(
            allocatable(&small),
            json!({"cpu": "2", "ephemeral-storage": "901", "memory": "0", "pods": "110"}),
        );
    }

    fn ready_runtime() -> cri_api::StatusResponse {
        let condition = |type_: &str| cri_api::RuntimeCondition {
            r#type: type_.into(),
            status: true,
            reason: String::new(),
            message: String::new(),
        };
        cri_api::StatusResponse {
            status: Some(cri_api::RuntimeStatus {
                conditions: vec![condition("RuntimeReady"), condition("NetworkReady")],
            }),
            ..Default::default()
        }
    }

    #[test]
    fn runtime_problems_in_the_kubelet_words() {
        assert!(runtime_problems(Ok(&ready_runtime())).is_empty());
        let mut no_network = ready_runtime();
        let network = &mut no_network.status.as_mut().unwrap().conditions[1];
        network.status = false;
        network.reason = "NetworkPluginNotReady".into();
        network.message = "Network plugin returns error: cni plugin not initialized".into();
        assert_eq!(
            runtime_problems(Ok(&no_network)),
            [
                "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"
            ]
        );
        let error = crate::runtime::RuntimeError::Call {
            operation: "Status",
            code: tonic::Code::Unavailable,
            message: "connection refused".into(),
        };
        assert_eq!(
            runtime_problems(Err(&error)),
            ["container runtime is down: Status: connection refused"]
        );
        let empty = cri_api::StatusResponse::default();
        assert_eq!(runtime_problems(Ok(&empty)).len(), 2);
    }

    fn readings(
        available_memory: u64,
        free_disk_percent: u64,
    ) -> (MemoryReading, FilesystemReading) {
        (
            MemoryReading { total: 8 * GI, available: available_memory },
            FilesystemReading {
                capacity_bytes: 100 * GI,
                available_bytes: 100 * GI / 100 * free_disk_percent,
                inodes: 1000,
                inodes_free: 900,
            },
        )
    }

    fn statuses(observed: &[Observed]) -> Vec<(&str, &str, &str)> {
        observed.iter().map(|o| (o.type_, o.status, o.reason)).collect()
    }

    #[test]
    fn conditions_from_readings() {
        let (memory, disk) = readings(4 * GI, 50);
        assert_eq!(
            statuses(&observe_conditions(&memory, &disk, NODEFS_EVICTION_PERCENT, &[])),
            [
                ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                ("PIDPressure", "False", "KubeletHasSufficientPID"),
                ("Ready", "True", "KubeletReady"),
            ]
        );
        let (memory, disk) = readings(99 * 1024 * 1024, 9);
        let problems = vec!["a".to_owned(), "b".to_owned()];
        let observed = observe_conditions(&memory, &disk, NODEFS_EVICTION_PERCENT, &problems);
        assert_eq!(
            statuses(&observed),
            [
                ("MemoryPressure", "True", "KubeletHasInsufficientMemory"),
                ("DiskPressure", "True", "KubeletHasDiskPressure"),
                ("PIDPressure", "False", "KubeletHasSufficientPID"),
                ("Ready", "False", "KubeletNotReady"),
            ]
        );
        assert_eq!(observed[3].message, "[a, b]");
        let one = observe_conditions(&memory, &disk, NODEFS_EVICTION_PERCENT, &problems[..1]);
        assert_eq!(one[3].message, "a");
        // Exactly at the thresholds is no pressure; running out of inodes is.
        let (memory, mut disk) = readings(MEMORY_EVICTION_BYTES, 10);
        assert_eq!(
            statuses(&observe_conditions(&memory, &disk, NODEFS_EVICTION_PERCENT, &[]))[..2],
            [
                ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            ]
        );
        disk.inodes_free = 49;
        assert_eq!(
            observe_conditions(&memory, &disk, NODEFS_EVICTION_PERCENT, &[])[1].status,
            "True"
        );
    }

    #[test]
    fn transitions_move_only_when_the_status_changes() {
        let (memory, disk) = readings(4 * GI, 50);
        let t0 = at("2025-01-01T00:00:00Z");
        let t1 = at("2025-01-01T00:00:10Z");
        let t2 = at("2025-01-01T00:00:20Z");
        let not_ready =
            observe_conditions(&memory, &disk, NODEFS_EVICTION_PERCENT, &["no network".to_owned()]);
        let ready = observe_conditions(&memory, &disk, NODEFS_EVICTION_PERCENT, &[]);
        let foreign = NodeCondition {
            type_: "NetworkUnavailable".into(),
            status: "False".into(),
            last_transition_time: Some(Time(t0)),
            ..NodeCondition::default()
        };
        let first = next_conditions(std::slice::from_ref(&foreign), &not_ready, t0);
        assert_eq!(first.len(), 5);
        assert_eq!(first[0], foreign);
        assert!(first.iter().all(|c| c.last_transition_time == Some(Time(t0))));

        let second = next_conditions(&first, &not_ready, t1);
        assert!(second[1..].iter().all(|c| c.last_heartbeat_time == Some(Time(t1))));
        assert!(second.iter().all(|c| c.last_transition_time == Some(Time(t0))));

        let third = next_conditions(&second, &ready, t2);
        let by_type = |type_: &str| third.iter().find(|c| c.type_ == type_).unwrap().clone();
        assert_eq!(by_type("Ready").last_transition_time, Some(Time(t2)));
        assert_eq!(by_type("Ready").status, "True");
        assert_eq!(by_type("MemoryPressure").last_transition_time, Some(Time(t0)));
        assert!(conditions_changed(&not_ready, &ready));
        assert!(!conditions_changed(&ready, &ready));

        // The node lifecycle controller's Unknown is replaced, as a transition.
        let mut unknown = third.clone();
        unknown.iter_mut().for_each(|c| c.status = "Unknown".into());
        let fourth = next_conditions(&unknown, &ready, t2);
        assert!(fourth[1..].iter().all(|c| c.last_transition_time == Some(Time(t2))));
    }

    #[test]
    fn images_largest_first_with_digests_then_tags() {
        let image = |id: &str, size: u64, tags: &[&str], digests: &[&str]| cri_api::Image {
            id: id.into(),
            size,
            repo_tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            repo_digests: digests.iter().map(|d| (*d).to_owned()).collect(),
            ..Default::default()
        };
        let mut images = vec![
            image("small", 10, &["busybox:latest"], &["busybox@sha256:aa"]),
            image("nameless", 1000, &[], &[]),
            image("big", 500, &["a:1", "a:2", "a:3", "a:4", "a:5"], &["a@sha256:bb"]),
        ];
        check(
            node_images(images.clone()),
            json!([
                {"names": ["a@sha256:bb", "a:1", "a:2", "a:3", "a:4"], "sizeBytes": 500},
                {"names": ["busybox@sha256:aa", "busybox:latest"], "sizeBytes": 10},
            ]),
        );
        images = (0..60).map(|i| image("x", i, &["x"], &[])).collect();
        let kept = node_images(images);
        assert_eq!(kept.len(), MAX_IMAGES);
        assert_eq!(kept[0].size_bytes, Some(59));
        assert_eq!(kept[49].size_bytes, Some(10));
    }

    fn config() -> KubeletConfig {
        let mut config = KubeletConfig::new("n1".into(), "/var/lib/capstan".into(), String::new());
        config.node_labels.insert("team".into(), "storage".into());
        config.node_labels.insert("kubernetes.io/os".into(), "linux".into());
        config.node_taints = vec![Taint {
            key: "dedicated".into(),
            value: Some("infra".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        }];
        config
    }

    #[test]
    fn node_with_labels_and_taints() {
        let node = build_node(&config());
        let labels = node.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert_eq!(labels["kubernetes.io/arch"], go_arch());
        assert_eq!(labels["team"], "storage");
        check(
            node.spec,
            json!({"taints": [{"effect": "NoSchedule", "key": "dedicated", "value": "infra"}]}),
        );
    }

    #[test]
    fn an_existing_node_keeps_what_others_set() {
        let wanted = build_node(&config());
        let mut existing = wanted.clone();
        existing.metadata.resource_version = Some("7".into());
        existing.metadata.labels.as_mut().unwrap().insert("other".into(), "x".into());
        existing.spec.as_mut().unwrap().pod_cidr = Some("10.42.0.0/24".into());
        assert_eq!(reconcile_existing(&existing, &wanted), None);

        let unreachable = Taint {
            key: "node.kubernetes.io/unreachable".into(),
            effect: "NoExecute".into(),
            ..Taint::default()
        };
        existing.spec.as_mut().unwrap().taints = Some(vec![unreachable]);
        existing.metadata.labels.as_mut().unwrap().insert("team".into(), "web".into());
        check(
            reconcile_existing(&existing, &wanted),
            json!({
                "metadata": {"labels": {"team": "storage"}, "resourceVersion": "7"},
                "spec": {"taints": [
                    {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable"},
                    {"effect": "NoSchedule", "key": "dedicated", "value": "infra"},
                ]},
            }),
        );
    }

    #[test]
    fn status_document() {
        let identity = SystemIdentity {
            kernel_version: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            machine_id: "m".into(),
            system_uuid: "u".into(),
            boot_id: "b".into(),
        };
        let parts = StatusParts {
            resources: Resources {
                cpus: 4,
                memory_bytes: GI,
                ephemeral_storage_bytes: 10 * GI,
                pods: 110,
            },
            conditions: Vec::new(),
            addresses: addresses(&[IpAddr::from([192, 0, 2, 10])], "n1"),
            node_info: node_info(&identity, &("containerd".into(), "1.6.20".into())),
            images: Vec::new(),
            kubelet_port: 10250,
        };
        let status = serde_json::to_value(build_status(parts)).unwrap();
        check(
            &status["addresses"],
            json!([
                {"address": "192.0.2.10", "type": "InternalIP"},
                {"address": "n1", "type": "Hostname"},
            ]),
        );
        check(&status["daemonEndpoints"], json!({"kubeletEndpoint": {"Port": 10250}}));
        assert_eq!(status["nodeInfo"]["containerRuntimeVersion"], "containerd://1.6.20");
        assert_eq!(status["nodeInfo"]["kubeletVersion"], kubelet_version());
        assert_eq!(status["nodeInfo"]["osImage"], "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(status["allocatable"]["memory"], "924Mi");
    }
}
