//! One sync of a Job, without IO: upstream's `syncJob` split at each API call. The caller
//! (`mod.rs`) walks a [`JobSync`] through its steps and performs what each step asks:
//!
//! 1. [`JobSync::new`] counts the pods (active, ready, terminating, newly succeeded and
//!    failed), sets `startTime`, and decides whether the Job is finishing: the pod failure
//!    policy, `backoffLimit`, `activeDeadlineSeconds`, or an interim condition already written.
//! 2. [`JobSync::pod_action`] says which pods to create or delete (nothing while earlier
//!    creations and deletions are still unobserved); [`JobSync::pod_action_done`] takes the
//!    outcome and decides completion and the `Suspended` condition.
//! 3. [`JobSync::track`] is finalizer-based tracking: finished pods are first recorded by uid
//!    in `status.uncountedTerminatedPods` (written before anything else), then their
//!    `batch.kubernetes.io/job-tracking` finalizers are removed, and only then
//!    ([`JobSync::finalizers_removed`]) do they move into the `succeeded`/`failed` counters. A
//!    crash between any two writes neither loses nor double-counts a pod.
//! 4. [`JobSync::finish`] adds `Complete` or `Failed` once nothing is uncounted and no pod is
//!    terminating; before that the interim `SuccessCriteriaMet` or `FailureTarget` condition
//!    was written, as Kubernetes 1.33 does.

use crate::job::backoff::BackoffRecord;
use crate::job::failure_policy::{Verdict, judge};
use crate::job::indexes::{Intervals, completion_index, first_pending, repeated};
use crate::job::pods::{
    has_tracking_finalizer, is_active, is_failed, is_ready, is_terminating, phase, removal_order,
    restarts_of_live_pods, uid,
};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::collections::HashSet;
use std::time::Duration;

/// At most this many pods are created or deleted, and counted, in one sync.
pub(crate) const MAX_PODS_PER_SYNC: usize = 500;

/// What the controller knows besides the Job and its pods.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts<'a> {
    pub(crate) now: Timestamp,
    /// Every pod creation and deletion asked for earlier has been seen in the pod watch.
    pub(crate) expectations_satisfied: bool,
    /// Uids of pods whose finalizer this controller removed but the watch has not shown yet:
    /// they count as already processed.
    pub(crate) finalizers_going: &'a HashSet<String>,
    /// The failure back-off record before this sync.
    pub(crate) backoff: &'a BackoffRecord,
}

/// What to do with pods in this sync.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PodAction {
    Nothing,
    /// The Job is finishing: delete every active pod, keeping its finalizer so that the pod is
    /// counted.
    DeleteActive(Vec<Pod>),
    /// Too many pods, or the Job is suspended: remove their finalizers, then delete them; they
    /// are not counted as failures.
    Remove(Vec<Pod>),
    /// Create this many pods; for an Indexed Job, one per index listed.
    Create {
        count: usize,
        indexes: Vec<i32>,
    },
    /// Replacements wait out the failure back-off.
    Backoff(Duration),
}

/// How the pod action went: how many pods were created or deleted, and how many of the
/// deleted ones were ready.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Outcome {
    pub(crate) done: usize,
    pub(crate) ready_done: usize,
}

/// An Event to record on the Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Note {
    pub(crate) warning: bool,
    pub(crate) reason: String,
    pub(crate) message: String,
}

/// A pod whose tracking finalizer is to be removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finalized {
    pub(crate) name: String,
    pub(crate) uid: String,
}

/// What [`JobSync::track`] asks of the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TrackPlan {
    /// Write the status (new uncounted uids, interim conditions) before touching finalizers.
    pub(crate) flush_first: bool,
    pub(crate) remove_finalizers: Vec<Finalized>,
}

