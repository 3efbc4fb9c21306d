//! What every node runs beside its kubelet — the service proxy — and what the server's
//! node adds: the cluster DNS, published as the `kube-system/kube-dns` Service (the tenth
//! address of the service range, 10.43.0.10 by default) whose one endpoint is this node's
//! DNS listener, so pods reach it through the proxy like any Service.

use anyhow::Context;
use capstan_kubelet::node::{HostInfo, LocalHost};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The addresses this node advertises: `--node-ip` (one, or one per IP family for a
/// dual-stack node, the primary first), else that of the default route.
pub(crate) fn node_ips(configured: &[IpAddr]) -> anyhow::Result<Vec<IpAddr>> {
    match configured {
        [] => Ok(LocalHost.default_ipv4().map(IpAddr::V4).into_iter().collect()),
        [_] => Ok(configured.to_vec()),
        [first, second] if first.is_ipv4() != second.is_ipv4() => Ok(configured.to_vec()),
        _ => anyhow::bail!(
            "--node-ip takes one address, or two of different IP families (an IPv4 and an \
             IPv6 address for a dual-stack node); got {configured:?}"
        ),
    }
}

/// Runs the nftables service proxy until `stop`.
pub(crate) fn spawn_proxy(
    client: kube::Client,
    node_name: String,
    node_ips: Vec<IpAddr>,
    cluster_cidr: &str,
    table: String,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let config = capstan_proxy::ProxyConfig {
        node_name,
        node_ips,
        cluster_cidrs: cluster_cidr
            .split(',')
            .map(str::to_owned)
            .filter(|c| !c.is_empty())
            .collect(),
        table_name: table,
        ..capstan_proxy::ProxyConfig::default()
    };
    tokio::spawn(async move {
        let nft: Arc<dyn capstan_proxy::Nft> = Arc::new(capstan_proxy::SystemNft::default());
        if let Err(error) = capstan_proxy::run(client, config, nft, stop).await {
            tracing::error!(%error, "the service proxy stopped");
        }
    })
}

/// The tenth address of a CIDR (`10.43.0.0/16` → `10.43.0.10`), upstream's convention for
/// the cluster DNS Service.
pub(crate) fn dns_service_ip(service_cidr: &str) -> anyhow::Result<IpAddr> {
    let base = service_cidr.split('/').next().unwrap_or_default();
    let ip: IpAddr = base.parse().with_context(|| format!("--service-cidr {service_cidr}"))?;
    Ok(match ip {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) + 10).into()),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) + 10).into()),
    })
}

/// Serves the cluster DNS on `listen` and publishes it as `kube-system/kube-dns`.
pub(crate) async fn spawn_dns(
    client: kube::Client,
    listen: SocketAddr,
    service_ip: IpAddr,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let upstreams: Vec<SocketAddr> = capstan_dns::upstreams_from_resolv_conf("/etc/resolv.conf")
        .into_iter()
        // Never forward to ourselves (a node whose resolv.conf points at the cluster DNS).
        .filter(|upstream| upstream.ip() != service_ip && *upstream != listen)
        .collect();
    let config = capstan_dns::DnsConfig::new(vec![listen], upstreams);
    let dns_client = client.clone();
    let task = tokio::spawn(async move {
        if let Err(error) = capstan_dns::run(dns_client, config, stop).await {
            tracing::error!(%error, "the cluster DNS stopped");
        }
    });
    publish_dns_service(&client, listen, service_ip).await?;
    tracing::info!(%listen, service = %service_ip, "cluster DNS serving");
    Ok(task)
}

async fn publish_dns_service(
    client: &kube::Client,
    listen: SocketAddr,
    service_ip: IpAddr,
) -> anyhow::Result<()> {
    let services: Api<Service> = Api::namespaced(client.clone(), "kube-system");
    let service: Service = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
        "spec": {
            "clusterIP": service_ip.to_string(),
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": listen.port()},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": listen.port()},
            ],
        },
    }))?;
    let params = PatchParams::apply("capstan-server").force();
    // A server restart may find it already there; the address never changes.
    let mut attempts = 0;
    loop {
        match services.patch("kube-dns", &params, &Patch::Apply(&service)).await {
            Ok(_) => break,
            Err(error) if attempts < 20 => {
                attempts += 1;
                tracing::debug!(%error, "cannot publish kube-dns yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error).context("publishing the kube-dns Service"),
        }
    }
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "kube-system");
    let family = if listen.ip().is_ipv4() { "IPv4" } else { "IPv6" };
    let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kube-dns-capstan", "namespace": "kube-system", "labels": {
            "kubernetes.io/service-name": "kube-dns",
            "endpointslice.kubernetes.io/managed-by": "capstan-server",
        }},
        "addressType": family,
        "endpoints": [{"addresses": [listen.ip().to_string()], "conditions": {"ready": true, "serving": true, "terminating": false}}],
        "ports": [
            {"name": "dns", "port": listen.port(), "protocol": "UDP"},
            {"name": "dns-tcp", "port": listen.port(), "protocol": "TCP"},
        ],
    }))?;
    slices
        .patch("kube-dns-capstan", &params, &Patch::Apply(&slice))
        .await
        .context("publishing the kube-dns endpoints")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dns_service_takes_the_tenth_address() {
        assert_eq!(dns_service_ip("10.43.0.0/16").ok(), Some(IpAddr::from([10, 43, 0, 10])));
        assert!(dns_service_ip("nonsense").is_err());
    }
}
