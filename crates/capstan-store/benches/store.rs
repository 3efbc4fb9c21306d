//! `cargo xtask bench store`: the embedded store against a real etcd (Debian's etcd-server,
//! one member, default durability), the same workloads side by side in one run, through the
//! same `Store` trait the API server uses.
//!
//! Workloads: durable writes (compare-and-swap updates of 1 KiB values) with 1, 16 and 128
//! concurrent writers; range reads of 1,000 keys; watch delivery latency to 1,000 watchers.
//! Prints a table and the embedded/etcd ratios.
//!
//! Write workloads alternate between the backends in three rounds each, so that drift in the
//! machine falls on both alike.
//!
//! Settings come from the environment: `CAPSTAN_BENCH_SECS` (seconds per write and read
//! workload and backend, default 12; write rounds are a third of it), `CAPSTAN_BENCH_DIR` (where both stores keep their data,
//! default `/var/tmp`: it must be a real disk, not tmpfs, or fsync costs nothing),
//! `CAPSTAN_BENCH_ONLY` (`writes`, `reads` or `watch`: run only that workload).

use anyhow::{Context, Result};
use bytes::Bytes;
use capstan_store::{
    EmbeddedConfig, EmbeddedStore, EtcdConfig, EtcdStore, RangeRequest, Revision, Store,
    WatchRequest, WatchResponse,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const VALUE_BYTES: usize = 1024;
const RANGE_KEYS: usize = 1000;
const RANGE_READERS: usize = 4;
const WATCHERS: usize = 1000;
const WATCH_WRITES: usize = 200;
const WATCH_WRITE_INTERVAL: Duration = Duration::from_millis(20);

/// One measured workload on one backend.
#[derive(Debug, Clone, Copy)]
struct Figures {
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; nothing else is expected.
    let seconds: u64 =
        std::env::var("CAPSTAN_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    let run_for = Duration::from_secs(seconds);
    let base = std::env::var_os("CAPSTAN_BENCH_DIR")
        .map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run(run_for, base))
}

async fn run(run_for: Duration, base: PathBuf) -> Result<()> {
    let dir = tempfile::Builder::new().prefix("capstan-bench-").tempdir_in(&base)?;
    let etcd_dir = dir.path().to_owned();
    let etcd =
        tokio::task::spawn_blocking(move || capstan_testkit::EtcdServer::start_in(&etcd_dir))
            .await??;
    let embedded: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(EmbeddedConfig::new(dir.path().join("state.db"))).await?);
    let etcd_store: Arc<dyn Store> =
        Arc::new(EtcdStore::connect(EtcdConfig::new(vec![etcd.client_url()])).await?);
    let backends = [("embedded", embedded), ("etcd", etcd_store)];
    eprintln!(
        "capstan store benchmark: data in {}, {}s per workload, etcd 3.4 pid {}",
        dir.path().display(),
        run_for.as_secs(),
        etcd.pid()
    );

    let only = std::env::var("CAPSTAN_BENCH_ONLY").unwrap_or_default();
    let wanted = |workload: &str| only.is_empty() || only == workload;
    let mut rows: Vec<(String, Vec<Figures>)> = Vec::new();
    for writers in [1, 16, 128].into_iter().filter(|_| wanted("writes")) {
        // Alternating rounds, so that drift in the machine (its disk above all) falls on both
        // backends alike; each backend's figures pool its rounds.
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); backends.len()];
        for round in 1..=ROUNDS {
            for ((name, store), samples) in backends.iter().zip(samples.iter_mut()) {
                eprintln!("  writes, {writers} writers, {name}, round {round}/{ROUNDS} ...");
                let sample = writes(store.clone(), writers, run_for / ROUNDS)
                    .await
                    .with_context(|| format!("{name} writes"))?;
                eprintln!("    {}", show(&summarize(sample.latencies.clone(), sample.elapsed)));
                samples.push(sample);
            }
        }
        rows.push((
            format!("durable writes, {writers} writer(s)"),
            samples.into_iter().map(pool).collect(),
        ));
    }
    if wanted("reads") {
        let mut figures = Vec::new();
        for (name, store) in &backends {
            eprintln!("  range reads of {RANGE_KEYS} keys, {RANGE_READERS} readers, {name} ...");
            let measured = range_reads(store.clone(), run_for)
                .await
                .with_context(|| format!("{name} reads"))?;
            eprintln!("    {}", show(&measured));
            figures.push(measured);
        }
        rows.push((format!("range reads, {RANGE_KEYS} keys x 1 KiB"), figures));
    }
    if wanted("watch") {
        let mut figures = Vec::new();
        for (name, store) in &backends {
            eprintln!("  watch delivery to {WATCHERS} watchers, {name} ...");
            let measured =
                watch_latency(store.clone()).await.with_context(|| format!("{name} watch"))?;
            eprintln!("    {}", show(&measured));
            figures.push(measured);
        }
        rows.push((format!("watch delivery, {WATCHERS} watchers (paced: 50 writes/s)"), figures));
    }

    print_table(&rows);
    drop(backends);
    drop(etcd);
    Ok(())
}

