//! `/subnets` over the Subnet kind: a subnet lives in its network's project; the subnets of
//! shared and external networks are readable by everyone. `gateway_ip: null` means no
//! gateway; lists are always lists (the CLI crashes on a null). Deleting a subnet is
//! refused while a port (other than DHCP's) or a floating IP holds an address in it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::{Extension, Json};
use bytes::Bytes;
use http::StatusCode;
use ronghe_api_types::network::{
    AllocationPool, FloatingIpSpec, HostRoute, PortSpec, SubnetSpec, owner, spec_of, validate,
};
use ronghe_apiserver::auth::User;
use ronghe_apiserver::object;
use serde_json::{Value, json};

use super::body::{Attributes, member_string};
use super::fault::{NeutronFault, NeutronResult};
use super::networks::{self, fresh};
use super::query::Query;
use super::{Ctx, FLOATING_IP, NETWORK, PORT, SUBNET, answer, no_content, text, uid_of};
use crate::OpenStack;

const CREATE: &[&str] = &[
    "name",
    "description",
    "network_id",
    "ip_version",
    "cidr",
    "gateway_ip",
    "allocation_pools",
    "dns_nameservers",
    "host_routes",
    "enable_dhcp",
    "ipv6_ra_mode",
    "ipv6_address_mode",
    "service_types",
    "subnetpool_id",
    "use_default_subnetpool",
    "segment_id",
    "dns_publish_fixed_ip",
    "tags",
    "project_id",
    "tenant_id",
];

const UPDATE: &[&str] = &[
    "name",
    "description",
    "gateway_ip",
    "allocation_pools",
    "dns_nameservers",
    "host_routes",
    "enable_dhcp",
    "service_types",
    "network_id",
    "cidr",
    "ip_version",
    "segment_id",
    "dns_publish_fixed_ip",
    "project_id",
    "tenant_id",
];

/// Whether the caller may see a subnet (`networks`: every network by uid).
fn visible(ctx: &Ctx, subnet: &Value, public: &HashMap<String, bool>) -> bool {
    ctx.owns(subnet)
        || public
            .get(text(subnet, "/spec/networkId"))
            .copied()
            .unwrap_or(false)
}

/// A subnet the caller may see, by id.
pub(crate) async fn find_visible(ctx: &Ctx, id: &str) -> NeutronResult<Value> {
    let Some(subnet) = ctx.fetch(&SUBNET, id).await? else {
        return Err(SUBNET.missing(id));
    };
    if !ctx.owns(&subnet) {
        let network = ctx
            .fetch(&NETWORK, text(&subnet, "/spec/networkId"))
            .await?;
        if !network.as_ref().is_some_and(networks::is_public) {
            return Err(SUBNET.missing(id));
        }
    }
    ctx.check_own("get_subnet")?;
    Ok(subnet)
}

async fn find_writable(ctx: &Ctx, id: &str, rule: &str) -> NeutronResult<Value> {
    let subnet = find_visible(ctx, id).await?;
    if !ctx.owns(&subnet) {
        return Err(NeutronFault::forbidden(rule));
    }
    ctx.check_on(rule, &subnet)?;
    Ok(subnet)
}

pub(crate) fn view(ctx: &Ctx, subnet: &Value) -> Value {
    let spec: SubnetSpec = spec_of(subnet);
    let mut view = ctx.standard(subnet);
    let version = spec
        .ip_version
        .unwrap_or(if spec.cidr.contains(':') { 6 } else { 4 });
    let gateway = if spec.no_gateway {
        Value::Null
    } else {
        json!(spec.gateway_ip)
    };
    for (key, value) in [
        ("network_id", json!(spec.network_id)),
        ("ip_version", json!(version)),
        ("cidr", json!(spec.cidr)),
        ("gateway_ip", gateway),
        ("allocation_pools", json!(spec.allocation_pools)),
        ("dns_nameservers", json!(spec.dns_nameservers)),
        ("host_routes", json!(spec.host_routes)),
        ("enable_dhcp", json!(spec.enable_dhcp)),
        ("ipv6_ra_mode", json!(spec.ipv6_ra_mode)),
        ("ipv6_address_mode", json!(spec.ipv6_address_mode)),
        ("service_types", json!(spec.service_types)),
        ("subnetpool_id", Value::Null),
        ("segment_id", Value::Null),
        ("dns_publish_fixed_ip", json!(false)),
    ] {
        view.insert(key.into(), value);
    }
    Value::Object(view)
}

