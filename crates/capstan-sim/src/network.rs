//! Fake addresses: each hollow node's InternalIP and the pod IPs it hands out.
//!
//! Node `i` has the InternalIP `10.250.0.0 + i + 1` and, unless its `spec.podCIDR` says
//! otherwise, the pod range `10.(64 + i / 256).(i % 256).0/24`. Neither overlaps Capstan's
//! default cluster (10.42.0.0/16) and service (10.43.0.0/16) ranges, and no two nodes share
//! an address. Pod IPs start at the range's `.2` (`.1` is the bridge's on a real node).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;

/// The largest node index that has a default pod range (10.249.255.0/24).
pub const MAX_NODE_INDEX: u32 = (250 - 64) * 256 - 1;

/// The InternalIP of the node with this index.
pub fn node_internal_ip(index: u32) -> Ipv4Addr {
    // `SimConfig::validate` keeps the index at or below MAX_NODE_INDEX, so this stays inside
    // 10.250.0.0/14 and never wraps.
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 250, 0, 0)).wrapping_add(index).wrapping_add(1))
}

/// The pod range of the node with this index when its Node has no `spec.podCIDR`.
pub fn default_pod_range(index: u32) -> PodRange {
    // Both octets are below 256 for every index up to MAX_NODE_INDEX; the casts only drop
    // bits that larger indexes (refused by validation) would have.
    let third = (64 + index / 256) as u8;
    let fourth = (index % 256) as u8;
    PodRange { network: Ipv4Addr::new(10, third, fourth, 0), prefix_len: 24 }
}

/// An IPv4 CIDR that pod IPs come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodRange {
    network: Ipv4Addr,
    prefix_len: u8,
}

impl PodRange {
    /// Reads a `spec.podCIDR` such as `10.42.3.0/24`. IPv6 ranges and ranges too small to
    /// hold a pod (longer than /30) give `None`: the node keeps its default range.
    pub fn parse(cidr: &str) -> Option<PodRange> {
        let (address, prefix_len) = cidr.split_once('/')?;
        let address: Ipv4Addr = address.parse().ok()?;
        let prefix_len: u8 = prefix_len.parse().ok()?;
        if !(1..=30).contains(&prefix_len) {
            return None;
        }
        let mask = u32::MAX << (32 - prefix_len);
        Some(PodRange { network: Ipv4Addr::from(u32::from(address) & mask), prefix_len })
    }

    /// How many pod IPs the range holds: all but the network address, `.1` and the broadcast
    /// address.
    fn size(self) -> u32 {
        (1u32 << (32 - self.prefix_len)) - 3
    }

    /// The pod IP at this offset (0 is the range's `.2`).
    fn address(self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 2 + offset)
    }

    /// The offset of an address inside the range, if it is one of the range's pod IPs.
    fn offset(self, address: Ipv4Addr) -> Option<u32> {
        let offset = u32::from(address).checked_sub(u32::from(self.network) + 2)?;
        (offset < self.size()).then_some(offset)
    }
}

impl fmt::Display for PodRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// The pod IPs one node has handed out, by pod uid.
///
/// Allocation is idempotent per pod (asking again for the same uid gives the same address),
/// so a status update retried after a failure or repeated from a stale cache reports the
/// same IP. Addresses are handed out round-robin, so a released one is not reused at once.
#[derive(Debug, Clone)]
pub struct PodIpam {
    range: PodRange,
    /// The offset the next search starts at.
    next: u32,
    by_pod: HashMap<String, Ipv4Addr>,
    in_use: HashSet<Ipv4Addr>,
}

impl PodIpam {
    pub fn new(range: PodRange) -> Self {
        PodIpam { range, next: 0, by_pod: HashMap::new(), in_use: HashSet::new() }
    }

    pub fn range(&self) -> PodRange {
        self.range
    }

    /// Moves new allocations to another range (the Node's `spec.podCIDR` was set). Pods keep
    /// the addresses they have.
    pub fn set_range(&mut self, range: PodRange) {
        if range != self.range {
            self.range = range;
            self.next = 0;
        }
    }

    /// The pod's address: the one it has, else the next free one; `None` when the range is
    /// full.
    pub fn allocate(&mut self, pod_uid: &str) -> Option<Ipv4Addr> {
        if let Some(address) = self.by_pod.get(pod_uid) {
            return Some(*address);
        }
        let size = self.range.size();
        for step in 0..size {
            let offset = (self.next + step) % size;
            let address = self.range.address(offset);
            if !self.in_use.contains(&address) {
                self.next = (offset + 1) % size;
                self.in_use.insert(address);
                self.by_pod.insert(pod_uid.to_owned(), address);
                return Some(address);
            }
        }
        None
    }

    /// Records an address a pod already has (found in its status after a restart). Refused
    /// (`false`) when another pod holds it or it is not in the range.
    pub fn reserve(&mut self, pod_uid: &str, address: Ipv4Addr) -> bool {
        if let Some(held) = self.by_pod.get(pod_uid) {
            return *held == address;
        }
        if self.range.offset(address).is_none() || self.in_use.contains(&address) {
            return false;
        }
        self.in_use.insert(address);
        self.by_pod.insert(pod_uid.to_owned(), address);
        true
    }

