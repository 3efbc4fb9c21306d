//! The rendered scripts and element batches against the real kernel: a full sync,
//! incremental syncs (elements over netlink, chains through `/usr/sbin/nft`), stale-chain
//! deletion, recovery from a refused batch and a restart, each applied into a uniquely named
//! table that is deleted at the end. Needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use capstan_proxy::syncer::STALE_CHAIN_DELAY;
use capstan_proxy::{
    DesiredState, IpFamily, Nft, NodeFacts, ServiceKey, SyncKind, SyncReport, Syncer, SystemNft,
    delete_table,
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

/// Recomputes the Services named in `changed` and syncs.
fn sync(
    syncer: &mut Syncer,
    desired: &mut DesiredState,
    services: &[Service],
    slices: &[EndpointSlice],
    changed: &[&str],
    now: Instant,
) -> SyncReport {
    for name in changed {
        let key = ServiceKey::new("it", name);
        let service = services.iter().find(|service| ServiceKey::of_service(service) == key);
        let slices: Vec<&EndpointSlice> = slices.iter().collect();
        desired.update(&key, service, &slices);
    }
    let changes = desired.take_changes();
    syncer.sync(desired.state(), &changes, now).unwrap()
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
        service("gone", &["10.96.0.14"], None, None),
    ];
    let mut slices = vec![
        slice("web", "v4", "IPv4", &["10.42.1.2", "10.42.1.3"]),
        slice("web", "v6", "IPv6", &["fd42::1:2"]),
        slice("np", "v4", "IPv4", &["10.42.1.4"]),
        slice("sticky", "v4", "IPv4", &["10.42.1.5"]),
        slice("gone", "v4", "IPv4", &["10.42.1.8"]),
    ];

    let mut syncer = Syncer::new(nft.clone(), &table, &node);
    let mut desired = DesiredState::new(node.clone());
    desired.replace_all(&services, &slices);
    let start = Instant::now();
    let report = sync(&mut syncer, &mut desired, &services, &slices, &[], start);
    assert_eq!(report.kind, SyncKind::Full);
    let v4 = listing(&nft, IpFamily::V4, &table);
    assert!(v4.contains("10.96.0.11 . tcp . 80 : goto service-"), "{v4}");
    assert!(v4.contains("tcp . 30080 : goto external-"), "{v4}");
    assert!(v4.contains("10.96.0.13 . tcp . 80 : goto reject-chain"), "{v4}");
    assert!(v4.contains(": 10.42.1.3 . 8080"), "{v4}");
    assert!(v4.contains("dnat to 10.42.1.5:8080"), "{v4}");
    assert!(v4.contains("timeout 10m"), "{v4}");
    assert!(v4.contains("10.42.1.2 . 10.42.1.2"), "hairpin set: {v4}");
    assert!(
        v4.contains("ip saddr 10.42.0.0/16 ip daddr != 10.42.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random"),
        "pod egress: {v4}"
    );
    let v6 = listing(&nft, IpFamily::V6, &table);
    assert!(v6.contains(": fd42::1:2 . 8080"), "{v6}");
    assert!(
        v6.contains("ip6 saddr fd42::/56 ip6 daddr != fd42::/56 ip6 daddr != ff00::/8 masquerade fully-random"),
        "{v6}"
    );

    // One more endpoint in each family: elements only, over netlink.
    let mut added = slices[2].endpoints[0].clone();
    added.addresses = vec!["10.42.1.6".to_owned()];
    slices[0].endpoints.push(added.clone());
    added.addresses = vec!["fd42::1:3".to_owned()];
    slices[1].endpoints.push(added);
    let report = sync(&mut syncer, &mut desired, &services, &slices, &["web"], start);
    assert_eq!(report.kind, SyncKind::Incremental, "{report:?}");
    assert_eq!(report.script_bytes, 0, "{report:?}");
    let v4 = listing(&nft, IpFamily::V4, &table);
    assert!(v4.contains(": 10.42.1.3 . 8080"), "{v4}");
    assert!(v4.contains(": 10.42.1.6 . 8080"), "{v4}");
    assert!(v4.contains("10.42.1.6 . 10.42.1.6"), "{v4}");
    let v6 = listing(&nft, IpFamily::V6, &table);
    assert!(v6.contains(": fd42::1:2 . 8080") && v6.contains(": fd42::1:3 . 8080"), "{v6}");

    // New services, TCP and UDP, whose chains use endpoint maps nft finds in the kernel.
    let mut dns = service("dns", &["10.96.0.15"], None, None);
    let mut dns_slice = slice("dns", "v4", "IPv4", &["10.42.1.9"]);
    for port in dns.spec.as_mut().unwrap().ports.iter_mut().flatten() {
        port.protocol = Some("UDP".to_owned());
    }
    for port in dns_slice.ports.iter_mut().flatten() {
        port.protocol = Some("UDP".to_owned());
    }
    services.extend([dns, service("api", &["10.96.0.16", "fd96::16"], None, None)]);
    slices.extend([
        dns_slice,
        slice("api", "v4", "IPv4", &["10.42.1.10"]),
        slice("api", "v6", "IPv6", &["fd42::1:10"]),
    ]);
    let report = sync(&mut syncer, &mut desired, &services, &slices, &["dns", "api"], start);
    assert_eq!(report.kind, SyncKind::Incremental, "{report:?}");
    let v4 = listing(&nft, IpFamily::V4, &table);
    assert!(v4.contains("10.96.0.15 . udp . 80 : goto service-"), "{v4}");
    assert!(v4.contains(": 10.42.1.9 . 8080") && v4.contains(": 10.42.1.10 . 8080"), "{v4}");
    assert!(v4.contains("typeof numgen random mod 65536 : ip daddr . udp dport"), "{v4}");
    let v6 = listing(&nft, IpFamily::V6, &table);
    assert!(v6.contains(": fd42::1:10 . 8080"), "{v6}");

    // An emptied service, a new affinity timeout and a deleted service: chains and elements.
    slices[2].endpoints.clear();
    services[2] = service("sticky", &["10.96.0.12"], None, Some(60));
    services.retain(|service| service.metadata.name.as_deref() != Some("gone"));
    let report =
        sync(&mut syncer, &mut desired, &services, &slices, &["np", "sticky", "gone"], start);
    assert_eq!(report.kind, SyncKind::Incremental, "{report:?}");
    let v4 = listing(&nft, IpFamily::V4, &table);
    assert!(v4.contains("10.96.0.11 . tcp . 80 : goto reject-chain"), "{v4}");
    assert!(v4.contains("timeout 1m"), "{v4}");
    assert!(!v4.contains("10.42.1.4 . 8080"), "{v4}");
    assert!(!v4.contains("10.96.0.14"), "{v4}");
    assert!(v4.contains("-it/gone/tcp/ {"), "the emptied chain waits: {v4}");

    // A second later the emptied chains go.
    let later = start + STALE_CHAIN_DELAY;
    let report = sync(&mut syncer, &mut desired, &services, &slices, &[], later);
    assert_eq!(report.kind, SyncKind::Incremental);
    let v4 = listing(&nft, IpFamily::V4, &table);
    assert!(!v4.contains("-it/gone/"), "{v4}");

    // Something removed behind the proxy's back makes its next batch fail; a full sync
    // repairs the table.
    let maps = v4.lines().filter_map(|line| line.trim().strip_prefix("map endpoints-"));
    for map in maps {
        let map = format!("endpoints-{}", map.trim_end_matches(" {"));
        let status = std::process::Command::new("/usr/sbin/nft")
            .args(["flush", "map", "ip", &table, &map])
            .status()
            .unwrap();
        assert!(status.success());
    }
    slices[0].endpoints.pop();
    let report = sync(&mut syncer, &mut desired, &services, &slices, &["web"], later);
    assert_eq!(report.kind, SyncKind::Full, "{report:?}");
    assert!(report.recovered, "{report:?}");
    let v4 = listing(&nft, IpFamily::V4, &table);
    assert!(v4.contains(": 10.42.1.3 . 8080") && !v4.contains(": 10.42.1.6 . 8080"), "{v4}");

    // A restarted proxy computes the same state and writes the same names (the kernel lists
    // chains in creation order, so lines are compared as sets).
    let mut restarted = Syncer::new(nft.clone(), &table, &node);
    let mut fresh = DesiredState::new(node.clone());
    fresh.replace_all(&services, &slices);
    let report = sync(&mut restarted, &mut fresh, &services, &slices, &[], later);
    assert_eq!(report.kind, SyncKind::Full);
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
