//! `/routers` over the Router kind, with the gateway kept whole: setting
//! `external_gateway_info` creates the gateway Port (owned by the Router, so the garbage
//! collector removes it too) before the router's spec names its addresses, and a failed
//! router write removes that port again; clearing the gateway deletes it. Interfaces
//! (`interfaces.rs`) are Ports whose `deviceId` is the router's uid.

mod interfaces;

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::{Extension, Json};
use bytes::Bytes;
use http::StatusCode;
use ronghe_api_types::network::{
    ExternalGateway, FixedIp, FloatingIpSpec, HostRoute, NetworkSpec, PortSpec, RouterSpec,
    RouterStatus, owner, spec_of, status_of,
};
use ronghe_apiserver::auth::User;
use ronghe_apiserver::object;
use serde_json::{Value, json};

use super::body::{Attributes, member_string};
use super::fault::{NeutronFault, NeutronResult};
use super::networks::{self, fresh};
use super::query::Query;
use super::{
    Ctx, FLOATING_IP, PORT, ROUTER, answer, canonical_id, no_content, owner_reference, uid_of,
};
use crate::OpenStack;

pub use interfaces::{add_interface, remove_interface};

const CREATE: &[&str] = &[
    "name",
    "description",
    "admin_state_up",
    "external_gateway_info",
    "routes",
    "availability_zone_hints",
    "distributed",
    "ha",
    "flavor_id",
    "enable_ndp_proxy",
    "tags",
    "project_id",
    "tenant_id",
];

const UPDATE: &[&str] = &[
    "name",
    "description",
    "admin_state_up",
    "external_gateway_info",
    "routes",
    "distributed",
    "ha",
    "enable_ndp_proxy",
    "project_id",
    "tenant_id",
];

pub(crate) fn view(ctx: &Ctx, router: &Value) -> Value {
    let spec: RouterSpec = spec_of(router);
    let status: RouterStatus = status_of(router);
    let mut view = ctx.standard(router);
    let gateway = spec.external_gateway_info.as_ref().map_or(Value::Null, |g| {
        let fixed: Vec<Value> = g
            .external_fixed_ips
            .iter()
            .map(|f| json!({"subnet_id": f.subnet_id, "ip_address": f.ip_address}))
            .collect();
        json!({"network_id": g.network_id, "enable_snat": g.enable_snat, "external_fixed_ips": fixed})
    });
    let router_status = if status.status.is_empty() {
        "ACTIVE".to_owned()
    } else {
        status.status
    };
    for (key, value) in [
        ("admin_state_up", json!(spec.admin_state_up)),
        ("status", json!(router_status)),
        ("external_gateway_info", gateway),
        ("routes", json!(spec.routes)),
        (
            "availability_zone_hints",
            json!(spec.availability_zone_hints),
        ),
        ("availability_zones", json!([])),
        ("flavor_id", Value::Null),
        ("enable_ndp_proxy", Value::Null),
    ] {
        view.insert(key.into(), value);
    }
    if ctx.is_admin() {
        view.insert("distributed".into(), json!(false));
        view.insert("ha".into(), json!(false));
    }
    Value::Object(view)
}

/// `GET /routers`.
pub async fn list(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    RawQuery(raw): RawQuery,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let query = Query::parse(raw.as_deref());
    let views = ctx
        .list_owned(&ROUTER)
        .await?
        .iter()
        .map(|router| view(&ctx, router))
        .collect();
    ctx.list_answer(&ROUTER, views, &query)
}

/// `GET /routers/{id}`.
pub async fn show(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let router = ctx.fetch_owned(&ROUTER, &id).await?;
    ctx.show_answer(&ROUTER, view(&ctx, &router), raw.as_deref())
}

/// A gateway a request asks for.
struct Gateway {
    network: Value,
    enable_snat: bool,
    /// Addresses asked for (admins only); allocated when empty.
    fixed_ips: Vec<FixedIp>,
}

