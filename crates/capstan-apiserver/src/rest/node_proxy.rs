//! The subresources a node's kubelet serves, relayed to it: `pods/log` (a streamed body),
//! `pods/exec`, `pods/attach` and `pods/portforward` (WebSocket or SPDY upgrades, spliced
//! once both sides have switched protocols), and `nodes/proxy` (any request, any path).
//!
//! This is kube-apiserver's "upgrade-aware" proxying: the request is checked here (the pod
//! exists, is on a node, has the container), then sent to the kubelet with the path
//! rewritten and the query and protocol headers unchanged. A `101 Switching Protocols` from
//! the kubelet is answered `101` to the client with the kubelet's headers (the WebSocket
//! accept key and the chosen subprotocol), and the two upgraded connections are copied into
//! each other until both ends close. Any other answer goes back as it came, body streamed.
//!
//! The kubelet is found from its Node: the first `InternalIP`, else `ExternalIP`, else
//! `Hostname` in `status.addresses`, on `status.daemonEndpoints.kubeletEndpoint.Port`
//! (10250 when absent). It is dialed over TLS with the kubelet client certificate, without
//! verifying its serving certificate (see `tls::kubelet_client_config`).

use super::Rest;
use super::write::current;
use crate::ApiServerError;
use crate::keys;
use crate::request::{Query, Target};
use crate::response::{self, Body};
use bytes::Bytes;
use capstan_api::ApiError;
use capstan_api::registry;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The kubelet's port when its Node does not say (`--port` of the kubelet).
const DEFAULT_KUBELET_PORT: u16 = 10250;

/// How long dialing a kubelet (TCP and TLS) may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// The address types of `status.addresses`, most preferred first (kube-apiserver's default
/// `--kubelet-preferred-address-types`, less the deprecated `LegacyHostIP`).
const PREFERRED_ADDRESS_TYPES: [&str; 3] = ["InternalIP", "ExternalIP", "Hostname"];

/// Whether a subresource is served by proxying (`rest::connect`) rather than by the REST
/// verbs: its request is neither read whole nor answered with an object.
pub(crate) fn is_connect(subresource: &str) -> bool {
    matches!(subresource, "log" | "exec" | "attach" | "portforward" | "proxy")
}

/// Why a kubelet could not be reached or did not answer.
#[derive(Debug, thiserror::Error)]
enum ProxyError {
    #[error("dial tcp {address}: {source}")]
    Dial {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("dial tcp {address}: i/o timeout")]
    DialTimeout { address: String },
    #[error("tls handshake with {address}: {source}")]
    Handshake {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid server name {host:?}")]
    ServerName { host: String },
    #[error("talking to the kubelet at {address}: {source}")]
    Http {
        address: String,
        #[source]
        source: hyper::Error,
    },
    #[error("the kubelet at {address} switched protocols on a request that asked for none")]
    UnaskedUpgrade { address: String },
}

impl From<ProxyError> for ApiError {
    /// kube-apiserver answers 500 with the dial error: the backend failed, not the request.
    fn from(error: ProxyError) -> Self {
        match error {
            ProxyError::Http { .. } | ProxyError::UnaskedUpgrade { .. } => {
                ApiError::internal(error.to_string())
            }
            _ => ApiError::internal(format!("error dialing backend: {error}")),
        }
    }
}

/// Dials kubelets: TLS with the kubelet client certificate, HTTP/1.1.
#[derive(Clone)]
pub(crate) struct Kubelets {
    connector: TlsConnector,
}

impl std::fmt::Debug for Kubelets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kubelets")
    }
}

impl Kubelets {
    pub(crate) fn new(material: &crate::TlsMaterial) -> Result<Self, ApiServerError> {
        let config = crate::tls::kubelet_client_config(material)?;
        Ok(Kubelets { connector: TlsConnector::from(Arc::new(config)) })
    }

