//! `cargo xtask bench proxy`: the nftables service proxy at scale.
//!
//! 1. Sync costs as Services grow (10 endpoints each): a full sync (the whole table in one
//!    nft transaction) beside incremental ones (one endpoint added to one Service, 21 times,
//!    median and slowest), both applied to the kernel in a table of the benchmark's own.
//! 2. Endpoint change → rule live: a `capstan server` (API only) holding 1,000 Services × 10
//!    endpoints, the proxy running against it; 50 times an EndpointSlice gains an address and
//!    the time until nftables has applied a change containing it is recorded (p50/p99).
//!    `CAPSTAN_BENCH_SERVICES` changes the 1,000.

use anyhow::{Result, ensure};
use capstan_proxy::{ElementBatch, Nft, NftError, SystemNft};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LOG: &str = "warn,capstan=info";

#[path = "common/process.rs"]
mod process;

use process::Process;

/// An `Nft` that applies through the real one and remembers when each script or element
/// batch finished, with its text.
#[derive(Debug)]
struct Timed {
    inner: SystemNft,
    applied: Mutex<Vec<(Instant, String)>>,
}

impl Nft for Timed {
    fn apply(&self, script: &str) -> Result<(), NftError> {
        let result = self.inner.apply(script);
        if result.is_ok()
            && let Ok(mut applied) = self.applied.lock()
        {
            applied.push((Instant::now(), script.to_owned()));
        }
        result
    }
    fn apply_elements(&self, batch: &ElementBatch) -> Result<(), NftError> {
        let result = self.inner.apply_elements(batch);
        if result.is_ok()
            && let Ok(mut applied) = self.applied.lock()
        {
            applied.push((Instant::now(), batch.to_string()));
        }
        result
    }
    fn list_table(
        &self,
        family: capstan_proxy::IpFamily,
        table: &str,
    ) -> Result<Option<String>, NftError> {
        self.inner.list_table(family, table)
    }
}

