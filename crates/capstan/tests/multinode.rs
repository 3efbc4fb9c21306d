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
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: DoNotSchedule
        labelSelector: {{matchLabels: {{app: web}}}}
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
    // A ClusterIP Service: from the host and from a pod on another node, requests reach
    // every replica.
    cluster.ok(&["expose", "deployment", "web", "--port=80", "--type=NodePort"])?;
    let cluster_ip = cluster.ok(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"])?;
    let node_port =
        cluster.ok(&["get", "service", "web", "-o", "jsonpath={.spec.ports[0].nodePort}"])?;
    let names: std::collections::BTreeSet<String> = pods.iter().map(|p| p[0].to_owned()).collect();
    let fetch_from_host = |url: &str| -> Result<String> {
        let output = std::process::Command::new("curl").args(["-s", "-m", "5", url]).output()?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let mut seen = std::collections::BTreeSet::new();
    cluster.wait_until(
        Duration::from_secs(30),
        "the ClusterIP to reach every replica from the host",
        || {
            seen.insert(fetch_from_host(&format!("http://{cluster_ip}/index.html"))?);
            Ok(names.iter().all(|n| seen.contains(n)))
        },
    )?;
    let client_pod = pods[0][0];
    let mut seen = std::collections::BTreeSet::new();
    cluster.wait_until(
        Duration::from_secs(30),
        "the ClusterIP to reach every replica from a pod",
        || {
            let run = cluster.run(&[
                "exec",
                client_pod,
                "--",
                "wget",
                "-qO-",
                &format!("http://{cluster_ip}/index.html"),
            ])?;
            seen.insert(run.stdout.trim().to_owned());
            Ok(names.iter().all(|n| seen.contains(n)))
        },
    )?;
    // The NodePort answers on every node's address.
    let node_ips = cluster.ok(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[*].status.addresses[?(@.type==\"InternalIP\")].address}",
    ])?;
    for ip in node_ips.split_whitespace() {
        cluster.wait_until(Duration::from_secs(20), &format!("NodePort {node_port} on {ip}"), || {
            Ok(names.contains(&fetch_from_host(&format!("http://{ip}:{node_port}/index.html"))?))
        })?;
    }
    // The name resolves inside a pod.
    cluster.wait_until(
        Duration::from_secs(30),
        "web.default.svc.cluster.local from a pod",
        || {
            let run = cluster.run(&[
                "exec",
                client_pod,
                "--",
                "wget",
                "-qO-",
                "http://web.default.svc.cluster.local/index.html",
            ])?;
            Ok(names.contains(run.stdout.trim()))
        },
    )?;
    // A headless Service lists the pods' IPs.
    cluster.ok(&[
        "create",
        "service",
        "clusterip",
        "web-headless",
        "--clusterip=None",
        "--tcp=80:80",
    ])?;
    cluster.ok(&[
        "patch",
        "service",
        "web-headless",
        "-p",
        r#"{"spec":{"selector":{"app":"web"}}}"#,
    ])?;
    let mut expected: Vec<&str> = pods.iter().map(|p| p[2]).collect();
    expected.sort();
    cluster.wait_until(Duration::from_secs(30), "the headless name to list the pod IPs", || {
        let run = cluster.run(&[
            "exec",
            client_pod,
            "--",
            "nslookup",
            "web-headless.default.svc.cluster.local",
        ])?;
        Ok(expected.iter().all(|ip| run.stdout.contains(ip)))
    })?;

    // Scaling to 5: the new replicas join the rotation.
    cluster.ok(&["scale", "deployment", "web", "--replicas=5"])?;
    cluster.wait_until(Duration::from_secs(60), "5 ready replicas", || {
        Ok(cluster.ok(&["get", "deployment", "web", "-o", "jsonpath={.status.readyReplicas}"])?
            == "5")
    })?;
    let ready_at = std::time::Instant::now();
    let all = cluster.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])?;
    let all: std::collections::BTreeSet<String> =
        all.split_whitespace().map(str::to_owned).collect();
    let mut seen = std::collections::BTreeSet::new();
    cluster.wait_until(Duration::from_secs(30), "the ClusterIP to reach all 5 replicas", || {
        seen.insert(fetch_from_host(&format!("http://{cluster_ip}/index.html"))?);
        Ok(all.iter().all(|n| seen.contains(n)))
    })?;
    eprintln!(
        "all 5 replicas answered {:?} after the Deployment reported them ready",
        ready_at.elapsed()
    );
    // A deleted pod leaves the rotation.
    // One of the new replicas, so that the pods used below stay.
    let victim = all.iter().find(|n| !names.contains(*n)).cloned().unwrap_or_default();
    cluster.ok(&["delete", "pod", &victim, "--grace-period=1"])?;
    std::thread::sleep(Duration::from_secs(1));
    for _ in 0..30 {
        let answer = fetch_from_host(&format!("http://{cluster_ip}/index.html"))?;
        ensure!(answer != victim, "the deleted pod {victim} still answered");
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
