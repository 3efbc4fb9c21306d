//! Service cluster IPs and node ports, allocated as kube-apiserver allocates them: on every
//! write that creates or changes a Service, before it is stored, and released once a
//! Service no longer holds them.
//!
//! **Why markers.** Several API servers may share one datastore, and a server may restart
//! at any moment, so the allocator keeps no state of its own that matters. Each value a
//! Service holds has a marker key in the datastore, created with create-if-absent before
//! the Service is written: two writers racing for one value cannot both create its
//! marker, whatever server they run in. IPs are marked by `networking.k8s.io/v1`
//! IPAddress objects named by the address (as upstream 1.33 does; `kubectl get
//! ipaddresses` lists them), node ports by a key under `/ranges/servicenodeports/`.
//! Markers name their Service (`spec.parentRef`). Choosing a free value also skips what
//! the watch cache shows held by any Service, so data written before markers existed is
//! respected, and the startup repair creates the markers those Services lack.
//!
//! **Leaks.** Marker and Service are two writes: a crash between them, or before a
//! release, leaves a marker its Service does not hold. Such a marker is reclaimed once it
//! is older than `LEAK_GRACE_SECONDS` (long enough for the write it was made for to have
//! happened) and its Service, read from the datastore, does not hold the value: when a
//! request asks for that value, and by the periodic sweep (upstream's repair loops).

mod ranges;
mod spec;

pub(crate) use ranges::ServiceNetwork;
pub use ranges::ServiceNetworkError;
pub(crate) use spec::Holdings;

use crate::keys;
use crate::rest::Rest;
use capstan_api::registry::{self, ResourceType};
use capstan_api::table::{format_rfc3339, parse_rfc3339};
use capstan_api::{ApiError, FieldError};
use capstan_store::{KeyValue, RangeRequest, StoreError};
use ranges::{Family, IpRange};
use serde_json::{Map, Value, json};
use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

/// How old a marker its Service does not hold must be before it is reclaimed.
const LEAK_GRACE_SECONDS: i64 = 60;
/// How often markers are checked for leaks.
pub(crate) const SWEEP_INTERVAL: Duration = Duration::from_secs(180);
/// Where node port markers live: `/ranges/servicenodeports/<port>`.
const NODE_PORT_PREFIX: &str = "/ranges/servicenodeports/";
/// How many random choices a dynamic allocation tries before giving up: each lost race
/// (another server took the value first) costs one.
const CHOICES: usize = 32;

/// One value a Service holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Held {
    Ip(IpAddr),
    Port(u16),
}

/// The Service a write is for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Owner {
    namespace: String,
    name: String,
}

impl Owner {
    fn of(service: &Value) -> Self {
        let text =
            |field| service.pointer(field).and_then(Value::as_str).unwrap_or_default().to_owned();
        Owner { namespace: text("/metadata/namespace"), name: text("/metadata/name") }
    }
}

/// The markers one write created, to be released when the write fails or ends up not
/// holding them.
#[derive(Debug, Default)]
pub(crate) struct Reservation {
    owner: Owner,
    created: Vec<Held>,
}

impl Reservation {
    fn has(&self, held: Held) -> bool {
        self.created.contains(&held)
    }
}

/// The values the Services in the watch cache hold, or their markers show held.
#[derive(Debug, Default)]
struct Taken {
    ips: HashSet<IpAddr>,
    ports: HashSet<u16>,
}

#[derive(Debug)]
pub(crate) struct ServiceAllocator {
    network: ServiceNetwork,
}

impl ServiceAllocator {
    pub(crate) fn new(network: ServiceNetwork) -> Self {
        ServiceAllocator { network }
    }

    /// The `kubernetes` Service's address: the first of the primary CIDR, and its family.
    pub(crate) fn kubernetes_ip(&self) -> (IpAddr, &'static str) {
        let family = self.network.primary();
        let first = self.network.range(family).map(IpRange::first);
        (first.unwrap_or(IpAddr::from([10, 43, 0, 1])), family.name())
    }

