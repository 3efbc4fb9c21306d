//! A damaged or foreign database file is refused at open with an error naming the file,
//! never served.

use anyhow::{Result, bail, ensure};
use bytes::Bytes;
use capstan_store::{EmbeddedConfig, EmbeddedStore, Store, StoreError};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Builds a closed database of a few megabytes, so damage lands on real data pages.
async fn populated_database(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("state.db");
    let store = EmbeddedStore::open(EmbeddedConfig::new(&path)).await?;
    for i in 0..3000 {
        store
            .create(&format!("/pods/default/pod-{i:05}"), Bytes::from(vec![b'p'; 1000]), None)
            .await?;
    }
    store.close().await;
    // Closing folded the write-ahead log into the file, so damage to the file is damage to
    // the data.
    ensure!(!dir.join("state.db-wal").exists(), "the store left its write-ahead log behind");
    Ok(path)
}

async fn expect_refused(path: &Path, why: &str) -> Result<()> {
    match EmbeddedStore::open(EmbeddedConfig::new(path)).await {
        Err(error @ StoreError::Corrupt { .. }) => {
            let message = error.to_string();
            ensure!(
                message.contains(&path.display().to_string()),
                "{why}: message names no file: {message}"
            );
            eprintln!("{why}: {message}");
            Ok(())
        }
        Err(other) => bail!("{why}: refused, but not as damage: {other}"),
        Ok(_) => bail!("{why}: a damaged database was opened"),
    }
}

fn overwrite(path: &Path, offset: u64, bytes: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_database_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = populated_database(dir.path()).await?;
    let len = std::fs::metadata(&path)?.len();
    std::fs::OpenOptions::new().write(true).open(&path)?.set_len(len / 2)?;
    expect_refused(&path, "truncated to half").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwritten_pages_are_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = populated_database(dir.path()).await?;
    let len = std::fs::metadata(&path)?.len();
    let garbage: Vec<u8> = (0..64 * 1024).map(|_| fastrand::u8(..)).collect();
    overwrite(&path, len / 3, &garbage)?;
    expect_refused(&path, "64 KiB of garbage in the middle").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_header_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = populated_database(dir.path()).await?;
    overwrite(&path, 0, b"not SQLite at all")?;
    expect_refused(&path, "damaged header").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_a_database_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("state.db");
    std::fs::write(&path, "apiVersion: v1\nkind: Pod\n".repeat(100))?;
    expect_refused(&path, "a YAML file").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_programs_database_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("state.db");
    let conn = rusqlite::Connection::open(&path)?;
    conn.execute_batch(
        "CREATE TABLE kine (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO kine VALUES (1, 'x');",
    )?;
    drop(conn);
    expect_refused(&path, "a foreign SQLite database").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intact_database_reopens_with_its_data() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = populated_database(dir.path()).await?;
    let store = EmbeddedStore::open(EmbeddedConfig::new(&path)).await?;
    let (kv, revision) = store.get("/pods/default/pod-02999", None).await?;
    ensure!(kv.is_some() && revision == 3001, "reopened at {revision} with {kv:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_in_use_by_another_store_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("state.db");
    let first = EmbeddedStore::open(EmbeddedConfig::new(&path)).await?;
    first.create("/a", Bytes::from("x"), None).await?;
    match EmbeddedStore::open(EmbeddedConfig::new(&path)).await {
        Err(error @ StoreError::InUse { .. }) => {
            let message = error.to_string();
            ensure!(
                message.contains(&path.display().to_string()),
                "message names no file: {message}"
            );
        }
        Err(other) => bail!("second open failed otherwise: {other}"),
        Ok(_) => bail!("two stores opened one database"),
    }
    first.close().await;
    // Once the first store has closed, the file opens again at once, with its data.
    let again = EmbeddedStore::open(EmbeddedConfig::new(&path)).await?;
    ensure!(again.get("/a", None).await?.0.is_some(), "data lost across close");
    Ok(())
}
