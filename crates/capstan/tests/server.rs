//! `capstan server` as a user runs it: the built binary, on the embedded store and on a real
//! etcd, and its refusal to start on a damaged database.

use anyhow::{Context, Result, bail, ensure};
use std::io::{BufRead, BufReader};

use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const CAPSTAN: &str = env!("CARGO_BIN_EXE_capstan");

/// A running `capstan server`, killed by pid if the test ends early.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Server {
    fn start(args: &[&str]) -> Result<Self> {
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

    fn wait_for(&self, needle: &str) -> Result<String> {
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
    fn terminate(mut self) -> Result<bool> {
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

#[test]
fn serves_the_embedded_datastore_until_terminated() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().to_str().context("path")?;
    let server = Server::start(&["--data-dir", data_dir])?;
    let ready = server.wait_for("datastore ready")?;
    let db = dir.path().join("server/db/state.db");
    ensure!(ready.contains(&db.display().to_string()), "ready line names no database: {ready}");
    ensure!(db.exists(), "no database at {}", db.display());
    ensure!(server.terminate()?, "server exited with a failure on SIGTERM");
    Ok(())
}

#[test]
fn serves_an_etcd_datastore() -> Result<()> {
    let etcd = capstan_testkit::EtcdServer::start()?;
    let dir = tempfile::tempdir()?;
    let endpoint = format!("etcd://{}", etcd.endpoint());
    let server = Server::start(&[
        "--data-dir",
        dir.path().to_str().context("path")?,
        "--datastore-endpoint",
        &endpoint,
    ])?;
    let ready = server.wait_for("datastore ready")?;
    ensure!(ready.contains(&etcd.endpoint()), "ready line names no etcd: {ready}");
    ensure!(server.terminate()?, "server exited with a failure on SIGTERM");
    ensure!(
        !dir.path().join("server/db/state.db").exists(),
        "an etcd server created a sqlite file"
    );
    Ok(())
}

#[test]
fn refuses_to_start_on_a_damaged_database() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db_dir = dir.path().join("server/db");
    std::fs::create_dir_all(&db_dir)?;
    let db = db_dir.join("state.db");
    let mut damaged = b"SQLite format 3\0".to_vec();
    damaged.extend(std::iter::repeat_n(0xa5u8, 8192));
    std::fs::write(&db, damaged)?;
    let output = run_to_exit(&["--data-dir", dir.path().to_str().context("path")?])?;
    ensure!(!output.status.success(), "started on a damaged database");
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(stderr.contains(&db.display().to_string()), "the error names no file: {stderr}");
    ensure!(stderr.contains("unusable"), "the error does not say the file is unusable: {stderr}");
    Ok(())
}

#[test]
fn rejects_an_unknown_datastore_endpoint() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let output = run_to_exit(&[
        "--data-dir",
        dir.path().to_str().context("path")?,
        "--datastore-endpoint",
        "mysql://db",
    ])?;
    ensure!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        stderr.contains("--datastore-endpoint") && stderr.contains("mysql://db"),
        "unclear error: {stderr}"
    );
    Ok(())
}

/// Runs `capstan server` expecting it to exit by itself within 30 s.
fn run_to_exit(args: &[&str]) -> Result<std::process::Output> {
    let mut child = Command::new(CAPSTAN)
        .arg("server")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    for _ in 0..300 {
        if child.try_wait()?.is_some() {
            return Ok(child.wait_with_output()?);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    bail!("capstan server {args:?} did not exit");
}

#[test]
fn a_second_server_on_the_same_data_dir_refuses_to_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().to_str().context("path")?;
    let first = Server::start(&["--data-dir", data_dir])?;
    first.wait_for("datastore ready")?;
    let second = run_to_exit(&["--data-dir", data_dir])?;
    ensure!(!second.status.success(), "a second server started on a data dir in use");
    let stderr = String::from_utf8_lossy(&second.stderr);
    ensure!(stderr.contains("in use by another Capstan"), "unclear error: {stderr}");
    ensure!(first.terminate()?, "the first server was disturbed");
    Ok(())
}
