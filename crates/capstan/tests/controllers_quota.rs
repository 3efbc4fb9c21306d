//! ResourceQuota usage end to end: the quota controller counts objects and sums the
//! requests of the namespace's pods into `status.used`, following creations and deletions.

mod support;

use anyhow::Result;
use support::Cluster;

const QUOTA: &str = "apiVersion: v1
kind: ResourceQuota
metadata: {name: q, namespace: q}
spec:
  hard: {pods: '5', requests.cpu: '2', requests.memory: 1Gi, configmaps: '10', count/deployments.apps: '3'}
";

#[test]
fn quotas_report_what_is_used() -> Result<()> {
    let c = Cluster::start(false)?;
    c.ok(&["create", "namespace", "q"])?;
    let path = c.manifest("quota.yaml", QUOTA)?;
    c.ok(&["create", "-f", &path])?;
    for i in 0..2 {
        c.ok(&["run", &format!("p{i}"), "-n", "q", "--image=busybox", "--overrides",
            r#"{"spec":{"containers":[{"name":"c","image":"busybox","resources":{"requests":{"cpu":"250m","memory":"100Mi"}}}]}}"#])?;
    }
    c.ok(&["create", "deployment", "d", "-n", "q", "--image=busybox", "--replicas=0"])?;
    let used = "{.status.used.pods}/{.status.used.requests\\.cpu}/{.status.used.requests\\.memory}/{.status.used.count/deployments\\.apps}";
    c.wait_for_field(&["resourcequota", "q", "-n", "q"], used, "2/500m/200Mi/1")?;
    // The namespace's own kube-root-ca.crt counts among the ConfigMaps.
    c.wait_for_field(&["resourcequota", "q", "-n", "q"], "{.status.used.configmaps}", "1")?;
    c.ok(&["delete", "pod", "p0", "-n", "q", "--grace-period=0", "--force"])?;
    c.wait_for_field(&["resourcequota", "q", "-n", "q"], used, "1/250m/100Mi/1")?;
    c.stop()
}
