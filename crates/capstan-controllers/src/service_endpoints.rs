//! What a Service's endpoints should be, from the Service and the pods it selects, with no IO:
//! the subsets of its Endpoints object (upstream's endpoints controller and `RepackSubsets`)
//! and the EndpointSlices to create, update and delete (the reconciler of upstream's
//! `k8s.io/endpointslice`). The two controllers feed it from their caches and write what it
//! returns.
//!
//! Deliberate differences from upstream:
//! - a Service with no `ipFamilies` and no allocated ClusterIP gets slices for the address
//!   families its pods have (IPv4 when it has no pods), where upstream assumes both families:
//!   Capstan's API server does not fill in `ipFamilies` yet, and a second, always empty IPv6
//!   slice per Service would be noise;
//! - the `endpoints.kubernetes.io/last-change-trigger-time` annotation is not computed, so it
//!   is removed from what is written, as upstream does when it has no trigger time;
//! - topology hints and traffic distribution are not implemented: written slices carry none.

use crate::context::controller_reference;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as CoreEndpointPort, EndpointSubset, Endpoints, ObjectReference,
    Pod, Service, ServicePort,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

#[cfg(test)]
mod tests;

/// The label naming the Service an EndpointSlice belongs to.
pub(crate) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming who manages an EndpointSlice.
pub(crate) const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`MANAGED_BY_LABEL`].
pub(crate) const SLICE_CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// Marks the Endpoints and slices of a Service without a ClusterIP.
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// When the change the object reflects happened; not computed here (see the module docs).
const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// Set to `truncated` on an Endpoints object holding only the first [`MAX_ENDPOINTS_ADDRESSES`].
const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";
/// At most this many addresses go into one Endpoints object.
const MAX_ENDPOINTS_ADDRESSES: usize = 1000;
/// Upstream's default `--max-endpoints-per-slice`.
pub(crate) const MAX_ENDPOINTS_PER_SLICE: usize = 100;

// ---------------------------------------------------------------------------------------------
// Services and pods
// ---------------------------------------------------------------------------------------------

/// The Service's selector, if it has one: an empty selector selects nothing, as a missing one
/// (upstream cannot tell them apart once the Service has been stored).
fn selector(service: &Service) -> Option<&BTreeMap<String, String>> {
    service.spec.as_ref()?.selector.as_ref().filter(|selector| !selector.is_empty())
}

/// Whether the controllers write this Service's endpoints: Services without a selector have
/// theirs written by their users, ExternalName Services have none.
pub(crate) fn manages_endpoints(service: &Service) -> bool {
    let external = service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName");
    !external && selector(service).is_some()
}

/// Whether `pod` is one of the Service's: same namespace, labels matching its selector.
pub(crate) fn selects(service: &Service, pod: &Pod) -> bool {
    selects_labels(service, pod.metadata.namespace.as_deref(), pod.metadata.labels.as_ref())
}

/// Whether a pod in `namespace` with `labels` would be one of the Service's.
pub(crate) fn selects_labels(
    service: &Service,
    namespace: Option<&str>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let Some(selector) = selector(service) else { return false };
    if service.metadata.namespace.as_deref() != namespace {
        return false;
    }
    selector.iter().all(|(key, value)| labels.and_then(|l| l.get(key)) == Some(value))
}

fn cluster_ip(service: &Service) -> &str {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).unwrap_or_default()
}

/// Upstream's `IsServiceIPSet` negated: the Service has no ClusterIP of its own.
fn is_headless(service: &Service) -> bool {
    matches!(cluster_ip(service), "" | "None")
}

fn publishes_not_ready(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false)
}

fn service_ports(service: &Service) -> &[ServicePort] {
    service.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or_default()
}

