//! `cargo xtask test`: everything CI checks, in the order that fails fastest.

use crate::{apt, cargo, run_command, step, workspace_root};
use anyhow::Context;
use std::path::PathBuf;
use std::process::Command;

/// The Python `kubernetes` client the Python end-to-end test drives, pinned.
const PYTHON_CLIENT: &str = "kubernetes==37.0.2";

pub(crate) fn run() -> anyhow::Result<()> {
    apt::ensure("the tests", &[apt::BUILD, apt::TEST, apt::NODE])?;
    let python = python_client()?;
    step("cargo fmt --check");
    run_command(cargo().args(["fmt", "--all", "--", "--check"]))?;
    step("cargo clippy (warnings are errors)");
    run_command(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    if has_nextest() {
        step("cargo nextest run (every test)");
        run_command(
            cargo()
                .args(["nextest", "run", "--workspace", "--no-fail-fast"])
                .env("CAPSTAN_PYTHON", &python),
        )?;
    } else {
        step("cargo test (every test; install cargo-nextest for parallel runs)");
        run_command(
            cargo().args(["test", "--workspace", "--no-fail-fast"]).env("CAPSTAN_PYTHON", &python),
        )?;
    }
    Ok(())
}

fn has_nextest() -> bool {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// A virtualenv with the Python `kubernetes` client, beside the build's target directory
/// (so a cached target directory keeps it too); created on first use. Returns its
/// interpreter.
fn python_client() -> anyhow::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from);
    let venv = target.join("python-client");
    let python = venv.join("bin/python");
    let has_client = Command::new(&python)
        .args(["-c", "import kubernetes, sys; sys.exit(kubernetes.__version__ != '37.0.2')"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !has_client {
        step(&format!("installing the Python client ({PYTHON_CLIENT}) into {}", venv.display()));
        run_command(Command::new("/usr/bin/python3").arg("-m").arg("venv").arg(&venv))
            .context("creating the virtualenv (Debian: python3-venv)")?;
        run_command(Command::new(venv.join("bin/pip")).args(["install", "--quiet", PYTHON_CLIENT]))
            .context("installing the Python kubernetes client from PyPI")?;
    }
    Ok(python)
}
