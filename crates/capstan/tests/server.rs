//! `capstan server` as a user runs it: the built binary, on the embedded store and on a real
//! etcd, its refusal to start on a damaged database, and the real kubectl against its API.

use anyhow::{Context, Result, bail, ensure};
use std::process::{Command, Stdio};
use std::time::Duration;

mod support;

use support::{CAPSTAN, Server, isolated, kubectl};

#[test]
fn serves_the_embedded_datastore_until_terminated() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let args = isolated(dir.path());
    let server = Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
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
    let mut args = isolated(dir.path());
    args.extend(["--datastore-endpoint".to_owned(), endpoint]);
    let server = Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
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
    let args = isolated(dir.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = Server::start(&args)?;
    first.wait_for("API server ready")?;
    let second = run_to_exit(&args)?;
    ensure!(!second.status.success(), "a second server started on a data dir in use");
    let stderr = String::from_utf8_lossy(&second.stderr);
    ensure!(stderr.contains("in use by another Capstan"), "unclear error: {stderr}");
    ensure!(first.terminate()?, "the first server was disturbed");
    Ok(())
}

#[test]
fn the_real_kubectl_reads_version_and_discovery() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let args = isolated(dir.path());
    let server = Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    server.wait_for("API server ready")?;
    let kubeconfig = dir.path().join("kubeconfig.yaml");

    let version = kubectl(&kubeconfig, &["version", "-o", "json"])?;
    ensure!(
        version.status.success(),
        "kubectl version: {}",
        String::from_utf8_lossy(&version.stderr)
    );
    let version: serde_json::Value = serde_json::from_slice(&version.stdout)?;
    ensure!(
        version["serverVersion"]["minor"] == "33",
        "server version {}",
        version["serverVersion"]
    );
    ensure!(
        version["clientVersion"]["minor"] == "33",
        "the dispatcher chose kubectl {}",
        version["clientVersion"]
    );

    let resources = kubectl(&kubeconfig, &["api-resources", "--no-headers"])?;
    ensure!(
        resources.status.success(),
        "kubectl api-resources: {}",
        String::from_utf8_lossy(&resources.stderr)
    );
    let resources = String::from_utf8(resources.stdout)?;
    let row = |name: &str| {
        resources
            .lines()
            .find(|line| line.split_whitespace().next() == Some(name))
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
    };
    ensure!(
        row("pods") == Some(vec!["pods", "po", "v1", "true", "Pod"]),
        "pods row: {:?}",
        row("pods")
    );
    ensure!(
        row("deployments") == Some(vec!["deployments", "deploy", "apps/v1", "true", "Deployment"])
    );
    ensure!(
        row("horizontalpodautoscalers")
            == Some(vec![
                "horizontalpodautoscalers",
                "hpa",
                "autoscaling/v2",
                "true",
                "HorizontalPodAutoscaler"
            ])
    );
    ensure!(resources.lines().count() == 60, "{} resources listed", resources.lines().count());

    let versions = kubectl(&kubeconfig, &["api-versions"])?;
    let versions = String::from_utf8(versions.stdout)?;
    for expected in ["v1", "apps/v1", "autoscaling/v1", "autoscaling/v2", "networking.k8s.io/v1"] {
        ensure!(
            versions.lines().any(|line| line == expected),
            "api-versions lacks {expected}: {versions}"
        );
    }
    // The legacy per-group-version documents, which some commands read directly.
    let apps = kubectl(&kubeconfig, &["get", "--raw", "/apis/apps/v1"])?;
    ensure!(apps.status.success(), "GET /apis/apps/v1: {}", String::from_utf8_lossy(&apps.stderr));
    let apps: serde_json::Value = serde_json::from_slice(&apps.stdout)?;
    ensure!(apps["kind"] == "APIResourceList" && apps["groupVersion"] == "apps/v1");
    let scale = apps["resources"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "deployments/scale"))
        .cloned();
    ensure!(
        scale.as_ref().is_some_and(|s| s["group"] == "autoscaling" && s["kind"] == "Scale"),
        "deployments/scale: {scale:?}"
    );
    let core = kubectl(&kubeconfig, &["get", "--raw", "/api/v1"])?;
    ensure!(serde_json::from_slice::<serde_json::Value>(&core.stdout)?["groupVersion"] == "v1");
    let health = kubectl(&kubeconfig, &["get", "--raw", "/readyz"])?;
    ensure!(health.stdout == b"ok", "readyz said {:?}", String::from_utf8_lossy(&health.stdout));
    // A path that does not exist is a Status 404, which kubectl reports as such.
    let missing = kubectl(&kubeconfig, &["get", "--raw", "/apis/nonsense.example.com/v1"])?;
    ensure!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    ensure!(stderr.contains("NotFound"), "kubectl said: {stderr}");

    let namespaced = kubectl(&kubeconfig, &["api-resources", "--namespaced=false", "-o", "name"])?;
    ensure!(String::from_utf8(namespaced.stdout)?.lines().any(|line| line == "namespaces"));
    ensure!(server.terminate()?, "server exited with a failure on SIGTERM");
    Ok(())
}

#[test]
fn requests_without_a_client_certificate_are_unauthorized() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let args = isolated(dir.path());
    let server = Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    server.wait_for("API server ready")?;
    // The same kubeconfig with a made-up bearer token instead of the admin's certificate
    // (with no credentials at all, kubectl would prompt for a username).
    let full = std::fs::read_to_string(dir.path().join("kubeconfig.yaml"))?;
    let anonymous: String = full
        .lines()
        .filter(|line| {
            !line.contains("client-certificate-data") && !line.contains("client-key-data")
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let anonymous =
        anonymous.replace("  user:\n", "  user:\n    token: not-a-token-this-server-knows\n");
    let path = dir.path().join("anonymous.yaml");
    std::fs::write(&path, anonymous)?;
    // The kubectl 1.33 binary itself: /usr/bin/kubectl is a dispatcher that first reads
    // /version to choose a kubectl, and an anonymous user cannot (that is the point).
    let output = Command::new("/usr/lib/google-cloud-sdk/bin/kubectl.1.33")
        .arg("--kubeconfig")
        .arg(&path)
        .args(["get", "--raw", "/api"])
        .stdin(Stdio::null())
        .output()?;
    ensure!(!output.status.success(), "an anonymous request succeeded");
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(stderr.contains("Unauthorized"), "kubectl said: {stderr}");
    Ok(())
}
