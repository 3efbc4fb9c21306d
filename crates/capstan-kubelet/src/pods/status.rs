//! The pod status the kubelet reports, computed from what the runtime says about the
//! pod's sandbox and containers and what the worker remembers (start failures, back-off).
//! Pure: no IO, so every phase and condition rule is unit-tested.

use crate::runtime::cri_api::{ContainerState as CriState, ContainerStatus as CriStatus};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::HashMap;

/// The instances of one container, newest (highest attempt) first.
pub(crate) type Instances = Vec<CriStatus>;

/// A reason the worker holds for a container that is not running: a failed start or a
/// back-off (`CrashLoopBackOff`, `ErrImagePull`, `CreateContainerConfigError`…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Waiting {
    pub reason: String,
    pub message: String,
}

/// Everything status is computed from.
pub(crate) struct Observed<'a> {
    pub pod: &'a Pod,
    /// The sandbox is ready, with these IPs (first is primary).
    pub sandbox_ready: bool,
    pub pod_ips: Vec<String>,
    pub host_ips: Vec<String>,
    /// By container name.
    pub instances: &'a HashMap<String, Instances>,
    pub waiting: &'a HashMap<String, Waiting>,
    /// Probe verdicts by container name (true when no probe is defined).
    pub ready: &'a (dyn Fn(&str) -> bool + Sync),
    pub started: &'a (dyn Fn(&str) -> bool + Sync),
    /// Kubernetes time (RFC 3339) for new transitions.
    pub now: k8s_openapi::jiff::Timestamp,
}

/// Whether an init container is a sidecar (restartable init container).
pub(crate) fn is_sidecar(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always")
}

fn time(nanos: i64) -> Option<Time> {
    (nanos > 0)
        .then(|| k8s_openapi::jiff::Timestamp::from_nanosecond(i128::from(nanos)).ok())
        .flatten()
        .map(Time)
}

/// The container ID as the API shows it.
pub(crate) fn container_id(id: &str) -> String {
    format!("containerd://{id}")
}

/// The API's terminated state for an exited CRI container.
pub(crate) fn terminated(status: &CriStatus) -> ContainerStateTerminated {
    let reason = if !status.reason.is_empty() {
        status.reason.clone()
    } else if status.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    ContainerStateTerminated {
        exit_code: status.exit_code,
        reason: Some(reason),
        message: Some(status.message.clone()).filter(|m| !m.is_empty()),
        started_at: time(status.started_at),
        finished_at: time(status.finished_at),
        container_id: Some(container_id(&status.id)),
        signal: None,
    }
}

fn is_running(status: &CriStatus) -> bool {
    status.state == CriState::ContainerRunning as i32
}

fn is_exited(status: &CriStatus) -> bool {
    status.state == CriState::ContainerExited as i32
}

