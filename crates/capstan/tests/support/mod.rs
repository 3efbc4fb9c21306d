//! What the end-to-end tests share: a `capstan server` child on a free port with its own
//! data dir, and the real kubectl pointed at it.

#![allow(dead_code, reason = "each test file uses a different part")]

pub(crate) mod multinode;
pub(crate) mod node;

use anyhow::{Context, Result, ensure};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub(crate) const CAPSTAN: &str = env!("CARGO_BIN_EXE_capstan");

/// A running `capstan server`, killed by pid if the test ends early.
pub(crate) struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
}

/// Flags that keep a test server to itself: a free port, its kubeconfig in `dir`, and no
/// kubelet (tests of the node's own work start one with `Cluster::with_node`).
pub(crate) fn isolated(dir: &Path) -> Vec<String> {
    vec![
        "--disable-agent".into(),
        "--data-dir".into(),
        dir.display().to_string(),
        "--https-listen-port".into(),
        "0".into(),
        "--bind-address".into(),
        "127.0.0.1".into(),
        "--write-kubeconfig".into(),
        dir.join("kubeconfig.yaml").display().to_string(),
    ]
}

impl Server {
    pub(crate) fn start(args: &[&str]) -> Result<Self> {
        let mut child = Command::new(CAPSTAN)
            .arg("server")
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().context("stderr")?;
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        Ok(Server { child, lines })
    }

    pub(crate) fn wait_for(&self, needle: &str) -> Result<String> {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .with_context(|| format!("no {needle:?} in the log"))?;
            if line.contains(needle) {
                return Ok(line);
            }
        }
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`STOP`, `CONT`...) to the server's pid.
    pub(crate) fn signal(&self, name: &str) -> Result<()> {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()?;
        ensure!(status.success(), "kill -{name} failed");
        Ok(())
    }

    /// The log lines printed since the last look, without waiting for more.
    pub(crate) fn lines_so_far(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Sends SIGTERM and returns whether the server exited cleanly.
    pub(crate) fn terminate(mut self) -> Result<bool> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        ensure!(status.success(), "kill -TERM failed");
        Ok(self.child.wait()?.success())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the real kubectl against a server's kubeconfig.
pub(crate) fn kubectl(kubeconfig: &Path, args: &[&str]) -> Result<std::process::Output> {
    Ok(Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::null())
        .output()?)
}

/// A server with its data dir and kubeconfig; for etcd, the etcd it uses.
pub(crate) struct Cluster {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) kubeconfig: PathBuf,
    pub(crate) server: Option<Server>,
    pub(crate) _etcd: Option<capstan_testkit::EtcdServer>,
}

