//! A container's `volumeMounts` as CRI mounts: the prepared volume's host path (with the
//! subPath joined, created when missing, and never escaping the volume), read-only when the
//! mount or the volume says so, and the mount propagation.

use super::{PodVolumes, VolumeError};
use crate::env::expand_checked;
use k8s_cri::v1::{Mount, MountPropagation};
use k8s_openapi::api::core::v1::{Container, Pod, VolumeMount};
use std::fs;
use std::path::{Component, Path, PathBuf};

/// The CRI mounts for `container`'s volumeMounts. A `subPathExpr` is expanded against no
/// variables, so one that references any fails; use [`container_mounts_with_env`] with the
/// container's environment for those.
pub fn container_mounts(
    pod: &Pod,
    volumes: &PodVolumes,
    container: &Container,
) -> Result<Vec<Mount>, VolumeError> {
    container_mounts_with_env(pod, volumes, container, &[])
}

/// [`container_mounts`], expanding `subPathExpr`s with `env` (the container's environment,
/// as [`crate::env::container_env`] made it). Every reference must resolve to a non-empty
/// value, as upstream requires.
pub fn container_mounts_with_env(
    _pod: &Pod,
    volumes: &PodVolumes,
    container: &Container,
    env: &[(String, String)],
) -> Result<Vec<Mount>, VolumeError> {
    container
        .volume_mounts
        .iter()
        .flatten()
        .map(|mount| container_mount(volumes, container, mount, env))
        .collect()
}

fn container_mount(
    volumes: &PodVolumes,
    container: &Container,
    mount: &VolumeMount,
    env: &[(String, String)],
) -> Result<Mount, VolumeError> {
    let volume = volumes.get(&mount.name).ok_or_else(|| VolumeError::UnknownVolume {
        volume: mount.name.clone(),
        container: container.name.clone(),
    })?;
    let sub_path = match mount.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
        Some(expression) => expand_checked(expression, env).map_err(VolumeError::SubPathExpr)?,
        None => mount.sub_path.clone().unwrap_or_default(),
    };
    let host_path = if sub_path.is_empty() {
        volume.host_path.clone()
    } else {
        if Path::new(&sub_path).is_absolute() {
            return Err(VolumeError::AbsoluteSubPath { sub_path });
        }
        if Path::new(&sub_path).components().any(|c| c == Component::ParentDir) {
            return Err(VolumeError::SubPathBacksteps { sub_path });
        }
        safe_sub_path(&volume.host_path, &sub_path).map_err(|detail| VolumeError::SubPath {
            mount: mount.name.clone(),
            container: container.name.clone(),
            detail,
        })?
    };
    let propagation = match mount.mount_propagation.as_deref() {
        None | Some("None") => MountPropagation::PropagationPrivate,
        Some("HostToContainer") => MountPropagation::PropagationHostToContainer,
        Some("Bidirectional") => MountPropagation::PropagationBidirectional,
        Some(other) => return Err(VolumeError::Propagation(other.to_owned())),
    };
    Ok(Mount {
        container_path: mount.mount_path.clone(),
        host_path: host_path.to_string_lossy().into_owned(),
        readonly: mount.read_only.unwrap_or(false) || volume.read_only,
        selinux_relabel: false,
        propagation: propagation as i32,
        ..Default::default()
    })
}

/// `volume/sub_path`, created as directories when missing (mode of the volume directory),
/// resolved through any symlinks, and checked to still be inside the volume: a symlink in
/// the volume must not lead the container to the rest of the host.
fn safe_sub_path(volume: &Path, sub_path: &str) -> Result<PathBuf, String> {
    let root = fs::canonicalize(volume).map_err(|e| format!("{}: {e}", volume.display()))?;
    let mode =
        fs::metadata(&root).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()));
    let mut current = root.clone();
    for component in Path::new(sub_path).components() {
        let Component::Normal(part) = component else { continue };
        let next = current.join(part);
        match fs::symlink_metadata(&next) {
            Ok(_) => {
                current =
                    fs::canonicalize(&next).map_err(|e| format!("{}: {e}", next.display()))?;
                if !current.starts_with(&root) {
                    return Err(format!("{sub_path} leads outside the volume"));
                }
            }
            Err(_) => {
                fs::create_dir(&next).map_err(|e| format!("{}: {e}", next.display()))?;
                if let Ok(mode) = mode {
                    let permissions = std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777);
                    fs::set_permissions(&next, permissions)
                        .map_err(|e| format!("{}: {e}", next.display()))?;
                }
                current = next;
            }
        }
    }
    Ok(current)
}
