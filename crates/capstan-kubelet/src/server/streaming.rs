//! Exec, attach and port-forward: the client's upgraded connection relayed to the runtime's
//! streaming server (containerd's speaks SPDY/3.1).
//!
//! - A SPDY/3.1 client is relayed byte for byte after the same upgrade towards the runtime.
//! - A WebSocket client of the channel protocols (`v5.channel.k8s.io` and older) is
//!   translated: each channel becomes a SPDY stream (error, stdin, stdout, stderr, resize).
//! - A WebSocket port-forward client tunnelling SPDY (`SPDY/3.1+portforward.k8s.io`, what
//!   kubectl 1.31+ sends) has its binary messages' bytes relayed unchanged.
//! - A plain WebSocket port-forward client (`portforward.k8s.io`, kube-rs) gets, for the
//!   i-th port, data on channel 2i and errors on channel 2i+1.

use super::lookup::{self, PodRef};
use super::spdy::{self, Decoder, Encoder, FLAG_FIN, Frame};
use super::{Body, Context, full, query_pairs, status};
use crate::runtime::cri_api::{AttachRequest, ExecRequest, PortForwardRequest};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{self, CloseFrame, frame::coding::CloseCode};

type Io = TokioIo<Upgraded>;

/// How long the runtime gets to answer the streams opened on it.
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The channel protocols this server speaks to WebSocket exec/attach clients, preferred
/// first.
const CHANNEL_PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"];
/// The port-forward protocol of kubectl 1.31+: SPDY/3.1 frames inside WebSocket messages.
const TUNNELED_PORT_FORWARD: &str = "SPDY/3.1+portforward.k8s.io";
/// Plain WebSocket port-forward protocols (channels per port).
const CHANNEL_PORT_FORWARD: &[&str] = &["v4.channel.k8s.io", "portforward.k8s.io"];
/// The SPDY sub-protocols the runtime offers for remote commands, newest first.
const REMOTE_COMMAND_PROTOCOLS: &[&str] =
    &["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];
const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

/// A streaming failure after the client was answered 101.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamError {
    #[error("streaming server url {0:?}")]
    Url(String),
    #[error("connecting to the streaming server {address}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("upgrading the streaming server connection")]
    Http(#[from] hyper::Error),
    #[error("the streaming server refused the upgrade with {status}: {body}")]
    Refused { status: StatusCode, body: String },
    #[error("streaming server i/o")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Spdy(#[from] spdy::SpdyError),
    #[error("websocket")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("the streaming server did not answer the stream {0} in time")]
    StreamTimeout(u32),
    #[error("the streaming server reset stream {0}")]
    StreamReset(u32),
}

/// How the client asked to be upgraded.
#[derive(Debug, Clone, PartialEq)]
enum ClientUpgrade {
    /// `Upgrade: SPDY/3.1` with these `X-Stream-Protocol-Version` offers.
    Spdy(Vec<String>),
    /// `Upgrade: websocket` with this key and these sub-protocol offers.
    WebSocket { key: String, protocols: Vec<String> },
}

fn client_upgrade(headers: &HeaderMap) -> Option<ClientUpgrade> {
    let upgrade = headers.get(header::UPGRADE)?.to_str().ok()?.trim().to_ascii_lowercase();
    let list = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect()
    };
    if upgrade == "spdy/3.1" {
        return Some(ClientUpgrade::Spdy(list("x-stream-protocol-version")));
    }
    if upgrade == "websocket" {
        let key = headers.get("sec-websocket-key")?.to_str().ok()?.to_owned();
        return Some(ClientUpgrade::WebSocket { key, protocols: list("sec-websocket-protocol") });
    }
    None
}

/// The first of `supported` that the client offered.
fn choose<'a>(offered: &[String], supported: &[&'a str]) -> Option<&'a str> {
    supported.iter().copied().find(|s| offered.iter().any(|o| o == s))
}

/// `Sec-WebSocket-Accept` for a key (RFC 6455 §4.2.2).
fn websocket_accept(key: &str) -> String {
    use base64::Engine;
    let mut context = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(key.as_bytes());
    context.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(context.finish())
}

fn switching(upgrade: &'static str) -> Response<Body> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    response.headers_mut().insert(header::UPGRADE, HeaderValue::from_static(upgrade));
    response
}

