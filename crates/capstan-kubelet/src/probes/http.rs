//! HTTP(S) GET as upstream's prober and lifecycle hooks do it: one connection per request
//! (keep-alive off), HTTPS without certificate verification, redirects followed only while
//! they stay on the same host (at most 10), at most 10 KiB of body read, all within one
//! timeout.

use super::{
    KUBE_VERSION, ProbeError, ProbeResult, ProbeTarget, dial_failure, host_or_pod_ip,
    join_host_port, resolve_port,
};
use http::header::{ACCEPT, CONNECTION, HOST, HeaderName, HeaderValue, LOCATION, USER_AGENT};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Container, HTTPGetAction};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Upstream reads at most this much of a response body (10 KiB).
const MAX_BODY_BYTES: usize = 10 * 1024;
/// Go's `http.Client` gives up after this many redirects.
const MAX_REDIRECTS: usize = 10;

/// Who sends the request; it names the `User-Agent` (`kube-probe/1.33`, `kube-lifecycle/1.33`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Probe,
    Lifecycle,
}

/// A failed HTTP GET, worded like the Go client's `*url.Error` (`Get "<url>": <cause>`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpGetError {
    #[error("Get {url:?}: dial tcp {address}: {reason}")]
    Dial { url: String, address: String, reason: String },
    #[error("Get {url:?}: http: server gave HTTP response to HTTPS client")]
    HttpResponseToHttps { url: String },
    #[error("Get {url:?}: {source}")]
    Tls {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Get {url:?}: {source}")]
    Http {
        url: String,
        #[source]
        source: hyper::Error,
    },
    #[error("Get {url:?}: {source}")]
    Request {
        url: String,
        #[source]
        source: http::Error,
    },
    #[error("Get {url:?}: cannot build the tls client: {source}")]
    TlsConfig {
        url: String,
        #[source]
        source: rustls::Error,
    },
    #[error("Get {url:?}: stopped after 10 redirects")]
    TooManyRedirects { url: String },
    #[error(
        "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
    )]
    Timeout { url: String },
}

/// The final response of a GET (after the redirects it followed).
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub(crate) status: StatusCode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

/// An absolute URL split the way the client needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    scheme: Scheme,
    host: String,
    port: u16,
    /// Starts with `/`; may carry a query.
    path_and_query: String,
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}{}", join_host_port(&self.host, self.port), self.path_and_query)
    }
}

impl Url {
    /// Resolves a `Location` header against this URL: absolute, scheme-relative,
    /// absolute-path or relative-path forms.
    fn join(&self, location: &str) -> Option<Url> {
        if let Some((scheme, rest)) = location.split_once("://") {
            let scheme = match scheme.to_ascii_lowercase().as_str() {
                "http" => Scheme::Http,
                "https" => Scheme::Https,
                _ => return None,
            };
            return Url::from_authority_and_path(scheme, rest);
        }
        if let Some(rest) = location.strip_prefix("//") {
            return Url::from_authority_and_path(self.scheme, rest);
        }
        let path_and_query = if location.starts_with('/') {
            location.to_owned()
        } else {
            let path = self.path_and_query.split('?').next().unwrap_or("/");
            let directory = &path[..path.rfind('/').map_or(0, |slash| slash + 1)];
            format!("{directory}{location}")
        };
        Some(Url { path_and_query: absolute_path(&path_and_query), ..self.clone() })
    }

    fn from_authority_and_path(scheme: Scheme, rest: &str) -> Option<Url> {
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let default_port = match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(port) => port.parse().ok()?,
                None => default_port,
            };
            (host.to_owned(), port)
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host.to_owned(), port.parse().ok()?),
                None => (authority.to_owned(), default_port),
            }
        };
        Some(Url { scheme, host, port, path_and_query: absolute_path(path) })
    }
}

/// A request path as Go's URL sets it: always starting with `/`.
fn absolute_path(path: &str) -> String {
    if path.starts_with('/') { path.to_owned() } else { format!("/{path}") }
}

