//! Capstan's API server: HTTPS with client-certificate authentication, `/version`, health
//! endpoints and discovery so far; the REST machinery over the datastore comes next.
//!
//! - `tls`: the cluster CA, the serving certificate (with SANs) and the admin certificate;
//! - `kubeconfig`: the admin kubeconfig the server writes;
//! - `server`: the listener, TLS, authentication and routing.

mod kubeconfig;
mod server;
mod tls;

pub use kubeconfig::{admin_kubeconfig, write as write_kubeconfig};
pub use server::{ApiServer, ApiServerConfig};
pub use tls::{ServingNames, TlsMaterial, ensure as ensure_tls};

use std::path::PathBuf;

/// Why the API server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {address}")]
    Listen {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup failed: {0}")]
    Tls(String),
}
