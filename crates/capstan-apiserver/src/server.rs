//! The HTTPS listener: TLS (HTTP/1.1 and HTTP/2), authentication (client certificates
//! verified against the cluster CA, bearer tokens from the token file), and routing to
//! discovery, OpenAPI and the REST handlers.

use crate::auth::{TokenFile, User};
use crate::cache::WatchCache;
use crate::request::{Query, Route};
use crate::response::{self, Body};
use crate::rest::{self, Leases, ResourceRequest, Rest};
use crate::services::{ServiceAllocator, ServiceNetwork};
use crate::{ApiServerError, TlsMaterial};
use capstan_api::{ApiError, discovery, openapi};
use capstan_store::Store;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The Kubernetes version Capstan serves (kubectl picks its own version from `minor`).
const KUBERNETES_MINOR: &str = "33";

/// The largest request body accepted (kube-apiserver's limit); larger ones get 413.
const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Where and how the API server listens, and what it serves from.
#[derive(Debug, Clone)]
pub struct ApiServerConfig {
    /// The address to bind (`--bind-address`, `--https-listen-port`); port 0 picks a free one.
    pub listen: SocketAddr,
    pub tls: TlsMaterial,
    /// The datastore: the API server is the only component that touches it.
    pub store: Arc<dyn Store>,
    /// Bearer tokens that authenticate, besides client certificates.
    pub tokens: TokenFile,
    /// What `/metrics` shows: each source renders Prometheus text (the scheduler's, in
    /// `capstan server`). The API server knows nothing of the components behind them.
    pub metrics: MetricsSources,
    /// The CIDRs Service cluster IPs come from (`--service-cidr`): one, or two of different
    /// families for a dual-stack cluster; the first is the primary family.
    pub service_cidrs: Vec<String>,
    /// The node ports of NodePort and LoadBalancer Services (`--service-node-port-range`),
    /// both ends included.
    pub node_port_range: (u16, u16),
}

/// The service CIDR when none is configured (as DESIGN.md says).
pub const DEFAULT_SERVICE_CIDR: &str = "10.43.0.0/16";
/// kube-apiserver's default node port range.
pub const DEFAULT_NODE_PORT_RANGE: (u16, u16) = (30000, 32767);

impl ApiServerConfig {
    /// A configuration with no token file, no metrics sources and the default service
    /// network.
    pub fn new(listen: SocketAddr, tls: TlsMaterial, store: Arc<dyn Store>) -> Self {
        ApiServerConfig {
            listen,
            tls,
            store,
            tokens: TokenFile::default(),
            metrics: MetricsSources::default(),
            service_cidrs: vec![DEFAULT_SERVICE_CIDR.to_owned()],
            node_port_range: DEFAULT_NODE_PORT_RANGE,
        }
    }
}

/// Renderers of Prometheus text, concatenated by `/metrics`.
#[derive(Clone, Default)]
pub struct MetricsSources(pub Vec<Arc<dyn Fn() -> String + Send + Sync>>);

impl std::fmt::Debug for MetricsSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MetricsSources({} sources)", self.0.len())
    }
}

