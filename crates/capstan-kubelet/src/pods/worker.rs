//! One pod's worker: each sync reads what the runtime has for the pod and takes the next
//! steps towards the spec (sandbox, volumes, init containers in order, sidecars, main
//! containers, restarts with back-off), then reports the status; a pod being deleted is
//! stopped gracefully (preStop hooks, SIGTERM, SIGKILL after the grace period), cleaned up
//! and finally removed from the API.

use super::Shared;
use super::backoff::Backoff;
use super::config::{self, SandboxEnvironment};
use super::status::{self, Instances, Observed, Waiting, is_sidecar};
use crate::probes::{ProbeTarget, ProbeUpdate, Transition};
use crate::runtime::cri_api::{
    ContainerConfig, ContainerFilter, ContainerMetadata, ContainerState as CriState,
    ContainerStatus as CriStatus, ImageSpec, KeyValue, ListContainersRequest,
    ListPodSandboxRequest, Mount, PodSandboxConfig, PodSandboxFilter, PodSandboxState,
};
use crate::volumes::{PodContext, PodVolumes};
use capstan_kube::events::EventType;
use k8s_openapi::api::core::v1::{Container, ObjectReference, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// What a worker is told besides a new version of its pod.
#[derive(Debug)]
pub(crate) enum Message {
    /// Something changed in the runtime: look again.
    Poke,
    /// A probe result.
    Probe(ProbeUpdate),
}

/// The sandbox the worker runs the pod in.
#[derive(Debug, Clone)]
struct Sandbox {
    id: String,
    config: PodSandboxConfig,
    ips: Vec<String>,
}

/// A worker's memory between syncs.
#[derive(Debug)]
pub(crate) struct Worker {
    shared: Arc<Shared>,
    uid: String,
    sandbox: Option<Sandbox>,
    volumes: Option<PodVolumes>,
    waiting: HashMap<String, Waiting>,
    restarts: Backoff,
    pulls: Backoff,
    /// Container ids the probe manager watches.
    probed: HashMap<String, String>,
    last_status: Option<serde_json::Value>,
    /// Containers killed on purpose (liveness), by id, with the message.
    killed: HashMap<String, String>,
    finished: bool,
}

/// What a sync asks for next.
#[derive(Debug, Default)]
pub(crate) struct Next {
    /// Sync again after this long even if nothing happens (back-off expiry).
    pub wake_after: Option<Duration>,
}

fn name_of(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn container_reference(pod: &Pod, container: &str, init: bool) -> ObjectReference {
    let mut reference = capstan_kube::events::reference_to(pod);
    let list = if init { "initContainers" } else { "containers" };
    reference.field_path = Some(format!("spec.{list}{{{container}}}"));
    reference
}

fn system_time_of(nanos: i64) -> Instant {
    // Instants cannot be built from wall-clock times: measure how long ago it was.
    let then = SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0));
    let ago = SystemTime::now().duration_since(then).unwrap_or_default();
    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
}

fn is_running(status: &CriStatus) -> bool {
    status.state == CriState::ContainerRunning as i32
}
fn is_exited(status: &CriStatus) -> bool {
    status.state == CriState::ContainerExited as i32
}

fn attempt_of(status: &CriStatus) -> u32 {
    status.metadata.as_ref().map(|m| m.attempt).unwrap_or(0)
}

/// Whether a container that exited with `exit_code` restarts under `policy`.
fn restarts(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// The image pull policy: Always for `:latest` or no tag, IfNotPresent otherwise.
fn pull_policy(container: &Container) -> String {
    if let Some(policy) = container.image_pull_policy.clone() {
        return policy;
    }
    let image = container.image.as_deref().unwrap_or_default();
    let name = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent".into();
    }
    match name.split_once(':') {
        Some((_, "latest")) | None => "Always".into(),
        Some(_) => "IfNotPresent".into(),
    }
}

/// A sandbox's IPs, primary first.
fn ips_of(status: &crate::runtime::cri_api::PodSandboxStatusResponse) -> Vec<String> {
    let mut ips = Vec::new();
    if let Some(network) = status.status.as_ref().and_then(|s| s.network.as_ref()) {
        if !network.ip.is_empty() {
            ips.push(network.ip.clone());
        }
        ips.extend(network.additional_ips.iter().map(|ip| ip.ip.clone()));
    }
    ips
}

impl Worker {
    pub(crate) fn new(shared: Arc<Shared>, uid: String) -> Self {
        Worker {
            shared,
            uid,
            sandbox: None,
            volumes: None,
            waiting: HashMap::new(),
            restarts: Backoff::default(),
            pulls: Backoff::default(),
            probed: HashMap::new(),
            last_status: None,
            killed: HashMap::new(),
            finished: false,
        }
    }

    fn pod_dir(&self) -> PathBuf {
        self.shared.config.agent_dir().join("pods").join(&self.uid)
    }

    fn log_dir(&self, pod: &Pod) -> PathBuf {
        self.shared.config.agent_dir().join("logs/pods").join(format!(
            "{}_{}_{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
            self.uid
        ))
    }

