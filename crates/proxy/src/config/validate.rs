//! Validation of a [`ProxyConfig`], which also compiles what the data path needs ready
//! made (sorted policies, regexes, header names, TLS configurations, expected codes), so
//! checking and serving can never disagree about a configuration.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;

use http::HeaderName;

use super::{
    HealthMonitor, L7Action, L7CompareType, L7Policy, L7Rule, L7RuleType, Listener,
    ListenerProtocol, MAX_CONNECTION_LIMIT, MAX_TIMEOUT_MS, Member, MonitorType, PersistenceType,
    Pool, PoolProtocol, ProxyConfig,
};
use crate::tls::{self, TlsConfigError};

/// What is wrong with a configuration, naming the object at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{kind} id must not be empty")]
    EmptyId { kind: &'static str },
    #[error("duplicate {kind} id {id:?}")]
    DuplicateId { kind: &'static str, id: String },
    #[error("listener {listener:?}: bind address {bind} clashes with listener {other:?}")]
    PortClash {
        listener: String,
        other: String,
        bind: SocketAddr,
    },
    #[error("listener {listener:?}: unknown pool {pool:?}")]
    UnknownPool { listener: String, pool: String },
    #[error(
        "listener {listener:?} ({listener_protocol}) cannot send to pool {pool:?} ({pool_protocol})"
    )]
    ProtocolMismatch {
        listener: String,
        listener_protocol: ListenerProtocol,
        pool: String,
        pool_protocol: PoolProtocol,
    },
    #[error("listener {listener:?}: {problem}")]
    InvalidListener { listener: String, problem: String },
    #[error("listener {listener:?} is TERMINATED_HTTPS but has no certificate")]
    MissingCertificate { listener: String },
    #[error("listener {listener:?}: unusable certificate or key")]
    InvalidCertificate {
        listener: String,
        #[source]
        source: TlsConfigError,
    },
    #[error("listener {listener:?}, l7 policy {policy:?}: {problem}")]
    InvalidPolicy {
        listener: String,
        policy: String,
        problem: String,
    },
    #[error("listener {listener:?}, l7 policy {policy:?}: invalid regex {pattern:?}")]
    InvalidRegex {
        listener: String,
        policy: String,
        pattern: String,
        #[source]
        source: Box<regex::Error>,
    },
    #[error("pool {pool:?}: {problem}")]
    InvalidPool { pool: String, problem: String },
    #[error("pool {pool:?}, member {member:?}: {problem}")]
    InvalidMember {
        pool: String,
        member: String,
        problem: String,
    },
    #[error(
        "pool {pool:?}: health monitor timeout {timeout_ms} ms exceeds its delay {delay_ms} ms"
    )]
    MonitorTimeoutExceedsDelay {
        pool: String,
        timeout_ms: u64,
        delay_ms: u64,
    },
    #[error("pool {pool:?}: invalid health monitor expected codes {codes:?}")]
    InvalidExpectedCodes { pool: String, codes: String },
    #[error("pool {pool:?}: health monitor: {problem}")]
    InvalidMonitor { pool: String, problem: String },
}

