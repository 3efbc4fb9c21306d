//! PodDisruptionBudget status end to end: the disruption controller counts the healthy pods a
//! budget selects and how many may be disrupted. (That the API refuses an eviction beyond
//! them is tested with the API server's eviction subresource.)

mod support;

use anyhow::Result;
use support::Cluster;

#[test]
fn budgets_count_healthy_pods() -> Result<()> {
    let c = Cluster::start(false)?;
    let _nodes = c.sim_nodes(&["--count", "2"])?;
    c.ok(&["create", "namespace", "p"])?;
    for i in 0..3 {
        c.ok(&["run", &format!("web-{i}"), "-n", "p", "--image=busybox", "--labels=app=web"])?;
    }
    for i in 0..3 {
        c.wait_for_field(&["pod", &format!("web-{i}"), "-n", "p"], "{.status.phase}", "Running")?;
    }
    c.ok(&["create", "pdb", "web", "-n", "p", "--selector=app=web", "--min-available=2"])?;
    let status = "{.status.currentHealthy}/{.status.desiredHealthy}/{.status.expectedPods}/{.status.disruptionsAllowed}";
    c.wait_for_field(&["pdb", "web", "-n", "p"], status, "3/2/3/1")?;
    c.ok(&["delete", "pod", "web-0", "-n", "p"])?;
    c.wait_for_field(&["pdb", "web", "-n", "p"], status, "2/2/2/0")?;
    c.wait_for_field(
        &["pdb", "web", "-n", "p"],
        "{.status.conditions[0].reason}",
        "InsufficientPods",
    )?;
    c.stop()
}
