//! Temporary stand-in for the node module (replaced at merge).
#![allow(dead_code, unused_variables, missing_docs, unreachable_pub)]
use crate::KubeletConfig;
use crate::runtime::Runtime;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
#[error("node error: {0}")]
pub struct NodeError(#[from] kube::Error);

fn ip(config: &KubeletConfig) -> String {
    config.node_ip.map(|ip| ip.to_string()).unwrap_or_else(|| "127.0.0.1".into())
}

pub async fn register(client: &kube::Client, config: &KubeletConfig, runtime: &dyn Runtime) -> Result<(), NodeError> {
    let api: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": config.node_name, "labels": {"kubernetes.io/hostname": config.node_name, "kubernetes.io/os": "linux"}},
    })).unwrap_or_default();
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    status(&api, config).await
}

async fn status(api: &Api<Node>, config: &KubeletConfig) -> Result<(), NodeError> {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = serde_json::json!({"status": {
        "capacity": {"cpu": "2", "memory": "24Gi", "pods": "110"},
        "allocatable": {"cpu": "2", "memory": "24Gi", "pods": "110"},
        "addresses": [{"type": "InternalIP", "address": ip(config)}, {"type": "Hostname", "address": config.node_name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": config.kubelet_port}},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}],
    }});
    api.patch_status(&config.node_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

pub async fn run_heartbeats(client: kube::Client, config: KubeletConfig, runtime: Arc<dyn Runtime>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let api: Api<Node> = Api::all(client.clone());
    loop {
        let _ = status(&api, &config).await;
        tokio::select! {
            () = crate::kubelet::until_stopped(&mut stop) => return,
            () = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
        }
    }
}
