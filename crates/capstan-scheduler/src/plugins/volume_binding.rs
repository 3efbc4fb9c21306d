//! The VolumeBinding plugin (its filter half): a pod whose claims are bound goes only where
//! the bound volumes are reachable; a pod whose claims wait for their first consumer goes only
//! where an available volume matches each claim or a volume can be provisioned.
//!
//! Left out from upstream: CSI storage capacity tracking, the migration of in-tree volumes to
//! CSI, volume attributes classes, and the Reserve/PreBind half that writes the chosen
//! bindings (the PV controller's job in Capstan).

use crate::framework::selectors::{label_selector, node_selector_matches};
use crate::framework::{
    ClusterEvent, Code, CycleState, NodeInfo, Plugin, PodInfo, Snapshot, Status,
};
use capstan_api::Quantity;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// Why a node cannot reach a volume a claim of the pod is bound to.
const REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
/// Why a node has neither a matching volume nor provisioning for a waiting claim.
const REASON_BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
/// Why no node fits while a claim is bound to a volume that does not exist.
const REASON_PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
/// Why a pod waits for the PV controller to bind its claims before it can be scheduled.
const REASON_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";

/// The storage class annotation that predates `storageClassName` and still wins over it.
const ANNOTATION_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// Set on a claim once the scheduler chose the node its volume is to be provisioned for.
const ANNOTATION_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The provisioner of classes whose volumes are all created by hand.
const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// Upstream's `VolumeBinding` plugin.
#[derive(Debug, Default)]
pub struct VolumeBinding;

/// What `pre_filter` gathers for the filters: the filter sees no snapshot, so the volumes and
/// classes it needs are taken from it here.
#[derive(Debug, Clone)]
struct PreFilterState {
    /// For each claim bound to a volume, that volume (`None`: it does not exist).
    bound_volumes: Vec<Option<Arc<PersistentVolume>>>,
    /// The claims waiting for their first consumer, smallest request first, so that the
    /// smallest claims pick their volumes first, as upstream orders them.
    waiting: Vec<WaitingClaim>,
}

/// An unbound claim whose class binds it once a pod using it is scheduled.
#[derive(Debug, Clone)]
struct WaitingClaim {
    claim: Arc<PersistentVolumeClaim>,
    class: Arc<StorageClass>,
    /// The volumes of the claim's class, by name.
    candidates: Vec<Arc<PersistentVolume>>,
}

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        "VolumeBinding"
    }

    /// Nodes (their labels decide volume affinity), and the claims, volumes and classes the
    /// verdict is made of.
    fn events(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent::NodeAdd,
            ClusterEvent::NodeUpdate,
            ClusterEvent::PvcChange,
            ClusterEvent::PvChange,
            ClusterEvent::StorageClassChange,
        ]
    }

    fn filters(&self) -> bool {
        true
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snapshot: &Snapshot) -> Status {
        let claims = match pod_claims(pod, snapshot) {
            Ok(claims) => claims,
            Err(reason) => return Status::unresolvable(reason),
        };
        if claims.is_empty() {
            return Status::skip();
        }
        let mut bound_volumes = Vec::new();
        let mut waiting = Vec::new();
        for claim in claims {
            let volume_name = claim.spec.as_ref().and_then(|spec| spec.volume_name.as_deref());
            if let Some(volume_name) = volume_name.filter(|name| !name.is_empty()) {
                bound_volumes.push(snapshot.pvs.get(volume_name).cloned());
                continue;
            }
            let class_name = claim_class(&claim);
            let class = snapshot.storage_classes.get(class_name).filter(|class| {
                !class_name.is_empty()
                    && class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer")
            });
            // A claim without a class, with a class that does not exist, or with an
            // `Immediate` class is the PV controller's to bind before the pod can go anywhere.
            let Some(class) = class else {
                return Status::unresolvable(REASON_UNBOUND_IMMEDIATE);
            };
            let mut candidates: Vec<Arc<PersistentVolume>> = snapshot
                .pvs
                .values()
                .filter(|volume| volume_class(volume) == class_name)
                .cloned()
                .collect();
            candidates.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            waiting.push(WaitingClaim { claim, class: Arc::clone(class), candidates });
        }
        waiting.sort_by_key(|waiting| storage(requests(&waiting.claim)));
        state.insert(self.name(), PreFilterState { bound_volumes, waiting });
        Status::success()
    }

    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let state = match state.require::<PreFilterState>(self.name()) {
            Ok(state) => state,
            Err(status) => return status,
        };
        let node = &node.node;
        // Like upstream, the bound claims are checked until the first that fails.
        let mut node_conflict = false;
        let mut volume_missing = false;
        for volume in &state.bound_volumes {
            match volume {
                None => volume_missing = true,
                Some(volume) => node_conflict = !volume_reachable(volume, node),
            }
            if node_conflict || volume_missing {
                break;
            }
        }
        let reasons: Vec<String> = [
            (node_conflict, REASON_NODE_CONFLICT),
            (!waiting_claims_fit(&state.waiting, node), REASON_BIND_CONFLICT),
            (volume_missing, REASON_PV_NOT_EXIST),
        ]
        .into_iter()
        .filter(|(failed, _)| *failed)
        .map(|(_, reason)| reason.to_owned())
        .collect();
        if reasons.is_empty() {
            return Status::success();
        }
        Status { code: Code::UnschedulableAndUnresolvable, reasons, plugin: "" }
    }
}

