//! The Job controller, upstream's `job-controller`: runs a Job's pods until enough succeed or
//! the Job fails, and keeps its status. `sync.rs` decides (pure); this file watches, reads
//! from reflector stores and performs what a sync asks for.
//!
//! It is kube-runtime's `applier` over a Job reflector, fed by Job events and by a pod
//! watch handled here as an informer would: each pod event first updates the expectations
//! (creations and deletions this controller asked for and has now seen, finalizer removals
//! now visible), then wakes the owning Job. Until its expectations are met a Job creates
//! and deletes nothing, so a slow watch never causes duplicate pods. Pods are counted
//! through the `batch.kubernetes.io/job-tracking` finalizer (see `sync.rs`); pods whose Job
//! is gone or finished lose that finalizer here, in an orphan worker.

mod backoff;
mod expectations;
mod failure_policy;
mod indexes;
mod pods;
mod sync;
mod template;

pub(crate) use sync::{finished_condition, is_finished};

use crate::Context;
use backoff::BackoffRecord;
use capstan_kube::events::{EventType, Recorder, reference_to};
use expectations::Expectations;
use futures_util::{StreamExt, TryStreamExt, future, stream};
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{self, Action, ReconcileRequest, trigger_self};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, applier};
use pods::{TRACKING_FINALIZER, has_tracking_finalizer, is_ready};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use sync::{Facts, Finalized, JobSync, Note, Outcome, PodAction};
use tokio::sync::mpsc;

/// Upstream's `--concurrent-job-syncs`.
const WORKERS: u16 = 5;
/// An unfinished Job is looked at again after this long even if nothing happened.
const RESYNC: Duration = Duration::from_secs(5 * 60);
/// The retry delay after a failed sync, doubling per consecutive failure up to a minute.
const RETRY_BASE: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// Pod creations start with this many at once, doubling while they succeed.
const SLOW_START: usize = 1;
/// The name `spec.managedBy` gives this controller.
const MANAGER: &str = "kubernetes.io/job-controller";

