//! The node lifecycle controller, upstream's `node-lifecycle-controller` (its Events come
//! from `node-controller`). Every `--node-monitor-period` (5 s) it checks that each node's
//! kubelet is alive: the Ready condition's heartbeat or the node's Lease in
//! `kube-node-lease` must have moved within the grace period (`node_monitor_grace_period`,
//! 50 s), as observed by this controller's own clock. A silent node's Ready, MemoryPressure,
//! DiskPressure and PIDPressure conditions become Unknown (`NodeStatusUnknown`), its pods
//! NotReady, and it gets a `NodeNotReady` Event. Unhealthy nodes are then tainted
//! `node.kubernetes.io/unreachable:NoExecute` (Ready Unknown) or
//! `node.kubernetes.io/not-ready:NoExecute` (Ready False) through per-zone rate-limited
//! queues, and the taints are lifted once the node is Ready again; the taint eviction
//! controller evicts the pods. Independently, a node's NoSchedule taints mirror its
//! conditions (upstream's TaintNodesByCondition), so the scheduler avoids unhealthy nodes.
//!
//! Decisions are pure and live beside this file: `health.rs` (probes and silence),
//! `zones.rs` (zone states, disruption modes, rates), `tainter.rs` (the rate-limited
//! queues) and `taints.rs` (taint list edits). This file reads the cluster through
//! reflectors and kube-runtime controllers and acts through the API.

mod health;
mod tainter;
mod taints;
mod zones;

use crate::Context;
use capstan_kube::events::{EventType, Recorder, reference_to};
use futures_util::StreamExt;
use health::{Health, ReadySignal, Signals, Status};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tainter::TaintQueue;
use taints::{NO_EXECUTE, NOT_READY, UNREACHABLE};
use tokio::time::{Instant, MissedTickBehavior};
use zones::{Disruption, EXCLUDE_DISRUPTION, UPSTREAM_RATES, Zones};

/// How often node health is checked (`--node-monitor-period`).
const MONITOR_PERIOD: Duration = Duration::from_secs(5);
/// The grace period of a node that never posted a Ready condition
/// (`--node-startup-grace-period`).
const STARTUP_GRACE: Duration = Duration::from_secs(60);
/// How often the taint queues are worked (upstream's `NodeEvictionPeriod`).
const TAINT_PERIOD: Duration = Duration::from_millis(100);
/// Nodes handled at once, in a pass and by the condition-taint controller.
const NODE_WORKERS: usize = 8;
/// Attempts at a write that keeps losing races with other writers of the node.
const WRITE_ATTEMPTS: usize = 5;
/// Where kubelets keep their Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Everything the loops of the controller share.
struct Lifecycle {
    context: Arc<Context>,
    recorder: Recorder,
    grace: Duration,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    monitor: Mutex<Monitor>,
    /// The queues of nodes waiting for a NoExecute taint, by zone.
    queues: Mutex<BTreeMap<String, TaintQueue>>,
    /// The node each bound pod (by uid) was looked at on.
    pods_seen: Mutex<HashMap<String, String>>,
}

/// What the health passes remember.
#[derive(Debug, Default)]
struct Monitor {
    /// Nodes seen by earlier passes, to notice registrations and removals.
    known: BTreeMap<String, Arc<Node>>,
    health: HashMap<String, Health>,
    zones: Zones,
    /// Nodes whose pods could not all be marked NotReady yet.
    retry: HashSet<String>,
}

/// What a pass learned about one node, for its zone's state.
#[derive(Debug)]
struct Outcome {
    zone: String,
    excluded: bool,
    ready: Option<Status>,
}

