//! The ReplicaSet and ReplicationController controllers end to end: a `capstan server`, two
//! hollow nodes that run what is bound to them, and the real kubectl. Pods are created up to
//! the desired count (and status reports them ready), a deleted pod is replaced, scaling down
//! deletes and scaling up creates exactly what is missing, a matching orphan is adopted and
//! counted, a pod relabelled away is released and replaced, and a ReplicationController does
//! the same under its own name.

mod support;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use std::time::{Duration, Instant};
use support::Cluster;

#[test]
fn replicasets_and_replication_controllers_keep_their_pods() -> Result<()> {
    let c = Cluster::start(false)?;
    let _nodes = c.sim_nodes(&["--count", "2"])?;
    c.ok(&["create", "namespace", "rs"])?;
    replica_set(&c).context("replica set")?;
    adoption(&c).context("adoption and release")?;
    replication_controller(&c).context("replication controller")?;
    c.stop()
}

const REPLICA_SET: &str = "apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web
  namespace: rs
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web, tier: front}
    spec:
      containers:
      - name: c
        image: busybox
";

fn replica_set(c: &Cluster) -> Result<()> {
    let path = c.manifest("rs.yaml", REPLICA_SET)?;
    c.ok(&["create", "-f", &path])?;
    c.wait_for_field(&["rs", "web", "-n", "rs"], "{.status.readyReplicas}", "3")?;
    let pods = wait_for_pods(c, "app=web", 3)?;
    let uid = c.ok(&["get", "rs", "web", "-n", "rs", "-o", "jsonpath={.metadata.uid}"])?;
    for pod in &pods {
        ensure!(pod.name.starts_with("web-"), "a generated name: {}", pod.name);
        ensure!(
            pod.controller.as_deref() == Some(uid.as_str()),
            "{} is controlled by web",
            pod.name
        );
        ensure!(pod.phase == "Running", "{} runs", pod.name);
    }
    c.wait_for_field(&["rs", "web", "-n", "rs"], "{.status.fullyLabeledReplicas}", "3")?;
    c.wait_for_field(&["rs", "web", "-n", "rs"], "{.status.availableReplicas}", "3")?;
    let generation =
        c.ok(&["get", "rs", "web", "-n", "rs", "-o", "jsonpath={.metadata.generation}"])?;
    c.wait_for_field(&["rs", "web", "-n", "rs"], "{.status.observedGeneration}", &generation)?;

    // Self-healing: a deleted pod is replaced.
    let victim = &pods[0].name;
    c.ok(&["delete", "pod", victim, "-n", "rs", "--wait=false"])?;
    let healed = wait_until(c, "app=web", |pods| {
        pods.len() == 3 && pods.iter().all(|pod| &pod.name != victim)
    })?;
    ensure!(healed.len() == 3, "three pods again: {healed:?}");
    c.wait_for_field(&["rs", "web", "-n", "rs"], "{.status.readyReplicas}", "3")?;

    // Scaling down deletes two.
    c.ok(&["scale", "rs", "web", "-n", "rs", "--replicas=1"])?;
    wait_for_pods(c, "app=web", 1)?;
    c.wait_for_field(&["rs", "web", "-n", "rs"], "{.status.replicas}", "1")?;
    let deleted = events(c, "ReplicaSet", "web", "SuccessfulDelete")?;
    ensure!(deleted.len() == 2, "two SuccessfulDelete events: {deleted:?}");
    ensure!(deleted.iter().all(|note| note.starts_with("Deleted pod: web-")), "{deleted:?}");

    // Scaling up creates exactly the four missing, however the watch lags.
    c.ok(&["scale", "rs", "web", "-n", "rs", "--replicas=5"])?;
    c.wait_for_field(&["rs", "web", "-n", "rs"], "{.status.readyReplicas}", "5")?;
    let pods = wait_for_pods(c, "app=web", 5)?;
    std::thread::sleep(Duration::from_secs(1));
    let again = active_pods(c, "app=web")?;
    ensure!(again.len() == 5 && again == pods, "still the same five pods: {again:?}");
    let created = events(c, "ReplicaSet", "web", "SuccessfulCreate")?;
    // 3 at first, 1 replacement, 4 on scaling up: any duplicate would show here.
    ensure!(created.len() == 8, "eight SuccessfulCreate events: {created:?}");
    ensure!(created.iter().all(|note| note.starts_with("Created pod: web-")), "{created:?}");
    c.ok(&["delete", "rs", "web", "-n", "rs"])?;
    Ok(())
}

