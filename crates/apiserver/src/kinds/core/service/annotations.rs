//! The Service annotations of OpenStack's cloud provider (cloud-provider-openstack's
//! `openstack-cloud-controller-manager`) that shape a Service's load balancer, read as it
//! reads them: a Service written for a Kubernetes cluster on OpenStack gets the same
//! listeners, pools and health monitors here.
//!
//! [`Asked::of`] is what the services controller builds from; [`validate`] refuses what
//! the load balancer could not be built from, in Kubernetes' words, before the Service is
//! stored (the cloud provider only logs such values and falls back to its defaults).

use std::collections::BTreeMap;

use ronghe_api_types::loadbalancing::validate::{self as lb_validate, Problem};
use ronghe_api_types::loadbalancing::{HealthMonitorSpec, ListenerSpec, PoolSpec, proxy};
use ronghe_api_types::validation::{FieldCause, is_dns1123_subdomain};
use serde_json::Value;

/// Every connection to a member opens with a PROXY protocol header naming the client:
/// `true` or `v1` for version 1, `v2` for version 2, `false` for none (TCP ports).
pub const PROXY_PROTOCOL: &str = "loadbalancer.openstack.org/proxy-protocol";
/// `true`: TCP ports get HTTP listeners that add `X-Forwarded-For`.
pub const X_FORWARDED_FOR: &str = "loadbalancer.openstack.org/x-forwarded-for";
/// A `kubernetes.io/tls` Secret (by name, or a reference ending in its name): TCP ports
/// get TERMINATED_HTTPS listeners serving its certificate, and HTTP pools.
pub const TLS_CONTAINER_REF: &str = "loadbalancer.openstack.org/default-tls-container-ref";
/// The most connections each listener takes at once; -1 for no limit.
pub const CONNECTION_LIMIT: &str = "loadbalancer.openstack.org/connection-limit";
/// The listeners' timeouts, in milliseconds.
pub const TIMEOUT_CLIENT_DATA: &str = "loadbalancer.openstack.org/timeout-client-data";
pub const TIMEOUT_MEMBER_CONNECT: &str = "loadbalancer.openstack.org/timeout-member-connect";
pub const TIMEOUT_MEMBER_DATA: &str = "loadbalancer.openstack.org/timeout-member-data";
pub const TIMEOUT_TCP_INSPECT: &str = "loadbalancer.openstack.org/timeout-tcp-inspect";
/// The pools' algorithm: ROUND_ROBIN (the default), LEAST_CONNECTIONS or SOURCE_IP.
pub const LB_METHOD: &str = "loadbalancer.openstack.org/lb-method";
/// `false`: the pools have no health monitor (members leave only with their endpoints).
pub const ENABLE_HEALTH_MONITOR: &str = "loadbalancer.openstack.org/enable-health-monitor";
/// The health monitors' delay and timeout (seconds) and retries up and down.
pub const HEALTH_MONITOR_DELAY: &str = "loadbalancer.openstack.org/health-monitor-delay";
pub const HEALTH_MONITOR_TIMEOUT: &str = "loadbalancer.openstack.org/health-monitor-timeout";
pub const HEALTH_MONITOR_MAX_RETRIES: &str =
    "loadbalancer.openstack.org/health-monitor-max-retries";
pub const HEALTH_MONITOR_MAX_RETRIES_DOWN: &str =
    "loadbalancer.openstack.org/health-monitor-max-retries-down";
/// The external network a LoadBalancer Service's floating IP comes from (by uid or
/// name); without it, the first external network.
pub const FLOATING_NETWORK_ID: &str = "loadbalancer.openstack.org/floating-network-id";
/// `true`: a LoadBalancer Service gets no floating IP; its VIP is its ingress address.
pub const INTERNAL: &str = "service.beta.kubernetes.io/openstack-internal-load-balancer";

/// Every annotation of this module: an update that changes none of them has them checked
/// no further (they were checked when written).
const ALL: &[&str] = &[
    PROXY_PROTOCOL,
    X_FORWARDED_FOR,
    TLS_CONTAINER_REF,
    CONNECTION_LIMIT,
    TIMEOUT_CLIENT_DATA,
    TIMEOUT_MEMBER_CONNECT,
    TIMEOUT_MEMBER_DATA,
    TIMEOUT_TCP_INSPECT,
    LB_METHOD,
    ENABLE_HEALTH_MONITOR,
    HEALTH_MONITOR_DELAY,
    HEALTH_MONITOR_TIMEOUT,
    HEALTH_MONITOR_MAX_RETRIES,
    HEALTH_MONITOR_MAX_RETRIES_DOWN,
    INTERNAL,
];

