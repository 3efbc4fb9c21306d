//! The InterPodAffinity plugin (stub: filled in by its own change).

use crate::framework::Plugin;

/// Upstream's `InterPodAffinity` plugin.
#[derive(Debug, Default)]
pub struct InterPodAffinity;

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }
}
