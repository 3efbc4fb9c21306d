//! The arithmetic of the service IP ranges and the node port range: which addresses and
//! ports may be handed out, and a random free one (upstream's `ipallocator` and
//! `portallocator`: a random start, then the next free value; dynamic choices prefer the
//! upper part of a range so that the lower part stays free for values users ask for).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why the service network configuration cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServiceNetworkError {
    #[error("invalid service CIDR {cidr:?}: {reason}")]
    Cidr { cidr: String, reason: &'static str },
    #[error("at most two service CIDRs, one per IP family, may be given (got {0:?})")]
    Families(Vec<String>),
    #[error("invalid node port range {first}-{last}")]
    NodePorts { first: u16, last: u16 },
}

/// An IP family, named as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Family {
    V4,
    V6,
}

impl Family {
    pub(crate) fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "IPv4" => Some(Family::V4),
            "IPv6" => Some(Family::V6),
            _ => None,
        }
    }

    pub(crate) fn other(self) -> Self {
        match self {
            Family::V4 => Family::V6,
            Family::V6 => Family::V4,
        }
    }
}

/// One service CIDR: the addresses of a prefix, as offsets from its network address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IpRange {
    /// The CIDR as given, for messages.
    text: String,
    family: Family,
    network: u128,
    host_bits: u32,
}

impl IpRange {
    pub(crate) fn parse(text: &str) -> Result<Self, ServiceNetworkError> {
        let error = |reason| ServiceNetworkError::Cidr { cidr: text.to_owned(), reason };
        let (address, length) = text.trim().split_once('/').ok_or(error("no prefix length"))?;
        let ip: IpAddr = address.parse().map_err(|_| error("not an IP address"))?;
        let length: u32 = length.parse().map_err(|_| error("not a prefix length"))?;
        let family = Family::of(ip);
        let width = if family == Family::V4 { 32 } else { 128 };
        if length > width {
            return Err(error("prefix length too long"));
        }
        let host_bits = width - length;
        // Fewer than four addresses leave nothing to allocate once the reserved ones are out.
        if host_bits < 2 {
            return Err(error("the range is too small"));
        }
        let value = to_number(ip);
        let network = value & !mask(host_bits);
        if network != value {
            return Err(error("the address has host bits set"));
        }
        Ok(IpRange { text: text.trim().to_owned(), family, network, host_bits })
    }

    pub(crate) fn family(&self) -> Family {
        self.family
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// How many addresses the prefix spans (capped for the widest IPv6 prefixes).
    fn span(&self) -> u128 {
        if self.host_bits >= 128 { u128::MAX } else { 1u128 << self.host_bits }
    }

    /// Whether `ip` may be allocated: inside the prefix, neither its network address nor
    /// (IPv4) its broadcast address.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        self.offset_of(ip).is_some_and(|offset| offset >= 1 && offset <= self.last_offset())
    }

    fn offset_of(&self, ip: IpAddr) -> Option<u128> {
        if Family::of(ip) != self.family {
            return None;
        }
        let value = to_number(ip);
        (value & !mask(self.host_bits) == self.network).then(|| value - self.network)
    }

    fn last_offset(&self) -> u128 {
        match self.family {
            Family::V4 => self.span() - 2,
            Family::V6 => self.span() - 1,
        }
    }

    fn address(&self, offset: u128) -> IpAddr {
        from_number(self.family, self.network + offset)
    }

    /// The first allocatable address: the `kubernetes` Service's (10.43.0.1).
    pub(crate) fn first(&self) -> IpAddr {
        self.address(1)
    }

    /// A random free address, never the first one (kept for the `kubernetes` Service),
    /// preferring the upper part of the range as upstream does. `None` when the range is
    /// full.
    pub(crate) fn choose(&self, taken: &HashSet<IpAddr>) -> Option<IpAddr> {
        // Offsets 2..=last, shifted to start at 0.
        let size = self.last_offset() - 1;
        let lower = static_band(size, 256);
        choose_offset(size, lower, |offset| taken.contains(&self.address(offset + 2)))
            .map(|offset| self.address(offset + 2))
    }
}

/// The node port range, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PortRange {
    pub(crate) first: u16,
    pub(crate) last: u16,
}