/// One container's status.
fn container_status(
    observed: &Observed<'_>,
    container: &Container,
    default_waiting: &str,
) -> ContainerStatus {
    let name = container.name.as_str();
    let instances = observed.instances.get(name).map(Vec::as_slice).unwrap_or_default();
    let latest = instances.first();
    let waiting = observed.waiting.get(name);
    let mut status = ContainerStatus {
        name: name.to_owned(),
        image: container.image.clone().unwrap_or_default(),
        image_id: latest.map(|s| s.image_ref.clone()).unwrap_or_default(),
        container_id: latest.map(|s| container_id(&s.id)),
        restart_count: latest
            .and_then(|s| s.metadata.as_ref())
            .map(|m| i32::try_from(m.attempt).unwrap_or(i32::MAX))
            .unwrap_or(0),
        ..ContainerStatus::default()
    };
    let waiting_state = |reason: &str, message: Option<&str>| ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message: message.map(str::to_owned),
        }),
        ..ContainerState::default()
    };
    match latest {
        Some(latest) if is_running(latest) => {
            status.state = Some(ContainerState {
                running: Some(ContainerStateRunning { started_at: time(latest.started_at) }),
                ..ContainerState::default()
            });
            status.ready = (observed.ready)(name);
            status.started = Some((observed.started)(name));
            if let Some(previous) = instances.get(1).filter(|s| is_exited(s)) {
                status.last_state = Some(ContainerState {
                    terminated: Some(terminated(previous)),
                    ..ContainerState::default()
                });
            }
        }
        Some(latest) if is_exited(latest) => {
            let last = ContainerState {
                terminated: Some(terminated(latest)),
                ..ContainerState::default()
            };
            status.started = Some(false);
            match waiting {
                // Waiting to restart: the exited instance becomes the last state.
                Some(waiting) => {
                    status.state = Some(waiting_state(&waiting.reason, Some(&waiting.message)));
                    status.last_state = Some(last);
                }
                None => {
                    status.state = Some(last);
                    if let Some(previous) = instances.get(1).filter(|s| is_exited(s)) {
                        status.last_state = Some(ContainerState {
                            terminated: Some(terminated(previous)),
                            ..ContainerState::default()
                        });
                    }
                }
            }
        }
        _ => {
            status.started = Some(false);
            status.state = Some(match waiting {
                Some(waiting) => waiting_state(&waiting.reason, Some(&waiting.message)),
                None => waiting_state(default_waiting, None),
            });
        }
    }
    status
}

/// Whether a regular init container finished successfully.
fn init_succeeded(observed: &Observed<'_>, name: &str) -> bool {
    observed
        .instances
        .get(name)
        .and_then(|i| i.first())
        .is_some_and(|s| is_exited(s) && s.exit_code == 0)
}

/// The names of init containers that keep the pod from initializing: regular ones that
/// have not succeeded and sidecars that have not started.
pub(crate) fn pending_init(observed: &Observed<'_>) -> Vec<String> {
    let spec = observed.pod.spec.as_ref();
    let mut pending = Vec::new();
    for container in spec.and_then(|s| s.init_containers.as_deref()).unwrap_or_default() {
        let done = if is_sidecar(container) {
            observed
                .instances
                .get(&container.name)
                .and_then(|i| i.first())
                .is_some_and(|s| is_running(s) && (observed.started)(&container.name))
                // A sidecar that ran once does not hold initialization back again.
                || observed.instances.get(&container.name).is_some_and(|i| i.len() > 1)
        } else {
            init_succeeded(observed, &container.name)
        };
        if !done {
            pending.push(container.name.clone());
        }
    }
    pending
}

/// Whether a regular init container failed and will not be retried (restartPolicy Never).
fn init_failed(observed: &Observed<'_>) -> bool {
    if restart_policy(observed.pod) != "Never" {
        return false;
    }
    let spec = observed.pod.spec.as_ref();
    spec.and_then(|s| s.init_containers.as_deref()).unwrap_or_default().iter().any(|c| {
        !is_sidecar(c)
            && observed
                .instances
                .get(&c.name)
                .and_then(|i| i.first())
                .is_some_and(|s| is_exited(s) && s.exit_code != 0)
    })
}

