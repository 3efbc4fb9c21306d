//! The NodeResourcesBalancedAllocation plugin (stub: filled in by its own change).

use crate::framework::Plugin;

/// Upstream's `NodeResourcesBalancedAllocation` plugin.
#[derive(Debug, Default)]
pub struct BalancedAllocation;

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }
}
