//! From objects to the data plane: [`proxy_config`] turns a load balancer's [`Tree`] into
//! the [`ProxyConfig`] its host's proxy serves, and the `check_*` functions run the proxy's
//! own validation on a one-object candidate, so what the API admits the proxy accepts.
//!
//! Octavia's units become the proxy's: monitor delays and timeouts and persistence
//! timeouts are seconds in the API and milliseconds in the proxy; listener timeouts are
//! milliseconds in both. Objects being deleted or administratively down are left out
//! (a pool that is down keeps its members, all down; a load balancer that is down serves
//! nothing).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ronghe_proxy::ProxyConfig;
use ronghe_proxy::config::{
    self as data, ConfigError, DEFAULT_DATA_TIMEOUT_MS, DEFAULT_MEMBER_CONNECT_TIMEOUT_MS,
    InsertHeaders, SslHeader, TlsCertificate,
};
/// What TERMINATED_HTTPS listeners offer by default, for the faces to show.
pub use ronghe_proxy::config::{LISTENER_ALPN_PROTOCOLS, SUPPORTED_CIPHERS, TlsVersion};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{
    HealthMonitorSpec, L7PolicySpec, L7RuleSpec, ListenerSpec, LoadBalancerSpec, MemberSpec,
    PoolSpec, Tree, deleting, policy_order, spec_of, uid,
};

/// An Octavia enumeration value as the proxy's enum (they share the spellings).
fn parse<T: DeserializeOwned>(value: &str) -> Option<T> {
    serde_json::from_value(Value::String(value.to_owned())).ok()
}

fn admin_up(object: &Value) -> bool {
    object
        .pointer("/spec/adminStateUp")
        .and_then(Value::as_bool)
        .unwrap_or(true)
}

/// Whether an object takes part: not being deleted and administratively up.
fn live(object: &Value) -> bool {
    !deleting(object) && admin_up(object)
}

fn seconds(value: u64) -> u64 {
    value.saturating_mul(1000)
}

fn insert_headers(headers: &BTreeMap<String, String>) -> InsertHeaders {
    let on = |name: &str| {
        headers
            .get(name)
            .is_some_and(|value| value.eq_ignore_ascii_case("true"))
    };
    let mut insert = InsertHeaders {
        x_forwarded_for: on("X-Forwarded-For"),
        x_forwarded_port: on("X-Forwarded-Port"),
        x_forwarded_proto: on("X-Forwarded-Proto"),
        ..InsertHeaders::default()
    };
    for header in SslHeader::ALL {
        insert.set_ssl(header, on(header.name()));
    }
    insert
}

fn listener(
    id: &str,
    spec: &ListenerSpec,
    vip: IpAddr,
    default_pool_id: Option<String>,
    l7_policies: Vec<data::L7Policy>,
    secrets: &TlsSecrets,
) -> Option<data::Listener> {
    let certificates = &secrets.certificates;
    let default = spec
        .default_tls_container_ref
        .as_deref()
        .filter(|reference| !reference.is_empty());
    // A listener with a certificate that could not be read gets none, so the proxy refuses
    // it (saying so) rather than serving another certificate in its place.
    let all_read = default
        .into_iter()
        .chain(spec.sni_container_refs.iter().map(String::as_str))
        .all(|reference| certificates.contains_key(secret_name(reference)));
    let certificate = |reference: &str| {
        all_read
            .then(|| certificates.get(secret_name(reference)).cloned())
            .flatten()
    };
    Some(data::Listener {
        id: id.to_owned(),
        protocol: parse(&spec.protocol)?,
        bind: SocketAddr::new(vip, spec.protocol_port),
        connection_limit: (spec.connection_limit > 0).then_some(spec.connection_limit),
        timeout_client_data: spec.timeout_client_data.unwrap_or(DEFAULT_DATA_TIMEOUT_MS),
        timeout_member_connect: spec
            .timeout_member_connect
            .unwrap_or(DEFAULT_MEMBER_CONNECT_TIMEOUT_MS),
        timeout_member_data: spec.timeout_member_data.unwrap_or(DEFAULT_DATA_TIMEOUT_MS),
        insert_headers: insert_headers(&spec.insert_headers),
        default_pool_id,
        l7_policies,
        tls: default.and_then(certificate),
        sni: spec
            .sni_container_refs
            .iter()
            .filter_map(|reference| certificate(reference))
            .collect(),
        tls_settings: if spec.protocol == "TERMINATED_HTTPS" {
            listener_tls_settings(spec)
        } else {
            data::TlsSettings::default()
        },
        client_authentication: client_authentication(spec, secrets),
    })
}

