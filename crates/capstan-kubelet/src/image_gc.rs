//! Image garbage collection, with upstream's default thresholds: when the filesystem that
//! holds the runtime's images is more than 85% full, images no container uses (oldest first
//! by the order the runtime lists them, never the sandbox image) are removed until usage is
//! below 80%. Checked every five minutes.

use crate::runtime::Runtime;
use crate::runtime::cri_api::ListContainersRequest;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const HIGH_PERCENT: u64 = 85;
const LOW_PERCENT: u64 = 80;

/// The used and total bytes of the filesystem holding `path`.
fn usage(path: &std::path::Path) -> Option<(u64, u64)> {
    let stats = rustix::fs::statvfs(path).ok()?;
    let total = stats.f_blocks.saturating_mul(stats.f_frsize);
    let free = stats.f_bavail.saturating_mul(stats.f_frsize);
    Some((total.saturating_sub(free), total))
}

/// Runs until `stop` is set.
pub async fn run(
    runtime: Arc<dyn Runtime>,
    image_root: PathBuf,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = crate::kubelet::until_stopped(&mut stop) => return,
            () = tokio::time::sleep(Duration::from_secs(300)) => {}
        }
        if let Some((used, total)) = usage(&image_root)
            && total > 0
            && used * 100 / total > HIGH_PERCENT
        {
            let goal = total * LOW_PERCENT / 100;
            collect(runtime.as_ref(), used.saturating_sub(goal)).await;
        }
    }
}

/// Removes unused images until about `bytes` are freed; returns what it freed.
pub async fn collect(runtime: &dyn Runtime, bytes: u64) -> u64 {
    let Ok(containers) = runtime.list_containers(ListContainersRequest::default()).await else {
        return 0;
    };
    let in_use: HashSet<String> = containers
        .iter()
        .flat_map(|c| {
            [c.image_ref.clone(), c.image.as_ref().map(|i| i.image.clone()).unwrap_or_default()]
        })
        .collect();
    let Ok(images) = runtime.list_images().await else { return 0 };
    let mut freed = 0;
    for image in images {
        if freed >= bytes {
            break;
        }
        let pinned =
            image.pinned || image.repo_tags.iter().any(|t| t == crate::image_archive::PAUSE_IMAGE);
        let used = in_use.contains(&image.id) || image.repo_tags.iter().any(|t| in_use.contains(t));
        if pinned || used {
            continue;
        }
        match runtime.remove_image(&image.id).await {
            Ok(()) => {
                freed += image.size;
                tracing::info!(image = ?image.repo_tags, bytes = image.size, "removed an unused image");
            }
            Err(error) => tracing::debug!(image = %image.id, %error, "cannot remove an image"),
        }
    }
    freed
}
