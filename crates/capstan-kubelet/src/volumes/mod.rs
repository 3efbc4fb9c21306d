//! A pod's volumes on the host, as upstream's volume plugins lay them out under
//! `<pod_dir>/volumes/<plugin>/<name>`: [`prepare`] makes (and on every later pod sync
//! refreshes) them, [`container_mounts`] turns a container's `volumeMounts` into CRI mounts,
//! [`teardown`] unmounts and removes them when the pod is gone.
//!
//! Supported sources: emptyDir (a directory; `medium: Memory` is a tmpfs), hostPath (with
//! its `type` checks), configMap and secret, downwardAPI, projected (configMap, secret,
//! downwardAPI and serviceAccountToken sources), and persistentVolumeClaim (and generic
//! ephemeral volumes' claims) bound to hostPath or local PersistentVolumes. configMap files
//! live on disk; secret, downwardAPI and projected volumes, like upstream, on a tmpfs so that
//! secrets never reach the disk. Their files are written by [`atomic_writer`], so a refresh
//! swaps the whole content at once, and only when it changed.
//!
//! The API objects are fetched here; what becomes of them is decided by pure functions
//! ([`payload`], [`downward_api`], [`host_path`]) tested without a server.

pub mod atomic_writer;
pub mod downward_api;
pub mod host_path;
mod mounter;
mod mounts;
pub mod payload;

pub use mounter::{FakeMounter, MountCall, MountError, Mounter, RealMounter};
pub use mounts::{container_mounts, container_mounts_with_env};

use atomic_writer::{AtomicWriteError, Payload};
use capstan_api::Quantity;
use downward_api::DownwardApiError;
use host_path::HostPathError;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Secret, ServiceAccount, Volume,
};
use kube::Api;
use kube::api::PostParams;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What the kubelet knows about the pod and its node beyond the pod object: the values the
/// downward API and memory-backed volumes need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodContext {
    pub pod_ip: Option<String>,
    pub pod_ips: Vec<String>,
    pub host_ip: Option<String>,
    /// The node's allocatable CPU and memory: the limits of containers that set none.
    pub node_allocatable_cpu_millis: i64,
    pub node_allocatable_memory_bytes: i64,
}

/// The volume plugins, each with its directory name under `<pod_dir>/volumes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VolumePlugin {
    EmptyDir,
    HostPath,
    ConfigMap,
    Secret,
    DownwardApi,
    Projected,
    PersistentVolumeClaim,
}

impl VolumePlugin {
    /// The plugin's directory under `<pod_dir>/volumes`, for the plugins that keep their
    /// volumes there (hostPath and claims point elsewhere on the host).
    pub fn dir_name(self) -> Option<&'static str> {
        match self {
            VolumePlugin::EmptyDir => Some("kubernetes.io~empty-dir"),
            VolumePlugin::ConfigMap => Some("kubernetes.io~configmap"),
            VolumePlugin::Secret => Some("kubernetes.io~secret"),
            VolumePlugin::DownwardApi => Some("kubernetes.io~downward-api"),
            VolumePlugin::Projected => Some("kubernetes.io~projected"),
            VolumePlugin::HostPath | VolumePlugin::PersistentVolumeClaim => None,
        }
    }
}

/// One prepared volume: where it is on the host and whether every mount of it is read-only
/// (configMap, secret, downwardAPI and projected volumes always are, as upstream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedVolume {
    pub host_path: PathBuf,
    pub read_only: bool,
    pub plugin: VolumePlugin,
}

/// A pod's prepared volumes by volume name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodVolumes {
    volumes: BTreeMap<String, PreparedVolume>,
}

impl PodVolumes {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, name: impl Into<String>, volume: PreparedVolume) {
        self.volumes.insert(name.into(), volume);
    }

    pub fn get(&self, name: &str) -> Option<&PreparedVolume> {
        self.volumes.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &PreparedVolume)> {
        self.volumes.iter().map(|(name, volume)| (name.as_str(), volume))
    }

    pub fn len(&self) -> usize {
        self.volumes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.volumes.is_empty()
    }
}

