//! Test support for Capstan: real external processes (etcd, ...) started on free loopback
//! ports, each in a temporary directory, and ended by pid when dropped, so that tests can run
//! again and side by side and leave nothing behind.

mod etcd;
mod ports;

pub use etcd::EtcdServer;
pub use ports::free_loopback_port;
