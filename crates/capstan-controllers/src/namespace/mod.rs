//! The namespace controller: finishes the deletion of namespaces, as kube-controller-manager's
//! `namespace-controller` does. Once a namespace has a `deletionTimestamp` (the API server
//! set it, and phase `Terminating`, on DELETE), this deletes everything in it through the
//! API, keeps its status conditions saying what holds the deletion up, waits until every
//! type is empty (pods on nodes end only when their kubelet finished them), and then removes
//! the `kubernetes` finalizer through `namespaces/<name>/finalize`, after which the API
//! server deletes the namespace. Upstream records no Events here, and neither does this.
//!
//! [`Backoff`] and [`is_active`] also serve the other controllers that act per namespace.

mod backoff;
mod conditions;
mod content;

pub(crate) use backoff::Backoff;

use crate::Context;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceSpec, NamespaceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use std::sync::Arc;
use std::time::Duration;

/// The finalizer (in `spec.finalizers`) this controller owns.
const FINALIZER: &str = "kubernetes";

/// How long after a namespace's deletion the controller starts deleting its content, as
/// upstream waits: creations accepted just before the deletion (by an API server that had not
/// seen it yet, or not yet visible in the datastore) then get deleted too instead of
/// outliving the namespace.
const GRACE: Duration = Duration::from_secs(5);

/// How often a write of the namespace lost to a concurrent one is retried at once.
const CONFLICT_RETRIES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("cannot read namespace {namespace}")]
    Read {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot {change} of namespace {namespace}")]
    Write {
        namespace: String,
        change: Change,
        #[source]
        source: kube::Error,
    },
    #[error("namespace {namespace} was replaced by another of the same name while being deleted")]
    Replaced { namespace: String },
    #[error("cannot delete all content of namespace {namespace}: {}", failures.join("; "))]
    Content { namespace: String, failures: Vec<String> },
}

/// The writes this controller makes to a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// `status.phase: Terminating`, should the API server not have set it.
    Terminating,
    /// `spec.finalizers` without [`FINALIZER`], through the `finalize` subresource.
    Finalize,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Change::Terminating => "mark the deletion",
            Change::Finalize => "remove the kubernetes finalizer",
        })
    }
}

/// How far the deletion of one namespace got.
#[derive(Debug, PartialEq, Eq)]
enum Progress {
    /// Nothing more to do: finalized, gone, or not being deleted.
    Done,
    /// Content is left that should go within this many seconds.
    Waiting { estimate: u64 },
}

/// What the reconciler reads and writes through.
struct Ctx {
    client: kube::Client,
    backoff: Backoff,
}

/// Whether a namespace takes new content: not being deleted, and in phase `Active`.
pub(crate) fn is_active(namespace: &Namespace) -> bool {
    let phase = namespace.status.as_ref().and_then(|status| status.phase.as_deref());
    namespace.metadata.deletion_timestamp.is_none() && phase == Some("Active")
}

pub(crate) async fn run(context: Arc<Context>) {
    let client = context.client.clone();
    let ctx = Arc::new(Ctx { client: client.clone(), backoff: Backoff::default() });
    tracing::info!("starting the namespace controller");
    Controller::new(Api::<Namespace>::all(client), watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            // Failed reconciles were logged by `error_policy`.
            if let Err(error) = result {
                tracing::debug!(%error, "namespace controller");
            }
        })
        .await;
}

async fn reconcile(namespace: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let name = namespace.name_any();
    let Some(deleted) = &namespace.metadata.deletion_timestamp else {
        return Ok(Action::await_change());
    };
    let waited = since(&deleted.0, Timestamp::now());
    if waited < GRACE {
        return Ok(Action::requeue(GRACE - waited));
    }
    let action = match finish(&ctx, &name).await? {
        Progress::Done => Action::await_change(),
        // Upstream looks again after half the estimate: most content goes sooner.
        Progress::Waiting { estimate } => {
            tracing::debug!(namespace = %name, estimate, "content remains");
            Action::requeue(Duration::from_secs(estimate / 2 + 1))
        }
    };
    ctx.backoff.succeeded(&name);
    Ok(action)
}

