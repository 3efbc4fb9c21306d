//! Table-driven tests of the desired Endpoints and EndpointSlices: Services and pods are JSON
//! merged over typical ones, results are rendered as one short line per subset or slice.

use super::*;
use serde_json::{Value, json};

/// `patch` merged into `base` as a JSON merge patch (`null` removes).
fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    base.remove(&key);
                } else {
                    merge(base.entry(key).or_insert(Value::Null), value);
                }
            }
        }
        (base, patch) => *base = patch,
    }
}

/// Service `web` in `d` selecting `app=web`, port `http` 80 to the pods' port named `http`.
fn service(patch: Value) -> Service {
    let mut value = json!({
        "metadata": {"name": "web", "namespace": "d", "uid": "svc-uid", "labels": {"team": "a"}},
        "spec": {"selector": {"app": "web"}, "clusterIP": "10.43.0.10",
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}
    });
    merge(&mut value, patch);
    serde_json::from_value(value).unwrap()
}

/// A running, ready pod `name` in `d` labelled `app=web` on `n1`, its port `http` 8080, at
/// `ip`.
fn pod(name: &str, ip: &str, patch: Value) -> Pod {
    let mut value = json!({
        "metadata": {"name": name, "namespace": "d", "uid": format!("{name}-uid"),
            "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i",
            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True"}]}
    });
    merge(&mut value, patch);
    serde_json::from_value(value).unwrap()
}

fn not_ready() -> Value {
    json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
}

fn terminating() -> Value {
    json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}})
}

fn render_address(address: &EndpointAddress) -> String {
    let mut text = address.ip.clone();
    if let Some(hostname) = &address.hostname {
        text.push_str(&format!("({hostname})"));
    }
    text
}

