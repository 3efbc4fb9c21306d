//! Several nodes on one machine: the server (and its own node) on a bridge in the host's
//! network namespace, and agents each in a network namespace of their own joined to that
//! bridge by a veth pair, as separate hosts on one L2 segment would be. Agents run under
//! `nsenter --net` (not `ip netns exec`, which remounts /sys and would hide the cgroup
//! filesystem from containerd). Dropping the cluster deletes every pod, waits for every
//! node's containerd to be empty, stops agents and server, and removes the namespaces and
//! the bridge.

use super::node::BUSYBOX;
use super::{CAPSTAN, Cluster, Server, isolated};
use anyhow::{Context, Result, ensure};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct Agent {
    pub(crate) name: String,
    pub(crate) netns: String,
    pub(crate) ip: String,
    /// The IPv6 address of a dual-stack harness's agent (empty otherwise).
    pub(crate) ip6: String,
    pub(crate) socket: PathBuf,
    child: Child,
}

pub(crate) struct MultiNode {
    pub(crate) cluster: Cluster,
    pub(crate) server_node: String,
    pub(crate) server_socket: PathBuf,
    pub(crate) agents: Vec<Agent>,
    bridge: String,
    /// The bridge's addresses (the server's node's), IPv4 and, dual-stack, IPv6.
    bridge_ips: (std::net::IpAddr, Option<std::net::IpAddr>),
    cni_bridge: String,
    table: String,
}

