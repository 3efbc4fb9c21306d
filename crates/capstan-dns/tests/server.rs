//! The server over real sockets on loopback: UDP and TCP queries answered from an injected
//! snapshot, EDNS0 and truncation, and forwarding to fake upstream resolvers (UDP, TCP
//! fallback on truncation, SERVFAIL on timeout). No API server is involved.

// The helpers below are test code too: a failed step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use capstan_dns::forward::Forwarder;
use capstan_dns::wire::{Edns, Header, Message, Name, Question, RData, Rcode, Record, RecordType};
use capstan_dns::{Records, Server};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running server and what stops it.
struct Running {
    address: SocketAddr,
    records: watch::Sender<Arc<Records>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    async fn start(upstreams: Vec<SocketAddr>, timeout: Duration) -> Self {
        let server = Server::bind(&["127.0.0.1:0".parse().unwrap()]).await.unwrap();
        let address = server.local_addrs()[0];
        let (records, receiver) = watch::channel(Arc::new(records(&[])));
        let (stop, stopped) = watch::channel(false);
        let forwarder = Forwarder::new(upstreams).with_timeout(timeout);
        let task = tokio::spawn(server.serve(receiver, forwarder, stopped));
        Self { address, records, stop, task }
    }

    async fn shutdown(self) {
        self.stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), self.task).await.unwrap().unwrap();
    }
}

/// `default/kubernetes`, and `prod/big`, headless, with one endpoint `10.42.1.<n>` per `n`.
fn records(big: &[u8]) -> Records {
    let services: Vec<Service> = [
        json!({"metadata": {"namespace": "default", "name": "kubernetes"},
               "spec": {"clusterIP": "10.43.0.1", "ports": [{"name": "https", "port": 443}]}}),
        json!({"metadata": {"namespace": "prod", "name": "big"}, "spec": {"clusterIP": "None"}}),
    ]
    .into_iter()
    .map(|value| serde_json::from_value(value).unwrap())
    .collect();
    let endpoints: Vec<_> =
        big.iter().map(|n| json!({"addresses": [format!("10.42.1.{n}")]})).collect();
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"namespace": "prod", "name": "big-1",
                     "labels": {"kubernetes.io/service-name": "big"}},
        "addressType": "IPv4", "endpoints": endpoints}))
    .unwrap();
    Records::build("cluster.local", 5, &services, [&slice])
}

/// A query with an ID of its own, with an OPT record announcing `payload` when given.
fn query(name: &str, qtype: RecordType, payload: Option<u16>) -> Message {
    static NEXT_ID: AtomicU16 = AtomicU16::new(1);
    Message {
        header: Header {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            recursion_desired: true,
            ..Header::default()
        },
        questions: vec![Question::new(Name::from_ascii(name).unwrap(), qtype)],
        edns: payload.map(Edns::new),
        ..Message::default()
    }
}

async fn ask_udp(server: SocketAddr, query: &Message) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&query.encode().unwrap(), server).await.unwrap();
    let mut buffer = vec![0; 65535];
    let len = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    let answer = Message::parse(&buffer[..len]).unwrap();
    assert_eq!(answer.header.id, query.header.id);
    answer
}

async fn ask_tcp(server: SocketAddr, query: &Message) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    write_framed(&mut stream, &query.encode().unwrap()).await;
    let answer = Message::parse(&read_framed(&mut stream).await).unwrap();
    assert_eq!(answer.header.id, query.header.id);
    answer
}

async fn write_framed(stream: &mut TcpStream, message: &[u8]) {
    let len = u16::try_from(message.len()).unwrap().to_be_bytes();
    stream.write_all(&[&len[..], message].concat()).await.unwrap();
}

async fn read_framed(stream: &mut TcpStream) -> Vec<u8> {
    let mut len = [0; 2];
    stream.read_exact(&mut len).await.unwrap();
    let mut message = vec![0; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut message).await.unwrap();
    message
}

fn addresses(message: &Message) -> Vec<String> {
    message.answers.iter().map(|record| record.data.to_string()).collect()
}