/// `ready [a b] not-ready [c] ports [http:8080/TCP]`, one per subset, `; ` between them.
fn render_subsets(subsets: &[EndpointSubset]) -> String {
    let addresses = |list: &Option<Vec<EndpointAddress>>| {
        list.iter().flatten().map(render_address).collect::<Vec<_>>().join(" ")
    };
    subsets
        .iter()
        .map(|subset| {
            let ports: Vec<String> = subset
                .ports
                .iter()
                .flatten()
                .map(|p| {
                    let protocol = p.protocol.as_deref().unwrap_or("?");
                    format!("{}:{}/{protocol}", p.name.as_deref().unwrap_or(""), p.port)
                })
                .collect();
            format!(
                "ready [{}] not-ready [{}] ports [{}]",
                addresses(&subset.addresses),
                addresses(&subset.not_ready_addresses),
                ports.join(" ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn check_subsets(service: &Service, pods: &[Pod], expected: &str) {
    let pods: Vec<&Pod> = pods.iter().collect();
    assert_eq!(render_subsets(&desired_subsets(service, &pods)), expected);
}

#[test]
fn endpoints_subsets() {
    let svc = service(json!({}));
    // Ready pods, the named port resolved to the container port.
    check_subsets(
        &svc,
        &[pod("b", "10.42.0.2", json!({})), pod("a", "10.42.0.1", json!({}))],
        "ready [10.42.0.1 10.42.0.2] not-ready [] ports [http:8080/TCP]",
    );
    // Not ready, without an address, finished, terminating.
    check_subsets(
        &svc,
        &[
            pod("a", "10.42.0.1", json!({})),
            pod("b", "10.42.0.2", not_ready()),
            pod("c", "", json!({"status": {"podIPs": null}})),
            pod("d", "10.42.0.4", json!({"status": {"phase": "Succeeded"}})),
            pod("e", "10.42.0.5", terminating()),
        ],
        "ready [10.42.0.1] not-ready [10.42.0.2] ports [http:8080/TCP]",
    );
    // publishNotReadyAddresses: every pod ready, terminating ones included.
    check_subsets(
        &service(json!({"spec": {"publishNotReadyAddresses": true}})),
        &[pod("b", "10.42.0.2", not_ready()), pod("e", "10.42.0.5", terminating())],
        "ready [10.42.0.2 10.42.0.5] not-ready [] ports [http:8080/TCP]",
    );
    // A numeric target port; a missing one means the Service port.
    check_subsets(
        &service(json!({"spec": {"ports": [{"name": "a", "port": 80, "targetPort": 9000},
            {"name": "b", "port": 81}]}})),
        &[pod("a", "10.42.0.1", json!({}))],
        "ready [10.42.0.1] not-ready [] ports [a:9000/TCP b:81/TCP]",
    );
    // The named port resolves per pod; a pod without it is left out of that port.
    check_subsets(
        &service(json!({"spec": {"ports": [{"name": "http", "port": 80, "targetPort": "http"},
            {"name": "x", "port": 81, "targetPort": 81}]}})),
        &[
            pod("a", "10.42.0.1", json!({})),
            pod(
                "b",
                "10.42.0.2",
                json!({"spec": {"containers": [{"name": "c", "image": "i",
                "ports": [{"name": "http", "containerPort": 9090, "protocol": "TCP"}]}]}}),
            ),
            pod("c", "10.42.0.3", json!({"spec": {"containers": [{"name": "c", "image": "i"}]}})),
        ],
        "ready [10.42.0.1] not-ready [] ports [http:8080/TCP]; \
         ready [10.42.0.1 10.42.0.2 10.42.0.3] not-ready [] ports [x:81/TCP]; \
         ready [10.42.0.2] not-ready [] ports [http:9090/TCP]",
    );
    // The protocol must match too; sidecars' ports count, other init containers' not.
    check_subsets(
        &service(json!({"spec": {"ports": [{"name": "dns", "port": 53, "targetPort": "dns",
            "protocol": "UDP"}]}})),
        &[
            pod(
                "a",
                "10.42.0.1",
                json!({"spec": {"containers": [{"name": "c", "image": "i",
                "ports": [{"name": "dns", "containerPort": 5353, "protocol": "TCP"}]}]}}),
            ),
            pod(
                "b",
                "10.42.0.2",
                json!({"spec": {"initContainers": [{"name": "s", "image": "i",
                "restartPolicy": "Always",
                "ports": [{"name": "dns", "containerPort": 5353, "protocol": "UDP"}]}]}}),
            ),
            pod(
                "c",
                "10.42.0.3",
                json!({"spec": {"initContainers": [{"name": "s", "image": "i",
                "ports": [{"name": "dns", "containerPort": 5353, "protocol": "UDP"}]}]}}),
            ),
        ],
        "ready [10.42.0.2] not-ready [] ports [dns:5353/UDP]",
    );
    // A headless Service without ports lists bare addresses; one with a ClusterIP gets none.
    let pods = [pod("a", "10.42.0.1", json!({})), pod("b", "10.42.0.2", not_ready())];
    check_subsets(
        &service(json!({"spec": {"clusterIP": "None", "ports": null}})),
        &pods,
        "ready [10.42.0.1] not-ready [10.42.0.2] ports []",
    );
    check_subsets(&service(json!({"spec": {"ports": null}})), &pods, "");
    // The hostname is published when the pod names the Service as its subdomain.
    check_subsets(
        &svc,
        &[
            pod("a", "10.42.0.1", json!({"spec": {"hostname": "h", "subdomain": "web"}})),
            pod("b", "10.42.0.2", json!({"spec": {"hostname": "h", "subdomain": "other"}})),
        ],
        "ready [10.42.0.1(h) 10.42.0.2] not-ready [] ports [http:8080/TCP]",
    );
    // The Service's family picks the pod's address; without one, each pod's first address
    // decides.
    let dual = json!({"status": {"podIPs": [{"ip": "10.42.0.1"}, {"ip": "fd00::1"}]}});
    check_subsets(
        &service(json!({"spec": {"ipFamilies": ["IPv6"]}})),
        &[pod("a", "10.42.0.1", dual.clone())],
        "ready [fd00::1] not-ready [] ports [http:8080/TCP]",
    );
    check_subsets(
        &service(json!({"spec": {"clusterIP": null}})),
        &[pod("a", "10.42.0.1", dual), pod("b", "fd00::2", json!({}))],
        "ready [10.42.0.1 fd00::2] not-ready [] ports [http:8080/TCP]",
    );
}

#[test]
fn endpoints_object() {
    let svc = service(json!({}));
    let pods = [pod("a", "10.42.0.1", json!({})), pod("b", "10.42.0.2", not_ready())];
    let refs: Vec<&Pod> = pods.iter().collect();
    let created = endpoints_to_write(&svc, &refs, None).unwrap();
    assert_eq!(
        serde_json::to_value(&created).unwrap(),
        json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "web", "namespace": "d", "labels": {"team": "a"}},
            "subsets": [{
                "addresses": [{"ip": "10.42.0.1", "nodeName": "n1",
                    "targetRef": {"kind": "Pod", "namespace": "d", "name": "a", "uid": "a-uid"}}],
                "notReadyAddresses": [{"ip": "10.42.0.2", "nodeName": "n1",
                    "targetRef": {"kind": "Pod", "namespace": "d", "name": "b", "uid": "b-uid"}}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]})
    );

    // What is stored (in another layout, with pod resource versions) needs no write.
    let mut stored: Value = serde_json::to_value(&created).unwrap();
    stored["metadata"]["resourceVersion"] = json!("7");
    stored["subsets"][0]["addresses"][0]["targetRef"]["resourceVersion"] = json!("3");
    let stored: Endpoints = serde_json::from_value(stored).unwrap();
    assert!(endpoints_to_write(&svc, &refs, Some(&stored)).is_none());

    // A changed label, or a pod becoming ready, is written over the stored object.
    let relabelled = service(json!({"metadata": {"labels": {"team": "b"}}}));
    let update = endpoints_to_write(&relabelled, &refs, Some(&stored)).unwrap();
    assert_eq!(update.metadata.resource_version.as_deref(), Some("7"));
    assert_eq!(update.metadata.labels, Some(BTreeMap::from([("team".into(), "b".into())])));
    let all_ready = [pod("a", "10.42.0.1", json!({})), pod("b", "10.42.0.2", json!({}))];
    let all_ready: Vec<&Pod> = all_ready.iter().collect();
    let update = endpoints_to_write(&svc, &all_ready, Some(&stored)).unwrap();
    assert_eq!(
        render_subsets(update.subsets.as_deref().unwrap()),
        "ready [10.42.0.1 10.42.0.2] not-ready [] ports [http:8080/TCP]"
    );

    // Headless Services are labelled so; the trigger-time annotation is not kept.
    let headless = service(json!({"spec": {"clusterIP": "None"}}));
    let mut annotated = stored.clone();
    annotated.metadata.annotations =
        Some(BTreeMap::from([(TRIGGER_TIME_ANNOTATION.into(), "2026-01-01T00:00:00Z".into())]));
    let update = endpoints_to_write(&headless, &all_ready, Some(&annotated)).unwrap();
    assert_eq!(update.metadata.labels.unwrap().get(HEADLESS_LABEL), Some(&String::new()));
    assert_eq!(update.metadata.annotations, None);
}

#[test]
fn endpoints_over_capacity() {
    let svc = service(json!({}));
    let pods: Vec<Pod> = (0..1100)
        .map(|i| {
            let patch = if i % 2 == 0 { json!({}) } else { not_ready() };
            pod(&format!("p{i}"), &format!("10.42.{}.{}", i / 256, i % 256), patch)
        })
        .collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let written = endpoints_to_write(&svc, &refs, None).unwrap();
    let subset = &written.subsets.as_ref().unwrap()[0];
    assert_eq!(subset.addresses.as_ref().unwrap().len(), 550);
    assert_eq!(subset.not_ready_addresses.as_ref().unwrap().len(), 450);
    let annotations = written.metadata.annotations.clone().unwrap();
    assert_eq!(annotations.get(OVER_CAPACITY_ANNOTATION).map(String::as_str), Some("truncated"));
    assert!(endpoints_to_write(&svc, &refs, Some(&written)).is_none());
}

// ---------------------------------------------------------------------------------------------
// EndpointSlices
// ---------------------------------------------------------------------------------------------

/// `10.42.0.1` when ready, serving and not terminating; otherwise the true conditions in
/// brackets, as `10.42.0.3[serving terminating]`; `@zone` when it has one.
fn render_endpoint(endpoint: &Endpoint) -> String {
    let conditions = endpoint.conditions.clone().unwrap_or_default();
    let flags = [
        ("ready", conditions.ready),
        ("serving", conditions.serving),
        ("terminating", conditions.terminating),
    ];
    let mut text = endpoint.addresses.join(",");
    if flags.map(|(_, v)| v) != [Some(true), Some(true), Some(false)] {
        let set: Vec<&str> =
            flags.iter().filter(|(_, v)| *v == Some(true)).map(|(name, _)| *name).collect();
        text.push_str(&format!("[{}]", set.join(" ")));
    }
    if let Some(zone) = &endpoint.zone {
        text.push_str(&format!("@{zone}"));
    }
    text
}

/// `<name or generateName> IPv4 [http:8080/TCP] 10.42.0.1 10.42.0.2`.
fn render_slice(slice: &EndpointSlice) -> String {
    let name = slice.metadata.name.clone().or(slice.metadata.generate_name.clone());
    let ports: Vec<String> = slice
        .ports
        .iter()
        .flatten()
        .map(|p| {
            let name = p.name.as_deref().unwrap_or("");
            format!("{name}:{}/{}", p.port.unwrap_or(0), p.protocol.as_deref().unwrap_or("?"))
        })
        .collect();
    let mut text =
        format!("{} {} [{}]", name.unwrap_or_default(), slice.address_type, ports.join(" "));
    for endpoint in &slice.endpoints {
        text.push(' ');
        text.push_str(&render_endpoint(endpoint));
    }
    text
}

/// An existing slice of `web` (owned by it unless `owner` says otherwise).
fn slice(
    name: &str,
    address_type: &str,
    ports: Value,
    endpoints: Value,
    owner: &str,
) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "d", "resourceVersion": "5",
            "labels": {"team": "a", SERVICE_NAME_LABEL: "web", MANAGED_BY_LABEL: SLICE_CONTROLLER_NAME},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web",
                "uid": owner, "controller": true, "blockOwnerDeletion": true}]},
        "addressType": address_type, "ports": ports, "endpoints": endpoints
    }))
    .unwrap()
}

