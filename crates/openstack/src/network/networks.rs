//! `/networks` over the Network kind: a project sees its own networks and every shared or
//! external one; admins see all. Provider attributes, `shared` and `router:external` are
//! set by admins only. Deleting a network deletes its subnets (and DHCP ports), and is
//! refused while anything else uses it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::{Extension, Json};
use bytes::Bytes;
use http::StatusCode;
use ronghe_api_types::network::{FloatingIpSpec, NetworkSpec, PortSpec, owner, spec_of, validate};
use ronghe_apiserver::auth::User;
use ronghe_apiserver::object;
use serde_json::{Value, json};

use super::body::Attributes;
use super::fault::{NeutronFault, NeutronResult};
use super::query::Query;
use super::{
    Ctx, FLOATING_IP, NETWORK, PORT, QOS_POLICY, SUBNET, answer, no_content, text, uid_of,
};
use crate::OpenStack;

const CREATE: &[&str] = &[
    "name",
    "description",
    "admin_state_up",
    "shared",
    "router:external",
    "provider:network_type",
    "provider:physical_network",
    "provider:segmentation_id",
    "mtu",
    "port_security_enabled",
    "qos_policy_id",
    "dns_domain",
    "is_default",
    "availability_zone_hints",
    "tags",
    "project_id",
    "tenant_id",
];

const UPDATE: &[&str] = &[
    "name",
    "description",
    "admin_state_up",
    "shared",
    "router:external",
    "provider:network_type",
    "provider:physical_network",
    "provider:segmentation_id",
    "mtu",
    "port_security_enabled",
    "qos_policy_id",
    "dns_domain",
    "is_default",
    "project_id",
    "tenant_id",
];

/// Whether every project may use a network (shared, or external).
pub(crate) fn is_public(network: &Value) -> bool {
    let spec: NetworkSpec = spec_of(network);
    spec.shared || spec.external
}

/// Whether the caller may see a network.
pub(crate) fn visible(ctx: &Ctx, network: &Value) -> bool {
    ctx.owns(network) || is_public(network)
}

/// A network the caller may see, by id.
pub(crate) async fn find_visible(ctx: &Ctx, id: &str) -> NeutronResult<Value> {
    match ctx.fetch(&NETWORK, id).await? {
        Some(network) if visible(ctx, &network) => {
            ctx.check_own("get_network")?;
            Ok(network)
        }
        _ => Err(NETWORK.missing(id)),
    }
}

/// A network the caller may change: its own (404 when unseen, 403 when only seen).
async fn find_writable(ctx: &Ctx, id: &str, rule: &str) -> NeutronResult<Value> {
    let network = find_visible(ctx, id).await?;
    if !ctx.owns(&network) {
        return Err(NeutronFault::forbidden(rule));
    }
    ctx.check_on(rule, &network)?;
    Ok(network)
}

/// A QoS policy the caller may attach (its own or a shared one), as a uid.
pub(crate) async fn qos_reference(ctx: &Ctx, id: &str) -> NeutronResult<String> {
    match ctx.fetch(&QOS_POLICY, id).await? {
        Some(policy)
            if ctx.owns(&policy)
                || policy
                    .pointer("/spec/shared")
                    .and_then(Value::as_bool)
                    .unwrap_or(false) =>
        {
            Ok(uid_of(&policy))
        }
        _ => Err(QOS_POLICY.missing(id)),
    }
}

/// Neutron's view of a network; `subnets` are the ids of its subnets.
pub(crate) fn view(ctx: &Ctx, network: &Value, subnets: Vec<String>) -> Value {
    let spec: NetworkSpec = spec_of(network);
    let mut view = ctx.standard(network);
    let mtu = spec.mtu.unwrap_or(if spec.is_flat() { 1500 } else { 1450 });
    for (key, value) in [
        ("admin_state_up", json!(spec.admin_state_up)),
        ("status", json!("ACTIVE")),
        ("subnets", json!(subnets)),
        ("shared", json!(spec.shared)),
        ("router:external", json!(spec.external)),
        ("mtu", json!(mtu)),
        ("port_security_enabled", json!(spec.port_security_enabled)),
        ("qos_policy_id", json!(spec.qos_policy_id)),
        ("dns_domain", json!(spec.dns_domain)),
        ("is_default", json!(spec.is_default)),
        (
            "availability_zone_hints",
            json!(spec.availability_zone_hints),
        ),
        ("availability_zones", json!([])),
        ("ipv4_address_scope", Value::Null),
        ("ipv6_address_scope", Value::Null),
        ("l2_adjacency", json!(true)),
    ] {
        view.insert(key.into(), value);
    }
    // Neutron shows provider attributes to admins only.
    if ctx.is_admin() {
        let network_type = if spec.network_type.is_empty() {
            "vxlan".to_owned()
        } else {
            spec.network_type.clone()
        };
        view.insert("provider:network_type".into(), json!(network_type));
        view.insert(
            "provider:physical_network".into(),
            json!(spec.physical_network),
        );
        view.insert(
            "provider:segmentation_id".into(),
            json!(spec.segmentation_id),
        );
    }
    Value::Object(view)
}

