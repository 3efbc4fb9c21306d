//! The pure core: Services and EndpointSlices, with facts about this node, become a
//! [`ProxyState`], the declarative content of the proxy's nftables tables.
//!
//! Only the parts that depend on objects are in the state (per-service chains, endpoint maps,
//! affinity sets, map and set elements); the fixed skeleton of each table (base chains,
//! `services`, `masquerading`, the maps' declarations) is a function of the family and the
//! cluster CIDRs alone and is written by [`crate::script`]. Everything is kept in ordered
//! maps, so two computations from the same objects are equal and render byte-for-byte the
//! same script.
//!
//! Each Service contributes a state of its own ([`ProxyState::for_service`]); the state of the
//! whole node is the union of those, kept up to date one Service at a time by
//! [`crate::desired::DesiredState`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::names::ServicePortNames;

/// The label tying an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Upstream's default `sessionAffinityConfig.clientIP.timeoutSeconds` (three hours).
const DEFAULT_AFFINITY_SECONDS: i32 = 10_800;

/// The chain that rejects packets for services without any endpoint.
pub(crate) const REJECT_CHAIN: &str = "reject-chain";

/// The chain that marks packets for masquerading in `postrouting`.
pub(crate) const MARK_MASQ_CHAIN: &str = "mark-for-masquerade";

/// Endpoints are picked by a random number looked up in one of the `endpoints-PROTOCOL-N`
/// maps of ranges: each policy chain owns a slot of `SLOT_WIDTH` numbers in one of them
/// (`numgen random mod SLOT_WIDTH offset slot * SLOT_WIDTH`), and each of its endpoints a
/// range of the slot. The modulus is fixed, so that endpoints coming and going change map elements
/// only, never rules; being a power of two, the random numbers are exactly uniform, and
/// ranges differ in size by at most one number in 65,536.
pub(crate) const SLOT_WIDTH: u32 = 1 << 16;

/// How many endpoint maps each table may have per protocol. The kernel finds a set by name
/// in a list, walks a map's elements whenever a rule starts using it, and rebuilds its
/// lookup tree on each change: a hundred-odd maps keep all of these small, so what a change
/// costs barely grows with the number of Services.
pub(crate) const ENDPOINT_SHARDS: u16 = 128;

/// The name of endpoint map `shard` of `protocol`. The maps are per protocol because nft
/// (1.0.6) describes a map's value with the protocol (`tcp dport`), and rejects a rule of
/// another protocol using it.
pub(crate) fn endpoints_map(protocol: Protocol, shard: u16) -> String {
    format!("endpoints-{}-{shard}", protocol.nft())
}

/// The number of slots in each endpoint map: the last 2^16 numbers are left out, so that
/// every range ends below 2^32 (an interval's end is stored as the number after it).
pub(crate) const SLOTS: u16 = u16::MAX;

/// The numbers endpoint `index` of `count` in `slot` receives, as an inclusive range;
/// `None` when it would be empty (more than 65,536 endpoints).
pub(crate) fn endpoint_range(slot: u16, index: usize, count: usize) -> Option<(u32, u32)> {
    let offset = u32::from(slot) * SLOT_WIDTH;
    let bound = |index: usize| {
        let scaled = u64::from(SLOT_WIDTH) * index as u64 / count.max(1) as u64;
        offset + u32::try_from(scaled).unwrap_or(SLOT_WIDTH)
    };
    let (start, end) = (bound(index), bound(index + 1));
    (end > start).then(|| (start, end - 1))
}

/// Gives the endpoint map (shard) and slot of a policy chain of a family and protocol,
/// `None` when none is left.
pub type SlotFor<'a> = dyn FnMut(IpFamily, Protocol, &str) -> Option<(u16, u16)> + 'a;

