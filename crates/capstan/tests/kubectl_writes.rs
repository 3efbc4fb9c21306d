//! Every way the real kubectl writes, each asserting the stored object: `create <kind>`
//! (protobuf bodies), client-side `apply` through three edits of a manifest (strategic merge
//! patches), `apply --server-side` with a conflicting second manager and `--force-conflicts`,
//! JSON/merge/strategic `patch`, `scale`, `rollout restart`, `set image|env`, `edit`,
//! `diff`, `create token` (and the token used as a bearer token), and `auth can-i|whoami`.

mod support;

use anyhow::{Context, Result, ensure};
use std::process::{Command, Stdio};
use support::Cluster;

#[test]
fn every_way_kubectl_writes() -> Result<()> {
    // The API server's own behaviour: no controller manager overwrites the statuses this test
    // writes by hand (a PodDisruptionBudget's, for eviction).
    let c = Cluster::start_with(&["--disable-controller-manager"])?;
    creates(&c).context("create <kind>")?;
    client_side_apply(&c).context("client-side apply")?;
    server_side_apply(&c).context("server-side apply")?;
    patches(&c).context("patch")?;
    workload_commands(&c).context("scale, rollout, set")?;
    edit_and_diff(&c).context("edit and diff")?;
    tokens_and_access(&c).context("tokens and auth")?;
    pod_subresources(&c).context("pod subresources")?;
    c.stop()
}

/// `kubectl get -o jsonpath=…` of one object in namespace `w`.
fn field(c: &Cluster, what: &[&str], path: &str) -> Result<String> {
    let jsonpath = format!("jsonpath={path}");
    c.ok(&[&["get"][..], what, &["-n", "w", "-o", &jsonpath]].concat())
}

fn creates(c: &Cluster) -> Result<()> {
    ensure!(c.ok(&["create", "namespace", "w"])?.trim() == "namespace/w created");
    ensure!(c.ok(&["get", "namespace", "w", "-o", "jsonpath={.status.phase}"])? == "Active");
    let runs: &[(&[&str], &str)] = &[
        (
            &["configmap", "cfg", "--from-literal=a=1", "--from-literal=b=2"],
            "configmap/cfg created",
        ),
        (&["secret", "generic", "sec", "--from-literal=password=s3cret"], "secret/sec created"),
        (
            &["deployment", "web", "--image=busybox:1.36", "--replicas=2", "--port=8080"],
            "deployment.apps/web created",
        ),
        (&["service", "clusterip", "web", "--tcp=80:8080"], "service/web created"),
        (&["job", "once", "--image=busybox", "--", "echo", "hi"], "job.batch/once created"),
        (
            &["cronjob", "tick", "--image=busybox", "--schedule=*/5 * * * *", "--", "date"],
            "cronjob.batch/tick created",
        ),
        (&["serviceaccount", "bot"], "serviceaccount/bot created"),
        (
            &["role", "reader", "--verb=get,list", "--resource=pods"],
            "role.rbac.authorization.k8s.io/reader created",
        ),
        (
            &["rolebinding", "reader-bot", "--role=reader", "--serviceaccount=w:bot"],
            "rolebinding.rbac.authorization.k8s.io/reader-bot created",
        ),
        (&["quota", "q", "--hard=pods=10"], "resourcequota/q created"),
        (
            &["poddisruptionbudget", "pdb", "--selector=app=web", "--min-available=1"],
            "poddisruptionbudget.policy/pdb created",
        ),
    ];
    for (args, expected) in runs {
        // The namespace goes first: a command after `--` takes everything that follows.
        let out = c.ok(&[&["create", "-n", "w"][..], args].concat())?;
        ensure!(out.trim() == *expected, "kubectl create {args:?}: {out}");
    }
    let cluster_scoped: &[(&[&str], &str)] = &[
        (
            &["clusterrole", "watcher", "--verb=watch", "--resource=deployments.apps"],
            "clusterrole.rbac.authorization.k8s.io/watcher created",
        ),
        (
            &["priorityclass", "high", "--value=1000"],
            "priorityclass.scheduling.k8s.io/high created",
        ),
    ];
    for (args, expected) in cluster_scoped {
        let out = c.ok(&[&["create"][..], args].concat())?;
        ensure!(out.trim() == *expected, "kubectl create {args:?}: {out}");
    }
    let checks: &[(&[&str], &str, &str)] = &[
        (&["configmap", "cfg"], "{.data.a}{.data.b}", "12"),
        (&["secret", "sec"], "{.type} {.data.password}", "Opaque czNjcmV0"),
        (
            &["deployment", "web"],
            "{.spec.replicas} {.spec.template.spec.containers[0].image} \
             {.spec.template.spec.containers[0].ports[0].containerPort} {.spec.selector.matchLabels.app}",
            "2 busybox:1.36 8080 web",
        ),
        (
            &["service", "web"],
            "{.spec.ports[0].port}/{.spec.ports[0].targetPort} {.spec.selector.app}",
            "80/8080 web",
        ),
        (
            &["job", "once"],
            "{.spec.template.spec.containers[0].command} {.spec.template.spec.restartPolicy}",
            r#"["echo","hi"] Never"#,
        ),
        (&["cronjob", "tick"], "{.spec.schedule}", "*/5 * * * *"),
        (
            &["role", "reader"],
            "{.rules[0].verbs} {.rules[0].resources}",
            r#"["get","list"] ["pods"]"#,
        ),
        (&["rolebinding", "reader-bot"], "{.roleRef.name} {.subjects[0].name}", "reader bot"),
        (&["resourcequota", "q"], "{.spec.hard.pods}", "10"),
        (&["poddisruptionbudget", "pdb"], "{.spec.minAvailable}", "1"),
    ];
    for (what, path, expected) in checks {
        let value = field(c, what, path)?;
        ensure!(value == *expected, "{what:?} {path}: {value:?}, expected {expected:?}");
    }
    let rules = c.ok(&["get", "clusterrole", "watcher", "-o", "jsonpath={.rules[0].apiGroups}"])?;
    ensure!(rules == r#"["apps"]"#, "{rules}");
    let value = c.ok(&["get", "priorityclass", "high", "-o", "jsonpath={.value}"])?;
    ensure!(value == "1000", "{value}");
    Ok(())
}

/// A container of `app_manifest`: its name, env entries and ports.
type ContainerSpec<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [u16]);

