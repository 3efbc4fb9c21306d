//! The CronJob controller, upstream's `cronjob-controller` (v2): creates a Job for each run
//! of a CronJob's schedule in its time zone, named after the run's minute so that a run is
//! never created twice; applies the concurrency policy (Allow, Forbid, Replace) and the
//! starting deadline; keeps `status.active`, `lastScheduleTime` and `lastSuccessfulTime`;
//! deletes finished Jobs beyond the history limits; and sleeps until the next run.
//!
//! It is kube-runtime's `applier` over a CronJob reflector, woken by CronJob events and by
//! the events of the Jobs they own (a Job reflector read by each sync). The schedule
//! arithmetic is in `schedule.rs` and `times.rs`.

mod schedule;
mod times;

use crate::Context;
use crate::job::{controller_of, finished_condition};
use capstan_kube::events::{EventType, Recorder, reference_to};
use futures_util::{StreamExt, stream};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::jiff::tz::TimeZone;
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{self, Action, trigger_owners, trigger_self};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::runtime::{WatchStreamExt, applier};
use schedule::{Schedule, load_zone, local_zone};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use times::{
    History, Missed, beyond_limit, job_name, most_recent, next_delay, rfc1123z, rfc3339_in,
};

/// Upstream's `--concurrent-cron-job-syncs`.
const WORKERS: u16 = 5;
/// The annotation recording, on each Job, the run it was created for.
const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

#[derive(Debug, thiserror::Error)]
pub(crate) enum CronJobError {
    #[error("cannot {verb} job {job}")]
    Job {
        verb: &'static str,
        job: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot {verb} cronjob {cron_job}")]
    CronJob {
        verb: &'static str,
        cron_job: String,
        #[source]
        source: kube::Error,
    },
    #[error("could not replace job {job}")]
    Replace { job: String },
}

struct CronJobController {
    context: Arc<Context>,
    recorder: Recorder,
    jobs: Store<Job>,
    /// The controller's own time zone, for CronJobs without `spec.timeZone`.
    local_zone: TimeZone,
}

impl std::fmt::Debug for CronJobController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CronJobController").finish_non_exhaustive()
    }
}

