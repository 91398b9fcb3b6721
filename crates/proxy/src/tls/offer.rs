//! What a TERMINATED_HTTPS listener offers in its handshakes, from Octavia's listener
//! TLS attributes: the TLS versions, the cipher suites (named as OpenSSL names them), the
//! ALPN protocols, and whether and how client certificates are asked for and checked.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{CipherSuite, RootCertStore, SupportedProtocolVersion};
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

use crate::config::{
    CRL_OF_ANOTHER_CA, ClientAuthentication, LISTENER_ALPN_PROTOCOLS, SUPPORTED_CIPHERS,
    TlsSettings, TlsVersion,
};

/// OpenSSL's names of the cipher suites the proxy has (see [`SUPPORTED_CIPHERS`]), with
/// rustls's.
const CIPHERS: [(&str, CipherSuite); 9] = [
    (
        "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_128_GCM_SHA256,
    ),
    (
        "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_AES_256_GCM_SHA384,
    ),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// A listener's TLS settings in rustls's terms, checked.
pub(crate) struct Offer {
    /// The crypto provider with the cipher suites offered.
    pub provider: Arc<rustls::crypto::CryptoProvider>,
    pub versions: Vec<&'static SupportedProtocolVersion>,
    pub alpn_protocols: Vec<Vec<u8>>,
    /// Checks client certificates; `None` asks for none.
    pub client_verifier: Option<Arc<dyn ClientCertVerifier>>,
}

impl Offer {
    /// The offer of a TERMINATED_HTTPS listener with `settings` and `clients`, or what is
    /// wrong with them.
    pub fn of_listener(
        settings: &TlsSettings,
        clients: Option<&ClientAuthentication>,
    ) -> Result<Offer, String> {
        let alpn = (&LISTENER_ALPN_PROTOCOLS[..], "a listener serves");
        let mut offer = Offer::of(settings, alpn, &LISTENER_ALPN_PROTOCOLS)?;
        offer.client_verifier = clients
            .map(|clients| client_verifier(clients, &offer.provider))
            .transpose()?;
        Ok(offer)
    }

    /// The versions, cipher suites and ALPN protocols of `settings`, which may only name
    /// the ALPN protocols `allowed` (`which` says what they are for), and without any
    /// offer `default`.
    pub(super) fn of(
        settings: &TlsSettings,
        (allowed, which): (&[&str], &str),
        default: &[&str],
    ) -> Result<Offer, String> {
        let mut provider = super::crypto_provider();
        let suites = cipher_suites(settings.ciphers.as_deref())?;
        Arc::make_mut(&mut provider)
            .cipher_suites
            .retain(|suite| suites.contains(&suite.suite()));
        let versions = if settings.versions.is_empty() {
            TlsVersion::ALL.to_vec()
        } else {
            settings.versions.clone()
        };
        let versions: Vec<&'static SupportedProtocolVersion> =
            versions.into_iter().map(rustls_version).collect();
        if !provider
            .cipher_suites
            .iter()
            .any(|suite| versions.contains(&suite.version()))
        {
            return Err(
                "the cipher list leaves no cipher suite for the TLS versions offered".to_owned(),
            );
        }
        let alpn_protocols = if settings.alpn_protocols.is_empty() {
            default
                .iter()
                .map(|protocol| (*protocol).to_owned())
                .collect()
        } else {
            settings.alpn_protocols.clone()
        };
        if let Some(unknown) = alpn_protocols
            .iter()
            .find(|protocol| !allowed.contains(&protocol.as_str()))
        {
            return Err(format!(
                "ALPN protocol {unknown:?} is not one {which} ({})",
                allowed.join(", ")
            ));
        }
        Ok(Offer {
            provider,
            versions,
            alpn_protocols: alpn_protocols.into_iter().map(String::into_bytes).collect(),
            client_verifier: None,
        })
    }
}

fn rustls_version(version: TlsVersion) -> &'static SupportedProtocolVersion {
    match version {
        TlsVersion::Tls12 => &rustls::version::TLS12,
        TlsVersion::Tls13 => &rustls::version::TLS13,
    }
}

/// Whether `suite` is one of TLS 1.3's (they are named `TLS_…` by OpenSSL too).
fn is_tls13(suite: CipherSuite) -> bool {
    CIPHERS[..3].iter().any(|(_, known)| *known == suite)
}

