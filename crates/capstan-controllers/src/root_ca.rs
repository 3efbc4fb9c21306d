//! The root CA publisher: a ConfigMap `kube-root-ca.crt` holding the cluster CA
//! (`ca.crt`) in every active namespace, so that pods can verify the API server, as
//! kube-controller-manager's `root-ca-cert-publisher` keeps it. Deleted, it is created again;
//! changed, its data and description are put back. Terminating namespaces get none. Upstream
//! records no Events here, and neither does this.

use crate::Context;
use crate::namespace::{Backoff, is_active};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The ConfigMap every namespace gets.
const NAME: &str = "kube-root-ca.crt";
/// Its key holding the CA bundle.
const KEY: &str = "ca.crt";
const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
/// Upstream's description of the ConfigMap, word for word: clients may show it.
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver \
    when using internal endpoints such as the internal service IP or kubernetes.default.svc. \
    No other usage is guaranteed across distributions of Kubernetes clusters.";

/// How often a namespace is looked at without any change to it or its ConfigMap. Watches
/// drive the controller; this only bounds how long a missed event could go unnoticed.
const RESYNC: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("cannot create configmap {namespace}/{NAME}")]
    Create {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot update configmap {namespace}/{NAME}")]
    Update {
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

/// What the reconciler reads and writes through.
struct Ctx {
    client: kube::Client,
    /// The `kube-root-ca.crt` ConfigMaps of all namespaces (nothing else is watched).
    published: Store<ConfigMap>,
    root_ca_pem: String,
    backoff: Backoff,
}

pub(crate) async fn run(context: Arc<Context>) {
    let client = context.client.clone();
    let (published, writer) = reflector::store();
    let only_ours = watcher::Config::default().fields(&format!("metadata.name={NAME}"));
    // The store is updated before the event reaches the controller, so a reconcile triggered
    // by a change or deletion sees it.
    let configmap_events =
        watcher(Api::<ConfigMap>::all(client.clone()), only_ours).reflect(writer).touched_objects();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        published,
        root_ca_pem: context.config.root_ca_pem.clone(),
        backoff: Backoff::default(),
    });
    tracing::info!("starting the root CA publisher");
    Controller::new(Api::<Namespace>::all(client), watcher::Config::default())
        .watches_stream(configmap_events, |configmap: ConfigMap| {
            configmap.namespace().map(|namespace| ObjectRef::new(&namespace))
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            // Failed reconciles were logged by `error_policy`.
            if let Err(error) = result {
                tracing::debug!(%error, "root CA publisher");
            }
        })
        .await;
}

async fn reconcile(namespace: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let name = namespace.name_any();
    let action = publish(&namespace, &ctx).await?;
    ctx.backoff.succeeded(&name);
    Ok(action)
}

async fn publish(namespace: &Namespace, ctx: &Ctx) -> Result<Action, Error> {
    let name = namespace.name_any();
    if !is_active(namespace) {
        return Ok(Action::await_change());
    }
    let api = Api::<ConfigMap>::namespaced(ctx.client.clone(), &name);
    let Some(current) = ctx.published.get(&ObjectRef::new(NAME).within(&name)) else {
        let configmap = ConfigMap {
            metadata: ObjectMeta {
                name: Some(NAME.to_owned()),
                namespace: Some(name.clone()),
                annotations: Some(BTreeMap::from([(
                    DESCRIPTION_ANNOTATION.to_owned(),
                    DESCRIPTION.to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(wanted_data(&ctx.root_ca_pem)),
            ..ConfigMap::default()
        };
        return match api.create(&PostParams::default(), &configmap).await {
            Ok(_) => {
                tracing::info!(namespace = %name, "published the root CA");
                Ok(Action::requeue(RESYNC))
            }
            // The namespace went meanwhile: nothing to keep in it.
            Err(kube::Error::Api(status)) if status.is_not_found() => Ok(Action::await_change()),
            // An existing ConfigMap the store has not seen yet must still be checked, so
            // AlreadyExists is retried like any failure; a namespace that began terminating
            // meanwhile refuses new content (403), and the retry finds it terminating.
            Err(source) => Err(Error::Create { namespace: name, source }),
        };
    };
    let Some(restored) = restored(&current, &ctx.root_ca_pem) else {
        return Ok(Action::requeue(RESYNC));
    };
    // The update carries the resourceVersion read: a concurrent change is a conflict, retried
    // against the newer object.
    api.replace(NAME, &PostParams::default(), &restored)
        .await
        .map_err(|source| Error::Update { namespace: name.clone(), source })?;
    tracing::info!(namespace = %name, "restored the published root CA");
    Ok(Action::requeue(RESYNC))
}

fn error_policy(namespace: Arc<Namespace>, error: &Error, ctx: Arc<Ctx>) -> Action {
    ctx.backoff.retry(&namespace.name_any(), "root-ca-cert-publisher", error)
}

/// The ConfigMap's whole data: only the CA bundle.
fn wanted_data(root_ca_pem: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(KEY.to_owned(), root_ca_pem.to_owned())])
}

/// The ConfigMap with its data and description put back, or `None` when both are as they
/// should be. As upstream, any description is accepted once present, while the data must be
/// exactly the CA bundle (other keys are removed).
fn restored(current: &ConfigMap, root_ca_pem: &str) -> Option<ConfigMap> {
    let data = wanted_data(root_ca_pem);
    let described = current
        .annotations()
        .get(DESCRIPTION_ANNOTATION)
        .is_some_and(|description| !description.is_empty());
    if current.data.as_ref() == Some(&data) && described {
        return None;
    }
    let mut restored = current.clone();
    restored.data = Some(data);
    restored.annotations_mut().insert(DESCRIPTION_ANNOTATION.to_owned(), DESCRIPTION.to_owned());
    Some(restored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n";

    fn check(current: serde_json::Value, expected: Option<serde_json::Value>) {
        let current: ConfigMap = serde_json::from_value(current).unwrap();
        let restored = restored(&current, CA).map(|c| serde_json::to_value(c).unwrap());
        assert_eq!(restored, expected);
    }

    #[test]
    fn restores_data_and_description() {
        let meta = json!({"name": NAME, "namespace": "a", "resourceVersion": "7"});
        let described = json!({"name": NAME, "namespace": "a", "resourceVersion": "7",
            "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION}});
        let wanted = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": described, "data": {KEY: CA}});
        // As it should be: nothing to write.
        check(json!({"metadata": described, "data": {KEY: CA}}), None);
        // Another description is kept.
        let other = json!({"name": NAME, "annotations": {DESCRIPTION_ANNOTATION: "mine"}});
        check(json!({"metadata": other, "data": {KEY: CA}}), None);
        // Changed, missing, or extra data is put back; the resourceVersion stays for the update.
        check(json!({"metadata": described, "data": {KEY: "other"}}), Some(wanted.clone()));
        check(json!({"metadata": described}), Some(wanted.clone()));
        check(json!({"metadata": described, "data": {KEY: CA, "x": "y"}}), Some(wanted.clone()));
        // A missing or empty description is put back, other annotations kept.
        check(json!({"metadata": meta, "data": {KEY: CA}}), Some(wanted));
        let empty = json!({"name": NAME, "annotations": {DESCRIPTION_ANNOTATION: "", "k": "v"}});
        check(
            json!({"metadata": empty, "data": {KEY: CA}}),
            Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {KEY: CA},
                "metadata": {"name": NAME, "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION, "k": "v"}}})),
        );
    }
}
