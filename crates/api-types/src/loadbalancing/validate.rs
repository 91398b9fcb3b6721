//! Checks of load-balancing objects that need no other object, each problem naming the
//! field, the bad value and Octavia's wording, so the Kubernetes face lists them as field
//! causes and the Octavia face as its fault string. What the data plane itself decides
//! (regexes, header and cookie names, monitor timings, redirect URLs) is checked by
//! running the proxy's own validation ([`super::proxy`]).

use ronghe_proxy::config::{LISTENER_ALPN_PROTOCOLS, SslHeader, TlsVersion};
use serde_json::{Value, json};

use super::proxy;
use super::{
    HealthMonitorSpec, L7PolicySpec, L7RuleSpec, ListenerSpec, LoadBalancerSpec, MemberSpec,
    PROVIDER, PoolSpec,
};
use crate::network::ipam;
pub use crate::network::validate::Problem;

pub const LISTENER_PROTOCOLS: &[&str] = &["TCP", "UDP", "HTTP", "HTTPS", "TERMINATED_HTTPS"];
pub const POOL_PROTOCOLS: &[&str] = &["TCP", "UDP", "HTTP", "HTTPS", "PROXY", "PROXYV2"];
pub const ALGORITHMS: &[&str] = &["ROUND_ROBIN", "LEAST_CONNECTIONS", "SOURCE_IP"];
pub const PERSISTENCE_TYPES: &[&str] = &["SOURCE_IP", "HTTP_COOKIE", "APP_COOKIE"];
pub const MONITOR_TYPES: &[&str] = &["PING", "TCP", "HTTP", "HTTPS", "UDP-CONNECT"];
pub const L7_ACTIONS: &[&str] = &[
    "REDIRECT_TO_POOL",
    "REDIRECT_TO_URL",
    "REDIRECT_PREFIX",
    "REJECT",
];
pub const L7_RULE_TYPES: &[&str] = &["PATH", "HOST_NAME", "HEADER", "COOKIE", "FILE_TYPE"];
pub const L7_COMPARE_TYPES: &[&str] =
    &["EQUAL_TO", "STARTS_WITH", "ENDS_WITH", "CONTAINS", "REGEX"];
pub const INSERT_HEADERS: &[&str] = &["X-Forwarded-For", "X-Forwarded-Port", "X-Forwarded-Proto"];
/// Octavia's TLS version names, oldest first.
pub const TLS_VERSIONS: &[&str] = &["SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"];
pub const CLIENT_AUTHENTICATIONS: &[&str] = &["NONE", "OPTIONAL", "MANDATORY"];
/// The largest timeout, in milliseconds: a day (the proxy's bound; Octavia allows a year).
pub const MAX_TIMEOUT_MS: u64 = ronghe_proxy::config::MAX_TIMEOUT_MS;

fn problem(
    field: impl Into<String>,
    value: impl Into<Value>,
    message: impl Into<String>,
) -> Problem {
    Problem {
        field: field.into(),
        value: value.into(),
        message: message.into(),
    }
}

/// Octavia's words for a value outside an enumeration.
fn one_of(
    problems: &mut Vec<Problem>,
    field: &str,
    attribute: &str,
    value: &str,
    allowed: &[&str],
) {
    if !allowed.contains(&value) {
        problems.push(problem(
            field,
            value,
            format!(
                "Invalid input for field/attribute {attribute}. Value: '{value}'. Value should be one of: {}",
                allowed.join(", ")
            ),
        ));
    }
}

fn range(
    problems: &mut Vec<Problem>,
    field: &str,
    attribute: &str,
    value: i64,
    bounds: std::ops::RangeInclusive<i64>,
) {
    if !bounds.contains(&value) {
        problems.push(problem(
            field,
            value,
            format!(
                "Invalid input for field/attribute {attribute}. Value: '{value}'. Value must be between {} and {}.",
                bounds.start(),
                bounds.end()
            ),
        ));
    }
}

fn address(problems: &mut Vec<Problem>, field: &str, attribute: &str, value: &str) {
    if ipam::parse_address(value).is_err() {
        problems.push(problem(
            field,
            value,
            format!(
                "Invalid input for field/attribute {attribute}. Value: '{value}'. Value should be IPv4 or IPv6 format"
            ),
        ));
    }
}

