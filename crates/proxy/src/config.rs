//! The configuration of one load balancer, as the host agent hands it to the proxy.
//!
//! The shapes follow Octavia's objects (listeners, pools, members, health monitors, L7
//! policies and rules) so the agent translates field for field; Kubernetes Services are
//! fed through the same types. Unlike Octavia, every duration here is in milliseconds
//! (the agent converts a health monitor's `delay` and `timeout` from seconds), so the
//! fields carry the unit in their names where Octavia's do not say it.
//!
//! The TLS parts (certificates, settings, client and member certificates) are in
//! `config/tls.rs`. Parsing only checks shapes; [`ProxyConfig::validate`] (in
//! `config/validate.rs`) checks meaning.

mod tls;
mod validate;

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

pub use tls::{
    CRL_OF_ANOTHER_CA, ClientAuthentication, LISTENER_ALPN_PROTOCOLS, MemberTls,
    POOL_ALPN_PROTOCOLS, SUPPORTED_CIPHERS, TlsCertificate, TlsSettings, TlsVersion,
};
pub use validate::ConfigError;
pub(crate) use validate::{
    CompiledConfig, CompiledListener, CompiledPolicy, CompiledPool, CompiledRule, ExpectedCodes,
    Matcher, PolicyAction,
};

/// Octavia's default for `timeout_client_data` and `timeout_member_data`.
pub const DEFAULT_DATA_TIMEOUT_MS: u64 = 50_000;
/// Octavia's default for `timeout_member_connect`.
pub const DEFAULT_MEMBER_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// The largest `connection_limit` accepted, as in Octavia's haproxy driver (its maxconn
/// ceiling). It also keeps every count the data path makes from it (semaphore permits,
/// session tables) far from any integer or allocation limit.
pub const MAX_CONNECTION_LIMIT: i64 = 1_000_000;
/// The most sessions a UDP listener without a connection limit holds. Every new source
/// address opens a session (a socket and a task), sources are trivially spoofed, and a
/// session lives for the idle timeout: without a bound, a flood of spoofed datagrams would
/// exhaust file descriptors for the whole proxy.
pub const DEFAULT_UDP_SESSION_LIMIT: usize = 10_000;
/// The most sessions any UDP listener holds, whatever its connection limit (each one holds
/// a file descriptor).
pub const MAX_UDP_SESSIONS: usize = 65_536;
/// The longest timeout or delay accepted, in milliseconds: 24 hours, Octavia's ceiling.
/// Anything longer is a mistake in units, not a wish.
pub const MAX_TIMEOUT_MS: u64 = 86_400_000;

/// One load balancer: its listeners and the pools they send traffic to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyConfig {
    #[serde(default)]
    pub listeners: Vec<Listener>,
    #[serde(default)]
    pub pools: Vec<Pool>,
}

/// A port the load balancer serves on the VIP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listener {
    pub id: String,
    pub protocol: ListenerProtocol,
    /// The VIP and `protocol_port`. Port 0 binds an ephemeral port (tests).
    pub bind: SocketAddr,
    /// Concurrent connections (UDP: sessions); `None` or -1 is unlimited, otherwise
    /// 1..=[`MAX_CONNECTION_LIMIT`]. A UDP listener is never truly unlimited: see
    /// [`Listener::udp_session_limit`].
    #[serde(default)]
    pub connection_limit: Option<i64>,
    /// How long a client may stay silent, in milliseconds.
    #[serde(default = "default_data_timeout")]
    pub timeout_client_data: u64,
    /// How long connecting to one member may take, in milliseconds.
    #[serde(default = "default_member_connect_timeout")]
    pub timeout_member_connect: u64,
    /// How long a member may stay silent, in milliseconds.
    #[serde(default = "default_data_timeout")]
    pub timeout_member_data: u64,
    /// Headers added to requests (HTTP and TERMINATED_HTTPS listeners only).
    #[serde(default)]
    pub insert_headers: InsertHeaders,
    #[serde(default)]
    pub default_pool_id: Option<String>,
    /// Evaluated by `position`, first match wins (HTTP and TERMINATED_HTTPS only).
    #[serde(default)]
    pub l7_policies: Vec<L7Policy>,
    /// The serving certificate of a TERMINATED_HTTPS listener.
    #[serde(default)]
    pub tls: Option<TlsCertificate>,
    /// More certificates of a TERMINATED_HTTPS listener, picked by the name a client asks
    /// for (SNI): the first valid for that name serves it; other clients get `tls` (or,
    /// without one, the first of these). Octavia's `sni_container_refs`.
    #[serde(default)]
    pub sni: Vec<TlsCertificate>,
    /// How a TERMINATED_HTTPS listener negotiates TLS with clients. Left out of the
    /// JSON when it takes every default, as are the newer fields below, so proxies that
    /// predate them still read configurations that do not use them.
    #[serde(default, skip_serializing_if = "TlsSettings::is_default")]
    pub tls_settings: TlsSettings,
    /// The certificates a TERMINATED_HTTPS listener asks clients for; none when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_authentication: Option<ClientAuthentication>,
}

