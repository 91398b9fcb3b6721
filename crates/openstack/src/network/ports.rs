//! `/ports` over the Port kind: create (one or in bulk, all or none), show, list, update,
//! delete. IPAM, MACs and the project's default security group come from the kind's
//! admission; this face checks policy, shapes `fixed_ips` and the `binding:*` attributes,
//! refuses deleting a router's ports, and lets go of floating IPs and port forwardings
//! when a port goes.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::{Extension, Json};
use bytes::Bytes;
use http::StatusCode;
use ronghe_api_types::network::{
    AddressPair, FixedIp, FloatingIpSpec, PortForwardingSpec, PortSpec, PortStatus, owner, spec_of,
    status_of, validate,
};
use ronghe_apiserver::auth::User;
use ronghe_apiserver::object;
use serde_json::{Map, Value, json};

use super::body::{self, Attributes};
use super::fault::{NeutronFault, NeutronResult};
use super::networks::{self, fresh};
use super::query::Query;
use super::{
    Ctx, FLOATING_IP, PORT, PORT_FORWARDING, ROUTER, answer, canonical_id, no_content, text, uid_of,
};
use crate::OpenStack;

const CREATE: &[&str] = &[
    "name",
    "description",
    "network_id",
    "admin_state_up",
    "mac_address",
    "fixed_ips",
    "device_owner",
    "device_id",
    "binding:host_id",
    "binding:vnic_type",
    "binding:profile",
    "security_groups",
    "allowed_address_pairs",
    "port_security_enabled",
    "qos_policy_id",
    "dns_name",
    "propagate_uplink_status",
    "tags",
    "project_id",
    "tenant_id",
];

const UPDATE: &[&str] = &[
    "name",
    "description",
    "admin_state_up",
    "mac_address",
    "fixed_ips",
    "device_owner",
    "device_id",
    "binding:host_id",
    "binding:vnic_type",
    "binding:profile",
    "security_groups",
    "allowed_address_pairs",
    "port_security_enabled",
    "qos_policy_id",
    "dns_name",
    "propagate_uplink_status",
    "network_id",
    "project_id",
    "tenant_id",
];

/// Neutron's DNS name for an address of a port without a `dns_name`.
fn hostname_for(address: &str) -> String {
    format!("host-{}", address.replace(['.', ':'], "-"))
}

pub(crate) fn view(ctx: &Ctx, port: &Value) -> Value {
    let spec: PortSpec = spec_of(port);
    let status: PortStatus = status_of(port);
    let mut view = ctx.standard(port);
    let fixed_ips: Vec<Value> = spec
        .fixed_ips
        .iter()
        .map(|fixed| json!({"subnet_id": fixed.subnet_id, "ip_address": fixed.ip_address}))
        .collect();
    let dns_assignment: Vec<Value> = spec
        .fixed_ips
        .iter()
        .map(|fixed| {
            let hostname = if spec.dns_name.is_empty() {
                hostname_for(&fixed.ip_address)
            } else {
                spec.dns_name.clone()
            };
            json!({
                "ip_address": fixed.ip_address,
                "hostname": hostname,
                "fqdn": format!("{hostname}.openstacklocal."),
            })
        })
        .collect();
    let pairs: Vec<Value> = spec
        .allowed_address_pairs
        .iter()
        .map(|pair| {
            json!({
                "ip_address": pair.ip_address,
                "mac_address": pair.mac_address.clone().unwrap_or_else(|| spec.mac_address.clone()),
            })
        })
        .collect();
    let vnic_type = if spec.binding_vnic_type.is_empty() {
        "normal".to_owned()
    } else {
        spec.binding_vnic_type.clone()
    };
    let port_status = if status.status.is_empty() {
        "DOWN".to_owned()
    } else {
        status.status.clone()
    };
    for (key, value) in [
        ("network_id", json!(spec.network_id)),
        ("admin_state_up", json!(spec.admin_state_up)),
        ("status", json!(port_status)),
        ("mac_address", json!(spec.mac_address)),
        ("fixed_ips", json!(fixed_ips)),
        ("device_id", json!(spec.device_id)),
        ("device_owner", json!(spec.device_owner)),
        (
            "security_groups",
            json!(spec.security_groups.clone().unwrap_or_default()),
        ),
        ("allowed_address_pairs", json!(pairs)),
        ("port_security_enabled", json!(spec.security_enabled())),
        ("qos_policy_id", json!(spec.qos_policy_id)),
        ("dns_name", json!(spec.dns_name)),
        ("dns_assignment", json!(dns_assignment)),
        ("ip_allocation", json!("immediate")),
        ("propagate_uplink_status", json!(false)),
        ("binding:vnic_type", json!(vnic_type)),
    ] {
        view.insert(key.into(), value);
    }
    // Neutron shows where and how a port is bound to admins only.
    if ctx.is_admin() {
        let vif_type = match status.vif_type.as_str() {
            "" | "unbound" => "unbound",
            _ => "bridge",
        };
        view.insert("binding:host_id".into(), json!(spec.binding_host_id));
        view.insert("binding:profile".into(), json!(spec.binding_profile));
        view.insert("binding:vif_type".into(), json!(vif_type));
        view.insert("binding:vif_details".into(), json!({}));
    }
    Value::Object(view)
}

