//! Stable, short names for the per-service and per-endpoint chains and sets.
//!
//! A name is a prefix (`service-`, `local-`, `external-`, `endpoint-`, `affinity-`), eight
//! base32 characters of the SHA-256 of the readable part, then the readable part itself,
//! `namespace/name/protocol/port` (and `__ip/port` for endpoints). The hash keeps two names
//! distinct even when the readable part has to be cut, and makes them easy to tell apart by
//! eye. nftables names may hold `[A-Za-z0-9_./-]` and Kubernetes names only `[a-z0-9-]`, so
//! `/` separates the parts safely; the colons of IPv6 addresses become dots.

use std::net::IpAddr;

/// The longest readable part kept; nftables allows names of up to 256 bytes and the longest
/// prefix is 9 bytes.
const BASE_MAX: usize = 240;

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// `HASH-text`, cut to [`BASE_MAX`] bytes (the text is ASCII, so any cut is a char boundary).
fn hashed(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    // The first 40 bits of the digest, as eight 5-bit base32 digits.
    let bits = digest.as_ref()[..5].iter().fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
    let mut name: String = (0..8)
        .rev()
        .map(|index| char::from(BASE32[((bits >> (index * 5)) & 31) as usize]))
        .collect();
    name.push('-');
    name.push_str(text);
    if name.len() > BASE_MAX && name.is_ascii() {
        name.truncate(BASE_MAX - 3);
        name.push_str("...");
    }
    name
}

/// A number from `text`, the same in every run (the first slot a chain tries).
pub(crate) fn slot_hint(text: &str) -> u32 {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..4].iter().fold(0u32, |acc, byte| (acc << 8) | u32::from(*byte))
}

/// The readable identity of a service port, `namespace/name/protocol/port-name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServicePortNames {
    /// `HASH-namespace/name/protocol/port-name`, shared by the service's chains.
    base: String,
    /// `namespace/name/protocol/port-name`, the seed of the endpoint names.
    readable: String,
}

impl ServicePortNames {
    pub(crate) fn new(namespace: &str, name: &str, protocol: &str, port_name: &str) -> Self {
        let readable = format!("{namespace}/{name}/{protocol}/{port_name}");
        Self { base: hashed(&readable), readable }
    }

    /// The chain holding the endpoints used under the `Cluster` traffic policy.
    pub(crate) fn cluster_chain(&self) -> String {
        format!("service-{}", self.base)
    }

    /// The chain holding this node's endpoints, used under the `Local` traffic policies.
    pub(crate) fn local_chain(&self) -> String {
        format!("local-{}", self.base)
    }

    /// The chain external destinations (NodePorts, externalIPs, load-balancer IPs) go to.
    pub(crate) fn external_chain(&self) -> String {
        format!("external-{}", self.base)
    }

    /// The names of one endpoint's DNAT chain and affinity set.
    pub(crate) fn endpoint(&self, ip: IpAddr, port: u16) -> EndpointNames {
        let address = ip.to_string().replace(':', ".");
        let base = hashed(&format!("{}__{address}/{port}", self.readable));
        EndpointNames {
            chain: format!("endpoint-{base}"),
            affinity_set: format!("affinity-{base}"),
        }
    }
}

/// The names belonging to one endpoint of one service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EndpointNames {
    pub(crate) chain: String,
    pub(crate) affinity_set: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_readable() {
        let names = ServicePortNames::new("ns1", "svc1", "tcp", "p80");
        let again = ServicePortNames::new("ns1", "svc1", "tcp", "p80");
        assert_eq!(names, again);
        let chain = names.cluster_chain();
        assert!(chain.starts_with("service-"), "{chain}");
        assert!(chain.ends_with("-ns1/svc1/tcp/p80"), "{chain}");
        assert_eq!(chain.len(), "service-".len() + 8 + 1 + "ns1/svc1/tcp/p80".len());
        let endpoint = names.endpoint("10.180.0.1".parse().unwrap(), 80);
        assert!(endpoint.chain.ends_with("-ns1/svc1/tcp/p80__10.180.0.1/80"), "{endpoint:?}");
        assert_ne!(
            endpoint.chain,
            names.endpoint("10.180.0.2".parse().unwrap(), 80).chain,
            "endpoints differing in one digit get different hashes"
        );
    }

    #[test]
    fn ipv6_endpoints_have_no_colons() {
        let names = ServicePortNames::new("ns", "svc", "udp", "");
        let endpoint = names.endpoint("fd00::1".parse().unwrap(), 53);
        assert!(endpoint.chain.ends_with("ns/svc/udp/__fd00..1/53"), "{endpoint:?}");
        assert!(!endpoint.chain.contains(':'));
    }

    #[test]
    fn long_names_are_cut_and_stay_distinct() {
        let long = "n".repeat(63);
        let first = ServicePortNames::new(&long, &long, "tcp", &long)
            .endpoint("fd00:1234:5678:9abc:def0:1234:5678:9abc".parse().unwrap(), 65535);
        let second = ServicePortNames::new(&long, &long, "tcp", &long)
            .endpoint("fd00:1234:5678:9abc:def0:1234:5678:9abd".parse().unwrap(), 65535);
        assert!(first.chain.len() <= "endpoint-".len() + BASE_MAX, "{}", first.chain.len());
        assert!(first.chain.ends_with("..."));
        assert_ne!(first.chain, second.chain);
    }
}