/// One sync of one Job; see the module documentation for the order of the steps.
#[derive(Debug)]
pub(crate) struct JobSync<'a> {
    job: &'a Job,
    spec: JobSpec,
    pods: Vec<&'a Pod>,
    now: Timestamp,
    expectations_satisfied: bool,
    finalizers_going: &'a HashSet<String>,
    /// The status being built; what the caller writes.
    pub(crate) status: JobStatus,
    uncounted_succeeded: HashSet<String>,
    uncounted_failed: HashSet<String>,
    active_pods: Vec<&'a Pod>,
    active: i32,
    ready: i32,
    terminating: i32,
    succeeded: i32,
    previous_indexes: Intervals,
    succeeded_indexes: Intervals,
    /// The condition the Job is heading for, if it is finishing.
    finished: Option<JobCondition>,
    manage_called: bool,
    uids_with_finalizer: HashSet<String>,
    reached_max_uncounted: bool,
    /// The status differs from what was last written.
    pub(crate) needs_flush: bool,
    /// The failure back-off record after this sync.
    pub(crate) backoff: BackoffRecord,
    /// Sync again after this long (the active deadline, the failure back-off).
    pub(crate) requeue_after: Option<Duration>,
    pub(crate) notes: Vec<Note>,
}

impl<'a> JobSync<'a> {
    /// Step 1: counts pods and decides whether the Job is finishing.
    pub(crate) fn new(job: &'a Job, pods: Vec<&'a Pod>, facts: Facts<'a>) -> JobSync<'a> {
        let spec = job.spec.clone().unwrap_or_default();
        let mut status = job.status.clone().unwrap_or_default();
        let uncounted = status.uncounted_terminated_pods.get_or_insert_with(Default::default);
        let uncounted_succeeded: HashSet<String> =
            uncounted.succeeded.iter().flatten().cloned().collect();
        let uncounted_failed: HashSet<String> =
            uncounted.failed.iter().flatten().cloned().collect();
        let active_pods: Vec<&Pod> = pods.iter().copied().filter(|p| is_active(p)).collect();
        let mut sync = JobSync {
            job,
            pods,
            now: facts.now,
            expectations_satisfied: facts.expectations_satisfied,
            finalizers_going: facts.finalizers_going,
            uncounted_succeeded,
            uncounted_failed,
            active: active_pods.len() as i32,
            ready: active_pods.iter().filter(|p| is_ready(p)).count() as i32,
            active_pods,
            terminating: 0,
            succeeded: 0,
            previous_indexes: Intervals::default(),
            succeeded_indexes: Intervals::default(),
            finished: None,
            manage_called: false,
            uids_with_finalizer: HashSet::new(),
            reached_max_uncounted: false,
            needs_flush: false,
            backoff: facts.backoff.clone(),
            requeue_after: None,
            notes: Vec::new(),
            status,
            spec,
        };
        sync.terminating = sync.pods.iter().filter(|p| is_terminating(p)).count() as i32;
        let new_succeeded: Vec<&Pod> =
            sync.untracked(&sync.uncounted_succeeded).filter(|p| phase(p) == "Succeeded").collect();
        let new_failed: Vec<&Pod> = sync
            .untracked(&sync.uncounted_failed)
            .filter(|p| is_failed(p, sync.only_replace_failed()))
            .collect();
        let policy = sync.spec.pod_failure_policy.as_ref();
        let counted_failures = new_failed.iter().filter(|p| judge(policy, p).counts()).count();
        sync.succeeded = counter(sync.status.succeeded)
            + new_succeeded.len() as i32
            + sync.uncounted_succeeded.len() as i32;
        let failed = counter(sync.status.failed)
            + counted_failures as i32
            + sync.uncounted_failed.len() as i32;
        if sync.status.start_time.is_none() && !sync.suspended() {
            sync.status.start_time = Some(Time(facts.now));
            sync.needs_flush = true;
        }
        sync.backoff = facts.backoff.updated(&new_succeeded, &new_failed);
        sync.finished = sync.finishing(failed);
        if sync.indexed() {
            let completions = sync.completions();
            let text = sync.status.completed_indexes.as_deref().unwrap_or_default();
            sync.previous_indexes = Intervals::parse(text, completions);
            let new_indexes = sync.pods.iter().filter_map(|p| {
                let index = completion_index(p.metadata.annotations.as_ref())?;
                let counts =
                    phase(p) == "Succeeded" && index < completions && has_tracking_finalizer(p);
                counts.then_some(index)
            });
            sync.succeeded_indexes = sync.previous_indexes.with(new_indexes.collect::<Vec<_>>());
            sync.succeeded = sync.succeeded_indexes.total();
        }
        sync
    }

    /// Pods with a tracking finalizer not yet processed: not among `uncounted`, not awaiting
    /// their finalizer's removal, and (Indexed Jobs) with a valid index.
    fn untracked<'s>(
        &'s self,
        uncounted: &'s HashSet<String>,
    ) -> impl Iterator<Item = &'a Pod> + 's {
        self.pods.iter().copied().filter(move |p| {
            let id = uid(p);
            has_tracking_finalizer(p)
                && !uncounted.contains(id)
                && !self.finalizers_going.contains(id)
                && self.index_valid(p)
        })
    }