fn error_policy(namespace: Arc<Namespace>, error: &Error, ctx: Arc<Ctx>) -> Action {
    ctx.backoff.retry(&namespace.name_any(), "namespace-controller", error)
}

/// One pass of the deletion of namespace `name`, from its current state (not the cached one:
/// other writers change a namespace while it terminates).
async fn finish(ctx: &Ctx, name: &str) -> Result<Progress, Error> {
    let api = Api::<Namespace>::all(ctx.client.clone());
    let read = |source| Error::Read { namespace: name.to_owned(), source };
    let Some(namespace) = api.get_opt(name).await.map_err(read)? else {
        return Ok(Progress::Done);
    };
    let Some(deleted) = namespace.metadata.deletion_timestamp.clone() else {
        return Ok(Progress::Done);
    };
    let Some(namespace) = write(&api, namespace, Change::Terminating).await? else {
        return Ok(Progress::Done);
    };
    if finalizers(&namespace).is_empty() {
        return Ok(Progress::Done);
    }
    let now = Timestamp::now();
    let pass = content::delete_all(&ctx.client, name, since(&deleted.0, now)).await;
    // The conditions are written whatever the outcome, so that one that cleared is seen to.
    let current = namespace.status.as_ref().and_then(|status| status.conditions.as_deref());
    let updated = conditions::updated(current.unwrap_or_default(), &pass.findings, &Time(now));
    let namespace = match updated {
        None => namespace,
        Some(conditions) => {
            let mut updated = namespace.clone();
            updated.status.get_or_insert_with(NamespaceStatus::default).conditions =
                Some(conditions);
            match api.replace_status(name, &PostParams::default(), &updated).await {
                Ok(written) => written,
                // Conditions are a report: a lost race is fixed by the next pass.
                Err(error) => {
                    tracing::info!(namespace = name, %error, "cannot update namespace conditions");
                    namespace
                }
            }
        }
    };
    let failures = pass.failures();
    if !failures.is_empty() {
        return Err(Error::Content { namespace: name.to_owned(), failures });
    }
    if pass.estimate > 0 {
        return Ok(Progress::Waiting { estimate: pass.estimate });
    }
    if write(&api, namespace, Change::Finalize).await?.is_some() {
        tracing::info!(namespace = name, "deleted all content; finalized the namespace");
    }
    Ok(Progress::Done)
}

/// Makes `change` to `namespace` unless it is made already, retrying against the current
/// namespace when a concurrent write wins. Returns the namespace as written, or `None` once
/// it is gone.
async fn write(
    api: &Api<Namespace>,
    mut namespace: Namespace,
    change: Change,
) -> Result<Option<Namespace>, Error> {
    let name = namespace.name_any();
    let failed = |source| Error::Write { namespace: name.clone(), change, source };
    for _ in 0..CONFLICT_RETRIES {
        let Some(changed) = changed(&namespace, change) else {
            return Ok(Some(namespace));
        };
        let params = PostParams::default();
        let written = match change {
            Change::Terminating => api.replace_status(&name, &params, &changed).await,
            Change::Finalize => api.replace_subresource("finalize", &name, &params, &changed).await,
        };
        match written {
            Ok(written) => return Ok(Some(written)),
            Err(kube::Error::Api(status)) if status.is_not_found() => return Ok(None),
            Err(kube::Error::Api(status)) if status.is_conflict() => {}
            Err(source) => return Err(failed(source)),
        }
        let Some(latest) = api.get_opt(&name).await.map_err(failed)? else {
            return Ok(None);
        };
        if latest.metadata.uid != namespace.metadata.uid {
            return Err(Error::Replaced { namespace: name });
        }
        namespace = latest;
    }
    Err(failed(kube::Error::Api(Box::new(kube::core::Status::failure(
        &format!("the namespace kept changing ({CONFLICT_RETRIES} conflicts in a row)"),
        "Conflict",
    )))))
}

