//! The NodePorts plugin (stub: filled in by its own change).

use crate::framework::Plugin;

/// Upstream's `NodePorts` plugin.
#[derive(Debug, Default)]
pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }
}