/// The client certificates a listener asks for. A CA or CRL Secret that could not be
/// read leaves its PEM empty, so the proxy refuses the listener, saying so, rather than
/// serve it without the checks it asks for.
fn client_authentication(
    spec: &ListenerSpec,
    secrets: &TlsSecrets,
) -> Option<data::ClientAuthentication> {
    let mode = spec.client_authentication.as_deref().unwrap_or("NONE");
    if spec.protocol != "TERMINATED_HTTPS" || !matches!(mode, "OPTIONAL" | "MANDATORY") {
        return None;
    }
    // No CA named (which admission refuses) is an empty one too: never no checks.
    let ca = named(&spec.client_ca_tls_container_ref);
    Some(data::ClientAuthentication {
        mandatory: mode == "MANDATORY",
        ca_pem: ca
            .and_then(|ca| secrets.cas.get(ca).cloned())
            .unwrap_or_default(),
        crl_pem: named(&spec.client_crl_container_ref)
            .map(|crl| secrets.crls.get(crl).cloned().unwrap_or_default()),
    })
}

/// What the Secrets that a load balancer's listeners and pools name hold, by Secret
/// name, as read; a Secret that is missing, or lacks the key, is left out.
#[derive(Debug, Clone, Default)]
pub struct TlsSecrets {
    /// The certificates and keys (`tls.crt`, `tls.key`) of listeners' default and SNI
    /// references and pools' `tls_container_ref`.
    pub certificates: BTreeMap<String, TlsCertificate>,
    /// The CA certificates ([`CA_KEY`]) of client CA and pool CA references.
    pub cas: BTreeMap<String, String>,
    /// The revocation lists ([`CRL_KEY`]) of CRL references.
    pub crls: BTreeMap<String, String>,
}

/// The key of a Secret holding CA certificates (PEM: a listener's client CA, a pool's
/// members' CA), as ingress-nginx and cert-manager name it.
pub const CA_KEY: &str = "ca.crt";
/// The key of a Secret holding those CAs' revocation lists (PEM), as ingress-nginx
/// names it.
pub const CRL_KEY: &str = "ca.crl";

/// A listener's TLS settings as the proxy takes them (admission refused names the proxy
/// lacks).
pub fn listener_tls_settings(spec: &ListenerSpec) -> data::TlsSettings {
    tls_settings(&spec.tls_versions, &spec.tls_ciphers, &spec.alpn_protocols)
}

fn tls_settings(
    versions: &Option<Vec<String>>,
    ciphers: &Option<String>,
    alpn: &Option<Vec<String>>,
) -> data::TlsSettings {
    data::TlsSettings {
        versions: versions
            .iter()
            .flatten()
            .filter_map(|name| data::TlsVersion::from_name(name))
            .collect(),
        ciphers: ciphers.clone(),
        alpn_protocols: alpn.clone().unwrap_or_default(),
    }
}

/// A pool's TLS settings towards its members, as the proxy takes them.
pub fn pool_tls_settings(spec: &PoolSpec) -> data::TlsSettings {
    tls_settings(&spec.tls_versions, &spec.tls_ciphers, &spec.alpn_protocols)
}

