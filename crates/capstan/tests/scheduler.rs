//! The scheduler end to end: a `capstan server`, hollow nodes from `capstan sim-nodes` (three
//! nodes of 4 CPUs in three zones), and the real kubectl. Resource fit with upstream's
//! FailedScheduling message, node affinity and nodeSelector, taints and tolerations (and a
//! pending pod placed once the taint is removed), required anti-affinity spreading pods over
//! nodes, topology spread over zones, preemption of a lower-priority pod, and an unschedulable
//! pod placed when a matching node is added.

mod support;

use anyhow::{Context, Result, ensure};
use std::collections::BTreeMap;
use support::Cluster;

#[test]
fn scheduler_places_pods_like_kube_scheduler() -> Result<()> {
    let c = Cluster::start(false)?;
    let _nodes = c.sim_nodes(&[
        "--count",
        "3",
        "--name-prefix",
        "a-",
        "--zones",
        "3",
        "--cpu",
        "4",
        "--memory",
        "8Gi",
    ])?;
    for node in ["a-0", "a-1", "a-2"] {
        c.wait_for_field(
            &["node", node],
            "{.status.conditions[?(@.type==\"Ready\")].status}",
            "True",
        )?;
    }
    c.ok(&["create", "namespace", "s"])?;
    resource_fit(&c).context("resource fit")?;
    node_affinity(&c).context("node affinity")?;
    taints(&c).context("taints and tolerations")?;
    anti_affinity(&c).context("anti-affinity")?;
    topology_spread(&c).context("topology spread")?;
    preemption(&c).context("preemption")?;
    node_added(&c).context("a node added")?;
    c.stop()
}

