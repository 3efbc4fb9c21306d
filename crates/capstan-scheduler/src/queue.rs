//! The scheduling queue: which pending pod to schedule next, and when a rejected pod is retried.
//!
//! As in kube-scheduler, a pending pod is in exactly one place:
//! - the **active queue**, ordered by priority and then by the time it entered the queue; `pop`
//!   takes its head;
//! - the **back-off queue**, where a pod that failed waits out its back-off (1s, 2s, 4s, ... up
//!   to 10s) before `flush` moves it to the active queue;
//! - the **unschedulable set**, where a pod rejected by plugins waits for a cluster event that
//!   one of those plugins registered for (or for `max_in_unschedulable` to pass);
//! - the **gated set**, for pods whose `spec.schedulingGates` is not empty: they wait for an
//!   update that removes the gates;
//! - **in flight**: popped, and being scheduled or bound, until `done`, `add_unschedulable` or
//!   `requeue_after_error`.
//!
//! The queue is pure and synchronous: every method that depends on the clock takes `now`, and
//! nothing happens between calls. The runtime that owns it calls `flush` (which `pop` also does)
//! whenever [`SchedulingQueue::next_wakeup`] has passed.

use crate::framework::{ClusterEvent, PodInfo};
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

/// The queue's timings (upstream's `podInitialBackoffSeconds`, `podMaxBackoffSeconds` and
/// `podMaxInUnschedulablePodsDuration`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// The back-off after a pod's first failed attempt; it doubles with every further attempt.
    pub initial_backoff: Duration,
    /// The longest back-off.
    pub max_backoff: Duration,
    /// How long a pod waits in the unschedulable set for an event before it is retried anyway.
    pub max_in_unschedulable: Duration,
}

impl Default for QueueConfig {
    fn default() -> QueueConfig {
        QueueConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_in_unschedulable: Duration::from_secs(5 * 60),
        }
    }
}

impl QueueConfig {
    /// The back-off of a pod after `attempts` scheduling attempts: none before the first
    /// attempt, then `initial_backoff` doubled for every attempt after the first, never more
    /// than `max_backoff`.
    pub fn backoff(&self, attempts: u32) -> Duration {
        if attempts == 0 {
            return Duration::ZERO;
        }
        let mut backoff = self.initial_backoff;
        for _ in 1..attempts {
            // Stopping once the cap is reached (or when doubling cannot change anything) keeps
            // this loop short for pods that failed thousands of times.
            if backoff >= self.max_backoff || backoff.is_zero() {
                break;
            }
            backoff = backoff.saturating_mul(2);
        }
        backoff.min(self.max_backoff)
    }
}

/// A pending pod with what the queue knows about its scheduling history (upstream's
/// `QueuedPodInfo`).
#[derive(Debug, Clone)]
pub struct QueuedPod {
    pub info: PodInfo,
    /// How many times the pod was popped for scheduling.
    pub attempts: u32,
    /// When the pod was first popped.
    pub initial_attempt: Option<Instant>,
    /// When the pod entered the queue, or last came back to it after a failed attempt. The
    /// back-off, the time in the unschedulable set and the order among pods of equal priority
    /// are measured from it; moving between sub-queues does not change it.
    pub timestamp: Instant,
    /// The plugins that rejected the pod in its last attempt. `pop` clears them; the scheduler
    /// fills them in before `add_unschedulable`. Only events these plugins registered for
    /// bring the pod back from the unschedulable set.
    pub unschedulable_plugins: BTreeSet<&'static str>,
}

impl QueuedPod {
    /// A pod that has not been attempted yet and entered the queue at `now`.
    pub fn new(info: PodInfo, now: Instant) -> QueuedPod {
        QueuedPod {
            info,
            attempts: 0,
            initial_attempt: None,
            timestamp: now,
            unschedulable_plugins: BTreeSet::new(),
        }
    }

    pub fn uid(&self) -> &str {
        self.info.uid()
    }
}

/// How many pods each part of the queue holds (in-flight pods are in none of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub active: usize,
    pub backoff: usize,
    pub unschedulable: usize,
    pub gated: usize,
}

/// Where a pod is, as [`SchedulingQueue::location`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Active,
    Backoff,
    Unschedulable,
    Gated,
    /// Popped and not handed back yet.
    InFlight,
}

/// The place of a pod that is in the queue (not in flight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    Backoff,
    Unschedulable,
    Gated,
}

/// A queued pod and where it is. `seq` tells apart pods that came back to the queue at the same
/// instant: the earlier arrival goes first, so the order never depends on hash iteration.
#[derive(Debug)]
struct Slot {
    pod: QueuedPod,
    seq: u64,
    place: Place,
}

/// What the queue remembers of a popped pod until it comes back or is done.
#[derive(Debug)]
struct InFlight {
    /// The newest version of the pod: updates that arrive during the cycle land here, so the
    /// pod comes back with its current spec rather than the one it was popped with.
    info: PodInfo,
    /// Whether an update during the cycle changed something that could change the verdict.
    changed: bool,
    /// Whether the pod was deleted during the cycle: it must not come back.
    deleted: bool,
}

/// A preemption's (or `status.nominatedNodeName`'s) claim of a node for a pending pod.
#[derive(Debug)]
struct Nomination {
    node: String,
    info: PodInfo,
}

/// Upstream's `PriorityQueue` with its nominator. Moving one pod costs O(log n) in the number
/// of queued pods; `on_event` and `flush` cost that for every pod they move, and nothing for
/// the pods they leave alone.
#[derive(Debug)]
pub struct SchedulingQueue {
    config: QueueConfig,
    /// Plugin name → the events that could make a pod it rejected schedulable.
    interests: HashMap<&'static str, Vec<ClusterEvent>>,
    /// Every queued (not in-flight) pod by uid; the sets below index into it.
    pods: HashMap<String, Slot>,
    /// Highest priority first, then earliest timestamp, then earliest arrival.
    active: BTreeSet<(Reverse<i32>, Instant, u64, String)>,
    /// By back-off expiry.
    backoff: BTreeSet<(Instant, u64, String)>,
    /// By timestamp, for `max_in_unschedulable`.
    unschedulable: BTreeSet<(Instant, u64, String)>,
    /// Rejecting plugin → the unschedulable pods it rejected, so an event looks only at the
    /// pods it can move.
    unschedulable_by_plugin: HashMap<&'static str, HashSet<String>>,
    gated: usize,
    in_flight: HashMap<String, InFlight>,
    /// The scheduling cycle at which each event last happened (upstream's move requests).
    last_move: HashMap<ClusterEvent, u64>,
    cycle: u64,
    next_seq: u64,
    /// Pod uid → its nomination.
    nominations: HashMap<String, Nomination>,
}

