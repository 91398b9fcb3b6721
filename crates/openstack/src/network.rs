//! Neutron v2.0 at `/networking/v2.0`: networks, subnets, ports, routers (interfaces and
//! gateways), security groups and their rules, floating IPs with port forwardings, QoS
//! policies and rules, tags and extensions, over the `network.ronghe.io` kinds.
//!
//! Ids: a Neutron id is the object's uid (UUID form), found in O(1) through the kinds'
//! `ids/<uid>` claims; anything that is not a UUID is simply not found. A `project_id` is
//! the project paired with the object's namespace. The Neutron name is `spec.name`; the
//! object's name is that name when it is a DNS-1123 subdomain free in the namespace, else
//! generated. The kinds' admission does IPAM, VNIs, MACs and references; this face checks
//! policy and visibility, shapes requests and answers, and keeps multi-object operations
//! (router gateways and interfaces, deletes in use) whole.

mod body;
mod context;
mod extensions;
mod fault;
mod floating_ips;
mod forwardings;
mod networks;
mod ports;
mod qos;
pub(crate) mod query;
mod routers;
mod rules;
mod security_groups;
mod subnets;
mod tags;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, put};
use ronghe_api_types::network::{API_VERSION, display_name};
use ronghe_apiserver::object;
use serde_json::{Value, json};

use crate::OpenStack;
use crate::fault::Style;

pub(crate) use context::Ctx;
pub use fault::{NeutronFault, NeutronResult};

/// Where the networking API lives under the server's URL.
pub const BASE: &str = "/networking/v2.0";

/// The collections served, for discovery (`GET /networking/v2.0/`).
pub const COLLECTIONS: &[(&str, &str)] = &[
    ("network", "networks"),
    ("subnet", "subnets"),
    ("port", "ports"),
    ("router", "routers"),
    ("security_group", "security-groups"),
    ("security_group_rule", "security-group-rules"),
    ("floatingip", "floatingips"),
    ("policy", "qos/policies"),
    ("rule_type", "qos/rule-types"),
    ("extension", "extensions"),
    ("quota", "quotas"),
];

pub fn router(state: Arc<OpenStack>) -> Router {
    let mut routes = Router::new()
        .route(
            "/networking/v2.0/networks",
            get(networks::list).post(networks::create),
        )
        .route(
            "/networking/v2.0/networks/{id}",
            get(networks::show)
                .put(networks::update)
                .delete(networks::delete),
        )
        .route(
            "/networking/v2.0/subnets",
            get(subnets::list).post(subnets::create),
        )
        .route(
            "/networking/v2.0/subnets/{id}",
            get(subnets::show)
                .put(subnets::update)
                .delete(subnets::delete),
        )
        .route(
            "/networking/v2.0/ports",
            get(ports::list).post(ports::create),
        )
        .route(
            "/networking/v2.0/ports/{id}",
            get(ports::show).put(ports::update).delete(ports::delete),
        )
        .route(
            "/networking/v2.0/routers",
            get(routers::list).post(routers::create),
        )
        .route(
            "/networking/v2.0/routers/{id}",
            get(routers::show)
                .put(routers::update)
                .delete(routers::delete),
        )
        .route(
            "/networking/v2.0/routers/{id}/add_router_interface",
            put(routers::add_interface),
        )
        .route(
            "/networking/v2.0/routers/{id}/remove_router_interface",
            put(routers::remove_interface),
        )
        .route(
            "/networking/v2.0/security-groups",
            get(security_groups::list).post(security_groups::create),
        )
        .route(
            "/networking/v2.0/security-groups/{id}",
            get(security_groups::show)
                .put(security_groups::update)
                .delete(security_groups::delete),
        )
        .route(
            "/networking/v2.0/security-group-rules",
            get(rules::list).post(rules::create),
        )
        .route(
            "/networking/v2.0/security-group-rules/{id}",
            get(rules::show).delete(rules::delete),
        )
        .route(
            "/networking/v2.0/floatingips",
            get(floating_ips::list).post(floating_ips::create),
        )
        .route(
            "/networking/v2.0/floatingips/{id}",
            get(floating_ips::show)
                .put(floating_ips::update)
                .delete(floating_ips::delete),
        )
        .route(
            "/networking/v2.0/floatingips/{id}/port_forwardings",
            get(forwardings::list).post(forwardings::create),
        )
        .route(
            "/networking/v2.0/floatingips/{id}/port_forwardings/{forwarding}",
            get(forwardings::show)
                .put(forwardings::update)
                .delete(forwardings::delete),
        )
        .route("/networking/v2.0/extensions", get(extensions::list))
        .route("/networking/v2.0/extensions/{alias}", get(extensions::show));
    routes = qos::routes(routes);
    routes = tags::routes(routes);
    routes
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            |axum::extract::State(state): axum::extract::State<Arc<OpenStack>>,
             request,
             next| async move {
                crate::authenticate_as(&state, request, next, Style::Neutron).await
            },
        ))
        .with_state(state)
}

/// One Neutron resource over one kind: its JSON names, URL, policy noun and not-found
/// wording.
#[derive(Debug)]
pub(crate) struct Resource {
    /// The kind in `network.ronghe.io/v1`.
    pub kind: &'static str,
    /// The JSON member of one (`network`).
    pub singular: &'static str,
    /// The JSON key of a list (`networks`).
    pub plural: &'static str,
    /// The collection's URL under the base (`security-groups`).
    pub path: &'static str,
    /// The noun of its policy rules (`get_network`).
    pub policy: &'static str,
    /// Neutron's exception type when an id names nothing (`NetworkNotFound`).
    pub not_found: &'static str,
    /// Neutron's message for it, `{}` standing for the id.
    pub missing: &'static str,
    /// The prefix of generated object names.
    pub prefix: &'static str,
}