/// A configuration that passed validation, with what the data path needs precomputed.
#[derive(Debug, Clone)]
pub(crate) struct CompiledConfig {
    pub config: ProxyConfig,
    pub listeners: Vec<CompiledListener>,
    pub pools: Vec<CompiledPool>,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledListener {
    pub config: Listener,
    /// Sorted by position; policies without rules are left out (they never match).
    pub policies: Vec<CompiledPolicy>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledPool {
    pub config: Pool,
    /// Present when the pool has an HTTP or HTTPS monitor.
    pub expected_codes: Option<ExpectedCodes>,
    /// The TLS of a `tls_enabled` pool with settings of its own; others share
    /// [`tls::member_client_config`].
    pub member_tls: Option<Arc<rustls::ClientConfig>>,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledPolicy {
    pub id: String,
    pub action: PolicyAction,
    pub rules: Vec<CompiledRule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PolicyAction {
    Pool(String),
    RedirectToUrl { url: String, code: u16 },
    RedirectPrefix { prefix: String, code: u16 },
    Reject,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub rule_type: L7RuleType,
    /// The header name (HEADER) or cookie name (COOKIE).
    pub header: Option<HeaderName>,
    pub cookie: Option<String>,
    pub matcher: Matcher,
    pub invert: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Matcher {
    EqualTo(String),
    StartsWith(String),
    EndsWith(String),
    Contains(String),
    Regex(regex::Regex),
}

impl Matcher {
    pub fn matches(&self, subject: &str) -> bool {
        match self {
            Matcher::EqualTo(value) => subject == value,
            Matcher::StartsWith(value) => subject.starts_with(value.as_str()),
            Matcher::EndsWith(value) => subject.ends_with(value.as_str()),
            Matcher::Contains(value) => subject.contains(value.as_str()),
            Matcher::Regex(regex) => regex.is_match(subject),
        }
    }
}

/// The status codes an HTTP health check accepts: `200`, `200,202`, `200-204`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExpectedCodes(Vec<RangeInclusive<u16>>);

impl ExpectedCodes {
    pub fn parse(text: &str) -> Option<ExpectedCodes> {
        let mut ranges = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            let (low, high) = match part.split_once('-') {
                Some((low, high)) => (low.trim(), high.trim()),
                None => (part, part),
            };
            let low: u16 = low.parse().ok()?;
            let high: u16 = high.parse().ok()?;
            if !(100..=599).contains(&low) || !(100..=599).contains(&high) || low > high {
                return None;
            }
            ranges.push(low..=high);
        }
        Some(ExpectedCodes(ranges))
    }

    /// Octavia's default, `200`.
    pub fn ok_only() -> ExpectedCodes {
        ExpectedCodes(vec![200..=200])
    }

    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|range| range.contains(&code))
    }
}

const REDIRECT_CODES: [u16; 5] = [301, 302, 303, 307, 308];
const HTTP_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "CONNECT", "PATCH",
];

impl CompiledConfig {
    pub fn compile(config: &ProxyConfig) -> Result<CompiledConfig, ConfigError> {
        check_unique_ids(config)?;
        check_port_clashes(&config.listeners)?;
        let pools = config
            .pools
            .iter()
            .map(compile_pool)
            .collect::<Result<Vec<_>, _>>()?;
        let listeners = config
            .listeners
            .iter()
            .map(|listener| compile_listener(listener, config))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CompiledConfig {
            config: config.clone(),
            listeners,
            pools,
        })
    }
}

fn check_unique_ids(config: &ProxyConfig) -> Result<(), ConfigError> {
    fn unique<'a>(
        kind: &'static str,
        ids: impl Iterator<Item = &'a str>,
    ) -> Result<(), ConfigError> {
        let mut seen = HashSet::new();
        for id in ids {
            if id.is_empty() {
                return Err(ConfigError::EmptyId { kind });
            }
            if !seen.insert(id) {
                return Err(ConfigError::DuplicateId {
                    kind,
                    id: id.to_owned(),
                });
            }
        }
        Ok(())
    }
    unique("listener", config.listeners.iter().map(|l| l.id.as_str()))?;
    unique("pool", config.pools.iter().map(|p| p.id.as_str()))?;
    unique(
        "l7 policy",
        config
            .listeners
            .iter()
            .flat_map(|l| &l.l7_policies)
            .map(|p| p.id.as_str()),
    )?;
    for pool in &config.pools {
        unique("member", pool.members.iter().map(|m| m.id.as_str()))?;
    }
    Ok(())
}

/// Two listeners clash when they use the same transport and port on the same address, or
/// on any address when either binds the wildcard. Port 0 (ephemeral) never clashes.
fn check_port_clashes(listeners: &[Listener]) -> Result<(), ConfigError> {
    for (index, listener) in listeners.iter().enumerate() {
        for other in &listeners[..index] {
            let same_transport = listener.protocol.is_datagram() == other.protocol.is_datagram();
            let (a, b) = (listener.bind, other.bind);
            let same_address =
                a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified();
            if same_transport && a.port() != 0 && a.port() == b.port() && same_address {
                return Err(ConfigError::PortClash {
                    listener: listener.id.clone(),
                    other: other.id.clone(),
                    bind: listener.bind,
                });
            }
        }
    }
    Ok(())
}