pub(crate) async fn run(context: Arc<Context>) {
    let (cron_jobs, cron_job_writer) = reflector::store::<CronJob>();
    let (jobs, job_writer) = reflector::store::<Job>();
    let client = context.client.clone();
    let cron_job_events =
        watcher::watcher(Api::<CronJob>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .reflect(cron_job_writer)
            .touched_objects();
    let job_events = watcher::watcher(Api::<Job>::all(client), watcher::Config::default())
        .default_backoff()
        .reflect(job_writer)
        .touched_objects();
    let queue = stream::select(
        trigger_self(cron_job_events, ()),
        trigger_owners::<CronJob, _>(job_events, (), ()),
    );
    let controller = Arc::new(CronJobController {
        recorder: context.recorder("cronjob-controller"),
        context,
        jobs,
        local_zone: local_zone(),
    });
    let config = controller::Config::default().concurrency(WORKERS);
    // The applier polls reconcile futures by value, so they are boxed to be `Unpin`.
    let reconciler = |cron_job, controller| Box::pin(reconcile(cron_job, controller));
    applier(reconciler, error_policy, controller, cron_jobs, queue, config)
        .for_each(|result| async move {
            match result {
                Ok(_) | Err(controller::Error::ObjectNotFound(_)) => {}
                Err(error) => tracing::debug!(%error, "cronjob controller: sync failed"),
            }
        })
        .await;
}

fn key_of(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// Which finished condition a Job has: `Complete` or `Failed`.
fn finished_type(job: &Job) -> Option<&str> {
    finished_condition(job).map(|c| c.type_.as_str())
}

fn active_of(cron_job: &CronJob) -> &[ObjectReference] {
    cron_job.status.as_ref().and_then(|s| s.active.as_deref()).unwrap_or_default()
}

fn in_active(cron_job: &CronJob, uid: Option<&str>) -> bool {
    active_of(cron_job).iter().any(|r| r.uid.as_deref() == uid)
}

fn remove_from_active(cron_job: &mut CronJob, uid: Option<&str>) {
    let status = cron_job.status.get_or_insert_with(Default::default);
    if let Some(active) = status.active.as_mut() {
        active.retain(|r| r.uid.as_deref() != uid);
        if active.is_empty() {
            status.active = None;
        }
    }
}

/// The server's message for an API error, else the error itself.
fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

impl CronJobController {
    fn job_api(&self, namespace: &str) -> Api<Job> {
        Api::namespaced(self.context.client.clone(), namespace)
    }

    async fn event(&self, cron_job: &CronJob, warning: bool, reason: &str, message: String) {
        let kind = if warning { EventType::Warning } else { EventType::Normal };
        let action = match reason {
            "SuccessfulCreate" | "FailedCreate" => "Create",
            "SuccessfulDelete" | "FailedDelete" => "Delete",
            _ => "Sync",
        };
        self.recorder.publish(&reference_to(cron_job), kind, reason, action, message).await;
    }

    /// The Jobs the CronJob controls.
    fn children(&self, cron_job: &CronJob) -> Vec<Arc<Job>> {
        let namespace = cron_job.metadata.namespace.as_deref();
        self.jobs.state_filter(|job| {
            job.metadata.namespace.as_deref() == namespace
                && controller_of(&job.metadata).is_some_and(|owner| {
                    owner.kind == "CronJob"
                        && Some(&owner.name) == cron_job.metadata.name.as_ref()
                        && Some(&owner.uid) == cron_job.metadata.uid.as_ref()
                })
        })
    }

    /// Deletes a Job (its pods in the background) and drops it from the active list.
    async fn delete_job(&self, cron_job: &mut CronJob, job: &Job) -> bool {
        let name = job.metadata.name.as_deref().unwrap_or_default();
        let namespace = job.metadata.namespace.as_deref().unwrap_or_default();
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        if let Err(error) = self.job_api(namespace).delete(name, &params).await {
            self.event(
                cron_job,
                true,
                "FailedDelete",
                format!("Deleted job: {}", describe(&error)),
            )
            .await;
            tracing::debug!(job = %key_of(&job.metadata), %error, "cronjob controller: cannot delete a job");
            return false;
        }
        remove_from_active(cron_job, job.metadata.uid.as_deref());
        self.event(cron_job, false, "SuccessfulDelete", format!("Deleted job {name}")).await;
        true
    }

    /// Deletes the oldest finished Jobs beyond the history limits. Returns whether the
    /// status changed.
    async fn clean_up_finished(&self, cron_job: &mut CronJob, children: &[Arc<Job>]) -> bool {
        let spec = cron_job.spec.clone().unwrap_or_default();
        let mut changed = false;
        for (kind, limit) in [
            ("Complete", spec.successful_jobs_history_limit),
            ("Failed", spec.failed_jobs_history_limit),
        ] {
            let Some(limit) = limit else { continue };
            let finished: Vec<&Job> = children
                .iter()
                .map(AsRef::as_ref)
                .filter(|job| finished_type(job) == Some(kind))
                .collect();
            for job in beyond_limit(&finished, limit) {
                changed |= self.delete_job(cron_job, job).await;
            }
        }
        changed
    }

    /// One sync, after upstream's `syncCronJob`: returns when to look again and whether the
    /// status changed.
    async fn sync(
        &self,
        cron_job: &mut CronJob,
        children: &[Arc<Job>],
        now: Timestamp,
    ) -> Result<(Option<Duration>, bool), CronJobError> {
        let mut changed = false;
        let namespace = cron_job.metadata.namespace.clone().unwrap_or_default();
        let key = key_of(&cron_job.metadata);
        let uids: HashSet<Option<&str>> =
            children.iter().map(|j| j.metadata.uid.as_deref()).collect();
        for job in children {
            let uid = job.metadata.uid.as_deref();
            let name = job.metadata.name.as_deref().unwrap_or_default();
            let listed = in_active(cron_job, uid);
            let finished = finished_type(job);
            if !listed && finished.is_none() {
                // The store may lag behind this controller's own status write.
                let fresh = self.fresh_cron_job(cron_job).await?;
                if in_active(&fresh, uid) {
                    *cron_job = fresh;
                    continue;
                }
                let message =
                    format!("Saw a job that the controller did not create or forgot: {name}");
                self.event(cron_job, true, "UnexpectedJob", message).await;
            } else if listed && let Some(kind) = finished {
                remove_from_active(cron_job, uid);
                self.event(
                    cron_job,
                    false,
                    "SawCompletedJob",
                    format!("Saw completed job: {name}, status: {kind}"),
                )
                .await;
                changed = true;
            } else if finished == Some("Complete") {
                let completed = job.status.as_ref().and_then(|s| s.completion_time.clone());
                let status = cron_job.status.get_or_insert_with(Default::default);
                let later = match (&completed, &status.last_successful_time) {
                    (Some(completed), Some(last)) => completed.0 > last.0,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                if later {
                    status.last_successful_time = completed;
                    changed = true;
                }
            }
        }
        // Active Jobs that are gone (looked up, in case the store lags) leave the list.
        for reference in active_of(cron_job).to_vec() {
            if uids.contains(&reference.uid.as_deref()) {
                continue;
            }
            let name = reference.name.clone().unwrap_or_default();
            match self.job_api(&namespace).get_opt(&name).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    self.event(
                        cron_job,
                        false,
                        "MissingJob",
                        format!("Active job went missing: {name}"),
                    )
                    .await;
                    remove_from_active(cron_job, reference.uid.as_deref());
                    changed = true;
                }
                Err(source) => {
                    return Err(CronJobError::Job {
                        verb: "get",
                        job: format!("{namespace}/{name}"),
                        source,
                    });
                }
            }
        }
        if cron_job.metadata.deletion_timestamp.is_some() {
            return Ok((None, changed));
        }
        let spec = cron_job.spec.clone().unwrap_or_default();
        let zone = match spec.time_zone.as_deref() {
            Some(name) => match load_zone(name) {
                Ok(zone) => zone,
                Err(error) => {
                    self.event(
                        cron_job,
                        true,
                        "UnknownTimeZone",
                        format!("invalid timeZone: {name:?}: {error}"),
                    )
                    .await;
                    return Ok((None, changed));
                }
            },
            None => self.local_zone.clone(),
        };
        if spec.suspend == Some(true) {
            tracing::trace!(cron_job = %key, "cronjob controller: suspended");
            return Ok((None, changed));
        }
        let parsed = Schedule::parse(&spec.schedule);
        if spec.schedule.contains("TZ") {
            let message = format!(
                "CRON_TZ or TZ used in schedule {:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details",
                spec.schedule
            );
            self.event(cron_job, true, "UnsupportedSchedule", message).await;
        }
        let schedule = match parsed {
            Ok(schedule) => schedule,
            Err(error) => {
                let message = format!("unparseable schedule: {:?} : {error}", spec.schedule);
                self.event(cron_job, true, "UnparseableSchedule", message).await;
                return Ok((None, changed));
            }
        };
        // A zone in the schedule itself wins, as in robfig/cron.
        let zone = match schedule.zone() {
            Some(name) => load_zone(name).unwrap_or(zone),
            None => zone,
        };
        let history = History {
            created: cron_job.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0),
            last_scheduled: cron_job
                .status
                .as_ref()
                .and_then(|s| s.last_schedule_time.as_ref())
                .map(|t| t.0),
            starting_deadline_seconds: spec.starting_deadline_seconds,
        };
        let recent = match most_recent(history, now, &schedule, &zone, true) {
            Ok(recent) => recent,
            Err(error) => {
                let message = format!("invalid schedule: {} : {error}", spec.schedule);
                self.event(cron_job, true, "InvalidSchedule", message).await;
                return Ok((None, changed));
            }
        };
        let next = |cron_job: &CronJob| {
            let last_scheduled =
                cron_job.status.as_ref().and_then(|s| s.last_schedule_time.as_ref()).map(|t| t.0);
            next_delay(History { last_scheduled, ..history }, now, &schedule, &zone)
        };
        let Some(scheduled) = recent.due.filter(|due| *due <= now) else {
            return Ok((next(cron_job), changed));
        };
        if recent.missed == Missed::Many {
            let message = "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew";
            self.event(cron_job, true, "TooManyMissedTimes", message.to_owned()).await;
            tracing::info!(cron_job = %key, "cronjob controller: too many missed times");
        }
        if let Some(deadline) = spec.starting_deadline_seconds
            && scheduled
                .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(deadline))
                .is_ok_and(|end| end < now)
        {
            let message = format!("Missed scheduled time to start a job: {}", rfc1123z(scheduled));
            self.event(cron_job, true, "MissSchedule", message).await;
            return Ok((next(cron_job), changed));
        }
        let name = job_name(cron_job.metadata.name.as_deref().unwrap_or_default(), scheduled);
        let already = active_of(cron_job).iter().any(|r| r.name.as_deref() == Some(&name))
            || history.last_scheduled == Some(scheduled);
        if already {
            return Ok((next(cron_job), changed));
        }
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        if policy == "Forbid" && !active_of(cron_job).is_empty() {
            let message = "Not starting job because prior execution is running and concurrency policy is Forbid";
            self.event(cron_job, false, "JobAlreadyActive", message.to_owned()).await;
            return Ok((next(cron_job), changed));
        }
        if policy == "Replace" {
            for reference in active_of(cron_job).to_vec() {
                let job_name = reference.name.clone().unwrap_or_default();
                let job = match self.job_api(&namespace).get(&job_name).await {
                    Ok(job) => job,
                    Err(source) => {
                        self.event(
                            cron_job,
                            true,
                            "FailedGet",
                            format!("Get job: {}", describe(&source)),
                        )
                        .await;
                        return Err(CronJobError::Job {
                            verb: "get",
                            job: format!("{namespace}/{job_name}"),
                            source,
                        });
                    }
                };
                if !self.delete_job(cron_job, &job).await {
                    return Err(CronJobError::Replace { job: format!("{namespace}/{job_name}") });
                }
                changed = true;
            }
        }
        let request =
            new_job(cron_job, &name, scheduled, &zone_for_annotation(spec.time_zone.as_deref()));
        let created = match self.job_api(&namespace).create(&PostParams::default(), &request).await
        {
            Ok(created) => {
                self.event(cron_job, false, "SuccessfulCreate", format!("Created job {name}"))
                    .await;
                tracing::info!(cron_job = %key, job = %name, "cronjob controller: created a job");
                created
            }
            Err(kube::Error::Api(status))
                if status.code == 409 && status.reason == "AlreadyExists" =>
            {
                // Created earlier, but the status write that should have listed it failed.
                let existing = self.job_api(&namespace).get(&name).await.map_err(|source| {
                    CronJobError::Job { verb: "get", job: format!("{namespace}/{name}"), source }
                })?;
                let ours = controller_of(&existing.metadata)
                    .is_some_and(|o| Some(&o.uid) == cron_job.metadata.uid.as_ref());
                if !ours || in_active(cron_job, existing.metadata.uid.as_deref()) {
                    return Ok((None, changed));
                }
                existing
            }
            Err(source) => {
                let terminating = describe(&source).contains("because it is being terminated");
                if !terminating {
                    self.event(
                        cron_job,
                        true,
                        "FailedCreate",
                        format!("Error creating job: {}", describe(&source)),
                    )
                    .await;
                }
                return Err(CronJobError::Job {
                    verb: "create",
                    job: format!("{namespace}/{name}"),
                    source,
                });
            }
        };
        let status = cron_job.status.get_or_insert_with(Default::default);
        status.active.get_or_insert_with(Vec::new).push(job_reference(&created));
        status.last_schedule_time = Some(Time(scheduled));
        Ok((next(cron_job), true))
    }

    async fn fresh_cron_job(&self, cron_job: &CronJob) -> Result<CronJob, CronJobError> {
        let namespace = cron_job.metadata.namespace.as_deref().unwrap_or_default();
        let name = cron_job.metadata.name.as_deref().unwrap_or_default();
        let api: Api<CronJob> = Api::namespaced(self.context.client.clone(), namespace);
        api.get(name).await.map_err(|source| CronJobError::CronJob {
            verb: "get",
            cron_job: key_of(&cron_job.metadata),
            source,
        })
    }
}

