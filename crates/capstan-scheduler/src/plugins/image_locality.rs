//! The ImageLocality plugin (stub: filled in by its own change).

use crate::framework::Plugin;

/// Upstream's `ImageLocality` plugin.
#[derive(Debug, Default)]
pub struct ImageLocality;

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        "ImageLocality"
    }
}
