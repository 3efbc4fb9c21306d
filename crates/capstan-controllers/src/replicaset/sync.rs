//! One sync of one owner (upstream's `syncReplicaSet`): claim its pods, create or delete pods
//! to reach the desired count unless expectations hold it back, write its status when it
//! changed, and say when to look again. Retries back off exponentially per owner.

use super::claim::{self, Claim, Claimant};
use super::expectations::Expectations;
use super::kind::{PodSelector, Replicated};
use super::manage::{is_not_found, manage_replicas};
use super::status::{self, Inputs, Outcome};
use super::{Error, chain, controller_reference, owner_label, pod};
use capstan_kube::events::Recorder;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often every owner is synced even when nothing happened.
const RESYNC: Duration = Duration::from_secs(5 * 60);

/// The first retry after a failure; each further failure doubles it (upstream's per-item
/// rate limiter).
const RETRY_BASE: Duration = Duration::from_millis(5);

/// The longest wait between retries.
const RETRY_MAX: Duration = Duration::from_secs(1000);

/// What every sync of one kind shares.
pub(crate) struct Shared<K: Replicated> {
    pub(crate) client: kube::Client,
    pub(crate) recorder: Recorder,
    pub(crate) pods: Store<Pod>,
    pub(crate) owners: Store<K>,
    pub(crate) expectations: Arc<Expectations>,
    /// Consecutive failures per owner (`namespace/name`), for the retry backoff.
    pub(crate) failures: Mutex<HashMap<String, u32>>,
}

impl<K: Replicated> std::fmt::Debug for Shared<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("kind", &K::kind(&())).finish_non_exhaustive()
    }
}

impl<K: Replicated> Shared<K> {
    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        // A counter map stays consistent whatever panicked while holding it.
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Syncs one owner; the controller's reconciler.
pub(crate) async fn reconcile<K: Replicated>(
    owner: Arc<K>,
    shared: Arc<Shared<K>>,
) -> Result<Action, Error> {
    let action = sync::<K>(&owner, &shared).await?;
    shared.failures().remove(&pod::key(owner.meta()));
    Ok(action)
}

/// Retries a failed sync after a delay that doubles with each consecutive failure.
pub(crate) fn error_policy<K: Replicated>(
    owner: Arc<K>,
    error: &Error,
    shared: Arc<Shared<K>>,
) -> Action {
    let failures = {
        let mut failures = shared.failures();
        let count = failures.entry(pod::key(owner.meta())).or_default();
        *count = count.saturating_add(1);
        *count
    };
    let delay = retry_delay(failures);
    tracing::warn!(owner = %owner_label(&*owner), error = %chain(error), retry_in = ?delay, "sync failed");
    Action::requeue(delay)
}

/// The wait before the retry that follows `failures` consecutive failures.
fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    RETRY_BASE.saturating_mul(1 << doublings).min(RETRY_MAX)
}

async fn sync<K: Replicated>(owner: &K, shared: &Shared<K>) -> Result<Action, Error> {
    let meta = owner.meta();
    let (Some(namespace), Some(name), Some(uid)) =
        (meta.namespace.as_deref(), meta.name.as_deref(), meta.uid.as_deref())
    else {
        return Ok(Action::await_change());
    };
    let may_manage = shared.expectations.satisfied(uid, Instant::now());
    let selector = match owner.pod_selector() {
        Ok(selector) => selector,
        Err(error) => {
            // Retrying cannot help: the owner must change first.
            tracing::warn!(owner = %owner_label(owner), %error, "invalid selector");
            return Ok(Action::await_change());
        }
    };
    let candidates: Vec<Arc<Pod>> = shared
        .pods
        .state()
        .into_iter()
        .filter(|pod| pod.metadata.namespace.as_deref() == Some(namespace) && pod::is_active(pod))
        .collect();
    let pods = claim_pods(owner, &selector, candidates, shared).await?;

    let managed = if may_manage && meta.deletion_timestamp.is_none() {
        manage_replicas(owner, &pods, shared).await
    } else {
        Ok(())
    };

    let now = Timestamp::now();
    let failure = managed.as_ref().err().map(Error::condition_message);
    let too_few = pods.len() < usize::try_from(owner.desired_replicas()).unwrap_or(0);
    let outcome = match &failure {
        None => Outcome::Fine,
        Some(message) if too_few => Outcome::CreateFailed(message),
        Some(message) => Outcome::DeleteFailed(message),
    };
    let previous = owner.replica_status();
    let template_labels = owner.template().and_then(|t| t.metadata.as_ref()?.labels.as_ref());
    let next = status::calculate(&Inputs {
        pods: &pods,
        template_labels,
        min_ready_seconds: owner.min_ready_seconds(),
        generation: meta.generation.unwrap_or(0),
        previous: &previous,
        outcome,
        now,
    });
    if next != previous {
        let api = Api::<K>::namespaced(shared.client.clone(), namespace);
        let patch = status::patch(&next);
        match api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            // Deleted meanwhile: nothing left to report on.
            Err(source) if is_not_found(&source) => {}
            Err(source) => return Err(Error::WriteStatus { owner: owner_label(owner), source }),
        }
    }

    let mut requeue = RESYNC;
    if let Some(left) = shared.expectations.time_left(uid, Instant::now()) {
        // Should the watch never show what is expected, look again when that times out.
        requeue = requeue.min(left + Duration::from_secs(1));
    }
    if let Some(wait) = status::next_availability(&pods, owner.min_ready_seconds(), now) {
        requeue = requeue.min(wait);
    }
    managed?;
    Ok(Action::requeue(requeue))
}

