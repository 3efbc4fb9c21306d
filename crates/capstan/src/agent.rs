//! `capstan agent`: joins a server as a node. It fetches the cluster CA from the server's
//! `/cacerts`, checks it against the hash in the join token, writes a kubeconfig that
//! trusts that CA and authenticates with the token, and runs the kubelet with it until
//! SIGINT or SIGTERM.

use crate::node_token::{JoinToken, sha256_hex};
use anyhow::Context;
use base64::Engine;
use k8s_openapi::api::core::v1::Taint;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Flags of `capstan agent` (names follow k3s).
#[derive(Debug, clap::Args)]
pub(crate) struct AgentArgs {
    /// The server to join, e.g. `https://10.0.0.1:6443`.
    #[arg(long, env = "CAPSTAN_URL")]
    server: String,

    /// The join token (the server's `<data-dir>/server/node-token`).
    #[arg(
        long,
        env = "CAPSTAN_TOKEN",
        required_unless_present = "token_file",
        conflicts_with = "token_file"
    )]
    token: Option<String>,

    /// A file holding the join token.
    #[arg(long, env = "CAPSTAN_TOKEN_FILE")]
    token_file: Option<PathBuf>,

    /// Where Capstan keeps its state.
    #[arg(long, default_value = "/var/lib/capstan", env = "CAPSTAN_DATA_DIR")]
    data_dir: PathBuf,

    /// The node's name (default: the host name).
    #[arg(long, env = "CAPSTAN_NODE_NAME")]
    node_name: Option<String>,

    /// The address the node advertises (default: that of the default route's interface);
    /// a dual-stack node gives one per IP family, comma-separated, the primary first.
    #[arg(long, value_delimiter = ',')]
    node_ip: Vec<IpAddr>,

    /// A label the node registers with, `key=value` (repeatable).
    #[arg(long = "node-label", value_name = "KEY=VALUE", value_parser = parse_label)]
    node_labels: Vec<(String, String)>,

    /// A taint the node registers with, `key[=value]:Effect` (repeatable).
    #[arg(long = "node-taint", value_name = "KEY=VALUE:EFFECT", value_parser = parse_taint)]
    node_taints: Vec<Taint>,

    /// The port of the kubelet API.
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,

    /// An existing CRI socket to use instead of a supervised containerd.
    #[arg(long)]
    container_runtime_endpoint: Option<PathBuf>,

    /// k3s-style registries.yaml (mirrors and credentials).
    #[arg(long, default_value = "/etc/capstan/registries.yaml")]
    registries_config: PathBuf,

    /// The most pods the node accepts.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,

    /// The pods' networks across the cluster (the server's --cluster-cidr: one, or an IPv4
    /// and an IPv6 one), for the proxy's masquerade rules.
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: String,

    /// The cluster DNS Service's address, written into pods' resolv.conf (the tenth address
    /// of the server's --service-cidr).
    #[arg(long, default_value = "10.43.0.10")]
    cluster_dns: std::net::IpAddr,

    /// The service proxy's nftables table (advanced).
    #[arg(long, default_value = "capstan-proxy", hide = true)]
    proxy_table: String,

    /// The node reports DiskPressure below this percent of free space on the data dir's
    /// filesystem (the kubelet's `--eviction-hard nodefs.available<10%`).
    #[arg(long, default_value_t = 10, value_name = "PERCENT", hide = true)]
    eviction_nodefs_available: u64,
}