    fn index_valid(&self, pod: &Pod) -> bool {
        !self.indexed()
            || completion_index(pod.metadata.annotations.as_ref())
                .is_some_and(|index| index < self.completions())
    }

    /// The condition the Job heads for, if any: a `SuccessCriteriaMet` already written, a
    /// `FailureTarget` already written (now turned into `Failed`), or a new `FailureTarget`.
    fn finishing(&mut self, failed: i32) -> Option<JobCondition> {
        if let Some(met) = self.condition("SuccessCriteriaMet") {
            return Some(met.clone());
        }
        if let Some(target) = self.condition("FailureTarget") {
            let (reason, message) = (text(&target.reason), text(&target.message));
            return Some(condition("Failed", &reason, &message, self.now));
        }
        let policy = self.spec.pod_failure_policy.as_ref();
        let only_failed = self.only_replace_failed();
        let fail_job = self.pods.iter().filter(|p| is_failed(p, only_failed)).find_map(|p| {
            match judge(policy, p) {
                Verdict::FailJob(message) => Some(message),
                _ => None,
            }
        });
        if let Some(message) = fail_job {
            return Some(condition("FailureTarget", "PodFailurePolicy", &message, self.now));
        }
        let backoff_limit = self.spec.backoff_limit.unwrap_or(6);
        if failed > backoff_limit || self.past_backoff_limit_on_failure(backoff_limit) {
            let message = "Job has reached the specified backoff limit";
            return Some(condition("FailureTarget", "BackoffLimitExceeded", message, self.now));
        }
        let (Some(deadline), Some(start)) =
            (self.spec.active_deadline_seconds, self.status.start_time.as_ref())
        else {
            return None;
        };
        if self.suspended() {
            return None;
        }
        let elapsed = self.now.duration_since(start.0);
        let allowed = SignedDuration::from_secs(deadline);
        if elapsed >= allowed {
            let message = "Job was active longer than specified deadline";
            return Some(condition("FailureTarget", "DeadlineExceeded", message, self.now));
        }
        self.requeue(Duration::try_from(allowed - elapsed).unwrap_or(Duration::ZERO));
        None
    }

    /// Pods that restart their containers count restarts instead of failed pods.
    fn past_backoff_limit_on_failure(&self, backoff_limit: i32) -> bool {
        let restart_policy =
            self.spec.template.spec.as_ref().and_then(|s| s.restart_policy.as_deref());
        if restart_policy != Some("OnFailure") {
            return false;
        }
        let restarts = restarts_of_live_pods(self.pods.iter().copied());
        if backoff_limit == 0 { restarts > 0 } else { restarts >= backoff_limit }
    }