#[derive(Debug, thiserror::Error)]
pub(crate) enum JobError {
    #[error("job {job} has an invalid selector")]
    Selector {
        job: String,
        #[source]
        source: kube::core::ParseExpressionError,
    },
    #[error("cannot read job {job}")]
    Read {
        job: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot write the status of job {job}")]
    Status {
        job: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot {verb} pod {pod}")]
    Pod {
        verb: &'static str,
        pod: String,
        #[source]
        source: kube::Error,
    },
}

/// Status writes the Job store may not show yet: the resource versions they replaced and the
/// Job as last written.
#[derive(Debug)]
struct Written {
    superseded: Vec<String>,
    latest: Arc<Job>,
}

/// What every sync shares.
struct JobController {
    context: Arc<Context>,
    recorder: Recorder,
    jobs: Store<Job>,
    pods: Store<Pod>,
    expectations: Expectations,
    backoffs: Mutex<HashMap<String, BackoffRecord>>,
    written: Mutex<HashMap<String, Written>>,
    failures: Mutex<HashMap<String, u32>>,
    /// Jobs to sync because one of their pods changed.
    wake: mpsc::UnboundedSender<ObjectRef<Job>>,
    /// Pods that may keep a tracking finalizer nobody will remove.
    orphans: mpsc::UnboundedSender<ObjectRef<Pod>>,
}

impl std::fmt::Debug for JobController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobController").finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections replace whole entries, so a poisoned lock still holds valid maps.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn key_of(meta: &kube::core::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// The controller reference of an object, if any.
pub(crate) fn controller_of(meta: &kube::core::ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.iter().flatten().find(|r| r.controller == Some(true))
}

pub(crate) async fn run(context: Arc<Context>) {
    let (jobs, job_writer) = reflector::store::<Job>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (wake, woken) = mpsc::unbounded_channel();
    let (orphans, orphaned) = mpsc::unbounded_channel();
    let controller = Arc::new(JobController {
        recorder: context.recorder("job-controller"),
        context: Arc::clone(&context),
        jobs: jobs.clone(),
        pods,
        expectations: Expectations::default(),
        backoffs: Mutex::default(),
        written: Mutex::default(),
        failures: Mutex::default(),
        wake,
        orphans,
    });
    let pod_watch = tokio::spawn(watch_pods(Arc::clone(&controller), pod_writer));
    let orphan_worker = tokio::spawn(release_orphans(Arc::clone(&controller), orphaned));
    let observer = Arc::clone(&controller);
    let job_events =
        watcher::watcher(Api::<Job>::all(context.client.clone()), watcher::Config::default())
            .default_backoff()
            .reflect(job_writer)
            .map_ok(move |event| {
                observer.job_event(&event);
                event
            })
            .touched_objects();
    let woken = stream::unfold(woken, |mut woken| async move {
        let job = woken.recv().await?;
        Some((Ok(ReconcileRequest::from(job)), woken))
    });
    let queue = stream::select(trigger_self(job_events, ()), woken);
    let config = controller::Config::default().concurrency(WORKERS);
    // The applier polls reconcile futures by value, so they are boxed to be `Unpin`.
    let reconciler = |job, controller| Box::pin(reconcile(job, controller));
    applier(reconciler, error_policy, controller, jobs, queue, config)
        .for_each(|result| async move {
            match result {
                Ok(_) => {}
                Err(controller::Error::ObjectNotFound(job)) => {
                    tracing::trace!(%job, "job controller: the job is gone");
                }
                Err(error) => tracing::debug!(%error, "job controller: sync failed"),
            }
        })
        .await;
    pod_watch.abort();
    orphan_worker.abort();
}

impl JobController {
    fn job_api(&self, namespace: &str) -> Api<Job> {
        Api::namespaced(self.context.client.clone(), namespace)
    }

    fn pod_api(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.context.client.clone(), namespace)
    }

    /// The Job a controller reference names, if it is in the store with that uid.
    fn resolve(&self, namespace: Option<&str>, owner: &OwnerReference) -> Option<Arc<Job>> {
        if owner.kind != "Job" || owner.api_version != "batch/v1" {
            return None;
        }
        let reference = ObjectRef::<Job>::new(&owner.name).within(namespace.unwrap_or_default());
        self.jobs.get(&reference).filter(|job| job.metadata.uid.as_deref() == Some(&owner.uid))
    }

    fn wake(&self, job: &Job) {
        let _ = self.wake.send(ObjectRef::from_obj(job));
    }

    fn orphan(&self, pod: &Pod) {
        let _ = self.orphans.send(ObjectRef::from_obj(pod));
    }

    /// A Job changed: forget a deleted Job, and release the finalizers of a gone or finished
    /// Job's pods (the sync removes them first; this is the backstop). Relists are left out:
    /// the pod watch's own relist finds pods of finished or missing Jobs.
    fn job_event(&self, event: &Event<Job>) {
        let (job, gone) = match event {
            Event::Apply(job) => (job, false),
            Event::Delete(job) => (job, true),
            Event::Init | Event::InitApply(_) | Event::InitDone => return,
        };
        let key = key_of(&job.metadata);
        if gone {
            self.expectations.forget(&key);
            lock(&self.backoffs).remove(&key);
            lock(&self.written).remove(&key);
            lock(&self.failures).remove(&key);
        }
        if gone || is_finished(job) {
            for pod in self.pods.state() {
                let owned = controller_of(&pod.metadata)
                    .is_some_and(|r| Some(&r.uid) == job.metadata.uid.as_ref());
                if owned && has_tracking_finalizer(&pod) {
                    self.orphan(&pod);
                }
            }
        }
    }

    /// Jobs of the pod's namespace whose selector matches it, which may adopt it.
    fn wake_selecting_jobs(&self, pod: &Pod) {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.as_deref();
        for job in self.jobs.state() {
            if job.metadata.namespace.as_deref() != namespace {
                continue;
            }
            let selector = job.spec.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
            if Selector::try_from(selector).is_ok_and(|s| s.matches(&labels)) {
                self.wake(&job);
            }
        }
    }

    /// A pod appeared or changed (`old` is what the store held before).
    fn pod_changed(&self, old: Option<&Pod>, pod: &Pod) {
        if let Some(old) = old {
            if old.metadata.resource_version == pod.metadata.resource_version {
                return;
            }
            let old_owner = controller_of(&old.metadata);
            if old_owner != controller_of(&pod.metadata)
                && let Some(job) =
                    old_owner.and_then(|o| self.resolve(old.metadata.namespace.as_deref(), o))
            {
                if !has_tracking_finalizer(pod) {
                    self.expectations
                        .finalizer_removal_observed(&key_of(&job.metadata), pods::uid(pod));
                }
                self.wake(&job);
            }
        }
        let newly_deleting = pod.metadata.deletion_timestamp.is_some()
            && old.is_none_or(|o| o.metadata.deletion_timestamp.is_none());
        match controller_of(&pod.metadata) {
            Some(owner) => {
                let Some(job) = self.resolve(pod.metadata.namespace.as_deref(), owner) else {
                    if has_tracking_finalizer(pod) {
                        self.orphan(pod);
                    }
                    return;
                };
                let key = key_of(&job.metadata);
                if newly_deleting {
                    self.expectations.deletion_observed(&key);
                } else if old.is_none() && pod.metadata.deletion_timestamp.is_none() {
                    self.expectations.creation_observed(&key);
                }
                if !has_tracking_finalizer(pod) {
                    self.expectations.finalizer_removal_observed(&key, pods::uid(pod));
                }
                if is_finished(&job) && has_tracking_finalizer(pod) {
                    self.orphan(pod);
                }
                self.wake(&job);
            }
            None => {
                if has_tracking_finalizer(pod) {
                    self.orphan(pod);
                }
                let relabeled = old.is_none_or(|o| {
                    o.metadata.labels != pod.metadata.labels || controller_of(&o.metadata).is_some()
                });
                if relabeled && pod.metadata.deletion_timestamp.is_none() {
                    self.wake_selecting_jobs(pod);
                }
            }
        }
    }

    /// A pod is gone for good.
    fn pod_deleted(&self, pod: &Pod) {
        let Some(job) = controller_of(&pod.metadata)
            .and_then(|o| self.resolve(pod.metadata.namespace.as_deref(), o))
        else {
            return;
        };
        let key = key_of(&job.metadata);
        // A pod seen terminating was already counted as a deletion.
        if pod.metadata.deletion_timestamp.is_none() {
            self.expectations.deletion_observed(&key);
        }
        self.expectations.finalizer_removal_observed(&key, pods::uid(pod));
        self.wake(&job);
    }

    /// The Job as this controller last wrote it, when the store still shows an older version.
    fn freshest(&self, job: Arc<Job>) -> Arc<Job> {
        let key = key_of(&job.metadata);
        let mut written = lock(&self.written);
        let Some(entry) = written.get(&key) else { return job };
        let version = job.metadata.resource_version.clone().unwrap_or_default();
        let same_job = entry.latest.metadata.uid == job.metadata.uid;
        if same_job && entry.superseded.contains(&version) {
            return Arc::clone(&entry.latest);
        }
        // The store caught up, or someone else wrote since: the store is the truth again.
        written.remove(&key);
        job
    }

    /// Writes `status` on `job` (optimistically, at the Job's resource version).
    async fn write_status(&self, job: &Job, status: &JobStatus) -> Result<Job, JobError> {
        let key = key_of(&job.metadata);
        let name = job.metadata.name.as_deref().unwrap_or_default();
        let api = self.job_api(job.metadata.namespace.as_deref().unwrap_or_default());
        let body = Job {
            metadata: job.metadata.clone(),
            spec: job.spec.clone(),
            status: Some(status.clone()),
        };
        let written = api
            .replace_status(name, &PostParams::default(), &body)
            .await
            .map_err(|source| JobError::Status { job: key.clone(), source })?;
        let previous = job.metadata.resource_version.clone().unwrap_or_default();
        let mut cache = lock(&self.written);
        let entry = cache.entry(key).or_insert_with(|| Written {
            superseded: Vec::new(),
            latest: Arc::new(written.clone()),
        });
        entry.superseded.push(previous);
        entry.latest = Arc::new(written.clone());
        Ok(written)
    }

    async fn publish(&self, job: &Job, note: &Note, action: &str) {
        let kind = if note.warning { EventType::Warning } else { EventType::Normal };
        self.recorder
            .publish(&reference_to(job), kind, &note.reason, action, note.message.clone())
            .await;
    }

    async fn event(&self, job: &Job, warning: bool, reason: &str, message: String, action: &str) {
        let note = Note { warning, reason: reason.to_owned(), message };
        self.publish(job, &note, action).await;
    }

    /// The pods the Job owns, adopting orphans its selector matches and releasing owned pods
    /// it no longer matches, as upstream's `ClaimPods`. Adopted pods get the tracking
    /// finalizer.
    async fn claim_pods(&self, job: &Job) -> Result<Vec<Arc<Pod>>, JobError> {
        let key = key_of(&job.metadata);
        let selector = job.spec.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
        let selector = Selector::try_from(selector)
            .map_err(|source| JobError::Selector { job: key.clone(), source })?;
        let namespace = job.metadata.namespace.as_deref().unwrap_or_default();
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let candidates =
            self.pods.state_filter(|p| p.metadata.namespace.as_deref() == Some(namespace));
        let mut owned = Vec::new();
        let mut may_adopt: Option<bool> = None;
        for pod in candidates {
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            let matches = selector.matches(&labels);
            match controller_of(&pod.metadata) {
                Some(owner) if owner.uid != uid => {}
                Some(_) if matches || pod.metadata.deletion_timestamp.is_some() => owned.push(pod),
                Some(_) => {
                    if job.metadata.deletion_timestamp.is_none() {
                        self.release(&pod, &uid).await?;
                    }
                }
                None => {
                    if !matches
                        || pod.metadata.deletion_timestamp.is_some()
                        || job.metadata.deletion_timestamp.is_some()
                    {
                        continue;
                    }
                    // Adoption needs the Job to be alive right now, not just in the store.
                    let allowed = match may_adopt {
                        Some(allowed) => allowed,
                        None => {
                            let fresh = self
                                .job_api(namespace)
                                .get_opt(job.metadata.name.as_deref().unwrap_or_default())
                                .await
                                .map_err(|source| JobError::Read { job: key.clone(), source })?;
                            let allowed = fresh.is_some_and(|f| {
                                f.metadata.uid == job.metadata.uid
                                    && f.metadata.deletion_timestamp.is_none()
                            });
                            may_adopt = Some(allowed);
                            allowed
                        }
                    };
                    if allowed && let Some(adopted) = self.adopt(job, &pod).await? {
                        owned.push(Arc::new(adopted));
                    }
                }
            }
        }
        Ok(owned)
    }

    async fn adopt(&self, job: &Job, pod: &Pod) -> Result<Option<Pod>, JobError> {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let patch = json!({"metadata": {
            "ownerReferences": [crate::context::controller_reference(job)],
            "uid": pod.metadata.uid,
            "finalizers": [TRACKING_FINALIZER],
        }});
        let api = self.pod_api(pod.metadata.namespace.as_deref().unwrap_or_default());
        match api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
            Ok(adopted) => Ok(Some(adopted)),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(source) => Err(JobError::Pod { verb: "adopt", pod: key_of(&pod.metadata), source }),
        }
    }

