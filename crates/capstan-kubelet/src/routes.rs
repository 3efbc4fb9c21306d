//! Routes between nodes' pod networks ("host-gw"): for every other Node with pod CIDRs and
//! an InternalIP, a route to each of its CIDRs via that IP, so pods on different nodes talk
//! directly. It works when nodes share a link (one L2 segment), as the test harness's network
//! namespaces and most small clusters do; a route whose gateway is not directly reachable is
//! refused by the kernel and skipped. Routes are replaced when a node's address changes,
//! removed when the node goes, and all removed when the kubelet stops.

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::BTreeMap;
use std::time::Duration;

/// `pod CIDR → gateway` for every node but `own`.
pub fn wanted_routes<'a>(
    nodes: impl Iterator<Item = &'a Node>,
    own: &str,
) -> BTreeMap<String, String> {
    let mut routes = BTreeMap::new();
    for node in nodes {
        if node.metadata.name.as_deref() == Some(own) {
            continue;
        }
        let spec = node.spec.clone().unwrap_or_default();
        let mut cidrs = spec.pod_cidrs.unwrap_or_default();
        if cidrs.is_empty() {
            cidrs.extend(spec.pod_cidr);
        }
        let addresses = node.status.as_ref().and_then(|s| s.addresses.clone()).unwrap_or_default();
        for cidr in cidrs {
            let v6 = cidr.contains(':');
            let gateway = addresses
                .iter()
                .filter(|a| a.type_ == "InternalIP")
                .map(|a| a.address.clone())
                .find(|ip| ip.contains(':') == v6);
            if let Some(gateway) = gateway {
                routes.insert(cidr, gateway);
            }
        }
    }
    routes
}

async fn ip(args: &[&str]) -> Result<(), String> {
    let output =
        tokio::process::Command::new("ip").args(args).output().await.map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

fn family(cidr: &str) -> &'static str {
    if cidr.contains(':') { "-6" } else { "-4" }
}

/// Keeps the routes until `stop` is set, then removes the ones it added.
pub async fn run(
    client: kube::Client,
    node_name: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let api: kube::Api<Node> = kube::Api::all(client);
    let (store, writer) = kube::runtime::reflector::store();
    let mut events =
        kube::runtime::reflector(writer, watcher::watcher(api, watcher::Config::default()))
            .applied_objects()
            .boxed();
    let mut installed: BTreeMap<String, String> = BTreeMap::new();
    loop {
        tokio::select! {
            () = crate::kubelet::until_stopped(&mut stop) => break,
            next = events.next() => {
                if next.is_none() {
                    break;
                }
            }
            () = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        let state = store.state();
        let wanted = wanted_routes(state.iter().map(|n| n.as_ref()), &node_name);
        for (cidr, gateway) in &wanted {
            if installed.get(cidr) == Some(gateway) {
                continue;
            }
            match ip(&[family(cidr), "route", "replace", cidr, "via", gateway]).await {
                Ok(()) => {
                    tracing::info!(%cidr, %gateway, "route to a node's pods");
                    installed.insert(cidr.clone(), gateway.clone());
                }
                Err(error) => {
                    tracing::debug!(%cidr, %gateway, %error, "cannot route to a node's pods")
                }
            }
        }
        let stale: Vec<String> =
            installed.keys().filter(|c| !wanted.contains_key(*c)).cloned().collect();
        for cidr in stale {
            if let Some(gateway) = installed.remove(&cidr) {
                let _ = ip(&[family(&cidr), "route", "delete", &cidr, "via", &gateway]).await;
            }
        }
    }
    for (cidr, gateway) in installed {
        let _ = ip(&[family(&cidr), "route", "delete", &cidr, "via", &gateway]).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidrs: &[&str], ips: &[&str]) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"podCIDRs": cidrs},
            "status": {"addresses": ips.iter().map(|ip| serde_json::json!({"type": "InternalIP", "address": ip})).collect::<Vec<_>>()},
        }))
        .unwrap_or_default()
    }

    #[test]
    fn routes_go_to_every_other_node_by_family() {
        let nodes = [
            node("a", &["10.42.0.0/24"], &["192.168.1.1"]),
            node("b", &["10.42.1.0/24", "fd42:1::/64"], &["192.168.1.2", "fd00::2"]),
            node("c", &[], &["192.168.1.3"]),
        ];
        let routes = wanted_routes(nodes.iter(), "a");
        assert_eq!(routes.len(), 2);
        assert_eq!(routes.get("10.42.1.0/24").map(String::as_str), Some("192.168.1.2"));
        assert_eq!(routes.get("fd42:1::/64").map(String::as_str), Some("fd00::2"));
    }
}
