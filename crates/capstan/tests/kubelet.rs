//! The kubelet end to end, with the real kubectl against a one-node `capstan server`: pods
//! run in containerd with IPs on the node's bridge, and kubectl's logs, exec, cp,
//! port-forward and attach reach them; probes restart containers, memory limits hold, Jobs
//! complete, volumes and env carry ConfigMaps and Secrets, and deleting everything leaves
//! nothing in containerd. Needs root, containerd, runc, the CNI plugins and busybox-static
//! (`cargo xtask test` installs them).

mod support;

use anyhow::{Result, ensure};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::node::{BUSYBOX, NodeCluster};

fn first_pod(cluster: &NodeCluster, selector: &str) -> Result<String> {
    let names =
        cluster.ok(&["get", "pods", "-l", selector, "-o", "jsonpath={.items[*].metadata.name}"])?;
    names
        .split_whitespace()
        .next()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no pod {selector}"))
}

#[test]
fn a_deployment_runs_and_kubectl_reaches_its_pods() -> Result<()> {
    let cluster = NodeCluster::start(0)?;
    cluster.ok(&[
        "create",
        "deployment",
        "web",
        &format!("--image={BUSYBOX}"),
        "--replicas=3",
        "--",
        "sh",
        "-c",
        "echo hello-from-index > /tmp/index.html; echo started; exec httpd -f -p 80 -h /tmp",
    ])?;
    cluster.wait_until(Duration::from_secs(60), "3 running replicas", || {
        let phases = cluster.ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ])?;
        Ok(phases.split_whitespace().filter(|p| *p == "Running").count() == 3)
    })?;
    let ips =
        cluster.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].status.podIP}"])?;
    let ips: Vec<&str> = ips.split_whitespace().collect();
    ensure!(ips.len() == 3, "pod IPs: {ips:?}");
    // Every replica answers on its IP from the host, through the node's bridge.
    for ip in &ips {
        ensure!(ip.starts_with("10."), "pod IP {ip}");
        let body = Command::new("curl")
            .args(["-s", "-m", "5", &format!("http://{ip}/index.html")])
            .output()?;
        ensure!(
            String::from_utf8_lossy(&body.stdout).contains("hello-from-index"),
            "curl {ip}: {body:?}"
        );
    }
    let pod = first_pod(&cluster, "app=web")?;

    // logs, and logs -f following new lines.
    ensure!(cluster.ok(&["logs", &pod])?.contains("started"));
    cluster.ok(&["exec", &pod, "--", "sh", "-c", "echo to-the-log > /proc/1/fd/1"])?;
    let mut follow = cluster
        .command(&["logs", "-f", &pod])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut lines =
        BufReader::new(follow.stdout.take().ok_or_else(|| anyhow::anyhow!("stdout"))?).lines();
    cluster.ok(&["exec", &pod, "--", "sh", "-c", "echo followed-line > /proc/1/fd/1"])?;
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line?;
        seen.push(line.clone());
        if line.contains("followed-line") {
            break;
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    ensure!(seen.iter().any(|l| l.contains("followed-line")), "logs -f printed {seen:?}");

    // exec: output, exit codes, stdin.
    let run = cluster.run(&["exec", &pod, "--", "sh", "-c", "echo out; echo err >&2; exit 3"])?;
    ensure!(!run.success && run.stdout == "out\n" && run.stderr.contains("err"), "{run:?}");
    ensure!(run.stderr.contains("command terminated with exit code 3"), "{run:?}");
    let mut cat = cluster
        .command(&["exec", "-i", &pod, "--", "sh", "-c", "cat; echo done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    cat.stdin.take().ok_or_else(|| anyhow::anyhow!("stdin"))?.write_all(b"from-stdin\n")?;
    let output = cat.wait_with_output()?;
    ensure!(
        output.status.success() && String::from_utf8_lossy(&output.stdout) == "from-stdin\ndone\n",
        "{output:?}"
    );

    // exec -it, under a pseudo-terminal from script(1).
    let kubeconfig = cluster.kubeconfig.display().to_string();
    let tty = Command::new("script")
        .args([
            "-qec",
            &format!(
                "/usr/bin/kubectl --kubeconfig {kubeconfig} exec -it {pod} -- sh -c 'tty; exit 0'"
            ),
            "/dev/null",
        ])
        .stdin(Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&tty.stdout);
    ensure!(tty.status.success() && text.contains("/dev/pts/"), "exec -it: {tty:?}");

    // cp both ways.
    let local = cluster.dir.path().join("copied.txt");
    std::fs::write(&local, "copied-in\n")?;
    cluster.ok(&["cp", &local.display().to_string(), &format!("{pod}:/tmp/copied.txt")])?;
    ensure!(cluster.ok(&["exec", &pod, "--", "cat", "/tmp/copied.txt"])? == "copied-in\n");
    let back = cluster.dir.path().join("back.html");
    cluster.ok(&["cp", &format!("{pod}:/tmp/index.html"), &back.display().to_string()])?;
    ensure!(std::fs::read_to_string(&back)?.contains("hello-from-index"));

    // port-forward, and a request through it.
    let mut forward = cluster
        .command(&["port-forward", &format!("pod/{pod}"), ":80"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut forwarded =
        BufReader::new(forward.stdout.take().ok_or_else(|| anyhow::anyhow!("stdout"))?).lines();
    let first = forwarded.next().transpose()?.unwrap_or_default();
    // "Forwarding from 127.0.0.1:PORT -> 80"
    let port = first
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default()
        .to_owned();
    let body = Command::new("curl")
        .args(["-s", "-m", "10", &format!("http://127.0.0.1:{port}/index.html")])
        .output()?;
    let _ = forward.kill();
    let _ = forward.wait();
    ensure!(
        String::from_utf8_lossy(&body.stdout).contains("hello-from-index"),
        "port-forward ({first}): {body:?}"
    );

    // attach to a container reading its stdin.
    let manifest = cluster.manifest("reader.yaml", &format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: reader}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: {BUSYBOX}\n    stdin: true\n    command: [sh, -c, 'while read line; do echo got-$line; done']\n"
    ))?;
    cluster.ok(&["apply", "-f", &manifest])?;
    cluster.wait_for_phase("reader", "Running", Duration::from_secs(30))?;
    let mut attach = cluster
        .command(&["attach", "-i", "reader"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut input = attach.stdin.take().ok_or_else(|| anyhow::anyhow!("stdin"))?;
    cluster.wait_until(Duration::from_secs(20), "attached input to echo", || {
        input.write_all(b"ping\n")?;
        Ok(cluster.ok(&["logs", "reader"])?.contains("got-ping"))
    })?;
    drop(input);
    let _ = attach.kill();
    let _ = attach.wait();

    cluster.ok(&["delete", "deployment", "web"])?;
    cluster.ok(&["delete", "pod", "reader"])?;
    cluster.wait_until(Duration::from_secs(60), "every container removed", || {
        Ok(cluster.runtime_containers()?.is_empty())
    })?;
    Ok(())
}

#[test]
fn containers_restart_fail_complete_and_get_their_config() -> Result<()> {
    let cluster = NodeCluster::start(1)?;
    let manifest = cluster.manifest("pods.yaml", &format!(r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings}}
data: {{greeting: hello-from-configmap}}
---
apiVersion: v1
kind: Secret
metadata: {{name: credentials}}
stringData: {{password: s3cret}}
---
apiVersion: v1
kind: Pod
metadata: {{name: liveness}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {BUSYBOX}
    command: [sh, -c, 'touch /tmp/healthy; sleep 2; rm /tmp/healthy; sleep 600']
    livenessProbe:
      exec: {{command: [cat, /tmp/healthy]}}
      periodSeconds: 1
      failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata: {{name: hog}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: {BUSYBOX}
    command: [sh, -c, 'x=a; while true; do x=$x$x; done']
    resources: {{limits: {{memory: 20Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: config}}
spec:
  restartPolicy: Never
  initContainers:
  - name: first
    image: {BUSYBOX}
    command: [sh, -c, 'echo init-ran > /work/marker']
    volumeMounts: [{{name: work, mountPath: /work}}]
  containers:
  - name: c
    image: {BUSYBOX}
    command: [sh, -c, 'cat /work/marker /etc/settings/greeting /etc/credentials/password; echo; echo env=$GREETING/$PASSWORD/$MY_NAME; cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; test -s /var/run/secrets/kubernetes.io/serviceaccount/token && echo has-token; echo bye > /dev/termination-log']
    env:
    - {{name: GREETING, valueFrom: {{configMapKeyRef: {{name: settings, key: greeting}}}}}}
    - {{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: credentials, key: password}}}}}}
    - {{name: MY_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    volumeMounts:
    - {{name: settings, mountPath: /etc/settings}}
    - {{name: credentials, mountPath: /etc/credentials}}
    - {{name: work, mountPath: /work}}
  volumes:
  - {{name: settings, configMap: {{name: settings}}}}
  - {{name: credentials, secret: {{secretName: credentials}}}}
  - {{name: work, emptyDir: {{}}}}
---
apiVersion: batch/v1
kind: Job
metadata: {{name: once}}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - {{name: c, image: {BUSYBOX}, command: [sh, -c, 'echo job-done']}}
"#))?;
    cluster.ok(&["apply", "-f", &manifest])?;

    // The Job completes; the config pod succeeds with everything it was given.
    cluster.wait_until(Duration::from_secs(60), "the job to complete", || {
        Ok(cluster.ok(&["get", "job", "once", "-o", "jsonpath={.status.succeeded}"])? == "1")
    })?;
    cluster.wait_for_phase("config", "Succeeded", Duration::from_secs(60))?;
    let logs = cluster.ok(&["logs", "config"])?;
    for expected in [
        "init-ran",
        "hello-from-configmap",
        "s3cret",
        "env=hello-from-configmap/s3cret/config",
        "default",
        "has-token",
    ] {
        ensure!(logs.contains(expected), "config pod printed {logs:?}, without {expected:?}");
    }
    let message = cluster.ok(&[
        "get",
        "pod",
        "config",
        "-o",
        "jsonpath={.status.containerStatuses[0].state.terminated.message}",
    ])?;
    ensure!(message == "bye\n", "termination message {message:?}");

    // A memory hog is OOM-killed with exit code 137.
    cluster.wait_for_phase("hog", "Failed", Duration::from_secs(60))?;
    let state = cluster.ok(&["get", "pod", "hog", "-o", "jsonpath={.status.containerStatuses[0].state.terminated.reason}/{.status.containerStatuses[0].state.terminated.exitCode}"])?;
    ensure!(state == "OOMKilled/137", "hog: {state}");

    // A failing liveness probe restarts the container.
    cluster.wait_until(Duration::from_secs(60), "a liveness restart", || {
        let count = cluster.ok(&[
            "get",
            "pod",
            "liveness",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ])?;
        Ok(count.parse::<u32>().unwrap_or(0) >= 1)
    })?;
    let events =
        cluster.ok(&["get", "events", "--field-selector", "involvedObject.name=liveness"])?;
    ensure!(
        events.contains("Liveness probe failed") && events.contains("will be restarted"),
        "{events}"
    );

    // A static pod: a manifest in the node's directory runs, as a mirror pod in the API,
    // until the file is removed.
    let manifests = cluster.dir.path().join("agent/pod-manifests");
    std::fs::create_dir_all(&manifests)?;
    std::fs::write(
        manifests.join("static.yaml"),
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: static}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: {BUSYBOX}, command: [sleep, '600']}}\n"
        ),
    )?;
    let mirror = format!("static-{}", cluster.node);
    cluster.wait_for_phase(&mirror, "Running", Duration::from_secs(60))?;
    let annotation = cluster.ok(&[
        "get",
        "pod",
        &mirror,
        "-o",
        "jsonpath={.metadata.annotations.kubernetes\\.io/config\\.source}",
    ])?;
    ensure!(annotation == "file", "mirror pod annotation {annotation:?}");
    std::fs::remove_file(manifests.join("static.yaml"))?;
    cluster.wait_until(Duration::from_secs(60), "the static pod to go", || {
        Ok(!cluster.run(&["get", "pod", &mirror])?.success)
    })?;

    // Deleting everything leaves no container or sandbox behind.
    cluster.ok(&["delete", "-f", &manifest, "--wait=true"])?;
    cluster.ok(&["delete", "pods", "--all", "--wait=true"])?;
    cluster.wait_until(Duration::from_secs(60), "every container removed", || {
        Ok(cluster.runtime_containers()?.is_empty())
    })?;
    let pods_dir = cluster.dir.path().join("agent/pods");
    let left: Vec<_> = std::fs::read_dir(&pods_dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    ensure!(left.is_empty(), "pod directories left: {left:?}");
    Ok(())
}

/// Debian's docker-registry on a free loopback port, killed by pid when dropped.
struct Registry {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let registry = Registry { child, port, _dir: dir };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(registry);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        anyhow::bail!("docker-registry did not listen on port {port}")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn images_are_pulled_through_a_mirror_and_pull_errors_surface() -> Result<()> {
    let registry = Registry::start()?;
    let archive = tempfile::tempdir()?;
    let tar = archive.path().join("busybox.tar");
    let built = Command::new(support::CAPSTAN)
        .args([
            "image",
            "build",
            "busybox",
            "--name",
            "docker.io/library/busybox:latest",
            "--output",
        ])
        .arg(&tar)
        .output()?;
    ensure!(built.status.success(), "{built:?}");
    let pushed = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
        .arg(format!("oci-archive:{}", tar.display()))
        .arg(format!("docker://127.0.0.1:{}/library/busybox:latest", registry.port))
        .output()?;
    ensure!(pushed.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&pushed.stderr));
    // docker.io is served from the local registry, as in an air-gapped cluster.
    let registries =
        format!("mirrors:\n  docker.io:\n    endpoint: [\"http://127.0.0.1:{}\"]\n", registry.port);
    let cluster = NodeCluster::start_with_registries(2, Some(&registries))?;
    cluster.ok(&["run", "plain", "--image=busybox", "--restart=Never", "--", "sleep", "600"])?;
    cluster.wait_for_phase("plain", "Running", Duration::from_secs(60))?;
    let events = cluster.ok(&["get", "events", "--field-selector", "involvedObject.name=plain"])?;
    ensure!(
        events.contains("Pulling image \"busybox\"")
            && events.contains("Successfully pulled image \"busybox\""),
        "{events}"
    );

    // An image no registry has: ErrImagePull, then ImagePullBackOff.
    cluster.ok(&[
        "run",
        "missing",
        &format!("--image=127.0.0.1:{}/nothing/here:1", registry.port),
        "--restart=Never",
    ])?;
    cluster.wait_until(Duration::from_secs(60), "ImagePullBackOff", || {
        let reason = cluster.ok(&[
            "get",
            "pod",
            "missing",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.reason}",
        ])?;
        Ok(reason == "ImagePullBackOff")
    })?;
    // The ErrImagePull state lasts only until the next sync; its events stay.
    cluster.wait_until(Duration::from_secs(20), "the pull failure's events", || {
        let events =
            cluster.ok(&["get", "events", "--field-selector", "involvedObject.name=missing"])?;
        Ok([
            "Failed to pull image",
            "Error: ErrImagePull",
            "Back-off pulling image",
            "Error: ImagePullBackOff",
        ]
        .iter()
        .all(|text| events.contains(text)))
    })?;
    Ok(())
}