/// `namespace` with `change` made, or `None` when it needs none.
fn changed(namespace: &Namespace, change: Change) -> Option<Namespace> {
    match change {
        Change::Terminating => {
            let phase = namespace.status.as_ref().and_then(|status| status.phase.as_deref());
            if namespace.metadata.deletion_timestamp.is_none() || phase == Some("Terminating") {
                return None;
            }
            let mut updated = namespace.clone();
            updated.status.get_or_insert_with(NamespaceStatus::default).phase =
                Some("Terminating".to_owned());
            Some(updated)
        }
        Change::Finalize => {
            let current = finalizers(namespace);
            if !current.iter().any(|finalizer| finalizer == FINALIZER) {
                return None;
            }
            // As upstream: the finalizers left, without repeats, in order.
            let mut kept: Vec<String> =
                current.into_iter().filter(|finalizer| finalizer != FINALIZER).collect();
            kept.sort();
            kept.dedup();
            let mut updated = namespace.clone();
            updated.spec.get_or_insert_with(NamespaceSpec::default).finalizers = Some(kept);
            Some(updated)
        }
    }
}

fn finalizers(namespace: &Namespace) -> Vec<String> {
    namespace.spec.as_ref().and_then(|spec| spec.finalizers.clone()).unwrap_or_default()
}

/// How long ago `then` was at `now` (zero for a time in the future).
fn since(then: &Timestamp, now: Timestamp) -> Duration {
    let millis = now.as_millisecond().saturating_sub(then.as_millisecond());
    Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn check(namespace: Value, change: Change, expected: Option<Value>) {
        let namespace: Namespace = serde_json::from_value(namespace).unwrap();
        let changed = changed(&namespace, change).map(|n| serde_json::to_value(n).unwrap());
        let expected = expected.map(|mut e| {
            e["apiVersion"] = json!("v1");
            e["kind"] = json!("Namespace");
            e
        });
        assert_eq!(changed, expected, "{change:?}");
    }

    #[test]
    fn writes_mark_the_deletion_and_drop_only_our_finalizer() {
        let deleting = json!({"name": "a", "deletionTimestamp": "2025-01-01T00:00:00Z"});
        let spec = json!({"finalizers": ["kubernetes"]});
        check(
            json!({"metadata": deleting, "spec": spec, "status": {"phase": "Active"}}),
            Change::Terminating,
            Some(json!({"metadata": deleting, "spec": spec, "status": {"phase": "Terminating"}})),
        );
        check(
            json!({"metadata": deleting, "status": {"phase": "Terminating"}}),
            Change::Terminating,
            None,
        );
        check(
            json!({"metadata": {"name": "a"}, "status": {"phase": "Active"}}),
            Change::Terminating,
            None,
        );
        check(
            json!({"metadata": deleting, "spec": {"finalizers": ["z", "kubernetes", "b", "z"]}}),
            Change::Finalize,
            Some(json!({"metadata": deleting, "spec": {"finalizers": ["b", "z"]}})),
        );
        check(
            json!({"metadata": deleting, "spec": spec}),
            Change::Finalize,
            Some(json!({"metadata": deleting, "spec": {"finalizers": []}})),
        );
        check(
            json!({"metadata": deleting, "spec": {"finalizers": ["other"]}}),
            Change::Finalize,
            None,
        );
    }

    #[test]
    fn active_means_not_deleted_and_phase_active() {
        let check = |namespace: Value, expected: bool| {
            let namespace: Namespace = serde_json::from_value(namespace).unwrap();
            assert_eq!(is_active(&namespace), expected, "{namespace:?}");
        };
        check(json!({"metadata": {"name": "a"}, "status": {"phase": "Active"}}), true);
        check(json!({"metadata": {"name": "a"}, "status": {"phase": "Terminating"}}), false);
        check(json!({"metadata": {"name": "a"}}), false);
        check(
            json!({"metadata": {"name": "a", "deletionTimestamp": "2025-01-01T00:00:00Z"},
                "status": {"phase": "Active"}}),
            false,
        );
    }
}
