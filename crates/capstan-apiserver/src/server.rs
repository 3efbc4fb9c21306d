//! The HTTPS listener: TLS (HTTP/1.1 and HTTP/2), client certificates verified against the
//! cluster CA, and routing of the endpoints that exist so far.

use crate::{ApiServerError, TlsMaterial};
use bytes::Bytes;
use capstan_api::{ApiError, discovery};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The Kubernetes version Capstan serves (kubectl picks its own version from `minor`).
const KUBERNETES_MINOR: &str = "33";

/// Where and how the API server listens.
#[derive(Debug, Clone)]
pub struct ApiServerConfig {
    /// The address to bind (`--bind-address`, `--https-listen-port`); port 0 picks a free one.
    pub listen: SocketAddr,
    pub tls: TlsMaterial,
}

/// A running API server; it stops when dropped.
#[derive(Debug)]
pub struct ApiServer {
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl ApiServer {
    /// Binds and starts serving.
    pub async fn start(config: ApiServerConfig) -> Result<Self, ApiServerError> {
        let acceptor = TlsAcceptor::from(Arc::new(server_tls(&config.tls)?));
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| ApiServerError::Listen { address: config.listen, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ApiServerError::Listen { address: config.listen, source })?;
        let context = Arc::new(Context { address: local_addr });
        let task = tokio::spawn(accept_loop(listener, acceptor, context));
        tracing::info!(address = %local_addr, "API server listening");
        Ok(ApiServer { local_addr, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn server_tls(material: &TlsMaterial) -> Result<rustls::ServerConfig, ApiServerError> {
    let tls = |what: &str, e: &dyn std::fmt::Display| ApiServerError::Tls(format!("{what}: {e}"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_slice(material.ca_cert.as_bytes())
        .map_err(|e| tls("CA certificate", &e))?;
    roots.add(ca).map_err(|e| tls("CA certificate", &e))?;
    // Clients without a certificate are let through the handshake and answered 401, as
    // kube-apiserver does, instead of failing TLS with no explanation.
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| tls("client verifier", &e))?;
    let chain = vec![
        CertificateDer::from_pem_slice(material.serving_cert.as_bytes())
            .map_err(|e| tls("serving certificate", &e))?,
    ];
    let key = PrivateKeyDer::from_pem_slice(material.serving_key.as_bytes())
        .map_err(|e| tls("serving key", &e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls("protocol versions", &e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls("serving certificate", &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// What every request handler may need.
#[derive(Debug)]
struct Context {
    address: SocketAddr,
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, context: Arc<Context>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a connection failed");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let context = Arc::clone(&context);
        tokio::spawn(async move {
            let tls = match acceptor.accept(stream).await {
                Ok(tls) => tls,
                Err(error) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
            };
            // The verifier accepted any certificate it was shown: one was shown means the
            // client is authenticated.
            let authenticated =
                tls.get_ref().1.peer_certificates().is_some_and(|chain| !chain.is_empty());
            let service = hyper::service::service_fn(move |request| {
                let context = Arc::clone(&context);
                async move {
                    Ok::<_, std::convert::Infallible>(handle(&request, &context, authenticated))
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(error) = builder.serve_connection(TokioIo::new(tls), service).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// 200 with `value` as compact JSON and a trailing newline, as kube-apiserver sends.
fn json_response_as(value: &Value, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut body = value.to_string().into_bytes();
    body.push(b'\n');
    respond(StatusCode::OK, content_type, body)
}

fn json_response(value: &Value) -> Response<Full<Bytes>> {
    json_response_as(value, "application/json")
}

fn error_response(error: &ApiError) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    respond(status, "application/json", error.body())
}

fn not_found() -> Response<Full<Bytes>> {
    error_response(&ApiError::path_not_found())
}

fn handle(
    request: &Request<Incoming>,
    context: &Context,
    authenticated: bool,
) -> Response<Full<Bytes>> {
    if !authenticated {
        return error_response(&ApiError::unauthorized());
    }
    if request.method() != Method::GET {
        return not_found();
    }
    let accept = request.headers().get(ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let aggregated = |legacy: bool| {
        json_response_as(&discovery::aggregated(legacy), discovery::AGGREGATED_CONTENT_TYPE)
    };
    let segments: Vec<&str> = request.uri().path().trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["version"] => json_response(&version()),
        ["healthz" | "livez" | "readyz"] => {
            respond(StatusCode::OK, "text/plain; charset=utf-8", b"ok".to_vec())
        }
        ["api"] if discovery::wants_aggregated(accept) => aggregated(true),
        ["api"] => json_response(&discovery::api_versions(&context.address.to_string())),
        ["apis"] if discovery::wants_aggregated(accept) => aggregated(false),
        ["apis"] => json_response(&discovery::api_group_list()),
        ["api", "v1"] => {
            discovery::api_resource_list("", "v1").map_or_else(not_found, |d| json_response(&d))
        }
        ["apis", group] => {
            discovery::api_group(group).map_or_else(not_found, |d| json_response(&d))
        }
        ["apis", group, version] => discovery::api_resource_list(group, version)
            .map_or_else(not_found, |d| json_response(&d)),
        _ => not_found(),
    }
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("v1.{KUBERNETES_MINOR}.0-capstan.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "capstan",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rustc",
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}