/// The claims of the pod's volumes (`persistentVolumeClaim` and generic ephemeral volumes), or
/// upstream's reason why the pod cannot be scheduled while they are as they are.
fn pod_claims(
    pod: &PodInfo,
    snapshot: &Snapshot,
) -> Result<Vec<Arc<PersistentVolumeClaim>>, String> {
    let volumes = pod.pod.spec.as_ref().and_then(|spec| spec.volumes.as_deref());
    let mut claims = Vec::new();
    for volume in volumes.unwrap_or_default() {
        let (name, ephemeral) = if let Some(source) = &volume.persistent_volume_claim {
            (source.claim_name.clone(), false)
        } else if volume.ephemeral.is_some() {
            // The ephemeral volume controller names the claim after the pod and the volume.
            (format!("{}-{}", pod.name(), volume.name), true)
        } else {
            continue;
        };
        let Some(claim) = snapshot.pvcs.get(&format!("{}/{name}", pod.namespace())) else {
            return Err(if ephemeral {
                format!(
                    "waiting for ephemeral volume controller to create the persistentvolumeclaim \"{name}\""
                )
            } else {
                format!("persistentvolumeclaim \"{name}\" not found")
            });
        };
        if claim.status.as_ref().and_then(|status| status.phase.as_deref()) == Some("Lost") {
            let volume_name = claim.spec.as_ref().and_then(|spec| spec.volume_name.as_deref());
            return Err(format!(
                "persistentvolumeclaim \"{name}\" bound to non-existent persistentvolume \"{}\"",
                volume_name.unwrap_or_default()
            ));
        }
        if claim.metadata.deletion_timestamp.is_some() {
            return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
        }
        // A claim of that name that the pod does not control is someone else's, not the
        // pod's ephemeral volume.
        if ephemeral && !controlled_by(claim, &pod.pod) {
            return Err(format!(
                "PVC {}/{name} was not created for pod {} (pod is not owner)",
                pod.namespace(),
                pod.key()
            ));
        }
        claims.push(Arc::clone(claim));
    }
    Ok(claims)
}

/// Whether `pod` is the claim's controlling owner.
fn controlled_by(claim: &PersistentVolumeClaim, pod: &Pod) -> bool {
    let pod_uid = pod.metadata.uid.as_deref().unwrap_or_default();
    claim
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|owner| owner.controller == Some(true))
        .is_some_and(|owner| owner.uid == pod_uid)
}

/// Whether every waiting claim can be satisfied on `node`: claims already given a node for
/// provisioning must have been given this one; the others need a matching available volume
/// (each volume serving one claim), and those without one need a class that provisions for
/// this node.
fn waiting_claims_fit(waiting: &[WaitingClaim], node: &Node) -> bool {
    let node_name = node.metadata.name.as_deref().unwrap_or_default();
    let mut to_provision = Vec::new();
    let mut to_match = Vec::new();
    for claim in waiting {
        let annotations = claim.claim.metadata.annotations.as_ref();
        match annotations.and_then(|annotations| annotations.get(ANNOTATION_SELECTED_NODE)) {
            Some(selected) if selected != node_name => return false,
            Some(_) => to_provision.push(claim),
            None => to_match.push(claim),
        }
    }
    let mut chosen: HashSet<&str> = HashSet::new();
    for claim in to_match {
        match matching_volume(claim, node, &chosen) {
            Some(volume) => {
                chosen.insert(volume.metadata.name.as_deref().unwrap_or_default());
            }
            None => to_provision.push(claim),
        }
    }
    to_provision.iter().all(|claim| provisionable(&claim.class, node))
}

