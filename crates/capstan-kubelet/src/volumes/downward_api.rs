//! The downward API: a pod's own fields (`fieldRef`) and its containers' resources
//! (`resourceFieldRef`) as text, for downwardAPI volumes and for environment variables. The
//! wording of values and errors follows upstream's `pkg/fieldpath` and
//! `pkg/api/v1/resource`.

use super::PodContext;
use capstan_api::Quantity;
use k8s_openapi::api::core::v1::{Container, ObjectFieldSelector, Pod, ResourceFieldSelector};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A field or resource the downward API cannot give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownwardApiError {
    #[error("unsupported pod version: {0}")]
    Version(String),
    #[error("field label not supported: {0}")]
    FieldNotSupported(String),
    #[error("field label does not support subscript: {0}")]
    NoSubscript(String),
    #[error("unsupported fieldPath: {0}")]
    UnsupportedFieldPath(String),
    #[error("unsupported container resource : {0}")]
    UnsupportedResource(String),
    #[error("container {0} not found")]
    ContainerNotFound(String),
    #[error("invalid quantity {quantity:?} for {resource}: {error}")]
    Quantity { resource: String, quantity: String, error: capstan_api::QuantityError },
    #[error("the node's IP address is not known yet")]
    HostIpUnknown,
}

/// The value of a `fieldRef` in a container's environment: the pod's metadata, plus the
/// fields only the kubelet knows (node name, pod and host IPs).
pub fn env_field_value(
    pod: &Pod,
    selector: &ObjectFieldSelector,
    context: &PodContext,
) -> Result<String, DownwardApiError> {
    let path = checked_field_path(selector)?;
    let spec = pod.spec.as_ref();
    let pod_ips: Vec<&str> = if context.pod_ips.is_empty() {
        context.pod_ip.iter().map(String::as_str).collect()
    } else {
        context.pod_ips.iter().map(String::as_str).collect()
    };
    match path.as_str() {
        "spec.nodeName" => Ok(spec.and_then(|s| s.node_name.clone()).unwrap_or_default()),
        "spec.serviceAccountName" => {
            Ok(spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default())
        }
        "status.hostIP" | "status.hostIPs" => {
            context.host_ip.clone().ok_or(DownwardApiError::HostIpUnknown)
        }
        "status.podIP" => Ok(pod_ips.first().map(|ip| ip.to_string()).unwrap_or_default()),
        "status.podIPs" => Ok(pod_ips.join(",")),
        _ => metadata_field_value(pod, &path),
    }
}

/// The field path of a selector after upstream's checks of its API version and of the paths
/// a pod offers (`spec.host` is the old name of `spec.nodeName`).
fn checked_field_path(selector: &ObjectFieldSelector) -> Result<String, DownwardApiError> {
    let version = selector.api_version.as_deref().unwrap_or("v1");
    if !version.is_empty() && version != "v1" {
        return Err(DownwardApiError::Version(version.to_owned()));
    }
    let path = selector.field_path.as_str();
    if let Some((base, _)) = split_subscript(path) {
        return match base {
            "metadata.annotations" | "metadata.labels" => Ok(path.to_owned()),
            _ => Err(DownwardApiError::NoSubscript(path.to_owned())),
        };
    }
    match path {
        "metadata.annotations"
        | "metadata.labels"
        | "metadata.name"
        | "metadata.namespace"
        | "metadata.uid"
        | "spec.nodeName"
        | "spec.restartPolicy"
        | "spec.serviceAccountName"
        | "spec.schedulerName"
        | "status.phase"
        | "status.hostIP"
        | "status.hostIPs"
        | "status.podIP"
        | "status.podIPs" => Ok(path.to_owned()),
        "spec.host" => Ok("spec.nodeName".to_owned()),
        _ => Err(DownwardApiError::FieldNotSupported(path.to_owned())),
    }
}

