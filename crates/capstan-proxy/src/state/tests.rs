//! Snapshot tests of rendered rulesets and incremental diffs, and the helpers that build
//! Services and EndpointSlices for them (shared with the syncer's tests).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{
    ClientIPConfig, Service, ServicePort, ServiceSpec, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use kube::api::ObjectMeta;

use super::*;
use crate::desired::Changes;
use crate::script::{Diff, render_diff, render_full};

pub(crate) fn node() -> NodeFacts {
    NodeFacts::new("node-a", &[], &["10.42.0.0/16".to_owned()]).unwrap()
}

pub(crate) fn cluster_ip_service(namespace: &str, name: &str, ip: &str, port: i32) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some(namespace.to_owned()),
            name: Some(name.to_owned()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            cluster_ip: Some(ip.to_owned()),
            cluster_ips: Some(vec![ip.to_owned()]),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port,
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn spec(service: &mut Service) -> &mut ServiceSpec {
    service.spec.get_or_insert_with(Default::default)
}

fn node_port_service(namespace: &str, name: &str, ip: &str, port: i32, node_port: i32) -> Service {
    let mut service = cluster_ip_service(namespace, name, ip, port);
    spec(&mut service).type_ = Some("NodePort".to_owned());
    for service_port in spec(&mut service).ports.iter_mut().flatten() {
        service_port.node_port = Some(node_port);
    }
    service
}

/// A slice of ready endpoints on `node-b` (another node).
pub(crate) fn slice(
    namespace: &str,
    service: &str,
    name: &str,
    port: i32,
    addresses: &[&str],
) -> EndpointSlice {
    let endpoints =
        addresses.iter().map(|address| endpoint(address, "node-b", true, false)).collect();
    slice_of(namespace, service, name, port, endpoints)
}

fn slice_of(
    namespace: &str,
    service: &str,
    name: &str,
    port: i32,
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    let address_type =
        if endpoints.iter().any(|e| e.addresses[0].contains(':')) { "IPv6" } else { "IPv4" };
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some(namespace.to_owned()),
            name: Some(name.to_owned()),
            labels: Some([(SERVICE_NAME_LABEL.to_owned(), service.to_owned())].into()),
            ..Default::default()
        },
        address_type: address_type.to_owned(),
        endpoints,
        ports: Some(vec![EndpointPort {
            name: Some("http".to_owned()),
            port: Some(port),
            protocol: Some("TCP".to_owned()),
            ..Default::default()
        }]),
    }
}

fn endpoint(address: &str, node: &str, ready: bool, terminating: bool) -> Endpoint {
    Endpoint {
        addresses: vec![address.to_owned()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(ready || terminating),
            terminating: Some(terminating),
        }),
        node_name: Some(node.to_owned()),
        ..Default::default()
    }
}

/// Compares a rendered script with its snapshot, printing the whole script on a mismatch so
/// that an intended change can be reviewed and pasted.
fn check(actual: &str, expected: &str) {
    if actual != expected {
        panic!("rendered script differs from the snapshot; actual:\n{actual}");
    }
}

/// What an incremental sync from `before` to `after` writes.
fn diff(before: &ProxyState, after: &ProxyState) -> Diff {
    let changes = Changes::between(before, after);
    render_diff("capstan-proxy", &changes, after, &BTreeSet::new(), &BTreeSet::new())
}