    async fn dial(&self, endpoint: &Endpoint) -> Result<TlsStream<TcpStream>, ProxyError> {
        let address = endpoint.authority();
        let server_name = ServerName::try_from(endpoint.host.clone())
            .map_err(|_| ProxyError::ServerName { host: endpoint.host.clone() })?;
        let dial = async {
            let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
                .await
                .map_err(|source| ProxyError::Dial { address: address.clone(), source })?;
            let _ = tcp.set_nodelay(true);
            self.connector
                .connect(server_name, tcp)
                .await
                .map_err(|source| ProxyError::Handshake { address: address.clone(), source })
        };
        tokio::time::timeout(DIAL_TIMEOUT, dial)
            .await
            .map_err(|_| ProxyError::DialTimeout { address: address.clone() })?
    }
}

/// Where a kubelet listens.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    host: String,
    port: u16,
}

impl Endpoint {
    /// `host:port`, IPv6 addresses in brackets.
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The kubelet endpoint a Node advertises, or why there is none (kube-apiserver's message).
fn kubelet_endpoint(node: &Value) -> Result<Endpoint, String> {
    let addresses: Vec<(&str, &str)> = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|address| {
            let text = |field| address.get(field).and_then(Value::as_str);
            Some((text("type")?, text("address")?))
        })
        .filter(|(_, address)| !address.is_empty())
        .collect();
    let host = PREFERRED_ADDRESS_TYPES
        .iter()
        .find_map(|wanted| addresses.iter().find(|(kind, _)| kind == wanted))
        .map(|(_, address)| (*address).to_owned())
        .ok_or_else(|| {
            let known: Vec<String> =
                addresses.iter().map(|(kind, address)| format!("{{{kind} {address}}}")).collect();
            format!("no preferred addresses found; known addresses: [{}]", known.join(" "))
        })?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|port| u16::try_from(port).ok())
        .filter(|port| *port != 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Ok(Endpoint { host, port })
}

/// A request to relay: to which kubelet, and the path and query it is sent with.
#[derive(Debug)]
struct Forward {
    endpoint: Endpoint,
    path_and_query: String,
}

/// What the kubelet is asked for, decided from the request alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Log,
    Exec,
    Attach,
    PortForward,
}

impl Stream {
    fn of(subresource: &str) -> Option<Self> {
        Some(match subresource {
            "log" => Stream::Log,
            "exec" => Stream::Exec,
            "attach" => Stream::Attach,
            "portforward" => Stream::PortForward,
            _ => return None,
        })
    }

    /// The kubelet's path segment for this stream.
    fn kubelet_path(self) -> &'static str {
        match self {
            Stream::Log => "containerLogs",
            Stream::Exec => "exec",
            Stream::Attach => "attach",
            Stream::PortForward => "portForward",
        }
    }
}

/// Serves a connect subresource (see [`is_connect`]) whose verb was already allowed.
pub(super) async fn serve(
    rest: &Rest,
    target: &Target,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    match plan(rest, target, request.uri()).await {
        Ok(Some(forward)) => relay(&rest.kubelets, forward, request).await,
        // A pod not yet on a node has no logs: an empty answer, as upstream gives.
        Ok(None) => Ok(response::respond(StatusCode::OK, "text/plain", "")),
        Err(error) => {
            discard_body(request).await;
            Err(error)
        }
    }
}

/// Reads and drops what there is of a refused request's body (at most a few MiB): over
/// HTTP/2 a stream answered before its body was consumed is reset, which clients report as
/// an error of their own instead of the answer.
pub(super) async fn discard_body(request: Request<Incoming>) {
    const LIMIT: usize = 3 * 1024 * 1024;
    let _ = http_body_util::Limited::new(request.into_body(), LIMIT).collect().await;
}

