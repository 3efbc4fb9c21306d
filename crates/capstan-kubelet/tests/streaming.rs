//! The kubelet API against a real containerd: logs, exec over WebSocket v5 (translated to
//! containerd's SPDY streaming server), port-forward over plain WebSocket channels, and the
//! 401 for a client without a certificate. Needs root and containerd.

// The helpers below are test code too: a failed step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use capstan_kubelet::containerd::{Containerd, ContainerdConfig, ContainerdPaths};
use capstan_kubelet::image_archive::{self, BUSYBOX_IMAGE, PAUSE_IMAGE};
use capstan_kubelet::runtime::cri_api::*;
use capstan_kubelet::runtime::{CriRuntime, Runtime};
use capstan_kubelet::server::{KubeletServerConfig, serve};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

const NAMESPACE: &str = "default";
const POD: &str = "streamer";
const WEB_PORT: u16 = 38517;

struct Client {
    tls: Arc<rustls::ClientConfig>,
    address: SocketAddr,
}

impl Client {
    async fn connect(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(self.address).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls));
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap()
    }

    /// A plain GET: status and body.
    async fn get(&self, path: &str) -> (u16, String) {
        let io = TokioIo::new(self.connect().await);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        let request = http::Request::get(path)
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// A WebSocket upgrade with one sub-protocol.
    async fn websocket(
        &self,
        path: &str,
        protocol: &str,
    ) -> WebSocketStream<TokioIo<hyper::upgrade::Upgraded>> {
        let io = TokioIo::new(self.connect().await);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(connection.with_upgrades());
        let request = http::Request::get(path)
            .header("host", "localhost")
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-protocol", protocol)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status().as_u16(), 101, "upgrade of {path}");
        assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
        let upgraded = hyper::upgrade::on(response).await.unwrap();
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await
    }
}

