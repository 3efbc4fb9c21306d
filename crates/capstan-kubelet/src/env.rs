//! A container's environment, as upstream's kubelet builds it: the service link variables
//! (`<NAME>_SERVICE_HOST`, docker-style `<NAME>_PORT_...`), then `envFrom` (configMaps and
//! secrets, with a prefix), then `env` in order (values with `$(VAR)` expanded against what
//! is defined so far, or taken from the downward API, a configMap key or a secret key).
//! A later definition of a name replaces the earlier one.
//!
//! [`container_env`] fetches the configMaps and secrets the container references and hands
//! them to [`build_env`], the pure part. [`expand`] is upstream's `$(VAR)` expansion, also
//! what the kubelet applies to a container's command and args.

use crate::volumes::PodContext;
use crate::volumes::downward_api::{self, DownwardApiError};
use k8s_cri::v1::KeyValue;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kube::Api;
use std::collections::{BTreeMap, BTreeSet};

/// Why a container's environment could not be made. The message is upstream's, fit for the
/// container's `CreateContainerConfigError` waiting message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKey { key: String, namespace: String, name: String },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKey { key: String, namespace: String, name: String },
    #[error(transparent)]
    DownwardApi(#[from] DownwardApiError),
    #[error("{what}: {message}")]
    Api { what: String, message: String },
}

/// The configMaps and secrets a container's environment references, by name; `None` for
/// one that does not exist.
#[derive(Debug, Clone, Default)]
pub struct EnvObjects {
    pub config_maps: BTreeMap<String, Option<ConfigMap>>,
    pub secrets: BTreeMap<String, Option<Secret>>,
}

/// The container's environment for the CRI. `services` are the Services of the pod's
/// namespace and `default/kubernetes` (others are ignored).
pub async fn container_env(
    client: &kube::Client,
    pod: &Pod,
    container: &Container,
    context: &PodContext,
    services: &[Service],
) -> Result<Vec<KeyValue>, EnvError> {
    let objects = fetch_objects(client, pod, container).await?;
    let env = build_env(pod, container, context, services, &objects)?;
    Ok(env.into_iter().map(|(key, value)| KeyValue { key, value }).collect())
}

/// Fetches every configMap and secret the container's `envFrom` and `env` name.
pub async fn fetch_objects(
    client: &kube::Client,
    pod: &Pod,
    container: &Container,
) -> Result<EnvObjects, EnvError> {
    let (config_map_names, secret_names) = referenced_objects(container);
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let api_error = |what: String| {
        move |error: kube::Error| {
            let message = match &error {
                kube::Error::Api(status) => status.message.clone(),
                other => other.to_string(),
            };
            EnvError::Api { what, message }
        }
    };
    let mut objects = EnvObjects::default();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    for name in config_map_names {
        let object = config_maps
            .get_opt(&name)
            .await
            .map_err(api_error(format!("getting configmap {name:?}")))?;
        objects.config_maps.insert(name, object);
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for name in secret_names {
        let object =
            secrets.get_opt(&name).await.map_err(api_error(format!("getting secret {name:?}")))?;
        objects.secrets.insert(name, object);
    }
    Ok(objects)
}

/// The names of the configMaps and the secrets a container references.
fn referenced_objects(container: &Container) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut config_maps = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for source in container.env_from.iter().flatten() {
        if let Some(reference) = &source.config_map_ref {
            config_maps.insert(reference.name.clone());
        }
        if let Some(reference) = &source.secret_ref {
            secrets.insert(reference.name.clone());
        }
    }
    for var in container.env.iter().flatten() {
        let Some(from) = &var.value_from else { continue };
        if let Some(selector) = &from.config_map_key_ref {
            config_maps.insert(selector.name.clone());
        }
        if let Some(selector) = &from.secret_key_ref {
            secrets.insert(selector.name.clone());
        }
    }
    (config_maps, secrets)
}

/// An environment under construction: names are unique; defining a name again replaces its
/// value and moves it to the end, so the result reads in the order of last definition.
#[derive(Debug, Default)]
struct Environment {
    vars: Vec<(String, String)>,
}

impl Environment {
    fn define(&mut self, name: String, value: String) {
        self.vars.retain(|(existing, _)| *existing != name);
        self.vars.push((name, value));
    }
}