/// A Running pod in namespace `rs` with these labels and no owner.
fn orphan_manifest(name: &str, app: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: rs\n  labels: {{app: {app}}}\nspec:\n  containers:\n  - name: c\n    image: busybox\n"
    )
}

fn adoption(c: &Cluster) -> Result<()> {
    let path = c.manifest("orphan.yaml", &orphan_manifest("orphan", "adopt"))?;
    c.ok(&["create", "-f", &path])?;
    c.wait_for_field(&["pod", "orphan", "-n", "rs"], "{.status.phase}", "Running")?;
    let owner = REPLICA_SET
        .replace("name: web", "name: adopter")
        .replace("replicas: 3", "replicas: 2")
        .replace("app: web", "app: adopt");
    let path = c.manifest("adopter.yaml", &owner)?;
    c.ok(&["create", "-f", &path])?;
    c.wait_for_field(&["rs", "adopter", "-n", "rs"], "{.status.readyReplicas}", "2")?;
    let uid = c.ok(&["get", "rs", "adopter", "-n", "rs", "-o", "jsonpath={.metadata.uid}"])?;
    let pods = wait_for_pods(c, "app=adopt", 2)?;
    let orphan = pods.iter().find(|pod| pod.name == "orphan").context("the orphan was kept")?;
    ensure!(orphan.controller.as_deref() == Some(uid.as_str()), "the orphan was adopted: {pods:?}");
    let block = c.ok(&[
        "get",
        "pod",
        "orphan",
        "-n",
        "rs",
        "-o",
        "jsonpath={.metadata.ownerReferences[0].blockOwnerDeletion}",
    ])?;
    ensure!(block == "true", "blockOwnerDeletion: {block}");
    let created = events(c, "ReplicaSet", "adopter", "SuccessfulCreate")?;
    ensure!(created.len() == 1, "only one pod created next to the orphan: {created:?}");

    // Relabelled away, the pod is released and replaced.
    c.ok(&["label", "pod", "orphan", "-n", "rs", "app=gone", "--overwrite"])?;
    wait_until(c, "app=gone", |pods| pods.len() == 1 && pods[0].controller.is_none())?;
    let pods = wait_for_pods(c, "app=adopt", 2)?;
    ensure!(pods.iter().all(|pod| pod.name != "orphan"), "{pods:?}");
    c.ok(&["delete", "rs", "adopter", "-n", "rs"])?;
    c.ok(&["delete", "pod", "orphan", "-n", "rs", "--wait=false"])?;
    Ok(())
}

const REPLICATION_CONTROLLER: &str = "apiVersion: v1
kind: ReplicationController
metadata:
  name: legacy
  namespace: rs
spec:
  replicas: 2
  selector: {app: legacy}
  template:
    metadata:
      labels: {app: legacy}
    spec:
      containers:
      - name: c
        image: busybox
";

