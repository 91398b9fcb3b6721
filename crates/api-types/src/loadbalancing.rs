//! `loadbalancing.ronghe.io/v1`: the wire types of load balancers, shared by the API
//! server (which validates, allocates the VIP and schedules), the Octavia face (which
//! translates) and the agents (which run the data plane).
//!
//! The model is Octavia's: a LoadBalancer (a VIP port on a subnet) with Listeners (a
//! protocol and port on the VIP), Pools (an algorithm and session persistence), Members
//! (an address and port, a weight, backup or not), a HealthMonitor per pool, and
//! L7Policies with their L7Rules on HTTP listeners. Every child names its parent by uid
//! and carries its load balancer's uid (`spec.loadBalancerId`), so one field selector
//! finds a load balancer's whole tree.
//!
//! Status: the agent of the load balancer's host writes what its proxy serves into the
//! LoadBalancer's status (`applied`: each object's uid and the generation served;
//! `members`: each member's operating status; `stats`); the load-balancer controller
//! derives every object's provisioning and operating status from that and mirrors it into
//! the children, so `kubectl get listeners` and the Octavia face agree.
//!
//! * [`validate`]: single-object checks, in Octavia's words.
//! * [`proxy`]: objects to the data plane's [`ronghe_proxy::ProxyConfig`], and the checks
//!   that run the data plane's own validation on a candidate, so the API and the proxy
//!   never disagree on what is valid.

pub mod proxy;
pub mod validate;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::network::{display_name, spec_of, status_of};

pub const GROUP: &str = "loadbalancing.ronghe.io";
pub const API_VERSION: &str = "loadbalancing.ronghe.io/v1";

/// The one provider: Ronghe's proxy, run by the agent of the load balancer's host.
pub const PROVIDER: &str = "ronghe";
pub const PROVIDER_DESCRIPTION: &str =
    "Ronghe's Rust proxy, run by a host agent in the VIP's network namespace";

/// Octavia's provisioning statuses.
pub mod provisioning {
    pub const ACTIVE: &str = "ACTIVE";
    pub const PENDING_CREATE: &str = "PENDING_CREATE";
    pub const PENDING_UPDATE: &str = "PENDING_UPDATE";
    pub const PENDING_DELETE: &str = "PENDING_DELETE";
    pub const ERROR: &str = "ERROR";
}

/// Octavia's operating statuses.
pub mod operating {
    pub const ONLINE: &str = "ONLINE";
    pub const OFFLINE: &str = "OFFLINE";
    pub const DEGRADED: &str = "DEGRADED";
    pub const ERROR: &str = "ERROR";
    pub const NO_MONITOR: &str = "NO_MONITOR";
}

/// Annotations on load-balancing objects.
pub mod annotation {
    /// On an L7Policy: when its position was last set (RFC 3339), so that of two
    /// policies at one position the one placed last goes first, as Octavia's
    /// renumbering has it.
    pub const POSITIONED_AT: &str = "loadbalancing.ronghe.io/positioned-at";
}

fn yes() -> bool {
    true
}

fn is_false(value: &bool) -> bool {
    !value
}

fn unlimited() -> i64 {
    -1
}

fn one() -> u16 {
    1
}

/// A VIP and what serves it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerSpec {
    /// Octavia's name (free text, not unique); `metadata.name` when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default = "yes")]
    pub admin_state_up: bool,
    /// The subnet the VIP is on (uid; a name in the namespace is resolved at create).
    /// Given a network or port instead, admission fills it in.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vip_subnet_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vip_network_id: String,
    /// The VIP's port (device owner `Octavia`), made at create when not given.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vip_port_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vip_address: String,
    /// `ronghe`, the only provider.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavor_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// Traffic counters, as Octavia's stats show them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    #[serde(default)]
    pub bytes_in: u64,
    #[serde(default)]
    pub bytes_out: u64,
    #[serde(default)]
    pub active_connections: u64,
    #[serde(default)]
    pub total_connections: u64,
    #[serde(default)]
    pub request_errors: u64,
}