/// The container's environment from objects already fetched: service links, `envFrom`,
/// then `env`, each later definition overriding an earlier one of the same name.
pub fn build_env(
    pod: &Pod,
    container: &Container,
    context: &PodContext,
    services: &[Service],
    objects: &EnvObjects,
) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let enable_links = pod.spec.as_ref().and_then(|spec| spec.enable_service_links).unwrap_or(true);
    let mut env = Environment::default();
    for (name, value) in service_env(namespace, enable_links, services) {
        env.define(name, value);
    }

    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.as_deref().unwrap_or_default();
        let data: Vec<(String, String)> = if let Some(reference) = &source.config_map_ref {
            match objects.config_maps.get(&reference.name).and_then(Option::as_ref) {
                Some(config_map) => {
                    config_map.data.clone().unwrap_or_default().into_iter().collect()
                }
                None if reference.optional == Some(true) => continue,
                None => return Err(EnvError::ConfigMapNotFound(reference.name.clone())),
            }
        } else if let Some(reference) = &source.secret_ref {
            match objects.secrets.get(&reference.name).and_then(Option::as_ref) {
                Some(secret) => secret
                    .data
                    .iter()
                    .flatten()
                    .map(|(key, value)| {
                        (key.clone(), String::from_utf8_lossy(&value.0).into_owned())
                    })
                    .collect(),
                None if reference.optional == Some(true) => continue,
                None => return Err(EnvError::SecretNotFound(reference.name.clone())),
            }
        } else {
            continue;
        };
        for (key, value) in data {
            let name = format!("{prefix}{key}");
            // Names no environment can hold are skipped (the API allows any printable ASCII
            // but `=` in names since relaxed validation).
            if is_env_name(&name) {
                env.define(name, value);
            }
        }
    }

    for var in container.env.iter().flatten() {
        let value = var.value.as_deref().unwrap_or_default();
        let value = if !value.is_empty() {
            expand(value, &env.vars)
        } else if let Some(from) = &var.value_from {
            if let Some(field) = &from.field_ref {
                downward_api::env_field_value(pod, field, context)?
            } else if let Some(resource) = &from.resource_field_ref {
                downward_api::resource_value(pod, Some(container), resource, context)?
            } else if let Some(selector) = &from.config_map_key_ref {
                let optional = selector.optional == Some(true);
                let config_map =
                    match objects.config_maps.get(&selector.name).and_then(Option::as_ref) {
                        Some(config_map) => config_map,
                        None if optional => continue,
                        None => return Err(EnvError::ConfigMapNotFound(selector.name.clone())),
                    };
                match config_map.data.as_ref().and_then(|data| data.get(&selector.key)) {
                    Some(value) => value.clone(),
                    None if optional => continue,
                    None => {
                        return Err(EnvError::ConfigMapKey {
                            key: selector.key.clone(),
                            namespace: namespace.to_owned(),
                            name: selector.name.clone(),
                        });
                    }
                }
            } else if let Some(selector) = &from.secret_key_ref {
                let optional = selector.optional == Some(true);
                let secret = match objects.secrets.get(&selector.name).and_then(Option::as_ref) {
                    Some(secret) => secret,
                    None if optional => continue,
                    None => return Err(EnvError::SecretNotFound(selector.name.clone())),
                };
                match secret.data.as_ref().and_then(|data| data.get(&selector.key)) {
                    Some(value) => String::from_utf8_lossy(&value.0).into_owned(),
                    None if optional => continue,
                    None => {
                        return Err(EnvError::SecretKey {
                            key: selector.key.clone(),
                            namespace: namespace.to_owned(),
                            name: selector.name.clone(),
                        });
                    }
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.define(var.name.clone(), value);
    }
    Ok(env.vars)
}

/// Whether `name` can be an environment variable's name: not empty, printable ASCII, no `=`.
fn is_env_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'=')
}

