//! The kubelet-managed `/etc/hosts` of a pod: localhost, the pod's own name (with its
//! subdomain's FQDN when it has one) and its hostAliases.

use k8s_openapi::api::core::v1::Pod;

pub(crate) fn hosts_file(pod: &Pod, pod_ips: &[String], cluster_domain: &str) -> String {
    let mut text = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let hostname = super::config::hostname(pod);
    let spec = pod.spec.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    for ip in pod_ips {
        match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
            Some(subdomain) => text.push_str(&format!(
                "{ip}\t{hostname}.{subdomain}.{namespace}.svc.{cluster_domain}\t{hostname}\n"
            )),
            None => text.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    let aliases = spec.host_aliases.unwrap_or_default();
    if !aliases.is_empty() {
        text.push_str("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            text.push_str(&format!(
                "{}\t{}\n",
                alias.ip,
                alias.hostnames.unwrap_or_default().join("\t")
            ));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subdomain_gives_the_pod_its_fqdn() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-0", "namespace": "shop"},
            "spec": {"containers": [], "subdomain": "web", "hostAliases": [{"ip": "1.2.3.4", "hostnames": ["a", "b"]}]}
        }))
        .unwrap_or_default();
        let text = hosts_file(&pod, &["10.42.0.7".into()], "cluster.local");
        assert!(text.contains("10.42.0.7\tweb-0.web.shop.svc.cluster.local\tweb-0\n"), "{text}");
        assert!(text.contains("1.2.3.4\ta\tb\n"));
    }
}
