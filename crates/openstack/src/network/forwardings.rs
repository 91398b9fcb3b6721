//! `/floatingips/{id}/port_forwardings` over the PortForwarding kind: traffic to a free
//! floating IP's port forwarded to a port's fixed address and port. The kind's admission
//! checks the floating IP is free and the port reachable; its claims refuse two
//! forwardings of one external port and protocol.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::{Extension, Json};
use bytes::Bytes;
use http::StatusCode;
use ronghe_api_types::network::{PortForwardingSpec, spec_of, validate};
use ronghe_apiserver::auth::User;
use ronghe_apiserver::object;
use serde_json::{Value, json};

use super::body::Attributes;
use super::fault::{NeutronFault, NeutronResult};
use super::query::{self, Query};
use super::{Ctx, FLOATING_IP, PORT_FORWARDING, answer, canonical_id, no_content, text, uid_of};
use crate::OpenStack;

const FIELDS: &[&str] = &[
    "internal_port_id",
    "internal_ip_address",
    "internal_port",
    "external_port",
    "internal_port_range",
    "external_port_range",
    "protocol",
    "description",
];

/// A port forwarding as Neutron shows it.
pub(crate) fn view(forwarding: &Value) -> Value {
    let spec: PortForwardingSpec = spec_of(forwarding);
    json!({
        "id": uid_of(forwarding),
        "internal_port_id": spec.internal_port_id,
        "internal_ip_address": spec.internal_ip_address,
        "internal_port": spec.internal_port,
        "external_port": spec.external_port,
        "protocol": spec.protocol,
        "description": spec.description,
    })
}

/// The short form a floating IP lists.
pub(crate) fn brief(forwarding: &Value) -> Value {
    let spec: PortForwardingSpec = spec_of(forwarding);
    json!({
        "id": uid_of(forwarding),
        "protocol": spec.protocol,
        "internal_ip_address": spec.internal_ip_address,
        "internal_port": spec.internal_port,
        "external_port": spec.external_port,
    })
}

/// The floating IP of the URL, the caller's own.
async fn floating_ip(ctx: &Ctx, id: &str) -> NeutronResult<Value> {
    ctx.fetch_owned(&FLOATING_IP, id).await
}

/// A forwarding of this floating IP.
async fn forwarding_of(ctx: &Ctx, fip: &Value, id: &str) -> NeutronResult<Value> {
    match ctx.fetch(&PORT_FORWARDING, id).await? {
        Some(found) if text(&found, "/spec/floatingIpId") == uid_of(fip) => Ok(found),
        _ => Err(PORT_FORWARDING.missing(id)),
    }
}

/// One port of a request: `internal_port`, or a range of one port (`80:80`).
fn port_of(attributes: &Attributes, single: &str, range: &str) -> NeutronResult<Option<u32>> {
    if let Some(port) = attributes.small_integer(single)? {
        return Ok(Some(port));
    }
    let Some(text) = attributes.string(range)? else {
        return Ok(None);
    };
    let (low, high) = text.split_once(':').unwrap_or((&text, &text));
    match (low.trim().parse::<u32>(), high.trim().parse::<u32>()) {
        (Ok(low), Ok(high)) if low == high => Ok(Some(low)),
        _ => Err(NeutronFault::bad_request(format!(
            "Invalid input for {range}. Reason: only ranges of one port are supported, not '{text}'."
        ))),
    }
}

fn apply(spec: &mut PortForwardingSpec, attributes: &Attributes) -> NeutronResult<()> {
    if let Some(port) = attributes.string("internal_port_id")? {
        spec.internal_port_id = canonical_id(&port);
    }
    if let Some(address) = attributes.string("internal_ip_address")? {
        spec.internal_ip_address = address;
    }
    if let Some(port) = port_of(attributes, "internal_port", "internal_port_range")? {
        spec.internal_port = port;
    }
    if let Some(port) = port_of(attributes, "external_port", "external_port_range")? {
        spec.external_port = port;
    }
    if let Some(protocol) = attributes.string("protocol")? {
        spec.protocol = protocol.to_ascii_lowercase();
    }
    if let Some(description) = attributes.string("description")? {
        spec.description = description;
    }
    if let Some(problem) = validate::port_forwarding(spec).into_iter().next() {
        return Err(NeutronFault::bad_request(format!(
            "Bad port_forwarding request: {}",
            problem.message
        )));
    }
    Ok(())
}