/// Write rounds per backend and writer count.
const ROUNDS: u32 = 3;

/// The raw outcome of one round.
#[derive(Debug, Clone)]
struct Sample {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

/// One backend's figures over all its rounds.
fn pool(samples: Vec<Sample>) -> Figures {
    let elapsed = samples.iter().map(|sample| sample.elapsed).sum();
    summarize(samples.into_iter().flat_map(|sample| sample.latencies).collect(), elapsed)
}

/// `writers` tasks, each updating its own key with compare-and-swap as fast as acknowledged.
async fn writes(store: Arc<dyn Store>, writers: usize, run_for: Duration) -> Result<Sample> {
    let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
    let run_id = fastrand::u64(..);
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let store = store.clone();
            let value = value.clone();
            tokio::spawn(async move {
                let key = format!("/bench/writes/{run_id}/{writer}");
                let mut latencies = Vec::new();
                let begin = Instant::now();
                let mut kv = store.create(&key, value.clone(), None).await?;
                latencies.push(begin.elapsed());
                while started.elapsed() < run_for {
                    let begin = Instant::now();
                    kv = store.update(&key, value.clone(), kv.mod_revision, None).await?;
                    latencies.push(begin.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(Sample { latencies, elapsed: started.elapsed() })
}

/// Readers listing the same 1,000 keys over and over.
async fn range_reads(store: Arc<dyn Store>, run_for: Duration) -> Result<Figures> {
    let value = Bytes::from(vec![b'r'; VALUE_BYTES]);
    for i in 0..RANGE_KEYS {
        store.create(&format!("/bench/range/{i:05}"), value.clone(), None).await?;
    }
    let started = Instant::now();
    let tasks: Vec<_> = (0..RANGE_READERS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while started.elapsed() < run_for {
                    let begin = Instant::now();
                    let page = store
                        .range(RangeRequest {
                            prefix: "/bench/range/".into(),
                            ..Default::default()
                        })
                        .await?;
                    latencies.push(begin.elapsed());
                    anyhow::ensure!(page.kvs.len() == RANGE_KEYS, "read {} keys", page.kvs.len());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(summarize(latencies, started.elapsed()))
}

/// 1,000 watchers on one prefix; one writer updates a key under it every 20 ms. Latency is
/// from just before the write call to each watcher receiving the event. "ops/s" is
/// deliveries per second while the writes ran.
async fn watch_latency(store: Arc<dyn Store>) -> Result<Figures> {
    let prefix = format!("/bench/watch/{}/", fastrand::u64(..));
    let start = store.current_revision().await? + 1;
    let mut receivers = Vec::new();
    for _ in 0..WATCHERS {
        let mut watcher = store.watch(WatchRequest::prefix(prefix.clone(), start)).await?;
        receivers.push(tokio::spawn(async move {
            let mut received: Vec<(Revision, Instant)> = Vec::with_capacity(WATCH_WRITES);
            while received.len() < WATCH_WRITES {
                match watcher.next().await {
                    Some(Ok(WatchResponse::Events(events))) => {
                        let now = Instant::now();
                        received.extend(events.iter().map(|event| (event.revision(), now)));
                    }
                    Some(Ok(WatchResponse::Progress(_))) => {}
                    Some(Err(error)) => return Err(error.into()),
                    None => anyhow::bail!("watch ended"),
                }
            }
            anyhow::Ok(received)
        }));
    }
    // Let every watch get established before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let key = format!("{prefix}key");
    let value = Bytes::from(vec![b'w'; VALUE_BYTES]);
    let mut sent: HashMap<Revision, Instant> = HashMap::new();
    let started = Instant::now();
    let begin = Instant::now();
    let mut kv = store.create(&key, value.clone(), None).await?;
    sent.insert(kv.mod_revision, begin);
    let mut ticks = tokio::time::interval(WATCH_WRITE_INTERVAL);
    for _ in 1..WATCH_WRITES {
        ticks.tick().await;
        let begin = Instant::now();
        kv = store.update(&key, value.clone(), kv.mod_revision, None).await?;
        sent.insert(kv.mod_revision, begin);
    }
    let mut latencies = Vec::with_capacity(WATCHERS * WATCH_WRITES);
    for receiver in receivers {
        for (revision, at) in
            tokio::time::timeout(Duration::from_secs(60), receiver).await???.into_iter()
        {
            let begin = sent.get(&revision).context("an event for a revision never written")?;
            latencies.push(at.duration_since(*begin));
        }
    }
    Ok(summarize(latencies, started.elapsed()))
}

fn summarize(mut latencies: Vec<Duration>, elapsed: Duration) -> Figures {
    latencies.sort_unstable();
    let at = |fraction: f64| {
        let index = ((latencies.len() as f64 * fraction).ceil() as usize)
            .clamp(1, latencies.len().max(1))
            - 1;
        latencies.get(index).copied().unwrap_or_default()
    };
    Figures {
        ops_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

fn show(figures: &Figures) -> String {
    format!("{:.0} ops/s, p50 {}, p99 {}", figures.ops_per_sec, ms(figures.p50), ms(figures.p99))
}

fn print_table(rows: &[(String, Vec<Figures>)]) {
    println!();
    println!(
        "| workload | embedded ops/s | embedded p50 | embedded p99 | etcd ops/s | etcd p50 | etcd p99 | throughput embedded/etcd | p99 embedded/etcd |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, figures) in rows {
        let (embedded, etcd) = (figures[0], figures[1]);
        println!(
            "| {name} | {:.0} | {} | {} | {:.0} | {} | {} | {:.2}x | {:.2}x |",
            embedded.ops_per_sec,
            ms(embedded.p50),
            ms(embedded.p99),
            etcd.ops_per_sec,
            ms(etcd.p50),
            ms(etcd.p99),
            embedded.ops_per_sec / etcd.ops_per_sec,
            embedded.p99.as_secs_f64() / etcd.p99.as_secs_f64().max(f64::MIN_POSITIVE),
        );
    }
    println!();
    for (name, figures) in
        rows.iter().filter(|(name, _)| name.contains("16 writer") || name.contains("128 writer"))
    {
        let (embedded, etcd) = (figures[0], figures[1]);
        let ratio = embedded.ops_per_sec / etcd.ops_per_sec;
        let verdict = if ratio >= 2.0 && embedded.p99 <= etcd.p99 { "meets" } else { "MISSES" };
        println!(
            "target (>= 2x etcd write throughput, p99 no worse) for {name}: {ratio:.2}x, p99 {} vs {} -> {verdict}",
            ms(embedded.p99),
            ms(etcd.p99)
        );
    }
}