/// The objects of the ruleset snapshot: a ClusterIP service with two ready endpoints (and a
/// third not ready), a NodePort service, a headless and an ExternalName service, a service
/// without endpoints, one with session affinity, and one with both traffic policies `Local`.
fn snapshot_objects() -> (Vec<Service>, Vec<EndpointSlice>) {
    let web = cluster_ip_service("ns1", "web", "10.96.0.10", 80);
    let web_slice = slice_of(
        "ns1",
        "web",
        "web-1",
        8080,
        vec![
            endpoint("10.42.1.2", "node-b", true, false),
            endpoint("10.42.1.3", "node-b", true, false),
            endpoint("10.42.1.4", "node-b", false, false),
        ],
    );
    let nodeport = node_port_service("ns1", "np", "10.96.0.11", 80, 30080);
    let nodeport_slice = slice("ns1", "np", "np-1", 8080, &["10.42.1.5"]);
    let mut headless = cluster_ip_service("ns1", "headless", "None", 80);
    spec(&mut headless).cluster_ips = Some(vec!["None".to_owned()]);
    let headless_slice = slice("ns1", "headless", "headless-1", 8080, &["10.42.1.6"]);
    let mut external_name = cluster_ip_service("ns1", "ext", "", 80);
    spec(&mut external_name).type_ = Some("ExternalName".to_owned());
    let empty = cluster_ip_service("ns2", "empty", "10.96.0.12", 80);
    let mut sticky = cluster_ip_service("ns2", "sticky", "10.96.0.13", 80);
    spec(&mut sticky).session_affinity = Some("ClientIP".to_owned());
    spec(&mut sticky).session_affinity_config = Some(SessionAffinityConfig {
        client_ip: Some(ClientIPConfig { timeout_seconds: Some(600) }),
    });
    let sticky_slice = slice("ns2", "sticky", "sticky-1", 8080, &["10.42.1.7"]);
    let mut local = node_port_service("ns2", "local", "10.96.0.14", 80, 30081);
    spec(&mut local).external_traffic_policy = Some("Local".to_owned());
    spec(&mut local).internal_traffic_policy = Some("Local".to_owned());
    let local_slice = slice_of(
        "ns2",
        "local",
        "local-1",
        8080,
        vec![
            endpoint("10.42.0.8", "node-a", true, false),
            endpoint("10.42.1.9", "node-b", true, false),
        ],
    );
    (
        vec![web, nodeport, headless, external_name, empty, sticky, local],
        vec![web_slice, nodeport_slice, headless_slice, sticky_slice, local_slice],
    )
}

