//! The proxy's only IO: handing scripts and element changes to nftables, behind [`Nft`].
//!
//! [`SystemNft`] runs the `nft` binary for scripts and sends element changes over netlink;
//! [`RecordingNft`] records what it was asked and can be told to fail, for tests of
//! everything above it.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::elements::ElementBatch;
use crate::netlink::{self, NetlinkError};
use crate::script;
use crate::state::IpFamily;

/// Why nftables did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("nft {action} failed ({status}): {stderr}")]
    Failed { action: String, status: String, stderr: String },
    #[error("element changes failed")]
    Elements(#[from] NetlinkError),
}

/// Access to the kernel's nftables.
pub trait Nft: Send + Sync + std::fmt::Debug {
    /// Applies `script` (nft's command syntax) as one transaction: all of it, or nothing.
    fn apply(&self, script: &str) -> Result<(), NftError>;

    /// Applies `batch` (element changes of existing maps and sets) as one transaction.
    fn apply_elements(&self, batch: &ElementBatch) -> Result<(), NftError>;

    /// The ruleset of `table` in `family` as `nft list table` prints it; `None` when the
    /// table does not exist.
    fn list_table(&self, family: IpFamily, table: &str) -> Result<Option<String>, NftError>;
}

/// Deletes the proxy's tables named `table` in both families, present or not (tests,
/// uninstall). Stopping the proxy leaves them in place, so that a restart breaks no flow.
pub fn delete_table(nft: &dyn Nft, table: &str) -> Result<(), NftError> {
    nft.apply(&script::render_delete(table))
}

/// nftables through the `nft` binary, and netlink for element changes.
#[derive(Debug)]
pub struct SystemNft {
    program: PathBuf,
    /// The netlink socket of element changes, opened at the first and kept.
    netlink: Mutex<Option<netlink::Socket>>,
}

impl Default for SystemNft {
    fn default() -> Self {
        Self::new("/usr/sbin/nft")
    }
}

impl SystemNft {
    /// nftables through the binary at `program`.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self { program: program.into(), netlink: Mutex::new(None) }
    }

    fn run(&self, args: &[&str], stdin: Option<&str>, action: &str) -> Result<String, NftError> {
        let spawn_error =
            |source| NftError::Spawn { program: self.program.display().to_string(), source };
        let mut child = Command::new(&self.program)
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A failed write shows as nft's own error below (it read a truncated script).
            let _ = pipe.write_all(text.as_bytes());
        }
        let output = child.wait_with_output().map_err(spawn_error)?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        Err(NftError::Failed {
            action: action.to_owned(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

impl Nft for SystemNft {
    fn apply(&self, script: &str) -> Result<(), NftError> {
        self.run(&["-f", "-"], Some(script), "-f -").map(drop)
    }

    fn apply_elements(&self, batch: &ElementBatch) -> Result<(), NftError> {
        let mut socket = self.netlink.lock().unwrap_or_else(PoisonError::into_inner);
        let open = match socket.as_mut() {
            Some(open) => open,
            None => socket.insert(netlink::Socket::open()?),
        };
        match open.apply(batch) {
            Ok(()) => Ok(()),
            Err(error) => {
                if !matches!(error, NetlinkError::Refused { .. } | NetlinkError::Commit(_)) {
                    // In an unknown state: the next batch opens a new one.
                    *socket = None;
                }
                Err(error.into())
            }
        }
    }

    fn list_table(&self, family: IpFamily, table: &str) -> Result<Option<String>, NftError> {
        match self.run(&["list", "table", family.nft(), table], None, "list table") {
            Ok(listing) => Ok(Some(listing)),
            Err(NftError::Failed { stderr, .. })
                if stderr.contains("No such file or directory") =>
            {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }
}

/// A fake that records every script and element batch, and fails when told to.
#[derive(Debug, Default)]
pub struct RecordingNft {
    inner: Mutex<Recording>,
}

#[derive(Debug, Default)]
struct Recording {
    scripts: Vec<String>,
    batches: Vec<String>,
    failures: VecDeque<String>,
}

impl RecordingNft {
    pub fn new() -> Self {
        Self::default()
    }

    /// The scripts applied (or refused) so far, oldest first.
    pub fn scripts(&self) -> Vec<String> {
        self.lock().scripts.clone()
    }

    /// The element batches applied (or refused) so far, oldest first, as nft commands.
    pub fn batches(&self) -> Vec<String> {
        self.lock().batches.clone()
    }

    /// The next `apply` or `apply_elements` fails with `stderr` (each call queues one
    /// failure).
    pub fn fail_next(&self, stderr: &str) {
        self.lock().failures.push_back(stderr.to_owned());
    }

    fn lock(&self) -> MutexGuard<'_, Recording> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Nft for RecordingNft {
    fn apply(&self, script: &str) -> Result<(), NftError> {
        let mut recording = self.lock();
        recording.scripts.push(script.to_owned());
        recording.outcome()
    }

    fn apply_elements(&self, batch: &ElementBatch) -> Result<(), NftError> {
        let mut recording = self.lock();
        recording.batches.push(batch.to_string());
        recording.outcome()
    }

    fn list_table(&self, _family: IpFamily, _table: &str) -> Result<Option<String>, NftError> {
        Ok(None)
    }
}

impl Recording {
    /// The result of the call being recorded: the next queued failure, if any.
    fn outcome(&mut self) -> Result<(), NftError> {
        match self.failures.pop_front() {
            Some(stderr) => Err(NftError::Failed {
                action: "-f -".to_owned(),
                status: "exit status: 1".to_owned(),
                stderr,
            }),
            None => Ok(()),
        }
    }
}