/// The volume the claim would be bound to on `node` (upstream's `FindMatchingVolume` on the
/// scheduler's path): a volume already reserved for the claim if it is reachable (and nothing
/// if it is not), else the smallest available, reachable volume that is large enough, of the
/// same mode, matches the claim's selector and offers its access modes.
fn matching_volume<'a>(
    waiting: &'a WaitingClaim,
    node: &Node,
    chosen: &HashSet<&str>,
) -> Option<&'a Arc<PersistentVolume>> {
    let claim = &waiting.claim;
    let spec = claim.spec.as_ref();
    let requested = storage(requests(claim));
    // An unparseable selector matches no volume (upstream fails the node with an error).
    let selector = spec.and_then(|spec| spec.selector.as_ref()).map(|s| label_selector(Some(s)));
    let claim_mode = spec.and_then(|spec| spec.volume_mode.as_deref()).unwrap_or("Filesystem");
    let claim_access = spec.and_then(|spec| spec.access_modes.as_deref()).unwrap_or_default();
    let mut best: Option<(&Arc<PersistentVolume>, i128)> = None;
    for volume in &waiting.candidates {
        let name = volume.metadata.name.as_deref().unwrap_or_default();
        let volume_spec = volume.spec.as_ref();
        let claim_ref = volume_spec.and_then(|spec| spec.claim_ref.as_ref());
        let reserved = claim_ref.is_some_and(|reference| {
            reference.name.as_deref() == claim.metadata.name.as_deref()
                && reference.namespace.as_deref() == claim.metadata.namespace.as_deref()
                && reference
                    .uid
                    .as_deref()
                    .is_none_or(|uid| uid.is_empty() || Some(uid) == claim.metadata.uid.as_deref())
        });
        if chosen.contains(name) || (claim_ref.is_some() && !reserved) {
            continue;
        }
        let capacity = storage(volume_spec.and_then(|spec| spec.capacity.as_ref()));
        let volume_mode =
            volume_spec.and_then(|spec| spec.volume_mode.as_deref()).unwrap_or("Filesystem");
        if capacity < requested
            || volume_mode != claim_mode
            || volume.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let reachable = volume_reachable(volume, node);
        if reserved {
            return reachable.then_some(volume);
        }
        let available =
            volume.status.as_ref().and_then(|status| status.phase.as_deref()) == Some("Available");
        let selected = selector.as_ref().is_none_or(|selector| {
            let empty = BTreeMap::new();
            let labels = volume.metadata.labels.as_ref().unwrap_or(&empty);
            selector.as_ref().is_some_and(|selector| selector.matches(labels))
        });
        let volume_access =
            volume_spec.and_then(|spec| spec.access_modes.as_deref()).unwrap_or_default();
        let offers_access = claim_access.iter().all(|mode| volume_access.contains(mode));
        if !(available && selected && reachable && offers_access) {
            continue;
        }
        if best.is_none_or(|(_, smallest)| capacity < smallest) {
            best = Some((volume, capacity));
        }
    }
    best.map(|(volume, _)| volume)
}

/// Whether the class can provision a volume that `node` reaches: it has a provisioner, and its
/// allowed topologies (if any) admit the node's labels.
fn provisionable(class: &StorageClass, node: &Node) -> bool {
    if class.provisioner.is_empty() || class.provisioner == NO_PROVISIONER {
        return false;
    }
    let Some(terms) = class.allowed_topologies.as_deref().filter(|terms| !terms.is_empty()) else {
        return true;
    };
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    terms.iter().any(|term| {
        let requirements = term.match_label_expressions.as_deref().unwrap_or_default();
        // An empty term admits nothing.
        !requirements.is_empty()
            && requirements.iter().all(|requirement| {
                labels.get(&requirement.key).is_some_and(|value| requirement.values.contains(value))
            })
    })
}

/// Whether `node` satisfies the volume's required node affinity (a volume without one is
/// reachable everywhere).
fn volume_reachable(volume: &PersistentVolume, node: &Node) -> bool {
    let required = volume
        .spec
        .as_ref()
        .and_then(|spec| spec.node_affinity.as_ref())
        .and_then(|affinity| affinity.required.as_ref());
    required.is_none_or(|selector| node_selector_matches(selector, node))
}