/// An IP family; each has its own nftables table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    /// The family of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }

    /// The nftables table family (`ip`, `ip6`), also the match keyword (`ip saddr`).
    pub fn nft(self) -> &'static str {
        match self {
            Self::V4 => "ip",
            Self::V6 => "ip6",
        }
    }

    /// The nftables type of an address of this family.
    pub(crate) fn addr_type(self) -> &'static str {
        match self {
            Self::V4 => "ipv4_addr",
            Self::V6 => "ipv6_addr",
        }
    }

    /// The loopback destinations NodePorts are not served on.
    pub(crate) fn loopback(self) -> &'static str {
        match self {
            Self::V4 => "127.0.0.0/8",
            Self::V6 => "::1",
        }
    }

    /// The multicast destinations, never masqueraded.
    pub(crate) fn multicast(self) -> &'static str {
        match self {
            Self::V4 => "224.0.0.0/4",
            Self::V6 => "ff00::/8",
        }
    }

    /// The EndpointSlice `addressType` of this family.
    fn slice_address_type(self) -> &'static str {
        match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        }
    }
}

/// An invalid cluster CIDR.
#[derive(Debug, thiserror::Error)]
#[error("invalid cidr {cidr:?}: {reason}")]
pub struct CidrError {
    pub cidr: String,
    pub reason: &'static str,
}

/// A network, `address/prefix`, with the host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn family(&self) -> IpFamily {
        IpFamily::of(self.network)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, CidrError> {
        let error = |reason| CidrError { cidr: text.to_owned(), reason };
        let (address, prefix) = text.split_once('/').ok_or_else(|| error("no prefix length"))?;
        let address: IpAddr = address.parse().map_err(|_| error("not an ip address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| error("not a prefix length"))?;
        let network = match address {
            IpAddr::V4(v4) if prefix <= 32 => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::from((u32::from(v4) & mask).to_be_bytes())
            }
            IpAddr::V6(v6) if prefix <= 128 => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::from((u128::from(v6) & mask).to_be_bytes())
            }
            _ => return Err(error("prefix length too long for the address")),
        };
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// What the rules need to know about this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    /// Endpoints whose `nodeName` is this are local (the `Local` traffic policies).
    pub node_name: String,
    /// The families to write a table for.
    pub families: Vec<IpFamily>,
    /// The pod networks: traffic to a ClusterIP from elsewhere is masqueraded, pods reaching
    /// an external destination of a `Local` service are short-circuited, and pods' traffic
    /// leaving the cluster is masqueraded.
    pub cluster_cidrs: Vec<Cidr>,
}

impl NodeFacts {
    /// The facts from a node's name, addresses and cluster CIDRs. A table is written for
    /// each family of the cluster CIDRs (the node's addresses decide when there are none;
    /// IPv4 when there is neither).
    pub fn new(
        node_name: &str,
        node_ips: &[IpAddr],
        cluster_cidrs: &[String],
    ) -> Result<Self, CidrError> {
        let cluster_cidrs = cluster_cidrs
            .iter()
            .map(|cidr| cidr.trim().parse())
            .collect::<Result<Vec<Cidr>, _>>()?;
        let mut families: BTreeSet<IpFamily> = cluster_cidrs.iter().map(Cidr::family).collect();
        if families.is_empty() {
            families = node_ips.iter().copied().map(IpFamily::of).collect();
        }
        if families.is_empty() {
            families.insert(IpFamily::V4);
        }
        Ok(Self {
            node_name: node_name.to_owned(),
            families: families.into_iter().collect(),
            cluster_cidrs,
        })
    }

    /// The cluster CIDRs of `family`, as an nftables value (`10.0.0.0/8` or `{ a, b }`);
    /// `None` when there are none, and so nothing to tell pods from other sources.
    pub(crate) fn cluster_cidrs_of(&self, family: IpFamily) -> Option<String> {
        let cidrs: Vec<String> = self
            .cluster_cidrs
            .iter()
            .filter(|cidr| cidr.family() == family)
            .map(Cidr::to_string)
            .collect();
        match cidrs.as_slice() {
            [] => None,
            [one] => Some(one.clone()),
            many => Some(format!("{{ {} }}", many.join(", "))),
        }
    }
}

/// A Service's `namespace/name`: the unit in which the state is recomputed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey(Arc<str>);