fn compatible(listener: ListenerProtocol, pool: PoolProtocol) -> bool {
    match listener {
        ListenerProtocol::Udp => pool == PoolProtocol::Udp,
        // Octavia's pairs (its VALID_LISTENER_POOL_PROTOCOL_MAP). PROXY pools carry what
        // their listener does, after the header; a TCP listener relays to any TCP member.
        ListenerProtocol::Http | ListenerProtocol::TerminatedHttps => matches!(
            pool,
            PoolProtocol::Http | PoolProtocol::Proxy | PoolProtocol::ProxyV2
        ),
        ListenerProtocol::Tcp => matches!(
            pool,
            PoolProtocol::Tcp
                | PoolProtocol::Http
                | PoolProtocol::Https
                | PoolProtocol::Proxy
                | PoolProtocol::ProxyV2
        ),
        ListenerProtocol::Https => matches!(
            pool,
            PoolProtocol::Tcp | PoolProtocol::Https | PoolProtocol::Proxy | PoolProtocol::ProxyV2
        ),
    }
}

fn check_pool_reference(
    listener: &Listener,
    pool_id: &str,
    config: &ProxyConfig,
) -> Result<(), ConfigError> {
    let Some(pool) = config.pool(pool_id) else {
        return Err(ConfigError::UnknownPool {
            listener: listener.id.clone(),
            pool: pool_id.to_owned(),
        });
    };
    if !compatible(listener.protocol, pool.protocol) {
        return Err(ConfigError::ProtocolMismatch {
            listener: listener.id.clone(),
            listener_protocol: listener.protocol,
            pool: pool.id.clone(),
            pool_protocol: pool.protocol,
        });
    }
    Ok(())
}

fn compile_listener(
    listener: &Listener,
    config: &ProxyConfig,
) -> Result<CompiledListener, ConfigError> {
    let invalid = |problem: &str| ConfigError::InvalidListener {
        listener: listener.id.clone(),
        problem: problem.to_owned(),
    };
    match listener.connection_limit {
        None | Some(-1) => {}
        Some(limit) if (1..=MAX_CONNECTION_LIMIT).contains(&limit) => {}
        Some(_) => {
            return Err(invalid(&format!(
                "connection limit must be -1 (unlimited) or within 1..={MAX_CONNECTION_LIMIT}"
            )));
        }
    }
    let timeouts = [
        listener.timeout_client_data,
        listener.timeout_member_connect,
        listener.timeout_member_data,
    ];
    if timeouts
        .iter()
        .any(|timeout| !(1..=MAX_TIMEOUT_MS).contains(timeout))
    {
        return Err(invalid(&format!(
            "timeouts must be within 1..={MAX_TIMEOUT_MS} ms"
        )));
    }
    let insert = listener.insert_headers;
    if insert.any() && !listener.protocol.is_http() {
        return Err(invalid(
            "insert headers need an HTTP or TERMINATED_HTTPS listener",
        ));
    }
    let terminated = listener.protocol == ListenerProtocol::TerminatedHttps;
    if insert.any_ssl() && !terminated {
        return Err(invalid(
            "X-SSL-* insert headers need a TERMINATED_HTTPS listener",
        ));
    }
    if !terminated
        && (!listener.tls_settings.is_default() || listener.client_authentication.is_some())
    {
        return Err(invalid(
            "TLS settings and client authentication need a TERMINATED_HTTPS listener",
        ));
    }
    if !listener.l7_policies.is_empty() && !listener.protocol.is_http() {
        return Err(invalid(
            "l7 policies need an HTTP or TERMINATED_HTTPS listener",
        ));
    }
    if let Some(pool_id) = &listener.default_pool_id {
        check_pool_reference(listener, pool_id, config)?;
    }
    let has_certificates = listener.tls.is_some() || !listener.sni.is_empty();
    let tls = match listener.protocol {
        ListenerProtocol::TerminatedHttps if !has_certificates => {
            return Err(ConfigError::MissingCertificate {
                listener: listener.id.clone(),
            });
        }
        ListenerProtocol::TerminatedHttps => {
            let offer = tls::Offer::of_listener(
                &listener.tls_settings,
                listener.client_authentication.as_ref(),
            )
            .map_err(|problem| invalid(&problem))?;
            Some(
                tls::server_config(listener.tls.as_ref(), &listener.sni, offer).map_err(
                    |source| ConfigError::InvalidCertificate {
                        listener: listener.id.clone(),
                        source,
                    },
                )?,
            )
        }
        _ if has_certificates => {
            return Err(invalid("a certificate needs a TERMINATED_HTTPS listener"));
        }
        _ => None,
    };
    let mut policies = Vec::new();
    let mut ordered: Vec<&L7Policy> = listener.l7_policies.iter().collect();
    // A stable sort keeps list order among equal positions.
    ordered.sort_by_key(|policy| policy.position);
    for policy in ordered {
        let compiled = compile_policy(listener, policy, config)?;
        if !compiled.rules.is_empty() {
            policies.push(compiled);
        }
    }
    Ok(CompiledListener {
        config: listener.clone(),
        policies,
        tls,
    })
}