/// An answer to `query` with `count` A records (192.0.2.x), as a fake upstream gives it.
fn upstream_answer(query: &Message, count: u8) -> Message {
    let name = &query.questions[0].name;
    Message {
        header: Header {
            id: query.header.id,
            response: true,
            opcode: query.header.opcode,
            recursion_desired: true,
            recursion_available: true,
            ..Header::default()
        },
        questions: query.questions.clone(),
        answers: (0..count)
            .map(|n| Record::new(name.clone(), 60, RData::A(Ipv4Addr::new(192, 0, 2, n))))
            .collect(),
        ..Message::default()
    }
}

/// A fake upstream on loopback: over UDP it answers with `udp_count` records (setting TC
/// when `truncate`), over TCP with `tcp_count`. Dropped tasks end with the test's runtime.
async fn fake_upstream(udp_count: u8, truncate: bool, tcp_count: u8) -> SocketAddr {
    // The UDP port the kernel picks may be taken for TCP by a parallel test: pick again.
    let (udp, address, tcp) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(address).await {
            break (udp, address, tcp);
        }
    };
    tokio::spawn(async move {
        let mut buffer = vec![0; 65535];
        loop {
            let (len, peer) = udp.recv_from(&mut buffer).await.unwrap();
            let query = Message::parse(&buffer[..len]).unwrap();
            let mut answer = upstream_answer(&query, udp_count);
            answer.header.truncated = truncate;
            udp.send_to(&answer.encode().unwrap(), peer).await.unwrap();
        }
    });
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = tcp.accept().await.unwrap();
            let query = Message::parse(&read_framed(&mut stream).await).unwrap();
            let answer = upstream_answer(&query, tcp_count);
            write_framed(&mut stream, &answer.encode().unwrap()).await;
        }
    });
    address
}

#[tokio::test]
async fn answers_the_zone_over_udp_and_tcp() {
    let server = Running::start(Vec::new(), Duration::from_millis(200)).await;
    let question = query("kubernetes.default.svc.cluster.local.", RecordType::A, None);
    for answer in
        [ask_udp(server.address, &question).await, ask_tcp(server.address, &question).await]
    {
        assert_eq!(answer.header.rcode, Rcode::NOERROR);
        assert!(answer.header.authoritative);
        assert_eq!(addresses(&answer), ["10.43.0.1"]);
        assert!(answer.edns.is_none());
    }
    let missing = ask_udp(server.address, &query("nope.cluster.local.", RecordType::A, None)).await;
    assert_eq!(missing.header.rcode, Rcode::NXDOMAIN);
    assert_eq!(missing.authorities[0].record_type(), RecordType::SOA);

    // A new snapshot is served as soon as it is sent.
    server.records.send_replace(Arc::new(records(&[1, 2])));
    let big =
        ask_udp(server.address, &query("big.prod.svc.cluster.local.", RecordType::A, None)).await;
    assert_eq!(addresses(&big), ["10.42.1.1", "10.42.1.2"]);
    server.shutdown().await;
}

#[tokio::test]
async fn truncates_udp_answers_to_the_clients_size() {
    let server = Running::start(Vec::new(), Duration::from_millis(200)).await;
    let all: Vec<u8> = (1..=100).collect();
    server.records.send_replace(Arc::new(records(&all)));
    let name = "big.prod.svc.cluster.local.";

    // Without EDNS an answer must fit 512 bytes: 100 A records do not.
    let classic = ask_udp(server.address, &query(name, RecordType::A, None)).await;
    assert!(classic.header.truncated);
    assert!(classic.answers.is_empty());
    assert!(classic.edns.is_none());

    // With EDNS and a 4096-byte payload they fit, and the answer carries an OPT record.
    let edns = ask_udp(server.address, &query(name, RecordType::A, Some(4096))).await;
    assert!(!edns.header.truncated);
    assert_eq!(edns.answers.len(), 100);
    assert_eq!(edns.edns.map(|e| e.payload), Some(1232));

    // A truncated answer keeps its OPT record; TCP carries the whole answer.
    let small = ask_udp(server.address, &query(name, RecordType::A, Some(600))).await;
    assert!(small.header.truncated && small.edns.is_some());
    let tcp = ask_tcp(server.address, &query(name, RecordType::A, None)).await;
    assert_eq!(tcp.answers.len(), 100);
    server.shutdown().await;
}

