//! The VolumeBinding plugin (stub: filled in by its own change).

use crate::framework::Plugin;

/// Upstream's `VolumeBinding` plugin.
#[derive(Debug, Default)]
pub struct VolumeBinding;

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        "VolumeBinding"
    }
}
