//! The Python `kubernetes` client (PyPI) against a real server: create, JSON patch,
//! strategic merge patch, server-side apply twice and delete-collection by label
//! (`tests/python/client.py`). `cargo xtask test` installs the client into a virtualenv and
//! names its interpreter in `CAPSTAN_PYTHON`.

mod support;

use anyhow::{Context, Result, ensure};
use std::process::{Command, Stdio};
use support::Cluster;

#[test]
fn the_python_client_works() -> Result<()> {
    let python = std::env::var("CAPSTAN_PYTHON").context(
        "CAPSTAN_PYTHON names no Python with the kubernetes client: run `cargo xtask test`, \
         which installs it",
    )?;
    let c = Cluster::start(false)?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/client.py");
    let output =
        Command::new(python).arg(script).arg(&c.kubeconfig).stdin(Stdio::null()).output()?;
    ensure!(
        output.status.success() && output.stdout == b"ok\n",
        "the Python client failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    c.stop()
}