    fn event(
        &self,
        pod: &Pod,
        container: Option<(&str, bool)>,
        kind: EventType,
        reason: &str,
        note: String,
    ) {
        let reference = match container {
            Some((name, init)) => container_reference(pod, name, init),
            None => capstan_kube::events::reference_to(pod),
        };
        let recorder = self.shared.recorder.clone();
        let reason = reason.to_owned();
        tokio::spawn(async move {
            recorder.publish(&reference, kind, &reason, &reason, note).await;
        });
    }

    /// The runtime's containers of this pod, by name, newest first.
    async fn instances(&self) -> Result<HashMap<String, Instances>, crate::runtime::RuntimeError> {
        let filter = ContainerFilter {
            label_selector: HashMap::from([(config::POD_UID.to_owned(), self.uid.clone())]),
            ..ContainerFilter::default()
        };
        let containers = self
            .shared
            .runtime
            .list_containers(ListContainersRequest { filter: Some(filter) })
            .await?;
        let mut by_name: HashMap<String, Instances> = HashMap::new();
        for container in containers {
            let status = match self.shared.runtime.container_status(&container.id).await {
                Ok(reply) => reply.status,
                Err(error) if error.is_not_found() => None,
                Err(error) => return Err(error),
            };
            let Some(mut status) = status else { continue };
            if let Some(message) = self.termination_message(&status) {
                status.message = message;
            }
            let name = status.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
            by_name.entry(name).or_default().push(status);
        }
        for instances in by_name.values_mut() {
            instances.sort_by_key(|s| std::cmp::Reverse(attempt_of(s)));
        }
        Ok(by_name)
    }

    fn termination_path(&self, container: &str, attempt: u32) -> PathBuf {
        self.pod_dir().join("containers").join(container).join(format!("termination-{attempt}"))
    }

    /// The termination message of an exited container: its file, or for
    /// FallbackToLogsOnError the end of its log.
    fn termination_message(&self, status: &CriStatus) -> Option<String> {
        if !is_exited(status) {
            return None;
        }
        let name = status.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or_default();
        let path = self.termination_path(name, attempt_of(status));
        let text = std::fs::read(&path).ok().map(|bytes| {
            let bytes = &bytes[..bytes.len().min(4096)];
            String::from_utf8_lossy(bytes).into_owned()
        });
        match text {
            Some(text) if !text.is_empty() => Some(text),
            _ if status.exit_code != 0
                && status.annotations.get(FALLBACK).is_some_and(|v| v == "true") =>
            {
                let log = std::fs::read_to_string(&status.log_path).ok()?;
                let lines: Vec<&str> =
                    log.lines().filter_map(|line| line.splitn(4, ' ').nth(3)).collect();
                let tail = lines[lines.len().saturating_sub(80)..].join("\n");
                let start = tail.len().saturating_sub(2048);
                let start =
                    (start..tail.len()).find(|&i| tail.is_char_boundary(i)).unwrap_or(tail.len());
                Some(tail[start..].to_owned())
            }
            _ => None,
        }
    }

    async fn ready_sandbox(&self) -> Result<Option<(String, u32)>, crate::runtime::RuntimeError> {
        let filter = PodSandboxFilter {
            label_selector: HashMap::from([(config::POD_UID.to_owned(), self.uid.clone())]),
            ..PodSandboxFilter::default()
        };
        let sandboxes = self
            .shared
            .runtime
            .list_pod_sandbox(ListPodSandboxRequest { filter: Some(filter) })
            .await?;
        let next_attempt = sandboxes
            .iter()
            .filter_map(|s| s.metadata.as_ref().map(|m| m.attempt + 1))
            .max()
            .unwrap_or(0);
        let ready = sandboxes
            .iter()
            .find(|s| s.state == PodSandboxState::SandboxReady as i32)
            .map(|s| s.id.clone());
        Ok(ready.map(|id| (id, next_attempt)).or(Some((String::new(), next_attempt))))
    }

    /// One sync of `pod`.
    pub(crate) async fn sync(&mut self, pod: &Arc<Pod>) -> Next {
        match self.try_sync(pod).await {
            Ok(next) => next,
            Err(error) => {
                tracing::warn!(pod = %name_of(pod), %error, "pod sync failed; retrying");
                Next { wake_after: Some(Duration::from_secs(2)) }
            }
        }
    }

