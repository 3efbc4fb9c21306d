//! `cargo xtask bench pods`: pod startup on a real node. A `capstan server` with its own
//! kubelet and containerd; 30 pods created at once, each measured from its creation to the
//! moment a watching client sees it Running. Beside it, in the same run and on the same
//! containerd, the floor: the same sandbox + container sequence (RunPodSandbox on the pod
//! network, CreateContainer, StartContainer) sent straight over CRI by 30 concurrent clients.
//! It prints p50/p99 of both and the ratio; targets: p50 ≤ 1.3× the floor, p99 ≤ 2 s.
//! `CAPSTAN_BENCH_PODS` changes the count.

use anyhow::{Context, Result, ensure};
use capstan_kubelet::runtime::cri_api::*;
use capstan_kubelet::runtime::{CriRuntime, Runtime};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CAPSTAN: &str = env!("CARGO_BIN_EXE_capstan");
const LOG: &str = "warn,capstan=info,capstan_kubelet=info";

#[path = "common/process.rs"]
mod process;

use process::Process;
const IMAGE: &str = "capstan.local/busybox:1";
const BRIDGE: &str = "capbench0";

fn main() -> Result<()> {
    let count: usize =
        std::env::var("CAPSTAN_BENCH_PODS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let dir = tempfile::Builder::new().prefix("capbench").tempdir_in("/tmp")?;
    let images = dir.path().join("agent/images");
    std::fs::create_dir_all(&images)?;
    let built = Command::new(CAPSTAN)
        .args(["image", "build", "busybox", "--output"])
        .arg(images.join("busybox.tar"))
        .output()?;
    ensure!(built.status.success(), "capstan image build failed");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
    let data = dir.path().display().to_string();
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let server = Process::start(
        &[
            "server",
            "--data-dir",
            &data,
            "--https-listen-port",
            "0",
            "--bind-address",
            "127.0.0.1",
            "--write-kubeconfig",
            &kubeconfig.display().to_string(),
            "--node-name",
            "bench-node",
            "--kubelet-port",
            &port,
            "--cni-bridge",
            BRIDGE,
            "--cluster-cidr",
            "10.199.0.0/16",
            "--eviction-nodefs-available",
            "1",
            "--registries-config",
            &dir.path().join("registries.yaml").display().to_string(),
        ],
        LOG,
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let socket = dir.path().join("agent/run/containerd/containerd.sock");
    let outcome = (|| {
        server.wait_for_line("pod network configured", Duration::from_secs(60))?;
        runtime.block_on(measure(&kubeconfig, &socket, &dir.path().join("floor-logs"), count))
    })();
    server.terminate();
    let _ = Command::new("ip").args(["link", "delete", BRIDGE]).status();
    outcome
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn millis(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

async fn measure(kubeconfig: &Path, socket: &Path, floor_logs: &Path, count: usize) -> Result<()> {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = Client::try_from(config)?;
    wait_for_service_account(&client).await?;
    let cri = CriRuntime::connect(socket).await?;

    println!(
        "pod startup, {count} pods created at once on one node (containerd 1.6, runc, bridge CNI)"
    );
    // Warm-up, not measured: the image is unpacked and the first sandbox made once.
    run_pods(&client, "warmup", 1).await?;
    wait_until_empty(&cri).await?;
    floor(&cri, floor_logs, "warmup", 1).await?;

    let mut floor_times = floor(&cri, floor_logs, "floor", count).await?;
    let mut capstan_times = run_pods(&client, "bench", count).await?;
    // The kubelet removes the pods' containers and sandboxes after the API has forgotten
    // them: wait for that, so that stopping the server leaves nothing running.
    wait_until_empty(&cri).await?;
    floor_times.sort();
    capstan_times.sort();
    let (f50, f99) = (percentile(&floor_times, 50.0), percentile(&floor_times, 99.0));
    let (c50, c99) = (percentile(&capstan_times, 50.0), percentile(&capstan_times, 99.0));
    println!(
        "  floor (CRI straight to containerd):  p50 {:>8}  p99 {:>8}",
        millis(f50),
        millis(f99)
    );
    println!(
        "  capstan (creation -> Running):        p50 {:>8}  p99 {:>8}",
        millis(c50),
        millis(c99)
    );
    let ratio = c50.as_secs_f64() / f50.as_secs_f64().max(1e-9);
    println!(
        "  p50 ratio to the floor: {ratio:.2}x (target <= 1.3x: {}); p99 {} (target <= 2 s: {})",
        if ratio <= 1.3 { "PASS" } else { "FAIL" },
        millis(c99),
        if c99 <= Duration::from_secs(2) { "PASS" } else { "FAIL" },
    );
    Ok(())
}

async fn wait_until_empty(cri: &CriRuntime) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cri.list_pod_sandbox(ListPodSandboxRequest::default()).await?.is_empty() {
        ensure!(Instant::now() < deadline, "the node still has sandboxes after 120 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn wait_for_service_account(client: &Client) -> Result<()> {
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), "default");
    for _ in 0..300 {
        if accounts.get_opt("default").await?.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("no default service account")
}

/// Creates `count` pods at once and returns each one's creation → Running time; deletes them
/// and waits for the node to be empty again.
async fn run_pods(client: &Client, prefix: &str, count: usize) -> Result<Vec<Duration>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let running: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watch = {
        let running = Arc::clone(&running);
        let stream = watcher::watcher(
            pods.clone(),
            watcher::Config::default().labels(&format!("bench={prefix}")),
        );
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) = event else {
                    continue;
                };
                if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    running
                        .lock()
                        .map_err(|_| ())
                        .map(|mut r| {
                            r.entry(name).or_insert_with(Instant::now);
                        })
                        .ok();
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut creations = Vec::new();
    for i in 0..count {
        let pods = pods.clone();
        let created = Arc::clone(&created);
        let name = format!("{prefix}-{i}");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"bench": prefix}},
            "spec": {
                "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}],
            },
        }))?;
        creations.push(tokio::spawn(async move {
            let start = Instant::now();
            let result = pods.create(&PostParams::default(), &pod).await;
            if let Ok(mut created) = created.lock() {
                created.insert(name, start);
            }
            result.map(|_| ())
        }));
    }
    for creation in creations {
        creation.await??;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while running.lock().map(|r| r.len()).unwrap_or(0) < count {
        ensure!(Instant::now() < deadline, "pods did not all reach Running within 120 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watch.abort();
    let created = created.lock().map(|c| c.clone()).unwrap_or_default();
    let running = running.lock().map(|r| r.clone()).unwrap_or_default();
    let times = created
        .iter()
        .filter_map(|(name, start)| {
            running.get(name).map(|end| end.saturating_duration_since(*start))
        })
        .collect();
    pods.delete_collection(
        &DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() },
        &kube::api::ListParams::default().labels(&format!("bench={prefix}")),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pods
        .list(&kube::api::ListParams::default().labels(&format!("bench={prefix}")))
        .await?
        .items
        .is_empty()
    {
        ensure!(Instant::now() < deadline, "pods were not removed within 120 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(times)
}

/// The floor: `count` concurrent clients each running a sandbox and starting a container in
/// it over CRI, timed from the first call to StartContainer's return; then removed.
async fn floor(cri: &CriRuntime, logs: &Path, prefix: &str, count: usize) -> Result<Vec<Duration>> {
    let mut tasks = Vec::new();
    for i in 0..count {
        let cri = cri.clone();
        let prefix = prefix.to_owned();
        let log_dir: PathBuf = logs.join(format!("{prefix}-{i}"));
        tasks.push(tokio::spawn(async move {
            std::fs::create_dir_all(&log_dir)?;
            let uid = format!("{prefix}-{i}-{}", std::process::id());
            let sandbox_config = PodSandboxConfig {
                metadata: Some(PodSandboxMetadata {
                    name: format!("{prefix}-{i}"),
                    uid: uid.clone(),
                    namespace: "floor".into(),
                    attempt: 0,
                }),
                hostname: format!("{prefix}-{i}"),
                log_directory: log_dir.display().to_string(),
                linux: Some(LinuxPodSandboxConfig {
                    cgroup_parent: format!("/kubepods/besteffort/pod{uid}"),
                    ..LinuxPodSandboxConfig::default()
                }),
                ..PodSandboxConfig::default()
            };
            let start = Instant::now();
            let sandbox = cri.run_pod_sandbox(sandbox_config.clone(), String::new()).await?;
            let container = cri
                .create_container(
                    &sandbox,
                    ContainerConfig {
                        metadata: Some(ContainerMetadata { name: "c".into(), attempt: 0 }),
                        image: Some(ImageSpec { image: IMAGE.into(), ..ImageSpec::default() }),
                        command: vec!["sleep".into(), "3600".into()],
                        log_path: "c/0.log".into(),
                        ..ContainerConfig::default()
                    },
                    sandbox_config,
                )
                .await?;
            cri.start_container(&container).await?;
            let elapsed = start.elapsed();
            Ok::<_, anyhow::Error>((elapsed, sandbox, uid))
        }));
    }
    let mut times = Vec::new();
    let mut made = Vec::new();
    for task in tasks {
        let (elapsed, sandbox, uid) = task.await?.context("the floor's CRI sequence")?;
        times.push(elapsed);
        made.push((sandbox, uid));
    }
    for (sandbox, uid) in made {
        let _ = cri.stop_pod_sandbox(&sandbox).await;
        let _ = cri.remove_pod_sandbox(&sandbox).await;
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            let _ =
                std::fs::remove_dir(hierarchy.path().join(format!("kubepods/besteffort/pod{uid}")));
        }
    }
    Ok(times)
}
