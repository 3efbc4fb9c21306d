//! Temporary stand-in for the volumes module (replaced at merge).
#![allow(dead_code, unused_variables, missing_docs, unreachable_pub)]
use k8s_openapi::api::core::v1::{Container, Pod};
use std::path::Path;

#[derive(Debug, Default)]
pub struct PodVolumes;
#[derive(Debug, Default, Clone)]
pub struct PodContext {
    pub pod_ip: Option<String>,
    pub pod_ips: Vec<String>,
    pub host_ip: Option<String>,
    pub node_allocatable_cpu_millis: i64,
    pub node_allocatable_memory_bytes: i64,
}
#[derive(Debug, thiserror::Error)]
#[error("volume error")]
pub struct VolumeError;
pub trait Mounter: Send + Sync + std::fmt::Debug {}
#[derive(Debug, Default)]
pub struct RealMounter;
impl Mounter for RealMounter {}
pub async fn prepare(
    client: &kube::Client,
    pod: &Pod,
    pod_dir: &Path,
    context: &PodContext,
    mounter: &dyn Mounter,
) -> Result<PodVolumes, VolumeError> {
    Ok(PodVolumes)
}
pub fn container_mounts(
    pod: &Pod,
    volumes: &PodVolumes,
    container: &Container,
) -> Result<Vec<k8s_cri::v1::Mount>, VolumeError> {
    Ok(Vec::new())
}
pub async fn teardown(pod_dir: &Path, mounter: &dyn Mounter) -> Result<(), VolumeError> {
    Ok(())
}