impl Stats {
    pub fn add(&mut self, other: &Stats) {
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.active_connections += other.active_connections;
        self.total_connections += other.total_connections;
        self.request_errors += other.request_errors;
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerStatus {
    /// Octavia's provisioning status, kept by the load-balancer controller.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provisioning_status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub operating_status: String,
    /// The Node whose agent runs its proxy (set by the controller).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// Why it is in ERROR (the proxy refused its configuration, no host qualifies).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Written by the agent: why its proxy refused the tree (it serves the last good one).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub serve_error: String,
    /// Written by the agent: the host whose proxy serves what `applied` lists.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub served_by: String,
    /// Written by the agent: each object of the tree its proxy serves (uid → generation).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub applied: BTreeMap<String, i64>,
    /// Written by the agent: each member's operating status (uid → ONLINE, ERROR,
    /// NO_MONITOR, OFFLINE).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub members: BTreeMap<String, String>,
    /// Written by the agent: the whole load balancer's counters, and each listener's.
    #[serde(default)]
    pub stats: Stats,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub listener_stats: BTreeMap<String, Stats>,
    /// Set by a failover request (RFC 3339): the controller moves the load balancer off
    /// `failoverFrom` (when another host qualifies) and clears both.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub failover_requested: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub failover_from: String,
}

/// The status the controller mirrors into each child object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildStatus {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provisioning_status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub operating_status: String,
}

/// A protocol and port on the VIP.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default = "yes")]
    pub admin_state_up: bool,
    pub load_balancer_id: String,
    /// TCP, UDP, HTTP, HTTPS (passed through) or TERMINATED_HTTPS.
    pub protocol: String,
    pub protocol_port: u16,
    /// -1 for no limit.
    #[serde(default = "unlimited")]
    pub connection_limit: i64,
    /// The pool requests go to unless an L7 policy says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_pool_id: Option<String>,
    /// Milliseconds, as in Octavia.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_client_data: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_member_connect: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_member_data: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_tcp_inspect: Option<u64>,
    /// `X-Forwarded-For`, `X-Forwarded-Port`, `X-Forwarded-Proto` → `"true"`/`"false"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub insert_headers: BTreeMap<String, String>,
    /// TERMINATED_HTTPS: the Secret (type `kubernetes.io/tls`, in the namespace) holding
    /// the certificate chain and key, by name or by a reference ending in its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_tls_container_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sni_container_refs: Vec<String>,
    /// TERMINATED_HTTPS: the TLS versions offered (`TLSv1.2`, `TLSv1.3`); both when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_versions: Option<Vec<String>>,
    /// TERMINATED_HTTPS: OpenSSL cipher names separated by `:`; every suite the proxy
    /// has when absent (see `ronghe_proxy::config::TlsSettings::ciphers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ciphers: Option<String>,
    /// TERMINATED_HTTPS: the ALPN protocols offered (`h2`, `http/1.1`, `http/1.0`), in
    /// order of preference; all three when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpn_protocols: Option<Vec<String>>,
    /// TERMINATED_HTTPS: NONE (the default), OPTIONAL or MANDATORY client certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_authentication: Option<String>,
    /// The Secret whose `ca.crt` holds the CAs client certificates must chain to, by
    /// name or by a reference ending in its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_tls_container_ref: Option<String>,
    /// The Secret whose `ca.crl` holds the client CAs' revocation lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_crl_container_ref: Option<String>,
    /// Source CIDRs allowed to connect; everyone when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_cidrs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// Session persistence of a pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionPersistence {
    /// SOURCE_IP, HTTP_COOKIE or APP_COOKIE.
    #[serde(rename = "type")]
    pub persistence_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_name: Option<String>,
    /// Seconds, as in Octavia.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence_timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence_granularity: Option<String>,
}