pub(crate) use crate::pod_conditions::is_ready;

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The pod's addresses, `status.podIPs` in order (`status.podIP` when that list is empty);
/// unparseable ones are left out.
fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = pod.status.as_ref() else { return Vec::new() };
    let listed: Vec<&str> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|ip| ip.ip.as_str())
        .filter(|ip| !ip.is_empty())
        .collect();
    let texts = if listed.is_empty() {
        status.pod_ip.as_deref().filter(|ip| !ip.is_empty()).into_iter().collect()
    } else {
        listed
    };
    texts.into_iter().filter_map(|ip| ip.parse().ok()).collect()
}

/// Upstream's `ShouldPodBeInEndpoints`: not finished, has an address, and not being deleted
/// unless terminating pods are wanted.
pub(crate) fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default();
    if matches!(phase, "Succeeded" | "Failed") || pod_ips(pod).is_empty() {
        return false;
    }
    include_terminating || !is_terminating(pod)
}

/// The pod's hostname goes into its endpoint when the pod names this Service as its subdomain.
fn hostname_for(pod: &Pod, service: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    let subdomain_matches = spec.subdomain.as_deref() == service.metadata.name.as_deref();
    (subdomain_matches && pod.metadata.namespace == service.metadata.namespace)
        .then(|| hostname.to_owned())
}

fn protocol_of(protocol: Option<&str>) -> String {
    protocol.filter(|p| !p.is_empty()).unwrap_or("TCP").to_owned()
}

/// The pod's port behind a Service port: the target port when it is a number (the Service
/// port itself when unset), else the container port of that name and protocol in a container
/// or a sidecar (an init container that keeps running).
pub(crate) fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let name = match &port.target_port {
        None => return Some(port.port),
        Some(IntOrString::Int(number)) => return Some(*number),
        Some(IntOrString::String(name)) => name,
    };
    let protocol = protocol_of(port.protocol.as_deref());
    let spec = pod.spec.as_ref()?;
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| {
            p.name.as_deref() == Some(name.as_str())
                && protocol_of(p.protocol.as_deref()) == protocol
        })
        .map(|p| p.container_port)
}

fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// A reference without its resource version, which changes with every write to the pod and
/// says nothing about the endpoint.
fn without_version(reference: &ObjectReference) -> ObjectReference {
    ObjectReference { resource_version: None, ..reference.clone() }
}

/// A port as the controllers compare them: name, number, protocol, application protocol.
type PortTuple = (String, i32, String, Option<String>);

// ---------------------------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------------------------

/// The Endpoints address of `pod`: its address of the Service's family (the first of
/// `ipFamilies`, else that of the ClusterIP, else that of the pod's first address).
fn endpoint_address(service: &Service, pod: &Pod) -> Option<EndpointAddress> {
    let ips = pod_ips(pod);
    let families = service.spec.as_ref().and_then(|s| s.ip_families.as_deref()).unwrap_or_default();
    let want_v6 = match families.first() {
        Some(family) => family == "IPv6",
        None => match cluster_ip(service).parse::<IpAddr>() {
            Ok(ip) => ip.is_ipv6(),
            Err(_) => ips.first().is_some_and(IpAddr::is_ipv6),
        },
    };
    let ip = ips.into_iter().find(|ip| ip.is_ipv6() == want_v6)?;
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty());
    Some(EndpointAddress {
        ip: ip.to_string(),
        hostname: hostname_for(pod, service),
        node_name: node,
        target_ref: Some(target_ref(pod)),
    })
}

/// An address as `Repack` tells them apart: by IP and pod uid.
type AddressKey = (String, String);

/// The addresses offering a port, each with whether it is ready.
type Members = Vec<(AddressKey, bool)>;

/// Collects (address, port, ready) triples and lays them out canonically: the addresses that
/// offer the same ports share a subset; an address not ready for any port of a subset is not
/// ready in it; addresses, ports and subsets are sorted. Two sets of subsets with the same
/// content repack to equal values, whatever their original layout.
#[derive(Default)]
struct Repack {
    /// Each address once.
    addresses: BTreeMap<AddressKey, EndpointAddress>,
    /// For each port (`None`: no ports, for a headless Service without any), its addresses
    /// and whether each is ready.
    by_port: BTreeMap<Option<PortTuple>, BTreeMap<AddressKey, bool>>,
}

