//! The kubelet's configuration and its entry point, [`run`]: start (or connect to) the
//! container runtime, register the node, then keep the node's heartbeats, the pods bound to
//! it and the kubelet API running until told to stop.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

/// Everything one kubelet needs to know; `capstan server` and `capstan agent` fill it
/// from their flags.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// The node's name (default: the host name).
    pub node_name: String,
    /// The addresses the node advertises as its InternalIPs, at most one per IP family, the
    /// primary first (default: the address of the interface with the default route).
    pub node_ips: Vec<IpAddr>,
    /// `<data-dir>`: the kubelet keeps everything under `<data-dir>/agent`.
    pub data_dir: PathBuf,
    /// An existing CRI socket to use instead of a supervised containerd.
    pub container_runtime_endpoint: Option<PathBuf>,
    /// The cluster CA (PEM): it signs the client certificates the kubelet API accepts.
    pub cluster_ca_pem: String,
    /// The kubelet API's address and port (default 0.0.0.0:10250).
    pub kubelet_bind: IpAddr,
    pub kubelet_port: u16,
    /// Cluster DNS servers and domain, written into pods' resolv.conf (ClusterFirst).
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    /// k3s-style `registries.yaml` (mirrors and credentials), if it exists.
    pub registries_config: PathBuf,
    /// Labels and taints the node registers with.
    pub node_labels: BTreeMap<String, String>,
    pub node_taints: Vec<k8s_openapi::api::core::v1::Taint>,
    /// The most pods the node accepts (`pods` capacity).
    pub max_pods: u32,
    /// Static pod manifests (default `<data-dir>/agent/pod-manifests`).
    pub pod_manifests_dir: PathBuf,
    /// The name of the pods' bridge (`cni0`; tests pick unique names).
    pub cni_bridge: String,
    /// Where the CNI plugins are.
    pub cni_bin_dir: PathBuf,
    /// DiskPressure when the data dir's filesystem has less than this percent free
    /// (`nodefs.available<10%`, the kubelet's default hard eviction threshold).
    pub eviction_nodefs_percent: u64,
}

impl KubeletConfig {
    /// The defaults for a node called `node_name` keeping its state under `data_dir`.
    pub fn new(node_name: String, data_dir: PathBuf, cluster_ca_pem: String) -> Self {
        let pod_manifests_dir = data_dir.join("agent/pod-manifests");
        KubeletConfig {
            node_name,
            node_ips: Vec::new(),
            data_dir,
            container_runtime_endpoint: None,
            cluster_ca_pem,
            kubelet_bind: IpAddr::from([0, 0, 0, 0]),
            kubelet_port: 10250,
            cluster_dns: vec![IpAddr::from([10, 43, 0, 10])],
            cluster_domain: "cluster.local".into(),
            registries_config: PathBuf::from("/etc/capstan/registries.yaml"),
            node_labels: BTreeMap::new(),
            node_taints: Vec::new(),
            max_pods: 110,
            pod_manifests_dir,
            cni_bridge: "cni0".into(),
            cni_bin_dir: PathBuf::from("/usr/lib/cni"),
            eviction_nodefs_percent: 10,
        }
    }

    /// `<data-dir>/agent`.
    pub fn agent_dir(&self) -> PathBuf {
        self.data_dir.join("agent")
    }
}

