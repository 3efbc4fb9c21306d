//! The kubelet API's TLS: a self-signed serving certificate kept under the TLS directory
//! (as upstream's kubelet makes one when it is given none), and client certificates checked
//! against the cluster CA.

use super::{KubeletServerConfig, ServerError};
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// The serving certificate and key, PEM.
#[derive(Debug)]
pub(super) struct Serving {
    pub(super) cert_pem: String,
    pub(super) key_pem: String,
}

fn tls_error(what: &str, error: impl std::fmt::Display) -> ServerError {
    ServerError::Tls(format!("{what}: {error}"))
}

/// Loads `kubelet.crt`/`kubelet.key` from the TLS directory, or makes and stores a new
/// self-signed pair naming the node, its addresses, `localhost` and `127.0.0.1`.
pub(super) fn serving_certificate(config: &KubeletServerConfig) -> Result<Serving, ServerError> {
    let cert_path = config.tls_dir.join("kubelet.crt");
    let key_path = config.tls_dir.join("kubelet.key");
    if let (Ok(cert_pem), Ok(key_pem)) =
        (std::fs::read_to_string(&cert_path), std::fs::read_to_string(&key_path))
        && CertificateDer::from_pem_slice(cert_pem.as_bytes()).is_ok()
        && PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).is_ok()
    {
        return Ok(Serving { cert_pem, key_pem });
    }
    let mut names = vec![config.node_name.clone(), "localhost".to_owned()];
    names.retain(|name| !name.is_empty());
    names.dedup();
    let mut params =
        CertificateParams::new(names.clone()).map_err(|e| tls_error("certificate names", e))?;
    params.distinguished_name.push(DnType::CommonName, format!("{}@kubelet", config.node_name));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let mut ips: Vec<IpAddr> = vec![IpAddr::from([127, 0, 0, 1])];
    ips.extend(config.node_ips.iter().copied());
    ips.dedup();
    params.subject_alt_names.extend(ips.into_iter().map(SanType::IpAddress));
    let key = KeyPair::generate().map_err(|e| tls_error("serving key", e))?;
    let cert = params.self_signed(&key).map_err(|e| tls_error("serving certificate", e))?;
    let serving = Serving { cert_pem: cert.pem(), key_pem: key.serialize_pem() };
    write(&config.tls_dir, &cert_path, &serving.cert_pem, 0o644)?;
    write(&config.tls_dir, &key_path, &serving.key_pem, 0o600)?;
    Ok(serving)
}

fn write(dir: &Path, path: &Path, contents: &str, mode: u32) -> Result<(), ServerError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |what, source| ServerError::Io { what, path: path.to_owned(), source };
    std::fs::create_dir_all(dir).map_err(|e| io("cannot create the directory of", e))?;
    let temporary = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temporary)
            .map_err(|e| io("cannot write", e))?;
        file.write_all(contents.as_bytes()).map_err(|e| io("cannot write", e))?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| io("cannot write", e))?;
    }
    std::fs::rename(&temporary, path).map_err(|e| io("cannot write", e))
}

/// The rustls server configuration: HTTP/2 and HTTP/1.1, client certificates optional but
/// verified against the cluster CA when shown.
pub(super) fn server_config(
    config: &KubeletServerConfig,
    serving: &Serving,
) -> Result<rustls::ServerConfig, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(config.client_ca_pem.as_bytes()) {
        roots
            .add(ca.map_err(|e| tls_error("client CA", e))?)
            .map_err(|e| tls_error("client CA", e))?;
    }
    // Clients without a certificate finish the handshake and are answered 401.
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| tls_error("client verifier", e))?;
    let chain = vec![
        CertificateDer::from_pem_slice(serving.cert_pem.as_bytes())
            .map_err(|e| tls_error("serving certificate", e))?,
    ];
    let key = PrivateKeyDer::from_pem_slice(serving.key_pem.as_bytes())
        .map_err(|e| tls_error("serving key", e))?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls_error("serving certificate", e))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serving_certificate_is_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let config = KubeletServerConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            tls_dir: dir.path().join("tls"),
            client_ca_pem: String::new(),
            node_name: "node-a".into(),
            node_ips: vec!["10.0.0.5".parse().unwrap()],
        };
        let first = serving_certificate(&config).unwrap();
        let second = serving_certificate(&config).unwrap();
        assert_eq!(first.cert_pem, second.cert_pem);
        assert_eq!(first.key_pem, second.key_pem);
        use std::os::unix::fs::PermissionsExt;
        let mode =
            std::fs::metadata(dir.path().join("tls/kubelet.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
