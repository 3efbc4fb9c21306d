//! `cargo xtask up` and `down`: a one-node Capstan running in the background from a release
//! build, its pid and log in the data directory.

use crate::{apt, cargo, run_command, step, target_dir};
use anyhow::{Context, bail};
use std::io::{BufRead, BufReader, Seek};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn up(data_dir: &Path) -> anyhow::Result<()> {
    apt::ensure("building Capstan and running its node", &[apt::BUILD, apt::NODE])?;
    if !apt::is_root() {
        bail!("`cargo xtask up` runs a kubelet with containerd, which needs root: run it as root");
    }
    step("building capstan (release)");
    run_command(cargo().args(["build", "--release", "--package", "capstan"]))?;
    let binary = target_dir().join("release/capstan");

    let pid_file = data_dir.join("capstan.pid");
    if let Some(pid) = running_pid(&pid_file) {
        step(&format!(
            "capstan server is already running (pid {pid}); restarting it on the new build"
        ));
        stop(pid)?;
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    // The busybox image, dropped where the kubelet imports archives at start.
    let images = data_dir.join("agent/images");
    std::fs::create_dir_all(&images)?;
    step("building the busybox image (capstan.local/busybox:1) from busybox-static");
    run_command(
        Command::new(&binary)
            .args(["image", "build", "busybox", "--output"])
            .arg(images.join("capstan-busybox.tar")),
    )?;
    let log_path = data_dir.join("capstan.log");
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
    let log_start = log.metadata()?.len();
    step(&format!("starting capstan server --data-dir {}", data_dir.display()));
    let child = Command::new(&binary)
        .arg("server")
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C in this terminal later does not stop it.
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let pid = child.id();
    std::fs::write(&pid_file, pid.to_string())?;
    wait_ready(&log_path, log_start, pid)?;

    let kubeconfig = "/etc/capstan/capstan.yaml";
    println!(
        "\nCapstan is running (pid {pid}).
  data:        {data}
  log:         {log}
  kubeconfig:  {kubeconfig}
  stop:        cargo xtask down{data_flag}

Try it:
  KUBECONFIG={kubeconfig} kubectl get ns
  KUBECONFIG={kubeconfig} kubectl create -f your-manifest.yaml
  KUBECONFIG={kubeconfig} kubectl get all -A

Run something (the busybox image is already on the node; no registry is needed):
  KUBECONFIG={kubeconfig} kubectl create deployment web --image=capstan.local/busybox:1 -- httpd -f -p 80
  KUBECONFIG={kubeconfig} kubectl get pods -o wide
  KUBECONFIG={kubeconfig} kubectl exec -it deploy/web -- sh

What runs: the datastore (embedded SQLite at {data}/server/db/state.db), the API server, the
scheduler, the controller manager, and this host's node: a kubelet running pods in containerd
(its state under {data}/agent). More images: `{binary} image import --data-dir {data} FILE.tar`.
Hollow nodes for scale experiments: {binary} sim-nodes --count 3 --kubeconfig {kubeconfig}",
        data = data_dir.display(),
        log = log_path.display(),
        data_flag = default_flag(data_dir),
        binary = binary.display(),
    );
    Ok(())
}

pub(crate) fn down(data_dir: &Path) -> anyhow::Result<()> {
    let pid_file = data_dir.join("capstan.pid");
    match running_pid(&pid_file) {
        Some(pid) => {
            step(&format!("stopping capstan server (pid {pid})"));
            stop(pid)?;
            let _ = std::fs::remove_file(&pid_file);
            println!("stopped; its data stays in {}", data_dir.display());
        }
        None => println!(
            "no capstan server started by `cargo xtask up` is running for {}",
            data_dir.display()
        ),
    }
    Ok(())
}

fn default_flag(data_dir: &Path) -> String {
    if data_dir == Path::new("/var/lib/capstan") {
        String::new()
    } else {
        format!(" --data-dir {}", data_dir.display())
    }
}

/// The pid in the pid file, if that process is alive and is a capstan.
fn running_pid(pid_file: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmdline).contains("capstan").then_some(pid)
}

/// SIGTERM, then up to 30 s for the process to go.
fn stop(pid: u32) -> anyhow::Result<()> {
    let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
    if !status.success() {
        bail!("kill -TERM {pid} failed");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while PathBuf::from(format!("/proc/{pid}")).exists() {
        if Instant::now() > deadline {
            bail!("capstan server (pid {pid}) did not stop within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Follows the log from `offset` until the server says it is ready, or fails with the log.
fn wait_ready(log_path: &Path, offset: u64, pid: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut file = std::fs::File::open(log_path)?;
    file.seek(std::io::SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(file);
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? > 0 {
            eprint!("    {line}");
            seen.push_str(&line);
            if line.contains("API server ready") {
                return Ok(());
            }
            continue;
        }
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            bail!("capstan server exited while starting; its log is {}", log_path.display());
        }
        if Instant::now() > deadline {
            bail!(
                "capstan server was not ready after {READY_TIMEOUT:?}; its log is {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