/// Why the kubelet could not start.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error(transparent)]
    Containerd(#[from] crate::containerd::ContainerdError),
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error(transparent)]
    Registries(#[from] crate::registries::RegistriesError),
    #[error(transparent)]
    Image(#[from] crate::image_archive::ImageError),
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
    #[error("cannot register the node")]
    Register(#[source] crate::node::NodeError),
}

/// Runs the kubelet until `stop` completes: the runtime (a supervised containerd unless
/// `container_runtime_endpoint` is set), the built-in and dropped-in images, the node's
/// registration and heartbeats, the pod network's config, and the pods.
pub async fn run(
    client: kube::Client,
    mut config: KubeletConfig,
    stop: impl std::future::Future<Output = ()> + Send,
) -> Result<(), KubeletError> {
    use crate::containerd::{Containerd, ContainerdConfig, ContainerdPaths};
    use crate::runtime::{CriRuntime, Runtime};
    use std::sync::Arc;

    let paths = ContainerdPaths::new(&config.data_dir);
    let registries = crate::registries::Registries::load(&config.registries_config)?;
    registries.write_hosts(&paths.registry_hosts())?;
    let (containerd, socket) = match &config.container_runtime_endpoint {
        Some(socket) => (None, socket.clone()),
        None => {
            let containerd = Containerd::start(&ContainerdConfig {
                paths: paths.clone(),
                sandbox_image: crate::image_archive::PAUSE_IMAGE.into(),
                cni_bin_dir: config.cni_bin_dir.clone(),
                stream_address: "127.0.0.1".into(),
                registry_auth: registries.auth(),
            })
            .await?;
            let socket = containerd.socket().to_owned();
            (Some(containerd), socket)
        }
    };
    let cri = CriRuntime::connect(&socket).await?;
    let runtime: Arc<dyn Runtime> = Arc::new(cri);
    wait_for_runtime(runtime.as_ref()).await?;
    import_images(&config, &socket, runtime.as_ref()).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = crate::server::KubeletServerConfig {
        bind: std::net::SocketAddr::new(config.kubelet_bind, config.kubelet_port),
        tls_dir: config.agent_dir().join("tls"),
        client_ca_pem: config.cluster_ca_pem.clone(),
        node_name: config.node_name.clone(),
        node_ips: config.node_ips.clone(),
    };
    let (address, server) =
        crate::server::serve(server, Arc::clone(&runtime), stop_rx.clone()).await?;
    // With port 0 the node advertises the port the kernel chose.
    config.kubelet_port = address.port();
    tracing::info!(%address, "kubelet API listening");
    crate::node::register(&client, &config, runtime.as_ref())
        .await
        .map_err(KubeletError::Register)?;
    tracing::info!(node = %config.node_name, runtime = %socket.display(), "node registered");

    let (facts_tx, facts_rx) = tokio::sync::watch::channel(crate::pods::NodeFacts::default());
    let mut tasks = vec![server];
    tasks.push(tokio::spawn(crate::node::run_heartbeats(
        client.clone(),
        config.clone(),
        Arc::clone(&runtime),
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(watch_node(
        client.clone(),
        config.clone(),
        paths.clone(),
        facts_tx,
        stop_rx.clone(),
    )));
    let parts = crate::pods::PodManagerParts {
        client: client.clone(),
        runtime: Arc::clone(&runtime),
        config: config.clone(),
        node_facts: facts_rx,
        mounter: Arc::new(crate::volumes::RealMounter),
    };
    tasks.push(tokio::spawn(crate::pods::run(parts, stop_rx.clone())));
    tasks.push(tokio::spawn(crate::routes::run(
        client.clone(),
        config.node_name.clone(),
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::image_gc::run(
        Arc::clone(&runtime),
        paths.root(),
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::static_pods::run(
        client.clone(),
        config.pod_manifests_dir.clone(),
        config.node_name.clone(),
        stop_rx.clone(),
    )));
    stop.await;
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    if let Some(containerd) = containerd {
        containerd.stop().await;
    }
    Ok(())
}

/// Imports the sandbox image (built from busybox-static) when the runtime lacks it, and
/// every archive dropped in `<data-dir>/agent/images/` (air-gapped installs, as k3s).
/// How long a starting runtime may take to answer (containerd's CRI plugin refuses calls
/// with "server is not initialized yet" while it loads its state and recovers containers).
const RUNTIME_START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Waits until the runtime answers both of its services (a `Version` and an `ImageStatus`
/// call), so that the first real calls do not race its start.
async fn wait_for_runtime(runtime: &dyn crate::runtime::Runtime) -> Result<(), KubeletError> {
    let deadline = tokio::time::Instant::now() + RUNTIME_START_TIMEOUT;
    let mut logged = false;
    loop {
        let answered = match runtime.version().await {
            Ok(_) => runtime.image_status(crate::image_archive::PAUSE_IMAGE).await.map(|_| ()),
            Err(error) => Err(error),
        };
        match answered {
            Ok(()) => return Ok(()),
            Err(error) if tokio::time::Instant::now() < deadline => {
                if !logged {
                    tracing::info!(%error, "waiting for the container runtime to serve");
                    logged = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

async fn import_images(
    config: &KubeletConfig,
    socket: &std::path::Path,
    runtime: &dyn crate::runtime::Runtime,
) -> Result<(), KubeletError> {
    use crate::image_archive;
    if runtime.image_status(image_archive::PAUSE_IMAGE).await?.is_none() {
        let archive = config.agent_dir().join("images-builtin/pause.tar");
        image_archive::write_oci_archive(
            &image_archive::pause_image(image_archive::PAUSE_IMAGE)?,
            &archive,
        )?;
        image_archive::import(socket, &archive).await?;
        tracing::info!(image = image_archive::PAUSE_IMAGE, "sandbox image imported");
    }
    let dropped = config.agent_dir().join("images");
    if let Ok(entries) = std::fs::read_dir(&dropped) {
        for entry in entries.flatten() {
            let path = entry.path();
            let name = path.display().to_string();
            if !(name.ends_with(".tar")
                || name.ends_with(".tar.gz")
                || name.ends_with(".tgz")
                || name.ends_with(".tar.zst"))
            {
                continue;
            }
            match image_archive::import(socket, &path).await {
                Ok(images) => tracing::info!(archive = %name, ?images, "images imported"),
                Err(error) => {
                    tracing::warn!(archive = %name, %error, "cannot import an image archive")
                }
            }
        }
    }
    Ok(())
}

/// Follows the node object: its addresses and allocatable for the pods, its pod CIDRs
/// for the CNI config.
async fn watch_node(
    client: kube::Client,
    config: KubeletConfig,
    paths: crate::containerd::ContainerdPaths,
    facts: tokio::sync::watch::Sender<crate::pods::NodeFacts>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use futures_util::StreamExt;
    use k8s_openapi::api::core::v1::Node;
    use kube::runtime::{WatchStreamExt, watcher};
    let api: kube::Api<Node> = kube::Api::all(client);
    let selector = format!("metadata.name={}", config.node_name);
    let mut events = watcher::watcher(api, watcher::Config::default().fields(&selector))
        .applied_objects()
        .boxed();
    loop {
        let node = tokio::select! {
            () = crate::kubelet::until_stopped(&mut stop) => return,
            next = events.next() => match next {
                Some(Ok(node)) => node,
                Some(Err(_)) => {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    continue;
                }
                None => return,
            },
        };
        let spec = node.spec.clone().unwrap_or_default();
        let mut cidrs = spec.pod_cidrs.clone().unwrap_or_default();
        if cidrs.is_empty() {
            cidrs.extend(spec.pod_cidr.clone());
        }
        if !cidrs.is_empty() {
            let ipam = config.agent_dir().join("cni/ipam");
            match crate::cni::write(&paths.cni_conf_dir(), &config.cni_bridge, &cidrs, &ipam) {
                Ok(true) => tracing::info!(pod_cidrs = ?cidrs, "pod network configured"),
                Ok(false) => {}
                Err(error) => tracing::error!(%error, "cannot write the CNI config"),
            }
        }
        let status = node.status.clone().unwrap_or_default();
        let host_ips = status
            .addresses
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.type_ == "InternalIP")
            .map(|a| a.address)
            .collect();
        let allocatable = status.allocatable.unwrap_or_default();
        let parse = |name: &str, milli: bool| {
            allocatable
                .get(name)
                .and_then(|q| capstan_api::Quantity::parse(&q.0).ok())
                .map(|q| if milli { q.milli_value() } else { q.value() })
                .unwrap_or(0)
        };
        let _ = facts.send(crate::pods::NodeFacts {
            host_ips,
            allocatable_cpu_millis: parse("cpu", true),
            allocatable_memory_bytes: parse("memory", false),
        });
    }
}

/// Completes once `stop` is set (or its sender is gone).
pub(crate) async fn until_stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it before this future yields.
    let _ = stop.wait_for(|stopped| *stopped).await.map(|_| ());
}