/// The ids of every subnet, by network uid, oldest first.
pub(crate) async fn subnet_ids(ctx: &Ctx) -> NeutronResult<HashMap<String, Vec<String>>> {
    let mut subnets = ctx.list(&SUBNET, None, None).await?;
    subnets.sort_by(|a, b| {
        object::meta_str(a, "creationTimestamp").cmp(&object::meta_str(b, "creationTimestamp"))
    });
    let mut by_network: HashMap<String, Vec<String>> = HashMap::new();
    for subnet in &subnets {
        by_network
            .entry(text(subnet, "/spec/networkId").to_owned())
            .or_default()
            .push(uid_of(subnet));
    }
    Ok(by_network)
}

/// The subnets of one network, oldest first.
pub(crate) async fn subnets_of(ctx: &Ctx, network: &Value) -> NeutronResult<Vec<Value>> {
    let selector = format!("spec.networkId={}", uid_of(network));
    let mut subnets = ctx
        .list(&SUBNET, object::namespace(network), Some(&selector))
        .await?;
    subnets.sort_by(|a, b| {
        object::meta_str(a, "creationTimestamp").cmp(&object::meta_str(b, "creationTimestamp"))
    });
    Ok(subnets)
}

/// `GET /networks`.
pub async fn list(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    RawQuery(raw): RawQuery,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    ctx.check_own("get_network")?;
    let query = Query::parse(raw.as_deref());
    let networks = ctx.list(&NETWORK, None, None).await?;
    let mut subnets = subnet_ids(&ctx).await?;
    let views = networks
        .iter()
        .filter(|network| visible(&ctx, network))
        .map(|network| {
            let ids = subnets.remove(&uid_of(network)).unwrap_or_default();
            view(&ctx, network, ids)
        })
        .collect();
    ctx.list_answer(&NETWORK, views, &query)
}

/// `GET /networks/{id}`.
pub async fn show(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let network = find_visible(&ctx, &id).await?;
    let subnets = subnets_of(&ctx, &network)
        .await?
        .iter()
        .map(uid_of)
        .collect();
    ctx.show_answer(&NETWORK, view(&ctx, &network, subnets), raw.as_deref())
}

/// Policy on the admin-only attributes a request sets.
fn check_attributes(
    ctx: &Ctx,
    attributes: &Attributes,
    action: &str,
    namespace: &str,
    current: &NetworkSpec,
) -> NeutronResult<()> {
    if let Some(shared) = attributes.boolean("shared")?
        && shared != current.shared
    {
        ctx.check(&format!("{action}_network:shared"), Some(namespace))?;
    }
    if let Some(external) = attributes.boolean("router:external")?
        && external != current.external
    {
        ctx.check(
            &format!("{action}_network:router:external"),
            Some(namespace),
        )?;
    }
    for attribute in [
        "provider:network_type",
        "provider:physical_network",
        "provider:segmentation_id",
    ] {
        if attributes.has(attribute) {
            ctx.check(&format!("{action}_network:{attribute}"), Some(namespace))?;
        }
    }
    if attributes.has("is_default") {
        ctx.check(&format!("{action}_network:is_default"), Some(namespace))?;
    }
    Ok(())
}

/// Applies a request's attributes to a spec (`qos` already resolved to a uid).
fn apply(
    spec: &mut NetworkSpec,
    attributes: &Attributes,
    qos: &Option<Option<String>>,
) -> NeutronResult<()> {
    if let Some(name) = attributes.string("name")? {
        spec.name = name;
    }
    if let Some(description) = attributes.string("description")? {
        spec.description = description;
    }
    if let Some(up) = attributes.boolean("admin_state_up")? {
        spec.admin_state_up = up;
    }
    if let Some(shared) = attributes.boolean("shared")? {
        spec.shared = shared;
    }
    if let Some(external) = attributes.boolean("router:external")? {
        spec.external = external;
    }
    if let Some(network_type) = attributes.string("provider:network_type")? {
        spec.network_type = network_type;
    }
    if let Some(physical) = attributes.nullable_string("provider:physical_network")? {
        spec.physical_network = physical;
    }
    if let Some(segment) = attributes.small_integer("provider:segmentation_id")? {
        spec.segmentation_id = Some(segment);
    }
    if let Some(mtu) = attributes.small_integer("mtu")? {
        spec.mtu = Some(mtu);
    }
    if let Some(security) = attributes.boolean("port_security_enabled")? {
        spec.port_security_enabled = security;
    }
    if let Some(qos) = qos {
        spec.qos_policy_id = qos.clone();
    }
    if let Some(domain) = attributes.string("dns_domain")? {
        spec.dns_domain = domain;
    }
    if let Some(default) = attributes.boolean("is_default")? {
        spec.is_default = default;
    }
    if let Some(hints) = attributes.strings("availability_zone_hints")? {
        spec.availability_zone_hints = hints;
    }
    if let Some(tags) = attributes.strings("tags")? {
        spec.tags = tags;
    }
    if let Some(problem) = validate::network(spec).into_iter().next() {
        return Err(NeutronFault::bad_request(problem.message));
    }
    Ok(())
}

