//! The real kubectl against a freshly started `capstan server`, as a user works: create and
//! apply manifests, read them back in every output format, select, sort and page, label,
//! annotate, replace, watch, delete and wait — and the errors kubectl shows for bad input.
//! The same suite runs on the embedded datastore and on a real etcd.

mod support;

use anyhow::{Context, Result, ensure};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use support::{Cluster, Server, isolated};

#[test]
fn kubectl_works_on_the_embedded_datastore() -> Result<()> {
    let cluster = Cluster::start(false)?;
    suite(&cluster)?;
    cluster.stop()
}

#[test]
fn kubectl_works_on_etcd() -> Result<()> {
    let cluster = Cluster::start(true)?;
    suite(&cluster)?;
    cluster.stop()
}

fn suite(c: &Cluster) -> Result<()> {
    bootstrap_objects_exist(c).context("bootstrap")?;
    create_and_apply(c).context("create and apply")?;
    output_formats(c).context("output formats")?;
    selectors_sorting_and_paging(c).context("selectors")?;
    label_annotate_replace(c).context("label, annotate, replace")?;
    server_dry_run(c).context("dry run")?;
    errors(c).context("errors")?;
    watch_sees_every_change(c).context("watch")?;
    delete_and_wait(c).context("delete and wait")?;
    explain(c).context("explain")?;
    shared_storage(c).context("versions sharing storage")?;
    raw_requests(c).context("raw requests")?;
    namespace_deletion(c).context("namespace deletion")?;
    Ok(())
}

const NAMESPACE: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: e2e
";

const APP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: one
  namespace: e2e
  labels: {app: web, tier: backend}
data:
  a: \"1\"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: two
  namespace: e2e
  labels: {app: web}
data:
  a: \"2\"
  b: \"3\"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: three
  namespace: e2e
  labels: {app: db}
data: {}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: e2e
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: httpd
        image: busybox:1.36
";

fn bootstrap_objects_exist(c: &Cluster) -> Result<()> {
    let namespaces = c.ok(&["get", "namespaces", "-o", "name"])?;
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ensure!(namespaces.lines().any(|l| l == format!("namespace/{name}")), "{namespaces}");
        // The controller manager gives each its `default` ServiceAccount and the CA.
        c.wait_for_field(
            &["serviceaccount", "default", "-n", name],
            "{.metadata.name}",
            "default",
        )?;
        c.wait_for_field(
            &["configmap", "kube-root-ca.crt", "-n", name],
            "{.metadata.name}",
            "kube-root-ca.crt",
        )?;
    }
    let ip = c.ok(&["get", "service", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"])?;
    ensure!(ip == "10.43.0.1", "the kubernetes Service has IP {ip:?}");
    Ok(())
}

fn create_and_apply(c: &Cluster) -> Result<()> {
    let namespace = c.manifest("namespace.yaml", NAMESPACE)?;
    ensure!(c.ok(&["create", "-f", &namespace])?.trim() == "namespace/e2e created");
    let app = c.manifest("app.yaml", APP)?;
    let created = c.ok(&["create", "-f", &app])?;
    for line in [
        "configmap/one created",
        "configmap/two created",
        "configmap/three created",
        "deployment.apps/web created",
    ] {
        ensure!(created.lines().any(|l| l == line), "no {line:?} in {created}");
    }
    let again = c.fails(&["create", "-f", &app])?;
    ensure!(
        again.contains("Error from server (AlreadyExists)")
            && again.contains("configmaps \"one\" already exists"),
        "{again}"
    );
    let applied = c.manifest(
        "applied.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: e2e\ndata:\n  k: v\n",
    )?;
    ensure!(c.ok(&["apply", "-f", &applied])?.trim() == "configmap/applied created");
    ensure!(c.ok(&["apply", "-f", &applied])?.trim() == "configmap/applied unchanged");
    let annotation = c.ok(&[
        "get",
        "configmap",
        "applied",
        "-n",
        "e2e",
        "-o",
        "jsonpath={.metadata.annotations.kubectl\\.kubernetes\\.io/last-applied-configuration}",
    ])?;
    ensure!(annotation.contains("\"name\":\"applied\""), "last-applied: {annotation}");
    Ok(())
}

fn output_formats(c: &Cluster) -> Result<()> {
    let wide = c.ok(&["get", "deployments", "-n", "e2e", "-o", "wide"])?;
    let header: Vec<&str> = wide.lines().next().unwrap_or("").split_whitespace().collect();
    ensure!(
        header
            == [
                "NAME",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR"
            ],
        "{wide}"
    );
    ensure!(wide.contains("busybox:1.36") && wide.contains("app=web"), "{wide}");
    let yaml = c.ok(&["get", "configmap", "one", "-n", "e2e", "-o", "yaml"])?;
    ensure!(yaml.contains("kind: ConfigMap") && yaml.contains("a: \"1\""), "{yaml}");
    let json: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "configmap", "one", "-n", "e2e", "-o", "json"])?)?;
    for field in ["uid", "resourceVersion", "creationTimestamp"] {
        ensure!(json["metadata"][field].is_string(), "no metadata.{field}: {json}");
    }
    // The root CA publisher gives every namespace its `kube-root-ca.crt`.
    c.wait_for_field(
        &["configmap", "kube-root-ca.crt", "-n", "e2e"],
        "{.metadata.name}",
        "kube-root-ca.crt",
    )?;
    let names = c.ok(&["get", "configmaps", "-n", "e2e", "-o", "name"])?;
    ensure!(
        names.lines().collect::<Vec<_>>()
            == [
                "configmap/applied",
                "configmap/kube-root-ca.crt",
                "configmap/one",
                "configmap/three",
                "configmap/two"
            ],
        "{names}"
    );
    let value = c.ok(&["get", "configmap", "two", "-n", "e2e", "-o", "jsonpath={.data.b}"])?;
    ensure!(value == "3", "jsonpath gave {value:?}");
    // The deployment was defaulted on the way in.
    let strategy = c.ok(&[
        "get",
        "deployment",
        "web",
        "-n",
        "e2e",
        "-o",
        "jsonpath={.spec.strategy.type}/{.spec.template.spec.containers[0].imagePullPolicy}",
    ])?;
    ensure!(strategy == "RollingUpdate/IfNotPresent", "defaults: {strategy}");
    Ok(())
}

