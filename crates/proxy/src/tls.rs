//! TLS for TERMINATED_HTTPS listeners: the rustls server configuration built from a
//! listener's PEM certificate and key (checked at validation), and the handshake in front
//! of the HTTP path.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

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

/// Builds the server side of a TERMINATED_HTTPS listener, offering HTTP/2 and HTTP/1.1
/// through ALPN.
pub(crate) fn server_config(
    certificate: &TlsCertificate,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let chain = CertificateDer::pem_slice_iter(certificate.certificate_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsConfigError::CertificatePem)?;
    if chain.is_empty() {
        return Err(TlsConfigError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(certificate.private_key_pem.as_bytes())
        .map_err(TlsConfigError::PrivateKeyPem)?;
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsConfigError::Refused)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(TlsConfigError::Refused)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
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
