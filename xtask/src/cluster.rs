//! `cargo xtask up [--nodes N]` and `down`: a Capstan cluster running in the background
//! from a release build, its pids and logs in the data directory. One node is the server
//! alone (with its own node); more add agents, each in a network namespace of its own on
//! one bridge, as separate hosts on one network would be (the layout is in `layout`).

mod layout;
mod leftovers;
mod network;
mod processes;

use crate::{apt, cargo, run_command, step, target_dir};
use anyhow::{Context, bail};
use layout::Agent;
use std::io::{BufRead, BufReader, Seek};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) use layout::MAX_NODES;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the nodes have to report Ready once they registered.
const NODES_READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a capstan has between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// The admin kubeconfig, where `capstan server` writes it by default.
const KUBECONFIG: &str = "/etc/capstan/capstan.yaml";

pub(crate) fn up(data_dir: &Path, nodes: usize) -> anyhow::Result<()> {
    if !(1..=MAX_NODES).contains(&nodes) {
        bail!("--nodes must be between 1 and {MAX_NODES}");
    }
    apt::ensure("building Capstan and running its node", &[apt::BUILD, apt::NODE])?;
    if !apt::is_root() {
        bail!("`cargo xtask up` runs a kubelet with containerd, which needs root: run it as root");
    }
    let data_dir = std::path::absolute(data_dir)?;
    refuse_foreign_agents(&data_dir)?;
    step("building capstan (release)");
    run_command(cargo().args(["build", "--release", "--package", "capstan"]))?;
    let binary = target_dir().join("release/capstan");

    // A restart: what runs stops, agents before their server. Their containers keep running,
    // for the restarted nodes to adopt.
    stop_agents(&data_dir)?;
    stop_server(&data_dir, "restarting it on the new build")?;
    let agents = layout::agents(&data_dir, nodes);
    let surplus: Vec<Agent> =
        known_agents(&data_dir).into_iter().filter(|a| a.index >= nodes).collect();
    for agent in &surplus {
        step(&format!("removing {} (not in a {nodes}-node cluster)", agent.name));
        leftovers::sweep(&agent.dir, false)?;
        network::remove_agent_netns(agent)?;
    }
    if nodes == 1 {
        network::remove_bridge()?;
    }

    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    build_busybox(&binary, &data_dir)?;
    if nodes > 1 {
        let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
        step(&format!(
            "network: bridge {} {}/24; network namespaces {}",
            layout::BRIDGE,
            layout::SERVER_IP,
            names.join(", ")
        ));
        network::create_bridge()?;
        for agent in &agents {
            network::create_agent_netns(agent)?;
        }
    }

    let server_log = data_dir.join("capstan.log");
    let server = start(
        &format!("capstan server --data-dir {}", data_dir.display()),
        Command::new(&binary).args(layout::server_command_line(&data_dir, nodes)),
        &server_log,
        &data_dir.join("capstan.pid"),
    )?;
    wait_for_log(&server_log, server.log_start, server.pid, "API server ready", true)
        .context("capstan server")?;
    forget_nodes(&surplus);

    let mut started = Vec::new();
    for agent in &agents {
        build_busybox(&binary, &agent.dir)?;
        let log = agent.dir.join("capstan.log");
        started.push((agent, start_agent(&binary, &data_dir, agent)?, log));
    }
    for (agent, process, log) in &mut started {
        // An agent whose containerd still recovers its containers may stop at its first
        // runtime call ("server is not initialized yet"): it gets two more tries.
        let mut tries = 1;
        loop {
            match wait_for_log(log, process.log_start, process.pid, "node registered", false) {
                Err(error) if tries < 3 && !processes::alive(process.pid) => {
                    step(&format!("{} exited while starting; starting it again", agent.name));
                    eprintln!("    {error:#}");
                    tries += 1;
                    *process = start_agent(&binary, &data_dir, agent)?;
                }
                outcome => {
                    break outcome.with_context(|| format!("capstan agent {}", agent.name))?;
                }
            }
        }
    }
    if nodes > 1 {
        let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
        wait_nodes_ready(nodes, &names)?;
    }

    print_usage(&data_dir, &binary, server.pid, &started);
    Ok(())
}