    async fn release(&self, pod: &Pod, owner_uid: &str) -> Result<(), JobError> {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let patch = json!({"metadata": {
            "ownerReferences": [{"$patch": "delete", "uid": owner_uid}],
            "uid": pod.metadata.uid,
        }});
        let api = self.pod_api(pod.metadata.namespace.as_deref().unwrap_or_default());
        match api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
            Ok(_) => Ok(()),
            Err(error) if is_not_found(&error) => Ok(()),
            Err(source) => {
                Err(JobError::Pod { verb: "release", pod: key_of(&pod.metadata), source })
            }
        }
    }

    /// Carries out a sync's pod action. Returns its outcome and the first error, if any.
    async fn perform(
        &self,
        job: &Job,
        key: &str,
        action: &PodAction,
    ) -> (Outcome, Option<JobError>) {
        match action {
            PodAction::Nothing | PodAction::Backoff(_) => (Outcome::default(), None),
            PodAction::DeleteActive(pods) => self.delete_pods(job, key, pods, false).await,
            PodAction::Remove(pods) => {
                self.expectations.expect_deletions(key, pods.len());
                self.delete_pods(job, key, pods, true).await
            }
            PodAction::Create { count, indexes } => {
                self.create_pods(job, key, *count, indexes).await
            }
        }
    }

    /// Deletes pods; with `uncounted`, removes their tracking finalizer first so that they
    /// are never counted (a suspended Job's or a surplus pod).
    async fn delete_pods(
        &self,
        job: &Job,
        key: &str,
        doomed: &[Pod],
        uncounted: bool,
    ) -> (Outcome, Option<JobError>) {
        let results =
            future::join_all(doomed.iter().map(|pod| self.delete_pod(job, key, pod, uncounted)))
                .await;
        let mut outcome = Outcome::default();
        let mut first_error = None;
        for (pod, result) in doomed.iter().zip(results) {
            match result {
                Ok(()) => {
                    outcome.done += 1;
                    if is_ready(pod) {
                        outcome.ready_done += 1;
                    }
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        (outcome, first_error)
    }

    async fn delete_pod(
        &self,
        job: &Job,
        key: &str,
        pod: &Pod,
        uncounted: bool,
    ) -> Result<(), JobError> {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let api = self.pod_api(pod.metadata.namespace.as_deref().unwrap_or_default());
        let failed = |verb: &'static str, source: kube::Error| {
            // The watch will never show this deletion: stop waiting for it.
            if uncounted {
                self.expectations.deletion_observed(key);
            }
            JobError::Pod { verb, pod: key_of(&pod.metadata), source }
        };
        if uncounted && has_tracking_finalizer(pod) {
            let patch = finalizer_removal();
            if let Err(error) =
                api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch)).await
            {
                let not_found = is_not_found(&error);
                let error = failed("remove the tracking finalizer of", error);
                return if not_found { Ok(()) } else { Err(error) };
            }
        }
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                self.event(
                    job,
                    false,
                    "SuccessfulDelete",
                    format!("Deleted pod: {name}"),
                    "Delete",
                )
                .await;
                Ok(())
            }
            Err(error) if is_not_found(&error) => {
                if uncounted {
                    self.expectations.deletion_observed(key);
                }
                Ok(())
            }
            Err(error) => {
                self.event(
                    job,
                    true,
                    "FailedDelete",
                    format!("Error deleting: {}", describe(&error)),
                    "Delete",
                )
                .await;
                Err(failed("delete", error))
            }
        }
    }

    /// Creates pods in batches of 1, 2, 4…, stopping at the first batch with a failure (a
    /// quota or a terminating namespace would refuse all of them).
    async fn create_pods(
        &self,
        job: &Job,
        key: &str,
        count: usize,
        indexes: &[i32],
    ) -> (Outcome, Option<JobError>) {
        self.expectations.expect_creations(key, count);
        let mut outcome = Outcome::default();
        let mut first_error = None;
        let mut next = 0;
        let mut batch = SLOW_START.min(count);
        while next < count {
            let attempts = (next..next + batch).map(|i| {
                let index = indexes.get(i).copied();
                self.create_pod(job, key, index)
            });
            let results = future::join_all(attempts).await;
            next += batch;
            let mut batch_failed = false;
            for result in results {
                match result {
                    Ok(()) => outcome.done += 1,
                    Err(error) => {
                        batch_failed = true;
                        first_error.get_or_insert(error);
                    }
                }
            }
            if batch_failed {
                // The pods never attempted will never be seen either.
                for _ in next..count {
                    self.expectations.creation_observed(key);
                }
                break;
            }
            batch = (batch * 2).min(count - next);
        }
        (outcome, first_error)
    }

    async fn create_pod(&self, job: &Job, key: &str, index: Option<i32>) -> Result<(), JobError> {
        let pod = template::new_pod(job, index);
        let api = self.pod_api(job.metadata.namespace.as_deref().unwrap_or_default());
        match api.create(&PostParams::default(), &pod).await {
            Ok(created) => {
                let name = created.metadata.name.unwrap_or_default();
                tracing::debug!(job = %key, pod = %name, "job controller: created a pod");
                self.event(
                    job,
                    false,
                    "SuccessfulCreate",
                    format!("Created pod: {name}"),
                    "Create",
                )
                .await;
                Ok(())
            }
            Err(error) => {
                self.expectations.creation_observed(key);
                // A namespace being deleted refuses every pod; that is no news worth an Event.
                if !describe(&error).contains("because it is being terminated") {
                    self.event(
                        job,
                        true,
                        "FailedCreate",
                        format!("Error creating: {}", describe(&error)),
                        "Create",
                    )
                    .await;
                }
                Err(JobError::Pod { verb: "create", pod: format!("{key}-"), source: error })
            }
        }
    }

    /// Removes the tracking finalizers of finished pods. Returns the uids whose finalizer is
    /// gone (a pod already deleted counts) and the first error.
    async fn remove_finalizers(
        &self,
        key: &str,
        namespace: &str,
        pods: &[Finalized],
    ) -> (HashSet<String>, Option<JobError>) {
        self.expectations.expect_finalizers_removed(key, pods.iter().map(|p| p.uid.clone()));
        let api = self.pod_api(namespace);
        let patch = finalizer_removal();
        let results =
            future::join_all(pods.iter().map(|pod| {
                let api = api.clone();
                let patch = patch.clone();
                async move {
                    api.patch(&pod.name, &PatchParams::default(), &Patch::Strategic(&patch)).await
                }
            }))
            .await;
        let mut removed = HashSet::new();
        let mut first_error = None;
        for (pod, result) in pods.iter().zip(results) {
            match result {
                Ok(_) => {
                    removed.insert(pod.uid.clone());
                }
                Err(error) => {
                    // No update showing the removal will come.
                    self.expectations.finalizer_removal_observed(key, &pod.uid);
                    if is_not_found(&error) {
                        removed.insert(pod.uid.clone());
                    } else {
                        let pod = format!("{namespace}/{}", pod.name);
                        first_error.get_or_insert(JobError::Pod {
                            verb: "remove the tracking finalizer of",
                            pod,
                            source: error,
                        });
                    }
                }
            }
        }
        (removed, first_error)
    }
}

