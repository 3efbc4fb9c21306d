//! A cluster whose server runs its own node: a kubelet with a containerd of its own under
//! the test's data dir, a bridge and pod CIDR no other test uses, and the busybox image
//! imported at start. Dropping it deletes every pod, waits for containerd to be empty,
//! stops the server (which stops containerd) and removes the bridge, so nothing is left.

use super::{CAPSTAN, Cluster, Server, isolated};
use anyhow::{Context, Result, ensure};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The image the tests run.
pub(crate) const BUSYBOX: &str = "capstan.local/busybox:1";

pub(crate) struct NodeCluster {
    pub(crate) cluster: Cluster,
    pub(crate) node: String,
    pub(crate) bridge: String,
    pub(crate) socket: PathBuf,
    table: String,
}

impl std::ops::Deref for NodeCluster {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl NodeCluster {
    /// Starts the server with its node and waits until the node is Ready. `slot` (0–49)
    /// picks the pod CIDR, so tests running side by side do not overlap.
    pub(crate) fn start(slot: u32) -> Result<Self> {
        NodeCluster::start_with_registries(slot, None)
    }

    /// The same, with this `registries.yaml` (mirrors and credentials) for the node.
    pub(crate) fn start_with_registries(slot: u32, registries: Option<&str>) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("capn").tempdir_in("/tmp")?;
        if let Some(text) = registries {
            std::fs::write(dir.path().join("registries.yaml"), text)?;
        }
        let images = dir.path().join("agent/images");
        std::fs::create_dir_all(&images)?;
        let built = Command::new(CAPSTAN)
            .args(["image", "build", "busybox", "--output"])
            .arg(images.join("busybox.tar"))
            .output()?;
        ensure!(
            built.status.success(),
            "capstan image build: {}",
            String::from_utf8_lossy(&built.stderr)
        );
        let tag = (std::process::id() % 10_000) * 50 + slot;
        let node = format!("node-{tag}");
        let bridge = format!("capt{tag}");
        let cidr = format!("10.{}.0.0/16", 200 + (std::process::id() % 5) * 10 + slot % 10);
        let port = free_port()?.to_string();
        let dns_port = free_port()?.to_string();
        let table = format!("capn{tag}");
        let service_cidr = format!("10.{}.0.0/16", 100 + (std::process::id() % 5) * 10 + slot % 10);
        let mut args = isolated(dir.path());
        args.retain(|arg| arg != "--disable-agent");
        args.extend(
            [
                "--node-name",
                &node,
                "--kubelet-port",
                &port,
                "--cni-bridge",
                &bridge,
                "--cluster-cidr",
                &cidr,
                // Tests care about pods, not about the disk this machine's builds fill.
                "--eviction-nodefs-available",
                "1",
                "--service-cidr",
                &service_cidr,
                "--proxy-table",
                &table,
                "--cluster-dns-port",
                &dns_port,
            ]
            .map(str::to_owned),
        );
        args.extend([
            "--registries-config".to_owned(),
            dir.path().join("registries.yaml").display().to_string(),
        ]);
        let server = Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
        server.wait_for("API server ready")?;
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        let socket = dir.path().join("agent/run/containerd/containerd.sock");
        let cluster = Cluster { dir, kubeconfig, server: Some(server), _etcd: None };
        let node_cluster = NodeCluster { cluster, node, bridge, socket, table };
        node_cluster.wait_until(Duration::from_secs(60), "the node to be Ready", || {
            let path = "{.status.conditions[?(@.type==\"Ready\")].status}";
            let run = node_cluster.run(&[
                "get",
                "node",
                &node_cluster.node,
                "-o",
                &format!("jsonpath={path}"),
            ])?;
            Ok(run.stdout == "True")
        })?;
        // The default service account, which pods need for their token.
        node_cluster.wait_until(Duration::from_secs(30), "the default service account", || {
            Ok(node_cluster.run(&["get", "serviceaccount", "default"])?.success)
        })?;
        Ok(node_cluster)
    }

    /// `ctr` against this node's containerd, in the CRI namespace.
    pub(crate) fn ctr(&self, args: &[&str]) -> Result<String> {
        let output = Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", "k8s.io"])
            .args(args)
            .output()
            .context("running ctr")?;
        ensure!(
            output.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The containers (sandboxes included) containerd holds.
    pub(crate) fn runtime_containers(&self) -> Result<Vec<String>> {
        Ok(self.ctr(&["containers", "list", "--quiet"])?.lines().map(str::to_owned).collect())
    }

    /// Waits for a pod's phase.
    pub(crate) fn wait_for_phase(&self, pod: &str, phase: &str, limit: Duration) -> Result<()> {
        self.wait_until(limit, &format!("pod {pod} to be {phase}"), || {
            let run = self.run(&["get", "pod", pod, "-o", "jsonpath={.status.phase}"])?;
            Ok(run.stdout == phase)
        })
    }
}

impl Drop for NodeCluster {
    fn drop(&mut self) {
        // Everything goes at once, without grace, then the node must be empty.
        self.delete_everything();
        let _ = self.wait_until(Duration::from_secs(60), "containerd to be empty", || {
            Ok(self.runtime_containers().map(|c| c.is_empty()).unwrap_or(true))
        });
        if let Some(server) = self.cluster.server.take() {
            let _ = server.terminate();
        }
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.table])
            .stderr(Stdio::null())
            .status();
    }
}