const SNAPSHOT: &str = r#"add table ip capstan-proxy
delete table ip capstan-proxy
add table ip capstan-proxy { comment "service proxy rules owned by capstan" ; }
add chain ip capstan-proxy filter-input { type filter hook input priority -110 ; }
add chain ip capstan-proxy filter-forward { type filter hook forward priority -110 ; }
add chain ip capstan-proxy filter-output { type filter hook output priority -110 ; }
add chain ip capstan-proxy nat-prerouting { type nat hook prerouting priority -100 ; }
add chain ip capstan-proxy nat-output { type nat hook output priority -100 ; }
add chain ip capstan-proxy nat-postrouting { type nat hook postrouting priority 100 ; }
add chain ip capstan-proxy endpoints-check
add chain ip capstan-proxy services
add chain ip capstan-proxy masquerading
add chain ip capstan-proxy mark-for-masquerade
add chain ip capstan-proxy reject-chain
add chain ip capstan-proxy endpoint-M2GUG5OS-ns2/sticky/tcp/http__10.42.1.7/8080
add chain ip capstan-proxy external-MR56TIOZ-ns1/np/tcp/http
add chain ip capstan-proxy external-UNPRQAGV-ns2/local/tcp/http
add chain ip capstan-proxy local-UNPRQAGV-ns2/local/tcp/http
add chain ip capstan-proxy service-DK7ABAZC-ns1/web/tcp/http
add chain ip capstan-proxy service-JHX3ASIC-ns2/empty/tcp/http
add chain ip capstan-proxy service-MR56TIOZ-ns1/np/tcp/http
add chain ip capstan-proxy service-PNH4UI3T-ns2/sticky/tcp/http
add chain ip capstan-proxy service-UNPRQAGV-ns2/local/tcp/http
add set ip capstan-proxy hairpin { type ipv4_addr . ipv4_addr ; elements = { 10.42.0.8 . 10.42.0.8, 10.42.1.2 . 10.42.1.2, 10.42.1.3 . 10.42.1.3, 10.42.1.5 . 10.42.1.5, 10.42.1.7 . 10.42.1.7, 10.42.1.9 . 10.42.1.9 } ; }
add set ip capstan-proxy affinity-M2GUG5OS-ns2/sticky/tcp/http__10.42.1.7/8080 { type ipv4_addr ; flags dynamic,timeout ; timeout 600s ; }
add map ip capstan-proxy endpoints-tcp-6 { typeof numgen random mod 65536 : ip daddr . tcp dport ; flags interval ; elements = { 206831616-206897151 : 10.42.1.5 . 8080 } ; }
add map ip capstan-proxy endpoints-tcp-19 { typeof numgen random mod 65536 : ip daddr . tcp dport ; flags interval ; elements = { 170721280-170754047 : 10.42.0.8 . 8080, 170754048-170786815 : 10.42.1.9 . 8080 } ; }
add map ip capstan-proxy endpoints-tcp-25 { typeof numgen random mod 65536 : ip daddr . tcp dport ; flags interval ; elements = { 2091778048-2091810815 : 10.42.1.2 . 8080, 2091810816-2091843583 : 10.42.1.3 . 8080 } ; }
add map ip capstan-proxy endpoints-tcp-86 { typeof numgen random mod 65536 : ip daddr . tcp dport ; flags interval ; elements = { 506920960-506986495 : 10.42.0.8 . 8080 } ; }
add map ip capstan-proxy endpoints-tcp-105 { typeof numgen random mod 65536 : ip daddr . tcp dport ; flags interval ; }
add map ip capstan-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; elements = { 10.96.0.10 . tcp . 80 : goto service-DK7ABAZC-ns1/web/tcp/http, 10.96.0.11 . tcp . 80 : goto service-MR56TIOZ-ns1/np/tcp/http, 10.96.0.13 . tcp . 80 : goto service-PNH4UI3T-ns2/sticky/tcp/http, 10.96.0.14 . tcp . 80 : goto local-UNPRQAGV-ns2/local/tcp/http } ; }
add map ip capstan-proxy service-nodeports { type inet_proto . inet_service : verdict ; elements = { tcp . 30080 : goto external-MR56TIOZ-ns1/np/tcp/http, tcp . 30081 : goto external-UNPRQAGV-ns2/local/tcp/http } ; }
add map ip capstan-proxy no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; elements = { 10.96.0.12 . tcp . 80 : goto reject-chain } ; }
add map ip capstan-proxy no-endpoint-nodeports { type inet_proto . inet_service : verdict ; }
add rule ip capstan-proxy filter-input ct state new jump endpoints-check
add rule ip capstan-proxy filter-forward ct state new jump endpoints-check
add rule ip capstan-proxy filter-output ct state new jump endpoints-check
add rule ip capstan-proxy endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services
add rule ip capstan-proxy endpoints-check fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports
add rule ip capstan-proxy nat-prerouting jump services
add rule ip capstan-proxy nat-output jump services
add rule ip capstan-proxy nat-postrouting jump masquerading
add rule ip capstan-proxy nat-postrouting ip saddr 10.42.0.0/16 ip daddr != 10.42.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random
add rule ip capstan-proxy services ip daddr . meta l4proto . th dport vmap @service-ips
add rule ip capstan-proxy services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports
add rule ip capstan-proxy mark-for-masquerade meta mark set meta mark or 0x4000
add rule ip capstan-proxy masquerading ct status dnat ip saddr . ip daddr @hairpin jump mark-for-masquerade
add rule ip capstan-proxy masquerading meta mark and 0x4000 == 0 return
add rule ip capstan-proxy masquerading meta mark set meta mark xor 0x4000
add rule ip capstan-proxy masquerading masquerade fully-random
add rule ip capstan-proxy reject-chain reject
add rule ip capstan-proxy endpoint-M2GUG5OS-ns2/sticky/tcp/http__10.42.1.7/8080 update @affinity-M2GUG5OS-ns2/sticky/tcp/http__10.42.1.7/8080 { ip saddr }
add rule ip capstan-proxy endpoint-M2GUG5OS-ns2/sticky/tcp/http__10.42.1.7/8080 meta l4proto tcp dnat to 10.42.1.7:8080
add rule ip capstan-proxy external-MR56TIOZ-ns1/np/tcp/http jump mark-for-masquerade
add rule ip capstan-proxy external-MR56TIOZ-ns1/np/tcp/http goto service-MR56TIOZ-ns1/np/tcp/http
add rule ip capstan-proxy external-UNPRQAGV-ns2/local/tcp/http ip saddr 10.42.0.0/16 goto service-UNPRQAGV-ns2/local/tcp/http
add rule ip capstan-proxy external-UNPRQAGV-ns2/local/tcp/http fib saddr type local jump mark-for-masquerade
add rule ip capstan-proxy external-UNPRQAGV-ns2/local/tcp/http fib saddr type local goto service-UNPRQAGV-ns2/local/tcp/http
add rule ip capstan-proxy external-UNPRQAGV-ns2/local/tcp/http goto local-UNPRQAGV-ns2/local/tcp/http
add rule ip capstan-proxy local-UNPRQAGV-ns2/local/tcp/http ip daddr 10.96.0.14 tcp dport 80 ip saddr != 10.42.0.0/16 jump mark-for-masquerade
add rule ip capstan-proxy local-UNPRQAGV-ns2/local/tcp/http meta l4proto tcp dnat ip addr . port to numgen random mod 65536 offset 506920960 map @endpoints-tcp-86
add rule ip capstan-proxy service-DK7ABAZC-ns1/web/tcp/http ip daddr 10.96.0.10 tcp dport 80 ip saddr != 10.42.0.0/16 jump mark-for-masquerade
add rule ip capstan-proxy service-DK7ABAZC-ns1/web/tcp/http meta l4proto tcp dnat ip addr . port to numgen random mod 65536 offset 2091778048 map @endpoints-tcp-25
add rule ip capstan-proxy service-JHX3ASIC-ns2/empty/tcp/http ip daddr 10.96.0.12 tcp dport 80 ip saddr != 10.42.0.0/16 jump mark-for-masquerade
add rule ip capstan-proxy service-JHX3ASIC-ns2/empty/tcp/http meta l4proto tcp dnat ip addr . port to numgen random mod 65536 offset 1334640640 map @endpoints-tcp-105
add rule ip capstan-proxy service-MR56TIOZ-ns1/np/tcp/http ip daddr 10.96.0.11 tcp dport 80 ip saddr != 10.42.0.0/16 jump mark-for-masquerade
add rule ip capstan-proxy service-MR56TIOZ-ns1/np/tcp/http meta l4proto tcp dnat ip addr . port to numgen random mod 65536 offset 206831616 map @endpoints-tcp-6
add rule ip capstan-proxy service-PNH4UI3T-ns2/sticky/tcp/http ip daddr 10.96.0.13 tcp dport 80 ip saddr != 10.42.0.0/16 jump mark-for-masquerade
add rule ip capstan-proxy service-PNH4UI3T-ns2/sticky/tcp/http ip saddr @affinity-M2GUG5OS-ns2/sticky/tcp/http__10.42.1.7/8080 goto endpoint-M2GUG5OS-ns2/sticky/tcp/http__10.42.1.7/8080
add rule ip capstan-proxy service-PNH4UI3T-ns2/sticky/tcp/http numgen random mod 1 vmap { 0 : goto endpoint-M2GUG5OS-ns2/sticky/tcp/http__10.42.1.7/8080 }
add rule ip capstan-proxy service-UNPRQAGV-ns2/local/tcp/http meta l4proto tcp dnat ip addr . port to numgen random mod 65536 offset 170721280 map @endpoints-tcp-19
"#;