    /// Before a Service is written: drops what a type change leaves behind, settles the
    /// IP family fields, and fills in and reserves the cluster IPs and node ports it holds
    /// and `old` (the stored Service, on update) did not. A dry run reserves nothing.
    /// Whatever happens after, the caller hands `reservation` to [`Self::settle`].
    pub(crate) async fn allocate(
        &self,
        rest: &Rest,
        service: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
        reservation: &mut Reservation,
    ) -> Result<(), ApiError> {
        let owner = Owner::of(service);
        reservation.owner = owner.clone();
        let name = owner.name.clone();
        let invalid = |errors: Vec<FieldError>| ApiError::invalid(services(), &name, &errors);
        let Some(spec) = service.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        let old_spec = old.and_then(|old| old.get("spec")).and_then(Value::as_object);
        if let Some(old_spec) = old_spec {
            spec::drop_type_dependent_fields(spec, old_spec);
        }
        if spec::text(spec, "type") == "ExternalName" {
            return Ok(());
        }
        spec::normalize_cluster_ips(spec).map_err(|error| invalid(vec![*error]))?;
        let errors = spec::init_ip_families(&self.network, spec, old_spec);
        if !errors.is_empty() {
            return Err(invalid(errors));
        }
        let old_held = old.map(Holdings::of).unwrap_or_default();
        let mut request = Request { rest, owner: &owner, reservation, dry_run, taken: None };
        if spec::text(spec, "clusterIP") != "None" {
            self.allocate_ips(&mut request, spec, &old_held)
                .await
                .map_err(|e| e.into_api(&name))?;
        }
        self.allocate_node_ports(&mut request, spec, &old_held)
            .await
            .map_err(|e| e.into_api(&name))?;
        Ok(())
    }

