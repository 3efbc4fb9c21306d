//! The crate's error type.

use std::net::SocketAddr;

/// Why the DNS server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("no listen address configured")]
    NoListenAddress,
    #[error("cannot listen for udp on {address}")]
    BindUdp {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen for tcp on {address}")]
    BindTcp {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid zone {zone:?}")]
    InvalidZone { zone: String },
}