/// Why a pod's volumes could not be prepared, mounted into a container or torn down. The
/// message is complete as it stands (upstream's wording, naming the volume), fit for an
/// event or a container's waiting message; no cause is chained behind it.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {problem}")]
    SetUp { volume: String, problem: SetUpError },
    #[error("cannot find volume \"{volume}\" to mount into container \"{container}\"")]
    UnknownVolume { volume: String, container: String },
    #[error("error SubPath `{sub_path}` must not be an absolute path")]
    AbsoluteSubPath { sub_path: String },
    #[error("unable to provision SubPath `{sub_path}`: must not contain '..'")]
    SubPathBacksteps { sub_path: String },
    /// The detail stays out of the message, as upstream keeps host paths from the user.
    #[error("failed to prepare subPath for volumeMount \"{mount}\" of container \"{container}\"")]
    SubPath { mount: String, container: String, detail: String },
    #[error("missing value for {0}")]
    SubPathExpr(String),
    #[error("invalid MountPropagation mode: \"{0}\"")]
    Propagation(String),
    #[error("tearing down {path}: {problem}")]
    TearDown { path: PathBuf, problem: String },
}

/// Why one volume could not be set up (the part after `MountVolume.SetUp failed for volume
/// "x" : `).
#[derive(Debug, thiserror::Error)]
pub enum SetUpError {
    #[error("unsupported volume type {0}")]
    Unsupported(String),
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    #[error("configmap references non-existent config key: {0}")]
    ConfigMapKey(String),
    #[error("references non-existent secret key: {0}")]
    SecretKey(String),
    #[error("persistentvolumeclaim \"{0}\" not found")]
    ClaimNotFound(String),
    #[error("persistentvolumeclaim \"{0}\" is not bound")]
    ClaimNotBound(String),
    #[error("PVC {namespace}/{claim} was not created for pod {namespace}/{pod} (pod is not owner)")]
    ClaimNotOwned { namespace: String, claim: String, pod: String },
    #[error("persistentvolume \"{0}\" not found")]
    PersistentVolumeNotFound(String),
    #[error(
        "persistentvolume \"{0}\": unsupported volume source (only hostPath and local volumes \
         can be used)"
    )]
    UnsupportedPersistentVolume(String),
    #[error("invalid sizeLimit {0:?}")]
    SizeLimit(String),
    #[error("{what}: {message}")]
    Api { what: String, message: String },
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("the volume writer stopped: {0}")]
    Writer(String),
    #[error(transparent)]
    HostPath(#[from] HostPathError),
    #[error(transparent)]
    DownwardApi(#[from] DownwardApiError),
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
    #[error(transparent)]
    Mount(#[from] MountError),
}

/// The words of a failed API call: the Status message when the server answered.
fn api_error(what: String) -> impl FnOnce(kube::Error) -> SetUpError {
    move |error| {
        let message = match &error {
            kube::Error::Api(status) => status.message.clone(),
            other => other.to_string(),
        };
        SetUpError::Api { what, message }
    }
}

/// `<pod_dir>/volumes`.
fn volumes_dir(pod_dir: &Path) -> PathBuf {
    pod_dir.join("volumes")
}

/// Makes every volume of the pod ready on the host, or refreshes it when it already is:
/// creates directories and tmpfs mounts, checks hostPaths, (re)writes configMap, secret,
/// downwardAPI and projected contents that changed, requests service account tokens that are
/// missing or near expiry, and resolves claims to their volumes' paths. Safe to call on every
/// pod sync. Fails on the first volume that cannot be set up, naming it.
pub async fn prepare(
    client: &kube::Client,
    pod: &Pod,
    pod_dir: &Path,
    context: &PodContext,
    mounter: &dyn Mounter,
) -> Result<PodVolumes, VolumeError> {
    let mut volumes = PodVolumes::new();
    for volume in pod.spec.iter().flat_map(|spec| spec.volumes.iter().flatten()) {
        let setup = VolumeSetUp { client, pod, pod_dir, context, mounter, volume };
        let prepared = setup
            .run()
            .await
            .map_err(|problem| VolumeError::SetUp { volume: volume.name.clone(), problem })?;
        volumes.insert(volume.name.clone(), prepared);
    }
    Ok(volumes)
}

/// Unmounts every volume under `<pod_dir>/volumes` that is a mount point and removes the
/// directory. What lives elsewhere (hostPaths, claims' volumes) is left alone. A volume that
/// stays mounted stops the removal, so that nothing is ever deleted through a mount.
pub async fn teardown(pod_dir: &Path, mounter: &dyn Mounter) -> Result<(), VolumeError> {
    let root = volumes_dir(pod_dir);
    let failed =
        |path: &Path, problem: String| VolumeError::TearDown { path: path.into(), problem };
    let volume_dirs = match list_volume_dirs(&root) {
        Ok(dirs) => dirs,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(failed(&root, error.to_string())),
    };
    for dir in &volume_dirs {
        let mounted = mounter.is_mounted(dir).await.map_err(|e| failed(dir, e.to_string()))?;
        if mounted {
            mounter.unmount(dir).await.map_err(|e| failed(dir, e.to_string()))?;
            if mounter.is_mounted(dir).await.map_err(|e| failed(dir, e.to_string()))? {
                return Err(failed(dir, "still mounted after unmounting".into()));
            }
        }
    }
    match tokio::fs::remove_dir_all(&root).await {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(failed(&root, error.to_string()))
        }
        _ => Ok(()),
    }
}

/// `<root>/<plugin>/<name>` for every plugin directory and volume in it.
fn list_volume_dirs(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for plugin in std::fs::read_dir(root)? {
        let plugin = plugin?;
        if !plugin.file_type()?.is_dir() {
            continue;
        }
        for volume in std::fs::read_dir(plugin.path())? {
            let volume = volume?;
            if volume.file_type()?.is_dir() {
                dirs.push(volume.path());
            }
        }
    }
    Ok(dirs)
}

/// Setting up one volume of a pod.
struct VolumeSetUp<'a> {
    client: &'a kube::Client,
    pod: &'a Pod,
    pod_dir: &'a Path,
    context: &'a PodContext,
    mounter: &'a dyn Mounter,
    volume: &'a Volume,
}

