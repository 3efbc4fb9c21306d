//! The pure core: Services and EndpointSlices, with facts about this node, become a
//! [`ProxyState`], the declarative content of the proxy's nftables tables.
//!
//! Only the parts that depend on objects are in the state (per-service chains, affinity sets,
//! verdict map elements); the fixed skeleton of each table (base chains, `services`,
//! `masquerading`, the maps' declarations) is a function of the family alone and is written by
//! [`crate::script`]. Everything is kept in ordered maps, so two computations from the same
//! objects are equal and render byte-for-byte the same script.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::names::{EndpointNames, ServicePortNames};

/// The label tying an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Upstream's default `sessionAffinityConfig.clientIP.timeoutSeconds` (three hours).
const DEFAULT_AFFINITY_SECONDS: i32 = 10_800;

/// The chain that rejects packets for services without any endpoint.
pub(crate) const REJECT_CHAIN: &str = "reject-chain";

/// The chain that marks packets for masquerading in `postrouting`.
pub(crate) const MARK_MASQ_CHAIN: &str = "mark-for-masquerade";

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
    /// The pod networks: traffic to a ClusterIP from elsewhere is masqueraded, and pods
    /// reaching an external destination of a `Local` service are short-circuited.
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
    fn cluster_cidrs_of(&self, family: IpFamily) -> Option<String> {
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

/// The object-dependent content of one family's table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableState {
    /// Per-service and per-endpoint chains, by name, with their rules in order.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Session-affinity sets, by name, with their timeout in seconds.
    pub affinity_sets: BTreeMap<String, u32>,
    /// Verdict map elements: key (`10.96.0.1 . tcp . 443`) to verdict (`goto service-…`).
    pub maps: BTreeMap<VerdictMap, BTreeMap<String, String>>,
}

impl TableState {
    fn add_element(&mut self, map: VerdictMap, key: String, verdict: String) {
        self.maps.entry(map).or_default().insert(key, verdict);
    }

    /// The elements of `map` (empty when it has none).
    pub fn elements(&self, map: VerdictMap) -> impl Iterator<Item = (&String, &String)> {
        self.maps.get(&map).into_iter().flatten()
    }
}

/// The desired content of every table the proxy owns.
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
        let mut slices_by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            let namespace = slice.metadata.namespace.as_deref().unwrap_or_default();
            let labels = slice.metadata.labels.as_ref();
            if let Some(service) = labels.and_then(|labels| labels.get(SERVICE_NAME_LABEL)) {
                slices_by_service.entry((namespace, service.as_str())).or_default().push(slice);
            }
        }
        let mut tables: BTreeMap<IpFamily, TableState> =
            node.families.iter().map(|family| (*family, TableState::default())).collect();
        for service in services {
            let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
            let name = service.metadata.name.as_deref().unwrap_or_default();
            let slices =
                slices_by_service.get(&(namespace, name)).map(Vec::as_slice).unwrap_or(&[]);
            for (family, table) in &mut tables {
                let Some(view) = ServiceView::new(service, *family) else { continue };
                for port in view.ports {
                    let Some(port) = ServicePortView::new(&view, port) else { continue };
                    let endpoints = port_endpoints(slices, *family, &port, &node.node_name);
                    add_service_port(table, &port, &endpoints, node, *family);
                }
            }
        }
        Self { tables }
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
    /// `tcp`, `udp` or `sctp`.
    protocol: &'static str,
    port: u16,
    node_port: Option<u16>,
    names: ServicePortNames,
}

impl<'a> ServicePortView<'a> {
    fn new(service: &'a ServiceView<'a>, port: &'a ServicePort) -> Option<Self> {
        let protocol = protocol_of(port.protocol.as_deref())?;
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
            names: ServicePortNames::new(service.namespace, service.name, protocol, port_name),
        })
    }

    /// The key of `ip` in the `service-ips`-shaped maps.
    fn ip_key(&self, ip: IpAddr) -> String {
        format!("{ip} . {} . {}", self.protocol, self.port)
    }
}

/// `TCP` (the default), `UDP`, `SCTP` in nftables' spelling; `None` for anything else.
fn protocol_of(protocol: Option<&str>) -> Option<&'static str> {
    match protocol.unwrap_or("TCP") {
        "TCP" => Some("tcp"),
        "UDP" => Some("udp"),
        "SCTP" => Some("sctp"),
        _ => None,
    }
}

/// One endpoint of a service port, as the proxy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    ip: IpAddr,
    port: u16,
    local: bool,
    ready: bool,
    /// Terminating but still serving: used only when no endpoint is ready (upstream's
    /// fallback, so that connections keep working during a rolling update).
    serving_terminating: bool,
    names: EndpointNames,
}

