//! The admin kubeconfig `capstan server` writes (`--write-kubeconfig`), so that
//! `KUBECONFIG=… kubectl …` works at once.

use crate::{ApiServerError, tls::TlsMaterial};
use base64::Engine;
use std::path::Path;

/// The kubeconfig text for the admin user against `server` (`https://127.0.0.1:6443`).
pub fn admin_kubeconfig(server: &str, tls: &TlsMaterial) -> String {
    let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server}
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
preferences: {{}}
users:
- name: default
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
",
        ca = b64(&tls.ca_cert),
        cert = b64(&tls.admin_cert),
        key = b64(&tls.admin_key),
    )
}

/// Writes the kubeconfig readable by its owner only, creating the directory.
pub fn write(path: &Path, contents: &str) -> Result<(), ApiServerError> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|source| ApiServerError::Io { path: dir.to_owned(), source })?;
    }
    crate::tls::write_private(path, contents)
}