impl VolumeSetUp<'_> {
    async fn run(&self) -> Result<PreparedVolume, SetUpError> {
        let volume = self.volume;
        if let Some(host_path) = &volume.host_path {
            let path = PathBuf::from(&host_path.path);
            host_path::check_type(&path, host_path.type_.as_deref())?;
            return Ok(PreparedVolume {
                host_path: path,
                read_only: false,
                plugin: VolumePlugin::HostPath,
            });
        }
        if let Some(source) = &volume.persistent_volume_claim {
            let read_only = source.read_only.unwrap_or(false);
            return self.claim(&source.claim_name, read_only, false).await;
        }
        if volume.ephemeral.is_some() {
            let claim =
                format!("{}-{}", self.pod.metadata.name.as_deref().unwrap_or(""), volume.name);
            return self.claim(&claim, false, true).await;
        }
        if let Some(source) = &volume.config_map {
            let config_map = self.get_config_map(&source.name).await?;
            let payload = payload::config_map_payload(
                &source.name,
                config_map.as_ref(),
                source.items.as_deref(),
                source.default_mode.unwrap_or(payload::DEFAULT_MODE),
                source.optional.unwrap_or(false),
            )?;
            return self.projected(VolumePlugin::ConfigMap, payload, false).await;
        }
        if let Some(source) = &volume.secret {
            let name = source.secret_name.as_deref().unwrap_or_default();
            let secret = self.get_secret(name).await?;
            let payload = payload::secret_payload(
                name,
                secret.as_ref(),
                source.items.as_deref(),
                source.default_mode.unwrap_or(payload::DEFAULT_MODE),
                source.optional.unwrap_or(false),
            )?;
            return self.projected(VolumePlugin::Secret, payload, true).await;
        }
        if let Some(source) = &volume.downward_api {
            let payload = payload::downward_api_payload(
                self.pod,
                source.items.as_deref().unwrap_or_default(),
                source.default_mode.unwrap_or(payload::DEFAULT_MODE),
                self.context,
            )?;
            return self.projected(VolumePlugin::DownwardApi, payload, true).await;
        }
        if let Some(source) = &volume.projected {
            let default_mode = source.default_mode.unwrap_or(payload::DEFAULT_MODE);
            let mut payload = Payload::new();
            for projection in source.sources.iter().flatten() {
                payload.extend(self.projection(projection, default_mode).await?);
            }
            return self.projected(VolumePlugin::Projected, payload, true).await;
        }
        if let Some(source) = &volume.empty_dir {
            let dir = self.dir(VolumePlugin::EmptyDir);
            self.create_dir(&dir, 0o777)?;
            if source.medium.as_deref() == Some("Memory") {
                let limit = match &source.size_limit {
                    Some(limit) => Some(
                        Quantity::parse(&limit.0)
                            .map_err(|_| SetUpError::SizeLimit(limit.0.clone()))?
                            .value(),
                    ),
                    None => None,
                };
                self.ensure_tmpfs(&dir, limit).await?;
            }
            return Ok(PreparedVolume {
                host_path: dir,
                read_only: false,
                plugin: VolumePlugin::EmptyDir,
            });
        }
        match unsupported_kind(volume) {
            Some(kind) => Err(SetUpError::Unsupported(kind)),
            // A volume without a source is an emptyDir, as the API server defaults it.
            None => {
                let dir = self.dir(VolumePlugin::EmptyDir);
                self.create_dir(&dir, 0o777)?;
                Ok(PreparedVolume {
                    host_path: dir,
                    read_only: false,
                    plugin: VolumePlugin::EmptyDir,
                })
            }
        }
    }

    fn dir(&self, plugin: VolumePlugin) -> PathBuf {
        volumes_dir(self.pod_dir)
            .join(plugin.dir_name().unwrap_or("unknown"))
            .join(&self.volume.name)
    }

    fn create_dir(&self, dir: &Path, mode: u32) -> Result<(), SetUpError> {
        let io = |error| SetUpError::Io { path: dir.into(), error };
        std::fs::create_dir_all(dir).map_err(io)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(io)
    }

    /// A tmpfs on `dir` unless one is there already, as large as the smallest of the given
    /// limit, the pod's memory limit and the node's allocatable memory (upstream's
    /// `calculateEmptyDirMemorySize`).
    async fn ensure_tmpfs(&self, dir: &Path, size_limit: Option<i64>) -> Result<(), SetUpError> {
        if self.mounter.is_mounted(dir).await? {
            return Ok(());
        }
        let size = tmpfs_size(self.pod, self.context.node_allocatable_memory_bytes, size_limit);
        self.mounter.mount_tmpfs(dir, size).await?;
        Ok(())
    }

    /// Writes a file-projecting volume's payload through the atomic writer (on a tmpfs for
    /// the secret-carrying plugins).
    async fn projected(
        &self,
        plugin: VolumePlugin,
        payload: Payload,
        on_tmpfs: bool,
    ) -> Result<PreparedVolume, SetUpError> {
        let dir = self.dir(plugin);
        self.create_dir(&dir, 0o777)?;
        if on_tmpfs {
            self.ensure_tmpfs(&dir, None).await?;
        }
        let target = dir.clone();
        tokio::task::spawn_blocking(move || atomic_writer::write(&target, &payload))
            .await
            .map_err(|error| SetUpError::Writer(error.to_string()))??;
        Ok(PreparedVolume { host_path: dir, read_only: true, plugin })
    }

    async fn projection(
        &self,
        projection: &k8s_openapi::api::core::v1::VolumeProjection,
        default_mode: i32,
    ) -> Result<Payload, SetUpError> {
        if let Some(source) = &projection.config_map {
            let config_map = self.get_config_map(&source.name).await?;
            return payload::config_map_payload(
                &source.name,
                config_map.as_ref(),
                source.items.as_deref(),
                default_mode,
                source.optional.unwrap_or(false),
            );
        }
        if let Some(source) = &projection.secret {
            let secret = self.get_secret(&source.name).await?;
            return payload::secret_payload(
                &source.name,
                secret.as_ref(),
                source.items.as_deref(),
                default_mode,
                source.optional.unwrap_or(false),
            );
        }
        if let Some(source) = &projection.downward_api {
            let items = source.items.as_deref().unwrap_or_default();
            return payload::downward_api_payload(self.pod, items, default_mode, self.context);
        }
        if let Some(source) = &projection.service_account_token {
            let token = self
                .service_account_token(
                    &source.path,
                    source.audience.as_deref(),
                    source.expiration_seconds.unwrap_or(3600),
                )
                .await?;
            let file = atomic_writer::FileProjection {
                data: token,
                mode: u32::try_from(default_mode).unwrap_or(0o644) & 0o7777,
            };
            return Ok([(source.path.clone(), file)].into());
        }
        if projection.cluster_trust_bundle.is_some() {
            return Err(SetUpError::Unsupported("projected clusterTrustBundle".into()));
        }
        Ok(Payload::new())
    }

    /// The token at `path` in the volume if it is still fresh, otherwise a new one from
    /// `POST serviceaccounts/<name>/token`, bound to the pod.
    async fn service_account_token(
        &self,
        path: &str,
        audience: Option<&str>,
        expiration_seconds: i64,
    ) -> Result<Vec<u8>, SetUpError> {
        let current = self.dir(VolumePlugin::Projected).join(path);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        if let Ok(token) = tokio::fs::read(&current).await
            && payload::token_is_fresh(&token, audience, now)
        {
            return Ok(token);
        }
        let account = self
            .pod
            .spec
            .as_ref()
            .and_then(|spec| spec.service_account_name.clone())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audience
                    .filter(|a| !a.is_empty())
                    .map(|a| vec![a.to_owned()])
                    .unwrap_or_default(),
                expiration_seconds: Some(expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: self.pod.metadata.name.clone(),
                    uid: self.pod.metadata.uid.clone(),
                }),
            },
            ..Default::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), self.namespace());
        let answer = api
            .create_token_request(&account, &PostParams::default(), &request)
            .await
            .map_err(api_error(format!("requesting a token for service account {account:?}")))?;
        Ok(answer.status.map(|status| status.token).unwrap_or_default().into_bytes())
    }

    /// A claim's bound volume: its hostPath (type-checked) or local path.
    async fn claim(
        &self,
        name: &str,
        read_only: bool,
        ephemeral: bool,
    ) -> Result<PreparedVolume, SetUpError> {
        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), self.namespace());
        let claim = claims
            .get_opt(name)
            .await
            .map_err(api_error(format!("getting persistentvolumeclaim {name:?}")))?;
        let claim = claim.ok_or_else(|| SetUpError::ClaimNotFound(name.to_owned()))?;
        if ephemeral && !owned_by(&claim, self.pod) {
            return Err(SetUpError::ClaimNotOwned {
                namespace: self.namespace().to_owned(),
                claim: name.to_owned(),
                pod: self.pod.metadata.name.clone().unwrap_or_default(),
            });
        }
        let volume_name = bound_volume_name(name, &claim)?;
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        let volume = volumes
            .get_opt(&volume_name)
            .await
            .map_err(api_error(format!("getting persistentvolume {volume_name:?}")))?
            .ok_or_else(|| SetUpError::PersistentVolumeNotFound(volume_name.clone()))?;
        let host_path = persistent_volume_path(&volume_name, &volume)?;
        Ok(PreparedVolume { host_path, read_only, plugin: VolumePlugin::PersistentVolumeClaim })
    }

    fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }

    async fn get_config_map(&self, name: &str) -> Result<Option<ConfigMap>, SetUpError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), self.namespace());
        api.get_opt(name).await.map_err(api_error(format!("getting configmap {name:?}")))
    }

    async fn get_secret(&self, name: &str) -> Result<Option<Secret>, SetUpError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), self.namespace());
        api.get_opt(name).await.map_err(api_error(format!("getting secret {name:?}")))
    }
}