fn selectors_sorting_and_paging(c: &Cluster) -> Result<()> {
    let all = c.ok(&["get", "configmaps", "-A"])?;
    ensure!(all.lines().next().unwrap_or("").starts_with("NAMESPACE"), "{all}");
    ensure!(all.lines().any(|l| l.starts_with("e2e") && l.contains("two")), "{all}");
    let web = c.ok(&["get", "configmaps", "-n", "e2e", "-l", "app=web", "-o", "name"])?;
    ensure!(web.lines().collect::<Vec<_>>() == ["configmap/one", "configmap/two"], "{web}");
    let set = c.ok(&["get", "cm", "-n", "e2e", "-l", "app in (db),!tier", "-o", "name"])?;
    ensure!(set.trim() == "configmap/three", "{set}");
    let named =
        c.ok(&["get", "cm", "-A", "--field-selector", "metadata.name=two", "-o", "name"])?;
    ensure!(named.trim() == "configmap/two", "{named}");
    let labels = c.ok(&["get", "configmap", "one", "-n", "e2e", "--show-labels"])?;
    ensure!(labels.contains("LABELS") && labels.contains("app=web,tier=backend"), "{labels}");
    let sorted = c.ok(&[
        "get",
        "cm",
        "-n",
        "e2e",
        "--sort-by=.data.a",
        "-l",
        "app",
        "-o",
        "custom-columns=NAME:.metadata.name",
        "--no-headers",
    ])?;
    ensure!(sorted.lines().collect::<Vec<_>>() == ["three", "one", "two"], "{sorted}");
    let paged = c.ok(&["get", "cm", "-n", "e2e", "--chunk-size=1", "-o", "name"])?;
    ensure!(paged.lines().count() == 5, "paged list: {paged}");
    // Four in e2e, and the CA's in each of the five namespaces.
    let paged_all = c.ok(&["get", "cm", "-A", "--chunk-size=2", "--no-headers"])?;
    ensure!(paged_all.lines().count() == 9, "paged list: {paged_all}");
    let published = paged_all.lines().filter(|l| l.contains(" kube-root-ca.crt ")).count();
    ensure!(published == 5, "paged list: {paged_all}");
    Ok(())
}