#[tokio::test]
async fn forwards_other_names() {
    let upstream = fake_upstream(2, false, 0).await;
    let server = Running::start(vec![upstream], Duration::from_secs(2)).await;
    let question = query("example.com.", RecordType::A, None);
    for answer in
        [ask_udp(server.address, &question).await, ask_tcp(server.address, &question).await]
    {
        assert_eq!(answer.header.rcode, Rcode::NOERROR);
        assert!(!answer.header.authoritative);
        assert_eq!(addresses(&answer), ["192.0.2.0", "192.0.2.1"]);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn retries_truncated_upstream_answers_over_tcp() {
    let upstream = fake_upstream(0, true, 3).await;
    let server = Running::start(vec![upstream], Duration::from_secs(2)).await;
    let answer = ask_udp(server.address, &query("example.com.", RecordType::A, None)).await;
    assert!(!answer.header.truncated);
    assert_eq!(addresses(&answer), ["192.0.2.0", "192.0.2.1", "192.0.2.2"]);

    // When the full answer does not fit the client's size, the client gets TC in turn.
    let big = fake_upstream(0, true, 60).await;
    let server_big = Running::start(vec![big], Duration::from_secs(2)).await;
    let answer = ask_udp(server_big.address, &query("example.com.", RecordType::A, None)).await;
    assert!(answer.header.truncated);
    let answer = ask_tcp(server_big.address, &query("example.com.", RecordType::A, None)).await;
    assert_eq!(answer.answers.len(), 60);
    server.shutdown().await;
    server_big.shutdown().await;
}

#[tokio::test]
async fn silent_upstreams_give_servfail() {
    // A bound socket that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server =
        Running::start(vec![silent.local_addr().unwrap()], Duration::from_millis(200)).await;
    let answer = ask_udp(server.address, &query("example.com.", RecordType::A, None)).await;
    assert_eq!(answer.header.rcode, Rcode::SERVFAIL);
    assert_eq!(answer.questions, query("example.com.", RecordType::A, None).questions);

    // A silent first upstream is skipped for the next one.
    let working = fake_upstream(1, false, 0).await;
    let fallback =
        Running::start(vec![silent.local_addr().unwrap(), working], Duration::from_millis(200))
            .await;
    let answer = ask_udp(fallback.address, &query("example.com.", RecordType::A, None)).await;
    assert_eq!(addresses(&answer), ["192.0.2.0"]);
    server.shutdown().await;
    fallback.shutdown().await;
}

#[tokio::test]
async fn external_names_are_completed_upstream() {
    let upstream = fake_upstream(1, false, 0).await;
    let server = Running::start(vec![upstream], Duration::from_secs(2)).await;
    let service: Service = serde_json::from_value(json!({
        "metadata": {"namespace": "prod", "name": "ext"},
        "spec": {"type": "ExternalName", "externalName": "example.com"}}))
    .unwrap();
    server.records.send_replace(Arc::new(Records::build("cluster.local", 5, [&service], [])));
    let answer =
        ask_udp(server.address, &query("ext.prod.svc.cluster.local.", RecordType::A, None)).await;
    assert_eq!(addresses(&answer), ["example.com.", "192.0.2.0"]);
    server.shutdown().await;
}

#[tokio::test]
async fn stops_and_releases_the_port() {
    let server = Running::start(Vec::new(), Duration::from_millis(200)).await;
    let address = server.address;
    server.shutdown().await;
    // Both sockets are closed: the same port binds again.
    let rebound = Server::bind(&[address]).await.unwrap();
    assert_eq!(rebound.local_addrs(), [address]);
}