fn compile_policy(
    listener: &Listener,
    policy: &L7Policy,
    config: &ProxyConfig,
) -> Result<CompiledPolicy, ConfigError> {
    let invalid = |problem: &str| ConfigError::InvalidPolicy {
        listener: listener.id.clone(),
        policy: policy.id.clone(),
        problem: problem.to_owned(),
    };
    if policy.position == 0 {
        return Err(invalid("position starts at 1"));
    }
    let redirects = matches!(
        policy.action,
        L7Action::RedirectToUrl | L7Action::RedirectPrefix
    );
    let code = match policy.redirect_http_code {
        Some(_) if !redirects => {
            return Err(invalid(
                "redirect_http_code needs a REDIRECT_TO_URL or REDIRECT_PREFIX action",
            ));
        }
        Some(code) if !REDIRECT_CODES.contains(&code) => {
            return Err(invalid(
                "redirect_http_code must be 301, 302, 303, 307 or 308",
            ));
        }
        Some(code) => code,
        None => 302,
    };
    let action = match policy.action {
        L7Action::RedirectToPool => {
            let Some(pool_id) = &policy.redirect_pool_id else {
                return Err(invalid("REDIRECT_TO_POOL needs redirect_pool_id"));
            };
            check_pool_reference(listener, pool_id, config)?;
            PolicyAction::Pool(pool_id.clone())
        }
        L7Action::RedirectToUrl => {
            let Some(url) = &policy.redirect_url else {
                return Err(invalid("REDIRECT_TO_URL needs redirect_url"));
            };
            if !is_absolute_http_url(url) {
                return Err(invalid("redirect_url must be an absolute http(s) URL"));
            }
            PolicyAction::RedirectToUrl {
                url: url.clone(),
                code,
            }
        }
        L7Action::RedirectPrefix => {
            let Some(prefix) = &policy.redirect_prefix else {
                return Err(invalid("REDIRECT_PREFIX needs redirect_prefix"));
            };
            if !is_absolute_http_url(prefix) {
                return Err(invalid("redirect_prefix must be an absolute http(s) URL"));
            }
            PolicyAction::RedirectPrefix {
                prefix: prefix.trim_end_matches('/').to_owned(),
                code,
            }
        }
        L7Action::Reject => PolicyAction::Reject,
    };
    let rules = policy
        .rules
        .iter()
        .map(|rule| compile_rule(listener, policy, rule))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CompiledPolicy {
        id: policy.id.clone(),
        action,
        rules,
    })
}

fn is_absolute_http_url(text: &str) -> bool {
    match text.parse::<http::Uri>() {
        Ok(uri) => {
            matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.authority().is_some()
                && http::HeaderValue::from_str(text).is_ok()
        }
        Err(_) => false,
    }
}

