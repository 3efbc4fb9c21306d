//! The node lifecycle and taint eviction controllers end to end: hollow nodes in two
//! processes, one of them killed. Its node turns Unknown once the (shortened) grace period
//! has passed, gets the `unreachable` taints, and its pod that tolerates them for 5 s is
//! evicted after those 5 s; its pod with the API server's default 300 s tolerations and the
//! other node's pod stay.

mod support;

use anyhow::{Context, Result, ensure};
use std::time::{Duration, Instant};
use support::Cluster;

/// The grace period the server runs with: longer than the hollow nodes' 10 s Lease renewal
/// interval plus a monitor period, so that the live node never looks silent.
const GRACE: Duration = Duration::from_secs(20);

/// Polls `kubectl get <what> -o jsonpath=<path>` until `accept` takes its output (which it
/// returns), for at most `limit`.
fn wait_until(
    c: &Cluster,
    what: &[&str],
    path: &str,
    limit: Duration,
    accept: impl Fn(&str) -> bool,
) -> Result<String> {
    let jsonpath = format!("jsonpath={path}");
    let args = [&["get"][..], what, &["-o", &jsonpath]].concat();
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < limit {
        let run = c.run(&args)?;
        if run.success && accept(&run.stdout) {
            return Ok(run.stdout);
        }
        last = format!("{}{}", run.stdout, run.stderr);
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("kubectl {args:?} still printed {last:?} after {limit:?}")
}

fn get(c: &Cluster, what: &[&str], path: &str) -> Result<String> {
    let jsonpath = format!("jsonpath={path}");
    c.ok(&[&["get"][..], what, &["-o", &jsonpath]].concat())
}

const READY: &str = "{.status.conditions[?(@.type==\"Ready\")].status}";
const TAINTS: &str = "{range .spec.taints[*]}{.key}:{.effect} {end}";

const PODS: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: short, namespace: e2e}
spec:
  nodeName: a-0
  containers: [{name: c, image: busybox}]
  tolerations:
  - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
---
apiVersion: v1
kind: Pod
metadata: {name: defaulted, namespace: e2e}
spec:
  nodeName: a-0
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: steady, namespace: e2e}
spec:
  nodeName: b-0
  containers: [{name: c, image: busybox}]
";