impl Resource {
    pub fn missing(&self, id: &str) -> NeutronFault {
        NeutronFault::not_found(self.not_found, self.missing.replace("{}", id))
    }

    pub fn rule(&self, action: &str) -> String {
        format!("{action}_{}", self.policy)
    }
}

pub(crate) const NETWORK: Resource = Resource {
    kind: "Network",
    singular: "network",
    plural: "networks",
    path: "networks",
    policy: "network",
    not_found: "NetworkNotFound",
    missing: "Network {} could not be found.",
    prefix: "net-",
};

pub(crate) const SUBNET: Resource = Resource {
    kind: "Subnet",
    singular: "subnet",
    plural: "subnets",
    path: "subnets",
    policy: "subnet",
    not_found: "SubnetNotFound",
    missing: "Subnet {} could not be found.",
    prefix: "subnet-",
};

pub(crate) const PORT: Resource = Resource {
    kind: "Port",
    singular: "port",
    plural: "ports",
    path: "ports",
    policy: "port",
    not_found: "PortNotFound",
    missing: "Port {} could not be found.",
    prefix: "port-",
};

pub(crate) const ROUTER: Resource = Resource {
    kind: "Router",
    singular: "router",
    plural: "routers",
    path: "routers",
    policy: "router",
    not_found: "RouterNotFound",
    missing: "Router {} could not be found.",
    prefix: "router-",
};

pub(crate) const SECURITY_GROUP: Resource = Resource {
    kind: "SecurityGroup",
    singular: "security_group",
    plural: "security_groups",
    path: "security-groups",
    policy: "security_group",
    not_found: "SecurityGroupNotFound",
    missing: "Security group {} does not exist",
    prefix: "sg-",
};

pub(crate) const SECURITY_GROUP_RULE: Resource = Resource {
    kind: "SecurityGroupRule",
    singular: "security_group_rule",
    plural: "security_group_rules",
    path: "security-group-rules",
    policy: "security_group_rule",
    not_found: "SecurityGroupRuleNotFound",
    missing: "Security group rule {} does not exist",
    prefix: "rule-",
};

pub(crate) const FLOATING_IP: Resource = Resource {
    kind: "FloatingIP",
    singular: "floatingip",
    plural: "floatingips",
    path: "floatingips",
    policy: "floatingip",
    not_found: "FloatingIPNotFound",
    missing: "Floating IP {} could not be found",
    prefix: "fip-",
};

pub(crate) const PORT_FORWARDING: Resource = Resource {
    kind: "PortForwarding",
    singular: "port_forwarding",
    plural: "port_forwardings",
    path: "port_forwardings",
    policy: "floatingip_port_forwarding",
    not_found: "PortForwardingNotFound",
    missing: "Port Forwarding {} could not be found.",
    prefix: "pf-",
};

pub(crate) const QOS_POLICY: Resource = Resource {
    kind: "QosPolicy",
    singular: "policy",
    plural: "policies",
    path: "qos/policies",
    policy: "policy",
    not_found: "QosPolicyNotFound",
    missing: "QoS policy {} could not be found.",
    prefix: "qos-",
};

/// An object's uid, which is its Neutron id.
pub(crate) fn uid_of(object: &Value) -> String {
    object::uid(object).unwrap_or_default().to_owned()
}

/// Neutron's name of an object: its `spec.name` (empty when none was given).
pub(crate) fn neutron_name(object: &Value) -> String {
    let named = object
        .pointer("/spec/name")
        .and_then(Value::as_str)
        .is_some_and(|name| !name.is_empty());
    // A generated object name is no name anyone chose (Neutron shows ""); objects named
    // on the Kubernetes face without a `spec.name` go by their object name.
    if !named && object::meta_str(object, "generateName").is_some() {
        return String::new();
    }
    display_name(object)
}

/// A string at a JSON pointer, or "".
pub(crate) fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Whether two ids name the same UUID (with or without hyphens).
pub(crate) fn uuid_eq(a: &str, b: &str) -> bool {
    match (uuid::Uuid::try_parse(a), uuid::Uuid::try_parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// An id in the canonical (hyphenated, lower-case) form object uids take; other strings
/// as they are.
pub(crate) fn canonical_id(id: &str) -> String {
    uuid::Uuid::try_parse(id).map_or_else(|_| id.to_owned(), |uid| uid.hyphenated().to_string())
}

/// An owner reference to an object of a kind (for objects the garbage collector should
/// remove with it).
pub(crate) fn owner_reference(kind: &str, object: &Value) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": object::name(object).unwrap_or_default(),
        "uid": uid_of(object),
    })
}

/// An empty 204.
pub(crate) fn no_content() -> axum::response::Response {
    use axum::response::IntoResponse;
    http::StatusCode::NO_CONTENT.into_response()
}

/// A JSON answer with a status code.
pub(crate) fn answer(code: http::StatusCode, body: Value) -> axum::response::Response {
    use axum::response::IntoResponse;
    (code, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_compare_as_uuids() {
        assert!(uuid_eq(
            "5ae7487a0d6d4d8e9c4a1b2c3d4e5f60",
            "5ae7487a-0d6d-4d8e-9c4a-1b2c3d4e5f60"
        ));
        assert_eq!(
            canonical_id("5AE7487A0D6D4D8E9C4A1B2C3D4E5F60"),
            "5ae7487a-0d6d-4d8e-9c4a-1b2c3d4e5f60"
        );
    }
}
