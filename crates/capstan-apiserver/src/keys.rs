//! Where objects live in the datastore: `/<plural>/<namespace>/<name>` for the core group,
//! `/<group>/<plural>/<namespace>/<name>` for the others, without the namespace segment for
//! cluster-scoped kinds. The etcd backend adds its own prefix (`/registry`) in front.
//!
//! Every version of a group shares one place (`autoscaling` v1 and v2 HPAs are the same
//! objects), so the key names the group and the plural but never the version.

use capstan_api::registry::ResourceType;

/// The prefix of every object of a type: `/pods/`, `/apps/deployments/`.
pub(crate) fn type_prefix(resource: &ResourceType) -> String {
    // Versions and groups that share storage share the place (events.k8s.io Events live with
    // the core ones).
    let resource = capstan_api::conversion::storage_type(resource);
    if resource.group.is_empty() {
        format!("/{}/", resource.plural)
    } else {
        format!("/{}/{}/", resource.group, resource.plural)
    }
}

/// The prefix of a type's objects in one namespace, or of all of them.
pub(crate) fn list_prefix(resource: &ResourceType, namespace: Option<&str>) -> String {
    match namespace {
        Some(namespace) if resource.is_namespaced() => {
            format!("{}{namespace}/", type_prefix(resource))
        }
        _ => type_prefix(resource),
    }
}

/// The key of one object.
pub(crate) fn object_key(resource: &ResourceType, namespace: Option<&str>, name: &str) -> String {
    format!("{}{name}", list_prefix(resource, namespace))
}

/// The type prefix a stored key belongs to, or `None` for keys Capstan does not own.
pub(crate) fn type_prefix_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix('/')?;
    let first = rest.split('/').next()?;
    // Group names hold a dot, or are one of the four dotless built-in groups; core plurals
    // are neither.
    let grouped =
        first.contains('.') || matches!(first, "apps" | "batch" | "autoscaling" | "policy");
    let segments = if grouped { 2 } else { 1 };
    let mut end = 1;
    for _ in 0..segments {
        end += rest[end - 1..].find('/')? + 1;
    }
    Some(&key[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_api::registry::find;

    #[test]
    fn keys_name_group_plural_namespace_and_name() {
        let pods = find("", "v1", "pods").unwrap();
        let deployments = find("apps", "v1", "deployments").unwrap();
        let nodes = find("", "v1", "nodes").unwrap();
        assert_eq!(object_key(pods, Some("default"), "web"), "/pods/default/web");
        assert_eq!(object_key(deployments, Some("ns"), "d"), "/apps/deployments/ns/d");
        assert_eq!(object_key(nodes, Some("ignored"), "n1"), "/nodes/n1");
        assert_eq!(list_prefix(pods, None), "/pods/");
        assert_eq!(list_prefix(pods, Some("a")), "/pods/a/");
    }

    #[test]
    fn every_key_maps_back_to_its_type() {
        let events = find("events.k8s.io", "v1", "events").unwrap();
        assert_eq!(object_key(events, Some("ns"), "e"), "/events/ns/e");
        for resource in capstan_api::registry::builtin() {
            let key = object_key(resource, Some("ns"), "name");
            assert_eq!(type_prefix_of(&key), Some(type_prefix(resource).as_str()), "{key}");
        }
        assert_eq!(type_prefix_of("/nonsense"), None);
        assert_eq!(type_prefix_of(""), None);
    }
}