#[test]
fn a_silent_node_is_tainted_and_its_intolerant_pods_evicted() -> Result<()> {
    let c = Cluster::start_with_flags(&["--node-monitor-grace-period", "20"])?;
    let mut a = c.sim_nodes(&["--count", "1", "--name-prefix", "a-"])?;
    let b = c.sim_nodes(&["--count", "1", "--name-prefix", "b-"])?;
    for node in ["a-0", "b-0"] {
        wait_until(&c, &["node", node], READY, Duration::from_secs(30), |s| s == "True")?;
    }
    c.ok(&["create", "namespace", "e2e"])?;
    c.ok(&["apply", "-f", &c.manifest("pods.yaml", PODS)?])?;
    for pod in ["short", "defaulted", "steady"] {
        wait_until(&c, &["pod", pod, "-n", "e2e"], READY, Duration::from_secs(30), |s| {
            s == "True"
        })?;
    }
    // DefaultTolerationSeconds: 300 s for whatever the pod does not tolerate already.
    let seconds = "{range .spec.tolerations[*]}{.key}={.tolerationSeconds} {end}";
    let defaulted = get(&c, &["pod", "defaulted", "-n", "e2e"], seconds)?;
    ensure!(
        defaulted == "node.kubernetes.io/not-ready=300 node.kubernetes.io/unreachable=300 ",
        "defaulted tolerations: {defaulted}"
    );
    let short = get(&c, &["pod", "short", "-n", "e2e"], seconds)?;
    ensure!(
        short == "node.kubernetes.io/unreachable=5 node.kubernetes.io/not-ready=300 ",
        "short tolerations: {short}"
    );

    // Killed right after a Lease renewal, the node's grace period starts at the kill.
    let lease = ["lease", "a-0", "-n", "kube-node-lease"];
    let renewed = get(&c, &lease, "{.spec.renewTime}")?;
    wait_until(&c, &lease, "{.spec.renewTime}", Duration::from_secs(15), |s| s != renewed)?;
    a.kill()?;
    let killed = Instant::now();

    let ready = "{range .status.conditions[*]}{.type}={.status}/{.reason} {end}";
    let limit = GRACE + Duration::from_secs(15);
    let conditions = wait_until(&c, &["node", "a-0"], READY, limit, |s| s == "Unknown")
        .and_then(|_| get(&c, &["node", "a-0"], ready))?;
    let silent_after = killed.elapsed();
    ensure!(silent_after >= GRACE - Duration::from_secs(1), "Unknown after only {silent_after:?}");
    for condition in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        ensure!(
            conditions.contains(&format!("{condition}=Unknown/NodeStatusUnknown")),
            "conditions of a-0: {conditions}"
        );
    }
    let message = get(&c, &["node", "a-0"], "{.status.conditions[?(@.type==\"Ready\")].message}")?;
    ensure!(message == "Kubelet stopped posting node status.", "message: {message}");

    // Tainted NoExecute (after the next monitor pass) and NoSchedule.
    let taints = wait_until(&c, &["node", "a-0"], TAINTS, Duration::from_secs(15), |s| {
        s.contains("node.kubernetes.io/unreachable:NoExecute")
    })?;
    let tainted = Instant::now();
    ensure!(taints.contains("node.kubernetes.io/unreachable:NoSchedule"), "taints: {taints}");
    for pod in ["short", "defaulted"] {
        let status = get(&c, &["pod", pod, "-n", "e2e"], READY)?;
        ensure!(status == "False", "{pod} on the silent node is Ready={status}");
    }

    // The pod tolerating the taint for 5 s is evicted after them, not before.
    wait_until(
        &c,
        &["pod", "short", "-n", "e2e"],
        "{.metadata.deletionTimestamp}",
        Duration::from_secs(15),
        |s| !s.is_empty(),
    )?;
    let evicted_after = tainted.elapsed();
    ensure!(evicted_after >= Duration::from_secs(4), "evicted {evicted_after:?} after the taint");
    let target = "{.status.conditions[?(@.type==\"DisruptionTarget\")].reason}";
    let reason = get(&c, &["pod", "short", "-n", "e2e"], target)?;
    ensure!(reason == "DeletionByTaintManager", "DisruptionTarget reason: {reason:?}");
    let events = "{range .items[*]}{.reason}: {.message}\n{end}";
    let pod_events = get(&c, &["events", "-n", "e2e"], events)?;
    ensure!(
        pod_events.contains("TaintManagerEviction: Marking for deletion Pod e2e/short"),
        "events in e2e:\n{pod_events}"
    );
    let node_events = get(&c, &["events", "-n", "default"], events)?;
    ensure!(
        node_events.contains("NodeNotReady: Node a-0 status is now: NodeNotReady"),
        "events in default:\n{node_events}"
    );

    // The other pods stay; the live node stays Ready and untainted.
    for pod in ["defaulted", "steady"] {
        let deleting = get(&c, &["pod", pod, "-n", "e2e"], "{.metadata.deletionTimestamp}")?;
        ensure!(deleting.is_empty(), "{pod} is being deleted");
    }
    ensure!(get(&c, &["node", "b-0"], READY)? == "True", "b-0 is no longer Ready");
    ensure!(get(&c, &["node", "b-0"], TAINTS)?.is_empty(), "b-0 is tainted");
    ensure!(get(&c, &["pod", "steady", "-n", "e2e"], READY)? == "True", "steady is not Ready");
    drop(b);
    c.stop().context("stopping the server")
}
