//! Registry credentials for a pull from the pod's imagePullSecrets
//! (`kubernetes.io/dockerconfigjson` and `kubernetes.io/dockercfg`).

use crate::runtime::cri_api::AuthConfig;
use base64::Engine;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;

/// The registry host of an image reference (`docker.io` when it has none).
pub(crate) fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_owned()
        }
        _ => "docker.io".to_owned(),
    }
}

/// The credentials of the first pull secret with an entry for the image's registry.
pub(crate) async fn auth_for(client: &kube::Client, pod: &Pod, image: &str) -> Option<AuthConfig> {
    let names = pod.spec.as_ref()?.image_pull_secrets.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let registry = registry_of(image);
    for name in names.into_iter().map(|r| r.name) {
        let Ok(Some(secret)) = api.get_opt(&name).await else { continue };
        let data = secret.data.unwrap_or_default();
        let config: Option<serde_json::Value> = data
            .get(".dockerconfigjson")
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b.0).ok())
            .and_then(|v| v.get("auths").cloned())
            .or_else(|| data.get(".dockercfg").and_then(|b| serde_json::from_slice(&b.0).ok()));
        if let Some(auth) = config.as_ref().and_then(|c| find(c, &registry)) {
            return Some(auth);
        }
    }
    None
}

fn find(auths: &serde_json::Value, registry: &str) -> Option<AuthConfig> {
    let map = auths.as_object()?;
    for (key, entry) in map {
        let host = key.trim_start_matches("https://").trim_start_matches("http://");
        let host = host.split('/').next().unwrap_or(host);
        let matches = host == registry
            || (registry == "docker.io"
                && (host == "index.docker.io" || host == "registry-1.docker.io"));
        if !matches {
            continue;
        }
        let mut username =
            entry.get("username").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        let mut password =
            entry.get("password").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        if let Some(encoded) = entry.get("auth").and_then(|v| v.as_str())
            && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded)
            && let Some((user, pass)) = String::from_utf8_lossy(&decoded).split_once(':')
        {
            username = user.to_owned();
            password = pass.to_owned();
        }
        return Some(AuthConfig {
            username,
            password,
            server_address: host.to_owned(),
            ..AuthConfig::default()
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_and_auth_entries() {
        assert_eq!(registry_of("busybox"), "docker.io");
        assert_eq!(registry_of("127.0.0.1:5000/busybox:1"), "127.0.0.1:5000");
        let auths = serde_json::json!({"127.0.0.1:5000": {"auth": "dXNlcjpwYXNz"}});
        let auth = find(&auths, "127.0.0.1:5000").unwrap_or_default();
        assert_eq!((auth.username.as_str(), auth.password.as_str()), ("user", "pass"));
        assert!(find(&auths, "docker.io").is_none());
    }
}