/// An HTTP GET built from an `HTTPGetAction` (upstream's `NewRequestForHTTPGetAction`).
#[derive(Debug, Clone)]
pub(crate) struct HttpGet {
    url: Url,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl HttpGet {
    /// The action's scheme (default HTTP), host (default the pod IP), port and path, with
    /// its headers, plus `User-Agent` and `Accept: */*` unless the action sets them (an
    /// empty `Accept` removes it). Headers that are not valid HTTP are left out.
    pub(crate) fn new(
        action: &HTTPGetAction,
        container: &Container,
        pod_ip: Option<IpAddr>,
        purpose: Purpose,
    ) -> Result<HttpGet, ProbeError> {
        let scheme = match action.scheme.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("https") => Scheme::Https,
            _ => Scheme::Http,
        };
        let host = host_or_pod_ip(action.host.as_deref(), pod_ip)?;
        let port = resolve_port(&action.port, container)?;
        let path_and_query = absolute_path(action.path.as_deref().unwrap_or_default());
        let mut headers: Vec<(HeaderName, HeaderValue)> = action
            .http_headers
            .iter()
            .flatten()
            .filter_map(|header| {
                let name = HeaderName::from_bytes(header.name.as_bytes()).ok()?;
                let value = HeaderValue::from_str(&header.value).ok()?;
                Some((name, value))
            })
            .collect();
        if !headers.iter().any(|(name, _)| name == USER_AGENT) {
            let fragment = match purpose {
                Purpose::Probe => "probe",
                Purpose::Lifecycle => "lifecycle",
            };
            let agent = HeaderValue::from_str(&format!("kube-{fragment}/{KUBE_VERSION}"));
            headers.extend(agent.ok().map(|agent| (USER_AGENT, agent)));
        }
        if !headers.iter().any(|(name, _)| name == ACCEPT) {
            headers.push((ACCEPT, HeaderValue::from_static("*/*")));
        }
        headers.retain(|(name, value)| name != ACCEPT || !value.is_empty());
        Ok(HttpGet { url: Url { scheme, host, port, path_and_query }, headers })
    }

    /// The request's URL, e.g. `http://10.42.0.5:8080/healthz`.
    pub(crate) fn url(&self) -> String {
        self.url.to_string()
    }

    /// The same request over plain HTTP (the lifecycle hooks' fallback).
    pub(crate) fn with_plain_http(&self) -> HttpGet {
        let mut plain = self.clone();
        plain.url.scheme = Scheme::Http;
        plain.headers.retain(|(name, _)| name != http::header::AUTHORIZATION);
        plain
    }

    /// Sends the GET, following same-host redirects, all within `timeout`.
    pub(crate) async fn send(&self, timeout: Duration) -> Result<HttpResponse, HttpGetError> {
        match tokio::time::timeout(timeout, self.follow_redirects()).await {
            Ok(result) => result,
            Err(_elapsed) => Err(HttpGetError::Timeout { url: self.url() }),
        }
    }

    async fn follow_redirects(&self) -> Result<HttpResponse, HttpGetError> {
        let custom_host = self.headers.iter().find(|(name, _)| name == HOST).map(|(_, v)| v);
        let mut url = self.url.clone();
        let mut host_header = custom_host.cloned();
        let mut redirects = 0;
        loop {
            let (response, location) = self.exchange(&url, host_header.as_ref()).await?;
            let next = location.and_then(|location| {
                // Go keeps a custom Host header only through relative redirects.
                if location.contains("://") || location.starts_with("//") {
                    host_header = None;
                }
                url.join(&location)
            });
            let Some(next) = next else { return Ok(response) };
            // Redirects to another host end the chain with the redirect itself
            // (upstream's RedirectChecker with followNonLocalRedirects off).
            if next.host != self.url.host {
                return Ok(response);
            }
            redirects += 1;
            if redirects >= MAX_REDIRECTS {
                return Err(HttpGetError::TooManyRedirects { url: next.to_string() });
            }
            url = next;
        }
    }

    /// One request on a fresh connection; returns the response and its `Location` when it
    /// is a redirect.
    async fn exchange(
        &self,
        url: &Url,
        host_header: Option<&HeaderValue>,
    ) -> Result<(HttpResponse, Option<String>), HttpGetError> {
        let url_text = url.to_string();
        let address = join_host_port(&url.host, url.port);
        let tcp = TcpStream::connect((url.host.as_str(), url.port)).await.map_err(|error| {
            HttpGetError::Dial {
                url: url_text.clone(),
                address: address.clone(),
                reason: dial_failure(&error),
            }
        })?;
        let mut request = Request::get(url.path_and_query.as_str());
        for (name, value) in self.headers.iter().filter(|(name, _)| name != HOST) {
            request = request.header(name, value);
        }
        let host = match host_header {
            Some(host) => host.clone(),
            None => HeaderValue::from_str(&address).map_err(|error| HttpGetError::Request {
                url: url_text.clone(),
                source: error.into(),
            })?,
        };
        let request = request
            .header(HOST, host)
            .header(CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|source| HttpGetError::Request { url: url_text.clone(), source })?;
        match url.scheme {
            Scheme::Http => request_on(tcp, request, &url_text).await,
            Scheme::Https => {
                let config = insecure_tls_config()
                    .map_err(|source| HttpGetError::TlsConfig { url: url_text.clone(), source })?;
                let server_name =
                    ServerName::try_from(url.host.clone()).map_err(|error| HttpGetError::Tls {
                        url: url_text.clone(),
                        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, error),
                    })?;
                let connector = tokio_rustls::TlsConnector::from(config);
                let tls = connector.connect(server_name, tcp).await.map_err(|source| {
                    if is_plain_http_answer(&source) {
                        HttpGetError::HttpResponseToHttps { url: url_text.clone() }
                    } else {
                        HttpGetError::Tls { url: url_text.clone(), source }
                    }
                })?;
                request_on(tls, request, &url_text).await
            }
        }
    }
}

