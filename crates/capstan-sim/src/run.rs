//! `run`: register the nodes, keep them alive and serve their pods until told to stop.

use crate::config::SimConfig;
use crate::error::SimError;
use crate::node::HollowNode;
use crate::nodes::{self, SimNode, SimNodes};
use crate::pods;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tokio::task::JoinSet;

/// Simulates `config.count` nodes against the cluster `client` talks to, until `shutdown`
/// completes (then `Ok`).
///
/// First checks that the API server answers (`SimError::Unreachable` otherwise) and registers
/// every node (`SimError::Register` naming the first node that could not, after retrying
/// transient failures). From then on failures are logged and retried, never fatal: Lease
/// renewals, status reports and pod updates are level-triggered and converge once the API
/// server answers again. Nodes and Leases stay when the simulator stops, as a stopped kubelet
/// leaves them.
pub async fn run(
    client: kube::Client,
    config: SimConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SimError> {
    config.validate()?;
    tokio::select! {
        result = simulate(client, config) => result,
        () = shutdown => {
            tracing::info!("shutting down");
            Ok(())
        }
    }
}

async fn simulate(client: kube::Client, config: SimConfig) -> Result<(), SimError> {
    let version = client.apiserver_version().await.map_err(SimError::Unreachable)?;
    tracing::debug!(version = %version.git_version, "the API server answers");
    let config = Arc::new(config);
    let nodes: Arc<SimNodes> = Arc::new(
        config
            .indexes()
            .map(|index| {
                let node = HollowNode::new(&config, index);
                (node.name.clone(), Arc::new(SimNode::new(node)))
            })
            .collect(),
    );
    let started = Instant::now();
    let registered = nodes::register_all(&client, &config, &nodes).await?;
    tracing::info!(
        seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
        "registered {} nodes",
        registered.len()
    );
    // Dropping the set (when `run` returns or is cancelled) stops every heartbeat.
    let mut heartbeats = JoinSet::new();
    for (position, node) in (0u32..).zip(registered) {
        heartbeats.spawn(nodes::keep_alive(client.clone(), Arc::clone(&config), node, position));
    }
    pods::run(client, config, nodes).await
}
