//! Finding a pod's sandbox and containers through the runtime, by the CRI labels the
//! kubelet puts on them, and the upstream-worded errors when they are not there.

use super::{Body, status};
use crate::runtime::cri_api::{
    Container, ContainerFilter, ContainerState, ListContainersRequest, ListPodSandboxRequest,
    PodSandbox, PodSandboxFilter, PodSandboxState,
};
use crate::runtime::{Runtime, RuntimeError};
use http::{Response, StatusCode};
use std::collections::HashMap;
use std::path::PathBuf;

pub(crate) const LABEL_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub(crate) const LABEL_NAME: &str = "io.kubernetes.pod.name";
pub(crate) const LABEL_UID: &str = "io.kubernetes.pod.uid";
pub(crate) const LABEL_CONTAINER: &str = "io.kubernetes.container.name";

/// A pod named in a request path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PodRef<'a> {
    pub(crate) namespace: &'a str,
    pub(crate) name: &'a str,
    pub(crate) uid: Option<&'a str>,
}

/// Why a lookup found nothing usable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LookupError {
    #[error("pod \"{namespace}/{name}\" not found")]
    PodNotFound { namespace: String, name: String },
    #[error("container \"{container}\" in pod \"{pod}\" is not available")]
    ContainerNotFound { pod: String, container: String },
    #[error("previous terminated container \"{container}\" in pod \"{pod}\" not found")]
    NoPrevious { pod: String, container: String },
    #[error("container \"{container}\" in pod \"{pod}\" has no log file")]
    NoLogPath { pod: String, container: String },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl LookupError {
    pub(crate) fn response(&self) -> Response<Body> {
        let (code, reason) = match self {
            LookupError::PodNotFound { .. } | LookupError::ContainerNotFound { .. } => {
                (StatusCode::NOT_FOUND, "NotFound")
            }
            LookupError::NoPrevious { .. } | LookupError::NoLogPath { .. } => {
                (StatusCode::BAD_REQUEST, "BadRequest")
            }
            LookupError::Runtime(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        };
        status(code, reason, self.to_string())
    }
}

fn pod_labels(pod: &PodRef<'_>) -> HashMap<String, String> {
    let mut labels = HashMap::from([
        (LABEL_NAMESPACE.to_owned(), pod.namespace.to_owned()),
        (LABEL_NAME.to_owned(), pod.name.to_owned()),
    ]);
    if let Some(uid) = pod.uid {
        labels.insert(LABEL_UID.to_owned(), uid.to_owned());
    }
    labels
}

/// The pod's sandbox: the ready one, else the newest.
pub(crate) async fn sandbox(
    runtime: &dyn Runtime,
    pod: &PodRef<'_>,
) -> Result<PodSandbox, LookupError> {
    let filter = PodSandboxFilter { label_selector: pod_labels(pod), ..Default::default() };
    let sandboxes =
        runtime.list_pod_sandbox(ListPodSandboxRequest { filter: Some(filter) }).await?;
    sandboxes
        .into_iter()
        .max_by_key(|s| (s.state == PodSandboxState::SandboxReady as i32, s.created_at))
        .ok_or_else(|| LookupError::PodNotFound {
            namespace: pod.namespace.to_owned(),
            name: pod.name.to_owned(),
        })
}

/// The pod's containers of this name, best first: running before not running, then by
/// attempt (restart count), newest first.
async fn containers(
    runtime: &dyn Runtime,
    pod: &PodRef<'_>,
    container: &str,
) -> Result<Vec<Container>, LookupError> {
    let mut labels = pod_labels(pod);
    labels.insert(LABEL_CONTAINER.to_owned(), container.to_owned());
    let filter = ContainerFilter { label_selector: labels, ..Default::default() };
    let mut found = runtime.list_containers(ListContainersRequest { filter: Some(filter) }).await?;
    if found.is_empty() {
        // Tell a missing pod from a missing container.
        sandbox(runtime, pod).await?;
        return Err(LookupError::ContainerNotFound {
            pod: pod.name.to_owned(),
            container: container.to_owned(),
        });
    }
    found.sort_by_key(|c| {
        let attempt = c.metadata.as_ref().map_or(0, |m| m.attempt);
        std::cmp::Reverse((
            c.state == ContainerState::ContainerRunning as i32,
            attempt,
            c.created_at,
        ))
    });
    Ok(found)
}

/// The container to exec in or attach to: the running one, else the latest attempt.
pub(crate) async fn container(
    runtime: &dyn Runtime,
    pod: &PodRef<'_>,
    container: &str,
) -> Result<Container, LookupError> {
    let mut found = containers(runtime, pod, container).await?;
    Ok(found.remove(0))
}

/// A container whose log is asked for.
#[derive(Debug)]
pub(crate) struct LogContainer {
    pub(crate) container_id: String,
    pub(crate) log_path: PathBuf,
}

/// The current container (or with `previous`, the latest exited attempt before it) and
/// its log file.
pub(crate) async fn log_container(
    runtime: &dyn Runtime,
    pod: &PodRef<'_>,
    container: &str,
    previous: bool,
) -> Result<LogContainer, LookupError> {
    let found = containers(runtime, pod, container).await?;
    let attempt = |c: &Container| c.metadata.as_ref().map_or(0, |m| m.attempt);
    let chosen = if previous {
        let current = attempt(&found[0]);
        found
            .iter()
            .filter(|c| attempt(c) < current && c.state != ContainerState::ContainerRunning as i32)
            .max_by_key(|c| (attempt(c), c.created_at))
            .ok_or_else(|| LookupError::NoPrevious {
                pod: pod.name.to_owned(),
                container: container.to_owned(),
            })?
    } else {
        &found[0]
    };
    let status = runtime.container_status(&chosen.id).await?;
    let log_path =
        status.status.map(|s| s.log_path).filter(|path| !path.is_empty()).ok_or_else(|| {
            LookupError::NoLogPath { pod: pod.name.to_owned(), container: container.to_owned() }
        })?;
    Ok(LogContainer { container_id: chosen.id.clone(), log_path: PathBuf::from(log_path) })
}