/// `GET /subnets`.
pub async fn list(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    RawQuery(raw): RawQuery,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    ctx.check_own("get_subnet")?;
    let query = Query::parse(raw.as_deref());
    let public: HashMap<String, bool> = ctx
        .list(&NETWORK, None, None)
        .await?
        .iter()
        .map(|network| (uid_of(network), networks::is_public(network)))
        .collect();
    let views = ctx
        .list(&SUBNET, None, None)
        .await?
        .iter()
        .filter(|subnet| visible(&ctx, subnet, &public))
        .map(|subnet| view(&ctx, subnet))
        .collect();
    ctx.list_answer(&SUBNET, views, &query)
}

/// `GET /subnets/{id}`.
pub async fn show(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let subnet = find_visible(&ctx, &id).await?;
    ctx.show_answer(&SUBNET, view(&ctx, &subnet), raw.as_deref())
}

/// Applies a request's attributes to a spec.
fn apply(spec: &mut SubnetSpec, attributes: &Attributes) -> NeutronResult<()> {
    if let Some(name) = attributes.string("name")? {
        spec.name = name;
    }
    if let Some(description) = attributes.string("description")? {
        spec.description = description;
    }
    match attributes.nullable_string("gateway_ip")? {
        None => {}
        Some(None) => {
            spec.gateway_ip = None;
            spec.no_gateway = true;
        }
        Some(Some(gateway)) => {
            spec.gateway_ip = Some(gateway);
            spec.no_gateway = false;
        }
    }
    if let Some(pools) = attributes.objects("allocation_pools")? {
        spec.allocation_pools = pools
            .iter()
            .map(|pool| {
                Ok(AllocationPool {
                    start: member_string(pool, "start", "allocation_pools")?,
                    end: member_string(pool, "end", "allocation_pools")?,
                })
            })
            .collect::<NeutronResult<_>>()?;
    }
    if let Some(servers) = attributes.strings("dns_nameservers")? {
        spec.dns_nameservers = servers;
    }
    if let Some(routes) = attributes.objects("host_routes")? {
        spec.host_routes = routes
            .iter()
            .map(|route| {
                Ok(HostRoute {
                    destination: member_string(route, "destination", "host_routes")?,
                    nexthop: member_string(route, "nexthop", "host_routes")?,
                })
            })
            .collect::<NeutronResult<_>>()?;
    }
    if let Some(dhcp) = attributes.boolean("enable_dhcp")? {
        spec.enable_dhcp = dhcp;
    }
    if let Some(mode) = attributes.nullable_string("ipv6_ra_mode")? {
        spec.ipv6_ra_mode = mode;
    }
    if let Some(mode) = attributes.nullable_string("ipv6_address_mode")? {
        spec.ipv6_address_mode = mode;
    }
    if let Some(types) = attributes.strings("service_types")? {
        spec.service_types = types;
    }
    if let Some(tags) = attributes.strings("tags")? {
        spec.tags = tags;
    }
    if let Some(problem) = validate::subnet(spec).into_iter().next() {
        return Err(NeutronFault::bad_request(problem.message));
    }
    Ok(())
}

/// Refuses what Ronghe does not do (subnet pools, segments), unless asked for as nothing.
fn refuse_unsupported(attributes: &Attributes) -> NeutronResult<()> {
    for key in ["subnetpool_id", "segment_id"] {
        if attributes.raw(key).is_some_and(|v| !v.is_null()) {
            return Err(NeutronFault::bad_request(format!(
                "Invalid input for operation: {key} is not supported."
            )));
        }
    }
    for key in ["use_default_subnetpool", "dns_publish_fixed_ip"] {
        if attributes.boolean(key)? == Some(true) {
            return Err(NeutronFault::bad_request(format!(
                "Invalid input for operation: {key} is not supported."
            )));
        }
    }
    Ok(())
}