/// The data plane's verdict on a candidate, as a problem of `field`.
fn proxy_says(problems: &mut Vec<Problem>, field: &str, value: Value, verdict: Result<(), String>) {
    if let Err(message) = verdict {
        problems.push(problem(field, value, message));
    }
}

pub fn load_balancer(spec: &LoadBalancerSpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    if spec.vip_subnet_id.is_empty()
        && spec.vip_network_id.is_empty()
        && spec.vip_port_id.is_empty()
    {
        problems.push(problem(
            "spec.vipSubnetId",
            "",
            "Validation failure: VIP must contain one of: vip_port_id, vip_network_id, vip_subnet_id.",
        ));
    }
    if !spec.vip_address.is_empty() {
        address(
            &mut problems,
            "spec.vipAddress",
            "vip_address",
            &spec.vip_address,
        );
    }
    if !spec.provider.is_empty() && spec.provider != PROVIDER {
        problems.push(problem(
            "spec.provider",
            spec.provider.as_str(),
            format!("Provider '{}' is not enabled.", spec.provider),
        ));
    }
    problems
}

pub fn listener(spec: &ListenerSpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    one_of(
        &mut problems,
        "spec.protocol",
        "protocol",
        &spec.protocol,
        LISTENER_PROTOCOLS,
    );
    range(
        &mut problems,
        "spec.protocolPort",
        "protocol_port",
        spec.protocol_port.into(),
        1..=65535,
    );
    range(
        &mut problems,
        "spec.connectionLimit",
        "connection_limit",
        spec.connection_limit,
        -1..=ronghe_proxy::config::MAX_CONNECTION_LIMIT,
    );
    if spec.connection_limit == 0 {
        problems.push(problem(
            "spec.connectionLimit",
            0,
            "Invalid input for field/attribute connection_limit. Value: '0'. Value must be -1 (unlimited) or at least 1.",
        ));
    }
    for (field, attribute, value) in [
        (
            "spec.timeoutClientData",
            "timeout_client_data",
            spec.timeout_client_data,
        ),
        (
            "spec.timeoutMemberConnect",
            "timeout_member_connect",
            spec.timeout_member_connect,
        ),
        (
            "spec.timeoutMemberData",
            "timeout_member_data",
            spec.timeout_member_data,
        ),
        (
            "spec.timeoutTcpInspect",
            "timeout_tcp_inspect",
            spec.timeout_tcp_inspect,
        ),
    ] {
        if let Some(value) = value {
            range(
                &mut problems,
                field,
                attribute,
                value as i64,
                0..=MAX_TIMEOUT_MS as i64,
            );
        }
    }
    let http = matches!(spec.protocol.as_str(), "HTTP" | "TERMINATED_HTTPS");
    let terminated = spec.protocol == "TERMINATED_HTTPS";
    for (header, value) in &spec.insert_headers {
        let ssl = SslHeader::ALL
            .into_iter()
            .any(|known| known.name() == header.as_str());
        if ssl && http && !terminated {
            problems.push(problem(
                "spec.insertHeaders",
                header.as_str(),
                format!(
                    "['{header}'] is not a valid option for {} protocol listener.",
                    spec.protocol
                ),
            ));
        } else if !ssl && !INSERT_HEADERS.contains(&header.as_str()) {
            problems.push(problem(
                "spec.insertHeaders",
                header.as_str(),
                format!(
                    "Validation failure: {header} is not a valid option for {} listeners.",
                    spec.protocol
                ),
            ));
        } else if !http {
            problems.push(problem(
                "spec.insertHeaders",
                header.as_str(),
                format!(
                    "Validation failure: The following headers: {header} are not valid for {} listeners.",
                    spec.protocol
                ),
            ));
        }
        if !matches!(value.to_ascii_lowercase().as_str(), "true" | "false") {
            problems.push(problem(
                "spec.insertHeaders",
                value.as_str(),
                format!("Validation failure: {header} must be 'true' or 'false'."),
            ));
        }
    }
    let has_certificate = spec
        .default_tls_container_ref
        .as_deref()
        .is_some_and(|r| !r.is_empty())
        || !spec.sni_container_refs.is_empty();
    if terminated && !has_certificate {
        problems.push(problem(
            "spec.defaultTlsContainerRef",
            Value::Null,
            "An SNI or default certificate container reference must be provided for TERMINATED_HTTPS listeners.",
        ));
    }
    if !terminated && has_certificate {
        problems.push(problem(
            "spec.defaultTlsContainerRef",
            spec.default_tls_container_ref.clone().unwrap_or_default(),
            "Validation failure: Certificate container references are only allowed on TERMINATED_HTTPS protocol listeners.",
        ));
    }
    listener_tls(spec, terminated, has_certificate, &mut problems);
    for cidr in &spec.allowed_cidrs {
        if ipam::parse_prefix(cidr).is_err() {
            problems.push(problem(
                "spec.allowedCidrs",
                cidr.as_str(),
                format!("Invalid input for field/attribute allowed_cidrs. Value: '{cidr}'. Value should be a CIDR"),
            ));
        }
    }
    problems
}

