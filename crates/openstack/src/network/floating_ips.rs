//! `/floatingips` over the FloatingIP kind: an address from an external network's subnet,
//! associated with a port's fixed address through the router that reaches it (chosen by
//! the kind's admission), or carrying port forwardings. Shown with `port_details` and its
//! port forwardings.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::{Extension, Json};
use bytes::Bytes;
use http::StatusCode;
use ronghe_api_types::network::{
    FloatingIpSpec, FloatingIpStatus, NetworkSpec, PortForwardingSpec, PortSpec, PortStatus,
    spec_of, status_of, validate,
};
use ronghe_apiserver::auth::User;
use ronghe_apiserver::object;
use serde_json::{Value, json};

use super::body::Attributes;
use super::fault::{NeutronFault, NeutronResult};
use super::networks::{self, fresh};
use super::query::Query;
use super::{
    Ctx, FLOATING_IP, PORT, PORT_FORWARDING, answer, canonical_id, forwardings, no_content, text,
    uid_of,
};
use crate::OpenStack;

const CREATE: &[&str] = &[
    "floating_network_id",
    "floating_ip_address",
    "subnet_id",
    "port_id",
    "fixed_ip_address",
    "description",
    "dns_name",
    "dns_domain",
    "qos_policy_id",
    "tags",
    "project_id",
    "tenant_id",
];

const UPDATE: &[&str] = &[
    "port_id",
    "fixed_ip_address",
    "description",
    "qos_policy_id",
    "floating_network_id",
    "floating_ip_address",
    "subnet_id",
    "project_id",
    "tenant_id",
];

/// What Neutron shows of the port a floating IP is associated with.
fn port_details(port: &Value) -> Value {
    let spec: PortSpec = spec_of(port);
    let status: PortStatus = status_of(port);
    json!({
        "name": super::neutron_name(port),
        "network_id": spec.network_id,
        "mac_address": spec.mac_address,
        "admin_state_up": spec.admin_state_up,
        "status": if status.status.is_empty() { "DOWN".to_owned() } else { status.status },
        "device_id": spec.device_id,
        "device_owner": spec.device_owner,
    })
}

/// A floating IP with its port (when associated) and its port forwardings (views).
pub(crate) fn view(ctx: &Ctx, fip: &Value, port: Option<&Value>, forwardings: Vec<Value>) -> Value {
    let spec: FloatingIpSpec = spec_of(fip);
    let status: FloatingIpStatus = status_of(fip);
    let mut view = ctx.standard(fip);
    view.remove("name");
    let details = port.map_or(Value::Null, port_details);
    for (key, value) in [
        ("floating_network_id", json!(spec.floating_network_id)),
        ("floating_ip_address", json!(spec.floating_ip_address)),
        ("router_id", json!(spec.router_id)),
        ("port_id", json!(spec.port_id)),
        ("fixed_ip_address", json!(spec.fixed_ip_address)),
        (
            "status",
            json!(if status.status.is_empty() {
                "DOWN".to_owned()
            } else {
                status.status
            }),
        ),
        ("dns_domain", json!(spec.dns_domain)),
        ("dns_name", json!(spec.dns_name)),
        ("qos_policy_id", json!(spec.qos_policy_id)),
        ("port_details", details),
        ("port_forwardings", json!(forwardings)),
    ] {
        view.insert(key.into(), value);
    }
    Value::Object(view)
}

/// One floating IP's view, reading its port and port forwardings.
async fn view_one(ctx: &Ctx, fip: &Value) -> NeutronResult<Value> {
    let spec: FloatingIpSpec = spec_of(fip);
    let port = match &spec.port_id {
        Some(id) => ctx.fetch(&PORT, id).await?,
        None => None,
    };
    let selector = format!("spec.floatingIpId={}", uid_of(fip));
    let forwardings = ctx
        .list(&PORT_FORWARDING, object::namespace(fip), Some(&selector))
        .await?
        .iter()
        .map(forwardings::brief)
        .collect();
    Ok(view(ctx, fip, port.as_ref(), forwardings))
}

/// `GET /floatingips`.
pub async fn list(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    RawQuery(raw): RawQuery,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let query = Query::parse(raw.as_deref());
    let fips = ctx.list_owned(&FLOATING_IP).await?;
    let ports: HashMap<String, Value> = if fips.iter().any(|f| f.pointer("/spec/portId").is_some())
    {
        ctx.list_owned(&PORT)
            .await?
            .into_iter()
            .map(|port| (uid_of(&port), port))
            .collect()
    } else {
        HashMap::new()
    };
    let mut by_fip: HashMap<String, Vec<Value>> = HashMap::new();
    for forwarding in ctx.list_owned(&PORT_FORWARDING).await? {
        by_fip
            .entry(text(&forwarding, "/spec/floatingIpId").to_owned())
            .or_default()
            .push(forwardings::brief(&forwarding));
    }
    let views = fips
        .iter()
        .map(|fip| {
            let port = ports.get(text(fip, "/spec/portId"));
            view(
                &ctx,
                fip,
                port,
                by_fip.remove(&uid_of(fip)).unwrap_or_default(),
            )
        })
        .collect();
    ctx.list_answer(&FLOATING_IP, views, &query)
}

/// `GET /floatingips/{id}`.
pub async fn show(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let fip = ctx.fetch_owned(&FLOATING_IP, &id).await?;
    ctx.show_answer(&FLOATING_IP, view_one(&ctx, &fip).await?, raw.as_deref())
}

