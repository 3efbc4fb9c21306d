//! The NodeName plugin (stub: filled in by its own change).

use crate::framework::Plugin;

/// Upstream's `NodeName` plugin.
#[derive(Debug, Default)]
pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }
}