/// The endpoints of `port` in `slices` of `family`, each address once, in address order.
fn port_endpoints(
    slices: &[&EndpointSlice],
    family: IpFamily,
    port: &ServicePortView<'_>,
    node_name: &str,
) -> Vec<Endpoint> {
    let mut endpoints: BTreeMap<(IpAddr, u16), Endpoint> = BTreeMap::new();
    for slice in slices.iter().filter(|slice| slice.address_type == family.slice_address_type()) {
        let slice_port = slice.ports.iter().flatten().find(|slice_port| {
            slice_port.name.as_deref().unwrap_or_default() == port.port_name
                && protocol_of(slice_port.protocol.as_deref()) == Some(port.protocol)
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
            endpoints.entry((ip, number)).or_insert_with(|| Endpoint {
                ip,
                port: number,
                local: endpoint.node_name.as_deref() == Some(node_name),
                ready,
                serving_terminating: serving && terminating,
                names: port.names.endpoint(ip, number),
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

/// Writes the chains, sets and map elements of one service port into `table`, following
/// upstream's `syncProxyRules`.
fn add_service_port(
    table: &mut TableState,
    port: &ServicePortView<'_>,
    endpoints: &[Endpoint],
    node: &NodeFacts,
    family: IpFamily,
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
    let uses_external_chain = has_any && externally_accessible;
    // Without any endpoint, clients learn it at once (reject); with endpoints elsewhere only,
    // a `Local` policy drops what it cannot serve here.
    let no_endpoint_verdict =
        if has_any { "drop".to_owned() } else { format!("goto {REJECT_CHAIN}") };

    let cluster_key = port.ip_key(service.cluster_ip);
    if has_internal {
        table.add_element(VerdictMap::ServiceIps, cluster_key, format!("goto {internal_chain}"));
    } else {
        table.add_element(VerdictMap::NoEndpointServices, cluster_key, no_endpoint_verdict.clone());
    }
    for ip in &service.external_ips {
        if has_any {
            table.add_element(
                VerdictMap::ServiceIps,
                port.ip_key(*ip),
                format!("goto {external_chain}"),
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
        let key = format!("{} . {node_port}", port.protocol);
        if has_any {
            table.add_element(
                VerdictMap::ServiceNodePorts,
                key.clone(),
                format!("goto {external_chain}"),
            );
        }
        if !has_external {
            table.add_element(VerdictMap::NoEndpointNodePorts, key, no_endpoint_verdict.clone());
        }
    }

    let cluster_cidrs = node.cluster_cidrs_of(family);
    let mut chains: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if has_internal && let Some(cidrs) = &cluster_cidrs {
        // Traffic to the ClusterIP from outside the pod network (a node, a routed client) is
        // masqueraded so that replies come back through this node to be un-DNATed.
        chains.entry(internal_chain.clone()).or_default().push(format!(
            "{ipx} daddr {} {} dport {} {ipx} saddr != {cidrs} jump {MARK_MASQ_CHAIN}",
            service.cluster_ip, port.protocol, port.port
        ));
    }
    if uses_external_chain {
        let rules = chains.entry(external_chain.clone()).or_default();
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
        if has_external {
            rules.push(format!("goto {external_policy_chain}"));
        }
    }
    if !cluster_endpoints.is_empty() {
        let rules = chains.entry(cluster_chain.clone()).or_default();
        endpoint_selection(rules, &cluster_endpoints, service.affinity_seconds.is_some(), ipx);
    }
    if !local_endpoints.is_empty() {
        let rules = chains.entry(local_chain.clone()).or_default();
        endpoint_selection(rules, &local_endpoints, service.affinity_seconds.is_some(), ipx);
    }
    let reachable: BTreeMap<&str, &Endpoint> = cluster_endpoints
        .iter()
        .chain(&local_endpoints)
        .map(|endpoint| (endpoint.names.chain.as_str(), *endpoint))
        .collect();
    for endpoint in reachable.values() {
        let mut rules = vec![format!("{ipx} saddr {} jump {MARK_MASQ_CHAIN}", endpoint.ip)];
        if let Some(seconds) = service.affinity_seconds {
            table.affinity_sets.insert(endpoint.names.affinity_set.clone(), seconds);
            rules.push(format!("update @{} {{ {ipx} saddr }}", endpoint.names.affinity_set));
        }
        let destination = match endpoint.ip {
            IpAddr::V4(ip) => format!("{ip}:{}", endpoint.port),
            IpAddr::V6(ip) => format!("[{ip}]:{}", endpoint.port),
        };
        rules.push(format!("meta l4proto {} dnat to {destination}", port.protocol));
        chains.insert(endpoint.names.chain.clone(), rules);
    }
    table.chains.extend(chains);
}

/// The rules of a policy chain: the remembered endpoint of a client first (session
/// affinity), then a random pick among `endpoints`.
fn endpoint_selection(rules: &mut Vec<String>, endpoints: &[&Endpoint], affinity: bool, ipx: &str) {
    if affinity {
        for endpoint in endpoints {
            rules.push(format!(
                "{ipx} saddr @{} goto {}",
                endpoint.names.affinity_set, endpoint.names.chain
            ));
        }
    }
    let choices: Vec<String> = endpoints
        .iter()
        .enumerate()
        .map(|(index, endpoint)| format!("{index} : goto {}", endpoint.names.chain))
        .collect();
    rules.push(format!("numgen random mod {} vmap {{ {} }}", endpoints.len(), choices.join(", ")));
}

#[cfg(test)]
pub(crate) mod tests;