/// `GET /ports`.
pub async fn list(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    RawQuery(raw): RawQuery,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let query = Query::parse(raw.as_deref());
    let views = ctx
        .list_owned(&PORT)
        .await?
        .iter()
        .map(|port| view(&ctx, port))
        .collect();
    ctx.list_answer(&PORT, views, &query)
}

/// `GET /ports/{id}`.
pub async fn show(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let port = ctx.fetch_owned(&PORT, &id).await?;
    ctx.show_answer(&PORT, view(&ctx, &port), raw.as_deref())
}

/// Policy on the attributes only admins set.
fn check_attributes(
    ctx: &Ctx,
    attributes: &Attributes,
    action: &str,
    namespace: &str,
) -> NeutronResult<()> {
    for attribute in ["binding:host_id", "binding:profile", "mac_address"] {
        if attributes.has(attribute) {
            ctx.check(&format!("{action}_port:{attribute}"), Some(namespace))?;
        }
    }
    Ok(())
}

/// Only a network's owner (or an admin) may give a port a network device owner
/// (`network:router_interface`, `network:dhcp`, ...), as Neutron's
/// `create_port:device_owner` rule says.
fn check_device_owner(
    ctx: &Ctx,
    attributes: &Attributes,
    action: &str,
    network: &Value,
) -> NeutronResult<()> {
    let device_owner = attributes.string("device_owner")?.unwrap_or_default();
    if device_owner.starts_with("network:") && !ctx.owns(network) {
        return Err(NeutronFault::forbidden(&format!(
            "{action}_port:device_owner"
        )));
    }
    Ok(())
}

/// The references a request makes, resolved before the spec is written.
struct Resolved {
    qos: Option<Option<String>>,
}

async fn resolve(ctx: &Ctx, attributes: &Attributes) -> NeutronResult<Resolved> {
    let qos = match attributes.nullable_string("qos_policy_id")? {
        None => None,
        Some(None) => Some(None),
        Some(Some(id)) => Some(Some(networks::qos_reference(ctx, &id).await?)),
    };
    Ok(Resolved { qos })
}