fn default_data_timeout() -> u64 {
    DEFAULT_DATA_TIMEOUT_MS
}

fn default_member_connect_timeout() -> u64 {
    DEFAULT_MEMBER_CONNECT_TIMEOUT_MS
}

impl Listener {
    /// The connection limit as a count; `None` when unlimited.
    pub fn connection_limit(&self) -> Option<usize> {
        match self.connection_limit {
            Some(limit) if limit > 0 => usize::try_from(limit).ok(),
            _ => None,
        }
    }
}

impl Listener {
    /// The most sessions a UDP listener holds: its connection limit, or
    /// [`DEFAULT_UDP_SESSION_LIMIT`] without one, and never more than
    /// [`MAX_UDP_SESSIONS`]. Datagrams that would open one more session are dropped and
    /// counted in the listener's `request_errors`.
    pub fn udp_session_limit(&self) -> usize {
        self.connection_limit()
            .unwrap_or(DEFAULT_UDP_SESSION_LIMIT)
            .min(MAX_UDP_SESSIONS)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ListenerProtocol {
    Tcp,
    Udp,
    Http,
    /// TLS passed through untouched: served like TCP.
    Https,
    TerminatedHttps,
}

impl ListenerProtocol {
    /// Whether listeners of this protocol hold a UDP socket rather than a TCP one.
    pub fn is_datagram(self) -> bool {
        self == ListenerProtocol::Udp
    }

    /// Whether the proxy reads HTTP on this listener (L7 policies, inserted headers).
    pub fn is_http(self) -> bool {
        matches!(
            self,
            ListenerProtocol::Http | ListenerProtocol::TerminatedHttps
        )
    }

    /// Octavia's name for the protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerProtocol::Tcp => "TCP",
            ListenerProtocol::Udp => "UDP",
            ListenerProtocol::Http => "HTTP",
            ListenerProtocol::Https => "HTTPS",
            ListenerProtocol::TerminatedHttps => "TERMINATED_HTTPS",
        }
    }
}

