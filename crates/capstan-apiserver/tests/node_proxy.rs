//! The API server relays `pods/log`, `pods/exec` and `nodes/proxy` to a kubelet. The kubelet
//! here is a fake: an HTTPS server with a self-signed certificate that demands a client
//! certificate signed by the cluster CA (as a real kubelet does), answers logs and proxied
//! paths with what it was asked, and echoes the bytes of an upgraded exec stream.

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use capstan_apiserver::{ApiServer, ApiServerConfig, ServingNames, TlsMaterial};
use capstan_store::DatastoreEndpoint;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, UPGRADE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How long any one step may take before the test fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_subresources_are_relayed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let tls =
        capstan_apiserver::ensure_tls(&dir.path().join("tls"), &ServingNames::standard(None, &[]))?;
    let store =
        capstan_store::open(&DatastoreEndpoint::Sqlite(dir.path().join("state.db")), "/registry")
            .await?;
    let server = ApiServer::start(ApiServerConfig::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        tls.clone(),
        store,
    ))
    .await?;
    let client = Client::new(server.local_addr(), &tls)?;
    let kubelet = FakeKubelet::start(&tls.ca_cert).await?;

    register_node(&client, "fake", kubelet.port).await?;
    let pods = "/api/v1/namespaces/default/pods";
    for (name, node, containers) in [
        ("web", Some("fake"), vec!["app"]),
        ("two", Some("fake"), vec!["a", "b"]),
        ("pending", None, vec!["app"]),
    ] {
        let containers: Vec<Value> =
            containers.iter().map(|c| json!({"name": c, "image": "busybox"})).collect();
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                             "spec": {"containers": containers}});
        if let Some(node) = node {
            pod["spec"]["nodeName"] = json!(node);
        }
        let (status, body) = client.call(Method::POST, pods, Some(pod)).await?;
        ensure!(status == StatusCode::CREATED, "creating pod {name}: {status} {body}");
    }

    // Logs: the kubelet's body, the container defaulted, the query passed on.
    let (status, body) = client
        .call(Method::GET, &format!("{pods}/web/log?tailLines=5&timestamps=true"), None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "logs of /containerLogs/default/web/app?tailLines=5&timestamps=true\n");

    // Refusals before any kubelet is asked.
    let refusals = [
        (
            format!("{pods}/two/log"),
            400,
            "a container name must be specified for pod two, choose one of: [a b]",
        ),
        (format!("{pods}/web/log?container=nope"), 400, "container nope is not valid for pod web"),
        (format!("{pods}/missing/exec?command=sh"), 404, "pods \"missing\" not found"),
        (
            format!("{pods}/pending/exec?command=sh"),
            400,
            "pod pending does not have a host assigned",
        ),
        (
            format!("{pods}/web/exec?container=nope&command=sh"),
            400,
            "container nope is not valid for pod web",
        ),
        (format!("{pods}/web/exec"), 400, "you must specify at least 1 command"),
    ];
    for (path, code, message) in refusals {
        let (status, body) = client.call(Method::GET, &path, None).await?;
        let status_body: Value = serde_json::from_str(&body).context("a Status")?;
        assert_eq!(status.as_u16(), code, "{path}: {body}");
        assert_eq!(status_body["code"], code, "{path}");
        assert_eq!(status_body["message"], message, "{path}");
    }

    // kubectl reads logs over HTTP/2.
    let (status, body) =
        client.get_over_http2(&format!("{pods}/web/log?container=app&previous=true")).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "logs of /containerLogs/default/web/app?container=app&previous=true\n");

    // The logs of a pod on no node are empty, as upstream answers.
    let (status, body) = client.call(Method::GET, &format!("{pods}/pending/log"), None).await?;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));

    // `kubectl logs -f`: lines arrive while the kubelet's answer is still open.
    let mut follow = client.send(Method::GET, &format!("{pods}/web/log?follow=true"), None).await?;
    assert_eq!(follow.status(), StatusCode::OK);
    let first = tokio::time::timeout(PATIENCE, follow.body_mut().frame())
        .await
        .context("the first followed line did not arrive")?
        .context("the followed body ended")??;
    assert_eq!(first.into_data().ok().as_deref(), Some(&b"line 1\n"[..]));
    drop(follow);

    exec_is_spliced(&client, pods).await?;

    // nodes/proxy: any path, any verb, the body streamed through.
    let (status, body) = client.call(Method::GET, "/api/v1/nodes/fake/proxy/healthz", None).await?;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    let (status, body) = client
        .call(Method::POST, "/api/v1/nodes/fake/proxy/some/path?x=1", Some(json!({"a": 1})))
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "POST /some/path?x=1 {\"a\":1}");

    // A kubelet that does not answer: 500 with the dial error, as kube-apiserver reports it.
    let closed_port = {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        listener.local_addr()?.port()
    };
    register_node(&client, "gone", closed_port).await?;
    let (status, body) = client.call(Method::GET, "/api/v1/nodes/gone/proxy/healthz", None).await?;
    let status_body: Value = serde_json::from_str(&body)?;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let message = status_body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("error dialing backend: dial tcp 127.0.0.1:{closed_port}: ")),
        "{message}"
    );
    Ok(())
}

