//! Capstan's service proxy: kube-proxy's nftables mode, in Rust.
//!
//! Services (core/v1) and EndpointSlices (discovery/v1), with a few facts about the node,
//! become a [`ProxyState`]: the declarative content of one nftables table per IP family
//! (`ip capstan-proxy`, `ip6 capstan-proxy`) that Capstan owns entirely. The layout follows
//! upstream's `pkg/proxy/nftables`: a `service-ips` verdict map (ClusterIPs, externalIPs,
//! load-balancer IPs) and a `service-nodeports` map dispatch to per-service chains;
//! `no-endpoint-services` and `no-endpoint-nodeports` reject (or, for `Local` policies
//! without local endpoints, drop) traffic that has nowhere to go; `postrouting` masquerades
//! marked packets, hairpin connections, and pods' traffic leaving the cluster.
//!
//! Unlike upstream, a service chain picks its endpoint without per-endpoint chains: it DNATs
//! to a random number looked up in an interval map (`endpoints-N`), where each endpoint owns
//! a range of the chain's slot. Endpoints coming and going therefore change map elements
//! only, which the proxy sends to the kernel over netlink: no `nft` process, no ruleset load,
//! no re-validation, so the cost of an endpoint change does not grow with the number of
//! Services. Services with ClientIP session affinity keep upstream's per-endpoint chains and
//! sets. Chains and rules change only with Services, through `nft -f`.
//!
//! - [`state`]: the pure core, objects in, [`ProxyState`] out, one Service at a time.
//! - [`desired`]: the node's state kept up to date Service by Service, and the [`Changes`]
//!   since the last sync.
//! - [`script`]: a state rendered as one `nft -f` transaction, or changes as a script and an
//!   [`ElementBatch`].
//! - [`syncer`]: decides between full and incremental syncs.
//! - [`nft`]: the only IO, behind the [`Nft`] trait (the `nft` binary and netlink, or a
//!   recording fake).
//! - [`runtime`]: reflectors on Services and EndpointSlices noting which Services changed,
//!   driving the syncer ([`run`]).
//!
//! **Invariant:** chain and set names are functions of the namespace, name, protocol and port
//! (and the endpoint's address), so a restarted proxy computing the same state writes the same
//! names and established flows keep their conntrack entries. (The slot numbers in the
//! endpoint maps are a hash of the chain's name, moved along on the rare collision; a restart
//! may renumber some, which its full sync writes consistently.)

#![forbid(unsafe_code)]

pub mod bench;
pub mod desired;
pub mod elements;
pub mod metrics;
mod names;
mod netlink;
pub mod nft;
pub mod runtime;
pub mod script;
pub mod state;
pub mod syncer;

pub use bench::{KernelSyncCosts, SyncCosts, bench_kernel_sync, bench_sync_costs};
pub use desired::{Changes, DesiredState};
pub use elements::ElementBatch;
pub use metrics::{ProxyMetrics, metrics};
pub use netlink::NetlinkError;
pub use nft::{Nft, NftError, RecordingNft, SystemNft, delete_table};
pub use runtime::{ProxyConfig, ProxyError, run};
pub use state::{
    Backend, Cidr, CidrError, EndpointSlot, IpFamily, MapKey, NodeFacts, Protocol, ProxyState,
    ServiceKey, TableState, Verdict, VerdictMap,
};
pub use syncer::{SyncKind, SyncReport, Syncer};
