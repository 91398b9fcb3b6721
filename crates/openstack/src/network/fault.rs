//! Neutron's errors: `{"NeutronError": {"type", "message", "detail"}}` with the exception
//! type Neutron names (`NetworkNotFound`, `IpAddressAlreadyAllocated`, ...), and the
//! translation of the engine's errors (admission's Neutron-worded messages, claim
//! conflicts naming their Neutron exception, validation causes) into them.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use ronghe_apiserver::error::ApiError;
use serde_json::json;

use crate::fault::{Fault, Style};

/// A Neutron error response.
#[derive(Debug, Clone)]
pub struct NeutronFault {
    pub code: StatusCode,
    /// Neutron's exception type, e.g. `NetworkNotFound`.
    pub kind: String,
    pub message: String,
}

pub type NeutronResult<T> = Result<T, NeutronFault>;

impl NeutronFault {
    pub fn new(code: StatusCode, kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            kind: kind.into(),
            message: message.into(),
        }
    }

    /// A 400 whose type follows from Neutron's wording of the message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        let message = message.into();
        let (code, kind) = classify_bad_input(&message);
        Self::new(code, kind, message)
    }

    pub fn not_found(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, kind, message)
    }

    pub fn conflict(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, kind, message)
    }

    /// A policy refusal, worded as oslo.policy words it.
    pub fn forbidden(rule: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "PolicyNotAuthorized",
            format!("rule:{rule} is disallowed by policy"),
        )
    }

    /// An attribute the request may not carry.
    pub fn unrecognized(attributes: &[String]) -> Self {
        let quoted: Vec<String> = attributes.iter().map(|a| format!("'{a}'")).collect();
        Self::new(
            StatusCode::BAD_REQUEST,
            "HTTPBadRequest",
            format!("Unrecognized attribute(s) {}", quoted.join(", ")),
        )
    }

    /// Maps an engine error: admission's 400/404/409 carry Neutron's words in the status
    /// message, claim conflicts the Neutron exception as their cause reason, validation
    /// failures Neutron's words after Kubernetes' `Invalid value: ...:` prefix.
    pub fn from_api(error: ApiError) -> Self {
        let status = &error.status;
        let message = status.message.clone();
        let cause = status
            .details
            .as_ref()
            .and_then(|details| details.causes.first());
        match error.code() {
            400 => Self::bad_request(message),
            404 => {
                let kind = not_found_type(&message);
                Self::not_found(kind, message)
            }
            409 => {
                if let Some(cause) = cause.filter(|c| !c.reason.is_empty()) {
                    let code = match cause.reason.as_str() {
                        "BadRequest" | "InvalidInput" => StatusCode::BAD_REQUEST,
                        _ => StatusCode::CONFLICT,
                    };
                    return Self::new(code, cause.reason.clone(), cause.message.clone());
                }
                let kind = if message.contains("already allocated") {
                    "IpAddressAlreadyAllocated"
                } else if message.contains("No more IP addresses") {
                    "IpAddressGenerationFailure"
                } else if message.contains("No tenant network is available") {
                    "NoNetworkAvailable"
                } else if message.contains("port forwardings") {
                    "FloatingIPPortForwardingAssociated"
                } else {
                    "Conflict"
                };
                Self::conflict(kind, message)
            }
            422 => {
                let messages: Vec<String> = status
                    .details
                    .as_ref()
                    .map(|details| {
                        details
                            .causes
                            .iter()
                            .map(|c| strip_invalid_value(&c.message))
                            .collect()
                    })
                    .unwrap_or_default();
                if messages.is_empty() {
                    Self::bad_request(message)
                } else {
                    Self::bad_request(messages.join(" "))
                }
            }
            403 if message.contains("exceeded quota") => Self::conflict(
                "OverQuota",
                format!("Quota exceeded for resources: {}.", over_quota(&message)),
            ),
            403 => Self::new(StatusCode::FORBIDDEN, "HTTPForbidden", message),
            429 => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "HTTPTooManyRequests",
                message,
            ),
            code => Self::new(
                StatusCode::from_u16(code)
                    .ok()
                    .filter(|c| c.is_server_error())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "HTTPInternalServerError",
                "Request Failed: internal server error while processing your request.",
            ),
        }
    }
}

impl From<ApiError> for NeutronFault {
    fn from(error: ApiError) -> Self {
        NeutronFault::from_api(error)
    }
}

impl From<Fault> for NeutronFault {
    fn from(fault: Fault) -> Self {
        let kind = match fault.code.as_u16() {
            401 => "HTTPUnauthorized",
            403 => "PolicyNotAuthorized",
            404 => "HTTPNotFound",
            409 => "HTTPConflict",
            503 => "HTTPServiceUnavailable",
            code if code < 500 => "HTTPBadRequest",
            _ => "HTTPInternalServerError",
        };
        Self::new(fault.code, kind, fault.message)
    }
}

impl IntoResponse for NeutronFault {
    fn into_response(self) -> Response {
        if self.code == StatusCode::UNAUTHORIZED {
            // Keystone's challenge header comes with the shared fault.
            return Fault::new(self.code, self.message)
                .styled(Style::Neutron)
                .into_response();
        }
        let body = json!({"NeutronError": {
            "type": self.kind,
            "message": self.message,
            "detail": "",
        }});
        (self.code, axum::Json(body)).into_response()
    }
}

