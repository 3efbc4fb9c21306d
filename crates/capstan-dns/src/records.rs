//! The cluster's DNS data as one immutable snapshot ([`Records`]), built from Services and
//! EndpointSlices the way the Kubernetes DNS specification lays it out.
//!
//! Names are kept lowercase and without the trailing dot, since every comparison between a
//! query and cluster data is case-insensitive. Every name between a record's owner and the
//! zone apex is present too (possibly with no data), so that an empty non-terminal such as
//! `<ns>.svc.<zone>` answers NODATA rather than NXDOMAIN.

use crate::wire::{Name, RData};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use std::collections::HashMap;
use std::net::IpAddr;

/// The label that ties an EndpointSlice to the Service it serves.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The schema version the specification asks `dns-version.<zone>` to report.
const SCHEMA_VERSION: &str = "1.1.0";

/// One consistent view of the records the cluster zone serves.
#[derive(Debug, Clone)]
pub struct Records {
    zone: String,
    ttl: u32,
    serial: u32,
    synced: bool,
    names: HashMap<String, Vec<RData>>,
}

impl Records {
    /// A snapshot for a zone whose data has not been listed yet: names in the zone are
    /// answered SERVFAIL until a synced snapshot replaces it, rather than a false NXDOMAIN.
    pub fn unsynced(zone: &str, ttl: u32) -> Self {
        Self { zone: normalize(zone), ttl, serial: 1, synced: false, names: HashMap::new() }
    }