/// The service link variables a pod in `namespace` sees: those of `default/kubernetes`
/// always, those of its namespace's Services when `enable_links`; Services without a
/// cluster IP (`None` or empty) give none. A Service of the pod's namespace called
/// `kubernetes` wins over the default one, as upstream. Services are taken in name order.
pub fn service_env(
    namespace: &str,
    enable_links: bool,
    services: &[Service],
) -> Vec<(String, String)> {
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    for service in services {
        let cluster_ip =
            service.spec.as_ref().and_then(|spec| spec.cluster_ip.as_deref()).unwrap_or_default();
        if cluster_ip.is_empty() || cluster_ip == "None" {
            continue;
        }
        let name = service.metadata.name.as_deref().unwrap_or_default();
        let service_namespace = service.metadata.namespace.as_deref().unwrap_or_default();
        if service_namespace == "default" && name == "kubernetes" {
            chosen.entry(name).or_insert(service);
        } else if service_namespace == namespace && enable_links {
            chosen.insert(name, service);
        }
    }
    let mut vars = Vec::new();
    for (name, service) in chosen {
        let Some(spec) = &service.spec else { continue };
        let cluster_ip = spec.cluster_ip.clone().unwrap_or_default();
        let ports = spec.ports.as_deref().unwrap_or_default();
        let prefix = env_name(name);
        vars.push((format!("{prefix}_SERVICE_HOST"), cluster_ip.clone()));
        if let Some(first) = ports.first() {
            vars.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        }
        for port in ports {
            if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                vars.push((
                    format!("{prefix}_SERVICE_PORT_{}", env_name(port_name)),
                    port.port.to_string(),
                ));
            }
        }
        let host =
            if cluster_ip.contains(':') { format!("[{cluster_ip}]") } else { cluster_ip.clone() };
        for (index, port) in ports.iter().enumerate() {
            let protocol = port.protocol.as_deref().filter(|p| !p.is_empty()).unwrap_or("TCP");
            let lower = protocol.to_lowercase();
            let url = format!("{lower}://{host}:{}", port.port);
            if index == 0 {
                vars.push((format!("{prefix}_PORT"), url.clone()));
            }
            let port_prefix = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
            vars.push((port_prefix.clone(), url));
            vars.push((format!("{port_prefix}_PROTO"), lower));
            vars.push((format!("{port_prefix}_PORT"), port.port.to_string()));
            vars.push((format!("{port_prefix}_ADDR"), cluster_ip.clone()));
        }
    }
    vars
}

/// A Service or port name as a variable name: upper case, `-` as `_`.
fn env_name(name: &str) -> String {
    name.replace('-', "_").to_uppercase()
}

/// Upstream's `$(VAR)` expansion: `$(NAME)` becomes the value of the last `NAME` in `env`
/// and stays as written when there is none; `$$` is a literal `$`; a `$` followed by
/// anything else, or an unclosed `$(`, stays as written.
pub fn expand(text: &str, env: &[(String, String)]) -> String {
    expand_with(text, |name| {
        env.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value.clone())
    })
}

/// [`expand`] for `subPathExpr`: every reference must resolve to a non-empty value; the
/// error lists the names that do not, sorted (`missing value for A, B`'s tail).
pub(crate) fn expand_checked(text: &str, env: &[(String, String)]) -> Result<String, String> {
    let mut missing = BTreeSet::new();
    let expanded = expand_with(text, |name| {
        let value = env.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value.clone());
        if value.as_deref().is_none_or(str::is_empty) {
            missing.insert(name.to_owned());
        }
        Some(value.unwrap_or_default())
    });
    if missing.is_empty() {
        Ok(expanded)
    } else {
        Err(missing.into_iter().collect::<Vec<_>>().join(", "))
    }
}

