//! Static pods: manifests in the node's manifest directory (`<data-dir>/agent/pod-manifests`
//! by default) become pods of this node, shown in the API as mirror pods named
//! `<name>-<node>` with the `kubernetes.io/config.mirror` annotation and the Node as owner.
//!
//! Capstan runs a static pod through its mirror: the kubelet creates the mirror pod bound to
//! itself and then runs it like any other pod. A mirror pod deleted through the API comes
//! back; a manifest removed or changed deletes (and recreates) it. Unlike upstream, a static
//! pod therefore needs the API server to start; nothing in Capstan's control plane runs as a
//! static pod.

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use ring::digest::{SHA256, digest};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

pub const MIRROR: &str = "kubernetes.io/config.mirror";
pub const HASH: &str = "kubernetes.io/config.hash";
pub const SOURCE: &str = "kubernetes.io/config.source";

/// A manifest read from the directory, as the mirror pod it becomes.
#[derive(Debug, Clone)]
pub struct StaticPod {
    pub file: String,
    pub pod: Pod,
    pub hash: String,
}

/// Parses one manifest file into its mirror pod for `node` (an error names the file).
pub fn mirror_pod(file: &str, text: &str, node: &str, node_uid: &str) -> Result<StaticPod, String> {
    let value: serde_json::Value =
        serde_yaml::from_str(text).map_err(|e| format!("{file}: {e}"))?;
    if value.get("kind").and_then(|k| k.as_str()) != Some("Pod") {
        return Err(format!("{file}: kind must be Pod"));
    }
    let mut pod: Pod = serde_json::from_value(value).map_err(|e| format!("{file}: {e}"))?;
    let name = pod
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("{file}: metadata.name is required"))?;
    let hash = digest(&SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    pod.metadata.name = Some(format!("{name}-{node}"));
    pod.metadata.namespace =
        Some(pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()));
    pod.metadata.uid = None;
    pod.metadata.resource_version = None;
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(MIRROR.into(), hash.clone());
    annotations.insert(HASH.into(), hash.clone());
    annotations.insert(SOURCE.into(), "file".into());
    pod.metadata.owner_references =
        Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: node.to_owned(),
            uid: node_uid.to_owned(),
            controller: Some(true),
            block_owner_deletion: None,
        }]);
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node.to_owned());
    // Static pods tolerate everything, as upstream's do.
    spec.tolerations.get_or_insert_with(Vec::new).push(k8s_openapi::api::core::v1::Toleration {
        operator: Some("Exists".into()),
        effect: Some("NoExecute".into()),
        ..Default::default()
    });
    Ok(StaticPod { file: file.to_owned(), pod, hash })
}

/// Reads every `.yaml`, `.yml` and `.json` file of `dir` (a missing directory has none).
pub fn read_dir(dir: &Path, node: &str, node_uid: &str) -> Vec<StaticPod> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut pods = Vec::new();
    let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    for path in files {
        let name = path.display().to_string();
        if !(name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json")) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        match mirror_pod(&name, &text, node, node_uid) {
            Ok(pod) => pods.push(pod),
            Err(error) => tracing::warn!(%error, "skipping a static pod manifest"),
        }
    }
    pods
}

/// Keeps the mirror pods in step with the manifest directory, checking every 5 s, until
/// `stop` is set.
pub async fn run(
    client: kube::Client,
    dir: std::path::PathBuf,
    node: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Err(error) = sync(&client, &dir, &node).await {
            tracing::debug!(%error, "cannot sync static pods");
        }
        tokio::select! {
            () = crate::kubelet::until_stopped(&mut stop) => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

async fn sync(client: &kube::Client, dir: &Path, node: &str) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node_uid = nodes.get(node).await?.metadata.uid.unwrap_or_default();
    let wanted = read_dir(dir, node, &node_uid);
    let all: Api<Pod> = Api::all(client.clone());
    let existing =
        all.list(&ListParams::default().fields(&format!("spec.nodeName={node}"))).await?;
    let mirrors: Vec<&Pod> = existing
        .items
        .iter()
        .filter(|p| p.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(MIRROR)))
        .collect();
    for mirror in &mirrors {
        let hash = mirror
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(MIRROR))
            .cloned()
            .unwrap_or_default();
        let keep =
            wanted.iter().any(|w| w.hash == hash && w.pod.metadata.name == mirror.metadata.name);
        if !keep && mirror.metadata.deletion_timestamp.is_none() {
            let api: Api<Pod> = Api::namespaced(
                client.clone(),
                mirror.metadata.namespace.as_deref().unwrap_or("default"),
            );
            tracing::info!(pod = ?mirror.metadata.name, "static pod manifest removed or changed; deleting its mirror pod");
            api.delete(
                mirror.metadata.name.as_deref().unwrap_or_default(),
                &DeleteParams::default(),
            )
            .await?;
        }
    }
    for static_pod in wanted {
        let present = mirrors.iter().any(|m| m.metadata.name == static_pod.pod.metadata.name);
        if present {
            continue;
        }
        let namespace = static_pod.pod.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        match api.create(&PostParams::default(), &static_pod.pod).await {
            Ok(_) => {
                tracing::info!(file = %static_pod.file, pod = ?static_pod.pod.metadata.name, "static pod started")
            }
            // A pod of that name still terminating: the next round creates it.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => {
                tracing::warn!(file = %static_pod.file, %error, "cannot create a mirror pod")
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_becomes_a_mirror_pod_of_the_node() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: c, image: busybox}]\n";
        let mirror = mirror_pod("web.yaml", text, "n1", "uid-1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mirror.pod.metadata.name.as_deref(), Some("web-n1"));
        assert_eq!(mirror.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()), Some("n1"));
        let annotations = mirror.pod.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.get(MIRROR), Some(&mirror.hash));
        assert!(mirror_pod("x.yaml", "kind: Service\n", "n1", "u").is_err());
        assert!(
            mirror_pod("x.yaml", "kind: Pod\nmetadata: {}\n", "n1", "u")
                .unwrap_err()
                .contains("metadata.name")
        );
    }
}
