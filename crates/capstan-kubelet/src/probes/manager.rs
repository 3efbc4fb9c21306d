//! The probe workers: one task per probe of each running container, probing on the probe's
//! schedule, counting results against its thresholds, and reporting what changed as
//! [`ProbeUpdate`]s on a channel the pod worker reads.
//!
//! Upstream's `pkg/kubelet/prober` worker is the model, with one simplification: instead of
//! ticking from the moment it starts and skipping ticks during the initial delay or while
//! the startup probe has not succeeded, a worker first waits for both and then probes at
//! once and every `periodSeconds` after.

use super::{ProbeKind, ProbeResult, ProbeTarget, positive_or, run_probe};
use crate::runtime::Runtime;
use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// Upstream retries a probe that errored (an `Unknown` result) this many times per tick.
const MAX_PROBE_RETRIES: usize = 3;

/// What a probe attempt changed, or that it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The readiness probe reached its success threshold; the container is ready.
    BecameReady,
    /// The readiness probe reached its failure threshold on a ready container.
    BecameUnready,
    /// The startup probe succeeded: liveness and readiness probing begin, and a container
    /// without a readiness probe is now ready.
    Started,
    /// The liveness probe reached its failure threshold: the container must be killed and
    /// restarted per the pod's restartPolicy. Sent once per container id; that worker ends.
    LivenessFailed,
    /// The startup probe reached its failure threshold; handled like `LivenessFailed`.
    StartupFailed,
    /// One attempt failed (`result` is `Failure`) or errored (`Unknown`): the pod worker
    /// records the `Unhealthy` Warning event ([`ProbeUpdate::unhealthy_message`]).
    Failed,
}

/// One report from a probe worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeUpdate {
    pub pod_uid: String,
    pub container_name: String,
    pub container_id: String,
    pub kind: ProbeKind,
    /// The attempt that caused the report.
    pub result: ProbeResult,
    pub transition: Transition,
}

impl ProbeUpdate {
    /// The `Unhealthy` event message of a `Failed` report, in upstream's words:
    /// `Readiness probe failed: <output>` or, for a probe that could not run,
    /// `Liveness probe errored and resulted in unknown state: <error>`.
    pub fn unhealthy_message(&self) -> Option<String> {
        match (&self.transition, &self.result) {
            (Transition::Failed, ProbeResult::Failure(output)) => {
                Some(format!("{} probe failed: {output}", self.kind))
            }
            (Transition::Failed, ProbeResult::Unknown(error)) => {
                Some(format!("{} probe errored and resulted in unknown state: {error}", self.kind))
            }
            _ => None,
        }
    }

    /// The `Killing` event message for a container a failed probe condemns:
    /// "Container app failed liveness probe, will be restarted".
    pub fn restart_message(&self) -> Option<String> {
        let probe = match self.transition {
            Transition::LivenessFailed => "liveness",
            Transition::StartupFailed => "startup",
            _ => return None,
        };
        Some(format!("Container {} failed {probe} probe, will be restarted", self.container_name))
    }
}

/// Probes the kubelet's running containers. Cheap to clone; clones share the workers.
/// Workers are Tokio tasks: `add_container` must be called within a Tokio runtime.
#[derive(Debug, Clone)]
pub struct ProbeManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    runtime: Arc<dyn Runtime>,
    updates: mpsc::UnboundedSender<ProbeUpdate>,
    containers: Mutex<HashMap<ContainerKey, ProbedContainer>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ContainerKey {
    pod_uid: String,
    container_name: String,
}

/// One container instance's workers and shared state. Dropping it ends the workers.
#[derive(Debug)]
struct ProbedContainer {
    container_id: String,
    state: Arc<ProbeState>,
    _workers: Vec<AbortOnDrop>,
}

/// What the workers of one container share and the manager answers from.
#[derive(Debug)]
struct ProbeState {
    /// True once the startup probe succeeded, or from the start without one.
    started: watch::Sender<bool>,
    /// The readiness probe's last settled result (false until its first success).
    ready: AtomicBool,
    has_readiness_probe: bool,
}

