//! The host network of a multi-node `up`: the bridge `capstan0`, each agent's network
//! namespace joined to it by a veth pair, and a masquerade rule so that the agents' traffic
//! can leave the machine (image pulls). Creating is idempotent (what exists is kept, so
//! that a restarted agent finds its pods' network as it was); removing is too.

use super::layout::{self, Agent, BRIDGE, NAT_TABLE, SERVER_IP, SUBNET};
use anyhow::{Context, bail};
use std::io::Write;
use std::process::{Command, Stdio};

/// The bridge with the server's address, up.
pub(crate) fn create_bridge() -> anyhow::Result<()> {
    if !link_exists(BRIDGE) {
        ip(&["link", "add", BRIDGE, "type", "bridge"])?;
    }
    ip(&["addr", "replace", &format!("{SERVER_IP}/24"), "dev", BRIDGE])?;
    ip(&["link", "set", BRIDGE, "up"])?;
    // The host routes between the bridge, the server's pods and the outside.
    run("sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
    nft(&format!(
        "add table ip {NAT_TABLE}\ndelete table ip {NAT_TABLE}\n\
         table ip {NAT_TABLE} {{\n  comment \"cargo xtask up: the agents' traffic out\"\n  \
         chain postrouting {{\n    type nat hook postrouting priority srcnat;\n    \
         ip saddr {SUBNET} oifname != \"{BRIDGE}\" masquerade\n  }}\n}}\n"
    ))
}

/// The bridge and the masquerade table gone (nothing to do if they are).
pub(crate) fn remove_bridge() -> anyhow::Result<()> {
    if link_exists(BRIDGE) {
        ip(&["link", "delete", BRIDGE])?;
    }
    delete_nft_table(NAT_TABLE)
}

/// Deletes `table` in the ip and ip6 families, whether or not it exists.
pub(crate) fn delete_nft_table(table: &str) -> anyhow::Result<()> {
    nft(&format!(
        "add table ip {table}\ndelete table ip {table}\nadd table ip6 {table}\ndelete table ip6 {table}\n"
    ))
}

/// The agent's namespace: `eth0` on the bridge at the agent's address, a default route via
/// the server, forwarding on (the agent's pods are routed through it). Kept when it exists
/// with its veth, made afresh otherwise.
pub(crate) fn create_agent_netns(agent: &Agent) -> anyhow::Result<()> {
    if netns_names().contains(&agent.name) && link_exists(&agent.veth) {
        return Ok(());
    }
    remove_agent_netns(agent)?;
    let ns = agent.name.as_str();
    ip(&["netns", "add", ns])?;
    ip(&["link", "add", &agent.veth, "type", "veth", "peer", "name", "eth0", "netns", ns])?;
    ip(&["link", "set", &agent.veth, "master", BRIDGE, "up"])?;
    ip(&["-n", ns, "addr", "add", &format!("{}/24", agent.ip), "dev", "eth0"])?;
    ip(&["-n", ns, "link", "set", "eth0", "up"])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    ip(&["-n", ns, "route", "add", "default", "via", SERVER_IP])?;
    let netns = format!("--net={}", agent.netns_path().display());
    run("nsenter", &[&netns, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
}

/// The agent's veth and namespace gone (its pods' namespaces are not in it: see
/// `leftovers`).
pub(crate) fn remove_agent_netns(agent: &Agent) -> anyhow::Result<()> {
    if link_exists(&agent.veth) {
        ip(&["link", "delete", &agent.veth])?;
    }
    if netns_names().contains(&agent.name) {
        ip(&["netns", "delete", &agent.name])?;
    }
    Ok(())
}

/// The names `ip netns list` shows.
pub(crate) fn netns_names() -> Vec<String> {
    let output = Command::new("ip").args(["netns", "list"]).output();
    let text = output.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    text.lines().filter_map(|line| line.split_whitespace().next()).map(str::to_owned).collect()
}

/// The layout's agents that have a namespace on this machine.
pub(crate) fn agents_with_netns(data_dir: &std::path::Path) -> Vec<Agent> {
    netns_names().iter().filter_map(|name| layout::Agent::from_name(data_dir, name)).collect()
}

pub(crate) fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    run("ip", args)
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn nft(script: &str) -> anyhow::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run nft")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("nft -f failed: {}\n{script}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}
