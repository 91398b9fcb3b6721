//! TLS for TERMINATED_HTTPS listeners: the rustls server configuration built from a
//! listener's PEM certificates and keys (checked at validation; with SNI certificates, the
//! one serving a handshake is picked by the name the client asks for, an exact name before
//! a wildcard, and among several for that name by the signatures the client can check,
//! ECDSA before RSA) and its TLS settings (`offer.rs`: versions, cipher suites, ALPN,
//! client certificates), and the handshake in front of the HTTP path, which learns the
//! client's certificate (`client_certificate.rs`). Also the client side towards members.

mod client_certificate;
mod member;
mod offer;

use std::collections::HashMap;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SignatureAlgorithm, SignatureScheme};

use tokio::sync::watch;

pub(crate) use client_certificate::{ClientCertificate, field_value as client_certificate_field};
pub(crate) use member::{member_client_config, pool_client_config};
pub(crate) use offer::Offer;

use crate::config::TlsCertificate;
use crate::listener::{ListenerRuntime, ServeContext};

/// Why a listener's certificate and key cannot serve TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("the certificate PEM holds no certificate")]
    NoCertificate,
    #[error("the certificate PEM does not parse")]
    CertificatePem(#[source] rustls::pki_types::pem::Error),
    #[error("the private key PEM does not parse")]
    PrivateKeyPem(#[source] rustls::pki_types::pem::Error),
    #[error(
        "the certificate and key are refused (unsupported key, or a key that does not match the certificate)"
    )]
    Refused(#[source] rustls::Error),
}

/// The crypto provider is named rather than taken from the process default, so the
/// proxy behaves the same whichever rustls features other crates in the build enable.
pub(crate) fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the server side of a TERMINATED_HTTPS listener serving `default` and the `sni`
/// certificates (at least one of them), making the listener's `offer`.
pub(crate) fn server_config(
    default: Option<&TlsCertificate>,
    sni: &[TlsCertificate],
    offer: Offer,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let provider = offer.provider;
    let mut resolver = ByServerName {
        default: default
            .map(|certificate| certified_key(certificate, &provider))
            .transpose()?,
        first: None,
        exact: HashMap::new(),
        wildcard: HashMap::new(),
    };
    for certificate in sni {
        let certified = certified_key(certificate, &provider)?;
        resolver.add(&certified);
        resolver.first.get_or_insert(certified);
    }
    if resolver.default.is_none() && resolver.first.is_none() {
        return Err(TlsConfigError::NoCertificate);
    }
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&offer.versions)
        .map_err(TlsConfigError::Refused)?;
    let builder = match offer.client_verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = offer.alpn_protocols;
    Ok(Arc::new(config))
}