/// The manifest `client_side_apply` edits three times.
fn app_manifest(containers: &[ContainerSpec<'_>], labels: &[(&str, &str)]) -> String {
    let mut text = String::from(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\n  namespace: w\n  labels:\n",
    );
    for (key, value) in labels {
        text.push_str(&format!("    {key}: {value}\n"));
    }
    text.push_str(
        "spec:\n  selector:\n    matchLabels: {app: app}\n  template:\n    metadata:\n      labels: {app: app}\n    spec:\n      containers:\n",
    );
    for (name, env, ports) in containers {
        text.push_str(&format!("      - name: {name}\n        image: busybox:1.36\n"));
        if !env.is_empty() {
            text.push_str("        env:\n");
            for (key, value) in *env {
                text.push_str(&format!("        - {{name: {key}, value: \"{value}\"}}\n"));
            }
        }
        if !ports.is_empty() {
            text.push_str("        ports:\n");
            for port in *ports {
                text.push_str(&format!("        - containerPort: {port}\n"));
            }
        }
    }
    text
}

fn client_side_apply(c: &Cluster) -> Result<()> {
    let apply = |text: &str| -> Result<String> {
        let path = c.manifest("app.yaml", text)?;
        Ok(c.ok(&["apply", "-f", &path])?.trim().to_owned())
    };
    let spec = |path: &str| field(c, &["deployment", "app"], path);
    let first = app_manifest(&[("c1", &[("E1", "1")], &[80])], &[("l1", "a")]);
    ensure!(apply(&first)? == "deployment.apps/app created");
    ensure!(apply(&first)? == "deployment.apps/app unchanged");
    // Add a container, an env entry, a port and a label.
    let second = app_manifest(
        &[("c1", &[("E1", "1"), ("E2", "2")], &[80, 81]), ("c2", &[], &[])],
        &[("l1", "a"), ("l2", "b")],
    );
    ensure!(apply(&second)? == "deployment.apps/app configured");
    let names = spec("{.spec.template.spec.containers[*].name}")?;
    ensure!(names == "c1 c2", "containers after adding: {names}");
    let env = spec("{.spec.template.spec.containers[0].env[*].name}")?;
    ensure!(env == "E1 E2", "env after adding: {env}");
    let ports = spec("{.spec.template.spec.containers[0].ports[*].containerPort}")?;
    ensure!(ports == "80 81", "ports after adding: {ports}");
    // Remove the container, the first env entry, the first port and the first label.
    let third = app_manifest(&[("c1", &[("E2", "2")], &[81])], &[("l2", "b")]);
    ensure!(apply(&third)? == "deployment.apps/app configured");
    let names = spec("{.spec.template.spec.containers[*].name}")?;
    ensure!(names == "c1", "containers after removing: {names}");
    let env = spec("{.spec.template.spec.containers[0].env[*].name}")?;
    ensure!(env == "E2", "env after removing: {env}");
    let ports = spec("{.spec.template.spec.containers[0].ports[*].containerPort}")?;
    ensure!(ports == "81", "ports after removing: {ports}");
    let labels = spec("{.metadata.labels}")?;
    ensure!(labels == r#"{"l2":"b"}"#, "labels after removing: {labels}");
    ensure!(apply(&third)? == "deployment.apps/app unchanged");
    Ok(())
}

fn server_side_apply(c: &Cluster) -> Result<()> {
    let manifest = |value: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n  namespace: w\ndata:\n  k: {value}\n  own: mine\n"
        )
    };
    let first = c.manifest("ssa.yaml", &manifest("v1"))?;
    ensure!(
        c.ok(&["apply", "--server-side", "-f", &first])?.trim()
            == "configmap/ssa serverside-applied"
    );
    ensure!(
        c.ok(&["apply", "--server-side", "-f", &first])?.trim()
            == "configmap/ssa serverside-applied"
    );
    let managers = field(
        c,
        &["configmap", "ssa"],
        "{.metadata.managedFields[*].manager}/{.metadata.managedFields[*].operation}",
    )?;
    ensure!(managers == "kubectl/Apply", "managedFields: {managers}");
    let other = c.manifest(
        "ssa-other.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n  namespace: w\ndata:\n  k: v2\n",
    )?;
    let conflict = c.fails(&["apply", "--server-side", "--field-manager=other", "-f", &other])?;
    ensure!(
        conflict.contains("conflict")
            && conflict.contains("\"kubectl\"")
            && conflict.contains(".data.k"),
        "{conflict}"
    );
    ensure!(
        field(c, &["configmap", "ssa"], "{.data.k}")? == "v1",
        "a conflicting apply changed the object"
    );
    c.ok(&["apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", &other])?;
    ensure!(field(c, &["configmap", "ssa"], "{.data.k}")? == "v2");
    // The first manager still owns `own`; dropping it from its config removes it.
    let without = c.manifest(
        "ssa-without.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n  namespace: w\ndata: {}\n",
    )?;
    c.ok(&["apply", "--server-side", "-f", &without])?;
    let data = field(c, &["configmap", "ssa"], "{.data}")?;
    ensure!(data == r#"{"k":"v2"}"#, "after the first manager let go: {data}");
    Ok(())
}

fn patches(c: &Cluster) -> Result<()> {
    let cm = ["configmap", "cfg", "-n", "w"];
    let patch = |kind: &str, body: &str| {
        c.run(&[&["patch"][..], &cm, &["--type", kind, "-p", body]].concat())
    };
    let json = patch(
        "json",
        r#"[{"op":"test","path":"/data/b","value":"2"},{"op":"replace","path":"/data/a","value":"9"}]"#,
    )?;
    ensure!(json.success, "json patch: {}", json.stderr);
    ensure!(field(c, &["configmap", "cfg"], "{.data.a}")? == "9");
    let failed = patch("json", r#"[{"op":"test","path":"/data/b","value":"nope"}]"#)?;
    ensure!(!failed.success, "a failed test op was accepted");
    ensure!(patch("merge", r#"{"data":{"c":"3","b":null}}"#)?.success);
    ensure!(field(c, &["configmap", "cfg"], "{.data}")? == r#"{"a":"9","c":"3"}"#);
    // A strategic merge patch merges containers by name: the image stays, env is added.
    let strategic = c.run(&[
        "patch",
        "deployment",
        "web",
        "-n",
        "w",
        "--type",
        "strategic",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"busybox","env":[{"name":"X","value":"1"}]}]}}}}"#,
    ])?;
    ensure!(strategic.success, "strategic patch: {}", strategic.stderr);
    let container = field(
        c,
        &["deployment", "web"],
        "{.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].env[0].name}",
    )?;
    ensure!(container == "busybox:1.36 X", "{container}");
    c.ok(&["label", "configmap", "cfg", "-n", "w", "tier=a"])?;
    c.ok(&["label", "configmap", "cfg", "-n", "w", "tier=b", "--overwrite"])?;
    ensure!(field(c, &["configmap", "cfg"], "{.metadata.labels.tier}")? == "b");
    Ok(())
}