fn websocket_switching(key: &str, protocol: &str) -> Response<Body> {
    let mut response = switching("websocket");
    if let Ok(accept) = HeaderValue::from_str(&websocket_accept(key)) {
        response.headers_mut().insert("sec-websocket-accept", accept);
    }
    if let Ok(protocol) = HeaderValue::from_str(protocol) {
        response.headers_mut().insert("sec-websocket-protocol", protocol);
    }
    response
}

fn bad_request(message: impl Into<String>) -> Response<Body> {
    status(StatusCode::BAD_REQUEST, "BadRequest", message.into())
}

fn internal(message: impl std::fmt::Display) -> Response<Body> {
    status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message.to_string())
}

/// The exec/attach query: the command and which streams the client wants.
#[derive(Debug, Clone, Default, PartialEq)]
struct RemoteCommandOptions {
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

impl RemoteCommandOptions {
    fn from_query(pairs: &[(String, String)]) -> Self {
        let mut options = RemoteCommandOptions::default();
        for (name, value) in pairs {
            let on = matches!(value.as_str(), "" | "1" | "true" | "True");
            match name.as_str() {
                "command" => options.command.push(value.clone()),
                "stdin" | "input" => options.stdin = on,
                "stdout" | "output" => options.stdout = on,
                "stderr" | "error" => options.stderr = on,
                "tty" => options.tty = on,
                _ => {}
            }
        }
        // With a terminal, stderr is merged into stdout (the runtime refuses both).
        options.stderr &= !options.tty;
        options
    }
}

/// `/exec/...` and `/attach/...`.
pub(super) async fn remote_command(
    mut request: Request<Incoming>,
    context: &Context,
    attach: bool,
    pod: PodRef<'_>,
    container: &str,
) -> Response<Body> {
    let options = RemoteCommandOptions::from_query(&query_pairs(request.uri().query()));
    let Some(upgrade) = client_upgrade(request.headers()) else {
        return bad_request("Upgrade request required");
    };
    if !attach && options.command.is_empty() {
        return bad_request("you must specify at least 1 command");
    }
    if !(options.stdin || options.stdout || options.stderr) {
        return bad_request("you must specify at least 1 of stdin, stdout, stderr");
    }
    let found = match lookup::container(&*context.runtime, &pod, container).await {
        Ok(found) => found,
        Err(error) => return error.response(),
    };
    let url = if attach {
        context
            .runtime
            .attach(AttachRequest {
                container_id: found.id.clone(),
                stdin: options.stdin,
                tty: options.tty,
                stdout: options.stdout,
                stderr: options.stderr,
            })
            .await
    } else {
        context
            .runtime
            .exec(ExecRequest {
                container_id: found.id.clone(),
                cmd: options.command.clone(),
                tty: options.tty,
                stdin: options.stdin,
                stdout: options.stdout,
                stderr: options.stderr,
            })
            .await
    };
    let url = match url {
        Ok(url) => url,
        Err(error) => return internal(error),
    };
    match upgrade {
        ClientUpgrade::Spdy(offers) => spdy_passthrough(&mut request, &url, &offers).await,
        ClientUpgrade::WebSocket { key, protocols } => {
            let Some(protocol) = choose(&protocols, CHANNEL_PROTOCOLS).or_else(|| {
                // A client naming no sub-protocol gets the original channel protocol.
                protocols.is_empty().then_some("channel.k8s.io")
            }) else {
                return bad_request(format!(
                    "unable to upgrade: none of the offered protocols {protocols:?} is supported"
                ));
            };
            let runtime_io = match dial(&url, REMOTE_COMMAND_PROTOCOLS).await {
                Ok((io, _)) => io,
                Err(error) => return internal(error),
            };
            let client = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                let Ok(client) = client.await else { return };
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(client),
                    protocol::Role::Server,
                    None,
                )
                .await;
                if let Err(error) = channel_session(ws, runtime_io, &options, protocol).await {
                    tracing::debug!(%error, "exec/attach session ended with an error");
                }
            });
            websocket_switching(&key, protocol)
        }
    }
}