/// The endpoint `pod` with `ip` on `n1` would have when ready.
fn ready_endpoint(pod: &str, ip: &str) -> Value {
    json!({"addresses": [ip], "conditions": {"ready": true, "serving": true, "terminating": false},
        "nodeName": "n1", "targetRef": {"kind": "Pod", "namespace": "d", "name": pod,
        "uid": format!("{pod}-uid")}})
}

fn http_port() -> Value {
    json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
}

/// Every change as a line: `create …`, `update …`, `delete <name>`, `skip <pod> on <node>`.
fn check_slices(
    service: &Service,
    pods: &[Pod],
    existing: &[EndpointSlice],
    max_per_slice: usize,
    expected: &[&str],
) {
    let zones = HashMap::from([("n1".to_owned(), None), ("n2".to_owned(), Some("z2".to_owned()))]);
    let pods: Vec<&Pod> = pods.iter().collect();
    let existing: Vec<&EndpointSlice> = existing.iter().collect();
    let changes = slice_changes(service, &pods, &zones, &existing, max_per_slice);
    let mut lines: Vec<String> = Vec::new();
    lines.extend(changes.create.iter().map(|s| format!("create {}", render_slice(s))));
    lines.extend(changes.update.iter().map(|s| format!("update {}", render_slice(s))));
    lines.extend(
        changes.delete.iter().map(|s| format!("delete {}", s.metadata.name.clone().unwrap())),
    );
    lines.extend(changes.unknown_nodes.iter().map(|(pod, node)| format!("skip {pod} on {node}")));
    assert_eq!(lines, expected);
}

