//! The cost of syncs at a given size, without a kernel: how long computing and rendering a
//! full sync and an incremental one (one endpoint added to one service) take, and how large
//! their scripts are. For `cargo xtask bench proxy`.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use kube::api::ObjectMeta;

use crate::script;
use crate::state::{NodeFacts, ProxyState};

/// What [`bench_sync_costs`] measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncCosts {
    pub services: usize,
    pub endpoints_per_service: usize,
    /// Computing the state from the objects.
    pub compute: Duration,
    pub full_script_bytes: usize,
    pub full_render: Duration,
    pub incremental_script_bytes: usize,
    pub incremental_render: Duration,
}

/// Measures syncs of `services` ClusterIP services with `endpoints_per_service` endpoints
/// each (at most 65,535 services and 65,535 endpoints per service).
pub fn bench_sync_costs(services: usize, endpoints_per_service: usize) -> SyncCosts {
    let node = NodeFacts {
        node_name: "node-0".to_owned(),
        families: vec![crate::state::IpFamily::V4],
        cluster_cidrs: "10.0.0.0/8".parse().into_iter().collect(),
    };
    let objects: Vec<(Service, EndpointSlice)> =
        (0..services).map(|index| objects(index, endpoints_per_service)).collect();
    let started = Instant::now();
    let before =
        ProxyState::compute(objects.iter().map(|o| &o.0), objects.iter().map(|o| &o.1), &node);
    let compute = started.elapsed();
    let started = Instant::now();
    let full = script::render_full("capstan-proxy", &before);
    let full_render = started.elapsed();

    let mut changed = objects.clone();
    if let Some((_, slice)) = changed.first_mut() {
        slice.endpoints.push(endpoint(0, endpoints_per_service));
    }
    let started = Instant::now();
    let after =
        ProxyState::compute(changed.iter().map(|o| &o.0), changed.iter().map(|o| &o.1), &node);
    let diff = script::render_diff(
        "capstan-proxy",
        &before,
        &after,
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
        incremental_render,
    }
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
            (endpoint >> 8) & 255,
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
    fn an_incremental_sync_is_much_smaller_than_a_full_one() {
        let costs = bench_sync_costs(200, 5);
        assert!(costs.full_script_bytes > 100 * costs.incremental_script_bytes, "{costs:?}");
        assert!(costs.incremental_script_bytes > 0, "{costs:?}");
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
    /// One endpoint added to one service, as an incremental sync.
    pub incremental: Duration,
    pub incremental_script_bytes: usize,
}

/// Applies a full sync and then one incremental change of `services` × `endpoints_per_service`
/// into `table` through `nft`, timing each (state computation included). The caller deletes
/// the table afterwards.
pub fn bench_kernel_sync(
    nft: std::sync::Arc<dyn crate::Nft>,
    table: &str,
    services: usize,
    endpoints_per_service: usize,
) -> Result<KernelSyncCosts, crate::NftError> {
    let node = NodeFacts {
        node_name: "node-0".to_owned(),
        families: vec![crate::state::IpFamily::V4],
        cluster_cidrs: "10.0.0.0/8".parse().into_iter().collect(),
    };
    let mut objects: Vec<(Service, EndpointSlice)> =
        (0..services).map(|index| objects(index, endpoints_per_service)).collect();
    let mut syncer = crate::Syncer::new(nft, table);
    let started = Instant::now();
    let state =
        ProxyState::compute(objects.iter().map(|o| &o.0), objects.iter().map(|o| &o.1), &node);
    let full_report = syncer.sync(&state, Instant::now())?;
    let full = started.elapsed();
    if let Some((_, slice)) = objects.first_mut() {
        slice.endpoints.push(endpoint(0, endpoints_per_service));
    }
    let started = Instant::now();
    let state =
        ProxyState::compute(objects.iter().map(|o| &o.0), objects.iter().map(|o| &o.1), &node);
    let incremental_report = syncer.sync(&state, Instant::now())?;
    let incremental = started.elapsed();
    Ok(KernelSyncCosts {
        services,
        endpoints_per_service,
        full,
        full_script_bytes: full_report.script_bytes,
        incremental,
        incremental_script_bytes: incremental_report.script_bytes,
    })
}
