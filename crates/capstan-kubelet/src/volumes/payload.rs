//! What the file-projecting volumes contain, computed from objects already fetched: the
//! payload of a configMap, a secret or a downwardAPI source (upstream's `MakePayload` rules
//! for items, modes and optional objects), and whether a projected service account token
//! on disk is still fresh enough to keep.

use super::downward_api::{metadata_field_value, resource_value};
use super::{PodContext, SetUpError};
use crate::volumes::atomic_writer::{FileProjection, Payload};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret};
use std::collections::BTreeMap;

/// The mode files get when neither the item nor the volume says otherwise.
pub const DEFAULT_MODE: i32 = 0o644;

fn mode_bits(mode: i32) -> u32 {
    u32::try_from(mode).unwrap_or(0) & 0o7777
}

/// A configMap's files: every key (`data` and `binaryData`) when `items` is empty, otherwise
/// each item's key at its path. A missing object (`None`) is an error unless `optional`, and
/// then gives an empty volume; so does a missing key of an optional one.
pub fn config_map_payload(
    name: &str,
    config_map: Option<&ConfigMap>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
) -> Result<Payload, SetUpError> {
    let Some(config_map) = config_map else {
        return if optional {
            Ok(Payload::new())
        } else {
            Err(SetUpError::ConfigMapNotFound(name.to_owned()))
        };
    };
    let mut data: BTreeMap<&str, &[u8]> = BTreeMap::new();
    for (key, value) in config_map.data.iter().flatten() {
        data.insert(key, value.as_bytes());
    }
    for (key, value) in config_map.binary_data.iter().flatten() {
        data.insert(key, &value.0);
    }
    project(data, items, default_mode, optional, SetUpError::ConfigMapKey)
}

/// A secret's files, by the same rules as [`config_map_payload`].
pub fn secret_payload(
    name: &str,
    secret: Option<&Secret>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
) -> Result<Payload, SetUpError> {
    let Some(secret) = secret else {
        return if optional {
            Ok(Payload::new())
        } else {
            Err(SetUpError::SecretNotFound(name.to_owned()))
        };
    };
    let data: BTreeMap<&str, &[u8]> = secret
        .data
        .iter()
        .flatten()
        .map(|(key, ByteString(value))| (key.as_str(), value.as_slice()))
        .collect();
    project(data, items, default_mode, optional, SetUpError::SecretKey)
}

fn project(
    data: BTreeMap<&str, &[u8]>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
    missing_key: fn(String) -> SetUpError,
) -> Result<Payload, SetUpError> {
    let mut payload = Payload::new();
    match items.filter(|items| !items.is_empty()) {
        None => {
            for (key, value) in data {
                let file = FileProjection { data: value.to_vec(), mode: mode_bits(default_mode) };
                payload.insert(key.to_owned(), file);
            }
        }
        Some(items) => {
            for item in items {
                let Some(value) = data.get(item.key.as_str()) else {
                    if optional {
                        continue;
                    }
                    return Err(missing_key(item.key.clone()));
                };
                let mode = mode_bits(item.mode.unwrap_or(default_mode));
                payload.insert(item.path.clone(), FileProjection { data: value.to_vec(), mode });
            }
        }
    }
    Ok(payload)
}

/// A downwardAPI source's files: each item's metadata field or container resource.
pub fn downward_api_payload(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
    context: &PodContext,
) -> Result<Payload, SetUpError> {
    let mut payload = Payload::new();
    for item in items {
        let value = match (&item.field_ref, &item.resource_field_ref) {
            (Some(field), _) => metadata_field_value(pod, &field.field_path)?,
            (None, Some(resource)) => resource_value(pod, None, resource, context)?,
            (None, None) => continue,
        };
        let mode = mode_bits(item.mode.unwrap_or(default_mode));
        payload.insert(item.path.clone(), FileProjection { data: value.into_bytes(), mode });
    }
    Ok(payload)
}

/// How long a projected token may live before the kubelet replaces it regardless of expiry.
const MAX_TOKEN_AGE_SECONDS: i64 = 24 * 3600;

/// Whether a token written earlier can stay: it is a JWT whose audiences include `audience`
/// (when one is asked for), less than a day old, and more than 20% of its lifetime away from
/// expiring (upstream's token manager refreshes at 80%).
pub fn token_is_fresh(token: &[u8], audience: Option<&str>, now: i64) -> bool {
    let Some(claims) = token_claims(token) else {
        return false;
    };
    let number = |field: &str| claims.get(field).and_then(serde_json::Value::as_i64);
    let (Some(issued), Some(expires)) = (number("iat"), number("exp")) else {
        return false;
    };
    let audience_matches = match audience.filter(|a| !a.is_empty()) {
        None => true,
        Some(wanted) => match claims.get("aud") {
            Some(serde_json::Value::String(aud)) => aud == wanted,
            Some(serde_json::Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(wanted)),
            _ => false,
        },
    };
    let lifetime = expires - issued;
    audience_matches && now < issued + MAX_TOKEN_AGE_SECONDS && now < expires - lifetime / 5
}