#[derive(Debug, thiserror::Error)]
enum LifecycleError {
    #[error("cannot set the condition taints of node {node}")]
    Taints {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot mark pod {pod} not ready")]
    PodReadiness {
        pod: String,
        #[source]
        source: kube::Error,
    },
}

pub(crate) async fn run(context: Arc<Context>) {
    let client = context.client.clone();
    let workers = u16::try_from(NODE_WORKERS).unwrap_or(1);
    let nodes = Controller::new(Api::<Node>::all(client.clone()), watcher::Config::default())
        .with_config(Config::default().concurrency(workers));
    let bound = watcher::Config::default().fields("spec.nodeName!=");
    let pods = Controller::new(Api::<Pod>::all(client.clone()), bound)
        .with_config(Config::default().concurrency(4));
    let (leases, lease_writer) = reflector::store();
    let lease_api: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    let lease_watch = reflector::reflector(
        lease_writer,
        watcher::watcher(lease_api, watcher::Config::default()).default_backoff(),
    )
    .for_each(|event| async move {
        if let Err(error) = event {
            tracing::debug!(%error, "node lifecycle: lease watch failed");
        }
    });
    let lifecycle = Arc::new(Lifecycle {
        recorder: context.recorder("node-controller"),
        grace: context.config.node_monitor_grace_period,
        context,
        nodes: nodes.store(),
        leases,
        pods: pods.store(),
        monitor: Mutex::new(Monitor::default()),
        queues: Mutex::new(BTreeMap::new()),
        pods_seen: Mutex::new(HashMap::new()),
    });
    let condition_taints = nodes
        .run(reconcile_condition_taints, node_error_policy, Arc::clone(&lifecycle))
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "node lifecycle: condition taints failed");
            }
        });
    let bindings = pods.run(reconcile_pod, pod_error_policy, Arc::clone(&lifecycle)).for_each(
        |result| async {
            if let Err(error) = result {
                tracing::debug!(%error, "node lifecycle: pod readiness failed");
            }
        },
    );
    // Joined rather than spawned, so that aborting this task stops every part of it.
    tokio::join!(
        lease_watch,
        condition_taints,
        bindings,
        Arc::clone(&lifecycle).monitor_loop(),
        lifecycle.taint_loop()
    );
}

