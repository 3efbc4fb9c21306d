//! kube-rs (the `kube` crate, as Capstan's own components will use it) against a real
//! server: typed create, get, list with selectors, every patch type (merge, strategic, JSON,
//! server-side apply), delete, and watchers — a classic list-then-watch one and a streaming
//! list (`sendInitialEvents`) one — that see every change.

mod support;

use anyhow::{Context, Result, ensure};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use support::Cluster;

fn config_map(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    let mut object = ConfigMap::default();
    object.metadata.name = Some(name.to_owned());
    object.metadata.labels = Some(
        labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>(),
    );
    object.data = Some(BTreeMap::from([("k".to_owned(), "v".to_owned())]));
    object
}

#[test]
fn kube_rs_works() -> Result<()> {
    let cluster = Cluster::start(false)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(exercise(&cluster))?;
    drop(runtime);
    cluster.stop()
}

async fn exercise(cluster: &Cluster) -> Result<()> {
    let kubeconfig = Kubeconfig::read_from(&cluster.kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    let client = kube::Client::try_from(config)?;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");

    // Watchers first, so that they see the changes below: one lists then watches, the other
    // streams its list.
    let classic = watcher(api.clone(), watcher::Config::default().labels("watched=yes"));
    let streaming =
        watcher(api.clone(), watcher::Config::default().labels("watched=yes").streaming_lists());
    let seen = |stream: futures_util::stream::BoxStream<'static, _>| {
        tokio::spawn(async move {
            let mut names = Vec::new();
            let mut objects = std::pin::pin!(stream);
            while let Some(event) = objects.next().await {
                let event: Result<ConfigMap, watcher::Error> = event;
                if let Ok(object) = event {
                    let name = object.metadata.name.unwrap_or_default();
                    if name == "w3" {
                        names.push(name);
                        return names;
                    }
                    names.push(name);
                }
            }
            names
        })
    };
    let classic = seen(classic.applied_objects().boxed());
    let streaming = seen(streaming.applied_objects().boxed());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let created = api.create(&PostParams::default(), &config_map("kube", &[("a", "1")])).await?;
    ensure!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());
    let read = api.get("kube").await?;
    ensure!(read.data == created.data);
    let listed = api.list(&ListParams::default().labels("a=1")).await?;
    ensure!(listed.items.len() == 1 && listed.metadata.resource_version.is_some());

    let merged = api
        .patch("kube", &PatchParams::default(), &Patch::Merge(json!({"data": {"m": "1"}})))
        .await?;
    ensure!(merged.data.as_ref().and_then(|d| d.get("m")).is_some_and(|v| v == "1"));
    let strategic = api
        .patch("kube", &PatchParams::default(), &Patch::Strategic(json!({"data": {"s": "1"}})))
        .await?;
    ensure!(strategic.data.as_ref().is_some_and(|d| d.contains_key("s")));
    let operations: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/k", "value": "v"},
        {"op": "remove", "path": "/data/m"}
    ]))?;
    let patched =
        api.patch("kube", &PatchParams::default(), &Patch::<ConfigMap>::Json(operations)).await?;
    ensure!(patched.data.as_ref().is_some_and(|d| !d.contains_key("m")));
    let apply = PatchParams::apply("kube-rs-test");
    let applied = api
        .patch(
            "applied",
            &apply,
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "applied"}, "data": {"x": "1"},
            })),
        )
        .await?;
    let managers: Vec<_> = applied
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .map(|m| (m.manager.unwrap_or_default(), m.operation.unwrap_or_default()))
        .collect();
    ensure!(managers == [("kube-rs-test".to_owned(), "Apply".to_owned())], "{managers:?}");

    for name in ["w1", "w2", "w3"] {
        api.create(&PostParams::default(), &config_map(name, &[("watched", "yes")])).await?;
    }
    for (what, watcher) in [("list-then-watch", classic), ("streaming list", streaming)] {
        let names = tokio::time::timeout(Duration::from_secs(15), watcher)
            .await
            .with_context(|| format!("the {what} watcher saw nothing in 15 s"))??;
        ensure!(names == ["w1", "w2", "w3"], "the {what} watcher saw {names:?}");
    }
    api.delete("kube", &DeleteParams::default()).await?;
    ensure!(api.get_opt("kube").await?.is_none(), "deleted, yet still there");
    Ok(())
}