    async fn allocate_ips(
        &self,
        request: &mut Request<'_>,
        spec: &mut Map<String, Value>,
        old_held: &Holdings,
    ) -> Result<(), Refusal> {
        let families: Vec<Family> = spec
            .get("ipFamilies")
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(|f| f.as_str().and_then(Family::parse)).collect())
            .unwrap_or_default();
        let given = spec::cluster_ips(spec);
        let mut ips = given.clone();
        for (index, family) in families.iter().enumerate() {
            let Some(range) = self.network.range(*family) else { continue };
            if index >= ips.len() {
                ips.push(String::new());
            }
            if ips[index].is_empty() {
                let ip = self.next_ip(request, range).await?;
                ips[index] = ip.to_string();
                continue;
            }
            let wanted = ips[index].clone();
            let Ok(ip) = wanted.parse::<IpAddr>() else {
                return Err(Refusal::Invalid(Box::new(FieldError::invalid(
                    format!("spec.clusterIPs[{index}]"),
                    wanted.as_str(),
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                ))));
            };
            if old_held.ips.contains(&ip) {
                continue;
            }
            let failed = |why: String| {
                Refusal::Invalid(Box::new(FieldError::invalid(
                    "spec.clusterIPs",
                    json!(given),
                    format!("failed to allocate IP {wanted}: {why}"),
                )))
            };
            if !range.contains(ip) {
                return Err(failed(format!(
                    "provided IP is not in the valid range. The range of valid IPs is {}",
                    range.text()
                )));
            }
            if !request.acquire(Held::Ip(ip)).await? {
                return Err(failed("provided IP is already allocated".into()));
            }
        }
        if let Some(first) = ips.first().cloned() {
            spec.insert("clusterIP".into(), json!(first));
            spec.insert("clusterIPs".into(), json!(ips));
        }
        Ok(())
    }

    async fn next_ip(&self, request: &mut Request<'_>, range: &IpRange) -> Result<IpAddr, Refusal> {
        for _ in 0..CHOICES {
            let taken = request.taken();
            let Some(ip) = range.choose(&taken.ips) else { break };
            taken.ips.insert(ip);
            if request.acquire(Held::Ip(ip)).await? {
                return Ok(ip);
            }
        }
        Err(Refusal::Internal(format!(
            "failed to allocate a serviceIP: range is full: no free addresses in {}",
            range.text()
        )))
    }

    async fn allocate_node_ports(
        &self,
        request: &mut Request<'_>,
        spec: &mut Map<String, Value>,
        old_held: &Holdings,
    ) -> Result<(), Refusal> {
        let range = self.network.node_ports;
        let range_text = format!("{}-{}", range.first, range.last);
        let mut ports = spec::ports(spec).to_vec();
        if spec::has_node_ports(spec::text(spec, "type")) {
            let allocate_new = spec::allocates_node_ports(spec);
            // The same port number over TCP and UDP shares one node port, as upstream's.
            let mut by_number: Vec<(i64, u16)> = Vec::new();
            for (index, port) in ports.iter_mut().enumerate() {
                let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
                let shared = by_number.iter().find(|(n, _)| *n == number).map(|(_, p)| *p);
                let node_port = match spec::node_port(port) {
                    Some(node_port) => {
                        let path = format!("spec.ports[{index}].nodePort");
                        self.claim_port(request, node_port, old_held, &path, &range_text).await?;
                        node_port
                    }
                    None if !allocate_new => continue,
                    None => match shared {
                        Some(node_port) => node_port,
                        None => self.next_port(request).await?,
                    },
                };
                if let Some(fields) = port.as_object_mut() {
                    fields.insert("nodePort".into(), json!(node_port));
                }
                if shared.is_none() {
                    by_number.push((number, node_port));
                }
            }
            spec.insert("ports".into(), Value::Array(ports));
        }
        if spec::needs_health_check(spec) {
            let given = spec.get("healthCheckNodePort").and_then(Value::as_i64).unwrap_or(0);
            let port = match u16::try_from(given) {
                Ok(0) | Err(_) => self.next_port(request).await?,
                Ok(port) => {
                    let path = "spec.healthCheckNodePort";
                    match self.claim_port(request, port, old_held, path, &range_text).await {
                        Ok(()) => port,
                        Err(Refusal::Invalid(error)) => {
                            return Err(Refusal::Internal(format!(
                                "failed to allocate requested HealthCheck NodePort {port}: {}",
                                error.detail
                            )));
                        }
                        Err(other) => return Err(other),
                    }
                }
            };
            spec.insert("healthCheckNodePort".into(), json!(port));
        }
        Ok(())
    }

    /// Reserves a requested node port, unless the Service holds it already.
    async fn claim_port(
        &self,
        request: &mut Request<'_>,
        port: u16,
        old_held: &Holdings,
        path: &str,
        range_text: &str,
    ) -> Result<(), Refusal> {
        if old_held.ports.contains(&port) || request.reservation.has(Held::Port(port)) {
            return Ok(());
        }
        if !self.network.node_ports.contains(i64::from(port)) {
            return Err(Refusal::Invalid(Box::new(FieldError::invalid(
                path,
                port,
                format!(
                    "provided port is not in the valid range. The range of valid ports is {range_text}"
                ),
            ))));
        }
        if !request.acquire(Held::Port(port)).await? {
            return Err(Refusal::Invalid(Box::new(FieldError::invalid(
                path,
                port,
                "provided port is already allocated",
            ))));
        }
        Ok(())
    }

    async fn next_port(&self, request: &mut Request<'_>) -> Result<u16, Refusal> {
        for _ in 0..CHOICES {
            let taken = request.taken();
            let Some(port) = self.network.node_ports.choose(&taken.ports) else { break };
            taken.ports.insert(port);
            if request.acquire(Held::Port(port)).await? {
                return Ok(port);
            }
        }
        Err(Refusal::Internal("failed to allocate a nodePort: range is full".into()))
    }

    /// After a Service write, whatever its outcome: releases what the Service held before
    /// (`old`) or what the write reserved, and does not hold now (`kept`: the stored
    /// Service, the old one when the write failed, `None` when the Service is gone).
    pub(crate) async fn settle(
        &self,
        rest: &Rest,
        reservation: Reservation,
        old: Option<&Value>,
        kept: Option<&Value>,
    ) {
        let kept = kept.map(Holdings::of).unwrap_or_default();
        let mut owner = reservation.owner.clone();
        let mut candidates = reservation.created;
        if let Some(old) = old {
            owner = Owner::of(old);
            let held = Holdings::of(old);
            candidates.extend(held.ips.into_iter().map(Held::Ip));
            candidates.extend(held.ports.into_iter().map(Held::Port));
        }
        for held in candidates {
            let still_held = match held {
                Held::Ip(ip) => kept.ips.contains(&ip),
                Held::Port(port) => kept.ports.contains(&port),
            };
            if !still_held {
                release(rest, held, &owner).await;
            }
        }
    }

    /// Makes the datastore agree with the Services: every value a Service holds gets its
    /// marker (Services written before markers existed, or whose marker was lost), and
    /// markers leaked by a crash go. Run at start, then every `SWEEP_INTERVAL`.
    pub(crate) async fn repair(&self, rest: &Rest) -> Result<(), ApiError> {
        let services = rest.cache.list(&keys::type_prefix(services()), |_| true);
        for service in &services.objects {
            let owner = Owner::of(service);
            let held = Holdings::of(service);
            let values =
                held.ips.into_iter().map(Held::Ip).chain(held.ports.into_iter().map(Held::Port));
            for value in values {
                match rest.store.create(&marker_key(value), marker(value, &owner), None).await {
                    Ok(_) => tracing::info!(?value, service = ?owner, "marked a held value"),
                    Err(StoreError::AlreadyExists { current, .. }) => {
                        let marked_for = marker_owner(&current);
                        if marked_for.as_ref() != Some(&owner) {
                            tracing::warn!(?value, service = ?owner, marked_for = ?marked_for,
                                "a Service holds a value marked for another");
                        }
                    }
                    Err(error) => return Err(crate::rest::store_error(error)),
                }
            }
        }
        for prefix in [keys::type_prefix(ip_addresses()), NODE_PORT_PREFIX.to_owned()] {
            let request = RangeRequest { prefix, ..Default::default() };
            let page = rest.store.range(request).await.map_err(crate::rest::store_error)?;
            for kv in page.kvs {
                let Some(value) = held_of_key(&kv.key) else { continue };
                if is_stale(rest, &kv, value).await {
                    tracing::info!(?value, "releasing a leaked allocation");
                    let _ = rest.store.delete(&kv.key, Some(kv.mod_revision)).await;
                }
            }
        }
        Ok(())
    }
}