pub(crate) fn down(data_dir: &Path) -> anyhow::Result<()> {
    let data_dir = std::path::absolute(data_dir)?;
    let foreign = processes::foreign_agents(&data_dir);
    let agents = known_agents(&data_dir);
    let agents_stopped = stop_agents(&data_dir)?;
    let server_stopped = stop_server(&data_dir, "stopping it")?;

    step("removing the nodes' containers, their network namespaces and mounts");
    let mut swept = Vec::new();
    for agent in &agents {
        swept.push((agent.name.clone(), leftovers::sweep(&agent.dir, false)?));
    }
    swept.push(("server".to_owned(), leftovers::sweep(&data_dir, true)?));
    for (node, what) in &swept {
        if what.processes + what.pod_netns + what.mounts > 0 {
            eprintln!(
                "    {node}: {} processes, {} pod network namespaces, {} mounts",
                what.processes, what.pod_netns, what.mounts
            );
        }
    }

    if foreign.is_empty() {
        step(&format!("removing the bridge {} and the agents' namespaces", layout::BRIDGE));
        for agent in &agents {
            network::remove_agent_netns(agent)?;
        }
        network::remove_bridge()?;
    } else {
        eprintln!(
            "    leaving the bridge and the agents' namespaces: agents of another data dir use them: {foreign:?}"
        );
    }
    // The server's node's proxy table and pod bridge outlive it (capstan server's default
    // names, which `up` owns on this machine).
    network::delete_nft_table(layout::SERVER_PROXY_TABLE)?;
    if network::link_exists(layout::SERVER_CNI_BRIDGE) {
        let _ = Command::new("ip").args(["link", "delete", layout::SERVER_CNI_BRIDGE]).status();
    }

    if agents_stopped + server_stopped == 0 {
        let left = swept.iter().any(|(_, what)| what.processes + what.pod_netns + what.mounts > 0);
        println!(
            "no capstan started by `cargo xtask up` was running for {}{}",
            data_dir.display(),
            if left { "; removed what it had left" } else { "" }
        );
    } else {
        println!("stopped; the data stays in {}", data_dir.display());
    }
    Ok(())
}

/// A process `start` launched, and where its log began.
struct Started {
    pid: u32,
    log_start: u64,
}

