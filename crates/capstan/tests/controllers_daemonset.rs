//! DaemonSets end to end with the real kubectl and hollow nodes: one pod per node (placed by
//! the scheduler), a new node gets its pod, a tainted node gets none, and a rolling update by
//! `set image` completes under `kubectl rollout status`.

mod support;

use anyhow::{Result, ensure};
use support::Cluster;

const DAEMON_SET: &str = "apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: d}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: 'busybox:1'}]
";

#[test]
fn daemon_sets_cover_every_eligible_node() -> Result<()> {
    let c = Cluster::start(false)?;
    let _nodes = c.sim_nodes(&["--count", "2", "--name-prefix", "ds-"])?;
    c.ok(&["create", "namespace", "d"])?;
    let path = c.manifest("ds.yaml", DAEMON_SET)?;
    c.ok(&["create", "-f", &path])?;
    rolled_out(&c)?;
    ensure!(nodes_with_pods(&c)? == ["ds-0", "ds-1"], "{:?}", nodes_with_pods(&c)?);

    let _late = c.sim_nodes(&["--count", "1", "--name-prefix", "late-"])?;
    let _tainted = c.sim_nodes(&[
        "--count",
        "1",
        "--name-prefix",
        "tainted-",
        "--taint",
        "dedicated=x:NoSchedule",
    ])?;
    c.wait_for_field(&["node", "tainted-0"], "{.metadata.name}", "tainted-0")?;
    c.wait_for_field(&["daemonset", "agent", "-n", "d"], "{.status.desiredNumberScheduled}", "3")?;
    rolled_out(&c)?;
    ensure!(nodes_with_pods(&c)? == ["ds-0", "ds-1", "late-0"], "{:?}", nodes_with_pods(&c)?);

    c.ok(&["set", "image", "daemonset/agent", "-n", "d", "agent=busybox:2"])?;
    rolled_out(&c)?;
    for _ in 0..100 {
        let images = c.ok(&[
            "get",
            "pods",
            "-n",
            "d",
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ])?;
        if images.split_whitespace().all(|i| i == "busybox:2")
            && images.split_whitespace().count() == 3
        {
            let history = c.ok(&["rollout", "history", "daemonset/agent", "-n", "d"])?;
            ensure!(history.contains('1') && history.contains('2'), "history: {history}");
            return c.stop();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    anyhow::bail!("the pods did not all move to busybox:2")
}

fn rolled_out(c: &Cluster) -> Result<()> {
    let out = c.ok(&["rollout", "status", "daemonset/agent", "-n", "d", "--timeout=60s"])?;
    ensure!(out.contains("successfully rolled out"), "{out}");
    Ok(())
}

/// The nodes running a live pod of the daemon set, sorted.
fn nodes_with_pods(c: &Cluster) -> Result<Vec<String>> {
    let out = c.ok(&[
        "get",
        "pods",
        "-n",
        "d",
        "-o",
        "jsonpath={range .items[*]}{.spec.nodeName}/{.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ])?;
    let mut nodes: Vec<String> = out
        .lines()
        .filter(|l| l.ends_with('/'))
        .map(|l| l.trim_end_matches('/').to_owned())
        .collect();
    nodes.sort();
    Ok(nodes)
}