#[test]
fn full_ruleset_snapshot() {
    let (services, slices) = snapshot_objects();
    let state = ProxyState::compute(&services, &slices, &node());
    check(&render_full("capstan-proxy", &state, &node()), SNAPSHOT);
}

#[test]
fn adding_an_endpoint_changes_elements_only() {
    let (services, mut slices) = snapshot_objects();
    let before = ProxyState::compute(&services, &slices, &node());
    slices[0].endpoints.push(endpoint("10.42.1.10", "node-b", true, false));
    let after = ProxyState::compute(&services, &slices, &node());
    let diff = diff(&before, &after);
    assert_eq!(diff.script, "", "no chain, rule or set changes");
    assert!(diff.newly_stale.is_empty());
    check(
        &diff.elements.to_string(),
        r#"delete element ip capstan-proxy endpoints-tcp-25 { 2091778048-2091810815 }
delete element ip capstan-proxy endpoints-tcp-25 { 2091810816-2091843583 }
add element ip capstan-proxy endpoints-tcp-25 { 2091778048-2091799892 : 10.42.1.2 . 8080 }
add element ip capstan-proxy endpoints-tcp-25 { 2091799893-2091821737 : 10.42.1.3 . 8080 }
add element ip capstan-proxy endpoints-tcp-25 { 2091821738-2091843583 : 10.42.1.10 . 8080 }
add element ip capstan-proxy hairpin { 10.42.1.10 . 10.42.1.10 }
"#,
    );
}