impl ServiceKey {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self(Arc::from(format!("{namespace}/{name}")))
    }

    /// The key of `service`.
    pub fn of_service(service: &Service) -> Self {
        let metadata = &service.metadata;
        Self::new(
            metadata.namespace.as_deref().unwrap_or_default(),
            metadata.name.as_deref().unwrap_or_default(),
        )
    }

    /// The Service's namespace.
    pub fn namespace(&self) -> &str {
        self.0.split_once('/').map_or("", |(namespace, _)| namespace)
    }

    /// The Service's name.
    pub fn name(&self) -> &str {
        self.0.split_once('/').map_or(&*self.0, |(_, name)| name)
    }

    /// The Service `slice` belongs to (its `kubernetes.io/service-name` label), if any.
    pub fn of_slice(slice: &EndpointSlice) -> Option<Self> {
        let namespace = slice.metadata.namespace.as_deref().unwrap_or_default();
        let labels = slice.metadata.labels.as_ref()?;
        labels.get(SERVICE_NAME_LABEL).map(|service| Self::new(namespace, service))
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A transport protocol of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// `TCP` (the default), `UDP`, `SCTP`; `None` for anything else.
    fn parse(protocol: Option<&str>) -> Option<Self> {
        match protocol.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }

    /// The name nftables uses.
    pub fn nft(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Sctp => 132,
        }
    }
}

/// The verdict maps of a table; their elements are part of the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VerdictMap {
    /// `address . protocol . port` of ClusterIPs, externalIPs and load-balancer IPs.
    ServiceIps,
    /// `protocol . port` of NodePorts.
    ServiceNodePorts,
    /// Destinations of services without usable endpoints: reject, or drop.
    NoEndpointServices,
    /// NodePorts of services without usable endpoints.
    NoEndpointNodePorts,
}

impl VerdictMap {
    pub const ALL: [Self; 4] = [
        Self::ServiceIps,
        Self::ServiceNodePorts,
        Self::NoEndpointServices,
        Self::NoEndpointNodePorts,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::ServiceIps => "service-ips",
            Self::ServiceNodePorts => "service-nodeports",
            Self::NoEndpointServices => "no-endpoint-services",
            Self::NoEndpointNodePorts => "no-endpoint-nodeports",
        }
    }

    /// The map's nftables type.
    pub(crate) fn key_type(self, family: IpFamily) -> String {
        match self {
            Self::ServiceIps | Self::NoEndpointServices => {
                format!("{} . inet_proto . inet_service : verdict", family.addr_type())
            }
            Self::ServiceNodePorts | Self::NoEndpointNodePorts => {
                "inet_proto . inet_service : verdict".to_owned()
            }
        }
    }
}

/// The key of a verdict map element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MapKey {
    /// `address . protocol . port` ([`VerdictMap::ServiceIps`], [`VerdictMap::NoEndpointServices`]).
    Address(IpAddr, Protocol, u16),
    /// `protocol . port` ([`VerdictMap::ServiceNodePorts`], [`VerdictMap::NoEndpointNodePorts`]).
    Port(Protocol, u16),
}

impl fmt::Display for MapKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Address(ip, protocol, port) => write!(f, "{ip} . {} . {port}", protocol.nft()),
            Self::Port(protocol, port) => write!(f, "{} . {port}", protocol.nft()),
        }
    }
}

/// The value of a verdict map element.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// Continue in the named chain.
    Goto(String),
    Drop,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Goto(chain) => write!(f, "goto {chain}"),
            Self::Drop => f.write_str("drop"),
        }
    }
}

/// The endpoints a policy chain picks from, and its slot of an endpoint map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSlot {
    /// The map: [`endpoints_map`]`(protocol, shard)`.
    pub protocol: Protocol,
    pub shard: u16,
    pub slot: u16,
    /// In order: endpoint `i` of `n` owns [`endpoint_range`]`(slot, i, n)`.
    pub backends: Vec<Backend>,
}

/// The address and port a connection is DNATed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Backend {
    pub ip: IpAddr,
    pub port: u16,
}

impl fmt::Display for Backend {
    /// As the data of an endpoint map element: `10.0.0.1 . 8080`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} . {}", self.ip, self.port)
    }
}

