//! The fixed layout of `cargo xtask up --nodes N`: names, addresses and directories of the
//! server and its agents, and the command lines that start them. Nothing here touches the
//! machine, so the layout is tested as plain data.
//!
//! The server and its own node stay in the host's network namespace; with more than one
//! node, it also owns the bridge `capstan0` (198.19.0.1/24), and agent `i` (1 ≤ i < N) runs
//! in the network namespace `capstan-agent-i` at 198.19.0.(i+1), joined to the bridge by the
//! veth `capstan-veth<i>`, with its data in `<data-dir>/agents/capstan-agent-i`.
//! 198.18.0.0/15 is set aside for benchmarking networks (RFC 2544), so no network the machine
//! sits on uses it; the tests take 198.18.x and `up` takes 198.19.0.x, so they never meet.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The bridge the server and the agents share.
pub(crate) const BRIDGE: &str = "capstan0";
/// The server's address on the bridge, which the agents join.
pub(crate) const SERVER_IP: &str = "198.19.0.1";
/// The bridge's subnet.
pub(crate) const SUBNET: &str = "198.19.0.0/24";
/// The API server's port (`capstan server`'s default).
pub(crate) const API_PORT: u16 = 6443;
/// The pods' range: `capstan server`'s and `capstan agent`'s default, passed to both so that
/// they agree even if one default changes.
pub(crate) const CLUSTER_CIDR: &str = "10.42.0.0/16";
/// The Services' range (`capstan server`'s default).
pub(crate) const SERVICE_CIDR: &str = "10.43.0.0/16";
/// The cluster DNS Service's address: the tenth address of [`SERVICE_CIDR`], as the server
/// publishes it.
pub(crate) const CLUSTER_DNS: &str = "10.43.0.10";
/// The nftables table that lets the agents' traffic leave the machine (masquerade).
pub(crate) const NAT_TABLE: &str = "capstan-nodes";
/// The service proxy's table and the pod bridge of the server's node (`capstan server`'s
/// defaults), which outlive the server and `down` removes.
pub(crate) const SERVER_PROXY_TABLE: &str = "capstan-proxy";
pub(crate) const SERVER_CNI_BRIDGE: &str = "cni0";
/// The netns and node names of agents: `capstan-agent-<i>`.
pub(crate) const AGENT_PREFIX: &str = "capstan-agent-";
/// The most nodes: the bridge's /24 has addresses .2 to .254 for agents, and
/// `capstan-veth253` is the longest interface name Linux allows (15 bytes).
pub(crate) const MAX_NODES: usize = 254;

/// One agent's place in the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Agent {
    /// 1 to N-1.
    pub(crate) index: usize,
    /// The node's name, which is also its network namespace's.
    pub(crate) name: String,
    /// Its address on the bridge.
    pub(crate) ip: String,
    /// The host's end of its veth pair (the other end is `eth0` in the namespace).
    pub(crate) veth: String,
    /// Its `--data-dir`.
    pub(crate) dir: PathBuf,
}

impl Agent {
    pub(crate) fn new(data_dir: &Path, index: usize) -> Self {
        let name = format!("{AGENT_PREFIX}{index}");
        Agent {
            index,
            ip: format!("198.19.0.{}", index + 1),
            veth: format!("capstan-veth{index}"),
            dir: agents_dir(data_dir).join(&name),
            name,
        }
    }

    /// The agent a network namespace name stands for, if it is one of the layout's.
    pub(crate) fn from_name(data_dir: &Path, name: &str) -> Option<Self> {
        let index: usize = name.strip_prefix(AGENT_PREFIX)?.parse().ok()?;
        (1..MAX_NODES).contains(&index).then(|| Agent::new(data_dir, index))
    }

    /// The path `ip netns` mounts the namespace at.
    pub(crate) fn netns_path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.name)
    }

    /// `nsenter` and its arguments: `capstan agent` inside the agent's namespace. nsenter
    /// rather than `ip netns exec`, which remounts /sys and would hide the cgroup filesystem
    /// from containerd.
    pub(crate) fn command_line(&self, binary: &Path, data_dir: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            format!("--net={}", self.netns_path().display()).into(),
            binary.into(),
            "agent".into(),
            "--server".into(),
            format!("https://{SERVER_IP}:{API_PORT}").into(),
            "--token-file".into(),
            data_dir.join("server/node-token").into(),
            "--data-dir".into(),
            self.dir.clone().into(),
        ];
        for (flag, value) in [
            ("--node-name", self.name.as_str()),
            ("--node-ip", &self.ip),
            ("--cluster-cidr", CLUSTER_CIDR),
            ("--cluster-dns", CLUSTER_DNS),
        ] {
            args.extend([flag.into(), value.into()]);
        }
        args
    }
}

