//! The root_ca controller (stub: filled in by its own change).

use crate::Context;
use std::sync::Arc;

pub(crate) async fn run(_context: Arc<Context>) {}