/// How a `tls_enabled` pool speaks TLS to its members, from the Secrets it names (a CA,
/// CRL or certificate that could not be read leaves an empty PEM, which the proxy
/// refuses, saying so, rather than serve without what was asked for).
fn member_tls(spec: &PoolSpec, secrets: &TlsSecrets) -> data::MemberTls {
    if !spec.tls_enabled {
        return data::MemberTls::default();
    }
    data::MemberTls {
        settings: pool_tls_settings(spec),
        ca_pem: named(&spec.ca_tls_container_ref)
            .map(|ca| secrets.cas.get(ca).cloned().unwrap_or_default()),
        crl_pem: named(&spec.crl_container_ref)
            .map(|crl| secrets.crls.get(crl).cloned().unwrap_or_default()),
        certificate: named(&spec.tls_container_ref).map(|certificate| {
            secrets
                .certificates
                .get(certificate)
                .cloned()
                .unwrap_or_else(|| TlsCertificate {
                    certificate_pem: String::new(),
                    private_key_pem: String::new(),
                })
        }),
    }
}

/// The Secret a container reference names, if it names one.
fn named(reference: &Option<String>) -> Option<&str> {
    reference
        .as_deref()
        .filter(|reference| !reference.is_empty())
        .map(secret_name)
}

/// The name of the Secret a certificate container reference names: the reference itself,
/// or the last segment of a URL (`https://…/containers/NAME`).
pub fn secret_name(reference: &str) -> &str {
    reference
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(reference)
}

fn rule(spec: &L7RuleSpec) -> Option<data::L7Rule> {
    Some(data::L7Rule {
        rule_type: parse(&spec.rule_type)?,
        compare_type: parse(&spec.compare_type)?,
        key: spec.key.clone().filter(|key| !key.is_empty()),
        value: spec.value.clone(),
        invert: spec.invert,
    })
}

fn policy(
    id: &str,
    spec: &L7PolicySpec,
    position: u32,
    rules: Vec<data::L7Rule>,
) -> Option<data::L7Policy> {
    Some(data::L7Policy {
        id: id.to_owned(),
        action: parse(&spec.action)?,
        position,
        redirect_pool_id: spec.redirect_pool_id.clone(),
        redirect_url: spec.redirect_url.clone(),
        redirect_prefix: spec.redirect_prefix.clone(),
        redirect_http_code: spec.redirect_http_code,
        rules,
    })
}

fn monitor(spec: &HealthMonitorSpec) -> Option<data::HealthMonitor> {
    let http = matches!(spec.monitor_type.as_str(), "HTTP" | "HTTPS");
    Some(data::HealthMonitor {
        monitor_type: parse(&spec.monitor_type)?,
        delay_ms: seconds(spec.delay),
        timeout_ms: seconds(spec.timeout),
        max_retries: spec.max_retries,
        max_retries_down: spec.max_retries_down.unwrap_or(3),
        http_method: spec.http_method.clone().filter(|_| http),
        url_path: spec.url_path.clone().filter(|_| http),
        expected_codes: spec.expected_codes.clone().filter(|_| http),
    })
}

fn member(id: &str, spec: &MemberSpec, pool_up: bool) -> Option<data::Member> {
    Some(data::Member {
        id: id.to_owned(),
        address: spec.address.parse().ok()?,
        protocol_port: spec.protocol_port,
        weight: spec.weight,
        backup: spec.backup,
        admin_state_up: spec.admin_state_up && pool_up,
        monitor_address: spec.monitor_address.as_deref().and_then(|a| a.parse().ok()),
        monitor_port: spec.monitor_port,
    })
}

/// A pool as the proxy takes it, speaking TLS to members as Octavia does by default (its
/// own member TLS comes from its Secrets: [`member_tls`]).
fn pool(id: &str, spec: &PoolSpec, members: Vec<data::Member>) -> Option<data::Pool> {
    Some(data::Pool {
        id: id.to_owned(),
        protocol: parse(&spec.protocol)?,
        lb_algorithm: parse(&spec.lb_algorithm)?,
        session_persistence: match &spec.session_persistence {
            Some(persistence) => Some(data::SessionPersistence {
                persistence_type: parse(&persistence.persistence_type)?,
                cookie_name: persistence.cookie_name.clone(),
                persistence_timeout_ms: persistence.persistence_timeout.map(seconds),
            }),
            None => None,
        },
        members,
        health_monitor: None,
        tls_enabled: spec.tls_enabled,
        member_tls: data::MemberTls::default(),
    })
}