fn workload_commands(c: &Cluster) -> Result<()> {
    ensure!(
        c.ok(&["scale", "deployment", "web", "-n", "w", "--replicas=5"])?.trim()
            == "deployment.apps/web scaled"
    );
    ensure!(field(c, &["deployment", "web"], "{.spec.replicas}")? == "5");
    let scale: serde_json::Value = serde_json::from_str(&c.ok(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/w/deployments/web/scale",
    ])?)?;
    ensure!(scale["kind"] == "Scale" && scale["spec"]["replicas"] == 5, "{scale}");
    ensure!(scale["status"]["selector"] == "app=web", "{scale}");
    c.ok(&["rollout", "restart", "deployment/web", "-n", "w"])?;
    let restarted = field(
        c,
        &["deployment", "web"],
        "{.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}",
    )?;
    ensure!(!restarted.is_empty(), "rollout restart left no annotation");
    c.ok(&["set", "image", "deployment/web", "-n", "w", "busybox=busybox:1.37"])?;
    ensure!(
        field(c, &["deployment", "web"], "{.spec.template.spec.containers[0].image}")?
            == "busybox:1.37"
    );
    c.ok(&["set", "env", "deployment/web", "-n", "w", "MODE=prod"])?;
    let env = field(c, &["deployment", "web"], "{.spec.template.spec.containers[0].env[*].name}")?;
    ensure!(env == "X MODE", "env after set env: {env}");
    Ok(())
}