fn expand_with(text: &str, mut lookup: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(position) = rest.find('$') {
        out.push_str(&rest[..position]);
        let after = &rest[position + 1..];
        let mut chars = after.chars();
        match chars.next() {
            // A `$` at the very end stays.
            None => {
                out.push('$');
                rest = after;
            }
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('(') => match after[1..].find(')') {
                Some(close) => {
                    let name = &after[1..1 + close];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 2..];
                }
                // An unclosed reference: `$(` is kept and scanning goes on after it.
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            Some(other) => {
                out.push('$');
                out.push(other);
                rest = chars.as_str();
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{
        ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVar, EnvVarSource,
        ObjectFieldSelector, PodSpec, SecretEnvSource, SecretKeySelector, ServicePort, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn expansion() {
        let env = vars(&[
            ("VAR_A", "A"),
            ("VAR_B", "B"),
            ("VAR_EMPTY", ""),
            ("VAR_REF", "$(VAR_A)"),
            ("VAR_A", "A2"),
        ]);
        let cases = [
            ("$(VAR_A)", "A2"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_B)-$(VAR_B)", "B-B"),
            ("$$(VAR_B)", "$(VAR_B)"),
            ("$$$(VAR_B)", "$B"),
            ("$$$$(VAR_B)", "$$(VAR_B)"),
            ("$(VAR_DNE)", "$(VAR_DNE)"),
            ("$(VAR_EMPTY)", ""),
            ("$(VAR_REF)", "$(VAR_A)"),
            ("$(VAR_B", "$(VAR_B"),
            ("$(VAR_B$(VAR_B)", "$(VAR_B$(VAR_B)"),
            ("$VAR_B", "$VAR_B"),
            ("$()", "$()"),
            ("$", "$"),
            ("$$", "$"),
            ("x$", "x$"),
            ("$é$(VAR_B)", "$éB"),
            ("no refs", "no refs"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(expand(input, &env), expected, "{input:?}");
        }
    }

    #[test]
    fn checked_expansion_names_what_is_missing() {
        let env = vars(&[("POD", "web"), ("EMPTY", "")]);
        assert_eq!(expand_checked("logs/$(POD)", &env), Ok("logs/web".to_owned()));
        assert_eq!(
            expand_checked("$(Z)/$(EMPTY)/$(POD)/$(A)", &env),
            Err("A, EMPTY, Z".to_owned())
        );
    }

    fn service(
        namespace: &str,
        name: &str,
        ip: &str,
        ports: &[(Option<&str>, i32, Option<&str>)],
    ) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(name, port, protocol)| ServicePort {
                            name: name.map(Into::into),
                            port: *port,
                            protocol: protocol.map(Into::into),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn services() -> Vec<Service> {
        vec![
            service(
                "shop",
                "my-db",
                "10.43.0.20",
                &[(Some("sql"), 5432, None), (Some("admin-ui"), 8080, Some("TCP"))],
            ),
            service("default", "kubernetes", "10.43.0.1", &[(Some("https"), 443, None)]),
            service("shop", "headless", "None", &[(None, 80, None)]),
            service("shop", "pending", "", &[(None, 80, None)]),
            service("default", "other", "10.43.0.9", &[(None, 80, None)]),
            service("shop", "dns6", "fd00::a", &[(None, 53, Some("UDP"))]),
        ]
    }

    #[test]
    fn service_links() {
        let env = service_env("shop", true, &services());
        let expected = vars(&[
            ("DNS6_SERVICE_HOST", "fd00::a"),
            ("DNS6_SERVICE_PORT", "53"),
            ("DNS6_PORT", "udp://[fd00::a]:53"),
            ("DNS6_PORT_53_UDP", "udp://[fd00::a]:53"),
            ("DNS6_PORT_53_UDP_PROTO", "udp"),
            ("DNS6_PORT_53_UDP_PORT", "53"),
            ("DNS6_PORT_53_UDP_ADDR", "fd00::a"),
            ("KUBERNETES_SERVICE_HOST", "10.43.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.43.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.43.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.43.0.1"),
            ("MY_DB_SERVICE_HOST", "10.43.0.20"),
            ("MY_DB_SERVICE_PORT", "5432"),
            ("MY_DB_SERVICE_PORT_SQL", "5432"),
            ("MY_DB_SERVICE_PORT_ADMIN_UI", "8080"),
            ("MY_DB_PORT", "tcp://10.43.0.20:5432"),
            ("MY_DB_PORT_5432_TCP", "tcp://10.43.0.20:5432"),
            ("MY_DB_PORT_5432_TCP_PROTO", "tcp"),
            ("MY_DB_PORT_5432_TCP_PORT", "5432"),
            ("MY_DB_PORT_5432_TCP_ADDR", "10.43.0.20"),
            ("MY_DB_PORT_8080_TCP", "tcp://10.43.0.20:8080"),
            ("MY_DB_PORT_8080_TCP_PROTO", "tcp"),
            ("MY_DB_PORT_8080_TCP_PORT", "8080"),
            ("MY_DB_PORT_8080_TCP_ADDR", "10.43.0.20"),
        ]);
        assert_eq!(env, expected);

        // Links disabled: only the kubernetes service.
        let env = service_env("shop", false, &services());
        assert!(env.iter().all(|(name, _)| name.starts_with("KUBERNETES_")), "{env:?}");
        assert_eq!(env.len(), 8);

        // The pod's own `kubernetes` service wins over default's, whatever the order.
        let mut list = services();
        list.push(service("shop", "kubernetes", "10.43.0.99", &[(None, 443, None)]));
        let env = service_env("shop", true, &list);
        assert!(env.contains(&("KUBERNETES_SERVICE_HOST".into(), "10.43.0.99".into())));
        list.reverse();
        let env = service_env("shop", true, &list);
        assert!(env.contains(&("KUBERNETES_SERVICE_HOST".into(), "10.43.0.99".into())));
    }

    fn context() -> PodContext {
        PodContext {
            pod_ip: Some("10.42.0.5".into()),
            pod_ips: vec!["10.42.0.5".into()],
            host_ip: Some("192.168.0.2".into()),
            node_allocatable_cpu_millis: 2000,
            node_allocatable_memory_bytes: 1 << 30,
        }
    }

    fn pod(container: Container, links: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-1".into()),
                namespace: Some("shop".into()),
                uid: Some("uid-1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![container],
                enable_service_links: Some(links),
                node_name: Some("node-a".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn value(name: &str, value: &str) -> EnvVar {
        EnvVar { name: name.into(), value: Some(value.into()), value_from: None }
    }

    fn from(name: &str, source: EnvVarSource) -> EnvVar {
        EnvVar { name: name.into(), value: None, value_from: Some(source) }
    }

    fn field(path: &str) -> EnvVarSource {
        EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.into(), api_version: None }),
            ..Default::default()
        }
    }

    fn objects() -> EnvObjects {
        let config_map = ConfigMap {
            data: Some(
                [
                    ("LEVEL".to_owned(), "debug".to_owned()),
                    ("MODE".to_owned(), "fast".to_owned()),
                    ("bad=key".to_owned(), "x".to_owned()),
                ]
                .into(),
            ),
            ..Default::default()
        };
        let secret = Secret {
            data: Some([("PASSWORD".to_owned(), ByteString(b"hunter2".to_vec()))].into()),
            ..Default::default()
        };
        EnvObjects {
            config_maps: [("settings".to_owned(), Some(config_map)), ("gone".to_owned(), None)]
                .into(),
            secrets: [("creds".to_owned(), Some(secret))].into(),
        }
    }

    fn build(container: Container, links: bool) -> Result<Vec<(String, String)>, String> {
        let pod = pod(container.clone(), links);
        build_env(&pod, &container, &context(), &services(), &objects()).map_err(|e| e.to_string())
    }

    #[test]
    fn order_overrides_and_sources() {
        let container = Container {
            name: "app".into(),
            env_from: Some(vec![
                EnvFromSource {
                    config_map_ref: Some(ConfigMapEnvSource {
                        name: "settings".into(),
                        optional: None,
                    }),
                    prefix: Some("CFG_".into()),
                    secret_ref: None,
                },
                EnvFromSource {
                    secret_ref: Some(SecretEnvSource { name: "creds".into(), optional: None }),
                    ..Default::default()
                },
                EnvFromSource {
                    config_map_ref: Some(ConfigMapEnvSource {
                        name: "gone".into(),
                        optional: Some(true),
                    }),
                    ..Default::default()
                },
            ]),
            env: Some(vec![
                value("GREETING", "hello $(POD_NAME) at $(KUBERNETES_SERVICE_HOST)"),
                from("POD_NAME", field("metadata.name")),
                value("CFG_MODE", "slow"),
                value(
                    "URL",
                    "http://$(MY_DB_SERVICE_HOST):$(MY_DB_SERVICE_PORT)/$(CFG_LEVEL)/$$(x)",
                ),
                from("NODE", field("spec.nodeName")),
                from("IP", field("status.podIP")),
                from(
                    "LEVEL",
                    EnvVarSource {
                        config_map_key_ref: Some(ConfigMapKeySelector {
                            name: "settings".into(),
                            key: "LEVEL".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    },
                ),
                from(
                    "SECRET",
                    EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: "creds".into(),
                            key: "PASSWORD".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    },
                ),
                from(
                    "SKIPPED",
                    EnvVarSource {
                        config_map_key_ref: Some(ConfigMapKeySelector {
                            name: "settings".into(),
                            key: "ABSENT".into(),
                            optional: Some(true),
                        }),
                        ..Default::default()
                    },
                ),
                value("EMPTY", ""),
            ]),
            ..Default::default()
        };
        let env = build(container, false).unwrap();
        let mut expected = service_env("shop", false, &services());
        expected.extend(vars(&[
            ("CFG_LEVEL", "debug"),
            ("PASSWORD", "hunter2"),
            ("GREETING", "hello $(POD_NAME) at 10.43.0.1"),
            ("POD_NAME", "web-1"),
            ("CFG_MODE", "slow"),
            ("URL", "http://$(MY_DB_SERVICE_HOST):$(MY_DB_SERVICE_PORT)/debug/$(x)"),
            ("NODE", "node-a"),
            ("IP", "10.42.0.5"),
            ("LEVEL", "debug"),
            ("SECRET", "hunter2"),
            ("EMPTY", ""),
        ]));
        assert_eq!(env, expected);
    }

    #[test]
    fn service_links_feed_expansion_when_enabled() {
        let container = Container {
            name: "app".into(),
            env: Some(vec![value("DB", "$(MY_DB_SERVICE_HOST):$(MY_DB_SERVICE_PORT_SQL)")]),
            ..Default::default()
        };
        let env = build(container, true).unwrap();
        assert_eq!(env.last(), Some(&("DB".to_owned(), "10.43.0.20:5432".to_owned())));
    }

    #[test]
    fn errors_read_like_upstream() {
        let key_ref = |name: &str, key: &str, optional: Option<bool>| Container {
            name: "app".into(),
            env: Some(vec![from(
                "X",
                EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: name.into(),
                        key: key.into(),
                        optional,
                    }),
                    ..Default::default()
                },
            )]),
            ..Default::default()
        };
        let secret_ref = |name: &str, key: &str| Container {
            name: "app".into(),
            env: Some(vec![from(
                "X",
                EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: name.into(),
                        key: key.into(),
                        optional: None,
                    }),
                    ..Default::default()
                },
            )]),
            ..Default::default()
        };
        let env_from = |name: &str| Container {
            name: "app".into(),
            env_from: Some(vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource { name: name.into(), optional: None }),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let field_ref = |path: &str| Container {
            name: "app".into(),
            env: Some(vec![from("X", field(path))]),
            ..Default::default()
        };
        let cases = [
            (
                key_ref("settings", "NOPE", None),
                "couldn't find key NOPE in ConfigMap shop/settings",
            ),
            (key_ref("gone", "A", None), "configmap \"gone\" not found"),
            (key_ref("unfetched", "A", None), "configmap \"unfetched\" not found"),
            (secret_ref("creds", "NOPE"), "couldn't find key NOPE in Secret shop/creds"),
            (secret_ref("missing", "A"), "secret \"missing\" not found"),
            (env_from("missing"), "secret \"missing\" not found"),
            (field_ref("spec.containers"), "field label not supported: spec.containers"),
        ];
        for (container, message) in cases {
            assert_eq!(build(container, true), Err(message.to_owned()));
        }
        assert!(build(key_ref("gone", "A", Some(true)), true).is_ok());
    }

    #[test]
    fn referenced_objects_are_collected() {
        let container = Container {
            env_from: Some(vec![EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource { name: "a".into(), optional: None }),
                ..Default::default()
            }]),
            env: Some(vec![from(
                "S",
                EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "b".into(),
                        key: "k".into(),
                        optional: None,
                    }),
                    ..Default::default()
                },
            )]),
            ..Default::default()
        };
        let (config_maps, secrets) = referenced_objects(&container);
        assert_eq!(config_maps.into_iter().collect::<Vec<_>>(), ["a"]);
        assert_eq!(secrets.into_iter().collect::<Vec<_>>(), ["b"]);
    }
}