/// The default pool of a listener: the one it names, else a pool made for it.
pub fn default_pool_of(listener: &Value, pools: &[Value]) -> Option<String> {
    let spec: ListenerSpec = spec_of(listener);
    let id = uid(listener);
    spec.default_pool_id.filter(|p| !p.is_empty()).or_else(|| {
        pools
            .iter()
            .filter(|p| !deleting(p))
            .find(|p| spec_of::<PoolSpec>(p).listener_id.as_deref() == Some(id))
            .map(|p| uid(p).to_owned())
    })
}

/// A listener's policies in the order they apply.
pub fn policies_in_order<'a>(listener_id: &str, policies: &'a [Value]) -> Vec<&'a Value> {
    let mut found: Vec<&Value> = policies
        .iter()
        .filter(|p| !deleting(p) && spec_of::<L7PolicySpec>(p).listener_id == listener_id)
        .collect();
    found.sort_by_key(|p| policy_order(p));
    found
}

/// What a load balancer's proxy serves on `vip`. `secrets` holds what the Secrets its
/// TERMINATED_HTTPS listeners name hold (certificates, client CAs and CRLs); a listener
/// one of whose certificates is missing gets none, and one whose client CA or CRL is
/// missing gets an empty one, and the proxy refuses either, saying so.
/// Objects that do not translate (which admission prevents) are left out.
pub fn proxy_config(tree: &Tree, vip: IpAddr, secrets: &TlsSecrets) -> ProxyConfig {
    let mut config = ProxyConfig::default();
    if !live(&tree.load_balancer) {
        return config;
    }
    let pools_alive: Vec<&Value> = tree.pools.iter().filter(|p| !deleting(p)).collect();
    for pool_object in &pools_alive {
        let id = uid(pool_object);
        let spec: PoolSpec = spec_of(pool_object);
        let pool_up = spec.admin_state_up;
        let members = tree
            .members
            .iter()
            .filter(|m| !deleting(m))
            .filter_map(|m| {
                let member_spec: MemberSpec = spec_of(m);
                (member_spec.pool_id == id)
                    .then(|| member(uid(m), &member_spec, pool_up))
                    .flatten()
            })
            .collect();
        let Some(mut translated) = pool(id, &spec, members) else {
            continue;
        };
        translated.member_tls = member_tls(&spec, secrets);
        translated.health_monitor = tree
            .monitors
            .iter()
            .filter(|m| live(m))
            .map(spec_of::<HealthMonitorSpec>)
            .find(|m| m.pool_id == id)
            .and_then(|m| monitor(&m));
        config.pools.push(translated);
    }
    let pool_ids: Vec<String> = config.pools.iter().map(|p| p.id.clone()).collect();
    for listener_object in tree.listeners.iter().filter(|l| live(l)) {
        let id = uid(listener_object);
        let spec: ListenerSpec = spec_of(listener_object);
        let policies = policies_in_order(id, &tree.policies)
            .into_iter()
            .filter(|p| admin_up(p))
            .filter(|p| {
                // A policy sending to a pool that is gone is left out, not the listener.
                spec_of::<L7PolicySpec>(p)
                    .redirect_pool_id
                    .is_none_or(|pool| pool_ids.contains(&pool))
            })
            .enumerate()
            .filter_map(|(index, p)| {
                let rules = tree
                    .rules
                    .iter()
                    .filter(|r| live(r))
                    .map(spec_of::<L7RuleSpec>)
                    .filter(|r| r.l7_policy_id == uid(p))
                    .filter_map(|r| rule(&r))
                    .collect();
                policy(uid(p), &spec_of(p), index as u32 + 1, rules)
            })
            .collect();
        let default_pool =
            default_pool_of(listener_object, &tree.pools).filter(|p| pool_ids.contains(p));
        if let Some(translated) = listener(id, &spec, vip, default_pool, policies, secrets) {
            config.listeners.push(translated);
        }
    }
    config
}

