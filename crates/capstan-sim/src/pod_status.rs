//! What a hollow kubelet does with a pod bound to one of its nodes, decided without IO: the
//! next step from the pod and what this process already did to it, and the statuses it
//! reports (Running, then Succeeded for pods that do not restart).

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus,
    HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use std::net::Ipv4Addr;
use std::time::Duration;

/// What this process did to a pod, remembered so that a stale read of the pod (the watch
/// has not yet delivered our own update) never undoes it. (The pod's IP is remembered by the
/// node's `PodIpam`, which hands the same pod the same address again.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRecord {
    pub namespace: String,
    pub name: String,
    pub node: String,
    /// When its containers started (whole seconds, as the API keeps times).
    pub started_at: Timestamp,
    pub stage: Stage,
}

/// How far a pod has come in this process's hands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// An IP and a start time are chosen; the Running status may not be written yet.
    Starting,
    /// The Running status was written.
    Running,
    /// The pod is over (we reported it Succeeded, or someone else ended it): its IP is
    /// released.
    Finished,
    /// The pod was deleted for good; its record goes when the pod leaves the cache.
    Deleted,
}

/// The next thing to do for a pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing until the pod changes.
    Nothing,
    /// Its deletion was requested: remove it for good (there are no containers to stop).
    Delete,
    /// Report it Running (again, if the previous attempt failed).
    Start,
    /// It was reported Running before this process knew it (a restart of the simulator):
    /// remember its IP and start time.
    Adopt { pod_ip: Option<Ipv4Addr>, started_at: Timestamp },
    /// Let it run this much longer, then finish it.
    WaitToFinish(Duration),
    /// Report it Succeeded.
    Finish,
    /// It reached a terminal phase: release its IP.
    Release,
}

/// Decides the next step for `pod`, given what this process did to it (`record`).
pub fn next_step(
    pod: &Pod,
    record: Option<&PodRecord>,
    now: Timestamp,
    succeed_after: Duration,
) -> Step {
    let stage = record.map(|record| record.stage);
    if pod.metadata.deletion_timestamp.is_some() {
        return if stage == Some(Stage::Deleted) { Step::Nothing } else { Step::Delete };
    }
    if matches!(stage, Some(Stage::Finished | Stage::Deleted)) {
        return Step::Nothing;
    }
    let phase = pod.status.as_ref().and_then(|status| status.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return Step::Release;
    }
    match record {
        Some(record) if record.stage == Stage::Running => {
            if restarts_always(pod) {
                return Step::Nothing;
            }
            // A start time in the future (the clock went back) counts as just started.
            let ran = Duration::try_from(now.duration_since(record.started_at)).unwrap_or_default();
            match succeed_after.checked_sub(ran) {
                Some(remaining) if !remaining.is_zero() => Step::WaitToFinish(remaining),
                _ => Step::Finish,
            }
        }
        Some(_) => Step::Start,
        None if phase == Some("Running") => {
            let status = pod.status.as_ref();
            let pod_ip = status.and_then(|s| s.pod_ip.as_deref()).and_then(|ip| ip.parse().ok());
            let started_at = status.and_then(|s| s.start_time.as_ref()).map_or(now, |t| t.0);
            Step::Adopt { pod_ip, started_at }
        }
        None => Step::Start,
    }
}

/// Whether the pod's containers are restarted when they exit (`restartPolicy: Always`, the
/// default), so that it never finishes on its own.
fn restarts_always(pod: &Pod) -> bool {
    let policy = pod.spec.as_ref().and_then(|spec| spec.restart_policy.as_deref());
    matches!(policy, None | Some("Always"))
}

/// Whether the pod shares its node's network namespace (and so its IP).
pub fn uses_host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|spec| spec.host_network).unwrap_or(false)
}

/// The time in whole seconds, the precision the API keeps `startTime` and condition times in.
pub fn whole_seconds(time: Timestamp) -> Timestamp {
    Timestamp::from_second(time.as_second()).unwrap_or(time)
}