fn token_claims(token: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    let text = std::str::from_utf8(token).ok()?;
    let mut parts = text.trim().split('.');
    let payload = parts.nth(1)?;
    let decoded = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&decoded).ok()? {
        serde_json::Value::Object(claims) => Some(claims),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ObjectFieldSelector, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn config_map() -> ConfigMap {
        ConfigMap {
            data: Some([("a".to_owned(), "1".to_owned()), ("b".to_owned(), "2".to_owned())].into()),
            binary_data: Some([("bin".to_owned(), ByteString(vec![0, 1]))].into()),
            ..Default::default()
        }
    }

    fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath { key: key.into(), path: path.into(), mode }
    }

    fn summary(payload: &Payload) -> Vec<(String, Vec<u8>, u32)> {
        payload.iter().map(|(p, f)| (p.clone(), f.data.clone(), f.mode)).collect()
    }

    #[test]
    fn config_map_keys_and_items() {
        let cm = config_map();
        let all = config_map_payload("cm", Some(&cm), None, DEFAULT_MODE, false).unwrap();
        assert_eq!(
            summary(&all),
            [
                ("a".to_owned(), b"1".to_vec(), 0o644),
                ("b".to_owned(), b"2".to_vec(), 0o644),
                ("bin".to_owned(), vec![0, 1], 0o644),
            ]
        );
        let items = [item("a", "dir/first", Some(0o400)), item("bin", "raw", None)];
        let some = config_map_payload("cm", Some(&cm), Some(&items), 0o640, false).unwrap();
        assert_eq!(
            summary(&some),
            [("dir/first".to_owned(), b"1".to_vec(), 0o400), ("raw".to_owned(), vec![0, 1], 0o640)]
        );
        let missing_key = [item("nope", "x", None)];
        let error = config_map_payload("cm", Some(&cm), Some(&missing_key), DEFAULT_MODE, false)
            .unwrap_err();
        assert_eq!(error.to_string(), "configmap references non-existent config key: nope");
        let optional =
            config_map_payload("cm", Some(&cm), Some(&missing_key), DEFAULT_MODE, true).unwrap();
        assert!(optional.is_empty());
        let error = config_map_payload("cm", None, None, DEFAULT_MODE, false).unwrap_err();
        assert_eq!(error.to_string(), "configmap \"cm\" not found");
        assert!(config_map_payload("cm", None, None, DEFAULT_MODE, true).unwrap().is_empty());
    }

    #[test]
    fn secret_keys_and_items() {
        let secret = Secret {
            data: Some([("token".to_owned(), ByteString(b"s3cr3t".to_vec()))].into()),
            ..Default::default()
        };
        let all = secret_payload("s", Some(&secret), None, 0o600, false).unwrap();
        assert_eq!(summary(&all), [("token".to_owned(), b"s3cr3t".to_vec(), 0o600)]);
        let items = [item("other", "x", None)];
        let error = secret_payload("s", Some(&secret), Some(&items), 0o600, false).unwrap_err();
        assert_eq!(error.to_string(), "references non-existent secret key: other");
        let error = secret_payload("s", None, None, 0o600, false).unwrap_err();
        assert_eq!(error.to_string(), "secret \"s\" not found");
    }

    #[test]
    fn downward_api_files() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                labels: Some([("app".to_owned(), "web".to_owned())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec::default()),
            ..Default::default()
        };
        let file = |path: &str, field: &str| DownwardAPIVolumeFile {
            path: path.into(),
            field_ref: Some(ObjectFieldSelector { field_path: field.into(), api_version: None }),
            ..Default::default()
        };
        let context = PodContext {
            pod_ip: None,
            pod_ips: vec![],
            host_ip: None,
            node_allocatable_cpu_millis: 1000,
            node_allocatable_memory_bytes: 1 << 30,
        };
        let items = [file("name", "metadata.name"), file("labels", "metadata.labels")];
        let payload = downward_api_payload(&pod, &items, DEFAULT_MODE, &context).unwrap();
        assert_eq!(
            summary(&payload),
            [
                ("labels".to_owned(), b"app=\"web\"".to_vec(), 0o644),
                ("name".to_owned(), b"web".to_vec(), 0o644),
            ]
        );
        let bad = [file("x", "status.podIP")];
        let error = downward_api_payload(&pod, &bad, DEFAULT_MODE, &context).unwrap_err();
        assert_eq!(error.to_string(), "unsupported fieldPath: status.podIP");
    }

    fn jwt(claims: serde_json::Value) -> Vec<u8> {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
        .into_bytes()
    }

    #[test]
    fn token_freshness() {
        let token = jwt(serde_json::json!({"iat": 1000, "exp": 4600, "aud": ["api"]}));
        assert!(token_is_fresh(&token, None, 1000));
        assert!(token_is_fresh(&token, Some("api"), 3879));
        assert!(!token_is_fresh(&token, Some("api"), 3880), "80% of the lifetime has passed");
        assert!(!token_is_fresh(&token, Some("vault"), 1000), "another audience");
        let long = jwt(serde_json::json!({"iat": 0, "exp": 1_000_000}));
        assert!(!token_is_fresh(&long, None, 86_400), "a day old");
        assert!(!token_is_fresh(b"not a token", None, 0));
        assert!(!token_is_fresh(b"", None, 0));
    }
}
