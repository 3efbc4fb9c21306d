//! `capstan server`: one control-plane process. It opens the datastore, serves the
//! Kubernetes API over HTTPS, writes the admin kubeconfig and runs the scheduler and the
//! controller manager, which reach the API like any client (kube-rs over loopback HTTPS),
//! each while this server holds its leader-election Lease; the agent joins it in later work.

use anyhow::Context;
use capstan_apiserver::{ApiServer, ApiServerConfig, MetricsSources, ServingNames, TokenFile};
use capstan_controllers::ControllerManagerConfig;
use capstan_kube::leader::{LeaderElectionConfig, run_as_leader};
use capstan_scheduler::runtime::{Metrics, SchedulerConfig};
use capstan_store::DatastoreEndpoint;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

/// Flags of `capstan server` (names follow k3s where k3s has the same flag).
#[derive(Debug, clap::Args)]
pub(crate) struct ServerArgs {
    /// Where Capstan keeps its state.
    #[arg(long, default_value = "/var/lib/capstan", env = "CAPSTAN_DATA_DIR")]
    data_dir: PathBuf,

    /// The datastore: `sqlite://<file>` (default: `<data-dir>/server/db/state.db`) or
    /// `etcd://host:port[,host:port...]`.
    #[arg(long, env = "CAPSTAN_DATASTORE_ENDPOINT")]
    datastore_endpoint: Option<String>,

    /// The prefix of Capstan's keys in etcd (ignored for sqlite).
    #[arg(long, default_value = "/registry")]
    etcd_prefix: String,

    /// The port of the HTTPS API.
    #[arg(long, default_value_t = 6443)]
    https_listen_port: u16,

    /// The address the HTTPS API binds to.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,

    /// Extra names or addresses the API server's certificate is valid for (repeatable or
    /// comma-separated), e.g. the address agents reach it at when it binds 0.0.0.0.
    #[arg(long, value_delimiter = ',')]
    tls_san: Vec<String>,

    /// Where to write the admin kubeconfig.
    #[arg(long, default_value = "/etc/capstan/capstan.yaml", env = "CAPSTAN_KUBECONFIG_OUTPUT")]
    write_kubeconfig: PathBuf,

    /// Bearer tokens that authenticate, one `token,user,uid[,"group1,group2"]` line each
    /// (kube-apiserver's format).
    #[arg(long)]
    token_auth_file: Option<PathBuf>,

    /// Run no agent (kubelet, proxy) on this host: a control plane only.
    #[arg(long)]
    disable_agent: bool,

    /// Run no scheduler in this server (another scheduler places the pods).
    #[arg(long)]
    disable_scheduler: bool,

    /// Run no controller manager in this server.
    #[arg(long)]
    disable_controller_manager: bool,

    /// The pods' ranges: one, or an IPv4 and an IPv6 one, comma-separated, for a
    /// dual-stack cluster. Each node gets a /24 (IPv4) and a /64 (IPv6) of them.
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: String,

    /// The Services' cluster IP ranges, comma-separated: one, or an IPv4 and an IPv6 one for
    /// a dual-stack cluster (the first is the primary family).
    #[arg(long, default_value = capstan_apiserver::DEFAULT_SERVICE_CIDR, value_delimiter = ',')]
    service_cidr: Vec<String>,

    /// The node ports of NodePort and LoadBalancer Services, `first-last`.
    #[arg(long, default_value = "30000-32767", value_parser = parse_port_range)]
    service_node_port_range: (u16, u16),

    /// Seconds a node's kubelet may go without renewing its Lease or posting its Ready
    /// heartbeat before the node counts as unreachable (advanced: tests shorten it).
    #[arg(long, default_value_t = 50, value_name = "SECONDS", hide = true)]
    node_monitor_grace_period: u64,

    /// This node's name (default: the host name).
    #[arg(long, env = "CAPSTAN_NODE_NAME")]
    node_name: Option<String>,

    /// The address this node advertises (default: that of the interface with the default
    /// route); a dual-stack node gives one per IP family, comma-separated, the primary first.
    #[arg(long, value_delimiter = ',')]
    node_ip: Vec<IpAddr>,

