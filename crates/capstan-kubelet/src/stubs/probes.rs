//! Temporary stand-in for the probes module (replaced at merge).
#![allow(dead_code, unused_variables, missing_docs, unreachable_pub)]
use crate::runtime::Runtime;
use k8s_openapi::api::core::v1::{Container, Pod};
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}
#[derive(Debug, Clone)]
pub enum ProbeResult {
    Success,
    Failure(String),
    Unknown(String),
}
#[derive(Debug, Clone)]
pub enum Transition {
    BecameReady,
    BecameUnready,
    Started,
    LivenessFailed,
    StartupFailed,
    Failed,
}
#[derive(Debug, Clone)]
pub struct ProbeUpdate {
    pub pod_uid: String,
    pub container_name: String,
    pub container_id: String,
    pub kind: ProbeKind,
    pub result: ProbeResult,
    pub transition: Transition,
}
pub struct ProbeTarget<'a> {
    pub runtime: &'a dyn Runtime,
    pub container_id: &'a str,
    pub pod_ip: Option<IpAddr>,
    pub container: &'a Container,
}
#[derive(Debug, Clone)]
pub struct ProbeManager;
impl ProbeManager {
    pub fn new(
        runtime: Arc<dyn Runtime>,
        updates: tokio::sync::mpsc::UnboundedSender<ProbeUpdate>,
    ) -> Self {
        ProbeManager
    }
    pub fn add_container(
        &self,
        pod: &Pod,
        container: &Container,
        container_id: &str,
        pod_ip: Option<IpAddr>,
        started_at: std::time::Instant,
    ) {
    }
    pub fn remove_container(&self, pod_uid: &str, container_name: &str) {}
    pub fn remove_pod(&self, pod_uid: &str) {}
    pub fn is_ready(&self, pod_uid: &str, container_name: &str) -> bool {
        true
    }
    pub fn is_started(&self, pod_uid: &str, container_name: &str) -> bool {
        true
    }
}
