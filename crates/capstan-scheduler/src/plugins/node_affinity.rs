//! The NodeAffinity plugin (stub: filled in by its own change).

use crate::framework::Plugin;

/// Upstream's `NodeAffinity` plugin.
#[derive(Debug, Default)]
pub struct NodeAffinity;

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }
}
