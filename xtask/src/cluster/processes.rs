//! The processes of a cluster `up` started, found by what their command lines say (the
//! `--data-dir` of a `capstan server` or `capstan agent`, the config of a node's containerd,
//! the socket of a container shim), so that `down` finds them after a crash as well as from
//! the pid files; and stopping them.

use anyhow::Context;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One process of the machine and its arguments.
#[derive(Debug, Clone)]
pub(crate) struct Process {
    pub(crate) pid: u32,
    pub(crate) parent: u32,
    pub(crate) args: Vec<String>,
}

impl Process {
    /// The file name of the program (`capstan`, `containerd-shim-runc-v2`).
    fn program(&self) -> &str {
        self.args.first().map_or("", |arg| arg.rsplit('/').next().unwrap_or(arg))
    }

    /// The value of `flag`, given as `flag value` or `flag=value`.
    pub(crate) fn flag(&self, flag: &str) -> Option<&str> {
        flag_value(&self.args, flag)
    }

    /// Whether this is `capstan <role> --data-dir <dir>`.
    fn is_capstan(&self, role: &str, dir: &Path) -> bool {
        self.program() == "capstan"
            && self.args.get(1).map(String::as_str) == Some(role)
            && self.flag("--data-dir").is_some_and(|d| Path::new(d) == dir)
    }
}

/// The value of `flag` in `args`, given as `flag value` or `flag=value`.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().enumerate().find_map(|(i, arg)| {
        if arg == flag {
            args.get(i + 1).map(String::as_str)
        } else {
            arg.strip_prefix(flag).and_then(|rest| rest.strip_prefix('='))
        }
    })
}

/// Every live process of the machine (zombies excluded: they are gone but for their exit
/// status).
pub(crate) fn all() -> Vec<Process> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read)
        .collect()
}