/// Starts `command` in the background, its output appended to `log_path`, its pid recorded.
fn start(
    what: &str,
    command: &mut Command,
    log_path: &Path,
    pid_file: &Path,
) -> anyhow::Result<Started> {
    step(&format!("starting {what}"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let log_start = log.metadata()?.len();
    let child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C in this terminal later does not stop it.
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {what}"))?;
    let pid = child.id();
    processes::record(pid_file, pid)?;
    Ok(Started { pid, log_start })
}

/// Starts `capstan agent` in the agent's network namespace.
fn start_agent(binary: &Path, data_dir: &Path, agent: &Agent) -> anyhow::Result<Started> {
    start(
        &format!("capstan agent {} ({}, netns {})", agent.name, agent.ip, agent.name),
        Command::new("nsenter").args(agent.command_line(binary, data_dir)),
        &agent.dir.join("capstan.log"),
        &agent.dir.join("capstan.pid"),
    )
}

/// The busybox image, dropped where the node's kubelet imports archives at start.
fn build_busybox(binary: &Path, node_dir: &Path) -> anyhow::Result<()> {
    let images = node_dir.join("agent/images");
    std::fs::create_dir_all(&images)
        .with_context(|| format!("cannot create {}", images.display()))?;
    step(&format!(
        "building the busybox image (capstan.local/busybox:1) into {}",
        images.display()
    ));
    run_command(
        Command::new(binary)
            .args(["image", "build", "busybox", "--output"])
            .arg(images.join("capstan-busybox.tar")),
    )
}

/// Agents of this data dir, wherever they show: a data dir under `<data-dir>/agents`, a
/// network namespace of the layout, or a running process.
fn known_agents(data_dir: &Path) -> Vec<Agent> {
    let mut agents = network::agents_with_netns(data_dir);
    if let Ok(entries) = std::fs::read_dir(layout::agents_dir(data_dir)) {
        for entry in entries.flatten() {
            if let Some(agent) = Agent::from_name(data_dir, &entry.file_name().to_string_lossy()) {
                agents.push(agent);
            }
        }
    }
    agents.sort_by_key(|agent| agent.index);
    agents.dedup();
    agents
}

/// The layout's names are the machine's, so only one multi-node `up` can run at a time.
fn refuse_foreign_agents(data_dir: &Path) -> anyhow::Result<()> {
    let foreign = processes::foreign_agents(data_dir);
    if let Some((pid, dir)) = foreign.first() {
        let other = dir.parent().and_then(Path::parent).unwrap_or(dir);
        bail!(
            "an agent of another `cargo xtask up` runs (pid {pid}, {}); stop that cluster first: \
             cargo xtask down --data-dir {}",
            dir.display(),
            other.display()
        );
    }
    Ok(())
}

/// Stops every agent of this data dir (SIGTERM to all, then waiting); how many ran.
fn stop_agents(data_dir: &Path) -> anyhow::Result<usize> {
    let mut running = Vec::new();
    for agent in known_agents(data_dir) {
        for pid in processes::capstan("agent", &agent.dir, &agent.dir.join("capstan.pid")) {
            running.push((agent.name.clone(), pid));
        }
    }
    if running.is_empty() {
        return Ok(0);
    }
    let shown: Vec<String> =
        running.iter().map(|(name, pid)| format!("{name} (pid {pid})")).collect();
    step(&format!("stopping capstan agent {}", shown.join(", ")));
    let pids: Vec<u32> = running.iter().map(|(_, pid)| *pid).collect();
    processes::stop(&pids, "capstan agent", STOP_GRACE)?;
    Ok(running.len())
}

/// Stops the server of this data dir; whether one ran.
fn stop_server(data_dir: &Path, why: &str) -> anyhow::Result<usize> {
    let pids = processes::capstan("server", data_dir, &data_dir.join("capstan.pid"));
    if pids.is_empty() {
        return Ok(0);
    }
    step(&format!("capstan server is running (pid {pids:?}); {why}"));
    processes::stop(&pids, "capstan server", STOP_GRACE)?;
    Ok(pids.len())
}

/// Follows the log from `offset` until a line holds `ready`, or fails with the log's tail.
/// `echo` shows the lines as they come.
fn wait_for_log(
    log_path: &Path,
    offset: u64,
    pid: u32,
    ready: &str,
    echo: bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut file = std::fs::File::open(log_path)?;
    file.seek(std::io::SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(file);
    let mut seen: Vec<String> = Vec::new();
    let failure = |why: String, seen: &[String]| {
        let tail = seen[seen.len().saturating_sub(20)..].join("");
        anyhow::anyhow!("{why}; its log is {}:\n{tail}", log_path.display())
    };
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? > 0 {
            if echo {
                eprint!("    {line}");
            }
            let done = line.contains(ready);
            seen.push(line);
            if done {
                return Ok(());
            }
            continue;
        }
        if !processes::alive(pid) {
            return Err(failure("exited while starting".into(), &seen));
        }
        if Instant::now() > deadline {
            return Err(failure(format!("not ready after {READY_TIMEOUT:?}"), &seen));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Deletes the Node objects of agents that are gone, so that their pods are made again on
/// the nodes that remain (when kubectl is there to ask).
fn forget_nodes(gone: &[Agent]) {
    for agent in gone {
        let _ = Command::new("kubectl")
            .args(["--kubeconfig", KUBECONFIG, "delete", "node", &agent.name, "--ignore-not-found"])
            .stdout(Stdio::null())
            .status();
    }
}

/// Waits until `nodes` nodes, every agent among them, are Ready, when kubectl is there to
/// ask (`up` does not need kubectl otherwise).
fn wait_nodes_ready(nodes: usize, agents: &[&str]) -> anyhow::Result<()> {
    let kubectl = || {
        Command::new("kubectl")
            .args(["--kubeconfig", KUBECONFIG, "get", "nodes", "-o"])
            .arg("jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}")
            .output()
    };
    if kubectl().is_err() {
        step("kubectl is not installed: not waiting for the nodes to be Ready");
        return Ok(());
    }
    step(&format!("waiting for {nodes} Ready node{}", if nodes == 1 { "" } else { "s" }));
    let deadline = Instant::now() + NODES_READY_TIMEOUT;
    loop {
        let text = kubectl().map(|o| String::from_utf8_lossy(&o.stdout).into_owned())?;
        let ready: Vec<&str> =
            text.split_whitespace().filter_map(|entry| entry.strip_suffix("=True")).collect();
        if ready.len() >= nodes && agents.iter().all(|agent| ready.contains(agent)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the nodes were not all Ready after {NODES_READY_TIMEOUT:?} ({}); they still \
                 run: see `kubectl describe nodes`, the logs, and `cargo xtask down`",
                text.trim()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn print_usage(
    data_dir: &Path,
    binary: &Path,
    server_pid: u32,
    agents: &[(&Agent, Started, PathBuf)],
) {
    let data = data_dir.display();
    let k = format!("KUBECONFIG={KUBECONFIG}");
    let stop = format!("cargo xtask down{}", default_flag(data_dir));
    let mut text = format!(
        "\nCapstan is running: {} node{}.
  server:      pid {server_pid}, data {data}, log {data}/capstan.log
  kubeconfig:  {KUBECONFIG}
  stop:        {stop}
",
        agents.len() + 1,
        if agents.is_empty() { "" } else { "s" }
    );
    if agents.is_empty() {
        text.push_str(&format!(
            "
Try it:
  {k} kubectl get nodes -o wide
  {k} kubectl create -f your-manifest.yaml
  {k} kubectl get all -A

Run something (the busybox image is already on the node; no registry is needed):
  {k} kubectl create deployment web --image=capstan.local/busybox:1 -- httpd -f -p 80
  {k} kubectl get pods -o wide
  {k} kubectl exec -it deploy/web -- sh

What runs: the datastore (embedded SQLite at {data}/server/db/state.db), the API server, the
scheduler, the controller manager, and this host's node: a kubelet running pods in containerd
(its state under {data}/agent). More images: `{binary} image import --data-dir {data} FILE.tar`.
Hollow nodes for scale experiments: {binary} sim-nodes --count 3 --kubeconfig {KUBECONFIG}
",
            binary = binary.display(),
        ));
        println!("{text}");
        return;
    }
    for (agent, process, log) in agents {
        text.push_str(&format!(
            "  {}: pid {}, {} in netns {}, data {}, log {}\n",
            agent.name,
            process.pid,
            agent.ip,
            agent.name,
            agent.dir.display(),
            log.display()
        ));
    }
    let replicas = agents.len() + 1;
    let last = agents.last().map_or("", |(agent, _, _)| agent.name.as_str());
    text.push_str(&format!(
        "
The network: the server and its node in this host's network namespace at {server} on the
bridge {bridge} ({subnet}); each agent in the network namespace of its name, at
198.19.0.2, .3, ... (veth capstan-veth<i>), its traffic out masqueraded (nft table ip {nat}).
Pods on different nodes reach each other directly through the nodes' routes.

Try it:
  {k} kubectl get nodes -o wide
  {k} kubectl create deployment web --image=capstan.local/busybox:1 --replicas={replicas} \\
      -- sh -c 'mkdir /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www'
  {k} kubectl get pods -o wide                  # one per node
  {k} kubectl expose deployment web --port 80
  {k} kubectl exec deploy/web -- wget -qO- http://web   # again: another pod may answer
  nsenter --net=/var/run/netns/{last} ip route            # a node's view of the network

The busybox image is on every node (no registry is needed). Each agent's containerd is under
its data dir: `{binary} image import --data-dir {dir} FILE.tar` imports an image there.
",
        server = layout::SERVER_IP,
        bridge = layout::BRIDGE,
        subnet = layout::SUBNET,
        nat = layout::NAT_TABLE,
        binary = binary.display(),
        dir = layout::agents_dir(data_dir).join(last).display(),
    ));
    println!("{text}");
}

fn default_flag(data_dir: &Path) -> String {
    if data_dir == Path::new("/var/lib/capstan") {
        String::new()
    } else {
        format!(" --data-dir {}", data_dir.display())
    }
}