impl SchedulingQueue {
    /// `interests` maps each plugin to the events it registered (`Plugin::events()`). A plugin
    /// missing from the map is taken to be interested in every event, so that a pod rejected
    /// by it is never stranded until `max_in_unschedulable`.
    pub fn new(
        config: QueueConfig,
        interests: HashMap<&'static str, Vec<ClusterEvent>>,
    ) -> SchedulingQueue {
        SchedulingQueue {
            config,
            interests,
            pods: HashMap::new(),
            active: BTreeSet::new(),
            backoff: BTreeSet::new(),
            unschedulable: BTreeSet::new(),
            unschedulable_by_plugin: HashMap::new(),
            gated: 0,
            in_flight: HashMap::new(),
            last_move: HashMap::new(),
            cycle: 0,
            next_seq: 0,
            nominations: HashMap::new(),
        }
    }

    /// A new pending pod: it goes to the active queue, or aside while it has scheduling gates.
    /// A `status.nominatedNodeName` becomes its nomination. Adding a pod the queue already
    /// holds (or has in flight) updates it instead.
    pub fn add(&mut self, pod: PodInfo, now: Instant) {
        let uid = pod.uid().to_owned();
        if self.pods.contains_key(&uid) || self.in_flight.contains_key(&uid) {
            self.update(pod, now);
            return;
        }
        self.insert_new(uid, pod, now);
    }

    /// A pending pod changed. A queued pod keeps its place (a gated pod whose gates are gone
    /// moves to the active queue; an unschedulable pod whose spec or metadata changed beyond
    /// status, resourceVersion, generation, managedFields and finalizers is retried, in the
    /// back-off queue if its back-off is not over). An in-flight pod's update is kept for when
    /// it comes back. An unknown pod is added.
    pub fn update(&mut self, pod: PodInfo, now: Instant) {
        let uid = pod.uid().to_owned();
        if let Some(flight) = self.in_flight.get_mut(&uid) {
            if flight.deleted {
                return;
            }
            flight.changed |= may_affect_scheduling(&flight.info.pod, &pod.pod);
            let old = std::mem::replace(&mut flight.info, pod);
            let new = flight.info.clone();
            self.refresh_nomination(&old, &new);
            return;
        }
        let Some(mut slot) = self.detach(&uid) else {
            self.insert_new(uid, pod, now);
            return;
        };
        self.refresh_nomination(&slot.pod.info, &pod);
        let changed = may_affect_scheduling(&slot.pod.info.pod, &pod.pod);
        slot.pod.info = pod;
        match slot.place {
            Place::Gated if !is_gated(&slot.pod.info) => slot.place = Place::Active,
            Place::Unschedulable if changed => slot.place = self.retry_place(&slot.pod, now),
            _ => {}
        }
        self.attach(uid, slot);
    }

    /// The pod is gone, or was bound outside this scheduler: it leaves the queue and its
    /// nomination. An in-flight pod is remembered as deleted, so that it is dropped rather than
    /// queued again when the scheduler hands it back.
    pub fn delete(&mut self, uid: &str) {
        self.nominations.remove(uid);
        if let Some(flight) = self.in_flight.get_mut(uid) {
            flight.deleted = true;
        }
        self.detach(uid);
    }

    /// Moves the pods whose back-off is over to the active queue (see [`Self::flush`]), then
    /// takes the head of the active queue: a new scheduling cycle starts. The pod counts one
    /// more attempt, loses its unschedulable plugins of the previous attempt, and stays in
    /// flight until `done`, `add_unschedulable` or `requeue_after_error`. `None` (and no new
    /// cycle) when the active queue is empty.
    pub fn pop(&mut self, now: Instant) -> Option<QueuedPod> {
        self.flush(now);
        let (_, _, _, uid) = self.active.pop_first()?;
        let mut pod = self.detach(&uid)?.pod;
        self.cycle += 1;
        pod.attempts = pod.attempts.saturating_add(1);
        pod.initial_attempt.get_or_insert(now);
        pod.unschedulable_plugins.clear();
        self.in_flight
            .insert(uid, InFlight { info: pod.info.clone(), changed: false, deleted: false });
        Some(pod)
    }

    /// A popped pod was rejected in the cycle `pod_cycle` (the value of `scheduling_cycle()`
    /// right after its pop). It waits in the unschedulable set for an event one of its
    /// `unschedulable_plugins` registered for, unless it must be retried after its back-off
    /// because
    /// - no plugin rejected it (something unusual failed), or
    /// - such an event already happened at or after `pod_cycle`, i.e. while it was being
    ///   scheduled, so the verdict may be stale, or
    /// - the pod itself changed while it was being scheduled.
    ///
    /// A pod deleted while in flight is dropped, and a pod already queued (it was added again
    /// meanwhile) is left as it is, as upstream refuses to queue a pod twice.
    pub fn add_unschedulable(&mut self, pod: QueuedPod, pod_cycle: u64, now: Instant) {
        let Some((mut pod, changed)) = self.take_back(pod) else { return };
        let retry = pod.unschedulable_plugins.is_empty()
            || changed
            || self.moved_since(&pod.unschedulable_plugins, pod_cycle);
        let place = if retry { Place::Backoff } else { Place::Unschedulable };
        pod.timestamp = now;
        let seq = self.next_seq();
        self.attach(pod.info.uid().to_owned(), Slot { pod, seq, place });
    }