    /// Step 2: what to do with pods.
    pub(crate) fn pod_action(&mut self) -> PodAction {
        if self.finished.is_some() {
            return PodAction::DeleteActive(
                self.active_pods.iter().map(|p| (*p).clone()).collect(),
            );
        }
        if !self.expectations_satisfied || self.job.metadata.deletion_timestamp.is_some() {
            return PodAction::Nothing;
        }
        self.manage_called = true;
        if self.suspended() {
            let all = self.active_pods.len();
            return PodAction::Remove(self.removal_candidates(all));
        }
        let parallelism = self.spec.parallelism.unwrap_or(1);
        let want = match self.spec.completions {
            None if self.succeeded > 0 => self.active,
            None => parallelism,
            Some(completions) => (completions - self.succeeded).min(parallelism).max(0),
        };
        let excess = (self.active - want).max(0) as usize;
        let mut doomed = self.removal_candidates(excess);
        doomed.truncate(MAX_PODS_PER_SYNC);
        if !doomed.is_empty() {
            return PodAction::Remove(doomed);
        }
        let terminating = if self.only_replace_failed() { self.terminating } else { 0 };
        let missing = want - terminating - self.active;
        if missing <= 0 {
            return PodAction::Nothing;
        }
        let wait = self.backoff.remaining(self.now);
        if !wait.is_zero() {
            return PodAction::Backoff(wait);
        }
        let count = (missing as usize).min(MAX_PODS_PER_SYNC);
        if !self.indexed() {
            return PodAction::Create { count, indexes: Vec::new() };
        }
        let active_indexes = self
            .active_pods
            .iter()
            .filter_map(|p| completion_index(p.metadata.annotations.as_ref()));
        let indexes =
            first_pending(active_indexes, &self.succeeded_indexes, count, self.completions());
        PodAction::Create { count: indexes.len(), indexes }
    }

    /// At least `at_least` active pods to remove, least advanced first; for Indexed Jobs also
    /// every pod without a valid index and all but one pod of each repeated index.
    fn removal_candidates(&self, at_least: usize) -> Vec<Pod> {
        let mut doomed: Vec<&Pod> = Vec::new();
        let mut left: Vec<&Pod> = Vec::new();
        if self.indexed() {
            let index_of = |p: &Pod| completion_index(p.metadata.annotations.as_ref());
            let repeats = repeated(self.active_pods.iter().filter_map(|p| index_of(p)));
            let (invalid, valid): (Vec<&Pod>, Vec<&Pod>) =
                self.active_pods.iter().partition(|p| !self.index_valid(p));
            doomed.extend(invalid);
            for index in &repeats {
                let mut same: Vec<&Pod> =
                    valid.iter().copied().filter(|p| index_of(p) == Some(*index)).collect();
                same.sort_by(|a, b| removal_order(a, b));
                let keep = same.pop();
                doomed.extend(same);
                left.extend(keep);
            }
            left.extend(
                valid
                    .iter()
                    .copied()
                    .filter(|p| !index_of(p).is_some_and(|i| repeats.contains(&i))),
            );
        } else {
            left = self.active_pods.clone();
        }
        if doomed.len() < at_least {
            left.sort_by(|a, b| removal_order(a, b));
            let more = at_least - doomed.len();
            doomed.extend(left.into_iter().take(more));
        }
        doomed.into_iter().cloned().collect()
    }

    /// After step 2: the outcome of the pod action; then completion and suspension.
    pub(crate) fn pod_action_done(&mut self, action: &PodAction, outcome: Outcome) {
        let (done, ready_done) = (outcome.done as i32, outcome.ready_done as i32);
        match action {
            PodAction::DeleteActive(pods) => {
                // Pods not yet seen, or not all gone: the Job cannot be declared finished.
                if outcome.done != pods.len() || !self.expectations_satisfied {
                    self.finished = None;
                }
                self.active -= done;
                self.terminating += done;
                self.ready -= ready_done;
                return self.set_pod_counts();
            }
            PodAction::Remove(_) => {
                self.active -= done;
                self.terminating += done;
                self.ready -= ready_done;
            }
            PodAction::Create { .. } => self.active += done,
            PodAction::Backoff(wait) => self.requeue((*wait).max(Duration::from_secs(1))),
            PodAction::Nothing => {}
        }
        let complete = match self.spec.completions {
            None => self.succeeded > 0 && self.active == 0,
            Some(completions) => self.succeeded >= completions && self.active == 0,
        };
        if complete {
            let message = "Reached expected number of succeeded pods";
            self.finished =
                Some(condition("SuccessCriteriaMet", "CompletionsReached", message, self.now));
        } else if self.manage_called {
            self.suspension_condition();
        }
        self.set_pod_counts();
    }

