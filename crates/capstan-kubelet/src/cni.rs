//! The pod network's CNI config: a bridge with host-local addresses from the node's pod
//! CIDRs (`spec.podCIDRs`, one per IP family), hairpin mode, and the portmap plugin for
//! hostPorts. The bridge does not masquerade (its `ipMasq` would also hide pods' addresses
//! from pods on other nodes): the service proxy masquerades only traffic leaving the
//! cluster CIDRs. containerd's CRI plugin picks the file up; until it
//! exists the runtime reports NetworkReady=false and the node is not Ready.

use serde_json::json;
use std::path::{Path, PathBuf};

/// The file the kubelet writes in the CNI config directory.
pub const CONFIG_FILE: &str = "10-capstan.conflist";

/// The conflist for `pod_cidrs`.
pub fn render(bridge: &str, pod_cidrs: &[String], ipam_dir: &Path) -> String {
    let ranges: Vec<serde_json::Value> =
        pod_cidrs.iter().map(|cidr| json!([{"subnet": cidr}])).collect();
    let routes: Vec<serde_json::Value> =
        pod_cidrs
            .iter()
            .map(|cidr| {
                if cidr.contains(':') {
                    json!({"dst": "::/0"})
                } else {
                    json!({"dst": "0.0.0.0/0"})
                }
            })
            .collect();
    let config = json!({
        "cniVersion": "0.4.0",
        "name": "capstan",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": ranges,
                    "routes": routes,
                    "dataDir": ipam_dir,
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
        ],
    });
    serde_json::to_string_pretty(&config).unwrap_or_default()
}

/// Writes the conflist when it differs from what is there; returns whether it changed.
pub fn write(
    conf_dir: &Path,
    bridge: &str,
    pod_cidrs: &[String],
    ipam_dir: &Path,
) -> std::io::Result<bool> {
    let path: PathBuf = conf_dir.join(CONFIG_FILE);
    let text = render(bridge, pod_cidrs, ipam_dir);
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        return Ok(false);
    }
    std::fs::create_dir_all(conf_dir)?;
    // Written whole and renamed, so the runtime never reads half a file.
    let partial = conf_dir.join(format!(".{CONFIG_FILE}.partial"));
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, &path)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dual_stack_ranges_and_routes() {
        let text =
            render("cni0", &["10.42.1.0/24".into(), "fd00:42:1::/64".into()], Path::new("/ipam"));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let ipam = &value["plugins"][0]["ipam"];
        assert_eq!(ipam["ranges"][1][0]["subnet"], "fd00:42:1::/64");
        assert_eq!(ipam["routes"][1]["dst"], "::/0");
        assert_eq!(value["plugins"][0]["bridge"], "cni0");
    }
}
