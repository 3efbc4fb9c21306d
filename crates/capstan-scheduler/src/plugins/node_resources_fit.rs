//! The NodeResourcesFit plugin (stub: filled in by its own change).

use crate::framework::Plugin;

/// Upstream's `NodeResourcesFit` plugin.
#[derive(Debug, Default)]
pub struct NodeResourcesFit;

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }
}