/// The claim's class: the beta annotation if present, else `storageClassName` ("" for none).
fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    let annotation =
        claim.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_STORAGE_CLASS));
    annotation
        .map(String::as_str)
        .or_else(|| claim.spec.as_ref().and_then(|spec| spec.storage_class_name.as_deref()))
        .unwrap_or_default()
}

/// The volume's class, read like a claim's.
fn volume_class(volume: &PersistentVolume) -> &str {
    let annotation =
        volume.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_STORAGE_CLASS));
    annotation
        .map(String::as_str)
        .or_else(|| volume.spec.as_ref().and_then(|spec| spec.storage_class_name.as_deref()))
        .unwrap_or_default()
}

fn requests(claim: &PersistentVolumeClaim) -> Option<&BTreeMap<String, ApiQuantity>> {
    claim.spec.as_ref()?.resources.as_ref()?.requests.as_ref()
}

/// The `storage` amount of a resource list, in nano-units; missing or unparseable (refused by
/// validation already) counts as zero.
fn storage(list: Option<&BTreeMap<String, ApiQuantity>>) -> i128 {
    list.and_then(|list| list.get("storage"))
        .and_then(|quantity| Quantity::parse(&quantity.0).ok())
        .map_or(0, |quantity| quantity.nano_value())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testing::{node, node_info, pod_info, snapshot};
    use serde_json::{Value, json};

    /// The cluster every case runs in: nodes `n1` (zone a) and `n2` (zone b), the classes,
    /// volumes and claims below.
    fn cluster() -> Snapshot {
        let nodes = ["a", "b"]
            .iter()
            .enumerate()
            .map(|(i, zone)| {
                let labels = json!({"zone": zone});
                node_info(
                    node(json!({"metadata": {"name": format!("n{}", i + 1), "labels": labels}})),
                    Vec::new(),
                )
            })
            .collect();
        let mut snapshot = snapshot(nodes);
        let classes = [
            class("local", "WaitForFirstConsumer", NO_PROVISIONER, json!(null)),
            class("fast", "Immediate", "csi.example.com", json!(null)),
            class(
                "zonal",
                "WaitForFirstConsumer",
                "csi.example.com",
                json!([{"matchLabelExpressions": [{"key": "zone", "values": ["a"]}]}]),
            ),
            class("anywhere", "WaitForFirstConsumer", "csi.example.com", json!(null)),
        ];
        for class in classes {
            let class: StorageClass = serde_json::from_value(class).unwrap();
            snapshot.storage_classes.insert(class.metadata.name.clone().unwrap(), Arc::new(class));
        }
        let volumes = [
            volume("pv-a", "local", "10Gi", "a", json!({"phase": "Available"}), json!(null)),
            volume("pv-b", "local", "5Gi", "b", json!({"phase": "Available"}), json!(null)),
            volume("pv-b-big", "local", "50Gi", "b", json!({"phase": "Released"}), json!(null)),
            volume(
                "pv-b-taken",
                "local",
                "50Gi",
                "b",
                json!({"phase": "Bound"}),
                json!({"name": "other", "namespace": "default"}),
            ),
            volume(
                "pv-reserved",
                "local",
                "1Gi",
                "a",
                json!({"phase": "Bound"}),
                json!({"name": "reserved", "namespace": "default"}),
            ),
            volume("pv-bound", "", "1Gi", "a", json!({"phase": "Bound"}), json!(null)),
        ];
        for volume in volumes {
            let volume: PersistentVolume = serde_json::from_value(volume).unwrap();
            snapshot.pvs.insert(volume.metadata.name.clone().unwrap(), Arc::new(volume));
        }
        let deleted = json!({"deletionTimestamp": "2025-01-01T00:00:00Z"});
        let owned = json!({"ownerReferences":
            [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "p", "controller": true}]});
        let foreign = json!({"ownerReferences":
            [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "old", "controller": true}]});
        let selected_n1 = json!({"annotations": {"volume.kubernetes.io/selected-node": "n1"}});
        let claims = [
            claim("bound", json!({}), json!({"volumeName": "pv-bound"}), json!({})),
            claim("dangling", json!({}), json!({"volumeName": "pv-gone"}), json!({})),
            claim("lost", json!({}), json!({"volumeName": "pv-gone"}), json!({"phase": "Lost"})),
            claim("deleted", deleted, json!({"volumeName": "pv-bound"}), json!({})),
            claim("p-scratch", owned, json!({"volumeName": "pv-bound"}), json!({})),
            claim("p-stolen", foreign, json!({"volumeName": "pv-bound"}), json!({})),
            claim("local-8", json!({}), wanting("local", "8Gi", "ReadWriteOnce"), json!({})),
            claim("local-4", json!({}), wanting("local", "4Gi", "ReadWriteOnce"), json!({})),
            claim("local-4b", json!({}), wanting("local", "4Gi", "ReadWriteOnce"), json!({})),
            claim("local-rwx", json!({}), wanting("local", "1Gi", "ReadWriteMany"), json!({})),
            claim("reserved", json!({}), wanting("local", "1Gi", "ReadWriteOnce"), json!({})),
            claim("immediate", json!({}), wanting("fast", "1Gi", "ReadWriteOnce"), json!({})),
            claim("classless", json!({}), json!({"resources": {}}), json!({})),
            claim("unknown-class", json!({}), wanting("nope", "1Gi", "ReadWriteOnce"), json!({})),
            claim("zonal", json!({}), wanting("zonal", "1Gi", "ReadWriteOnce"), json!({})),
            claim("anywhere", json!({}), wanting("anywhere", "1Gi", "ReadWriteOnce"), json!({})),
            claim("picked", selected_n1, wanting("anywhere", "1Gi", "ReadWriteOnce"), json!({})),
        ];
        for claim in claims {
            let claim: PersistentVolumeClaim = serde_json::from_value(claim).unwrap();
            snapshot.pvcs.insert(
                format!("default/{}", claim.metadata.name.clone().unwrap()),
                Arc::new(claim),
            );
        }
        snapshot
    }

    fn class(name: &str, mode: &str, provisioner: &str, topologies: Value) -> Value {
        json!({"metadata": {"name": name}, "provisioner": provisioner,
            "volumeBindingMode": mode, "allowedTopologies": topologies})
    }

    fn volume(
        name: &str,
        class: &str,
        capacity: &str,
        zone: &str,
        status: Value,
        claim_ref: Value,
    ) -> Value {
        json!({"metadata": {"name": name}, "spec": {
            "storageClassName": class, "capacity": {"storage": capacity},
            "accessModes": ["ReadWriteOnce"], "claimRef": claim_ref,
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions":
                [{"key": "zone", "operator": "In", "values": [zone]}]}]}}},
            "status": status})
    }

    fn claim(name: &str, metadata: Value, spec: Value, status: Value) -> Value {
        let mut value = json!({"metadata": metadata, "spec": spec, "status": status});
        value["metadata"]["name"] = json!(name);
        value["metadata"]["namespace"] = json!("default");
        value
    }

    fn wanting(class: &str, size: &str, access: &str) -> Value {
        json!({"storageClassName": class, "accessModes": [access],
            "resources": {"requests": {"storage": size}}})
    }

    /// Pod volumes using these claims (`eph:NAME` for a generic ephemeral volume `NAME`).
    fn volumes(claims: &[&str]) -> Value {
        claims
            .iter()
            .enumerate()
            .map(|(i, claim)| match claim.strip_prefix("eph:") {
                Some(volume) => json!({"name": volume, "ephemeral":
                    {"volumeClaimTemplate": {"spec": {}}}}),
                None => json!({"name": format!("v{i}"),
                    "persistentVolumeClaim": {"claimName": claim}}),
            })
            .collect()
    }

    /// The plugin's verdict on node `node_name` for a pod using `claims`: the pre-filter's
    /// answer when it is not a plain success (a skip included), else the filter's.
    fn check(claims: &[&str], node_name: &str, expected: Status) {
        let snapshot = cluster();
        let pod =
            pod_info(json!({"metadata": {"name": "p"}, "spec": {"volumes": volumes(claims)}}));
        let plugin = VolumeBinding;
        let mut state = CycleState::default();
        let mut status = plugin.pre_filter(&mut state, &pod, &snapshot);
        if status.code == Code::Success {
            let node = snapshot.node(node_name).unwrap();
            status = plugin.filter(&state, &pod, node);
        }
        assert_eq!(status, expected, "claims {claims:?} on {node_name}");
    }

    fn unresolvable(reasons: &[&str]) -> Status {
        Status {
            code: Code::UnschedulableAndUnresolvable,
            reasons: reasons.iter().map(|reason| reason.to_string()).collect(),
            plugin: "",
        }
    }

    #[test]
    fn pre_filter_verdicts() {
        check(&[], "n1", Status::skip());
        check(&["missing"], "n1", unresolvable(&["persistentvolumeclaim \"missing\" not found"]));
        check(
            &["eph:cache"],
            "n1",
            unresolvable(&[
                "waiting for ephemeral volume controller to create the persistentvolumeclaim \"p-cache\"",
            ]),
        );
        check(
            &["lost"],
            "n1",
            unresolvable(&[
                "persistentvolumeclaim \"lost\" bound to non-existent persistentvolume \"pv-gone\"",
            ]),
        );
        check(
            &["deleted"],
            "n1",
            unresolvable(&["persistentvolumeclaim \"deleted\" is being deleted"]),
        );
        check(
            &["eph:stolen"],
            "n1",
            unresolvable(&[
                "PVC default/p-stolen was not created for pod default/p (pod is not owner)",
            ]),
        );
        // The first claim that is in the way is reported.
        check(
            &["bound", "missing", "deleted"],
            "n1",
            unresolvable(&["persistentvolumeclaim \"missing\" not found"]),
        );
        for immediate in ["immediate", "classless", "unknown-class"] {
            check(&[immediate], "n1", unresolvable(&[REASON_UNBOUND_IMMEDIATE]));
        }
    }

    #[test]
    fn pods_without_claims_skip() {
        let snapshot = cluster();
        let pod = pod_info(json!({"metadata": {"name": "p"},
            "spec": {"volumes": [{"name": "tmp", "emptyDir": {}}]}}));
        let status = VolumeBinding.pre_filter(&mut CycleState::default(), &pod, &snapshot);
        assert_eq!(status, Status::skip());
    }

    #[test]
    fn bound_claims() {
        check(&["bound"], "n1", Status::success());
        check(&["bound"], "n2", unresolvable(&[REASON_NODE_CONFLICT]));
        check(&["eph:scratch"], "n1", Status::success());
        check(&["eph:scratch"], "n2", unresolvable(&[REASON_NODE_CONFLICT]));
        check(&["dangling"], "n1", unresolvable(&[REASON_PV_NOT_EXIST]));
        // Bound and waiting claims are judged separately, each adding its reason.
        check(
            &["bound", "local-8"],
            "n2",
            unresolvable(&[REASON_NODE_CONFLICT, REASON_BIND_CONFLICT]),
        );
    }

    #[test]
    fn waiting_claims() {
        // 8Gi fits pv-a (10Gi, zone a) only: pv-b is too small, pv-b-big is released and
        // pv-b-taken belongs to another claim.
        check(&["local-8"], "n1", Status::success());
        check(&["local-8"], "n2", unresolvable(&[REASON_BIND_CONFLICT]));
        check(&["local-4"], "n2", Status::success());
        // Each volume serves one claim; the class cannot provision a second.
        check(&["local-4", "local-4b"], "n1", unresolvable(&[REASON_BIND_CONFLICT]));
        check(&["local-4", "local-8"], "n1", unresolvable(&[REASON_BIND_CONFLICT]));
        check(&["local-4", "bound"], "n1", Status::success());
        // No volume offers ReadWriteMany.
        check(&["local-rwx"], "n1", unresolvable(&[REASON_BIND_CONFLICT]));
        // A volume reserved for the claim is taken whatever its phase, where reachable.
        check(&["reserved"], "n1", Status::success());
        check(&["reserved"], "n2", unresolvable(&[REASON_BIND_CONFLICT]));
    }

    #[test]
    fn dynamic_provisioning() {
        check(&["zonal"], "n1", Status::success());
        check(&["zonal"], "n2", unresolvable(&[REASON_BIND_CONFLICT]));
        check(&["anywhere"], "n2", Status::success());
        // Once a node is selected for provisioning, only that node will do.
        check(&["picked"], "n1", Status::success());
        check(&["picked"], "n2", unresolvable(&[REASON_BIND_CONFLICT]));
    }

    #[test]
    fn registration() {
        let plugin = VolumeBinding;
        assert!(plugin.filters() && !plugin.scores());
        assert_eq!(
            plugin.events(),
            &[
                ClusterEvent::NodeAdd,
                ClusterEvent::NodeUpdate,
                ClusterEvent::PvcChange,
                ClusterEvent::PvChange,
                ClusterEvent::StorageClassChange,
            ]
        );
    }
}