    /// A popped pod failed for a reason that is not a plugin's verdict (an API error while
    /// binding, say): it is retried after its back-off. Deleted and already-queued pods are
    /// handled as in `add_unschedulable`.
    pub fn requeue_after_error(&mut self, pod: QueuedPod, now: Instant) {
        let Some((mut pod, _)) = self.take_back(pod) else { return };
        pod.timestamp = now;
        let seq = self.next_seq();
        self.attach(pod.info.uid().to_owned(), Slot { pod, seq, place: Place::Backoff });
    }

    /// The cycle of an in-flight pod is over (it was bound, or handed back): the queue forgets
    /// it. Unknown uids are ignored.
    pub fn done(&mut self, uid: &str) {
        self.in_flight.remove(uid);
    }

    /// Something changed in the cluster. Every unschedulable pod rejected by a plugin that
    /// registered for `event` is retried: into the back-off queue while its back-off lasts,
    /// else into the active queue. The event is also remembered as a move request at the
    /// current cycle, for the pods in flight (see `add_unschedulable`).
    pub fn on_event(&mut self, event: ClusterEvent, now: Instant) {
        self.last_move.insert(event, self.cycle);
        let mut moving: Vec<String> = self
            .unschedulable_by_plugin
            .iter()
            .filter(|(plugin, _)| self.is_interested(plugin, event))
            .flat_map(|(_, uids)| uids.iter().cloned())
            .collect();
        // A pod rejected by several interested plugins is listed once per plugin.
        moving.sort_unstable();
        moving.dedup();
        // Pods rejected by no plugin never wait in the unschedulable set (`add_unschedulable`
        // sends them to the back-off queue), so the index above sees every pod to move.
        for uid in moving {
            if let Some(mut slot) = self.detach(&uid) {
                slot.place = self.retry_place(&slot.pod, now);
                self.attach(uid, slot);
            }
        }
    }

    /// Moves the pods whose back-off is over to the active queue, and the pods that have waited
    /// `max_in_unschedulable` in the unschedulable set to the back-off or active queue.
    ///
    /// A pod leaves the unschedulable set once exactly `max_in_unschedulable` has passed
    /// (upstream waits for strictly more, checking every 30 seconds), so that a runtime woken
    /// at `next_wakeup` always finds something to move.
    pub fn flush(&mut self, now: Instant) {
        // The index entry is taken out before `detach` (which would also remove it), so the
        // loop ends even if the index ever disagreed with the map.
        while let Some((since, _, _)) = self.unschedulable.first() {
            if self.unschedulable_deadline(*since).is_none_or(|deadline| deadline > now) {
                break;
            }
            let Some((_, _, uid)) = self.unschedulable.pop_first() else { break };
            if let Some(mut slot) = self.detach(&uid) {
                slot.place = self.retry_place(&slot.pod, now);
                self.attach(uid, slot);
            }
        }
        while let Some((expiry, _, _)) = self.backoff.first() {
            if *expiry > now {
                break;
            }
            let Some((_, _, uid)) = self.backoff.pop_first() else { break };
            if let Some(mut slot) = self.detach(&uid) {
                slot.place = Place::Active;
                self.attach(uid, slot);
            }
        }
    }

    /// The earliest instant at which `flush` would move a pod (possibly already past), or
    /// `None` when only an event or a call can change anything.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let backoff = self.backoff.first().map(|(expiry, _, _)| *expiry);
        let unschedulable = self
            .unschedulable
            .first()
            .and_then(|(since, _, _)| self.unschedulable_deadline(*since));
        match (backoff, unschedulable) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How many cycles have started, i.e. how many pods were popped.
    pub fn scheduling_cycle(&self) -> u64 {
        self.cycle
    }

    pub fn counts(&self) -> QueueCounts {
        QueueCounts {
            active: self.active.len(),
            backoff: self.backoff.len(),
            unschedulable: self.unschedulable.len(),
            gated: self.gated,
        }
    }

    /// Where the pod with this uid is, if the queue knows it.
    pub fn location(&self, uid: &str) -> Option<Location> {
        if let Some(slot) = self.pods.get(uid) {
            return Some(match slot.place {
                Place::Active => Location::Active,
                Place::Backoff => Location::Backoff,
                Place::Unschedulable => Location::Unschedulable,
                Place::Gated => Location::Gated,
            });
        }
        self.in_flight.get(uid).filter(|flight| !flight.deleted).map(|_| Location::InFlight)
    }

    /// Records that preemption made room for `pod` on `node` (filters then count the pod as
    /// if it ran there, for pods of lower priority), or, with `None`, that it no longer claims
    /// a node. Assigned pods are never nominated. The scheduler clears the nomination when it
    /// assumes the pod on a node.
    pub fn nominate(&mut self, pod: &PodInfo, node: Option<String>) {
        match node.filter(|node| !node.is_empty()) {
            Some(node) if pod.node_name().is_empty() => {
                self.nominations
                    .insert(pod.uid().to_owned(), Nomination { node, info: pod.clone() });
            }
            _ => {
                self.nominations.remove(pod.uid());
            }
        }
    }

    /// Node name → the pods nominated to it, in `namespace/name` order.
    pub fn nominated_pods(&self) -> HashMap<String, Vec<PodInfo>> {
        let mut by_node: HashMap<String, Vec<PodInfo>> = HashMap::new();
        for nomination in self.nominations.values() {
            by_node.entry(nomination.node.clone()).or_default().push(nomination.info.clone());
        }
        for pods in by_node.values_mut() {
            pods.sort_by_key(PodInfo::key);
        }
        by_node
    }

    /// Queues a pod the queue does not know yet.
    fn insert_new(&mut self, uid: String, pod: PodInfo, now: Instant) {
        if let Some(node) = status_nominated_node(&pod) {
            self.nominate(&pod, Some(node.to_owned()));
        }
        let place = if is_gated(&pod) { Place::Gated } else { Place::Active };
        let seq = self.next_seq();
        self.attach(uid, Slot { pod: QueuedPod::new(pod, now), seq, place });
    }