    fn suspension_condition(&mut self) {
        let now = self.now;
        let suspended = self.spec.suspend == Some(true);
        let conditions = self.status.conditions.get_or_insert_with(Vec::new);
        let changed = if suspended {
            ensure_condition(conditions, "Suspended", "True", "JobSuspended", "Job suspended", now)
        } else {
            ensure_condition(conditions, "Suspended", "False", "JobResumed", "Job resumed", now)
        };
        if conditions.is_empty() {
            self.status.conditions = None;
        }
        if !changed {
            return;
        }
        self.needs_flush = true;
        if suspended {
            self.note(false, "Suspended", "Job suspended");
        } else {
            self.note(false, "Resumed", "Job resumed");
            // The active deadline counts the time a Job runs without a break, so a resumed
            // Job starts anew.
            self.status.start_time = Some(Time(now));
        }
    }

    fn set_pod_counts(&mut self) {
        let active = (self.active > 0).then_some(self.active);
        if active != self.status.active
            || Some(self.ready) != self.status.ready
            || Some(self.terminating) != self.status.terminating
        {
            self.needs_flush = true;
        }
        self.status.active = active;
        self.status.ready = Some(self.ready);
        self.status.terminating = Some(self.terminating);
    }

    /// Step 3: records newly finished pods as uncounted and says whose finalizers to remove.
    pub(crate) fn track(&mut self) -> TrackPlan {
        let mut pods = self.pods.clone();
        if self.indexed() {
            pods.sort_by_key(|p| {
                completion_index(p.metadata.annotations.as_ref()).map_or(-1, |i| i)
            });
        }
        self.uids_with_finalizer = pods
            .iter()
            .filter(|p| has_tracking_finalizer(p) && !self.finalizers_going.contains(uid(p)))
            .map(|p| uid(p).to_owned())
            .collect();
        if clean_uncounted(&mut self.status, &self.uids_with_finalizer) {
            self.needs_flush = true;
        }
        let mut remove = Vec::new();
        let mut new_indexes = Vec::new();
        let policy = self.spec.pod_failure_policy.clone();
        let finishing_in_failure =
            self.finished.as_ref().is_some_and(|c| c.type_ != "SuccessCriteriaMet");
        let deleting = self.job.metadata.deletion_timestamp.is_some();
        for pod in pods {
            let id = uid(pod);
            if !has_tracking_finalizer(pod) || self.finalizers_going.contains(id) {
                continue;
            }
            let failed = is_failed(pod, self.only_replace_failed());
            let removable =
                deleting || self.finished.is_some() || phase(pod) == "Succeeded" || failed;
            if !removable {
                continue;
            }
            let name = pod.metadata.name.clone().unwrap_or_default();
            remove.push(Finalized { name, uid: id.to_owned() });
            let index = completion_index(pod.metadata.annotations.as_ref());
            if phase(pod) == "Succeeded" && !self.uncounted_failed.contains(id) {
                if self.indexed() {
                    if let Some(index) = index.filter(|i| *i < self.completions())
                        && !self.previous_indexes.contains(index)
                    {
                        new_indexes.push(index);
                        self.needs_flush = true;
                    }
                } else if !self.uncounted_succeeded.contains(id) {
                    push_uncounted(&mut self.status, Ending::Succeeded, id);
                    self.needs_flush = true;
                }
            } else if (failed || finishing_in_failure)
                && !self.uncounted_failed.contains(id)
                && self.index_valid(pod)
                && judge(policy.as_ref(), pod).counts()
            {
                push_uncounted(&mut self.status, Ending::Failed, id);
                self.needs_flush = true;
            }
            let listed = new_indexes.len() + uncounted_len(&self.status);
            if listed >= MAX_PODS_PER_SYNC {
                // Keeps the status small and this sync short; the status write brings the
                // Job back for the rest.
                self.reached_max_uncounted = true;
                break;
            }
        }
        if self.indexed() {
            self.succeeded_indexes = self.succeeded_indexes.with(new_indexes);
            let text = self.succeeded_indexes.to_string();
            let text = (!text.is_empty()).then_some(text);
            if text != self.status.completed_indexes {
                self.needs_flush = true;
            }
            self.status.succeeded = positive(self.succeeded_indexes.total());
            self.status.completed_indexes = text;
            if self.status.failed_indexes.take().is_some() {
                self.needs_flush = true;
            }
        }
        let now = self.now;
        if let Some(target) = self.finished.clone().filter(|c| c.type_ == "FailureTarget") {
            self.status.conditions.get_or_insert_with(Vec::new).push(target.clone());
            self.needs_flush = true;
            let (reason, message) = (text(&target.reason), text(&target.message));
            self.finished = Some(condition("Failed", &reason, &message, now));
        }
        if let Some(met) = self.finished.clone().filter(|c| c.type_ == "SuccessCriteriaMet") {
            if self.condition("SuccessCriteriaMet").is_none() {
                self.status.conditions.get_or_insert_with(Vec::new).push(met.clone());
                self.needs_flush = true;
            }
            let (reason, message) = (text(&met.reason), text(&met.message));
            self.finished = Some(condition("Complete", &reason, &message, now));
        }
        let flush_first = self.needs_flush;
        TrackPlan { flush_first, remove_finalizers: remove }
    }