impl std::fmt::Display for ListenerProtocol {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Octavia's `insert_headers` keys that the proxy understands. The `X-SSL-*` ones
/// describe the client's certificate (TERMINATED_HTTPS listeners only); each is set as
/// HAProxy's `http-request set-header` in Octavia's amphora sets it, replacing any field
/// of that name the client sent, so a client cannot pass for another.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InsertHeaders {
    #[serde(rename = "X-Forwarded-For", default)]
    pub x_forwarded_for: bool,
    #[serde(rename = "X-Forwarded-Port", default)]
    pub x_forwarded_port: bool,
    #[serde(rename = "X-Forwarded-Proto", default)]
    pub x_forwarded_proto: bool,
    /// `0`: the certificate was verified, or none was sent (the handshake fails
    /// otherwise), as OpenSSL's verify result that HAProxy inserts.
    #[serde(
        rename = "X-SSL-Client-Verify",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub x_ssl_client_verify: bool,
    /// `1` or `0`: whether the client sent a certificate.
    #[serde(
        rename = "X-SSL-Client-Has-Cert",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub x_ssl_client_has_cert: bool,
    /// The certificate's subject, quoted, in OpenSSL's one-line form (`"/C=US/CN=a"`).
    #[serde(
        rename = "X-SSL-Client-DN",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub x_ssl_client_dn: bool,
    /// The subject's first common name, quoted.
    #[serde(
        rename = "X-SSL-Client-CN",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub x_ssl_client_cn: bool,
    /// The certificate's issuer, quoted, in the subject's form.
    #[serde(
        rename = "X-SSL-Issuer",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub x_ssl_issuer: bool,
    /// The SHA-1 of the certificate (DER), quoted uppercase hex.
    #[serde(
        rename = "X-SSL-Client-SHA1",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub x_ssl_client_sha1: bool,
    /// The start of the certificate's validity, quoted, as ASN.1 writes it
    /// (`YYMMDDhhmmssZ`).
    #[serde(
        rename = "X-SSL-Client-Not-Before",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub x_ssl_client_not_before: bool,
    /// The end of the certificate's validity, in the same form.
    #[serde(
        rename = "X-SSL-Client-Not-After",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub x_ssl_client_not_after: bool,
}

/// A field describing the client's certificate (see [`InsertHeaders`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslHeader {
    ClientVerify,
    ClientHasCert,
    ClientDn,
    ClientCn,
    Issuer,
    ClientSha1,
    ClientNotBefore,
    ClientNotAfter,
}

impl SslHeader {
    pub const ALL: [SslHeader; 8] = [
        SslHeader::ClientVerify,
        SslHeader::ClientHasCert,
        SslHeader::ClientDn,
        SslHeader::ClientCn,
        SslHeader::Issuer,
        SslHeader::ClientSha1,
        SslHeader::ClientNotBefore,
        SslHeader::ClientNotAfter,
    ];

    /// The field's name on the wire: lowercase, as HTTP/2 wants and HAProxy writes.
    pub fn field(self) -> &'static str {
        match self {
            SslHeader::ClientVerify => "x-ssl-client-verify",
            SslHeader::ClientHasCert => "x-ssl-client-has-cert",
            SslHeader::ClientDn => "x-ssl-client-dn",
            SslHeader::ClientCn => "x-ssl-client-cn",
            SslHeader::Issuer => "x-ssl-issuer",
            SslHeader::ClientSha1 => "x-ssl-client-sha1",
            SslHeader::ClientNotBefore => "x-ssl-client-not-before",
            SslHeader::ClientNotAfter => "x-ssl-client-not-after",
        }
    }

    /// The field's name, as Octavia's `insert_headers` key spells it.
    pub fn name(self) -> &'static str {
        match self {
            SslHeader::ClientVerify => "X-SSL-Client-Verify",
            SslHeader::ClientHasCert => "X-SSL-Client-Has-Cert",
            SslHeader::ClientDn => "X-SSL-Client-DN",
            SslHeader::ClientCn => "X-SSL-Client-CN",
            SslHeader::Issuer => "X-SSL-Issuer",
            SslHeader::ClientSha1 => "X-SSL-Client-SHA1",
            SslHeader::ClientNotBefore => "X-SSL-Client-Not-Before",
            SslHeader::ClientNotAfter => "X-SSL-Client-Not-After",
        }
    }
}

impl InsertHeaders {
    /// Whether the listener inserts the field `header`.
    pub fn ssl(&self, header: SslHeader) -> bool {
        let mut copy = *self;
        *copy.ssl_flag(header)
    }

    /// Sets whether the listener inserts the field `header`.
    pub fn set_ssl(&mut self, header: SslHeader, on: bool) {
        *self.ssl_flag(header) = on;
    }