#[test]
fn slices_from_nothing() {
    let svc = service(json!({}));
    let three = [
        pod("a", "10.42.0.1", json!({})),
        pod("b", "10.42.0.2", not_ready()),
        pod("c", "10.42.0.3", terminating()),
    ];
    check_slices(
        &svc,
        &three,
        &[],
        100,
        &["create web- IPv4 [http:8080/TCP] 10.42.0.1 10.42.0.2[] 10.42.0.3[serving terminating]"],
    );
    // No pods: one empty placeholder.
    check_slices(&svc, &[], &[], 100, &["create web- IPv4 []"]);
    // More than fit in one slice.
    let many: Vec<Pod> =
        (1..=5).map(|i| pod(&format!("p{i}"), &format!("10.42.0.{i}"), json!({}))).collect();
    check_slices(
        &svc,
        &many,
        &[],
        2,
        &[
            "create web- IPv4 [http:8080/TCP] 10.42.0.1 10.42.0.2",
            "create web- IPv4 [http:8080/TCP] 10.42.0.3 10.42.0.4",
            "create web- IPv4 [http:8080/TCP] 10.42.0.5",
        ],
    );
    // Pods resolving different ports go to different slices.
    let other_port = json!({"spec": {"containers": [{"name": "c", "image": "i",
        "ports": [{"name": "http", "containerPort": 9090, "protocol": "TCP"}]}]}});
    check_slices(
        &svc,
        &[pod("a", "10.42.0.1", json!({})), pod("b", "10.42.0.2", other_port)],
        &[],
        100,
        &[
            "create web- IPv4 [http:8080/TCP] 10.42.0.1",
            "create web- IPv4 [http:9090/TCP] 10.42.0.2",
        ],
    );
    // Zones come from the node; pods on unknown nodes wait, unless every address is published.
    let elsewhere = [
        pod("a", "10.42.0.1", json!({"spec": {"nodeName": "n2"}})),
        pod("b", "10.42.0.2", json!({"spec": {"nodeName": "gone"}})),
    ];
    check_slices(
        &svc,
        &elsewhere,
        &[],
        100,
        &["create web- IPv4 [http:8080/TCP] 10.42.0.1@z2", "skip b on gone"],
    );
    check_slices(
        &service(json!({"spec": {"publishNotReadyAddresses": true}})),
        &elsewhere,
        &[],
        100,
        &["create web- IPv4 [http:8080/TCP] 10.42.0.1@z2 10.42.0.2"],
    );
}