/// A listener's TLS settings and client authentication, as Octavia checks them; then as
/// the proxy does (what it offers: rustls has no TLS version older than 1.2, nor every
/// cipher suite OpenSSL has).
fn listener_tls(
    spec: &ListenerSpec,
    terminated: bool,
    has_certificate: bool,
    problems: &mut Vec<Problem>,
) {
    let has_ca = present(&spec.client_ca_tls_container_ref);
    let has_crl = present(&spec.client_crl_container_ref);
    let settings_given =
        spec.tls_versions.is_some() || spec.tls_ciphers.is_some() || spec.alpn_protocols.is_some();
    if !terminated && settings_given {
        problems.push(problem(
            "spec.tlsVersions",
            Value::Null,
            format!(
                "Validation failure: TLS versions, ciphers and ALPN protocols are only for TERMINATED_HTTPS listeners, not {} ones.",
                spec.protocol
            ),
        ));
    }
    if has_ca && !has_certificate {
        problems.push(problem(
            "spec.clientCaTlsContainerRef",
            spec.client_ca_tls_container_ref.clone().unwrap_or_default(),
            "Validation failure: An SNI or default certificate container reference must be provided with a client CA container reference.",
        ));
    }
    let mode = spec.client_authentication.as_deref().unwrap_or("NONE");
    one_of(
        problems,
        "spec.clientAuthentication",
        "client_authentication",
        mode,
        CLIENT_AUTHENTICATIONS,
    );
    if mode != "NONE" && CLIENT_AUTHENTICATIONS.contains(&mode) && !has_ca {
        problems.push(problem(
            "spec.clientAuthentication",
            mode,
            format!("Validation failure: Client authentication setting {mode} requires a client CA container reference."),
        ));
    }
    if has_crl && !has_ca {
        problems.push(problem(
            "spec.clientCrlContainerRef",
            spec.client_crl_container_ref.clone().unwrap_or_default(),
            "Validation failure: A client authentication CA reference is required to specify a client authentication revocation list.",
        ));
    }
    tls_settings(
        (&spec.tls_versions, &spec.tls_ciphers, &spec.alpn_protocols),
        problems,
    );
    if terminated && problems.is_empty() {
        proxy_says(
            problems,
            "spec.tlsCiphers",
            json!(spec.tls_ciphers),
            proxy::listener_tls_settings(spec)
                .check_for_listener()
                .map_err(|problem| format!("Validation failure: {problem}.")),
        );
    }
}

/// TLS versions, ciphers and ALPN protocols (a listener's or a pool's) checked as Octavia
/// checks them, before the proxy has its say.
fn tls_settings(
    (versions, ciphers, alpn): (&Option<Vec<String>>, &Option<String>, &Option<Vec<String>>),
    problems: &mut Vec<Problem>,
) {
    tls_versions(versions.as_deref(), "spec.tlsVersions", problems);
    if let Some(protocols) = alpn {
        if protocols.is_empty() {
            problems.push(problem(
                "spec.alpnProtocols",
                json!([]),
                "Validation failure: Empty ALPN protocol list. Either specify at least one ALPN protocol or remove this parameter to use the default.",
            ));
        }
        for protocol in protocols {
            if !LISTENER_ALPN_PROTOCOLS.contains(&protocol.as_str()) {
                problems.push(problem(
                    "spec.alpnProtocols",
                    protocol.as_str(),
                    format!("Invalid input for field/attribute alpn_protocols. Value: '{protocol}'. Value should be a valid ALPN protocol ID"),
                ));
            }
        }
    }
    if let Some(ciphers) = ciphers
        && !ciphers.is_empty()
        && !ciphers
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-+!:@=_.".contains(c))
    {
        problems.push(problem(
            "spec.tlsCiphers",
            ciphers.as_str(),
            "Validation failure: Invalid characters in cipher string. Only alphanumeric, -, +, !, :, @, =, _, and . are allowed.",
        ));
    }
}

