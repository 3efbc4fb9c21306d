//! The scheduler as a running component: informers fill the cluster state, one loop pops
//! pods from the queue and runs their scheduling cycles, and binding, status updates, Events
//! and preemption's evictions go to the API server through kube-rs in background tasks. It
//! reaches the cluster only through the Kubernetes API (ARCHITECTURE.md), so it would run
//! against an upstream API server as well.
//!
//! `run` returns when its `until` future completes: the caller decides how long the scheduler
//! leads (a leader-election lease, or the whole life of `capstan server`).

mod informers;
mod metrics;
mod state;
mod writes;

pub use metrics::{Histogram, Metrics};

use crate::framework::CycleState;
use crate::preemption::{self, Outcome};
use crate::queue::{QueueConfig, QueuedPod, SchedulingQueue};
use crate::schedule::{CycleCursor, Profile, ScheduleError, schedule_pod};
use state::ClusterState;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};

/// How the scheduler runs.
#[derive(Debug)]
pub struct SchedulerConfig {
    pub profile: Profile,
    pub queue: QueueConfig,
    /// Bindings (and other writes) in flight at once; the loop waits when all are busy.
    pub max_writes_in_flight: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            profile: Profile::default_profile(),
            queue: QueueConfig::default(),
            max_writes_in_flight: 64,
        }
    }
}

/// What the loop and the informers share.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<ClusterState>,
    /// Rung whenever the queue may have something new to pop.
    wake: Notify,
    /// How many informers have listed once.
    synced_informers: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ClusterState> {
        // A panic while holding the lock would leave the state half-updated; the state is
        // still the best knowledge there is, and informers correct it, so keep going.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Schedules pods until `until` completes. `metrics` receives the counts and latencies.
pub async fn run(
    client: kube::Client,
    config: SchedulerConfig,
    metrics: Arc<Metrics>,
    until: impl Future<Output = ()>,
) {
    let interests: HashMap<&'static str, Vec<crate::framework::ClusterEvent>> = config
        .profile
        .plugins
        .iter()
        .map(|plugin| (plugin.name(), plugin.events().to_vec()))
        .collect();
    let queue = SchedulingQueue::new(config.queue, interests);
    let shared = Arc::new(Shared {
        state: Mutex::new(ClusterState::new(queue, config.profile.scheduler_name.clone())),
        wake: Notify::new(),
        synced_informers: AtomicUsize::new(0),
    });
    let informers = informers::all(client.clone(), &shared);
    let writer = writes::Writer::new(client, config.profile.scheduler_name.clone(), metrics);
    let scheduling = schedule_forever(
        Arc::clone(&shared),
        config.profile,
        writer,
        Arc::new(Semaphore::new(config.max_writes_in_flight.max(1))),
    );
    tokio::select! {
        () = until => {}
        () = scheduling => {}
    }
    for informer in informers {
        informer.abort();
    }
}

/// The scheduling loop: pop, schedule, assume, hand the binding to a task; repeat.
async fn schedule_forever(
    shared: Arc<Shared>,
    profile: Profile,
    writer: writes::Writer,
    writes_in_flight: Arc<Semaphore>,
) {
    // As upstream's WaitForCacheSync: a decision on a partial view would be a bad one.
    while shared.synced_informers.load(Ordering::SeqCst) < informers::INFORMERS {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!("scheduler caches synced; scheduling");
    let mut cursor = CycleCursor::default();
    loop {
        let popped = {
            let mut state = shared.lock();
            let now = Instant::now();
            state.queue.flush(now);
            match state.queue.pop(now) {
                Some(pod) => Ok(pod),
                None => Err(state.queue.next_wakeup()),
            }
        };
        let pod = match popped {
            Ok(pod) => pod,
            Err(wakeup) => {
                let deadline = wakeup.unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
                let _ = tokio::time::timeout_at(deadline.into(), shared.wake.notified()).await;
                continue;
            }
        };
        // The writes are bounded: when the API server falls behind, scheduling waits for it.
        let Ok(permit) = Arc::clone(&writes_in_flight).acquire_owned().await else { return };
        let started = Instant::now();
        let decision = schedule_one(&shared, &profile, &mut cursor, pod);
        writer.carry_out(Arc::clone(&shared), decision, started, permit);
    }
}

/// What a cycle decided, for the writer to carry out.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Nothing to do: the pod was placed meanwhile.
    Skip,
    /// Bind the (assumed) pod to the node.
    Bind { pod: QueuedPod, node: String },
    /// The pod fits nowhere: record why, and evict the victims preemption chose.
    Unschedulable {
        pod: QueuedPod,
        message: String,
        nominated: Option<String>,
        victims: Vec<crate::framework::PodInfo>,
    },
    /// Something failed that is not the pod's fault; it was requeued with backoff.
    Failed { pod: QueuedPod, message: String },
}

/// One scheduling cycle under the state's lock (a cycle takes well under a millisecond for a
/// thousand nodes; informers wait that long at most).
fn schedule_one(
    shared: &Shared,
    profile: &Profile,
    cursor: &mut CycleCursor,
    mut pod: QueuedPod,
) -> Decision {
    let mut state = shared.lock();
    let uid = pod.info.uid().to_owned();
    if state.is_placed(&uid) || pod.info.pod.metadata.deletion_timestamp.is_some() {
        state.queue.done(&uid);
        return Decision::Skip;
    }
    let cycle = state.queue.scheduling_cycle();
    let now = Instant::now();
    state.snapshot.nominated_pods = state.queue.nominated_pods();
    let mut cycle_state = CycleState::default();
    match schedule_pod(profile, &mut cycle_state, &pod.info, &state.snapshot, cursor) {
        Ok(result) => {
            state.assume(&pod.info, &result.node);
            state.queue.nominate(&pod.info, None);
            state.queue.done(&uid);
            Decision::Bind { pod, node: result.node }
        }
        Err(ScheduleError::Unschedulable(mut fit_error)) => {
            let mut nominated = None;
            let mut victims = Vec::new();
            match preemption::preempt(profile, &cycle_state, &pod.info, &state.snapshot, &fit_error)
            {
                Outcome::Preempt(candidate) => {
                    state.queue.nominate(&pod.info, Some(candidate.node.clone()));
                    nominated = Some(candidate.node);
                    victims = candidate.victims;
                }
                Outcome::NoCandidate(message) => fit_error.post_filter_message = Some(message),
                Outcome::NotEligible(_) => {}
            }
            let message = fit_error.to_string();
            pod.unschedulable_plugins = fit_error.unschedulable_plugins();
            let record = pod.clone();
            state.queue.add_unschedulable(pod, cycle, now);
            Decision::Unschedulable { pod: record, message, nominated, victims }
        }
        Err(error) => {
            let message = error.to_string();
            let record = pod.clone();
            state.queue.requeue_after_error(pod, now);
            Decision::Failed { pod: record, message }
        }
    }
}
