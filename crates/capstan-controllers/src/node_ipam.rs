//! Node IPAM, upstream's range allocator: every node gets pod CIDRs (`spec.podCIDR` and
//! `spec.podCIDRs`), one out of each cluster CIDR (`10.42.0.0/16` or, dual-stack,
//! `10.42.0.0/16,fd42::/56`), a /24 for IPv4 and a /64 for IPv6 by default, the lowest free
//! one first and in the cluster CIDRs' order. CIDRs already on nodes are respected; a node
//! whose CIDRs lie outside the cluster CIDRs keeps them, and a node that already has pod
//! CIDRs is never changed (they are immutable once set). When a range is exhausted the node
//! gets a `CIDRNotAvailable` Event and is retried later.

use crate::Context;
use capstan_kube::events::{EventType, reference_to};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Upstream's limit: a cluster CIDR is cut into at most 2^16 node CIDRs.
const MAX_SUBNET_BITS: u8 = 16;

/// A block of addresses of one family, `base/prefix`; an IPv4 address is held in the low
/// 32 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    base: u128,
    prefix: u8,
    v6: bool,
}

impl Cidr {
    /// Parses `a.b.c.d/n` or `x::/n`, with the host bits cleared.
    pub(crate) fn parse(text: &str) -> Option<Cidr> {
        let (address, prefix) = text.trim().split_once('/')?;
        let (address, v6) = match address.parse::<IpAddr>().ok()? {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), false),
            IpAddr::V6(v6) => (u128::from(v6), true),
        };
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= bits(v6))?;
        Some(Cidr { base: address & mask(prefix, v6), prefix, v6 })
    }

    /// The `index`th subnet of `subnet_prefix` bits, if it lies in this block.
    fn subnet(&self, subnet_prefix: u8, index: u64) -> Option<Cidr> {
        if subnet_prefix < self.prefix
            || subnet_prefix > bits(self.v6)
            || index >= self.subnet_count(subnet_prefix)
        {
            return None;
        }
        let offset = u128::from(index).checked_shl(u32::from(bits(self.v6) - subnet_prefix))?;
        Some(Cidr { base: self.base + offset, prefix: subnet_prefix, v6: self.v6 })
    }

    /// How many subnets of `subnet_prefix` bits this block holds (at most 2^16 are used).
    fn subnet_count(&self, subnet_prefix: u8) -> u64 {
        if subnet_prefix < self.prefix || subnet_prefix > bits(self.v6) {
            0
        } else {
            1_u64 << (subnet_prefix - self.prefix).min(MAX_SUBNET_BITS)
        }
    }

    /// Which subnet of `subnet_prefix` bits `other` is, if it is exactly one of this block's.
    fn index_of(&self, other: &Cidr, subnet_prefix: u8) -> Option<u64> {
        if other.v6 != self.v6
            || other.prefix != subnet_prefix
            || other.base & mask(self.prefix, self.v6) != self.base
        {
            return None;
        }
        let index = (other.base - self.base) >> (bits(self.v6) - subnet_prefix);
        u64::try_from(index).ok().filter(|i| *i < self.subnet_count(subnet_prefix))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let address = if self.v6 {
            IpAddr::V6(self.base.into())
        } else {
            IpAddr::V4(u32::try_from(self.base).unwrap_or_default().into())
        };
        write!(f, "{address}/{}", self.prefix)
    }
}

fn bits(v6: bool) -> u8 {
    if v6 { 128 } else { 32 }
}

/// The network bits of a `prefix`-bit block, within the family's width.
fn mask(prefix: u8, v6: bool) -> u128 {
    let all = if v6 { u128::MAX } else { u128::from(u32::MAX) };
    let host = all.checked_shr(u32::from(prefix)).unwrap_or(0);
    all & !host
}

/// The lowest subnet of `cluster` not in `used`, as an index.
fn lowest_free(cluster: &Cidr, subnet_prefix: u8, used: &BTreeSet<u64>) -> Option<u64> {
    (0..cluster.subnet_count(subnet_prefix)).find(|i| !used.contains(i))
}

/// One cluster CIDR and the size of the node CIDRs cut out of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    cluster: Cidr,
    subnet_prefix: u8,
}