/// The name of the source field of a volume none of the supported plugins handles (`nfs`,
/// `csi`, `gitRepo`...), or `None` when the volume names no source at all.
fn unsupported_kind(volume: &Volume) -> Option<String> {
    let value = serde_json::to_value(volume).ok()?;
    value.as_object()?.keys().find(|key| key.as_str() != "name").cloned()
}

/// Whether a generic ephemeral volume's claim was made for this pod (the pod is its
/// controller).
fn owned_by(claim: &PersistentVolumeClaim, pod: &Pod) -> bool {
    claim.metadata.owner_references.iter().flatten().any(|owner| {
        owner.controller == Some(true) && Some(&owner.uid) == pod.metadata.uid.as_ref()
    })
}

/// The volume a claim is bound to, or why it is not usable yet.
pub fn bound_volume_name(name: &str, claim: &PersistentVolumeClaim) -> Result<String, SetUpError> {
    let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let volume_name = claim.spec.as_ref().and_then(|s| s.volume_name.clone()).unwrap_or_default();
    if !bound || volume_name.is_empty() {
        return Err(SetUpError::ClaimNotBound(name.to_owned()));
    }
    Ok(volume_name)
}

/// The host path of a PersistentVolume: its hostPath (type-checked) or local path.
pub fn persistent_volume_path(
    name: &str,
    volume: &PersistentVolume,
) -> Result<PathBuf, SetUpError> {
    let spec = volume.spec.as_ref();
    if let Some(host_path) = spec.and_then(|s| s.host_path.as_ref()) {
        let path = PathBuf::from(&host_path.path);
        host_path::check_type(&path, host_path.type_.as_deref())?;
        return Ok(path);
    }
    if let Some(local) = spec.and_then(|s| s.local.as_ref()) {
        return Ok(PathBuf::from(&local.path));
    }
    Err(SetUpError::UnsupportedPersistentVolume(name.to_owned()))
}