/// A certificate chain with its signing key, the key checked against the certificate.
fn certified_key(
    certificate: &TlsCertificate,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsConfigError> {
    let chain = CertificateDer::pem_slice_iter(certificate.certificate_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsConfigError::CertificatePem)?;
    if chain.is_empty() {
        return Err(TlsConfigError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(certificate.private_key_pem.as_bytes())
        .map_err(TlsConfigError::PrivateKeyPem)?;
    let certified =
        CertifiedKey::from_der(chain, key, provider).map_err(TlsConfigError::Refused)?;
    Ok(Arc::new(certified))
}

/// Picks the certificate of a handshake by the name the client asks for, as HAProxy
/// (Octavia's amphora) does: an SNI certificate with that exact name, else one with a
/// wildcard covering it (`*.example.com` covers one label); else the default certificate,
/// else the first SNI one. Among several certificates for the name, the client gets one
/// whose key signs with a scheme it offers, an ECDSA or EdDSA key before an RSA one (a
/// listener may hold both for one name, as with HAProxy), the first listed among equals.
/// A certificate's names are its subject alternative DNS names and its common name, read
/// once when the configuration is built, so a handshake costs two map lookups.
#[derive(Debug)]
struct ByServerName {
    default: Option<Arc<CertifiedKey>>,
    first: Option<Arc<CertifiedKey>>,
    /// Lowercase names, each with its certificates in the listener's order.
    exact: HashMap<String, Vec<Arc<CertifiedKey>>>,
    /// `example.com` for `*.example.com`.
    wildcard: HashMap<String, Vec<Arc<CertifiedKey>>>,
}

impl ByServerName {
    fn add(&mut self, certified: &Arc<CertifiedKey>) {
        let Some(end_entity) = certified.cert.first() else {
            return;
        };
        for name in certificate_names(end_entity) {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let (names, name) = match name.strip_prefix("*.") {
                Some(parent) => (&mut self.wildcard, parent.to_owned()),
                None => (&mut self.exact, name),
            };
            if name.is_empty() {
                continue;
            }
            // A certificate naming one name twice (as a SAN and its common name) is
            // listed once.
            let listed = names.entry(name).or_default();
            if !listed.iter().any(|known| Arc::ptr_eq(known, certified)) {
                listed.push(Arc::clone(certified));
            }
        }
    }

    /// The certificate for the name `asked` of a client offering `schemes`.
    fn by_name(&self, asked: &str, schemes: &[SignatureScheme]) -> Option<&Arc<CertifiedKey>> {
        let asked = asked.trim_end_matches('.').to_ascii_lowercase();
        let listed = self.exact.get(&asked).or_else(|| {
            let (label, parent) = asked.split_once('.')?;
            (!label.is_empty())
                .then(|| self.wildcard.get(parent))
                .flatten()
        })?;
        for_client(listed, schemes)
    }
}

/// Of the certificates `listed` for one name, the one for a client offering `schemes`:
/// the first whose key it can check, ECDSA and EdDSA keys before RSA ones; else the
/// first (the handshake then fails as it would with it alone).
fn for_client<'a>(
    listed: &'a [Arc<CertifiedKey>],
    schemes: &[SignatureScheme],
) -> Option<&'a Arc<CertifiedKey>> {
    let rank = |certified: &Arc<CertifiedKey>| match certified.key.algorithm() {
        SignatureAlgorithm::ECDSA | SignatureAlgorithm::ED25519 | SignatureAlgorithm::ED448 => 0,
        _ => 1,
    };
    listed
        .iter()
        .filter(|certified| certified.key.choose_scheme(schemes).is_some())
        .min_by_key(|certified| rank(certified))
        .or_else(|| listed.first())
}

impl ResolvesServerCert for ByServerName {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes = client_hello.signature_schemes();
        client_hello
            .server_name()
            .and_then(|asked| self.by_name(asked, schemes))
            .or(self.default.as_ref())
            .or(self.first.as_ref())
            .cloned()
    }
}

/// The DNS names a certificate is for: its subject alternative names, then its common
/// names (HAProxy takes both); none if it does not parse (rustls took it already).
fn certificate_names(der: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, certificate)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = certificate
        .subject_alternative_name()
        .ok()
        .flatten()
        .into_iter()
        .flat_map(|extension| extension.value.general_names.iter())
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            _ => None,
        })
        .collect();
    names.extend(
        certificate
            .subject()
            .iter_common_name()
            .filter_map(|common| common.as_str().ok())
            .map(str::to_owned),
    );
    names
}