/// Applies a request's attributes to a spec.
fn apply(spec: &mut PortSpec, attributes: &Attributes, resolved: &Resolved) -> NeutronResult<()> {
    if let Some(name) = attributes.string("name")? {
        spec.name = name;
    }
    if let Some(description) = attributes.string("description")? {
        spec.description = description;
    }
    if let Some(up) = attributes.boolean("admin_state_up")? {
        spec.admin_state_up = up;
    }
    if let Some(mac) = attributes.string("mac_address")? {
        spec.mac_address = mac;
    }
    if let Some(fixed_ips) = attributes.objects("fixed_ips")? {
        spec.fixed_ips = fixed_ips
            .iter()
            .map(fixed_ip)
            .collect::<NeutronResult<_>>()?;
    }
    if let Some(owner) = attributes.string("device_owner")? {
        spec.device_owner = owner;
    }
    if let Some(device) = attributes.string("device_id")? {
        spec.device_id = device;
    }
    if let Some(host) = attributes.string("binding:host_id")? {
        spec.binding_host_id = host;
    }
    if let Some(vnic) = attributes.string("binding:vnic_type")? {
        if vnic != "normal" {
            return Err(NeutronFault::bad_request(format!(
                "Invalid input for binding:vnic_type. Reason: '{vnic}' is not in ['normal']."
            )));
        }
        spec.binding_vnic_type = vnic;
    }
    if attributes.has("binding:profile") {
        spec.binding_profile = attributes
            .object("binding:profile")?
            .unwrap_or_default()
            .into_iter()
            .collect();
    }
    if attributes.has("security_groups") {
        spec.security_groups = Some(
            attributes
                .strings("security_groups")?
                .unwrap_or_default()
                .iter()
                .map(|id| canonical_id(id))
                .collect(),
        );
    }
    if let Some(pairs) = attributes.objects("allowed_address_pairs")? {
        spec.allowed_address_pairs = pairs
            .iter()
            .map(|pair| {
                Ok(AddressPair {
                    ip_address: body::member_string(pair, "ip_address", "allowed_address_pairs")?,
                    mac_address: pair
                        .get("mac_address")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                })
            })
            .collect::<NeutronResult<_>>()?;
    } else if attributes
        .raw("allowed_address_pairs")
        .is_some_and(Value::is_null)
    {
        spec.allowed_address_pairs.clear();
    }
    if let Some(security) = attributes.boolean("port_security_enabled")? {
        spec.port_security_enabled = Some(security);
    }
    if let Some(qos) = &resolved.qos {
        spec.qos_policy_id = qos.clone();
    }
    if let Some(dns_name) = attributes.string("dns_name")? {
        spec.dns_name = dns_name;
    }
    if attributes.boolean("propagate_uplink_status")? == Some(true) {
        return Err(NeutronFault::bad_request(
            "Invalid input for operation: propagate_uplink_status is not supported.",
        ));
    }
    if let Some(tags) = attributes.strings("tags")? {
        spec.tags = tags;
    }
    if let Some(problem) = validate::port(spec).into_iter().next() {
        return Err(NeutronFault::bad_request(problem.message));
    }
    Ok(())
}

/// One `fixed_ips` entry of a request: a subnet, an address, or both.
fn fixed_ip(entry: &Map<String, Value>) -> NeutronResult<FixedIp> {
    let field = |key: &str| -> NeutronResult<String> {
        match entry.get(key) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(text)) => Ok(text.clone()),
            Some(other) => Err(NeutronFault::bad_request(format!(
                "Invalid input for fixed_ips. Reason: '{other}' is not a valid {key}."
            ))),
        }
    };
    if let Some(unknown) = entry
        .keys()
        .find(|k| !["subnet_id", "ip_address"].contains(&k.as_str()))
    {
        return Err(NeutronFault::bad_request(format!(
            "Invalid input for fixed_ips. Reason: Unrecognized attribute '{unknown}'."
        )));
    }
    let fixed = FixedIp {
        subnet_id: canonical_id(&field("subnet_id")?),
        ip_address: field("ip_address")?,
    };
    if fixed.subnet_id.is_empty() && fixed.ip_address.is_empty() {
        return Err(NeutronFault::bad_request(
            "Invalid input for fixed_ips. Reason: each entry needs subnet_id or ip_address.",
        ));
    }
    Ok(fixed)
}

/// Creates one port from a request member; returns the stored object.
async fn create_one(ctx: &Ctx, member: Option<&Value>) -> NeutronResult<Value> {
    let attributes = Attributes::of(member, "port", CREATE)?;
    let network_id = attributes.string("network_id")?.ok_or_else(|| {
        NeutronFault::bad_request("Invalid input for operation: network_id is required.")
    })?;
    let network = networks::find_visible(ctx, &network_id).await?;
    let mut namespace = ctx.create_namespace(&attributes)?;
    // An admin's port on a project's private network goes to that project, where the
    // network can be used.
    let network_namespace = object::namespace(&network).unwrap_or_default();
    if ctx.is_admin()
        && !networks::is_public(&network)
        && network_namespace != namespace
        && !attributes.has("project_id")
        && !attributes.has("tenant_id")
    {
        namespace = network_namespace.to_owned();
    }
    ctx.check("create_port", Some(&namespace))?;
    check_attributes(ctx, &attributes, "create", &namespace)?;
    check_device_owner(ctx, &attributes, "create", &network)?;
    let resolved = resolve(ctx, &attributes).await?;
    let mut spec: PortSpec = fresh(json!({"networkId": ""}));
    spec.network_id = uid_of(&network);
    apply(&mut spec, &attributes, &resolved)?;
    let spec_value = serde_json::to_value(&spec).unwrap_or_else(|_| json!({}));
    ctx.create(&PORT, &namespace, &spec.name, spec_value, None)
        .await
}