/// A strategic merge patch removing the tracking finalizer.
fn finalizer_removal() -> serde_json::Value {
    json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}})
}

fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// The server's message for an API error, else the error itself.
fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// Syncs one Job: the steps of `sync.rs`, with the API calls between them.
async fn reconcile(job: Arc<Job>, controller: Arc<JobController>) -> Result<Action, JobError> {
    capstan_kube::store::ready(&controller.pods).await;
    let job = controller.freshest(job);
    let key = key_of(&job.metadata);
    if is_finished(&job) {
        lock(&controller.backoffs).remove(&key);
        lock(&controller.failures).remove(&key);
        return Ok(Action::await_change());
    }
    let spec = job.spec.as_ref();
    if spec.and_then(|s| s.managed_by.as_deref()).is_some_and(|m| m != MANAGER) {
        return Ok(Action::await_change());
    }
    if spec
        .and_then(|s| s.completion_mode.as_deref())
        .is_some_and(|m| m != "NonIndexed" && m != "Indexed")
    {
        let message = "Skipped Job sync because completion mode is unknown".to_owned();
        controller.event(&job, true, "UnknownCompletionMode", message, "Sync").await;
        return Ok(Action::await_change());
    }
    // Expectations are read before the pods: a pod arriving in between then only delays the
    // sync, never lets it miss a pod it created.
    let satisfied = controller.expectations.satisfied(&key);
    let pods = controller.claim_pods(&job).await?;
    let going = controller.expectations.finalizers_going(&key);
    let backoff = lock(&controller.backoffs).get(&key).cloned().unwrap_or_default();
    let facts = Facts {
        now: Timestamp::now(),
        expectations_satisfied: satisfied,
        finalizers_going: &going,
        backoff: &backoff,
    };
    let mut sync = JobSync::new(&job, pods.iter().map(AsRef::as_ref).collect(), facts);
    let action = sync.pod_action();
    let (outcome, action_error) = controller.perform(&job, &key, &action).await;
    sync.pod_action_done(&action, outcome);
    let plan = sync.track();
    let mut current: Job = (*job).clone();
    if plan.flush_first {
        current = controller.write_status(&current, &sync.status).await?;
        sync.needs_flush = false;
        lock(&controller.backoffs).insert(key.clone(), sync.backoff.clone());
    }
    let namespace = job.metadata.namespace.as_deref().unwrap_or_default();
    let (removed, removal_error) =
        controller.remove_finalizers(&key, namespace, &plan.remove_finalizers).await;
    let needs_flush = sync.finalizers_removed(&removed);
    if let Some(error) = removal_error {
        if needs_flush {
            controller.write_status(&current, &sync.status).await?;
        }
        return Err(error);
    }
    let finished = sync.finish();
    if sync.needs_flush {
        controller.write_status(&current, &sync.status).await?;
    }
    for note in &sync.notes {
        controller.publish(&job, note, "Sync").await;
    }
    if let Some(finished) = finished {
        tracing::info!(job = %key, condition = %finished.type_, "job controller: job finished");
        for note in sync.finished_notes(&finished) {
            controller.publish(&job, &note, "Sync").await;
        }
        return Ok(Action::await_change());
    }
    if let Some(error) = action_error {
        return Err(error);
    }
    lock(&controller.failures).remove(&key);
    Ok(Action::requeue(sync.requeue_after.map_or(RESYNC, |after| after.min(RESYNC))))
}

