//! Service cluster IPs and node ports: allocated on create, honoured when requested,
//! refused when taken or out of range, released on delete and on type changes, and never
//! handed out twice, by a restarted server or by two servers sharing one datastore.

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use capstan_apiserver::{ApiServer, ApiServerConfig, ServingNames, TlsMaterial};
use capstan_store::{DatastoreEndpoint, Store};
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const PATIENCE: Duration = Duration::from_secs(10);
const SERVICES: &str = "/api/v1/namespaces/default/services";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_get_distinct_addresses_and_ports() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (tls, store) = tls_and_store(dir.path()).await?;
    let first = start(&store, &tls).await?;
    let client = Client::new(first.local_addr(), &tls)?;

    // The `kubernetes` Service has the first address, and it is marked.
    let (status, kubernetes) =
        client.call(Method::GET, &format!("{SERVICES}/kubernetes"), None).await?;
    ensure!(status == StatusCode::OK, "{kubernetes}");
    assert_eq!(kubernetes["spec"]["clusterIP"], "10.43.0.1");
    let (status, marker) =
        client.call(Method::GET, "/apis/networking.k8s.io/v1/ipaddresses/10.43.0.1", None).await?;
    assert_eq!(status, StatusCode::OK, "{marker}");
    assert_eq!(marker["spec"]["parentRef"]["name"], "kubernetes");

    // Without an address: distinct ones from the range, never the first.
    let mut seen = HashSet::new();
    for index in 0..5 {
        let service = client.create(cluster_ip(&format!("auto-{index}"), None)).await?;
        let ip: IpAddr = service["spec"]["clusterIP"].as_str().unwrap_or_default().parse()?;
        assert_eq!(service["spec"]["clusterIPs"], json!([ip.to_string()]));
        assert_eq!(service["spec"]["ipFamilies"], json!(["IPv4"]));
        assert_eq!(service["spec"]["ipFamilyPolicy"], "SingleStack");
        let IpAddr::V4(v4) = ip else { anyhow::bail!("{ip} is not IPv4") };
        assert_eq!(v4.octets()[..2], [10, 43], "{ip}");
        assert_ne!(ip.to_string(), "10.43.0.1");
        assert!(seen.insert(ip), "{ip} handed out twice");
    }

    // A requested address is honoured; the same one again is refused.
    let requested = client.create(cluster_ip("wanted", Some("10.43.0.5"))).await?;
    assert_eq!(requested["spec"]["clusterIPs"], json!(["10.43.0.5"]));
    let (status, refused) =
        client.call(Method::POST, SERVICES, Some(cluster_ip("again", Some("10.43.0.5")))).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["details"]["causes"][0]["field"], "spec.clusterIPs");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("failed to allocate IP 10.43.0.5: provided IP is already allocated"),
        "{message}"
    );
    let (status, refused) =
        client.call(Method::POST, SERVICES, Some(cluster_ip("outside", Some("10.44.0.5")))).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(
            "provided IP is not in the valid range. The range of valid IPs is 10.43.0.0/16"
        ),
        "{message}"
    );

    // Headless: nothing allocated.
    let mut headless = cluster_ip("headless", Some("None"));
    headless["spec"]["selector"] = json!({"app": "db"});
    let headless = client.create(headless).await?;
    assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));

    // Delete releases: the address can be requested again.
    let (status, body) = client.call(Method::DELETE, &format!("{SERVICES}/wanted"), None).await?;
    ensure!(status == StatusCode::OK, "{body}");
    let (status, _) =
        client.call(Method::GET, "/apis/networking.k8s.io/v1/ipaddresses/10.43.0.5", None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let again = client.create(cluster_ip("wanted-again", Some("10.43.0.5"))).await?;
    assert_eq!(again["spec"]["clusterIP"], "10.43.0.5");

    // NodePort: every port gets one, TCP and UDP of one number share it; a taken one is
    // refused.
    let node_port = json!({"metadata": {"name": "np"}, "spec": {"type": "NodePort", "selector": {"app": "web"},
        "ports": [{"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                  {"name": "dns-udp", "port": 53, "protocol": "UDP"},
                  {"name": "web", "port": 80, "protocol": "TCP", "nodePort": 30080}]}});
    let created = client.create(node_port).await?;
    let ports = &created["spec"]["ports"];
    let dns = ports[0]["nodePort"].as_i64().context("a node port")?;
    assert!((30000..=32767).contains(&dns), "{dns}");
    assert_eq!(ports[1]["nodePort"].as_i64(), Some(dns));
    assert_eq!(ports[2]["nodePort"], 30080);
    let taken = json!({"metadata": {"name": "np2"}, "spec": {"type": "NodePort",
        "ports": [{"port": 80, "nodePort": 30080}]}});
    let (status, refused) = client.call(Method::POST, SERVICES, Some(taken)).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["details"]["causes"][0]["field"], "spec.ports[0].nodePort");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("provided port is already allocated")
    );

    // NodePort → ClusterIP releases the node ports.
    let patch = json!({"spec": {"type": "ClusterIP"}});
    let (status, patched) = client.patch(&format!("{SERVICES}/np"), patch).await?;
    ensure!(status == StatusCode::OK, "{patched}");
    assert!(patched["spec"]["ports"][2].get("nodePort").is_none(), "{patched}");
    let reuse = json!({"metadata": {"name": "np3"}, "spec": {"type": "NodePort",
        "ports": [{"port": 80, "nodePort": 30080}]}});
    let reused = client.create(reuse).await?;
    assert_eq!(reused["spec"]["ports"][0]["nodePort"], 30080);
    // ... and ClusterIP → NodePort allocates them again.
    let (status, patched) =
        client.patch(&format!("{SERVICES}/np"), json!({"spec": {"type": "NodePort"}})).await?;
    ensure!(status == StatusCode::OK, "{patched}");
    assert!(patched["spec"]["ports"][0]["nodePort"].as_i64().is_some(), "{patched}");

    // A second server on the same datastore, and the first one gone: what it allocates is
    // never what the others hold.
    let second = start(&store, &tls).await?;
    drop(first);
    let client = Client::new(second.local_addr(), &tls)?;
    let (status, refused) =
        client.call(Method::POST, SERVICES, Some(cluster_ip("dup", Some("10.43.0.5")))).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let (_, list) = client.call(Method::GET, SERVICES, None).await?;
    let mut held: HashSet<String> = HashSet::new();
    let items = list["items"].as_array().cloned().unwrap_or_default();
    for item in &items {
        let ip = item["spec"]["clusterIP"].as_str().unwrap_or_default().to_owned();
        if ip != "None" {
            assert!(held.insert(ip.clone()), "{ip} held twice");
        }
    }
    for index in 0..5 {
        let service = client.create(cluster_ip(&format!("after-{index}"), None)).await?;
        let ip = service["spec"]["clusterIP"].as_str().unwrap_or_default().to_owned();
        assert!(held.insert(ip.clone()), "{ip} handed out twice after a restart");
    }
    let (status, refused) = client
        .call(
            Method::POST,
            SERVICES,
            Some(json!({"metadata": {"name": "np4"},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}})),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    drop(second);
    Ok(())
}