/// The object-dependent content of one family's table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableState {
    /// Per-service (and, for session affinity, per-endpoint) chains, by name, with their
    /// rules in order.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Session-affinity sets, by name, with their timeout in seconds.
    pub affinity_sets: BTreeMap<String, u32>,
    /// The endpoints of each policy chain that picks them by random number, by chain.
    pub endpoint_slots: BTreeMap<String, EndpointSlot>,
    /// Verdict map elements: key (`10.96.0.1 . tcp . 443`) to verdict (`goto service-…`).
    pub maps: BTreeMap<VerdictMap, BTreeMap<MapKey, Verdict>>,
    /// Endpoint addresses: a connection DNATed from one of them to itself (hairpin) is
    /// masqueraded, so that the reply comes back through this node.
    pub hairpin: BTreeSet<IpAddr>,
}

impl TableState {
    fn add_element(&mut self, map: VerdictMap, key: MapKey, verdict: Verdict) {
        self.maps.entry(map).or_default().insert(key, verdict);
    }

    /// The elements of `map` (empty when it has none).
    pub fn elements(&self, map: VerdictMap) -> impl Iterator<Item = (&MapKey, &Verdict)> {
        self.maps.get(&map).into_iter().flatten()
    }

    pub fn is_empty(&self) -> bool {
        self.chains.is_empty()
            && self.affinity_sets.is_empty()
            && self.endpoint_slots.is_empty()
            && self.maps.values().all(BTreeMap::is_empty)
            && self.hairpin.is_empty()
    }
}

/// The desired content of every table the proxy owns, or the part of it one Service
/// contributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyState {
    pub tables: BTreeMap<IpFamily, TableState>,
}

impl ProxyState {
    /// The state for `services` and their `slices` on the node `node` describes. Headless
    /// and ExternalName services, services without a ClusterIP of a family, FQDN slices and
    /// unknown protocols contribute nothing.
    pub fn compute<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        node: &NodeFacts,
    ) -> Self {
        let mut desired = crate::desired::DesiredState::new(node.clone());
        desired.replace_all(services, slices);
        desired.into_state()
    }

    /// What `service` contributes, given its `slices` (slices of other services are
    /// ignored) and the slots of its policy chains (`slot_for`). Empty when it contributes
    /// nothing.
    pub fn for_service(
        service: &Service,
        slices: &[&EndpointSlice],
        node: &NodeFacts,
        slot_for: &mut SlotFor<'_>,
    ) -> ProxyState {
        let key = ServiceKey::of_service(service);
        let slices: Vec<&EndpointSlice> = slices
            .iter()
            .copied()
            .filter(|slice| ServiceKey::of_slice(slice).as_ref() == Some(&key))
            .collect();
        let mut tables = BTreeMap::new();
        for family in &node.families {
            let Some(view) = ServiceView::new(service, *family) else { continue };
            let mut table = TableState::default();
            for port in view.ports {
                let Some(port) = ServicePortView::new(&view, port) else { continue };
                let endpoints = port_endpoints(&slices, *family, &port, &node.node_name);
                add_service_port(&mut table, &port, &endpoints, node, *family, slot_for);
            }
            if !table.is_empty() {
                tables.insert(*family, table);
            }
        }
        ProxyState { tables }
    }

    pub fn is_empty(&self) -> bool {
        self.tables.values().all(TableState::is_empty)
    }
}

/// The parts of a Service that matter to one family's table.
struct ServiceView<'a> {
    namespace: &'a str,
    name: &'a str,
    cluster_ip: IpAddr,
    /// externalIPs and load-balancer ingress IPs of the family.
    external_ips: Vec<IpAddr>,
    ports: &'a [ServicePort],
    affinity_seconds: Option<u32>,
    internal_local: bool,
    external_local: bool,
}

