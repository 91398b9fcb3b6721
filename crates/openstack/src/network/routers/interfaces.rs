//! `add_router_interface` and `remove_router_interface`: an interface is a Port on the
//! subnet's network holding the subnet's gateway address, owned by the router
//! (`network:router_interface`, `deviceId` = the router's uid). Removing one is refused
//! while a floating IP or port forwarding reaches its subnet through the router.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use bytes::Bytes;
use ronghe_api_types::network::ipam;
use ronghe_api_types::network::{
    FixedIp, FloatingIpSpec, PortForwardingSpec, PortSpec, RouterSpec, SubnetSpec, owner, spec_of,
};
use ronghe_apiserver::auth::User;
use ronghe_apiserver::object;
use serde_json::{Value, json};

use super::super::body::{self, Attributes};
use super::super::fault::{NeutronFault, NeutronResult};
use super::super::networks::{self, fresh};
use super::super::{
    Ctx, FLOATING_IP, NETWORK, PORT, PORT_FORWARDING, ROUTER, SUBNET, canonical_id,
    owner_reference, subnets, text, uid_of,
};
use super::ports_of;
use crate::OpenStack;

/// The answer to both calls.
fn interface_info(ctx: &Ctx, router: &Value, port: &Value) -> Value {
    let spec: PortSpec = spec_of(port);
    let project = ctx.project_id(object::namespace(router).unwrap_or_default());
    let subnet_ids: Vec<&str> = spec
        .fixed_ips
        .iter()
        .map(|f| f.subnet_id.as_str())
        .collect();
    json!({
        "id": uid_of(router),
        "tenant_id": project,
        "project_id": project,
        "port_id": uid_of(port),
        "network_id": spec.network_id,
        "subnet_id": subnet_ids.first().copied().unwrap_or_default(),
        "subnet_ids": subnet_ids,
        "tags": [],
    })
}

/// The subnet or port a request names (exactly one for adding).
fn target(body: &Bytes) -> NeutronResult<(Option<String>, Option<String>)> {
    let value = body::json(body)?;
    let attributes = Attributes::of(Some(&value), "interface", &["subnet_id", "port_id"])?;
    Ok((
        attributes.string("subnet_id")?.map(|id| canonical_id(&id)),
        attributes.string("port_id")?.map(|id| canonical_id(&id)),
    ))
}

fn bad_router(message: String) -> NeutronFault {
    NeutronFault::bad_request(format!("Bad router request: {message}"))
}

/// Refuses a subnet the router is already on, or one overlapping a subnet it is on.
async fn check_new_subnet(ctx: &Ctx, router: &Value, subnet: &Value) -> NeutronResult<()> {
    let subnet_id = uid_of(subnet);
    let cidr = text(subnet, "/spec/cidr").to_owned();
    for interface in ports_of(ctx, router, owner::ROUTER_INTERFACE).await? {
        for fixed in spec_of::<PortSpec>(&interface).fixed_ips {
            if fixed.subnet_id == subnet_id {
                return Err(bad_router(format!(
                    "Router already has a port on subnet {subnet_id}."
                )));
            }
            let Some(other) = ctx.fetch(&SUBNET, &fixed.subnet_id).await? else {
                continue;
            };
            let other_cidr = text(&other, "/spec/cidr");
            if let (Ok(a), Ok(b)) = (ipam::parse_cidr(&cidr), ipam::parse_cidr(other_cidr))
                && ipam::overlaps(&a, &b)
            {
                return Err(bad_router(format!(
                    "Cidr {cidr} of subnet {subnet_id} overlaps with cidr {other_cidr} of subnet {}.",
                    fixed.subnet_id
                )));
            }
        }
    }
    Ok(())
}