impl Repack {
    fn add(&mut self, address: &EndpointAddress, port: Option<PortTuple>, ready: bool) {
        let uid = address.target_ref.as_ref().and_then(|r| r.uid.clone()).unwrap_or_default();
        let key = (address.ip.clone(), uid);
        self.addresses.entry(key.clone()).or_insert_with(|| EndpointAddress {
            target_ref: address.target_ref.as_ref().map(without_version),
            ..address.clone()
        });
        let readiness = self.by_port.entry(port).or_default().entry(key).or_insert(ready);
        *readiness = *readiness && ready;
    }

    /// Every address of `subsets` with every port of its subset.
    fn add_subsets(&mut self, subsets: &[EndpointSubset]) {
        for subset in subsets {
            let ports: Vec<Option<PortTuple>> = match subset.ports.as_deref() {
                Some(ports) if !ports.is_empty() => ports
                    .iter()
                    .map(|p| {
                        Some((
                            p.name.clone().unwrap_or_default(),
                            p.port,
                            protocol_of(p.protocol.as_deref()),
                            p.app_protocol.clone(),
                        ))
                    })
                    .collect(),
                _ => vec![None],
            };
            for port in ports {
                for address in subset.addresses.iter().flatten() {
                    self.add(address, port.clone(), true);
                }
                for address in subset.not_ready_addresses.iter().flatten() {
                    self.add(address, port.clone(), false);
                }
            }
        }
    }

    fn subsets(self) -> Vec<EndpointSubset> {
        let mut groups: BTreeMap<Members, Vec<PortTuple>> = BTreeMap::new();
        for (port, members) in self.by_port {
            let ports = groups.entry(members.into_iter().collect()).or_default();
            ports.extend(port);
        }
        let non_empty = |list: Vec<EndpointAddress>| (!list.is_empty()).then_some(list);
        groups
            .into_iter()
            .map(|(members, ports)| {
                let pick = |ready: bool| {
                    members
                        .iter()
                        .filter(|(_, r)| *r == ready)
                        .filter_map(|(key, _)| self.addresses.get(key).cloned())
                        .collect::<Vec<_>>()
                };
                let ports: Vec<CoreEndpointPort> = ports
                    .into_iter()
                    .map(|(name, port, protocol, app_protocol)| CoreEndpointPort {
                        name: (!name.is_empty()).then_some(name),
                        port,
                        protocol: Some(protocol),
                        app_protocol,
                    })
                    .collect();
                EndpointSubset {
                    addresses: non_empty(pick(true)),
                    not_ready_addresses: non_empty(pick(false)),
                    ports: (!ports.is_empty()).then_some(ports),
                }
            })
            .collect()
    }
}

/// The subsets of the Service's Endpoints: every pod that should be in it with its address,
/// ready or not (all ready with `publishNotReadyAddresses`), under each Service port its pod
/// resolves; terminating pods only with `publishNotReadyAddresses`.
pub(crate) fn desired_subsets(service: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    let tolerate_unready = publishes_not_ready(service);
    let ports = service_ports(service);
    let mut repack = Repack::default();
    for pod in pods {
        if !should_be_in_endpoints(pod, tolerate_unready) {
            continue;
        }
        let Some(address) = endpoint_address(service, pod) else { continue };
        let ready = tolerate_unready || is_ready(pod);
        if ports.is_empty() {
            // Only a headless Service may go without ports; its endpoints are bare addresses.
            if cluster_ip(service) == "None" {
                repack.add(&address, None, ready);
            }
            continue;
        }
        for port in ports {
            let Some(number) = find_port(pod, port) else { continue };
            let tuple = (
                port.name.clone().unwrap_or_default(),
                number,
                protocol_of(port.protocol.as_deref()),
                port.app_protocol.clone(),
            );
            repack.add(&address, Some(tuple), ready);
        }
    }
    repack.subsets()
}