pub(crate) async fn run(args: AgentArgs) -> anyhow::Result<()> {
    // Installed first, so that a signal during the join is not fatal mid-write.
    let shutdown = crate::signals::ShutdownSignals::install()?.wait();
    tokio::pin!(shutdown);
    let token = match (&args.token, &args.token_file) {
        (Some(token), _) => token.trim().to_owned(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the token file {}", path.display()))?
            .trim()
            .to_owned(),
        (None, None) => anyhow::bail!("--token or --token-file is required"),
    };
    let join = JoinToken::parse(&token).context("the join token is unusable")?;
    let ca_pem = tokio::select! {
        ca = fetch_ca_until_served(&args.server) => ca?,
        () = &mut shutdown => return Ok(()),
    };
    match &join.ca_hash {
        Some(expected) => anyhow::ensure!(
            sha256_hex(ca_pem.as_bytes()) == *expected,
            "the server's CA does not match the token's hash: {} is not the server the token \
             is for, or something is in between",
            args.server
        ),
        None => tracing::warn!(
            server = %args.server,
            "the token carries no CA hash: trusting the CA the server sent without checking it"
        ),
    }
    let kubeconfig_path = args.data_dir.join("agent/kubeconfig");
    let kubeconfig = agent_kubeconfig(&args.server, &ca_pem, &token)?;
    write_private(&kubeconfig_path, &kubeconfig)?;
    let client = client_from(&kubeconfig).await.context("building the API client")?;
    let node_name = match &args.node_name {
        Some(name) => name.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("reading the host name (or give --node-name)")?
            .trim()
            .to_lowercase(),
    };
    let mut config = capstan_kubelet::KubeletConfig::new(node_name, args.data_dir.clone(), ca_pem);
    config.node_ips = crate::node_services::node_ips(&args.node_ip)?;
    config.container_runtime_endpoint = args.container_runtime_endpoint;
    config.kubelet_port = args.kubelet_port;
    config.eviction_nodefs_percent = args.eviction_nodefs_available;
    config.registries_config = args.registries_config;
    config.node_labels = args.node_labels.into_iter().collect::<BTreeMap<_, _>>();
    config.node_taints = args.node_taints;
    config.max_pods = args.max_pods;
    config.cluster_dns = vec![args.cluster_dns];
    tracing::info!(server = %args.server, node = %config.node_name, kubeconfig = %kubeconfig_path.display(), "joining");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let proxy = crate::node_services::spawn_proxy(
        client.clone(),
        config.node_name.clone(),
        config.node_ips.clone(),
        &args.cluster_cidr,
        args.proxy_table.clone(),
        stopped.clone(),
    );
    let mut until = stopped.clone();
    let mut kubelet = tokio::spawn(capstan_kubelet::run(client, config, async move {
        let _ = until.wait_for(|s| *s).await.map(|_| ());
    }));
    let outcome = tokio::select! {
        () = &mut shutdown => {
            let _ = stop.send(true);
            (&mut kubelet).await
        }
        // The kubelet ended on its own: an error to report.
        ended = &mut kubelet => {
            let _ = stop.send(true);
            ended
        }
    }
    .context("the kubelet task")?;
    let _ = proxy.await;
    outcome.context("running the kubelet")?;
    tracing::info!("shutting down");
    Ok(())
}

/// The server's CA, asked for again until the server answers: an agent may well start
/// before its server (k3s agents wait the same way). A malformed `--server` fails at once.
async fn fetch_ca_until_served(server: &str) -> anyhow::Result<String> {
    let mut delay = std::time::Duration::from_millis(500);
    loop {
        match fetch_ca(server).await {
            Ok(pem) => return Ok(pem),
            Err(error) if server.parse::<http::Uri>().is_err() => return Err(error),
            Err(error) => {
                tracing::warn!(
                    server,
                    error = format!("{error:#}"),
                    "the server is not answering yet; retrying"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
        }
    }
}

/// The server's CA, from `/cacerts`. The server cannot be verified yet (its CA is what is
/// being fetched), so this one request skips certificate verification; the caller checks
/// the answer against the token's hash before trusting it.
async fn fetch_ca(server: &str) -> anyhow::Result<String> {
    let url: http::Uri = server.parse().with_context(|| format!("--server {server}"))?;
    let mut config = kube::Config::new(url);
    config.accept_invalid_certs = true;
    let client = kube::Client::try_from(config).context("building the client for /cacerts")?;
    let request = http::Request::get("/cacerts").body(Vec::new())?;
    let pem = client
        .request_text(request)
        .await
        .with_context(|| format!("fetching the cluster CA from {server}/cacerts"))?;
    anyhow::ensure!(
        pem.contains("-----BEGIN CERTIFICATE-----"),
        "{server}/cacerts did not answer with a PEM certificate"
    );
    Ok(pem)
}

/// A kubeconfig for `server` that trusts `ca_pem` and sends `token`.
fn agent_kubeconfig(server: &str, ca_pem: &str, token: &str) -> anyhow::Result<String> {
    // YAML scalars quoted by the YAML library: a token may hold any character.
    let quote = |text: &str| -> anyhow::Result<String> {
        Ok(serde_yaml::to_string(text)?.trim_end().to_owned())
    };
    Ok(format!(
        "apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server}
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
preferences: {{}}
users:
- name: default
  user:
    token: {token}
",
        ca = base64::engine::general_purpose::STANDARD.encode(ca_pem),
        server = quote(server)?,
        token = quote(token)?,
    ))
}

async fn client_from(kubeconfig: &str) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(kubeconfig)?;
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?;
    Ok(kube::Client::try_from(config)?)
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// `key=value` (the value may be empty).
fn parse_label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or("expected key=value")?;
    if key.is_empty() {
        return Err("the label key is empty".into());
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// `key[=value]:Effect`, as the kubelet's `--register-with-taints`.
fn parse_taint(text: &str) -> Result<Taint, String> {
    let (key_value, effect) = text.rsplit_once(':').ok_or("expected key[=value]:Effect")?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(format!(
            "the effect {effect:?} is not NoSchedule, PreferNoSchedule or NoExecute"
        ));
    }
    let (key, value) = match key_value.split_once('=') {
        Some((key, value)) => (key, Some(value.to_owned()).filter(|v| !v.is_empty())),
        None => (key_value, None),
    };
    if key.is_empty() {
        return Err("the taint key is empty".into());
    }
    Ok(Taint { key: key.to_owned(), value, effect: effect.to_owned(), time_added: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(parse_label("team=storage").unwrap(), ("team".into(), "storage".into()));
        assert_eq!(parse_label("a/b=").unwrap(), ("a/b".into(), String::new()));
        assert!(parse_label("novalue").is_err());
        assert!(parse_label("=x").is_err());
    }

    #[test]
    fn taints() {
        let taint = |key: &str, value: Option<&str>, effect: &str| Taint {
            key: key.into(),
            value: value.map(str::to_owned),
            effect: effect.into(),
            time_added: None,
        };
        assert_eq!(
            parse_taint("dedicated=infra:NoSchedule").unwrap(),
            taint("dedicated", Some("infra"), "NoSchedule")
        );
        assert_eq!(parse_taint("gpu:NoExecute").unwrap(), taint("gpu", None, "NoExecute"));
        assert_eq!(
            parse_taint("a=:PreferNoSchedule").unwrap(),
            taint("a", None, "PreferNoSchedule")
        );
        for bad in ["a=b", "a=b:Sometimes", ":NoSchedule"] {
            assert!(parse_taint(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_kubeconfig_trusts_the_ca_and_sends_the_token() {
        let text = agent_kubeconfig("https://127.0.0.1:6443", "PEM", "K10ab::server:cd").unwrap();
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        let cluster = kubeconfig.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        assert_eq!(cluster.certificate_authority_data.as_deref(), Some("UEVN"));
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(yaml["users"][0]["user"]["token"].as_str(), Some("K10ab::server:cd"));
    }
}
