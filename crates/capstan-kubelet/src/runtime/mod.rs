//! The container runtime as the kubelet sees it: the CRI v1 calls it makes, behind the
//! [`Runtime`] trait so that the pod logic can be tested against a recording fake, and
//! [`CriRuntime`], the implementation that speaks gRPC to containerd over its unix socket.

mod cri;

pub use cri::CriRuntime;
pub use k8s_cri::v1 as cri_api;

use async_trait::async_trait;
use cri_api::{
    ContainerConfig, ContainerStatusResponse, ExecRequest, ExecSyncResponse, ImageSpec,
    ListContainersRequest, ListPodSandboxRequest, PodSandboxConfig, PodSandboxStatusResponse,
    PortForwardRequest,
};
use std::path::PathBuf;
use std::time::Duration;

/// A failed runtime call: the operation and the runtime's answer.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot connect to the container runtime at {socket}")]
    Connect {
        socket: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("{operation}: {message}")]
    Call { operation: &'static str, code: tonic::Code, message: String },
}

impl RuntimeError {
    /// Whether the runtime said the object does not exist (already removed, say).
    pub fn is_not_found(&self) -> bool {
        matches!(self, RuntimeError::Call { code: tonic::Code::NotFound, .. })
            || matches!(self, RuntimeError::Call { message, .. } if message.contains("not found"))
    }
}

/// The CRI calls the kubelet makes. Each method is one CRI v1 RPC; arguments and results
/// are the CRI's own messages, so this trait adds no vocabulary of its own.
#[async_trait]
pub trait Runtime: Send + Sync + std::fmt::Debug {
    /// `Version`: the runtime's name and version, e.g. ("containerd", "1.6.20").
    async fn version(&self) -> Result<(String, String), RuntimeError>;
    /// `Status` (not verbose): the runtime's conditions, `RuntimeReady` and `NetworkReady`.
    async fn status(&self) -> Result<cri_api::StatusResponse, RuntimeError>;

    /// `RunPodSandbox`: creates and starts a sandbox; returns its id.
    async fn run_pod_sandbox(
        &self,
        config: PodSandboxConfig,
        runtime_handler: String,
    ) -> Result<String, RuntimeError>;
    /// `StopPodSandbox`: stops the sandbox and every container in it; idempotent.
    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<(), RuntimeError>;
    /// `RemovePodSandbox`: removes a stopped sandbox and its containers; idempotent.
    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<(), RuntimeError>;
    /// `PodSandboxStatus`.
    async fn pod_sandbox_status(
        &self,
        sandbox_id: &str,
    ) -> Result<PodSandboxStatusResponse, RuntimeError>;
    /// `ListPodSandbox`.
    async fn list_pod_sandbox(
        &self,
        request: ListPodSandboxRequest,
    ) -> Result<Vec<cri_api::PodSandbox>, RuntimeError>;

    /// `CreateContainer` in a sandbox; returns the container's id.
    async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
        sandbox_config: PodSandboxConfig,
    ) -> Result<String, RuntimeError>;
    /// `StartContainer`.
    async fn start_container(&self, container_id: &str) -> Result<(), RuntimeError>;
    /// `StopContainer`: SIGTERM (or the image's stop signal), SIGKILL after `timeout`.
    async fn stop_container(
        &self,
        container_id: &str,
        timeout: Duration,
    ) -> Result<(), RuntimeError>;
    /// `RemoveContainer`; idempotent.
    async fn remove_container(&self, container_id: &str) -> Result<(), RuntimeError>;
    /// `ContainerStatus`.
    async fn container_status(
        &self,
        container_id: &str,
    ) -> Result<ContainerStatusResponse, RuntimeError>;
    /// `ListContainers`.
    async fn list_containers(
        &self,
        request: ListContainersRequest,
    ) -> Result<Vec<cri_api::Container>, RuntimeError>;

    /// `ExecSync`: runs a command in a container and waits up to `timeout` for it.
    async fn exec_sync(
        &self,
        container_id: &str,
        command: Vec<String>,
        timeout: Duration,
    ) -> Result<ExecSyncResponse, RuntimeError>;
    /// `Exec`: the URL of the runtime's streaming server that runs this exec session.
    async fn exec(&self, request: ExecRequest) -> Result<String, RuntimeError>;
    /// `Attach`: the streaming URL that attaches to a container's main process.
    async fn attach(&self, request: cri_api::AttachRequest) -> Result<String, RuntimeError>;
    /// `PortForward`: the streaming URL that forwards into a sandbox's network namespace.
    async fn port_forward(&self, request: PortForwardRequest) -> Result<String, RuntimeError>;

    /// `ImageStatus`: the image's id if the runtime has it.
    async fn image_status(&self, image: &str) -> Result<Option<cri_api::Image>, RuntimeError>;
    /// `PullImage` with optional registry credentials; returns the image reference.
    async fn pull_image(
        &self,
        image: ImageSpec,
        auth: Option<cri_api::AuthConfig>,
        sandbox_config: Option<PodSandboxConfig>,
    ) -> Result<String, RuntimeError>;
    /// `ListImages`.
    async fn list_images(&self) -> Result<Vec<cri_api::Image>, RuntimeError>;
    /// `RemoveImage`.
    async fn remove_image(&self, image: &str) -> Result<(), RuntimeError>;
    /// `ImageFsInfo`: bytes used by images, for DiskPressure and image GC.
    async fn image_fs_used_bytes(&self) -> Result<u64, RuntimeError>;
}