/// Keeps the first [`MAX_ENDPOINTS_ADDRESSES`] addresses, ready ones first, spread over the
/// subsets in proportion to their sizes (rounded up); returns whether any were dropped.
fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let count = |list: &Option<Vec<EndpointAddress>>| list.as_ref().map_or(0, Vec::len);
    let ready: usize = subsets.iter().map(|s| count(&s.addresses)).sum();
    let not_ready: usize = subsets.iter().map(|s| count(&s.not_ready_addresses)).sum();
    if ready + not_ready <= MAX_ENDPOINTS_ADDRESSES {
        return false;
    }
    let truncate_ready = ready > MAX_ENDPOINTS_ADDRESSES;
    let (budget, total) = if truncate_ready {
        (MAX_ENDPOINTS_ADDRESSES, ready)
    } else {
        (MAX_ENDPOINTS_ADDRESSES - ready, not_ready)
    };
    let mut left = budget;
    for subset in subsets.iter_mut() {
        let list =
            if truncate_ready { &mut subset.addresses } else { &mut subset.not_ready_addresses };
        let here = count(list);
        let share = (here * budget).div_ceil(total).min(left);
        if let Some(addresses) = list.as_mut() {
            addresses.truncate(share);
        }
        left -= count(list);
        if truncate_ready {
            subset.not_ready_addresses = None;
        }
    }
    true
}

/// Labels of the Service without the headless marker, missing and empty alike.
fn labels_without_headless(labels: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    let mut labels = labels.cloned().unwrap_or_default();
    labels.remove(HEADLESS_LABEL);
    labels
}

/// The Endpoints object to write for the Service, or `None` when `current` already is what it
/// should be: same subsets (compared canonically, pod resource versions aside), the Service's
/// labels, and the over-capacity annotation exactly when addresses were dropped. An object to
/// create has no resource version; one to update keeps `current`'s metadata.
pub(crate) fn endpoints_to_write(
    service: &Service,
    pods: &[&Pod],
    current: Option<&Endpoints>,
) -> Option<Endpoints> {
    let mut subsets = desired_subsets(service, pods);
    let truncated = truncate(&mut subsets);
    let service_labels = service.metadata.labels.clone().unwrap_or_default();
    if let Some(current) = current {
        let mut canonical = Repack::default();
        canonical.add_subsets(current.subsets.as_deref().unwrap_or_default());
        let over_capacity = current
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(OVER_CAPACITY_ANNOTATION));
        if canonical.subsets() == subsets
            && labels_without_headless(current.metadata.labels.as_ref()) == service_labels
            && over_capacity == truncated
        {
            return None;
        }
    }
    let mut metadata = match current {
        Some(current) => current.metadata.clone(),
        None => ObjectMeta {
            name: service.metadata.name.clone(),
            namespace: service.metadata.namespace.clone(),
            ..ObjectMeta::default()
        },
    };
    let mut labels = service_labels;
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    metadata.labels = Some(labels);
    let mut annotations = metadata.annotations.take().unwrap_or_default();
    annotations.remove(TRIGGER_TIME_ANNOTATION);
    if truncated {
        annotations.insert(OVER_CAPACITY_ANNOTATION.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY_ANNOTATION);
    }
    metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    Some(Endpoints { metadata, subsets: (!subsets.is_empty()).then_some(subsets) })
}

// ---------------------------------------------------------------------------------------------
// EndpointSlices
// ---------------------------------------------------------------------------------------------

/// The address families slices are kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum AddressType {
    IPv4,
    IPv6,
}

impl AddressType {
    fn as_str(self) -> &'static str {
        match self {
            AddressType::IPv4 => "IPv4",
            AddressType::IPv6 => "IPv6",
        }
    }

    fn parse(text: &str) -> Option<AddressType> {
        match text {
            "IPv4" => Some(AddressType::IPv4),
            "IPv6" => Some(AddressType::IPv6),
            _ => None,
        }
    }

    fn holds(self, ip: &IpAddr) -> bool {
        ip.is_ipv6() == (self == AddressType::IPv6)
    }
}

