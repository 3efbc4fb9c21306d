//! Leader election end to end: two `capstan server`s on one etcd run one scheduler and one
//! controller manager between them. The first server leads both; frozen with SIGSTOP, it is
//! replaced by the second within lease duration + retry period of its last renewal, and the
//! second schedules; thawed, the first notices it lost both Leases and does not take them
//! back; no pod is bound twice; a server stopped with SIGTERM releases its Leases, so the
//! other takes them at once.

mod support;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::{Cluster, Server};

const LEASES: [&str; 2] = ["kube-scheduler", "kube-controller-manager"];

#[test]
fn one_leader_among_servers_on_one_etcd() -> Result<()> {
    let started = Instant::now();
    let etcd = capstan_testkit::EtcdServer::start()?;
    let endpoint = format!("etcd://{}", etcd.endpoint());
    let first = Cluster::start_with(&["--datastore-endpoint", &endpoint])?;
    let first_ids = wait_for_leases(first.server()?, "acquired lease")?;
    let second = Cluster::start_with(&["--datastore-endpoint", &endpoint])?;
    second.server()?.wait_for("attempting to acquire lease")?;
    for lease in LEASES {
        ensure!(holder(&second, lease)? == first_ids[lease], "{lease} is not held by the first");
    }

    // Everything the test does goes through the second server, which stays up throughout.
    let nodes = second.sim_nodes(&["--count", "2", "--name-prefix", "le-"])?;
    for node in ["le-0", "le-1"] {
        second.wait_for_field(
            &["node", node],
            "{.status.conditions[?(@.type==\"Ready\")].status}",
            "True",
        )?;
    }
    second.ok(&["create", "namespace", "le"])?;
    create_pod(&second, "before")?;
    wait_running(&second, "before")?;
    // A ReplicaSet the controller manager keeps at 3 pods through the handover.
    let replica_set = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: keep, namespace: le}\n\
        spec:\n  replicas: 3\n  selector: {matchLabels: {app: keep}}\n  template:\n    \
        metadata: {labels: {app: keep}}\n    spec: {containers: [{name: c, image: busybox}]}\n";
    let path = second.manifest("keep.yaml", replica_set)?;
    second.ok(&["create", "-f", &path])?;
    second.wait_for_field(&["rs", "keep", "-n", "le"], "{.status.readyReplicas}", "3")?;

    // Freeze the leader. The second server takes both Leases once their records have not
    // changed for the lease duration (15 s) on its own clock: at most a retry period (2 s)
    // after the last renewal, which came before the freeze. The moment is the one the second
    // server wrote as acquireTime (one host, one clock), so kubectl's polling does not count.
    let frozen_at = Timestamp::now();
    first.server()?.signal("STOP")?;
    create_pod(&second, "during")?;
    // A pod of the ReplicaSet goes while the leader is frozen: the new leader replaces it.
    let victim = second.ok(&[
        "get",
        "pods",
        "-n",
        "le",
        "-l",
        "app=keep",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ])?;
    second.ok(&["delete", "pod", &victim, "-n", "le", "--wait=false"])?;
    let second_ids = wait_for_leases(second.server()?, "acquired lease")?;
    for lease in LEASES {
        ensure!(holder(&second, lease)? == second_ids[lease], "{lease} is not held by the second");
        let acquired: Timestamp = field(&second, lease, "{.spec.acquireTime}")?.parse()?;
        let after = acquired.duration_since(frozen_at);
        ensure!(
            after <= SignedDuration::from_secs(17),
            "{lease} was taken over {after:?} after the freeze"
        );
        ensure!(field(&second, lease, "{.spec.leaseTransitions}")? == "1");
    }
    wait_running(&second, "during")?;

    // Thawed, the first server's terms are over at once: both components stop, and its
    // electors find the Leases renewed by the second.
    first.server()?.signal("CONT")?;
    let lost = wait_for_leases(first.server()?, "lost lease")?;
    ensure!(lost == first_ids, "lost {lost:?}, held {first_ids:?}");
    create_pod(&second, "after")?;
    wait_running(&second, "after")?;
    // Longer than two retry periods: the first server has tried again, and given up again.
    std::thread::sleep(Duration::from_secs(5));
    for lease in LEASES {
        ensure!(holder(&second, lease)? == second_ids[lease], "{lease} changed hands again");
    }
    let relapses = first.server()?.lines_so_far();
    ensure!(
        !relapses.iter().any(|line| line.contains("acquired lease")),
        "the first server took a lease back: {relapses:#?}"
    );

    // The ReplicaSet has its 3 pods, and exactly 4 were ever created (3, then 1 to replace
    // the deleted one): neither leader created duplicates around the handover.
    second.wait_for_field(&["rs", "keep", "-n", "le"], "{.status.readyReplicas}", "3")?;
    let live = second.ok(&[
        "get",
        "pods",
        "-n",
        "le",
        "-l",
        "app=keep",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}/{.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ])?;
    ensure!(live.lines().filter(|l| l.ends_with('/')).count() == 3, "replica set pods: {live}");
    let creations = second.ok(&[
        "get",
        "events",
        "-n",
        "le",
        "-o",
        "jsonpath={range .items[*]}{.reason}/{.involvedObject.name}{\"\\n\"}{end}",
    ])?;
    let created = creations.lines().filter(|l| *l == "SuccessfulCreate/keep").count();
    ensure!(created == 4, "{created} pods created for the replica set:\n{creations}");

    // Every pod was bound once, by one scheduler: one Scheduled event each, no repeats.
    let events = second.ok(&[
        "get",
        "events",
        "-n",
        "le",
        "-o",
        "jsonpath={range .items[*]}{.reason} {.involvedObject.name} {.count}{\"\\n\"}{end}",
    ])?;
    for pod in ["before", "during", "after"] {
        let scheduled: Vec<&str> =
            events.lines().filter(|line| line.starts_with(&format!("Scheduled {pod} "))).collect();
        ensure!(scheduled.len() == 1, "{pod} has Scheduled events {scheduled:?}:\n{events}");
        let count = scheduled[0].rsplit(' ').next().unwrap_or_default();
        ensure!(["", "0", "1"].contains(&count), "{pod} was scheduled {count} times");
        ensure!(node_of(&second, pod)?.starts_with("le-"), "{pod} is not bound");
    }

    // Stopped with SIGTERM, the leader releases both Leases: the first server, a candidate
    // again, takes them on its next try instead of waiting out the lease duration.
    drop(nodes);
    second.stop()?;
    let handed_at = Instant::now();
    let first_again = wait_for_leases(first.server()?, "acquired lease")?;
    ensure!(handed_at.elapsed() < Duration::from_secs(5), "took {:?}", handed_at.elapsed());
    for lease in LEASES {
        ensure!(holder(&first, lease)? == first_again[lease]);
    }
    first.stop()?;
    drop(etcd);
    eprintln!("leader election test took {:?}", started.elapsed());
    Ok(())
}

