//! The ReplicaSet and ReplicationController controllers (upstream's
//! pkg/controller/replicaset, which serves both kinds): each keeps the number of active pods
//! its owners select at `spec.replicas`, adopting matching orphans and releasing pods that
//! stopped matching, and reports the count, readiness and availability in the owner's status.
//!
//! Shape: one pod watch and store shared by both kinds ([`informer`]), and per kind a
//! kube-runtime `Controller` over the owners, triggered by the owners' own watch and by the
//! pod changes that concern them. The pure decisions live in their own modules: which pods
//! to claim ([`claim`]), which to delete first ([`ranking`]), the status ([`status`]), and
//! the [`expectations`] that keep a slow watch from causing duplicate pods.

mod claim;
mod expectations;
mod informer;
mod kind;
mod manage;
mod pod;
mod ranking;
mod status;
mod sync;

use crate::Context;
use expectations::Expectations;
use futures_util::{StreamExt, TryStreamExt};
use informer::{PodRoute, Route};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kind::Replicated;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{self, Config, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::watcher::{self, Event};
use std::sync::{Arc, Mutex};
use sync::Shared;
use tokio::sync::mpsc;

/// How many owners of one kind sync at once (upstream's `--concurrent-replicaset-syncs`).
const CONCURRENT_SYNCS: u16 = 5;

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("cannot create a pod for {owner}")]
    CreatePod {
        owner: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot create pods for {owner}: its pod template has no labels")]
    NoLabels { owner: String },
    #[error("cannot delete pod {pod} of {owner}")]
    DeletePod {
        owner: String,
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot adopt pod {pod} into {owner}")]
    AdoptPod {
        owner: String,
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot release pod {pod} from {owner}")]
    ReleasePod {
        owner: String,
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot read {owner} again before adopting pods")]
    RecheckOwner {
        owner: String,
        #[source]
        source: kube::Error,
    },
    #[error("{owner} has just been deleted at {at}")]
    OwnerDeleting { owner: String, at: String },
    #[error("original {owner} is gone: got uid {got}, wanted {wanted}")]
    OwnerReplaced { owner: String, got: String, wanted: String },
    #[error("cannot write the status of {owner}")]
    WriteStatus {
        owner: String,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// The message of the `ReplicaFailure` condition, worded as upstream's.
    fn condition_message(&self) -> String {
        match self {
            Error::CreatePod { source, .. } => api_message(source),
            Error::NoLabels { .. } => "unable to create pods, no labels".into(),
            Error::DeletePod { source, .. } => {
                format!("unable to delete pods: {}", api_message(source))
            }
            other => chain(other),
        }
    }
}

/// What the API said, without kube-rs's decoration: a Status's message, as upstream prints
/// its errors.
fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

use crate::context::error_chain as chain;

/// `ReplicaSet namespace/name`, for logs and errors.
fn owner_label<K: Replicated>(owner: &K) -> String {
    format!("{} {}", K::kind(&()), pod::key(owner.meta()))
}

/// The reference that makes `owner` a pod's controller, blocking the owner's foreground
/// deletion until the pod is gone (`None` for an owner without name or uid).
fn controller_reference<K: Replicated>(owner: &K) -> Option<OwnerReference> {
    owner.controller_owner_ref(&())?;
    Some(crate::context::controller_reference(owner))
}

/// Runs both controllers until dropped.
pub(crate) async fn run(context: Arc<Context>) {
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (replica_sets, replica_set_route) = Instance::<ReplicaSet>::new(&context, &pods);
    let (replication_controllers, replication_controller_route) =
        Instance::<ReplicationController>::new(&context, &pods);
    let routes: Vec<Box<dyn PodRoute>> =
        vec![Box::new(replica_set_route), Box::new(replication_controller_route)];
    // One future rather than spawned tasks, so that aborting the controller manager's task
    // stops the watches and controllers with it.
    tokio::join!(
        informer::run(context.client.clone(), pod_writer, routes),
        replica_sets.run(),
        replication_controllers.run(),
    );
}

/// The controller of one kind, before it runs.
struct Instance<K: Replicated> {
    shared: Arc<Shared<K>>,
    owner_writer: Writer<K>,
    triggers: mpsc::UnboundedReceiver<ObjectRef<K>>,
}

impl<K: Replicated> Instance<K> {
    /// The controller, and the route by which pod changes reach it.
    fn new(context: &Context, pods: &Store<Pod>) -> (Instance<K>, Route<K>) {
        let (owners, owner_writer) = reflector::store::<K>();
        let expectations = Arc::new(Expectations::default());
        let (sender, triggers) = mpsc::unbounded_channel();
        let route = Route {
            expectations: Arc::clone(&expectations),
            owners: owners.clone(),
            triggers: sender,
        };
        let shared = Arc::new(Shared {
            client: context.client.clone(),
            recorder: context.recorder(K::CONTROLLER),
            pods: pods.clone(),
            owners,
            expectations,
            failures: Mutex::default(),
        });
        (Instance { shared, owner_writer, triggers }, route)
    }

    async fn run(self) {
        let Instance { shared, owner_writer, triggers } = self;
        // Syncing before every pod is known would count too few pods and create duplicates.
        // Both kinds wait on the one pod store: `store::ready` wakes every waiter.
        capstan_kube::store::ready(&shared.pods).await;
        let expectations = Arc::clone(&shared.expectations);
        let owners =
            watcher::watcher(Api::<K>::all(shared.client.clone()), watcher::Config::default())
                .default_backoff()
                .reflect(owner_writer)
                .inspect_ok(move |event| {
                    // An owner deleted and created again under its name starts clean.
                    if let Event::Delete(owner) = event
                        && let Some(uid) = owner.meta().uid.as_deref()
                    {
                        expectations.forget(uid);
                    }
                })
                .applied_objects();
        let pod_triggers = futures_util::stream::unfold(triggers, |mut receiver| async move {
            receiver.recv().await.map(|trigger| (trigger, receiver))
        });
        tracing::info!(controller = K::CONTROLLER, "controller started");
        Controller::for_stream(owners, shared.owners.clone())
            .reconcile_on(pod_triggers)
            .with_config(Config::default().concurrency(CONCURRENT_SYNCS))
            .run(sync::reconcile, sync::error_policy, shared)
            .for_each(|result| {
                match result {
                    Ok(_) => {}
                    // Logged by the error policy.
                    Err(controller::Error::ReconcilerFailed(..)) => {}
                    // A pod's owner that is not (or no longer) in the store.
                    Err(controller::Error::ObjectNotFound(reference)) => {
                        tracing::trace!(%reference, "no such owner");
                    }
                    Err(error) => {
                        tracing::warn!(controller = K::CONTROLLER, error = %chain(&error), "controller error");
                    }
                }
                std::future::ready(())
            })
            .await;
    }
}