/// Where agents keep their data: `<data-dir>/agents`.
pub(crate) fn agents_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("agents")
}

/// The agents of an N-node cluster.
pub(crate) fn agents(data_dir: &Path, nodes: usize) -> Vec<Agent> {
    (1..nodes).map(|index| Agent::new(data_dir, index)).collect()
}

/// `capstan server`'s arguments. With agents, the server's node takes the bridge address and
/// the API server's certificate names it, since that is where the agents reach it.
pub(crate) fn server_command_line(data_dir: &Path, nodes: usize) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["server".into(), "--data-dir".into(), data_dir.into()];
    for (flag, value) in [("--cluster-cidr", CLUSTER_CIDR), ("--service-cidr", SERVICE_CIDR)] {
        args.extend([flag.into(), value.into()]);
    }
    if nodes > 1 {
        for (flag, value) in [("--node-ip", SERVER_IP), ("--tls-san", SERVER_IP)] {
            args.extend([flag.into(), value.into()]);
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn agents_are_numbered_from_one_after_the_server() {
        let agents = agents(Path::new("/d"), 3);
        let names: Vec<_> = agents.iter().map(|a| (a.name.as_str(), a.ip.as_str())).collect();
        assert_eq!(names, [("capstan-agent-1", "198.19.0.2"), ("capstan-agent-2", "198.19.0.3")]);
        assert_eq!(agents[1].dir, Path::new("/d/agents/capstan-agent-2"));
        assert_eq!(agents[1].veth, "capstan-veth2");
        assert!(super::agents(Path::new("/d"), 1).is_empty());
    }

    #[test]
    fn names_fit_the_layout() {
        let last = Agent::new(Path::new("/d"), MAX_NODES - 1);
        assert_eq!(last.ip, "198.19.0.254");
        assert!(last.veth.len() <= 15, "{}", last.veth);
        assert_eq!(
            Agent::from_name(Path::new("/d"), "capstan-agent-7"),
            Some(Agent::new(Path::new("/d"), 7))
        );
        for foreign in
            ["capstan-agent-0", "capstan-agent-x", "capstan-agent-254", "cni-1234", "capn12"]
        {
            assert_eq!(Agent::from_name(Path::new("/d"), foreign), None, "{foreign}");
        }
    }

    #[test]
    fn one_node_is_the_server_alone() {
        assert_eq!(
            strings(&server_command_line(Path::new("/d"), 1)),
            [
                "server",
                "--data-dir",
                "/d",
                "--cluster-cidr",
                "10.42.0.0/16",
                "--service-cidr",
                "10.43.0.0/16"
            ]
        );
    }

    #[test]
    fn with_agents_the_server_is_reachable_on_the_bridge() {
        let args = strings(&server_command_line(Path::new("/d"), 3));
        assert!(args.ends_with(&[
            "--node-ip".into(),
            "198.19.0.1".into(),
            "--tls-san".into(),
            "198.19.0.1".into()
        ]));
    }

    #[test]
    fn agents_join_the_server_on_the_bridge_with_matching_networks() {
        let agent = Agent::new(Path::new("/d"), 1);
        assert_eq!(
            strings(&agent.command_line(Path::new("/bin/capstan"), Path::new("/d"))).join(" "),
            "--net=/var/run/netns/capstan-agent-1 /bin/capstan agent \
             --server https://198.19.0.1:6443 --token-file /d/server/node-token \
             --data-dir /d/agents/capstan-agent-1 --node-name capstan-agent-1 \
             --node-ip 198.19.0.2 --cluster-cidr 10.42.0.0/16 --cluster-dns 10.43.0.10"
        );
    }

    #[test]
    fn the_dns_address_is_the_tenth_of_the_service_range() {
        let base: std::net::Ipv4Addr =
            SERVICE_CIDR.split('/').next().unwrap_or_default().parse().unwrap();
        let dns: std::net::Ipv4Addr = CLUSTER_DNS.parse().unwrap();
        assert_eq!(u32::from(base) + 10, u32::from(dns));
    }
}