/// `/portForward/...`.
pub(super) async fn port_forward(
    mut request: Request<Incoming>,
    context: &Context,
    pod: PodRef<'_>,
) -> Response<Body> {
    let Some(upgrade) = client_upgrade(request.headers()) else {
        return bad_request("Upgrade request required");
    };
    let sandbox = match lookup::sandbox(&*context.runtime, &pod).await {
        Ok(sandbox) => sandbox,
        Err(error) => return error.response(),
    };
    let pairs = query_pairs(request.uri().query());
    let mut ports = Vec::new();
    for (name, value) in &pairs {
        if name == "ports" || name == "port" {
            for port in value.split(',').filter(|p| !p.is_empty()) {
                match port.trim().parse::<u16>() {
                    Ok(port) if port > 0 => ports.push(port),
                    _ => return bad_request(format!("invalid port {port:?}")),
                }
            }
        }
    }
    let url = match context
        .runtime
        .port_forward(PortForwardRequest {
            pod_sandbox_id: sandbox.id.clone(),
            port: ports.iter().map(|p| i32::from(*p)).collect(),
        })
        .await
    {
        Ok(url) => url,
        Err(error) => return internal(error),
    };
    match upgrade {
        ClientUpgrade::Spdy(offers) => spdy_passthrough(&mut request, &url, &offers).await,
        ClientUpgrade::WebSocket { key, protocols } => {
            let tunneled = protocols.iter().any(|p| p == TUNNELED_PORT_FORWARD);
            let protocol = if tunneled {
                TUNNELED_PORT_FORWARD
            } else if let Some(protocol) = choose(&protocols, CHANNEL_PORT_FORWARD) {
                protocol
            } else if protocols.is_empty() {
                "portforward.k8s.io"
            } else {
                return bad_request(format!(
                    "unable to upgrade: none of the offered protocols {protocols:?} is supported"
                ));
            };
            if !tunneled && ports.is_empty() {
                return bad_request("query parameter \"ports\" is required");
            }
            let runtime_io = match dial(&url, &[PORT_FORWARD_PROTOCOL]).await {
                Ok((io, _)) => io,
                Err(error) => return internal(error),
            };
            let client = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                let Ok(client) = client.await else { return };
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(client),
                    protocol::Role::Server,
                    None,
                )
                .await;
                let result = if tunneled {
                    tunnel(ws, runtime_io).await
                } else {
                    port_channels(ws, runtime_io, &ports).await
                };
                if let Err(error) = result {
                    tracing::debug!(%error, "port-forward session ended with an error");
                }
            });
            websocket_switching(&key, protocol)
        }
    }
}

/// A SPDY client: upgrade the runtime's connection with the client's offers, answer the
/// client with the runtime's choice, then copy bytes both ways.
async fn spdy_passthrough(
    request: &mut Request<Incoming>,
    url: &str,
    offers: &[String],
) -> Response<Body> {
    let offers: Vec<&str> = offers.iter().map(String::as_str).collect();
    let (mut runtime_io, chosen) = match dial(url, &offers).await {
        Ok(dialed) => dialed,
        Err(StreamError::Refused { status: code, body }) => {
            return status(code, "BadRequest", body);
        }
        Err(error) => return internal(error),
    };
    let client = hyper::upgrade::on(request);
    tokio::spawn(async move {
        let Ok(client) = client.await else { return };
        let mut client = TokioIo::new(client);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut runtime_io).await;
    });
    let mut response = switching("SPDY/3.1");
    if let Some(chosen) = chosen.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert("x-stream-protocol-version", chosen);
    }
    response
}

/// Opens an HTTP/1.1 connection to the runtime's streaming URL and upgrades it to
/// SPDY/3.1 offering `protocols`; returns the upgraded connection and the protocol chosen.
async fn dial(url: &str, protocols: &[&str]) -> Result<(Io, Option<String>), StreamError> {
    let uri: http::Uri = url.parse().map_err(|_| StreamError::Url(url.to_owned()))?;
    let authority = uri.authority().ok_or_else(|| StreamError::Url(url.to_owned()))?.clone();
    let address = if authority.port().is_some() {
        authority.as_str().to_owned()
    } else {
        format!("{}:80", authority.host())
    };
    let tcp = TcpStream::connect(&address)
        .await
        .map_err(|source| StreamError::Connect { address: address.clone(), source })?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut builder = Request::post(path)
        .header(header::HOST, authority.as_str())
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1");
    for protocol in protocols {
        builder = builder.header("X-Stream-Protocol-Version", *protocol);
    }
    let request =
        builder.body(Empty::<Bytes>::new()).map_err(|_| StreamError::Url(url.to_owned()))?;
    let response = sender.send_request(request).await?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_owned())
            .unwrap_or_default();
        return Err(StreamError::Refused { status, body });
    }
    let chosen = response
        .headers()
        .get("x-stream-protocol-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let upgraded = hyper::upgrade::on(response).await?;
    Ok((TokioIo::new(upgraded), chosen))
}

