//! A single-member etcd (Debian's `etcd-server`) on free loopback ports.

use crate::free_loopback_port;
use anyhow::{Context, bail};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long etcd gets to answer its health check.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running etcd member; killed (by its pid) and its data removed when dropped.
#[derive(Debug)]
pub struct EtcdServer {
    child: Child,
    client_port: u16,
    dir: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts etcd and waits until it is healthy. The binary is `$CAPSTAN_ETCD_BIN` or
    /// `/usr/bin/etcd`. Requests of up to 2 MiB are allowed, so that Capstan's 1.5 MiB values
    /// fit with room for the key and framing.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_in(&std::env::temp_dir())
    }

    /// Like `start`, with the member's data in a new directory under `parent` (benchmarks put
    /// it beside the store they compare with, on the same disk).
    pub fn start_in(parent: &std::path::Path) -> anyhow::Result<Self> {
        let mut last_error = None;
        // A port found free may be taken by a concurrent test before etcd binds it.
        for _ in 0..3 {
            match Self::try_start(parent) {
                Ok(server) => return Ok(server),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("etcd did not start")))
    }

    fn try_start(parent: &std::path::Path) -> anyhow::Result<Self> {
        let binary = std::env::var_os("CAPSTAN_ETCD_BIN")
            .map_or_else(|| PathBuf::from("/usr/bin/etcd"), PathBuf::from);
        if !binary.exists() {
            bail!(
                "{} not found: install Debian's etcd-server (cargo xtask test does)",
                binary.display()
            );
        }
        let dir = tempfile::Builder::new().prefix("capstan-etcd-").tempdir_in(parent)?;
        let client_port = free_loopback_port()?;
        let peer_port = free_loopback_port()?;
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.path().join("etcd.log"))?;
        let child = Command::new(&binary)
            .arg("--name=capstan-test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=capstan-test={peer_url}"))
            .arg("--max-request-bytes=2097152")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        let mut server = EtcdServer { child, client_port, dir };
        server.wait_healthy()?;
        Ok(server)
    }

    /// `127.0.0.1:PORT`, the form `etcd://` endpoints take.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn client_url(&self) -> String {
        format!("http://{}", self.endpoint())
    }

    /// The member's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The directory holding the member's data and log.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log =
                    std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
                bail!("etcd exited with {status} while starting:\n{log}");
            }
            if self.healthy() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("etcd on port {} was not healthy after {START_TIMEOUT:?}", self.client_port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn healthy(&self) -> bool {
        let check = || -> std::io::Result<bool> {
            let mut stream = TcpStream::connect(("127.0.0.1", self.client_port))?;
            stream.set_read_timeout(Some(Duration::from_secs(2)))?;
            stream.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            Ok(response.contains("\"health\":\"true\""))
        };
        check().unwrap_or(false)
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // kill() sends SIGKILL to this pid; wait() reaps it so no zombie is left.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