/// The size of a pod's tmpfs: the node's allocatable memory, lowered to the pod's memory
/// limit (when every container has one) and to the volume's own limit, each only when it is
/// positive and smaller. `None` leaves the kernel's default.
fn tmpfs_size(pod: &Pod, node_allocatable: i64, volume_limit: Option<i64>) -> Option<u64> {
    let mut size = node_allocatable;
    if let Some(pod_limit) = pod_memory_limit(pod).filter(|l| *l > 0 && (size <= 0 || *l <= size)) {
        size = pod_limit;
    }
    if let Some(limit) = volume_limit.filter(|l| *l > 0 && (size <= 0 || *l <= size)) {
        size = limit;
    }
    u64::try_from(size).ok().filter(|s| *s > 0)
}

/// The pod's memory limit as its cgroup gets it: the sum of its containers' limits (at least
/// the largest init container's), or none when a container has no limit.
fn pod_memory_limit(pod: &Pod) -> Option<i64> {
    let spec = pod.spec.as_ref()?;
    let limit = |container: &k8s_openapi::api::core::v1::Container| {
        let text = container.resources.as_ref()?.limits.as_ref()?.get("memory")?;
        Quantity::parse(&text.0).ok().map(|q| q.value())
    };
    let mut sum = 0i64;
    for container in &spec.containers {
        sum = sum.saturating_add(limit(container)?);
    }
    for container in spec.init_containers.iter().flatten() {
        sum = sum.max(limit(container)?);
    }
    Some(sum)
}

#[cfg(test)]
mod tests;