/// A set of members with an algorithm.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default = "yes")]
    pub admin_state_up: bool,
    /// Found from the listener when only that is given.
    #[serde(default)]
    pub load_balancer_id: String,
    /// The listener whose default pool this is (Octavia's `listener_id` at create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_id: Option<String>,
    /// TCP, UDP, HTTP or HTTPS.
    pub protocol: String,
    /// ROUND_ROBIN, LEAST_CONNECTIONS or SOURCE_IP.
    pub lb_algorithm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_persistence: Option<SessionPersistence>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub tls_enabled: bool,
    /// With `tls_enabled`: the TLS versions offered to members (`TLSv1.2`, `TLSv1.3`);
    /// both when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_versions: Option<Vec<String>>,
    /// With `tls_enabled`: OpenSSL cipher names separated by `:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ciphers: Option<String>,
    /// With `tls_enabled`: ALPN protocols offered to members (`http/1.1`, `http/1.0`);
    /// none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpn_protocols: Option<Vec<String>>,
    /// The Secret whose `ca.crt` holds the CAs members' certificates must chain to;
    /// members' certificates are not verified without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_tls_container_ref: Option<String>,
    /// The Secret whose `ca.crl` holds those CAs' revocation lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_container_ref: Option<String>,
    /// The `kubernetes.io/tls` Secret whose certificate the proxy shows members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_container_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// A backend: an address and port.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default = "yes")]
    pub admin_state_up: bool,
    pub pool_id: String,
    /// Filled in from the pool.
    #[serde(default)]
    pub load_balancer_id: String,
    pub address: String,
    pub protocol_port: u16,
    /// 0..=256; 0 takes no new connections.
    #[serde(default = "one")]
    pub weight: u16,
    /// Serves only while no other member is up.
    #[serde(default, skip_serializing_if = "is_false")]
    pub backup: bool,
    /// The subnet the address is on; found from the address when not given.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subnet_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// The health check of a pool's members.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthMonitorSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default = "yes")]
    pub admin_state_up: bool,
    pub pool_id: String,
    /// Filled in from the pool.
    #[serde(default)]
    pub load_balancer_id: String,
    /// PING, TCP, HTTP, HTTPS or UDP-CONNECT.
    #[serde(rename = "type")]
    pub monitor_type: String,
    /// Seconds between checks of one member.
    pub delay: u64,
    /// Seconds one check may take; at most `delay`.
    pub timeout: u64,
    /// Successes that bring a member back ONLINE (1..=10).
    pub max_retries: u32,
    /// Failures that take a member to ERROR (1..=10; 3 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries_down: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_codes: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// What an HTTP listener does with requests matching all of the policy's rules.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L7PolicySpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default = "yes")]
    pub admin_state_up: bool,
    pub listener_id: String,
    /// Filled in from the listener.
    #[serde(default)]
    pub load_balancer_id: String,
    /// REDIRECT_TO_POOL, REDIRECT_TO_URL, REDIRECT_PREFIX or REJECT.
    pub action: String,
    /// 1-based; after the others when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_pool_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_http_code: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// One condition of an L7 policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L7RuleSpec {
    #[serde(default = "yes")]
    pub admin_state_up: bool,
    pub l7_policy_id: String,
    /// Filled in from the policy.
    #[serde(default)]
    pub listener_id: String,
    #[serde(default)]
    pub load_balancer_id: String,
    /// PATH, HOST_NAME, HEADER, COOKIE or FILE_TYPE.
    #[serde(rename = "type")]
    pub rule_type: String,
    /// EQUAL_TO, STARTS_WITH, ENDS_WITH, CONTAINS or REGEX.
    pub compare_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub value: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub invert: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// The kinds of a load balancer's tree, children after the load balancer, each child
/// after its parent (the order to create in; reverse it to delete).
pub const TREE_KINDS: [&str; 7] = [
    "LoadBalancer",
    "Listener",
    "Pool",
    "Member",
    "HealthMonitor",
    "L7Policy",
    "L7Rule",
];

/// A load balancer and everything under it, as stored objects.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    pub load_balancer: Value,
    pub listeners: Vec<Value>,
    pub pools: Vec<Value>,
    pub members: Vec<Value>,
    pub monitors: Vec<Value>,
    pub policies: Vec<Value>,
    pub rules: Vec<Value>,
}

impl Tree {
    /// Every child object, whatever its kind.
    pub fn children(&self) -> impl Iterator<Item = &Value> {
        self.listeners
            .iter()
            .chain(&self.pools)
            .chain(&self.members)
            .chain(&self.monitors)
            .chain(&self.policies)
            .chain(&self.rules)
    }

    /// The list of `kind`'s objects in the tree.
    pub fn of_kind_mut(&mut self, kind: &str) -> Option<&mut Vec<Value>> {
        Some(match kind {
            "Listener" => &mut self.listeners,
            "Pool" => &mut self.pools,
            "Member" => &mut self.members,
            "HealthMonitor" => &mut self.monitors,
            "L7Policy" => &mut self.policies,
            "L7Rule" => &mut self.rules,
            _ => return None,
        })
    }
}

/// The name of Service `service`'s load balancer (in the Service's namespace, owned by it).
pub fn service_load_balancer_name(service: &str) -> String {
    format!("svc-{service}")
}

/// An object's uid ("" when it has none).
pub fn uid(object: &Value) -> &str {
    object
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// An object's `metadata.generation` (1 when absent).
pub fn generation(object: &Value) -> i64 {
    object
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

/// Whether an object is being deleted.
pub fn deleting(object: &Value) -> bool {
    object.pointer("/metadata/deletionTimestamp").is_some()
}

/// An L7 policy's place among its listener's policies: by position, and of two at
/// one position the one positioned last first (Octavia inserts at a position and
/// moves the others down).
pub fn policy_order(policy: &Value) -> (u32, std::cmp::Reverse<String>) {
    let spec: L7PolicySpec = spec_of(policy);
    let positioned = policy
        .pointer(&format!(
            "/metadata/annotations/{}",
            annotation::POSITIONED_AT.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    (
        spec.position.unwrap_or(u32::MAX),
        std::cmp::Reverse(positioned),
    )
}