const PROXY_PROTOCOL_VALUES: &[&str] = &["false", "true", "v1", "v2"];
const BOOLEANS: &[&str] = &["false", "true"];

/// The health monitor each pool gets unless the annotations say otherwise: checked every
/// second, so a killed pod leaves the rotation within about `delay * (max_retries_down +
/// 1)` seconds even before its endpoint goes.
pub const DEFAULT_MONITOR: Monitor = Monitor {
    delay: 1,
    timeout: 1,
    max_retries: 1,
    max_retries_down: 2,
};

/// A pool's health monitor, as the annotations ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Monitor {
    pub delay: u64,
    pub timeout: u64,
    pub max_retries: u32,
    pub max_retries_down: u32,
}

/// What a Service's annotations ask of its load balancer. A value that does not parse
/// counts as absent ([`validate`] refuses it when it is written; one stored before is
/// passed over, as the cloud provider passes it over).
#[derive(Clone, Debug, PartialEq)]
pub struct Asked {
    /// The protocol of the listeners of TCP ports: `TCP`, `HTTP` (X-Forwarded-For) or
    /// `TERMINATED_HTTPS` (a certificate).
    pub tcp_listener: &'static str,
    /// The protocol of their pools: `TCP`, `HTTP` (under an HTTP or TERMINATED_HTTPS
    /// listener), `PROXY` or `PROXYV2`.
    pub tcp_pool: &'static str,
    /// The headers the TCP ports' HTTP listeners insert.
    pub insert_headers: BTreeMap<String, String>,
    pub tls_container_ref: Option<String>,
    pub connection_limit: i64,
    pub timeout_client_data: Option<u64>,
    pub timeout_member_connect: Option<u64>,
    pub timeout_member_data: Option<u64>,
    pub timeout_tcp_inspect: Option<u64>,
    pub lb_algorithm: &'static str,
    /// `None`: no health monitors.
    pub monitor: Option<Monitor>,
    pub internal: bool,
}

impl Asked {
    pub fn of(service: &Value) -> Asked {
        read(service).0
    }

    /// The listener of a Service port of `protocol` (`TCP` or `UDP`) on `port`, without
    /// its load balancer and name.
    pub fn listener(&self, protocol: &str, port: u16) -> ListenerSpec {
        let tcp = protocol == "TCP";
        ListenerSpec {
            admin_state_up: true,
            protocol: if tcp { self.tcp_listener } else { protocol }.to_owned(),
            protocol_port: port,
            connection_limit: self.connection_limit,
            timeout_client_data: self.timeout_client_data,
            timeout_member_connect: self.timeout_member_connect,
            timeout_member_data: self.timeout_member_data,
            timeout_tcp_inspect: self.timeout_tcp_inspect,
            insert_headers: if tcp {
                self.insert_headers.clone()
            } else {
                BTreeMap::new()
            },
            default_tls_container_ref: self.tls_container_ref.clone().filter(|_| tcp),
            ..ListenerSpec::default()
        }
    }

    /// The pool protocol of a Service port of `protocol`.
    pub fn pool_protocol<'a>(&self, protocol: &'a str) -> &'a str {
        if protocol == "TCP" {
            self.tcp_pool
        } else {
            protocol
        }
    }
}

/// The annotation `key` of `service`, trimmed.
fn annotation<'a>(service: &'a Value, key: &str) -> Option<&'a str> {
    service["metadata"]["annotations"][key]
        .as_str()
        .map(str::trim)
}

fn path(key: &str) -> String {
    format!("metadata.annotations[{key}]")
}

