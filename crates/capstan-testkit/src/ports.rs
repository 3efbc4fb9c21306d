//! Free loopback ports for servers that tests start.

use std::net::{Ipv4Addr, TcpListener};

/// A loopback TCP port that was free a moment ago. The kernel hands out ephemeral ports in
/// rotation, so a port just released is unlikely to be handed out again at once; callers
/// that race anyway retry (see `EtcdServer::start`).
pub fn free_loopback_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}