/// Relays WebSocket binary messages' bytes to the runtime and the runtime's bytes back as
/// binary messages, until either side closes.
async fn tunnel<S>(mut ws: WebSocketStream<S>, runtime_io: Io) -> Result<(), StreamError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(runtime_io);
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        tokio::select! {
            read = reader.read(&mut buf) => {
                let read = read?;
                if read == 0 {
                    break;
                }
                ws.send(Message::binary(Bytes::copy_from_slice(&buf[..read]))).await?;
            }
            message = ws.next() => match message {
                Some(Ok(Message::Binary(data))) => writer.write_all(&data).await?,
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.into()),
            }
        }
    }
    let _ = writer.shutdown().await;
    close_gracefully(&mut ws).await;
    Ok(())
}

/// Sends a normal Close and waits (briefly) for the client's: closing the connection with
/// the client's Close still unread would reset it, and a reset can discard the last
/// messages (the exit status) before the client reads them.
async fn close_gracefully<S>(ws: &mut WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if ws.close(Some(normal_close())).await.is_err() {
        return;
    }
    let drain = async {
        while let Some(Ok(message)) = ws.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drain).await;
}

fn normal_close() -> CloseFrame {
    CloseFrame { code: CloseCode::Normal, reason: "".into() }
}

/// A SPDY/3.1 client session over an upgraded connection: frames in arrive on a channel
/// (read by a task of their own), frames out are written here.
struct SpdySession {
    writer: WriteHalf<Io>,
    encoder: Encoder,
    next_stream_id: u32,
    frames: mpsc::Receiver<Frame>,
}

impl SpdySession {
    fn start(io: Io) -> Result<Self, StreamError> {
        let (reader, writer) = tokio::io::split(io);
        let (sender, frames) = mpsc::channel(64);
        tokio::spawn(read_frames(reader, sender));
        Ok(SpdySession { writer, encoder: Encoder::new()?, next_stream_id: 1, frames })
    }

    async fn send(&mut self, frame: &Frame) -> Result<(), StreamError> {
        let mut out = BytesMut::new();
        self.encoder.encode(frame, &mut out)?;
        self.writer.write_all(&out).await?;
        Ok(())
    }

    /// Opens a stream with these headers; returns its id.
    async fn open(&mut self, headers: &[(&str, String)]) -> Result<u32, StreamError> {
        let stream_id = self.next_stream_id;
        self.next_stream_id += 2;
        let headers = headers.iter().map(|(n, v)| ((*n).to_owned(), v.clone())).collect();
        self.send(&Frame::SynStream {
            stream_id,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers,
        })
        .await?;
        Ok(stream_id)
    }

    async fn data(&mut self, stream_id: u32, data: Bytes, fin: bool) -> Result<(), StreamError> {
        let flags = if fin { FLAG_FIN } else { 0 };
        self.send(&Frame::Data { stream_id, flags, data }).await
    }

    /// Waits until the runtime has answered every stream in `pending`, answering pings
    /// meanwhile. Data arriving before that is returned to be handled afterwards.
    async fn await_replies(&mut self, mut pending: Vec<u32>) -> Result<Vec<Frame>, StreamError> {
        let mut early = Vec::new();
        let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
        while let Some(&waiting) = pending.first() {
            let frame = tokio::time::timeout_at(deadline, self.frames.recv())
                .await
                .map_err(|_| StreamError::StreamTimeout(waiting))?
                .ok_or(StreamError::StreamReset(waiting))?;
            match frame {
                Frame::SynReply { stream_id, .. } => pending.retain(|id| *id != stream_id),
                Frame::RstStream { stream_id, .. } if pending.contains(&stream_id) => {
                    return Err(StreamError::StreamReset(stream_id));
                }
                Frame::Ping { id } => self.send(&Frame::Ping { id }).await?,
                other => early.push(other),
            }
        }
        Ok(early)
    }
}