/// Reads the annotations: what they ask, and a cause for each value that does not parse.
fn read(service: &Value) -> (Asked, Vec<FieldCause>) {
    let mut causes = Vec::new();
    let raw = |key: &str| annotation(service, key).unwrap_or_default().to_owned();
    let mut boolean = |key: &str, default: bool| match annotation(service, key) {
        None => default,
        Some("true") => true,
        Some("false") => false,
        Some(other) => {
            causes.push(FieldCause::not_supported(path(key), other, BOOLEANS));
            default
        }
    };
    let x_forwarded_for = boolean(X_FORWARDED_FOR, false);
    let monitored = boolean(ENABLE_HEALTH_MONITOR, true);
    let internal = boolean(INTERNAL, false);
    let proxy = match annotation(service, PROXY_PROTOCOL) {
        None | Some("false") => None,
        Some("true" | "v1") => Some("PROXY"),
        Some("v2") => Some("PROXYV2"),
        Some(other) => {
            causes.push(FieldCause::not_supported(
                path(PROXY_PROTOCOL),
                other,
                PROXY_PROTOCOL_VALUES,
            ));
            None
        }
    };
    let tls_container_ref = annotation(service, TLS_CONTAINER_REF)
        .filter(|reference| !reference.is_empty())
        .and_then(|reference| {
            let name = proxy::secret_name(reference);
            let problems = is_dns1123_subdomain(name);
            if problems.is_empty() {
                return Some(reference.to_owned());
            }
            causes.push(FieldCause::invalid(
                path(TLS_CONTAINER_REF),
                reference,
                format!(
                    "must name a Secret of the Service's namespace (or end in its name): {}",
                    problems.join("; ")
                ),
            ));
            None
        });
    if proxy.is_some() && x_forwarded_for {
        causes.push(FieldCause::invalid(
            path(X_FORWARDED_FOR),
            raw(X_FORWARDED_FOR),
            format!("may not be used together with {PROXY_PROTOCOL}"),
        ));
    }
    let tcp_listener = match (&tls_container_ref, x_forwarded_for) {
        (Some(_), _) => "TERMINATED_HTTPS",
        (None, true) => "HTTP",
        (None, false) => "TCP",
    };
    let tcp_pool = match proxy {
        Some(proxy) => proxy,
        None if tcp_listener != "TCP" => "HTTP",
        None => "TCP",
    };
    let mut insert_headers = BTreeMap::new();
    if x_forwarded_for {
        insert_headers.insert("X-Forwarded-For".to_owned(), "true".to_owned());
    }
    let mut number = |key: &str, signed: bool| -> Option<i64> {
        let value = annotation(service, key)?;
        match value.parse::<i64>() {
            Ok(number) if signed || number >= 0 => Some(number),
            _ => {
                let what = if signed {
                    "must be an integer"
                } else {
                    "must be a non-negative integer"
                };
                causes.push(FieldCause::invalid(path(key), value, what));
                None
            }
        }
    };
    let unsigned = |value: Option<i64>| value.and_then(|v| u64::try_from(v).ok());
    let connection_limit = number(CONNECTION_LIMIT, true).unwrap_or(-1);
    let timeout_client_data = unsigned(number(TIMEOUT_CLIENT_DATA, false));
    let timeout_member_connect = unsigned(number(TIMEOUT_MEMBER_CONNECT, false));
    let timeout_member_data = unsigned(number(TIMEOUT_MEMBER_DATA, false));
    let timeout_tcp_inspect = unsigned(number(TIMEOUT_TCP_INSPECT, false));
    let delay = unsigned(number(HEALTH_MONITOR_DELAY, false));
    let timeout = unsigned(number(HEALTH_MONITOR_TIMEOUT, false));
    let retries = |value: Option<i64>| value.and_then(|v| u32::try_from(v).ok());
    let max_retries = retries(number(HEALTH_MONITOR_MAX_RETRIES, false));
    let max_retries_down = retries(number(HEALTH_MONITOR_MAX_RETRIES_DOWN, false));
    let lb_algorithm = match annotation(service, LB_METHOD) {
        None => "ROUND_ROBIN",
        Some(method) => match lb_validate::ALGORITHMS.iter().find(|a| **a == method) {
            Some(known) => known,
            None => {
                causes.push(FieldCause::not_supported(
                    path(LB_METHOD),
                    method,
                    lb_validate::ALGORITHMS,
                ));
                "ROUND_ROBIN"
            }
        },
    };
    let monitor = monitored.then(|| Monitor {
        delay: delay.unwrap_or(DEFAULT_MONITOR.delay),
        timeout: timeout.unwrap_or(DEFAULT_MONITOR.timeout),
        max_retries: max_retries.unwrap_or(DEFAULT_MONITOR.max_retries),
        max_retries_down: max_retries_down.unwrap_or(DEFAULT_MONITOR.max_retries_down),
    });
    let asked = Asked {
        tcp_listener,
        tcp_pool,
        insert_headers,
        tls_container_ref,
        connection_limit,
        timeout_client_data,
        timeout_member_connect,
        timeout_member_data,
        timeout_tcp_inspect,
        lb_algorithm,
        monitor,
        internal,
    };
    (asked, causes)
}