/// The problem a [`ConfigError`] names, without the ids of the candidate it was found in.
fn problem_of(error: ConfigError) -> String {
    match error {
        ConfigError::InvalidRegex {
            pattern, source, ..
        } => format!("Validation failure: invalid regex {pattern:?}: {source}"),
        ConfigError::InvalidPolicy { problem, .. }
        | ConfigError::InvalidListener { problem, .. }
        | ConfigError::InvalidPool { problem, .. }
        | ConfigError::InvalidMember { problem, .. }
        | ConfigError::InvalidMonitor { problem, .. } => format!("Validation failure: {problem}"),
        ConfigError::InvalidExpectedCodes { codes, .. } => {
            format!("Validation failure: invalid expected_codes {codes:?}")
        }
        other => format!("Validation failure: {other}"),
    }
}

const CANDIDATE: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn candidate_listener(protocol: data::ListenerProtocol) -> data::Listener {
    data::Listener {
        id: "listener".into(),
        protocol,
        bind: SocketAddr::new(CANDIDATE, 0),
        connection_limit: None,
        timeout_client_data: DEFAULT_DATA_TIMEOUT_MS,
        timeout_member_connect: DEFAULT_MEMBER_CONNECT_TIMEOUT_MS,
        timeout_member_data: DEFAULT_DATA_TIMEOUT_MS,
        insert_headers: InsertHeaders::default(),
        default_pool_id: None,
        l7_policies: Vec::new(),
        tls: None,
        sni: Vec::new(),
        tls_settings: Default::default(),
        client_authentication: None,
    }
}

fn verdict(config: &ProxyConfig) -> Result<(), String> {
    config.validate().map_err(problem_of)
}

/// The proxy's verdict on a pool (persistence, cookie names) on its own; its member
/// TLS is checked apart ([`pool_tls_settings`], and the Secrets at admission).
pub fn check_pool(spec: &PoolSpec) -> Result<(), String> {
    let Some(translated) = pool("pool", spec, Vec::new()) else {
        return Ok(());
    };
    verdict(&ProxyConfig {
        listeners: Vec::new(),
        pools: vec![translated],
    })
}

/// The proxy's verdict on a health monitor of a pool of `pool_protocol`.
pub fn check_monitor(spec: &HealthMonitorSpec, pool_protocol: &str) -> Result<(), String> {
    let (Some(translated), Some(protocol)) = (monitor(spec), parse(pool_protocol)) else {
        return Ok(());
    };
    verdict(&ProxyConfig {
        listeners: Vec::new(),
        pools: vec![data::Pool {
            id: "pool".into(),
            protocol,
            lb_algorithm: data::LbAlgorithm::RoundRobin,
            session_persistence: None,
            members: Vec::new(),
            health_monitor: Some(translated),
            tls_enabled: false,
            member_tls: Default::default(),
        }],
    })
}

/// The proxy's verdict on an L7 policy's redirect (URL, prefix, code).
pub fn check_policy(spec: &L7PolicySpec) -> Result<(), String> {
    let mut spec = spec.clone();
    // The pool is checked against the load balancer by admission, not here.
    let pools = match spec.redirect_pool_id.as_mut() {
        Some(pool_id) => {
            *pool_id = "pool".into();
            vec![data::Pool {
                id: "pool".into(),
                protocol: data::PoolProtocol::Http,
                lb_algorithm: data::LbAlgorithm::RoundRobin,
                session_persistence: None,
                members: Vec::new(),
                health_monitor: None,
                tls_enabled: false,
                member_tls: Default::default(),
            }]
        }
        None => Vec::new(),
    };
    let Some(translated) = policy("policy", &spec, 1, Vec::new()) else {
        return Ok(());
    };
    let mut listener = candidate_listener(data::ListenerProtocol::Http);
    listener.l7_policies.push(translated);
    verdict(&ProxyConfig {
        listeners: vec![listener],
        pools,
    })
}

/// The proxy's verdict on an L7 rule (its key, value and regex).
pub fn check_rule(spec: &L7RuleSpec) -> Result<(), String> {
    let Some(translated) = rule(spec) else {
        return Ok(());
    };
    let mut listener = candidate_listener(data::ListenerProtocol::Http);
    listener.l7_policies.push(data::L7Policy {
        id: "policy".into(),
        action: data::L7Action::Reject,
        position: 1,
        redirect_pool_id: None,
        redirect_url: None,
        redirect_prefix: None,
        redirect_http_code: None,
        rules: vec![translated],
    });
    verdict(&ProxyConfig {
        listeners: vec![listener],
        pools: Vec::new(),
    })
}