/// `external_gateway_info` of a request: absent (`None`), cleared (`Some(None)`) or set.
async fn gateway_of(
    ctx: &Ctx,
    attributes: &Attributes,
    action: &str,
    namespace: &str,
) -> NeutronResult<Option<Option<Gateway>>> {
    if !attributes.has("external_gateway_info") {
        return Ok(None);
    }
    let Some(info) = attributes
        .object("external_gateway_info")?
        .filter(|info| !info.is_empty())
    else {
        return Ok(Some(None));
    };
    let info = Attributes::of(
        Some(&Value::Object(info)),
        "external_gateway_info",
        &[
            "network_id",
            "enable_snat",
            "external_fixed_ips",
            "qos_policy_id",
        ],
    )?;
    if info.has("enable_snat") {
        ctx.check(
            &format!("{action}_router:external_gateway_info:enable_snat"),
            Some(namespace),
        )?;
    }
    if info.has("external_fixed_ips") {
        ctx.check(
            &format!("{action}_router:external_gateway_info:external_fixed_ips"),
            Some(namespace),
        )?;
    }
    let network_id = info.string("network_id")?.ok_or_else(|| {
        NeutronFault::bad_request(
            "Invalid input for external_gateway_info. Reason: network_id is required.",
        )
    })?;
    let network = networks::find_visible(ctx, &network_id).await?;
    if !spec_of::<NetworkSpec>(&network).external {
        return Err(NeutronFault::bad_request(format!(
            "Bad router request: Network {network_id} is not an external network."
        )));
    }
    let fixed_ips = info
        .objects("external_fixed_ips")?
        .unwrap_or_default()
        .iter()
        .map(|entry| {
            Ok(FixedIp {
                subnet_id: entry
                    .get("subnet_id")
                    .and_then(Value::as_str)
                    .map(canonical_id)
                    .unwrap_or_default(),
                ip_address: entry
                    .get("ip_address")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            })
        })
        .collect::<NeutronResult<Vec<_>>>()?;
    Ok(Some(Some(Gateway {
        network,
        enable_snat: info.boolean("enable_snat")?.unwrap_or(true),
        fixed_ips,
    })))
}

/// The router's ports of one owner (`network:router_gateway`, `..._interface`), in any
/// project.
pub(crate) async fn ports_of(
    ctx: &Ctx,
    router: &Value,
    device_owner: &str,
) -> NeutronResult<Vec<Value>> {
    let selector = format!("spec.deviceId={}", uid_of(router));
    Ok(ctx
        .list(&PORT, None, Some(&selector))
        .await?
        .into_iter()
        .filter(|port| spec_of::<PortSpec>(port).device_owner == device_owner)
        .collect())
}

/// Creates the gateway port of a router on its external network.
async fn create_gateway_port(ctx: &Ctx, router: &Value, gateway: &Gateway) -> NeutronResult<Value> {
    let mut spec: PortSpec = fresh(json!({"networkId": ""}));
    spec.network_id = uid_of(&gateway.network);
    spec.device_owner = owner::ROUTER_GATEWAY.into();
    spec.device_id = uid_of(router);
    spec.fixed_ips = gateway.fixed_ips.clone();
    let namespace = object::namespace(router).unwrap_or_default();
    let spec_value = serde_json::to_value(&spec).unwrap_or_else(|_| json!({}));
    ctx.create(
        &PORT,
        namespace,
        "",
        spec_value,
        Some(owner_reference("Router", router)),
    )
    .await
}

/// The gateway a port makes.
fn gateway_spec(gateway: &Gateway, port: &Value) -> ExternalGateway {
    ExternalGateway {
        network_id: uid_of(&gateway.network),
        enable_snat: gateway.enable_snat,
        external_fixed_ips: spec_of::<PortSpec>(port).fixed_ips,
    }
}