/// `POST /subnets`: in the network's project.
pub async fn create(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    body: Bytes,
) -> NeutronResult<Response> {
    let ctx = Ctx::new(state, &user)?;
    let attributes = Attributes::parse(&body, "subnet", CREATE)?;
    refuse_unsupported(&attributes)?;
    let network_id = attributes.string("network_id")?.ok_or_else(|| {
        NeutronFault::bad_request("Invalid input for operation: network_id is required.")
    })?;
    let network = networks::find_visible(&ctx, &network_id).await?;
    if !ctx.owns(&network) {
        return Err(NeutronFault::forbidden("create_subnet"));
    }
    let namespace = object::namespace(&network).unwrap_or_default().to_owned();
    ctx.check("create_subnet", Some(&namespace))?;
    let mut spec: SubnetSpec = fresh(json!({"networkId": "", "cidr": ""}));
    spec.network_id = uid_of(&network);
    spec.cidr = attributes.string("cidr")?.ok_or_else(|| {
        NeutronFault::bad_request(
            "Bad subnets request: a cidr must be specified in the absence of a subnet pool.",
        )
    })?;
    if let Some(version) = attributes.small_integer("ip_version")? {
        if ![4, 6].contains(&version) {
            return Err(NeutronFault::bad_request(format!(
                "Invalid input for ip_version. Reason: {version} is not in [4, 6]."
            )));
        }
        spec.ip_version = u8::try_from(version).ok();
    }
    apply(&mut spec, &attributes)?;
    let spec_value = serde_json::to_value(&spec).unwrap_or_else(|_| json!({}));
    let subnet = ctx
        .create(&SUBNET, &namespace, &spec.name, spec_value, None)
        .await?;
    Ok(answer(
        StatusCode::CREATED,
        json!({"subnet": view(&ctx, &subnet)}),
    ))
}

/// `PUT /subnets/{id}`.
pub async fn update(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    body: Bytes,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let subnet = find_writable(&ctx, &id, "update_subnet").await?;
    let attributes = Attributes::parse(&body, "subnet", UPDATE)?;
    attributes.read_only(&[
        "network_id",
        "cidr",
        "ip_version",
        "project_id",
        "tenant_id",
    ])?;
    refuse_unsupported(&attributes)?;
    let updated = ctx
        .update_spec(&SUBNET, &subnet, |spec: &mut SubnetSpec| {
            apply(spec, &attributes)
        })
        .await?;
    Ok(Json(json!({"subnet": view(&ctx, &updated)})))
}

/// Whether a port holds an address in a subnet.
fn holds_address_in(port: &Value, subnet_id: &str) -> bool {
    spec_of::<PortSpec>(port)
        .fixed_ips
        .iter()
        .any(|fixed| fixed.subnet_id == subnet_id)
}

/// `DELETE /subnets/{id}`.
pub async fn delete(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> NeutronResult<Response> {
    let ctx = Ctx::new(state, &user)?;
    let subnet = find_writable(&ctx, &id, "delete_subnet").await?;
    let uid = uid_of(&subnet);
    let in_use = || {
        NeutronFault::conflict(
            "SubnetInUse",
            format!(
                "Unable to complete operation on subnet {uid}: One or more ports have an IP allocation from this subnet."
            ),
        )
    };
    let selector = format!("spec.networkId={}", text(&subnet, "/spec/networkId"));
    let ports = ctx.list(&PORT, None, Some(&selector)).await?;
    let holders: Vec<&Value> = ports
        .iter()
        .filter(|port| holds_address_in(port, &uid))
        .collect();
    if holders
        .iter()
        .any(|port| spec_of::<PortSpec>(port).device_owner != owner::DHCP)
    {
        return Err(in_use());
    }
    let floating = ctx.list(&FLOATING_IP, None, None).await?;
    if floating
        .iter()
        .any(|fip| spec_of::<FloatingIpSpec>(fip).subnet_id == uid)
    {
        return Err(in_use());
    }
    // The subnet goes first, so the controller that keeps DHCP ports no longer adds an
    // address on it; then the DHCP port lets go of its address there.
    ctx.delete(&SUBNET, &subnet).await?;
    for port in holders {
        let others = spec_of::<PortSpec>(port)
            .fixed_ips
            .iter()
            .any(|fixed| fixed.subnet_id != uid);
        if !others {
            ctx.delete_quietly(&PORT, port).await;
            continue;
        }
        let dropped = ctx
            .update_spec(&PORT, port, |spec: &mut PortSpec| {
                spec.fixed_ips.retain(|fixed| fixed.subnet_id != uid);
                Ok(())
            })
            .await;
        if let Err(fault) = dropped {
            tracing::warn!(message = %fault.message, "a DHCP port kept an address of a deleted subnet");
        }
    }
    Ok(no_content())
}
