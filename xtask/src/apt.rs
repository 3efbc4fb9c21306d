//! Installing the Debian packages a task needs: with apt when run as root, otherwise a clear
//! failure with the exact command to run.

use anyhow::{Context, bail};
use std::process::Command;

/// Packages that building Capstan needs: etcd-client's build runs protoc, which needs the
/// well-known protobuf types.
pub(crate) const BUILD: &[&str] = &["protobuf-compiler", "libprotobuf-dev"];

/// Packages the tests and benchmarks need on top of the build's: a real etcd, curl for the
/// robustness test's raw requests, venv for the Python client's virtualenv, a registry and
/// skopeo for the image pull test, and script(1) (bsdutils) for `kubectl exec -it`.
pub(crate) const TEST: &[&str] =
    &["etcd-server", "curl", "python3-venv", "docker-registry", "skopeo", "bsdutils"];

/// Packages a node needs to run pods: containerd and runc, the CNI plugins, busybox-static
/// (the sandbox image and the busybox image are built from it), and iptables/iproute2 for
/// the pod network.
pub(crate) const NODE: &[&str] = &[
    "containerd",
    "runc",
    "containernetworking-plugins",
    "busybox-static",
    "iptables",
    "iproute2",
    "nftables",
];

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Makes sure every package in `groups` is installed, saying what it installs and why.
pub(crate) fn ensure(purpose: &str, groups: &[&[&str]]) -> anyhow::Result<()> {
    let missing: Vec<&str> = groups
        .iter()
        .flat_map(|group| group.iter().copied())
        .filter(|package| !installed(package))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let command = format!("apt-get install -y --no-install-recommends {}", missing.join(" "));
    if !is_root() {
        bail!(
            "{purpose} needs the Debian packages {}; install them with:\n    sudo apt-get update && sudo {command}",
            missing.join(", ")
        );
    }
    crate::step(&format!("installing Debian packages for {purpose}: {}", missing.join(" ")));
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    // A fresh machine may have no package lists yet: update once and try again.
    if !install().context("cannot run apt-get")?.success() {
        let updated = Command::new("apt-get")
            .args(["update", "-q"])
            .status()
            .context("cannot run apt-get update")?;
        if !updated.success() || !install()?.success() {
            bail!("installing packages failed; the command was:\n    {command}");
        }
    }
    Ok(())
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).contains("install ok installed"))
        .unwrap_or(false)
}
