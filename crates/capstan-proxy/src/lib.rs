//! Capstan's service proxy: kube-proxy's nftables mode, in Rust.
//!
//! Services (core/v1) and EndpointSlices (discovery/v1), with a few facts about the node,
//! become a [`ProxyState`]: the declarative content of one nftables table per IP family
//! (`ip capstan-proxy`, `ip6 capstan-proxy`) that Capstan owns entirely. The layout follows
//! upstream's `pkg/proxy/nftables`: a `service-ips` verdict map (ClusterIPs, externalIPs,
//! load-balancer IPs) and a `service-nodeports` map dispatch to per-service chains, which
//! pick an endpoint chain with `numgen random`; endpoint chains DNAT; `postrouting`
//! masquerades marked packets; `no-endpoint-services` and `no-endpoint-nodeports` reject (or,
//! for `Local` policies without local endpoints, drop) traffic that has nowhere to go.
//!
//! - [`state`]: the pure core, objects in, [`ProxyState`] out.
//! - [`script`]: a state rendered as one `nft -f` transaction, whole or as a diff.
//! - [`syncer`]: decides between full and incremental syncs and keeps what was applied.
//! - [`nft`]: the only IO, behind the [`Nft`] trait (the real `nft` binary, or a recording fake).
//! - [`runtime`]: reflectors on Services and EndpointSlices driving the syncer ([`run`]).
//!
//! **Invariant:** chain and set names are functions of the namespace, name, protocol and port
//! (and the endpoint's address), so a restarted proxy computing the same state writes the same
//! names and established flows keep their conntrack entries.

#![forbid(unsafe_code)]

pub mod bench;
pub mod metrics;
mod names;
pub mod nft;
pub mod runtime;
pub mod script;
pub mod state;
pub mod syncer;

pub use bench::{KernelSyncCosts, SyncCosts, bench_kernel_sync, bench_sync_costs};
pub use metrics::{ProxyMetrics, metrics};
pub use nft::{Nft, NftError, RecordingNft, SystemNft, delete_table};
pub use runtime::{ProxyConfig, ProxyError, run};
pub use state::{Cidr, CidrError, IpFamily, NodeFacts, ProxyState, TableState, VerdictMap};
pub use syncer::{SyncKind, SyncReport, Syncer};