/// The owner's pods: those it controls and its selector matches, and the matching orphans,
/// which it adopts; it releases those it controls that no longer match. Adoption first reads
/// the owner from the API, so that an owner deleted meanwhile never adopts. Every pod is
/// considered before the first error is returned.
async fn claim_pods<K: Replicated>(
    owner: &K,
    selector: &PodSelector,
    candidates: Vec<Arc<Pod>>,
    shared: &Shared<K>,
) -> Result<Vec<Arc<Pod>>, Error> {
    let meta = owner.meta();
    let uid = meta.uid.as_deref().unwrap_or_default();
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let claimant =
        Claimant { uid, namespace, deleting: meta.deletion_timestamp.is_some(), selector };
    let api = Api::<Pod>::namespaced(shared.client.clone(), namespace);
    let mut claimed = Vec::new();
    let mut errors = Vec::new();
    // Whether the owner may adopt, once a fresh read has told.
    let mut may_adopt: Option<bool> = None;
    for candidate in candidates {
        let pod_name = candidate.metadata.name.as_deref().unwrap_or_default();
        let pod_uid = candidate.metadata.uid.as_deref().unwrap_or_default();
        match claim::decide(&claimant, &candidate) {
            Claim::Keep => claimed.push(candidate),
            Claim::Ignore => {}
            Claim::Release => {
                tracing::debug!(owner = %owner_label(owner), pod = pod_name, "releasing pod");
                let patch = claim::release_patch(uid, pod_uid);
                match api.patch(pod_name, &PatchParams::default(), &Patch::Strategic(&patch)).await
                {
                    Ok(_) => {}
                    // Gone, or no longer carrying the reference, or another pod by now.
                    Err(source) if is_not_found(&source) || is_invalid(&source) => {}
                    Err(source) => errors.push(Error::ReleasePod {
                        owner: owner_label(owner),
                        pod: pod::key(&candidate.metadata),
                        source,
                    }),
                }
            }
            Claim::Adopt => {
                if may_adopt.is_none() {
                    let fresh = recheck_owner(owner, shared).await;
                    may_adopt = Some(fresh.is_ok());
                    if let Err(error) = fresh {
                        errors.push(error);
                    }
                }
                let Some(reference) =
                    controller_reference(owner).filter(|_| may_adopt == Some(true))
                else {
                    continue;
                };
                tracing::debug!(owner = %owner_label(owner), pod = pod_name, "adopting pod");
                let patch = claim::adopt_patch(&reference, pod_uid);
                match api.patch(pod_name, &PatchParams::default(), &Patch::Strategic(&patch)).await
                {
                    Ok(_) => claimed.push(candidate),
                    Err(source) if is_not_found(&source) => {}
                    Err(source) => errors.push(Error::AdoptPod {
                        owner: owner_label(owner),
                        pod: pod::key(&candidate.metadata),
                        source,
                    }),
                }
            }
        }
    }
    let mut errors = errors.into_iter();
    match errors.next() {
        None => Ok(claimed),
        Some(first) => {
            for other in errors {
                tracing::debug!(error = %chain(&other), "another claim failed");
            }
            Err(first)
        }
    }
}

/// Reads the owner from the API (not the cache): it may adopt only if it is still the same
/// object and not being deleted.
async fn recheck_owner<K: Replicated>(owner: &K, shared: &Shared<K>) -> Result<(), Error> {
    let meta = owner.meta();
    let api =
        Api::<K>::namespaced(shared.client.clone(), meta.namespace.as_deref().unwrap_or_default());
    let name = meta.name.as_deref().unwrap_or_default();
    let fresh = api
        .get(name)
        .await
        .map_err(|source| Error::RecheckOwner { owner: owner_label(owner), source })?;
    let (wanted, got) =
        (meta.uid.clone().unwrap_or_default(), fresh.meta().uid.clone().unwrap_or_default());
    if wanted != got {
        return Err(Error::OwnerReplaced { owner: owner_label(owner), got, wanted });
    }
    if let Some(at) = &fresh.meta().deletion_timestamp {
        return Err(Error::OwnerDeleting { owner: owner_label(owner), at: at.0.to_string() });
    }
    Ok(())
}

fn is_invalid(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.is_invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially() {
        let delays: Vec<Duration> = [1, 2, 3, 10, 18, 19, 40, u32::MAX].map(retry_delay).to_vec();
        let millis = |ms| Duration::from_millis(ms);
        assert_eq!(
            delays,
            [
                millis(5),
                millis(10),
                millis(20),
                millis(2560),
                millis(655_360),
                RETRY_MAX,
                RETRY_MAX,
                RETRY_MAX,
            ]
        );
    }
}
