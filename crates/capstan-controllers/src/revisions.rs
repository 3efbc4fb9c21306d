//! ControllerRevisions, as DaemonSets and StatefulSets keep them: one per pod template,
//! named `<owner>-<hash>`, holding the template as a replace patch (what `kubectl rollout
//! undo` applies) and a revision number; the current template's revision is always the
//! highest, so a rollback to an old template renumbers its revision, as upstream.

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// The label carrying a template's hash on its pods and revisions.
pub(crate) const HASH_LABEL: &str = "controller-revision-hash";

/// Makes sure the revision of `template` (hashed `hash`) exists and is the newest of the
/// owner's; returns its name.
pub(crate) async fn record(
    client: &kube::Client,
    namespace: &str,
    owner: &OwnerReference,
    template: &PodTemplateSpec,
    hash: &str,
) -> Result<String, kube::Error> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), namespace);
    let owned: Vec<ControllerRevision> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|r| r.metadata.owner_references.iter().flatten().any(|o| o.uid == owner.uid))
        .collect();
    let name = format!("{}-{hash}", owner.name);
    let newest = owned.iter().map(|r| r.revision).max().unwrap_or(0);
    match owned.iter().find(|r| r.metadata.name.as_deref() == Some(name.as_str())) {
        Some(existing) if existing.revision == newest => Ok(name),
        Some(_) => {
            let patch = json!({"revision": newest + 1});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            Ok(name)
        }
        None => {
            let mut data = json!({"spec": {"template": serde_json::to_value(template).unwrap_or(Value::Null)}});
            data["spec"]["template"]["$patch"] = json!("replace");
            let mut labels =
                template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
            labels.insert(HASH_LABEL.into(), hash.to_owned());
            let revision: ControllerRevision = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": [owner]},
                "data": data, "revision": newest + 1,
            }))
            .map_err(kube::Error::SerdeError)?;
            match api.create(&PostParams::default(), &revision).await {
                Ok(_) => Ok(name),
                // Created meanwhile (a concurrent reconcile): it is there, which is the point.
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(name),
                Err(error) => Err(error),
            }
        }
    }
}