impl<'a> ServiceView<'a> {
    fn new(service: &'a Service, family: IpFamily) -> Option<Self> {
        let spec = service.spec.as_ref()?;
        if spec.type_.as_deref() == Some("ExternalName") {
            return None;
        }
        let cluster_ips: Vec<&String> = match &spec.cluster_ips {
            Some(ips) if !ips.is_empty() => ips.iter().collect(),
            _ => spec.cluster_ip.iter().collect(),
        };
        // Headless services ("None") and services without an allocated address parse to
        // nothing and are skipped.
        let cluster_ip = cluster_ips
            .iter()
            .filter_map(|ip| ip.parse::<IpAddr>().ok())
            .find(|ip| IpFamily::of(*ip) == family)?;
        let ingress = service
            .status
            .as_ref()
            .and_then(|status| status.load_balancer.as_ref())
            .and_then(|load_balancer| load_balancer.ingress.as_ref());
        let external_ips: Vec<IpAddr> = spec
            .external_ips
            .iter()
            .flatten()
            .chain(ingress.into_iter().flatten().filter_map(|ingress| ingress.ip.as_ref()))
            .filter_map(|ip| ip.parse::<IpAddr>().ok())
            .filter(|ip| IpFamily::of(*ip) == family)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            let seconds = spec
                .session_affinity_config
                .as_ref()
                .and_then(|config| config.client_ip.as_ref())
                .and_then(|client_ip| client_ip.timeout_seconds)
                .unwrap_or(DEFAULT_AFFINITY_SECONDS);
            u32::try_from(seconds.max(1)).unwrap_or(1)
        });
        Some(Self {
            namespace: service.metadata.namespace.as_deref().unwrap_or_default(),
            name: service.metadata.name.as_deref().unwrap_or_default(),
            cluster_ip,
            external_ips,
            ports: spec.ports.as_deref().unwrap_or_default(),
            affinity_seconds,
            internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
            external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
        })
    }
}

/// One port of a service, with everything its rules are made of.
struct ServicePortView<'a> {
    service: &'a ServiceView<'a>,
    port_name: &'a str,
    protocol: Protocol,
    port: u16,
    node_port: Option<u16>,
    names: ServicePortNames,
}

impl<'a> ServicePortView<'a> {
    fn new(service: &'a ServiceView<'a>, port: &'a ServicePort) -> Option<Self> {
        let protocol = Protocol::parse(port.protocol.as_deref())?;
        let port_name = port.name.as_deref().unwrap_or_default();
        Some(Self {
            service,
            port_name,
            protocol,
            port: u16::try_from(port.port).ok()?,
            node_port: port
                .node_port
                .and_then(|port| u16::try_from(port).ok())
                .filter(|port| *port != 0),
            names: ServicePortNames::new(
                service.namespace,
                service.name,
                protocol.nft(),
                port_name,
            ),
        })
    }

    /// The key of `ip` in the `service-ips`-shaped maps.
    fn ip_key(&self, ip: IpAddr) -> MapKey {
        MapKey::Address(ip, self.protocol, self.port)
    }
}

/// One endpoint of a service port, as the proxy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    backend: Backend,
    local: bool,
    ready: bool,
    /// Terminating but still serving: used only when no endpoint is ready (upstream's
    /// fallback, so that connections keep working during a rolling update).
    serving_terminating: bool,
}

/// The endpoints of `port` in `slices` of `family`, each address once, in address order.
fn port_endpoints(
    slices: &[&EndpointSlice],
    family: IpFamily,
    port: &ServicePortView<'_>,
    node_name: &str,
) -> Vec<Endpoint> {
    let mut endpoints: BTreeMap<Backend, Endpoint> = BTreeMap::new();
    for slice in slices.iter().filter(|slice| slice.address_type == family.slice_address_type()) {
        let slice_port = slice.ports.iter().flatten().find(|slice_port| {
            slice_port.name.as_deref().unwrap_or_default() == port.port_name
                && Protocol::parse(slice_port.protocol.as_deref()) == Some(port.protocol)
        });
        let Some(number) = slice_port.and_then(|p| p.port).and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            // Upstream uses an endpoint's first address only; the others are alternatives.
            let Some(ip) = endpoint.addresses.first().and_then(|ip| ip.parse::<IpAddr>().ok())
            else {
                continue;
            };
            if IpFamily::of(ip) != family {
                continue;
            }
            let conditions = endpoint.conditions.as_ref();
            // An unset `ready` means ready; an unset `serving` means what `ready` says.
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            let backend = Backend { ip, port: number };
            endpoints.entry(backend).or_insert_with(|| Endpoint {
                backend,
                local: endpoint.node_name.as_deref() == Some(node_name),
                ready,
                serving_terminating: serving && terminating,
            });
        }
    }
    endpoints.into_values().collect()
}