/// The address types the Service gets slices of: its `ipFamilies`, else the family of its
/// ClusterIP, else (see the module docs) the families of its pods' addresses, IPv4 if none.
fn address_types(service: &Service, pods: &[&Pod]) -> BTreeSet<AddressType> {
    let families = service.spec.as_ref().and_then(|s| s.ip_families.as_deref()).unwrap_or_default();
    let mut types: BTreeSet<AddressType> =
        families.iter().filter_map(|f| AddressType::parse(f)).collect();
    if !types.is_empty() {
        return types;
    }
    if let Ok(ip) = cluster_ip(service).parse::<IpAddr>() {
        return BTreeSet::from([if ip.is_ipv6() { AddressType::IPv6 } else { AddressType::IPv4 }]);
    }
    for pod in pods.iter().filter(|pod| should_be_in_endpoints(pod, true)) {
        types.extend(
            pod_ips(pod)
                .iter()
                .map(|ip| if ip.is_ipv6() { AddressType::IPv6 } else { AddressType::IPv4 }),
        );
    }
    if types.is_empty() {
        types.insert(AddressType::IPv4);
    }
    types
}

/// The slice ports of `pod` for the Service: each Service port the pod resolves, named as the
/// Service port.
fn slice_ports(service: &Service, pod: &Pod) -> Vec<EndpointPort> {
    service_ports(service)
        .iter()
        .filter_map(|port| {
            let number = find_port(pod, port)?;
            Some(EndpointPort {
                name: Some(port.name.clone().unwrap_or_default()),
                port: Some(number),
                protocol: Some(protocol_of(port.protocol.as_deref())),
                app_protocol: port.app_protocol.clone(),
            })
        })
        .collect()
}

/// Slices are grouped by their set of ports, in any order; missing names and protocols count
/// as the API server defaults them.
fn port_key(ports: Option<&[EndpointPort]>) -> Vec<PortTuple> {
    let mut key: Vec<PortTuple> = ports
        .unwrap_or_default()
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or_default(),
                protocol_of(p.protocol.as_deref()),
                p.app_protocol.clone(),
            )
        })
        .collect();
    key.sort();
    key
}

/// What identifies an endpoint across syncs, as upstream's endpoint hash: its addresses, its
/// hostname and the pod it stands for.
type EndpointKey = (Vec<String>, Option<String>, Option<String>, Option<String>);

fn endpoint_key(endpoint: &Endpoint) -> EndpointKey {
    let mut addresses = endpoint.addresses.clone();
    addresses.sort();
    let reference = endpoint.target_ref.as_ref();
    (
        addresses,
        endpoint.hostname.clone(),
        reference.and_then(|r| r.namespace.clone()),
        reference.and_then(|r| r.name.clone()),
    )
}

/// Whether two endpoints with the same key also agree on everything else that is written:
/// node, zone, conditions and pod reference (its resource version aside).
fn same_beyond_key(a: &Endpoint, b: &Endpoint) -> bool {
    let conditions = |e: &Endpoint| e.conditions.clone().unwrap_or_default();
    let reference = |e: &Endpoint| e.target_ref.as_ref().map(without_version);
    a.node_name == b.node_name
        && a.zone == b.zone
        && conditions(a) == conditions(b)
        && reference(a) == reference(b)
}

/// The slice endpoint of `pod` for one address type: serving when ready, ready only when also
/// not terminating (always with `publishNotReadyAddresses`).
fn pod_endpoint(
    pod: &Pod,
    zone: Option<String>,
    service: &Service,
    address_type: AddressType,
) -> Endpoint {
    let serving = is_ready(pod);
    let terminating = is_terminating(pod);
    let ready = publishes_not_ready(service) || (serving && !terminating);
    Endpoint {
        addresses: pod_ips(pod)
            .iter()
            .filter(|ip| address_type.holds(ip))
            .map(ToString::to_string)
            .collect(),
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: hostname_for(pod, service),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
        target_ref: Some(target_ref(pod)),
        zone: zone.filter(|z| !z.is_empty()),
        ..Endpoint::default()
    }
}