/// Whether the listener, pool and monitor of a TCP port could be made as `asked`: the
/// load-balancing kinds' own checks, their problems told against the annotation that
/// asked for the value.
fn buildable(asked: &Asked) -> Vec<FieldCause> {
    let listener = ListenerSpec {
        load_balancer_id: "service".into(),
        ..asked.listener("TCP", 80)
    };
    let mut problems = lb_validate::listener(&listener);
    if !proxy::compatible(asked.tcp_listener, asked.tcp_pool) {
        problems.push(Problem {
            field: "spec.protocol".into(),
            value: Value::Null,
            message: format!(
                "a {} listener cannot have a {} pool",
                asked.tcp_listener, asked.tcp_pool
            ),
        });
    }
    problems.extend(lb_validate::pool(&PoolSpec {
        admin_state_up: true,
        load_balancer_id: "service".into(),
        protocol: asked.tcp_pool.to_owned(),
        lb_algorithm: asked.lb_algorithm.to_owned(),
        ..PoolSpec::default()
    }));
    if let Some(monitor) = asked.monitor {
        problems.extend(lb_validate::health_monitor(
            &HealthMonitorSpec {
                admin_state_up: true,
                pool_id: "pool".into(),
                monitor_type: "TCP".into(),
                delay: monitor.delay,
                timeout: monitor.timeout,
                max_retries: monitor.max_retries,
                max_retries_down: Some(monitor.max_retries_down),
                ..HealthMonitorSpec::default()
            },
            Some(asked.tcp_pool),
        ));
    }
    problems
        .into_iter()
        .map(|problem| {
            let key = match problem.field.as_str() {
                "spec.connectionLimit" => Some(CONNECTION_LIMIT),
                "spec.timeoutClientData" => Some(TIMEOUT_CLIENT_DATA),
                "spec.timeoutMemberConnect" => Some(TIMEOUT_MEMBER_CONNECT),
                "spec.timeoutMemberData" => Some(TIMEOUT_MEMBER_DATA),
                "spec.timeoutTcpInspect" => Some(TIMEOUT_TCP_INSPECT),
                "spec.lbAlgorithm" => Some(LB_METHOD),
                "spec.delay" => Some(HEALTH_MONITOR_DELAY),
                "spec.timeout" => Some(HEALTH_MONITOR_TIMEOUT),
                "spec.maxRetries" => Some(HEALTH_MONITOR_MAX_RETRIES),
                "spec.maxRetriesDown" => Some(HEALTH_MONITOR_MAX_RETRIES_DOWN),
                "spec.insertHeaders" => Some(X_FORWARDED_FOR),
                "spec.defaultTlsContainerRef" => Some(TLS_CONTAINER_REF),
                "spec.protocol" if asked.tls_container_ref.is_some() => Some(TLS_CONTAINER_REF),
                "spec.protocol" => Some(PROXY_PROTOCOL),
                _ => None,
            };
            let field = key.map_or_else(|| "metadata.annotations".to_owned(), path);
            FieldCause::invalid(field, problem.value, problem.message)
        })
        .collect()
}