/// The QoS policy a request names: absent, cleared or a uid.
async fn qos_of(ctx: &Ctx, attributes: &Attributes) -> NeutronResult<Option<Option<String>>> {
    match attributes.nullable_string("qos_policy_id")? {
        None => Ok(None),
        Some(None) => Ok(Some(None)),
        Some(Some(id)) => Ok(Some(Some(networks::qos_reference(ctx, &id).await?))),
    }
}

/// `POST /floatingips`.
pub async fn create(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    body: Bytes,
) -> NeutronResult<Response> {
    let ctx = Ctx::new(state, &user)?;
    let attributes = Attributes::parse(&body, "floatingip", CREATE)?;
    let network_id = attributes.string("floating_network_id")?.ok_or_else(|| {
        NeutronFault::bad_request("Invalid input for operation: floating_network_id is required.")
    })?;
    let network = networks::find_visible(&ctx, &network_id).await?;
    if !spec_of::<NetworkSpec>(&network).external {
        return Err(NeutronFault::bad_request(format!(
            "Bad floatingip request: Network {network_id} is not a valid external network."
        )));
    }
    let namespace = ctx.create_namespace(&attributes)?;
    ctx.check("create_floatingip", Some(&namespace))?;
    if attributes.has("floating_ip_address") {
        ctx.check("create_floatingip:floating_ip_address", Some(&namespace))?;
    }
    let mut spec: FloatingIpSpec = fresh(json!({"floatingNetworkId": ""}));
    spec.floating_network_id = uid_of(&network);
    spec.floating_ip_address = attributes
        .string("floating_ip_address")?
        .unwrap_or_default();
    spec.subnet_id = attributes
        .string("subnet_id")?
        .map(|id| canonical_id(&id))
        .unwrap_or_default();
    spec.port_id = attributes
        .nullable_string("port_id")?
        .flatten()
        .map(|id| canonical_id(&id));
    spec.fixed_ip_address = attributes.nullable_string("fixed_ip_address")?.flatten();
    spec.description = attributes.string("description")?.unwrap_or_default();
    spec.dns_name = attributes.string("dns_name")?.unwrap_or_default();
    spec.dns_domain = attributes.string("dns_domain")?.unwrap_or_default();
    spec.qos_policy_id = qos_of(&ctx, &attributes).await?.flatten();
    spec.tags = attributes.strings("tags")?.unwrap_or_default();
    if let Some(problem) = validate::floating_ip(&spec).into_iter().next() {
        return Err(NeutronFault::bad_request(problem.message));
    }
    let spec_value = serde_json::to_value(&spec).unwrap_or_else(|_| json!({}));
    let fip = ctx
        .create(&FLOATING_IP, &namespace, "", spec_value, None)
        .await?;
    Ok(answer(
        StatusCode::CREATED,
        json!({"floatingip": view_one(&ctx, &fip).await?}),
    ))
}

/// `PUT /floatingips/{id}`: `port_id` associates (with `fixed_ip_address`, or the port's
/// first IPv4 address) or, as `null`, disassociates.
pub async fn update(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    body: Bytes,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let fip = ctx.fetch_owned(&FLOATING_IP, &id).await?;
    ctx.check_on("update_floatingip", &fip)?;
    let attributes = Attributes::parse(&body, "floatingip", UPDATE)?;
    attributes.read_only(&[
        "floating_network_id",
        "floating_ip_address",
        "subnet_id",
        "project_id",
        "tenant_id",
    ])?;
    let port = attributes.nullable_string("port_id")?;
    let fixed = attributes.nullable_string("fixed_ip_address")?;
    let description = attributes.string("description")?;
    let qos = qos_of(&ctx, &attributes).await?;
    let updated = ctx
        .update_spec(&FLOATING_IP, &fip, |spec: &mut FloatingIpSpec| {
            if let Some(port) = &port {
                spec.port_id = port.as_deref().map(canonical_id);
                spec.fixed_ip_address = fixed.clone().flatten();
                spec.router_id = None;
            } else if let Some(fixed) = &fixed {
                spec.fixed_ip_address = fixed.clone();
            }
            if let Some(description) = &description {
                spec.description = description.clone();
            }
            if let Some(qos) = &qos {
                spec.qos_policy_id = qos.clone();
            }
            Ok(())
        })
        .await?;
    Ok(Json(json!({"floatingip": view_one(&ctx, &updated).await?})))
}

/// `DELETE /floatingips/{id}`: its port forwardings go with it.
pub async fn delete(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> NeutronResult<Response> {
    let ctx = Ctx::new(state, &user)?;
    let fip = ctx.fetch_owned(&FLOATING_IP, &id).await?;
    ctx.check_on("delete_floatingip", &fip)?;
    let selector = format!("spec.floatingIpId={}", uid_of(&fip));
    for forwarding in ctx
        .list(&PORT_FORWARDING, object::namespace(&fip), Some(&selector))
        .await?
    {
        if spec_of::<PortForwardingSpec>(&forwarding).floating_ip_id == uid_of(&fip) {
            ctx.delete_quietly(&PORT_FORWARDING, &forwarding).await;
        }
    }
    ctx.delete(&FLOATING_IP, &fip).await?;
    Ok(no_content())
}
