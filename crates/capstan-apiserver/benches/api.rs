//! `cargo xtask bench api`: Capstan's API server over HTTPS, on the embedded datastore and on
//! a real etcd (Debian's etcd-server, one member), the same workloads side by side in one run.
//!
//! Both servers run in this process on a runtime of their own (two worker threads); the
//! clients run on a second runtime, so that the load generator is not scheduled among the
//! server's tasks. Every client is one HTTP/1.1 keep-alive connection over TLS 1.3, opened
//! before its workload's clock starts and authenticated with the admin client certificate.
//! The objects are ConfigMaps of about 200 bytes of data.
//!
//! Workloads, each with 1, 16 and 64 concurrent clients, closed loop (a client sends its next
//! request when the previous one is answered):
//! - create: POST of a new ConfigMap;
//! - get: GET of one of 1,000 existing ConfigMaps by name;
//! - list: GET of a namespace's 1,000 ConfigMaps;
//! - watch: that many watchers (`?watch=1&resourceVersion=N`) on one namespace's ConfigMaps
//!   while one client creates 50 ConfigMaps a second; latency is from just before the create
//!   is sent to a watcher reading its ADDED event, over every (event, watcher) pair.
//!
//! Then the two targets: creates paced open loop at 500 a second (latency from each create's
//! scheduled send time, so that a slow server cannot hide its queue by slowing the sender:
//! p99 <= 25 ms), and watch fan-out to 100 watchers at 50 creates a second (p99 <= 50 ms).
//!
//! Each workload runs on the embedded datastore and then on etcd before the next begins, so
//! that drift in the shared machine falls on both alike. Closed-loop creates run last (see
//! `run`). Client and servers share the machine's cores, as do etcd and its client.
//!
//! Settings come from the environment: `CAPSTAN_BENCH_SECS` (seconds per workload,
//! concurrency and datastore, default 5), `CAPSTAN_BENCH_DIR` (where the certificates and
//! both datastores keep their data, default `/var/tmp`: a real disk, not tmpfs, or fsync
//! costs nothing). Everything is removed, and etcd killed, at the end.

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use capstan_apiserver::{ApiServer, ApiServerConfig, ServingNames, TlsMaterial};
use capstan_store::DatastoreEndpoint;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

/// Concurrent clients of the closed-loop workloads.
const CONCURRENCY: [usize; 3] = [1, 16, 64];
/// Bytes of data in every ConfigMap.
const PAYLOAD_BYTES: usize = 200;
/// ConfigMaps in the namespace that get and list read.
const LIST_OBJECTS: usize = 1000;
/// Creates a second while watchers are measured.
const WATCH_CREATES_PER_SEC: u32 = 50;
/// The fan-out target: this many watchers, delivery p99 at most this.
const FANOUT_WATCHERS: usize = 100;
const FANOUT_P99_TARGET: Duration = Duration::from_millis(50);
/// The mutating target: creates paced at this rate, p99 at most this.
const PACED_CREATES_PER_SEC: u32 = 500;
const PACED_P99_TARGET: Duration = Duration::from_millis(25);
/// Connections the paced creates are spread over: each sends every 128 ms at 500/s, so a
/// connection is free again long before its next turn unless the server is far behind.
const PACED_CONNECTIONS: usize = 64;
/// How long the bench waits for stragglers (watch events, paced creates) before failing.
const PATIENCE: Duration = Duration::from_secs(60);

/// The namespaces the bench creates, one per workload so that lists and watches see only
/// what they are meant to.
const CREATE_NAMESPACE: &str = "bench-create";
const LIST_NAMESPACE: &str = "bench-list";
const WATCH_NAMESPACE: &str = "bench-watch";
const PACED_NAMESPACE: &str = "bench-paced";

/// The datastores, in the order of the table's columns.
const DATASTORES: [&str; 2] = ["embedded", "etcd"];