#[test]
fn slices_by_address_family() {
    // Without families or a ClusterIP, the pods' families decide (see the module docs).
    let unallocated = service(json!({"spec": {"clusterIP": null}}));
    let pods = [
        pod("a", "10.42.0.1", json!({})),
        pod("b", "fd00::2", json!({})),
        pod(
            "c",
            "10.42.0.3",
            json!({"status": {"podIPs": [{"ip": "10.42.0.3"}, {"ip": "fd00::3"}]}}),
        ),
    ];
    check_slices(
        &unallocated,
        &pods,
        &[],
        100,
        &[
            "create web- IPv4 [http:8080/TCP] 10.42.0.1 10.42.0.3",
            "create web- IPv6 [http:8080/TCP] fd00::2 fd00::3",
        ],
    );
    // A single-stack Service ignores the other family, and deletes slices of it.
    let v6 =
        slice("web-v6", "IPv6", http_port(), json!([ready_endpoint("b", "fd00::2")]), "svc-uid");
    check_slices(
        &service(json!({"spec": {"ipFamilies": ["IPv4"]}})),
        &pods,
        &[v6],
        100,
        &["create web- IPv4 [http:8080/TCP] 10.42.0.1 10.42.0.3", "delete web-v6"],
    );
}

#[test]
fn slices_updated_in_place() {
    let svc = service(json!({}));
    let two = json!([ready_endpoint("a", "10.42.0.1"), ready_endpoint("b", "10.42.0.2")]);
    let current = slice("web-1", "IPv4", http_port(), two.clone(), "svc-uid");
    let pods = [pod("a", "10.42.0.1", json!({})), pod("b", "10.42.0.2", json!({}))];
    // Nothing changed: nothing written, whatever the pods' resource versions.
    let mut versioned = current.clone();
    versioned.endpoints[0].target_ref.as_mut().unwrap().resource_version = Some("9".into());
    check_slices(&svc, &pods, &[versioned], 100, &[]);
    // A pod gone, a pod not ready, a pod added: the same slice, updated.
    check_slices(
        &svc,
        &[pod("b", "10.42.0.2", not_ready()), pod("c", "10.42.0.3", json!({}))],
        std::slice::from_ref(&current),
        100,
        &["update web-1 IPv4 [http:8080/TCP] 10.42.0.2[] 10.42.0.3"],
    );
    // Changed Service labels are copied.
    check_slices(
        &service(json!({"metadata": {"labels": {"team": "b"}}})),
        &pods,
        std::slice::from_ref(&current),
        100,
        &["update web-1 IPv4 [http:8080/TCP] 10.42.0.1 10.42.0.2"],
    );
    // New endpoints go into the unchanged slice they fill best, else a new one.
    let one =
        slice("web-1", "IPv4", http_port(), json!([ready_endpoint("a", "10.42.0.1")]), "svc-uid");
    let three = slice(
        "web-3",
        "IPv4",
        http_port(),
        json!([
            ready_endpoint("x", "10.42.1.1"),
            ready_endpoint("y", "10.42.1.2"),
            ready_endpoint("z", "10.42.1.3")
        ]),
        "svc-uid",
    );
    let mut more = vec![
        pod("a", "10.42.0.1", json!({})),
        pod("x", "10.42.1.1", json!({})),
        pod("y", "10.42.1.2", json!({})),
        pod("z", "10.42.1.3", json!({})),
        pod("n", "10.42.2.1", json!({})),
    ];
    check_slices(
        &svc,
        &more,
        &[one.clone(), three.clone()],
        4,
        &["update web-3 IPv4 [http:8080/TCP] 10.42.1.1 10.42.1.2 10.42.1.3 10.42.2.1"],
    );
    more.push(pod("m", "10.42.2.2", json!({})));
    check_slices(
        &svc,
        &more,
        &[one, three],
        4,
        &["update web-1 IPv4 [http:8080/TCP] 10.42.0.1 10.42.2.1 10.42.2.2"],
    );
}