fn compile_rule(
    listener: &Listener,
    policy: &L7Policy,
    rule: &L7Rule,
) -> Result<CompiledRule, ConfigError> {
    let invalid = |problem: &str| ConfigError::InvalidPolicy {
        listener: listener.id.clone(),
        policy: policy.id.clone(),
        problem: problem.to_owned(),
    };
    if rule.value.is_empty() {
        return Err(invalid("a rule needs a value"));
    }
    let (header, cookie) = match rule.rule_type {
        L7RuleType::Header => {
            let Some(key) = &rule.key else {
                return Err(invalid("a HEADER rule needs a key"));
            };
            let name = HeaderName::from_bytes(key.as_bytes())
                .map_err(|_| invalid("a HEADER rule's key must be a header name"))?;
            (Some(name), None)
        }
        L7RuleType::Cookie => {
            let Some(key) = &rule.key else {
                return Err(invalid("a COOKIE rule needs a key"));
            };
            if !is_cookie_name(key) {
                return Err(invalid("a COOKIE rule's key must be a cookie name"));
            }
            (None, Some(key.clone()))
        }
        _ if rule.key.is_some() => {
            return Err(invalid("only HEADER and COOKIE rules take a key"));
        }
        _ => (None, None),
    };
    if rule.rule_type == L7RuleType::FileType
        && !matches!(
            rule.compare_type,
            L7CompareType::EqualTo | L7CompareType::Regex
        )
    {
        return Err(invalid("a FILE_TYPE rule compares with EQUAL_TO or REGEX"));
    }
    // Host names compare without regard to case, as HTTP defines them.
    let value =
        if rule.rule_type == L7RuleType::HostName && rule.compare_type != L7CompareType::Regex {
            rule.value.to_ascii_lowercase()
        } else {
            rule.value.clone()
        };
    let matcher = match rule.compare_type {
        L7CompareType::EqualTo => Matcher::EqualTo(value),
        L7CompareType::StartsWith => Matcher::StartsWith(value),
        L7CompareType::EndsWith => Matcher::EndsWith(value),
        L7CompareType::Contains => Matcher::Contains(value),
        L7CompareType::Regex => Matcher::Regex(
            regex::RegexBuilder::new(&value)
                .case_insensitive(rule.rule_type == L7RuleType::HostName)
                .build()
                .map_err(|source| ConfigError::InvalidRegex {
                    listener: listener.id.clone(),
                    policy: policy.id.clone(),
                    pattern: value.clone(),
                    source: Box::new(source),
                })?,
        ),
    };
    Ok(CompiledRule {
        rule_type: rule.rule_type,
        header,
        cookie,
        matcher,
        invert: rule.invert,
    })
}

/// A cookie name is an RFC 6265 token: visible ASCII without separators.
pub(crate) fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&byte))
}

/// A cookie value as RFC 6265 allows it unquoted: visible ASCII except `"`, `,`, `;`
/// and `\`.
fn is_cookie_value(value: &str) -> bool {
    value
        .bytes()
        .all(|byte| byte.is_ascii_graphic() && !b"\",;\\".contains(&byte))
}

fn compile_pool(pool: &Pool) -> Result<CompiledPool, ConfigError> {
    let invalid = |problem: &str| ConfigError::InvalidPool {
        pool: pool.id.clone(),
        problem: problem.to_owned(),
    };
    if pool.tls_enabled && pool.protocol == PoolProtocol::Udp {
        return Err(invalid("tls_enabled is not for UDP pools"));
    }
    if let Some(persistence) = &pool.session_persistence {
        match persistence.persistence_type {
            PersistenceType::AppCookie => match &persistence.cookie_name {
                Some(name) if is_cookie_name(name) => {}
                Some(_) => return Err(invalid("cookie_name must be a cookie name")),
                None => return Err(invalid("APP_COOKIE persistence needs cookie_name")),
            },
            _ if persistence.cookie_name.is_some() => {
                return Err(invalid("cookie_name needs APP_COOKIE persistence"));
            }
            _ => {}
        }
        let cookie_based = persistence.persistence_type != PersistenceType::SourceIp;
        let http = matches!(
            pool.protocol,
            PoolProtocol::Http | PoolProtocol::Proxy | PoolProtocol::ProxyV2
        );
        if cookie_based && !http {
            return Err(invalid(
                "cookie persistence needs an HTTP, PROXY or PROXYV2 pool",
            ));
        }
        if persistence
            .persistence_timeout_ms
            .is_some_and(|timeout| !(1..=MAX_TIMEOUT_MS).contains(&timeout))
        {
            return Err(invalid(&format!(
                "persistence_timeout_ms must be within 1..={MAX_TIMEOUT_MS}"
            )));
        }
    }
    let cookie_persistence = pool
        .session_persistence
        .as_ref()
        .is_some_and(|persistence| persistence.persistence_type == PersistenceType::HttpCookie);
    let mut endpoints = HashSet::new();
    for member in &pool.members {
        check_member(pool, member)?;
        if cookie_persistence && !is_cookie_value(&member.id) {
            // The id is the value of the SRV cookie: `;`, `,`, spaces or quotes would
            // break it or add attributes.
            let problem = "with HTTP_COOKIE persistence the id is a cookie value: \
                           visible ASCII except \" , ; \\";
            return Err(ConfigError::InvalidMember {
                pool: pool.id.clone(),
                member: member.id.clone(),
                problem: problem.into(),
            });
        }
        if !endpoints.insert(member.socket_addr()) {
            return Err(ConfigError::InvalidMember {
                pool: pool.id.clone(),
                member: member.id.clone(),
                problem: format!("another member already has {}", member.socket_addr()),
            });
        }
    }
    let expected_codes = match &pool.health_monitor {
        Some(monitor) => check_monitor(pool, monitor)?,
        None => None,
    };
    let member_tls =
        match (pool.tls_enabled, pool.member_tls.is_default()) {
            (_, true) => None,
            (false, false) => {
                return Err(ConfigError::InvalidPool {
                    pool: pool.id.clone(),
                    problem: "member TLS settings need tls_enabled".into(),
                });
            }
            (true, false) => Some(tls::pool_client_config(&pool.member_tls).map_err(
                |problem| ConfigError::InvalidPool {
                    pool: pool.id.clone(),
                    problem: format!("member TLS: {problem}"),
                },
            )?),
        };
    Ok(CompiledPool {
        config: pool.clone(),
        expected_codes,
        member_tls,
    })
}

