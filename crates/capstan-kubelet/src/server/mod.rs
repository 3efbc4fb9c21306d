//! The kubelet's HTTPS API (port 10250): `/healthz`, `/containerLogs/...`, and the
//! streaming endpoints `/exec/...`, `/attach/...` and `/portForward/...`, which it serves by
//! asking the runtime for a streaming URL and relaying the client's session to it.
//!
//! Clients authenticate with a certificate signed by the cluster CA; every authenticated
//! client may do everything (there is no kubelet authorization yet). A client without a
//! certificate completes the handshake and is answered 401.
//!
//! Accepted requests (what the API server's proxy forwards):
//! - `GET /healthz` → `ok`.
//! - `GET /containerLogs/{namespace}/{pod}/{container}?follow&tailLines&timestamps&previous
//!   &sinceSeconds&sinceTime&limitBytes` → `text/plain`, chunked while following.
//! - `GET|POST /exec/{namespace}/{pod}[/{uid}]/{container}?command=..&command=..&stdin
//!   &stdout&stderr&tty` (also the older `input`/`output`/`error` names) and
//!   `/attach/...` of the same shape: a WebSocket upgrade (`v5.channel.k8s.io`,
//!   `v4.channel.k8s.io`, `channel.k8s.io`) or a SPDY/3.1 upgrade (relayed unchanged).
//! - `GET|POST /portForward/{namespace}/{pod}[/{uid}]`: a WebSocket upgrade tunnelling
//!   SPDY (`SPDY/3.1+portforward.k8s.io`), a plain WebSocket (`v4.channel.k8s.io`/
//!   `portforward.k8s.io`, with `?ports=`), or a SPDY/3.1 upgrade.

mod logs;
mod lookup;
mod spdy;
mod streaming;
mod tls;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::runtime::Runtime;

/// What the kubelet API needs to start.
#[derive(Debug, Clone)]
pub struct KubeletServerConfig {
    /// The address to listen on (port 0 picks one).
    pub bind: SocketAddr,
    /// `<data-dir>/agent/tls`: the self-signed serving certificate is kept here across
    /// restarts, as `kubelet.crt` and `kubelet.key`.
    pub tls_dir: PathBuf,
    /// The cluster CA (PEM) that signs the client certificates accepted.
    pub client_ca_pem: String,
    /// The node's name, a SAN of the serving certificate.
    pub node_name: String,
    /// The node's addresses, SANs of the serving certificate.
    pub node_ips: Vec<IpAddr>,
}

/// Why the kubelet API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("kubelet serving certificate: {0}")]
    Tls(String),
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Response bodies: whole, or streamed (logs with `follow`).
pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What request handlers share.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) runtime: Arc<dyn Runtime>,
}

/// Starts the kubelet API. Returns the address it listens on and the task accepting
/// connections, which ends when `stop` turns true (sessions already open run on).
pub async fn serve(
    config: KubeletServerConfig,
    runtime: Arc<dyn Runtime>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServerError> {
    let serving = tls::serving_certificate(&config)?;
    let acceptor = TlsAcceptor::from(Arc::new(tls::server_config(&config, &serving)?));
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|source| ServerError::Bind { address: config.bind, source })?;
    let address = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { address: config.bind, source })?;
    let context = Arc::new(Context { runtime });
    let task = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                    continue;
                }
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a kubelet API connection failed");
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
                        tracing::debug!(%peer, %error, "kubelet API TLS handshake failed");
                        return;
                    }
                };
                // The verifier checked any certificate shown against the cluster CA.
                let authenticated =
                    tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
                let service = hyper::service::service_fn(move |request| {
                    let context = Arc::clone(&context);
                    async move { Ok::<_, Infallible>(handle(request, context, authenticated).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if let Err(error) =
                    builder.serve_connection_with_upgrades(TokioIo::new(tls), service).await
                {
                    tracing::debug!(%peer, %error, "kubelet API connection ended with an error");
                }
            });
        }
    });
    Ok((address, task))
}

async fn handle(
    request: Request<Incoming>,
    context: Arc<Context>,
    authenticated: bool,
) -> Response<Body> {
    if !authenticated {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized".into());
    }
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = request.method().clone();
    let readable = method == Method::GET || method == Method::HEAD;
    let streaming = readable || method == Method::POST;
    match segments.as_slice() {
        ["healthz"] if readable => text(StatusCode::OK, "ok"),
        ["containerLogs", namespace, pod, container] if readable => {
            container_logs(&request, &context, namespace, pod, container).await
        }
        [kind @ ("exec" | "attach"), namespace, pod, container] if streaming => {
            let target = lookup::PodRef { namespace, name: pod, uid: None };
            streaming::remote_command(request, &context, *kind == "attach", target, container).await
        }
        [kind @ ("exec" | "attach"), namespace, pod, uid, container] if streaming => {
            let target = lookup::PodRef { namespace, name: pod, uid: Some(uid) };
            streaming::remote_command(request, &context, *kind == "attach", target, container).await
        }
        ["portForward", namespace, pod, rest @ ..] if streaming && rest.len() <= 1 => {
            let target = lookup::PodRef { namespace, name: pod, uid: rest.first().copied() };
            streaming::port_forward(request, &context, target).await
        }
        _ => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        ),
    }
}

async fn container_logs(
    request: &Request<Incoming>,
    context: &Context,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Response<Body> {
    let pairs = query_pairs(request.uri().query());
    let options = match logs::LogOptions::from_query(&pairs, k8s_openapi::jiff::Timestamp::now()) {
        Ok(options) => options,
        Err(error) => return status(StatusCode::BAD_REQUEST, "BadRequest", error.to_string()),
    };
    let target = lookup::PodRef { namespace, name: pod, uid: None };
    let found = match lookup::log_container(&*context.runtime, &target, container, options.previous)
        .await
    {
        Ok(found) => found,
        Err(error) => return error.response(),
    };
    if options.follow && !options.previous {
        let (sender, receiver) = tokio::sync::mpsc::channel(16);
        tokio::spawn(logs::follow(
            found.log_path,
            found.container_id,
            options,
            Arc::clone(&context.runtime),
            sender,
        ));
        let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
            let chunk = receiver.recv().await?;
            Some((Ok::<_, Infallible>(hyper::body::Frame::data(chunk)), receiver))
        });
        let mut response = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
        return response;
    }
    match tokio::fs::read(&found.log_path).await {
        Ok(contents) => {
            let body = logs::render_all(&contents, &options);
            let mut response = Response::new(full(body));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
            response
        }
        // A container that never wrote anything may have no file yet.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => text(StatusCode::OK, ""),
        Err(error) => status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("failed to read log file {:?}: {error}", found.log_path),
        ),
    }
}

/// The query's name/value pairs, percent-decoded, in order.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

pub(crate) fn full(body: impl Into<Bytes>) -> Body {
    BodyExt::boxed_unsync(Full::new(body.into()))
}

fn text(code: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
    response
}

/// A `metav1.Status` failure answer.
pub(crate) fn status(code: StatusCode, reason: &str, message: String) -> Response<Body> {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response
}