/// `POST /ports`: one port, or `{"ports": [...]}` all or none.
pub async fn create(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    body: Bytes,
) -> NeutronResult<Response> {
    let ctx = Ctx::new(state, &user)?;
    let request = body::json(&body)?;
    if let Some(Value::Array(members)) = request.get("ports") {
        let mut made = Vec::with_capacity(members.len());
        for member in members {
            match create_one(&ctx, Some(member)).await {
                Ok(port) => made.push(port),
                Err(fault) => {
                    for port in &made {
                        ctx.delete_quietly(&PORT, port).await;
                    }
                    return Err(fault);
                }
            }
        }
        let views: Vec<Value> = made.iter().map(|port| view(&ctx, port)).collect();
        return Ok(answer(StatusCode::CREATED, json!({"ports": views})));
    }
    let port = create_one(&ctx, request.get("port")).await?;
    Ok(answer(
        StatusCode::CREATED,
        json!({"port": view(&ctx, &port)}),
    ))
}

/// `PUT /ports/{id}`.
pub async fn update(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    body: Bytes,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let port = ctx.fetch_owned(&PORT, &id).await?;
    ctx.check_on("update_port", &port)?;
    let attributes = Attributes::parse(&body, "port", UPDATE)?;
    attributes.read_only(&["network_id", "project_id", "tenant_id"])?;
    let namespace = object::namespace(&port).unwrap_or_default().to_owned();
    check_attributes(&ctx, &attributes, "update", &namespace)?;
    if let Some(network) = ctx
        .fetch(&super::NETWORK, text(&port, "/spec/networkId"))
        .await?
    {
        check_device_owner(&ctx, &attributes, "update", &network)?;
    }
    let resolved = resolve(&ctx, &attributes).await?;
    let updated = ctx
        .update_spec(&PORT, &port, |spec: &mut PortSpec| {
            apply(spec, &attributes, &resolved)
        })
        .await?;
    Ok(Json(json!({"port": view(&ctx, &updated)})))
}

/// `DELETE /ports/{id}`: a router's ports go through the router API; floating IPs on the
/// port are disassociated and its port forwardings removed.
pub async fn delete(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> NeutronResult<Response> {
    let ctx = Ctx::new(state, &user)?;
    let port = ctx.fetch_owned(&PORT, &id).await?;
    ctx.check_on("delete_port", &port)?;
    let spec: PortSpec = spec_of(&port);
    if [owner::ROUTER_INTERFACE, owner::ROUTER_GATEWAY].contains(&spec.device_owner.as_str())
        && ctx.fetch(&ROUTER, &spec.device_id).await?.is_some()
    {
        return Err(NeutronFault::conflict(
            "ServicePortInUse",
            format!(
                "Port {} cannot be deleted directly via the port API: has device owner {}.",
                uid_of(&port),
                spec.device_owner
            ),
        ));
    }
    release(&ctx, &port).await?;
    ctx.delete(&PORT, &port).await?;
    Ok(no_content())
}

/// Disassociates the floating IPs of a port and removes its port forwardings.
pub(crate) async fn release(ctx: &Ctx, port: &Value) -> NeutronResult<()> {
    let uid = uid_of(port);
    let namespace = object::namespace(port).map(str::to_owned);
    let selector = format!("spec.portId={uid}");
    for fip in ctx
        .list(&FLOATING_IP, namespace.as_deref(), Some(&selector))
        .await?
    {
        ctx.update_spec(&FLOATING_IP, &fip, |spec: &mut FloatingIpSpec| {
            spec.port_id = None;
            spec.fixed_ip_address = None;
            spec.router_id = None;
            Ok(())
        })
        .await?;
    }
    for forwarding in ctx
        .list(&PORT_FORWARDING, namespace.as_deref(), None)
        .await?
    {
        if spec_of::<PortForwardingSpec>(&forwarding).internal_port_id == uid {
            ctx.delete_quietly(&PORT_FORWARDING, &forwarding).await;
        }
    }
    Ok(())
}