/// The value of a metadata field path, as downwardAPI volumes write it: names and uid as
/// they are, label and annotation maps as sorted `key="value"` lines, one label or annotation
/// by subscript (`metadata.labels['app']`, empty when absent).
pub fn metadata_field_value(pod: &Pod, path: &str) -> Result<String, DownwardApiError> {
    let metadata = &pod.metadata;
    let empty = BTreeMap::new();
    let labels = metadata.labels.as_ref().unwrap_or(&empty);
    let annotations = metadata.annotations.as_ref().unwrap_or(&empty);
    if let Some((base, key)) = split_subscript(path) {
        return match base {
            "metadata.annotations" => Ok(annotations.get(key).cloned().unwrap_or_default()),
            "metadata.labels" => Ok(labels.get(key).cloned().unwrap_or_default()),
            _ => Err(DownwardApiError::NoSubscript(path.to_owned())),
        };
    }
    match path {
        "metadata.annotations" => Ok(format_map(annotations)),
        "metadata.labels" => Ok(format_map(labels)),
        "metadata.name" => Ok(metadata.name.clone().unwrap_or_default()),
        "metadata.namespace" => Ok(metadata.namespace.clone().unwrap_or_default()),
        "metadata.uid" => Ok(metadata.uid.clone().unwrap_or_default()),
        _ => Err(DownwardApiError::UnsupportedFieldPath(path.to_owned())),
    }
}

/// `metadata.labels['key']` → (`metadata.labels`, `key`).
fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let (base, key) = inner.split_once("['")?;
    Some((base, key))
}

