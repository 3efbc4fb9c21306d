//! Capstan's controller manager: kube-controller-manager's control loops, each a module in
//! the kube-runtime shape (a reconcile function over reflector stores, an error policy,
//! periodic requeue), reaching the cluster only through the Kubernetes API.
//!
//! [`run`] starts every controller and returns when its `until` future completes, so that a
//! leader-election lease can bound its term.

mod context;
mod cronjob;
mod daemonset;
mod deployment;
mod disruption;
mod endpoints;
mod endpointslice;
mod garbage_collector;
mod job;
mod namespace;
mod node_ipam;
mod node_lifecycle;
mod pod_conditions;
mod pod_gc;
mod replicaset;
mod resource_quota;
mod revisions;
mod root_ca;
mod service_endpoints;
mod service_triggers;
mod serviceaccount;
mod statefulset;
mod taint_eviction;
mod ttl_after_finished;

pub use context::{Context, ControllerManagerConfig};

use std::future::Future;
use std::sync::Arc;

/// Runs every controller until `until` completes.
pub async fn run(
    client: kube::Client,
    config: ControllerManagerConfig,
    until: impl Future<Output = ()>,
) {
    let context = Arc::new(Context::new(client, config));
    let controllers = vec![
        tokio::spawn(serviceaccount::run(Arc::clone(&context))),
        tokio::spawn(root_ca::run(Arc::clone(&context))),
        tokio::spawn(namespace::run(Arc::clone(&context))),
        tokio::spawn(replicaset::run(Arc::clone(&context))),
        tokio::spawn(garbage_collector::run(Arc::clone(&context))),
        tokio::spawn(deployment::run(Arc::clone(&context))),
        tokio::spawn(daemonset::run(Arc::clone(&context))),
        tokio::spawn(statefulset::run(Arc::clone(&context))),
        tokio::spawn(disruption::run(Arc::clone(&context))),
        tokio::spawn(resource_quota::run(Arc::clone(&context))),
        tokio::spawn(node_ipam::run(Arc::clone(&context))),
        tokio::spawn(pod_gc::run(Arc::clone(&context))),
        tokio::spawn(node_lifecycle::run(Arc::clone(&context))),
        tokio::spawn(taint_eviction::run(Arc::clone(&context))),
        tokio::spawn(job::run(Arc::clone(&context))),
        tokio::spawn(cronjob::run(Arc::clone(&context))),
        tokio::spawn(ttl_after_finished::run(Arc::clone(&context))),
        tokio::spawn(endpoints::run(Arc::clone(&context))),
        tokio::spawn(endpointslice::run(Arc::clone(&context))),
    ];
    tracing::info!(controllers = controllers.len(), "controller manager started");
    until.await;
    for controller in controllers {
        controller.abort();
    }
}