impl PortRange {
    pub(crate) fn new(first: u16, last: u16) -> Result<Self, ServiceNetworkError> {
        if first == 0 || last < first {
            return Err(ServiceNetworkError::NodePorts { first, last });
        }
        Ok(PortRange { first, last })
    }

    pub(crate) fn contains(&self, port: i64) -> bool {
        port >= i64::from(self.first) && port <= i64::from(self.last)
    }

    /// A random free port, preferring the upper part of the range. `None` when full.
    pub(crate) fn choose(&self, taken: &HashSet<u16>) -> Option<u16> {
        let size = u128::from(self.last - self.first) + 1;
        let lower = static_band(size, 128);
        let port = |offset: u128| self.first + u16::try_from(offset).unwrap_or(0);
        choose_offset(size, lower, |offset| taken.contains(&port(offset))).map(port)
    }
}

/// The size of the lower band that dynamic allocation leaves for requested values:
/// upstream's `calculateRangeOffset` (a sixteenth of an IP range, a thirty-second of the
/// port range, at least 16 and at most `max`; nothing for ranges under 16).
fn static_band(size: u128, max: u128) -> u128 {
    const MIN: u128 = 16;
    if size < MIN {
        return 0;
    }
    let step = if max == 128 { 32 } else { 16 };
    (size / step).clamp(MIN, max)
}

/// A free offset in `0..size`: from a random start in the upper band `lower..size`,
/// the next one not `taken`, wrapping around; then the same in `0..lower`. Each band is
/// scanned only as far as its run of taken offsets, so huge IPv6 ranges cost nothing.
fn choose_offset(size: u128, lower: u128, taken: impl Fn(u128) -> bool) -> Option<u128> {
    for (start, end) in [(lower, size), (0, lower)] {
        let width = end - start;
        if width == 0 {
            continue;
        }
        let first = start + fastrand::u128(..width);
        let mut offset = first;
        loop {
            if !taken(offset) {
                return Some(offset);
            }
            offset += 1;
            if offset == end {
                offset = start;
            }
            if offset == first {
                break;
            }
        }
    }
    None
}

fn mask(host_bits: u32) -> u128 {
    if host_bits >= 128 { u128::MAX } else { (1u128 << host_bits) - 1 }
}

fn to_number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_number(family: Family, value: u128) -> IpAddr {
    match family {
        // An IPv4 range's offsets stay below 2^32 by construction.
        Family::V4 => IpAddr::V4(Ipv4Addr::from(u32::try_from(value).unwrap_or(0))),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(value)),
    }
}

/// The configured service network: one or two CIDRs (the first is the primary family; two
/// make the cluster dual-stack) and the node port range.
#[derive(Debug, Clone)]
pub(crate) struct ServiceNetwork {
    pub(crate) ranges: Vec<IpRange>,
    pub(crate) node_ports: PortRange,
}

impl ServiceNetwork {
    pub(crate) fn new(
        cidrs: &[String],
        node_ports: (u16, u16),
    ) -> Result<Self, ServiceNetworkError> {
        let ranges =
            cidrs.iter().map(|cidr| IpRange::parse(cidr)).collect::<Result<Vec<_>, _>>()?;
        let distinct = match ranges.as_slice() {
            [_] => true,
            [a, b] => a.family != b.family,
            _ => false,
        };
        if !distinct {
            return Err(ServiceNetworkError::Families(cidrs.to_vec()));
        }
        Ok(ServiceNetwork { ranges, node_ports: PortRange::new(node_ports.0, node_ports.1)? })
    }

    pub(crate) fn primary(&self) -> Family {
        self.ranges.first().map_or(Family::V4, IpRange::family)
    }

    pub(crate) fn dual_stack(&self) -> bool {
        self.ranges.len() == 2
    }