/// The QoS policy a request names: absent, cleared (`null`) or a uid.
async fn qos_of(ctx: &Ctx, attributes: &Attributes) -> NeutronResult<Option<Option<String>>> {
    match attributes.nullable_string("qos_policy_id")? {
        None => Ok(None),
        Some(None) => Ok(Some(None)),
        Some(Some(id)) => Ok(Some(Some(qos_reference(ctx, &id).await?))),
    }
}

/// A spec with the kind's defaults (serde's, not `Default`'s); `seed` gives the fields
/// the spec requires.
pub(crate) fn fresh<S: serde::de::DeserializeOwned + Default>(seed: Value) -> S {
    serde_json::from_value(seed).unwrap_or_else(|error| {
        tracing::error!(%error, "a spec's defaults do not deserialize");
        S::default()
    })
}

/// `POST /networks`.
pub async fn create(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    body: Bytes,
) -> NeutronResult<Response> {
    let ctx = Ctx::new(state, &user)?;
    let attributes = Attributes::parse(&body, "network", CREATE)?;
    let namespace = ctx.create_namespace(&attributes)?;
    ctx.check("create_network", Some(&namespace))?;
    let mut spec: NetworkSpec = fresh(json!({}));
    check_attributes(&ctx, &attributes, "create", &namespace, &spec)?;
    let qos = qos_of(&ctx, &attributes).await?;
    apply(&mut spec, &attributes, &qos)?;
    let spec_value = serde_json::to_value(&spec).unwrap_or_else(|_| json!({}));
    let network = ctx
        .create(&NETWORK, &namespace, &spec.name, spec_value, None)
        .await?;
    Ok(answer(
        StatusCode::CREATED,
        json!({"network": view(&ctx, &network, Vec::new())}),
    ))
}

/// `PUT /networks/{id}`.
pub async fn update(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    body: Bytes,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let network = find_writable(&ctx, &id, "update_network").await?;
    let attributes = Attributes::parse(&body, "network", UPDATE)?;
    attributes.read_only(&[
        "provider:network_type",
        "provider:physical_network",
        "provider:segmentation_id",
        "project_id",
        "tenant_id",
    ])?;
    let namespace = object::namespace(&network).unwrap_or_default().to_owned();
    check_attributes(&ctx, &attributes, "update", &namespace, &spec_of(&network))?;
    let qos = qos_of(&ctx, &attributes).await?;
    let updated = ctx
        .update_spec(&NETWORK, &network, |spec: &mut NetworkSpec| {
            apply(spec, &attributes, &qos)
        })
        .await?;
    let subnets = subnets_of(&ctx, &updated)
        .await?
        .iter()
        .map(uid_of)
        .collect();
    Ok(Json(json!({"network": view(&ctx, &updated, subnets)})))
}

/// `DELETE /networks/{id}`: refused while ports (other than DHCP's) or floating IPs use
/// it; its subnets go with it.
pub async fn delete(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> NeutronResult<Response> {
    let ctx = Ctx::new(state, &user)?;
    let network = find_writable(&ctx, &id, "delete_network").await?;
    let uid = uid_of(&network);
    let in_use = || {
        NeutronFault::conflict(
            "NetworkInUse",
            format!(
                "Unable to complete operation on network {uid}. There are one or more ports still in use on the network."
            ),
        )
    };
    let ports = ctx
        .list(&PORT, None, Some(&format!("spec.networkId={uid}")))
        .await?;
    let (dhcp, used): (Vec<&Value>, Vec<&Value>) = ports
        .iter()
        .partition(|port| spec_of::<PortSpec>(port).device_owner == owner::DHCP);
    if !used.is_empty() {
        return Err(in_use());
    }
    let floating = ctx.list(&FLOATING_IP, None, None).await?;
    if floating
        .iter()
        .any(|fip| spec_of::<FloatingIpSpec>(fip).floating_network_id == uid)
    {
        return Err(in_use());
    }
    // The network goes first, so the controller that keeps DHCP ports makes no new one;
    // its DHCP port (which it owns) and its subnets follow.
    let subnets = subnets_of(&ctx, &network).await?;
    ctx.delete(&NETWORK, &network).await?;
    for port in dhcp {
        ctx.delete_quietly(&PORT, port).await;
    }
    for subnet in &subnets {
        ctx.delete_quietly(&SUBNET, subnet).await;
    }
    Ok(no_content())
}