/// A pod in namespace `s`: `extra` is YAML inserted into its spec (indented by four spaces).
fn pod(name: &str, labels: &str, cpu: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: s\n  labels: {{{labels}}}\nspec:\n  restartPolicy: Always\n  containers:\n  - name: c\n    image: busybox\n    resources: {{requests: {{cpu: \"{cpu}\"}}}}\n{extra}"
    )
}

fn create(c: &Cluster, name: &str, manifest: &str) -> Result<()> {
    let path = c.manifest(&format!("{name}.yaml"), manifest)?;
    c.ok(&["create", "-f", &path])?;
    Ok(())
}

fn node_of(c: &Cluster, pod: &str) -> Result<String> {
    c.ok(&["get", "pod", pod, "-n", "s", "-o", "jsonpath={.spec.nodeName}"])
}

fn wait_bound(c: &Cluster, pod: &str) -> Result<String> {
    c.wait_for_field(&["pod", pod, "-n", "s"], "{.status.phase}", "Running")?;
    node_of(c, pod)
}

/// Waits until the pod's PodScheduled condition is False with this message.
fn wait_unschedulable(c: &Cluster, pod: &str, message: &str) -> Result<()> {
    c.wait_for_field(
        &["pod", pod, "-n", "s"],
        "{.status.conditions[?(@.type==\"PodScheduled\")].message}",
        message,
    )?;
    ensure!(node_of(c, pod)?.is_empty(), "{pod} was bound");
    Ok(())
}

fn zone_of(c: &Cluster, node: &str) -> Result<String> {
    c.ok(&[
        "get",
        "node",
        node,
        "-o",
        "jsonpath={.metadata.labels.topology\\.kubernetes\\.io/zone}",
    ])
}

fn delete_all(c: &Cluster) -> Result<()> {
    c.ok(&["delete", "pods", "--all", "-n", "s", "--wait=true", "--timeout=30s"])?;
    Ok(())
}

fn resource_fit(c: &Cluster) -> Result<()> {
    let mut nodes = Vec::new();
    for i in 1..=3 {
        let name = format!("fit-{i}");
        create(c, &name, &pod(&name, "app: fit", "3", ""))?;
        nodes.push(wait_bound(c, &name)?);
    }
    nodes.sort();
    ensure!(
        nodes == ["a-0", "a-1", "a-2"],
        "LeastAllocated spreads 3-CPU pods over the 4-CPU nodes: {nodes:?}"
    );
    create(c, "fit-4", &pod("fit-4", "app: fit", "3", ""))?;
    let message = "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.";
    wait_unschedulable(c, "fit-4", message)?;
    let events = c.ok(&[
        "get",
        "events",
        "-n",
        "s",
        "--field-selector",
        "involvedObject.name=fit-4",
        "-o",
        "jsonpath={.items[*].reason}",
    ])?;
    ensure!(events.contains("FailedScheduling"), "events of fit-4: {events}");
    let scheduled = c.ok(&[
        "get",
        "events",
        "-n",
        "s",
        "--field-selector",
        "involvedObject.name=fit-1",
        "-o",
        "jsonpath={.items[*].message}",
    ])?;
    ensure!(
        scheduled.contains("Successfully assigned s/fit-1 to a-"),
        "events of fit-1: {scheduled}"
    );
    // Freeing one node lets the pending pod in: the deletion is a cluster event it waits for.
    c.ok(&["delete", "pod", "fit-1", "-n", "s"])?;
    ensure!(wait_bound(c, "fit-4")? == nodes_of_deleted(&nodes, c)?, "fit-4 went where fit-1 was");
    delete_all(c)
}

/// The one node of `all` without a pod of app=fit other than fit-4.
fn nodes_of_deleted(all: &[String], c: &Cluster) -> Result<String> {
    let mut used = Vec::new();
    for pod in ["fit-2", "fit-3"] {
        used.push(node_of(c, pod)?);
    }
    all.iter().find(|node| !used.contains(node)).cloned().context("no free node")
}

fn node_affinity(c: &Cluster) -> Result<()> {
    let affinity = "  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms:\n        - matchExpressions:\n          - {key: topology.kubernetes.io/zone, operator: In, values: [zone-1]}\n";
    create(c, "zonal", &pod("zonal", "app: a", "100m", affinity))?;
    ensure!(wait_bound(c, "zonal")? == "a-1");
    let selector = "  nodeSelector: {kubernetes.io/hostname: a-2}\n";
    create(c, "pinned", &pod("pinned", "app: a", "100m", selector))?;
    ensure!(wait_bound(c, "pinned")? == "a-2");
    let nowhere = "  nodeSelector: {disktype: ssd}\n";
    create(c, "nowhere", &pod("nowhere", "app: a", "100m", nowhere))?;
    wait_unschedulable(
        c,
        "nowhere",
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
    )?;
    delete_all(c)
}

fn taints(c: &Cluster) -> Result<()> {
    c.ok(&["taint", "node", "a-0", "dedicated=db:NoSchedule"])?;
    let on_a0 = "  nodeSelector: {kubernetes.io/hostname: a-0}\n";
    create(c, "intolerant", &pod("intolerant", "app: t", "100m", on_a0))?;
    wait_unschedulable(
        c,
        "intolerant",
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
    )?;
    let tolerant = format!(
        "{on_a0}  tolerations:\n  - {{key: dedicated, operator: Equal, value: db, effect: NoSchedule}}\n"
    );
    create(c, "tolerant", &pod("tolerant", "app: t", "100m", &tolerant))?;
    ensure!(wait_bound(c, "tolerant")? == "a-0");
    // Untainting the node is a node update: the waiting pod is retried and placed.
    c.ok(&["taint", "node", "a-0", "dedicated-"])?;
    ensure!(wait_bound(c, "intolerant")? == "a-0");
    delete_all(c)
}

fn anti_affinity(c: &Cluster) -> Result<()> {
    let spread = "  affinity:\n    podAntiAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - labelSelector: {matchLabels: {app: web}}\n        topologyKey: kubernetes.io/hostname\n";
    let mut nodes = Vec::new();
    for i in 0..3 {
        let name = format!("web-{i}");
        create(c, &name, &pod(&name, "app: web", "100m", spread))?;
        nodes.push(wait_bound(c, &name)?);
    }
    nodes.sort();
    ensure!(nodes == ["a-0", "a-1", "a-2"], "one replica per node: {nodes:?}");
    create(c, "web-3", &pod("web-3", "app: web", "100m", spread))?;
    wait_unschedulable(
        c,
        "web-3",
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.",
    )?;
    delete_all(c)
}

fn topology_spread(c: &Cluster) -> Result<()> {
    // Two pods on a-0 first: an unconstrained choice would pile on; the constraint evens out.
    let spread = "  topologySpreadConstraints:\n  - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: zonal}}}\n";
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..6 {
        let name = format!("zonal-{i}");
        create(c, &name, &pod(&name, "app: zonal", "100m", spread))?;
        let node = wait_bound(c, &name)?;
        *per_zone.entry(zone_of(c, &node)?).or_default() += 1;
        let (most, least) = (
            per_zone.values().max().copied().unwrap_or(0),
            if per_zone.len() < 3 { 0 } else { per_zone.values().min().copied().unwrap_or(0) },
        );
        ensure!(most - least <= 1, "skew over 1 after {name}: {per_zone:?}");
    }
    ensure!(per_zone.values().all(|n| *n == 2), "two per zone: {per_zone:?}");
    delete_all(c)
}

fn preemption(c: &Cluster) -> Result<()> {
    let classes = "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: low}\nvalue: 10\n---\napiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: high}\nvalue: 1000\n";
    create(c, "classes", classes)?;
    for i in 0..3 {
        let name = format!("low-{i}");
        create(c, &name, &pod(&name, "app: low", "4", "  priorityClassName: low\n"))?;
        wait_bound(c, &name)?;
    }
    ensure!(c.ok(&["get", "pod", "low-0", "-n", "s", "-o", "jsonpath={.spec.priority}"])? == "10");
    create(c, "high", &pod("high", "app: high", "4", "  priorityClassName: high\n"))?;
    let node = wait_bound(c, "high")?;
    let remaining = c.ok(&[
        "get",
        "pods",
        "-n",
        "s",
        "-l",
        "app=low",
        "-o",
        "jsonpath={.items[*].spec.nodeName}",
    ])?;
    ensure!(
        remaining.split_whitespace().count() == 2,
        "one low-priority pod was preempted: {remaining}"
    );
    ensure!(
        !remaining.split_whitespace().any(|n| n == node),
        "the victim was on {node}: {remaining}"
    );
    let reasons = c.ok(&["get", "events", "-n", "s", "-o", "jsonpath={.items[*].reason}"])?;
    ensure!(reasons.contains("Preempted"), "events: {reasons}");
    delete_all(c)
}

fn node_added(c: &Cluster) -> Result<()> {
    let late = "  nodeSelector: {pool: late}\n";
    create(c, "waiting", &pod("waiting", "app: w", "100m", late))?;
    wait_unschedulable(
        c,
        "waiting",
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
    )?;
    let _late = c.sim_nodes(&["--count", "1", "--name-prefix", "late-", "--label", "pool=late"])?;
    ensure!(wait_bound(c, "waiting")? == "late-0");
    delete_all(c)
}
