//! The parts of a Service's spec the allocators own, shaped as upstream's service storage
//! shapes them before allocating (`pkg/registry/core/service/storage`): `clusterIP` and
//! `clusterIPs` kept consistent, `ipFamilyPolicy` and `ipFamilies` defaulted and checked
//! against the configured CIDRs, fields of another type dropped on a type change, and the
//! values a Service holds.

use super::ranges::{Family, ServiceNetwork};
use capstan_api::FieldError;
use serde_json::{Map, Value, json};
use std::net::IpAddr;

/// The IPs and node ports a stored Service holds, which no other Service may hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Holdings {
    pub(crate) ips: Vec<IpAddr>,
    pub(crate) ports: Vec<u16>,
}

impl Holdings {
    /// What `service` holds: its cluster IPs (none for ExternalName and headless
    /// Services), its node ports when its type has them, and its health check node port
    /// when it needs one.
    pub(crate) fn of(service: &Value) -> Self {
        let Some(spec) = service.get("spec").and_then(Value::as_object) else {
            return Holdings::default();
        };
        let service_type = text(spec, "type");
        let mut holdings = Holdings::default();
        if service_type != "ExternalName" {
            holdings.ips = cluster_ips(spec).iter().filter_map(|ip| ip.parse().ok()).collect();
        }
        if has_node_ports(service_type) {
            for port in ports(spec) {
                if let Some(node_port) = node_port(port) {
                    push_unique(&mut holdings.ports, node_port);
                }
            }
        }
        if needs_health_check(spec)
            && let Some(port) = number(spec, "healthCheckNodePort")
        {
            push_unique(&mut holdings.ports, port);
        }
        holdings
    }
}

fn push_unique(ports: &mut Vec<u16>, port: u16) {
    if !ports.contains(&port) {
        ports.push(port);
    }
}

pub(crate) fn text<'a>(spec: &'a Map<String, Value>, field: &str) -> &'a str {
    spec.get(field).and_then(Value::as_str).unwrap_or("")
}

/// A positive port number in a field, if any.
fn number(map: &Map<String, Value>, field: &str) -> Option<u16> {
    map.get(field).and_then(Value::as_i64).and_then(|n| u16::try_from(n).ok()).filter(|n| *n > 0)
}

pub(crate) fn node_port(port: &Value) -> Option<u16> {
    port.as_object().and_then(|port| number(port, "nodePort"))
}