    /// Ends the flight of a pod handed back by the scheduler: `None` when it must not be
    /// queued (deleted during its cycle, or already queued again), else the pod with its
    /// newest version and whether that version changed during the cycle.
    fn take_back(&mut self, mut pod: QueuedPod) -> Option<(QueuedPod, bool)> {
        let uid = pod.uid().to_owned();
        let flight = self.in_flight.remove(&uid);
        if flight.as_ref().is_some_and(|flight| flight.deleted) || self.pods.contains_key(&uid) {
            return None;
        }
        let changed = match flight {
            Some(flight) => {
                pod.info = flight.info;
                flight.changed
            }
            None => false,
        };
        Some((pod, changed))
    }

    /// Where a pod leaving the unschedulable set goes: the back-off queue while its back-off
    /// lasts, else the active queue.
    fn retry_place(&self, pod: &QueuedPod, now: Instant) -> Place {
        if self.backoff_expiry(pod) > now { Place::Backoff } else { Place::Active }
    }

    fn backoff_expiry(&self, pod: &QueuedPod) -> Instant {
        // Only an absurd configuration makes the deadline overflow `Instant`; ending such a
        // back-off at once is as good as never.
        pod.timestamp.checked_add(self.config.backoff(pod.attempts)).unwrap_or(pod.timestamp)
    }

    /// When a pod that entered the unschedulable set at `since` is retried anyway (`None`:
    /// never, when the configured wait overflows `Instant`).
    fn unschedulable_deadline(&self, since: Instant) -> Option<Instant> {
        since.checked_add(self.config.max_in_unschedulable)
    }

    fn is_interested(&self, plugin: &str, event: ClusterEvent) -> bool {
        self.interests.get(plugin).is_none_or(|events| events.contains(&event))
    }

    /// Whether an event that one of `plugins` registered for happened at or after `cycle`.
    fn moved_since(&self, plugins: &BTreeSet<&'static str>, cycle: u64) -> bool {
        self.last_move.iter().any(|(event, at)| {
            *at >= cycle && plugins.iter().any(|plugin| self.is_interested(plugin, *event))
        })
    }

    /// Keeps the nomination of an updated pod current, as upstream's nominator does: a
    /// `status.nominatedNodeName` that appears, changes or disappears wins; while neither
    /// version has one, a nomination made in memory (by preemption) stays, with the new
    /// version of the pod.
    fn refresh_nomination(&mut self, old: &PodInfo, new: &PodInfo) {
        let old_node = status_nominated_node(old);
        let new_node = status_nominated_node(new);
        if old_node.is_none() && new_node.is_none() {
            if let Some(nomination) = self.nominations.get(new.uid()) {
                let node = nomination.node.clone();
                self.nominate(new, Some(node));
            }
            return;
        }
        self.nominate(new, new_node.map(str::to_owned));
    }

    fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Puts a slot into the map and the index of its place.
    fn attach(&mut self, uid: String, slot: Slot) {
        match slot.place {
            Place::Active => {
                let key =
                    (Reverse(slot.pod.info.priority()), slot.pod.timestamp, slot.seq, uid.clone());
                self.active.insert(key);
            }
            Place::Backoff => {
                self.backoff.insert((self.backoff_expiry(&slot.pod), slot.seq, uid.clone()));
            }
            Place::Unschedulable => {
                self.unschedulable.insert((slot.pod.timestamp, slot.seq, uid.clone()));
                for plugin in &slot.pod.unschedulable_plugins {
                    self.unschedulable_by_plugin.entry(plugin).or_default().insert(uid.clone());
                }
            }
            Place::Gated => self.gated += 1,
        }
        self.pods.insert(uid, slot);
    }

    /// Takes a slot out of the map and out of the index of its place. The index keys are
    /// rebuilt from the slot, which is why a slot's pod must not change while it is attached.
    fn detach(&mut self, uid: &str) -> Option<Slot> {
        let (uid, slot) = self.pods.remove_entry(uid)?;
        match slot.place {
            Place::Active => {
                let key = (Reverse(slot.pod.info.priority()), slot.pod.timestamp, slot.seq, uid);
                self.active.remove(&key);
            }
            Place::Backoff => {
                self.backoff.remove(&(self.backoff_expiry(&slot.pod), slot.seq, uid));
            }
            Place::Unschedulable => {
                for plugin in &slot.pod.unschedulable_plugins {
                    if let Some(uids) = self.unschedulable_by_plugin.get_mut(plugin) {
                        uids.remove(&uid);
                        if uids.is_empty() {
                            self.unschedulable_by_plugin.remove(plugin);
                        }
                    }
                }
                self.unschedulable.remove(&(slot.pod.timestamp, slot.seq, uid));
            }
            Place::Gated => self.gated -= 1,
        }
        Some(slot)
    }
}

/// Whether the pod has scheduling gates (upstream's SchedulingGates pre-enqueue plugin).
fn is_gated(pod: &PodInfo) -> bool {
    pod.pod
        .spec
        .as_ref()
        .and_then(|spec| spec.scheduling_gates.as_ref())
        .is_some_and(|gates| !gates.is_empty())
}

fn status_nominated_node(pod: &PodInfo) -> Option<&str> {
    pod.pod
        .status
        .as_ref()
        .and_then(|status| status.nominated_node_name.as_deref())
        .filter(|node| !node.is_empty())
}