    /// The kubelet API's port.
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,

    /// An existing CRI socket to use instead of the containerd Capstan supervises.
    #[arg(long)]
    container_runtime_endpoint: Option<PathBuf>,

    /// Registry mirrors and credentials (k3s's registries.yaml format).
    #[arg(long, default_value = "/etc/capstan/registries.yaml")]
    registries_config: PathBuf,

    /// The port the cluster DNS listens on at the node's address (advanced: tests pick free
    /// ports; pods reach it as the kube-dns Service on port 53 either way).
    #[arg(long, default_value_t = 53, hide = true)]
    cluster_dns_port: u16,

    /// The service proxy's nftables table (advanced: tests use unique names).
    #[arg(long, default_value = "capstan-proxy", hide = true)]
    proxy_table: String,

    /// The name of the pods' bridge (advanced: tests use unique names).
    #[arg(long, default_value = "cni0", hide = true)]
    cni_bridge: String,

    /// The node reports DiskPressure below this percent of free space on the data dir's
    /// filesystem (the kubelet's `--eviction-hard nodefs.available<10%`).
    #[arg(long, default_value_t = 10, value_name = "PERCENT", hide = true)]
    eviction_nodefs_available: u64,

    /// A YAML file of flags (`https-listen-port: 6444`); flags on the command line win.
    #[arg(long, env = "CAPSTAN_CONFIG_FILE")]
    #[allow(dead_code, reason = "read before parsing, by crate::config")]
    config: Option<PathBuf>,
}

impl ServerArgs {
    fn endpoint(&self) -> anyhow::Result<DatastoreEndpoint> {
        match &self.datastore_endpoint {
            Some(endpoint) => endpoint.parse().context("--datastore-endpoint"),
            None => Ok(DatastoreEndpoint::Sqlite(self.data_dir.join("server/db/state.db"))),
        }
    }
}

