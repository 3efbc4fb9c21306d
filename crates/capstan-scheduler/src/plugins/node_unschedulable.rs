//! The NodeUnschedulable plugin (stub: filled in by its own change).

use crate::framework::Plugin;

/// Upstream's `NodeUnschedulable` plugin.
#[derive(Debug, Default)]
pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }
}