fn edit_and_diff(c: &Cluster) -> Result<()> {
    let editor = c.dir.path().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/a: \"9\"/a: edited/' \"$1\"\n")?;
    Command::new("chmod").arg("+x").arg(&editor).status()?;
    let edited = c
        .command(&["edit", "configmap", "cfg", "-n", "w"])
        .env("EDITOR", &editor)
        .stdin(Stdio::null())
        .output()?;
    ensure!(edited.status.success(), "kubectl edit: {}", String::from_utf8_lossy(&edited.stderr));
    ensure!(field(c, &["configmap", "cfg"], "{.data.a}")? == "edited");
    let same = c.manifest(
        "diff-same.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n  namespace: w\ndata:\n  k: v2\n",
    )?;
    let different = c.manifest(
        "diff-other.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: w\ndata:\n  a: other\n",
    )?;
    let code = |path: &str| -> Result<Option<i32>> {
        Ok(c.command(&["diff", "--server-side", "--force-conflicts", "-f", path])
            .stdin(Stdio::null())
            .output()?
            .status
            .code())
    };
    ensure!(code(&same)? == Some(0), "kubectl diff of an unchanged object");
    ensure!(code(&different)? == Some(1), "kubectl diff of a changed object");
    ensure!(field(c, &["configmap", "cfg"], "{.data.a}")? == "edited", "diff changed the object");
    Ok(())
}

