//! The embedded store's write-ahead log stays bounded under sustained writes (before the
//! writer restarted it, it grew by about 2.5 KiB per write for as long as writes went on).

use anyhow::{Result, ensure};
use bytes::Bytes;
use capstan_store::{EmbeddedConfig, EmbeddedStore, Store};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const WRITERS: usize = 16;
const UPDATES_PER_WRITER: usize = 3000;
/// The restart point (16 MiB) plus what piles up while a restart waits for its turn.
const BOUND_BYTES: u64 = 48 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_ahead_log_stays_bounded_under_sustained_writes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("state.db");
    let store = EmbeddedStore::open(EmbeddedConfig::new(&path)).await?;
    let wal = dir.path().join("state.db-wal");
    let largest = Arc::new(AtomicU64::new(0));
    let writing = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (largest, writing) = (Arc::clone(&largest), Arc::clone(&writing));
        tokio::spawn(async move {
            while writing.load(Ordering::Acquire) {
                let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
                largest.fetch_max(size, Ordering::AcqRel);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
    };
    let value = Bytes::from(vec![b'v'; 1024]);
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (store, value) = (store.clone(), value.clone());
            tokio::spawn(async move {
                let key = format!("/wal/{writer}");
                let mut kv = store.create(&key, value.clone(), None).await?;
                for _ in 0..UPDATES_PER_WRITER {
                    kv = store.update(&key, value.clone(), kv.mod_revision, None).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for writer in writers {
        writer.await??;
    }
    writing.store(false, Ordering::Release);
    sampler.await?;
    let written = (WRITERS * (UPDATES_PER_WRITER + 1)) as u64;
    let largest = largest.load(Ordering::Acquire);
    eprintln!("{written} writes; largest write-ahead log {} MiB", largest / (1024 * 1024));
    ensure!(
        largest <= BOUND_BYTES,
        "the write-ahead log grew to {largest} bytes over {written} writes"
    );
    ensure!(store.current_revision().await? == 1 + written as i64);
    Ok(())
}