/// The cipher suites an OpenSSL cipher list `ciphers` selects (see
/// [`TlsSettings::ciphers`]); all without one.
fn cipher_suites(ciphers: Option<&str>) -> Result<Vec<CipherSuite>, String> {
    let all = || CIPHERS.iter().map(|(_, suite)| *suite).collect();
    let Some(ciphers) = ciphers else {
        return Ok(all());
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-+!:@=_.".contains(c);
    if ciphers.is_empty() || !ciphers.chars().all(allowed) {
        return Err(
            "invalid characters in the cipher list: only alphanumeric, -, +, !, :, @, =, _, and . are allowed"
                .to_owned(),
        );
    }
    let suite = |name: &str| {
        CIPHERS
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, suite)| *suite)
    };
    // `!NAME` and `-NAME` take a suite out, as in OpenSSL; `+NAME` only moves one.
    let (excluded, named): (Vec<&str>, Vec<&str>) = ciphers
        .split(':')
        .partition(|name| name.starts_with(['!', '-']));
    let excluded: Vec<CipherSuite> = excluded
        .iter()
        .filter_map(|name| suite(&name[1..]))
        .collect();
    let named: Vec<CipherSuite> = named.into_iter().filter_map(suite).collect();
    let names_tls13 = named.iter().any(|suite| is_tls13(*suite));
    let mut suites: Vec<CipherSuite> = all();
    suites.retain(|suite| {
        (named.contains(suite) || (!names_tls13 && is_tls13(*suite))) && !excluded.contains(suite)
    });
    if named.iter().all(|suite| excluded.contains(suite)) {
        return Err(format!(
            "the cipher list names none of the cipher suites the proxy has: {}",
            SUPPORTED_CIPHERS.join(":")
        ));
    }
    Ok(suites)
}

/// The checker of client certificates: they must chain to the CA certificates and be
/// revoked by none of the CRLs (see [`Trust`]).
fn client_verifier(
    clients: &ClientAuthentication,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let trust = Trust::of(&clients.ca_pem, clients.crl_pem.as_deref())?;
    let mut builder = WebPkiClientVerifier::builder_with_provider(trust.roots, provider.clone())
        .with_crls(trust.crls)
        .enforce_revocation_expiration();
    if !clients.mandatory {
        builder = builder.allow_unauthenticated();
    }
    builder
        .build()
        .map_err(|error| format!("the CA or CRL is refused: {error}"))
}

/// What a peer's certificate is checked against: CA certificates, and CRLs of those CAs,
/// which must be current and cover each certificate of the chain below the CA (as
/// OpenSSL's `X509_V_FLAG_CRL_CHECK_ALL`, which HAProxy sets with a `crl-file`).
pub(super) struct Trust {
    pub roots: Arc<RootCertStore>,
    pub crls: Vec<CertificateRevocationListDer<'static>>,
}