/// A running API server; it stops when dropped.
#[derive(Debug)]
pub struct ApiServer {
    local_addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ApiServer {
    /// Binds, fills the watch cache, creates the bootstrap objects, and starts serving.
    pub async fn start(config: ApiServerConfig) -> Result<Self, ApiServerError> {
        let network = ServiceNetwork::new(&config.service_cidrs, config.node_port_range)
            .map_err(ApiServerError::ServiceNetwork)?;
        let acceptor = TlsAcceptor::from(Arc::new(server_tls(&config.tls)?));
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| ApiServerError::Listen { address: config.listen, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ApiServerError::Listen { address: config.listen, source })?;
        let store = config.store;
        let (cache, feeder) = WatchCache::start(Arc::clone(&store));
        let mut tasks = vec![feeder];
        let revision = store.current_revision().await.map_err(ApiServerError::Datastore)?;
        if !cache.wait_for(revision, Duration::from_secs(60)).await {
            return Err(ApiServerError::Bootstrap("the watch cache did not fill in 60s".into()));
        }
        let tokens = crate::tokens::TokenIssuer::new(&config.tls.service_account_key)?;
        let kubelets = rest::Kubelets::new(&config.tls)?;
        let rest = Arc::new(Rest {
            store: Arc::clone(&store),
            cache,
            leases: Leases::default(),
            tokens,
            kubelets,
            services: ServiceAllocator::new(network),
        });
        // Services stored before (by an older version, or whose marker was lost) get their
        // allocations marked before anything new is allocated.
        rest.services.repair(&rest).await.map_err(|e| ApiServerError::Bootstrap(e.message))?;
        crate::bootstrap::ensure(&rest, local_addr.port())
            .await
            .map_err(|e| ApiServerError::Bootstrap(e.message))?;
        tasks.push(tokio::spawn(sweep_allocations(Arc::clone(&rest))));
        tasks.push(tokio::spawn(crate::compaction::run(store, crate::compaction::INTERVAL)));
        let context = Arc::new(Context {
            address: local_addr,
            rest,
            tokens: config.tokens,
            metrics: config.metrics,
            ca_pem: config.tls.ca_cert.clone(),
        });
        tasks.push(tokio::spawn(accept_loop(listener, acceptor, context)));
        tracing::info!(address = %local_addr, "API server listening");
        Ok(ApiServer { local_addr, tasks })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Releases Service allocations leaked by crashes, every `SWEEP_INTERVAL`.
async fn sweep_allocations(rest: Arc<Rest>) {
    loop {
        tokio::time::sleep(crate::services::SWEEP_INTERVAL).await;
        if let Err(error) = rest.services.repair(&rest).await {
            tracing::warn!(error = %error.message, "repairing Service allocations failed");
        }
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
    rest: Arc<Rest>,
    tokens: TokenFile,
    metrics: MetricsSources,
    /// The cluster CA (PEM), served at `/cacerts`.
    ca_pem: String,
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, context: Arc<Context>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a connection failed");
                // Out of file descriptors and the like: don't spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
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
            // client is authenticated, as the user its subject names.
            let certificate_user =
                tls.get_ref().1.peer_certificates().and_then(|chain| chain.first()).map(
                    |certificate| {
                        User::from_certificate(certificate).unwrap_or_else(|| User {
                            name: "system:unnamed-certificate".into(),
                            uid: String::new(),
                            groups: vec!["system:authenticated".into()],
                        })
                    },
                );
            let service = hyper::service::service_fn(move |request| {
                let context = Arc::clone(&context);
                let user = certificate_user.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(request, &context, user).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // With upgrades: exec, attach and port-forward switch an HTTP/1.1 connection to
            // WebSocket or SPDY (`rest::connect`).
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
}

/// Who the request comes from: the client certificate's subject, a bearer token from the
/// token file, or a service account token this server issued (for a service account, and a
/// bound object, that still exist). `None` is anonymous.
fn authenticate(
    request: &Request<Incoming>,
    context: &Context,
    certificate_user: Option<User>,
) -> Option<User> {
    if certificate_user.is_some() {
        return certificate_user;
    }
    let token = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)?;
    if let Some(user) = context.tokens.user(token) {
        return Some(user.clone());
    }
    let grant = context.rest.tokens.verify(token, rest::now_seconds())?;
    rest::grant_is_current(&context.rest, &grant).then(|| grant.user())
}

async fn handle(
    request: Request<Incoming>,
    context: &Context,
    certificate_user: Option<User>,
) -> Response<Body> {
    let head = request.method() == Method::HEAD;
    let mut response = respond_to(request, context, certificate_user).await;
    if head {
        // A HEAD answer has the headers of the GET and no body: over HTTP/2 a body (or a
        // content-length it does not match) is a protocol error for the client.
        response.headers_mut().remove(hyper::header::CONTENT_LENGTH);
        *response.body_mut() = response::empty();
    }
    response
}

async fn respond_to(
    request: Request<Incoming>,
    context: &Context,
    certificate_user: Option<User>,
) -> Response<Body> {
    // The CA is public: an agent fetches it before it can verify the server, and checks it
    // against the hash in its join token instead.
    if matches!(crate::request::route(request.uri().path()), Route::CaCerts)
        && (request.method() == Method::GET || request.method() == Method::HEAD)
    {
        return response::respond(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            context.ca_pem.clone(),
        );
    }
    let Some(user) = authenticate(&request, context, certificate_user) else {
        return response::error(&ApiError::unauthorized());
    };
    let header =
        |name| request.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let (accept, content_type) = (header(ACCEPT), header(CONTENT_TYPE));
    let user_agent = header(hyper::header::USER_AGENT);
    let method = request.method().clone();
    let query = Query::parse(request.uri().query());
    let route = crate::request::route(request.uri().path());
    if let Route::Resource(target) = &route
        && rest::is_connect(target)
    {
        return rest::connect(&context.rest, target, request).await;
    }
    // The body is read before any answer, whatever the route: an HTTP/2 stream answered
    // before its body was consumed is reset, which clients report as an error of their own.
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(error) => return response::error(&error),
    };
    if let Route::Resource(target) = route {
        let resource_request = ResourceRequest {
            method: &method,
            target,
            query: &query,
            accept: &accept,
            content_type: &content_type,
            user_agent: &user_agent,
            user: &user,
            body,
        };
        return rest::handle(&context.rest, resource_request).await;
    }
    if method != Method::GET && method != Method::HEAD {
        return response::error(&ApiError::path_not_found());
    }
    let ok = |value: &Value| response::json(StatusCode::OK, value);
    let not_found = || response::error(&ApiError::path_not_found());
    let aggregated = |legacy: bool| {
        response::json_as(
            StatusCode::OK,
            &discovery::aggregated(legacy),
            discovery::AGGREGATED_CONTENT_TYPE,
        )
    };
    match route {
        Route::Version => ok(&version()),
        Route::Health => response::respond(StatusCode::OK, "text/plain; charset=utf-8", "ok"),
        Route::Metrics => {
            let text: String = context.metrics.0.iter().map(|render| render()).collect();
            response::respond(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", text)
        }
        Route::CoreVersions if discovery::wants_aggregated(&accept) => aggregated(true),
        Route::CoreVersions => ok(&discovery::api_versions(&context.address.to_string())),
        Route::Groups if discovery::wants_aggregated(&accept) => aggregated(false),
        Route::Groups => ok(&discovery::api_group_list()),
        Route::Group(group) => discovery::api_group(&group).map_or_else(not_found, |d| ok(&d)),
        Route::GroupVersion(group, version) => {
            discovery::api_resource_list(&group, &version).map_or_else(not_found, |d| ok(&d))
        }
        Route::OpenApiIndex => ok(&openapi::index()),
        Route::OpenApiDocument(path) => match openapi::document(&path) {
            Some(document) => response::respond(StatusCode::OK, "application/json", document),
            None => not_found(),
        },
        Route::Resource(_) | Route::CaCerts | Route::NotFound => not_found(),
    }
}

/// The whole request body, at most `MAX_BODY_BYTES` (413 beyond).
async fn read_body(request: Request<Incoming>) -> Result<bytes::Bytes, ApiError> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES) {
        return Err(ApiError::too_large(MAX_BODY_BYTES));
    }
    let limited = http_body_util::Limited::new(request.into_body(), MAX_BODY_BYTES);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::too_large(MAX_BODY_BYTES))
        }
        Err(error) => {
            Err(ApiError::bad_request(format!("reading the request body failed: {error}")))
        }
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
