//! What a node leaves behind once its `capstan` process is gone, and removing it: its
//! containerd (when capstan was killed), its containers (their shims outlive containerd by
//! design), their network namespaces, NAT rules, cgroups and IP allocations, and the mounts
//! under the node's `agent/` directory. k3s's `k3s-killall.sh` does the same for k3s;
//! here every step is scoped to the node's own data dir, socket and sandboxes, so other
//! clusters on the machine are untouched. The node's next start finds its sandboxes gone,
//! as after a reboot, and makes them again.

use super::processes;
use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// What [`sweep`] removed.
#[derive(Debug, Default)]
pub(crate) struct Swept {
    pub(crate) processes: usize,
    pub(crate) pod_netns: usize,
    pub(crate) mounts: usize,
}

/// Removes what the node with data dir `dir` left behind; `in_host_netns` says whether the
/// node ran in the host's network namespace (the server's node), whose NAT rules for its
/// pods then need removing too (an agent's go with its namespace).
pub(crate) fn sweep(dir: &Path, in_host_netns: bool) -> anyhow::Result<Swept> {
    let mut swept = Swept::default();
    let containerd = processes::containerd(dir);
    processes::stop(&containerd, "containerd", Duration::from_secs(10))?;
    swept.processes += containerd.len();

    let all = processes::all();
    let shims = processes::shims(&all, &dir.join("agent/run/containerd/containerd.sock"));
    let shim_pids: Vec<u32> = shims.iter().map(|shim| shim.pid).collect();
    // With runc's v2 shim, containerd runs one shim per sandbox, named by the sandbox's id.
    let sandboxes: Vec<String> =
        shims.iter().filter_map(|shim| shim.flag("-id")).map(str::to_owned).collect();
    let containers = processes::descendants(&all, &shim_pids);
    let netns: BTreeSet<u64> = containers.iter().filter_map(|pid| netns_inode(*pid)).collect();
    let cgroups: BTreeSet<String> =
        containers.iter().flat_map(|pid| kubepods_cgroups(*pid)).collect();
    let sockets: Vec<PathBuf> = shim_pids.iter().flat_map(|pid| shim_sockets(*pid)).collect();
    // runc's state of every container, named by the container's id: the last part of its
    // cgroup path (the sandboxes' among them).
    let runc_states: BTreeSet<PathBuf> = cgroups
        .iter()
        .filter_map(|path| path.rsplit('/').next())
        .filter(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|id| Path::new(RUNC_ROOT).join(id))
        .collect();
    let victims: Vec<u32> = shim_pids.iter().chain(&containers).copied().collect();
    processes::signal("KILL", &victims);
    let left = processes::wait_gone(&victims, Duration::from_secs(10));
    anyhow::ensure!(left.is_empty(), "{} containers: {left:?} survived SIGKILL", dir.display());
    swept.processes += victims.len();

    swept.pod_netns = remove_pod_netns(&netns);
    if in_host_netns {
        remove_nat_rules(&sandboxes);
    }
    for sandbox in &sandboxes {
        // libcni's cache of each attachment's result: the pod network's and loopback's.
        for file in [format!("capstan-{sandbox}-eth0"), format!("cni-loopback-{sandbox}-lo")] {
            let _ = std::fs::remove_file(Path::new("/var/lib/cni/results").join(file));
        }
    }
    remove_cgroups(&cgroups);
    // What the shims and runc remove when a container stops normally.
    for socket in &sockets {
        let _ = std::fs::remove_file(socket);
    }
    for state in &runc_states {
        let _ = std::fs::remove_dir_all(state);
    }
    // host-local's allocations: every sandbox they were for is gone.
    let ipam = dir.join("agent/cni/ipam");
    if ipam.exists() {
        std::fs::remove_dir_all(&ipam)?;
    }
    swept.mounts = unmount_under(&dir.join("agent"));
    Ok(swept)
}

/// Where runc keeps the state of the containers of containerd's `k8s.io` namespace (the
/// runc shim's default root, which the generated containerd config keeps).
const RUNC_ROOT: &str = "/run/containerd/runc/k8s.io";
/// Where containerd's shims make their sockets.
const SHIM_SOCKETS: &str = "/run/containerd/s/";

/// The socket files `pid` (a shim) has open under [`SHIM_SOCKETS`], found through the
/// inodes of its socket descriptors in its network namespace's `/proc/net/unix`.
fn shim_sockets(pid: u32) -> Vec<PathBuf> {
    let inodes: BTreeSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter_map(|link| {
                    link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
                })
                .collect()
        })
        .unwrap_or_default();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).unwrap_or_default();
    unix_socket_paths(&table, &inodes)
}