    /// Builds the zone from every Service and EndpointSlice of the cluster (all namespaces).
    /// Objects whose names cannot form DNS names are left out.
    pub fn build<'a>(
        zone: &str,
        ttl: u32,
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Self {
        let mut records = Self { synced: true, ..Self::unsynced(zone, ttl) };
        let mut slices_by_service: HashMap<(String, String), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            let service = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL));
            if let (Some(namespace), Some(service)) = (&slice.metadata.namespace, service) {
                slices_by_service
                    .entry((namespace.to_ascii_lowercase(), service.to_ascii_lowercase()))
                    .or_default()
                    .push(slice);
            }
        }
        let zone = records.zone.clone();
        records.touch(&format!("svc.{zone}"));
        records.touch(&format!("pod.{zone}"));
        let version = RData::Txt(vec![SCHEMA_VERSION.as_bytes().to_vec()]);
        records.insert(&format!("dns-version.{zone}"), version);
        for service in services {
            let (Some(namespace), Some(name)) =
                (&service.metadata.namespace, &service.metadata.name)
            else {
                continue;
            };
            let key = (namespace.to_ascii_lowercase(), name.to_ascii_lowercase());
            let slices = slices_by_service.get(&key).map(Vec::as_slice).unwrap_or_default();
            records.add_service(service, &key.0, &key.1, slices);
        }
        records
    }

    /// The same snapshot with another SOA serial (the server bumps it on every rebuild, so
    /// that secondary caches can tell versions apart).
    pub fn with_serial(mut self, serial: u32) -> Self {
        self.serial = serial;
        self
    }

    /// The zone, lowercase and without the trailing dot.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The TTL of every record in the zone.
    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// The SOA serial.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Whether the snapshot reflects listed cluster state.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// The data at a name (lowercase, no trailing dot): `None` when the name does not exist,
    /// an empty slice when it exists without data of its own.
    pub fn lookup(&self, name: &str) -> Option<&[RData]> {
        self.names.get(name).map(Vec::as_slice)
    }

    fn add_service(
        &mut self,
        service: &Service,
        namespace: &str,
        name: &str,
        slices: &[&EndpointSlice],
    ) {
        let base = format!("{name}.{namespace}.svc.{}", self.zone);
        let Some(base_name) = fqdn(&base) else {
            return;
        };
        self.touch(&base);
        let Some(spec) = &service.spec else {
            return;
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            if let Some(target) = spec.external_name.as_deref().and_then(fqdn) {
                self.insert(&base, RData::Cname(target));
            }
            return;
        }
        let cluster_ips: Vec<&str> = match &spec.cluster_ips {
            Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
            _ => spec.cluster_ip.as_deref().into_iter().collect(),
        };
        if cluster_ips.first().is_some_and(|ip| ip.eq_ignore_ascii_case("None")) {
            let publish_unready = spec.publish_not_ready_addresses.unwrap_or(false);
            for slice in slices {
                self.add_headless_slice(&base, slice, publish_unready);
            }
            return;
        }
        for ip in cluster_ips.iter().filter_map(|ip| ip.parse::<IpAddr>().ok()) {
            self.insert(&base, address(ip));
            self.insert(&reverse_name(ip), RData::Ptr(base_name.clone()));
        }
        for port in spec.ports.iter().flatten() {
            let (Some(port_name), Ok(number)) = (port.name.as_deref(), u16::try_from(port.port))
            else {
                continue;
            };
            if port_name.is_empty() {
                continue;
            }
            let protocol = port.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
            let owner = format!("_{}._{protocol}.{base}", port_name.to_ascii_lowercase());
            self.insert(&owner, srv(number, base_name.clone()));
        }
    }

    /// A headless Service's records from one of its slices: the ready addresses at the
    /// Service's name and at each endpoint's own name, PTRs back to the endpoint names, and an
    /// SRV per named port and endpoint.
    fn add_headless_slice(&mut self, base: &str, slice: &EndpointSlice, publish_unready: bool) {
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            return;
        }
        for endpoint in slice.endpoints.iter().filter(|e| publish_unready || ready(e)) {
            for ip in endpoint.addresses.iter().filter_map(|ip| ip.parse::<IpAddr>().ok()) {
                let host = match &endpoint.hostname {
                    Some(hostname) if !hostname.is_empty() => hostname.to_ascii_lowercase(),
                    _ => dashed(ip),
                };
                let owner = format!("{host}.{base}");
                let Some(owner_name) = fqdn(&owner) else {
                    continue;
                };
                self.insert(base, address(ip));
                self.insert(&owner, address(ip));
                self.insert(&reverse_name(ip), RData::Ptr(owner_name.clone()));
                for port in slice.ports.iter().flatten() {
                    let (Some(port_name), Some(Ok(number))) =
                        (port.name.as_deref(), port.port.map(u16::try_from))
                    else {
                        continue;
                    };
                    if port_name.is_empty() {
                        continue;
                    }
                    let protocol = port.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
                    let srv_owner =
                        format!("_{}._{protocol}.{base}", port_name.to_ascii_lowercase());
                    self.insert(&srv_owner, srv(number, owner_name.clone()));
                }
            }
        }
    }

    /// Adds `data` at `name` (once), creating the name and its ancestors up to the zone.
    fn insert(&mut self, name: &str, data: RData) {
        self.touch(name);
        let entry = self.names.entry(name.to_owned()).or_default();
        if !entry.contains(&data) {
            entry.push(data);
        }
    }

    /// Makes `name` exist, and every ancestor of it inside the zone. (Reverse names live
    /// outside the zone: only they themselves exist, so that other addresses fall through to
    /// the upstream resolvers.)
    fn touch(&mut self, name: &str) {
        self.names.entry(name.to_owned()).or_default();
        if !name.ends_with(&format!(".{}", self.zone)) {
            return;
        }
        let mut current = name;
        while let Some((_, parent)) = current.split_once('.') {
            if self.names.contains_key(parent) {
                return;
            }
            self.names.insert(parent.to_owned(), Vec::new());
            if parent == self.zone {
                return;
            }
            current = parent;
        }
    }
}

/// Lowercase, without the trailing dot.
pub(crate) fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A fully qualified name for a dotless name string.
pub(crate) fn fqdn(name: &str) -> Option<Name> {
    Name::from_ascii(&format!("{}.", name.trim_end_matches('.'))).ok()
}

/// An endpoint is ready when its condition says so or says nothing (the API's reading of an
/// unset condition).
fn ready(endpoint: &Endpoint) -> bool {
    endpoint.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true)
}

fn address(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(ip) => RData::A(ip),
        IpAddr::V6(ip) => RData::Aaaa(ip),
    }
}

/// An SRV record's data: every target has priority 0 and weight 100.
fn srv(port: u16, target: Name) -> RData {
    RData::Srv { priority: 0, weight: 100, port, target }
}

/// The address written with dashes, as a DNS label: `10-0-0-1`, `fd00--1`.
pub(crate) fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// The reverse-lookup name of an address (`in-addr.arpa` or `ip6.arpa`), lowercase and
/// without the trailing dot.
pub(crate) fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => {
            let [a, b, c, d] = ip.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(ip) => {
            let mut name = String::with_capacity(72);
            for byte in ip.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            name.push_str("ip6.arpa");
            name
        }
    }
}
