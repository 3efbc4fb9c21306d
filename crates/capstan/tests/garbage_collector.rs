//! The garbage collector end to end with the real kubectl: dependents (ConfigMaps owned by a
//! ConfigMap through ownerReferences) are deleted with their owner in the background and in
//! the foreground (the owner waits for them), and kept without the reference when the owner
//! is deleted with `--cascade=orphan`; a dependent with a second, living owner only loses the
//! reference to the deleted one.

mod support;

use anyhow::{Result, ensure};
use support::Cluster;

#[test]
fn cascading_deletion_in_every_mode() -> Result<()> {
    let c = Cluster::start(false)?;
    c.ok(&["create", "namespace", "gc"])?;
    for (mode, cascade) in
        [("background", "background"), ("foreground", "foreground"), ("orphan", "orphan")]
    {
        let owner = create_owner(&c, &format!("{mode}-owner"))?;
        for i in 0..3 {
            create_dependent(
                &c,
                &format!("{mode}-dep-{i}"),
                &[(&format!("{mode}-owner"), &owner)],
            )?;
        }
        c.ok(&[
            "delete",
            "configmap",
            &format!("{mode}-owner"),
            "-n",
            "gc",
            &format!("--cascade={cascade}"),
            "--timeout=30s",
        ])?;
        c.fails(&["get", "configmap", &format!("{mode}-owner"), "-n", "gc"])?;
        for i in 0..3 {
            let dependent = format!("{mode}-dep-{i}");
            if mode == "orphan" {
                let references = c.ok(&[
                    "get",
                    "configmap",
                    &dependent,
                    "-n",
                    "gc",
                    "-o",
                    "jsonpath={.metadata.ownerReferences}",
                ])?;
                ensure!(references.is_empty(), "{dependent} still has {references}");
            } else {
                wait_gone(&c, &dependent)?;
            }
        }
    }
    // Two owners; deleting one leaves the dependent with the other.
    let first = create_owner(&c, "first")?;
    let second = create_owner(&c, "second")?;
    create_dependent(&c, "shared", &[("first", &first), ("second", &second)])?;
    c.ok(&["delete", "configmap", "first", "-n", "gc"])?;
    c.wait_for_field(
        &["configmap", "shared", "-n", "gc"],
        "{.metadata.ownerReferences[*].name}",
        "second",
    )?;
    c.ok(&["delete", "configmap", "second", "-n", "gc"])?;
    wait_gone(&c, "shared")?;
    c.stop()
}

/// Creates an owner ConfigMap and returns its uid.
fn create_owner(c: &Cluster, name: &str) -> Result<String> {
    c.ok(&["create", "configmap", name, "-n", "gc"])?;
    c.ok(&["get", "configmap", name, "-n", "gc", "-o", "jsonpath={.metadata.uid}"])
}

fn create_dependent(c: &Cluster, name: &str, owners: &[(&str, &str)]) -> Result<()> {
    let references: String = owners
        .iter()
        .map(|(owner, uid)| {
            format!("  - {{apiVersion: v1, kind: ConfigMap, name: {owner}, uid: {uid}, blockOwnerDeletion: true}}\n")
        })
        .collect();
    let manifest = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: gc\n  ownerReferences:\n{references}"
    );
    let path = c.manifest(&format!("{name}.yaml"), &manifest)?;
    c.ok(&["create", "-f", &path])?;
    Ok(())
}

fn wait_gone(c: &Cluster, name: &str) -> Result<()> {
    for _ in 0..300 {
        if !c.run(&["get", "configmap", name, "-n", "gc"])?.success {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    anyhow::bail!("{name} was not collected in 30 s")
}