/// A WebSocket upgrade of `pods/exec`: the kubelet's 101 headers reach the client, and bytes
/// go both ways once both sides have switched.
async fn exec_is_spliced(client: &Client, pods: &str) -> Result<()> {
    let path =
        format!("{pods}/web/exec?command=sh&command=-c&command=echo%20hi&stdin=true&stdout=true");
    let request = Request::builder()
        .method(Method::GET)
        .uri(&path)
        .header(HOST, client.address.to_string())
        .header(CONNECTION, "Upgrade")
        .header(UPGRADE, "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-protocol", "v5.channel.k8s.io, v4.channel.k8s.io")
        .body(Full::new(Bytes::new()))?;
    let response = client.send_request(request).await?;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    let header = |name: &str| {
        response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    };
    assert_eq!(header("sec-websocket-protocol"), "v5.channel.k8s.io");
    assert_eq!(header("sec-websocket-accept"), "accept:dGhlIHNhbXBsZSBub25jZQ==");
    assert_eq!(
        header("x-fake-request"),
        "/exec/default/web/app?command=sh&command=-c&command=echo%20hi&stdin=true&stdout=true"
    );
    let upgraded = tokio::time::timeout(PATIENCE, hyper::upgrade::on(response)).await??;
    let mut stream = TokioIo::new(upgraded);
    for message in [&b"\x00hello"[..], &b"\x00second message"[..]] {
        stream.write_all(message).await?;
        let mut echoed = vec![0; message.len()];
        tokio::time::timeout(PATIENCE, stream.read_exact(&mut echoed)).await??;
        assert_eq!(echoed, message);
    }
    stream.shutdown().await?;
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest)).await??;
    ensure!(rest.is_empty(), "unexpected bytes after the end: {rest:?}");
    Ok(())
}

/// Creates a Node whose kubelet is at 127.0.0.1:`port`.
async fn register_node(client: &Client, name: &str, port: u16) -> Result<()> {
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
    let (status, body) = client.call(Method::POST, "/api/v1/nodes", Some(node)).await?;
    ensure!(status == StatusCode::CREATED, "creating node {name}: {status} {body}");
    let status_patch = json!({"status": {
        "addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
    }});
    let request = Request::builder()
        .method(Method::PATCH)
        .uri(format!("/api/v1/nodes/{name}/status"))
        .header(HOST, client.address.to_string())
        .header(CONTENT_TYPE, "application/merge-patch+json")
        .body(Full::new(Bytes::from(status_patch.to_string())))?;
    let response = client.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    ensure!(status == StatusCode::OK, "patching node {name}: {status} {body:?}");
    Ok(())
}

/// An HTTPS client of the API server, authenticated with the admin certificate; one
/// connection per request.
struct Client {
    address: SocketAddr,
    connector: TlsConnector,
}

