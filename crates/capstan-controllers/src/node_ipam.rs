//! Node IPAM, upstream's range allocator: every node gets a pod CIDR (`spec.podCIDR` and
//! `spec.podCIDRs`) of `--node-cidr-mask-size` bits carved out of the cluster CIDR, the lowest
//! free one first. CIDRs already on nodes are respected; a node whose CIDR is outside the
//! cluster CIDR keeps it. When the range is exhausted the node gets a `CIDRNotAvailable`
//! Event and is retried later. IPv4 only for now.

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
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// A block of IPv4 addresses: `base/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    base: u32,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, with the host bits cleared.
    pub(crate) fn parse(text: &str) -> Option<Cidr> {
        let (address, prefix) = text.split_once('/')?;
        let address: Ipv4Addr = address.parse().ok()?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
        Some(Cidr { base: u32::from(address) & mask(prefix), prefix })
    }

    /// The `index`th subnet of `subnet_prefix` bits, if it lies in this block.
    fn subnet(&self, subnet_prefix: u8, index: u32) -> Option<Cidr> {
        if subnet_prefix < self.prefix || u64::from(index) >= self.subnet_count(subnet_prefix) {
            return None;
        }
        let step = 1_u64 << (32 - u32::from(subnet_prefix));
        let base = u64::from(self.base) + u64::from(index) * step;
        Some(Cidr { base: u32::try_from(base).ok()?, prefix: subnet_prefix })
    }

    fn subnet_count(&self, subnet_prefix: u8) -> u64 {
        if subnet_prefix < self.prefix { 0 } else { 1_u64 << (subnet_prefix - self.prefix) }
    }

    /// Which subnet of `subnet_prefix` bits `other` is, if it is exactly one of this block's.
    fn index_of(&self, other: &Cidr, subnet_prefix: u8) -> Option<u32> {
        if other.prefix != subnet_prefix || other.base & mask(self.prefix) != self.base {
            return None;
        }
        u32::try_from(u64::from(other.base - self.base) >> (32 - u32::from(subnet_prefix))).ok()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) }
}

/// The lowest subnet of `cluster` not in `used`, as an index.
fn lowest_free(cluster: &Cidr, subnet_prefix: u8, used: &BTreeSet<u32>) -> Option<u32> {
    let count = cluster.subnet_count(subnet_prefix);
    (0..count).map(|i| i as u32).find(|i| !used.contains(i))
}

struct Ipam {
    context: Arc<Context>,
    cluster: Cidr,
    subnet_prefix: u8,
    nodes: Store<Node>,
    /// CIDRs this controller handed out that the store may not show yet, by node name.
    handed_out: Mutex<HashMap<String, u32>>,
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
    let Some(cluster) = Cidr::parse(&context.config.cluster_cidr) else {
        tracing::error!(cidr = %context.config.cluster_cidr, "node IPAM: the cluster CIDR is not an IPv4 CIDR; not allocating");
        return;
    };
    let subnet_prefix = context.config.node_cidr_mask_size;
    if subnet_prefix < cluster.prefix || subnet_prefix > 30 {
        tracing::error!(%cluster, subnet_prefix, "node IPAM: the node CIDR mask does not fit the cluster CIDR; not allocating");
        return;
    }
    let api: Api<Node> = Api::all(context.client.clone());
    let controller = Controller::new(api, watcher::Config::default())
        .with_config(Config::default().concurrency(1));
    let ipam = Arc::new(Ipam {
        context: Arc::clone(&context),
        cluster,
        subnet_prefix,
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
        let mut used: BTreeSet<u32> = ipam
            .nodes
            .state()
            .iter()
            .filter_map(|n| n.spec.as_ref()?.pod_cidr.as_deref().and_then(Cidr::parse))
            .filter_map(|cidr| ipam.cluster.index_of(&cidr, ipam.subnet_prefix))
            .collect();
        used.extend(handed_out.iter().filter(|(node, _)| **node != name).map(|(_, index)| *index));
        let chosen = handed_out
            .get(&name)
            .copied()
            .or_else(|| lowest_free(&ipam.cluster, ipam.subnet_prefix, &used));
        if let Some(index) = chosen {
            handed_out.insert(name.clone(), index);
        }
        chosen.and_then(|index| ipam.cluster.subnet(ipam.subnet_prefix, index))
    };
    let Some(cidr) = chosen else {
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
        tracing::warn!(node = %name, cluster = %ipam.cluster, "node IPAM: no pod CIDR left");
        return Ok(Action::requeue(Duration::from_secs(60)));
    };
    let api: Api<Node> = Api::all(ipam.context.client.clone());
    let patch = json!({"spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| IpamError::Patch { node: name.clone(), source })?;
    tracing::info!(node = %name, %cidr, "node IPAM: pod CIDR allocated");
    Ok(Action::await_change())
}

fn error_policy(_node: Arc<Node>, error: &IpamError, _ipam: Arc<Ipam>) -> Action {
    tracing::warn!(%error, "node IPAM: retrying");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carves_subnets_in_order() {
        let cluster = Cidr::parse("10.42.0.0/16").unwrap();
        assert_eq!(cluster.subnet(24, 0).unwrap().to_string(), "10.42.0.0/24");
        assert_eq!(cluster.subnet(24, 255).unwrap().to_string(), "10.42.255.0/24");
        assert_eq!(cluster.subnet(24, 256), None);
        let used = BTreeSet::from([0, 1, 3]);
        assert_eq!(lowest_free(&cluster, 24, &used), Some(2));
        let taken = Cidr::parse("10.42.7.0/24").unwrap();
        assert_eq!(cluster.index_of(&taken, 24), Some(7));
        assert_eq!(cluster.index_of(&Cidr::parse("10.43.0.0/24").unwrap(), 24), None);
        assert_eq!(cluster.index_of(&Cidr::parse("10.42.0.0/25").unwrap(), 24), None);
        let full: BTreeSet<u32> = (0..256).collect();
        assert_eq!(lowest_free(&cluster, 24, &full), None);
    }

    #[test]
    fn parses_and_normalizes() {
        assert_eq!(Cidr::parse("10.42.3.9/16").unwrap().to_string(), "10.42.0.0/16");
        assert_eq!(Cidr::parse("10.0.0.0/8").unwrap().subnet_count(24), 65536);
        assert!(Cidr::parse("10.42.0.0").is_none());
        assert!(Cidr::parse("10.42.0.0/33").is_none());
        assert!(Cidr::parse("fd00::/64").is_none());
    }
}
