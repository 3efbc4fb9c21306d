//! The listeners: UDP and TCP on each configured address, each query answered from the
//! newest [`Records`] snapshot of a watch channel (so tests inject snapshots without an API
//! server), forwarded upstream when the name is not the cluster's.
//!
//! UDP answers honour the client's EDNS0 payload size (512 bytes without EDNS) and are cut
//! to the question with the TC bit set when they do not fit, so the client retries over
//! TCP.

use crate::answer::{self, CLASSIC_UDP_PAYLOAD, Resolution};
use crate::error::DnsError;
use crate::forward::Forwarder;
use crate::records::Records;
use crate::wire::{Header, MAX_MESSAGE, Message, Name, Opcode, Question, Rcode};
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Queries answered at once per UDP socket; datagrams beyond are dropped (the client
/// retries), which bounds memory under a flood.
const MAX_UDP_IN_FLIGHT: usize = 1024;

/// Open TCP connections per listener; connections beyond are closed at once.
const MAX_TCP_CONNECTIONS: usize = 256;

/// How long a TCP connection may sit idle between queries (RFC 7766 suggests seconds).
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound sockets, not yet serving.
#[derive(Debug)]
pub struct Server {
    udp: Vec<Arc<UdpSocket>>,
    tcp: Vec<TcpListener>,
}

/// How a query arrived, which decides how large its answer may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

/// What every listener shares.
#[derive(Debug)]
struct Handler {
    records: watch::Receiver<Arc<Records>>,
    forwarder: Forwarder,
}

impl Server {
    /// Binds UDP and TCP on every address. TCP takes the port UDP got, so port 0 gives one
    /// free port for both transports.
    pub async fn bind(listen: &[SocketAddr]) -> Result<Self, DnsError> {
        if listen.is_empty() {
            return Err(DnsError::NoListenAddress);
        }
        let mut server = Self { udp: Vec::new(), tcp: Vec::new() };
        for &address in listen {
            // With port 0 the kernel picks the UDP port, which TCP may already use elsewhere:
            // then pick again (a few times) rather than fail.
            let attempts = if address.port() == 0 { 20 } else { 1 };
            let mut attempt = 0;
            let (udp, tcp) = loop {
                attempt += 1;
                let udp = UdpSocket::bind(address)
                    .await
                    .map_err(|source| DnsError::BindUdp { address, source })?;
                let bound =
                    udp.local_addr().map_err(|source| DnsError::BindUdp { address, source })?;
                match TcpListener::bind(bound).await {
                    Ok(tcp) => break (udp, tcp),
                    Err(source)
                        if attempt < attempts && source.kind() == std::io::ErrorKind::AddrInUse => {
                    }
                    Err(source) => return Err(DnsError::BindTcp { address: bound, source }),
                }
            };
            server.udp.push(Arc::new(udp));
            server.tcp.push(tcp);
        }
        Ok(server)
    }

    /// The bound addresses (the same port serves UDP and TCP).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp.iter().filter_map(|socket| socket.local_addr().ok()).collect()
    }

    /// Serves until `stop` turns true (or its sender is dropped), answering from the newest
    /// snapshot in `records` and forwarding other names with `forwarder`. On return every
    /// socket is closed and no query is being handled.
    pub async fn serve(
        self,
        records: watch::Receiver<Arc<Records>>,
        forwarder: Forwarder,
        mut stop: watch::Receiver<bool>,
    ) {
        let handler = Arc::new(Handler { records, forwarder });
        let mut listeners = JoinSet::new();
        for socket in self.udp {
            listeners.spawn(serve_udp(socket, Arc::clone(&handler)));
        }
        for listener in self.tcp {
            listeners.spawn(serve_tcp(listener, Arc::clone(&handler)));
        }
        let _ = stop.wait_for(|stop| *stop).await;
        // Each listener owns the tasks it spawned, so shutting them down ends those too.
        listeners.shutdown().await;
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, handler: Arc<Handler>) {
    let mut queries = JoinSet::new();
    let mut buffer = vec![0; MAX_MESSAGE];
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buffer) => {
                let (len, peer) = match received {
                    Ok(received) => received,
                    Err(error) => {
                        tracing::debug!(%error, "dns: udp receive failed");
                        continue;
                    }
                };
                if queries.len() >= MAX_UDP_IN_FLIGHT {
                    continue;
                }
                let query = buffer[..len].to_vec();
                let socket = Arc::clone(&socket);
                let handler = Arc::clone(&handler);
                queries.spawn(async move {
                    if let Some(answer) = handler.handle(&query, Transport::Udp).await
                        && let Err(error) = socket.send_to(&answer, peer).await
                    {
                        tracing::debug!(%error, %peer, "dns: udp send failed");
                    }
                });
            }
            Some(_) = queries.join_next(), if !queries.is_empty() => {}
        }
    }
}

