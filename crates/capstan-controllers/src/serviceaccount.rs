//! The service account controller: a `default` ServiceAccount in every active namespace,
//! created when a namespace appears and again whenever it is deleted, as
//! kube-controller-manager's `serviceaccount-controller` keeps it. Terminating namespaces get
//! none. Upstream records no Events here, and neither does this.

use crate::Context;
use crate::namespace::{Backoff, is_active};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use std::sync::Arc;
use std::time::Duration;

/// The service account every namespace gets.
const DEFAULT: &str = "default";

/// How often a namespace is looked at without any change to it or its account. Watches
/// drive the controller; this only bounds how long a missed event could go unnoticed.
const RESYNC: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("cannot create service account {namespace}/{DEFAULT}")]
    Create {
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

/// What the reconciler reads and writes through.
struct Ctx {
    client: kube::Client,
    /// The `default` ServiceAccounts of all namespaces (nothing else is watched).
    accounts: Store<ServiceAccount>,
    backoff: Backoff,
}

pub(crate) async fn run(context: Arc<Context>) {
    let client = context.client.clone();
    let (accounts, writer) = reflector::store();
    let only_default = watcher::Config::default().fields(&format!("metadata.name={DEFAULT}"));
    // The store is updated before the event reaches the controller, so a reconcile triggered
    // by a deletion no longer finds the deleted account.
    let account_events = watcher(Api::<ServiceAccount>::all(client.clone()), only_default)
        .reflect(writer)
        .touched_objects();
    let ctx = Arc::new(Ctx { client: client.clone(), accounts, backoff: Backoff::default() });
    tracing::info!("starting the service account controller");
    Controller::new(Api::<Namespace>::all(client), watcher::Config::default())
        .watches_stream(account_events, |account: ServiceAccount| {
            account.namespace().map(|namespace| ObjectRef::new(&namespace))
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            // Failed reconciles were logged by `error_policy`.
            if let Err(error) = result {
                tracing::debug!(%error, "service account controller");
            }
        })
        .await;
}

async fn reconcile(namespace: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let name = namespace.name_any();
    let action = ensure_account(&namespace, &ctx).await?;
    ctx.backoff.succeeded(&name);
    Ok(action)
}

async fn ensure_account(namespace: &Namespace, ctx: &Ctx) -> Result<Action, Error> {
    let name = namespace.name_any();
    if !is_active(namespace) {
        return Ok(Action::await_change());
    }
    let key = ObjectRef::new(DEFAULT).within(&name);
    if ctx.accounts.get(&key).is_some() {
        return Ok(Action::requeue(RESYNC));
    }
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT.to_owned()),
            namespace: Some(name.clone()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    let api = Api::<ServiceAccount>::namespaced(ctx.client.clone(), &name);
    match api.create(&PostParams::default(), &account).await {
        Ok(_) => tracing::info!(namespace = %name, "created the default service account"),
        // The store had not seen it yet; it exists, which is all this controller wants.
        Err(kube::Error::Api(status)) if status.is_already_exists() => {}
        // The namespace went meanwhile: nothing to keep in it.
        Err(kube::Error::Api(status)) if status.is_not_found() => {}
        // A namespace that began terminating meanwhile refuses new content (403); the retry
        // finds it terminating and stops there.
        Err(source) => return Err(Error::Create { namespace: name, source }),
    }
    Ok(Action::requeue(RESYNC))
}

fn error_policy(namespace: Arc<Namespace>, error: &Error, ctx: Arc<Ctx>) -> Action {
    ctx.backoff.retry(&namespace.name_any(), "serviceaccount-controller", error)
}