async fn read_frames(mut reader: ReadHalf<Io>, frames: mpsc::Sender<Frame>) {
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    if frames.send(frame).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(%error, "bad frame from the streaming server");
                    return;
                }
            }
        }
        match reader.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// What a SPDY stream of a remote-command session carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum StreamRole {
    Error,
    Stdin,
    Stdout,
    Stderr,
    Resize,
}

/// The channel numbers of the WebSocket channel protocols.
const CHANNEL_STDIN: u8 = 0;
const CHANNEL_STDOUT: u8 = 1;
const CHANNEL_STDERR: u8 = 2;
const CHANNEL_ERROR: u8 = 3;
const CHANNEL_RESIZE: u8 = 4;
/// v5: `[CHANNEL_CLOSE, channel]` closes the client's side of a channel.
const CHANNEL_CLOSE: u8 = 255;

/// What one client message asks of the session.
#[derive(Debug, PartialEq, Eq)]
enum ClientAction {
    Stdin(Bytes),
    CloseStdin,
    Resize(Bytes),
    Nothing,
}

/// Interprets a binary message of the channel protocols from the client.
fn client_action(message: &[u8], protocol: &str) -> ClientAction {
    match message.split_first() {
        Some((&CHANNEL_STDIN, data)) if !data.is_empty() => {
            ClientAction::Stdin(Bytes::copy_from_slice(data))
        }
        Some((&CHANNEL_RESIZE, data)) if !data.is_empty() => {
            ClientAction::Resize(Bytes::copy_from_slice(data))
        }
        Some((&CHANNEL_CLOSE, [CHANNEL_STDIN])) if protocol == "v5.channel.k8s.io" => {
            ClientAction::CloseStdin
        }
        _ => ClientAction::Nothing,
    }
}

fn channel_message(channel: u8, data: &[u8]) -> Message {
    let mut out = BytesMut::with_capacity(data.len() + 1);
    out.put_u8(channel);
    out.extend_from_slice(data);
    Message::binary(out.freeze())
}