fn error_policy(job: Arc<Job>, error: &JobError, controller: Arc<JobController>) -> Action {
    let key = key_of(&job.metadata);
    let attempts = {
        let mut failures = lock(&controller.failures);
        let attempts = failures.entry(key.clone()).or_insert(0);
        *attempts += 1;
        *attempts
    };
    let delay = RETRY_BASE.saturating_mul(1 << attempts.min(6).saturating_sub(1)).min(RETRY_MAX);
    tracing::debug!(job = %key, %error, retry_in = ?delay, "job controller: sync failed");
    Action::requeue(delay)
}

/// Watches pods into the store as an informer would, telling the controller what changed.
async fn watch_pods(controller: Arc<JobController>, mut writer: Writer<Pod>) {
    let api: Api<Pod> = Api::all(controller.context.client.clone());
    let mut events = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
    let mut relisted: Vec<Pod> = Vec::new();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                tracing::debug!(%error, "job controller: the pod watch failed; retrying");
                continue;
            }
        };
        match &event {
            Event::Apply(pod) => {
                let old = controller.pods.get(&ObjectRef::from_obj(pod));
                writer.apply_watcher_event(&event);
                controller.pod_changed(old.as_deref(), pod);
            }
            Event::Delete(pod) => {
                let old = controller.pods.get(&ObjectRef::from_obj(pod));
                writer.apply_watcher_event(&event);
                controller.pod_deleted(old.as_deref().unwrap_or(pod));
            }
            Event::Init => {
                relisted.clear();
                writer.apply_watcher_event(&event);
            }
            Event::InitApply(pod) => {
                relisted.push(pod.clone());
                writer.apply_watcher_event(&event);
            }
            Event::InitDone => {
                // A relist: what appeared, changed or vanished since the store's last state.
                let before: HashMap<String, Arc<Pod>> = controller
                    .pods
                    .state()
                    .into_iter()
                    .map(|p| (pods::uid(&p).to_owned(), p))
                    .collect();
                writer.apply_watcher_event(&event);
                let listed: HashSet<&str> = relisted.iter().map(pods::uid).collect();
                for pod in &relisted {
                    controller.pod_changed(before.get(pods::uid(pod)).map(AsRef::as_ref), pod);
                }
                for (uid, pod) in &before {
                    if !listed.contains(uid.as_str()) {
                        controller.pod_deleted(pod);
                    }
                }
                relisted.clear();
            }
        }
    }
}