/// Why an allocation refused a Service: a field's fault (422) or the server's (500).
#[derive(Debug)]
enum Refusal {
    Invalid(Box<FieldError>),
    Internal(String),
    Api(ApiError),
}

impl Refusal {
    fn into_api(self, name: &str) -> ApiError {
        match self {
            Refusal::Invalid(error) => ApiError::invalid(services(), name, &[*error]),
            Refusal::Internal(message) => ApiError::internal(message),
            Refusal::Api(error) => error,
        }
    }
}

/// One allocating write in progress.
struct Request<'a> {
    rest: &'a Rest,
    owner: &'a Owner,
    reservation: &'a mut Reservation,
    dry_run: bool,
    /// Read from the watch cache on the first dynamic choice.
    taken: Option<Taken>,
}

impl Request<'_> {
    /// What is taken: what the cached Services hold, the cached markers, and what this
    /// write reserved.
    fn taken(&mut self) -> &mut Taken {
        let rest = self.rest;
        let reservation = &*self.reservation;
        self.taken.get_or_insert_with(|| {
            let mut taken = Taken::default();
            for service in rest.cache.list(&keys::type_prefix(services()), |_| true).objects {
                let held = Holdings::of(&service);
                taken.ips.extend(held.ips);
                taken.ports.extend(held.ports);
            }
            let markers = rest.cache.list(&keys::type_prefix(ip_addresses()), |_| true);
            let ports = rest.cache.list(NODE_PORT_PREFIX, |_| true);
            for object in markers.objects.iter().chain(&ports.objects) {
                match held_of_marker(object) {
                    Some(Held::Ip(ip)) => taken.ips.insert(ip),
                    Some(Held::Port(port)) => taken.ports.insert(port),
                    None => false,
                };
            }
            for held in &reservation.created {
                match held {
                    Held::Ip(ip) => taken.ips.insert(*ip),
                    Held::Port(port) => taken.ports.insert(*port),
                };
            }
            taken
        })
    }

    /// Reserves one value: creates its marker, reclaiming a leaked one. `false` when
    /// another Service holds it. A dry run only looks.
    async fn acquire(&mut self, held: Held) -> Result<bool, Refusal> {
        if self.reservation.has(held) {
            return Ok(true);
        }
        let key = marker_key(held);
        let store = &self.rest.store;
        if self.dry_run {
            let (current, _) = store.get(&key, None).await.map_err(refusal)?;
            return Ok(match current {
                None => true,
                Some(current) => is_stale(self.rest, &current, held).await,
            });
        }
        for _ in 0..2 {
            match store.create(&key, marker(held, self.owner), None).await {
                Ok(_) => {
                    self.reservation.created.push(held);
                    return Ok(true);
                }
                Err(StoreError::AlreadyExists { current, .. }) => {
                    if !is_stale(self.rest, &current, held).await {
                        return Ok(false);
                    }
                    tracing::info!(?held, "reclaiming a leaked allocation");
                    match store.delete(&key, Some(current.mod_revision)).await {
                        Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
                        Err(error) => return Err(refusal(error)),
                    }
                }
                Err(error) => return Err(refusal(error)),
            }
        }
        Ok(false)
    }
}