    fn ssl_flag(&mut self, header: SslHeader) -> &mut bool {
        match header {
            SslHeader::ClientVerify => &mut self.x_ssl_client_verify,
            SslHeader::ClientHasCert => &mut self.x_ssl_client_has_cert,
            SslHeader::ClientDn => &mut self.x_ssl_client_dn,
            SslHeader::ClientCn => &mut self.x_ssl_client_cn,
            SslHeader::Issuer => &mut self.x_ssl_issuer,
            SslHeader::ClientSha1 => &mut self.x_ssl_client_sha1,
            SslHeader::ClientNotBefore => &mut self.x_ssl_client_not_before,
            SslHeader::ClientNotAfter => &mut self.x_ssl_client_not_after,
        }
    }

    /// Whether any field describing the client's certificate is inserted.
    pub fn any_ssl(&self) -> bool {
        SslHeader::ALL.into_iter().any(|header| self.ssl(header))
    }

    /// Whether any field at all is inserted.
    pub fn any(&self) -> bool {
        self.x_forwarded_for || self.x_forwarded_port || self.x_forwarded_proto || self.any_ssl()
    }
}

/// A layer 7 policy: when all its rules match a request, do `action`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L7Policy {
    pub id: String,
    pub action: L7Action,
    /// 1-based; lower goes first, ties keep the order of the list.
    #[serde(default = "default_position")]
    pub position: u32,
    #[serde(default)]
    pub redirect_pool_id: Option<String>,
    #[serde(default)]
    pub redirect_url: Option<String>,
    #[serde(default)]
    pub redirect_prefix: Option<String>,
    /// 301, 302, 303, 307 or 308; 302 when absent.
    #[serde(default)]
    pub redirect_http_code: Option<u16>,
    /// All must match (a policy without rules never matches, as in Octavia).
    #[serde(default)]
    pub rules: Vec<L7Rule>,
}