/// Removes the tracking finalizer from pods whose Job is gone or finished, so that nothing
/// keeps them forever.
async fn release_orphans(
    controller: Arc<JobController>,
    mut orphaned: mpsc::UnboundedReceiver<ObjectRef<Pod>>,
) {
    capstan_kube::store::ready(&controller.jobs).await;
    capstan_kube::store::ready(&controller.pods).await;
    while let Some(reference) = orphaned.recv().await {
        let Some(pod) = controller.pods.get(&reference) else { continue };
        if !has_tracking_finalizer(&pod) {
            continue;
        }
        if let Some(owner) = controller_of(&pod.metadata) {
            if owner.kind != "Job" || owner.api_version != "batch/v1" {
                continue;
            }
            let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
            let job = match controller.resolve(Some(namespace), owner) {
                Some(job) => Some(job),
                // Not in the store: make sure the Job is really gone.
                None => match controller.job_api(namespace).get_opt(&owner.name).await {
                    Ok(job) => {
                        job.filter(|j| j.metadata.uid.as_deref() == Some(&owner.uid)).map(Arc::new)
                    }
                    Err(error) => {
                        tracing::debug!(%error, "job controller: cannot look up a pod's job");
                        retry_orphan(&controller, reference);
                        continue;
                    }
                },
            };
            if job.is_some_and(|job| !is_finished(&job)) {
                continue;
            }
        }
        let api = controller.pod_api(pod.metadata.namespace.as_deref().unwrap_or_default());
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        match api
            .patch(name, &PatchParams::default(), &Patch::Strategic(&finalizer_removal()))
            .await
        {
            Ok(_) => tracing::debug!(pod = %reference, "job controller: released an orphan pod"),
            Err(error) if is_not_found(&error) => {}
            Err(error) => {
                tracing::debug!(pod = %reference, %error, "job controller: cannot release an orphan pod");
                retry_orphan(&controller, reference);
            }
        }
    }
}

fn retry_orphan(controller: &Arc<JobController>, reference: ObjectRef<Pod>) {
    let orphans = controller.orphans.clone();
    tokio::spawn(async move {
        tokio::time::sleep(RETRY_BASE * 2).await;
        let _ = orphans.send(reference);
    });
}