/// Neutron's names of the resources a Kubernetes quota refusal names
/// (`requested: count/ports.network.ronghe.io=1` → `['port']`).
fn over_quota(message: &str) -> String {
    const NAMES: &[(&str, &str)] = &[
        ("networks", "network"),
        ("subnets", "subnet"),
        ("ports", "port"),
        ("routers", "router"),
        ("floatingips", "floatingip"),
        ("securitygroups", "security_group"),
        ("securitygrouprules", "security_group_rule"),
    ];
    let requested = message
        .split_once("requested: ")
        .map_or("", |(_, rest)| rest.split(", used:").next().unwrap_or(rest));
    let names: Vec<String> = requested
        .split(',')
        .filter_map(|item| {
            let resource = item.trim().split('=').next()?;
            let plural = resource
                .strip_prefix("count/")?
                .strip_suffix(".network.ronghe.io")?;
            NAMES
                .iter()
                .find(|(p, _)| *p == plural)
                .map(|(_, name)| format!("'{name}'"))
        })
        .collect();
    if names.is_empty() {
        return message.to_owned();
    }
    format!("[{}]", names.join(", "))
}

/// Kubernetes' `Invalid value: "x": <message>` less its prefix.
fn strip_invalid_value(message: &str) -> String {
    let Some(rest) = message.strip_prefix("Invalid value: ") else {
        return message.to_owned();
    };
    // The value is JSON: a quoted string ends at `": `, anything else at the first `: `.
    let cut = if rest.starts_with('"') {
        rest.find("\": ").map(|at| at + 3)
    } else {
        rest.find(": ").map(|at| at + 2)
    };
    cut.map_or_else(|| rest.to_owned(), |at| rest[at..].to_owned())
}

/// Neutron's exception type (and code) for a message about bad input.
fn classify_bad_input(message: &str) -> (StatusCode, &'static str) {
    const TABLE: &[(&str, &str)] = &[
        (
            "is not a valid IP for the specified subnet",
            "InvalidIpForSubnet",
        ),
        (
            "is not a valid IP for any of the subnets",
            "InvalidIpForNetwork",
        ),
        ("spans beyond the subnet cidr", "OutOfBoundsAllocationPool"),
        ("overlapping allocation pools", "OverlappingAllocationPools"),
        (
            "conflicts with allocation pool",
            "GatewayConflictWithAllocationPools",
        ),
        (
            "port_range_min must be <= port_range_max",
            "SecurityGroupInvalidPortRange",
        ),
        ("Invalid value for port", "SecurityGroupInvalidPortValue"),
        ("Invalid value for ICMP", "SecurityGroupInvalidIcmpValue"),
        (
            "Security group rule protocol",
            "SecurityGroupRuleInvalidProtocol",
        ),
        (
            "Conflicting value ethertype",
            "SecurityGroupRuleParameterConflict",
        ),
        (
            "Only one of remote_ip_prefix",
            "SecurityGroupRemoteGroupAndRemoteIpPrefix",
        ),
        (
            "Port has security group",
            "PortSecurityAndIPRequiredForSecurityGroups",
        ),
        ("Invalid input for operation", "InvalidInput"),
        ("Bad router request", "BadRequest"),
        ("Bad floatingip request", "BadRequest"),
        ("Bad port_forwarding request", "BadRequest"),
        ("Invalid input for", "HTTPBadRequest"),
    ];
    let kind = TABLE
        .iter()
        .find(|(needle, _)| message.contains(needle))
        .map_or("BadRequest", |(_, kind)| kind);
    (StatusCode::BAD_REQUEST, kind)
}

/// Neutron's not-found type for an admission message (`Network X could not be found.`).
fn not_found_type(message: &str) -> &'static str {
    const TABLE: &[(&str, &str)] = &[
        ("Network ", "NetworkNotFound"),
        ("Subnet ", "SubnetNotFound"),
        ("Port ", "PortNotFound"),
        ("Router ", "RouterNotFound"),
        ("Security group ", "SecurityGroupNotFound"),
        ("Floating IP ", "FloatingIPNotFound"),
        ("QoS policy ", "QosPolicyNotFound"),
        ("External network ", "ExternalGatewayForFloatingIPNotFound"),
    ];
    TABLE
        .iter()
        .find(|(prefix, _)| message.starts_with(prefix))
        .map_or("HTTPNotFound", |(_, kind)| kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_value_prefixes_are_stripped() {
        assert_eq!(
            strip_invalid_value(r#"Invalid value: "10.0.0.7/24": Invalid input for cidr."#),
            "Invalid input for cidr."
        );
        assert_eq!(
            strip_invalid_value("Invalid value: 90: For TCP/UDP protocols, x"),
            "For TCP/UDP protocols, x"
        );
        assert_eq!(strip_invalid_value("plain"), "plain");
    }

    #[test]
    fn quota_refusals_name_neutron_resources() {
        assert_eq!(
            over_quota(
                "exceeded quota: q, requested: count/ports.network.ronghe.io=1, used: count/ports.network.ronghe.io=2, limited: count/ports.network.ronghe.io=2"
            ),
            "['port']"
        );
    }

    #[test]
    fn types_follow_the_words() {
        let fault = NeutronFault::bad_request(
            "IP address 10.1.0.5 is not a valid IP for the specified subnet.",
        );
        assert_eq!(fault.kind, "InvalidIpForSubnet");
        assert_eq!(
            not_found_type("External network x is not reachable"),
            "ExternalGatewayForFloatingIPNotFound"
        );
        assert_eq!(
            not_found_type("Network x could not be found."),
            "NetworkNotFound"
        );
    }
}