#[test]
fn removing_the_last_endpoint_switches_to_reject() {
    let (services, mut slices) = snapshot_objects();
    let before = ProxyState::compute(&services, &slices, &node());
    slices[1].endpoints.clear();
    let after = ProxyState::compute(&services, &slices, &node());
    let diff = diff(&before, &after);
    assert_eq!(diff.script, "", "the chains stay, unused");
    check(
        &diff.elements.to_string(),
        r#"delete element ip capstan-proxy service-ips { 10.96.0.11 . tcp . 80 }
delete element ip capstan-proxy service-nodeports { tcp . 30080 }
delete element ip capstan-proxy endpoints-tcp-6 { 206831616-206897151 }
delete element ip capstan-proxy hairpin { 10.42.1.5 . 10.42.1.5 }
add element ip capstan-proxy no-endpoint-services { 10.96.0.11 . tcp . 80 : goto reject-chain }
add element ip capstan-proxy no-endpoint-nodeports { tcp . 30080 : goto reject-chain }
"#,
    );
}

#[test]
fn a_new_service_adds_its_chain_then_elements() {
    let (mut services, mut slices) = snapshot_objects();
    let before = ProxyState::compute(&services, &slices, &node());
    services.push(cluster_ip_service("ns3", "new", "10.96.0.20", 53));
    slices.push(slice("ns3", "new", "new-1", 5353, &["10.42.2.1"]));
    let after = ProxyState::compute(&services, &slices, &node());
    let diff = diff(&before, &after);
    check(
        &diff.script,
        r#"add map ip capstan-proxy endpoints-tcp-17 { typeof numgen random mod 65536 : ip daddr . tcp dport ; flags interval ; }
add chain ip capstan-proxy service-YV25F3ZH-ns3/new/tcp/http
add rule ip capstan-proxy service-YV25F3ZH-ns3/new/tcp/http ip daddr 10.96.0.20 tcp dport 53 ip saddr != 10.42.0.0/16 jump mark-for-masquerade
add rule ip capstan-proxy service-YV25F3ZH-ns3/new/tcp/http meta l4proto tcp dnat ip addr . port to numgen random mod 65536 offset 2201157632 map @endpoints-tcp-17
"#,
    );
    check(
        &diff.elements.to_string(),
        r#"add element ip capstan-proxy service-ips { 10.96.0.20 . tcp . 53 : goto service-YV25F3ZH-ns3/new/tcp/http }
add element ip capstan-proxy endpoints-tcp-17 { 2201157632-2201223167 : 10.42.2.1 . 5353 }
add element ip capstan-proxy hairpin { 10.42.2.1 . 10.42.2.1 }
"#,
    );

    // Deleting it again empties its chain, to be deleted later.
    let diff = self::diff(&after, &before);
    assert_eq!(diff.newly_stale.len(), 1, "{:?}", diff.newly_stale);
    check(&diff.script, "flush chain ip capstan-proxy service-YV25F3ZH-ns3/new/tcp/http\n");
    check(
        &diff.elements.to_string(),
        r#"delete element ip capstan-proxy service-ips { 10.96.0.20 . tcp . 53 }
delete element ip capstan-proxy endpoints-tcp-17 { 2201157632-2201223167 }
delete element ip capstan-proxy hairpin { 10.42.2.1 . 10.42.2.1 }
"#,
    );
}