    async fn try_sync(&mut self, pod: &Arc<Pod>) -> Result<Next, SyncError> {
        if self.finished {
            return Ok(Next::default());
        }
        if pod.metadata.deletion_timestamp.is_some() {
            self.terminate(pod, None).await?;
            return Ok(Next::default());
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
        if phase == "Succeeded" || phase == "Failed" {
            // A finished pod keeps its containers (for logs) but releases its sandbox.
            if let Some(sandbox) = self.sandbox.take() {
                let _ = self.shared.runtime.stop_pod_sandbox(&sandbox.id).await;
            }
            self.shared.probes.remove_pod(&self.uid);
            return Ok(Next::default());
        }
        let policy = pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into());
        let mut instances = self.instances().await?;
        let mut next = Next::default();

        // The sandbox.
        let (ready_id, next_attempt) = self.ready_sandbox().await?.unwrap_or_default();
        if ready_id.is_empty() || self.sandbox.as_ref().is_none_or(|s| s.id != ready_id) {
            let everything_done = self.pod_done(pod, &instances, &policy);
            if !ready_id.is_empty() {
                self.adopt_sandbox(pod, &ready_id).await?;
            } else if !everything_done {
                // A new sandbox: whatever ran in an old one is stopped first.
                for list in instances.values() {
                    for instance in list.iter().filter(|s| is_running(s)) {
                        let _ = self
                            .shared
                            .runtime
                            .stop_container(&instance.id, Duration::from_secs(2))
                            .await;
                    }
                }
                self.create_sandbox(pod, next_attempt).await?;
                instances = self.instances().await?;
            }
        }
        if let Some(sandbox) = self.sandbox.clone() {
            self.start_containers(pod, &sandbox, &mut instances, &policy, &mut next).await?;
        }
        self.report(pod, &instances).await?;
        Ok(next)
    }

    /// Whether every container has terminated for good (the pod will not run again).
    fn pod_done(&self, pod: &Pod, instances: &HashMap<String, Instances>, policy: &str) -> bool {
        let spec = pod.spec.clone().unwrap_or_default();
        if policy == "Always" {
            return false;
        }
        spec.containers.iter().all(|c| {
            instances
                .get(&c.name)
                .and_then(|i| i.first())
                .is_some_and(|s| is_exited(s) && !restarts(policy, s.exit_code))
        })
    }

    /// The sandbox config of `pod` on this node.
    fn sandbox_config(&self, pod: &Pod, attempt: u32) -> PodSandboxConfig {
        let log_dir = self.log_dir(pod);
        let shared = &self.shared;
        let env = SandboxEnvironment {
            log_directory: &log_dir,
            cluster_dns: &shared.config.cluster_dns,
            cluster_domain: &shared.config.cluster_domain,
            host_searches: &shared.host_dns.searches,
            host_servers: &shared.host_dns.servers,
        };
        config::sandbox_config(pod, attempt, &env)
    }

    async fn create_sandbox(&mut self, pod: &Arc<Pod>, attempt: u32) -> Result<(), SyncError> {
        let log_dir = self.log_dir(pod);
        std::fs::create_dir_all(&log_dir).map_err(|e| SyncError::Io(log_dir.clone(), e))?;
        let sandbox_config = self.sandbox_config(pod, attempt);
        let shared = &self.shared;
        let id = match shared.runtime.run_pod_sandbox(sandbox_config.clone(), String::new()).await {
            Ok(id) => id,
            Err(error) => {
                self.event(
                    pod,
                    None,
                    EventType::Warning,
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {error}"),
                );
                return Err(error.into());
            }
        };
        let ips = ips_of(&shared.runtime.pod_sandbox_status(&id).await?);
        tracing::debug!(pod = %name_of(pod), sandbox = %id, ?ips, "sandbox ready");
        self.sandbox = Some(Sandbox { id, config: sandbox_config, ips });
        Ok(())
    }

    /// Takes over a ready sandbox found in the runtime (after a kubelet restart).
    async fn adopt_sandbox(&mut self, pod: &Arc<Pod>, id: &str) -> Result<(), SyncError> {
        let status = self.shared.runtime.pod_sandbox_status(id).await?;
        let attempt = status
            .status
            .as_ref()
            .and_then(|s| s.metadata.as_ref())
            .map(|m| m.attempt)
            .unwrap_or(0);
        let sandbox_config = self.sandbox_config(pod, attempt);
        self.sandbox =
            Some(Sandbox { id: id.to_owned(), config: sandbox_config, ips: ips_of(&status) });
        Ok(())
    }

    fn host_ips(&self) -> Vec<String> {
        self.shared.node_facts.borrow().host_ips.clone()
    }

    fn pod_context(&self, sandbox: &Sandbox) -> PodContext {
        let facts = self.shared.node_facts.borrow();
        PodContext {
            pod_ip: sandbox.ips.first().cloned().or_else(|| facts.host_ips.first().cloned()),
            pod_ips: if sandbox.ips.is_empty() {
                facts.host_ips.clone()
            } else {
                sandbox.ips.clone()
            },
            host_ip: facts.host_ips.first().cloned(),
            node_allocatable_cpu_millis: facts.allocatable_cpu_millis,
            node_allocatable_memory_bytes: facts.allocatable_memory_bytes,
        }
    }

