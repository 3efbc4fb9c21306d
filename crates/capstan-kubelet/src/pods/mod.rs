//! The pods bound to this node, made real. A watch of the node's pods feeds one worker
//! task per pod (by uid); a one-second relist of the runtime (the kubelet's PLEG) and the
//! probe manager wake the worker of a pod whose containers changed. Pods the API no longer
//! has are stopped and cleaned up, and so are sandboxes this kubelet made for pods it no
//! longer knows (after a restart).

mod backoff;
mod cgroups;
pub(crate) mod config;
mod hosts;
mod pull_secrets;
pub(crate) mod status;
mod worker;

use crate::KubeletConfig;
use crate::probes::{ProbeManager, ProbeUpdate};
use crate::runtime::Runtime;
use crate::runtime::cri_api::{ListContainersRequest, ListPodSandboxRequest, PodSandboxFilter};
use crate::volumes::Mounter;
use capstan_kube::events::Recorder;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::reflector::Store;
use kube::runtime::watcher::{self, Event};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use worker::{Message, Worker};

/// What the workers need to know about the node, kept current from the Node object.
#[derive(Debug, Clone, Default)]
pub struct NodeFacts {
    pub host_ips: Vec<String>,
    pub allocatable_cpu_millis: i64,
    pub allocatable_memory_bytes: i64,
}

/// The host's resolv.conf, for dnsPolicy Default and the searches ClusterFirst appends.
#[derive(Debug, Clone, Default)]
pub struct HostDns {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
}

impl HostDns {
    pub fn read(path: &std::path::Path) -> HostDns {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut dns = HostDns::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => dns.servers.extend(words.next().map(str::to_owned)),
                Some("search") | Some("domain") => {
                    dns.searches = words.map(str::to_owned).collect();
                }
                _ => {}
            }
        }
        dns
    }
}

/// What every worker shares.
pub(crate) struct Shared {
    pub client: kube::Client,
    pub runtime: Arc<dyn Runtime>,
    pub probes: ProbeManager,
    pub recorder: Recorder,
    pub config: KubeletConfig,
    pub node_facts: watch::Receiver<NodeFacts>,
    pub mounter: Arc<dyn Mounter>,
    pub host_dns: HostDns,
    pub services: Store<Service>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("node", &self.config.node_name).finish_non_exhaustive()
    }
}

impl Shared {
    /// The Services whose environment variables a container of `pod` gets: those of its
    /// namespace, and `default/kubernetes`.
    pub(crate) fn services_for(&self, pod: &Pod) -> Vec<Service> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        self.services
            .state()
            .iter()
            .filter(|s| {
                let ns = s.metadata.namespace.as_deref().unwrap_or_default();
                ns == namespace
                    || (ns == "default" && s.metadata.name.as_deref() == Some("kubernetes"))
            })
            .map(|s| (**s).clone())
            .collect()
    }
}

struct WorkerHandle {
    pod: watch::Sender<Option<Arc<Pod>>>,
    messages: mpsc::UnboundedSender<Message>,
}

/// Everything the pod manager needs to run.
pub struct PodManagerParts {
    pub client: kube::Client,
    pub runtime: Arc<dyn Runtime>,
    pub config: KubeletConfig,
    pub node_facts: watch::Receiver<NodeFacts>,
    pub mounter: Arc<dyn Mounter>,
}

impl std::fmt::Debug for PodManagerParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodManagerParts")
            .field("node", &self.config.node_name)
            .finish_non_exhaustive()
    }
}

/// Runs the node's pods until `stop` is set. On stop the pods keep running (their
/// containers live in containerd's shims), as with upstream's kubelet.
pub async fn run(parts: PodManagerParts, mut stop: watch::Receiver<bool>) {
    let (probe_updates, mut probe_rx) = mpsc::unbounded_channel::<ProbeUpdate>();
    let probes = ProbeManager::new(Arc::clone(&parts.runtime), probe_updates);
    let services_api: kube::Api<Service> = kube::Api::all(parts.client.clone());
    let (services, services_writer) = kube::runtime::reflector::store();
    let services_task = tokio::spawn(
        kube::runtime::reflector(
            services_writer,
            watcher::watcher(services_api, watcher::Config::default()),
        )
        .for_each(|_| async {}),
    );
    let shared = Arc::new(Shared {
        client: parts.client.clone(),
        runtime: Arc::clone(&parts.runtime),
        probes,
        recorder: Recorder::new(parts.client.clone(), "kubelet"),
        host_dns: HostDns::read(std::path::Path::new("/etc/resolv.conf")),
        config: parts.config.clone(),
        node_facts: parts.node_facts.clone(),
        mounter: parts.mounter,
        services,
    });
    let pods: kube::Api<Pod> = kube::Api::all(parts.client.clone());
    let selector = format!("spec.nodeName={}", parts.config.node_name);
    let mut events = watcher::watcher(pods, watcher::Config::default().fields(&selector)).boxed();
    let mut workers: HashMap<String, WorkerHandle> = HashMap::new();
    let mut listed: Option<HashSet<String>> = None;
    let mut relist = tokio::time::interval(Duration::from_secs(1));
    relist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut fingerprints: HashMap<String, String> = HashMap::new();
    let mut orphans_checked = false;
    loop {
        tokio::select! {
            () = crate::kubelet::until_stopped(&mut stop) => break,
            event = events.next() => match event {
                Some(Ok(Event::Apply(pod))) | Some(Ok(Event::InitApply(pod))) => {
                    if let Some(seen) = listed.as_mut() {
                        seen.insert(pod.metadata.uid.clone().unwrap_or_default());
                    }
                    dispatch(&shared, &mut workers, Some(pod));
                }
                Some(Ok(Event::Delete(pod))) => {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    if let Some(worker) = workers.get(&uid) {
                        let _ = worker.pod.send(None);
                    }
                }
                Some(Ok(Event::Init)) => listed = Some(HashSet::new()),
                Some(Ok(Event::InitDone)) => {
                    // Pods deleted while the watch was down: their workers stop them.
                    if let Some(seen) = listed.take() {
                        for (uid, worker) in &workers {
                            if !seen.contains(uid) {
                                let _ = worker.pod.send(None);
                            }
                        }
                        if !orphans_checked {
                            orphans_checked = true;
                            remove_orphans(&shared, &seen).await;
                        }
                    }
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, "pod watch interrupted; resuming");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None => break,
            },
            update = probe_rx.recv() => {
                if let Some(update) = update
                    && let Some(worker) = workers.get(&update.pod_uid)
                {
                    let _ = worker.messages.send(Message::Probe(update));
                }
            }
            _ = relist.tick() => {
                workers.retain(|_, worker| !worker.messages.is_closed());
                poke_changed(&shared, &workers, &mut fingerprints).await;
            }
        }
    }
    services_task.abort();
    drop(workers);
    cgroups::remove_empty_roots();
}