fn replication_controller(c: &Cluster) -> Result<()> {
    let path = c.manifest("rc.yaml", REPLICATION_CONTROLLER)?;
    c.ok(&["create", "-f", &path])?;
    c.wait_for_field(&["rc", "legacy", "-n", "rs"], "{.status.readyReplicas}", "2")?;
    let pods = wait_for_pods(c, "app=legacy", 2)?;
    let uid = c.ok(&["get", "rc", "legacy", "-n", "rs", "-o", "jsonpath={.metadata.uid}"])?;
    ensure!(pods.iter().all(|pod| pod.controller.as_deref() == Some(uid.as_str())), "{pods:?}");

    let victim = &pods[0].name;
    c.ok(&["delete", "pod", victim, "-n", "rs", "--wait=false"])?;
    wait_until(c, "app=legacy", |pods| {
        pods.len() == 2 && pods.iter().all(|pod| &pod.name != victim)
    })?;
    c.ok(&["scale", "rc", "legacy", "-n", "rs", "--replicas=1"])?;
    wait_for_pods(c, "app=legacy", 1)?;
    c.wait_for_field(&["rc", "legacy", "-n", "rs"], "{.status.replicas}", "1")?;

    let created = events(c, "ReplicationController", "legacy", "SuccessfulCreate")?;
    ensure!(created.len() == 3, "two pods and a replacement: {created:?}");
    let components = c.ok(&[
        "get",
        "events",
        "-n",
        "rs",
        "--field-selector",
        "involvedObject.name=legacy,involvedObject.kind=ReplicationController",
        "-o",
        "jsonpath={.items[*].reportingComponent}",
    ])?;
    ensure!(
        components.split(' ').all(|component| component == "replication-controller"),
        "reported by replication-controller: {components}"
    );
    Ok(())
}

/// What the test looks at in a pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PodSummary {
    name: String,
    phase: String,
    /// The uid of its controller.
    controller: Option<String>,
}

/// The pods of namespace `rs` matching `selector` that are neither finished nor being
/// deleted, by name.
fn active_pods(c: &Cluster, selector: &str) -> Result<Vec<PodSummary>> {
    let list: Value =
        serde_json::from_str(&c.ok(&["get", "pods", "-n", "rs", "-l", selector, "-o", "json"])?)?;
    let mut pods: Vec<PodSummary> = list["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        .filter(|pod| !matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        .map(|pod| PodSummary {
            name: pod["metadata"]["name"].as_str().unwrap_or_default().to_owned(),
            phase: pod["status"]["phase"].as_str().unwrap_or_default().to_owned(),
            controller: pod["metadata"]["ownerReferences"].as_array().and_then(|refs| {
                refs.iter()
                    .find(|r| r["controller"] == Value::Bool(true))
                    .and_then(|r| r["uid"].as_str().map(str::to_owned))
            }),
        })
        .collect();
    pods.sort();
    Ok(pods)
}

/// Polls the active pods matching `selector` until `done` holds (30 s at most).
fn wait_until(
    c: &Cluster,
    selector: &str,
    done: impl Fn(&[PodSummary]) -> bool,
) -> Result<Vec<PodSummary>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pods = active_pods(c, selector)?;
        if done(&pods) {
            return Ok(pods);
        }
        ensure!(Instant::now() < deadline, "pods matching {selector} stayed {pods:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until exactly `count` active pods match `selector`, all Running.
fn wait_for_pods(c: &Cluster, selector: &str, count: usize) -> Result<Vec<PodSummary>> {
    wait_until(c, selector, |pods| {
        pods.len() == count && pods.iter().all(|pod| pod.phase == "Running")
    })
}

/// The notes of the Events with `reason` about the object `kind`/`name` in namespace `rs`.
fn events(c: &Cluster, kind: &str, name: &str, reason: &str) -> Result<Vec<String>> {
    let list: Value = serde_json::from_str(&c.ok(&["get", "events", "-n", "rs", "-o", "json"])?)?;
    let mut notes: Vec<String> = list["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter(|event| {
            event["involvedObject"]["kind"] == kind
                && event["involvedObject"]["name"] == name
                && event["reason"] == reason
        })
        .map(|event| event["message"].as_str().unwrap_or_default().to_owned())
        .collect();
    notes.sort();
    Ok(notes)
}
