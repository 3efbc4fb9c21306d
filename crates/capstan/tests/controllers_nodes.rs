//! Node IPAM end to end: hollow nodes registering with a server get distinct pod CIDRs, /24s
//! of the cluster CIDR, lowest first.

mod support;

use anyhow::{Result, ensure};
use std::collections::BTreeSet;
use support::Cluster;

#[test]
fn every_node_gets_its_own_pod_cidr() -> Result<()> {
    let c = Cluster::start(false)?;
    let _nodes = c.sim_nodes(&["--count", "3", "--name-prefix", "ipam-"])?;
    let mut cidrs = BTreeSet::new();
    for node in ["ipam-0", "ipam-1", "ipam-2"] {
        let mut cidr = String::new();
        for _ in 0..300 {
            cidr =
                c.ok(&["get", "node", node, "-o", "jsonpath={.spec.podCIDR}"]).unwrap_or_default();
            if !cidr.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let listed = c.ok(&["get", "node", node, "-o", "jsonpath={.spec.podCIDRs[0]}"])?;
        ensure!(listed == cidr, "{node}: podCIDRs {listed} vs podCIDR {cidr}");
        cidrs.insert(cidr);
    }
    let expected: BTreeSet<String> =
        ["10.42.0.0/24", "10.42.1.0/24", "10.42.2.0/24"].map(String::from).into();
    ensure!(cidrs == expected, "pod CIDRs: {cidrs:?}");
    c.stop()
}
