//! StatefulSets end to end with the real kubectl and hollow nodes: pods created in ordinal
//! order with stable names and host names, scaled down from the top, a rolling update that
//! `kubectl rollout status` follows to completion, and a claim per volume claim template.

mod support;

use anyhow::{Result, ensure};
use support::Cluster;

const SET: &str = "apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: s}
spec:
  serviceName: db
  replicas: 3
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: 'busybox:1'}]
";

/// A set with a volume claim template. Nothing provisions volumes yet, so its pod stays
/// Pending (the scheduler waits for the claim to be bound); the claim is what is checked.
const SET_WITH_CLAIMS: &str = "apiVersion: apps/v1
kind: StatefulSet
metadata: {name: vol, namespace: s}
spec:
  serviceName: vol
  replicas: 1
  selector: {matchLabels: {app: vol}}
  template:
    metadata: {labels: {app: vol}}
    spec:
      containers: [{name: vol, image: 'busybox:1'}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
";

#[test]
fn stateful_sets_keep_order_and_identity() -> Result<()> {
    let c = Cluster::start(false)?;
    let _nodes = c.sim_nodes(&["--count", "2"])?;
    c.ok(&["create", "namespace", "s"])?;
    let path = c.manifest("set.yaml", SET)?;
    c.ok(&["create", "-f", &path])?;
    rolled_out(&c)?;
    ensure!(pods(&c)? == ["db-0", "db-1", "db-2"], "{:?}", pods(&c)?);
    // Created in order: each pod's creation is no earlier than its predecessor's.
    let created = c.ok(&[
        "get",
        "events",
        "-n",
        "s",
        "--sort-by=.metadata.creationTimestamp",
        "-o",
        "jsonpath={.items[*].message}",
    ])?;
    let order: Vec<usize> = ["create Pod db-0", "create Pod db-1", "create Pod db-2"]
        .iter()
        .filter_map(|needle| created.find(needle))
        .collect();
    ensure!(
        order.len() == 3 && order.windows(2).all(|w| w[0] < w[1]),
        "creation events: {created}"
    );
    let hostname = c.ok(&[
        "get",
        "pod",
        "db-1",
        "-n",
        "s",
        "-o",
        "jsonpath={.spec.hostname}/{.spec.subdomain}",
    ])?;
    ensure!(hostname == "db-1/db", "{hostname}");

    c.ok(&["scale", "statefulset/db", "-n", "s", "--replicas=1"])?;
    for _ in 0..200 {
        if pods(&c)? == ["db-0"] {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    ensure!(pods(&c)? == ["db-0"], "after scaling down: {:?}", pods(&c)?);
    c.ok(&["scale", "statefulset/db", "-n", "s", "--replicas=3"])?;
    rolled_out(&c)?;

    c.ok(&["set", "image", "statefulset/db", "-n", "s", "db=busybox:2"])?;
    rolled_out(&c)?;
    let images = c.ok(&[
        "get",
        "pods",
        "-n",
        "s",
        "-l",
        "app=db",
        "-o",
        "jsonpath={.items[*].spec.containers[0].image}",
    ])?;
    ensure!(images == "busybox:2 busybox:2 busybox:2", "images: {images}");

    let path = c.manifest("vol.yaml", SET_WITH_CLAIMS)?;
    c.ok(&["create", "-f", &path])?;
    c.wait_for_field(
        &["pvc", "data-vol-0", "-n", "s"],
        "{.spec.resources.requests.storage}",
        "1Gi",
    )?;
    c.wait_for_field(
        &["pod", "vol-0", "-n", "s"],
        "{.spec.volumes[?(@.name==\"data\")].persistentVolumeClaim.claimName}",
        "data-vol-0",
    )?;
    c.stop()
}

fn rolled_out(c: &Cluster) -> Result<()> {
    let out = c.ok(&["rollout", "status", "statefulset/db", "-n", "s", "--timeout=60s"])?;
    ensure!(out.contains("complete") || out.contains("rolled out"), "{out}");
    Ok(())
}

/// Live pods, sorted by name.
fn pods(c: &Cluster) -> Result<Vec<String>> {
    let out = c.ok(&[
        "get",
        "pods",
        "-n",
        "s",
        "-l",
        "app=db",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}/{.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ])?;
    let mut names: Vec<String> = out
        .lines()
        .filter(|l| l.ends_with('/'))
        .map(|l| l.trim_end_matches('/').to_owned())
        .collect();
    names.sort();
    Ok(names)
}