    /// After the finalizers of `removed` (uids) are gone: their pods move from uncounted to
    /// the counters. Returns whether the status needs writing.
    pub(crate) fn finalizers_removed(&mut self, removed: &HashSet<String>) -> bool {
        self.uids_with_finalizer.retain(|id| !removed.contains(id));
        if clean_uncounted(&mut self.status, &self.uids_with_finalizer) {
            self.needs_flush = true;
        }
        self.needs_flush
    }

    /// Step 4: adds the final condition when nothing is left uncounted or terminating.
    /// Returns the condition when the Job finished in this sync.
    pub(crate) fn finish(&mut self) -> Option<JobCondition> {
        if self.reached_max_uncounted || uncounted_len(&self.status) > 0 || self.terminating > 0 {
            return None;
        }
        let finished = self.finished.clone()?;
        let conditions = self.status.conditions.get_or_insert_with(Vec::new);
        let (reason, message) = (text(&finished.reason), text(&finished.message));
        ensure_condition(conditions, &finished.type_, "True", &reason, &message, self.now);
        if finished.type_ == "Complete" {
            self.status.completion_time = Some(Time(self.now));
        }
        self.needs_flush = true;
        Some(finished)
    }

    /// The Events of a Job that finished with `finished`.
    pub(crate) fn finished_notes(&self, finished: &JobCondition) -> Vec<Note> {
        let mut notes = Vec::new();
        if finished.type_ == "Complete" {
            if self.spec.completions.is_some_and(|c| counter(self.status.succeeded) > c) {
                let message = "Too many succeeded pods running after completion count reached";
                notes.push(note(true, "TooManySucceededPods", message));
            }
            notes.push(note(false, "Completed", "Job completed"));
        } else {
            notes.push(note(true, &text(&finished.reason), &text(&finished.message)));
        }
        notes
    }

    fn note(&mut self, warning: bool, reason: &str, message: &str) {
        self.notes.push(note(warning, reason, message));
    }

    fn requeue(&mut self, after: Duration) {
        self.requeue_after = Some(self.requeue_after.map_or(after, |earlier| earlier.min(after)));
    }

    fn condition(&self, type_: &str) -> Option<&JobCondition> {
        self.status.conditions.iter().flatten().find(|c| c.type_ == type_ && c.status == "True")
    }

    fn suspended(&self) -> bool {
        self.spec.suspend == Some(true)
    }