impl Lifecycle {
    fn monitor(&self) -> MutexGuard<'_, Monitor> {
        self.monitor.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn queues(&self) -> MutexGuard<'_, BTreeMap<String, TaintQueue>> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn pods_seen(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.pods_seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn nodes_api(&self) -> Api<Node> {
        Api::all(self.context.client.clone())
    }

    /// Checks node health every monitor period, once nodes, Leases and pods are listed:
    /// deciding on part of the picture could declare healthy nodes silent.
    async fn monitor_loop(self: Arc<Self>) {
        let _ = tokio::join!(
            capstan_kube::store::ready(&self.nodes),
            capstan_kube::store::ready(&self.leases),
            capstan_kube::store::ready(&self.pods)
        );
        tracing::info!(grace = ?self.grace, "node lifecycle: monitoring node health");
        let mut ticks = tokio::time::interval(MONITOR_PERIOD);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.monitor_pass().await;
        }
    }

    /// One health pass over every node (upstream's `monitorNodeHealth`).
    async fn monitor_pass(&self) {
        let nodes = self.nodes.state();
        let now = Instant::now();
        let (added, removed) = {
            let mut monitor = self.monitor();
            let names: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
            let added: Vec<Arc<Node>> = nodes
                .iter()
                .filter(|n| !monitor.known.contains_key(&n.name_any()))
                .cloned()
                .collect();
            let removed: Vec<Arc<Node>> = monitor
                .known
                .values()
                .filter(|n| !names.contains(&n.name_any()))
                .cloned()
                .collect();
            for node in &added {
                monitor.known.insert(node.name_any(), Arc::clone(node));
            }
            for node in &removed {
                let name = node.name_any();
                monitor.known.remove(&name);
                monitor.health.remove(&name);
                monitor.retry.remove(&name);
            }
            (added, removed)
        };
        {
            let mut queues = self.queues();
            for node in &nodes {
                queues
                    .entry(zones::zone_key(node.metadata.labels.as_ref()))
                    .or_insert_with(|| TaintQueue::new(UPSTREAM_RATES.normal, now));
            }
        }
        let present: HashSet<String> =
            self.pods.state().iter().filter_map(|p| p.metadata.uid.clone()).collect();
        self.pods_seen().retain(|uid, _| present.contains(uid));
        futures_util::stream::iter(added)
            .for_each_concurrent(NODE_WORKERS, |node| async move {
                tracing::debug!(node = %node.name_any(), "node lifecycle: observed a new node");
                let what = format!("Registered Node {} in Controller", node.name_any());
                self.node_event(&node, "RegisteredNode", "Registering", &what).await;
                if let Err(error) = self.mark_reachable(&node).await {
                    tracing::warn!(node = %node.name_any(), %error, "node lifecycle: cannot lift the NoExecute taints of a new node");
                }
            })
            .await;
        for node in &removed {
            tracing::debug!(node = %node.name_any(), "node lifecycle: observed a node's removal");
            let what = format!("Removing Node {} from Controller", node.name_any());
            self.node_event(node, "RemovingNode", "Removing", &what).await;
        }
        let outcomes: Vec<Outcome> = futures_util::stream::iter(nodes.iter().cloned())
            .map(|node| self.update_node(node))
            .buffer_unordered(NODE_WORKERS)
            .filter_map(|outcome| async move { outcome })
            .collect()
            .await;
        let mut observed: BTreeMap<String, Vec<bool>> = BTreeMap::new();
        for outcome in outcomes.into_iter().filter(|o| !o.excluded) {
            observed.entry(outcome.zone).or_default().push(outcome.ready == Some(Status::True));
        }
        let disruption = self.monitor().zones.update(&observed, &UPSTREAM_RATES);
        self.apply(disruption, &nodes).await;
    }

    /// Acts on a change of zone states.
    async fn apply(&self, disruption: Disruption, nodes: &[Arc<Node>]) {
        let now = Instant::now();
        match disruption {
            Disruption::Steady => {}
            Disruption::Entered => {
                tracing::warn!(
                    "node lifecycle: Controller detected that all Nodes are not-Ready. Entering master disruption mode."
                );
                for queue in self.queues().values_mut() {
                    queue.set_rate(0.0, now);
                }
                for node in nodes {
                    if let Err(error) = self.mark_reachable(node).await {
                        tracing::warn!(node = %node.name_any(), %error, "node lifecycle: cannot lift the NoExecute taints");
                    }
                }
            }
            Disruption::Exited(rates) => {
                tracing::info!(
                    "node lifecycle: Controller detected that some Nodes are Ready. Exiting master disruption mode."
                );
                // Kubelets could not reach the control plane either: their silence says
                // nothing about the nodes, so every node starts its grace period afresh.
                for health in self.monitor().health.values_mut() {
                    health.probed = now;
                    health.ready_changed = now;
                }
                self.set_rates(&rates, now);
            }
            Disruption::Changed(rates) => {
                for (zone, rate) in &rates {
                    tracing::info!(zone = %zone.replace('\0', ""), rate, "node lifecycle: zone is in a new state");
                }
                self.set_rates(&rates, now);
            }
        }
    }

    fn set_rates(&self, rates: &[(String, f64)], now: Instant) {
        let mut queues = self.queues();
        for (zone, rate) in rates {
            queues
                .entry(zone.clone())
                .or_insert_with(|| TaintQueue::new(*rate, now))
                .set_rate(*rate, now);
        }
    }

    /// Updates one node's health, taints and pods; `None` when its health could not be
    /// written (then it does not count in its zone, and nothing is evicted for it).
    async fn update_node(&self, node: Arc<Node>) -> Option<Outcome> {
        let name = node.name_any();
        let zone = zones::zone_key(node.metadata.labels.as_ref());
        let excluded = node.labels().contains_key(EXCLUDE_DISRUPTION);
        let mut node = node;
        let mut attempt = 1;
        let (observed, ready) = loop {
            match self.update_health(&node).await {
                Ok(result) => break result,
                Err(error) if attempt < WRITE_ATTEMPTS => {
                    tracing::debug!(node = %name, %error, "node lifecycle: retrying a node status update");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    match self.nodes_api().get(&name).await {
                        Ok(fresh) => node = Arc::new(fresh),
                        Err(error) => {
                            tracing::debug!(node = %name, %error, "node lifecycle: cannot read the node again; probably deleted");
                            return None;
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(node = %name, %error, "node lifecycle: cannot update the node's health; no pods will be evicted for it in this pass");
                    return None;
                }
            }
        };
        let outcome = Outcome { zone, excluded, ready };
        let Some(ready) = ready else {
            self.monitor().retry.remove(&name);
            return Some(outcome);
        };
        self.taint_for_readiness(&node, observed).await;
        let pending = self.monitor().retry.contains(&name);
        let became_unready = ready != Status::True && observed == Status::True;
        if became_unready {
            tracing::info!(node = %name, ?ready, "node lifecycle: node is not ready");
            let note = format!("Node {name} status is now: NodeNotReady");
            self.recorder
                .publish(
                    &reference_to(node.as_ref()),
                    EventType::Normal,
                    "NodeNotReady",
                    "Monitoring",
                    note,
                )
                .await;
        }
        if (became_unready || (pending && observed != Status::True))
            && let Err(error) = self.mark_pods_not_ready(&name).await
        {
            tracing::warn!(node = %name, %error, "node lifecycle: cannot mark every pod NotReady; retrying next pass");
            self.monitor().retry.insert(name);
            return Some(outcome);
        }
        self.monitor().retry.remove(&name);
        Some(outcome)
    }

    /// Observes the node's signals and, when it has been silent for longer than its grace
    /// period, posts its conditions as Unknown. Returns the Ready status as posted by the
    /// kubelet (Unknown when it never posted one) and as it now stands (`None` when the node
    /// has no Ready condition). Fails only when the status write fails.
    async fn update_health(&self, node: &Node) -> Result<(Status, Option<Status>), kube::Error> {
        let name = node.name_any();
        let now = Instant::now();
        let lease = self.leases.get(&ObjectRef::new(&name).within(LEASE_NAMESPACE));
        let signals = Signals {
            ready: ReadySignal::of(node.status.as_ref()),
            lease_renewed: lease.and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0)),
        };
        let observed = signals.ready.as_ref().map_or(Status::Unknown, |r| r.status);
        let current = signals.ready.as_ref().map(|r| r.status);
        let (silent, quiet_for) = {
            let mut monitor = self.monitor();
            let health = health::observe(monitor.health.get(&name), &signals, now);
            let silent = health::is_silent(&health, now, self.grace, STARTUP_GRACE);
            let quiet_for = now - health.probed;
            monitor.health.insert(name.clone(), health);
            (silent, quiet_for)
        };
        if !silent {
            return Ok((observed, current));
        }
        let created = node.metadata.creation_timestamp.as_ref();
        let Some(conditions) =
            health::silenced_conditions(node.status.as_ref(), created, Timestamp::now())
        else {
            return Ok((observed, current));
        };
        let patch = json!({
            "metadata": {"resourceVersion": node.resource_version()},
            "status": {"conditions": conditions},
        });
        self.nodes_api()
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        tracing::info!(node = %name, seconds = quiet_for.as_secs(), "node lifecycle: kubelet stopped posting node status; conditions are now Unknown");
        // What this controller wrote is now the last Ready condition seen; its heartbeat is
        // still the kubelet's, so the write is no sign of life.
        if let Some(health) = self.monitor().health.get_mut(&name) {
            health.ready =
                conditions.iter().find(|c| c.type_ == "Ready").map(ReadySignal::from_condition);
            health.ready_changed = Instant::now();
        }
        Ok((observed, Some(Status::Unknown)))
    }

    /// Upstream's `processTaintBaseEviction`, on the Ready status the kubelet posted: an
    /// unhealthy node that has the opposite NoExecute taint gets it swapped at once (the
    /// node is already being evicted); otherwise it queues for its taint; a Ready node has
    /// its NoExecute taints lifted.
    async fn taint_for_readiness(&self, node: &Arc<Node>, observed: Status) {
        let name = node.name_any();
        let current = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
        match taints::no_execute_for(observed) {
            Some((add, opposite)) if taints::has(current, opposite, NO_EXECUTE) => {
                let now = Time(Timestamp::now());
                let edit = |n: &Node| {
                    taints::swapped(n, &[(add, NO_EXECUTE)], &[(opposite, NO_EXECUTE)], &now)
                };
                match self.write_taints(node, edit).await {
                    Ok(_) => {
                        tracing::info!(node = %name, taint = add, "node lifecycle: NoExecute taint swapped")
                    }
                    Err(error) => {
                        tracing::warn!(node = %name, %error, "node lifecycle: cannot swap the NoExecute taint; trying again next pass")
                    }
                }
            }
            Some((add, _)) => {
                let now = Instant::now();
                let zone = zones::zone_key(node.metadata.labels.as_ref());
                let mut queues = self.queues();
                let queue = queues
                    .entry(zone)
                    .or_insert_with(|| TaintQueue::new(UPSTREAM_RATES.normal, now));
                if !taints::has(current, add, NO_EXECUTE) {
                    // Taken earlier but not tainted (or tainted and since untainted): again.
                    queue.remove(&name);
                }
                if queue.add(&name, now) {
                    tracing::debug!(node = %name, taint = add, "node lifecycle: queued for a NoExecute taint");
                }
            }
            None => {
                if let Err(error) = self.mark_reachable(node).await {
                    tracing::warn!(node = %name, %error, "node lifecycle: cannot lift the NoExecute taints; trying again next pass");
                }
            }
        }
    }

    /// Lifts both NoExecute taints and takes the node out of its zone's queue; returns
    /// whether there was anything to undo.
    async fn mark_reachable(&self, node: &Arc<Node>) -> Result<bool, kube::Error> {
        let lift = [(UNREACHABLE, NO_EXECUTE), (NOT_READY, NO_EXECUTE)];
        let now = Time(Timestamp::now());
        let lifted = self.write_taints(node, |n| taints::swapped(n, &[], &lift, &now)).await?;
        if lifted {
            tracing::info!(node = %node.name_any(), "node lifecycle: NoExecute taints lifted");
        }
        let zone = zones::zone_key(node.metadata.labels.as_ref());
        let dequeued = self.queues().get_mut(&zone).is_some_and(|q| q.remove(&node.name_any()));
        Ok(lifted || dequeued)
    }

    /// Writes the taints `edit` makes of the node's, guarded by the resourceVersion they
    /// were computed from; a lost race reads the node again and edits afresh. Returns
    /// whether anything was written.
    async fn write_taints(
        &self,
        node: &Arc<Node>,
        edit: impl Fn(&Node) -> Option<Vec<Taint>>,
    ) -> Result<bool, kube::Error> {
        let api = self.nodes_api();
        let name = node.name_any();
        let mut current = Arc::clone(node);
        let mut attempt = 1;
        loop {
            let Some(taints) = edit(&current) else { return Ok(false) };
            let taints = if taints.is_empty() { Value::Null } else { json!(taints) };
            let patch = json!({
                "metadata": {"resourceVersion": current.resource_version()},
                "spec": {"taints": taints},
            });
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => return Ok(true),
                Err(kube::Error::Api(status))
                    if status.is_conflict() && attempt < WRITE_ATTEMPTS =>
                {
                    attempt += 1;
                    current = Arc::new(api.get(&name).await?);
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Marks every pod on the node NotReady; fails if any pod could not be marked.
    async fn mark_pods_not_ready(&self, node: &str) -> Result<(), LifecycleError> {
        let pods = self.pods.state();
        let mut failure = None;
        for pod in pods.iter().filter(|p| node_of(p) == Some(node)) {
            if let Err(error) = self.mark_pod_not_ready(pod).await {
                failure = Some(error);
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Sets a pod's Ready condition False (pods without one are left alone), with a
    /// `NodeNotReady` Event on the pod.
    async fn mark_pod_not_ready(&self, pod: &Pod) -> Result<(), LifecycleError> {
        let conditions =
            pod.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
        let Some(ready) = conditions.iter().find(|c| c.type_ == "Ready") else { return Ok(()) };
        if ready.status == "False" {
            return Ok(());
        }
        let name = pod.name_any();
        let namespace = pod.namespace().unwrap_or_default();
        let patch = json!({"status": {"conditions": [{
            "type": "Ready",
            "status": "False",
            "lastTransitionTime": Time(Timestamp::now()),
        }]}});
        let api: Api<Pod> = Api::namespaced(self.context.client.clone(), &namespace);
        match api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.is_not_found() => return Ok(()),
            Err(source) => {
                return Err(LifecycleError::PodReadiness {
                    pod: format!("{namespace}/{name}"),
                    source,
                });
            }
        }
        tracing::debug!(pod = %format!("{namespace}/{name}"), "node lifecycle: pod marked NotReady");
        self.recorder
            .publish(
                &reference_to(pod),
                EventType::Warning,
                "NodeNotReady",
                "MarkingNotReady",
                "Node is not ready".into(),
            )
            .await;
        Ok(())
    }

    /// An Event about a node, worded as upstream's `RecordNodeEvent`.
    async fn node_event(&self, node: &Node, reason: &str, action: &str, what: &str) {
        let note = format!("Node {} event: {what}", node.name_any());
        self.recorder.publish(&reference_to(node), EventType::Normal, reason, action, note).await;
    }

    /// Works the taint queues every taint period.
    async fn taint_loop(self: Arc<Self>) {
        capstan_kube::store::ready(&self.nodes).await;
        let mut ticks = tokio::time::interval(TAINT_PERIOD);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.taint_pass().await;
        }
    }

    /// Taints what each zone's queue lets through (upstream's `doNoExecuteTaintingPass`).
    async fn taint_pass(&self) {
        let zones: Vec<String> = self.queues().keys().cloned().collect();
        for zone in zones {
            loop {
                let next = self.queues().get_mut(&zone).and_then(|q| q.next(Instant::now()));
                let Some(name) = next else { break };
                let result = self.taint_node(&name).await;
                let mut queues = self.queues();
                let Some(queue) = queues.get_mut(&zone) else { break };
                match result {
                    Ok(()) => queue.done(&name),
                    Err(after) => queue.retry(&name, Instant::now(), after),
                }
            }
        }
    }

    /// Gives a node taken from a queue the NoExecute taint its Ready condition calls for
    /// (removing the opposite one); `Err` holds how long to wait before trying again.
    async fn taint_node(&self, name: &str) -> Result<(), Duration> {
        let Some(node) = self.nodes.get(&ObjectRef::new(name)) else {
            tracing::info!(node = name, "node lifecycle: queued node no longer exists");
            return Ok(());
        };
        let Some(ready) = ReadySignal::of(node.status.as_ref()) else {
            return Err(Duration::from_millis(50));
        };
        let Some((add, opposite)) = taints::no_execute_for(ready.status) else {
            tracing::debug!(node = name, "node lifecycle: queued node is ready again");
            return Ok(());
        };
        let now = Time(Timestamp::now());
        let edit =
            |n: &Node| taints::swapped(n, &[(add, NO_EXECUTE)], &[(opposite, NO_EXECUTE)], &now);
        match self.write_taints(&node, edit).await {
            Ok(wrote) => {
                if wrote {
                    tracing::info!(
                        node = name,
                        taint = add,
                        "node lifecycle: node tainted NoExecute"
                    );
                }
                Ok(())
            }
            Err(error) => {
                tracing::warn!(node = name, %error, "node lifecycle: cannot taint the node");
                Err(Duration::ZERO)
            }
        }
    }
}

/// Keeps the node's NoSchedule taints in line with its conditions.
async fn reconcile_condition_taints(
    node: Arc<Node>,
    lifecycle: Arc<Lifecycle>,
) -> Result<Action, LifecycleError> {
    let now = Time(Timestamp::now());
    let wrote = lifecycle
        .write_taints(&node, |n| taints::with_condition_taints(n, &now))
        .await
        .map_err(|source| LifecycleError::Taints { node: node.name_any(), source })?;
    if wrote {
        tracing::debug!(node = %node.name_any(), "node lifecycle: NoSchedule taints follow the conditions");
    }
    Ok(Action::await_change())
}

fn node_error_policy(_node: Arc<Node>, error: &LifecycleError, _: Arc<Lifecycle>) -> Action {
    tracing::warn!(%error, "node lifecycle: retrying");
    Action::requeue(Duration::from_secs(1))
}

/// Upstream's `processPod`: a pod newly bound to (or first seen on) a node that is not
/// Ready is marked NotReady. Only then: a kubelet that is alive owns its pods' readiness,
/// and this controller does not fight it on every update.
async fn reconcile_pod(pod: Arc<Pod>, lifecycle: Arc<Lifecycle>) -> Result<Action, LifecycleError> {
    let Some(node) = node_of(&pod) else { return Ok(Action::await_change()) };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if lifecycle.pods_seen().get(&uid).is_some_and(|seen| seen == node) {
        return Ok(Action::await_change());
    }
    if lifecycle.nodes.get(&ObjectRef::new(node)).is_none() {
        return Ok(Action::requeue(MONITOR_PERIOD));
    }
    let ready = {
        let monitor = lifecycle.monitor();
        match monitor.health.get(node) {
            // The first health pass has not seen the node yet.
            None => return Ok(Action::requeue(MONITOR_PERIOD)),
            Some(health) => health.ready.as_ref().map(|r| r.status),
        }
    };
    if ready.is_some_and(|status| status != Status::True) {
        lifecycle.mark_pod_not_ready(&pod).await?;
    }
    lifecycle.pods_seen().insert(uid, node.to_owned());
    Ok(Action::await_change())
}

fn pod_error_policy(_pod: Arc<Pod>, error: &LifecycleError, _: Arc<Lifecycle>) -> Action {
    tracing::debug!(%error, "node lifecycle: retrying");
    Action::requeue(Duration::from_secs(1))
}

/// The node a pod is bound to.
fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref().filter(|n| !n.is_empty())
}