fn tls_client(ca_pem: &str, identity: Option<(String, String)>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// A cluster CA and an admin client certificate it signed.
fn cluster_ca() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.distinguished_name.push(DnType::CommonName, "test-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let client_key = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(Vec::new()).unwrap();
    client.distinguished_name.push(DnType::CommonName, "admin");
    client.distinguished_name.push(DnType::OrganizationName, "system:masters");
    client.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client_pem = client.signed_by(&client_key, &issuer).unwrap().pem();
    (ca_pem, client_pem, client_key.serialize_pem())
}

fn labels(container: Option<&str>) -> HashMap<String, String> {
    let mut labels = HashMap::from([
        ("io.kubernetes.pod.namespace".to_owned(), NAMESPACE.to_owned()),
        ("io.kubernetes.pod.name".to_owned(), POD.to_owned()),
        ("io.kubernetes.pod.uid".to_owned(), "uid-1".to_owned()),
    ]);
    if let Some(container) = container {
        labels.insert("io.kubernetes.container.name".to_owned(), container.to_owned());
    }
    labels
}

async fn import_images(runtime: &CriRuntime, socket: &Path, dir: &Path) {
    for image in [
        image_archive::busybox_image(BUSYBOX_IMAGE).unwrap(),
        image_archive::pause_image(PAUSE_IMAGE).unwrap(),
    ] {
        let archive = dir.join(format!("{}.tar", image.name.replace(['/', ':'], "_")));
        image_archive::write_oci_archive(&image, &archive).unwrap();
        image_archive::import(socket, &archive).await.unwrap();
        std::fs::remove_file(&archive).unwrap();
        // The CRI plugin learns of imported images from containerd's events.
        let mut known = false;
        for _ in 0..100 {
            if runtime.image_status(&image.name).await.unwrap().is_some() {
                known = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(known, "{} was imported", image.name);
    }
}

async fn start_container(
    runtime: &CriRuntime,
    sandbox_id: &str,
    sandbox: &PodSandboxConfig,
    name: &str,
    script: &str,
) -> String {
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata { name: name.into(), attempt: 0 }),
        image: Some(ImageSpec { image: BUSYBOX_IMAGE.into(), ..Default::default() }),
        command: vec!["sh".into(), "-c".into(), script.into()],
        log_path: format!("{name}/0.log"),
        labels: labels(Some(name)),
        ..Default::default()
    };
    let id = runtime.create_container(sandbox_id, config, sandbox.clone()).await.unwrap();
    runtime.start_container(&id).await.unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_exec_and_port_forward_through_containerd() {
    let dir = tempfile::tempdir().unwrap();
    let paths = ContainerdPaths::new(dir.path());
    let containerd = Containerd::start(&ContainerdConfig {
        paths: paths.clone(),
        sandbox_image: PAUSE_IMAGE.into(),
        cni_bin_dir: "/usr/lib/cni".into(),
        stream_address: "127.0.0.1".into(),
        registry_auth: Vec::new(),
    })
    .await
    .unwrap();
    let runtime = CriRuntime::connect(containerd.socket()).await.unwrap();
    import_images(&runtime, containerd.socket(), dir.path()).await;

    let log_directory = dir.path().join("pods/streamer");
    let sandbox = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: POD.into(),
            uid: "uid-1".into(),
            namespace: NAMESPACE.into(),
            attempt: 0,
        }),
        log_directory: log_directory.display().to_string(),
        labels: labels(None),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let sandbox_id = runtime.run_pod_sandbox(sandbox.clone(), String::new()).await.unwrap();
    let main =
        start_container(&runtime, &sandbox_id, &sandbox, "main", "echo hello; sleep 1000").await;
    let web = start_container(
        &runtime,
        &sandbox_id,
        &sandbox,
        "web",
        &format!("echo pong > /tmp/index.html; exec httpd -f -p 127.0.0.1:{WEB_PORT} -h /tmp"),
    )
    .await;

    let (ca_pem, client_cert, client_key) = cluster_ca();
    let tls_dir = dir.path().join("agent/tls");
    let (stop_sender, stop) = tokio::sync::watch::channel(false);
    let shared: Arc<dyn Runtime> = Arc::new(runtime.clone());
    let (address, server) = serve(
        KubeletServerConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            tls_dir: tls_dir.clone(),
            client_ca_pem: ca_pem,
            node_name: "node-a".into(),
            node_ips: vec!["127.0.0.1".parse().unwrap()],
        },
        shared,
        stop,
    )
    .await
    .unwrap();
    let serving_pem = std::fs::read_to_string(tls_dir.join("kubelet.crt")).unwrap();
    let client = Client { tls: tls_client(&serving_pem, Some((client_cert, client_key))), address };
    let anonymous = Client { tls: tls_client(&serving_pem, None), address };

    // The checks run in a task of their own so that a failed one still lets the cleanup
    // below run.
    let checks = tokio::spawn(async move {
        // No certificate: 401 with a Status.
        let (code, body) = anonymous.get("/healthz").await;
        assert_eq!(code, 401, "{body}");
        assert!(body.contains("\"reason\":\"Unauthorized\""), "{body}");
        assert_eq!(client.get("/healthz").await, (200, "ok".to_owned()));

        // Logs (the container may need a moment to write).
        let mut logs = String::new();
        for _ in 0..50 {
            let (code, body) = client.get("/containerLogs/default/streamer/main").await;
            assert_eq!(code, 200, "{body}");
            logs = body;
            if logs.contains("hello") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(logs, "hello\n");
        let (code, body) = client.get("/containerLogs/default/streamer/main?timestamps=true").await;
        assert_eq!(code, 200);
        assert!(body.ends_with(" hello\n") && body.len() > 20, "{body}");
        // Following a running container's log: the existing lines come at once and the
        // response stays open.
        let io = TokioIo::new(client.connect().await);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        let request = http::Request::get("/containerLogs/default/streamer/main?follow=true")
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let mut body = sender.send_request(request).await.unwrap().into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"hello\n");
        let more = tokio::time::timeout(Duration::from_millis(600), body.frame()).await;
        assert!(more.is_err(), "the followed log stays open: {more:?}");
        drop(body);
        let (code, body) = client.get("/containerLogs/default/nobody/main").await;
        assert_eq!(code, 404, "{body}");
        let (code, body) = client.get("/containerLogs/default/streamer/main?previous=true").await;
        assert_eq!(code, 400, "{body}");
        assert!(
            body.contains(
                "previous terminated container \\\"main\\\" in pod \\\"streamer\\\" not found"
            ),
            "{body}"
        );

        // Exec over WebSocket v5: stdin, stdin close, stdout and the exit code.
        let path = "/exec/default/streamer/main?command=sh&command=-c&command=cat%3B%20exit%203&stdin=true&stdout=true&stderr=true";
        let mut ws = client.websocket(path, "v5.channel.k8s.io").await;
        ws.send(Message::binary(Bytes::from_static(b"\x00abc"))).await.unwrap();
        ws.send(Message::binary(Bytes::from_static(b"\xff\x00"))).await.unwrap();
        let (mut stdout, mut status) = (Vec::new(), None);
        while let Some(message) = ws.next().await {
            match message.unwrap() {
                Message::Binary(data) if data.first() == Some(&1) => {
                    stdout.extend_from_slice(&data[1..])
                }
                Message::Binary(data) if data.first() == Some(&3) => {
                    status = Some(serde_json::from_slice::<serde_json::Value>(&data[1..]).unwrap());
                }
                Message::Close(frame) => {
                    assert_eq!(frame.map(|f| u16::from(f.code)), Some(1000));
                    break;
                }
                _ => {}
            }
        }
        assert_eq!(stdout, b"abc");
        let status = status.expect("a status on channel 3");
        assert_eq!(status["status"], "Failure", "{status}");
        assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
        assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "3");

        // A command that succeeds ends with Success.
        let mut ws = client
            .websocket(
                "/exec/default/streamer/main?command=echo&command=hi&stdout=true",
                "v5.channel.k8s.io",
            )
            .await;
        let mut last = None;
        while let Some(Ok(message)) = ws.next().await {
            if let Message::Binary(data) = message {
                last = Some(data);
            }
        }
        assert_eq!(&last.unwrap()[..], b"\x03{\"metadata\":{},\"status\":\"Success\"}");

        // Port-forward over plain WebSocket channels (kube-rs's protocol).
        let mut ws = client
            .websocket(
                &format!("/portForward/default/streamer?ports={WEB_PORT}"),
                "v4.channel.k8s.io",
            )
            .await;
        let port = WEB_PORT.to_le_bytes();
        let first = ws.next().await.unwrap().unwrap().into_data();
        assert_eq!(&first[..], &[0, port[0], port[1]]);
        let second = ws.next().await.unwrap().unwrap().into_data();
        assert_eq!(&second[..], &[1, port[0], port[1]]);
        let mut request = vec![0u8];
        request.extend_from_slice(b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n");
        ws.send(Message::binary(request)).await.unwrap();
        let mut response = Vec::new();
        while !String::from_utf8_lossy(&response).contains("pong") {
            match ws.next().await {
                Some(Ok(Message::Binary(data))) if data.first() == Some(&0) => {
                    response.extend_from_slice(&data[1..]);
                }
                Some(Ok(Message::Binary(data))) => {
                    panic!("port-forward error: {}", String::from_utf8_lossy(&data[1..]))
                }
                other => panic!("port-forward ended: {other:?}"),
            }
        }
        assert!(String::from_utf8_lossy(&response).starts_with("HTTP/1."));
        let _ = ws.close(None).await;
    });
    let outcome = tokio::time::timeout(Duration::from_secs(90), checks).await;

    let _ = stop_sender.send(true);
    let _ = server.await;
    for id in [&main, &web] {
        runtime.stop_container(id, Duration::from_secs(1)).await.unwrap();
        runtime.remove_container(id).await.unwrap();
    }
    runtime.stop_pod_sandbox(&sandbox_id).await.unwrap();
    runtime.remove_pod_sandbox(&sandbox_id).await.unwrap();
    containerd.stop().await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(failure)) => std::panic::resume_unwind(failure.into_panic()),
        Err(_) => panic!("the checks did not finish in time"),
    }
}