/// The ranges of a `--cluster-cidr` list: one or two CIDRs, of different families, each
/// with room for node CIDRs of the family's mask size.
fn ranges(cluster_cidr: &str, mask_ipv4: u8, mask_ipv6: u8) -> Result<Vec<Range>, String> {
    let mut ranges: Vec<Range> = Vec::new();
    for text in cluster_cidr.split(',').filter(|t| !t.trim().is_empty()) {
        let cluster = Cidr::parse(text).ok_or_else(|| format!("{text:?} is not a CIDR"))?;
        if ranges.iter().any(|r| r.cluster.v6 == cluster.v6) {
            return Err(format!("{cluster_cidr:?} has two CIDRs of one IP family"));
        }
        let subnet_prefix = if cluster.v6 { mask_ipv6 } else { mask_ipv4 };
        if subnet_prefix < cluster.prefix
            || subnet_prefix > bits(cluster.v6) - 2
            || subnet_prefix - cluster.prefix > MAX_SUBNET_BITS
        {
            return Err(format!(
                "node CIDRs of /{subnet_prefix} do not fit {cluster} (at most {MAX_SUBNET_BITS} bits \
                 longer than the cluster CIDR)"
            ));
        }
        ranges.push(Range { cluster, subnet_prefix });
    }
    if ranges.is_empty() {
        return Err("no cluster CIDR is configured".to_owned());
    }
    Ok(ranges)
}

struct Ipam {
    context: Arc<Context>,
    ranges: Vec<Range>,
    nodes: Store<Node>,
    /// CIDRs (an index per range) this controller handed out that the store may not show
    /// yet, by node name.
    handed_out: Mutex<HashMap<String, Vec<u64>>>,
}

#[derive(Debug, thiserror::Error)]
enum IpamError {
    #[error("cannot set the pod CIDR of node {node}")]
    Patch {
        node: String,
        #[source]
        source: kube::Error,
    },
}

pub(crate) async fn run(context: Arc<Context>) {
    let config = &context.config;
    let ranges = match ranges(
        &config.cluster_cidr,
        config.node_cidr_mask_size_ipv4,
        config.node_cidr_mask_size_ipv6,
    ) {
        Ok(ranges) => ranges,
        Err(reason) => {
            tracing::error!(cidr = %config.cluster_cidr, %reason, "node IPAM: unusable cluster CIDR; not allocating");
            return;
        }
    };
    let api: Api<Node> = Api::all(context.client.clone());
    let controller = Controller::new(api, watcher::Config::default())
        .with_config(Config::default().concurrency(1));
    let ipam = Arc::new(Ipam {
        context: Arc::clone(&context),
        ranges,
        nodes: controller.store(),
        handed_out: Mutex::new(HashMap::new()),
    });
    controller
        .run(reconcile, error_policy, ipam)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "node IPAM reconcile failed");
            }
        })
        .await;
}

