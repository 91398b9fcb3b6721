//! TLS for the API: a cluster CA kept in the data directory (created on first start) and a
//! serving certificate signed by it, issued afresh at every start for the names and
//! addresses the server answers on, so a changed listen address never leaves a stale
//! certificate behind.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub const CA_CERT_FILE: &str = "ca.crt";
const CA_KEY_FILE: &str = "ca.key";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading or writing {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("generating or loading a certificate")]
    Certificate(#[from] rcgen::Error),
    #[error("building the TLS configuration")]
    Rustls(#[from] rustls::Error),
}

/// The certificates the server runs with.
pub struct TlsMaterial {
    /// The CA certificate clients trust (also in `DIR/ca.crt`).
    pub ca_pem: String,
    pub config: Arc<rustls::ServerConfig>,
}

/// Loads the CA from `dir` (creating it on first start) and issues a serving certificate
/// for `names` (DNS names or IP addresses).
pub fn load_or_create(dir: &Path, names: &[String]) -> Result<TlsMaterial, TlsError> {
    let ca_cert_path = dir.join(CA_CERT_FILE);
    let ca_key_path = dir.join(CA_KEY_FILE);
    let (ca_pem, ca_key) = if ca_cert_path.exists() && ca_key_path.exists() {
        let ca_pem = read(&ca_cert_path)?;
        let ca_key = KeyPair::from_pem(&read(&ca_key_path)?)?;
        (ca_pem, ca_key)
    } else {
        let ca_key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = name("ronghe-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2124, 1, 1);
        let ca = params.self_signed(&ca_key)?;
        // The key first: a CA certificate without its key would be unusable next start.
        crate::files::write_private(&ca_key_path, ca_key.serialize_pem().as_bytes()).map_err(
            |source| TlsError::Io {
                path: ca_key_path.clone(),
                source,
            },
        )?;
        crate::files::write_public(&ca_cert_path, ca.pem().as_bytes()).map_err(|source| {
            TlsError::Io {
                path: ca_cert_path.clone(),
                source,
            }
        })?;
        (ca.pem(), ca_key)
    };
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;

    let serving_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name("ronghe-apiserver");
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let serving = params.signed_by(&serving_key, &issuer)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(serving.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(serving_key.serialize_der())),
        )?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsMaterial {
        ca_pem,
        config: Arc::new(config),
    })
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })
}