fn label_annotate_replace(c: &Cluster) -> Result<()> {
    let cm = ["configmap", "one", "-n", "e2e"];
    ensure!(
        c.ok(&[&["label"][..], &cm, &["stage=test"]].concat())?.trim() == "configmap/one labeled"
    );
    let clash = c.fails(&[&["label"][..], &cm, &["tier=frontend"]].concat())?;
    ensure!(clash.contains("already has a value"), "{clash}");
    c.ok(&[&["label"][..], &cm, &["tier=frontend", "--overwrite"]].concat())?;
    c.ok(&[&["label"][..], &cm, &["stage-"]].concat())?;
    let labels = c.ok(&[&["get"][..], &cm, &["-o", "jsonpath={.metadata.labels}"]].concat())?;
    ensure!(labels == r#"{"app":"web","tier":"frontend"}"#, "labels: {labels}");
    ensure!(
        c.ok(&[&["annotate"][..], &cm, &["note=hello world"]].concat())?.trim()
            == "configmap/one annotated"
    );
    let note =
        c.ok(&[&["get"][..], &cm, &["-o", "jsonpath={.metadata.annotations.note}"]].concat())?;
    ensure!(note == "hello world", "annotation: {note}");

    // replace: a PUT of the edited object, guarded by its resourceVersion.
    let current = c.ok(&[&["get"][..], &cm, &["-o", "json"]].concat())?;
    let mut object: serde_json::Value = serde_json::from_str(&current)?;
    object["data"]["a"] = "replaced".into();
    let path = c.manifest("replace.json", &object.to_string())?;
    ensure!(c.ok(&["replace", "-f", &path])?.trim() == "configmap/one replaced");
    let value = c.ok(&[&["get"][..], &cm, &["-o", "jsonpath={.data.a}"]].concat())?;
    ensure!(value == "replaced", "after replace: {value}");
    // The same file again carries a resourceVersion that is no longer current.
    let conflict = c.fails(&["replace", "-f", &path])?;
    ensure!(
        conflict.contains("Error from server (Conflict)")
            && conflict.contains("the object has been modified"),
        "{conflict}"
    );
    Ok(())
}

fn server_dry_run(c: &Cluster) -> Result<()> {
    let path = c.manifest(
        "dry.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dry\n  namespace: e2e\n",
    )?;
    let out = c.ok(&["create", "-f", &path, "--dry-run=server"])?;
    ensure!(out.trim() == "configmap/dry created (server dry run)", "{out}");
    let missing = c.fails(&["get", "configmap", "dry", "-n", "e2e"])?;
    ensure!(missing.contains("NotFound"), "a dry run stored the object: {missing}");
    let out = c.ok(&["delete", "configmap", "one", "-n", "e2e", "--dry-run=server"])?;
    ensure!(out.contains("deleted (server dry run)"), "{out}");
    c.ok(&["get", "configmap", "one", "-n", "e2e"])?;
    Ok(())
}

fn errors(c: &Cluster) -> Result<()> {
    let missing = c.fails(&["get", "configmap", "nope", "-n", "e2e"])?;
    ensure!(
        missing.trim() == r#"Error from server (NotFound): configmaps "nope" not found"#,
        "{missing}"
    );
    let no_namespace = c.fails(&["get", "configmap", "x", "-n", "nowhere"])?;
    ensure!(no_namespace.contains("NotFound"), "{no_namespace}");
    let into_missing = c.manifest(
        "lost.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lost\n  namespace: nowhere\n",
    )?;
    let refused = c.fails(&["create", "-f", &into_missing])?;
    ensure!(refused.contains(r#"namespaces "nowhere" not found"#), "{refused}");
    let bad_name = c.manifest(
        "invalid.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n  namespace: e2e\n",
    )?;
    let invalid = c.fails(&["create", "-f", &bad_name])?;
    ensure!(
        // kubectl prints Invalid errors as `The <Kind> "<name>" is invalid: <causes>`.
        invalid.contains(r#"The ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value"#),
        "{invalid}"
    );
    let unknown = c.manifest(
        "unknown.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: unknown\n  namespace: e2e\nspec:\n  foo: 1\n",
    )?;
    let strict = c.fails(&["create", "-f", &unknown, "--validate=strict"])?;
    ensure!(strict.contains(r#"unknown field "spec""#), "{strict}");
    c.fails(&["get", "configmap", "unknown", "-n", "e2e"])?;
    // Without validation the unknown field is dropped... by the client; the object is made.
    c.ok(&["create", "-f", &unknown, "--validate=false"])?;
    let broken = c.manifest("broken.json", "{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", ")?;
    c.fails(&["create", "-f", &broken])?;
    Ok(())
}

fn watch_sees_every_change(c: &Cluster) -> Result<()> {
    let mut child = c
        .command(&[
            "get",
            "configmaps",
            "-n",
            "e2e",
            "-w",
            "--output-watch-events",
            "-l",
            "watched",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = send.send(line);
        }
    });
    let expect = |event: &str| -> Result<()> {
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(15))
                .with_context(|| format!("no {event} event"))?;
            if line.split_whitespace().next() == Some(event) && line.contains("watched-cm") {
                return Ok(());
            }
        }
    };
    let path = c.manifest(
        "watched.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched-cm\n  namespace: e2e\n  labels: {watched: \"yes\"}\n",
    )?;
    // Give the watch a moment to open, then make the changes.
    std::thread::sleep(Duration::from_millis(500));
    c.ok(&["create", "-f", &path])?;
    expect("ADDED")?;
    c.ok(&["annotate", "configmap", "watched-cm", "-n", "e2e", "seen=yes"])?;
    expect("MODIFIED")?;
    c.ok(&["delete", "configmap", "watched-cm", "-n", "e2e"])?;
    expect("DELETED")?;
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}

fn delete_and_wait(c: &Cluster) -> Result<()> {
    let out = c.ok(&["delete", "configmap", "two", "-n", "e2e"])?;
    ensure!(out.trim() == r#"configmap "two" deleted"#, "{out}");
    c.fails(&["get", "configmap", "two", "-n", "e2e"])?;

    // An object with a finalizer lingers with a deletionTimestamp until the finalizer goes.
    let held = c.manifest(
        "held.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: e2e\n  finalizers: [example.com/hold]\n",
    )?;
    c.ok(&["create", "-f", &held])?;
    c.ok(&["delete", "configmap", "held", "-n", "e2e", "--wait=false"])?;
    let deleting = c.ok(&[
        "get",
        "configmap",
        "held",
        "-n",
        "e2e",
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ])?;
    ensure!(!deleting.is_empty(), "no deletionTimestamp on a finalized object");
    let mut waiter = c
        .command(&["wait", "--for=delete", "configmap/held", "-n", "e2e", "--timeout=30s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(500));
    ensure!(waiter.try_wait()?.is_none(), "kubectl wait returned before the object went");
    c.release("held")?;
    let waited = waiter.wait_with_output()?;
    ensure!(
        waited.status.success(),
        "kubectl wait --for=delete: {}",
        String::from_utf8_lossy(&waited.stderr)
    );
    c.fails(&["get", "configmap", "held", "-n", "e2e"])?;

    let all = c.ok(&["delete", "configmaps", "--all", "-n", "e2e"])?;
    ensure!(all.lines().count() >= 3, "delete --all: {all}");
    ensure!(all.contains(r#"configmap "kube-root-ca.crt" deleted"#), "delete --all: {all}");
    let run = c.run(&["get", "configmaps", "-n", "e2e", "-l", "app"])?;
    ensure!(run.success && run.stderr.trim() == "No resources found in e2e namespace.", "{run:?}");
    // The root CA publisher puts its ConfigMap back; nothing else returns.
    let mut names = String::new();
    for _ in 0..100 {
        names = c.ok(&["get", "configmaps", "-n", "e2e", "-o", "name"])?;
        if names.trim() == "configmap/kube-root-ca.crt" {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("configmaps after delete --all: {names:?}")
}

fn explain(c: &Cluster) -> Result<()> {
    let out = c.ok(&["explain", "pods.spec.containers"])?;
    ensure!(out.contains("KIND:       Pod") && out.contains("FIELD: containers"), "{out}");
    ensure!(out.contains("image\t<string>") || out.contains("image"), "{out}");
    Ok(())
}

/// What `kubectl get --raw` and `create --raw` show of the wire: watch streams, bookmarks,
/// consistent lists, and the status codes of bad bodies.
fn raw_requests(c: &Cluster) -> Result<()> {
    let events = |path: &str| -> Result<Vec<serde_json::Value>> {
        let out = c.ok(&["get", "--raw", path])?;
        out.lines().map(|l| Ok(serde_json::from_str(l)?)).collect()
    };
    // A watch without a resourceVersion opens with the current objects; timeoutSeconds ends it.
    let initial = events("/api/v1/namespaces?watch=1&timeoutSeconds=1")?;
    ensure!(initial.len() >= 5 && initial.iter().all(|e| e["type"] == "ADDED"), "{initial:?}");
    // A streaming list: the objects, then a bookmark that marks the end of them.
    let streamed = events(
        "/api/v1/namespaces?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan\
         &allowWatchBookmarks=true&timeoutSeconds=1",
    )?;
    let last = streamed.last().context("no events")?;
    ensure!(
        last["type"] == "BOOKMARK"
            && last["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true",
        "{last}"
    );
    // From a resourceVersion: only what changed after it.
    let list: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "--raw", "/api/v1/namespaces/e2e/configmaps"])?)?;
    let version = list["metadata"]["resourceVersion"].as_str().context("no list version")?;
    c.ok(&["annotate", "namespace", "e2e", "touched=yes"])?;
    let after =
        events(&format!("/api/v1/namespaces?watch=1&resourceVersion={version}&timeoutSeconds=1"))?;
    ensure!(
        after.len() == 1
            && after[0]["type"] == "MODIFIED"
            && after[0]["object"]["metadata"]["name"] == "e2e",
        "{after:?}"
    );
    // Strict field validation refuses a repeated field, which decoding alone would hide.
    let repeated = c.manifest(
        "repeated.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"rep","name":"rep2"}}"#,
    )?;
    let strict = "/api/v1/namespaces/e2e/configmaps?fieldValidation=Strict";
    let refused = c.fails(&["create", "--raw", strict, "-f", &repeated])?;
    ensure!(refused.contains("duplicate field") && refused.contains("metadata.name"), "{refused}");
    // Bad bodies are 400s, oversized ones 413, never a 5xx.
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let deep = c.manifest("deep.json", &deep)?;
    let refused =
        c.fails(&["create", "--raw", "/api/v1/namespaces/e2e/configmaps", "-f", &deep])?;
    ensure!(refused.contains("BadRequest") || refused.contains("400"), "{refused}");
    let big = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"big\"}},\
         \"data\":{{\"a\":\"{}\"}}}}",
        "x".repeat(3 * 1024 * 1024 + 10)
    );
    let big = c.manifest("big.json", &big)?;
    let refused = c.fails(&["create", "--raw", "/api/v1/namespaces/e2e/configmaps", "-f", &big])?;
    ensure!(refused.contains("RequestEntityTooLarge") || refused.contains("413"), "{refused}");
    Ok(())
}

#[test]
fn a_restarted_server_keeps_its_objects_and_expires_older_watches() -> Result<()> {
    let cluster = Cluster::start(false)?;
    // The controller manager's first writes (each bootstrap namespace's `default`
    // ServiceAccount and CA ConfigMap) come before `kept`, which is then the newest write.
    bootstrap_objects_exist(&cluster)?;
    let path = cluster.manifest(
        "kept.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kept\n  namespace: default\n",
    )?;
    cluster.ok(&["create", "-f", &path])?;
    let version =
        cluster.ok(&["get", "configmap", "kept", "-o", "jsonpath={.metadata.resourceVersion}"])?;
    let Cluster { dir, kubeconfig, mut server, _etcd } = cluster;
    let stopped = server.take().context("no server")?.terminate()?;
    ensure!(stopped, "the server exited with a failure on SIGTERM");
    let args = isolated(dir.path());
    let restarted = Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    restarted.wait_for("API server ready")?;
    let cluster = Cluster { dir, kubeconfig, server: Some(restarted), _etcd };
    let data = cluster.ok(&["get", "configmap", "kept", "-o", "name"])?;
    ensure!(data.trim() == "configmap/kept", "{data}");
    // The new server's cache has no history from before its start: a watch from an older
    // resourceVersion (here, from before `kept` was created) gets an in-stream 410, on which
    // clients relist. From the current one there is simply nothing new.
    let older: i64 = version.parse::<i64>()? - 1;
    let out = cluster.ok(&[
        "get",
        "--raw",
        &format!(
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={older}&timeoutSeconds=2"
        ),
    ])?;
    let event: serde_json::Value = serde_json::from_str(out.lines().next().context("no event")?)?;
    ensure!(
        event["type"] == "ERROR"
            && event["object"]["code"] == 410
            && event["object"]["reason"] == "Expired",
        "{event}"
    );
    // From the restarted server's own current version, a watch is quiet. (Not from `version`:
    // the first server released its leader-election Leases after it, writes older than the
    // new cache.)
    let list: serde_json::Value = serde_json::from_str(&cluster.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
    ])?)?;
    let current = list["metadata"]["resourceVersion"].as_str().context("no list version")?;
    let quiet = cluster.ok(&[
        "get",
        "--raw",
        &format!(
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={current}&timeoutSeconds=1"
        ),
    ])?;
    ensure!(quiet.is_empty(), "events after the current version: {quiet}");
    cluster.stop()
}

/// Deleting a namespace deletes what is in it, refuses new content meanwhile, and waits for
/// finalizers of what it holds.
fn namespace_deletion(c: &Cluster) -> Result<()> {
    let held = c.manifest(
        "held-in-e2e.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: e2e\n  \
         finalizers: [example.com/hold]\n",
    )?;
    c.ok(&["create", "-f", &held])?;
    c.ok(&["delete", "namespace", "e2e", "--wait=false"])?;
    let phase = c.ok(&["get", "namespace", "e2e", "-o", "jsonpath={.status.phase}"])?;
    ensure!(phase == "Terminating", "phase {phase}");
    let late = c.manifest(
        "late.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: late\n  namespace: e2e\n",
    )?;
    let refused = c.fails(&["create", "-f", &late])?;
    ensure!(
        refused.contains("Forbidden") && refused.contains("because it is being terminated"),
        "{refused}"
    );
    // The deployment went; the held ConfigMap waits for its finalizer, and the namespace for it.
    // The namespace controller starts deleting content 5 s after the namespace's deletion, as
    // upstream's does.
    let deployments = c.run(&["get", "deployments", "-n", "e2e", "-o", "name"])?;
    let mut gone = deployments.stdout.trim().is_empty();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if gone {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        gone = c.run(&["get", "deployments", "-n", "e2e", "-o", "name"])?.stdout.trim().is_empty();
    }
    ensure!(gone, "the namespace's deployment was not deleted");
    c.ok(&["get", "namespace", "e2e"])?;
    c.release("held")?;
    c.ok(&["wait", "--for=delete", "namespace/e2e", "--timeout=30s"])?;
    let missing = c.fails(&["get", "namespace", "e2e"])?;
    ensure!(missing.contains("NotFound"), "{missing}");
    Ok(())
}

/// An HPA written as autoscaling/v1 reads back as v2, and an events.k8s.io Event is one of
/// the Events `kubectl get events` lists.
fn shared_storage(c: &Cluster) -> Result<()> {
    let hpa = c.manifest(
        "hpa.yaml",
        "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: web\n  \
         namespace: e2e\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: \
         web}\n  maxReplicas: 4\n  targetCPUUtilizationPercentage: 70\n",
    )?;
    c.ok(&["create", "-f", &hpa])?;
    let v2 = c.ok(&[
        "get",
        "horizontalpodautoscalers.v2.autoscaling",
        "web",
        "-n",
        "e2e",
        "-o",
        "jsonpath={.apiVersion} {.spec.metrics[0].resource.target.averageUtilization}",
    ])?;
    ensure!(v2 == "autoscaling/v2 70", "as v2: {v2}");
    let v1 = c.ok(&[
        "get",
        "horizontalpodautoscalers.v1.autoscaling",
        "web",
        "-n",
        "e2e",
        "-o",
        "jsonpath={.spec.targetCPUUtilizationPercentage}",
    ])?;
    ensure!(v1 == "70", "as v1: {v1}");
    let event = c.manifest(
        "event.yaml",
        "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata:\n  name: web.1\n  namespace: e2e\n\
         eventTime: \"2026-11-23T00:00:00.000000Z\"\nreportingController: example.com/e2e\n\
         reportingInstance: e2e-1\naction: Testing\nreason: Tested\ntype: Normal\nnote: it works\n\
         regarding: {kind: Deployment, name: web, namespace: e2e}\n",
    )?;
    c.ok(&["create", "-f", &event])?;
    // Only this Event: the scheduler writes others about the Deployment's pods.
    let core = c.ok(&[
        "get",
        "event",
        "web.1",
        "-n",
        "e2e",
        "-o",
        "jsonpath={.apiVersion} {.message} {.involvedObject.name}",
    ])?;
    ensure!(core == "v1 it works web", "as a core Event: {core}");
    let table = c.ok(&["get", "events.events.k8s.io", "-n", "e2e"])?;
    ensure!(
        table.starts_with("LAST SEEN")
            && table.contains("Tested")
            && table.contains("deployment/web"),
        "events.k8s.io Events print as core ones: {table}"
    );
    Ok(())
}

/// Users have older kubectls: 1.29 (the oldest that reads OpenAPI v3 for apply and
/// explain) does the everyday things too.
#[test]
fn an_older_kubectl_works() -> Result<()> {
    let cluster = Cluster::start(false)?;
    let old = |args: &[&str]| -> Result<String> {
        let output = Command::new("/usr/lib/google-cloud-sdk/bin/kubectl.1.29")
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .args(args)
            .stdin(Stdio::null())
            .output()?;
        ensure!(
            output.status.success(),
            "kubectl 1.29 {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8(output.stdout)?)
    };
    let path = cluster.manifest(
        "old.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: old\nspec:\n  selector: \
         {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      \
         containers: [{name: c, image: busybox}]\n",
    )?;
    ensure!(old(&["apply", "-f", &path])?.trim() == "deployment.apps/old created");
    ensure!(old(&["apply", "-f", &path])?.trim() == "deployment.apps/old unchanged");
    let wide = old(&["get", "deployments", "-o", "wide"])?;
    ensure!(wide.contains("CONTAINERS") && wide.contains("busybox"), "{wide}");
    ensure!(old(&["explain", "deployments.spec.strategy"])?.contains("KIND:       Deployment"));
    ensure!(old(&["delete", "-f", &path])?.trim() == r#"deployment.apps "old" deleted"#);
    cluster.stop()
}

/// A write to the main resource never changes status, a write to `/status` changes only
/// status; a delete records its propagation policy as a finalizer.
/// The status subresource and deletion propagation as the API server alone implements them:
/// no controller manager runs here, so no controller writes a Deployment's status and no
/// garbage collector removes the propagation finalizers.
#[test]
fn status_and_propagation_without_controllers() -> Result<()> {
    let c = Cluster::start_with(&["--disable-controller-manager"])?;
    let namespace = c.manifest("namespace.yaml", NAMESPACE)?;
    c.ok(&["create", "-f", &namespace])?;
    let app = c.manifest("app.yaml", APP)?;
    c.ok(&["create", "-f", &app])?;
    status_and_propagation(&c)?;
    c.stop()
}

fn status_and_propagation(c: &Cluster) -> Result<()> {
    let deployment = ["deployment", "web", "-n", "e2e"];
    let merge = |patch: &str, extra: &[&str]| -> Result<String> {
        c.ok(&[&["patch"][..], &deployment, &["--type", "merge", "-p", patch], extra].concat())
    };
    merge(r#"{"spec":{"replicas":3},"status":{"replicas":7}}"#, &[])?;
    let after = c.ok(&[
        &["get"][..],
        &deployment,
        &["-o", "jsonpath={.spec.replicas}/{.status.replicas}/{.metadata.generation}"],
    ]
    .concat())?;
    ensure!(after == "3//2", "main-resource patch: {after}");
    merge(r#"{"spec":{"replicas":5},"status":{"replicas":7}}"#, &["--subresource=status"])?;
    let after = c.ok(&[
        &["get"][..],
        &deployment,
        &["-o", "jsonpath={.spec.replicas}/{.status.replicas}/{.metadata.generation}"],
    ]
    .concat())?;
    ensure!(after == "3/7/2", "status patch: {after}");

    let path = c.manifest(
        "propagated.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: propagated\n  namespace: e2e\n  \
         finalizers: [example.com/hold]\n",
    )?;
    c.ok(&["create", "-f", &path])?;
    c.ok(&[
        "delete",
        "configmap",
        "propagated",
        "-n",
        "e2e",
        "--cascade=foreground",
        "--wait=false",
    ])?;
    // The propagation policy is recorded as the `foregroundDeletion` finalizer (with no
    // controller manager here, no garbage collector removes it).
    let deleting = c.ok(&[
        "get",
        "configmap",
        "propagated",
        "-n",
        "e2e",
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ])?;
    ensure!(!deleting.is_empty(), "no deletionTimestamp");
    let finalizers = c.ok(&[
        "get",
        "configmap",
        "propagated",
        "-n",
        "e2e",
        "-o",
        "jsonpath={.metadata.finalizers}",
    ])?;
    ensure!(finalizers == r#"["example.com/hold","foregroundDeletion"]"#, "{finalizers}");
    c.release("propagated")?;
    c.fails(&["get", "configmap", "propagated", "-n", "e2e"])?;
    Ok(())
}
