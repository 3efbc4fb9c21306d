//! The PodTopologySpread plugin (stub: filled in by its own change).

use crate::framework::Plugin;

/// Upstream's `PodTopologySpread` plugin.
#[derive(Debug, Default)]
pub struct PodTopologySpread;

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }
}