/// Hands a pod to its worker, starting one for a new uid.
fn dispatch(shared: &Arc<Shared>, workers: &mut HashMap<String, WorkerHandle>, pod: Option<Pod>) {
    let Some(pod) = pod else { return };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let pod = Arc::new(pod);
    if let Some(worker) = workers.get(&uid)
        && !worker.messages.is_closed()
    {
        let _ = worker.pod.send(Some(pod));
        return;
    }
    // A pod that finished before this kubelet saw it has nothing to run.
    let (pod_tx, pod_rx) = watch::channel(Some(pod));
    let (messages, messages_rx) = mpsc::unbounded_channel();
    tokio::spawn(run_worker(Arc::clone(shared), uid.clone(), pod_rx, messages_rx));
    workers.insert(uid, WorkerHandle { pod: pod_tx, messages });
}

async fn run_worker(
    shared: Arc<Shared>,
    uid: String,
    mut pods: watch::Receiver<Option<Arc<Pod>>>,
    mut messages: mpsc::UnboundedReceiver<Message>,
) {
    let mut worker = Worker::new(shared, uid);
    let mut wake: Option<Duration> = None;
    loop {
        let pod = pods.borrow_and_update().clone();
        let Some(pod) = pod else {
            // The pod is gone from the API: stop whatever still runs, then clean up.
            worker.cleanup().await;
            return;
        };
        let next = worker.sync(&pod).await;
        wake = next.wake_after.or(wake.filter(|_| false));
        let resync = wake.unwrap_or(Duration::from_secs(10)).min(Duration::from_secs(10));
        tokio::select! {
            changed = pods.changed() => {
                if changed.is_err() {
                    // The manager is shutting down: leave the pod running.
                    return;
                }
            }
            message = messages.recv() => match message {
                Some(Message::Probe(update)) => worker.on_probe(&pod, update).await,
                Some(Message::Poke) => {}
                None => return,
            },
            () = tokio::time::sleep(resync) => {}
        }
    }
}

/// The kubelet's PLEG: one runtime listing per second, waking the workers of pods whose
/// containers changed state.
async fn poke_changed(
    shared: &Arc<Shared>,
    workers: &HashMap<String, WorkerHandle>,
    fingerprints: &mut HashMap<String, String>,
) {
    let Ok(containers) = shared.runtime.list_containers(ListContainersRequest::default()).await
    else {
        return;
    };
    let mut current: HashMap<String, String> = HashMap::new();
    for container in containers {
        let Some(uid) = container.labels.get(config::POD_UID) else { continue };
        let entry = current.entry(uid.clone()).or_default();
        entry.push_str(&format!("{}:{};", container.id, container.state));
    }
    for (uid, worker) in workers {
        let now = current.get(uid).cloned().unwrap_or_default();
        if fingerprints.get(uid) != Some(&now) {
            let _ = worker.messages.send(Message::Poke);
        }
    }
    *fingerprints = current;
}

/// Stops and removes sandboxes this kubelet made for pods the API does not have.
async fn remove_orphans(shared: &Arc<Shared>, known: &HashSet<String>) {
    let filter = PodSandboxFilter {
        label_selector: HashMap::from([(config::MANAGED_BY.to_owned(), "true".to_owned())]),
        ..PodSandboxFilter::default()
    };
    let Ok(sandboxes) =
        shared.runtime.list_pod_sandbox(ListPodSandboxRequest { filter: Some(filter) }).await
    else {
        return;
    };
    let orphans: HashSet<String> = sandboxes
        .iter()
        .filter_map(|s| s.labels.get(config::POD_UID))
        .filter(|uid| !known.contains(*uid))
        .cloned()
        .collect();
    for uid in orphans {
        tracing::info!(pod_uid = %uid, "removing the containers of a pod the API no longer has");
        Worker::new(Arc::clone(shared), uid).cleanup().await;
    }
}
