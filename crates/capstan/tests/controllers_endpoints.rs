//! The endpoints and EndpointSlice controllers end to end, with hollow nodes (two, in two
//! zones) running the pods and the real kubectl: a Service selecting three pods gets Endpoints
//! with their addresses and the named port resolved, and an EndpointSlice of three ready
//! endpoints; a deleted pod leaves both; `kubectl get` prints them; Services without a selector
//! or of type ExternalName are left alone; a deleted Service takes its Endpoints and slices
//! with it.

mod support;

use anyhow::{Context, Result, ensure};
use std::time::{Duration, Instant};
use support::Cluster;

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: e, labels: {app: web}}
spec:
  containers:
  - {name: c, image: busybox, ports: [{name: http, containerPort: 8080}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: e, labels: {app: web}}
spec:
  containers:
  - {name: c, image: busybox, ports: [{name: http, containerPort: 8080}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: e, labels: {app: web}}
spec:
  containers:
  - {name: c, image: busybox, ports: [{name: http, containerPort: 8080}]}
"#;

const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: e}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: manual, namespace: e}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: manual, namespace: e}
subsets: [{addresses: [{ip: 192.0.2.1}], ports: [{name: http, port: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: away, namespace: e}
spec:
  type: ExternalName
  externalName: example.com
  selector: {app: web}
"#;

/// Polls `kubectl <args>` until `accept` takes its output (30 s at most); returns it.
fn wait_until(c: &Cluster, args: &[&str], accept: impl Fn(&str) -> bool) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let run = c.run(args)?;
        let output = format!("{}{}", run.stdout, run.stderr);
        if run.success && accept(&run.stdout) {
            return Ok(run.stdout);
        }
        ensure!(Instant::now() < deadline, "kubectl {args:?} still prints {output:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The pods' IPs, sorted as the Endpoints list them.
fn pod_ips(c: &Cluster, pods: &[&str]) -> Result<Vec<String>> {
    let mut ips = Vec::new();
    for pod in pods {
        ips.push(c.ok(&["get", "pod", pod, "-n", "e", "-o", "jsonpath={.status.podIP}"])?);
    }
    ips.sort();
    Ok(ips)
}

fn slice_field(c: &Cluster, path: &str) -> Result<String> {
    c.ok(&[
        "get",
        "endpointslices",
        "-n",
        "e",
        "-l",
        "kubernetes.io/service-name=web",
        "-o",
        &format!("jsonpath={path}"),
    ])
}

#[test]
fn services_get_endpoints_and_endpointslices() -> Result<()> {
    let started = Instant::now();
    let c = Cluster::start(false)?;
    let _nodes = c.sim_nodes(&["--count", "2", "--zones", "2"])?;
    c.ok(&["create", "namespace", "e"])?;
    let pods = c.manifest("pods.yaml", PODS)?;
    c.ok(&["create", "-f", &pods])?;
    let services = c.manifest("services.yaml", SERVICES)?;
    c.ok(&["create", "-f", &services])?;
    for pod in ["web-0", "web-1", "web-2"] {
        c.wait_for_field(
            &["pod", pod, "-n", "e"],
            "{.status.conditions[?(@.type==\"Ready\")].status}",
            "True",
        )?;
    }
    let ips = pod_ips(&c, &["web-0", "web-1", "web-2"])?;
    ensure!(ips.iter().all(|ip| !ip.is_empty()), "pod IPs: {ips:?}");

    // Endpoints: the three addresses, the named port resolved to the container port.
    c.wait_for_field(
        &["endpoints", "web", "-n", "e"],
        "{.subsets[*].addresses[*].ip}",
        &ips.join(" "),
    )
    .context("endpoints of web")?;
    let port =
        c.ok(&["get", "endpoints", "web", "-n", "e", "-o", "jsonpath={.subsets[0].ports[0]}"])?;
    let port: serde_json::Value = serde_json::from_str(&port)?;
    ensure!(
        port == serde_json::json!({"name": "http", "port": 8080, "protocol": "TCP"}),
        "endpoints port: {port}"
    );
    let targets = c.ok(&[
        "get",
        "endpoints",
        "web",
        "-n",
        "e",
        "-o",
        "jsonpath={.subsets[*].addresses[*].targetRef.name}",
    ])?;
    let mut targets: Vec<&str> = targets.split(' ').collect();
    targets.sort();
    ensure!(targets == ["web-0", "web-1", "web-2"], "endpoints target pods: {targets:?}");

    // The EndpointSlice: three ready endpoints, owned by the Service, in the nodes' zones.
    wait_until(
        &c,
        &[
            "get",
            "endpointslices",
            "-n",
            "e",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "jsonpath={.items[*].endpoints[*].conditions.ready}",
        ],
        |ready| ready == "true true true",
    )
    .context("endpointslice of web")?;
    let mut addresses: Vec<String> = slice_field(&c, "{.items[*].endpoints[*].addresses[0]}")?
        .split(' ')
        .map(String::from)
        .collect();
    addresses.sort();
    ensure!(addresses == ips, "slice addresses {addresses:?}, pods {ips:?}");
    let facts = [
        ("{.items[*].addressType}", "IPv4"),
        ("{.items[0].ports[0].name}/{.items[0].ports[0].port}", "http/8080"),
        ("{.items[0].metadata.generateName}", "web-"),
        (
            "{.items[0].metadata.ownerReferences[0].kind}/{.items[0].metadata.ownerReferences[0].name}",
            "Service/web",
        ),
        (
            "{.items[0].metadata.labels.endpointslice\\.kubernetes\\.io/managed-by}",
            "endpointslice-controller.k8s.io",
        ),
    ];
    for (path, expected) in facts {
        let got = slice_field(&c, path)?;
        ensure!(got == expected, "slice {path}: {got:?}, not {expected:?}");
    }
    let zones = slice_field(&c, "{.items[0].endpoints[*].zone}")?;
    ensure!(zones.split(' ').all(|z| z.starts_with("zone-")), "slice zones: {zones:?}");
    let nodes = slice_field(&c, "{.items[0].endpoints[*].nodeName}")?;
    ensure!(nodes.split(' ').count() == 3, "slice node names: {nodes:?}");

    // kubectl's tables.
    let listed = c.ok(&["get", "endpoints", "-n", "e"])?;
    ensure!(
        listed.contains("web") && ips.iter().all(|ip| listed.contains(&format!("{ip}:8080"))),
        "kubectl get endpoints:\n{listed}"
    );
    let listed = c.ok(&["get", "endpointslices", "-n", "e"])?;
    ensure!(
        listed.contains("web-") && listed.contains("IPv4") && listed.contains("8080"),
        "kubectl get endpointslices:\n{listed}"
    );

    // A deleted pod leaves both.
    c.ok(&["delete", "pod", "web-1", "-n", "e", "--wait=false"])?;
    let remaining = pod_ips(&c, &["web-0", "web-2"])?;
    c.wait_for_field(
        &["endpoints", "web", "-n", "e"],
        "{.subsets[*].addresses[*].ip}",
        &remaining.join(" "),
    )
    .context("endpoints after a pod's deletion")?;
    wait_until(
        &c,
        &[
            "get",
            "endpointslices",
            "-n",
            "e",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "jsonpath={.items[*].endpoints[*].targetRef.name}",
        ],
        |names| {
            let mut names: Vec<&str> = names.split(' ').collect();
            names.sort();
            names == ["web-0", "web-2"]
        },
    )
    .context("endpointslice after a pod's deletion")?;

    // Without a selector: the user's Endpoints untouched, no slices; ExternalName: nothing.
    let manual = c.ok(&["get", "endpoints", "manual", "-n", "e", "-o", "jsonpath={.subsets}"])?;
    ensure!(manual.contains("192.0.2.1"), "the user's endpoints were changed: {manual}");
    for service in ["manual", "away"] {
        let label = format!("kubernetes.io/service-name={service}");
        let slices = c.ok(&["get", "endpointslices", "-n", "e", "-l", &label, "-o", "name"])?;
        ensure!(slices.is_empty(), "slices of {service}: {slices}");
    }
    ensure!(
        c.fails(&["get", "endpoints", "away", "-n", "e"])?.contains("NotFound"),
        "an ExternalName service got endpoints"
    );

    // A deleted Service takes its Endpoints (this controller) and slices (the garbage
    // collector) with it.
    c.ok(&["delete", "service", "web", "-n", "e"])?;
    wait_until(&c, &["get", "endpoints", "-n", "e", "-o", "name"], |names| {
        !names.contains("endpoints/web")
    })?;
    wait_until(
        &c,
        &["get", "endpointslices", "-n", "e", "-l", "kubernetes.io/service-name=web", "-o", "name"],
        str::is_empty,
    )?;

    c.stop()?;
    ensure!(started.elapsed() < Duration::from_secs(40), "took {:?}", started.elapsed());
    Ok(())
}