/// Reads the log until the line `message` has been printed for both Leases; returns the
/// identity each line names, by Lease.
fn wait_for_leases(server: &Server, message: &str) -> Result<BTreeMap<&'static str, String>> {
    let mut identities = BTreeMap::new();
    while identities.len() < LEASES.len() {
        let line = server.wait_for(message)?;
        let lease = value_of(&line, "lease").context("no lease in the line")?;
        let Some(lease) = LEASES.iter().find(|name| lease == format!("kube-system/{name}")) else {
            bail!("unexpected lease in {line:?}");
        };
        let identity = value_of(&line, "identity").context("no identity in the line")?;
        identities.insert(*lease, identity.to_owned());
    }
    Ok(identities)
}

/// The value of `key=value` in a log line.
fn value_of<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    line[start..].split_whitespace().next()
}

fn field(c: &Cluster, lease: &str, path: &str) -> Result<String> {
    c.ok(&["get", "lease", "-n", "kube-system", lease, "-o", &format!("jsonpath={path}")])
}

fn holder(c: &Cluster, lease: &str) -> Result<String> {
    field(c, lease, "{.spec.holderIdentity}")
}

fn create_pod(c: &Cluster, name: &str) -> Result<()> {
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: le\nspec:\n  containers:\n  - name: c\n    image: busybox\n"
    );
    let path = c.manifest(&format!("{name}.yaml"), &manifest)?;
    c.ok(&["create", "-f", &path])?;
    Ok(())
}

fn wait_running(c: &Cluster, pod: &str) -> Result<()> {
    c.wait_for_field(&["pod", pod, "-n", "le"], "{.status.phase}", "Running")
}

fn node_of(c: &Cluster, pod: &str) -> Result<String> {
    c.ok(&["get", "pod", pod, "-n", "le", "-o", "jsonpath={.spec.nodeName}"])
}