/// Sends `request` over `stream` with HTTP/1.1 and reads the head and up to
/// [`MAX_BODY_BYTES`] of the body. The connection is driven here, not spawned, so that
/// dropping this future (the timeout) closes it.
async fn request_on<S>(
    stream: S,
    request: Request<Empty<Bytes>>,
    url: &str,
) -> Result<(HttpResponse, Option<String>), HttpGetError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http_error = |source| HttpGetError::Http { url: url.to_owned(), source };
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(http_error)?;
    let exchange = async move {
        let response = sender.send_request(request).await?;
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .filter(|_| status.is_redirection());
        // Upstream reads (and drops) up to 10 KiB of the body; a broken body fails the GET.
        let mut body = response.into_body();
        let mut read = 0;
        while read < MAX_BODY_BYTES {
            let Some(frame) = body.frame().await else { break };
            read += frame?.data_ref().map_or(0, |data| data.len());
        }
        Ok::<_, hyper::Error>((HttpResponse { status }, location))
    };
    tokio::pin!(exchange, connection);
    let mut connection_done = false;
    loop {
        tokio::select! {
            biased;
            result = &mut exchange => return result.map_err(http_error),
            result = &mut connection, if !connection_done => {
                result.map_err(http_error)?;
                connection_done = true;
            }
        }
    }
}

/// Whether a TLS handshake failed because the server answered in plain HTTP.
fn is_plain_http_answer(error: &std::io::Error) -> bool {
    error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).is_some_and(|error| {
        matches!(error, rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType))
    })
}