pub(crate) fn ports(spec: &Map<String, Value>) -> &[Value] {
    spec.get("ports").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

pub(crate) fn has_node_ports(service_type: &str) -> bool {
    matches!(service_type, "NodePort" | "LoadBalancer")
}

/// Whether new ports get node ports allocated: always for NodePort, for LoadBalancer unless
/// `allocateLoadBalancerNodePorts` is false (requested ones are still honoured).
pub(crate) fn allocates_node_ports(spec: &Map<String, Value>) -> bool {
    match text(spec, "type") {
        "NodePort" => true,
        "LoadBalancer" => {
            spec.get("allocateLoadBalancerNodePorts").and_then(Value::as_bool) != Some(false)
        }
        _ => false,
    }
}

/// upstream's `NeedsHealthCheck`: a LoadBalancer that keeps traffic on local endpoints.
pub(crate) fn needs_health_check(spec: &Map<String, Value>) -> bool {
    text(spec, "type") == "LoadBalancer" && text(spec, "externalTrafficPolicy") == "Local"
}

pub(crate) fn cluster_ips(spec: &Map<String, Value>) -> Vec<String> {
    spec.get("clusterIPs")
        .and_then(Value::as_array)
        .map(|ips| ips.iter().map(|ip| ip.as_str().unwrap_or("").to_owned()).collect())
        .unwrap_or_default()
}

fn families(spec: &Map<String, Value>) -> Vec<String> {
    spec.get("ipFamilies")
        .and_then(Value::as_array)
        .map(|list| list.iter().map(|f| f.as_str().unwrap_or("").to_owned()).collect())
        .unwrap_or_default()
}

fn is_headless(spec: &Map<String, Value>) -> bool {
    text(spec, "clusterIP") == "None"
}

fn selectorless(spec: &Map<String, Value>) -> bool {
    spec.get("selector").and_then(Value::as_object).is_none_or(Map::is_empty)
}

/// `clusterIP` and `clusterIPs` say the same thing: either one given fills the other, as
/// upstream's conversion does; both given must agree on the first address.
pub(crate) fn normalize_cluster_ips(spec: &mut Map<String, Value>) -> Result<(), Box<FieldError>> {
    let single = text(spec, "clusterIP").to_owned();
    let list = cluster_ips(spec);
    match (single.is_empty(), list.first()) {
        (false, None) => {
            spec.insert("clusterIPs".into(), json!([single]));
        }
        (true, Some(first)) => {
            spec.insert("clusterIP".into(), json!(first));
        }
        (false, Some(first)) if *first != single => {
            return Err(Box::new(FieldError::invalid(
                "spec.clusterIPs",
                json!(list),
                "element [0] must match clusterIP",
            )));
        }
        _ => {}
    }
    Ok(())
}

/// upstream's `initIPFamilyFields`: the policy (already defaulted by the strategy), the
/// families inferred from the given IPs, checked against the cluster's, and the cluster's
/// second family added for dual-stack policies. `old` is the stored spec on update.
pub(crate) fn init_ip_families(
    network: &ServiceNetwork,
    spec: &mut Map<String, Value>,
    old: Option<&Map<String, Value>>,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if text(spec, "type") == "ExternalName" {
        return errors;
    }
    // A PreferDualStack Service is not upgraded or downgraded by a change of the cluster:
    // only when its own policy or addresses change.
    if let Some(old) = old
        && text(spec, "ipFamilyPolicy") == "PreferDualStack"
        && text(old, "ipFamilyPolicy") == "PreferDualStack"
        && cluster_ips(spec) == cluster_ips(old)
        && families(spec) == families(old)
    {
        return errors;
    }
    if text(spec, "ipFamilyPolicy").is_empty() {
        let policy = if is_headless(spec) && selectorless(spec) {
            "RequireDualStack"
        } else {
            "SingleStack"
        };
        spec.insert("ipFamilyPolicy".into(), json!(policy));
    }
    let policy = text(spec, "ipFamilyPolicy").to_owned();
    let mut ips = cluster_ips(spec);
    let mut list = families(spec);
    if let Some(old) = old {
        let (old_ips, old_families) = (cluster_ips(old), families(old));
        if policy == "SingleStack" {
            // Asking for single-stack with the addresses unchanged releases the second one.
            if ips == old_ips && ips.len() > 1 {
                ips.truncate(1);
                spec.insert("clusterIPs".into(), json!(ips));
            }
            if list == old_families && list.len() > 1 {
                list.truncate(1);
                spec.insert("ipFamilies".into(), json!(list));
            }
        } else {
            if ips.len() < old_ips.len() {
                errors.push(FieldError::invalid(
                    "spec.ipFamilyPolicy",
                    policy.as_str(),
                    "must be 'SingleStack' to release the secondary cluster IP",
                ));
            }
            if list.len() < old_families.len() {
                errors.push(FieldError::invalid(
                    "spec.ipFamilyPolicy",
                    policy.as_str(),
                    "must be 'SingleStack' to release the secondary IP family",
                ));
            }
        }
    }
    if policy == "SingleStack" {
        if ips.len() == 2 {
            errors.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                policy.as_str(),
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
            ));
        }
        if list.len() == 2 {
            errors.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                policy.as_str(),
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
            ));
        }
    }
    // Families follow the given addresses.
    for (index, ip) in ips.iter().enumerate() {
        if ip == "None" {
            break;
        }
        let Ok(address) = ip.parse::<IpAddr>() else { continue };
        let family = Family::of(address);
        match list.get(index) {
            Some(given) if Family::parse(given).is_some_and(|f| f != family) => {
                errors.push(FieldError::invalid(
                    format!("spec.ipFamilies[{index}]"),
                    given.as_str(),
                    format!("does not match IP family of `clusterIPs[{index}]`"),
                ));
            }
            Some(_) => {}
            None if network.range(family).is_none() => errors.push(FieldError::invalid(
                format!("spec.clusterIPs[{index}]"),
                json!(ips),
                format!("{} is not configured on this cluster", family.name()),
            )),
            None => list.push(family.name().to_owned()),
        }
    }
    if !errors.is_empty() {
        return errors;
    }
    // Headless and selectorless: any families, even ones the cluster does not have.
    if is_headless(spec) && selectorless(spec) {
        if list.is_empty() {
            list.push(network.primary().name().to_owned());
        }
        if list.len() < 2
            && policy != "SingleStack"
            && let Some(first) = list.first().and_then(|f| Family::parse(f))
        {
            list.push(first.other().name().to_owned());
        }
        spec.insert("ipFamilies".into(), json!(list));
        return errors;
    }
    if policy == "RequireDualStack" && !network.dual_stack() {
        errors.push(FieldError::invalid(
            "spec.ipFamilyPolicy",
            policy.as_str(),
            "this cluster is not configured for dual-stack services",
        ));
    }
    for (index, family) in list.iter().enumerate() {
        if Family::parse(family).and_then(|f| network.range(f)).is_none() {
            errors.push(FieldError::invalid(
                format!("spec.ipFamilies[{index}]"),
                family.as_str(),
                "not configured on this cluster",
            ));
        }
    }
    if !errors.is_empty() {
        return errors;
    }
    if list.is_empty() {
        list.push(network.primary().name().to_owned());
    }
    if policy != "SingleStack"
        && list.len() == 1
        && network.dual_stack()
        && let Some(first) = Family::parse(&list[0])
    {
        list.push(first.other().name().to_owned());
    }
    spec.insert("ipFamilies".into(), json!(list));
    errors
}