/// Labels or annotations as upstream's `fieldpath.FormatMap`: one `key="value"` line per
/// entry, sorted by key, the value quoted as Go's `%q` does, no newline after the last.
pub fn format_map(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(key, value)| format!("{key}={}", go_quote(value)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A string quoted the way Go's `strconv.Quote` does for the common cases: backslash escapes
/// for quotes, backslashes and control characters.
fn go_quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\u{7}' => quoted.push_str("\\a"),
            '\u{8}' => quoted.push_str("\\b"),
            '\u{c}' => quoted.push_str("\\f"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            '\u{b}' => quoted.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(quoted, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(quoted, "\\u{:04x}", c as u32);
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// The value of a `resourceFieldRef`: the named container's (or `default_container`'s, when
/// the selector names none) request or limit, divided by the divisor and rounded up. A limit
/// the container does not set is the node's allocatable amount, as upstream defaults it.
pub fn resource_value(
    pod: &Pod,
    default_container: Option<&Container>,
    selector: &ResourceFieldSelector,
    context: &PodContext,
) -> Result<String, DownwardApiError> {
    let container = match selector.container_name.as_deref().filter(|name| !name.is_empty()) {
        Some(name) => find_container(pod, name)
            .ok_or_else(|| DownwardApiError::ContainerNotFound(name.to_owned()))?,
        None => {
            default_container.ok_or_else(|| DownwardApiError::ContainerNotFound(String::new()))?
        }
    };
    let resource = selector.resource.as_str();
    let parse = |text: &str| {
        Quantity::parse(text).map_err(|error| DownwardApiError::Quantity {
            resource: resource.to_owned(),
            quantity: text.to_owned(),
            error,
        })
    };
    let divisor = match &selector.divisor {
        Some(divisor) => parse(&divisor.0)?,
        None => Quantity::from_units(1, capstan_api::Format::DecimalSi),
    };
    let divisor = if divisor.is_zero() {
        Quantity::from_units(1, capstan_api::Format::DecimalSi)
    } else {
        divisor
    };
    let (kind, name) = resource
        .split_once('.')
        .filter(|(kind, _)| *kind == "limits" || *kind == "requests")
        .ok_or_else(|| DownwardApiError::UnsupportedResource(resource.to_owned()))?;
    let resources = container.resources.as_ref();
    let amounts = resources
        .and_then(|r| if kind == "limits" { r.limits.as_ref() } else { r.requests.as_ref() });
    let amount = match amounts.and_then(|a| a.get(name)) {
        Some(amount) => parse(&amount.0)?,
        None if kind == "limits" && name == "cpu" => {
            Quantity::from_millis(context.node_allocatable_cpu_millis)
        }
        None if kind == "limits" && name == "memory" => Quantity::from_units(
            context.node_allocatable_memory_bytes,
            capstan_api::Format::BinarySi,
        ),
        None => Quantity::from_units(0, capstan_api::Format::DecimalSi),
    };
    let value = match name {
        "cpu" => ceil_div(i128::from(amount.milli_value()), i128::from(divisor.milli_value())),
        "memory" | "ephemeral-storage" => {
            ceil_div(i128::from(amount.value()), i128::from(divisor.value()))
        }
        name if name.starts_with("hugepages-") => {
            ceil_div(i128::from(amount.value()), i128::from(divisor.value()))
        }
        _ => return Err(DownwardApiError::UnsupportedResource(resource.to_owned())),
    };
    Ok(value.to_string())
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|container| container.name == name)
}

/// `numerator / denominator` rounded towards positive infinity, as upstream's
/// `math.Ceil(float64(a) / float64(b))`; a zero denominator counts as one.
fn ceil_div(numerator: i128, denominator: i128) -> i128 {
    let denominator = if denominator == 0 { 1 } else { denominator };
    let quotient = numerator / denominator;
    let remainder = numerator % denominator;
    if remainder != 0 && ((remainder > 0) == (denominator > 0)) { quotient + 1 } else { quotient }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn context() -> PodContext {
        PodContext {
            pod_ip: Some("10.42.0.7".into()),
            pod_ips: vec!["10.42.0.7".into(), "fd00::7".into()],
            host_ip: Some("192.168.1.10".into()),
            node_allocatable_cpu_millis: 4000,
            node_allocatable_memory_bytes: 8 << 30,
        }
    }

    fn pod() -> Pod {
        let container = Container {
            name: "app".into(),
            resources: Some(ResourceRequirements {
                limits: Some([("memory".to_owned(), K8sQuantity("64Mi".into()))].into()),
                requests: Some([("cpu".to_owned(), K8sQuantity("250m".into()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("shop".into()),
                uid: Some("u-1".into()),
                labels: Some(
                    [
                        ("app".to_owned(), "web".to_owned()),
                        ("tier".to_owned(), "a\"b\n".to_owned()),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![container],
                node_name: Some("node-1".into()),
                service_account_name: Some("builder".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn field(path: &str) -> Result<String, DownwardApiError> {
        let selector = ObjectFieldSelector { field_path: path.into(), api_version: None };
        env_field_value(&pod(), &selector, &context())
    }

    #[test]
    fn fields() {
        let cases = [
            ("metadata.name", Ok("web")),
            ("metadata.namespace", Ok("shop")),
            ("metadata.uid", Ok("u-1")),
            ("metadata.labels['app']", Ok("web")),
            ("metadata.labels['absent']", Ok("")),
            ("metadata.labels", Ok("app=\"web\"\ntier=\"a\\\"b\\n\"")),
            ("metadata.annotations", Ok("")),
            ("spec.nodeName", Ok("node-1")),
            ("spec.host", Ok("node-1")),
            ("spec.serviceAccountName", Ok("builder")),
            ("status.hostIP", Ok("192.168.1.10")),
            ("status.podIP", Ok("10.42.0.7")),
            ("status.podIPs", Ok("10.42.0.7,fd00::7")),
            ("spec.containers", Err("field label not supported: spec.containers")),
            (
                "metadata.name['x']",
                Err("field label does not support subscript: metadata.name['x']"),
            ),
            ("status.phase", Err("unsupported fieldPath: status.phase")),
        ];
        for (path, expected) in cases {
            let actual = field(path).map_err(|e| e.to_string());
            assert_eq!(actual, expected.map(str::to_owned).map_err(str::to_owned), "{path}");
        }
    }

    #[test]
    fn resources() {
        let pod = pod();
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let check = |resource: &str, divisor: Option<&str>, expected: Result<&str, &str>| {
            let selector = ResourceFieldSelector {
                resource: resource.into(),
                divisor: divisor.map(|d| K8sQuantity(d.into())),
                container_name: None,
            };
            let actual = resource_value(&pod, Some(container), &selector, &context())
                .map_err(|e| e.to_string());
            assert_eq!(actual, expected.map(str::to_owned).map_err(str::to_owned), "{resource}");
        };
        check("limits.memory", None, Ok("67108864"));
        check("limits.memory", Some("1Mi"), Ok("64"));
        check("limits.memory", Some("1G"), Ok("1"));
        check("requests.cpu", None, Ok("1"));
        check("requests.cpu", Some("1m"), Ok("250"));
        check("limits.cpu", None, Ok("4"));
        check("limits.cpu", Some("0"), Ok("4"));
        check("requests.memory", None, Ok("0"));
        check("limits.ephemeral-storage", None, Ok("0"));
        check("limits.gpu", None, Err("unsupported container resource : limits.gpu"));
        check("cpu", None, Err("unsupported container resource : cpu"));
        let named = ResourceFieldSelector {
            resource: "limits.cpu".into(),
            divisor: None,
            container_name: Some("other".into()),
        };
        assert_eq!(
            resource_value(&pod, None, &named, &context()).map_err(|e| e.to_string()),
            Err("container other not found".to_owned())
        );
    }

    #[test]
    fn rounding_up() {
        assert_eq!(ceil_div(7, 2), 4);
        assert_eq!(ceil_div(6, 2), 3);
        assert_eq!(ceil_div(0, 5), 0);
        assert_eq!(ceil_div(-7, 2), -3);
    }
}
