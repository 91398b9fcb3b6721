//! `/extensions`: the Neutron API extensions this face really serves, and nothing it does
//! not (clients switch behaviour on them: `tag-ports-during-bulk-creation`, for one, is
//! absent, so the CLI tags ports after creating them).

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use ronghe_apiserver::auth::User;
use serde_json::{Value, json};

use super::Ctx;
use super::fault::{NeutronFault, NeutronResult};
use crate::OpenStack;

/// (alias, name, description) of each extension served.
const EXTENSIONS: &[(&str, &str, &str)] = &[
    (
        "allowed-address-pairs",
        "Allowed Address Pairs",
        "Provides allowed address pairs",
    ),
    (
        "binding",
        "Port Binding",
        "Expose port bindings of a virtual port to external application",
    ),
    (
        "ext-gw-mode",
        "Neutron L3 Configurable external gateway mode",
        "Extension of the router abstraction for specifying whether SNAT should occur on the external gateway",
    ),
    (
        "external-net",
        "Neutron external network",
        "Adds external network attribute to network resource.",
    ),
    (
        "extraroute",
        "Neutron Extra Route",
        "Extra routes configuration for L3 router",
    ),
    (
        "fip-port-details",
        "Floating IP Port Details Extension",
        "Add port_details attribute to Floating IP resource",
    ),
    (
        "floatingip-port-forwarding",
        "Floating IP Port Forwarding",
        "Provide a way to configure port forwarding on Floating IP",
    ),
    (
        "ip-substring-filtering",
        "IP address substring filtering",
        "Provides IP address substring filtering when listing ports",
    ),
    (
        "net-mtu",
        "Network MTU",
        "Provides MTU attribute for a network resource.",
    ),
    (
        "net-mtu-writable",
        "Network MTU (writable)",
        "Provides a writable MTU attribute for a network resource.",
    ),
    (
        "pagination",
        "Pagination support",
        "Extension that indicates that pagination is enabled.",
    ),
    ("port-security", "Port Security", "Provides port security"),
    (
        "project-id",
        "project_id field enabled",
        "Extension that indicates that project_id field is enabled.",
    ),
    (
        "provider",
        "Provider Network",
        "Expose mapping of virtual networks to physical networks",
    ),
    (
        "qos",
        "Quality of Service",
        "The Quality of Service extension.",
    ),
    (
        "qos-bw-limit-direction",
        "Direction for QoS bandwidth limit rule",
        "Allow to configure QoS bandwidth limit rule with specific direction: ingress or egress",
    ),
    (
        "qos-default",
        "QoS default policy",
        "Expose the QoS default policy per project",
    ),
    (
        "qos-fip",
        "Floating IP QoS",
        "The floating IP Quality of Service extension",
    ),
    (
        "qos-rule-type-details",
        "Details of QoS rule types",
        "Expose details about QoS rule types supported by loaded backend drivers",
    ),
    (
        "quota_details",
        "Quota details management support",
        "Expose functions for quotas usage statistics per project",
    ),
    (
        "quotas",
        "Quota management support",
        "Expose functions for quotas management per project",
    ),
    (
        "router",
        "Neutron L3 Router",
        "Router abstraction for basic L3 forwarding between L2 Neutron networks and access to external networks via a NAT gateway.",
    ),
    (
        "security-group",
        "security-group",
        "The security groups extension.",
    ),
    (
        "sorting",
        "Sorting support",
        "Extension that indicates that sorting is enabled.",
    ),
    (
        "standard-attr-description",
        "standard-attr-description",
        "Extension to add descriptions to standard attributes",
    ),
    (
        "standard-attr-revisions",
        "Resource revision numbers",
        "This extension will display the revision number of neutron resources.",
    ),
    (
        "standard-attr-tag",
        "Tag support for resources with standard attribute: subnet, trunk, network_segment_range, router, network, policy, subnetpool, port, security_group, floatingip",
        "Enables to set tag on resources with standard attribute.",
    ),
    (
        "standard-attr-timestamp",
        "Resource timestamps",
        "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes.",
    ),
    (
        "stateful-security-group",
        "Stateful security group",
        "Indicates if the security group is stateful or not",
    ),
    (
        "subnet-service-types",
        "Subnet service types",
        "Provides ability to set the subnet service_types field",
    ),
];

fn view(alias: &str, name: &str, description: &str) -> Value {
    json!({
        "alias": alias,
        "name": name,
        "description": description,
        "updated": "2024-01-01T00:00:00-00:00",
        "links": [],
    })
}

/// `GET /extensions`.
pub async fn list(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
) -> NeutronResult<Json<Value>> {
    Ctx::new(state, &user)?;
    let extensions: Vec<Value> = EXTENSIONS
        .iter()
        .map(|(alias, name, description)| view(alias, name, description))
        .collect();
    Ok(Json(json!({"extensions": extensions})))
}

/// `GET /extensions/{alias}`.
pub async fn show(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(alias): Path<String>,
) -> NeutronResult<Json<Value>> {
    Ctx::new(state, &user)?;
    EXTENSIONS
        .iter()
        .find(|(known, _, _)| *known == alias)
        .map(|(alias, name, description)| {
            Json(json!({"extension": view(alias, name, description)}))
        })
        .ok_or_else(|| {
            NeutronFault::not_found(
                "HTTPNotFound",
                format!("Extension with alias {alias} does not exist"),
            )
        })
}
