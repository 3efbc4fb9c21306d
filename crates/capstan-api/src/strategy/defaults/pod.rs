//! Defaults of pods and pod templates: `SetDefaults_PodSpec`, `SetDefaults_Pod` (pods only),
//! containers, probes, handlers, volumes, ports and downward-API references, as
//! `pkg/apis/core/v1/defaults.go` and the declarative `+default` markers fill them.

use super::super::access::{self, default_unset, default_zero, each_mut};
use crate::Quantity;
use serde_json::{Map, Value, json};

/// Whether a pod spec is a Pod's own or a template's: some defaults only materialise on Pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpecOwner {
    Pod,
    Template,
}

/// Fills the defaults of a pod spec.
pub(crate) fn pod_spec(spec: &mut Map<String, Value>, owner: SpecOwner) {
    default_zero(spec, "dnsPolicy", json!("ClusterFirst"));
    default_zero(spec, "restartPolicy", json!("Always"));
    default_unset(spec, "securityContext", json!({}));
    default_unset(spec, "terminationGracePeriodSeconds", json!(30));
    default_zero(spec, "schedulerName", json!("default-scheduler"));
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        for container in each_mut(spec, key) {
            self::container(container);
        }
    }
    for volume in each_mut(spec, "volumes") {
        self::volume(volume);
    }
    if owner == SpecOwner::Pod {
        pod_only(spec);
    }
}

/// What `SetDefaults_Pod` adds to a Pod and never to a template.
fn pod_only(spec: &mut Map<String, Value>) {
    for key in ["initContainers", "containers"] {
        for container in each_mut(spec, key) {
            requests_from_limits(container);
        }
    }
    default_unset(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for key in ["initContainers", "containers"] {
            for container in each_mut(spec, key) {
                for port in each_mut(container, "ports") {
                    if access::is_zero(port, "hostPort") {
                        let container_port = port.get("containerPort").cloned();
                        if let Some(value) = container_port {
                            port.insert("hostPort".to_owned(), value);
                        }
                    }
                }
            }
        }
    }
}

/// A limit without a request makes the request equal to it.
fn requests_from_limits(container: &mut Map<String, Value>) {
    let Some(resources) = container.get_mut("resources").and_then(Value::as_object_mut) else {
        return;
    };
    let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    let requests = resources.entry("requests").or_insert_with(|| json!({}));
    if requests.is_null() {
        *requests = json!({});
    }
    if let Some(requests) = requests.as_object_mut() {
        for (name, amount) in limits {
            requests.entry(name).or_insert(amount);
        }
    }
}

fn container(container: &mut Map<String, Value>) {
    if access::is_zero(container, "imagePullPolicy") {
        let image = container.get("image").and_then(Value::as_str).unwrap_or("");
        let policy = if image_tag(image) == "latest" { "Always" } else { "IfNotPresent" };
        container.insert("imagePullPolicy".to_owned(), json!(policy));
    }
    default_zero(container, "terminationMessagePath", json!("/dev/termination-log"));
    default_zero(container, "terminationMessagePolicy", json!("File"));
    // `resources` is a struct, not a pointer, in Go: it is always serialised.
    default_unset(container, "resources", json!({}));
    if let Some(resources) = container.get_mut("resources").and_then(Value::as_object_mut) {
        for key in ["limits", "requests"] {
            if let Some(list) = resources.get_mut(key).and_then(Value::as_object_mut) {
                round_up_to_millis(list);
            }
        }
    }
    for port in each_mut(container, "ports") {
        default_zero(port, "protocol", json!("TCP"));
    }
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = container.get_mut(key).and_then(Value::as_object_mut) {
            self::probe(probe);
        }
    }
    if let Some(lifecycle) = container.get_mut("lifecycle").and_then(Value::as_object_mut) {
        for key in ["postStart", "preStop"] {
            if let Some(handler) = lifecycle.get_mut(key).and_then(Value::as_object_mut) {
                http_get(handler);
            }
        }
    }
    for variable in each_mut(container, "env") {
        if let Some(field_ref) = access::existing_mut_in(variable, &["valueFrom", "fieldRef"]) {
            default_zero(field_ref, "apiVersion", json!("v1"));
        }
    }
}

