//! `cargo xtask bench scheduler`: the scheduler at scale on one machine. A `capstan server`
//! (embedded datastore, no controller manager, as upstream's scheduler_perf runs the
//! scheduler alone) and `capstan sim-nodes` registering 1,000 hollow nodes; then 10,000
//! pods created as fast as the API takes them (32 clients). It prints the pods/s from the first
//! creation to the last binding, the per-pod latency from creation to binding (p50/p99, as a
//! watching client sees it) and the scheduler's own attempt latency (its
//! `scheduler_scheduling_attempt_duration_seconds` histogram, read from `/metrics`), with the
//! ratios to the targets: ≥ 500 pods/s (upstream scheduler_perf's floor for this case is 270)
//! and p99 ≤ 1 s. A burst's creation-to-binding latency is mostly time in the queue (creation
//! outpaces binding), so a second phase creates half as many pods paced open loop at the
//! 500 pods/s target and reports their creation-to-binding latency. `CAPSTAN_BENCH_NODES` and `CAPSTAN_BENCH_PODS` change the sizes.

use anyhow::{Context, Result, bail, ensure};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "common/process.rs"]
mod process;

use process::Process;

const SCHEDULER_LOG: &str =
    "warn,capstan=info,capstan_apiserver=info,capstan_scheduler=info,capstan_sim=info";
const CLIENTS: usize = 32;
const NAMESPACE: &str = "bench";
/// The creation rate of the paced phase: the throughput target.
const PACED_RATE: f64 = 500.0;

fn main() -> Result<()> {
    let nodes = env_number("CAPSTAN_BENCH_NODES", 1000);
    let pods = env_number("CAPSTAN_BENCH_PODS", 10_000);
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let server = Process::start(&server_args(dir.path()), SCHEDULER_LOG)?;
    let outcome = (|| {
        server.wait_for_line("API server ready", Duration::from_secs(60))?;
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        let count = nodes.to_string();
        let sim = Process::start(
            &[
                "sim-nodes",
                "--kubeconfig",
                &kubeconfig.display().to_string(),
                "--count",
                &count,
                "--zones",
                "10",
                "--cpu",
                "32",
                "--memory",
                "256Gi",
            ],
            SCHEDULER_LOG,
        )?;
        let result = runtime.block_on(measure(&kubeconfig, nodes, pods));
        if result.is_ok() {
            println!(
                "  CPU used: server {:.1} s, sim-nodes {:.1} s (2 cores shared with the benchmark's clients)",
                server.cpu_seconds(),
                sim.cpu_seconds()
            );
        }
        drop(sim);
        result
    })();
    server.terminate();
    outcome
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn server_args(dir: &Path) -> Vec<String> {
    let dir = dir.display();
    [
        "server",
        "--data-dir",
        &dir.to_string(),
        "--https-listen-port",
        "0",
        "--bind-address",
        "127.0.0.1",
        // As upstream's scheduler_perf: the API server and the scheduler, no controller
        // manager (it has nothing to do here, and its watches would be measured too).
        "--disable-controller-manager",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "--write-kubeconfig".to_owned(),
        format!("{dir}/kubeconfig.yaml"),
        "--disable-agent".to_owned(),
    ])
    .collect()
}

async fn measure(kubeconfig: &Path, nodes: usize, pods: usize) -> Result<()> {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = Client::try_from(config)?;

    eprintln!("waiting for {nodes} hollow nodes to register ...");
    let started = Instant::now();
    let node_api: Api<Node> = Api::all(client.clone());
    loop {
        let listed = node_api.list(&ListParams::default()).await?.items.len();
        if listed >= nodes {
            break;
        }
        ensure!(started.elapsed() < Duration::from_secs(300), "only {listed} nodes after 300 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("  {nodes} nodes registered in {:.1} s", started.elapsed().as_secs_f64());

    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}}))?;
    namespaces.create(&PostParams::default(), &namespace).await?;

    // Binding times as a watching client sees them, by pod name.
    let bound: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let watch = {
        let bound = Arc::clone(&bound);
        let stream = watcher::watcher(pod_api.clone(), watcher::Config::default());
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let pod = match event {
                    Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => pod,
                    _ => continue,
                };
                if pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                    let name = pod.metadata.name.unwrap_or_default();
                    bound
                        .lock()
                        .map(|mut b| b.entry(name).or_insert_with(Instant::now).to_owned())
                        .ok();
                }
            }
        })
    };

    let burst = phase(&pod_api, &bound, "burst", pods, None).await?;
    let paced_pods = pods / 2;
    let paced = phase(&pod_api, &bound, "paced", paced_pods, Some(PACED_RATE)).await?;
    watch.abort();
    let metrics = client.request_text(http::Request::get("/metrics").body(Vec::new())?).await?;
    let attempts = attempt_quantiles(&metrics);

    println!();
    println!("scheduler benchmark: {nodes} hollow nodes, {CLIENTS} creating clients");
    println!("burst: {pods} pods created as fast as the API takes them");
    println!(
        "  pods created in            {:8.2} s ({:.0} pods/s)",
        burst.created_in.as_secs_f64(),
        pods as f64 / burst.created_in.as_secs_f64()
    );
    println!("  first creation → last bind {:8.2} s", burst.total.as_secs_f64());
    let throughput = pods as f64 / burst.total.as_secs_f64();
    println!(
        "  scheduling throughput      {throughput:8.0} pods/s   ({:.2}× the 500 pods/s target, {:.2}× upstream's 270)",
        throughput / 500.0,
        throughput / 270.0
    );
    println!(
        "  creation → bound latency   p50 {:7.1} ms   p99 {:7.1} ms   (creation outpaces binding: mostly time in the queue)",
        ms(burst.quantile(0.50)),
        ms(burst.quantile(0.99)),
    );
    println!(
        "paced: {paced_pods} pods created open loop at {PACED_RATE:.0}/s (latency from each pod's scheduled creation time)"
    );
    println!(
        "  creation → bound latency   p50 {:7.1} ms   p99 {:7.1} ms   ({:.2}× the 1 s p99 target)",
        ms(paced.quantile(0.50)),
        ms(paced.quantile(0.99)),
        paced.quantile(0.99).as_secs_f64()
    );
    match attempts {
        Some((p50, p99)) => println!(
            "  scheduling attempt latency p50 ≤ {:5.0} ms   p99 ≤ {:5.0} ms   ({:.2}× the 1 s p99 target; scheduler histogram buckets: cycle and binding)",
            p50 * 1000.0,
            p99 * 1000.0,
            p99
        ),
        None => println!("  scheduling attempt latency: no histogram in /metrics"),
    }
    Ok(())
}