/// Applies the plain attributes of a request.
fn apply(spec: &mut RouterSpec, attributes: &Attributes) -> NeutronResult<()> {
    if let Some(name) = attributes.string("name")? {
        spec.name = name;
    }
    if let Some(description) = attributes.string("description")? {
        spec.description = description;
    }
    if let Some(up) = attributes.boolean("admin_state_up")? {
        spec.admin_state_up = up;
    }
    if attributes.has("routes") {
        spec.routes = attributes
            .objects("routes")?
            .unwrap_or_default()
            .iter()
            .map(|route| {
                Ok(HostRoute {
                    destination: member_string(route, "destination", "routes")?,
                    nexthop: member_string(route, "nexthop", "routes")?,
                })
            })
            .collect::<NeutronResult<_>>()?;
    }
    if let Some(hints) = attributes.strings("availability_zone_hints")? {
        spec.availability_zone_hints = hints;
    }
    if let Some(tags) = attributes.strings("tags")? {
        spec.tags = tags;
    }
    for flag in ["distributed", "ha", "enable_ndp_proxy"] {
        if attributes.boolean(flag)? == Some(true) {
            return Err(NeutronFault::bad_request(format!(
                "Invalid input for operation: {flag} routers are not supported."
            )));
        }
    }
    Ok(())
}

/// `POST /routers`: the router, then its gateway port, then the gateway in its spec;
/// undone whole when a step fails.
pub async fn create(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    body: Bytes,
) -> NeutronResult<Response> {
    let ctx = Ctx::new(state, &user)?;
    let attributes = Attributes::parse(&body, "router", CREATE)?;
    let namespace = ctx.create_namespace(&attributes)?;
    ctx.check("create_router", Some(&namespace))?;
    let gateway = gateway_of(&ctx, &attributes, "create", &namespace).await?;
    let mut spec: RouterSpec = fresh(json!({}));
    apply(&mut spec, &attributes)?;
    let spec_value = serde_json::to_value(&spec).unwrap_or_else(|_| json!({}));
    let router = ctx
        .create(&ROUTER, &namespace, &spec.name, spec_value, None)
        .await?;
    let Some(Some(gateway)) = gateway else {
        return Ok(answer(
            StatusCode::CREATED,
            json!({"router": view(&ctx, &router)}),
        ));
    };
    let port = match create_gateway_port(&ctx, &router, &gateway).await {
        Ok(port) => port,
        Err(fault) => {
            ctx.delete_quietly(&ROUTER, &router).await;
            return Err(fault);
        }
    };
    let with_gateway = gateway_spec(&gateway, &port);
    match ctx
        .update_spec(&ROUTER, &router, |spec: &mut RouterSpec| {
            spec.external_gateway_info = Some(with_gateway.clone());
            Ok(())
        })
        .await
    {
        Ok(router) => Ok(answer(
            StatusCode::CREATED,
            json!({"router": view(&ctx, &router)}),
        )),
        Err(fault) => {
            ctx.delete_quietly(&PORT, &port).await;
            ctx.delete_quietly(&ROUTER, &router).await;
            Err(fault)
        }
    }
}

/// Refuses to move or clear a gateway that floating IPs still go through.
async fn check_gateway_unused(ctx: &Ctx, router: &Value) -> NeutronResult<()> {
    let uid = uid_of(router);
    let floating = ctx
        .list(&FLOATING_IP, object::namespace(router), None)
        .await?;
    if floating
        .iter()
        .any(|fip| spec_of::<FloatingIpSpec>(fip).router_id.as_deref() == Some(uid.as_str()))
    {
        let network = spec_of::<RouterSpec>(router)
            .external_gateway_info
            .map(|g| g.network_id)
            .unwrap_or_default();
        return Err(NeutronFault::conflict(
            "RouterExternalGatewayInUseByFloatingIp",
            format!(
                "Gateway cannot be updated for router {uid}, since a gateway to external network {network} is required by one or more floating IPs."
            ),
        ));
    }
    Ok(())
}

