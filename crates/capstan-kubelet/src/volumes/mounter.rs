//! The mounts the kubelet makes for volumes (tmpfs for memory-backed emptyDirs, secrets,
//! downwardAPI and projected volumes), behind the [`Mounter`] trait: [`RealMounter`] runs
//! `mount`/`umount` and reads `/proc/self/mountinfo`; [`FakeMounter`] records what it was
//! asked, for tests that run without root.

use async_trait::async_trait;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// A mount operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("running {command}: {error}")]
    Spawn { command: String, error: std::io::Error },
    #[error("{command} failed ({status}): {stderr}")]
    Failed { command: String, status: std::process::ExitStatus, stderr: String },
    #[error("reading /proc/self/mountinfo: {0}")]
    MountInfo(std::io::Error),
}

/// Mounting and unmounting volume directories.
#[async_trait]
pub trait Mounter: Send + Sync + std::fmt::Debug {
    /// Mounts a new tmpfs on `target` (an existing directory), at most `size_bytes` large
    /// when given (otherwise the kernel's default, half the memory).
    async fn mount_tmpfs(&self, target: &Path, size_bytes: Option<u64>) -> Result<(), MountError>;
    /// Unmounts whatever is mounted on `target`.
    async fn unmount(&self, target: &Path) -> Result<(), MountError>;
    /// Whether something is mounted on `target` itself (not merely on a parent).
    async fn is_mounted(&self, target: &Path) -> Result<bool, MountError>;
}

/// Mounts for real, with the `mount` and `umount` commands (needs root).
#[derive(Debug, Clone, Default)]
pub struct RealMounter;

#[async_trait]
impl Mounter for RealMounter {
    async fn mount_tmpfs(&self, target: &Path, size_bytes: Option<u64>) -> Result<(), MountError> {
        let mut command = tokio::process::Command::new("mount");
        command.args(["-t", "tmpfs"]);
        if let Some(size) = size_bytes {
            command.args(["-o", &format!("size={size}")]);
        }
        command.arg("tmpfs").arg(target);
        run(command, format!("mount -t tmpfs tmpfs {}", target.display())).await
    }

    async fn unmount(&self, target: &Path) -> Result<(), MountError> {
        let mut command = tokio::process::Command::new("umount");
        command.arg(target);
        run(command, format!("umount {}", target.display())).await
    }

    async fn is_mounted(&self, target: &Path) -> Result<bool, MountError> {
        let mountinfo = tokio::fs::read_to_string("/proc/self/mountinfo")
            .await
            .map_err(MountError::MountInfo)?;
        let canonical = tokio::fs::canonicalize(target).await.unwrap_or_else(|_| target.into());
        Ok(mount_points(&mountinfo).any(|point| point == target || point == canonical))
    }
}

async fn run(mut command: tokio::process::Command, described: String) -> Result<(), MountError> {
    let output = command
        .output()
        .await
        .map_err(|error| MountError::Spawn { command: described.clone(), error })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(MountError::Failed {
            command: described,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// The mount points listed in a mountinfo file (the fifth field, with the kernel's octal
/// escapes of space, tab, newline and backslash undone).
fn mount_points(mountinfo: &str) -> impl Iterator<Item = PathBuf> + '_ {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_octal(field)))
}

fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match escape {
            Some(digits) => {
                let value = digits.iter().fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One call a [`FakeMounter`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountCall {
    MountTmpfs { target: PathBuf, size_bytes: Option<u64> },
    Unmount { target: PathBuf },
}

/// A [`Mounter`] that mounts nothing: it records the calls and remembers which targets are
/// "mounted", so that `is_mounted` answers consistently.
#[derive(Debug, Default)]
pub struct FakeMounter {
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    calls: Vec<MountCall>,
    mounted: BTreeSet<PathBuf>,
}

impl FakeMounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The calls received so far, in order.
    pub fn calls(&self) -> Vec<MountCall> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).calls.clone()
    }

    /// The targets currently "mounted".
    pub fn mounted(&self) -> Vec<PathBuf> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).mounted.iter().cloned().collect()
    }
}

#[async_trait]
impl Mounter for FakeMounter {
    async fn mount_tmpfs(&self, target: &Path, size_bytes: Option<u64>) -> Result<(), MountError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.calls.push(MountCall::MountTmpfs { target: target.into(), size_bytes });
        state.mounted.insert(target.into());
        Ok(())
    }

    async fn unmount(&self, target: &Path) -> Result<(), MountError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.calls.push(MountCall::Unmount { target: target.into() });
        state.mounted.remove(target);
        Ok(())
    }

    async fn is_mounted(&self, target: &Path) -> Result<bool, MountError> {
        Ok(self.state.lock().unwrap_or_else(PoisonError::into_inner).mounted.contains(target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_unescaped() {
        let mountinfo = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                         90 22 0:50 / /var/lib/a\\040b rw - tmpfs tmpfs rw,size=1024k\n";
        let points: Vec<PathBuf> = mount_points(mountinfo).collect();
        assert_eq!(points, [PathBuf::from("/"), PathBuf::from("/var/lib/a b")]);
    }

    #[tokio::test]
    async fn the_fake_records_and_remembers() {
        let fake = FakeMounter::new();
        let target = Path::new("/pods/x/volumes/kubernetes.io~empty-dir/cache");
        assert!(!fake.is_mounted(target).await.unwrap());
        fake.mount_tmpfs(target, Some(1024)).await.unwrap();
        assert!(fake.is_mounted(target).await.unwrap());
        fake.unmount(target).await.unwrap();
        assert!(!fake.is_mounted(target).await.unwrap());
        assert_eq!(
            fake.calls(),
            [
                MountCall::MountTmpfs { target: target.into(), size_bytes: Some(1024) },
                MountCall::Unmount { target: target.into() },
            ]
        );
    }
}
