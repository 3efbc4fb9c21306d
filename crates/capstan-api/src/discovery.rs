//! Discovery documents, built from the registry: the legacy forms (`APIVersions`,
//! `APIGroupList`, `APIGroup`, `APIResourceList`) and the aggregated form
//! (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`) that kubectl 1.30+ asks for first.

use crate::registry::{self, ApiGroup, ResourceType, Scope};
use serde_json::{Value, json};

/// The response media type that tells a client it got the aggregated form.
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an `Accept` header asks for the aggregated form.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
            && params.contains(&"as=APIGroupDiscoveryList")
    })
}

/// `GET /api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_json(group: &ApiGroup) -> Value {
    let versions: Vec<Value> = group
        .versions
        .iter()
        .map(|version| json!({"groupVersion": registry::api_version(group.name, version), "version": version}))
        .collect();
    let preferred = group.preferred_version();
    json!({
        "name": group.name,
        "versions": versions,
        "preferredVersion": {"groupVersion": registry::api_version(group.name, preferred), "version": preferred},
    })
}

/// `GET /apis`: every named group.
pub fn api_group_list() -> Value {
    let groups: Vec<Value> =
        registry::groups().iter().filter(|g| !g.name.is_empty()).map(group_json).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/<group>`, if the group exists.
pub fn api_group(name: &str) -> Option<Value> {
    let group = registry::groups().into_iter().find(|g| g.name == name && !name.is_empty())?;
    let mut document = group_json(&group);
    let object = document.as_object_mut()?;
    object.insert("kind".into(), json!("APIGroup"));
    object.insert("apiVersion".into(), json!("v1"));
    Some(document)
}

/// `GET /api/v1` or `GET /apis/<group>/<version>`, if served.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let types: Vec<&ResourceType> =
        registry::builtin().iter().filter(|t| t.group == group && t.version == version).collect();
    if types.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for t in types {
        let mut entry = json!({
            "name": t.plural,
            "singularName": t.singular,
            "namespaced": t.scope == Scope::Namespaced,
            "kind": t.kind,
            "verbs": t.verbs,
        });
        if !t.short_names.is_empty() {
            entry["shortNames"] = json!(t.short_names);
        }
        if !t.categories.is_empty() {
            entry["categories"] = json!(t.categories);
        }
        resources.push(entry);
        for sub in t.subresources {
            let mut entry = json!({
                "name": format!("{}/{}", t.plural, sub.name),
                "singularName": "",
                "namespaced": t.scope == Scope::Namespaced,
                "kind": sub.kind.kind,
                "verbs": sub.verbs,
            });
            if (sub.kind.group, sub.kind.version) != (t.group, t.version) {
                entry["group"] = json!(sub.kind.group);
                entry["version"] = json!(sub.kind.version);
            }
            resources.push(entry);
        }
    }
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": registry::api_version(group, version), "resources": resources}),
    )
}

fn aggregated_resource(t: &ResourceType) -> Value {
    let scope = if t.scope == Scope::Namespaced { "Namespaced" } else { "Cluster" };
    let mut entry = json!({
        "resource": t.plural,
        "responseKind": {"group": t.group, "version": t.version, "kind": t.kind},
        "scope": scope,
        "singularResource": t.singular,
        "verbs": t.verbs,
    });
    if !t.short_names.is_empty() {
        entry["shortNames"] = json!(t.short_names);
    }
    if !t.categories.is_empty() {
        entry["categories"] = json!(t.categories);
    }
    if !t.subresources.is_empty() {
        let subresources: Vec<Value> = t
            .subresources
            .iter()
            .map(|sub| {
                json!({
                    "subresource": sub.name,
                    "responseKind": {"group": sub.kind.group, "version": sub.kind.version, "kind": sub.kind.kind},
                    "verbs": sub.verbs,
                })
            })
            .collect();
        entry["subresources"] = json!(subresources);
    }
    entry
}

fn aggregated_group(group: &ApiGroup) -> Value {
    let versions: Vec<Value> = group
        .versions
        .iter()
        .map(|version| {
            let resources: Vec<Value> = registry::builtin()
                .iter()
                .filter(|t| t.group == group.name && t.version == *version)
                .map(aggregated_resource)
                .collect();
            json!({"version": version, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let mut metadata = json!({"creationTimestamp": null});
    if !group.name.is_empty() {
        metadata["name"] = json!(group.name);
    }
    json!({"metadata": metadata, "versions": versions})
}

/// The aggregated document of `GET /api` (`legacy`) or `GET /apis`.
pub fn aggregated(legacy: bool) -> Value {
    let items: Vec<Value> = registry::groups()
        .iter()
        .filter(|g| g.name.is_empty() == legacy)
        .map(aggregated_group)
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectls_accept_header_asks_for_the_aggregated_form() {
        let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert!(wants_aggregated(accept));
        assert!(!wants_aggregated("application/json"));
    }

    #[test]
    fn legacy_documents() {
        let groups = api_group_list();
        let names: Vec<&str> = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), 19);
        assert_eq!(names[0], "apiregistration.k8s.io");
        let autoscaling = api_group("autoscaling").unwrap();
        assert_eq!(autoscaling["preferredVersion"]["groupVersion"], "autoscaling/v2");
        assert!(api_group("nonsense").is_none());
        let core = api_resource_list("", "v1").unwrap();
        let pods =
            core["resources"].as_array().unwrap().iter().find(|r| r["name"] == "pods").unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        let eviction = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods/eviction")
            .unwrap();
        assert_eq!(
            (eviction["group"].as_str(), eviction["kind"].as_str()),
            (Some("policy"), Some("Eviction"))
        );
        assert!(api_resource_list("apps", "v2").is_none());
    }

    #[test]
    fn aggregated_documents_give_every_subresource_a_response_kind() {
        let apis = aggregated(false);
        let items = apis["items"].as_array().unwrap();
        assert_eq!(items.len(), 19);
        let apps = items.iter().find(|g| g["metadata"]["name"] == "apps").unwrap();
        let deployments = apps["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "deployments")
            .unwrap();
        assert_eq!(deployments["scope"], "Namespaced");
        let scale = deployments["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subresource"] == "scale")
            .unwrap();
        assert_eq!(
            scale["responseKind"],
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
        );
        let core = aggregated(true);
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        assert!(core["items"][0]["metadata"].get("name").is_none());
    }
}
