//! The controllers that look after namespaces, end to end with the real kubectl: every new
//! namespace gets the `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap (holding
//! the CA the kubeconfig trusts), both come back when deleted and the ConfigMap's data when
//! changed; deleting a namespace deletes everything in it, a pod on a hollow node included,
//! and a namespace held by a finalizer of its content says so in its conditions.

mod support;

use anyhow::{Context, Result, ensure};
use base64::Engine;
use std::time::{Duration, Instant};
use support::Cluster;

/// The hollow node the test's pod is bound to in [`CONTENT`] (`capstan sim-nodes` names its
/// nodes `hollow-<index>`).
const NODE: &str = "hollow-0";

#[test]
fn controllers_keep_and_delete_namespace_content() -> Result<()> {
    let c = Cluster::start(false)?;
    let nodes = c.sim_nodes(&["--count", "1"])?;
    c.ok(&["create", "namespace", "x"])?;
    c.ok(&["create", "namespace", "held"])?;
    defaults_published(&c).context("defaults published")?;
    defaults_restored(&c).context("defaults restored")?;
    deletion(&c).context("namespace deletion")?;
    // The hollow node goes first, so that it does not complain about the server it lost.
    drop(nodes);
    c.stop()
}

/// The ServiceAccount and the CA ConfigMap appear in a new namespace (and in the ones the
/// server creates itself), with upstream's description and the kubeconfig's CA.
fn defaults_published(c: &Cluster) -> Result<()> {
    for namespace in ["x", "held", "default", "kube-system"] {
        c.wait_for_field(
            &["serviceaccount", "default", "-n", namespace],
            "{.metadata.name}",
            "default",
        )?;
        c.wait_for_field(
            &["configmap", "kube-root-ca.crt", "-n", namespace],
            "{.metadata.name}",
            "kube-root-ca.crt",
        )?;
    }
    let published = c.ok(&[
        "get",
        "configmap",
        "kube-root-ca.crt",
        "-n",
        "x",
        "-o",
        r"jsonpath={.data.ca\.crt}",
    ])?;
    ensure!(published == cluster_ca(c)?, "the published CA is not the kubeconfig's: {published}");
    let description = c.ok(&[
        "get",
        "configmap",
        "kube-root-ca.crt",
        "-n",
        "x",
        "-o",
        r"jsonpath={.metadata.annotations.kubernetes\.io/description}",
    ])?;
    ensure!(
        description
            == "Contains a CA bundle that can be used to verify the kube-apiserver when using \
                internal endpoints such as the internal service IP or kubernetes.default.svc. No \
                other usage is guaranteed across distributions of Kubernetes clusters.",
        "{description}"
    );
    Ok(())
}

/// The CA certificate (PEM) the admin kubeconfig trusts.
fn cluster_ca(c: &Cluster) -> Result<String> {
    let encoded = c.ok(&[
        "config",
        "view",
        "--raw",
        "-o",
        "jsonpath={.clusters[0].cluster.certificate-authority-data}",
    ])?;
    let pem = base64::engine::general_purpose::STANDARD.decode(encoded.trim())?;
    Ok(String::from_utf8(pem)?)
}

