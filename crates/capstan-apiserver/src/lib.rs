//! Capstan's API server: the only door to cluster state. HTTPS with client-certificate and
//! bearer-token authentication, discovery, OpenAPI, and the REST verbs of every built-in
//! kind over the datastore, with lists and watches served from a watch cache.
//!
//! - `tls`: the cluster CA, the serving certificate (with SANs), the admin certificate and
//!   the client certificate shown to kubelets;
//! - `kubeconfig`: the admin kubeconfig the server writes;
//! - `auth`: users from client certificates and the static token file;
//! - `tokens`: service account tokens (JWTs) issued and verified;
//! - `server`: the listener, TLS, authentication and routing;
//! - `request`: paths to routes, query parameters to options;
//! - `rest`: get, list, watch, create, update, patch, delete, deletecollection;
//! - `cache`: the watch cache, fed by one datastore watch;
//! - `keys`: where objects live in the datastore;
//! - `services`: cluster IPs and node ports of Services, allocated and released;
//! - `bootstrap`: the namespaces and the `kubernetes` Service every cluster has;
//! - `compaction`: trimming the datastore's history;
//! - `response`: bodies, JSON and Status errors.

mod auth;
mod bootstrap;
mod cache;
mod compaction;
mod keys;
mod kubeconfig;
mod request;
mod response;
mod rest;
mod server;
mod services;
mod tls;
mod tokens;

pub use auth::{TokenFile, TokenFileError};
pub use kubeconfig::{admin_kubeconfig, write as write_kubeconfig};
pub use server::{
    ApiServer, ApiServerConfig, DEFAULT_NODE_PORT_RANGE, DEFAULT_SERVICE_CIDR, MetricsSources,
};
pub use services::ServiceNetworkError;
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
    #[error("the datastore failed")]
    Datastore(#[source] capstan_store::StoreError),
    #[error("the service network configuration is invalid")]
    ServiceNetwork(#[source] ServiceNetworkError),
    #[error("creating the bootstrap objects failed: {0}")]
    Bootstrap(String),
}