fn is_reserved_label(key: &str) -> bool {
    matches!(key, SERVICE_NAME_LABEL | MANAGED_BY_LABEL | HEADLESS_LABEL)
}

/// A slice's labels: the Service's (except the reserved ones), the headless marker, the
/// Service's name and this controller's. Also says whether the Service's own labels differ
/// from those the slice carries; the reserved ones do not count.
fn slice_labels(
    current: Option<&BTreeMap<String, String>>,
    service: &Service,
) -> (BTreeMap<String, String>, bool) {
    let unreserved = |labels: Option<&BTreeMap<String, String>>| -> BTreeMap<String, String> {
        labels
            .into_iter()
            .flatten()
            .filter(|(key, _)| !is_reserved_label(key))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    };
    let mut labels = unreserved(service.metadata.labels.as_ref());
    let changed = unreserved(current) != labels;
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels.insert(SERVICE_NAME_LABEL.into(), service.metadata.name.clone().unwrap_or_default());
    labels.insert(MANAGED_BY_LABEL.into(), SLICE_CONTROLLER_NAME.into());
    (labels, changed)
}

/// Whether the slice belongs to this Service rather than to an earlier one of the same name.
fn owned_by(slice: &EndpointSlice, service: &Service) -> bool {
    let uid = service.metadata.uid.as_deref().unwrap_or_default();
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|owner| owner.uid == uid && owner.kind == "Service" && owner.api_version == "v1")
}

/// A new, empty slice of the Service, named by the API server from `<service>-`.
fn new_slice(
    service: &Service,
    ports: Vec<EndpointPort>,
    address_type: AddressType,
) -> EndpointSlice {
    let (labels, _) = slice_labels(None, service);
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!(
                "{}-",
                service.metadata.name.as_deref().unwrap_or_default()
            )),
            namespace: service.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![controller_reference(service)]),
            ..ObjectMeta::default()
        },
        address_type: address_type.as_str().into(),
        endpoints: Vec::new(),
        ports: Some(ports),
    }
}

/// Whether `slice` is just the placeholder a Service without endpoints gets: no ports, no
/// endpoints, the labels it should have.
fn is_placeholder_like(slice: &EndpointSlice, placeholder: &EndpointSlice) -> bool {
    slice.metadata.namespace == placeholder.metadata.namespace
        && slice.metadata.labels.clone().unwrap_or_default()
            == placeholder.metadata.labels.clone().unwrap_or_default()
        && slice.address_type == placeholder.address_type
        && slice.endpoints.is_empty()
        && slice.ports.as_ref().is_none_or(Vec::is_empty)
}

/// Writes a slice that was to be created over one that was to be deleted: the old name and
/// resource version, the new content.
fn recycle(old: &EndpointSlice, fresh: EndpointSlice) -> EndpointSlice {
    let mut annotations = old.metadata.annotations.clone().unwrap_or_default();
    annotations.remove(TRIGGER_TIME_ANNOTATION);
    EndpointSlice {
        metadata: ObjectMeta {
            labels: fresh.metadata.labels,
            owner_references: fresh.metadata.owner_references,
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..old.metadata.clone()
        },
        ..fresh
    }
}

/// A slice that is written after it was read: the annotation this controller does not
/// compute goes.
fn prepared_for_update(mut slice: EndpointSlice) -> EndpointSlice {
    if let Some(annotations) = slice.metadata.annotations.as_mut() {
        annotations.remove(TRIGGER_TIME_ANNOTATION);
    }
    slice
}

/// What to write so that the Service's slices hold the endpoints they should.
#[derive(Debug, Default)]
pub(crate) struct SliceChanges {
    /// New slices (with `generateName`).
    pub(crate) create: Vec<EndpointSlice>,
    /// Existing slices with new content, each with the resource version it was read at.
    pub(crate) update: Vec<EndpointSlice>,
    /// Slices to delete.
    pub(crate) delete: Vec<EndpointSlice>,
    /// Pods left out because their node is unknown, with that node: the Service should be
    /// synced again later.
    pub(crate) unknown_nodes: BTreeSet<(String, String)>,
}