/// The paths under [`SHIM_SOCKETS`] of the sockets in `table` (`/proc/net/unix`) whose
/// inode is one of `inodes`.
fn unix_socket_paths(table: &str, inodes: &BTreeSet<u64>) -> Vec<PathBuf> {
    let mut paths: BTreeSet<PathBuf> = BTreeSet::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let (Some(inode), Some(path)) = (fields.get(6), fields.get(7))
            && inode.parse().is_ok_and(|inode: u64| inodes.contains(&inode))
            && path.starts_with(SHIM_SOCKETS)
        {
            paths.insert(PathBuf::from(path));
        }
    }
    paths.into_iter().collect()
}

/// The inode of `pid`'s network namespace (`net:[4026532281]`).
fn netns_inode(pid: u32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    link.to_str()?.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// The pods' network namespaces containerd mounted at `/var/run/netns/cni-*` that are one
/// of `inodes` (a bind-mounted namespace file has the namespace's inode).
fn remove_pod_netns(inodes: &BTreeSet<u64>) -> usize {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name.starts_with("cni-")
            && std::fs::metadata(entry.path()).is_ok_and(|m| inodes.contains(&m.ino()));
        if ours && quiet("ip", &["netns", "delete", &name]) {
            removed += 1;
        }
    }
    removed
}

/// The cgroups under `/kubepods` that `pid` is in (one path per hierarchy line).
fn kubepods_cgroups(pid: u32) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    text.lines()
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .filter(|path| path.starts_with("/kubepods/"))
        .map(str::to_owned)
        .collect()
}

/// Removes the containers' cgroups, their `pod<uid>` parents and the `/kubepods` roots, in
/// every hierarchy (runc and the kubelet would have on a normal stop). Only empty cgroups
/// can be removed, so what a node still running on the machine uses stays.
fn remove_cgroups(paths: &BTreeSet<String>) {
    let mut dirs: BTreeSet<String> = paths.clone();
    for path in paths {
        if let Some((parent, _)) = path.rsplit_once('/')
            && parent.rsplit('/').next().is_some_and(|name| name.starts_with("pod"))
        {
            dirs.insert(parent.to_owned());
        }
    }
    if !paths.is_empty() {
        dirs.extend(
            ["/kubepods/burstable", "/kubepods/besteffort", "/kubepods"].map(str::to_owned),
        );
    }
    let mut dirs: Vec<String> = dirs.into_iter().collect();
    dirs.sort_by_key(|dir| std::cmp::Reverse(dir.len()));
    let root = Path::new("/sys/fs/cgroup");
    let hierarchies: Vec<PathBuf> = if root.join("cgroup.controllers").exists() {
        vec![root.to_owned()]
    } else {
        std::fs::read_dir(root)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir() && !p.is_symlink())
                    .collect()
            })
            .unwrap_or_default()
    };
    for hierarchy in &hierarchies {
        for dir in &dirs {
            let _ = std::fs::remove_dir(hierarchy.join(dir.trim_start_matches('/')));
        }
    }
}

/// Removes the NAT rules the CNI bridge and portmap plugins added in the host's namespace
/// for `sandboxes`.
fn remove_nat_rules(sandboxes: &[String]) {
    if sandboxes.is_empty() {
        return;
    }
    let Ok(saved) = Command::new("iptables-save").args(["-t", "nat"]).output() else { return };
    let Some(script) = nat_cleanup(&String::from_utf8_lossy(&saved.stdout), sandboxes) else {
        return;
    };
    let restore = Command::new("iptables-restore")
        .arg("--noflush")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    if let Ok(mut child) = restore {
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(script.as_bytes());
        }
        if let Ok(output) = child.wait_with_output()
            && !output.status.success()
        {
            eprintln!(
                "    removing the pods' NAT rules failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
    }
}

/// The `iptables-restore --noflush` script removing `sandboxes`' rules from the nat table
/// `saved` (`iptables-save -t nat`): each rule naming a sandbox in a shared chain
/// (POSTROUTING, CNI-HOSTPORT-DNAT) is deleted, and each per-sandbox chain (`CNI-<hash>`,
/// `CNI-DN-<hash>`) flushed and deleted. `None` when there is nothing to remove.
fn nat_cleanup(saved: &str, sandboxes: &[String]) -> Option<String> {
    let own_chain = |chain: &str| chain.starts_with("CNI-") && !chain.starts_with("CNI-HOSTPORT-");
    let mut deletes = Vec::new();
    let mut chains = BTreeSet::new();
    for line in saved.lines() {
        let Some(rule) = line.strip_prefix("-A ") else { continue };
        if !sandboxes.iter().any(|id| line.contains(id.as_str())) {
            continue;
        }
        let chain = rule.split_whitespace().next().unwrap_or_default();
        if own_chain(chain) {
            chains.insert(chain.to_owned());
        } else {
            deletes.push(format!("-D {rule}"));
        }
        let mut words = rule.split_whitespace();
        if words.any(|word| word == "-j")
            && let Some(target) = words.next()
            && own_chain(target)
        {
            chains.insert(target.to_owned());
        }
    }
    if deletes.is_empty() && chains.is_empty() {
        return None;
    }
    let mut script = String::from("*nat\n");
    for delete in deletes {
        script.push_str(&delete);
        script.push('\n');
    }
    for chain in &chains {
        script.push_str(&format!("-F {chain}\n"));
    }
    for chain in &chains {
        script.push_str(&format!("-X {chain}\n"));
    }
    script.push_str("COMMIT\n");
    Some(script)
}

/// Unmounts everything mounted below `dir` (not `dir` itself), the newest mounts first;
/// returns how many.
pub(crate) fn unmount_under(dir: &Path) -> usize {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut unmounted = 0;
    for point in mount_points_under(&mountinfo, dir).iter().rev() {
        let done = quiet("umount", &[point]) || quiet("umount", &["--lazy", point]);
        if done {
            unmounted += 1;
        } else {
            eprintln!("    cannot unmount {point}");
        }
    }
    unmounted
}

/// The mount points in `mountinfo` strictly below `dir`, in mount order.
fn mount_points_under(mountinfo: &str, dir: &Path) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_octal)
        .filter(|point| {
            let point = Path::new(point);
            point.starts_with(dir) && point != dir
        })
        .collect()
}