impl Client {
    fn new(address: SocketAddr, tls: &TlsMaterial) -> Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(tls.ca_cert.as_bytes())?)?;
        let chain = CertificateDer::pem_slice_iter(tls.admin_cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(tls.admin_key.as_bytes())?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Client { address, connector: TlsConnector::from(Arc::new(config)) })
    }

    async fn send_request(&self, request: Request<Full<Bytes>>) -> Result<Response<Incoming>> {
        let tcp = TcpStream::connect(self.address).await?;
        let tls = self.connector.connect(ServerName::from(self.address.ip()), tcp).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            // Ends with the response, or hands the connection to an upgrade.
            let _ = connection.with_upgrades().await;
        });
        Ok(tokio::time::timeout(PATIENCE, sender.send_request(request)).await??)
    }

    /// A GET over HTTP/2 (ALPN `h2`) and its whole answer, as text.
    async fn get_over_http2(&self, path: &str) -> Result<(StatusCode, String)> {
        let mut config = self.connector.config().as_ref().clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let connector = TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(self.address).await?;
        let tls = connector.connect(ServerName::from(self.address.ip()), tcp).await?;
        ensure!(tls.get_ref().1.alpn_protocol() == Some(b"h2"), "the server did not pick h2");
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(tls),
        )
        .await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let uri = format!("https://{}{path}", self.address);
        let request = Request::get(uri).body(Full::new(Bytes::new()))?;
        let response = tokio::time::timeout(PATIENCE, sender.send_request(request)).await??;
        let status = response.status();
        let body = tokio::time::timeout(PATIENCE, response.into_body().collect()).await??;
        Ok((status, String::from_utf8(body.to_bytes().to_vec())?))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Response<Incoming>> {
        let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.address.to_string())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        self.send_request(request).await
    }

    /// A request and its whole answer, as text.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, String)> {
        let response = self.send(method, path, body).await?;
        let status = response.status();
        let body = tokio::time::timeout(PATIENCE, response.into_body().collect()).await??;
        Ok((status, String::from_utf8(body.to_bytes().to_vec())?))
    }
}

/// A kubelet's HTTPS server in miniature; it stops when dropped.
struct FakeKubelet {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeKubelet {
    async fn start(ca_pem: &str) -> Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rcgen::KeyPair::generate()?;
        let cert =
            rcgen::CertificateParams::new(vec!["fake-kubelet".to_owned()])?.self_signed(&key)?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes())?)?;
        // No certificate signed by the cluster CA, no handshake.
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&provider),
        )
        .build()?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())?,
            )?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(|request| async move {
                        Ok::<_, std::convert::Infallible>(answer(request).await.unwrap_or_else(
                            |error| text(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
                        ))
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .with_upgrades();
                    let _ = connection.await;
                });
            }
        });
        Ok(FakeKubelet { port, task })
    }
}

type FakeBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<FakeBody> {
    let mut response =
        Response::new(Full::new(body.into()).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    response
}

/// What the fake kubelet answers: logs name what was asked for (a followed log sends one
/// line and stays open), an exec upgrade echoes, `/healthz` is ok, anything else is
/// described back.
async fn answer(mut request: Request<Incoming>) -> Result<Response<FakeBody>> {
    let path = request.uri().path().to_owned();
    let path_and_query =
        request.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    if path.starts_with("/containerLogs/") {
        if request.uri().query().is_some_and(|q| q.contains("follow=true")) {
            let (sender, receiver) = tokio::sync::mpsc::channel(1);
            tokio::spawn(async move {
                let _ = sender.send(Bytes::from("line 1\n")).await;
                // Following: the body stays open until the reader goes away.
                sender.closed().await;
            });
            return Ok(Response::new(ChannelBody(receiver).boxed()));
        }
        return Ok(text(StatusCode::OK, format!("logs of {path_and_query}\n")));
    }
    if path.starts_with("/exec/") {
        let header = |name: &str| {
            request.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
        };
        if !header("upgrade").eq_ignore_ascii_case("websocket") {
            bail!("exec without an upgrade");
        }
        let protocol = header("sec-websocket-protocol")
            .split(',')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let accept = format!("accept:{}", header("sec-websocket-key"));
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
            let _ = writer.shutdown().await;
        });
        let mut response = text(StatusCode::SWITCHING_PROTOCOLS, "");
        let headers = response.headers_mut();
        headers.insert(CONNECTION, "Upgrade".parse()?);
        headers.insert(UPGRADE, "websocket".parse()?);
        headers.insert("sec-websocket-protocol", protocol.parse()?);
        headers.insert("sec-websocket-accept", accept.parse()?);
        headers.insert("x-fake-request", path_and_query.parse()?);
        return Ok(response);
    }
    if path == "/healthz" {
        return Ok(text(StatusCode::OK, "ok"));
    }
    let method = request.method().clone();
    let body = request.into_body().collect().await?.to_bytes();
    Ok(text(
        StatusCode::OK,
        format!("{method} {path_and_query} {}", String::from_utf8_lossy(&body)),
    ))
}

/// A body fed by a channel: open until the sender is dropped.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|data| data.map(|bytes| Ok(hyper::body::Frame::data(bytes))))
    }
}