/// What the Service's EndpointSlices need, as upstream's reconciler: per address type, the
/// endpoints of the pods grouped by the ports they resolve; existing slices (`existing`: those
/// labelled as this Service's and managed by this controller) keep what is still wanted and
/// are updated in place, filled up before new slices are created, and emptied ones deleted;
/// a Service without endpoints keeps one empty placeholder slice per address type. `zones`
/// holds every known node with its zone label.
pub(crate) fn slice_changes(
    service: &Service,
    pods: &[&Pod],
    zones: &HashMap<String, Option<String>>,
    existing: &[&EndpointSlice],
    max_per_slice: usize,
) -> SliceChanges {
    let mut changes = SliceChanges::default();
    let types = address_types(service, pods);
    let mut by_type: BTreeMap<AddressType, Vec<EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        match AddressType::parse(&slice.address_type).filter(|t| types.contains(t)) {
            Some(address_type) => by_type.entry(address_type).or_default().push((*slice).clone()),
            None => changes.delete.push((*slice).clone()),
        }
    }
    for address_type in types {
        let existing = by_type.remove(&address_type).unwrap_or_default();
        plan_address_type(
            service,
            pods,
            zones,
            existing,
            address_type,
            max_per_slice,
            &mut changes,
        );
    }
    changes
}

/// The wanted endpoints of one group of ports.
struct PortGroup {
    ports: Vec<EndpointPort>,
    endpoints: BTreeMap<EndpointKey, Endpoint>,
}

fn plan_address_type(
    service: &Service,
    pods: &[&Pod],
    zones: &HashMap<String, Option<String>>,
    existing: Vec<EndpointSlice>,
    address_type: AddressType,
    max_per_slice: usize,
    changes: &mut SliceChanges,
) {
    let existing_count = existing.len();
    let mut create = Vec::new();
    let mut update = Vec::new();
    let mut delete = Vec::new();
    let mut existing_by_ports: BTreeMap<Vec<PortTuple>, Vec<EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        if owned_by(&slice, service) {
            existing_by_ports.entry(port_key(slice.ports.as_deref())).or_default().push(slice);
        } else {
            delete.push(slice);
        }
    }

    let mut wanted: BTreeMap<Vec<PortTuple>, PortGroup> = BTreeMap::new();
    for pod in pods.iter().filter(|pod| should_be_in_endpoints(pod, true)) {
        let ports = slice_ports(service, pod);
        let group = wanted
            .entry(port_key(Some(&ports)))
            .or_insert_with(|| PortGroup { ports, endpoints: BTreeMap::new() });
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        let zone = match zones.get(&node) {
            Some(zone) => zone.clone(),
            // A pod on a node that does not exist (yet, or any more) is left out until the node
            // shows up or the pod goes, unless its Service publishes every address.
            None if !publishes_not_ready(service) => {
                let name = pod.metadata.name.clone().unwrap_or_default();
                changes.unknown_nodes.insert((name, node));
                continue;
            }
            None => None,
        };
        let endpoint = pod_endpoint(pod, zone, service, address_type);
        if !endpoint.addresses.is_empty() {
            group.endpoints.insert(endpoint_key(&endpoint), endpoint);
        }
    }

    for (key, group) in wanted {
        let slices = existing_by_ports.remove(&key).unwrap_or_default();
        let planned = plan_port_group(service, slices, group, address_type, max_per_slice);
        create.extend(planned.create);
        update.extend(planned.update);
        delete.extend(planned.delete);
    }
    // Groups of ports no pod resolves any more.
    delete.extend(existing_by_ports.into_values().flatten());

    // A Service without endpoints keeps one empty slice, so that its consumers can tell "no
    // endpoints" from "not synced yet".
    if existing_count == delete.len() && create.is_empty() {
        let placeholder = new_slice(service, Vec::new(), address_type);
        if delete.len() == 1
            && owned_by(&delete[0], service)
            && is_placeholder_like(&delete[0], &placeholder)
        {
            delete.clear();
        } else {
            create.push(placeholder);
        }
    }

    // Rather than delete a slice and create another, write the new content over the old one.
    let mut index = 0;
    while index < delete.len() && !create.is_empty() {
        if owned_by(&delete[index], service)
            && let Some(fresh) = create.pop()
        {
            let old = delete.remove(index);
            update.push(recycle(&old, fresh));
        } else {
            index += 1;
        }
    }

    changes.create.extend(create);
    changes.update.extend(update);
    changes.delete.extend(delete);
}