fn refusal(error: StoreError) -> Refusal {
    Refusal::Api(crate::rest::store_error(error))
}

/// Whether a marker is a leak: old enough, and its Service (as stored now) does not hold
/// the value.
async fn is_stale(rest: &Rest, marker: &KeyValue, held: Held) -> bool {
    let Ok(object) = serde_json::from_slice::<Value>(&marker.value) else { return true };
    let created = object
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339)
        .unwrap_or(0);
    if crate::rest::now_seconds() - created < LEAK_GRACE_SECONDS {
        return false;
    }
    let Some(owner) = owner_of(&object) else { return true };
    let key = keys::object_key(services(), Some(&owner.namespace), &owner.name);
    match rest.store.get(&key, None).await {
        Ok((None, _)) => true,
        Ok((Some(kv), _)) => {
            let Ok(service) = serde_json::from_slice::<Value>(&kv.value) else { return true };
            let holdings = Holdings::of(&service);
            !match held {
                Held::Ip(ip) => holdings.ips.contains(&ip),
                Held::Port(port) => holdings.ports.contains(&port),
            }
        }
        // Unsure: keep it.
        Err(_) => false,
    }
}

/// Deletes a value's marker if it is marked for `owner`.
async fn release(rest: &Rest, held: Held, owner: &Owner) {
    let key = marker_key(held);
    let current = match rest.store.get(&key, None).await {
        Ok((Some(current), _)) => current,
        Ok((None, _)) => return,
        Err(error) => {
            tracing::warn!(%error, ?held, "releasing an allocation failed; the sweep will");
            return;
        }
    };
    if marker_owner(&current).as_ref() != Some(owner) {
        return;
    }
    if let Err(error) = rest.store.delete(&key, Some(current.mod_revision)).await {
        tracing::debug!(%error, ?held, "the allocation changed while it was released");
    }
}