#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl ProbeManager {
    pub fn new(runtime: Arc<dyn Runtime>, updates: mpsc::UnboundedSender<ProbeUpdate>) -> Self {
        ProbeManager {
            inner: Arc::new(Inner { runtime, updates, containers: Mutex::new(HashMap::new()) }),
        }
    }

    /// Starts workers for the container's startup, liveness and readiness probes (only
    /// those set), timing initial delays from `started_at`. Idempotent per (pod uid,
    /// container name, container id); a new container id replaces the old one's workers.
    pub fn add_container(
        &self,
        pod: &Pod,
        container: &Container,
        container_id: &str,
        pod_ip: Option<IpAddr>,
        started_at: std::time::Instant,
    ) {
        let key = ContainerKey {
            pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
            container_name: container.name.clone(),
        };
        let mut containers = self.lock();
        if containers.get(&key).is_some_and(|probed| probed.container_id == container_id) {
            return;
        }
        let state = Arc::new(ProbeState {
            started: watch::Sender::new(container.startup_probe.is_none()),
            ready: AtomicBool::new(false),
            has_readiness_probe: container.readiness_probe.is_some(),
        });
        let probes = [
            (ProbeKind::Startup, &container.startup_probe),
            (ProbeKind::Liveness, &container.liveness_probe),
            (ProbeKind::Readiness, &container.readiness_probe),
        ];
        let workers = probes
            .into_iter()
            .filter_map(|(kind, probe)| Some((kind, probe.clone()?)))
            .map(|(kind, probe)| {
                let worker = Worker {
                    kind,
                    probe,
                    pod_uid: key.pod_uid.clone(),
                    container: container.clone(),
                    container_id: container_id.to_owned(),
                    pod_ip,
                    started_at: Instant::from_std(started_at),
                    runtime: self.inner.runtime.clone(),
                    updates: self.inner.updates.clone(),
                    state: state.clone(),
                };
                AbortOnDrop(tokio::spawn(worker.run()))
            })
            .collect();
        let probed =
            ProbedContainer { container_id: container_id.to_owned(), state, _workers: workers };
        containers.insert(key, probed);
    }

    /// Stops probing the container (it stopped, or is being replaced).
    pub fn remove_container(&self, pod_uid: &str, container_name: &str) {
        let key =
            ContainerKey { pod_uid: pod_uid.to_owned(), container_name: container_name.to_owned() };
        self.lock().remove(&key);
    }

    /// Stops probing every container of the pod.
    pub fn remove_pod(&self, pod_uid: &str) {
        self.lock().retain(|key, _| key.pod_uid != pod_uid);
    }

    /// Readiness: false until the readiness probe's first success (true without one, once
    /// started); false while the startup probe has not succeeded, and for containers the
    /// manager does not know.
    pub fn is_ready(&self, pod_uid: &str, container_name: &str) -> bool {
        self.with_state(pod_uid, container_name, |state| {
            *state.started.borrow()
                && (!state.has_readiness_probe || state.ready.load(Ordering::SeqCst))
        })
    }

    /// Started: true when the container has no startup probe or it has succeeded; false for
    /// containers the manager does not know.
    pub fn is_started(&self, pod_uid: &str, container_name: &str) -> bool {
        self.with_state(pod_uid, container_name, |state| *state.started.borrow())
    }

    fn with_state(
        &self,
        pod_uid: &str,
        container_name: &str,
        read: impl Fn(&ProbeState) -> bool,
    ) -> bool {
        let key =
            ContainerKey { pod_uid: pod_uid.to_owned(), container_name: container_name.to_owned() };
        self.lock().get(&key).is_some_and(|probed| read(&probed.state))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ContainerKey, ProbedContainer>> {
        // The map stays consistent across a panic (every update is a single insert or
        // remove), so a poisoned lock is still usable.
        self.inner.containers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Consecutive identical results, settled once a threshold is reached (upstream's
/// `resultRun`).
#[derive(Debug, Default)]
struct ResultRun {
    last_success: Option<bool>,
    length: u64,
}

impl ResultRun {
    /// Counts one result; returns it once `success_threshold` successes or
    /// `failure_threshold` failures in a row have been seen (and on every one after).
    fn observe(
        &mut self,
        success: bool,
        success_threshold: u64,
        failure_threshold: u64,
    ) -> Option<bool> {
        if self.last_success == Some(success) {
            self.length += 1;
        } else {
            self.last_success = Some(success);
            self.length = 1;
        }
        let threshold = if success { success_threshold } else { failure_threshold };
        (self.length >= threshold).then_some(success)
    }
}

/// Whether a worker keeps probing after an attempt.
enum Flow {
    Continue,
    Stop,
}

/// One probe of one container instance.
struct Worker {
    kind: ProbeKind,
    probe: Probe,
    pod_uid: String,
    container: Container,
    container_id: String,
    pod_ip: Option<IpAddr>,
    started_at: Instant,
    runtime: Arc<dyn Runtime>,
    updates: mpsc::UnboundedSender<ProbeUpdate>,
    state: Arc<ProbeState>,
}

impl Worker {
    async fn run(self) {
        // Liveness and readiness wait for the startup probe (upstream's gating).
        if self.kind != ProbeKind::Startup {
            let mut started = self.state.started.subscribe();
            if started.wait_for(|started| *started).await.is_err() {
                return;
            }
        }
        let initial_delay = Duration::from_secs(positive_or(self.probe.initial_delay_seconds, 0));
        tokio::time::sleep_until(self.started_at + initial_delay).await;
        let period = Duration::from_secs(positive_or(self.probe.period_seconds, 10));
        let success_threshold = positive_or(self.probe.success_threshold, 1);
        let failure_threshold = positive_or(self.probe.failure_threshold, 3);
        let mut ticker = tokio::time::interval(period);
        // Like Go's ticker: a slow probe drops the ticks it overran, without a burst after.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut run = ResultRun::default();
        loop {
            ticker.tick().await;
            let result = self.attempt().await;
            if let ProbeResult::Failure(_) | ProbeResult::Unknown(_) = result {
                self.send(result.clone(), Transition::Failed);
            }
            let success = match result {
                ProbeResult::Success => true,
                ProbeResult::Failure(_) => false,
                // A probe that could not run says nothing about the container.
                ProbeResult::Unknown(_) => continue,
            };
            let Some(settled) = run.observe(success, success_threshold, failure_threshold) else {
                continue;
            };
            if let Flow::Stop = self.settle(settled, result) {
                return;
            }
        }
    }

    /// One tick's probe: retried while it errors, up to upstream's three tries.
    async fn attempt(&self) -> ProbeResult {
        let target = ProbeTarget {
            runtime: self.runtime.as_ref(),
            container_id: &self.container_id,
            pod_ip: self.pod_ip,
            container: &self.container,
        };
        let mut result = run_probe(&self.probe, &target).await;
        for _ in 1..MAX_PROBE_RETRIES {
            if !matches!(result, ProbeResult::Unknown(_)) {
                break;
            }
            result = run_probe(&self.probe, &target).await;
        }
        result
    }

    /// Applies a result that reached its threshold.
    fn settle(&self, success: bool, result: ProbeResult) -> Flow {
        match (self.kind, success) {
            (ProbeKind::Readiness, ready) => {
                let was_ready = self.state.ready.swap(ready, Ordering::SeqCst);
                if ready && !was_ready {
                    self.send(result, Transition::BecameReady);
                } else if !ready && was_ready {
                    self.send(result, Transition::BecameUnready);
                }
                Flow::Continue
            }
            (ProbeKind::Liveness, true) => Flow::Continue,
            // The container will be restarted: this worker is done with this container id
            // (upstream puts it on hold until a new id appears).
            (ProbeKind::Liveness, false) => {
                self.send(result, Transition::LivenessFailed);
                Flow::Stop
            }
            (ProbeKind::Startup, true) => {
                self.state.started.send_replace(true);
                self.send(result, Transition::Started);
                Flow::Stop
            }
            (ProbeKind::Startup, false) => {
                self.send(result, Transition::StartupFailed);
                Flow::Stop
            }
        }
    }

    fn send(&self, result: ProbeResult, transition: Transition) {
        // The receiver is gone only when the kubelet is shutting down; nothing to tell then.
        let _ = self.updates.send(ProbeUpdate {
            pod_uid: self.pod_uid.clone(),
            container_name: self.container.name.clone(),
            container_id: self.container_id.clone(),
            kind: self.kind,
            result,
            transition,
        });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::runtime::RuntimeError;
    use crate::runtime::cri_api::{self, ExecSyncResponse};
    use async_trait::async_trait;
    use k8s_openapi::api::core::v1::ExecAction;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::VecDeque;

    /// A runtime whose only working call is `ExecSync`: each command's first word names a
    /// script of exit codes (the last one repeats); `hang` never answers. Every exec is
    /// recorded with the (paused) time it came at.
    #[derive(Debug, Default)]
    pub(crate) struct FakeRuntime {
        scripts: Mutex<HashMap<String, VecDeque<i32>>>,
        pub(crate) execs: Mutex<Vec<(String, String, Instant)>>,
    }

    impl FakeRuntime {
        pub(crate) fn script(&self, command: &str, exit_codes: &[i32]) {
            self.scripts
                .lock()
                .unwrap()
                .insert(command.to_owned(), exit_codes.iter().copied().collect());
        }

        fn execs_of(&self, command: &str) -> Vec<Instant> {
            let execs = self.execs.lock().unwrap();
            execs.iter().filter(|(_, c, _)| c == command).map(|(_, _, at)| *at).collect()
        }
    }

    fn unsupported(operation: &'static str) -> RuntimeError {
        RuntimeError::Call {
            operation,
            code: tonic::Code::Unimplemented,
            message: "fake".to_owned(),
        }
    }

    #[async_trait]
    impl Runtime for FakeRuntime {
        async fn version(&self) -> Result<(String, String), RuntimeError> {
            Err(unsupported("Version"))
        }
        async fn status(&self) -> Result<crate::runtime::cri_api::StatusResponse, RuntimeError> {
            Err(unsupported("Status"))
        }
        async fn run_pod_sandbox(
            &self,
            _: cri_api::PodSandboxConfig,
            _: String,
        ) -> Result<String, RuntimeError> {
            Err(unsupported("RunPodSandbox"))
        }
        async fn stop_pod_sandbox(&self, _: &str) -> Result<(), RuntimeError> {
            Err(unsupported("StopPodSandbox"))
        }
        async fn remove_pod_sandbox(&self, _: &str) -> Result<(), RuntimeError> {
            Err(unsupported("RemovePodSandbox"))
        }
        async fn pod_sandbox_status(
            &self,
            _: &str,
        ) -> Result<cri_api::PodSandboxStatusResponse, RuntimeError> {
            Err(unsupported("PodSandboxStatus"))
        }
        async fn list_pod_sandbox(
            &self,
            _: cri_api::ListPodSandboxRequest,
        ) -> Result<Vec<cri_api::PodSandbox>, RuntimeError> {
            Err(unsupported("ListPodSandbox"))
        }
        async fn create_container(
            &self,
            _: &str,
            _: cri_api::ContainerConfig,
            _: cri_api::PodSandboxConfig,
        ) -> Result<String, RuntimeError> {
            Err(unsupported("CreateContainer"))
        }
        async fn start_container(&self, _: &str) -> Result<(), RuntimeError> {
            Err(unsupported("StartContainer"))
        }
        async fn stop_container(&self, _: &str, _: Duration) -> Result<(), RuntimeError> {
            Err(unsupported("StopContainer"))
        }
        async fn remove_container(&self, _: &str) -> Result<(), RuntimeError> {
            Err(unsupported("RemoveContainer"))
        }
        async fn container_status(
            &self,
            _: &str,
        ) -> Result<cri_api::ContainerStatusResponse, RuntimeError> {
            Err(unsupported("ContainerStatus"))
        }
        async fn list_containers(
            &self,
            _: cri_api::ListContainersRequest,
        ) -> Result<Vec<cri_api::Container>, RuntimeError> {
            Err(unsupported("ListContainers"))
        }
        async fn exec_sync(
            &self,
            container_id: &str,
            command: Vec<String>,
            _timeout: Duration,
        ) -> Result<ExecSyncResponse, RuntimeError> {
            let name = command.first().cloned().unwrap_or_default();
            self.execs.lock().unwrap().push((
                container_id.to_owned(),
                name.clone(),
                Instant::now(),
            ));
            if name == "hang" {
                std::future::pending::<()>().await;
            }
            let exit_code = {
                let mut scripts = self.scripts.lock().unwrap();
                let script = scripts.entry(name.clone()).or_default();
                if script.len() > 1 { script.pop_front() } else { script.front().copied() }
            };
            match exit_code {
                Some(exit_code) => Ok(ExecSyncResponse {
                    stdout: format!("{name} says {exit_code}").into_bytes(),
                    stderr: Vec::new(),
                    exit_code,
                }),
                None => Err(RuntimeError::Call {
                    operation: "ExecSync",
                    code: tonic::Code::NotFound,
                    message: "container not found".to_owned(),
                }),
            }
        }
        async fn exec(&self, _: cri_api::ExecRequest) -> Result<String, RuntimeError> {
            Err(unsupported("Exec"))
        }
        async fn attach(&self, _: cri_api::AttachRequest) -> Result<String, RuntimeError> {
            Err(unsupported("Attach"))
        }
        async fn port_forward(
            &self,
            _: cri_api::PortForwardRequest,
        ) -> Result<String, RuntimeError> {
            Err(unsupported("PortForward"))
        }
        async fn image_status(&self, _: &str) -> Result<Option<cri_api::Image>, RuntimeError> {
            Err(unsupported("ImageStatus"))
        }
        async fn pull_image(
            &self,
            _: cri_api::ImageSpec,
            _: Option<cri_api::AuthConfig>,
            _: Option<cri_api::PodSandboxConfig>,
        ) -> Result<String, RuntimeError> {
            Err(unsupported("PullImage"))
        }
        async fn list_images(&self) -> Result<Vec<cri_api::Image>, RuntimeError> {
            Err(unsupported("ListImages"))
        }
        async fn remove_image(&self, _: &str) -> Result<(), RuntimeError> {
            Err(unsupported("RemoveImage"))
        }
        async fn image_fs_used_bytes(&self) -> Result<u64, RuntimeError> {
            Err(unsupported("ImageFsInfo"))
        }
    }

    fn exec_probe(
        command: &str,
        initial_delay: i32,
        period: i32,
        success: i32,
        failure: i32,
    ) -> Probe {
        Probe {
            exec: Some(ExecAction { command: Some(vec![command.to_owned()]) }),
            initial_delay_seconds: Some(initial_delay),
            period_seconds: Some(period),
            success_threshold: Some(success),
            failure_threshold: Some(failure),
            timeout_seconds: Some(1),
            ..Probe::default()
        }
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta { uid: Some("uid-1".to_owned()), ..ObjectMeta::default() },
            ..Pod::default()
        }
    }

    struct Harness {
        runtime: Arc<FakeRuntime>,
        manager: ProbeManager,
        updates: mpsc::UnboundedReceiver<ProbeUpdate>,
        start: Instant,
    }

    impl Harness {
        fn new() -> Harness {
            let runtime = Arc::new(FakeRuntime::default());
            let (sender, updates) = mpsc::unbounded_channel();
            let manager = ProbeManager::new(runtime.clone(), sender);
            Harness { runtime, manager, updates, start: Instant::now() }
        }

        fn add(&self, container: &Container, id: &str) {
            self.manager.add_container(&pod(), container, id, None, self.start.into_std());
        }

        /// Lets the paused clock run to `seconds` after the start and the workers settle.
        async fn run_until(&self, seconds: u64) {
            tokio::time::sleep_until(self.start + Duration::from_secs(seconds)).await;
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        }

        fn transitions(&mut self) -> Vec<(ProbeKind, Transition)> {
            let mut seen = Vec::new();
            while let Ok(update) = self.updates.try_recv() {
                seen.push((update.kind, update.transition));
            }
            seen
        }

        /// Seconds after the start at which `command` ran.
        fn exec_times(&self, command: &str) -> Vec<u64> {
            self.runtime.execs_of(command).iter().map(|at| (*at - self.start).as_secs()).collect()
        }
    }

    fn container(
        startup: Option<Probe>,
        liveness: Option<Probe>,
        readiness: Option<Probe>,
    ) -> Container {
        Container {
            name: "app".to_owned(),
            startup_probe: startup,
            liveness_probe: liveness,
            readiness_probe: readiness,
            ..Container::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_waits_for_its_initial_delay_and_success_threshold() {
        let mut h = Harness::new();
        h.runtime.script("ready", &[0]);
        h.add(&container(None, None, Some(exec_probe("ready", 5, 2, 2, 3))), "c1");
        h.run_until(4).await;
        assert!(h.runtime.execs_of("ready").is_empty());
        assert!(!h.manager.is_ready("uid-1", "app"));
        assert!(h.manager.is_started("uid-1", "app"));
        h.run_until(5).await;
        assert!(!h.manager.is_ready("uid-1", "app"), "one success is below the threshold of 2");
        h.run_until(7).await;
        assert!(h.manager.is_ready("uid-1", "app"));
        assert_eq!(h.exec_times("ready"), vec![5, 7]);
        assert_eq!(h.transitions(), vec![(ProbeKind::Readiness, Transition::BecameReady)]);
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_flaps_with_its_thresholds_and_reports_every_failure() {
        let mut h = Harness::new();
        // ok, fail, ok (the single failure stays below 2), fail, fail (unready), ok (ready).
        h.runtime.script("check", &[0, 1, 0, 1, 1, 0]);
        h.add(&container(None, None, Some(exec_probe("check", 0, 1, 1, 2))), "c1");
        h.run_until(0).await;
        assert!(h.manager.is_ready("uid-1", "app"));
        h.run_until(4).await;
        assert!(!h.manager.is_ready("uid-1", "app"));
        h.run_until(5).await;
        assert!(h.manager.is_ready("uid-1", "app"));
        use Transition::*;
        let readiness = |t| (ProbeKind::Readiness, t);
        assert_eq!(
            h.transitions(),
            vec![
                readiness(BecameReady),
                readiness(Failed),
                readiness(Failed),
                readiness(Failed),
                readiness(BecameUnready),
                readiness(BecameReady),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failed_reports_carry_upstream_event_words() {
        let mut h = Harness::new();
        h.runtime.script("check", &[1]);
        h.add(&container(None, None, Some(exec_probe("check", 0, 10, 1, 3))), "c1");
        h.run_until(0).await;
        let update = h.updates.try_recv().unwrap();
        assert_eq!(update.transition, Transition::Failed);
        assert_eq!(
            update.unhealthy_message().as_deref(),
            Some("Readiness probe failed: check says 1")
        );
        assert_eq!(update.container_id, "c1");
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_fails_once_per_container_id_after_the_failure_threshold() {
        let mut h = Harness::new();
        h.runtime.script("alive", &[1]);
        let app = container(None, Some(exec_probe("alive", 0, 10, 1, 3)), None);
        h.add(&app, "c1");
        h.add(&app, "c1"); // idempotent: still one worker
        h.run_until(60).await;
        assert_eq!(
            h.exec_times("alive"),
            vec![0, 10, 20],
            "the worker stops after the kill verdict"
        );
        let updates: Vec<_> = std::iter::from_fn(|| h.updates.try_recv().ok()).collect();
        let verdicts: Vec<_> =
            updates.iter().filter(|u| u.transition == Transition::LivenessFailed).collect();
        assert_eq!(verdicts.len(), 1);
        assert_eq!(
            verdicts[0].restart_message().as_deref(),
            Some("Container app failed liveness probe, will be restarted")
        );
        assert_eq!(updates.iter().filter(|u| u.transition == Transition::Failed).count(), 3);

        // The restarted container gets a fresh worker and its own verdict.
        h.manager.remove_container("uid-1", "app");
        h.add(&app, "c2");
        h.run_until(90).await;
        let verdicts: Vec<_> = std::iter::from_fn(|| h.updates.try_recv().ok())
            .filter(|u| u.transition == Transition::LivenessFailed)
            .map(|u| u.container_id)
            .collect();
        assert_eq!(verdicts, vec!["c2".to_owned()]);
    }

    #[tokio::test(start_paused = true)]
    async fn startup_probe_gates_liveness_and_readiness() {
        let mut h = Harness::new();
        h.runtime.script("boot", &[1, 1, 0]);
        h.runtime.script("alive", &[0]);
        h.runtime.script("ready", &[0]);
        let app = container(
            Some(exec_probe("boot", 0, 5, 1, 10)),
            Some(exec_probe("alive", 0, 10, 1, 3)),
            Some(exec_probe("ready", 0, 10, 1, 3)),
        );
        h.add(&app, "c1");
        h.run_until(9).await;
        assert!(!h.manager.is_started("uid-1", "app"));
        assert!(!h.manager.is_ready("uid-1", "app"));
        assert!(h.runtime.execs_of("alive").is_empty() && h.runtime.execs_of("ready").is_empty());
        h.run_until(10).await;
        assert!(h.manager.is_started("uid-1", "app"));
        assert!(h.manager.is_ready("uid-1", "app"), "readiness probes right after startup");
        assert_eq!(h.exec_times("boot"), vec![0, 5, 10]);
        assert_eq!(h.exec_times("alive"), vec![10]);
        h.run_until(40).await;
        assert_eq!(h.exec_times("boot").len(), 3, "startup probing ends with its success");
        let kinds: Vec<_> =
            h.transitions().into_iter().filter(|(_, t)| *t != Transition::Failed).collect();
        assert_eq!(
            kinds,
            vec![
                (ProbeKind::Startup, Transition::Started),
                (ProbeKind::Readiness, Transition::BecameReady)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn startup_failure_condemns_the_container() {
        let mut h = Harness::new();
        h.runtime.script("boot", &[1]);
        h.add(&container(Some(exec_probe("boot", 0, 1, 1, 2)), None, None), "c1");
        h.run_until(10).await;
        assert_eq!(h.exec_times("boot"), vec![0, 1]);
        assert!(!h.manager.is_started("uid-1", "app"));
        let verdict = std::iter::from_fn(|| h.updates.try_recv().ok())
            .find(|u| u.transition == Transition::StartupFailed)
            .unwrap();
        assert_eq!(
            verdict.restart_message().as_deref(),
            Some("Container app failed startup probe, will be restarted")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn exec_timeouts_fail_and_runtime_errors_are_discarded() {
        let mut h = Harness::new();
        // "hang" never answers: each attempt times out after timeoutSeconds (1s).
        h.add(&container(None, Some(exec_probe("hang", 0, 10, 1, 2)), None), "c1");
        // "gone" has no script: the runtime errors, three tries per tick, counted neither way.
        let other = Container {
            name: "other".to_owned(),
            ..container(None, Some(exec_probe("gone", 0, 10, 1, 1)), None)
        };
        h.add(&other, "c2");
        h.run_until(30).await;
        let updates: Vec<_> = std::iter::from_fn(|| h.updates.try_recv().ok()).collect();
        let app: Vec<_> = updates.iter().filter(|u| u.container_name == "app").collect();
        assert_eq!(app[0].result, ProbeResult::Failure("command \"hang\" timed out".to_owned()));
        assert_eq!(app.last().map(|u| u.transition), Some(Transition::LivenessFailed));
        let gone: Vec<_> = updates.iter().filter(|u| u.container_name == "other").collect();
        assert!(gone.iter().all(|u| u.transition == Transition::Failed), "errors never kill");
        assert!(matches!(gone[0].result, ProbeResult::Unknown(_)));
        assert_eq!(
            gone[0].unhealthy_message().as_deref(),
            Some(
                "Liveness probe errored and resulted in unknown state: ExecSync: container not found"
            )
        );
        assert_eq!(h.exec_times("gone"), vec![0, 0, 0, 10, 10, 10, 20, 20, 20, 30, 30, 30]);
    }

    #[tokio::test(start_paused = true)]
    async fn containers_without_probes_are_started_and_ready_and_removal_forgets() {
        let h = Harness::new();
        h.add(&container(None, None, None), "c1");
        assert!(h.manager.is_started("uid-1", "app") && h.manager.is_ready("uid-1", "app"));
        assert!(!h.manager.is_ready("uid-1", "unknown"));
        h.manager.remove_pod("uid-1");
        assert!(!h.manager.is_started("uid-1", "app"));
    }

    #[tokio::test(start_paused = true)]
    async fn removed_containers_stop_probing() {
        let h = Harness::new();
        h.runtime.script("ready", &[0]);
        h.add(&container(None, None, Some(exec_probe("ready", 0, 10, 1, 3))), "c1");
        h.run_until(15).await;
        h.manager.remove_container("uid-1", "app");
        h.run_until(60).await;
        assert_eq!(h.exec_times("ready"), vec![0, 10]);
    }
}