/// Whether a listener of `listener` protocol may send to a pool of `pool` protocol.
pub fn compatible(listener: &str, pool: &str) -> bool {
    let (Some(listener), Some(pool)) = (parse(listener), parse(pool)) else {
        return false;
    };
    let mut candidate = candidate_listener(listener);
    candidate.default_pool_id = Some("pool".into());
    if listener == data::ListenerProtocol::TerminatedHttps {
        // Only the protocols are under test here; a listener without a certificate
        // fails for that reason alone, so compare against plain HTTP.
        candidate.protocol = data::ListenerProtocol::Http;
    }
    let config = ProxyConfig {
        listeners: vec![candidate],
        pools: vec![data::Pool {
            id: "pool".into(),
            protocol: pool,
            lb_algorithm: data::LbAlgorithm::RoundRobin,
            session_persistence: None,
            members: Vec::new(),
            health_monitor: None,
            tls_enabled: false,
            member_tls: Default::default(),
        }],
    };
    !matches!(config.validate(), Err(ConfigError::ProtocolMismatch { .. }))
}

/// The certificate and key of a `kubernetes.io/tls` Secret (`data` base64 as stored).
pub fn certificate_of_secret(secret: &Value) -> Result<TlsCertificate, String> {
    Ok(TlsCertificate {
        certificate_pem: pem_of_secret(secret, "tls.crt")?,
        private_key_pem: pem_of_secret(secret, "tls.key")?,
    })
}

/// The PEM text under `key` of a Secret (`data` base64 as stored).
pub fn pem_of_secret(secret: &Value, key: &str) -> Result<String, String> {
    use base64::Engine as _;
    let encoded = secret
        .pointer(&format!("/data/{}", key.replace('/', "~1")))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the secret has no {key}"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| format!("the secret's {key} is not base64"))?;
    String::from_utf8(bytes).map_err(|_| format!("the secret's {key} is not PEM text"))
}

/// The proxy's verdict on CA certificates and revocation lists (a listener's client CA, a
/// pool's members' CA), in Octavia's words (which speak of client authentication for
/// both).
pub fn check_ca_and_crl(ca_pem: &str, crl_pem: Option<&str>) -> Result<(), String> {
    let mut clients = data::ClientAuthentication {
        mandatory: true,
        ca_pem: ca_pem.to_owned(),
        crl_pem: None,
    };
    clients.check().map_err(|problem| {
        format!("Validation failure: The client authentication CA certificate is invalid. It must be a valid x509 PEM format certificate. Error: {problem}")
    })?;
    clients.crl_pem = crl_pem.map(str::to_owned);
    clients.check().map_err(|problem| {
        if problem.contains(data::CRL_OF_ANOTHER_CA) {
            "Validation failure: The CRL specified is not valid for client certificate authority reference supplied.".to_owned()
        } else {
            format!("Validation failure: The client authentication certificate revocation list is invalid. It must be a valid x509 PEM format certificate revocation list. Error: {problem}")
        }
    })
}

/// The proxy's verdict on a TERMINATED_HTTPS certificate and key.
pub fn check_certificate(certificate: &TlsCertificate) -> Result<(), String> {
    let mut listener = candidate_listener(data::ListenerProtocol::TerminatedHttps);
    listener.tls = Some(certificate.clone());
    ProxyConfig {
        listeners: vec![listener],
        pools: Vec::new(),
    }
    .validate()
    .map_err(|error| match error {
        ConfigError::InvalidCertificate { source, .. } => {
            format!("Could not read X509 from PEM: {source}")
        }
        other => problem_of(other),
    })
}

/// The load balancer's VIP address, once it has one.
pub fn vip_of(load_balancer: &Value) -> Option<IpAddr> {
    spec_of::<LoadBalancerSpec>(load_balancer)
        .vip_address
        .parse()
        .ok()
}