fn services() -> &'static ResourceType {
    registry::find("", "v1", "services").unwrap_or_else(|| unreachable_type("services"))
}

fn ip_addresses() -> &'static ResourceType {
    registry::find("networking.k8s.io", "v1", "ipaddresses")
        .unwrap_or_else(|| unreachable_type("ipaddresses"))
}

/// The registry is a static table that a test holds to upstream's kinds: both types are
/// in it.
fn unreachable_type(plural: &str) -> &'static ResourceType {
    panic!("the built-in registry has no {plural}")
}

fn marker_key(held: Held) -> String {
    match held {
        Held::Ip(ip) => keys::object_key(ip_addresses(), None, &ip.to_string()),
        Held::Port(port) => format!("{NODE_PORT_PREFIX}{port}"),
    }
}

fn held_of_key(key: &str) -> Option<Held> {
    if let Some(port) = key.strip_prefix(NODE_PORT_PREFIX) {
        return port.parse().ok().map(Held::Port);
    }
    let name = key.strip_prefix(&keys::type_prefix(ip_addresses()))?;
    name.parse().ok().map(Held::Ip)
}

fn held_of_marker(object: &Value) -> Option<Held> {
    let name = object.pointer("/metadata/name").and_then(Value::as_str)?;
    match object.get("kind").and_then(Value::as_str)? {
        "IPAddress" => name.parse().ok().map(Held::Ip),
        _ => name.parse().ok().map(Held::Port),
    }
}

/// The stored marker: an IPAddress as upstream's allocator writes it, or its node port
/// counterpart of the same shape.
fn marker(held: Held, owner: &Owner) -> bytes::Bytes {
    let parent = json!({
        "group": "",
        "resource": "services",
        "namespace": owner.namespace,
        "name": owner.name,
    });
    let created = format_rfc3339(crate::rest::now_seconds());
    let object = match held {
        Held::Ip(ip) => json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IPAddress",
            "metadata": {
                "name": ip.to_string(),
                "uid": crate::rest::new_uid(),
                "creationTimestamp": created,
                "labels": {
                    "ipaddress.kubernetes.io/ip-family": Family::of(ip).name(),
                    "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io",
                },
            },
            "spec": {"parentRef": parent},
        }),
        Held::Port(port) => json!({
            "kind": "ServiceNodePort",
            "metadata": {"name": port.to_string(), "creationTimestamp": created},
            "spec": {"parentRef": parent},
        }),
    };
    bytes::Bytes::from(object.to_string())
}

fn owner_of(marker: &Value) -> Option<Owner> {
    let parent = marker.pointer("/spec/parentRef")?;
    let text = |field: &str| parent.get(field).and_then(Value::as_str).map(str::to_owned);
    Some(Owner { namespace: text("namespace")?, name: text("name")? })
}

fn marker_owner(kv: &KeyValue) -> Option<Owner> {
    serde_json::from_slice::<Value>(&kv.value).ok().as_ref().and_then(owner_of)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_name_their_value_and_service() {
        let owner = Owner { namespace: "ns".into(), name: "web".into() };
        for held in [
            Held::Ip("10.43.0.7".parse().unwrap()),
            Held::Ip("fd43::7".parse().unwrap()),
            Held::Port(30080),
        ] {
            let key = marker_key(held);
            assert_eq!(held_of_key(&key), Some(held), "{key}");
            let object: Value = serde_json::from_slice(&marker(held, &owner)).unwrap();
            assert_eq!(held_of_marker(&object), Some(held));
            assert_eq!(owner_of(&object), Some(owner.clone()));
        }
        assert_eq!(
            marker_key(Held::Ip("10.43.0.7".parse().unwrap())),
            "/networking.k8s.io/ipaddresses/10.43.0.7"
        );
        assert_eq!(marker_key(Held::Port(30080)), "/ranges/servicenodeports/30080");
    }
}
