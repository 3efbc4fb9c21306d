//! The TaintToleration plugin (stub: filled in by its own change).

use crate::framework::Plugin;

/// Upstream's `TaintToleration` plugin.
#[derive(Debug, Default)]
pub struct TaintToleration;

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }
}