/// Whether an update of a pending pod could change where (or whether) it schedules: anything
/// but its status (except the resource claim statuses, which the scheduler reads),
/// resourceVersion, generation, managedFields and finalizers (upstream's `isPodUpdated`).
fn may_affect_scheduling(old: &Pod, new: &Pod) -> bool {
    fn strip(pod: &Pod) -> Pod {
        let mut pod = pod.clone();
        pod.metadata.resource_version = None;
        pod.metadata.generation = None;
        pod.metadata.managed_fields = None;
        pod.metadata.finalizers = None;
        let claims = pod.status.take().and_then(|status| status.resource_claim_statuses);
        pod.status = claims.map(|claims| PodStatus {
            resource_claim_statuses: Some(claims),
            ..Default::default()
        });
        pod
    }
    strip(old) != strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testing::pod_info;
    use ClusterEvent::*;
    use serde_json::{Value, json};

    const FIT: &str = "NodeResourcesFit";
    const AFFINITY: &str = "NodeAffinity";
    const POD_AFFINITY: &str = "InterPodAffinity";
    const VOLUMES: &str = "VolumeBinding";

    fn interests() -> HashMap<&'static str, Vec<ClusterEvent>> {
        HashMap::from([
            (FIT, vec![NodeAdd, NodeUpdate, AssignedPodDelete]),
            (AFFINITY, vec![NodeAdd, NodeUpdate]),
            (
                POD_AFFINITY,
                vec![
                    NodeAdd,
                    NodeUpdate,
                    AssignedPodAdd,
                    AssignedPodUpdate,
                    AssignedPodDelete,
                    NamespaceChange,
                ],
            ),
            (VOLUMES, vec![NodeAdd, NodeUpdate, PvcChange, PvChange, StorageClassChange]),
        ])
    }

    fn queue() -> SchedulingQueue {
        SchedulingQueue::new(QueueConfig::default(), interests())
    }

    fn pod(name: &str, priority: i32) -> PodInfo {
        pod_info(json!({"metadata": {"name": name}, "spec": {"priority": priority}}))
    }

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    /// Pops the head of the queue at `now` and hands it back rejected by `plugins`.
    fn reject_next(queue: &mut SchedulingQueue, plugins: &[&'static str], now: Instant) {
        let mut popped = queue.pop(now).expect("a pod to pop");
        let cycle = queue.scheduling_cycle();
        popped.unschedulable_plugins = plugins.iter().copied().collect();
        queue.add_unschedulable(popped, cycle, now);
    }

    /// The names of the pods `pop` yields at `now`, until the active queue is empty.
    fn drain(queue: &mut SchedulingQueue, now: Instant) -> Vec<String> {
        std::iter::from_fn(|| queue.pop(now)).map(|pod| pod.info.name().to_owned()).collect()
    }

    #[test]
    fn events_move_the_pods_whose_rejectors_registered_for_them() {
        // A pod rejected at t0 by `plugins` (back-off 1s), then `event` at t0 + `after`.
        fn check(
            plugins: &[&'static str],
            event: ClusterEvent,
            after: Duration,
            expected: Location,
        ) {
            let t0 = Instant::now();
            let mut queue = queue();
            queue.add(pod("p", 0), t0);
            reject_next(&mut queue, plugins, t0);
            assert_eq!(queue.location("p"), Some(Location::Unschedulable), "{plugins:?}");
            queue.on_event(event, t0 + after);
            assert_eq!(
                queue.location("p"),
                Some(expected),
                "{plugins:?} on {event:?} at {after:?}"
            );
        }
        check(&[FIT], NodeAdd, ms(0), Location::Backoff);
        check(&[FIT], NodeAdd, ms(999), Location::Backoff);
        check(&[FIT], NodeAdd, secs(1), Location::Active);
        check(&[FIT], AssignedPodDelete, ms(500), Location::Backoff);
        check(&[FIT], AssignedPodAdd, ms(500), Location::Unschedulable);
        check(&[FIT], PvcChange, secs(2), Location::Unschedulable);
        check(&[AFFINITY], AssignedPodDelete, ms(500), Location::Unschedulable);
        check(&[AFFINITY, POD_AFFINITY], AssignedPodAdd, ms(500), Location::Backoff);
        check(&[AFFINITY, POD_AFFINITY], NamespaceChange, secs(3), Location::Active);
        check(&[VOLUMES], NamespaceChange, ms(500), Location::Unschedulable);
        check(&[VOLUMES], StorageClassChange, ms(500), Location::Backoff);
        // A rejector nobody registered interests for is retried on anything.
        check(&["SomeOutOfTreePlugin"], UnscheduledPodDelete, ms(500), Location::Backoff);
    }

    #[test]
    fn an_event_moves_every_interested_pod_once() {
        let t0 = Instant::now();
        let mut queue = queue();
        for name in ["fit", "both", "affinity-only", "pod-affinity"] {
            queue.add(pod(name, 0), t0);
        }
        // The pods pop in arrival order: fit, both, affinity-only, pod-affinity.
        reject_next(&mut queue, &[FIT], t0);
        reject_next(&mut queue, &[FIT, POD_AFFINITY], t0);
        reject_next(&mut queue, &[AFFINITY], t0);
        reject_next(&mut queue, &[POD_AFFINITY], t0);
        assert_eq!(queue.counts().unschedulable, 4);

        queue.on_event(AssignedPodDelete, t0 + secs(2));
        let counts = queue.counts();
        assert_eq!((counts.active, counts.unschedulable), (3, 1));
        assert_eq!(queue.location("affinity-only"), Some(Location::Unschedulable));
        assert_eq!(drain(&mut queue, t0 + secs(2)), ["fit", "both", "pod-affinity"]);
    }

    #[test]
    fn a_rejected_pod_waits_unless_something_it_cares_about_happened_during_its_cycle() {
        // `before`: events before the pod is popped; `during`: events between its pop and its
        // return, rejected by `plugins`.
        fn check(
            before: &[ClusterEvent],
            during: &[ClusterEvent],
            plugins: &[&'static str],
            expected: Location,
        ) {
            let t0 = Instant::now();
            let mut queue = queue();
            queue.add(pod("p", 0), t0);
            before.iter().for_each(|event| queue.on_event(*event, t0));
            let mut popped = queue.pop(t0).expect("the pod");
            let cycle = queue.scheduling_cycle();
            during.iter().for_each(|event| queue.on_event(*event, t0));
            popped.unschedulable_plugins = plugins.iter().copied().collect();
            queue.add_unschedulable(popped, cycle, t0);
            assert_eq!(queue.location("p"), Some(expected), "{before:?} {during:?} {plugins:?}");
        }
        check(&[], &[], &[FIT], Location::Unschedulable);
        // A pod no plugin rejected failed for some other reason: it is retried after back-off.
        check(&[], &[], &[], Location::Backoff);
        check(&[NodeAdd], &[], &[FIT], Location::Unschedulable);
        check(&[], &[NodeAdd], &[FIT], Location::Backoff);
        check(&[], &[AssignedPodAdd], &[FIT], Location::Unschedulable);
        check(&[], &[AssignedPodAdd, NodeUpdate], &[FIT], Location::Backoff);
        check(&[], &[AssignedPodAdd], &[FIT, POD_AFFINITY], Location::Backoff);
    }

    #[test]
    fn a_move_request_concerns_only_the_cycles_it_happened_in() {
        let t0 = Instant::now();
        let mut queue = queue();
        queue.add(pod("first", 1), t0);
        queue.add(pod("second", 0), t0);
        let first = queue.pop(t0).expect("first");
        let first_cycle = queue.scheduling_cycle();
        queue.on_event(NodeAdd, t0);
        let second = queue.pop(t0).expect("second");
        let second_cycle = queue.scheduling_cycle();

        for (mut popped, cycle) in [(first, first_cycle), (second, second_cycle)] {
            popped.unschedulable_plugins = BTreeSet::from([FIT]);
            queue.add_unschedulable(popped, cycle, t0);
        }
        assert_eq!(queue.location("first"), Some(Location::Backoff));
        assert_eq!(queue.location("second"), Some(Location::Unschedulable));
    }

    #[test]
    fn the_active_queue_pops_by_priority_then_by_timestamp() {
        // (name, priority, added at t0 + ms) in the order they are added.
        fn check(pods: &[(&str, i32, u64)], expected: &[&str]) {
            let t0 = Instant::now();
            let mut queue = queue();
            for (name, priority, at) in pods {
                queue.add(pod(name, *priority), t0 + ms(*at));
            }
            assert_eq!(drain(&mut queue, t0 + secs(1)), expected, "{pods:?}");
        }
        check(&[("low", 0, 0), ("high", 100, 10)], &["high", "low"]);
        check(&[("late", 5, 20), ("early", 5, 10)], &["early", "late"]);
        check(&[("a", 5, 0), ("b", 5, 0), ("c", 5, 0)], &["a", "b", "c"]);
        check(
            &[("x", 0, 0), ("y", 10, 30), ("z", -5, 0), ("w", 10, 20), ("v", 0, 10)],
            &["w", "y", "x", "v", "z"],
        );
    }

    #[test]
    fn a_pod_that_failed_goes_behind_equal_priority_pods_that_waited() {
        let t0 = Instant::now();
        let mut queue = queue();
        queue.add(pod("retried", 0), t0);
        queue.add(pod("waiting", 0), t0 + ms(10));
        let popped = queue.pop(t0 + ms(20)).expect("retried");
        queue.requeue_after_error(popped, t0 + ms(20));
        assert_eq!(drain(&mut queue, t0 + secs(5)), ["waiting", "retried"]);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        fn check(config: &QueueConfig, attempts: u32, expected: Duration) {
            assert_eq!(config.backoff(attempts), expected, "{attempts} attempts");
        }
        let default = QueueConfig::default();
        check(&default, 0, Duration::ZERO);
        check(&default, 1, secs(1));
        check(&default, 2, secs(2));
        check(&default, 3, secs(4));
        check(&default, 4, secs(8));
        check(&default, 5, secs(10));
        check(&default, u32::MAX, secs(10));
        let fast = QueueConfig { initial_backoff: ms(100), max_backoff: ms(250), ..default };
        check(&fast, 2, ms(200));
        check(&fast, 3, ms(250));
    }

    #[test]
    fn flush_ends_the_backoff_of_each_attempt_on_time() {
        let t0 = Instant::now();
        let mut queue = queue();
        queue.add(pod("p", 0), t0);
        let mut now = t0;
        for (attempt, backoff) in [(1, secs(1)), (2, secs(2)), (3, secs(4)), (4, secs(8))] {
            let popped = queue.pop(now).expect("the pod is due");
            assert_eq!(popped.attempts, attempt);
            queue.requeue_after_error(popped, now);
            assert_eq!(queue.next_wakeup(), Some(now + backoff), "attempt {attempt}");
            queue.flush(now + backoff - ms(1));
            assert_eq!(queue.location("p"), Some(Location::Backoff), "attempt {attempt}");
            assert!(queue.pop(now + backoff - ms(1)).is_none(), "attempt {attempt}");
            now += backoff;
            queue.flush(now);
            assert_eq!(queue.location("p"), Some(Location::Active), "attempt {attempt}");
            assert_eq!(queue.next_wakeup(), None);
        }
    }

    #[test]
    fn pods_leave_the_unschedulable_set_after_max_in_unschedulable() {
        // A pod rejected at t0, flushed at t0 + `after`.
        fn check(config: QueueConfig, after: Duration, expected: Location) {
            let t0 = Instant::now();
            let mut queue = SchedulingQueue::new(config.clone(), interests());
            queue.add(pod("p", 0), t0);
            reject_next(&mut queue, &[FIT], t0);
            assert_eq!(queue.next_wakeup(), Some(t0 + config.max_in_unschedulable));
            queue.flush(t0 + after);
            assert_eq!(queue.location("p"), Some(expected), "{config:?} after {after:?}");
        }
        let default = QueueConfig::default();
        check(default.clone(), secs(299), Location::Unschedulable);
        check(default.clone(), secs(300) - ms(1), Location::Unschedulable);
        check(default.clone(), secs(300), Location::Active);
        // With a back-off longer than the wait, the pod still owes the rest of its back-off.
        let slow = QueueConfig {
            initial_backoff: secs(30),
            max_backoff: secs(60),
            max_in_unschedulable: secs(10),
        };
        check(slow.clone(), secs(10), Location::Backoff);
        check(slow, secs(30), Location::Active);
    }

    #[test]
    fn next_wakeup_is_the_earliest_deadline() {
        let t0 = Instant::now();
        let mut queue = queue();
        assert_eq!(queue.next_wakeup(), None);
        queue.add(pod("unschedulable", 1), t0);
        queue.add(pod("errored", 0), t0);
        reject_next(&mut queue, &[FIT], t0);
        assert_eq!(queue.next_wakeup(), Some(t0 + secs(300)));
        let popped = queue.pop(t0 + secs(5)).expect("errored");
        queue.requeue_after_error(popped, t0 + secs(5));
        assert_eq!(queue.next_wakeup(), Some(t0 + secs(6)));
    }

    #[test]
    fn gated_pods_wait_until_their_gates_are_removed() {
        let t0 = Instant::now();
        let gated = |labels: Value, gates: Value| {
            pod_info(json!({"metadata": {"name": "g", "labels": labels},
                "spec": {"schedulingGates": gates}}))
        };
        let mut queue = queue();
        queue.add(gated(json!({}), json!([{"name": "example.com/wait"}])), t0);
        assert_eq!(queue.counts(), QueueCounts { gated: 1, ..QueueCounts::default() });
        assert!(queue.pop(t0).is_none());
        assert_eq!(queue.scheduling_cycle(), 0);

        // Neither events nor time release a gated pod; an update that keeps a gate neither.
        ClusterEvent::ALL.iter().for_each(|event| queue.on_event(*event, t0));
        queue.flush(t0 + secs(3600));
        queue.update(gated(json!({"a": "b"}), json!([{"name": "example.com/wait"}])), t0);
        assert_eq!(queue.location("g"), Some(Location::Gated));

        queue.update(gated(json!({"a": "b"}), json!([])), t0 + secs(1));
        assert_eq!(queue.counts(), QueueCounts { active: 1, ..QueueCounts::default() });
        let popped = queue.pop(t0 + secs(1)).expect("the released pod");
        assert_eq!(popped.info.labels().get("a").map(String::as_str), Some("b"));
    }

    #[test]
    fn updates_of_unschedulable_pods_retry_them_only_when_they_could_matter() {
        // The pod is rejected at t0 (back-off 1s) and updated to `updated` at t0 + `after`.
        fn check(updated: Value, after: Duration, expected: Location) {
            let t0 = Instant::now();
            let mut queue = queue();
            queue.add(pod_info(json!({"metadata": {"name": "p", "labels": {"app": "web"}}})), t0);
            reject_next(&mut queue, &[FIT], t0);
            queue.update(pod_info(updated.clone()), t0 + after);
            assert_eq!(queue.location("p"), Some(expected), "{updated} after {after:?}");
        }
        let relabelled = json!({"metadata": {"name": "p", "labels": {"app": "db"}}});
        check(relabelled.clone(), ms(500), Location::Backoff);
        check(relabelled, secs(2), Location::Active);
        check(
            json!({"metadata": {"name": "p", "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox",
                    "resources": {"requests": {"cpu": "1"}}}]}}),
            secs(2),
            Location::Active,
        );
        check(
            json!({"metadata": {"name": "p", "labels": {"app": "web"}, "resourceVersion": "7",
                    "generation": 2, "finalizers": ["example.com/keep"]},
                "status": {"phase": "Pending",
                    "conditions": [{"type": "PodScheduled", "status": "False"}]}}),
            secs(2),
            Location::Unschedulable,
        );
    }

    #[test]
    fn updates_of_queued_pods_keep_their_place() {
        let t0 = Instant::now();
        let mut queue = queue();
        queue.add(pod("first", 0), t0);
        queue.add(pod("second", 0), t0 + ms(1));
        queue.add(pod("errored", 0), t0 + ms(2));
        let popped = queue.pop(t0 + ms(3)).expect("first");
        queue.requeue_after_error(popped, t0 + ms(3));
        assert_eq!(queue.location("first"), Some(Location::Backoff));

        let relabel =
            |name: &str| pod_info(json!({"metadata": {"name": name, "labels": {"v": "2"}}}));
        queue.update(relabel("first"), t0 + ms(4));
        queue.update(relabel("second"), t0 + ms(4));
        assert_eq!(queue.location("first"), Some(Location::Backoff));
        assert_eq!(queue.next_wakeup(), Some(t0 + ms(3) + secs(1)));
        // An update of an unknown pod adds it.
        queue.update(pod("new", 0), t0 + ms(5));

        let popped: Vec<QueuedPod> = std::iter::from_fn(|| queue.pop(t0 + secs(2))).collect();
        let names: Vec<&str> = popped.iter().map(|pod| pod.info.name()).collect();
        assert_eq!(names, ["second", "errored", "first", "new"]);
        assert_eq!(popped[0].info.labels().get("v").map(String::as_str), Some("2"));
        assert_eq!(popped[2].info.labels().get("v").map(String::as_str), Some("2"));
    }

    #[test]
    fn a_pod_updated_while_in_flight_comes_back_in_its_new_version() {
        // `updated` arrives while the pod is being scheduled; then plugins reject it.
        fn check(updated: Value, expected: Location) {
            let t0 = Instant::now();
            let mut queue = queue();
            queue.add(pod_info(json!({"metadata": {"name": "p", "labels": {"app": "web"}}})), t0);
            let mut popped = queue.pop(t0).expect("the pod");
            let cycle = queue.scheduling_cycle();
            queue.update(pod_info(updated.clone()), t0);
            assert_eq!(queue.location("p"), Some(Location::InFlight));
            popped.unschedulable_plugins = BTreeSet::from([FIT]);
            queue.add_unschedulable(popped, cycle, t0);
            assert_eq!(queue.location("p"), Some(expected), "{updated}");
            let stored = &queue.pods["p"].pod.info;
            assert_eq!(stored.pod.as_ref(), pod_info(updated).pod.as_ref());
        }
        check(json!({"metadata": {"name": "p", "labels": {"app": "db"}}}), Location::Backoff);
        check(
            json!({"metadata": {"name": "p", "labels": {"app": "web"}, "resourceVersion": "9"}}),
            Location::Unschedulable,
        );
    }

    #[test]
    fn pop_starts_a_cycle_and_counts_the_attempt() {
        let t0 = Instant::now();
        let mut queue = queue();
        assert!(queue.pop(t0).is_none());
        assert_eq!(queue.scheduling_cycle(), 0);

        queue.add(pod("p", 0), t0);
        let first = queue.pop(t0 + secs(1)).expect("the pod");
        assert_eq!(
            (first.attempts, first.initial_attempt, first.timestamp),
            (1, Some(t0 + secs(1)), t0)
        );
        assert_eq!(queue.location("p"), Some(Location::InFlight));
        assert_eq!(queue.counts(), QueueCounts::default());
        queue.add_unschedulable(
            QueuedPod { unschedulable_plugins: BTreeSet::from([FIT]), ..first },
            1,
            t0 + secs(2),
        );
        queue.on_event(NodeAdd, t0 + secs(10));

        let second = queue.pop(t0 + secs(10)).expect("the pod again");
        assert_eq!(queue.scheduling_cycle(), 2);
        assert_eq!(
            (second.attempts, second.initial_attempt, second.timestamp),
            (2, Some(t0 + secs(1)), t0 + secs(2))
        );
        assert!(second.unschedulable_plugins.is_empty());
        queue.done("p");
        assert_eq!(queue.location("p"), None);
    }

    #[test]
    fn delete_removes_a_pod_from_wherever_it_is() {
        // Puts pod "p" in `place`, nominated to node "n1", then deletes it.
        fn check(place: Location) {
            let t0 = Instant::now();
            let mut queue = queue();
            let info = match place {
                Location::Gated => pod_info(
                    json!({"metadata": {"name": "p"}, "spec": {"schedulingGates": [{"name": "g"}]}}),
                ),
                _ => pod("p", 0),
            };
            queue.add(info.clone(), t0);
            queue.nominate(&info, Some("n1".to_owned()));
            let popped = match place {
                Location::Active | Location::Gated => None,
                _ => queue.pop(t0),
            };
            match (place, popped) {
                (Location::Backoff, Some(popped)) => queue.requeue_after_error(popped, t0),
                (Location::Unschedulable, Some(mut popped)) => {
                    popped.unschedulable_plugins = BTreeSet::from([FIT]);
                    queue.add_unschedulable(popped, 1, t0);
                }
                (Location::InFlight, Some(popped)) => {
                    queue.delete("p");
                    // The scheduler hands back a pod deleted during its cycle: it stays gone.
                    queue.add_unschedulable(popped.clone(), 1, t0);
                    queue.requeue_after_error(popped, t0);
                }
                _ => {}
            }
            if place != Location::InFlight {
                assert_eq!(queue.location("p"), Some(place));
            }
            queue.delete("p");
            assert_eq!(queue.location("p"), None, "{place:?}");
            assert_eq!(queue.counts(), QueueCounts::default(), "{place:?}");
            assert!(queue.nominated_pods().is_empty(), "{place:?}");
            assert!(queue.pop(t0 + secs(60)).is_none(), "{place:?}");
            assert_eq!(queue.next_wakeup(), None, "{place:?}");
        }
        check(Location::Active);
        check(Location::Backoff);
        check(Location::Unschedulable);
        check(Location::Gated);
        check(Location::InFlight);
    }

    #[test]
    fn nominations_group_pods_by_node() {
        fn names(queue: &SchedulingQueue) -> Vec<(String, Vec<String>)> {
            let mut nominated: Vec<(String, Vec<String>)> = queue
                .nominated_pods()
                .into_iter()
                .map(|(node, pods)| (node, pods.iter().map(|pod| pod.name().to_owned()).collect()))
                .collect();
            nominated.sort();
            nominated
        }
        fn expect(nominations: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
            nominations
                .iter()
                .map(|(node, pods)| {
                    (node.to_string(), pods.iter().map(|pod| pod.to_string()).collect())
                })
                .collect()
        }
        let t0 = Instant::now();
        let mut queue = queue();
        for name in ["b", "a", "c"] {
            queue.add(pod(name, 0), t0);
        }
        queue.nominate(&pod("b", 0), Some("n1".to_owned()));
        queue.nominate(&pod("a", 0), Some("n1".to_owned()));
        queue.nominate(&pod("c", 0), Some("n2".to_owned()));
        assert_eq!(names(&queue), expect(&[("n1", &["a", "b"]), ("n2", &["c"])]));

        queue.nominate(&pod("b", 0), None);
        queue.nominate(&pod("c", 0), Some("n1".to_owned()));
        assert_eq!(names(&queue), expect(&[("n1", &["a", "c"])]));

        // A pod added with status.nominatedNodeName is nominated there; an update without one
        // keeps a nomination made in memory; an update that sets one moves it.
        let nominated = |name: &str, node: &str| {
            pod_info(json!({"metadata": {"name": name}, "status": {"nominatedNodeName": node}}))
        };
        queue.add(nominated("d", "n3"), t0);
        queue.update(pod_info(json!({"metadata": {"name": "a", "labels": {"v": "2"}}})), t0);
        queue.update(nominated("c", "n2"), t0);
        assert_eq!(names(&queue), expect(&[("n1", &["a"]), ("n2", &["c"]), ("n3", &["d"])]));
        assert_eq!(
            queue.nominated_pods()["n1"][0].labels().get("v").map(String::as_str),
            Some("2")
        );

        // Clearing status.nominatedNodeName clears the nomination; so does deleting the pod.
        queue.update(pod("d", 0), t0);
        queue.delete("a");
        assert_eq!(names(&queue), expect(&[("n2", &["c"])]));

        // An assigned pod is never nominated.
        let bound = pod_info(json!({"metadata": {"name": "e"}, "spec": {"nodeName": "n1"}}));
        queue.nominate(&bound, Some("n1".to_owned()));
        assert_eq!(names(&queue), expect(&[("n2", &["c"])]));
    }

    #[test]
    fn ten_thousand_pods_pop_in_priority_order() {
        let t0 = Instant::now();
        let mut queue = queue();
        for i in 0..10_000u64 {
            let priority = i32::try_from(i % 7).expect("small");
            queue.add(pod(&format!("p{i}"), priority), t0 + ms(i));
        }
        assert_eq!(queue.counts().active, 10_000);
        let mut previous = (i32::MAX, t0);
        let mut popped = 0;
        while let Some(pod) = queue.pop(t0 + secs(60)) {
            let key = (pod.info.priority(), pod.timestamp);
            assert!(
                key.0 < previous.0 || (key.0 == previous.0 && key.1 > previous.1),
                "{} after {previous:?}",
                pod.info.name()
            );
            previous = key;
            queue.done(pod.uid());
            popped += 1;
        }
        assert_eq!((popped, queue.scheduling_cycle()), (10_000, 10_000));
    }
}