/// A new interface port on a subnet, holding its gateway address.
async fn interface_on_subnet(ctx: &Ctx, router: &Value, subnet_id: &str) -> NeutronResult<Value> {
    let subnet = subnets::find_visible(ctx, subnet_id).await?;
    let spec: SubnetSpec = spec_of(&subnet);
    let gateway = spec
        .gateway_ip
        .clone()
        .filter(|_| !spec.no_gateway)
        .ok_or_else(|| {
            bad_router("Subnet for router interface must have a gateway IP.".to_owned())
        })?;
    check_new_subnet(ctx, router, &subnet).await?;
    let network = ctx
        .fetch(&NETWORK, &spec.network_id)
        .await?
        .ok_or_else(|| NETWORK.missing(&spec.network_id))?;
    // The port lives with the router where the network may be used from there.
    let router_namespace = object::namespace(router).unwrap_or_default();
    let network_namespace = object::namespace(&network).unwrap_or_default();
    let same = router_namespace == network_namespace || networks::is_public(&network);
    let namespace = if same {
        router_namespace
    } else {
        network_namespace
    };
    let mut port: PortSpec = fresh(json!({"networkId": ""}));
    port.network_id = uid_of(&network);
    port.device_owner = owner::ROUTER_INTERFACE.into();
    port.device_id = uid_of(router);
    port.fixed_ips = vec![FixedIp {
        subnet_id: uid_of(&subnet),
        ip_address: gateway,
    }];
    let owner = same.then(|| owner_reference("Router", router));
    let spec_value = serde_json::to_value(&port).unwrap_or_else(|_| json!({}));
    ctx.create(&PORT, namespace, "", spec_value, owner).await
}

/// An existing port of the caller's made an interface.
async fn interface_from_port(ctx: &Ctx, router: &Value, port_id: &str) -> NeutronResult<Value> {
    let port = ctx.fetch_owned(&PORT, port_id).await?;
    ctx.check_on("update_port", &port)?;
    let spec: PortSpec = spec_of(&port);
    if !spec.device_id.is_empty() || !spec.device_owner.is_empty() {
        return Err(NeutronFault::conflict(
            "PortInUse",
            format!(
                "Unable to complete operation on port {} for network {}. Port already has an attached device {}.",
                uid_of(&port),
                spec.network_id,
                spec.device_id
            ),
        ));
    }
    if spec.fixed_ips.is_empty() {
        return Err(bad_router(
            "Router port must have at least one fixed IP.".to_owned(),
        ));
    }
    for fixed in &spec.fixed_ips {
        if let Some(subnet) = ctx.fetch(&SUBNET, &fixed.subnet_id).await? {
            check_new_subnet(ctx, router, &subnet).await?;
        }
    }
    let router_id = uid_of(router);
    ctx.update_spec(&PORT, &port, |spec: &mut PortSpec| {
        spec.device_owner = owner::ROUTER_INTERFACE.into();
        spec.device_id = router_id.clone();
        Ok(())
    })
    .await
}

/// `PUT /routers/{id}/add_router_interface`.
pub async fn add_interface(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    body: Bytes,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let router = ctx.fetch_owned(&ROUTER, &id).await?;
    ctx.check_on("add_router_interface", &router)?;
    let port = match target(&body)? {
        (Some(_), Some(_)) => {
            return Err(bad_router(
                "Cannot specify both subnet-id and port-id".to_owned(),
            ));
        }
        (None, None) => {
            return Err(bad_router(
                "Either subnet_id or port_id must be specified".to_owned(),
            ));
        }
        (Some(subnet_id), None) => interface_on_subnet(&ctx, &router, &subnet_id).await?,
        (None, Some(port_id)) => interface_from_port(&ctx, &router, &port_id).await?,
    };
    Ok(Json(interface_info(&ctx, &router, &port)))
}

/// The subnet a floating IP's fixed address is on, if it is associated.
async fn floating_subnet(ctx: &Ctx, fip: &FloatingIpSpec) -> NeutronResult<Option<String>> {
    let (Some(port_id), Some(address)) = (&fip.port_id, &fip.fixed_ip_address) else {
        return Ok(None);
    };
    let Some(port) = ctx.fetch(&PORT, port_id).await? else {
        return Ok(None);
    };
    Ok(spec_of::<PortSpec>(&port)
        .fixed_ips
        .into_iter()
        .find(|f| &f.ip_address == address)
        .map(|f| f.subnet_id))
}

