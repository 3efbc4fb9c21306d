//! The scheduling queue (stub: filled in by its own change).
