//! No acknowledged write is ever lost: writers in a child process run against the embedded
//! store and are killed with SIGKILL at random moments, twenty times over one database; after
//! each kill the database must open cleanly, hold every acknowledged write exactly as
//! acknowledged, and be at a revision no lower than before.
//!
//! The child is this same test binary, run again with `CAPSTAN_CRASH_CHILD` set.

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use capstan_store::{EmbeddedConfig, EmbeddedStore, Revision, Store};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const CHILD_ENV: &str = "CAPSTAN_CRASH_CHILD";
const ROUNDS: u32 = 20;
const WRITERS: usize = 8;

/// One acknowledged write, as the child reported it.
#[derive(Debug)]
struct Ack {
    revision: Revision,
    key: String,
    value: String,
}

#[test]
fn acknowledged_writes_survive_kill_9() -> Result<()> {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        return run_child(Path::new(&path));
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("state.db");
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut floor: Revision = 1;
    let mut total_acks = 0;
    for round in 0..ROUNDS {
        let acks = run_and_kill(&path, round)?;
        ensure!(!acks.is_empty(), "round {round}: the child acknowledged nothing before the kill");
        total_acks += acks.len();
        floor = runtime
            .block_on(verify(&path, &acks, floor))
            .with_context(|| format!("round {round}"))?;
        check_integrity(&path)?;
    }
    eprintln!(
        "{ROUNDS} kill -9 rounds, {total_acks} acknowledged writes verified, final revision {floor}"
    );
    Ok(())
}

/// Runs the child writers, kills them with SIGKILL after a random time, and returns every
/// write they acknowledged.
fn run_and_kill(path: &Path, round: u32) -> Result<Vec<Ack>> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["--exact", "acknowledged_writes_survive_kill_9", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .env("CAPSTAN_CRASH_ROUND", round.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("child stdout")?;
    let reader = std::thread::spawn(move || -> Vec<Ack> {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| parse_ack(&line))
            .collect()
    });
    // Some rounds kill during start-up and recovery, most in the middle of writing.
    std::thread::sleep(Duration::from_millis(fastrand::u64(150..900)));
    child.kill()?; // SIGKILL
    child.wait()?;
    reader.join().map_err(|_| anyhow::anyhow!("ack reader panicked"))
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut parts = line.strip_prefix("ack ")?.splitn(3, ' ');
    Some(Ack {
        revision: parts.next()?.parse().ok()?,
        key: parts.next()?.to_owned(),
        value: parts.next()?.to_owned(),
    })
}

/// Reopens the store and checks every acknowledged write against it; returns the revision.
async fn verify(path: &Path, acks: &[Ack], floor: Revision) -> Result<Revision> {
    let store =
        EmbeddedStore::open(EmbeddedConfig::new(path)).await.context("reopening after kill -9")?;
    let revision = store.current_revision().await?;
    ensure!(revision >= floor, "revision went back from {floor} to {revision}");
    let newest = acks.iter().map(|ack| ack.revision).max().unwrap_or(0);
    ensure!(revision >= newest, "revision {revision} is below the acknowledged {newest}");
    for ack in acks {
        // The value as of the acknowledged revision is exactly what was acknowledged.
        let (kv, _) = store.get(&ack.key, Some(ack.revision)).await?;
        let Some(kv) = kv else { bail!("acknowledged write lost: {ack:?}") };
        ensure!(kv.mod_revision == ack.revision, "{ack:?} is at revision {}", kv.mod_revision);
        ensure!(kv.value == ack.value.as_bytes(), "{ack:?} reads back {:?}", kv.value);
    }
    store.close().await;
    Ok(revision)
}

fn check_integrity(path: &Path) -> Result<()> {
    let conn = rusqlite::Connection::open(path)?;
    let verdict: String = conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    ensure!(verdict == "ok", "integrity check: {verdict}");
    Ok(())
}

/// The child: eight writers creating keys and updating their own counter key as fast as they
/// can, printing each write once the store acknowledged it. Runs until killed.
fn run_child(path: &Path) -> Result<()> {
    let round = std::env::var("CAPSTAN_CRASH_ROUND").unwrap_or_default();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let store = EmbeddedStore::open(EmbeddedConfig::new(path)).await?;
        let writers = (0..WRITERS).map(|writer| {
            let store = store.clone();
            let round = round.clone();
            tokio::spawn(async move {
                let counter_key = format!("/crash/counter/{writer}");
                let mut counter = match store.get(&counter_key, None).await? {
                    (Some(kv), _) => kv,
                    (None, _) => store.create(&counter_key, Bytes::from("0"), None).await?,
                };
                for i in 0u64.. {
                    let key = format!("/crash/{round}/{writer}/{i}");
                    let value =
                        format!("{round}-{writer}-{i}-{}", "x".repeat((i % 7) as usize * 100));
                    let kv = store.create(&key, Bytes::from(value.clone()), None).await?;
                    ack(kv.mod_revision, &key, &value);
                    let next = format!("{round}-{i}");
                    counter = store
                        .update(&counter_key, Bytes::from(next.clone()), counter.mod_revision, None)
                        .await?;
                    ack(counter.mod_revision, &counter_key, &next);
                }
                anyhow::Ok(())
            })
        });
        for writer in writers.collect::<Vec<_>>() {
            writer.await??;
        }
        anyhow::Ok(())
    })
}

fn ack(revision: Revision, key: &str, value: &str) {
    let mut out = std::io::stdout().lock();
    // Written and flushed only after the store returned: the parent counts it as durable.
    let _ = writeln!(out, "ack {revision} {key} {value}");
    let _ = out.flush();
}