/// Deleted, the ServiceAccount and the ConfigMap come back (as new objects); the ConfigMap's
/// changed data is put back.
fn defaults_restored(c: &Cluster) -> Result<()> {
    let uid = |what: &[&str]| -> Result<String> {
        c.ok(&[&["get"][..], what, &["-n", "x", "-o", "jsonpath={.metadata.uid}"]].concat())
    };
    let account = ["serviceaccount", "default"];
    let configmap = ["configmap", "kube-root-ca.crt"];
    let (old_account, old_configmap) = (uid(&account)?, uid(&configmap)?);
    c.ok(&["delete", "serviceaccount", "default", "-n", "x"])?;
    c.ok(&["delete", "configmap", "kube-root-ca.crt", "-n", "x"])?;
    for (what, old) in [(&account, old_account), (&configmap, old_configmap)] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let run = c.run(
                &[&["get"][..], what, &["-n", "x", "-o", "jsonpath={.metadata.uid}"]].concat(),
            )?;
            if run.success && !run.stdout.is_empty() && run.stdout != old {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "{what:?} did not come back: {}{}",
                run.stdout,
                run.stderr
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let ca = cluster_ca(c)?;
    let patch = r#"{"data":{"ca.crt":"forged","extra":"x"}}"#;
    c.ok(&["patch", "configmap", "kube-root-ca.crt", "-n", "x", "--type", "merge", "-p", patch])?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let data =
            c.ok(&["get", "configmap", "kube-root-ca.crt", "-n", "x", "-o", "jsonpath={.data}"])?;
        let data: serde_json::Value = serde_json::from_str(&data)?;
        if data == serde_json::json!({"ca.crt": ca}) {
            break;
        }
        ensure!(Instant::now() < deadline, "the CA ConfigMap was not restored: {data}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

const CONTENT: &str = "apiVersion: v1
kind: ConfigMap
metadata: {name: one, namespace: x}
data: {a: \"1\"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: two, namespace: x}
---
apiVersion: v1
kind: Secret
metadata: {name: secret, namespace: x}
stringData: {password: hunter2}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: x}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: x, labels: {app: web}}
spec:
  nodeName: hollow-0
  containers: [{name: c, image: busybox}]
";

const HELD: &str = "apiVersion: v1
kind: ConfigMap
metadata: {name: kept, namespace: held, finalizers: [example.com/hold]}
";

/// `kubectl delete namespace --wait` returns once the namespace and everything in it is gone
/// (the pod once its hollow node finished it); a namespace whose content has a finalizer
/// stays, Terminating, with conditions saying why, until the finalizer goes.
fn deletion(c: &Cluster) -> Result<()> {
    c.wait_for_field(&["node", NODE], "{.status.conditions[?(@.type==\"Ready\")].status}", "True")?;
    let content = c.manifest("content.yaml", CONTENT)?;
    c.ok(&["create", "-f", &content])?;
    let held = c.manifest("held.yaml", HELD)?;
    c.ok(&["create", "-f", &held])?;
    c.wait_for_field(&["pod", "web", "-n", "x"], "{.status.phase}", "Running")?;

    c.ok(&["delete", "namespace", "held", "--wait=false"])?;
    let condition = |type_: &str| format!("{{.status.conditions[?(@.type==\"{type_}\")].message}}");
    c.wait_for_field(
        &["namespace", "held"],
        &condition("NamespaceFinalizersRemaining"),
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances",
    )?;
    let expected = [
        ("NamespaceDeletionDiscoveryFailure", "False", "ResourcesDiscovered"),
        ("NamespaceDeletionGroupVersionParsingFailure", "False", "ParsedGroupVersions"),
        ("NamespaceDeletionContentFailure", "False", "ContentDeleted"),
        ("NamespaceContentRemaining", "True", "SomeResourcesRemain"),
        ("NamespaceFinalizersRemaining", "True", "SomeFinalizersRemain"),
    ];
    for (type_, status, reason) in expected {
        let path = format!(
            "jsonpath={{.status.conditions[?(@.type==\"{type_}\")].status}} \
             {{.status.conditions[?(@.type==\"{type_}\")].reason}}"
        );
        let got = c.ok(&["get", "namespace", "held", "-o", &path])?;
        ensure!(got == format!("{status} {reason}"), "{type_}: {got}");
    }
    let remaining = c.ok(&[
        "get",
        "namespace",
        "held",
        "-o",
        &format!("jsonpath={}", condition("NamespaceContentRemaining")),
    ])?;
    ensure!(
        remaining == "Some resources are remaining: configmaps. has 1 resource instances",
        "{remaining}"
    );
    let phase = c.ok(&["get", "namespace", "held", "-o", "jsonpath={.status.phase}"])?;
    ensure!(phase == "Terminating", "{phase}");
    // Its ServiceAccount and CA went with the rest and, the namespace terminating, stay gone.
    let left = c.ok(&["get", "serviceaccounts,configmaps", "-n", "held", "-o", "name"])?;
    ensure!(left.trim() == "configmap/kept", "left in the terminating namespace: {left}");
    let patch = r#"{"metadata":{"finalizers":null}}"#;
    c.ok(&["patch", "configmap", "kept", "-n", "held", "--type", "merge", "-p", patch])?;

    let started = Instant::now();
    let out = c.ok(&["delete", "namespace", "x", "--wait", "--timeout=60s"])?;
    ensure!(out.trim() == r#"namespace "x" deleted"#, "{out}");
    let missing = c.fails(&["get", "namespace", "x"])?;
    ensure!(missing.contains("NotFound"), "{missing}");
    eprintln!("namespace x deleted in {:?}", started.elapsed());
    let left = c.ok(&[
        "get",
        "configmaps,secrets,services,pods,serviceaccounts",
        "-n",
        "x",
        "-o",
        "name",
    ])?;
    ensure!(left.trim().is_empty(), "left in the deleted namespace: {left}");

    c.ok(&["wait", "--for=delete", "namespace/held", "--timeout=30s"])?;
    let left = c.ok(&["get", "configmaps,serviceaccounts", "-n", "held", "-o", "name"])?;
    ensure!(left.trim().is_empty(), "left in the released namespace: {left}");
    Ok(())
}