fn main() -> Result<()> {
    let services: usize =
        std::env::var("CAPSTAN_BENCH_SERVICES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let table = format!("capbench{}", std::process::id());
    println!("nftables proxy: sync costs (10 endpoints per Service, applied to the kernel)");
    println!(
        "  {:>8} {:>12} {:>12} {:>14} {:>12} {:>24}",
        "services", "full", "full script", "incr. p50", "incr. max", "incremental change"
    );
    for size in [100, 1000, 5000] {
        let nft: Arc<dyn Nft> = Arc::new(SystemNft::default());
        let costs = capstan_proxy::bench_kernel_sync(Arc::clone(&nft), &table, size, 10);
        let _ = capstan_proxy::delete_table(nft.as_ref(), &table);
        let costs = costs?;
        println!(
            "  {:>8} {:>9.1} ms {:>8} KiB {:>11.2} ms {:>9.2} ms {:>10} elements, {} B script",
            size,
            costs.full.as_secs_f64() * 1000.0,
            costs.full_script_bytes / 1024,
            costs.incremental.as_secs_f64() * 1000.0,
            costs.incremental_max.as_secs_f64() * 1000.0,
            costs.incremental_elements,
            costs.incremental_script_bytes,
        );
    }

    let dir = tempfile::tempdir()?;
    let server = Process::start(
        &[
            "server",
            "--data-dir",
            &dir.path().display().to_string(),
            "--https-listen-port",
            "0",
            "--bind-address",
            "127.0.0.1",
            "--disable-agent",
            "--disable-scheduler",
            "--write-kubeconfig",
            &dir.path().join("kubeconfig.yaml").display().to_string(),
        ],
        LOG,
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let outcome = (|| {
        server.wait_for_line("API server ready", Duration::from_secs(60))?;
        runtime.block_on(latency(&dir.path().join("kubeconfig.yaml"), &table, services))
    })();
    let _ = capstan_proxy::delete_table(&SystemNft::default(), &table);
    server.terminate();
    outcome
}

async fn latency(kubeconfig: &std::path::Path, table: &str, count: usize) -> Result<()> {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = Client::try_from(config)?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let started = Instant::now();
    let mut creations = Vec::new();
    for chunk in (0..count).collect::<Vec<_>>().chunks(count.div_ceil(16)) {
        let (services, slices, chunk) = (services.clone(), slices.clone(), chunk.to_vec());
        creations.push(tokio::spawn(async move {
            for i in chunk {
                let name = format!("svc-{i}");
                let service: Service = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name},
                    "spec": {"ports": [{"port": 80, "protocol": "TCP"}]},
                }))?;
                services.create(&PostParams::default(), &service).await?;
                let endpoints: Vec<serde_json::Value> = (0..10)
                    .map(|e| serde_json::json!({"addresses": [format!("10.200.{}.{}", i % 250, e + 1)], "conditions": {"ready": true}}))
                    .collect();
                let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("{name}-1"), "labels": {"kubernetes.io/service-name": name}},
                    "addressType": "IPv4",
                    "endpoints": endpoints,
                    "ports": [{"port": 8080, "protocol": "TCP"}],
                }))?;
                slices.create(&PostParams::default(), &slice).await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for creation in creations {
        creation.await??;
    }
    println!(
        "\nendpoint change → rule live: {count} Services × 10 endpoints (created in {:.1} s)",
        started.elapsed().as_secs_f64()
    );

    let nft = Arc::new(Timed { inner: SystemNft::default(), applied: Mutex::new(Vec::new()) });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let config = capstan_proxy::ProxyConfig {
        node_name: "bench".into(),
        node_ips: vec!["127.0.0.1".parse()?],
        cluster_cidrs: vec!["10.42.0.0/16".into()],
        table_name: table.to_owned(),
        ..capstan_proxy::ProxyConfig::default()
    };
    let proxy = tokio::spawn(capstan_proxy::run(
        client.clone(),
        config,
        nft.clone() as Arc<dyn Nft>,
        stopped,
    ));
    // The first (full) sync carries every Service.
    let synced = Instant::now();
    let last_service = format!("10.200.{}.10", (count - 1) % 250);
    loop {
        let done = nft
            .applied
            .lock()
            .map(|a| a.iter().any(|(_, s)| s.contains(&last_service)))
            .unwrap_or(false);
        if done {
            break;
        }
        ensure!(
            synced.elapsed() < Duration::from_secs(120),
            "the proxy's first sync did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("  first full sync after start: {:.0} ms", synced.elapsed().as_secs_f64() * 1000.0);

    let mut latencies = Vec::new();
    for round in 0..50 {
        let i = (round * 37) % count;
        let address = format!("10.201.{}.{}", round / 250, round % 250 + 1);
        let name = format!("svc-{i}-1");
        let mut slice = slices.get(&name).await?;
        slice.endpoints.push(serde_json::from_value(
            serde_json::json!({"addresses": [address], "conditions": {"ready": true}}),
        )?);
        let changed = Instant::now();
        slices
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&serde_json::json!({"endpoints": slice.endpoints})),
            )
            .await?;
        loop {
            let live = nft
                .applied
                .lock()
                .map(|a| {
                    a.iter()
                        .rev()
                        .find(|(at, s)| *at >= changed && s.contains(&address))
                        .map(|(at, _)| *at)
                })
                .ok()
                .flatten();
            if let Some(at) = live {
                latencies.push(at.duration_since(changed));
                break;
            }
            ensure!(
                changed.elapsed() < Duration::from_secs(30),
                "endpoint {address} never reached nftables"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let _ = stop.send(true);
    let _ = proxy.await;
    latencies.sort();
    let pick = |p: f64| {
        latencies
            [((p / 100.0 * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    let (p50, p99) = (pick(50.0), pick(99.0));
    println!(
        "  50 changes: p50 {:.0} ms, p99 {:.0} ms (includes the proxy's 100 ms minimum sync interval; target: live within 1 s: {})",
        p50.as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0,
        if p99 <= Duration::from_secs(1) { "PASS" } else { "FAIL" }
    );
    Ok(())
}
