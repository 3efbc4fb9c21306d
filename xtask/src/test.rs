//! `cargo xtask test`: everything CI checks, in the order that fails fastest.

use crate::{apt, cargo, run_command, step};
use std::process::Command;

pub(crate) fn run() -> anyhow::Result<()> {
    apt::ensure("the tests", &[apt::BUILD, apt::TEST])?;
    step("cargo fmt --check");
    run_command(cargo().args(["fmt", "--all", "--", "--check"]))?;
    step("cargo clippy (warnings are errors)");
    run_command(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    if has_nextest() {
        step("cargo nextest run (every test)");
        run_command(cargo().args(["nextest", "run", "--workspace", "--no-fail-fast"]))?;
    } else {
        step("cargo test (every test; install cargo-nextest for parallel runs)");
        run_command(cargo().args(["test", "--workspace", "--no-fail-fast"]))?;
    }
    Ok(())
}

fn has_nextest() -> bool {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|output| output.status.success())
}