/// Whether a container reference names anything.
fn present(reference: &Option<String>) -> bool {
    reference.as_deref().is_some_and(|r| !r.is_empty())
}

/// The TLS versions named, checked as Octavia does, and then for what the proxy has.
fn tls_versions(names: Option<&[String]>, field: &str, problems: &mut Vec<Problem>) {
    let Some(names) = names else {
        return;
    };
    if names.is_empty() {
        problems.push(problem(
            field,
            json!([]),
            "Validation failure: Empty TLS version list. Either specify at least one TLS version or remove this parameter to use the default.",
        ));
    }
    let invalid: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|name| !TLS_VERSIONS.contains(name))
        .collect();
    if !invalid.is_empty() {
        problems.push(problem(
            field,
            json!(names),
            format!(
                "Validation failure: Invalid TLS versions: {}",
                invalid.join(", ")
            ),
        ));
    }
    let older: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|name| TLS_VERSIONS.contains(name) && TlsVersion::from_name(name).is_none())
        .collect();
    if !older.is_empty() {
        problems.push(problem(
            field,
            json!(names),
            format!(
                "Validation failure: TLS versions {} are not supported: this provider (rustls) offers {}.",
                older.join(", "),
                TlsVersion::ALL.map(TlsVersion::name).join(" and ")
            ),
        ));
    }
}

pub fn pool(spec: &PoolSpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    one_of(
        &mut problems,
        "spec.protocol",
        "protocol",
        &spec.protocol,
        POOL_PROTOCOLS,
    );
    one_of(
        &mut problems,
        "spec.lbAlgorithm",
        "lb_algorithm",
        &spec.lb_algorithm,
        ALGORITHMS,
    );
    if let Some(persistence) = &spec.session_persistence {
        one_of(
            &mut problems,
            "spec.sessionPersistence.type",
            "type",
            &persistence.persistence_type,
            PERSISTENCE_TYPES,
        );
        let app = persistence.persistence_type == "APP_COOKIE";
        match (&persistence.cookie_name, app) {
            (None, true) => problems.push(problem(
                "spec.sessionPersistence.cookieName",
                Value::Null,
                "Validation failure: Cookie names are required for APP_COOKIE session persistence.",
            )),
            (Some(name), false) => problems.push(problem(
                "spec.sessionPersistence.cookieName",
                name.as_str(),
                format!(
                    "Validation failure: Cookie names are not supported for {} pools.",
                    persistence.persistence_type
                ),
            )),
            _ => {}
        }
        if matches!(
            persistence.persistence_type.as_str(),
            "HTTP_COOKIE" | "APP_COOKIE"
        ) && !matches!(
            spec.protocol.as_str(),
            "HTTP" | "HTTPS" | "PROXY" | "PROXYV2"
        ) {
            problems.push(problem(
                "spec.sessionPersistence.type",
                persistence.persistence_type.as_str(),
                format!(
                    "Validation failure: Session persistence of type {} is not supported for {} protocol pools.",
                    persistence.persistence_type, spec.protocol
                ),
            ));
        }
    }
    if spec.tls_enabled && spec.protocol == "UDP" {
        problems.push(problem(
            "spec.tlsEnabled",
            true,
            "Validation failure: TLS is not supported for UDP pools.",
        ));
    }
    // TLS settings are kept while `tls_enabled` is off, as Octavia keeps them, and take
    // effect when it is turned on.
    if present(&spec.crl_container_ref) && !present(&spec.ca_tls_container_ref) {
        problems.push(problem(
            "spec.crlContainerRef",
            spec.crl_container_ref.clone().unwrap_or_default(),
            "Validation failure: A CA certificate reference is required to specify a revocation list.",
        ));
    }
    tls_settings(
        (&spec.tls_versions, &spec.tls_ciphers, &spec.alpn_protocols),
        &mut problems,
    );
    if problems.is_empty() {
        proxy_says(
            &mut problems,
            "spec.alpnProtocols",
            json!(spec.alpn_protocols),
            proxy::pool_tls_settings(spec)
                .check_for_pool()
                .map_err(|problem| format!("Validation failure: {problem}.")),
        );
    }
    if problems.is_empty() {
        proxy_says(&mut problems, "spec", Value::Null, proxy::check_pool(spec));
    }
    problems
}