async fn serve_tcp(listener: TcpListener, handler: Arc<Handler>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) if connections.len() < MAX_TCP_CONNECTIONS => {
                    connections.spawn(serve_connection(stream, Arc::clone(&handler)));
                }
                Ok(_) => {}
                Err(error) => {
                    // Out of descriptors, typically: back off instead of spinning.
                    tracing::debug!(%error, "dns: tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Queries on one TCP connection, answered in order, until the client closes it or idles.
async fn serve_connection(mut stream: TcpStream, handler: Arc<Handler>) {
    loop {
        let mut len = [0; 2];
        if !matches!(
            tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut len)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let mut query = vec![0; usize::from(u16::from_be_bytes(len))];
        if !matches!(
            tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut query)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let Some(answer) = handler.handle(&query, Transport::Tcp).await else {
            continue;
        };
        let Ok(len) = u16::try_from(answer.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(answer.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&answer);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

impl Handler {
    /// The answer to one message in wire format, or `None` when nothing must be sent (the
    /// message was itself a response, or too short to carry an ID).
    async fn handle(&self, bytes: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let query = match Message::parse(bytes) {
            Ok(query) => query,
            Err(error) => {
                tracing::debug!(%error, "dns: malformed query");
                return format_error(bytes);
            }
        };
        if query.header.response {
            return None;
        }
        let limit = size_limit(&query, transport);
        let records = Arc::clone(&self.records.borrow());
        let response = match answer::answer(&query, &records) {
            Resolution::Answer(response) => response,
            Resolution::Chase { response, target } => self.chase(&query, response, target).await,
            Resolution::Forward => match self.forwarder.forward(bytes).await {
                Ok(upstream) if upstream.len() <= limit => return Some(upstream),
                Ok(upstream) => match Message::parse(&upstream) {
                    Ok(upstream) => upstream,
                    Err(_) => answer::server_failure(&query),
                },
                Err(error) => {
                    tracing::debug!(%error, "dns: no upstream answered");
                    answer::server_failure(&query)
                }
            },
        };
        encode(&query, &response, limit)
    }

    /// Completes an answer that ends in a CNAME leaving the zone with upstream's records for
    /// the CNAME's target. When upstream fails the CNAME alone goes back; the client's own
    /// resolver may then follow it.
    async fn chase(&self, query: &Message, mut response: Message, target: Name) -> Message {
        let Some(question) = query.questions.first() else {
            return response;
        };
        let upstream_query = Message {
            header: Header { id: random_id(), recursion_desired: true, ..Header::default() },
            questions: vec![Question::new(target, question.qtype)],
            ..Message::default()
        };
        let Ok(bytes) = upstream_query.encode() else {
            return response;
        };
        match self.forwarder.forward(&bytes).await.map(|answer| Message::parse(&answer)) {
            Ok(Ok(upstream)) => {
                if upstream.header.rcode == Rcode::NXDOMAIN {
                    response.header.rcode = Rcode::NXDOMAIN;
                }
                response.answers.extend(upstream.answers);
            }
            Ok(Err(error)) => tracing::debug!(%error, "dns: malformed upstream answer"),
            Err(error) => tracing::debug!(%error, "dns: cannot resolve a cname target"),
        }
        response
    }
}

/// How large an answer to `query` may be: a TCP message's limit, or the UDP payload size the
/// client announced (never below 512).
fn size_limit(query: &Message, transport: Transport) -> usize {
    match transport {
        Transport::Tcp => MAX_MESSAGE,
        Transport::Udp => {
            let announced = query.edns.as_ref().map_or(CLASSIC_UDP_PAYLOAD, |edns| edns.payload);
            usize::from(announced.max(CLASSIC_UDP_PAYLOAD))
        }
    }
}

/// `response` in wire format, cut to its question (and OPT record) with the TC bit set when
/// it exceeds `limit`.
fn encode(query: &Message, response: &Message, limit: usize) -> Option<Vec<u8>> {
    let encoded = match response.encode() {
        Ok(encoded) if encoded.len() <= limit => return Some(encoded),
        Ok(_) => response.truncated().encode(),
        Err(error) => {
            tracing::debug!(%error, "dns: cannot encode an answer");
            answer::server_failure(query).encode()
        }
    };
    encoded.ok()
}

/// FORMERR for a message that did not parse, when at least its header did.
fn format_error(bytes: &[u8]) -> Option<Vec<u8>> {
    let header = bytes.get(..12)?;
    if header[2] & 0x80 != 0 {
        return None;
    }
    let header = Header {
        id: u16::from_be_bytes([header[0], header[1]]),
        response: true,
        opcode: Opcode::QUERY,
        rcode: Rcode::FORMERR,
        ..Header::default()
    };
    Message { header, ..Message::default() }.encode().ok()
}

/// An unpredictable ID for a query of our own (RFC 5452): std's hasher keys are random per
/// process and differ for every `RandomState`.
fn random_id() -> u16 {
    let [low, high, ..] = RandomState::new().hash_one(std::time::SystemTime::now()).to_le_bytes();
    u16::from_le_bytes([low, high])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, Random};
    use crate::wire::{Edns, RecordType};

    fn handler() -> Handler {
        let (_, records) = watch::channel(Arc::new(fixtures::records()));
        Handler { records, forwarder: Forwarder::new(Vec::new()) }
    }

    #[test]
    fn format_errors_carry_the_id() {
        // A question count without a question.
        let answer = format_error(&[0xAB, 0xCD, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap();
        let header =
            Header { id: 0xABCD, response: true, rcode: Rcode::FORMERR, ..Header::default() };
        assert_eq!(Message::parse(&answer).map(|m| m.header), Ok(header));
        // Responses and fragments of headers get nothing.
        assert_eq!(format_error(&[0xAB, 0xCD, 0x81, 0, 0, 1, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(format_error(&[0xAB, 0xCD, 1]), None);
    }

    /// Whatever arrives, the handler does not panic, and what it sends is a response that
    /// parses, carries the query's ID and fits a UDP payload.
    #[tokio::test]
    async fn mutated_queries_get_sane_answers() {
        let handler = handler();
        let name = Name::from_ascii("_pg._tcp.db.prod.svc.cluster.local").unwrap();
        let mut query = Message {
            header: Header { id: 0x0102, recursion_desired: true, ..Header::default() },
            questions: vec![Question::new(name, RecordType::SRV)],
            edns: Some(Edns::new(1232)),
            ..Message::default()
        };
        let with_edns = query.encode().unwrap();
        query.edns = None;
        let classic = query.encode().unwrap();
        let mut random = Random(0xC0FFEE);
        let mut answered = 0;
        for round in 0..20_000 {
            let mut bytes = if round % 2 == 0 { with_edns.clone() } else { classic.clone() };
            random.mutate(&mut bytes);
            let Some(answer) = handler.handle(&bytes, Transport::Udp).await else {
                continue;
            };
            answered += 1;
            let parsed = Message::parse(&answer).unwrap();
            assert!(parsed.header.response);
            assert_eq!(answer[..2], bytes[..2]);
            let limit = Message::parse(&bytes).map_or(usize::from(CLASSIC_UDP_PAYLOAD), |query| {
                size_limit(&query, Transport::Udp)
            });
            assert!(answer.len() <= limit, "{bytes:02x?}");
        }
        assert!(answered > 10_000, "only {answered} answers");
    }
}