/// `PUT /routers/{id}`.
pub async fn update(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    body: Bytes,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let router = ctx.fetch_owned(&ROUTER, &id).await?;
    ctx.check_on("update_router", &router)?;
    let attributes = Attributes::parse(&body, "router", UPDATE)?;
    attributes.read_only(&["project_id", "tenant_id"])?;
    let namespace = object::namespace(&router).unwrap_or_default().to_owned();
    let gateway = gateway_of(&ctx, &attributes, "update", &namespace).await?;
    let current: RouterSpec = spec_of(&router);
    let old_ports = ports_of(&ctx, &router, owner::ROUTER_GATEWAY).await?;
    let same_network = |g: &Gateway| {
        current
            .external_gateway_info
            .as_ref()
            .is_some_and(|c| c.network_id == uid_of(&g.network))
    };
    // What the router's gateway becomes, the port to make first, and the ports to
    // remove once the router no longer names them.
    let (new_gateway, new_port, stale_ports) = match gateway {
        None => (current.external_gateway_info.clone(), None, Vec::new()),
        Some(None) => {
            if current.external_gateway_info.is_some() {
                check_gateway_unused(&ctx, &router).await?;
            }
            (None, None, old_ports)
        }
        Some(Some(gateway)) if same_network(&gateway) && gateway.fixed_ips.is_empty() => {
            let mut kept = current.external_gateway_info.clone().unwrap_or_default();
            kept.enable_snat = gateway.enable_snat;
            (Some(kept), None, Vec::new())
        }
        Some(Some(gateway)) if same_network(&gateway) && old_ports.len() == 1 => {
            // New addresses on the same network: the gateway port itself changes (a new
            // port could not take the addresses the old one holds); floating IPs keep
            // their way out.
            let port = ctx
                .update_spec(&PORT, &old_ports[0], |spec: &mut PortSpec| {
                    spec.fixed_ips = gateway.fixed_ips.clone();
                    Ok(())
                })
                .await?;
            (Some(gateway_spec(&gateway, &port)), None, Vec::new())
        }
        Some(Some(gateway)) => {
            if current.external_gateway_info.is_some() {
                check_gateway_unused(&ctx, &router).await?;
            }
            let port = create_gateway_port(&ctx, &router, &gateway).await?;
            (Some(gateway_spec(&gateway, &port)), Some(port), old_ports)
        }
    };
    let updated = ctx
        .update_spec(&ROUTER, &router, |spec: &mut RouterSpec| {
            apply(spec, &attributes)?;
            spec.external_gateway_info = new_gateway.clone();
            Ok(())
        })
        .await;
    let updated = match updated {
        Ok(updated) => updated,
        Err(fault) => {
            if let Some(port) = &new_port {
                ctx.delete_quietly(&PORT, port).await;
            }
            return Err(fault);
        }
    };
    for port in &stale_ports {
        ctx.delete_quietly(&PORT, port).await;
    }
    Ok(Json(json!({"router": view(&ctx, &updated)})))
}

/// `DELETE /routers/{id}`: refused while it has interfaces; its gateway port goes with it.
pub async fn delete(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> NeutronResult<Response> {
    let ctx = Ctx::new(state, &user)?;
    let router = ctx.fetch_owned(&ROUTER, &id).await?;
    ctx.check_on("delete_router", &router)?;
    let uid = uid_of(&router);
    if !ports_of(&ctx, &router, owner::ROUTER_INTERFACE)
        .await?
        .is_empty()
    {
        return Err(NeutronFault::conflict(
            "RouterInUse",
            format!("Router {uid} still has ports"),
        ));
    }
    if spec_of::<RouterSpec>(&router)
        .external_gateway_info
        .is_some()
    {
        check_gateway_unused(&ctx, &router).await?;
    }
    let gateway_ports = ports_of(&ctx, &router, owner::ROUTER_GATEWAY).await?;
    ctx.delete(&ROUTER, &router).await?;
    for port in &gateway_ports {
        ctx.delete_quietly(&PORT, port).await;
    }
    Ok(no_content())
}