pub fn member(spec: &MemberSpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    address(&mut problems, "spec.address", "address", &spec.address);
    range(
        &mut problems,
        "spec.protocolPort",
        "protocol_port",
        spec.protocol_port.into(),
        1..=65535,
    );
    range(
        &mut problems,
        "spec.weight",
        "weight",
        spec.weight.into(),
        0..=256,
    );
    if let Some(monitor) = &spec.monitor_address {
        address(
            &mut problems,
            "spec.monitorAddress",
            "monitor_address",
            monitor,
        );
    }
    if let Some(port) = spec.monitor_port {
        range(
            &mut problems,
            "spec.monitorPort",
            "monitor_port",
            port.into(),
            1..=65535,
        );
    }
    problems
}

pub fn health_monitor(spec: &HealthMonitorSpec, pool_protocol: Option<&str>) -> Vec<Problem> {
    let mut problems = Vec::new();
    one_of(
        &mut problems,
        "spec.type",
        "type",
        &spec.monitor_type,
        MONITOR_TYPES,
    );
    range(
        &mut problems,
        "spec.delay",
        "delay",
        spec.delay as i64,
        1..=86_400,
    );
    range(
        &mut problems,
        "spec.timeout",
        "timeout",
        spec.timeout as i64,
        1..=86_400,
    );
    range(
        &mut problems,
        "spec.maxRetries",
        "max_retries",
        spec.max_retries.into(),
        1..=10,
    );
    if let Some(down) = spec.max_retries_down {
        range(
            &mut problems,
            "spec.maxRetriesDown",
            "max_retries_down",
            down.into(),
            1..=10,
        );
    }
    if problems.is_empty() && spec.timeout > spec.delay {
        problems.push(problem(
            "spec.timeout",
            spec.timeout,
            format!(
                "Validation failure: The health monitor timeout ({}) must not be longer than its delay ({}).",
                spec.timeout, spec.delay
            ),
        ));
    }
    if problems.is_empty() {
        proxy_says(
            &mut problems,
            "spec",
            Value::Null,
            // Without the pool, check against a pool the monitor's type fits.
            proxy::check_monitor(
                spec,
                pool_protocol.unwrap_or(if spec.monitor_type == "UDP-CONNECT" {
                    "UDP"
                } else {
                    "HTTP"
                }),
            ),
        );
    }
    problems
}

pub fn l7_policy(spec: &L7PolicySpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    one_of(
        &mut problems,
        "spec.action",
        "action",
        &spec.action,
        L7_ACTIONS,
    );
    let needs = |field: &str, attribute: &str, present: bool, problems: &mut Vec<Problem>| {
        if !present {
            problems.push(problem(
                field,
                Value::Null,
                format!(
                    "Validation failure: {attribute} is required for a {} policy.",
                    spec.action
                ),
            ));
        }
    };
    match spec.action.as_str() {
        "REDIRECT_TO_POOL" => needs(
            "spec.redirectPoolId",
            "redirect_pool_id",
            spec.redirect_pool_id.is_some(),
            &mut problems,
        ),
        "REDIRECT_TO_URL" => needs(
            "spec.redirectUrl",
            "redirect_url",
            spec.redirect_url.is_some(),
            &mut problems,
        ),
        "REDIRECT_PREFIX" => needs(
            "spec.redirectPrefix",
            "redirect_prefix",
            spec.redirect_prefix.is_some(),
            &mut problems,
        ),
        _ => {}
    }
    if let Some(position) = spec.position {
        range(
            &mut problems,
            "spec.position",
            "position",
            position.into(),
            1..=2_147_483_647,
        );
    }
    if problems.is_empty() {
        proxy_says(
            &mut problems,
            "spec",
            Value::Null,
            proxy::check_policy(spec),
        );
    }
    problems
}

pub fn l7_rule(spec: &L7RuleSpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    one_of(
        &mut problems,
        "spec.type",
        "type",
        &spec.rule_type,
        L7_RULE_TYPES,
    );
    one_of(
        &mut problems,
        "spec.compareType",
        "compare_type",
        &spec.compare_type,
        L7_COMPARE_TYPES,
    );
    if problems.is_empty() {
        proxy_says(
            &mut problems,
            "spec.value",
            spec.value.clone().into(),
            proxy::check_rule(spec),
        );
    }
    problems
}