/// Serves one connection of a TERMINATED_HTTPS listener: the TLS handshake (bounded by
/// `timeout_client_data`), then HTTP on the decrypted stream. A failed or timed-out
/// handshake counts as a request error. `accepted` and `state` are as for
/// [`crate::http::serve_connection`]; the certificate is the one of accept time.
pub(crate) async fn serve_connection(
    accepted: Arc<ListenerRuntime>,
    state: watch::Receiver<Arc<ListenerRuntime>>,
    stream: tokio::net::TcpStream,
    origin: crate::pool::Origin,
    serve: ServeContext,
) {
    let Some(config) = accepted.compiled.tls.clone() else {
        // Validation refuses a TERMINATED_HTTPS listener without a certificate.
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let handshake_timeout = std::time::Duration::from_millis(accepted.config().timeout_client_data);
    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls_stream)) => {
            let session = tls_stream.get_ref().1;
            let tls = crate::http::ClientTls {
                h2: session.alpn_protocol() == Some(b"h2"),
                sni: session.server_name().map(Arc::from),
                certificate: session
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|der| ClientCertificate::of(der))
                    .map(Arc::new),
            };
            crate::http::serve_connection(accepted, state, tls_stream, origin, serve, Some(tls))
                .await;
        }
        Ok(Err(error)) => {
            tracing::debug!(%error, "TLS handshake failed");
            accepted.stats.add_request_error();
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            accepted.stats.add_request_error();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certified(names: &[&str], common_name: Option<&str>) -> Arc<CertifiedKey> {
        certified_with(names, common_name, &rcgen::PKCS_ECDSA_P256_SHA256)
    }

    fn certified_with(
        names: &[&str],
        common_name: Option<&str>,
        algorithm: &'static rcgen::SignatureAlgorithm,
    ) -> Arc<CertifiedKey> {
        let names = names
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<Vec<_>>();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(common_name) = common_name {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, common_name);
        }
        let key = if *algorithm == rcgen::PKCS_RSA_SHA256 {
            // ring generates no RSA keys: a throwaway one made for these tests.
            rcgen::KeyPair::from_pem(include_str!("../testdata/rsa-2048-test-key.pem")).unwrap()
        } else {
            rcgen::KeyPair::generate_for(algorithm).unwrap()
        };
        let certificate = TlsCertificate {
            certificate_pem: params.self_signed(&key).unwrap().pem(),
            private_key_pem: key.serialize_pem(),
        };
        certified_key(&certificate, &crypto_provider()).unwrap()
    }

    #[test]
    fn sni_prefers_an_exact_name_to_a_wildcard_and_takes_common_names() {
        let wildcard = certified(&["*.shop.test"], None);
        let exact = certified(&["www.shop.test"], Some("common.shop.test"));
        let common = certified(&[], Some("legacy.test"));
        let later = certified(&["www.shop.test", "Other.Test"], None);
        let mut resolver = ByServerName {
            default: None,
            first: None,
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        };
        for certified in [&wildcard, &exact, &common, &later] {
            resolver.add(certified);
        }
        let serves = |asked: &str, expected: &Arc<CertifiedKey>| {
            resolver
                .by_name(asked, ANY_CLIENT)
                .is_some_and(|served| Arc::ptr_eq(served, expected))
        };
        // The exact name wins over a wildcard listed before it, and the first of two
        // certificates with one name wins; names are matched without case or a final dot.
        assert!(serves("www.shop.test", &exact));
        assert!(serves("WWW.Shop.Test.", &exact));
        assert!(serves("cart.shop.test", &wildcard));
        assert!(serves("other.test", &later));
        // A certificate without subject alternative names is found by its common name;
        // one with them by those and its common name, as HAProxy indexes both.
        assert!(serves("legacy.test", &common));
        assert!(serves("common.shop.test", &exact));
        // A wildcard covers one label only.
        assert!(resolver.by_name("a.b.shop.test", ANY_CLIENT).is_none());
        assert!(resolver.by_name("shop.test", ANY_CLIENT).is_none());
        assert!(resolver.by_name(".shop.test", ANY_CLIENT).is_none());
    }

    /// What a client that checks every signature rustls knows offers.
    const ANY_CLIENT: &[SignatureScheme] = &[
        SignatureScheme::ECDSA_NISTP256_SHA256,
        SignatureScheme::ED25519,
        SignatureScheme::RSA_PSS_SHA256,
        SignatureScheme::RSA_PKCS1_SHA256,
    ];

    #[test]
    fn among_certificates_for_one_name_a_client_gets_one_it_can_check() {
        let ed25519 = certified_with(&["www.shop.test"], None, &rcgen::PKCS_ED25519);
        let ecdsa = certified_with(&["www.shop.test"], None, &rcgen::PKCS_ECDSA_P256_SHA256);
        let mut resolver = ByServerName {
            default: None,
            first: None,
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        };
        resolver.add(&ed25519);
        resolver.add(&ecdsa);
        let served = |schemes: &[SignatureScheme]| {
            let served = resolver.by_name("www.shop.test", schemes).unwrap();
            if Arc::ptr_eq(served, &ed25519) {
                "ed25519"
            } else {
                "ecdsa"
            }
        };
        assert_eq!(served(&[SignatureScheme::ECDSA_NISTP256_SHA256]), "ecdsa");
        assert_eq!(served(&[SignatureScheme::ED25519]), "ed25519");
        // Both checkable: the first listed.
        assert_eq!(served(ANY_CLIENT), "ed25519");
        // Neither: the first listed (the handshake fails as it would with it alone).
        assert_eq!(served(&[SignatureScheme::RSA_PSS_SHA256]), "ed25519");

        // An RSA certificate listed first: a client that checks ECDSA gets ECDSA (as
        // HAProxy prefers it), one that checks RSA only gets RSA.
        let rsa = certified_with(&["api.shop.test"], None, &rcgen::PKCS_RSA_SHA256);
        let ecdsa = certified_with(&["api.shop.test"], None, &rcgen::PKCS_ECDSA_P256_SHA256);
        resolver.add(&rsa);
        resolver.add(&ecdsa);
        let serves = |schemes: &[SignatureScheme], expected: &Arc<CertifiedKey>| {
            resolver
                .by_name("api.shop.test", schemes)
                .is_some_and(|served| Arc::ptr_eq(served, expected))
        };
        assert!(serves(ANY_CLIENT, &ecdsa));
        assert!(serves(&[SignatureScheme::RSA_PSS_SHA256], &rsa));
        assert!(serves(&[SignatureScheme::RSA_PKCS1_SHA256], &rsa));
    }
}