/// What one phase measured.
struct Phase {
    created_in: Duration,
    /// From the first creation to the last binding.
    total: Duration,
    /// Creation (or scheduled creation, when paced) to binding, sorted.
    latencies: Vec<Duration>,
}

impl Phase {
    fn quantile(&self, q: f64) -> Duration {
        let n = self.latencies.len();
        if n == 0 {
            return Duration::ZERO;
        }
        self.latencies[((n as f64 * q).ceil() as usize).clamp(1, n) - 1]
    }
}

/// Creates `count` pods named `<prefix>-N` with CLIENTS clients, as fast as possible or paced
/// open loop at `rate` per second, and waits until every one is bound.
async fn phase(
    pod_api: &Api<Pod>,
    bound: &Arc<Mutex<HashMap<String, Instant>>>,
    prefix: &'static str,
    count: usize,
    rate: Option<f64>,
) -> Result<Phase> {
    eprintln!("{prefix}: creating {count} pods with {CLIENTS} clients ...");
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let first_create = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut creators = Vec::new();
    for _ in 0..CLIENTS {
        let (pod_api, created, next) = (pod_api.clone(), Arc::clone(&created), Arc::clone(&next));
        creators.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return Ok::<(), anyhow::Error>(());
                }
                let name = format!("{prefix}-{i:05}");
                // Open loop: a pod's latency counts from when it was due, so a client that
                // falls behind the pace shows up in the figures instead of hiding in them.
                let started = match rate {
                    Some(rate) => {
                        let due = first_create + Duration::from_secs_f64(i as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None => Instant::now(),
                };
                let pod = bench_pod(&name)?;
                pod_api.create(&PostParams::default(), &pod).await?;
                created.lock().map(|mut c| c.insert(name, started)).ok();
            }
        }));
    }
    let progress = {
        let (bound, created) = (Arc::clone(bound), Arc::clone(&created));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let c = created.lock().map(|c| c.len()).unwrap_or(0);
                let b = bound
                    .lock()
                    .map(|b| b.keys().filter(|k| k.starts_with(prefix)).count())
                    .unwrap_or(0);
                eprintln!(
                    "  {:5.1} s: {c} created, {b} bound",
                    first_create.elapsed().as_secs_f64()
                );
            }
        })
    };
    for creator in creators {
        creator.await??;
    }
    let created_in = first_create.elapsed();
    let deadline = Instant::now() + Duration::from_secs(300);
    let bound_count =
        || bound.lock().map(|b| b.keys().filter(|k| k.starts_with(prefix)).count()).unwrap_or(0);
    while bound_count() < count {
        if Instant::now() > deadline {
            progress.abort();
            bail!("{prefix}: only {} of {count} pods bound after 300 s", bound_count());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    progress.abort();
    let created = created.lock().map(|c| c.clone()).unwrap_or_default();
    let bound = bound.lock().map(|b| b.clone()).unwrap_or_default();
    let last_bound = created
        .keys()
        .filter_map(|name| bound.get(name))
        .max()
        .copied()
        .context("nothing bound")?;
    let mut latencies: Vec<Duration> = created
        .iter()
        .filter_map(|(name, at)| bound.get(name).map(|b| b.saturating_duration_since(*at)))
        .collect();
    latencies.sort();
    Ok(Phase { created_in, total: last_bound.duration_since(first_create), latencies })
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The p50 and p99 bucket bounds of the attempt-duration histogram in Prometheus text.
fn attempt_quantiles(text: &str) -> Option<(f64, f64)> {
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("scheduler_scheduling_attempt_duration_seconds_bucket"))
    {
        let bound = line.split(",le=\"").nth(1)?.split('"').next()?;
        let count: f64 = line.rsplit(' ').next()?.parse().ok()?;
        let bound = if bound == "+Inf" { f64::INFINITY } else { bound.parse().ok()? };
        buckets.push((bound, count));
    }
    let total = buckets.last()?.1;
    let at =
        |q: f64| buckets.iter().find(|(_, count)| *count >= q * total).map(|(bound, _)| *bound);
    Some((at(0.5)?, at(0.99)?))
}

fn bench_pod(name: &str) -> Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": "10m", "memory": "10Mi"}}}]}
    }))?)
}