/// Where a request goes, once checked; `None` for the logs of a pod on no node yet.
async fn plan(rest: &Rest, target: &Target, uri: &Uri) -> Result<Option<Forward>, ApiError> {
    let Some(name) = target.name.as_deref() else {
        return Err(ApiError::path_not_found());
    };
    let subresource = target.subresource.as_deref().unwrap_or_default();
    let resource = target.resource;
    match (resource.group, resource.plural, Stream::of(subresource)) {
        ("", "pods", Some(stream)) => {
            let namespace = target.namespace.as_deref().unwrap_or_default();
            pod_stream(rest, namespace, name, stream, uri).await
        }
        ("", "nodes", None) if subresource == "proxy" => {
            Ok(Some(node_proxy(rest, name, target.proxy_path.as_deref(), uri).await?))
        }
        _ => Err(ApiError::new(
            503,
            "ServiceUnavailable",
            format!("{}/{subresource} is not served by this server", resource.plural),
        )),
    }
}

/// Checks a pod stream request and says where it goes; `None` for the logs of a pod that
/// is on no node yet.
async fn pod_stream(
    rest: &Rest,
    namespace: &str,
    name: &str,
    stream: Stream,
    uri: &Uri,
) -> Result<Option<Forward>, ApiError> {
    let query = Query::parse(uri.query());
    if stream == Stream::Exec && query.get("command").is_none_or(str::is_empty) {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    let pods = registry::find("", "v1", "pods").ok_or_else(|| ApiError::internal("no pods"))?;
    let key = keys::object_key(pods, Some(namespace), name);
    let (_, pod) = current(rest, &key, pods, name).await?;
    let container = match stream {
        Stream::PortForward => None,
        _ => Some(choose_container(&pod, name, query.get("container").unwrap_or_default())?),
    };
    let node_name =
        pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|node| !node.is_empty());
    let Some(node_name) = node_name else {
        if stream == Stream::Log {
            return Ok(None);
        }
        return Err(ApiError::bad_request(format!("pod {name} does not have a host assigned")));
    };
    let endpoint = node_endpoint(rest, node_name).await?;
    let mut path = format!("/{}/{namespace}/{name}", stream.kubelet_path());
    if let Some(container) = container {
        path.push('/');
        path.push_str(&container);
    }
    Ok(Some(Forward { endpoint, path_and_query: with_query(path, uri) }))
}

/// The container a stream is about: the one named, which must be one of the pod's
/// (regular, init or ephemeral), or the only regular container there is.
fn choose_container(pod: &Value, pod_name: &str, wanted: &str) -> Result<String, ApiError> {
    let names = |list: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|container| container.get("name").and_then(Value::as_str))
            .map(str::to_owned)
            .collect()
    };
    let regular = names("containers");
    if wanted.is_empty() {
        return match regular.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {pod_name}"
            ))),
            _ => {
                let mut all = regular.clone();
                all.extend(names("initContainers"));
                all.extend(names("ephemeralContainers"));
                Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                    all.join(" ")
                )))
            }
        };
    }
    let known = regular
        .iter()
        .chain(&names("initContainers"))
        .chain(&names("ephemeralContainers"))
        .any(|name| name == wanted);
    if !known {
        return Err(ApiError::bad_request(format!(
            "container {wanted} is not valid for pod {pod_name}"
        )));
    }
    Ok(wanted.to_owned())
}

/// `nodes/<name>/proxy/<path>`, `<name>` maybe `<node>:<port>` for another port of the
/// node's preferred address.
async fn node_proxy(
    rest: &Rest,
    name: &str,
    proxy_path: Option<&str>,
    uri: &Uri,
) -> Result<Forward, ApiError> {
    let (node_name, port) = match name.rsplit_once(':') {
        Some((node, port)) => {
            let port =
                port.parse::<u16>().ok().filter(|port| *port != 0).ok_or_else(|| {
                    ApiError::bad_request(format!("invalid node request {name:?}"))
                })?;
            (node, Some(port))
        }
        None => (name, None),
    };
    let mut endpoint = node_endpoint(rest, node_name).await?;
    if let Some(port) = port {
        endpoint.port = port;
    }
    let mut path = format!("/{}", proxy_path.unwrap_or_default());
    // The route drops a trailing slash; some endpoints (directory listings) care.
    if proxy_path.is_some_and(|p| !p.is_empty()) && uri.path().ends_with('/') {
        path.push('/');
    }
    Ok(Forward { endpoint, path_and_query: with_query(path, uri) })
}

