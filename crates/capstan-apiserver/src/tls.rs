//! The cluster's certificates: a CA created on first start and kept under the data
//! directory, a serving certificate with SANs for every name and address the server answers
//! on (clients refuse a CN-only certificate), an admin client certificate in
//! `O=system:masters` for the kubeconfig, and the client certificate the server shows
//! kubelets when it proxies logs, exec, attach, port-forward and `nodes/proxy` to them.

use crate::ApiServerError;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// PEM texts of everything the server and its kubeconfig need.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    pub ca_cert: String,
    pub serving_cert: String,
    pub serving_key: String,
    pub admin_cert: String,
    pub admin_key: String,
    /// The client certificate (CN `kube-apiserver-kubelet-client`, O `system:masters`) the
    /// API server authenticates with to kubelets, and its key.
    pub kubelet_client_cert: String,
    pub kubelet_client_key: String,
    /// The ECDSA P-256 key (PKCS#8 PEM) that signs service account tokens.
    pub service_account_key: String,
}

const CA_NAME: &str = "capstan-ca";

/// The subject of the certificate the API server shows kubelets (kubeadm's name for it).
const KUBELET_CLIENT_NAME: &str = "kube-apiserver-kubelet-client";

/// The names and addresses the serving certificate covers.
#[derive(Debug, Clone, Default)]
pub struct ServingNames {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl ServingNames {
    /// `localhost`, the in-cluster names of the `kubernetes` Service, the host's name,
    /// loopback, and `extra` addresses (the bind address, when specific).
    pub fn standard(hostname: Option<String>, extra: &[IpAddr]) -> Self {
        let mut dns: Vec<String> = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        .iter()
        .map(|name| (*name).to_owned())
        .collect();
        dns.extend(hostname.filter(|h| !h.is_empty()));
        let mut ips: Vec<IpAddr> =
            vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])];
        ips.extend(extra.iter().filter(|ip| !ip.is_unspecified()));
        ips.dedup();
        ServingNames { dns, ips }
    }
}

fn tls_error(what: &str, error: impl std::fmt::Display) -> ApiServerError {
    ApiServerError::Tls(format!("{what}: {error}"))
}

fn ca_params() -> Result<CertificateParams, ApiServerError> {
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| tls_error("CA parameters", e))?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Writes a file readable by its owner only (keys, and the kubeconfig that holds one).
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), ApiServerError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| ApiServerError::Io { path: path.to_owned(), source: e })?;
    file.write_all(contents.as_bytes())
        .map_err(|e| ApiServerError::Io { path: path.to_owned(), source: e })
}

/// Loads the CA from `dir`, creating it on first start, and issues a fresh serving
/// certificate for `names`; the admin certificate is issued once and kept.
pub fn ensure(dir: &Path, names: &ServingNames) -> Result<TlsMaterial, ApiServerError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ApiServerError::Io { path: dir.to_owned(), source: e })?;
    let file = |name: &str| -> PathBuf { dir.join(name) };

    let (ca_cert, ca_key) = match (read(&file("ca.crt")), read(&file("ca.key"))) {
        (Some(cert), Some(key)) => {
            (cert, KeyPair::from_pem(&key).map_err(|e| tls_error("reading ca.key", e))?)
        }
        _ => {
            let key = KeyPair::generate().map_err(|e| tls_error("CA key", e))?;
            let cert =
                ca_params()?.self_signed(&key).map_err(|e| tls_error("CA certificate", e))?.pem();
            write_private(&file("ca.key"), &key.serialize_pem())?;
            write_private(&file("ca.crt"), &cert)?;
            tracing::info!(dir = %dir.display(), "created the cluster CA");
            (cert, key)
        }
    };
    let issuer = Issuer::new(ca_params()?, ca_key);

    let serving_key = KeyPair::generate().map_err(|e| tls_error("serving key", e))?;
    let mut serving = CertificateParams::new(Vec::<String>::new())
        .map_err(|e| tls_error("serving parameters", e))?;
    serving.distinguished_name.push(DnType::CommonName, "kube-apiserver");
    for dns in &names.dns {
        let name = dns.clone().try_into().map_err(|e| tls_error("a DNS name", e))?;
        serving.subject_alt_names.push(SanType::DnsName(name));
    }
    serving.subject_alt_names.extend(names.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_cert = serving
        .signed_by(&serving_key, &issuer)
        .map_err(|e| tls_error("serving certificate", e))?
        .pem();
    write_private(&file("serving.crt"), &serving_cert)?;
    write_private(&file("serving.key"), &serving_key.serialize_pem())?;

    let (admin_cert, admin_key) = client_certificate(
        dir,
        "admin",
        ClientSubject { common_name: "system:admin", organization: "system:masters" },
        &issuer,
    )?;
    let (kubelet_client_cert, kubelet_client_key) = client_certificate(
        dir,
        "kubelet-client",
        ClientSubject { common_name: KUBELET_CLIENT_NAME, organization: "system:masters" },
        &issuer,
    )?;
    let service_account_key = match read(&file("service-account.key")) {
        Some(key) => key,
        None => {
            let key = KeyPair::generate().map_err(|e| tls_error("service account key", e))?;
            write_private(&file("service-account.key"), &key.serialize_pem())?;
            key.serialize_pem()
        }
    };
    Ok(TlsMaterial {
        ca_cert,
        serving_cert,
        serving_key: serving_key.serialize_pem(),
        admin_cert,
        admin_key,
        kubelet_client_cert,
        kubelet_client_key,
        service_account_key,
    })
}

