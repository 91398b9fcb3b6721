//! TLS for TERMINATED_HTTPS listeners: the rustls server configuration built from a
//! listener's PEM certificates and keys (checked at validation; with SNI certificates, the
//! one serving a handshake is picked by the name the client asks for), and the handshake
//! in front of the HTTP path.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::client::verify_server_name;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use tokio::sync::watch;

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
/// certificates (at least one of them), offering HTTP/2 and HTTP/1.1 through ALPN.
pub(crate) fn server_config(
    default: Option<&TlsCertificate>,
    sni: &[TlsCertificate],
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let provider = crypto_provider();
    let resolver = ByServerName {
        default: default
            .map(|certificate| certified_key(certificate, &provider))
            .transpose()?,
        named: sni
            .iter()
            .map(|certificate| certified_key(certificate, &provider))
            .collect::<Result<_, _>>()?,
    };
    if resolver.default.is_none() && resolver.named.is_empty() {
        return Err(TlsConfigError::NoCertificate);
    }
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsConfigError::Refused)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
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

/// Picks the certificate of a handshake as Octavia's SNI does: the first SNI certificate
/// valid for the name the client asks for (its subject alternative names, wildcards
/// included), else the default one (else the first SNI certificate).
#[derive(Debug)]
struct ByServerName {
    default: Option<Arc<CertifiedKey>>,
    named: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ByServerName {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let asked = client_hello
            .server_name()
            .and_then(|name| ServerName::try_from(name).ok());
        asked
            .and_then(|name| {
                self.named
                    .iter()
                    .find(|certified| valid_for(certified, &name))
            })
            .or(self.default.as_ref())
            .or(self.named.first())
            .cloned()
    }
}

fn valid_for(certified: &CertifiedKey, name: &ServerName<'_>) -> bool {
    certified
        .end_entity_cert()
        .and_then(ParsedCertificate::try_from)
        .is_ok_and(|parsed| verify_server_name(&parsed, name).is_ok())
}

/// The client side of HTTPS health checks. Octavia's HTTPS monitor does not verify member
/// certificates (members often serve self-signed ones), so the chain and name are not
/// checked; handshake signatures still are, so the peer must hold the certificate's key.
pub(crate) fn health_check_client_config() -> Arc<rustls::ClientConfig> {
    let provider = crypto_provider();
    let verifier = Arc::new(AcceptAnyServerCertificate {
        provider: Arc::clone(&provider),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Arc::new(config)
}

#[derive(Debug)]
struct AcceptAnyServerCertificate {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for AcceptAnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Serves one connection of a TERMINATED_HTTPS listener: the TLS handshake (bounded by
/// `timeout_client_data`), then HTTP on the decrypted stream. A failed or timed-out
/// handshake counts as a request error. `accepted` and `state` are as for
/// [`crate::http::serve_connection`]; the certificate is the one of accept time.
pub(crate) async fn serve_connection(
    accepted: Arc<ListenerRuntime>,
    state: watch::Receiver<Arc<ListenerRuntime>>,
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
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
            let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(b"h2");
            crate::http::serve_connection(accepted, state, tls_stream, peer, "https", serve, h2)
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