/// The pod phase, upstream's rules: Pending until initialized and every container has
/// started once; Running while any runs or will restart; Succeeded or Failed when all have
/// terminated for good.
pub(crate) fn phase(observed: &Observed<'_>, statuses: &[ContainerStatus]) -> &'static str {
    if init_failed(observed) {
        return "Failed";
    }
    if !pending_init(observed).is_empty() {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for status in statuses {
        let state = status.state.as_ref();
        if state.and_then(|s| s.running.as_ref()).is_some() {
            running += 1;
        } else if let Some(terminated) = state.and_then(|s| s.terminated.as_ref()) {
            stopped += 1;
            if terminated.exit_code == 0 {
                succeeded += 1;
            }
        } else if let Some(last) = status.last_state.as_ref().and_then(|s| s.terminated.as_ref()) {
            // Waiting to restart after having run: counts as stopped, as upstream.
            stopped += 1;
            if last.exit_code == 0 {
                succeeded += 1;
            }
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped == 0 {
        return "Pending";
    }
    match restart_policy(observed.pod) {
        "Always" => "Running",
        _ if stopped == succeeded => "Succeeded",
        "Never" => "Failed",
        // OnFailure: the failed ones restart.
        _ => "Running",
    }
}

fn condition(
    previous: &[PodCondition],
    kind: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: k8s_openapi::jiff::Timestamp,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let old = previous.iter().find(|c| c.type_ == kind);
    let last_transition_time = match old {
        Some(old) if old.status == status => old.last_transition_time.clone(),
        _ => Some(Time(now)),
    };
    PodCondition {
        type_: kind.to_owned(),
        status: status.to_owned(),
        reason: reason.map(str::to_owned),
        message,
        last_transition_time,
        last_probe_time: None,
        observed_generation: None,
    }
}

/// The whole status. Conditions the kubelet does not own (PodScheduled, DisruptionTarget,
/// readiness gates' own types) are kept as they are.
pub(crate) fn pod_status(observed: &Observed<'_>) -> PodStatus {
    let pod = observed.pod;
    let previous = pod.status.clone().unwrap_or_default();
    let old_conditions = previous.conditions.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let init_pending = pending_init(observed);
    let initialized = init_pending.is_empty();
    let init_statuses: Vec<ContainerStatus> = spec
        .init_containers
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|c| container_status(observed, c, "PodInitializing"))
        .collect();
    let default_waiting =
        if initialized && observed.sandbox_ready { "ContainerCreating" } else { "PodInitializing" };
    let statuses: Vec<ContainerStatus> =
        spec.containers.iter().map(|c| container_status(observed, c, default_waiting)).collect();
    let phase = phase(observed, &statuses);
    let terminal = phase == "Succeeded" || phase == "Failed";
    let unready: Vec<&str> =
        statuses.iter().filter(|s| !s.ready).map(|s| s.name.as_str()).collect();
    let now = observed.now;
    let mut conditions: Vec<PodCondition> = old_conditions
        .iter()
        .filter(|c| {
            !matches!(
                c.type_.as_str(),
                "PodReadyToStartContainers" | "Initialized" | "ContainersReady" | "Ready"
            )
        })
        .cloned()
        .collect();
    conditions.push(condition(
        &old_conditions,
        "PodReadyToStartContainers",
        observed.sandbox_ready,
        None,
        None,
        now,
    ));
    let init_message = format!("containers with incomplete status: [{}]", init_pending.join(" "));
    conditions.push(if initialized || terminal && init_pending.is_empty() {
        condition(&old_conditions, "Initialized", true, None, None, now)
    } else {
        condition(
            &old_conditions,
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(init_message),
            now,
        )
    });
    let containers_ready = unready.is_empty() && !terminal;
    let (reason, message) = if phase == "Succeeded" {
        (Some("PodCompleted"), None)
    } else if !containers_ready {
        (
            Some("ContainersNotReady"),
            Some(format!("containers with unready status: [{}]", unready.join(" "))),
        )
    } else {
        (None, None)
    };
    conditions.push(condition(
        &old_conditions,
        "ContainersReady",
        containers_ready,
        reason,
        message.clone(),
        now,
    ));
    // Readiness gates: their condition types must be True too.
    let gates: Vec<String> = spec
        .readiness_gates
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|gate| {
            !old_conditions.iter().any(|c| c.type_ == gate.condition_type && c.status == "True")
        })
        .map(|gate| gate.condition_type.clone())
        .collect();
    let ready = containers_ready && gates.is_empty();
    let (reason, message) = if ready {
        (None, None)
    } else if containers_ready {
        (
            Some("ReadinessGatesNotReady"),
            Some(format!(
                "corresponding condition of pod readiness gate \"{}\" does not exist.",
                gates.join(", ")
            )),
        )
    } else {
        (reason, message)
    };
    conditions.push(condition(&old_conditions, "Ready", ready, reason, message, now));
    let ips: Vec<PodIP> = observed.pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect();
    let host_ips = observed
        .host_ips
        .iter()
        .map(|ip| k8s_openapi::api::core::v1::HostIP { ip: ip.clone() })
        .collect::<Vec<_>>();
    PodStatus {
        phase: Some(phase.to_owned()),
        conditions: Some(conditions),
        host_ip: observed.host_ips.first().cloned(),
        host_ips: Some(host_ips).filter(|ips| !ips.is_empty()),
        pod_ip: observed.pod_ips.first().cloned().or(previous.pod_ip.clone()),
        pod_ips: if ips.is_empty() { previous.pod_ips.clone() } else { Some(ips) },
        start_time: previous.start_time.clone().or(Some(Time(now))),
        init_container_statuses: Some(init_statuses).filter(|s| !s.is_empty()),
        container_statuses: Some(statuses),
        qos_class: previous.qos_class.clone().or_else(|| Some(qos_class(pod).to_owned())),
        nominated_node_name: previous.nominated_node_name.clone(),
        ..PodStatus::default()
    }
}

/// The pod's QoS class: Guaranteed when every container has equal cpu and memory requests
/// and limits, BestEffort when none has any, Burstable otherwise.
pub(crate) fn qos_class(pod: &Pod) -> &'static str {
    let spec = match pod.spec.as_ref() {
        Some(spec) => spec,
        None => return "BestEffort",
    };
    let all = spec.containers.iter().chain(spec.init_containers.as_deref().unwrap_or_default());
    let mut any = false;
    let mut guaranteed = true;
    for container in all {
        let resources = container.resources.clone().unwrap_or_default();
        let requests = resources.requests.unwrap_or_default();
        let limits = resources.limits.unwrap_or_default();
        for resource in ["cpu", "memory"] {
            let request = requests.get(resource).or(limits.get(resource));
            if request.is_some() || limits.contains_key(resource) {
                any = true;
            }
            match (request, limits.get(resource)) {
                (Some(request), Some(limit)) if request == limit => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::cri_api::ContainerMetadata;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec}),
        )
        .unwrap_or_default()
    }

    fn instance(name: &str, attempt: u32, state: CriState, exit_code: i32) -> CriStatus {
        CriStatus {
            id: format!("{name}-{attempt}"),
            metadata: Some(ContainerMetadata { name: name.into(), attempt }),
            state: state as i32,
            exit_code,
            started_at: 1_700_000_000_000_000_000,
            finished_at: if state == CriState::ContainerExited {
                1_700_000_001_000_000_000
            } else {
                0
            },
            ..CriStatus::default()
        }
    }

    fn check(
        pod: &Pod,
        instances: &[(&str, Vec<CriStatus>)],
        waiting: &[(&str, &str)],
        expected_phase: &str,
    ) -> PodStatus {
        let instances: HashMap<String, Instances> =
            instances.iter().map(|(n, i)| ((*n).to_owned(), i.clone())).collect();
        let waiting: HashMap<String, Waiting> = waiting
            .iter()
            .map(|(n, r)| ((*n).to_owned(), Waiting { reason: (*r).into(), message: "m".into() }))
            .collect();
        let observed = Observed {
            pod,
            sandbox_ready: true,
            pod_ips: vec!["10.42.0.5".into()],
            host_ips: vec!["192.168.1.2".into()],
            instances: &instances,
            waiting: &waiting,
            ready: &|_| true,
            started: &|_| true,
            now: k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        };
        let status = pod_status(&observed);
        assert_eq!(status.phase.as_deref(), Some(expected_phase));
        status
    }

    fn condition_of(status: &PodStatus, kind: &str) -> String {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind)
            .map(|c| c.status.clone())
            .unwrap_or_default()
    }

    #[test]
    fn phases_follow_upstream() {
        use CriState::*;
        let always = pod(json!({"containers": [{"name": "c", "image": "i"}]}));
        check(&always, &[], &[], "Pending");
        let status =
            check(&always, &[("c", vec![instance("c", 0, ContainerRunning, 0)])], &[], "Running");
        assert_eq!(condition_of(&status, "Ready"), "True");
        assert_eq!(status.pod_ip.as_deref(), Some("10.42.0.5"));
        // Crash-looping keeps the pod Running, with the exit as the last state.
        let status = check(
            &always,
            &[("c", vec![instance("c", 2, ContainerExited, 1)])],
            &[("c", "CrashLoopBackOff")],
            "Running",
        );
        let c = &status.container_statuses.unwrap_or_default()[0];
        assert_eq!(c.restart_count, 2);
        assert_eq!(
            c.state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.as_deref()),
            Some("CrashLoopBackOff")
        );
        assert!(c.last_state.as_ref().and_then(|s| s.terminated.as_ref()).is_some());

        let never = pod(
            json!({"restartPolicy": "Never", "containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i"}]}),
        );
        check(
            &never,
            &[
                ("a", vec![instance("a", 0, ContainerExited, 0)]),
                ("b", vec![instance("b", 0, ContainerExited, 0)]),
            ],
            &[],
            "Succeeded",
        );
        check(
            &never,
            &[
                ("a", vec![instance("a", 0, ContainerExited, 0)]),
                ("b", vec![instance("b", 0, ContainerExited, 137)]),
            ],
            &[],
            "Failed",
        );
        check(
            &never,
            &[
                ("a", vec![instance("a", 0, ContainerExited, 0)]),
                ("b", vec![instance("b", 0, ContainerRunning, 0)]),
            ],
            &[],
            "Running",
        );
        let on_failure =
            pod(json!({"restartPolicy": "OnFailure", "containers": [{"name": "a", "image": "i"}]}));
        check(&on_failure, &[("a", vec![instance("a", 0, ContainerExited, 1)])], &[], "Running");
        check(&on_failure, &[("a", vec![instance("a", 1, ContainerExited, 0)])], &[], "Succeeded");
    }

    #[test]
    fn init_containers_gate_the_pod() {
        use CriState::*;
        let p = pod(
            json!({"initContainers": [{"name": "i1", "image": "i"}, {"name": "side", "image": "i", "restartPolicy": "Always"}], "containers": [{"name": "c", "image": "i"}]}),
        );
        let status =
            check(&p, &[("i1", vec![instance("i1", 0, ContainerRunning, 0)])], &[], "Pending");
        assert_eq!(condition_of(&status, "Initialized"), "False");
        let c = &status.container_statuses.unwrap_or_default()[0];
        assert_eq!(
            c.state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.as_deref()),
            Some("PodInitializing")
        );
        let status = check(
            &p,
            &[
                ("i1", vec![instance("i1", 0, ContainerExited, 0)]),
                ("side", vec![instance("side", 0, ContainerRunning, 0)]),
                ("c", vec![instance("c", 0, ContainerRunning, 0)]),
            ],
            &[],
            "Running",
        );
        assert_eq!(condition_of(&status, "Initialized"), "True");
        let never = pod(
            json!({"restartPolicy": "Never", "initContainers": [{"name": "i1", "image": "i"}], "containers": [{"name": "c", "image": "i"}]}),
        );
        check(&never, &[("i1", vec![instance("i1", 0, ContainerExited, 2)])], &[], "Failed");
    }

    #[test]
    fn qos_classes() {
        let best = pod(json!({"containers": [{"name": "c"}]}));
        assert_eq!(qos_class(&best), "BestEffort");
        let guaranteed = pod(
            json!({"containers": [{"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}),
        );
        assert_eq!(qos_class(&guaranteed), "Guaranteed");
        let burstable =
            pod(json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "100m"}}}]}));
        assert_eq!(qos_class(&burstable), "Burstable");
    }
}