async fn node_endpoint(rest: &Rest, node_name: &str) -> Result<Endpoint, ApiError> {
    let nodes = registry::find("", "v1", "nodes").ok_or_else(|| ApiError::internal("no nodes"))?;
    let key = keys::object_key(nodes, None, node_name);
    let (_, node) = current(rest, &key, nodes, node_name).await?;
    kubelet_endpoint(&node).map_err(ApiError::internal)
}

/// `path` with the request's query, as the client sent it (repeated `command=` included).
fn with_query(path: String, uri: &Uri) -> String {
    match uri.query() {
        Some(query) if !query.is_empty() => format!("{path}?{query}"),
        _ => path,
    }
}

/// Whether a request asks to switch protocols (`Connection: Upgrade` with `Upgrade: …`).
fn wants_upgrade(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers.get_all(header::CONNECTION).iter().any(|value| {
        value
            .to_str()
            .is_ok_and(|v| v.split(',').any(|token| token.trim().eq_ignore_ascii_case("upgrade")))
    });
    connection_upgrade && headers.contains_key(header::UPGRADE)
}

/// Headers that belong to one connection and are not relayed (RFC 9110 §7.6.1), plus the
/// client's credentials, which are the API server's business and not the kubelet's.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "authorization"
    )
}

/// The headers to pass on: all but hop-by-hop ones and those `Connection` names; an upgrade
/// keeps its `Connection: Upgrade` and `Upgrade` (the point of relaying it).
fn relayed_headers(headers: &HeaderMap, upgrade: bool) -> HeaderMap {
    let named_by_connection: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .collect();
    let mut relayed = HeaderMap::new();
    for (name, value) in headers {
        if is_hop_by_hop(name) || named_by_connection.iter().any(|n| n == name.as_str()) {
            continue;
        }
        relayed.append(name.clone(), value.clone());
    }
    if upgrade {
        relayed.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        for value in headers.get_all(header::UPGRADE) {
            relayed.append(header::UPGRADE, value.clone());
        }
    }
    relayed
}

/// Sends the request to the kubelet and answers with what it answers (see the module
/// documentation).
async fn relay(
    kubelets: &Kubelets,
    forward: Forward,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let client_upgrade = wants_upgrade(request.headers()).then(|| hyper::upgrade::on(&mut request));
    let address = forward.endpoint.authority();
    let stream = kubelets.dial(&forward.endpoint).await?;
    let http_error = |source| ProxyError::Http { address: address.clone(), source };
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(http_error)?;
    tokio::spawn(async move {
        // The connection hands its IO over to the upgrade, or ends with the response body.
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "kubelet connection ended with an error");
        }
    });
    let (parts, body) = request.into_parts();
    let mut outgoing = Request::new(body);
    *outgoing.method_mut() = parts.method;
    *outgoing.uri_mut() = forward
        .path_and_query
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid path {:?}", forward.path_and_query)))?;
    *outgoing.headers_mut() = relayed_headers(&parts.headers, client_upgrade.is_some());
    if let Ok(host) = HeaderValue::from_str(&address) {
        outgoing.headers_mut().insert(header::HOST, host);
    }
    let mut answer = sender.send_request(outgoing).await.map_err(http_error)?;
    if answer.status() == StatusCode::SWITCHING_PROTOCOLS {
        let client_upgrade =
            client_upgrade.ok_or(ProxyError::UnaskedUpgrade { address: address.clone() })?;
        let kubelet_upgrade = hyper::upgrade::on(&mut answer);
        tokio::spawn(splice(client_upgrade, kubelet_upgrade, address));
        let mut response = Response::new(response::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *response.headers_mut() = answer.headers().clone();
        return Ok(response);
    }
    let (parts, body) = answer.into_parts();
    let mut response = Response::new(Relayed(body).boxed());
    *response.status_mut() = parts.status;
    *response.headers_mut() = relayed_headers(&parts.headers, false);
    Ok(response)
}