/// The ready endpoints among `candidates`, or the serving terminating ones when none is ready.
fn usable<'e>(candidates: impl Iterator<Item = &'e Endpoint> + Clone) -> Vec<&'e Endpoint> {
    let ready: Vec<&Endpoint> = candidates.clone().filter(|endpoint| endpoint.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    candidates.filter(|endpoint| endpoint.serving_terminating).collect()
}

/// Writes the chains, maps and elements of one service port into `table`, following
/// upstream's `syncProxyRules`.
///
/// The chains depend on the Service alone (and on its endpoints only under session
/// affinity): whether endpoints exist decides map elements, not rules, so that endpoints
/// coming and going are written as element changes, which nftables applies without loading
/// or re-validating the ruleset.
fn add_service_port(
    table: &mut TableState,
    port: &ServicePortView<'_>,
    endpoints: &[Endpoint],
    node: &NodeFacts,
    family: IpFamily,
    slot_for: &mut SlotFor<'_>,
) {
    let service = port.service;
    let ipx = family.nft();
    let externally_accessible = port.node_port.is_some() || !service.external_ips.is_empty();
    // External traffic from pods and from the host short-circuits to the cluster chain, so
    // an externally reachable service needs it even when both policies are `Local`.
    let uses_cluster = !service.internal_local || externally_accessible;
    let uses_local = service.internal_local || (externally_accessible && service.external_local);
    let cluster_endpoints = if uses_cluster { usable(endpoints.iter()) } else { Vec::new() };
    let local_endpoints =
        if uses_local { usable(endpoints.iter().filter(|e| e.local)) } else { Vec::new() };
    let has_any = endpoints.iter().any(|e| e.ready || e.serving_terminating);

    let cluster_chain = port.names.cluster_chain();
    let local_chain = port.names.local_chain();
    let external_chain = port.names.external_chain();
    let (internal_chain, has_internal) = if service.internal_local {
        (&local_chain, !local_endpoints.is_empty())
    } else {
        (&cluster_chain, has_any)
    };
    let (external_policy_chain, has_external) = if service.external_local {
        (&local_chain, !local_endpoints.is_empty())
    } else {
        (&cluster_chain, has_any)
    };
    // Without any endpoint, clients learn it at once (reject); with endpoints elsewhere only,
    // a `Local` policy drops what it cannot serve here.
    let no_endpoint_verdict =
        if has_any { Verdict::Drop } else { Verdict::Goto(REJECT_CHAIN.to_owned()) };

    let cluster_key = port.ip_key(service.cluster_ip);
    if has_internal {
        table.add_element(
            VerdictMap::ServiceIps,
            cluster_key,
            Verdict::Goto(internal_chain.clone()),
        );
    } else {
        table.add_element(VerdictMap::NoEndpointServices, cluster_key, no_endpoint_verdict.clone());
    }
    for ip in &service.external_ips {
        if has_any {
            table.add_element(
                VerdictMap::ServiceIps,
                port.ip_key(*ip),
                Verdict::Goto(external_chain.clone()),
            );
        }
        if !has_external {
            table.add_element(
                VerdictMap::NoEndpointServices,
                port.ip_key(*ip),
                no_endpoint_verdict.clone(),
            );
        }
    }
    if let Some(node_port) = port.node_port {
        let key = MapKey::Port(port.protocol, node_port);
        if has_any {
            table.add_element(
                VerdictMap::ServiceNodePorts,
                key,
                Verdict::Goto(external_chain.clone()),
            );
        }
        if !has_external {
            table.add_element(VerdictMap::NoEndpointNodePorts, key, no_endpoint_verdict.clone());
        }
    }

    let cluster_cidrs = node.cluster_cidrs_of(family);
    if let Some(cidrs) = &cluster_cidrs {
        // Traffic to the ClusterIP from outside the pod network (a node, a routed client) is
        // masqueraded so that replies come back through this node to be un-DNATed.
        table.chains.entry(internal_chain.clone()).or_default().push(format!(
            "{ipx} daddr {} {} dport {} {ipx} saddr != {cidrs} jump {MARK_MASQ_CHAIN}",
            service.cluster_ip,
            port.protocol.nft(),
            port.port
        ));
    }
    if externally_accessible {
        let rules = table.chains.entry(external_chain).or_default();
        if service.external_local {
            // Pods and the host itself reach external destinations as if through an outside
            // load balancer: any endpoint, not only local ones. The host's traffic has a
            // local source address, so it is masqueraded.
            if let Some(cidrs) = &cluster_cidrs {
                rules.push(format!("{ipx} saddr {cidrs} goto {cluster_chain}"));
            }
            rules.push(format!("fib saddr type local jump {MARK_MASQ_CHAIN}"));
            rules.push(format!("fib saddr type local goto {cluster_chain}"));
        } else {
            // The endpoint may be on another node: masquerade so replies return here.
            rules.push(format!("jump {MARK_MASQ_CHAIN}"));
        }
        rules.push(format!("goto {external_policy_chain}"));
    }
    if uses_cluster {
        add_policy_chain(table, port, &cluster_chain, &cluster_endpoints, family, slot_for);
    }
    if uses_local {
        add_policy_chain(table, port, &local_chain, &local_endpoints, family, slot_for);
    }
    table.hairpin.extend(cluster_endpoints.iter().chain(&local_endpoints).map(|e| e.backend.ip));
}

