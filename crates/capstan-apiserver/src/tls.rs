//! The cluster's certificates: a CA created on first start and kept under the data
//! directory, a serving certificate with SANs for every name and address the server answers
//! on (clients refuse a CN-only certificate), and an admin client certificate in
//! `O=system:masters` for the kubeconfig.

use crate::ApiServerError;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// PEM texts of everything the server and its kubeconfig need.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    pub ca_cert: String,
    pub serving_cert: String,
    pub serving_key: String,
    pub admin_cert: String,
    pub admin_key: String,
    /// The ECDSA P-256 key (PKCS#8 PEM) that signs service account tokens.
    pub service_account_key: String,
}

const CA_NAME: &str = "capstan-ca";

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

    let (admin_cert, admin_key) = match (read(&file("admin.crt")), read(&file("admin.key"))) {
        (Some(cert), Some(key)) => (cert, key),
        _ => {
            let key = KeyPair::generate().map_err(|e| tls_error("admin key", e))?;
            let mut admin = CertificateParams::new(Vec::<String>::new())
                .map_err(|e| tls_error("admin parameters", e))?;
            admin.distinguished_name.push(DnType::CommonName, "system:admin");
            admin.distinguished_name.push(DnType::OrganizationName, "system:masters");
            admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let cert = admin
                .signed_by(&key, &issuer)
                .map_err(|e| tls_error("admin certificate", e))?
                .pem();
            write_private(&file("admin.key"), &key.serialize_pem())?;
            write_private(&file("admin.crt"), &cert)?;
            (cert, key.serialize_pem())
        }
    };
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
        service_account_key,
    })
}
