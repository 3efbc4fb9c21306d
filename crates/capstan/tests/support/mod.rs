//! What the end-to-end tests share: a `capstan server` child on a free port with its own
//! data dir, and the real kubectl pointed at it.

#![allow(dead_code, reason = "each test file uses a different part")]

use anyhow::{Context, Result, ensure};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub(crate) const CAPSTAN: &str = env!("CARGO_BIN_EXE_capstan");

/// A running `capstan server`, killed by pid if the test ends early.
pub(crate) struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
}

/// Flags that keep a test server to itself: a free port, and its kubeconfig in `dir`.
pub(crate) fn isolated(dir: &Path) -> Vec<String> {
    vec![
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
