//! Capstan's developer tasks, run as `cargo xtask <task>`:
//! - `up`: install missing system packages, build, start a Capstan in the background: one
//!   node, or `--nodes N` on one machine (agents in network namespaces);
//! - `down`: stop what `up` started and remove what it left (containers, namespaces, mounts);
//! - `test`: install what the tests need, then formatting, lints and every test;
//! - `bench store`: the datastore benchmark, embedded against etcd;
//! - `bench api`: the API server benchmark, on the embedded datastore and on etcd;
//! - `bench scheduler`: the scheduler with 1,000 hollow nodes and 10,000 pods;
//! - `openapi`: regenerate capstan-api's OpenAPI schemas from k8s-openapi's types.

mod apt;
mod bench;
mod cluster;
mod openapi;
mod protobuf;
mod test;

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  up [--data-dir DIR] [--nodes N]
                          install missing packages, build, start Capstan: one node, or N
                          on this machine (the server, and N-1 agents in network
                          namespaces capstan-agent-1... on the bridge capstan0, 198.19.0.0/24)
  down [--data-dir DIR]   stop what `up` started, agents first; remove its containers,
                          namespaces, bridge and mounts (the data stays)
  test                    install what the tests need; run fmt, clippy and every test
  bench store             benchmark the embedded datastore against etcd, side by side
  bench api               benchmark the API server on the embedded datastore and on etcd
  bench scheduler         benchmark the scheduler: 1,000 hollow nodes, 10,000 pods
  bench pods              benchmark pod startup on a real node against CRI straight to containerd
  bench proxy             benchmark the nftables proxy: sync costs and endpoint change → rule live
  openapi [--check]       regenerate capstan-api's OpenAPI schemas (or check they are fresh)
  protobuf [--check]      regenerate capstan-api's protobuf descriptors (`vendor DIR`: re-vendor)
";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(error) = run(&args) {
        eprintln!("xtask: error: {error:#}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> anyhow::Result<()> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["up", rest @ ..] => {
            let (data_dir, nodes) = up_flags(rest)?;
            cluster::up(&data_dir, nodes)
        }
        ["down", rest @ ..] => cluster::down(&data_dir(rest)?),
        ["test"] => test::run(),
        ["bench", "store"] => bench::store(),
        ["bench", "api"] => bench::api(),
        ["bench", "scheduler"] => bench::scheduler(),
        ["bench", "pods"] => bench::pods(),
        ["bench", "proxy"] => bench::proxy(),
        ["openapi", flags @ ..] => openapi::run(flags),
        ["protobuf", flags @ ..] => protobuf::run(flags),
        ["bench", ..] => {
            bail!("unknown benchmark; available: store, api, scheduler, pods, proxy\n\n{USAGE}")
        }
        ["-h" | "--help" | "help"] | [] => {
            print!("{USAGE}");
            Ok(())
        }
        _ => bail!("unknown task {:?}\n\n{USAGE}", args.join(" ")),
    }
}

/// `--data-dir DIR`, or the default: `/var/lib/capstan` for root, else
/// `~/.local/share/capstan`.
fn data_dir(args: &[&str]) -> anyhow::Result<PathBuf> {
    match args {
        [] => Ok(if apt::is_root() {
            PathBuf::from("/var/lib/capstan")
        } else {
            let home = std::env::var_os("HOME").context("HOME is not set; pass --data-dir")?;
            Path::new(&home).join(".local/share/capstan")
        }),
        ["--data-dir", dir] => Ok(PathBuf::from(dir)),
        _ => bail!("unexpected arguments {args:?}\n\n{USAGE}"),
    }
}

/// `up`'s flags, in any order: `--data-dir DIR` and `--nodes N` (default 1).
fn up_flags(args: &[&str]) -> anyhow::Result<(PathBuf, usize)> {
    let mut rest: Vec<&str> = Vec::new();
    let mut nodes = 1;
    let mut words = args.iter();
    while let Some(word) = words.next() {
        match *word {
            "--nodes" => {
                let value = words.next().context("--nodes needs a number")?;
                nodes = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=cluster::MAX_NODES).contains(n))
                    .with_context(|| {
                        format!("--nodes {value}: expected 1 to {}", cluster::MAX_NODES)
                    })?;
            }
            other => rest.push(other),
        }
    }
    Ok((data_dir(&rest)?, nodes))
}

/// The workspace root (xtask's parent directory).
fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_owned()
}

/// The target directory cargo builds into.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// Prints a step header, the way every task shows its progress.
fn step(what: &str) {
    eprintln!("\n==> {what}");
}

/// Runs a command in the workspace root, failing with the command line if it fails.
fn run_command(command: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{command:?}");
    let status = command
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("cannot run {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}