    /// Starts what should run next: init containers one by one, sidecars, then every main
    /// container that has not run or should restart.
    async fn start_containers(
        &mut self,
        pod: &Arc<Pod>,
        sandbox: &Sandbox,
        instances: &mut HashMap<String, Instances>,
        policy: &str,
        next: &mut Next,
    ) -> Result<(), SyncError> {
        let spec = pod.spec.clone().unwrap_or_default();
        // Volumes are prepared on every sync, so ConfigMap, Secret and token contents follow
        // their sources (the writer only touches what changed).
        {
            let context = self.pod_context(sandbox);
            match crate::volumes::prepare(
                &self.shared.client,
                pod,
                &self.pod_dir(),
                &context,
                self.shared.mounter.as_ref(),
            )
            .await
            {
                Ok(volumes) => self.volumes = Some(volumes),
                Err(error) => {
                    let message = error.to_string();
                    self.event(pod, None, EventType::Warning, "FailedMount", message.clone());
                    for container in spec.init_containers.iter().flatten().chain(&spec.containers) {
                        if instances.get(&container.name).is_none_or(Vec::is_empty) {
                            self.waiting.insert(
                                container.name.clone(),
                                Waiting {
                                    reason: "ContainerCreating".into(),
                                    message: message.clone(),
                                },
                            );
                        }
                    }
                    next.wake_after = Some(Duration::from_secs(2));
                    return Ok(());
                }
            }
        }
        // Init containers, in order.
        for container in spec.init_containers.iter().flatten() {
            let latest = instances.get(&container.name).and_then(|i| i.first()).cloned();
            if is_sidecar(container) {
                match &latest {
                    Some(s) if is_running(s) => {
                        self.watch_probes(pod, container, s, sandbox);
                        if !self.shared.probes.is_started(&self.uid, &container.name) {
                            return Ok(());
                        }
                        continue;
                    }
                    Some(s) if is_exited(s) => {
                        if !self.restart(pod, sandbox, container, s, true, next).await? {
                            return Ok(());
                        }
                        return Ok(());
                    }
                    _ => {
                        self.start(pod, sandbox, container, 0, true, next).await?;
                        return Ok(());
                    }
                }
            }
            match &latest {
                Some(s) if is_exited(s) && s.exit_code == 0 => continue,
                Some(s) if is_exited(s) => {
                    if restarts(policy, s.exit_code) {
                        self.restart(pod, sandbox, container, s, true, next).await?;
                    }
                    return Ok(());
                }
                Some(_) => return Ok(()),
                None => {
                    self.start(pod, sandbox, container, 0, true, next).await?;
                    return Ok(());
                }
            }
        }
        for container in &spec.containers {
            let latest = instances.get(&container.name).and_then(|i| i.first()).cloned();
            match &latest {
                Some(s) if is_running(s) => self.watch_probes(pod, container, s, sandbox),
                Some(s) if is_exited(s) => {
                    self.shared.probes.remove_container(&self.uid, &container.name);
                    self.probed.remove(&container.name);
                    if restarts(policy, s.exit_code) {
                        self.restart(pod, sandbox, container, s, false, next).await?;
                    } else {
                        self.waiting.remove(&container.name);
                    }
                }
                Some(_) => {}
                None => {
                    self.start(pod, sandbox, container, 0, false, next).await?;
                }
            }
        }
        Ok(())
    }

    fn watch_probes(
        &mut self,
        pod: &Pod,
        container: &Container,
        status: &CriStatus,
        sandbox: &Sandbox,
    ) {
        if self.probed.get(&container.name) == Some(&status.id) {
            return;
        }
        self.probed.insert(container.name.clone(), status.id.clone());
        let pod_ip = sandbox.ips.first().and_then(|ip| ip.parse::<IpAddr>().ok());
        self.shared.probes.add_container(
            pod,
            container,
            &status.id,
            pod_ip,
            system_time_of(status.started_at),
        );
    }

    /// Restarts an exited container unless it is in back-off; returns whether it started.
    async fn restart(
        &mut self,
        pod: &Arc<Pod>,
        sandbox: &Sandbox,
        container: &Container,
        last: &CriStatus,
        init: bool,
        next: &mut Next,
    ) -> Result<bool, SyncError> {
        let key = container.name.clone();
        let finished = system_time_of(last.finished_at);
        if let Some(wait) = self.restarts.remaining(&key, finished, Instant::now()) {
            let delay = self.restarts.delay(&key).unwrap_or_default();
            let message = format!(
                "back-off {}s restarting failed container={} pod={}_{}({})",
                delay.as_secs(),
                container.name,
                pod.metadata.name.as_deref().unwrap_or_default(),
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                self.uid
            );
            if self.waiting.get(&key).is_none_or(|w| w.reason != "CrashLoopBackOff") {
                self.event(
                    pod,
                    Some((&container.name, init)),
                    EventType::Warning,
                    "BackOff",
                    "Back-off restarting failed container".into(),
                );
            }
            self.waiting.insert(key, Waiting { reason: "CrashLoopBackOff".into(), message });
            next.wake_after = Some(next.wake_after.map_or(wait, |w| w.min(wait)));
            return Ok(false);
        }
        self.restarts.restarted(&key);
        let attempt = attempt_of(last) + 1;
        // Keep only the previous instance, for `logs --previous` and lastState.
        self.remove_old_instances(&container.name, attempt).await;
        self.start(pod, sandbox, container, attempt, init, next).await
    }