/// The status of a pod whose containers all run since `started_at`: phase Running, the
/// node's and the pod's IPs, every condition True, init containers completed (sidecars
/// running).
pub fn running_status(
    pod: &Pod,
    host_ip: Ipv4Addr,
    pod_ip: Ipv4Addr,
    started_at: Timestamp,
) -> PodStatus {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let conditions = [
        ("PodReadyToStartContainers", "True", None),
        ("Initialized", "True", None),
        ("Ready", "True", None),
        ("ContainersReady", "True", None),
        ("PodScheduled", "True", None),
    ];
    let (containers, init_containers) = containers(pod);
    PodStatus {
        phase: Some("Running".to_owned()),
        conditions: Some(conditions_at(pod, &conditions, started_at)),
        host_ip: Some(host_ip.to_string()),
        host_ips: Some(vec![HostIP { ip: host_ip.to_string() }]),
        pod_ip: Some(pod_ip.to_string()),
        pod_ips: Some(vec![PodIP { ip: pod_ip.to_string() }]),
        start_time: Some(Time(started_at)),
        container_statuses: Some(
            containers.iter().map(|c| running_container(uid, c, started_at)).collect(),
        ),
        init_container_statuses: non_empty(
            init_containers
                .iter()
                .map(|c| {
                    if is_sidecar(c) {
                        running_container(uid, c, started_at)
                    } else {
                        completed_init_container(uid, c, started_at)
                    }
                })
                .collect(),
        ),
        ..PodStatus::default()
    }
}

/// The status of a pod whose containers all exited 0 at `finished_at`: phase Succeeded,
/// nothing ready any more. IPs and start time stay as they were.
pub fn succeeded_status(pod: &Pod, started_at: Timestamp, finished_at: Timestamp) -> PodStatus {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let conditions = [
        ("PodReadyToStartContainers", "False", None),
        ("Initialized", "True", None),
        ("Ready", "False", Some("PodCompleted")),
        ("ContainersReady", "False", Some("PodCompleted")),
        ("PodScheduled", "True", None),
    ];
    let (containers, init_containers) = containers(pod);
    let terminated = |container: &Container, ready: bool| ContainerStatus {
        ready,
        started: Some(false),
        state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                container_id: Some(container_id(uid, container)),
                exit_code: 0,
                reason: Some("Completed".to_owned()),
                started_at: Some(Time(started_at)),
                finished_at: Some(Time(finished_at)),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        }),
        ..container_status(uid, container)
    };
    PodStatus {
        phase: Some("Succeeded".to_owned()),
        conditions: Some(conditions_at(pod, &conditions, finished_at)),
        container_statuses: Some(containers.iter().map(|c| terminated(c, false)).collect()),
        init_container_statuses: non_empty(
            init_containers
                .iter()
                .map(|c| {
                    if is_sidecar(c) {
                        terminated(c, false)
                    } else {
                        completed_init_container(uid, c, started_at)
                    }
                })
                .collect(),
        ),
        ..PodStatus::default()
    }
}

/// The pod's containers and init containers.
fn containers(pod: &Pod) -> (&[Container], &[Container]) {
    match &pod.spec {
        Some(spec) => (&spec.containers, spec.init_containers.as_deref().unwrap_or_default()),
        None => (&[], &[]),
    }
}

/// Conditions `(type, status, reason)` as of `now`. A condition the pod already has with the
/// same status keeps its transition time, as the kubelet keeps it, so that writing the same
/// status twice changes nothing.
fn conditions_at(
    pod: &Pod,
    conditions: &[(&str, &str, Option<&str>)],
    now: Timestamp,
) -> Vec<PodCondition> {
    let existing = pod.status.as_ref().and_then(|status| status.conditions.as_deref());
    conditions
        .iter()
        .map(|&(type_, status, reason)| {
            let since = existing
                .into_iter()
                .flatten()
                .find(|c| c.type_ == type_ && c.status == status)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now));
            PodCondition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                reason: reason.map(str::to_owned),
                last_transition_time: Some(since),
                ..PodCondition::default()
            }
        })
        .collect()
}

/// A sidecar: an init container that keeps running beside the others.
fn is_sidecar(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}

fn container_id(pod_uid: &str, container: &Container) -> String {
    format!("hollow://{pod_uid}-{}", container.name)
}

/// The parts of a container's status that never change.
fn container_status(pod_uid: &str, container: &Container) -> ContainerStatus {
    let image = container.image.clone().unwrap_or_default();
    ContainerStatus {
        name: container.name.clone(),
        image_id: format!("hollow://{image}"),
        image,
        container_id: Some(container_id(pod_uid, container)),
        restart_count: 0,
        ..ContainerStatus::default()
    }
}

fn running_container(
    pod_uid: &str,
    container: &Container,
    started_at: Timestamp,
) -> ContainerStatus {
    ContainerStatus {
        ready: true,
        started: Some(true),
        state: Some(ContainerState {
            running: Some(ContainerStateRunning { started_at: Some(Time(started_at)) }),
            ..ContainerState::default()
        }),
        ..container_status(pod_uid, container)
    }
}

/// An init container that ran to completion: ready (it exited 0), no longer started.
fn completed_init_container(
    pod_uid: &str,
    container: &Container,
    started_at: Timestamp,
) -> ContainerStatus {
    ContainerStatus {
        ready: true,
        started: Some(false),
        state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                container_id: Some(container_id(pod_uid, container)),
                exit_code: 0,
                reason: Some("Completed".to_owned()),
                started_at: Some(Time(started_at)),
                finished_at: Some(Time(started_at)),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        }),
        ..container_status(pod_uid, container)
    }
}

fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn record(stage: Stage, started_at: &str) -> PodRecord {
        PodRecord {
            namespace: "default".to_owned(),
            name: "p".to_owned(),
            node: "hollow-0".to_owned(),
            started_at: at(started_at),
            stage,
        }
    }

    fn check_step(pod_json: serde_json::Value, record: Option<PodRecord>, expected: Step) {
        let now = at("2025-01-01T00:00:10Z");
        let actual =
            next_step(&pod(pod_json.clone()), record.as_ref(), now, Duration::from_secs(5));
        assert_eq!(actual, expected, "pod {pod_json}, record {record:?}");
    }

    #[test]
    fn steps() {
        let pending = json!({"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": [], "nodeName": "hollow-0"}, "status": {"phase": "Pending"}});
        let never = json!({"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": [], "restartPolicy": "Never"}, "status": {"phase": "Running"}});
        let always_running = json!({"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": []}, "status": {"phase": "Running", "podIP": "10.64.0.9", "startTime": "2025-01-01T00:00:01Z"}});
        let deleting = json!({"metadata": {"name": "p", "uid": "u", "deletionTimestamp": "2025-01-01T00:00:09Z"}, "spec": {"containers": []}});
        let succeeded = json!({"metadata": {"name": "p"}, "spec": {"containers": []}, "status": {"phase": "Succeeded"}});

        // A new pod starts; a failed start is retried; a stale read after the start does not
        // start it again.
        check_step(pending.clone(), None, Step::Start);
        check_step(
            json!({"metadata": {"name": "p"}, "spec": {"containers": []}}),
            None,
            Step::Start,
        );
        check_step(
            pending.clone(),
            Some(record(Stage::Starting, "2025-01-01T00:00:09Z")),
            Step::Start,
        );
        check_step(
            pending.clone(),
            Some(record(Stage::Running, "2025-01-01T00:00:09Z")),
            Step::Nothing,
        );
        // A pod that does not restart runs for `succeed_after`, then finishes.
        check_step(
            never.clone(),
            Some(record(Stage::Running, "2025-01-01T00:00:08Z")),
            Step::WaitToFinish(Duration::from_secs(3)),
        );
        check_step(
            never.clone(),
            Some(record(Stage::Running, "2025-01-01T00:00:05Z")),
            Step::Finish,
        );
        check_step(
            never.clone(),
            Some(record(Stage::Running, "2025-01-01T00:00:01Z")),
            Step::Finish,
        );
        // A clock that went backwards gives the full wait, never a panic.
        check_step(
            never.clone(),
            Some(record(Stage::Running, "2025-01-01T00:01:00Z")),
            Step::WaitToFinish(Duration::from_secs(5)),
        );
        check_step(
            never.clone(),
            Some(record(Stage::Finished, "2025-01-01T00:00:01Z")),
            Step::Nothing,
        );
        // Pods running before this process started are adopted.
        check_step(
            always_running.clone(),
            None,
            Step::Adopt {
                pod_ip: Some(Ipv4Addr::new(10, 64, 0, 9)),
                started_at: at("2025-01-01T00:00:01Z"),
            },
        );
        check_step(
            never,
            None,
            Step::Adopt { pod_ip: None, started_at: at("2025-01-01T00:00:10Z") },
        );
        check_step(
            always_running,
            Some(record(Stage::Running, "2025-01-01T00:00:01Z")),
            Step::Nothing,
        );
        // Deletion: once.
        check_step(deleting.clone(), None, Step::Delete);
        check_step(
            deleting.clone(),
            Some(record(Stage::Running, "2025-01-01T00:00:01Z")),
            Step::Delete,
        );
        check_step(deleting, Some(record(Stage::Deleted, "2025-01-01T00:00:01Z")), Step::Nothing);
        // Terminal pods give their IP back.
        check_step(succeeded.clone(), None, Step::Release);
        check_step(
            succeeded.clone(),
            Some(record(Stage::Running, "2025-01-01T00:00:01Z")),
            Step::Release,
        );
        check_step(succeeded, Some(record(Stage::Finished, "2025-01-01T00:00:01Z")), Step::Nothing);
    }

    fn check_status(status: PodStatus, expected: serde_json::Value) {
        let actual = serde_json::to_value(status).unwrap();
        assert_eq!(actual, expected, "\n{}", serde_json::to_string_pretty(&actual).unwrap());
    }

    fn condition(type_: &str, status: &str, since: &str) -> serde_json::Value {
        json!({"type": type_, "status": status, "lastTransitionTime": since})
    }

    fn sample_pod() -> Pod {
        pod(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u-1"},
            "spec": {
                "nodeName": "hollow-0",
                "restartPolicy": "Never",
                "initContainers": [
                    {"name": "setup", "image": "busybox"},
                    {"name": "proxy", "image": "envoy", "restartPolicy": "Always"},
                ],
                "containers": [{"name": "app", "image": "nginx:1.27"}],
            },
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"}],
            },
        }))
    }

    #[test]
    fn running() {
        let started = at("2025-01-01T00:00:03Z");
        let status = running_status(
            &sample_pod(),
            Ipv4Addr::new(10, 250, 0, 1),
            Ipv4Addr::new(10, 64, 0, 2),
            started,
        );
        let t = "2025-01-01T00:00:03Z";
        check_status(
            status,
            json!({
                "phase": "Running",
                "conditions": [
                    condition("PodReadyToStartContainers", "True", t),
                    condition("Initialized", "True", t),
                    condition("Ready", "True", t),
                    condition("ContainersReady", "True", t),
                    // The scheduler's condition keeps its time.
                    condition("PodScheduled", "True", "2025-01-01T00:00:00Z"),
                ],
                "hostIP": "10.250.0.1",
                "hostIPs": [{"ip": "10.250.0.1"}],
                "podIP": "10.64.0.2",
                "podIPs": [{"ip": "10.64.0.2"}],
                "startTime": t,
                "containerStatuses": [{
                    "containerID": "hollow://u-1-app",
                    "image": "nginx:1.27",
                    "imageID": "hollow://nginx:1.27",
                    "name": "app",
                    "ready": true,
                    "restartCount": 0,
                    "started": true,
                    "state": {"running": {"startedAt": t}},
                }],
                "initContainerStatuses": [
                    {
                        "containerID": "hollow://u-1-setup",
                        "image": "busybox",
                        "imageID": "hollow://busybox",
                        "name": "setup",
                        "ready": true,
                        "restartCount": 0,
                        "started": false,
                        "state": {"terminated": {
                            "containerID": "hollow://u-1-setup",
                            "exitCode": 0,
                            "finishedAt": t,
                            "reason": "Completed",
                            "startedAt": t,
                        }},
                    },
                    {
                        "containerID": "hollow://u-1-proxy",
                        "image": "envoy",
                        "imageID": "hollow://envoy",
                        "name": "proxy",
                        "ready": true,
                        "restartCount": 0,
                        "started": true,
                        "state": {"running": {"startedAt": t}},
                    },
                ],
            }),
        );
    }

    #[test]
    fn succeeded() {
        let started = at("2025-01-01T00:00:03Z");
        let finished = at("2025-01-01T00:00:08Z");
        let mut pod = sample_pod();
        // As the Running status left it.
        pod.status = Some(running_status(
            &pod,
            Ipv4Addr::new(10, 250, 0, 1),
            Ipv4Addr::new(10, 64, 0, 2),
            started,
        ));
        let (s, f) = ("2025-01-01T00:00:03Z", "2025-01-01T00:00:08Z");
        let terminated = |name: &str, image: &str, ready: bool, finished: &str| {
            json!({
                "containerID": format!("hollow://u-1-{name}"),
                "image": image,
                "imageID": format!("hollow://{image}"),
                "name": name,
                "ready": ready,
                "restartCount": 0,
                "started": false,
                "state": {"terminated": {
                    "containerID": format!("hollow://u-1-{name}"),
                    "exitCode": 0,
                    "finishedAt": finished,
                    "reason": "Completed",
                    "startedAt": s,
                }},
            })
        };
        check_status(
            succeeded_status(&pod, started, finished),
            json!({
                "phase": "Succeeded",
                "conditions": [
                    condition("PodReadyToStartContainers", "False", f),
                    condition("Initialized", "True", s),
                    {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": f},
                    {"type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastTransitionTime": f},
                    condition("PodScheduled", "True", "2025-01-01T00:00:00Z"),
                ],
                "containerStatuses": [terminated("app", "nginx:1.27", false, f)],
                "initContainerStatuses": [
                    terminated("setup", "busybox", true, s),
                    terminated("proxy", "envoy", false, f),
                ],
            }),
        );
    }

    #[test]
    fn host_network_and_seconds() {
        assert!(uses_host_network(&pod(json!({"spec": {"containers": [], "hostNetwork": true}}))));
        assert!(!uses_host_network(&pod(json!({"spec": {"containers": []}}))));
        assert_eq!(whole_seconds(at("2025-01-01T00:00:03.999Z")), at("2025-01-01T00:00:03Z"));
    }
}