/// The endpoint selection of a policy chain (`service-…` or `local-…`) among `endpoints`:
/// a random number of the chain's slot looked up in its endpoint map, which DNATs; or, with
/// session affinity, upstream's per-endpoint chains, which remember each client in a set. A
/// chain without a slot (all of its endpoint map taken) picks no endpoint.
fn add_policy_chain(
    table: &mut TableState,
    port: &ServicePortView<'_>,
    chain: &str,
    endpoints: &[&Endpoint],
    family: IpFamily,
    slot_for: &mut SlotFor<'_>,
) {
    let ipx = family.nft();
    let protocol = port.protocol.nft();
    let Some(seconds) = port.service.affinity_seconds else {
        let rules = table.chains.entry(chain.to_owned()).or_default();
        let Some((shard, slot)) = slot_for(family, port.protocol, chain) else { return };
        let offset = u32::from(slot) * SLOT_WIDTH;
        rules.push(format!(
            "meta l4proto {protocol} dnat {ipx} addr . port to numgen random mod {SLOT_WIDTH} offset {offset} map @{}",
            endpoints_map(port.protocol, shard)
        ));
        let backends = endpoints.iter().map(|endpoint| endpoint.backend).collect();
        let slot = EndpointSlot { protocol: port.protocol, shard, slot, backends };
        table.endpoint_slots.insert(chain.to_owned(), slot);
        return;
    };
    let names: Vec<_> =
        endpoints.iter().map(|e| port.names.endpoint(e.backend.ip, e.backend.port)).collect();
    let rules = table.chains.entry(chain.to_owned()).or_default();
    for names in &names {
        rules.push(format!("{ipx} saddr @{} goto {}", names.affinity_set, names.chain));
    }
    if !names.is_empty() {
        let choices: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(index, names)| format!("{index} : goto {}", names.chain))
            .collect();
        rules.push(format!("numgen random mod {} vmap {{ {} }}", names.len(), choices.join(", ")));
    }
    for (endpoint, names) in endpoints.iter().zip(&names) {
        table.affinity_sets.insert(names.affinity_set.clone(), seconds);
        let destination = match endpoint.backend.ip {
            IpAddr::V4(ip) => format!("{ip}:{}", endpoint.backend.port),
            IpAddr::V6(ip) => format!("[{ip}]:{}", endpoint.backend.port),
        };
        table.chains.insert(
            names.chain.clone(),
            vec![
                format!("update @{} {{ {ipx} saddr }}", names.affinity_set),
                format!("meta l4proto {protocol} dnat to {destination}"),
            ],
        );
    }
}

#[cfg(test)]
pub(crate) mod tests;