async fn reconcile(node: Arc<Node>, ipam: Arc<Ipam>) -> Result<Action, IpamError> {
    let name = node.metadata.name.clone().unwrap_or_default();
    if node.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some() {
        ipam.handed_out.lock().unwrap_or_else(PoisonError::into_inner).remove(&name);
        return Ok(Action::await_change());
    }
    let chosen = {
        let mut handed_out = ipam.handed_out.lock().unwrap_or_else(PoisonError::into_inner);
        let nodes = ipam.nodes.state();
        let on_nodes: Vec<Cidr> = nodes
            .iter()
            .filter_map(|n| n.spec.as_ref())
            .flat_map(|spec| {
                let mut cidrs = spec.pod_cidrs.clone().unwrap_or_default();
                cidrs.extend(spec.pod_cidr.clone());
                cidrs
            })
            .filter_map(|text| Cidr::parse(&text))
            .collect();
        let mine = handed_out.get(&name).cloned();
        let chosen: Option<Vec<u64>> = ipam
            .ranges
            .iter()
            .enumerate()
            .map(|(r, range)| {
                if let Some(index) = mine.as_ref().and_then(|m| m.get(r)) {
                    return Some(*index);
                }
                let mut used: BTreeSet<u64> = on_nodes
                    .iter()
                    .filter_map(|cidr| range.cluster.index_of(cidr, range.subnet_prefix))
                    .collect();
                used.extend(
                    handed_out
                        .iter()
                        .filter(|(node, _)| **node != name)
                        .filter_map(|(_, indexes)| indexes.get(r).copied()),
                );
                lowest_free(&range.cluster, range.subnet_prefix, &used)
            })
            .collect();
        if let Some(indexes) = &chosen {
            handed_out.insert(name.clone(), indexes.clone());
        }
        chosen.and_then(|indexes| {
            ipam.ranges
                .iter()
                .zip(indexes)
                .map(|(range, index)| range.cluster.subnet(range.subnet_prefix, index))
                .collect::<Option<Vec<Cidr>>>()
        })
    };
    let Some(cidrs) = chosen else {
        let note = format!("Node {name} status is now: CIDRNotAvailable");
        let recorder = ipam.context.recorder("cidrAllocator");
        recorder
            .publish(
                &reference_to(node.as_ref()),
                EventType::Normal,
                "CIDRNotAvailable",
                "CIDRAssignmentFailed",
                note,
            )
            .await;
        tracing::warn!(node = %name, cidr = %ipam.context.config.cluster_cidr, "node IPAM: no pod CIDR left");
        return Ok(Action::requeue(Duration::from_secs(60)));
    };
    let cidrs: Vec<String> = cidrs.iter().map(Cidr::to_string).collect();
    let api: Api<Node> = Api::all(ipam.context.client.clone());
    let patch = json!({"spec": {"podCIDR": cidrs.first(), "podCIDRs": cidrs}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| IpamError::Patch { node: name.clone(), source })?;
    tracing::info!(node = %name, cidrs = %cidrs.join(","), "node IPAM: pod CIDRs allocated");
    Ok(Action::await_change())
}

fn error_policy(_node: Arc<Node>, error: &IpamError, _ipam: Arc<Ipam>) -> Action {
    tracing::warn!(%error, "node IPAM: retrying");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        Cidr::parse(text).unwrap()
    }

    #[test]
    fn carves_ipv4_subnets_in_order() {
        let cluster = cidr("10.42.0.0/16");
        assert_eq!(cluster.subnet(24, 0).unwrap().to_string(), "10.42.0.0/24");
        assert_eq!(cluster.subnet(24, 255).unwrap().to_string(), "10.42.255.0/24");
        assert_eq!(cluster.subnet(24, 256), None);
        let used = BTreeSet::from([0, 1, 3]);
        assert_eq!(lowest_free(&cluster, 24, &used), Some(2));
        assert_eq!(cluster.index_of(&cidr("10.42.7.0/24"), 24), Some(7));
        assert_eq!(cluster.index_of(&cidr("10.43.0.0/24"), 24), None);
        assert_eq!(cluster.index_of(&cidr("10.42.0.0/25"), 24), None);
        assert_eq!(cluster.index_of(&cidr("fd00::/24"), 24), None);
        let full: BTreeSet<u64> = (0..256).collect();
        assert_eq!(lowest_free(&cluster, 24, &full), None);
    }

    #[test]
    fn carves_ipv6_subnets_in_order() {
        let cluster = cidr("fd42::/56");
        assert_eq!(cluster.subnet(64, 0).unwrap().to_string(), "fd42::/64");
        assert_eq!(cluster.subnet(64, 1).unwrap().to_string(), "fd42:0:0:1::/64");
        assert_eq!(cluster.subnet(64, 255).unwrap().to_string(), "fd42:0:0:ff::/64");
        assert_eq!(cluster.subnet(64, 256), None);
        assert_eq!(cluster.index_of(&cidr("fd42:0:0:2a::/64"), 64), Some(42));
        assert_eq!(cluster.index_of(&cidr("fd43::/64"), 64), None);
        // A wide range is used up to upstream's 2^16 node CIDRs.
        assert_eq!(cidr("fd00::/32").subnet_count(64), 65_536);
    }

    #[test]
    fn parses_and_normalizes() {
        assert_eq!(cidr("10.42.3.9/16").to_string(), "10.42.0.0/16");
        assert_eq!(cidr("fd42::1:2/56").to_string(), "fd42::/56");
        assert_eq!(cidr("10.0.0.0/8").subnet_count(24), 65536);
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert!(Cidr::parse("10.42.0.0").is_none());
        assert!(Cidr::parse("10.42.0.0/33").is_none());
        assert!(Cidr::parse("fd00::/129").is_none());
    }

    #[test]
    fn cluster_cidr_lists() {
        let dual = ranges("10.42.0.0/16,fd42::/56", 24, 64).unwrap();
        assert_eq!(dual.len(), 2);
        assert!(!dual[0].cluster.v6 && dual[1].cluster.v6);
        assert_eq!(dual[1].subnet_prefix, 64);
        assert!(ranges("fd42::/56", 24, 64).is_ok());
        assert!(ranges("10.42.0.0/16,10.43.0.0/16", 24, 64).unwrap_err().contains("one IP family"));
        assert!(ranges("10.42.0.0/16", 8, 64).unwrap_err().contains("do not fit"));
        assert!(ranges("10.0.0.0/8", 30, 64).unwrap_err().contains("do not fit"));
        assert!(ranges("", 24, 64).is_err());
        assert!(ranges("nonsense", 24, 64).unwrap_err().contains("not a CIDR"));
    }
}