/// Who a client certificate names: the user (CN) and its group (O).
#[derive(Debug, Clone, Copy)]
struct ClientSubject<'a> {
    common_name: &'a str,
    organization: &'a str,
}

/// The client certificate `<stem>.crt` and its key `<stem>.key` in `dir` (PEM texts): issued
/// by the CA on first start, then kept, so that what holds a copy keeps working.
fn client_certificate(
    dir: &Path,
    stem: &str,
    subject: ClientSubject<'_>,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, String), ApiServerError> {
    let (cert_path, key_path) = (dir.join(format!("{stem}.crt")), dir.join(format!("{stem}.key")));
    if let (Some(cert), Some(key)) = (read(&cert_path), read(&key_path)) {
        return Ok((cert, key));
    }
    let key = KeyPair::generate().map_err(|e| tls_error(&format!("{stem} key"), e))?;
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|e| tls_error(&format!("{stem} parameters"), e))?;
    params.distinguished_name.push(DnType::CommonName, subject.common_name);
    params.distinguished_name.push(DnType::OrganizationName, subject.organization);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params
        .signed_by(&key, issuer)
        .map_err(|e| tls_error(&format!("{stem} certificate"), e))?
        .pem();
    write_private(&key_path, &key.serialize_pem())?;
    write_private(&cert_path, &cert)?;
    Ok((cert, key.serialize_pem()))
}

/// The TLS client configuration for dialing kubelets: HTTP/1.1 (upgrades to WebSocket and
/// SPDY need it), authenticated with the kubelet client certificate.
///
/// The kubelet's serving certificate is NOT verified. A kubelet serves a self-signed
/// certificate that no CA of the cluster vouches for, and kube-apiserver, unless given
/// `--kubelet-certificate-authority`, does not verify it either: the connection is encrypted
/// and the kubelet authenticates the API server, but the API server trusts the address it
/// read from the Node object. The handshake signature is still checked, so the peer does
/// hold the key of the certificate it shows.
pub(crate) fn kubelet_client_config(
    material: &TlsMaterial,
) -> Result<rustls::ClientConfig, ApiServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = CertificateDer::pem_slice_iter(material.kubelet_client_cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error("kubelet client certificate", e))?;
    let key = PrivateKeyDer::from_pem_slice(material.kubelet_client_key.as_bytes())
        .map_err(|e| tls_error("kubelet client key", e))?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", e))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(UnverifiedKubelet { provider }))
        .with_client_auth_cert(chain, key)
        .map_err(|e| tls_error("kubelet client certificate", e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts whatever certificate a kubelet serves (see [`kubelet_client_config`]) while
/// checking handshake signatures with the provider's algorithms.
#[derive(Debug)]
struct UnverifiedKubelet {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for UnverifiedKubelet {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubelet_client_certificate_is_issued_once_for_the_apiserver_as_master() {
        let dir = tempfile::tempdir().unwrap();
        let names = ServingNames::standard(None, &[]);
        let first = ensure(dir.path(), &names).unwrap();
        let again = ensure(dir.path(), &names).unwrap();
        assert_eq!(first.kubelet_client_cert, again.kubelet_client_cert);
        assert_eq!(first.kubelet_client_key, again.kubelet_client_key);
        assert_ne!(first.kubelet_client_cert, first.admin_cert);
        let der = CertificateDer::from_pem_slice(first.kubelet_client_cert.as_bytes()).unwrap();
        let user = crate::auth::User::from_certificate(&der).unwrap();
        assert_eq!(user.name, "kube-apiserver-kubelet-client");
        assert_eq!(user.groups, ["system:masters", "system:authenticated"]);
        let config = kubelet_client_config(&first).unwrap();
        assert!(config.client_auth_cert_resolver.has_certs());
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
    }
}