    fn indexed(&self) -> bool {
        self.spec.completion_mode.as_deref() == Some("Indexed")
    }

    fn completions(&self) -> i32 {
        self.spec.completions.unwrap_or(0)
    }

    /// Pods being deleted are replaced only once they failed: with `podReplacementPolicy:
    /// Failed`, and always under a pod failure policy.
    fn only_replace_failed(&self) -> bool {
        self.spec.pod_replacement_policy.as_deref() == Some("Failed")
            || self.spec.pod_failure_policy.is_some()
    }
}

/// Whether a status's conditions say the Job is over.
pub(crate) fn is_finished(job: &Job) -> bool {
    finished_condition(job).is_some()
}

/// The `Complete` or `Failed` condition of a finished Job.
pub(crate) fn finished_condition(job: &Job) -> Option<&JobCondition> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .find(|c| matches!(c.type_.as_str(), "Complete" | "Failed") && c.status == "True")
}

fn counter(value: Option<i32>) -> i32 {
    value.unwrap_or(0)
}

/// Upstream's counters are `omitempty`: zero is left out.
fn positive(value: i32) -> Option<i32> {
    (value > 0).then_some(value)
}

fn text(value: &Option<String>) -> String {
    value.clone().unwrap_or_default()
}

fn note(warning: bool, reason: &str, message: &str) -> Note {
    Note { warning, reason: reason.to_owned(), message: message.to_owned() }
}

fn condition(type_: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.to_owned(),
        status: "True".to_owned(),
        reason: (!reason.is_empty()).then(|| reason.to_owned()),
        message: (!message.is_empty()).then(|| message.to_owned()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets a condition (replacing one of the same type whose status, reason or message
/// differ); a missing condition is not added as False. Returns whether anything changed.
fn ensure_condition(
    list: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let mut fresh = condition(type_, reason, message, now);
    fresh.status = status.to_owned();
    if let Some(existing) = list.iter_mut().find(|c| c.type_ == type_) {
        let same = existing.status == status
            && text(&existing.reason) == reason
            && text(&existing.message) == message;
        if same {
            return false;
        }
        *existing = fresh;
        return true;
    }
    if status == "False" {
        return false;
    }
    list.push(fresh);
    true
}

/// Which list of `uncountedTerminatedPods` a pod joins.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Succeeded,
    Failed,
}

fn push_uncounted(status: &mut JobStatus, ending: Ending, id: &str) {
    let uncounted = status.uncounted_terminated_pods.get_or_insert_with(Default::default);
    let list = match ending {
        Ending::Succeeded => &mut uncounted.succeeded,
        Ending::Failed => &mut uncounted.failed,
    };
    list.get_or_insert_with(Vec::new).push(id.to_owned());
}

fn uncounted_len(status: &JobStatus) -> usize {
    status.uncounted_terminated_pods.as_ref().map_or(0, |u| {
        u.succeeded.as_ref().map_or(0, Vec::len) + u.failed.as_ref().map_or(0, Vec::len)
    })
}

/// Moves uncounted uids whose pods no longer carry a finalizer into the counters. Returns
/// whether the status changed.
fn clean_uncounted(status: &mut JobStatus, with_finalizer: &HashSet<String>) -> bool {
    let uncounted =
        status.uncounted_terminated_pods.get_or_insert_with(UncountedTerminatedPods::default);
    let moved = |list: &mut Option<Vec<String>>| -> i32 {
        let Some(uids) = list else { return 0 };
        let before = uids.len();
        uids.retain(|id| with_finalizer.contains(id));
        let gone = (before - uids.len()) as i32;
        if uids.is_empty() {
            *list = None;
        }
        gone
    };
    let succeeded = moved(&mut uncounted.succeeded);
    let failed = moved(&mut uncounted.failed);
    if succeeded > 0 {
        status.succeeded = positive(counter(status.succeeded) + succeeded);
    }
    if failed > 0 {
        status.failed = positive(counter(status.failed) + failed);
    }
    succeeded > 0 || failed > 0
}

#[cfg(test)]
mod tests;
