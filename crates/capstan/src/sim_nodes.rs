//! `capstan sim-nodes`: hollow nodes (the `capstan-sim` crate) against the cluster a
//! kubeconfig names, for scale tests and benchmarks.

use anyhow::{Context, anyhow};
use capstan_sim::{Label, SimConfig, TaintFlag};
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::path::PathBuf;
use std::time::Duration;

/// The kubeconfig used when neither `--kubeconfig` nor `$KUBECONFIG` names one: the one
/// `capstan server` writes.
const DEFAULT_KUBECONFIG: &str = "/etc/capstan/capstan.yaml";

/// Flags of `capstan sim-nodes`.
#[derive(Debug, clap::Args)]
pub(crate) struct SimNodesArgs {
    /// How many nodes to simulate.
    #[arg(long)]
    count: u32,

    /// Node names are `<prefix><index>`.
    #[arg(long, default_value = "hollow-")]
    name_prefix: String,

    /// The index of the first node.
    #[arg(long, default_value_t = 0)]
    start_index: u32,

    /// Spread the nodes over this many zones (`topology.kubernetes.io/zone=zone-<i % Z>`).
    #[arg(long, default_value_t = 0)]
    zones: u32,

    /// A label for every node (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<Label>,

    /// A taint every node registers with (repeatable).
    #[arg(long = "taint", value_name = "KEY=VALUE:EFFECT")]
    taints: Vec<TaintFlag>,

    /// CPU capacity of each node.
    #[arg(long, default_value = "4")]
    cpu: String,

    /// Memory capacity of each node.
    #[arg(long, default_value = "16Gi")]
    memory: String,

    /// How many pods fit on each node.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,

    /// How long pods whose restartPolicy is not Always run before they succeed (500ms, 5s,
    /// 1m, …).
    #[arg(long, default_value = "5s", value_parser = capstan_sim::parse_duration)]
    succeed_after: Duration,

    /// How many pod status updates are in flight at once.
    #[arg(long, default_value_t = 64)]
    pod_workers: u16,

    /// The cluster to join [default: $KUBECONFIG, else /etc/capstan/capstan.yaml].
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
}

impl SimNodesArgs {
    fn config(self) -> SimConfig {
        SimConfig {
            name_prefix: self.name_prefix,
            start_index: self.start_index,
            zones: self.zones,
            labels: self.labels,
            taints: self.taints,
            cpu: self.cpu,
            memory: self.memory,
            max_pods: self.max_pods,
            succeed_after: self.succeed_after,
            pod_workers: self.pod_workers,
            ..SimConfig::new(self.count)
        }
    }
}

pub(crate) async fn run(args: SimNodesArgs) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Installed before the first request, so that a signal at any moment stops the run
    // instead of killing the process with the default action.
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let (client, server) = client(args.kubeconfig.clone()).await?;
    let shutdown = async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    };
    tracing::info!(%server, count = args.count, "starting hollow nodes");
    capstan_sim::run(client, args.config(), shutdown)
        .await
        // `describe` puts an API error's code, reason and message on the line rather than
        // kube's debug dump of it.
        .map_err(|error| anyhow!("{}", capstan_sim::describe(&error)))
        .with_context(|| format!("hollow nodes against {server}"))
}

/// A client for the cluster the kubeconfig names, and the server's URL.
async fn client(path: Option<PathBuf>) -> anyhow::Result<(kube::Client, String)> {
    let kubeconfig = match path {
        Some(path) => Kubeconfig::read_from(&path)
            .with_context(|| format!("cannot read the kubeconfig {}", path.display()))?,
        None => {
            match Kubeconfig::from_env().context("cannot read the kubeconfig $KUBECONFIG names")? {
                Some(kubeconfig) => kubeconfig,
                None => Kubeconfig::read_from(DEFAULT_KUBECONFIG)
                    .with_context(|| format!("cannot read the kubeconfig {DEFAULT_KUBECONFIG}"))?,
            }
        }
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("the kubeconfig does not describe a usable cluster")?;
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).context("cannot set up the API client")?;
    Ok((client, server))
}