/// upstream's `dropTypeDependentFields`: on a change of type, the values the old type had
/// and the new one cannot have go, unless the update set them anew (then validation has
/// its say). Without this, `kubectl patch -p '{"spec":{"type":"ClusterIP"}}'` on a
/// NodePort Service would be refused for the node ports it still carries.
pub(crate) fn drop_type_dependent_fields(spec: &mut Map<String, Value>, old: &Map<String, Value>) {
    let new_type = text(spec, "type").to_owned();
    if new_type == text(old, "type") {
        if !needs_health_check(spec)
            && spec.get("healthCheckNodePort") == old.get("healthCheckNodePort")
        {
            spec.remove("healthCheckNodePort");
        }
        return;
    }
    if new_type == "ExternalName" {
        for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if spec.get(field) == old.get(field) {
                spec.remove(field);
            }
        }
    }
    if !has_node_ports(&new_type) {
        let old_ports = ports(old).to_vec();
        for port in spec.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
            let Some(number) = node_port(port) else { continue };
            let carried = old_ports.iter().any(|old| node_port(old) == Some(number));
            if carried && let Some(port) = port.as_object_mut() {
                port.remove("nodePort");
            }
        }
    }
    if !needs_health_check(spec)
        && spec.get("healthCheckNodePort") == old.get("healthCheckNodePort")
    {
        spec.remove("healthCheckNodePort");
    }
    if new_type != "LoadBalancer" {
        for field in ["allocateLoadBalancerNodePorts", "loadBalancerClass"] {
            if spec.get(field) == old.get(field) {
                spec.remove(field);
            }
        }
    }
    let externally_accessible =
        has_node_ports(&new_type) || (new_type == "ClusterIP" && has_external_ips(spec));
    if !externally_accessible
        && spec.get("externalTrafficPolicy") == old.get("externalTrafficPolicy")
    {
        spec.remove("externalTrafficPolicy");
    }
}

