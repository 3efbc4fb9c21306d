//! Several nodes on one machine (the server's own and two agents in network namespaces):
//! agents join with the server's token, pods spread over the nodes get addresses from each
//! node's pod CIDR, and routes between the nodes let the host and pods on other nodes reach
//! every one of them. Needs root and the node packages (`cargo xtask test` installs them).

mod support;

use anyhow::{Result, ensure};
use std::time::Duration;
use support::multinode::MultiNode;

/// A busybox httpd Deployment `web` of `replicas` spread over the nodes, each running `script`.
fn web_deployment(replicas: u32, script: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
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
        command: [sh, -c, {script:?}]
"#,
        image = MultiNode::busybox()
    )
}

#[test]
fn pods_on_three_nodes_reach_each_other() -> Result<()> {
    let cluster = MultiNode::start(2, 0)?;
    let manifest = cluster.manifest(
        "web.yaml",
        &web_deployment(3, "hostname > /tmp/index.html; exec httpd -f -p 80 -h /tmp"),
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
    // When the EndpointSlice lists all 5 as ready: from then on it is the proxies' work.
    cluster.wait_until(Duration::from_secs(30), "5 ready endpoints", || {
        let ready = cluster.ok(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "jsonpath={.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}",
        ])?;
        Ok(ready.split_whitespace().count() == 5)
    })?;
    let endpoints_at = std::time::Instant::now();
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
        // A burst per look, so that seeing all 5 of a random choice takes little polling.
        for _ in 0..10 {
            seen.insert(fetch_from_host(&format!("http://{cluster_ip}/index.html"))?);
        }
        Ok(all.iter().all(|n| seen.contains(n)))
    })?;
    eprintln!(
        "all 5 replicas answered {:?} after the Deployment reported them ready, {:?} after \
         the EndpointSlice listed them (both include this test's polling)",
        ready_at.elapsed(),
        endpoints_at.elapsed()
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

/// A dual-stack cluster of two nodes: every pod gets an IPv4 and an IPv6 address from its
/// node's two pod CIDRs, pods on different nodes reach each other over both families and
/// see each other's own addresses (no masquerade inside the cluster), traffic leaving the
/// cluster is masqueraded to the node's address, and a RequireDualStack Service answers on
/// both of its cluster IPs and in DNS as A and AAAA.
#[test]
fn dual_stack_pods_and_services_across_nodes() -> Result<()> {
    let cluster = MultiNode::start_dual_stack(1, 1)?;
    let cidrs = cluster.ok(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={range .items[*]}{.spec.podCIDRs}{\"\\n\"}{end}",
    ])?;
    for line in cidrs.lines() {
        ensure!(line.contains('.') && line.contains(':'), "a node without two pod CIDRs: {cidrs}");
    }
    // Each replica serves its name, and a CGI script printing the address it was reached from.
    let script = "mkdir -p /tmp/www/cgi-bin; hostname > /tmp/www/index.html; \
                  printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' \
                  > /tmp/www/cgi-bin/peer; chmod +x /tmp/www/cgi-bin/peer; \
                  exec httpd -f -p 80 -h /tmp/www";
    let service = "
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ipFamilyPolicy: RequireDualStack
  selector: {app: web}
  ports: [{port: 80}]
";
    let manifest =
        cluster.manifest("web.yaml", &format!("{}---{service}", web_deployment(2, script)))?;
    cluster.ok(&["apply", "-f", &manifest])?;
    cluster.wait_until(Duration::from_secs(90), "2 ready replicas", || {
        Ok(cluster.ok(&["get", "deployment", "web", "-o", "jsonpath={.status.readyReplicas}"])?
            == "2")
    })?;
    let rows = cluster.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIPs[*].ip}{\"\\n\"}{end}",
    ])?;
    // name, node, IPv4, IPv6.
    let pods: Vec<Vec<&str>> = rows.lines().map(|l| l.split_whitespace().collect()).collect();
    ensure!(
        pods.len() == 2 && pods[0][1] != pods[1][1],
        "the replicas are not on two nodes: {rows}"
    );
    for pod in &pods {
        ensure!(
            pod.len() == 4 && pod[2].contains('.') && pod[3].contains(':'),
            "a pod without an IPv4 and an IPv6 address (in that order): {rows}"
        );
    }
    let exec = |pod: &str, url: &str| cluster.ok(&["exec", pod, "--", "wget", "-qO-", url]);
    for (from, to) in [(&pods[0], &pods[1]), (&pods[1], &pods[0])] {
        for (address, url_host) in [(to[2], to[2].to_owned()), (to[3], format!("[{}]", to[3]))] {
            let name = exec(from[0], &format!("http://{url_host}/index.html"))?;
            ensure!(name.trim() == to[0], "{} → {address}: {name:?}", from[0]);
            // The server saw the client pod's own address of that family: no masquerade.
            let peer = exec(from[0], &format!("http://{url_host}/cgi-bin/peer"))?;
            let own = if address.contains(':') { from[3] } else { from[2] };
            ensure!(
                peer.contains(own),
                "{} → {address} arrived from {peer:?}, not from the pod's {own}",
                from[0]
            );
        }
    }
    // From the host (the server's node) to the pod on the agent, over IPv6.
    let remote = pods.iter().find(|p| p[1] != cluster.server_node).map(|p| (p[0], p[3]));
    let (remote_name, remote_v6) = remote.unwrap_or_default();
    let body = std::process::Command::new("curl")
        .args(["-s", "-g", "-m", "5", &format!("http://[{remote_v6}]/index.html")])
        .output()?;
    ensure!(
        String::from_utf8_lossy(&body.stdout).trim() == remote_name,
        "host → {remote_name} ({remote_v6}): {body:?}"
    );

    // Traffic leaving the cluster is masqueraded to the node's address: a listener on the
    // host's bridge address (outside every pod CIDR) sees the agent's address, not the pod's.
    let on_agent = pods.iter().find(|p| p[1] != cluster.server_node).map(|p| p[0]);
    let on_agent = on_agent.unwrap_or_default();
    for (listen, expected) in [
        (cluster.bridge_ip(false), cluster.agents[0].ip.clone()),
        (cluster.bridge_ip(true), cluster.agents[0].ip6.clone()),
    ] {
        let listener = std::net::TcpListener::bind((listen, 0))?;
        let url = format!("http://{}/", listener.local_addr()?);
        let accepted = std::thread::spawn(move || -> Result<std::net::IpAddr> {
            let (mut stream, peer) = listener.accept()?;
            use std::io::Write;
            stream.write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok")?;
            Ok(peer.ip())
        });
        exec(on_agent, &url)?;
        let peer = accepted.join().map_err(|_| anyhow::anyhow!("the listener panicked"))??;
        ensure!(peer.to_string() == expected, "{url} was reached from {peer}, not from {expected}");
    }

    // The dual-stack Service: both cluster IPs reach both replicas, and DNS answers both.
    let ips = cluster.ok(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIPs[*]}"])?;
    let ips: Vec<&str> = ips.split_whitespace().collect();
    ensure!(ips.len() == 2 && ips[1].contains(':'), "cluster IPs {ips:?}");
    let names: std::collections::BTreeSet<&str> = pods.iter().map(|p| p[0]).collect();
    for url_host in [ips[0].to_owned(), format!("[{}]", ips[1])] {
        let mut seen = std::collections::BTreeSet::new();
        cluster.wait_until(
            Duration::from_secs(30),
            &format!("{url_host} to reach both replicas from a pod"),
            || {
                let run = cluster.run(&[
                    "exec",
                    on_agent,
                    "--",
                    "wget",
                    "-qO-",
                    &format!("http://{url_host}/index.html"),
                ])?;
                seen.insert(run.stdout.trim().to_owned());
                Ok(names.iter().all(|n| seen.contains(*n)))
            },
        )?;
    }
    for (record, ip) in [("A", ips[0]), ("AAAA", ips[1])] {
        cluster.wait_until(Duration::from_secs(30), &format!("the {record} record"), || {
            let run = cluster.run(&[
                "exec",
                on_agent,
                "--",
                "nslookup",
                &format!("-type={record}"),
                "web.default.svc.cluster.local",
            ])?;
            Ok(run.stdout.contains(ip))
        })?;
    }
    Ok(())
}
