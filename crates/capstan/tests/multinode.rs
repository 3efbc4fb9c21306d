//! Several nodes on one machine (the server's own and two agents in network namespaces):
//! agents join with the server's token, pods spread over the nodes get addresses from each
//! node's pod CIDR, and routes between the nodes let the host and pods on other nodes reach
//! every one of them. Needs root and the node packages (`cargo xtask test` installs them).

mod support;

use anyhow::{Result, ensure};
use std::time::Duration;
use support::multinode::MultiNode;

#[test]
fn pods_on_three_nodes_reach_each_other() -> Result<()> {
    let cluster = MultiNode::start(2, 0)?;
    let manifest = cluster.manifest(
        "web.yaml",
        &format!(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {{matchLabels: {{app: web}}}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: web
        image: {image}
        command: [sh, -c, 'hostname > /tmp/index.html; exec httpd -f -p 80 -h /tmp']
"#,
            image = MultiNode::busybox()
        ),
    )?;
    cluster.ok(&["apply", "-f", &manifest])?;
    let running = cluster.wait_until(Duration::from_secs(90), "3 running replicas", || {
        let phases = cluster.ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ])?;
        Ok(phases.split_whitespace().filter(|p| *p == "Running").count() == 3)
    });
    if running.is_err() {
        eprintln!("{}", cluster.run(&["get", "pods,nodes", "-o", "wide"])?.stdout);
        eprintln!("{}", cluster.run(&["get", "events", "-A"])?.stdout);
    }
    running?;
    let rows = cluster.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP}{\"\\n\"}{end}",
    ])?;
    let pods: Vec<Vec<&str>> = rows.lines().map(|l| l.split_whitespace().collect()).collect();
    let mut nodes: Vec<&str> = pods.iter().map(|p| p[1]).collect();
    nodes.sort();
    nodes.dedup();
    ensure!(nodes.len() == 3, "pods not spread over 3 nodes: {rows}");
    for pod in &pods {
        let (name, ip) = (pod[0], pod[2]);
        // From the host (the server's node).
        let body = std::process::Command::new("curl")
            .args(["-s", "-m", "5", &format!("http://{ip}/index.html")])
            .output()?;
        ensure!(
            String::from_utf8_lossy(&body.stdout).trim() == name,
            "host → {name} ({ip}): {body:?}"
        );
        // From a pod on every other node.
        for other in pods.iter().filter(|o| o[1] != pod[1]) {
            let fetched = cluster.ok(&[
                "exec",
                other[0],
                "--",
                "wget",
                "-qO-",
                &format!("http://{ip}/index.html"),
            ]);
            if fetched.is_err() {
                eprintln!("{}", cluster.agent_logs());
            }
            let fetched = fetched?;
            ensure!(fetched.trim() == name, "{} → {name} ({ip}): {fetched:?}", other[0]);
        }
    }
    // From an agent's host namespace too.
    let output = cluster
        .in_agent(0, &["curl", "-s", "-m", "5", &format!("http://{}/index.html", pods[0][2])])?;
    ensure!(
        String::from_utf8_lossy(&output.stdout).trim() == pods[0][0],
        "agent → pod: {output:?}"
    );
    Ok(())
}
