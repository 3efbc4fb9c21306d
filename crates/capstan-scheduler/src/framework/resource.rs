//! Amounts of compute resources: what a node offers and what a pod requests, with upstream's
//! rules for init containers, restartable (sidecar) init containers and pod overhead.

use capstan_api::Quantity;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use std::collections::BTreeMap;

/// The CPU a container without a CPU request counts as when scoring (not when filtering).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// The memory a container without a memory request counts as when scoring: 200 MiB.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// A set of resource amounts. CPU is in millicores, memory and storage in bytes, pods and
/// extended ("scalar") resources in units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub allowed_pod_number: i64,
    /// Extended resources (`example.com/gpu`), hugepages and any other named resource.
    pub scalar: BTreeMap<String, i64>,
}

impl Resource {
    /// Reads a resource list (a node's allocatable, a container's requests). Unparseable
    /// quantities count as zero: validation refused them at the API already.
    pub fn from_list(list: &BTreeMap<String, ApiQuantity>) -> Resource {
        let mut resource = Resource::default();
        for (name, quantity) in list {
            let Ok(quantity) = Quantity::parse(&quantity.0) else { continue };
            resource.add_named(name, &quantity);
        }
        resource
    }

    fn add_named(&mut self, name: &str, quantity: &Quantity) {
        match name {
            "cpu" => self.milli_cpu += quantity.milli_value(),
            "memory" => self.memory += quantity.value(),
            "ephemeral-storage" => self.ephemeral_storage += quantity.value(),
            "pods" => self.allowed_pod_number += quantity.value(),
            _ => *self.scalar.entry(name.to_owned()).or_default() += quantity.value(),
        }
    }

    /// Adds every amount of `other`.
    pub fn add(&mut self, other: &Resource) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.allowed_pod_number += other.allowed_pod_number;
        for (name, value) in &other.scalar {
            *self.scalar.entry(name.clone()).or_default() += value;
        }
    }

    /// Subtracts every amount of `other` (used when a pod leaves a node).
    pub fn sub(&mut self, other: &Resource) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.allowed_pod_number -= other.allowed_pod_number;
        for (name, value) in &other.scalar {
            *self.scalar.entry(name.clone()).or_default() -= value;
        }
    }

    /// Raises every amount to at least that of `other`.
    pub fn set_max(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.allowed_pod_number = self.allowed_pod_number.max(other.allowed_pod_number);
        for (name, value) in &other.scalar {
            let entry = self.scalar.entry(name.clone()).or_default();
            *entry = (*entry).max(*value);
        }
    }

    /// The amount of a resource by its API name (`cpu` in millicores).
    pub fn get(&self, name: &str) -> i64 {
        match name {
            "cpu" => self.milli_cpu,
            "memory" => self.memory,
            "ephemeral-storage" => self.ephemeral_storage,
            "pods" => self.allowed_pod_number,
            _ => self.scalar.get(name).copied().unwrap_or(0),
        }
    }

    /// What a pod requests, as the scheduler counts it: the larger of (regular containers plus
    /// restartable init containers) and the peak of the init phase, plus the pod's overhead.
    /// `allowed_pod_number` is left 0; a pod's slot is counted by the node.
    pub fn pod_requests(pod: &Pod) -> Resource {
        Self::pod_requests_with(pod, &|container| container_requests(container))
    }

    /// Like [`Resource::pod_requests`], but a container without a CPU or memory request counts
    /// as [`DEFAULT_MILLI_CPU_REQUEST`] and [`DEFAULT_MEMORY_REQUEST`]: the scoring view, so
    /// that best-effort pods still spread (upstream's `GetNonzeroRequests`).
    pub fn pod_non_zero_requests(pod: &Pod) -> Resource {
        Self::pod_requests_with(pod, &|container| {
            let mut requests = container_requests(container);
            let declared = container.resources.as_ref().and_then(|r| r.requests.as_ref());
            if !declared.is_some_and(|list| list.contains_key("cpu")) {
                requests.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
            }
            if !declared.is_some_and(|list| list.contains_key("memory")) {
                requests.memory = DEFAULT_MEMORY_REQUEST;
            }
            requests
        })
    }

    fn pod_requests_with(pod: &Pod, requests_of: &dyn Fn(&Container) -> Resource) -> Resource {
        let Some(spec) = &pod.spec else { return Resource::default() };
        let mut total = Resource::default();
        for container in &spec.containers {
            total.add(&requests_of(container));
        }
        // Init containers run one at a time, each beside the sidecars started before it;
        // sidecars (restartPolicy Always) keep running with the regular containers.
        let mut sidecars = Resource::default();
        let mut init_peak = Resource::default();
        for container in spec.init_containers.iter().flatten() {
            let requests = requests_of(container);
            if container.restart_policy.as_deref() == Some("Always") {
                total.add(&requests);
                sidecars.add(&requests);
                init_peak.set_max(&sidecars);
            } else {
                let mut running = requests;
                running.add(&sidecars);
                init_peak.set_max(&running);
            }
        }
        total.set_max(&init_peak);
        if let Some(overhead) = &spec.overhead {
            total.add(&Resource::from_list(overhead));
        }
        total
    }
}

/// A container's requests; a limit without a request counts as the request, as the API
/// server's defaulting would have made it.
fn container_requests(container: &Container) -> Resource {
    let Some(resources) = &container.resources else { return Resource::default() };
    let mut list = resources.requests.clone().unwrap_or_default();
    for (name, limit) in resources.limits.iter().flatten() {
        list.entry(name.clone()).or_insert_with(|| limit.clone());
    }
    Resource::from_list(&list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    fn container(cpu: &str, memory: &str) -> serde_json::Value {
        json!({"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu, "memory": memory}}})
    }

    #[test]
    fn sums_containers_and_takes_the_init_peak() {
        let pod = pod(json!({
            "containers": [container("100m", "1Mi"), container("200m", "1Mi")],
            "initContainers": [container("500m", "1Ki")],
            "overhead": {"cpu": "10m"}
        }));
        let requests = Resource::pod_requests(&pod);
        assert_eq!(requests.milli_cpu, 510);
        assert_eq!(requests.memory, 2 * 1024 * 1024);
    }

    #[test]
    fn sidecars_add_to_the_containers_and_to_later_init_containers() {
        let mut sidecar = container("300m", "0");
        sidecar["restartPolicy"] = json!("Always");
        let pod = pod(json!({
            "containers": [container("100m", "0")],
            "initContainers": [sidecar, container("250m", "0")],
        }));
        // Regular phase: 100m + 300m = 400m; init peak: 300m + 250m = 550m.
        assert_eq!(Resource::pod_requests(&pod).milli_cpu, 550);
    }

    #[test]
    fn scoring_counts_missing_requests_as_defaults() {
        let pod = pod(json!({"containers": [{"name": "c", "image": "i"}]}));
        assert_eq!(Resource::pod_requests(&pod), Resource::default());
        let scoring = Resource::pod_non_zero_requests(&pod);
        assert_eq!((scoring.milli_cpu, scoring.memory), (100, 200 * 1024 * 1024));
    }

    #[test]
    fn extended_resources_are_scalars() {
        let pod = pod(json!({"containers": [{"name": "c", "image": "i",
            "resources": {"requests": {"example.com/gpu": "2"}, "limits": {"example.com/gpu": "2", "cpu": "1"}}}]}));
        let requests = Resource::pod_requests(&pod);
        assert_eq!(requests.get("example.com/gpu"), 2);
        assert_eq!(requests.milli_cpu, 1000);
    }
}