/// Copies the client's and the kubelet's upgraded connections into each other until both
/// directions have ended.
async fn splice(client: OnUpgrade, kubelet: OnUpgrade, address: String) {
    let (client, kubelet) = match tokio::try_join!(client, kubelet) {
        Ok(both) => both,
        Err(error) => {
            tracing::debug!(%address, %error, "switching protocols failed");
            return;
        }
    };
    let (mut client, mut kubelet) = (TokioIo::new(client), TokioIo::new(kubelet));
    match tokio::io::copy_bidirectional(&mut client, &mut kubelet).await {
        Ok((up, down)) => tracing::debug!(%address, up, down, "stream to the kubelet ended"),
        Err(error) => tracing::debug!(%address, %error, "stream to the kubelet failed"),
    }
}

/// The kubelet's response body as the server's body type. A read error ends the body: the
/// answer is under way and there is no status left to report it with, so it is logged.
struct Relayed(Incoming);

impl HttpBody for Relayed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match Pin::new(&mut self.0).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(error))) => {
                tracing::debug!(%error, "reading the kubelet's answer failed");
                Poll::Ready(None)
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kubelets_are_found_by_preferred_address_and_advertised_port() {
        let node = |addresses: Value, port: Value| json!({"status": {"addresses": addresses, "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}});
        let endpoint = |host: &str, port| Ok(Endpoint { host: host.into(), port });
        let all = json!([{"type": "Hostname", "address": "n1"},
                         {"type": "ExternalIP", "address": "203.0.113.5"},
                         {"type": "InternalIP", "address": "10.0.0.5"}]);
        assert_eq!(kubelet_endpoint(&node(all, json!(10555))), endpoint("10.0.0.5", 10555));
        let external = json!([{"type": "Hostname", "address": "n1"},
                              {"type": "ExternalIP", "address": "203.0.113.5"}]);
        assert_eq!(kubelet_endpoint(&node(external, json!(0))), endpoint("203.0.113.5", 10250));
        let hostname = json!([{"type": "Hostname", "address": "n1"}]);
        assert_eq!(kubelet_endpoint(&node(hostname, Value::Null)), endpoint("n1", 10250));
        assert_eq!(
            kubelet_endpoint(&json!({"status": {}})),
            Err("no preferred addresses found; known addresses: []".into())
        );
        assert_eq!(Endpoint { host: "fd00::1".into(), port: 1 }.authority(), "[fd00::1]:1");
    }

    #[test]
    fn containers_are_chosen_as_upstream_does() {
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}],
                                  "initContainers": [{"name": "i"}]}});
        let message = |result: Result<String, ApiError>| result.map_err(|e| (e.code, e.message));
        assert_eq!(
            message(choose_container(&pod, "p", "")),
            Err((
                400,
                "a container name must be specified for pod p, choose one of: [a b i]".into()
            ))
        );
        assert_eq!(message(choose_container(&pod, "p", "i")), Ok("i".into()));
        assert_eq!(
            message(choose_container(&pod, "p", "c")),
            Err((400, "container c is not valid for pod p".into()))
        );
        let single = json!({"spec": {"containers": [{"name": "only"}]}});
        assert_eq!(message(choose_container(&single, "p", "")), Ok("only".into()));
    }

    #[test]
    fn upgrades_keep_their_protocol_headers_and_lose_credentials() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "Upgrade, X-Private"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "abc"),
            ("sec-websocket-protocol", "v5.channel.k8s.io"),
            ("x-stream-protocol-version", "v4.channel.k8s.io"),
            ("x-private", "hop"),
            ("authorization", "Bearer secret"),
            ("host", "apiserver"),
        ] {
            headers.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        assert!(wants_upgrade(&headers));
        let relayed = relayed_headers(&headers, true);
        let mut names: Vec<&str> = relayed.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "connection",
                "sec-websocket-key",
                "sec-websocket-protocol",
                "upgrade",
                "x-stream-protocol-version"
            ]
        );
        assert_eq!(relayed["connection"], "Upgrade");
        let plain = relayed_headers(&headers, false);
        assert!(!plain.contains_key("upgrade") && !plain.contains_key("connection"));
    }
}