impl std::ops::Deref for MultiNode {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

fn sh(program: &str, args: &[&str]) -> Result<()> {
    let output =
        Command::new(program).args(args).output().with_context(|| format!("running {program}"))?;
    ensure!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

fn build_busybox(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir.join("agent/images"))?;
    let built = Command::new(CAPSTAN)
        .args(["image", "build", "busybox", "--output"])
        .arg(dir.join("agent/images/busybox.tar"))
        .output()?;
    ensure!(
        built.status.success(),
        "capstan image build: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    Ok(())
}

impl MultiNode {
    /// The server's node plus `agents` more, all Ready. `slot` (0–9) keeps concurrent tests'
    /// addresses apart.
    pub(crate) fn start(agents: usize, slot: u32) -> Result<Self> {
        MultiNode::launch(agents, slot, false)
    }

    /// As [`MultiNode::start`], dual-stack: nodes with an IPv4 and an IPv6 address, pods
    /// with an address of each family, and an IPv6 service range beside the IPv4 one.
    pub(crate) fn start_dual_stack(agents: usize, slot: u32) -> Result<Self> {
        MultiNode::launch(agents, slot, true)
    }

    fn launch(agents: usize, slot: u32, dual_stack: bool) -> Result<Self> {
        let tag = (std::process::id() % 1000) * 10 + slot;
        // 198.18.0.0/15 is set aside for benchmarking networks (RFC 2544): no real network a
        // test machine sits on uses it, so the nodes' subnet never shadows the host's own.
        let subnet = format!("198.18.{}", tag % 250);
        // ULA space of the tag's own (addresses added `nodad`, so usable at once).
        let subnet6 = format!("fdcc:0:{tag:x}:");
        let bridge = format!("capb{tag}");
        let cni_bridge = format!("capc{tag}");
        let dir = tempfile::Builder::new().prefix("capm").tempdir_in("/tmp")?;
        sh("ip", &["link", "add", &bridge, "type", "bridge"])?;
        let mut harness = MultiNode {
            cluster: Cluster { dir, kubeconfig: PathBuf::new(), server: None, _etcd: None },
            server_node: format!("server-{tag}"),
            server_socket: PathBuf::new(),
            agents: Vec::new(),
            bridge: bridge.clone(),
            bridge_ips: (
                format!("{subnet}.1").parse()?,
                dual_stack.then(|| format!("{subnet6}:1").parse()).transpose()?,
            ),
            cni_bridge: cni_bridge.clone(),
            table: format!("capm{tag}"),
        };
        sh("ip", &["addr", "add", &format!("{subnet}.1/24"), "dev", &bridge])?;
        if dual_stack {
            sh("ip", &["addr", "add", &format!("{subnet6}:1/64"), "dev", &bridge, "nodad"])?;
        }
        sh("ip", &["link", "set", &bridge, "up"])?;

        let root = harness.cluster.dir.path().to_owned();
        let server_dir = root.join("server-node");
        build_busybox(&server_dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
        let dns_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
        let kubelet_port =
            std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
        let mut args = isolated(&server_dir);
        args.retain(|arg| arg != "--disable-agent");
        for (flag, value) in
            [("--https-listen-port", port.as_str()), ("--bind-address", &format!("{subnet}.1"))]
        {
            if let Some(i) = args.iter().position(|a| a == flag) {
                args[i + 1] = value.to_owned();
            }
        }
        let v4_cidr = format!("10.{}.0.0/16", 150 + tag % 40);
        let v4_services = format!("10.{}.0.0/16", 60 + tag % 40);
        let (cidr, service_cidr, server_ips) = if dual_stack {
            (
                format!("{v4_cidr},fd42:0:{tag:x}::/56"),
                format!("{v4_services},fd43:0:{tag:x}::/112"),
                format!("{subnet}.1,{subnet6}:1"),
            )
        } else {
            (v4_cidr, v4_services, format!("{subnet}.1"))
        };
        args.extend(
            [
                "--node-name",
                &harness.server_node,
                "--node-ip",
                &server_ips,
                "--kubelet-port",
                &kubelet_port,
                "--cni-bridge",
                &cni_bridge,
                "--cluster-cidr",
                &cidr,
                "--eviction-nodefs-available",
                "1",
                "--service-cidr",
                &service_cidr,
                "--proxy-table",
                &format!("capm{tag}"),
                "--cluster-dns-port",
                &dns_port,
            ]
            .map(str::to_owned),
        );
        args.extend([
            "--registries-config".to_owned(),
            root.join("registries.yaml").display().to_string(),
        ]);
        let server = Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
        server.wait_for("API server ready")?;
        harness.cluster.server = Some(server);
        harness.cluster.kubeconfig = server_dir.join("kubeconfig.yaml");
        harness.server_socket = server_dir.join("agent/run/containerd/containerd.sock");
        let token_file = server_dir.join("server/node-token");

        for i in 0..agents {
            let name = format!("agent-{tag}-{i}");
            let netns = format!("capn{tag}{i}");
            let veth = format!("capv{tag}{i}");
            let ip = format!("{subnet}.{}", i + 2);
            sh("ip", &["netns", "add", &netns])?;
            sh(
                "ip",
                &["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns],
            )?;
            sh("ip", &["link", "set", &veth, "master", &bridge, "up"])?;
            sh("ip", &["-n", &netns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
            sh("ip", &["-n", &netns, "link", "set", "eth0", "up"])?;
            sh("ip", &["-n", &netns, "link", "set", "lo", "up"])?;
            sh("ip", &["-n", &netns, "route", "add", "default", "via", &format!("{subnet}.1")])?;
            sh("ip", &["netns", "exec", &netns, "sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
            let mut node_ips = ip.clone();
            let mut ip6 = String::new();
            if dual_stack {
                ip6 = format!("{subnet6}:{}", i + 2);
                sh(
                    "ip",
                    &["-n", &netns, "addr", "add", &format!("{ip6}/64"), "dev", "eth0", "nodad"],
                )?;
                sh(
                    "ip",
                    &[
                        "-n",
                        &netns,
                        "-6",
                        "route",
                        "add",
                        "default",
                        "via",
                        &format!("{subnet6}:1"),
                    ],
                )?;
                sh(
                    "ip",
                    &["netns", "exec", &netns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"],
                )?;
                node_ips = format!("{ip},{ip6}");
            }
            let agent_dir = root.join(&name);
            build_busybox(&agent_dir)?;
            let child = Command::new("nsenter")
                .arg(format!("--net=/var/run/netns/{netns}"))
                .arg(CAPSTAN)
                .args(["agent", "--server", &format!("https://{subnet}.1:{port}"), "--token-file"])
                .arg(&token_file)
                .arg("--data-dir")
                .arg(&agent_dir)
                .args([
                    "--node-name",
                    &name,
                    "--node-ip",
                    &node_ips,
                    "--eviction-nodefs-available",
                    "1",
                    "--cluster-cidr",
                    &cidr,
                    "--cluster-dns",
                    &format!("10.{}.0.10", 60 + tag % 40),
                    "--registries-config",
                ])
                .arg(root.join("registries.yaml"))
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(root.join(format!("{name}.log")))?)
                .spawn()?;
            let socket = agent_dir.join("agent/run/containerd/containerd.sock");
            harness.agents.push(Agent { name, netns, ip, ip6, socket, child });
        }
        let nodes: Vec<String> = std::iter::once(harness.server_node.clone())
            .chain(harness.agents.iter().map(|a| a.name.clone()))
            .collect();
        harness
            .wait_until(Duration::from_secs(90), "every node Ready", || {
                let path = "{range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}";
                let run = harness.run(&["get", "nodes", "-o", &format!("jsonpath={path}")])?;
                Ok(nodes.iter().all(|n| run.stdout.contains(&format!("{n}=True"))))
            })
            .map_err(|error| error.context(harness.diagnosis()))?;
        harness.wait_until(Duration::from_secs(30), "the default service account", || {
            Ok(harness.run(&["get", "serviceaccount", "default"])?.success)
        })?;
        Ok(harness)
    }

    /// Whether the containerd at `socket` holds no container.
    fn empty(socket: &Path) -> bool {
        Command::new("ctr")
            .arg("--address")
            .arg(socket)
            .args(["--namespace", "k8s.io", "containers", "list", "--quiet"])
            .output()
            .map(|o| !o.status.success() || o.stdout.is_empty())
            .unwrap_or(true)
    }

    /// Runs `command` inside an agent's network namespace.
    pub(crate) fn in_agent(&self, agent: usize, command: &[&str]) -> Result<std::process::Output> {
        let netns = &self.agents.get(agent).context("no such agent")?.netns;
        Ok(Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{netns}"))
            .args(command)
            .output()?)
    }

    /// The last lines of every agent's log (for a failing test's output).
    pub(crate) fn agent_logs(&self) -> String {
        let mut text = String::new();
        for agent in &self.agents {
            let log = std::fs::read_to_string(
                self.cluster.dir.path().join(format!("{}.log", agent.name)),
            )
            .unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            text.push_str(&format!(
                "--- {} ---\n{}\n",
                agent.name,
                lines[lines.len().saturating_sub(30)..].join("\n")
            ));
        }
        text
    }

    /// What a failing start shows: every node's Ready condition, and the last lines of the
    /// server's and the agents' logs.
    pub(crate) fn diagnosis(&self) -> String {
        let path = "{range .items[*]}{.metadata.name}: {.status.conditions[?(@.type==\"Ready\")].message}{\"\\n\"}{end}";
        let nodes = self
            .run(&["get", "nodes", "-o", &format!("jsonpath={path}")])
            .map(|run| format!("{}{}", run.stdout, run.stderr))
            .unwrap_or_else(|error| error.to_string());
        let server = self.server.as_ref().map(|s| s.lines_so_far()).unwrap_or_default();
        format!(
            "nodes:\n{nodes}--- server ---\n{}\n{}",
            server[server.len().saturating_sub(30)..].join("\n"),
            self.agent_logs()
        )
    }

    /// The address of the server's node on the bridge, of one family.
    pub(crate) fn bridge_ip(&self, v6: bool) -> std::net::IpAddr {
        match self.bridge_ips {
            (_, Some(v6_ip)) if v6 => v6_ip,
            (v4_ip, _) => v4_ip,
        }
    }

    pub(crate) fn busybox() -> &'static str {
        BUSYBOX
    }
}

impl Drop for MultiNode {
    fn drop(&mut self) {
        self.delete_everything();
        let sockets: Vec<PathBuf> = std::iter::once(self.server_socket.clone())
            .chain(self.agents.iter().map(|a| a.socket.clone()))
            .collect();
        let _ =
            self.wait_until(Duration::from_secs(60), "every node's containerd to be empty", || {
                Ok(sockets.iter().all(|s| MultiNode::empty(s)))
            });
        for agent in &mut self.agents {
            let _ = Command::new("kill").args(["-TERM", &agent.child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && matches!(agent.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = agent.child.kill();
            let _ = agent.child.wait();
        }
        if let Some(server) = self.cluster.server.take() {
            let _ = server.terminate();
        }
        for agent in &self.agents {
            let _ = Command::new("ip").args(["netns", "delete", &agent.netns]).status();
        }
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["link", "delete", &self.cni_bridge])
            .stderr(Stdio::null())
            .status();
        for family in ["ip", "ip6"] {
            let _ = Command::new("nft")
                .args(["delete", "table", family, &self.table])
                .stderr(Stdio::null())
                .status();
        }
    }
}