/// A client config that accepts any server certificate, like upstream's prober
/// (`InsecureSkipVerify`), while still checking the handshake signatures against it.
fn insecure_tls_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCertificate { provider }))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts every certificate chain and server name; verifies signatures only.
#[derive(Debug)]
struct AnyServerCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// One httpGet probe attempt: 200–399 is success (a redirect to another host that ends the
/// chain counts as success, upstream's "warning"), any other status or transport error a
/// failure.
pub(super) async fn probe(
    action: &HTTPGetAction,
    target: &ProbeTarget<'_>,
    timeout: Duration,
) -> ProbeResult {
    let get = match HttpGet::new(action, target.container, target.pod_ip, Purpose::Probe) {
        Ok(get) => get,
        Err(error) => return ProbeResult::Unknown(error.to_string()),
    };
    match get.send(timeout).await {
        Ok(response) if (200..400).contains(&response.status.as_u16()) => ProbeResult::Success,
        Ok(response) => ProbeResult::Failure(format!(
            "HTTP probe failed with statuscode: {}",
            response.status.as_u16()
        )),
        Err(error) => ProbeResult::Failure(error.to_string()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::probes::run_probe;
    use k8s_openapi::api::core::v1::{HTTPHeader, Probe, TCPSocketAction};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use std::net::Ipv4Addr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-connection-per-answer HTTP server on loopback: each accepted connection gets
    /// the next canned response; the request heads it saw come back through the handle.
    pub(crate) async fn serve(
        responses: Vec<String>,
    ) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut heads = Vec::new();
            for response in responses {
                let (mut stream, _) = listener.accept().await.unwrap();
                heads.push(read_head(&mut stream).await);
                stream.write_all(response.as_bytes()).await.unwrap();
                stream.shutdown().await.unwrap();
            }
            heads
        });
        (port, task)
    }

    async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
        String::from_utf8(head).unwrap()
    }

    pub(crate) fn answer(status: &str, extra_headers: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\n{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    fn http_probe(port: u16, path: &str) -> Probe {
        Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(i32::from(port)),
                path: Some(path.to_owned()),
                http_headers: Some(vec![HTTPHeader {
                    name: "X-Check".to_owned(),
                    value: "yes".to_owned(),
                }]),
                ..HTTPGetAction::default()
            }),
            ..Probe::default()
        }
    }

    async fn probe_loopback(probe: &Probe) -> ProbeResult {
        let runtime = crate::probes::manager::tests::FakeRuntime::default();
        let container = Container { name: "app".to_owned(), ..Container::default() };
        let target = ProbeTarget {
            runtime: &runtime,
            container_id: "c1",
            pod_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            container: &container,
        };
        run_probe(probe, &target).await
    }

    #[tokio::test]
    async fn http_probe_succeeds_on_2xx_and_sends_upstream_headers() {
        let (port, server) = serve(vec![answer("200 OK", "", "ok")]).await;
        assert_eq!(probe_loopback(&http_probe(port, "healthz?full=1")).await, ProbeResult::Success);
        let heads = server.await.unwrap();
        let head = heads[0].to_ascii_lowercase();
        assert!(head.starts_with("get /healthz?full=1 http/1.1\r\n"), "{head}");
        assert!(head.contains("user-agent: kube-probe/1.33\r\n"), "{head}");
        assert!(head.contains("accept: */*\r\n"), "{head}");
        assert!(head.contains("x-check: yes\r\n"), "{head}");
        assert!(head.contains(&format!("host: 127.0.0.1:{port}\r\n")), "{head}");
    }

    #[tokio::test]
    async fn http_probe_fails_on_5xx_with_upstream_words() {
        let (port, _server) = serve(vec![answer("500 Internal Server Error", "", "")]).await;
        assert_eq!(
            probe_loopback(&http_probe(port, "/")).await,
            ProbeResult::Failure("HTTP probe failed with statuscode: 500".to_owned())
        );
    }

    #[tokio::test]
    async fn http_probe_follows_same_host_redirects_only() {
        let (port, server) = serve(vec![
            answer("302 Found", "Location: /ready\r\n", ""),
            answer("503 Service Unavailable", "", ""),
        ])
        .await;
        assert_eq!(
            probe_loopback(&http_probe(port, "/start")).await,
            ProbeResult::Failure("HTTP probe failed with statuscode: 503".to_owned())
        );
        let heads = server.await.unwrap();
        assert!(heads[1].starts_with("GET /ready HTTP/1.1"), "{}", heads[1]);

        // Another host ends the chain: the redirect itself is the (successful) answer.
        let (port, server) =
            serve(vec![answer("301 Moved", "Location: http://elsewhere.invalid/\r\n", "")]).await;
        assert_eq!(probe_loopback(&http_probe(port, "/")).await, ProbeResult::Success);
        assert_eq!(server.await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn http_probe_reports_refused_connections_like_go() {
        let port = unused_port().await;
        let expected = format!(
            "Get \"http://127.0.0.1:{port}/\": dial tcp 127.0.0.1:{port}: connect: connection refused"
        );
        assert_eq!(probe_loopback(&http_probe(port, "")).await, ProbeResult::Failure(expected));
    }

    #[tokio::test]
    async fn http_probe_times_out_on_a_silent_server() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _silent = tokio::spawn(async move {
            let (_stream, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
        });
        let mut probe = http_probe(port, "/");
        probe.timeout_seconds = Some(1);
        let ProbeResult::Failure(output) = probe_loopback(&probe).await else {
            panic!("a silent server must fail the probe");
        };
        assert!(
            output.ends_with(
                "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            ),
            "{output}"
        );
    }

    #[tokio::test]
    async fn https_probe_skips_certificate_verification() {
        let certified =
            rcgen::generate_simple_self_signed(vec!["nobody.invalid".to_owned()]).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(stream).await.unwrap();
            let head = read_head(&mut tls).await;
            tls.write_all(answer("204 No Content", "", "").as_bytes()).await.unwrap();
            tls.shutdown().await.unwrap();
            head
        });
        let mut probe = http_probe(port, "/secure");
        if let Some(get) = probe.http_get.as_mut() {
            get.scheme = Some("HTTPS".to_owned());
        }
        assert_eq!(probe_loopback(&probe).await, ProbeResult::Success);
        assert!(server.await.unwrap().starts_with("GET /secure HTTP/1.1"));
    }

    #[tokio::test]
    async fn tcp_probe_connects_or_reports_refusal() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tcp = |port: u16| Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(i32::from(port)),
                host: None,
            }),
            ..Probe::default()
        };
        assert_eq!(probe_loopback(&tcp(port)).await, ProbeResult::Success);
        drop(listener);
        assert_eq!(
            probe_loopback(&tcp(port)).await,
            ProbeResult::Failure(format!("dial tcp 127.0.0.1:{port}: connect: connection refused"))
        );
    }

    /// A loopback port nothing listens on (bound, then released).
    pub(crate) async fn unused_port() -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        listener.local_addr().unwrap().port()
    }

    #[test]
    fn locations_resolve_against_the_request_url() {
        let base = Url {
            scheme: Scheme::Http,
            host: "10.0.0.1".to_owned(),
            port: 8080,
            path_and_query: "/a/b?x=1".to_owned(),
        };
        let check = |location: &str, expected: &str| {
            assert_eq!(base.join(location).map(|u| u.to_string()).as_deref(), Some(expected));
        };
        check("/c", "http://10.0.0.1:8080/c");
        check("c?y=2", "http://10.0.0.1:8080/a/c?y=2");
        check("//10.0.0.1/d", "http://10.0.0.1:80/d");
        check("https://[fd00::1]:8443", "https://[fd00::1]:8443/");
        check("https://other", "https://other:443/");
    }
}
