//! The TLS parts of a configuration: a TERMINATED_HTTPS listener's certificates, its
//! settings (versions, cipher suites, ALPN) and the client certificates it asks for, and
//! how a `tls_enabled` pool speaks TLS to its members. What the proxy can offer is
//! named here too, for the faces to show and check against.

use serde::{Deserialize, Serialize};

/// A TLS protocol version, by Octavia's name. rustls has no older ones (SSLv3, TLSv1 and
/// TLSv1.1 are refused by the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TlsVersion {
    #[serde(rename = "TLSv1.2")]
    Tls12,
    #[serde(rename = "TLSv1.3")]
    Tls13,
}

impl TlsVersion {
    pub const ALL: [TlsVersion; 2] = [TlsVersion::Tls12, TlsVersion::Tls13];

    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        }
    }

    pub fn from_name(name: &str) -> Option<TlsVersion> {
        TlsVersion::ALL
            .into_iter()
            .find(|version| version.name() == name)
    }
}

/// The cipher suites the proxy has, by OpenSSL's names (which Octavia's `tls_ciphers`
/// use), TLS 1.3's first, in the order of Octavia's default list.
pub const SUPPORTED_CIPHERS: [&str; 9] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
];

/// The ALPN protocols a TERMINATED_HTTPS listener may offer (Octavia's), and offers
/// when its settings name none.
pub const LISTENER_ALPN_PROTOCOLS: [&str; 3] = ["h2", "http/1.1", "http/1.0"];

/// The ALPN protocols a pool may offer its members: the proxy speaks HTTP/1.1 to
/// members, so not `h2`.
pub const POOL_ALPN_PROTOCOLS: [&str; 2] = ["http/1.1", "http/1.0"];

/// How one TLS side of the proxy negotiates: Octavia's `tls_versions`, `tls_ciphers`
/// and `alpn_protocols`. Each left empty takes its default: both TLS versions, every
/// cipher suite in [`SUPPORTED_CIPHERS`], and [`LISTENER_ALPN_PROTOCOLS`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsSettings {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<TlsVersion>,
    /// OpenSSL cipher names separated by `:`, as HAProxy's `ciphers` takes them: the
    /// suites named that the proxy has are offered, other names are passed over (as
    /// OpenSSL passes over names it lacks), and a list naming none it has is refused.
    /// Like HAProxy's `ciphers`, the list limits TLS 1.2's suites; TLS 1.3's are limited
    /// too when it names any of them, and all offered otherwise. A name after `!` or `-`
    /// takes its suite out, TLS 1.3's included; OpenSSL's keywords (`HIGH`, `aNULL`) are
    /// not understood, and the order of the list does not rank the suites (the client's
    /// preference does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphers: Option<String>,
    /// ALPN protocol ids, in the order the proxy prefers them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn_protocols: Vec<String>,
}

impl TlsSettings {
    pub fn is_default(&self) -> bool {
        *self == TlsSettings::default()
    }

    /// What validation finds wrong with these settings for a TERMINATED_HTTPS listener.
    pub fn check_for_listener(&self) -> Result<(), String> {
        crate::tls::Offer::of_listener(self, None).map(drop)
    }

    /// What validation finds wrong with these settings for a pool's member connections.
    pub fn check_for_pool(&self) -> Result<(), String> {
        crate::tls::pool_client_config(&MemberTls {
            settings: self.clone(),
            ..MemberTls::default()
        })
        .map(drop)
    }
}

/// What [`ClientAuthentication::check`] says of a CRL that another CA issued.
pub const CRL_OF_ANOTHER_CA: &str = "a CRL was not issued by the CA";

impl ClientAuthentication {
    /// What validation finds wrong with the CA and CRL.
    pub fn check(&self) -> Result<(), String> {
        crate::tls::Offer::of_listener(&TlsSettings::default(), Some(self)).map(drop)
    }
}

/// Client certificates a TERMINATED_HTTPS listener asks for: Octavia's
/// `client_authentication` (OPTIONAL or MANDATORY) with its `client_ca_tls_container_ref`
/// and `client_crl_container_ref`. A certificate a client sends must chain to `ca_pem`
/// and, with CRLs, be revoked by none of them (nor may any certificate of its chain):
/// otherwise the handshake fails, as with HAProxy's `verify optional` or `required`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientAuthentication {
    /// A client without a certificate is refused (MANDATORY), or served (OPTIONAL).
    pub mandatory: bool,
    /// PEM of the certificate authorities client certificates must chain to.
    pub ca_pem: String,
    /// PEM of certificate revocation lists, one for each certificate authority in the
    /// chains (a chain whose revocation cannot be checked is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_pem: Option<String>,
}

/// PEM text of a TERMINATED_HTTPS listener's certificate chain and private key.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsCertificate {
    /// The leaf certificate first, then intermediates.
    pub certificate_pem: String,
    pub private_key_pem: String,
}

impl std::fmt::Debug for TlsCertificate {
    // The private key must not reach logs through a `{:?}` of the configuration.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TlsCertificate")
            .field("certificate_pem", &self.certificate_pem)
            .field("private_key_pem", &"<redacted>")
            .finish()
    }
}

/// How a pool with `tls_enabled` speaks TLS to its members: Octavia's pool
/// `tls_versions`, `tls_ciphers`, `alpn_protocols`, `ca_tls_container_ref`,
/// `crl_container_ref` and `tls_container_ref`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemberTls {
    /// ALPN protocols among [`POOL_ALPN_PROTOCOLS`] (the proxy speaks HTTP/1.1 to
    /// members); none offered by default.
    #[serde(default, skip_serializing_if = "TlsSettings::is_default")]
    pub settings: TlsSettings,
    /// PEM of the CAs members' certificates must chain to (and CRLs in `crl_pem`, as
    /// for client certificates). Without one, members' certificates are not checked
    /// (Octavia's `ssl verify none`). With one, a member's names are checked against
    /// the server name asked for when a TERMINATED_HTTPS client's SNI is passed on, and
    /// not otherwise (members are addressed by IP), as Octavia's HAProxy does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_pem: Option<String>,
    /// The certificate and key the proxy shows members that ask for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<TlsCertificate>,
}

impl MemberTls {
    pub fn is_default(&self) -> bool {
        *self == MemberTls::default()
    }
}