fn tokens_and_access(c: &Cluster) -> Result<()> {
    ensure!(c.ok(&["auth", "can-i", "create", "deployments", "-n", "w"])?.trim() == "yes");
    let list = c.ok(&["auth", "can-i", "--list", "-n", "w"])?;
    ensure!(list.lines().any(|l| l.starts_with("*.*")), "{list}");
    let whoami = c.ok(&["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"])?;
    ensure!(whoami == "system:admin", "{whoami}");
    let token = c.ok(&["create", "token", "bot", "-n", "w", "--duration=20m"])?;
    let token = token.trim();
    ensure!(token.split('.').count() == 3, "not a JWT: {token}");
    // A kubeconfig with only that token: the server must accept it.
    let full = std::fs::read_to_string(&c.kubeconfig)?;
    let only_token: String = full
        .lines()
        .filter(|l| !l.contains("client-certificate-data") && !l.contains("client-key-data"))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .replace("  user:\n", &format!("  user:\n    token: {token}\n"));
    let path = c.dir.path().join("bot.yaml");
    std::fs::write(&path, only_token)?;
    let as_bot = Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(&path)
        .args(["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"])
        .stdin(Stdio::null())
        .output()?;
    ensure!(
        as_bot.status.success(),
        "the token was refused: {}",
        String::from_utf8_lossy(&as_bot.stderr)
    );
    ensure!(String::from_utf8(as_bot.stdout)? == "system:serviceaccount:w:bot");
    Ok(())
}

/// The pod subresources the scheduler, kubelet, `kubectl debug` and `drain` use.
fn pod_subresources(c: &Cluster) -> Result<()> {
    c.ok(&["run", "p", "-n", "w", "--image=busybox:1.36", "--labels=app=p", "--", "sleep", "1d"])?;
    let binding = c.manifest(
        "binding.json",
        r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"p"},"target":{"kind":"Node","name":"node-1"}}"#,
    )?;
    let path = "/api/v1/namespaces/w/pods/p/binding";
    c.ok(&["create", "--raw", path, "-f", &binding])?;
    let bound = field(
        c,
        &["pod", "p"],
        "{.spec.nodeName} {.status.conditions[0].type}={.status.conditions[0].status}",
    )?;
    ensure!(bound == "node-1 PodScheduled=True", "after binding: {bound}");
    let again = c.fails(&["create", "--raw", path, "-f", &binding])?;
    ensure!(again.contains("already assigned to node"), "{again}");

    // kubectl debug adds an ephemeral container through pods/ephemeralcontainers.
    c.ok(&["debug", "p", "-n", "w", "--image=busybox:1.36", "--container=dbg"])?;
    ensure!(field(c, &["pod", "p"], "{.spec.ephemeralContainers[0].name}")? == "dbg");
    // pods/resize changes only the containers' resources.
    c.ok(&[
        "patch",
        "pod",
        "p",
        "-n",
        "w",
        "--subresource=resize",
        "--type=merge",
        "-p",
        r#"{"spec":{"containers":[{"name":"p","resources":{"requests":{"cpu":"200m"}}}]}}"#,
    ])?;
    let resized = field(
        c,
        &["pod", "p"],
        "{.spec.containers[0].resources.requests.cpu} {.spec.containers[0].image}",
    )?;
    ensure!(resized == "200m busybox:1.36", "after resize: {resized}");

    // A running pod covered by a budget without status cannot be evicted; with a
    // disruption left it can, and the budget records it.
    c.ok(&[
        "patch",
        "pod",
        "p",
        "-n",
        "w",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running"}}"#,
    ])?;
    c.ok(&[
        "create",
        "poddisruptionbudget",
        "p-budget",
        "-n",
        "w",
        "--selector=app=p",
        "--max-unavailable=1",
    ])?;
    let eviction = c.manifest(
        "eviction.json",
        r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"p","namespace":"w"}}"#,
    )?;
    let evict = "/api/v1/namespaces/w/pods/p/eviction";
    let refused = c.fails(&["create", "--raw", evict, "-f", &eviction])?;
    ensure!(refused.contains("disruption budget"), "{refused}");
    c.ok(&[
        "patch", "pdb", "p-budget", "-n", "w", "--subresource=status", "--type=merge", "-p",
        r#"{"status":{"observedGeneration":1,"disruptionsAllowed":1,"currentHealthy":1,"desiredHealthy":0,"expectedPods":1}}"#,
    ])?;
    c.ok(&["create", "--raw", evict, "-f", &eviction])?;
    let left = field(c, &["pdb", "p-budget"], "{.status.disruptionsAllowed}")?;
    ensure!(left == "0", "the budget still allows {left}");
    let gone =
        c.run(&["get", "pod", "p", "-n", "w", "-o", "jsonpath={.metadata.deletionTimestamp}"])?;
    ensure!(!gone.success || !gone.stdout.is_empty(), "the evicted pod is still there: {gone:?}");
    Ok(())
}