/// One measured workload on one datastore.
#[derive(Debug, Clone, Copy)]
struct Figures {
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

/// Watch delivery: latency from the create's send, and from its response.
#[derive(Debug, Clone, Copy)]
struct Delivery {
    from_send: Figures,
    from_response: Figures,
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; nothing else is expected.
    let seconds: u64 =
        std::env::var("CAPSTAN_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let run_for = Duration::from_secs(seconds.max(1));
    let base = std::env::var_os("CAPSTAN_BENCH_DIR")
        .map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from);
    // Declared first, dropped last: the directory outlives etcd and both servers.
    let dir = tempfile::Builder::new().prefix("capstan-bench-api-").tempdir_in(&base)?;
    let etcd = capstan_testkit::EtcdServer::start_in(dir.path())?;
    let tls =
        capstan_apiserver::ensure_tls(&dir.path().join("tls"), &ServingNames::standard(None, &[]))?;
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("apiserver")
        .enable_all()
        .build()?;
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-client")
        .enable_all()
        .build()?;
    let endpoints = [
        DatastoreEndpoint::Sqlite(dir.path().join("state.db")),
        DatastoreEndpoint::Etcd(vec![etcd.client_url()]),
    ];
    let mut servers = Vec::new();
    for endpoint in &endpoints {
        let server = server_runtime
            .block_on(start_server(endpoint, &tls))
            .with_context(|| format!("starting the API server on {endpoint:?}"))?;
        servers.push(server);
    }
    let clients = servers
        .iter()
        .map(|server| Client::new(server.local_addr(), &tls))
        .collect::<Result<Vec<_>>>()?;
    eprintln!(
        "capstan API server benchmark: data in {}, {}s per workload, etcd 3.4 pid {}, \
         HTTP/1.1 over TLS, one connection per client",
        dir.path().display(),
        run_for.as_secs(),
        etcd.pid()
    );
    // Interrupted, the bench still cleans up: etcd is killed and the directory removed.
    let outcome = client_runtime.block_on(async {
        tokio::select! {
            outcome = run(&clients, run_for) => outcome,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    // Stop serving before the datastores go: the servers' tasks die with their runtime.
    drop(servers);
    client_runtime.shutdown_timeout(Duration::from_secs(5));
    server_runtime.shutdown_timeout(Duration::from_secs(5));
    drop(etcd);
    dir.close()?;
    outcome
}

async fn start_server(endpoint: &DatastoreEndpoint, tls: &TlsMaterial) -> Result<ApiServer> {
    let store = capstan_store::open(endpoint, "/registry").await?;
    let config = ApiServerConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), tls.clone(), store);
    Ok(ApiServer::start(config).await?)
}

async fn run(clients: &[Client], run_for: Duration) -> Result<()> {
    for (name, client) in DATASTORES.iter().zip(clients) {
        eprintln!("  {name}: namespaces and {LIST_OBJECTS} ConfigMaps to read ...");
        let list_bytes = prepare(client).await.with_context(|| format!("{name}: preparing"))?;
        eprintln!("    a list of them is {} KiB of JSON", list_bytes / 1024);
    }
    // Closed-loop creates run last, though shown first: the faster datastore ends them
    // holding more objects, and every other workload should meet both at the same size.
    let mut rows = Vec::new();
    for workload in [Workload::Get, Workload::List] {
        rows.extend(closed_loop_rows(clients, workload, run_for).await?);
    }
    for watchers in CONCURRENCY {
        let label =
            format!("watch delivery, {watchers} watcher(s) ({WATCH_CREATES_PER_SEC} creates/s)");
        let mut figures = Vec::new();
        for (name, client) in DATASTORES.iter().zip(clients) {
            eprintln!("  {label}, {name} ...");
            let measured = watch_delivery(client, watchers, run_for)
                .await
                .with_context(|| format!("{name}: {label}"))?;
            eprintln!("    {}", show_delivery(&measured));
            figures.push(measured.from_send);
        }
        rows.push((label, figures));
    }

    let mut paced = Vec::new();
    for (name, client) in DATASTORES.iter().zip(clients) {
        eprintln!("  paced creates, {PACED_CREATES_PER_SEC}/s open loop, {name} ...");
        let measured =
            paced_creates(client, run_for).await.with_context(|| format!("{name}: paced"))?;
        eprintln!("    {}", show(&measured));
        paced.push(measured);
    }
    rows.push((format!("paced creates, {PACED_CREATES_PER_SEC}/s open loop"), paced.clone()));

    let mut fanout = Vec::new();
    for (name, client) in DATASTORES.iter().zip(clients) {
        eprintln!("  watch fan-out, {FANOUT_WATCHERS} watchers, {name} ...");
        let measured = watch_delivery(client, FANOUT_WATCHERS, run_for)
            .await
            .with_context(|| format!("{name}: fan-out"))?;
        eprintln!("    {}", show_delivery(&measured));
        fanout.push(measured);
    }
    rows.push((
        format!("watch fan-out, {FANOUT_WATCHERS} watchers ({WATCH_CREATES_PER_SEC} creates/s)"),
        fanout.iter().map(|delivery| delivery.from_send).collect(),
    ));

    let mut table = closed_loop_rows(clients, Workload::Create, run_for).await?;
    table.extend(rows);
    print_table(&table);
    print_targets(&paced, &fanout);
    Ok(())
}

/// One closed-loop workload at each concurrency, on both datastores: the table's rows.
async fn closed_loop_rows(
    clients: &[Client],
    workload: Workload,
    run_for: Duration,
) -> Result<Vec<(String, Vec<Figures>)>> {
    let mut rows = Vec::new();
    for clients_count in CONCURRENCY {
        let label = format!("{}, {clients_count} client(s)", workload.describe());
        let mut figures = Vec::new();
        for (name, client) in DATASTORES.iter().zip(clients) {
            eprintln!("  {label}, {name} ...");
            let measured = closed_loop(client, workload, clients_count, run_for)
                .await
                .with_context(|| format!("{name}: {label}"))?;
            eprintln!("    {}", show(&measured));
            figures.push(measured);
        }
        rows.push((label, figures));
    }
    Ok(rows)
}

/// The namespaces, and the ConfigMaps that get and list read; returns the size of the list.
async fn prepare(client: &Client) -> Result<usize> {
    let mut connection = client.connect().await?;
    for namespace in [CREATE_NAMESPACE, LIST_NAMESPACE, WATCH_NAMESPACE, PACED_NAMESPACE] {
        let body = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": namespace },
        });
        connection
            .call(Method::POST, "/api/v1/namespaces", Some(body), StatusCode::CREATED)
            .await
            .with_context(|| format!("creating namespace {namespace}"))?;
    }
    // Sixteen connections fill the list namespace in a fraction of the time one would take.
    let fillers: Vec<_> = (0..16)
        .map(|filler| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut connection = client.connect().await?;
                for index in (filler..LIST_OBJECTS).step_by(16) {
                    connection.create(LIST_NAMESPACE, &list_object(index)).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for filler in fillers {
        filler.await??;
    }
    let path = format!("/api/v1/namespaces/{LIST_NAMESPACE}/configmaps");
    let body = connection.send(Method::GET, &path, None, StatusCode::OK).await?;
    let list: Value = serde_json::from_slice(&body)?;
    let items = list["items"].as_array().map_or(0, Vec::len);
    ensure!(items == LIST_OBJECTS, "the list namespace holds {items} ConfigMaps");
    Ok(body.len())
}

fn list_object(index: usize) -> String {
    format!("object-{index:05}")
}

/// A closed-loop workload: each client sends its next request when the last is answered.
#[derive(Debug, Clone, Copy)]
enum Workload {
    Create,
    Get,
    List,
}

impl Workload {
    fn describe(self) -> String {
        match self {
            Workload::Create => "create".into(),
            Workload::Get => "get by name".into(),
            Workload::List => format!("list of {LIST_OBJECTS}"),
        }
    }
}

async fn closed_loop(
    client: &Client,
    workload: Workload,
    clients_count: usize,
    run_for: Duration,
) -> Result<Figures> {
    let run_id = fastrand::u32(..);
    let mut connections = Vec::with_capacity(clients_count);
    for _ in 0..clients_count {
        connections.push(client.connect().await?);
    }
    let started = Instant::now();
    let tasks: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(worker, mut connection)| {
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut sequence = 0usize;
                while started.elapsed() < run_for {
                    let begin = Instant::now();
                    match workload {
                        Workload::Create => {
                            let name = format!("c{run_id:08x}-{clients_count}-{worker}-{sequence}");
                            connection.create(CREATE_NAMESPACE, &name).await?;
                        }
                        Workload::Get => {
                            let name = list_object(fastrand::usize(..LIST_OBJECTS));
                            let path =
                                format!("/api/v1/namespaces/{LIST_NAMESPACE}/configmaps/{name}");
                            connection.send(Method::GET, &path, None, StatusCode::OK).await?;
                        }
                        Workload::List => {
                            // Not parsed: the client's CPU is the server's too. `prepare`
                            // checked the count once.
                            let path = format!("/api/v1/namespaces/{LIST_NAMESPACE}/configmaps");
                            let body =
                                connection.send(Method::GET, &path, None, StatusCode::OK).await?;
                            ensure!(
                                body.len() > LIST_OBJECTS * PAYLOAD_BYTES,
                                "a list of {} bytes",
                                body.len()
                            );
                        }
                    }
                    latencies.push(begin.elapsed());
                    sequence += 1;
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(summarize(latencies, started.elapsed()))
}

/// Creates at a fixed rate regardless of how fast they are answered (open loop). Create `i`
/// is due at `start + i / rate` and goes out on connection `i mod PACED_CONNECTIONS`; its
/// latency counts from when it was due, so time spent waiting for a busy connection counts
/// too. "ops/s" is the rate achieved: creates over the time until the last was answered.
async fn paced_creates(client: &Client, run_for: Duration) -> Result<Figures> {
    let total = (f64::from(PACED_CREATES_PER_SEC) * run_for.as_secs_f64()).round() as usize;
    let interval = Duration::from_secs(1) / PACED_CREATES_PER_SEC;
    let run_id = fastrand::u32(..);
    let mut connections = Vec::with_capacity(PACED_CONNECTIONS);
    for _ in 0..PACED_CONNECTIONS {
        connections.push(client.connect().await?);
    }
    let start = Instant::now() + Duration::from_millis(100);
    let tasks: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(lane, mut connection)| {
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for index in (lane..total).step_by(PACED_CONNECTIONS) {
                    let due = start + interval * u32::try_from(index)?;
                    tokio::time::sleep_until(due).await;
                    connection.create(PACED_NAMESPACE, &format!("p{run_id:08x}-{index}")).await?;
                    latencies.push(due.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(tokio::time::timeout(run_for + PATIENCE, task).await???);
    }
    Ok(summarize(latencies, start.elapsed()))
}

/// `watchers` watches of the watch namespace's ConfigMaps from its current resourceVersion;
/// one client creates ConfigMaps there at `WATCH_CREATES_PER_SEC` for `run_for`. Each
/// (event, watcher) pair is one delivery; "ops/s" is deliveries per second.
async fn watch_delivery(client: &Client, watchers: usize, run_for: Duration) -> Result<Delivery> {
    let creates =
        ((f64::from(WATCH_CREATES_PER_SEC) * run_for.as_secs_f64()).round() as usize).max(1);
    let run_id = fastrand::u32(..);
    let mut writer = client.connect().await?;
    let list = writer
        .call(
            Method::GET,
            &format!("/api/v1/namespaces/{WATCH_NAMESPACE}/configmaps?limit=1"),
            None,
            StatusCode::OK,
        )
        .await?;
    let revision = list["metadata"]["resourceVersion"]
        .as_str()
        .context("the list has no resourceVersion")?
        .to_owned();
    let path = format!(
        "/api/v1/namespaces/{WATCH_NAMESPACE}/configmaps?watch=1&resourceVersion={revision}"
    );
    // Every watch has its response headers, so is registered, before the first create.
    let mut receivers = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let mut connection = client.connect().await?;
        let body = connection.watch(&path).await?;
        receivers.push(tokio::spawn(async move {
            let received = receive_added(body, creates).await;
            drop(connection);
            received
        }));
    }

    let mut sent: HashMap<String, (Instant, Instant)> = HashMap::with_capacity(creates);
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / WATCH_CREATES_PER_SEC);
    for index in 0..creates {
        ticks.tick().await;
        let name = format!("w{run_id:08x}-{watchers}-{index}");
        let begin = Instant::now();
        writer.create(WATCH_NAMESPACE, &name).await?;
        sent.insert(name, (begin, Instant::now()));
    }
    let mut from_send = Vec::with_capacity(creates * watchers);
    let mut from_response = Vec::with_capacity(creates * watchers);
    for receiver in receivers {
        for (name, at) in tokio::time::timeout(PATIENCE, receiver).await??? {
            let (begin, answered) =
                sent.get(&name).with_context(|| format!("an event for {name}, never created"))?;
            from_send.push(at.duration_since(*begin));
            // An event may arrive before the create's response does: that counts as zero.
            from_response.push(at.saturating_duration_since(*answered));
        }
    }
    let elapsed = started.elapsed();
    Ok(Delivery {
        from_send: summarize(from_send, elapsed),
        from_response: summarize(from_response, elapsed),
    })
}

/// Reads a watch stream (one JSON WatchEvent per line) until `expected` ADDED events have
/// arrived; returns each object's name and when the chunk completing its event was read.
async fn receive_added(mut body: Incoming, expected: usize) -> Result<Vec<(String, Instant)>> {
    let mut received = Vec::with_capacity(expected);
    let mut buffer: Vec<u8> = Vec::new();
    while received.len() < expected {
        let frame = body.frame().await.context("the watch ended early")??;
        let now = Instant::now();
        let Ok(data) = frame.into_data() else { continue };
        buffer.extend_from_slice(&data);
        while let Some(end) = buffer.iter().position(|byte| *byte == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            if line.trim_ascii().is_empty() {
                continue;
            }
            let event: Value = serde_json::from_slice(&line).context("a watch event")?;
            match event["type"].as_str() {
                Some("ADDED") => {
                    let name = event["object"]["metadata"]["name"]
                        .as_str()
                        .context("an ADDED event without a name")?;
                    received.push((name.to_owned(), now));
                }
                Some("ERROR") => bail!("the watch failed: {}", event["object"]),
                _ => {}
            }
        }
    }
    Ok(received)
}

/// How the bench reaches one API server: its address and a TLS client configuration that
/// trusts the cluster CA and presents the admin certificate.
#[derive(Clone)]
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

    /// A new keep-alive connection: TCP, the TLS handshake, HTTP/1.1.
    async fn connect(&self) -> Result<Connection> {
        let tcp = TcpStream::connect(self.address).await?;
        tcp.set_nodelay(true)?;
        let tls = self.connector.connect(ServerName::from(self.address.ip()), tcp).await?;
        let (sender, connection) = http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the server hangs up; either is fine here.
            let _ = connection.await;
        });
        Ok(Connection { sender, host: self.address.to_string() })
    }
}

/// One HTTP/1.1 connection: one request at a time.
struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl Connection {
    async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Response<Incoming>> {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.host)
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body.unwrap_or_default()))?;
        self.sender.ready().await?;
        Ok(self.sender.send_request(request).await?)
    }

    /// Sends a request and reads the whole response, which must have status `expected`.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        expected: StatusCode,
    ) -> Result<Bytes> {
        let response = self.request(method.clone(), path, body).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        ensure!(
            status == expected,
            "{method} {path}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(body)
    }

    /// Like `send`, with JSON both ways.
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Value>,
        expected: StatusCode,
    ) -> Result<Value> {
        let body = body.map(|value| serde_json::to_vec(&value)).transpose()?.map(Bytes::from);
        let response = self.send(method, path, body, expected).await?;
        Ok(serde_json::from_slice(&response)?)
    }

    /// Creates a ConfigMap with `PAYLOAD_BYTES` of data.
    async fn create(&mut self, namespace: &str, name: &str) -> Result<()> {
        let body = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": { "name": name },
            "data": { "payload": "x".repeat(PAYLOAD_BYTES) },
        });
        let path = format!("/api/v1/namespaces/{namespace}/configmaps");
        let body = Bytes::from(serde_json::to_vec(&body)?);
        self.send(Method::POST, &path, Some(body), StatusCode::CREATED).await?;
        Ok(())
    }

    /// Opens a watch and returns its stream once the response headers are in.
    async fn watch(&mut self, path: &str) -> Result<Incoming> {
        let response = self.request(Method::GET, path, None).await?;
        let status = response.status();
        if status != StatusCode::OK {
            let body = response.into_body().collect().await?.to_bytes();
            bail!("GET {path}: {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(response.into_body())
    }
}

fn summarize(mut latencies: Vec<Duration>, elapsed: Duration) -> Figures {
    latencies.sort_unstable();
    let percentile = |fraction: f64| {
        let rank = (latencies.len() as f64 * fraction).ceil() as usize;
        latencies.get(rank.clamp(1, latencies.len().max(1)) - 1).copied().unwrap_or_default()
    };
    Figures {
        ops_per_sec: latencies.len() as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE),
        p50: percentile(0.50),
        p99: percentile(0.99),
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

fn show(figures: &Figures) -> String {
    format!("{:.0} ops/s, p50 {}, p99 {}", figures.ops_per_sec, ms(figures.p50), ms(figures.p99))
}

fn show_delivery(delivery: &Delivery) -> String {
    format!(
        "{} (from the create's response: p50 {}, p99 {})",
        show(&delivery.from_send),
        ms(delivery.from_response.p50),
        ms(delivery.from_response.p99)
    )
}

fn print_table(rows: &[(String, Vec<Figures>)]) {
    println!();
    println!(
        "| workload | embedded ops/s | embedded p50 | embedded p99 | etcd ops/s | etcd p50 | etcd p99 | ops/s embedded/etcd | p99 embedded/etcd |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, figures) in rows {
        let [embedded, etcd] = [figures[0], figures[1]];
        println!(
            "| {name} | {:.0} | {} | {} | {:.0} | {} | {} | {:.2}x | {:.2}x |",
            embedded.ops_per_sec,
            ms(embedded.p50),
            ms(embedded.p99),
            etcd.ops_per_sec,
            ms(etcd.p50),
            ms(etcd.p99),
            embedded.ops_per_sec / etcd.ops_per_sec.max(f64::MIN_POSITIVE),
            embedded.p99.as_secs_f64() / etcd.p99.as_secs_f64().max(f64::MIN_POSITIVE),
        );
    }
    println!();
}

/// The acceptance targets, per datastore. Paced creates pass when p99 is within the
/// target and the achieved rate is at least 95% of the offered one.
fn print_targets(paced: &[Figures], fanout: &[Delivery]) {
    let verdict = |pass: bool| if pass { "PASS" } else { "FAIL" };
    for (name, figures) in DATASTORES.iter().zip(paced) {
        let pass = figures.p99 <= PACED_P99_TARGET
            && figures.ops_per_sec >= 0.95 * f64::from(PACED_CREATES_PER_SEC);
        println!(
            "target: create p99 <= {} at {PACED_CREATES_PER_SEC} creates/s, {name}: \
             achieved {:.0}/s, p50 {}, p99 {} -> {}",
            ms(PACED_P99_TARGET),
            figures.ops_per_sec,
            ms(figures.p50),
            ms(figures.p99),
            verdict(pass)
        );
    }
    for (name, delivery) in DATASTORES.iter().zip(fanout) {
        println!(
            "target: watch fan-out p99 <= {} to {FANOUT_WATCHERS} watchers, {name}: \
             from send p50 {}, p99 {} (from response p50 {}, p99 {}) -> {}",
            ms(FANOUT_P99_TARGET),
            ms(delivery.from_send.p50),
            ms(delivery.from_send.p99),
            ms(delivery.from_response.p50),
            ms(delivery.from_response.p99),
            verdict(delivery.from_send.p99 <= FANOUT_P99_TARGET)
        );
    }
}
