//! The rendered scripts against the real kernel: a full sync, incremental syncs, stale-chain
//! deletion and a restart, each applied with `/usr/sbin/nft` into a uniquely named table that
//! is deleted at the end. Needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use capstan_proxy::syncer::STALE_CHAIN_DELAY;
use capstan_proxy::{
    IpFamily, Nft, NodeFacts, ProxyState, SyncKind, Syncer, SystemNft, delete_table,
};
use k8s_openapi::api::core::v1::{
    ClientIPConfig, Service, ServicePort, ServiceSpec, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use kube::api::ObjectMeta;

/// Deletes the test's tables however the test ends.
struct TableGuard {
    nft: Arc<SystemNft>,
    table: String,
}

impl Drop for TableGuard {
    fn drop(&mut self) {
        if let Err(error) = delete_table(&*self.nft, &self.table) {
            eprintln!("cannot delete table {}: {error}", self.table);
        }
    }
}

fn service(name: &str, ips: &[&str], node_port: Option<i32>, affinity: Option<i32>) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some("it".to_owned()),
            name: Some(name.to_owned()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(if node_port.is_some() { "NodePort" } else { "ClusterIP" }.to_owned()),
            cluster_ip: Some(ips[0].to_owned()),
            cluster_ips: Some(ips.iter().map(|ip| (*ip).to_owned()).collect()),
            ports: Some(vec![ServicePort {
                port: 80,
                protocol: Some("TCP".to_owned()),
                node_port,
                ..Default::default()
            }]),
            session_affinity: affinity.map(|_| "ClientIP".to_owned()),
            session_affinity_config: affinity.map(|seconds| SessionAffinityConfig {
                client_ip: Some(ClientIPConfig { timeout_seconds: Some(seconds) }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn slice(service: &str, suffix: &str, address_type: &str, addresses: &[&str]) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some("it".to_owned()),
            name: Some(format!("{service}-{suffix}")),
            labels: Some([("kubernetes.io/service-name".to_owned(), service.to_owned())].into()),
            ..Default::default()
        },
        address_type: address_type.to_owned(),
        endpoints: addresses
            .iter()
            .map(|address| Endpoint {
                addresses: vec![(*address).to_owned()],
                node_name: Some("node-a".to_owned()),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            port: Some(8080),
            protocol: Some("TCP".to_owned()),
            ..Default::default()
        }]),
    }
}

fn listing(nft: &SystemNft, family: IpFamily, table: &str) -> String {
    nft.list_table(family, table).unwrap().unwrap_or_else(|| panic!("table {table} is missing"))
}

#[test]
fn rulesets_apply_to_the_kernel_fully_and_incrementally() {
    if !is_root() {
        eprintln!("skipped: needs root for nftables");
        return;
    }
    let nft = Arc::new(SystemNft::default());
    let table = format!("capstan-proxy-it-{}", std::process::id());
    let _guard = TableGuard { nft: Arc::clone(&nft), table: table.clone() };
    let node = NodeFacts::new("node-a", &[], &["10.42.0.0/16".to_owned(), "fd42::/56".to_owned()])
        .unwrap();

    let mut services = vec![
        service("web", &["10.96.0.10", "fd96::10"], None, None),
        service("np", &["10.96.0.11"], Some(30080), None),
        service("sticky", &["10.96.0.12"], None, Some(600)),
        service("empty", &["10.96.0.13"], None, None),
    ];
    let mut slices = vec![
        slice("web", "v4", "IPv4", &["10.42.1.2", "10.42.1.3"]),
        slice("web", "v6", "IPv6", &["fd42::1:2"]),
        slice("np", "v4", "IPv4", &["10.42.1.4"]),
        slice("sticky", "v4", "IPv4", &["10.42.1.5"]),
    ];
    let compute = |services: &[Service], slices: &[EndpointSlice]| {
        ProxyState::compute(services, slices, &node)
    };

    let mut syncer = Syncer::new(nft.clone(), &table);
    let start = Instant::now();
    let first = compute(&services, &slices);
    assert_eq!(syncer.sync(&first, start).unwrap().kind, SyncKind::Full);
    let v4 = listing(&nft, IpFamily::V4, &table);
    assert!(v4.contains("10.96.0.11 . tcp . 80 : goto service-"), "{v4}");
    assert!(v4.contains("tcp . 30080 : goto external-"), "{v4}");
    assert!(v4.contains("10.96.0.13 . tcp . 80 : goto reject-chain"), "{v4}");
    assert!(v4.contains("dnat to 10.42.1.3:8080"), "{v4}");
    assert!(v4.contains("timeout 10m"), "{v4}");
    let v6 = listing(&nft, IpFamily::V6, &table);
    assert!(v6.contains("dnat to [fd42::1:2]:8080"), "{v6}");

    // One more endpoint, an emptied service, and a new affinity timeout: incremental.
    let mut added = slices[2].endpoints[0].clone();
    added.addresses = vec!["10.42.1.6".to_owned()];
    slices[0].endpoints.push(added);
    slices[2].endpoints.clear();
    services[2] = service("sticky", &["10.96.0.12"], None, Some(60));
    let second = compute(&services, &slices);
    let report = syncer.sync(&second, start).unwrap();
    assert_eq!(report.kind, SyncKind::Incremental, "{report:?}");
    let v4 = listing(&nft, IpFamily::V4, &table);
    assert!(v4.contains("dnat to 10.42.1.6:8080"), "{v4}");
    assert!(v4.contains("10.96.0.11 . tcp . 80 : goto reject-chain"), "{v4}");
    assert!(v4.contains("timeout 1m"), "{v4}");
    assert!(!v4.contains("dnat to 10.42.1.4:8080"), "{v4}");
    assert!(v4.contains("__10.42.1.4/8080 {"), "the emptied chain waits: {v4}");

    // A second later the emptied chains go.
    let later = start + STALE_CHAIN_DELAY;
    assert_eq!(syncer.sync(&second, later).unwrap().kind, SyncKind::Incremental);
    let v4 = listing(&nft, IpFamily::V4, &table);
    assert!(!v4.contains("10.42.1.4"), "{v4}");

    // A restarted proxy computes the same state and writes the same names (the kernel lists
    // chains in creation order, so lines are compared as sets).
    let mut restarted = Syncer::new(nft.clone(), &table);
    assert_eq!(restarted.sync(&second, later).unwrap().kind, SyncKind::Full);
    assert_eq!(sorted_lines(&listing(&nft, IpFamily::V4, &table)), sorted_lines(&v4));

    delete_table(&*nft, &table).unwrap();
    assert_eq!(nft.list_table(IpFamily::V4, &table).unwrap(), None);
    assert_eq!(nft.list_table(IpFamily::V6, &table).unwrap(), None);
}

fn sorted_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines
}

/// Whether this process runs as root (from `/proc/self/status`, without a libc binding).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status.lines().any(|line| {
            line.strip_prefix("Uid:").is_some_and(|ids| ids.split_whitespace().nth(1) == Some("0"))
        })
    })
}