/// Mountinfo's escapes (`\040` for a space) undone.
fn unescape_octal(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes.get(i + 1..i + 4).filter(|_| bytes[i] == b'\\');
        match escape
            .and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok())
        {
            Some(byte) => {
                out.push(byte);
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

/// Runs a command, its output discarded; whether it succeeded.
fn quiet(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat_rules_of_our_sandboxes_only() {
        let ours = "aaaa1111";
        let saved = r#"# Generated by iptables-save
*nat
:POSTROUTING ACCEPT [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
:CNI-0123 - [0:0]
:CNI-4567 - [0:0]
:CNI-DN-89ab - [0:0]
-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
-A POSTROUTING -s 10.42.0.5/32 -m comment --comment "name: \"capstan\" id: \"aaaa1111\"" -j CNI-0123
-A POSTROUTING -s 10.42.0.6/32 -m comment --comment "name: \"capstan\" id: \"bbbb2222\"" -j CNI-4567
-A CNI-0123 -d 10.42.0.0/24 -m comment --comment "name: \"capstan\" id: \"aaaa1111\"" -j ACCEPT
-A CNI-0123 ! -d 224.0.0.0/4 -m comment --comment "name: \"capstan\" id: \"aaaa1111\"" -j MASQUERADE
-A CNI-4567 -d 10.42.0.0/24 -m comment --comment "name: \"capstan\" id: \"bbbb2222\"" -j ACCEPT
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"capstan\" id: \"aaaa1111\"" -m multiport --dports 8080 -j CNI-DN-89ab
COMMIT
"#;
        let expected = r#"*nat
-D POSTROUTING -s 10.42.0.5/32 -m comment --comment "name: \"capstan\" id: \"aaaa1111\"" -j CNI-0123
-D CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"capstan\" id: \"aaaa1111\"" -m multiport --dports 8080 -j CNI-DN-89ab
-F CNI-0123
-F CNI-DN-89ab
-X CNI-0123
-X CNI-DN-89ab
COMMIT
"#;
        assert_eq!(nat_cleanup(saved, &[ours.to_owned()]).as_deref(), Some(expected));
        assert_eq!(nat_cleanup(saved, &["cccc3333".to_owned()]), None);
    }

    #[test]
    fn shim_sockets_by_inode() {
        let table = "\
Num       RefCount Protocol Flags    Type St Inode Path
000000003df1ed9b: 00000003 00000000 00000000 0001 03 2137450 /run/containerd/s/ab98
000000001fdd1d28: 00000002 00000000 00010000 0001 01 2128077 /run/containerd/s/ab98
000000007d2ab36d: 00000002 00000000 00010000 0001 01 2132694 /run/containerd/s/3982
0000000000000000: 00000002 00000000 00010000 0001 01 2128078 /tmp/other.sock
0000000000000000: 00000003 00000000 00000000 0001 03 2128079
";
        let inodes = BTreeSet::from([2137450, 2128077, 2128078, 2128079]);
        assert_eq!(unix_socket_paths(table, &inodes), [PathBuf::from("/run/containerd/s/ab98")]);
    }

    #[test]
    fn mounts_strictly_below_the_dir() {
        let mountinfo = "\
22 1 0:21 / /d rw - ext4 /dev/vda rw
30 22 0:40 / /d/agent/run/containerd/x/rootfs rw - overlay overlay rw
31 22 0:41 / /d/agent/pods/a\\040b/volumes rw - tmpfs tmpfs rw
32 1 0:42 / /dd/agent/run rw - tmpfs tmpfs rw
33 1 0:4 net:[4026532281] /run/netns/cni-1 rw - nsfs nsfs rw
";
        assert_eq!(
            mount_points_under(mountinfo, Path::new("/d")),
            ["/d/agent/run/containerd/x/rootfs", "/d/agent/pods/a b/volumes"]
        );
    }
}