/// The zone the scheduled-timestamp annotation is written in: the CronJob's, else UTC
/// (upstream loads the empty name, which is UTC).
fn zone_for_annotation(name: Option<&str>) -> TimeZone {
    name.and_then(|n| load_zone(n).ok()).unwrap_or(TimeZone::UTC)
}

/// The Job of one run: the template's labels, annotations and spec, owned by the CronJob.
fn new_job(cron_job: &CronJob, name: &str, scheduled: Timestamp, zone: &TimeZone) -> Job {
    let template = cron_job.spec.as_ref().map(|s| s.job_template.clone()).unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();
    let mut annotations = template_meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.to_owned(), rfc3339_in(scheduled, zone));
    let owner = OwnerReference {
        api_version: "batch/v1".to_owned(),
        kind: "CronJob".to_owned(),
        name: cron_job.metadata.name.clone().unwrap_or_default(),
        uid: cron_job.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: cron_job.metadata.namespace.clone(),
            labels: template_meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

fn job_reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".to_owned()),
        kind: Some("Job".to_owned()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

async fn reconcile(
    cron_job: Arc<CronJob>,
    controller: Arc<CronJobController>,
) -> Result<Action, CronJobError> {
    capstan_kube::store::ready(&controller.jobs).await;
    let children = controller.children(&cron_job);
    let mut updated = (*cron_job).clone();
    let cleaned = controller.clean_up_finished(&mut updated, &children).await;
    let synced = controller.sync(&mut updated, &children, Timestamp::now()).await;
    let changed = cleaned || synced.as_ref().is_ok_and(|(_, changed)| *changed);
    if changed {
        let namespace = updated.metadata.namespace.as_deref().unwrap_or_default();
        let name = updated.metadata.name.as_deref().unwrap_or_default();
        let api: Api<CronJob> = Api::namespaced(controller.context.client.clone(), namespace);
        api.replace_status(name, &PostParams::default(), &updated).await.map_err(|source| {
            CronJobError::CronJob {
                verb: "update the status of",
                cron_job: key_of(&updated.metadata),
                source,
            }
        })?;
    }
    match synced? {
        (Some(after), _) => Ok(Action::requeue(after)),
        (None, _) => Ok(Action::await_change()),
    }
}

fn error_policy(
    cron_job: Arc<CronJob>,
    error: &CronJobError,
    _controller: Arc<CronJobController>,
) -> Action {
    // Mostly a status write against a store that had not caught up: worth retrying soon.
    tracing::debug!(cron_job = %key_of(&cron_job.metadata), %error, "cronjob controller: retrying");
    Action::requeue(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jobs_of_a_run_copy_the_template_and_name_the_run() {
        let cron_job: CronJob = serde_json::from_value(json!({
            "metadata": {"name": "hello", "namespace": "d", "uid": "cu"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {
                "metadata": {"labels": {"app": "hello"}, "annotations": {"note": "x"}},
                "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": []}}}}}}))
        .unwrap();
        let scheduled: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let zone = load_zone("Europe/Paris").unwrap();
        let job = new_job(&cron_job, &job_name("hello", scheduled), scheduled, &zone);
        assert_eq!(
            serde_json::to_value(&job).unwrap(),
            json!({"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": "hello-29453761", "namespace": "d",
                    "labels": {"app": "hello"},
                    "annotations": {"note": "x",
                        "batch.kubernetes.io/cronjob-scheduled-timestamp": "2026-01-01T01:01:00+01:00"},
                    "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "hello",
                        "uid": "cu", "controller": true, "blockOwnerDeletion": true}]},
                "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": []}}}})
        );
    }
}