/// `GET /floatingips/{id}/port_forwardings`.
pub async fn list(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let fip = floating_ip(&ctx, &id).await?;
    ctx.check_on("get_floatingip_port_forwarding", &fip)?;
    let selector = format!("spec.floatingIpId={}", uid_of(&fip));
    let views = ctx
        .list(&PORT_FORWARDING, object::namespace(&fip), Some(&selector))
        .await?
        .iter()
        .map(view)
        .collect();
    let path = format!("floatingips/{}/port_forwardings", uid_of(&fip));
    let collection = ctx.collection(&path, PORT_FORWARDING.plural);
    Ok(Json(query::respond(
        collection,
        views,
        &Query::parse(raw.as_deref()),
    )?))
}

/// `GET /floatingips/{id}/port_forwardings/{forwarding}`.
pub async fn show(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path((id, forwarding)): Path<(String, String)>,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let fip = floating_ip(&ctx, &id).await?;
    ctx.check_on("get_floatingip_port_forwarding", &fip)?;
    let found = forwarding_of(&ctx, &fip, &forwarding).await?;
    Ok(Json(json!({"port_forwarding": view(&found)})))
}

/// `POST /floatingips/{id}/port_forwardings`.
pub async fn create(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    body: Bytes,
) -> NeutronResult<Response> {
    let ctx = Ctx::new(state, &user)?;
    let fip = floating_ip(&ctx, &id).await?;
    ctx.check_on("create_floatingip_port_forwarding", &fip)?;
    let attributes = Attributes::parse(&body, "port_forwarding", FIELDS)?;
    let mut spec = PortForwardingSpec {
        floating_ip_id: uid_of(&fip),
        ..PortForwardingSpec::default()
    };
    apply(&mut spec, &attributes)?;
    let namespace = object::namespace(&fip).unwrap_or_default().to_owned();
    let spec_value = serde_json::to_value(&spec).unwrap_or_else(|_| json!({}));
    let forwarding = ctx
        .create(&PORT_FORWARDING, &namespace, "", spec_value, None)
        .await?;
    Ok(answer(
        StatusCode::CREATED,
        json!({"port_forwarding": view(&forwarding)}),
    ))
}

/// `PUT /floatingips/{id}/port_forwardings/{forwarding}`.
pub async fn update(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path((id, forwarding)): Path<(String, String)>,
    body: Bytes,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let fip = floating_ip(&ctx, &id).await?;
    ctx.check_on("update_floatingip_port_forwarding", &fip)?;
    let found = forwarding_of(&ctx, &fip, &forwarding).await?;
    let attributes = Attributes::parse(&body, "port_forwarding", FIELDS)?;
    let updated = ctx
        .update_spec(&PORT_FORWARDING, &found, |spec: &mut PortForwardingSpec| {
            apply(spec, &attributes)
        })
        .await?;
    Ok(Json(json!({"port_forwarding": view(&updated)})))
}

/// `DELETE /floatingips/{id}/port_forwardings/{forwarding}`.
pub async fn delete(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path((id, forwarding)): Path<(String, String)>,
) -> NeutronResult<Response> {
    let ctx = Ctx::new(state, &user)?;
    let fip = floating_ip(&ctx, &id).await?;
    ctx.check_on("delete_floatingip_port_forwarding", &fip)?;
    let found = forwarding_of(&ctx, &fip, &forwarding).await?;
    ctx.delete(&PORT_FORWARDING, &found).await?;
    Ok(no_content())
}