/// The final status for the error channel: the runtime's `metav1.Status` (protocol v4
/// and later send JSON), or Success when it sent none.
fn final_status(error_stream: &[u8], protocol: &str) -> Option<Vec<u8>> {
    if protocol == "channel.k8s.io" {
        // The original protocol carries only an error text, nothing on success.
        return (!error_stream.is_empty()).then(|| error_stream.to_vec());
    }
    if error_stream.is_empty() {
        return Some(br#"{"metadata":{},"status":"Success"}"#.to_vec());
    }
    if serde_json::from_slice::<serde_json::Value>(error_stream).is_ok() {
        return Some(error_stream.to_vec());
    }
    let message = String::from_utf8_lossy(error_stream).into_owned();
    let status = serde_json::json!({
        "metadata": {}, "status": "Failure", "message": message, "reason": "InternalError",
    });
    Some(status.to_string().into_bytes())
}

/// Translates a WebSocket channel-protocol session into SPDY streams on the runtime.
async fn channel_session<S>(
    mut ws: WebSocketStream<S>,
    runtime_io: Io,
    options: &RemoteCommandOptions,
    protocol: &str,
) -> Result<(), StreamError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut session = SpdySession::start(runtime_io)?;
    let mut roles: HashMap<u32, StreamRole> = HashMap::new();
    let wanted = [
        (StreamRole::Error, "error", true),
        (StreamRole::Stdin, "stdin", options.stdin),
        (StreamRole::Stdout, "stdout", options.stdout),
        (StreamRole::Stderr, "stderr", options.stderr),
        (StreamRole::Resize, "resize", options.tty),
    ];
    let mut by_role: HashMap<StreamRole, u32> = HashMap::new();
    for (role, stream_type, on) in wanted {
        if on {
            let id = session.open(&[("streamtype", stream_type.to_owned())]).await?;
            roles.insert(id, role);
            by_role.insert(role, id);
        }
    }
    let mut pending: Vec<Frame> =
        session.await_replies(roles.keys().copied().collect()).await?.into_iter().rev().collect();
    let mut error_stream = Vec::new();
    let mut client_open = true;
    loop {
        let frame = if let Some(frame) = pending.pop() {
            Some(frame)
        } else {
            tokio::select! {
                frame = session.frames.recv() => frame,
                message = ws.next(), if client_open => {
                    match message {
                        Some(Ok(Message::Binary(data))) => match client_action(&data, protocol) {
                            ClientAction::Stdin(data) => {
                                if let Some(&id) = by_role.get(&StreamRole::Stdin) {
                                    session.data(id, data, false).await?;
                                }
                            }
                            ClientAction::CloseStdin => {
                                if let Some(id) = by_role.remove(&StreamRole::Stdin) {
                                    session.data(id, Bytes::new(), true).await?;
                                }
                            }
                            ClientAction::Resize(data) => {
                                if let Some(&id) = by_role.get(&StreamRole::Resize) {
                                    session.data(id, data, false).await?;
                                }
                            }
                            ClientAction::Nothing => {}
                        },
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                            // The client is gone: so is the session.
                            client_open = false;
                            break;
                        }
                        Some(Ok(_)) => {}
                    }
                    continue;
                }
            }
        };
        let Some(frame) = frame else { break };
        match frame {
            Frame::Data { stream_id, data, .. } => {
                if !data.is_empty() {
                    // Keep the runtime's send window open. The runtime may already have
                    // closed the connection after its last data: that is not a failure of
                    // the session, whose status still has to reach the client.
                    let _ = session
                        .send(&Frame::WindowUpdate { stream_id, delta: data.len() as u32 })
                        .await;
                }
                match roles.get(&stream_id) {
                    Some(StreamRole::Stdout) if !data.is_empty() => {
                        ws.send(channel_message(CHANNEL_STDOUT, &data)).await?;
                    }
                    Some(StreamRole::Stderr) if !data.is_empty() => {
                        ws.send(channel_message(CHANNEL_STDERR, &data)).await?;
                    }
                    Some(StreamRole::Error) => error_stream.extend_from_slice(&data),
                    _ => {}
                }
            }
            Frame::Ping { id } => {
                let _ = session.send(&Frame::Ping { id }).await;
            }
            // The runtime closes the connection once the command has ended.
            Frame::GoAway { .. } => break,
            _ => {}
        }
    }
    if client_open {
        if let Some(status) = final_status(&error_stream, protocol) {
            ws.send(channel_message(CHANNEL_ERROR, &status)).await?;
        }
        close_gracefully(&mut ws).await;
    }
    Ok(())
}

