//! `cargo xtask bench <name>`: benchmarks that measure Capstan side by side with what it
//! replaces, in one run, and print the table README's Performance section quotes.

use crate::{apt, cargo, run_command, step};

/// The datastore benchmark (`crates/capstan-store/benches/store.rs`): the embedded store
/// against Debian's etcd. `CAPSTAN_BENCH_SECS` and `CAPSTAN_BENCH_DIR` tune it.
pub(crate) fn store() -> anyhow::Result<()> {
    apt::ensure("the store benchmark", &[apt::BUILD, apt::TEST])?;
    step("cargo bench --package capstan-store --bench store");
    run_command(cargo().args(["bench", "--package", "capstan-store", "--bench", "store"]))
}

/// The scheduler benchmark (`crates/capstan/benches/scheduler.rs`): 1,000 hollow nodes and
/// 10,000 pods; `CAPSTAN_BENCH_NODES` and `CAPSTAN_BENCH_PODS` change the sizes.
pub(crate) fn scheduler() -> anyhow::Result<()> {
    apt::ensure("the scheduler benchmark", &[apt::BUILD, apt::TEST])?;
    step("cargo bench --package capstan --bench scheduler");
    run_command(cargo().args(["bench", "--package", "capstan", "--bench", "scheduler"]))
}

/// The API server benchmark (`crates/capstan-apiserver/benches/api.rs`): create, get, list and
/// watch over HTTPS on the embedded datastore and on etcd, plus the paced-create and watch
/// fan-out targets. `CAPSTAN_BENCH_SECS` and `CAPSTAN_BENCH_DIR` tune it.
pub(crate) fn api() -> anyhow::Result<()> {
    apt::ensure("the API server benchmark", &[apt::BUILD, apt::TEST])?;
    step("cargo bench --package capstan-apiserver --bench api");
    run_command(cargo().args(["bench", "--package", "capstan-apiserver", "--bench", "api"]))
}

/// The pod startup benchmark (`crates/capstan/benches/pods.rs`): 30 pods created at once on a
/// real node, beside the same CRI sequence sent straight to containerd.
pub(crate) fn pods() -> anyhow::Result<()> {
    apt::ensure("the pod startup benchmark", &[apt::BUILD, apt::NODE])?;
    step("cargo bench --package capstan --bench pods");
    run_command(cargo().args(["bench", "--package", "capstan", "--bench", "pods"]))
}

/// The service proxy benchmark (`crates/capstan/benches/proxy.rs`): nftables sync costs as
/// Services grow, and the time from an endpoint change to its rule being live.
pub(crate) fn proxy() -> anyhow::Result<()> {
    apt::ensure("the proxy benchmark", &[apt::BUILD, apt::NODE])?;
    step("cargo bench --package capstan --bench proxy");
    run_command(cargo().args(["bench", "--package", "capstan", "--bench", "proxy"]))
}
