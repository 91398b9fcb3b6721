//! The client side of TLS towards members: HTTPS health checks, and the connections of
//! pools with `tls_enabled`. By default, as Octavia's HAProxy servers (`ssl verify
//! none`), members' certificates are not verified (members often serve self-signed
//! ones); handshake signatures still are, so the peer must hold its certificate's key.
//! A pool's own settings (versions, ciphers, ALPN, a CA and CRLs, a client certificate)
//! get a configuration of their own.

use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use super::offer::{Offer, Trust};
use crate::config::{MemberTls, POOL_ALPN_PROTOCOLS};

/// The configuration of pools without settings of their own, and of health checks: one
/// for the process, so its session cache resumes sessions with members.
pub(crate) fn member_client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        pool_client_config(&MemberTls::default())
            .expect("the default member TLS settings are valid")
    }))
}

/// The client configuration of a pool with `member_tls`, or what is wrong with it.
pub(crate) fn pool_client_config(
    member_tls: &MemberTls,
) -> Result<Arc<rustls::ClientConfig>, String> {
    // Members are offered no ALPN protocol unless the pool names some, as before pools
    // had settings (a TCP pool's members may speak anything).
    let alpn = (&POOL_ALPN_PROTOCOLS[..], "a pool offers its members");
    let offer = Offer::of(&member_tls.settings, alpn, &[])?;
    let provider = offer.provider;
    let verifier: Arc<dyn ServerCertVerifier> = match &member_tls.ca_pem {
        Some(ca_pem) => {
            let trust = Trust::of(ca_pem, member_tls.crl_pem.as_deref())?;
            let verifier =
                WebPkiServerVerifier::builder_with_provider(trust.roots, Arc::clone(&provider))
                    .with_crls(trust.crls)
                    .enforce_revocation_expiration()
                    .build()
                    .map_err(|error| format!("the CA or CRL is refused: {error}"))?;
            Arc::new(NamedOnlyWhenAsked { verifier })
        }
        None if member_tls.crl_pem.is_some() => {
            return Err("a CRL needs a CA".to_owned());
        }
        None => Arc::new(AcceptAnyServerCertificate {
            provider: Arc::clone(&provider),
        }),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&offer.versions)
        .map_err(|error| error.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &member_tls.certificate {
        Some(certificate) => {
            let chain = CertificateDer::pem_slice_iter(certificate.certificate_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| format!("the client certificate PEM does not parse: {error}"))?;
            if chain.is_empty() {
                return Err("the client certificate PEM holds no certificate".to_owned());
            }
            let key = PrivateKeyDer::from_pem_slice(certificate.private_key_pem.as_bytes())
                .map_err(|error| format!("the client key PEM does not parse: {error}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|error| format!("the client certificate and key are refused: {error}"))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = offer.alpn_protocols;
    Ok(Arc::new(config))
}

/// Checks a member's certificate against a pool's CA (and CRLs), and its names only
/// when a name was asked for: a member addressed by its IP (no SNI) is not expected to
/// hold a certificate for that address, as HAProxy without `verifyhost` does not.
#[derive(Debug)]
struct NamedOnlyWhenAsked {
    verifier: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for NamedOnlyWhenAsked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verified {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if matches!(server_name, ServerName::IpAddress(_)) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier
            .verify_tls12_signature(message, certificate, signature)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier
            .verify_tls13_signature(message, certificate, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifier.supported_verify_schemes()
    }
}

/// Accepts any certificate the member shows (Octavia's default, `ssl verify none`),
/// checking only that the member holds its key.
#[derive(Debug)]
struct AcceptAnyServerCertificate {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyServerCertificate {
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
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
