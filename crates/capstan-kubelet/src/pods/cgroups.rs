//! Removing a pod's cgroups once it is gone. runc removes each container's cgroup but not
//! the `pod<uid>` parents it created under `/kubepods` (cgroupfs driver, cgroup v1 or v2).

use std::path::Path;

const ROOT: &str = "/sys/fs/cgroup";

/// Removes `kubepods[/qos]/pod<uid>` under every controller (empty directories only: a
/// cgroup that still has processes is kept).
pub(crate) fn remove_pod_cgroups(uid: &str) {
    let pod = format!("pod{uid}");
    for parent in ["kubepods", "kubepods/burstable", "kubepods/besteffort"] {
        for_each_hierarchy(|hierarchy| {
            let _ = std::fs::remove_dir(hierarchy.join(parent).join(&pod));
        });
    }
}

/// Removes the empty `/kubepods` hierarchy once no pod is left (kubelet shutdown).
pub(crate) fn remove_empty_roots() {
    for dir in ["kubepods/burstable", "kubepods/besteffort", "kubepods"] {
        for_each_hierarchy(|hierarchy| {
            let _ = std::fs::remove_dir(hierarchy.join(dir));
        });
    }
}

fn for_each_hierarchy(mut action: impl FnMut(&Path)) {
    let root = Path::new(ROOT);
    // cgroup v2 (unified): one hierarchy at the root.
    if root.join("cgroup.controllers").exists() {
        action(root);
        return;
    }
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                action(&path);
            }
        }
    }
}