    /// Gives the pod's address back, if it had one.
    pub fn release(&mut self, pod_uid: &str) {
        if let Some(address) = self.by_pod.remove(pod_uid) {
            self.in_use.remove(&address);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses() {
        let cases = [
            (0, "10.250.0.1", "10.64.0.0/24"),
            (1, "10.250.0.2", "10.64.1.0/24"),
            (255, "10.250.1.0", "10.64.255.0/24"),
            (256, "10.250.1.1", "10.65.0.0/24"),
            (999, "10.250.3.232", "10.67.231.0/24"),
            (MAX_NODE_INDEX, "10.250.186.0", "10.249.255.0/24"),
        ];
        for (index, ip, range) in cases {
            assert_eq!(node_internal_ip(index).to_string(), ip, "node {index}");
            assert_eq!(default_pod_range(index).to_string(), range, "node {index}");
        }
    }

    #[test]
    fn pod_cidrs() {
        let cases = [
            ("10.42.3.0/24", Some("10.42.3.0/24")),
            ("10.42.3.7/24", Some("10.42.3.0/24")),
            ("10.42.0.0/16", Some("10.42.0.0/16")),
            ("10.42.0.4/30", Some("10.42.0.4/30")),
            ("10.42.0.4/31", None),
            ("fd00::/64", None),
            ("10.42.0.0", None),
            ("", None),
        ];
        for (cidr, expected) in cases {
            assert_eq!(PodRange::parse(cidr).map(|r| r.to_string()).as_deref(), expected, "{cidr}");
        }
    }

    /// One step of an IPAM test and what it answers.
    enum Op {
        Allocate(&'static str, Option<&'static str>),
        Reserve(&'static str, &'static str, bool),
        Release(&'static str),
        SetRange(&'static str),
    }

    fn check(range: &str, ops: &[Op]) {
        let Some(range) = PodRange::parse(range) else { panic!("bad range {range}") };
        let mut ipam = PodIpam::new(range);
        for (step, op) in ops.iter().enumerate() {
            match op {
                Op::Allocate(uid, expected) => {
                    let got = ipam.allocate(uid).map(|a| a.to_string());
                    assert_eq!(got.as_deref(), *expected, "step {step}: allocate {uid}");
                }
                Op::Reserve(uid, address, expected) => {
                    let Ok(address) = address.parse() else { panic!("bad address {address}") };
                    assert_eq!(ipam.reserve(uid, address), *expected, "step {step}: reserve {uid}");
                }
                Op::Release(uid) => ipam.release(uid),
                Op::SetRange(range) => {
                    let Some(range) = PodRange::parse(range) else { panic!("bad range {range}") };
                    ipam.set_range(range);
                }
            }
        }
    }

    #[test]
    fn allocates_in_order_and_idempotently() {
        use Op::*;
        check(
            "10.64.0.0/24",
            &[
                Allocate("a", Some("10.64.0.2")),
                Allocate("b", Some("10.64.0.3")),
                Allocate("a", Some("10.64.0.2")),
                Allocate("c", Some("10.64.0.4")),
            ],
        );
    }

    #[test]
    fn reuses_released_addresses_only_after_a_round() {
        use Op::*;
        // A /30 holds one pod IP (.2), a /29 five (.2 to .6).
        check(
            "10.64.0.0/29",
            &[
                Allocate("a", Some("10.64.0.2")),
                Allocate("b", Some("10.64.0.3")),
                Release("a"),
                Allocate("c", Some("10.64.0.4")),
                Allocate("d", Some("10.64.0.5")),
                Allocate("e", Some("10.64.0.6")),
                Allocate("f", Some("10.64.0.2")),
                Allocate("g", None),
                Release("c"),
                Allocate("g", Some("10.64.0.4")),
            ],
        );
        check("10.64.0.0/30", &[Allocate("a", Some("10.64.0.2")), Allocate("b", None)]);
    }

    #[test]
    fn reserves_addresses_found_in_pod_status() {
        use Op::*;
        check(
            "10.64.0.0/24",
            &[
                Reserve("a", "10.64.0.2", true),
                Reserve("a", "10.64.0.2", true),
                Reserve("b", "10.64.0.2", false),
                Reserve("c", "10.99.0.2", false),
                Reserve("d", "10.64.0.255", false),
                Reserve("e", "10.64.0.1", false),
                Allocate("b", Some("10.64.0.3")),
                Allocate("a", Some("10.64.0.2")),
            ],
        );
    }

    #[test]
    fn moves_to_a_new_range() {
        use Op::*;
        check(
            "10.64.0.0/24",
            &[
                Allocate("a", Some("10.64.0.2")),
                SetRange("10.42.7.0/24"),
                Allocate("a", Some("10.64.0.2")),
                Allocate("b", Some("10.42.7.2")),
            ],
        );
    }
}