#[test]
fn changing_the_affinity_timeout_recreates_the_sets() {
    let (mut services, slices) = snapshot_objects();
    let before = ProxyState::compute(&services, &slices, &node());
    spec(&mut services[5]).session_affinity_config = Some(SessionAffinityConfig {
        client_ip: Some(ClientIPConfig { timeout_seconds: Some(60) }),
    });
    let after = ProxyState::compute(&services, &slices, &node());
    let diff = diff(&before, &after);
    assert!(diff.elements.is_empty());
    check(
        &diff.script,
        r#"flush chain ip capstan-proxy endpoint-M2GUG5OS-ns2/sticky/tcp/http__10.42.1.7/8080
flush chain ip capstan-proxy service-PNH4UI3T-ns2/sticky/tcp/http
delete set ip capstan-proxy affinity-M2GUG5OS-ns2/sticky/tcp/http__10.42.1.7/8080
add set ip capstan-proxy affinity-M2GUG5OS-ns2/sticky/tcp/http__10.42.1.7/8080 { type ipv4_addr ; flags dynamic,timeout ; timeout 60s ; }
add rule ip capstan-proxy endpoint-M2GUG5OS-ns2/sticky/tcp/http__10.42.1.7/8080 update @affinity-M2GUG5OS-ns2/sticky/tcp/http__10.42.1.7/8080 { ip saddr }
add rule ip capstan-proxy endpoint-M2GUG5OS-ns2/sticky/tcp/http__10.42.1.7/8080 meta l4proto tcp dnat to 10.42.1.7:8080
add rule ip capstan-proxy service-PNH4UI3T-ns2/sticky/tcp/http ip daddr 10.96.0.13 tcp dport 80 ip saddr != 10.42.0.0/16 jump mark-for-masquerade
add rule ip capstan-proxy service-PNH4UI3T-ns2/sticky/tcp/http ip saddr @affinity-M2GUG5OS-ns2/sticky/tcp/http__10.42.1.7/8080 goto endpoint-M2GUG5OS-ns2/sticky/tcp/http__10.42.1.7/8080
add rule ip capstan-proxy service-PNH4UI3T-ns2/sticky/tcp/http numgen random mod 1 vmap { 0 : goto endpoint-M2GUG5OS-ns2/sticky/tcp/http__10.42.1.7/8080 }
"#,
    );
}

#[test]
fn affinity_services_keep_per_endpoint_chains() {
    let (services, mut slices) = snapshot_objects();
    let before = ProxyState::compute(&services, &slices, &node());
    slices[3].endpoints.push(endpoint("10.42.1.11", "node-b", true, false));
    let after = ProxyState::compute(&services, &slices, &node());
    let diff = diff(&before, &after);
    assert!(
        diff.script.contains("add chain ip capstan-proxy endpoint-")
            && diff.script.contains("numgen random mod 2 vmap"),
        "{}",
        diff.script
    );
    assert_eq!(
        diff.elements.to_string(),
        "add element ip capstan-proxy hairpin { 10.42.1.11 . 10.42.1.11 }\n"
    );
}

#[test]
fn terminating_endpoints_are_used_only_without_ready_ones() {
    let service = cluster_ip_service("ns", "web", "10.96.0.10", 80);
    let both = slice_of(
        "ns",
        "web",
        "web-1",
        8080,
        vec![
            endpoint("10.42.1.2", "node-b", true, false),
            endpoint("10.42.1.3", "node-b", false, true),
        ],
    );
    let backends = |state: &ProxyState| -> Vec<String> {
        let table = &state.tables[&IpFamily::V4];
        table
            .endpoint_slots
            .values()
            .flat_map(|slot| &slot.backends)
            .map(Backend::to_string)
            .collect()
    };
    let state = ProxyState::compute([&service], [&both], &node());
    assert_eq!(backends(&state), ["10.42.1.2 . 8080"]);

    let only_terminating =
        slice_of("ns", "web", "web-1", 8080, vec![endpoint("10.42.1.3", "node-b", false, true)]);
    let state = ProxyState::compute([&service], [&only_terminating], &node());
    assert_eq!(backends(&state), ["10.42.1.3 . 8080"]);
    assert!(state.tables[&IpFamily::V4].elements(VerdictMap::NoEndpointServices).next().is_none());
}

#[test]
fn internal_local_without_local_endpoints_drops() {
    let mut service = cluster_ip_service("ns", "web", "10.96.0.10", 80);
    spec(&mut service).internal_traffic_policy = Some("Local".to_owned());
    let remote = slice("ns", "web", "web-1", 8080, &["10.42.1.2"]);
    let state = ProxyState::compute([&service], [&remote], &node());
    let table = &state.tables[&IpFamily::V4];
    assert!(
        table.endpoint_slots.values().all(|slot| slot.backends.is_empty()),
        "{:?}",
        table.endpoint_slots
    );
    assert!(table.elements(VerdictMap::ServiceIps).next().is_none());
    let elements: Vec<_> = table.elements(VerdictMap::NoEndpointServices).collect();
    let key = MapKey::Address("10.96.0.10".parse().unwrap(), Protocol::Tcp, 80);
    assert_eq!(elements, [(&key, &Verdict::Drop)]);
}