/// The annotations' causes (values that do not parse, else what the load balancer could
/// not be built with): none on an update that changes none of them.
pub fn validate(new: &Value, old: Option<&Value>) -> Vec<FieldCause> {
    if let Some(old) = old
        && ALL
            .iter()
            .all(|key| annotation(new, key) == annotation(old, key))
    {
        return Vec::new();
    }
    match read(new) {
        (asked, causes) if causes.is_empty() => buildable(&asked),
        (_, causes) => causes,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn annotated(annotations: Value) -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "a", "annotations": annotations},
            "spec": {"ports": [{"port": 80}]},
        })
    }

    /// The causes of a Service with `annotations`, as `field: message`.
    fn refused(annotations: Value) -> Vec<String> {
        validate(&annotated(annotations), None)
            .iter()
            .map(|cause| format!("{}: {}", cause.field, cause.message))
            .collect()
    }

    #[test]
    fn without_annotations_a_service_gets_tcp_round_robin_and_a_fast_monitor() {
        let asked = Asked::of(&annotated(json!({})));
        assert_eq!(
            asked,
            Asked {
                tcp_listener: "TCP",
                tcp_pool: "TCP",
                insert_headers: BTreeMap::new(),
                tls_container_ref: None,
                connection_limit: -1,
                timeout_client_data: None,
                timeout_member_connect: None,
                timeout_member_data: None,
                timeout_tcp_inspect: None,
                lb_algorithm: "ROUND_ROBIN",
                monitor: Some(DEFAULT_MONITOR),
                internal: false,
            }
        );
        assert!(refused(json!({})).is_empty());
        let udp = asked.listener("UDP", 53);
        assert_eq!((udp.protocol.as_str(), udp.protocol_port), ("UDP", 53));
        assert_eq!(asked.pool_protocol("UDP"), "UDP");
    }

    #[test]
    fn the_cloud_providers_annotations_shape_listeners_pools_and_monitors() {
        let asked = Asked::of(&annotated(json!({
            X_FORWARDED_FOR: "true",
            CONNECTION_LIMIT: "100",
            TIMEOUT_CLIENT_DATA: "60000",
            TIMEOUT_MEMBER_CONNECT: " 3000 ",
            TIMEOUT_MEMBER_DATA: "70000",
            TIMEOUT_TCP_INSPECT: "0",
            LB_METHOD: "LEAST_CONNECTIONS",
            HEALTH_MONITOR_DELAY: "10",
            HEALTH_MONITOR_TIMEOUT: "4",
            HEALTH_MONITOR_MAX_RETRIES: "3",
            HEALTH_MONITOR_MAX_RETRIES_DOWN: "5",
            INTERNAL: "true",
        })));
        let http = asked.listener("TCP", 80);
        assert_eq!(http.protocol, "HTTP");
        assert_eq!(
            http.insert_headers,
            BTreeMap::from([("X-Forwarded-For".to_owned(), "true".to_owned())])
        );
        assert_eq!(http.connection_limit, 100);
        assert_eq!(
            (
                http.timeout_client_data,
                http.timeout_member_connect,
                http.timeout_member_data,
                http.timeout_tcp_inspect
            ),
            (Some(60000), Some(3000), Some(70000), Some(0))
        );
        assert_eq!(asked.pool_protocol("TCP"), "HTTP");
        assert_eq!(asked.lb_algorithm, "LEAST_CONNECTIONS");
        assert_eq!(
            asked.monitor,
            Some(Monitor {
                delay: 10,
                timeout: 4,
                max_retries: 3,
                max_retries_down: 5
            })
        );
        assert!(asked.internal);
        // A UDP port keeps its protocol and inserts nothing; limits and timeouts hold.
        let udp = asked.listener("UDP", 53);
        assert_eq!(udp.protocol, "UDP");
        assert!(udp.insert_headers.is_empty());
        assert_eq!(udp.connection_limit, 100);

        // A certificate makes TERMINATED_HTTPS listeners with HTTP pools, or PROXY ones.
        let tls = Asked::of(&annotated(json!({TLS_CONTAINER_REF: "web-tls"})));
        assert_eq!(
            (tls.tcp_listener, tls.tcp_pool),
            ("TERMINATED_HTTPS", "HTTP")
        );
        assert_eq!(
            tls.listener("TCP", 443)
                .default_tls_container_ref
                .as_deref(),
            Some("web-tls")
        );
        assert_eq!(tls.listener("UDP", 443).default_tls_container_ref, None);
        let proxied = Asked::of(&annotated(json!({
            TLS_CONTAINER_REF: "https://key-manager/v1/containers/web-tls",
            PROXY_PROTOCOL: "v2",
        })));
        assert_eq!(
            (proxied.tcp_listener, proxied.tcp_pool),
            ("TERMINATED_HTTPS", "PROXYV2")
        );
        assert!(refused(json!({TLS_CONTAINER_REF: "https://key-manager/v1/containers/web-tls", PROXY_PROTOCOL: "v2"})).is_empty());

        // No monitor; a longer delay alone keeps the default timeout.
        assert_eq!(
            Asked::of(&annotated(json!({ENABLE_HEALTH_MONITOR: "false"}))).monitor,
            None
        );
        let slow = Asked::of(&annotated(json!({HEALTH_MONITOR_DELAY: "30"})));
        assert_eq!(
            slow.monitor.map(|m| (m.delay, m.timeout)),
            Some((30, DEFAULT_MONITOR.timeout))
        );
    }

    #[test]
    fn bad_annotations_get_kubernetes_field_errors() {
        let cases = [
            (
                json!({LB_METHOD: "SOURCE_IP_PORT"}),
                "metadata.annotations[loadbalancer.openstack.org/lb-method]: Unsupported value: \"SOURCE_IP_PORT\": supported values: \"ROUND_ROBIN\", \"LEAST_CONNECTIONS\", \"SOURCE_IP\"",
            ),
            (
                json!({X_FORWARDED_FOR: "yes"}),
                "metadata.annotations[loadbalancer.openstack.org/x-forwarded-for]: Unsupported value: \"yes\": supported values: \"false\", \"true\"",
            ),
            (
                json!({CONNECTION_LIMIT: "many"}),
                "metadata.annotations[loadbalancer.openstack.org/connection-limit]: Invalid value: \"many\": must be an integer",
            ),
            (
                json!({TIMEOUT_CLIENT_DATA: "-5"}),
                "metadata.annotations[loadbalancer.openstack.org/timeout-client-data]: Invalid value: \"-5\": must be a non-negative integer",
            ),
            (
                json!({PROXY_PROTOCOL: "v2", X_FORWARDED_FOR: "true"}),
                "metadata.annotations[loadbalancer.openstack.org/x-forwarded-for]: Invalid value: \"true\": may not be used together with loadbalancer.openstack.org/proxy-protocol",
            ),
            (
                json!({TLS_CONTAINER_REF: "Web_TLS"}),
                "metadata.annotations[loadbalancer.openstack.org/default-tls-container-ref]: Invalid value: \"Web_TLS\": must name a Secret",
            ),
            (
                json!({PROXY_PROTOCOL: "v3"}),
                "metadata.annotations[loadbalancer.openstack.org/proxy-protocol]: Unsupported value: \"v3\"",
            ),
            // What the load-balancing kinds refuse, in their words, against the annotation.
            (
                json!({CONNECTION_LIMIT: "0"}),
                "metadata.annotations[loadbalancer.openstack.org/connection-limit]: Invalid value: 0: Invalid input for field/attribute connection_limit. Value: '0'. Value must be -1 (unlimited) or at least 1.",
            ),
            (
                json!({HEALTH_MONITOR_DELAY: "5", HEALTH_MONITOR_TIMEOUT: "10"}),
                "metadata.annotations[loadbalancer.openstack.org/health-monitor-timeout]: Invalid value: 10: Validation failure: The health monitor timeout (10) must not be longer than its delay (5).",
            ),
            (
                json!({HEALTH_MONITOR_MAX_RETRIES_DOWN: "11"}),
                "metadata.annotations[loadbalancer.openstack.org/health-monitor-max-retries-down]: Invalid value: 11",
            ),
            (
                json!({TIMEOUT_MEMBER_DATA: "99999999999"}),
                "metadata.annotations[loadbalancer.openstack.org/timeout-member-data]: Invalid value: 99999999999",
            ),
        ];
        for (annotations, expected) in cases {
            let found = refused(annotations.clone());
            assert!(
                found.len() == 1 && found[0].starts_with(expected),
                "{annotations}: {found:?}"
            );
        }
        // A value that does not parse counts as absent for the controller.
        let asked = Asked::of(&annotated(json!({LB_METHOD: "SOURCE_IP_PORT"})));
        assert_eq!(asked.lb_algorithm, "ROUND_ROBIN");
    }

    #[test]
    fn an_update_that_leaves_the_annotations_as_they_were_is_not_checked_again() {
        let stored = annotated(json!({LB_METHOD: "SOURCE_IP_PORT", "other": "x"}));
        let mut updated = stored.clone();
        updated["metadata"]["annotations"]["other"] = json!("y");
        assert!(validate(&updated, Some(&stored)).is_empty());
        // Changing one of them has them all checked.
        updated["metadata"]["annotations"][CONNECTION_LIMIT] = json!("10");
        assert_eq!(validate(&updated, Some(&stored)).len(), 1);
    }
}
