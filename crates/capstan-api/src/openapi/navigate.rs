//! Walking a kind's schema field by field, for the patch engines: what a field holds, and
//! how lists and maps under it merge (`x-kubernetes-patch-merge-key`,
//! `x-kubernetes-patch-strategy`, `x-kubernetes-list-type`, `x-kubernetes-list-map-keys`,
//! `x-kubernetes-map-type`).
//!
//! A [`Schema`] is a position: the schema as written where the field is declared (which
//! carries the field's extensions) and the schema it resolves to through `$ref` (which
//! carries the type's properties and its own extensions, such as `map-type` on a struct).

use super::schemas::{CATALOG, reference};
use crate::registry::ResourceType;
use serde_json::Value;

/// A position in a schema; cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// The schema where the field is declared.
    site: &'static Value,
    /// The schema it resolves to through `$ref` (itself when it has none).
    resolved: &'static Value,
}

/// The schema of a kind, at its top.
pub fn schema_of(resource: &ResourceType) -> Option<Schema> {
    let name = CATALOG.schema_of(resource.group, resource.version, resource.kind)?;
    named(name)
}

/// A schema by its upstream name (`io.k8s.api.core.v1.PodSpec`).
pub fn named(name: &str) -> Option<Schema> {
    let schema = CATALOG.schemas.get(name)?;
    Some(Schema::at(schema))
}

impl Schema {
    fn at(site: &'static Value) -> Schema {
        let mut resolved = site;
        // References nest at most a few deep; the bound stops a cycle.
        for _ in 0..8 {
            match reference(resolved).and_then(|name| CATALOG.schemas.get(name)) {
                Some(target) => resolved = target,
                None => break,
            }
        }
        Schema { site, resolved }
    }

    /// The schema of an object's field.
    pub fn field(&self, name: &str) -> Option<Schema> {
        self.resolved.get("properties")?.get(name).map(Schema::at)
    }

    /// The schema of a list's items.
    pub fn items(&self) -> Option<Schema> {
        self.resolved.get("items").map(Schema::at)
    }

    /// The schema of a map's values (`additionalProperties`).
    pub fn values(&self) -> Option<Schema> {
        match self.resolved.get("additionalProperties")? {
            Value::Object(_) => self.resolved.get("additionalProperties").map(Schema::at),
            _ => None,
        }
    }

    /// An extension, from where the field is declared or else from its type.
    pub fn extension(&self, key: &str) -> Option<&'static Value> {
        self.site.get(key).or_else(|| self.resolved.get(key))
    }

    fn extension_str(&self, key: &str) -> Option<&'static str> {
        self.extension(key).and_then(Value::as_str)
    }

    /// `x-kubernetes-patch-strategy`: `merge`, `replace`, `retainKeys`, or
    /// `merge,retainKeys`.
    pub fn patch_strategy(&self) -> Option<&'static str> {
        self.extension_str("x-kubernetes-patch-strategy")
    }

    /// `x-kubernetes-patch-merge-key`: the field that identifies a list's items in a
    /// strategic merge patch.
    pub fn patch_merge_key(&self) -> Option<&'static str> {
        self.extension_str("x-kubernetes-patch-merge-key")
    }

    /// `x-kubernetes-list-type`: `atomic`, `set` or `map`.
    pub fn list_type(&self) -> Option<&'static str> {
        self.extension_str("x-kubernetes-list-type")
    }

    /// `x-kubernetes-list-map-keys`: the fields that identify a `map` list's items.
    pub fn list_map_keys(&self) -> Vec<&'static str> {
        self.extension("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|keys| keys.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    /// `x-kubernetes-map-type`: `atomic` or `granular`.
    pub fn map_type(&self) -> Option<&'static str> {
        self.extension_str("x-kubernetes-map-type")
    }

    /// Whether anything goes below here (RawExtension, JSON, FieldsV1, free-form objects).
    pub fn preserves_unknown_fields(&self) -> bool {
        self.extension("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool)
            == Some(true)
    }

    /// The JSON type the schema names (`object`, `array`, `string`, `integer`, ...), if one.
    pub fn type_name(&self) -> Option<&'static str> {
        self.resolved.get("type").and_then(Value::as_str)
    }

    /// Whether the value is a struct with known properties.
    pub fn is_struct(&self) -> bool {
        self.resolved.get("properties").is_some()
    }

    /// The schema as JSON, where it resolves to.
    pub fn raw(&self) -> &'static Value {
        self.resolved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;

    #[test]
    fn walks_to_merge_keys_and_list_types() {
        let pod = schema_of(find("", "v1", "pods").unwrap()).unwrap();
        let containers = pod.field("spec").unwrap().field("containers").unwrap();
        assert_eq!(containers.patch_merge_key(), Some("name"));
        assert_eq!(containers.patch_strategy(), Some("merge"));
        assert_eq!(containers.list_type(), Some("map"));
        let ports = containers.items().unwrap().field("ports").unwrap();
        assert_eq!(ports.patch_merge_key(), Some("containerPort"));
        assert_eq!(ports.list_map_keys(), ["containerPort", "protocol"]);
        let labels = pod.field("metadata").unwrap().field("labels").unwrap();
        assert_eq!(labels.type_name(), Some("object"));
        assert_eq!(labels.values().unwrap().type_name(), Some("string"));
        assert!(pod.field("nope").is_none());
        let security = pod.field("spec").unwrap().field("securityContext").unwrap();
        assert!(security.is_struct());
    }
}