#[test]
fn dual_stack_services_get_a_table_per_family() {
    let facts = NodeFacts::new("node-a", &[], &["10.42.0.0/16".to_owned(), "fd42::/56".to_owned()])
        .unwrap();
    assert_eq!(facts.families, [IpFamily::V4, IpFamily::V6]);
    let mut service = cluster_ip_service("ns", "web", "10.96.0.10", 80);
    spec(&mut service).cluster_ips = Some(vec!["10.96.0.10".to_owned(), "fd96::10".to_owned()]);
    let v4 = slice("ns", "web", "web-v4", 8080, &["10.42.1.2"]);
    let v6 = slice("ns", "web", "web-v6", 8080, &["fd42::1:2"]);
    let state = ProxyState::compute([&service], [&v4, &v6], &facts);
    let v6_table = &state.tables[&IpFamily::V6];
    let backends: Vec<&Backend> =
        v6_table.endpoint_slots.values().flat_map(|slot| &slot.backends).collect();
    assert_eq!(backends, [&Backend { ip: "fd42::1:2".parse().unwrap(), port: 8080 }]);
    let rules: Vec<&String> = v6_table.chains.values().flatten().collect();
    assert!(
        rules
            .iter()
            .any(|rule| rule.starts_with("ip6 daddr fd96::10 tcp dport 80 ip6 saddr != fd42::/56")),
        "{rules:?}"
    );
    assert!(rules.iter().any(|rule| rule.contains("dnat ip6 addr . port to numgen")), "{rules:?}");
    let elements: Vec<String> =
        v6_table.elements(VerdictMap::ServiceIps).map(|(key, _)| key.to_string()).collect();
    assert_eq!(elements, ["fd96::10 . tcp . 80"]);
    assert!(
        !state.tables[&IpFamily::V4].chains.values().flatten().any(|rule| rule.contains("fd42"))
    );
}

#[test]
fn pods_leaving_the_cluster_are_masqueraded_per_family() {
    let facts = NodeFacts::new(
        "node-a",
        &[],
        &["10.42.0.0/16".to_owned(), "10.43.0.0/16".to_owned(), "fd42::/56".to_owned()],
    )
    .unwrap();
    let script = render_full("t", &ProxyState::compute([], [], &facts), &facts);
    let egress: Vec<&str> = script
        .lines()
        .filter(|line| line.contains("masquerade fully-random") && line.contains("saddr"))
        .collect();
    assert_eq!(
        egress,
        [
            "add rule ip t nat-postrouting ip saddr { 10.42.0.0/16, 10.43.0.0/16 } ip daddr != { 10.42.0.0/16, 10.43.0.0/16 } ip daddr != 224.0.0.0/4 masquerade fully-random",
            "add rule ip6 t nat-postrouting ip6 saddr fd42::/56 ip6 daddr != fd42::/56 ip6 daddr != ff00::/8 masquerade fully-random",
        ]
    );

    // Without cluster CIDRs there is nothing to tell pods by.
    let unknown = NodeFacts::new("node-a", &["192.0.2.1".parse().unwrap()], &[]).unwrap();
    let script = render_full("t", &ProxyState::compute([], [], &unknown), &unknown);
    assert!(!script.contains("nat-postrouting ip saddr"), "{script}");
    assert!(script.contains("add rule ip t nat-postrouting jump masquerading\n"), "{script}");
}

#[test]
fn the_same_objects_give_the_same_state() {
    let (services, slices) = snapshot_objects();
    let reversed_services: Vec<&Service> = services.iter().rev().collect();
    let reversed_slices: Vec<&EndpointSlice> = slices.iter().rev().collect();
    assert_eq!(
        ProxyState::compute(&services, &slices, &node()),
        ProxyState::compute(reversed_services, reversed_slices, &node())
    );
}

#[test]
fn cidrs_are_parsed_and_masked() {
    assert_eq!("10.42.3.4/16".parse::<Cidr>().unwrap().to_string(), "10.42.0.0/16");
    assert_eq!("fd42::1/64".parse::<Cidr>().unwrap().to_string(), "fd42::/64");
    assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().to_string(), "0.0.0.0/0");
    assert!("10.0.0.0/33".parse::<Cidr>().is_err());
    assert!("10.0.0.0".parse::<Cidr>().is_err());
    assert!("nonsense/8".parse::<Cidr>().is_err());
}