impl Trust {
    /// The CA certificates in `ca_pem` and the CRLs in `crl_pem`, each CRL issued by one
    /// of those CAs (another's could never say whether their certificates are revoked).
    pub fn of(ca_pem: &str, crl_pem: Option<&str>) -> Result<Trust, String> {
        let mut roots = RootCertStore::empty();
        let mut subjects = Vec::new();
        for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let certificate = certificate
                .map_err(|error| format!("the CA certificate PEM does not parse: {error}"))?;
            if let Ok((_, parsed)) = X509Certificate::from_der(certificate.as_ref()) {
                subjects.push(parsed.subject().as_raw().to_vec());
            }
            roots
                .add(certificate)
                .map_err(|error| format!("the CA certificate is refused: {error}"))?;
        }
        if roots.is_empty() {
            return Err("the CA PEM holds no certificate".to_owned());
        }
        let crls = match crl_pem {
            Some(pem) => CertificateRevocationListDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| format!("the CRL PEM does not parse: {error}"))?,
            None => Vec::new(),
        };
        if crl_pem.is_some() && crls.is_empty() {
            return Err("the CRL PEM holds no revocation list".to_owned());
        }
        for crl in &crls {
            let (_, parsed) = CertificateRevocationList::from_der(crl.as_ref())
                .map_err(|error| format!("the CRL does not parse: {error}"))?;
            if !subjects
                .iter()
                .any(|subject| subject == parsed.issuer().as_raw())
            {
                return Err(CRL_OF_ANOTHER_CA.to_owned());
            }
        }
        Ok(Trust {
            roots: Arc::new(roots),
            crls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cipher_table_is_the_published_list_and_the_provider_has_each() {
        let names: Vec<&str> = CIPHERS.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, SUPPORTED_CIPHERS);
        let provider = super::super::crypto_provider();
        for (name, suite) in CIPHERS {
            assert!(
                provider.cipher_suites.iter().any(|s| s.suite() == suite),
                "{name}"
            );
            assert_eq!(
                is_tls13(suite),
                name.starts_with("TLS_"),
                "{name}: TLS 1.3's are named TLS_*"
            );
        }
    }

    #[test]
    fn a_cipher_list_selects_what_it_names_and_passes_over_the_rest() {
        // Octavia's default (OWASP suite B) names three DHE suites the proxy lacks: the
        // others are offered.
        let octavia_default = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";
        assert_eq!(cipher_suites(Some(octavia_default)).unwrap().len(), 9);
        assert_eq!(cipher_suites(None).unwrap().len(), 9);
        // TLS 1.2 suites alone limit TLS 1.2; TLS 1.3 keeps all of its own (HAProxy's
        // `ciphers` does not touch TLS 1.3).
        let suites = cipher_suites(Some("ECDHE-RSA-AES256-GCM-SHA384:!aNULL")).unwrap();
        assert_eq!(
            suites,
            vec![
                CipherSuite::TLS13_AES_128_GCM_SHA256,
                CipherSuite::TLS13_AES_256_GCM_SHA384,
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
                CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            ]
        );
        // A TLS 1.3 suite named limits TLS 1.3 too.
        let suites = cipher_suites(Some("TLS_AES_256_GCM_SHA384")).unwrap();
        assert_eq!(suites, vec![CipherSuite::TLS13_AES_256_GCM_SHA384]);
        // Exclusions take suites out, TLS 1.3's too.
        let suites = cipher_suites(Some(
            "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:!ECDHE-RSA-AES128-GCM-SHA256:-TLS_AES_128_GCM_SHA256",
        ))
        .unwrap();
        assert_eq!(
            suites,
            vec![
                CipherSuite::TLS13_AES_256_GCM_SHA384,
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
                CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            ]
        );
        assert!(
            cipher_suites(Some(
                "ECDHE-RSA-AES256-GCM-SHA384:!ECDHE-RSA-AES256-GCM-SHA384"
            ))
            .is_err()
        );
        // Nothing the proxy has, or characters no cipher list holds: refused.
        assert!(cipher_suites(Some("DHE-RSA-AES128-SHA:HIGH")).is_err());
        assert!(cipher_suites(Some("ECDHE-RSA-AES256-GCM-SHA384 ")).is_err());
        assert!(cipher_suites(Some("")).is_err());
    }

    #[test]
    fn settings_are_checked_against_each_other() {
        let settings = |versions: Vec<TlsVersion>, ciphers: &str, alpn: &[&str]| TlsSettings {
            versions,
            ciphers: Some(ciphers.to_owned()),
            alpn_protocols: alpn.iter().map(|p| (*p).to_owned()).collect(),
        };
        let offer = Offer::of_listener(&TlsSettings::default(), None).unwrap();
        assert_eq!(offer.versions.len(), 2);
        assert_eq!(offer.alpn_protocols, [&b"h2"[..], b"http/1.1", b"http/1.0"]);
        assert!(offer.client_verifier.is_none());
        // TLS 1.2 only, with TLS 1.3 suites only: nothing could be negotiated.
        let tls13 = settings(vec![TlsVersion::Tls13], "TLS_AES_128_GCM_SHA256", &[]);
        assert!(Offer::of_listener(&tls13, None).is_ok());
        let mismatch = settings(vec![TlsVersion::Tls12], "TLS_AES_128_GCM_SHA256", &[]);
        assert!(Offer::of_listener(&mismatch, None).is_err());
        let spdy = settings(vec![], "TLS_AES_128_GCM_SHA256", &["spdy/3"]);
        assert!(Offer::of_listener(&spdy, None).is_err());
        let http1 = settings(vec![], "TLS_AES_128_GCM_SHA256", &["http/1.1"]);
        assert_eq!(
            Offer::of_listener(&http1, None).unwrap().alpn_protocols,
            [b"http/1.1"]
        );
    }

    /// A CA named `name`, as PEM, and its issuer.
    fn authority(name: &str) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        (pem, rcgen::Issuer::new(params, key))
    }

    /// An empty, current revocation list of `issuer`.
    fn crl(issuer: &rcgen::Issuer<'static, rcgen::KeyPair>) -> String {
        rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2025, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(issuer)
        .unwrap()
        .pem()
        .unwrap()
    }

    #[test]
    fn client_authentication_needs_a_ca_and_crls_that_parse_and_belong_together() {
        let clients = |ca_pem: &str, crl_pem: Option<&str>| ClientAuthentication {
            mandatory: true,
            ca_pem: ca_pem.to_owned(),
            crl_pem: crl_pem.map(str::to_owned),
        };
        let (ca, issuer) = authority("Shop CA");
        let (_, other) = authority("Other CA");
        let settings = TlsSettings::default();
        let offer = Offer::of_listener(&settings, Some(&clients(&ca, None))).unwrap();
        assert!(offer.client_verifier.is_some());
        assert!(Offer::of_listener(&settings, Some(&clients(&ca, Some(&crl(&issuer))))).is_ok());
        for broken in [
            clients("", None),
            clients("not a certificate", None),
            clients(&ca, Some("")),
            clients(&ca, Some(&ca.replace("CERTIFICATE", "X509 CRL"))),
            // Another CA's list could never say whether this CA's certificates are revoked.
            clients(&ca, Some(&crl(&other))),
        ] {
            assert!(
                Offer::of_listener(&settings, Some(&broken)).is_err(),
                "{broken:?}"
            );
        }
    }
}
