//! The TTL-after-finished controller, upstream's `ttl-after-finished-controller`: deletes a
//! finished Job `ttlSecondsAfterFinished` seconds after its `Complete` or `Failed` condition,
//! in the foreground as upstream does, so the garbage collector removes its pods first.
//! Before deleting, the Job is read afresh: a TTL changed meanwhile is honoured.

use crate::Context;
use crate::job::finished_condition;
use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::watcher;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
enum TtlError {
    #[error("job {job} finished at no recorded time")]
    NoFinishTime { job: String },
    #[error("cannot clean up job {job}")]
    Api {
        job: String,
        #[source]
        source: kube::Error,
    },
}

/// When a Job's TTL runs out, if it has one and is finished.
fn expiry(job: &Job) -> Result<Option<Timestamp>, TtlError> {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Ok(None);
    };
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let Some(condition) = finished_condition(job) else { return Ok(None) };
    let name = || {
        format!(
            "{}/{}",
            job.metadata.namespace.as_deref().unwrap_or_default(),
            job.metadata.name.as_deref().unwrap_or_default()
        )
    };
    let finished = condition
        .last_transition_time
        .as_ref()
        .ok_or_else(|| TtlError::NoFinishTime { job: name() })?;
    Ok(finished.0.checked_add(SignedDuration::from_secs(i64::from(ttl))).ok())
}

/// How long until `at`, zero if it passed.
fn until(at: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

pub(crate) async fn run(context: Arc<Context>) {
    let api: Api<Job> = Api::all(context.client.clone());
    Controller::new(api, watcher::Config::default())
        .with_config(Config::default().concurrency(5))
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::trace!(%error, "ttl-after-finished: reconcile failed");
            }
        })
        .await;
}

async fn reconcile(job: Arc<Job>, context: Arc<Context>) -> Result<Action, TtlError> {
    let Some(expires) = expiry(&job)? else { return Ok(Action::await_change()) };
    let wait = until(expires, Timestamp::now());
    if !wait.is_zero() {
        return Ok(Action::requeue(wait));
    }
    let namespace = job.metadata.namespace.as_deref().unwrap_or_default();
    let name = job.metadata.name.as_deref().unwrap_or_default();
    let key = format!("{namespace}/{name}");
    let api: Api<Job> = Api::namespaced(context.client.clone(), namespace);
    let api_error = |source| TtlError::Api { job: key.clone(), source };
    let Some(fresh) = api.get_opt(name).await.map_err(api_error)? else {
        return Ok(Action::await_change());
    };
    match expiry(&fresh)? {
        None => return Ok(Action::await_change()),
        Some(expires) if !until(expires, Timestamp::now()).is_zero() => {
            return Ok(Action::requeue(until(expires, Timestamp::now())));
        }
        Some(_) => {}
    }
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            uid: fresh.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => tracing::info!(job = %key, "ttl-after-finished: deleted a finished job"),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
        Err(source) => return Err(api_error(source)),
    }
    Ok(Action::await_change())
}

fn error_policy(_job: Arc<Job>, error: &TtlError, _context: Arc<Context>) -> Action {
    tracing::debug!(%error, "ttl-after-finished: retrying");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn check(spec: Value, status: Value, deleting: bool, expected: Option<&str>) {
        let mut metadata = json!({"name": "j", "namespace": "d"});
        if deleting {
            metadata["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        let job: Job =
            serde_json::from_value(json!({"metadata": metadata, "spec": spec, "status": status}))
                .unwrap();
        let at = expiry(&job).unwrap().map(|t| t.to_string());
        assert_eq!(at.as_deref(), expected, "{spec} {status}");
    }

    #[test]
    fn finished_jobs_expire_their_ttl_after_the_finishing_condition() {
        let spec = json!({"ttlSecondsAfterFinished": 100, "template": {}});
        let complete = json!({"conditions": [{"type": "Complete", "status": "True",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
        let failed = json!({"conditions": [{"type": "FailureTarget", "status": "True",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}, {"type": "Failed", "status": "True",
            "lastTransitionTime": "2026-01-01T00:01:00Z"}]});
        check(spec.clone(), complete.clone(), false, Some("2026-01-01T00:01:40Z"));
        check(spec.clone(), failed, false, Some("2026-01-01T00:02:40Z"));
        check(
            spec.clone(),
            json!({"conditions": [{"type": "SuccessCriteriaMet", "status": "True"}]}),
            false,
            None,
        );
        check(spec, complete.clone(), true, None);
        check(json!({"template": {}}), complete, false, None);
        assert_eq!(
            until("2026-01-01T00:00:00Z".parse().unwrap(), "2026-01-01T00:00:05Z".parse().unwrap()),
            Duration::ZERO
        );
    }
}