    pub(crate) fn range(&self, family: Family) -> Option<&IpRange> {
        self.ranges.iter().find(|range| range.family == family)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_and_bound_their_addresses() {
        let range = IpRange::parse("10.43.0.0/16").unwrap();
        assert_eq!(range.family(), Family::V4);
        assert_eq!(range.first(), ip("10.43.0.1"));
        for (address, inside) in [
            ("10.43.0.0", false),
            ("10.43.0.1", true),
            ("10.43.255.254", true),
            ("10.43.255.255", false),
            ("10.44.0.1", false),
            ("fd43::1", false),
        ] {
            assert_eq!(range.contains(ip(address)), inside, "{address}");
        }
        let v6 = IpRange::parse("fd43::/112").unwrap();
        assert_eq!(v6.first(), ip("fd43::1"));
        assert!(v6.contains(ip("fd43::ffff")), "IPv6 has no broadcast address");
        assert!(!v6.contains(ip("fd43::")));
        assert!(!v6.contains(ip("fd43::1:0")));
        for bad in ["10.43.0.0", "10.43.0.1/16", "10.43.0.0/33", "x/16", "10.0.0.0/31"] {
            assert!(IpRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn networks_have_one_range_per_family() {
        let dual =
            ServiceNetwork::new(&["10.43.0.0/16".into(), "fd43::/112".into()], (30000, 32767))
                .unwrap();
        assert!(dual.dual_stack());
        assert_eq!(dual.primary(), Family::V4);
        assert_eq!(dual.range(Family::V6).map(IpRange::text), Some("fd43::/112"));
        let v6_first = ServiceNetwork::new(&["fd43::/112".into()], (30000, 32767)).unwrap();
        assert_eq!(v6_first.primary(), Family::V6);
        assert!(v6_first.range(Family::V4).is_none());
        let same = ServiceNetwork::new(&["10.43.0.0/16".into(), "10.44.0.0/16".into()], (1, 2));
        assert!(matches!(same, Err(ServiceNetworkError::Families(_))));
        assert!(ServiceNetwork::new(&[], (30000, 32767)).is_err());
        assert!(ServiceNetwork::new(&["10.43.0.0/16".into()], (32767, 30000)).is_err());
    }

    #[test]
    fn dynamic_addresses_are_free_in_range_and_never_the_first() {
        let range = IpRange::parse("10.43.0.0/29").unwrap();
        // Usable: .1 to .6; .1 is kept for `kubernetes`, so .2 to .6 are handed out.
        let mut taken = HashSet::new();
        for _ in 0..5 {
            let chosen = range.choose(&taken).unwrap();
            assert!(range.contains(chosen) && chosen != range.first(), "{chosen}");
            assert!(taken.insert(chosen), "{chosen} handed out twice");
        }
        assert_eq!(range.choose(&taken), None);
    }

    #[test]
    fn dynamic_addresses_prefer_the_upper_band() {
        let range = IpRange::parse("10.43.0.0/16").unwrap();
        // A /16 keeps its lowest 256 addresses (after .1) for requests.
        for _ in 0..200 {
            let IpAddr::V4(chosen) = range.choose(&HashSet::new()).unwrap() else { panic!() };
            assert!(u32::from(chosen) >= u32::from(Ipv4Addr::new(10, 43, 1, 2)), "{chosen}");
        }
        let v6 = IpRange::parse("fd43::/64").unwrap();
        assert!(v6.contains(v6.choose(&HashSet::new()).unwrap()));
    }

    #[test]
    fn dynamic_choice_falls_back_to_the_lower_band() {
        let range = IpRange::parse("10.43.0.0/24").unwrap();
        // /24: 252 offsets after .1; the lower band is 16 of them (.2 to .17).
        let taken: HashSet<IpAddr> =
            (18..=254).map(|last| IpAddr::V4(Ipv4Addr::new(10, 43, 0, last))).collect();
        let chosen = range.choose(&taken).unwrap();
        let IpAddr::V4(v4) = chosen else { panic!() };
        assert!((2..=17).contains(&v4.octets()[3]), "{chosen}");
    }

    #[test]
    fn ports_come_from_the_range_and_run_out() {
        let ports = PortRange::new(30000, 30009).unwrap();
        assert!(ports.contains(30000) && ports.contains(30009));
        assert!(!ports.contains(29999) && !ports.contains(30010));
        let mut taken = HashSet::new();
        for _ in 0..10 {
            let port = ports.choose(&taken).unwrap();
            assert!(ports.contains(i64::from(port)));
            assert!(taken.insert(port));
        }
        assert_eq!(ports.choose(&taken), None);
        let default = PortRange::new(30000, 32767).unwrap();
        // 2768 ports: the lowest 86 are left for requests.
        for _ in 0..200 {
            assert!(default.choose(&HashSet::new()).unwrap() >= 30086);
        }
        assert!(PortRange::new(0, 10).is_err());
    }
}