/// What one kubectl run said.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) success: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Cluster {
    pub(crate) fn start(on_etcd: bool) -> Result<Self> {
        if !on_etcd {
            return Cluster::start_with(&[]);
        }
        let etcd = capstan_testkit::EtcdServer::start()?;
        let mut cluster =
            Cluster::start_with(&["--datastore-endpoint", &format!("etcd://{}", etcd.endpoint())])?;
        cluster._etcd = Some(etcd);
        Ok(cluster)
    }

    /// A server with a data dir and port of its own and these extra flags (a datastore that
    /// other servers share, for one), once it is ready.
    pub(crate) fn start_with(extra: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let args = isolated(dir.path());
        let args: Vec<&str> =
            args.iter().map(String::as_str).chain(extra.iter().copied()).collect();
        let server = Server::start(&args)?;
        server.wait_for("API server ready")?;
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        Ok(Cluster { dir, kubeconfig, server: Some(server), _etcd: None })
    }

    /// The running server.
    pub(crate) fn server(&self) -> Result<&Server> {
        self.server.as_ref().context("no server")
    }

    /// A server on the embedded datastore, started with these extra `capstan server` flags.
    pub(crate) fn start_with_flags(flags: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut args = isolated(dir.path());
        args.extend(flags.iter().map(|flag| (*flag).to_owned()));
        let server = Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
        server.wait_for("API server ready")?;
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        Ok(Cluster { dir, kubeconfig, server: Some(server), _etcd: None })
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("/usr/bin/kubectl");
        command.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        command
    }

    pub(crate) fn run(&self, args: &[&str]) -> Result<Run> {
        let output = self.command(args).stdin(Stdio::null()).output()?;
        Ok(Run {
            success: output.status.success(),
            stdout: String::from_utf8(output.stdout)?,
            stderr: String::from_utf8(output.stderr)?,
        })
    }

    /// Runs kubectl, which must succeed; returns its stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> Result<String> {
        let run = self.run(args)?;
        ensure!(run.success, "kubectl {args:?} failed: {}{}", run.stdout, run.stderr);
        Ok(run.stdout)
    }

    /// Runs kubectl, which must fail; returns its stderr.
    pub(crate) fn fails(&self, args: &[&str]) -> Result<String> {
        let run = self.run(args)?;
        ensure!(!run.success, "kubectl {args:?} succeeded: {}", run.stdout);
        Ok(run.stderr)
    }

    /// Writes a manifest into the test's directory.
    pub(crate) fn manifest(&self, name: &str, text: &str) -> Result<String> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text)?;
        Ok(path.display().to_string())
    }

    /// Removes every finalizer of a ConfigMap in `e2e`, so that a pending deletion completes.
    pub(crate) fn release(&self, name: &str) -> Result<()> {
        let patch = r#"{"metadata":{"finalizers":null}}"#;
        self.ok(&["patch", "configmap", name, "-n", "e2e", "--type", "merge", "-p", patch])?;
        Ok(())
    }

    /// Starts `capstan sim-nodes` against this cluster with these extra flags; the nodes stay
    /// until the returned handle is dropped (their process is killed by pid).
    pub(crate) fn sim_nodes(&self, args: &[&str]) -> Result<SimNodes> {
        let child = Command::new(CAPSTAN)
            .arg("sim-nodes")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        Ok(SimNodes { child })
    }

    /// Deletes every object kubectl lists as `all`, and every pod, at once and without
    /// grace (test teardown; errors are ignored).
    pub(crate) fn delete_everything(&self) {
        for what in ["all", "pods"] {
            let _ = self.run(&[
                "delete",
                what,
                "--all",
                "--all-namespaces",
                "--grace-period=0",
                "--force",
                "--wait=false",
            ]);
        }
    }

    /// Polls `check` every 200 ms until it says yes or `limit` passes.
    pub(crate) fn wait_until(
        &self,
        limit: Duration,
        what: &str,
        mut check: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if check()? {
                return Ok(());
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Polls `kubectl get <what> -o jsonpath=<path>` until it prints `expected` (30 s at most).
    pub(crate) fn wait_for_field(&self, what: &[&str], path: &str, expected: &str) -> Result<()> {
        let jsonpath = format!("jsonpath={path}");
        let args = [&["get"][..], what, &["-o", &jsonpath]].concat();
        let mut last = String::new();
        for _ in 0..300 {
            let run = self.run(&args)?;
            last = format!("{}{}", run.stdout, run.stderr);
            if run.success && run.stdout == expected {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        anyhow::bail!("kubectl {args:?} printed {last:?}, not {expected:?}")
    }

    pub(crate) fn stop(mut self) -> Result<()> {
        let server = self.server.take().context("no server")?;
        ensure!(server.terminate()?, "the server exited with a failure on SIGTERM");
        Ok(())
    }
}

/// A running `capstan sim-nodes`, killed by pid when dropped.
pub(crate) struct SimNodes {
    child: Child,
}

impl SimNodes {
    /// Kills the simulator with SIGKILL, as a machine that loses power: its nodes stop
    /// renewing their Leases and posting status at once.
    pub(crate) fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for SimNodes {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