fn default_position() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum L7Action {
    RedirectToPool,
    RedirectToUrl,
    RedirectPrefix,
    Reject,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L7Rule {
    #[serde(rename = "type")]
    pub rule_type: L7RuleType,
    pub compare_type: L7CompareType,
    /// The header or cookie name (HEADER and COOKIE rules).
    #[serde(default)]
    pub key: Option<String>,
    pub value: String,
    #[serde(default)]
    pub invert: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum L7RuleType {
    Path,
    HostName,
    Header,
    Cookie,
    FileType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum L7CompareType {
    EqualTo,
    StartsWith,
    EndsWith,
    Contains,
    Regex,
}

/// A set of members that share an algorithm, persistence and health monitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pool {
    pub id: String,
    pub protocol: PoolProtocol,
    #[serde(default)]
    pub lb_algorithm: LbAlgorithm,
    #[serde(default)]
    pub session_persistence: Option<SessionPersistence>,
    #[serde(default)]
    pub members: Vec<Member>,
    #[serde(default)]
    pub health_monitor: Option<HealthMonitor>,
    /// Octavia's `tls_enabled`: connections to the members are TLS (after a PROXY
    /// header, if the pool sends one), their certificates unverified, as Octavia's
    /// HAProxy servers are (`ssl verify none`). Not for UDP pools. Left out of the JSON
    /// when false, so proxies that predate it still read their configurations.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_enabled: bool,
    /// With `tls_enabled`: how the proxy speaks TLS to the members, when not as Octavia
    /// does by default. Left out of the JSON when it takes every default.
    #[serde(default, skip_serializing_if = "MemberTls::is_default")]
    pub member_tls: MemberTls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PoolProtocol {
    Tcp,
    Udp,
    Http,
    Https,
    /// What the listener carries (TCP, or HTTP from an HTTP listener), each connection
    /// opening with a PROXY protocol version 1 header naming the client.
    Proxy,
    /// The same with a version 2 (binary) header.
    #[serde(rename = "PROXYV2")]
    ProxyV2,
}

impl PoolProtocol {
    /// Octavia's name for the protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolProtocol::Tcp => "TCP",
            PoolProtocol::Udp => "UDP",
            PoolProtocol::Http => "HTTP",
            PoolProtocol::Https => "HTTPS",
            PoolProtocol::Proxy => "PROXY",
            PoolProtocol::ProxyV2 => "PROXYV2",
        }
    }

    /// The PROXY protocol version member connections open with, for PROXY pools.
    pub(crate) fn proxy_protocol(self) -> Option<crate::proxy_protocol::Version> {
        match self {
            PoolProtocol::Proxy => Some(crate::proxy_protocol::Version::One),
            PoolProtocol::ProxyV2 => Some(crate::proxy_protocol::Version::Two),
            _ => None,
        }
    }
}

impl std::fmt::Display for PoolProtocol {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LbAlgorithm {
    #[default]
    RoundRobin,
    LeastConnections,
    SourceIp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionPersistence {
    #[serde(rename = "type")]
    pub persistence_type: PersistenceType,
    /// The application's cookie (APP_COOKIE only).
    #[serde(default)]
    pub cookie_name: Option<String>,
    /// How long an idle stickiness entry is kept, in milliseconds (SOURCE_IP and
    /// APP_COOKIE); 30 minutes when absent.
    #[serde(default)]
    pub persistence_timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PersistenceType {
    SourceIp,
    HttpCookie,
    AppCookie,
}

/// One backend server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Member {
    pub id: String,
    pub address: IpAddr,
    pub protocol_port: u16,
    /// 0..=256; 0 takes no new connections.
    #[serde(default = "default_weight")]
    pub weight: u16,
    /// Used only while no non-backup member is up.
    #[serde(default)]
    pub backup: bool,
    #[serde(default = "default_true")]
    pub admin_state_up: bool,
    /// Where health checks go instead of `address` (Octavia's `monitor_address`).
    #[serde(default)]
    pub monitor_address: Option<IpAddr>,
    /// Where health checks go instead of `protocol_port` (Octavia's `monitor_port`).
    #[serde(default)]
    pub monitor_port: Option<u16>,
}

fn default_weight() -> u16 {
    1
}

fn default_true() -> bool {
    true
}

impl Member {
    /// Where traffic for this member goes.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.protocol_port)
    }

    /// Where health checks for this member go.
    pub fn monitor_socket_addr(&self) -> SocketAddr {
        SocketAddr::new(
            self.monitor_address.unwrap_or(self.address),
            self.monitor_port.unwrap_or(self.protocol_port),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthMonitor {
    #[serde(rename = "type")]
    pub monitor_type: MonitorType,
    /// Time between checks of one member, in milliseconds.
    pub delay_ms: u64,
    /// How long one check may take, in milliseconds; at most `delay_ms`.
    pub timeout_ms: u64,
    /// Consecutive successes that bring a member in ERROR back ONLINE (1..=10).
    pub max_retries: u32,
    /// Consecutive failures that take an ONLINE member to ERROR (1..=10).
    #[serde(default = "default_max_retries_down")]
    pub max_retries_down: u32,
    /// HTTP and HTTPS monitors; GET when absent.
    #[serde(default)]
    pub http_method: Option<String>,
    /// HTTP and HTTPS monitors; `/` when absent.
    #[serde(default)]
    pub url_path: Option<String>,
    /// HTTP and HTTPS monitors: `200`, `200,202` or `200-204`; `200` when absent.
    #[serde(default)]
    pub expected_codes: Option<String>,
}

fn default_max_retries_down() -> u32 {
    3
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MonitorType {
    /// See [`crate::health`]: a TCP connect to the monitor port (no ICMP), or a
    /// UDP-CONNECT check on a UDP pool.
    #[serde(rename = "PING")]
    Ping,
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "HTTP")]
    Http,
    #[serde(rename = "HTTPS")]
    Https,
    #[serde(rename = "UDP-CONNECT")]
    UdpConnect,
}

impl ProxyConfig {
    /// Checks the configuration as a whole: references, ports, regexes, certificates,
    /// monitors and protocols. The error names the object and the problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        CompiledConfig::compile(self).map(drop)
    }

    pub fn listener(&self, id: &str) -> Option<&Listener> {
        self.listeners.iter().find(|listener| listener.id == id)
    }

    pub fn pool(&self, id: &str) -> Option<&Pool> {
        self.pools.iter().find(|pool| pool.id == id)
    }
}