pub(crate) async fn run(args: ServerArgs) -> anyhow::Result<()> {
    // Installed before anything is announced: a signal sent right after "ready" must find the
    // handler in place, not the default action that kills the process mid-write.
    let shutdown = crate::signals::ShutdownSignals::install()?;
    let endpoint = args.endpoint()?;
    let node_ips = crate::node_services::node_ips(&args.node_ip)?;
    let store = capstan_store::open(&endpoint, &args.etcd_prefix)
        .await
        .with_context(|| format!("cannot open the datastore {}", describe(&endpoint)))?;
    let revision = store.current_revision().await.context("reading the datastore's revision")?;
    tracing::info!(datastore = %describe(&endpoint), revision, "datastore ready");

    let hostname =
        std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned());
    let names = serving_names(hostname, args.bind_address, &args.tls_san);
    let tls_dir = args.data_dir.join("server/tls");
    let tls = capstan_apiserver::ensure_tls(&tls_dir, &names)
        .context("preparing the API server's certificates")?;
    let mut tokens = match &args.token_auth_file {
        Some(path) => TokenFile::load(path).context("--token-auth-file")?,
        None => TokenFile::default(),
    };
    let node_token = crate::node_token::ensure_node_token(&args.data_dir, &tls.ca_cert)
        .context("preparing the node join token")?;
    crate::node_token::authorize(&mut tokens, &node_token)?;
    let listen = SocketAddr::new(args.bind_address, args.https_listen_port);
    let scheduler_metrics = Arc::new(Metrics::default());
    let mut metrics = MetricsSources::default();
    if !args.disable_scheduler {
        let scheduler_metrics = Arc::clone(&scheduler_metrics);
        metrics.0.push(Arc::new(move || scheduler_metrics.render()));
    }
    let config = ApiServerConfig {
        listen,
        tls: tls.clone(),
        store: Arc::clone(&store),
        tokens,
        metrics,
        service_cidrs: args.service_cidr.clone(),
        node_port_range: args.service_node_port_range,
    };
    let api = ApiServer::start(config).await.context("starting the API server")?;
    // The kubeconfig points at loopback unless the server binds one specific address.
    let host = if args.bind_address.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        args.bind_address
    };
    let server_url = format!("https://{}", SocketAddr::new(host, api.local_addr().port()));
    let kubeconfig = capstan_apiserver::admin_kubeconfig(&server_url, &tls);
    capstan_apiserver::write_kubeconfig(&args.write_kubeconfig, &kubeconfig)
        .context("writing the admin kubeconfig")?;
    tracing::info!(server = %server_url, kubeconfig = %args.write_kubeconfig.display(), "API server ready");
    let (stop_components, stopped) = tokio::sync::watch::channel(false);
    let mut components = Vec::new();
    // Each component runs only while this server holds its Lease, as kube-scheduler and
    // kube-controller-manager do, so that of several servers on one datastore exactly one
    // schedules and one runs the controllers. Each term starts the component afresh. Every
    // elector has a client of its own, so a component's load cannot delay its renewals.
    if !args.disable_scheduler {
        let client =
            loopback_client(&kubeconfig).await.context("connecting the scheduler to the API")?;
        let elector =
            loopback_client(&kubeconfig).await.context("connecting the scheduler to the API")?;
        let election = LeaderElectionConfig::new("kube-scheduler");
        let until = wait_for_stop(stopped.clone());
        components.push(tokio::spawn(run_as_leader(elector, election, until, move |lost| {
            // SchedulerConfig holds the plugins' state: a new term gets a new one.
            let config = SchedulerConfig::default();
            let metrics = Arc::clone(&scheduler_metrics);
            capstan_scheduler::runtime::run(client.clone(), config, metrics, lost)
        })));
    }
    if !args.disable_controller_manager {
        let client =
            loopback_client(&kubeconfig).await.context("connecting the controllers to the API")?;
        let elector =
            loopback_client(&kubeconfig).await.context("connecting the controllers to the API")?;
        let election = LeaderElectionConfig::new("kube-controller-manager");
        let until = wait_for_stop(stopped.clone());
        let config = ControllerManagerConfig {
            root_ca_pem: tls.ca_cert.clone(),
            cluster_cidr: args.cluster_cidr.clone(),
            node_monitor_grace_period: std::time::Duration::from_secs(
                args.node_monitor_grace_period,
            ),
            ..ControllerManagerConfig::default()
        };
        components.push(tokio::spawn(run_as_leader(elector, election, until, move |lost| {
            capstan_controllers::run(client.clone(), config.clone(), lost)
        })));
    }
    if !args.disable_agent {
        let client =
            loopback_client(&kubeconfig).await.context("connecting the kubelet to the API")?;
        let config = kubelet_config(&args, &tls.ca_cert, &node_ips);
        let node_name = config.node_name.clone();
        let until = wait_for_stop(stopped.clone());
        components.push(tokio::spawn(async move {
            if let Err(error) = capstan_kubelet::run(client, config, until).await {
                tracing::error!(error = %error_chain(&error), "the kubelet stopped");
            }
        }));
        let proxy_client =
            loopback_client(&kubeconfig).await.context("connecting the proxy to the API")?;
        components.push(crate::node_services::spawn_proxy(
            proxy_client,
            node_name,
            node_ips.clone(),
            &args.cluster_cidr,
            args.proxy_table.clone(),
            stopped.clone(),
        ));
    }
    // The cluster DNS listens where pods can reach it: on this server's node, or for a
    // control-plane-only server on the address it serves the API on (agents reach that one).
    let dns_ip = match (args.disable_agent, args.bind_address) {
        (false, _) => node_ips.first().copied(),
        (true, bind) if bind.is_loopback() => None,
        (true, bind) if bind.is_unspecified() => node_ips.first().copied(),
        (true, bind) => Some(bind),
    };
    match dns_ip {
        Some(ip) => {
            let dns_client =
                loopback_client(&kubeconfig).await.context("connecting the DNS to the API")?;
            let service_ip = crate::node_services::dns_service_ip(
                args.service_cidr.first().map(String::as_str).unwrap_or("10.43.0.0/16"),
            )?;
            let listen = SocketAddr::new(ip, args.cluster_dns_port);
            match crate::node_services::spawn_dns(dns_client, listen, service_ip, stopped.clone())
                .await
            {
                Ok(dns) => components.push(dns),
                // The rest of the cluster works without it; say why names will not resolve.
                Err(error) => tracing::error!(
                    %listen,
                    error = format!("{error:#}"),
                    "the cluster DNS cannot start: pods will not resolve Service names"
                ),
            }
        }
        None => tracing::warn!(
            "no address pods can reach is known (give --node-ip, or a non-loopback \
             --bind-address): no cluster DNS"
        ),
    }
    shutdown.wait().await;
    let _ = stop_components.send(true);
    for component in components {
        let _ = component.await;
    }
    drop(api);
    tracing::info!("shutting down");
    drop(store);
    Ok(())
}