    async fn remove_old_instances(&self, name: &str, attempt: u32) {
        if let Ok(instances) = self.instances().await
            && let Some(list) = instances.get(name)
        {
            for old in list.iter().filter(|s| attempt_of(s) + 1 < attempt && is_exited(s)) {
                let _ = self.shared.runtime.remove_container(&old.id).await;
            }
        }
    }

    /// Pulls the image if the policy says so; `Ok(None)` when it must wait (back-off).
    async fn ensure_image(
        &mut self,
        pod: &Arc<Pod>,
        container: &Container,
        init: bool,
        next: &mut Next,
    ) -> Result<Option<String>, SyncError> {
        let image = container.image.clone().unwrap_or_default();
        let policy = pull_policy(container);
        let present = self.shared.runtime.image_status(&image).await?.map(|i| i.id);
        let reference = Some((container.name.as_str(), init));
        match (policy.as_str(), present) {
            ("Never", None) => {
                let message =
                    format!("Container image \"{image}\" is not present with pull policy of Never");
                self.event(
                    pod,
                    reference,
                    EventType::Warning,
                    "ErrImageNeverPull",
                    message.clone(),
                );
                self.waiting.insert(
                    container.name.clone(),
                    Waiting { reason: "ErrImageNeverPull".into(), message },
                );
                Ok(None)
            }
            ("Always", _) | (_, None) => {
                let key = format!("image:{image}");
                if let Some(wait) = self.pulls.remaining(
                    &key,
                    Instant::now() - Duration::from_millis(1),
                    Instant::now(),
                ) {
                    let message = format!("Back-off pulling image \"{image}\"");
                    if self
                        .waiting
                        .get(&container.name)
                        .is_none_or(|w| w.reason != "ImagePullBackOff")
                    {
                        self.event(pod, reference, EventType::Normal, "BackOff", message.clone());
                        self.event(
                            pod,
                            reference,
                            EventType::Warning,
                            "Failed",
                            "Error: ImagePullBackOff".into(),
                        );
                    }
                    self.waiting.insert(
                        container.name.clone(),
                        Waiting { reason: "ImagePullBackOff".into(), message },
                    );
                    next.wake_after = Some(next.wake_after.map_or(wait, |w| w.min(wait)));
                    return Ok(None);
                }
                self.event(
                    pod,
                    reference,
                    EventType::Normal,
                    "Pulling",
                    format!("Pulling image \"{image}\""),
                );
                let started = Instant::now();
                let auth = super::pull_secrets::auth_for(&self.shared.client, pod, &image).await;
                let spec = ImageSpec { image: image.clone(), ..ImageSpec::default() };
                match self
                    .shared
                    .runtime
                    .pull_image(spec, auth, self.sandbox.as_ref().map(|s| s.config.clone()))
                    .await
                {
                    Ok(reference_id) => {
                        self.pulls.reset(&key);
                        self.event(
                            pod,
                            reference,
                            EventType::Normal,
                            "Pulled",
                            format!(
                                "Successfully pulled image \"{image}\" in {:.3}s",
                                started.elapsed().as_secs_f64()
                            ),
                        );
                        Ok(Some(reference_id))
                    }
                    Err(error) => {
                        self.pulls.restarted(&key);
                        let message = format!("Failed to pull image \"{image}\": {error}");
                        self.event(pod, reference, EventType::Warning, "Failed", message.clone());
                        self.event(
                            pod,
                            reference,
                            EventType::Warning,
                            "Failed",
                            "Error: ErrImagePull".into(),
                        );
                        self.waiting.insert(
                            container.name.clone(),
                            Waiting { reason: "ErrImagePull".into(), message },
                        );
                        next.wake_after = Some(Duration::from_secs(10));
                        Ok(None)
                    }
                }
            }
            (_, Some(id)) => {
                if !self.waiting.contains_key(&container.name) {
                    self.event(
                        pod,
                        reference,
                        EventType::Normal,
                        "Pulled",
                        format!("Container image \"{image}\" already present on machine"),
                    );
                }
                Ok(Some(id))
            }
        }
    }

    /// A container that could not be created or started: a `Failed` event, and the reason
    /// its status shows while it waits for the next attempt.
    fn start_failed(
        &mut self,
        pod: &Pod,
        reference: Option<(&str, bool)>,
        container: &str,
        reason: &str,
        message: String,
    ) {
        self.event(pod, reference, EventType::Warning, "Failed", format!("Error: {message}"));
        self.waiting.insert(container.to_owned(), Waiting { reason: reason.to_owned(), message });
    }