struct Planned {
    create: Vec<EndpointSlice>,
    update: Vec<EndpointSlice>,
    delete: Vec<EndpointSlice>,
}

/// Upstream's `reconcileByPortMapping` for one group of ports: existing slices drop what is
/// no longer wanted and take the current version of what is; changed slices are filled up
/// first (fullest first); what is left goes into the unchanged slice it fills best when it
/// fits into one, else into new slices.
fn plan_port_group(
    service: &Service,
    existing: Vec<EndpointSlice>,
    group: PortGroup,
    address_type: AddressType,
    max_per_slice: usize,
) -> Planned {
    let PortGroup { ports, endpoints: mut wanted } = group;
    let mut update: Vec<EndpointSlice> = Vec::new();
    let mut unchanged: Vec<EndpointSlice> = Vec::new();
    let mut delete: Vec<EndpointSlice> = Vec::new();

    for mut slice in existing {
        let before = slice.endpoints.len();
        let mut kept = Vec::with_capacity(before);
        let mut endpoint_changed = false;
        for endpoint in &slice.endpoints {
            if let Some(current) = wanted.remove(&endpoint_key(endpoint)) {
                endpoint_changed |= !same_beyond_key(&current, endpoint);
                kept.push(current);
            }
        }
        let (labels, labels_changed) = slice_labels(slice.metadata.labels.as_ref(), service);
        if endpoint_changed || kept.len() != before {
            if kept.is_empty() {
                delete.push(slice);
            } else {
                slice.endpoints = kept;
                slice.metadata.labels = Some(labels);
                update.push(slice);
            }
        } else if labels_changed {
            slice.metadata.labels = Some(labels);
            update.push(slice);
        } else {
            unchanged.push(slice);
        }
    }

    let take = |slice: &mut EndpointSlice, wanted: &mut BTreeMap<EndpointKey, Endpoint>| {
        while slice.endpoints.len() < max_per_slice {
            let Some((_, endpoint)) = wanted.pop_first() else { break };
            slice.endpoints.push(endpoint);
        }
    };

    if !wanted.is_empty() && !update.is_empty() {
        update.sort_by_key(|slice| std::cmp::Reverse(slice.endpoints.len()));
        for slice in &mut update {
            take(slice, &mut wanted);
        }
    }

    let mut create = Vec::new();
    while !wanted.is_empty() {
        let best_fit = if wanted.len() < max_per_slice {
            fullest_fit(&unchanged, wanted.len(), max_per_slice)
        } else {
            None
        };
        match best_fit {
            Some(index) => {
                let mut slice = unchanged.remove(index);
                take(&mut slice, &mut wanted);
                update.push(slice);
            }
            None => {
                let mut slice = new_slice(service, ports.clone(), address_type);
                take(&mut slice, &mut wanted);
                create.push(slice);
            }
        }
    }

    Planned { create, update: update.into_iter().map(prepared_for_update).collect(), delete }
}

/// The slice `extra` more endpoints would bring closest to full without overflowing it.
fn fullest_fit(slices: &[EndpointSlice], extra: usize, max_per_slice: usize) -> Option<usize> {
    slices
        .iter()
        .enumerate()
        .filter(|(_, slice)| slice.endpoints.len() + extra <= max_per_slice)
        .min_by_key(|(_, slice)| max_per_slice - (slice.endpoints.len() + extra))
        .map(|(index, _)| index)
}
