//! The cost of syncs at a given size: how long computing and rendering a full sync and an
//! incremental one (one endpoint added to one service) take and how large they are, without
//! a kernel ([`bench_sync_costs`]) or applied through a real [`crate::Nft`]
//! ([`bench_kernel_sync`]). For `cargo xtask bench proxy`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use kube::api::ObjectMeta;

use crate::desired::DesiredState;
use crate::nft::{Nft, NftError};
use crate::script;
use crate::state::{IpFamily, NodeFacts, ServiceKey};
use crate::syncer::Syncer;

/// What [`bench_sync_costs`] measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncCosts {
    pub services: usize,
    pub endpoints_per_service: usize,
    /// Computing the state from the objects.
    pub compute: Duration,
    pub full_script_bytes: usize,
    pub full_render: Duration,
    /// The incremental sync's script (none when only elements change).
    pub incremental_script_bytes: usize,
    /// The incremental sync's element changes.
    pub incremental_elements: usize,
    /// Recomputing the service and rendering its changes.
    pub incremental_render: Duration,
}

/// Measures syncs of `services` ClusterIP services with `endpoints_per_service` endpoints
/// each (at most 65,535 services and 65,535 endpoints per service).
pub fn bench_sync_costs(services: usize, endpoints_per_service: usize) -> SyncCosts {
    let node = node();
    let mut objects: Vec<(Service, EndpointSlice)> =
        (0..services).map(|index| objects(index, endpoints_per_service)).collect();
    let started = Instant::now();
    let mut desired = DesiredState::new(node.clone());
    desired.replace_all(objects.iter().map(|o| &o.0), objects.iter().map(|o| &o.1));
    desired.take_changes();
    let compute = started.elapsed();
    let started = Instant::now();
    let full = script::render_full("capstan-proxy", desired.state(), &node);
    let full_render = started.elapsed();

    let started = Instant::now();
    let changes = grow(&mut desired, &mut objects, 0, endpoints_per_service);
    let diff = script::render_diff(
        "capstan-proxy",
        &changes,
        desired.state(),
        &Default::default(),
        &Default::default(),
    );
    let incremental_render = started.elapsed();
    SyncCosts {
        services,
        endpoints_per_service,
        compute,
        full_script_bytes: full.len(),
        full_render,
        incremental_script_bytes: diff.script.len(),
        incremental_elements: diff.elements.len(),
        incremental_render,
    }
}

/// What [`bench_kernel_sync`] measured: applying through a real [`crate::Nft`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelSyncCosts {
    pub services: usize,
    pub endpoints_per_service: usize,
    /// The first sync: the whole table in one transaction.
    pub full: Duration,
    pub full_script_bytes: usize,
    /// One endpoint added to one service, as an incremental sync: the median of
    /// [`INCREMENTAL_ROUNDS`] such changes, each to another service.
    pub incremental: Duration,
    /// The slowest of those changes.
    pub incremental_max: Duration,
    pub incremental_script_bytes: usize,
    pub incremental_elements: usize,
}

/// How many incremental syncs [`bench_kernel_sync`] times.
pub const INCREMENTAL_ROUNDS: usize = 21;

/// Applies a full sync of `services` × `endpoints_per_service` into `table` through `nft`,
/// then [`INCREMENTAL_ROUNDS`] times one endpoint more for one service, timing each from
/// the changed objects to the kernel (state computation included). The caller deletes the
/// table afterwards.
pub fn bench_kernel_sync(
    nft: Arc<dyn Nft>,
    table: &str,
    services: usize,
    endpoints_per_service: usize,
) -> Result<KernelSyncCosts, NftError> {
    let node = node();
    let mut objects: Vec<(Service, EndpointSlice)> =
        (0..services).map(|index| objects(index, endpoints_per_service)).collect();
    let mut syncer = Syncer::new(nft, table, &node);
    let started = Instant::now();
    let mut desired = DesiredState::new(node);
    desired.replace_all(objects.iter().map(|o| &o.0), objects.iter().map(|o| &o.1));
    let changes = desired.take_changes();
    let full_report = syncer.sync(desired.state(), &changes, Instant::now())?;
    let full = started.elapsed();

    let mut times = Vec::new();
    let mut last_report = full_report;
    for round in 0..INCREMENTAL_ROUNDS {
        // Services spread over the whole table.
        let index = round * services.max(1) / INCREMENTAL_ROUNDS;
        let started = Instant::now();
        let changes = grow(&mut desired, &mut objects, index, endpoints_per_service + round);
        last_report = syncer.sync(desired.state(), &changes, Instant::now())?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(KernelSyncCosts {
        services,
        endpoints_per_service,
        full,
        full_script_bytes: full_report.script_bytes,
        incremental: times.get(times.len() / 2).copied().unwrap_or_default(),
        incremental_max: times.last().copied().unwrap_or_default(),
        incremental_script_bytes: last_report.script_bytes,
        incremental_elements: last_report.elements,
    })
}

/// This node, for the benchmarks: IPv4, pods in 10.0.0.0/8.
fn node() -> NodeFacts {
    NodeFacts {
        node_name: "node-0".to_owned(),
        families: vec![IpFamily::V4],
        cluster_cidrs: "10.0.0.0/8".parse().into_iter().collect(),
    }
}

/// Adds endpoint `endpoint_index` to service `index` and recomputes that service.
fn grow(
    desired: &mut DesiredState,
    objects: &mut [(Service, EndpointSlice)],
    index: usize,
    endpoint_index: usize,
) -> crate::desired::Changes {
    if let Some((service, slice)) = objects.get_mut(index) {
        slice.endpoints.push(endpoint(index, endpoint_index));
        desired.update(&ServiceKey::of_service(service), Some(service), &[slice]);
    }
    desired.take_changes()
}

/// Service `index` (`10.96.x.y`) and its slice.
fn objects(index: usize, endpoints: usize) -> (Service, EndpointSlice) {
    let name = format!("svc-{index}");
    let service = Service {
        metadata: ObjectMeta {
            namespace: Some("bench".to_owned()),
            name: Some(name.clone()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(format!("10.96.{}.{}", (index >> 8) & 255, index & 255)),
            ports: Some(vec![ServicePort {
                port: 80,
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let slice = EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some("bench".to_owned()),
            name: Some(format!("{name}-1")),
            labels: Some([("kubernetes.io/service-name".to_owned(), name)].into()),
            ..Default::default()
        },
        address_type: "IPv4".to_owned(),
        endpoints: (0..endpoints).map(|endpoint_index| endpoint(index, endpoint_index)).collect(),
        ports: Some(vec![EndpointPort {
            port: Some(8080),
            protocol: Some("TCP".to_owned()),
            ..Default::default()
        }]),
    };
    (service, slice)
}

/// Endpoint `endpoint` of service `service`, `10.<service>.<endpoint>`.
fn endpoint(service: usize, endpoint: usize) -> Endpoint {
    Endpoint {
        addresses: vec![format!(
            "10.{}.{}.{}",
            service & 255,
            (service >> 8) & 255,
            endpoint & 255
        )],
        node_name: Some("node-1".to_owned()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incremental_sync_is_elements_only_and_tiny() {
        let costs = bench_sync_costs(200, 5);
        assert_eq!(costs.incremental_script_bytes, 0, "{costs:?}");
        // Five ranges replaced by six, one hairpin address.
        assert_eq!(costs.incremental_elements, 5 + 6 + 1, "{costs:?}");
        assert!(costs.full_script_bytes > 10_000, "{costs:?}");
    }
}