fn read(pid: u32) -> Option<Process> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (state, parent) = parse_stat(&stat)?;
    if state == 'Z' {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args = cmdline
        .split(|byte| *byte == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    Some(Process { pid, parent, args })
}

/// The state and the parent's pid from `/proc/<pid>/stat`, whose second field (the command
/// name, in parentheses) may itself hold spaces and parentheses.
fn parse_stat(stat: &str) -> Option<(char, u32)> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

/// Whether `pid` is alive (a zombie is not).
pub(crate) fn alive(pid: u32) -> bool {
    read(pid).is_some()
}

/// The pids of `capstan <role> --data-dir <dir>`: the one in `pid_file` if it is that
/// process, and any other such process (one whose pid file was lost).
pub(crate) fn capstan(role: &str, dir: &Path, pid_file: &Path) -> Vec<u32> {
    let processes = all();
    let mut pids: BTreeSet<u32> = processes
        .iter()
        .filter(|process| process.is_capstan(role, dir))
        .map(|process| process.pid)
        .collect();
    let recorded = std::fs::read_to_string(pid_file).ok().and_then(|t| t.trim().parse().ok());
    if let Some(pid) = recorded.filter(|pid| read(*pid).is_some_and(|p| p.is_capstan(role, dir))) {
        pids.insert(pid);
    }
    pids.into_iter().collect()
}

/// Running `capstan agent`s of the fixed layout (`<other>/agents/capstan-agent-<i>`) whose
/// data dir is not under `data_dir`: another `up` holds the layout's names.
pub(crate) fn foreign_agents(data_dir: &Path) -> Vec<(u32, PathBuf)> {
    all()
        .into_iter()
        .filter(|process| {
            process.program() == "capstan"
                && process.args.get(1).map(String::as_str) == Some("agent")
        })
        .filter_map(|process| {
            let dir = PathBuf::from(process.flag("--data-dir")?);
            let name = dir.file_name()?.to_str()?;
            let parent = dir.parent()?;
            let of_layout = name.starts_with(super::layout::AGENT_PREFIX)
                && parent.file_name().is_some_and(|n| n == "agents");
            (of_layout && parent.parent() != Some(data_dir)).then_some((process.pid, dir))
        })
        .collect()
}

/// The containerd a node's kubelet supervises (left running when the kubelet was killed).
pub(crate) fn containerd(node_dir: &Path) -> Vec<u32> {
    let config = node_dir.join("agent/etc/containerd/config.toml");
    all()
        .into_iter()
        .filter(|p| {
            p.program() == "containerd" && p.flag("--config").map(Path::new) == Some(&config)
        })
        .map(|p| p.pid)
        .collect()
}

/// The container shims of the containerd listening on `socket`.
pub(crate) fn shims(processes: &[Process], socket: &Path) -> Vec<Process> {
    processes
        .iter()
        .filter(|p| {
            p.program().starts_with("containerd-shim")
                && p.flag("-address").map(Path::new) == Some(socket)
        })
        .cloned()
        .collect()
}

/// Every descendant of `roots` (not the roots themselves).
pub(crate) fn descendants(processes: &[Process], roots: &[u32]) -> Vec<u32> {
    let mut found: BTreeSet<u32> = BTreeSet::new();
    let mut frontier: Vec<u32> = roots.to_vec();
    while let Some(parent) = frontier.pop() {
        for child in processes.iter().filter(|p| p.parent == parent) {
            if found.insert(child.pid) {
                frontier.push(child.pid);
            }
        }
    }
    found.into_iter().collect()
}

/// Sends `signal` to `pids` (those already gone are no error).
pub(crate) fn signal(signal: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

/// Waits until none of `pids` is alive; returns those still alive at `limit`.
pub(crate) fn wait_gone(pids: &[u32], limit: Duration) -> Vec<u32> {
    let deadline = Instant::now() + limit;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|pid| alive(*pid)).collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM, up to `grace` for them to exit, then SIGKILL for any left (saying so).
pub(crate) fn stop(pids: &[u32], what: &str, grace: Duration) -> anyhow::Result<()> {
    signal("TERM", pids);
    let left = wait_gone(pids, grace);
    if left.is_empty() {
        return Ok(());
    }
    eprintln!("    {what} did not stop within {grace:?} of SIGTERM: killing {left:?}");
    signal("KILL", &left);
    let still = wait_gone(&left, Duration::from_secs(10));
    anyhow::ensure!(still.is_empty(), "{what}: {still:?} survived SIGKILL");
    Ok(())
}

/// Writes `pid` to `pid_file`.
pub(crate) fn record(pid_file: &Path, pid: u32) -> anyhow::Result<()> {
    std::fs::write(pid_file, pid.to_string())
        .with_context(|| format!("cannot write {}", pid_file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(pid: u32, parent: u32, args: &[&str]) -> Process {
        Process { pid, parent, args: args.iter().map(|a| (*a).to_owned()).collect() }
    }

    #[test]
    fn flags_with_or_without_equals() {
        let p =
            process(1, 0, &["/usr/bin/capstan", "agent", "--data-dir=/d", "--node-ip", "1.2.3.4"]);
        assert_eq!(p.flag("--data-dir"), Some("/d"));
        assert_eq!(p.flag("--node-ip"), Some("1.2.3.4"));
        assert_eq!(p.flag("--node"), None);
        assert!(p.is_capstan("agent", Path::new("/d")));
        assert!(!p.is_capstan("server", Path::new("/d")));
        assert!(!p.is_capstan("agent", Path::new("/d/agents")));
    }

    #[test]
    fn stat_with_a_strange_command_name() {
        assert_eq!(parse_stat("42 (a) b) S 7 42 42 0"), Some(('S', 7)));
        assert_eq!(parse_stat("42 (sh) Z 1 0"), Some(('Z', 1)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn shims_of_one_socket_and_their_trees() {
        let processes = [
            process(
                10,
                1,
                &[
                    "/usr/bin/containerd-shim-runc-v2",
                    "-namespace",
                    "k8s.io",
                    "-id",
                    "a",
                    "-address",
                    "/d/sock",
                ],
            ),
            process(
                11,
                1,
                &[
                    "/usr/bin/containerd-shim-runc-v2",
                    "-namespace",
                    "k8s.io",
                    "-id",
                    "b",
                    "-address",
                    "/other/sock",
                ],
            ),
            process(20, 10, &["/pause"]),
            process(21, 10, &["httpd"]),
            process(22, 21, &["httpd"]),
            process(30, 11, &["/pause"]),
        ];
        let shims = shims(&processes, Path::new("/d/sock"));
        assert_eq!(shims.iter().map(|p| p.pid).collect::<Vec<_>>(), [10]);
        assert_eq!(descendants(&processes, &[10]), [20, 21, 22]);
    }
}