fn check_member(pool: &Pool, member: &Member) -> Result<(), ConfigError> {
    let invalid = |problem: &str| ConfigError::InvalidMember {
        pool: pool.id.clone(),
        member: member.id.clone(),
        problem: problem.to_owned(),
    };
    if member.weight > 256 {
        return Err(invalid("weight must be within 0..=256"));
    }
    if member.protocol_port == 0 || member.monitor_port == Some(0) {
        return Err(invalid("ports must be within 1..=65535"));
    }
    if member.address.is_unspecified() {
        return Err(invalid("address must not be the unspecified address"));
    }
    Ok(())
}

fn check_monitor(
    pool: &Pool,
    monitor: &HealthMonitor,
) -> Result<Option<ExpectedCodes>, ConfigError> {
    let invalid = |problem: &str| ConfigError::InvalidMonitor {
        pool: pool.id.clone(),
        problem: problem.to_owned(),
    };
    if !(1..=MAX_TIMEOUT_MS).contains(&monitor.delay_ms)
        || !(1..=MAX_TIMEOUT_MS).contains(&monitor.timeout_ms)
    {
        return Err(invalid(&format!(
            "delay and timeout must be within 1..={MAX_TIMEOUT_MS} ms"
        )));
    }
    if monitor.timeout_ms > monitor.delay_ms {
        return Err(ConfigError::MonitorTimeoutExceedsDelay {
            pool: pool.id.clone(),
            timeout_ms: monitor.timeout_ms,
            delay_ms: monitor.delay_ms,
        });
    }
    if !(1..=10).contains(&monitor.max_retries) || !(1..=10).contains(&monitor.max_retries_down) {
        return Err(invalid(
            "max_retries and max_retries_down must be within 1..=10",
        ));
    }
    let udp_pool = pool.protocol == PoolProtocol::Udp;
    match monitor.monitor_type {
        MonitorType::UdpConnect if !udp_pool => {
            return Err(invalid("UDP-CONNECT monitors need a UDP pool"));
        }
        MonitorType::Https if udp_pool => {
            return Err(invalid("a UDP pool cannot have an HTTPS monitor"));
        }
        _ => {}
    }
    if !matches!(monitor.monitor_type, MonitorType::Http | MonitorType::Https) {
        if monitor.http_method.is_some()
            || monitor.url_path.is_some()
            || monitor.expected_codes.is_some()
        {
            return Err(invalid(
                "http_method, url_path and expected_codes need an HTTP or HTTPS monitor",
            ));
        }
        return Ok(None);
    }
    if let Some(method) = &monitor.http_method
        && !HTTP_METHODS.contains(&method.as_str())
    {
        return Err(invalid("unknown http_method"));
    }
    if let Some(path) = &monitor.url_path
        && (!path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err())
    {
        return Err(invalid("url_path must be a path starting with /"));
    }
    let codes = monitor.expected_codes.as_deref().unwrap_or("200");
    match ExpectedCodes::parse(codes) {
        Some(expected) => Ok(Some(expected)),
        None => Err(ConfigError::InvalidExpectedCodes {
            pool: pool.id.clone(),
            codes: codes.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests;
