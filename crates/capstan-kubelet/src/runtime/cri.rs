//! [`CriRuntime`]: the [`Runtime`] trait over CRI v1 gRPC on a unix socket.

use super::cri_api::image_service_client::ImageServiceClient;
use super::cri_api::runtime_service_client::RuntimeServiceClient;
use super::cri_api::{self, *};
use super::{Runtime, RuntimeError};
use async_trait::async_trait;
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

/// A CRI client. Cloning is cheap: clones share one HTTP/2 connection.
#[derive(Debug, Clone)]
pub struct CriRuntime {
    socket: PathBuf,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

impl CriRuntime {
    /// Connects to the CRI server listening on `socket`. The connection is re-established
    /// by tonic when the runtime restarts.
    pub async fn connect(socket: &Path) -> Result<Self, RuntimeError> {
        let path = socket.to_owned();
        // The URI is a placeholder: the connector below ignores it and dials the socket.
        let channel = Endpoint::from_static("http://[::1]:0")
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .map_err(|source| RuntimeError::Connect { socket: socket.to_owned(), source })?;
        Ok(CriRuntime {
            socket: socket.to_owned(),
            runtime: RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(16 * 1024 * 1024),
            images: ImageServiceClient::new(channel).max_decoding_message_size(16 * 1024 * 1024),
        })
    }

    /// The socket this client dials.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

fn call_error(operation: &'static str) -> impl FnOnce(tonic::Status) -> RuntimeError {
    move |status| RuntimeError::Call {
        operation,
        code: status.code(),
        message: status.message().to_owned(),
    }
}

#[async_trait]
impl Runtime for CriRuntime {
    async fn version(&self) -> Result<(String, String), RuntimeError> {
        let reply = self
            .runtime
            .clone()
            .version(VersionRequest { version: "v1".into() })
            .await
            .map_err(call_error("Version"))?
            .into_inner();
        Ok((reply.runtime_name, reply.runtime_version))
    }

    async fn status(&self) -> Result<StatusResponse, RuntimeError> {
        let reply = self
            .runtime
            .clone()
            .status(StatusRequest { verbose: false })
            .await
            .map_err(call_error("Status"))?;
        Ok(reply.into_inner())
    }