/// `--service-node-port-range` is the one range: ports inside it are taken, ports outside
/// are refused naming it, even the default range's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_node_port_range_is_the_range() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (tls, store) = tls_and_store(dir.path()).await?;
    let server = start_with_node_ports(&store, &tls, (20000, 20010)).await?;
    let client = Client::new(server.local_addr(), &tls)?;
    let node_port = |name: &str, port: Option<u16>| {
        let mut spec_port = json!({"port": 80});
        if let Some(port) = port {
            spec_port["nodePort"] = json!(port);
        }
        json!({"metadata": {"name": name}, "spec": {"type": "NodePort", "ports": [spec_port]}})
    };
    let auto = client.create(node_port("auto", None)).await?;
    let port = auto["spec"]["ports"][0]["nodePort"].as_i64().context("a node port")?;
    assert!((20000..=20010).contains(&port), "{port}");
    let wanted = client.create(node_port("wanted", Some(20005))).await?;
    assert_eq!(wanted["spec"]["ports"][0]["nodePort"], 20005);
    let (status, refused) =
        client.call(Method::POST, SERVICES, Some(node_port("default", Some(30080)))).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["details"]["causes"][0]["field"], "spec.ports[0].nodePort");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(message.contains("The range of valid ports is 20000-20010"), "{message}");
    drop(server);
    Ok(())
}

/// The serving certificates and an embedded datastore, both under `dir`.
async fn tls_and_store(dir: &std::path::Path) -> Result<(TlsMaterial, Arc<dyn Store>)> {
    let tls = capstan_apiserver::ensure_tls(&dir.join("tls"), &ServingNames::standard(None, &[]))?;
    let store =
        capstan_store::open(&DatastoreEndpoint::Sqlite(dir.join("state.db")), "/registry").await?;
    Ok((tls, store))
}

async fn start(store: &Arc<dyn Store>, tls: &TlsMaterial) -> Result<ApiServer> {
    start_with_node_ports(store, tls, capstan_apiserver::DEFAULT_NODE_PORT_RANGE).await
}

async fn start_with_node_ports(
    store: &Arc<dyn Store>,
    tls: &TlsMaterial,
    node_port_range: (u16, u16),
) -> Result<ApiServer> {
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = ApiServerConfig::new(listen, tls.clone(), Arc::clone(store));
    config.node_port_range = node_port_range;
    Ok(ApiServer::start(config).await?)
}

fn cluster_ip(name: &str, ip: Option<&str>) -> Value {
    let mut service = json!({"metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "protocol": "TCP"}]}});
    if let Some(ip) = ip {
        service["spec"]["clusterIP"] = json!(ip);
    }
    service
}

/// An HTTPS client with the admin certificate, one connection per request.
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
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        Ok(Client { address, connector: TlsConnector::from(Arc::new(config)) })
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        media: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let tcp = TcpStream::connect(self.address).await?;
        let tls = self.connector.connect(ServerName::from(self.address.ip()), tcp).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.address.to_string())
            .header(CONTENT_TYPE, media)
            .body(Full::new(body))?;
        let response = tokio::time::timeout(PATIENCE, sender.send_request(request)).await??;
        let status = response.status();
        let bytes =
            tokio::time::timeout(PATIENCE, response.into_body().collect()).await??.to_bytes();
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        self.request(method, path, "application/json", body).await
    }

    async fn patch(&self, path: &str, patch: Value) -> Result<(StatusCode, Value)> {
        self.request(Method::PATCH, path, "application/merge-patch+json", Some(patch)).await
    }

    async fn create(&self, service: Value) -> Result<Value> {
        let (status, body) = self.call(Method::POST, SERVICES, Some(service)).await?;
        ensure!(status == StatusCode::CREATED, "creating a Service: {status} {body}");
        Ok(body)
    }
}