/// Refuses removing an interface that floating IPs or port forwardings go through.
async fn check_unused(ctx: &Ctx, router: &Value, subnet_ids: &[String]) -> NeutronResult<()> {
    let router_id = uid_of(router);
    let namespace = object::namespace(router);
    let in_use = |subnet: &str| {
        NeutronFault::conflict(
            "RouterInterfaceInUseByFloatingIP",
            format!(
                "Router interface for subnet {subnet} on router {router_id} cannot be deleted, as it is required by one or more floating IPs."
            ),
        )
    };
    let floating = ctx.list(&FLOATING_IP, namespace, None).await?;
    for fip in &floating {
        let spec: FloatingIpSpec = spec_of(fip);
        if spec.router_id.as_deref() != Some(router_id.as_str()) {
            continue;
        }
        if let Some(subnet) = floating_subnet(ctx, &spec).await?
            && subnet_ids.contains(&subnet)
        {
            return Err(in_use(&subnet));
        }
    }
    let gateway_network = spec_of::<RouterSpec>(router)
        .external_gateway_info
        .map(|g| g.network_id);
    for forwarding in ctx.list(&PORT_FORWARDING, namespace, None).await? {
        let spec: PortForwardingSpec = spec_of(&forwarding);
        let through_router = floating.iter().any(|fip| {
            uid_of(fip) == spec.floating_ip_id
                && Some(spec_of::<FloatingIpSpec>(fip).floating_network_id)
                    == gateway_network.clone()
        });
        if !through_router {
            continue;
        }
        if let Some(port) = ctx.fetch(&PORT, &spec.internal_port_id).await?
            && let Some(fixed) = spec_of::<PortSpec>(&port)
                .fixed_ips
                .into_iter()
                .find(|f| f.ip_address == spec.internal_ip_address)
            && subnet_ids.contains(&fixed.subnet_id)
        {
            return Err(in_use(&fixed.subnet_id));
        }
    }
    Ok(())
}

/// `PUT /routers/{id}/remove_router_interface`: the interface port is deleted.
pub async fn remove_interface(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    body: Bytes,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let router = ctx.fetch_owned(&ROUTER, &id).await?;
    ctx.check_on("remove_router_interface", &router)?;
    let router_id = uid_of(&router);
    let interfaces = ports_of(&ctx, &router, owner::ROUTER_INTERFACE).await?;
    let port = match target(&body)? {
        (_, Some(port_id)) => interfaces
            .into_iter()
            .find(|port| uid_of(port) == port_id)
            .ok_or_else(|| {
                NeutronFault::not_found(
                    "RouterInterfaceNotFound",
                    format!("Router {router_id} does not have an interface with id {port_id}"),
                )
            })?,
        (Some(subnet_id), None) => interfaces
            .into_iter()
            .find(|port| {
                spec_of::<PortSpec>(port)
                    .fixed_ips
                    .iter()
                    .any(|f| f.subnet_id == subnet_id)
            })
            .ok_or_else(|| {
                NeutronFault::not_found(
                    "RouterInterfaceNotFoundForSubnet",
                    format!("Router {router_id} has no interface on subnet {subnet_id}"),
                )
            })?,
        (None, None) => {
            return Err(bad_router(
                "Either subnet_id or port_id must be specified".to_owned(),
            ));
        }
    };
    let subnet_ids: Vec<String> = spec_of::<PortSpec>(&port)
        .fixed_ips
        .into_iter()
        .map(|f| f.subnet_id)
        .collect();
    check_unused(&ctx, &router, &subnet_ids).await?;
    ctx.delete(&PORT, &port).await?;
    Ok(Json(interface_info(&ctx, &router, &port)))
}
