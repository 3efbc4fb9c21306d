//! Capstan's cluster DNS, what CoreDNS's `kubernetes` plugin does for a cluster: the zone
//! (`cluster.local` by default) is answered from Services and EndpointSlices following the
//! Kubernetes DNS specification, every other name is forwarded to upstream resolvers.
//!
//! - [`records`]: the zone as one immutable snapshot, built from the API objects.
//! - [`answer`](mod@answer): one query answered from a snapshot, without IO ([`answer()`]).
//! - [`server`]: UDP and TCP listeners, EDNS0 and truncation, serving snapshots from a watch
//!   channel; [`forward`] relays other names upstream.
//! - [`source`]: kube-rs reflectors of Services and EndpointSlices feeding that channel, and
//!   [`run`], the whole server as `capstan server` starts it.
//! - [`wire`]: the DNS wire format (messages, names with compression, records, EDNS0), our
//!   own so that the binary carries no DNS library.

#![forbid(unsafe_code)]

pub mod answer;
mod error;
#[cfg(test)]
mod fixtures;
pub mod forward;
pub mod records;
pub mod resolv_conf;
pub mod server;
pub mod source;
pub mod wire;

pub use answer::{Resolution, answer};
pub use error::DnsError;
pub use records::Records;
pub use resolv_conf::upstreams_from_resolv_conf;
pub use server::Server;
pub use source::{DnsConfig, run};