    /// Creates and starts one container instance.
    async fn start(
        &mut self,
        pod: &Arc<Pod>,
        sandbox: &Sandbox,
        container: &Container,
        attempt: u32,
        init: bool,
        next: &mut Next,
    ) -> Result<bool, SyncError> {
        let Some(image) = self.ensure_image(pod, container, init, next).await? else {
            return Ok(false);
        };
        let reference = Some((container.name.as_str(), init));
        let config = match self.container_config(pod, sandbox, container, attempt, &image).await {
            Ok(config) => config,
            Err(message) => {
                self.start_failed(
                    pod,
                    reference,
                    &container.name,
                    "CreateContainerConfigError",
                    message,
                );
                next.wake_after = Some(Duration::from_secs(2));
                return Ok(false);
            }
        };
        let runtime = &self.shared.runtime;
        let id = match runtime.create_container(&sandbox.id, config, sandbox.config.clone()).await {
            Ok(id) => id,
            Err(error) => {
                let message = error.to_string();
                self.start_failed(pod, reference, &container.name, "CreateContainerError", message);
                next.wake_after = Some(Duration::from_secs(2));
                return Ok(false);
            }
        };
        self.event(
            pod,
            reference,
            EventType::Normal,
            "Created",
            format!("Created container {}", container.name),
        );
        if let Err(error) = runtime.start_container(&id).await {
            self.start_failed(
                pod,
                reference,
                &container.name,
                "RunContainerError",
                error.to_string(),
            );
            return Ok(false);
        }
        self.waiting.remove(&container.name);
        self.event(
            pod,
            reference,
            EventType::Normal,
            "Started",
            format!("Started container {}", container.name),
        );
        if let Some(handler) = container.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            let pod_ip = sandbox.ips.first().and_then(|ip| ip.parse::<IpAddr>().ok());
            let target =
                ProbeTarget { runtime: runtime.as_ref(), container_id: &id, pod_ip, container };
            if let Err(error) =
                crate::hooks::run_hook(handler, &target, Duration::from_secs(30)).await
            {
                let message = format!("PostStartHook failed: {error}");
                self.event(
                    pod,
                    reference,
                    EventType::Warning,
                    "FailedPostStartHook",
                    message.clone(),
                );
                let _ = runtime.stop_container(&id, self.grace(pod, None)).await;
                return Ok(false);
            }
        }
        self.probed.remove(&container.name);
        Ok(true)
    }

    async fn container_config(
        &self,
        pod: &Arc<Pod>,
        sandbox: &Sandbox,
        container: &Container,
        attempt: u32,
        image: &str,
    ) -> Result<ContainerConfig, String> {
        let context = self.pod_context(sandbox);
        let services = self.shared.services_for(pod);
        let env =
            crate::env::container_env(&self.shared.client, pod, container, &context, &services)
                .await
                .map_err(|e| e.to_string())?;
        let pairs: Vec<(String, String)> =
            env.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect();
        let expand = |list: &Option<Vec<String>>| {
            list.iter().flatten().map(|item| crate::env::expand(item, &pairs)).collect::<Vec<_>>()
        };
        let mut mounts = match &self.volumes {
            Some(volumes) => crate::volumes::container_mounts(pod, volumes, container)
                .map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        // The termination message file, and the kubelet-managed /etc/hosts.
        let termination = self.termination_path(&container.name, attempt);
        if let Some(parent) = termination.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&termination, b"")
            .map_err(|e| format!("cannot create {}: {e}", termination.display()))?;
        mounts.push(Mount {
            container_path: container
                .termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".into()),
            host_path: termination.display().to_string(),
            ..Mount::default()
        });
        let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
        if !host_network && !mounts.iter().any(|m| m.container_path == "/etc/hosts") {
            let hosts = self.pod_dir().join("etc-hosts");
            std::fs::write(
                &hosts,
                super::hosts::hosts_file(pod, &sandbox.ips, &self.shared.config.cluster_domain),
            )
            .map_err(|e| format!("cannot write {}: {e}", hosts.display()))?;
            mounts.push(Mount {
                container_path: "/etc/hosts".into(),
                host_path: hosts.display().to_string(),
                ..Mount::default()
            });
        }
        let mut annotations = HashMap::from([
            ("io.kubernetes.container.restartCount".to_owned(), attempt.to_string()),
            (
                "io.kubernetes.container.terminationMessagePath".to_owned(),
                container
                    .termination_message_path
                    .clone()
                    .unwrap_or_else(|| "/dev/termination-log".into()),
            ),
        ]);
        if container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError") {
            annotations.insert(FALLBACK.to_owned(), "true".to_owned());
        }
        let memory = self.shared.node_facts.borrow().allocatable_memory_bytes;
        Ok(ContainerConfig {
            metadata: Some(ContainerMetadata { name: container.name.clone(), attempt }),
            image: Some(ImageSpec {
                image: image.to_owned(),
                user_specified_image: container.image.clone().unwrap_or_default(),
                ..ImageSpec::default()
            }),
            command: expand(&container.command),
            args: expand(&container.args),
            working_dir: container.working_dir.clone().unwrap_or_default(),
            envs: env.into_iter().map(|kv| KeyValue { key: kv.key, value: kv.value }).collect(),
            mounts,
            labels: config::container_labels(pod, container),
            annotations,
            log_path: format!("{}/{attempt}.log", container.name),
            stdin: container.stdin.unwrap_or(false),
            stdin_once: container.stdin_once.unwrap_or(false),
            tty: container.tty.unwrap_or(false),
            linux: Some(crate::runtime::cri_api::LinuxContainerConfig {
                resources: Some(config::linux_resources(pod, container, memory)),
                security_context: Some(config::linux_security(pod, container)),
            }),
            ..ContainerConfig::default()
        })
    }

    /// The grace period for stopping: the deletion's, else the pod's, else 30 s.
    fn grace(&self, pod: &Pod, override_seconds: Option<i64>) -> Duration {
        let seconds = override_seconds
            .or(pod.metadata.deletion_grace_period_seconds)
            .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(30);
        Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
    }

    /// Acts on a probe verdict: a failed liveness or startup probe kills the container,
    /// which then restarts by the restart policy; failures become `Unhealthy` events.
    pub(crate) async fn on_probe(&mut self, pod: &Arc<Pod>, update: ProbeUpdate) {
        let kind = match update.kind {
            crate::probes::ProbeKind::Liveness => "Liveness",
            crate::probes::ProbeKind::Readiness => "Readiness",
            crate::probes::ProbeKind::Startup => "Startup",
        };
        let output = match &update.result {
            crate::probes::ProbeResult::Failure(text)
            | crate::probes::ProbeResult::Unknown(text) => text.clone(),
            crate::probes::ProbeResult::Success => String::new(),
        };
        let init = pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.as_ref())
            .is_some_and(|list| list.iter().any(|c| c.name == update.container_name));
        let reference = Some((update.container_name.as_str(), init));
        match update.transition {
            Transition::Failed => {
                self.event(
                    pod,
                    reference,
                    EventType::Warning,
                    "Unhealthy",
                    format!("{kind} probe failed: {output}"),
                );
            }
            Transition::LivenessFailed | Transition::StartupFailed => {
                let message = format!(
                    "Container {} failed {} probe, will be restarted",
                    update.container_name,
                    kind.to_lowercase()
                );
                self.event(pod, reference, EventType::Normal, "Killing", message.clone());
                self.killed.insert(update.container_id.clone(), message);
                self.shared.probes.remove_container(&self.uid, &update.container_name);
                self.probed.remove(&update.container_name);
                let spec = pod.spec.clone().unwrap_or_default();
                let container = spec
                    .containers
                    .iter()
                    .chain(spec.init_containers.iter().flatten())
                    .find(|c| c.name == update.container_name)
                    .cloned();
                if let Some(container) = container {
                    self.run_pre_stop(&container, &update.container_id).await;
                }
                let _ = self
                    .shared
                    .runtime
                    .stop_container(&update.container_id, self.grace(pod, None))
                    .await;
            }
            _ => {}
        }
    }

    async fn run_pre_stop(&self, container: &Container, container_id: &str) {
        if let Some(handler) = container.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
            let pod_ip = self
                .sandbox
                .as_ref()
                .and_then(|s| s.ips.first())
                .and_then(|ip| ip.parse::<IpAddr>().ok());
            let target = ProbeTarget {
                runtime: self.shared.runtime.as_ref(),
                container_id,
                pod_ip,
                container,
            };
            if let Err(error) =
                crate::hooks::run_hook(handler, &target, Duration::from_secs(30)).await
            {
                tracing::debug!(container = %container.name, %error, "preStop hook failed");
            }
        }
    }

    /// Stops the pod: preStop hooks, then every container with the grace period (main
    /// containers first, then sidecars), then the sandbox; frees its resources, and — for
    /// a pod being deleted — reports the final status and removes the pod from the API.
    pub(crate) async fn terminate(
        &mut self,
        pod: &Arc<Pod>,
        gone: Option<()>,
    ) -> Result<(), SyncError> {
        let grace = self.grace(pod, None);
        let deadline = Instant::now() + grace;
        let instances = self.instances().await?;
        let spec = pod.spec.clone().unwrap_or_default();
        let running = |name: &str| {
            instances.get(name).and_then(|i| i.first()).filter(|s| is_running(s)).cloned()
        };
        let mut stops = Vec::new();
        for container in &spec.containers {
            if let Some(instance) = running(&container.name) {
                if gone.is_none() {
                    self.event(
                        pod,
                        Some((&container.name, false)),
                        EventType::Normal,
                        "Killing",
                        format!("Stopping container {}", container.name),
                    );
                }
                let worker = &*self;
                let container = container.clone();
                stops.push(async move {
                    worker.run_pre_stop(&container, &instance.id).await;
                    let left = deadline.saturating_duration_since(Instant::now());
                    let _ = worker.shared.runtime.stop_container(&instance.id, left).await;
                });
            }
        }
        futures_util::future::join_all(stops).await;
        for container in spec.init_containers.iter().flatten().rev() {
            if let Some(instance) = running(&container.name) {
                let left = deadline.saturating_duration_since(Instant::now());
                let _ = self.shared.runtime.stop_container(&instance.id, left).await;
            }
        }
        self.shared.probes.remove_pod(&self.uid);
        if let Some(sandbox) = self.sandbox.clone() {
            let _ = self.shared.runtime.stop_pod_sandbox(&sandbox.id).await;
        }
        if gone.is_none() {
            let instances = self.instances().await.unwrap_or_default();
            self.waiting.clear();
            let _ = self.report(pod, &instances).await;
            let api: Api<Pod> = Api::namespaced(
                self.shared.client.clone(),
                pod.metadata.namespace.as_deref().unwrap_or("default"),
            );
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(pod.metadata.name.as_deref().unwrap_or_default(), &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
                Err(error) => return Err(SyncError::Api(error)),
            }
        }
        self.cleanup().await;
        self.finished = true;
        Ok(())
    }

    /// Removes everything the pod left on the node: containers, sandboxes, volumes, its
    /// directory, logs and cgroups.
    pub(crate) async fn cleanup(&mut self) {
        let runtime = &self.shared.runtime;
        let filter = PodSandboxFilter {
            label_selector: HashMap::from([(config::POD_UID.to_owned(), self.uid.clone())]),
            ..PodSandboxFilter::default()
        };
        let sandboxes = runtime
            .list_pod_sandbox(ListPodSandboxRequest { filter: Some(filter) })
            .await
            .unwrap_or_default();
        if let Ok(instances) = self.instances().await {
            for instance in instances.values().flatten() {
                let _ = runtime.stop_container(&instance.id, Duration::ZERO).await;
                let _ = runtime.remove_container(&instance.id).await;
            }
        }
        let mut log_dirs = Vec::new();
        for sandbox in &sandboxes {
            if let Ok(status) = runtime.pod_sandbox_status(&sandbox.id).await
                && let Some(metadata) = status.status.and_then(|s| s.metadata)
            {
                log_dirs.push(
                    self.shared
                        .config
                        .agent_dir()
                        .join("logs/pods")
                        .join(format!("{}_{}_{}", metadata.namespace, metadata.name, self.uid)),
                );
            }
            let _ = runtime.stop_pod_sandbox(&sandbox.id).await;
            if let Err(error) = runtime.remove_pod_sandbox(&sandbox.id).await {
                tracing::warn!(sandbox = %sandbox.id, %error, "cannot remove a sandbox");
            }
        }
        self.sandbox = None;
        if let Err(error) =
            crate::volumes::teardown(&self.pod_dir(), self.shared.mounter.as_ref()).await
        {
            tracing::warn!(pod = %self.uid, %error, "cannot tear down volumes");
        }
        let _ = std::fs::remove_dir_all(self.pod_dir());
        for dir in log_dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
        super::cgroups::remove_pod_cgroups(&self.uid);
    }

    /// Reports the pod's status when it changed.
    async fn report(
        &mut self,
        pod: &Arc<Pod>,
        instances: &HashMap<String, Instances>,
    ) -> Result<(), SyncError> {
        let probes = &self.shared.probes;
        let uid = self.uid.clone();
        let ready = |name: &str| probes.is_ready(&uid, name);
        let started = |name: &str| probes.is_started(&uid, name);
        let mut instances = instances.clone();
        // A container killed for a failed probe says so.
        for list in instances.values_mut() {
            if let Some(first) = list.first_mut()
                && let Some(message) = self.killed.get(&first.id)
                && is_exited(first)
                && first.message.is_empty()
            {
                first.message = message.clone();
            }
        }
        let sandbox_ready = self.sandbox.is_some();
        let status = {
            let observed = Observed {
                pod,
                sandbox_ready,
                pod_ips: self
                    .sandbox
                    .as_ref()
                    .map(|s| if s.ips.is_empty() { self.host_ips() } else { s.ips.clone() })
                    .unwrap_or_default(),
                host_ips: self.host_ips(),
                instances: &instances,
                waiting: &self.waiting,
                ready: &ready,
                started: &started,
                now: k8s_openapi::jiff::Timestamp::now(),
            };
            status::pod_status(&observed)
        };
        let value = serde_json::to_value(&status).unwrap_or_default();
        if self.last_status.as_ref() == Some(&value) {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let patch = serde_json::json!({"status": value});
        match api
            .patch_status(
                pod.metadata.name.as_deref().unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {
                self.last_status = Some(value);
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => Err(SyncError::Api(error)),
        }
    }
}

/// Annotation marking FallbackToLogsOnError containers.
const FALLBACK: &str = "io.capstan.kubelet/termination-message-fallback";

/// Why a sync failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SyncError {
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error("the API refused: {0}")]
    Api(#[source] kube::Error),
    #[error("cannot prepare {0}")]
    Io(PathBuf, #[source] std::io::Error),
}
