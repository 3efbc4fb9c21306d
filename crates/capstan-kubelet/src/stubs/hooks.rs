//! Temporary stand-in for the hooks module (replaced at merge).
#![allow(dead_code, unused_variables, missing_docs, unreachable_pub)]
use crate::probes::ProbeTarget;
use k8s_openapi::api::core::v1::LifecycleHandler;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("hook error")]
pub struct HookError;
pub async fn run_hook(
    handler: &LifecycleHandler,
    target: &ProbeTarget<'_>,
    timeout: Duration,
) -> Result<(), HookError> {
    Ok(())
}