/// Plain WebSocket port-forward: for port i, a data and an error stream on the runtime,
/// relayed to channels 2i and 2i+1; each channel's first message is the port number.
async fn port_channels<S>(
    mut ws: WebSocketStream<S>,
    runtime_io: Io,
    ports: &[u16],
) -> Result<(), StreamError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut session = SpdySession::start(runtime_io)?;
    let mut channels: HashMap<u32, u8> = HashMap::new();
    let mut data_streams: HashMap<u8, u32> = HashMap::new();
    for (index, port) in ports.iter().enumerate() {
        let data_channel = (index * 2) as u8;
        for (stream_type, channel) in [("error", data_channel + 1), ("data", data_channel)] {
            let id = session
                .open(&[
                    ("streamtype", stream_type.to_owned()),
                    ("port", port.to_string()),
                    ("requestid", index.to_string()),
                ])
                .await?;
            channels.insert(id, channel);
            if stream_type == "data" {
                data_streams.insert(channel, id);
            }
        }
    }
    let mut pending: Vec<Frame> = session
        .await_replies(channels.keys().copied().collect())
        .await?
        .into_iter()
        .rev()
        .collect();
    for (index, port) in ports.iter().enumerate() {
        let port = port.to_le_bytes();
        ws.send(channel_message((index * 2) as u8, &port)).await?;
        ws.send(channel_message((index * 2 + 1) as u8, &port)).await?;
    }
    loop {
        let frame = if let Some(frame) = pending.pop() {
            frame
        } else {
            tokio::select! {
                frame = session.frames.recv() => match frame {
                    Some(frame) => frame,
                    None => break,
                },
                message = ws.next() => {
                    match message {
                        Some(Ok(Message::Binary(data))) => {
                            if let Some((channel, payload)) = data.split_first()
                                && let Some(&id) = data_streams.get(channel)
                                && !payload.is_empty()
                            {
                                session.data(id, Bytes::copy_from_slice(payload), false).await?;
                            }
                        }
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(()),
                        Some(Ok(_)) => {}
                    }
                    continue;
                }
            }
        };
        match frame {
            Frame::Data { stream_id, data, .. } if !data.is_empty() => {
                session.send(&Frame::WindowUpdate { stream_id, delta: data.len() as u32 }).await?;
                if let Some(&channel) = channels.get(&stream_id) {
                    ws.send(channel_message(channel, &data)).await?;
                }
            }
            Frame::Ping { id } => {
                let _ = session.send(&Frame::Ping { id }).await;
            }
            Frame::GoAway { .. } => break,
            _ => {}
        }
    }
    close_gracefully(&mut ws).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> Vec<(String, String)> {
        query_pairs(Some(query))
    }

    #[test]
    fn remote_command_query() {
        let options = RemoteCommandOptions::from_query(&pairs(
            "command=sh&command=-c&command=echo%20hi&stdin=true&stdout=1&stderr=true&tty=false",
        ));
        assert_eq!(options.command, ["sh", "-c", "echo hi"]);
        assert!(options.stdin && options.stdout && options.stderr && !options.tty);
        let old =
            RemoteCommandOptions::from_query(&pairs("command=ls&input=1&output=1&error=1&tty=1"));
        assert!(old.stdin && old.stdout && old.tty);
        assert!(!old.stderr, "a terminal merges stderr into stdout");
    }

    #[test]
    fn channel_messages_from_the_client() {
        assert_eq!(
            client_action(b"\x00abc", "v5.channel.k8s.io"),
            ClientAction::Stdin(Bytes::from_static(b"abc"))
        );
        assert_eq!(client_action(b"\xff\x00", "v5.channel.k8s.io"), ClientAction::CloseStdin);
        assert_eq!(client_action(b"\xff\x00", "v4.channel.k8s.io"), ClientAction::Nothing);
        assert_eq!(
            client_action(b"\x04{\"Width\":80,\"Height\":24}", "v4.channel.k8s.io"),
            ClientAction::Resize(Bytes::from_static(b"{\"Width\":80,\"Height\":24}"))
        );
        assert_eq!(client_action(b"\x00", "v5.channel.k8s.io"), ClientAction::Nothing);
        assert_eq!(client_action(b"", "v5.channel.k8s.io"), ClientAction::Nothing);
        assert_eq!(channel_message(1, b"hi"), Message::binary(Bytes::from_static(b"\x01hi")));
    }

    #[test]
    fn the_final_status() {
        let success = final_status(b"", "v5.channel.k8s.io").unwrap();
        assert_eq!(success, br#"{"metadata":{},"status":"Success"}"#);
        let failure = br#"{"metadata":{},"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
        assert_eq!(final_status(failure, "v4.channel.k8s.io").unwrap(), failure);
        let text: serde_json::Value =
            serde_json::from_slice(&final_status(b"boom", "v5.channel.k8s.io").unwrap()).unwrap();
        assert_eq!(text["message"], "boom");
        assert_eq!(final_status(b"", "channel.k8s.io"), None);
    }

    #[test]
    fn upgrade_negotiation() {
        let mut headers = HeaderMap::new();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert("sec-websocket-key", HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="));
        headers.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("v4.channel.k8s.io, v5.channel.k8s.io"),
        );
        let Some(ClientUpgrade::WebSocket { key, protocols }) = client_upgrade(&headers) else {
            panic!("a websocket upgrade")
        };
        assert_eq!(choose(&protocols, CHANNEL_PROTOCOLS), Some("v5.channel.k8s.io"));
        // RFC 6455's example.
        assert_eq!(websocket_accept(&key), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let mut spdy = HeaderMap::new();
        spdy.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        spdy.append("x-stream-protocol-version", HeaderValue::from_static("v4.channel.k8s.io"));
        spdy.append("x-stream-protocol-version", HeaderValue::from_static("v3.channel.k8s.io"));
        assert_eq!(
            client_upgrade(&spdy),
            Some(ClientUpgrade::Spdy(vec!["v4.channel.k8s.io".into(), "v3.channel.k8s.io".into()]))
        );
        assert_eq!(client_upgrade(&HeaderMap::new()), None);
    }
}