fn has_external_ips(spec: &Map<String, Value>) -> bool {
    spec.get("externalIPs").and_then(Value::as_array).is_some_and(|ips| !ips.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(cidrs: &[&str]) -> ServiceNetwork {
        let cidrs: Vec<String> = cidrs.iter().map(|c| (*c).to_owned()).collect();
        ServiceNetwork::new(&cidrs, (30000, 32767)).unwrap()
    }

    fn spec(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    /// The families and policy after `init_ip_families`, or the fields of its errors.
    fn families_of(cidrs: &[&str], input: Value) -> Result<(Value, Value), Vec<String>> {
        let mut spec = spec(input);
        let errors = init_ip_families(&network(cidrs), &mut spec, None);
        if !errors.is_empty() {
            return Err(errors.iter().map(ToString::to_string).collect());
        }
        Ok((spec["ipFamilyPolicy"].clone(), spec["ipFamilies"].clone()))
    }

    #[test]
    fn families_are_defaulted_from_the_cluster() {
        let v4 = ["10.43.0.0/16"];
        let dual = ["10.43.0.0/16", "fd43::/112"];
        let plain = json!({"type": "ClusterIP", "selector": {"a": "b"}});
        assert_eq!(families_of(&v4, plain.clone()), Ok((json!("SingleStack"), json!(["IPv4"]))));
        assert_eq!(
            families_of(&["fd43::/112"], plain.clone()),
            Ok((json!("SingleStack"), json!(["IPv6"])))
        );
        let prefer = json!({"type": "ClusterIP", "ipFamilyPolicy": "PreferDualStack"});
        assert_eq!(
            families_of(&v4, prefer.clone()),
            Ok((json!("PreferDualStack"), json!(["IPv4"])))
        );
        assert_eq!(
            families_of(&dual, prefer),
            Ok((json!("PreferDualStack"), json!(["IPv4", "IPv6"])))
        );
        let require = json!({"type": "ClusterIP", "ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6"]});
        assert_eq!(
            families_of(&dual, require.clone()),
            Ok((json!("RequireDualStack"), json!(["IPv6", "IPv4"])))
        );
        assert_eq!(
            families_of(&v4, require),
            Err(vec![
                "spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services".to_owned(),
                "spec.ipFamilies[0]: Invalid value: \"IPv6\": not configured on this cluster".to_owned(),
            ])
        );
        let given = json!({"type": "ClusterIP", "clusterIP": "fd43::9", "clusterIPs": ["fd43::9"]});
        assert_eq!(families_of(&dual, given.clone()), Ok((json!("SingleStack"), json!(["IPv6"]))));
        assert_eq!(
            families_of(&v4, given),
            Err(vec!["spec.clusterIPs[0]: Invalid value: [\"fd43::9\"]: IPv6 is not configured on this cluster".to_owned()])
        );
        let two = json!({"type": "ClusterIP", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4", "IPv6"]});
        assert!(families_of(&dual, two).is_err());
    }

    #[test]
    fn headless_selectorless_services_may_have_any_families() {
        let headless = json!({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"]});
        assert_eq!(
            families_of(&["10.43.0.0/16"], headless),
            Ok((json!("RequireDualStack"), json!(["IPv4", "IPv6"])))
        );
    }

    #[test]
    fn cluster_ip_and_cluster_ips_agree() {
        let mut one = spec(json!({"clusterIP": "10.43.0.5"}));
        normalize_cluster_ips(&mut one).unwrap();
        assert_eq!(one["clusterIPs"], json!(["10.43.0.5"]));
        let mut list = spec(json!({"clusterIPs": ["10.43.0.5", "fd43::5"]}));
        normalize_cluster_ips(&mut list).unwrap();
        assert_eq!(list["clusterIP"], json!("10.43.0.5"));
        let mut both = spec(json!({"clusterIP": "10.43.0.5", "clusterIPs": ["10.43.0.6"]}));
        assert!(normalize_cluster_ips(&mut both).is_err());
    }

    #[test]
    fn holdings_follow_the_type() {
        let service = |spec: Value| json!({"spec": spec});
        let ports = json!([{"port": 53, "protocol": "TCP", "nodePort": 30053},
                           {"port": 53, "protocol": "UDP", "nodePort": 30053},
                           {"port": 80, "protocol": "TCP", "nodePort": 30080}]);
        let node_port =
            service(json!({"type": "NodePort", "clusterIPs": ["10.43.0.9"], "ports": ports}));
        let held = Holdings::of(&node_port);
        assert_eq!(held.ips, vec!["10.43.0.9".parse::<IpAddr>().unwrap()]);
        assert_eq!(held.ports, vec![30053, 30080]);
        let cluster_ip =
            service(json!({"type": "ClusterIP", "clusterIPs": ["None"], "ports": ports}));
        assert_eq!(Holdings::of(&cluster_ip), Holdings::default());
        let local = service(json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                                   "healthCheckNodePort": 31000, "ports": []}));
        assert_eq!(Holdings::of(&local).ports, vec![31000]);
        let external = service(json!({"type": "ExternalName", "clusterIPs": ["10.43.0.9"]}));
        assert_eq!(Holdings::of(&external), Holdings::default());
    }

    #[test]
    fn a_type_change_drops_what_the_old_type_had() {
        let old = spec(json!({"type": "NodePort", "externalTrafficPolicy": "Cluster",
                              "ports": [{"port": 80, "nodePort": 30080}]}));
        let mut new = old.clone();
        new.insert("type".into(), json!("ClusterIP"));
        drop_type_dependent_fields(&mut new, &old);
        assert_eq!(new["ports"], json!([{"port": 80}]));
        assert!(!new.contains_key("externalTrafficPolicy"));
        let old = spec(
            json!({"type": "ClusterIP", "clusterIP": "10.43.0.5", "clusterIPs": ["10.43.0.5"],
                              "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"}),
        );
        let mut new = old.clone();
        new.insert("type".into(), json!("ExternalName"));
        drop_type_dependent_fields(&mut new, &old);
        assert_eq!(Value::Object(new), json!({"type": "ExternalName"}));
    }
}