#[test]
fn slices_deleted_or_recycled() {
    let svc = service(json!({}));
    let two = json!([ready_endpoint("a", "10.42.0.1"), ready_endpoint("b", "10.42.0.2")]);
    let current = slice("web-1", "IPv4", http_port(), two, "svc-uid");
    // Every pod gone: the slice becomes the placeholder rather than being deleted.
    check_slices(&svc, &[], std::slice::from_ref(&current), 100, &["update web-1 IPv4 []"]);
    // The placeholder stays as it is.
    let placeholder = slice("web-p", "IPv4", json!([]), json!([]), "svc-uid");
    check_slices(&svc, &[], std::slice::from_ref(&placeholder), 100, &[]);
    // ...and takes the endpoints when pods come.
    check_slices(
        &svc,
        &[pod("a", "10.42.0.1", json!({}))],
        &[placeholder],
        100,
        &["update web-p IPv4 [http:8080/TCP] 10.42.0.1"],
    );
    // An emptied slice goes when another holds the remaining endpoints.
    let other =
        slice("web-2", "IPv4", http_port(), json!([ready_endpoint("c", "10.42.0.3")]), "svc-uid");
    check_slices(
        &svc,
        &[pod("c", "10.42.0.3", json!({}))],
        &[current.clone(), other],
        100,
        &["delete web-1"],
    );
    // Slices of an earlier Service of the same name are deleted, never reused.
    let stale =
        slice("web-old", "IPv4", http_port(), json!([ready_endpoint("a", "10.42.0.1")]), "old-uid");
    check_slices(
        &svc,
        &[pod("a", "10.42.0.1", json!({}))],
        &[stale],
        100,
        &["create web- IPv4 [http:8080/TCP] 10.42.0.1", "delete web-old"],
    );
}

#[test]
fn slice_object() {
    let svc = service(json!({"spec": {"clusterIP": "None",
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "appProtocol": "h2c"}]}}));
    let pods = [pod(
        "a",
        "10.42.0.1",
        json!({"spec": {"nodeName": "n2", "hostname": "h",
        "subdomain": "web"}}),
    )];
    let refs: Vec<&Pod> = pods.iter().collect();
    let zones = HashMap::from([("n2".to_owned(), Some("z2".to_owned()))]);
    let changes = slice_changes(&svc, &refs, &zones, &[], MAX_ENDPOINTS_PER_SLICE);
    assert_eq!(
        serde_json::to_value(&changes.create).unwrap(),
        json!([{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"generateName": "web-", "namespace": "d",
                "labels": {"team": "a", HEADLESS_LABEL: "", SERVICE_NAME_LABEL: "web",
                    MANAGED_BY_LABEL: SLICE_CONTROLLER_NAME},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web",
                    "uid": "svc-uid", "controller": true, "blockOwnerDeletion": true}]},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "h2c"}],
            "endpoints": [{"addresses": ["10.42.0.1"],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "hostname": "h", "nodeName": "n2", "zone": "z2",
                "targetRef": {"kind": "Pod", "namespace": "d", "name": "a", "uid": "a-uid"}}]}])
    );
}

#[test]
fn which_services_are_managed_and_select_what() {
    let svc = service(json!({}));
    let mut empty_selector = svc.clone();
    empty_selector.spec.as_mut().unwrap().selector = Some(BTreeMap::new());
    assert!(manages_endpoints(&svc));
    assert!(!manages_endpoints(&service(json!({"spec": {"selector": null}}))));
    assert!(!manages_endpoints(&empty_selector));
    assert!(!manages_endpoints(&service(json!({"spec": {"type": "ExternalName"}}))));
    assert!(selects(&svc, &pod("a", "10.42.0.1", json!({}))));
    assert!(!selects(&svc, &pod("a", "10.42.0.1", json!({"metadata": {"namespace": "e"}}))));
    assert!(!selects(&svc, &pod("a", "10.42.0.1", json!({"metadata": {"labels": {"app": "x"}}}))));
    assert!(!selects(&empty_selector, &pod("a", "10.42.0.1", json!({}))));
}