/// The names the API server's certificate is valid for: the standard ones, the bind address
/// when specific, and each `--tls-san` (an address or a DNS name).
fn serving_names(hostname: Option<String>, bind: IpAddr, tls_san: &[String]) -> ServingNames {
    let mut names = ServingNames::standard(hostname, &[bind]);
    for san in tls_san {
        match san.parse::<IpAddr>() {
            Ok(ip) if !names.ips.contains(&ip) => names.ips.push(ip),
            Ok(_) => {}
            Err(_) if !names.dns.contains(san) => names.dns.push(san.clone()),
            Err(_) => {}
        }
    }
    names
}

/// The kubelet of this server's own node.
fn kubelet_config(
    args: &ServerArgs,
    ca_pem: &str,
    node_ips: &[IpAddr],
) -> capstan_kubelet::KubeletConfig {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .unwrap_or_else(|_| "capstan".into());
    let name = args.node_name.clone().unwrap_or(hostname);
    let mut config =
        capstan_kubelet::KubeletConfig::new(name, args.data_dir.clone(), ca_pem.to_owned());
    config.node_ips = node_ips.to_vec();
    config.kubelet_port = args.kubelet_port;
    config.eviction_nodefs_percent = args.eviction_nodefs_available;
    config.container_runtime_endpoint = args.container_runtime_endpoint.clone();
    config.registries_config = args.registries_config.clone();
    config.cni_bridge = args.cni_bridge.clone();
    let service_cidr = args.service_cidr.first().map(String::as_str).unwrap_or("10.43.0.0/16");
    if let Ok(dns) = crate::node_services::dns_service_ip(service_cidr) {
        config.cluster_dns = vec![dns];
    }
    config
}

/// An error and its causes on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A kube-rs client for the components of this process, with the admin credentials.
async fn loopback_client(kubeconfig: &str) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(kubeconfig)?;
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?;
    Ok(kube::Client::try_from(config)?)
}

/// Completes once the stop signal is sent (or its sender is gone).
async fn wait_for_stop(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

fn describe(endpoint: &DatastoreEndpoint) -> String {
    match endpoint {
        DatastoreEndpoint::Sqlite(path) => format!("sqlite://{}", path.display()),
        DatastoreEndpoint::Etcd(endpoints) => format!("etcd {}", endpoints.join(",")),
    }
}

/// `--service-node-port-range`: `first-last`, both ends included.
fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let (first, last) = text.split_once('-').ok_or("expected first-last")?;
    let port = |p: &str| p.trim().parse::<u16>().map_err(|e| format!("{p:?}: {e}"));
    Ok((port(first)?, port(last)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_sans_add_addresses_and_names_once() {
        let sans =
            ["198.19.0.1", "capstan.example", "127.0.0.1", "capstan.example"].map(String::from);
        let names = serving_names(None, IpAddr::from([0, 0, 0, 0]), &sans);
        let ip: IpAddr = "198.19.0.1".parse().unwrap();
        assert_eq!(names.ips.iter().filter(|a| **a == ip).count(), 1);
        assert_eq!(names.ips.iter().filter(|a| a.is_loopback() && a.is_ipv4()).count(), 1);
        assert_eq!(names.dns.iter().filter(|n| *n == "capstan.example").count(), 1);
    }
}