/// The tag of an image reference, `latest` when it names neither a tag nor a digest, as
/// upstream's `parsers.ParseImageName` reads it.
pub(crate) fn image_tag(image: &str) -> &str {
    if image.is_empty() {
        return "";
    }
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    let last_segment = name.rsplit('/').next().unwrap_or(name);
    match last_segment.split_once(':') {
        Some((_, tag)) => tag,
        None if digest.is_some() => "",
        None => "latest",
    }
}

/// Quantities are rounded up to thousandths and written in canonical form, as decoding a
/// `ResourceList` does upstream (`SetDefaults_ResourceList`, then serialisation).
pub(crate) fn round_up_to_millis(list: &mut Map<String, Value>) {
    for amount in list.values_mut() {
        let Some(text) = amount.as_str() else { continue };
        let Ok(quantity) = Quantity::parse(text) else { continue };
        let nanos = quantity.nano_value();
        let rounded = if nanos % 1_000_000 == 0 {
            quantity
        } else {
            let millis = nanos.div_euclid(1_000_000) + 1;
            Quantity::from_millis(i64::try_from(millis).unwrap_or(i64::MAX))
        };
        *amount = json!(rounded.to_string());
    }
}

fn probe(probe: &mut Map<String, Value>) {
    default_zero(probe, "timeoutSeconds", json!(1));
    default_zero(probe, "periodSeconds", json!(10));
    default_zero(probe, "successThreshold", json!(1));
    default_zero(probe, "failureThreshold", json!(3));
    http_get(probe);
}

/// `SetDefaults_HTTPGetAction` of a probe or lifecycle handler.
fn http_get(handler: &mut Map<String, Value>) {
    if let Some(action) = handler.get_mut("httpGet").and_then(Value::as_object_mut) {
        default_zero(action, "path", json!("/"));
        default_zero(action, "scheme", json!("HTTP"));
    }
}

/// The keys of a volume that name its source (every field of `VolumeSource`).
pub(crate) const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

/// Upstream's file mode default for projected files: 0644.
const DEFAULT_MODE: u32 = 0o644;

fn volume(volume: &mut Map<String, Value>) {
    if !VOLUME_SOURCES.iter().any(|key| !access::is_unset(volume, key)) {
        volume.insert("emptyDir".to_owned(), json!({}));
    }
    for key in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(source) = volume.get_mut(key).and_then(Value::as_object_mut) {
            default_unset(source, "defaultMode", json!(DEFAULT_MODE));
        }
    }
    if let Some(source) = volume.get_mut("downwardAPI").and_then(Value::as_object_mut) {
        downward_api_items(source);
    }
    if let Some(projected) = volume.get_mut("projected").and_then(Value::as_object_mut) {
        for source in each_mut(projected, "sources") {
            if let Some(token) =
                source.get_mut("serviceAccountToken").and_then(Value::as_object_mut)
            {
                default_unset(token, "expirationSeconds", json!(3600));
            }
            if let Some(downward) = source.get_mut("downwardAPI").and_then(Value::as_object_mut) {
                downward_api_items(downward);
            }
        }
    }
    if let Some(host_path) = volume.get_mut("hostPath").and_then(Value::as_object_mut) {
        default_unset(host_path, "type", json!(""));
    }
    if let Some(iscsi) = volume.get_mut("iscsi").and_then(Value::as_object_mut) {
        default_zero(iscsi, "iscsiInterface", json!("default"));
    }
    if let Some(rbd) = volume.get_mut("rbd").and_then(Value::as_object_mut) {
        default_zero(rbd, "pool", json!("rbd"));
        default_zero(rbd, "user", json!("admin"));
        default_zero(rbd, "keyring", json!("/etc/ceph/keyring"));
    }
    if let Some(claim) = access::existing_mut_in(volume, &["ephemeral", "volumeClaimTemplate"])
        && let Some(spec) = claim.get_mut("spec").and_then(Value::as_object_mut)
    {
        default_unset(spec, "volumeMode", json!("Filesystem"));
    }
}

fn downward_api_items(source: &mut Map<String, Value>) {
    for item in each_mut(source, "items") {
        if let Some(field_ref) = item.get_mut("fieldRef").and_then(Value::as_object_mut) {
            default_zero(field_ref, "apiVersion", json!("v1"));
        }
    }
}
