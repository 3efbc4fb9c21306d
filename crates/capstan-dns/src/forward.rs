//! Relaying queries for names outside the zone to upstream resolvers: over UDP first, again
//! over TCP when the UDP answer comes back truncated, each upstream in turn until one
//! answers.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long one upstream gets to answer one exchange (UDP, then TCP on truncation).
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest DNS message (both transports carry at most 65535 bytes).
const MAX_MESSAGE: usize = 65535;

/// The size of a DNS header; anything shorter is not a message.
const HEADER_LEN: usize = 12;

/// Why no upstream answered.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream resolver configured")]
    NoUpstream,
    #[error("query of {len} bytes is too large to forward")]
    TooLarge { len: usize },
    #[error("upstream {upstream} failed")]
    Upstream {
        upstream: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("upstream {upstream} did not answer within {timeout:?}")]
    Timeout { upstream: SocketAddr, timeout: Duration },
}

/// The upstream resolvers and how long each gets.
#[derive(Debug, Clone)]
pub struct Forwarder {
    upstreams: Arc<[SocketAddr]>,
    timeout: Duration,
}

impl Forwarder {
    /// Forwards to `upstreams`, tried in order, each with [`UPSTREAM_TIMEOUT`].
    pub fn new(upstreams: Vec<SocketAddr>) -> Self {
        Self { upstreams: upstreams.into(), timeout: UPSTREAM_TIMEOUT }
    }

    /// The same forwarder with another per-exchange timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends `query` (a message in wire format) to each upstream in turn and returns the
    /// first answer with the query's ID, unchanged. A truncated UDP answer is fetched again
    /// over TCP from the same upstream, so the result may exceed the client's UDP size (the
    /// caller truncates it again when it must). Fails when every upstream failed or timed
    /// out, with the last upstream's error.
    pub async fn forward(&self, query: &[u8]) -> Result<Vec<u8>, ForwardError> {
        if query.len() > MAX_MESSAGE {
            return Err(ForwardError::TooLarge { len: query.len() });
        }
        let mut last = ForwardError::NoUpstream;
        for &upstream in self.upstreams.iter() {
            match self.exchange(upstream, query).await {
                Ok(answer) => return Ok(answer),
                Err(error) => {
                    tracing::debug!(%error, "dns: forwarding failed");
                    last = error;
                }
            }
        }
        Err(last)
    }

    async fn exchange(&self, upstream: SocketAddr, query: &[u8]) -> Result<Vec<u8>, ForwardError> {
        let answer = self.timed(upstream, udp_exchange(upstream, query)).await?;
        if !truncated(&answer) {
            return Ok(answer);
        }
        self.timed(upstream, tcp_exchange(upstream, query)).await
    }

    async fn timed(
        &self,
        upstream: SocketAddr,
        exchange: impl Future<Output = io::Result<Vec<u8>>>,
    ) -> Result<Vec<u8>, ForwardError> {
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(source)) => Err(ForwardError::Upstream { upstream, source }),
            Err(_) => Err(ForwardError::Timeout { upstream, timeout: self.timeout }),
        }
    }
}

/// One UDP exchange from a fresh socket (a fresh random source port per query, and no
/// confusion between clients that chose the same ID). Datagrams that are not an answer to
/// this query are ignored.
async fn udp_exchange(upstream: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buffer = vec![0; MAX_MESSAGE];
    loop {
        let len = socket.recv(&mut buffer).await?;
        if answers(&buffer[..len], query) {
            buffer.truncate(len);
            return Ok(buffer);
        }
    }
}

/// One TCP exchange: the query and the answer, each behind its two-byte length.
async fn tcp_exchange(upstream: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let len = u16::try_from(query.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut stream = TcpStream::connect(upstream).await?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let mut len = [0; 2];
    stream.read_exact(&mut len).await?;
    let mut answer = vec![0; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut answer).await?;
    if !answers(&answer, query) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "answer to another query"));
    }
    Ok(answer)
}

/// Whether `answer` is a response carrying the ID of `query`.
fn answers(answer: &[u8], query: &[u8]) -> bool {
    answer.len() >= HEADER_LEN
        && answer[..2] == query[..2.min(query.len())]
        && answer[2] & 0x80 != 0
}

/// Whether a message in wire format has the TC bit.
fn truncated(message: &[u8]) -> bool {
    message.get(2).is_some_and(|flags| flags & 0x02 != 0)
}