    async fn run_pod_sandbox(
        &self,
        config: PodSandboxConfig,
        runtime_handler: String,
    ) -> Result<String, RuntimeError> {
        let request = RunPodSandboxRequest { config: Some(config), runtime_handler };
        let reply = self
            .runtime
            .clone()
            .run_pod_sandbox(request)
            .await
            .map_err(call_error("RunPodSandbox"))?;
        Ok(reply.into_inner().pod_sandbox_id)
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<(), RuntimeError> {
        let request = StopPodSandboxRequest { pod_sandbox_id: sandbox_id.to_owned() };
        self.runtime
            .clone()
            .stop_pod_sandbox(request)
            .await
            .map_err(call_error("StopPodSandbox"))?;
        Ok(())
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<(), RuntimeError> {
        let request = RemovePodSandboxRequest { pod_sandbox_id: sandbox_id.to_owned() };
        self.runtime
            .clone()
            .remove_pod_sandbox(request)
            .await
            .map_err(call_error("RemovePodSandbox"))?;
        Ok(())
    }

    async fn pod_sandbox_status(
        &self,
        sandbox_id: &str,
    ) -> Result<PodSandboxStatusResponse, RuntimeError> {
        let request =
            PodSandboxStatusRequest { pod_sandbox_id: sandbox_id.to_owned(), verbose: false };
        let reply = self
            .runtime
            .clone()
            .pod_sandbox_status(request)
            .await
            .map_err(call_error("PodSandboxStatus"))?;
        Ok(reply.into_inner())
    }

    async fn list_pod_sandbox(
        &self,
        request: ListPodSandboxRequest,
    ) -> Result<Vec<PodSandbox>, RuntimeError> {
        let reply = self
            .runtime
            .clone()
            .list_pod_sandbox(request)
            .await
            .map_err(call_error("ListPodSandbox"))?;
        Ok(reply.into_inner().items)
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
        sandbox_config: PodSandboxConfig,
    ) -> Result<String, RuntimeError> {
        let request = CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        let reply = self
            .runtime
            .clone()
            .create_container(request)
            .await
            .map_err(call_error("CreateContainer"))?;
        Ok(reply.into_inner().container_id)
    }

    async fn start_container(&self, container_id: &str) -> Result<(), RuntimeError> {
        let request = StartContainerRequest { container_id: container_id.to_owned() };
        self.runtime
            .clone()
            .start_container(request)
            .await
            .map_err(call_error("StartContainer"))?;
        Ok(())
    }

    async fn stop_container(
        &self,
        container_id: &str,
        timeout: Duration,
    ) -> Result<(), RuntimeError> {
        let request = StopContainerRequest {
            container_id: container_id.to_owned(),
            timeout: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        };
        // The call returns when the container is gone, which may take the whole grace
        // period: give it that long plus a margin.
        let mut request = tonic::Request::new(request);
        request.set_timeout(timeout + Duration::from_secs(30));
        self.runtime.clone().stop_container(request).await.map_err(call_error("StopContainer"))?;
        Ok(())
    }

    async fn remove_container(&self, container_id: &str) -> Result<(), RuntimeError> {
        let request = RemoveContainerRequest { container_id: container_id.to_owned() };
        self.runtime
            .clone()
            .remove_container(request)
            .await
            .map_err(call_error("RemoveContainer"))?;
        Ok(())
    }

    async fn container_status(
        &self,
        container_id: &str,
    ) -> Result<ContainerStatusResponse, RuntimeError> {
        let request =
            ContainerStatusRequest { container_id: container_id.to_owned(), verbose: false };
        let reply = self
            .runtime
            .clone()
            .container_status(request)
            .await
            .map_err(call_error("ContainerStatus"))?;
        Ok(reply.into_inner())
    }

    async fn list_containers(
        &self,
        request: ListContainersRequest,
    ) -> Result<Vec<Container>, RuntimeError> {
        let reply = self
            .runtime
            .clone()
            .list_containers(request)
            .await
            .map_err(call_error("ListContainers"))?;
        Ok(reply.into_inner().containers)
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        command: Vec<String>,
        timeout: Duration,
    ) -> Result<ExecSyncResponse, RuntimeError> {
        let request = ExecSyncRequest {
            container_id: container_id.to_owned(),
            cmd: command,
            timeout: i64::try_from(timeout.as_secs().max(1)).unwrap_or(i64::MAX),
        };
        let mut request = tonic::Request::new(request);
        request.set_timeout(timeout + Duration::from_secs(10));
        let reply =
            self.runtime.clone().exec_sync(request).await.map_err(call_error("ExecSync"))?;
        Ok(reply.into_inner())
    }

    async fn exec(&self, request: ExecRequest) -> Result<String, RuntimeError> {
        let reply = self.runtime.clone().exec(request).await.map_err(call_error("Exec"))?;
        Ok(reply.into_inner().url)
    }

    async fn attach(&self, request: AttachRequest) -> Result<String, RuntimeError> {
        let reply = self.runtime.clone().attach(request).await.map_err(call_error("Attach"))?;
        Ok(reply.into_inner().url)
    }

    async fn port_forward(&self, request: PortForwardRequest) -> Result<String, RuntimeError> {
        let reply =
            self.runtime.clone().port_forward(request).await.map_err(call_error("PortForward"))?;
        Ok(reply.into_inner().url)
    }

    async fn image_status(&self, image: &str) -> Result<Option<cri_api::Image>, RuntimeError> {
        let request = ImageStatusRequest {
            image: Some(ImageSpec { image: image.to_owned(), ..ImageSpec::default() }),
            verbose: false,
        };
        let reply =
            self.images.clone().image_status(request).await.map_err(call_error("ImageStatus"))?;
        Ok(reply.into_inner().image)
    }

    async fn pull_image(
        &self,
        image: ImageSpec,
        auth: Option<AuthConfig>,
        sandbox_config: Option<PodSandboxConfig>,
    ) -> Result<String, RuntimeError> {
        let request = PullImageRequest { image: Some(image), auth, sandbox_config };
        let reply =
            self.images.clone().pull_image(request).await.map_err(call_error("PullImage"))?;
        Ok(reply.into_inner().image_ref)
    }

    async fn list_images(&self) -> Result<Vec<cri_api::Image>, RuntimeError> {
        let reply = self
            .images
            .clone()
            .list_images(ListImagesRequest { filter: None })
            .await
            .map_err(call_error("ListImages"))?;
        Ok(reply.into_inner().images)
    }

    async fn remove_image(&self, image: &str) -> Result<(), RuntimeError> {
        let request = RemoveImageRequest {
            image: Some(ImageSpec { image: image.to_owned(), ..ImageSpec::default() }),
        };
        self.images.clone().remove_image(request).await.map_err(call_error("RemoveImage"))?;
        Ok(())
    }

    async fn image_fs_used_bytes(&self) -> Result<u64, RuntimeError> {
        let reply = self
            .images
            .clone()
            .image_fs_info(ImageFsInfoRequest {})
            .await
            .map_err(call_error("ImageFsInfo"))?;
        Ok(reply
            .into_inner()
            .image_filesystems
            .iter()
            .filter_map(|fs| fs.used_bytes.as_ref())
            .map(|used| used.value)
            .sum())
    }
}
