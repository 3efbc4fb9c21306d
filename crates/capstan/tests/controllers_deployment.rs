//! Deployments end to end with the real kubectl and hollow nodes: creation and `kubectl
//! rollout status`, a rolling update by `set image`, `rollout history`, `rollout undo` to the
//! previous template (a new revision), `rollout pause`/`resume`, scaling, and deletion taking
//! the ReplicaSets and pods with it (the garbage collector).

mod support;

use anyhow::{Context, Result, ensure};
use support::Cluster;

#[test]
fn deployments_roll_out_roll_back_and_pause() -> Result<()> {
    let c = Cluster::start(false)?;
    let _nodes = c.sim_nodes(&["--count", "2"])?;
    c.ok(&["create", "namespace", "d"])?;
    c.ok(&["create", "deployment", "web", "-n", "d", "--image=busybox:1", "--replicas=3"])?;
    rollout_done(&c)?;
    ensure!(images(&c)? == ["busybox:1"; 3], "first rollout: {:?}", images(&c)?);

    c.ok(&["set", "image", "deployment/web", "-n", "d", "busybox=busybox:2"])?;
    rollout_done(&c)?;
    ensure!(images(&c)? == ["busybox:2"; 3], "after set image: {:?}", images(&c)?);
    let sets = c.ok(&["get", "rs", "-n", "d", "-o", "jsonpath={.items[*].spec.replicas}"])?;
    let mut sets: Vec<&str> = sets.split_whitespace().collect();
    sets.sort();
    ensure!(sets == ["0", "3"], "replica sets: {sets:?}");
    let history = c.ok(&["rollout", "history", "deployment/web", "-n", "d"])?;
    ensure!(history.contains('1') && history.contains('2'), "history: {history}");

    c.ok(&["rollout", "undo", "deployment/web", "-n", "d"])?;
    rollout_done(&c)?;
    ensure!(images(&c)? == ["busybox:1"; 3], "after undo: {:?}", images(&c)?);
    let revision = c.ok(&[
        "get",
        "deployment",
        "web",
        "-n",
        "d",
        "-o",
        "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
    ])?;
    ensure!(revision == "3", "revision after undo: {revision}");

    c.ok(&["rollout", "pause", "deployment/web", "-n", "d"])?;
    c.ok(&["set", "image", "deployment/web", "-n", "d", "busybox=busybox:3"])?;
    std::thread::sleep(std::time::Duration::from_secs(2));
    let count = c.ok(&["get", "rs", "-n", "d", "-o", "name"])?.lines().count();
    ensure!(count == 2, "a paused deployment made a new replica set ({count} sets)");
    c.ok(&["rollout", "resume", "deployment/web", "-n", "d"])?;
    rollout_done(&c)?;
    ensure!(images(&c)? == ["busybox:3"; 3], "after resume: {:?}", images(&c)?);

    c.ok(&["scale", "deployment/web", "-n", "d", "--replicas=5"])?;
    rollout_done(&c)?;
    ensure!(images(&c)?.len() == 5, "after scaling: {:?}", images(&c)?);

    c.ok(&["delete", "deployment", "web", "-n", "d"])?;
    for _ in 0..300 {
        let left = c.ok(&["get", "rs,pods", "-n", "d", "-o", "name"])?;
        if left.trim().is_empty() {
            return c.stop();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    anyhow::bail!("the deployment's replica sets and pods were not collected")
}

fn rollout_done(c: &Cluster) -> Result<()> {
    let out = c
        .ok(&["rollout", "status", "deployment/web", "-n", "d", "--timeout=60s"])
        .context("rollout status")?;
    ensure!(out.contains("successfully rolled out"), "{out}");
    Ok(())
}

/// The images of the Running pods not being deleted, sorted.
fn images(c: &Cluster) -> Result<Vec<String>> {
    for _ in 0..100 {
        let out = c.ok(&[
            "get",
            "pods",
            "-n",
            "d",
            "-o",
            "jsonpath={range .items[*]}{.status.phase}/{.metadata.deletionTimestamp}/{.spec.containers[0].image}{\"\\n\"}{end}",
        ])?;
        let lines: Vec<&str> = out.lines().collect();
        // Wait for terminating pods of the old template to be gone.
        if lines.iter().all(|l| l.starts_with("Running//")) {
            let mut images: Vec<String> =
                lines.iter().filter_map(|l| l.rsplit('/').next()).map(String::from).collect();
            images.sort();
            return Ok(images);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    anyhow::bail!("pods did not settle")
}
