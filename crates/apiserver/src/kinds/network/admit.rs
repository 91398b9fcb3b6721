//! Admission of network objects against the objects they name: references by uid or by
//! name resolved to uids (a network of the same project, or a shared or external one),
//! VNIs and MACs allocated, IPAM for ports and floating IPs, the project's `default`
//! security group made on first use, and the Neutron rules that span objects (overlapping
//! subnets, floating IPs only on external networks and only where a router reaches).
//! Uniqueness itself comes from the claims written with the object; what is chosen here
//! is a proposal, chosen again by the engine when a concurrent create took it.

use std::collections::HashSet;
use std::net::IpAddr;

use futures::future::BoxFuture;
use rand::Rng;
use ronghe_api_types::network::ipam::{self, Pools};
use ronghe_api_types::network::validate::MAX_VNI;
use ronghe_api_types::network::{
    API_VERSION, FixedIp, FloatingIpSpec, NetworkSpec, PortForwardingSpec, PortSpec, RouterSpec,
    SecurityGroupRuleSpec, SubnetSpec, display_name, owner,
};
use serde_json::{Value, json};

use super::claims::{VNIS, id_claim, ip_claim, ips_of};
use super::spec;
use crate::engine::{Engine, ListOptions, Selectors, WriteOptions};
use crate::error::{ApiError, ApiResult};
use crate::object;
use crate::registry::Admission;

type Admitted<'a> = BoxFuture<'a, ApiResult<()>>;

/// A Neutron-style 400 for a bad reference or value.
fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

/// A 409 with Neutron's words.
fn conflict(message: impl Into<String>) -> ApiError {
    ApiError::conflict_message(message)
}

/// Writes a typed spec back into the object being admitted.
fn put_spec<T: serde::Serialize>(object: &mut Value, spec: &T) {
    if let Ok(value) = serde_json::to_value(spec) {
        object::ensure_object(object).insert("spec".into(), value);
    }
}

fn set_spec(object: &mut Value, field: &str, value: Value) {
    object::ensure_object(
        object::ensure_object(object)
            .entry("spec")
            .or_insert_with(|| json!({})),
    )
    .insert(field.into(), value);
}

/// An object of `kind` named by uid, or by name (Neutron's, or the object name) within
/// `namespace`; with `anywhere`, objects of other namespaces may be named by uid or name
/// when `anywhere` accepts them (shared and external networks).
pub async fn resolve(
    engine: &Engine,
    kind_name: &str,
    namespace: &str,
    reference: &str,
    anywhere: fn(&Value) -> bool,
) -> ApiResult<Option<Value>> {
    resolve_in(
        engine,
        API_VERSION,
        kind_name,
        namespace,
        reference,
        anywhere,
    )
    .await
}

/// [`resolve`] for a kind of any group whose objects claim their uid (`ids/<uid>`).
pub async fn resolve_in(
    engine: &Engine,
    api_version: &str,
    kind_name: &str,
    namespace: &str,
    reference: &str,
    anywhere: fn(&Value) -> bool,
) -> ApiResult<Option<Value>> {
    let kind = engine.kind(api_version, kind_name)?;
    if let Some(found) = engine.find_claimed(&kind, &id_claim(reference)).await? {
        let here = object::namespace(&found) == Some(namespace);
        return Ok((here || anywhere(&found)).then_some(found));
    }
    let listed = engine
        .list(&kind, None, &ListOptions::default())
        .await?
        .items;
    let by_name = |candidate: &&Value| {
        display_name(candidate) == reference || object::name(candidate) == Some(reference)
    };
    if let Some(found) = listed
        .iter()
        .filter(|c| object::namespace(c) == Some(namespace))
        .find(by_name)
    {
        return Ok(Some(found.clone()));
    }
    Ok(listed.iter().filter(|c| anywhere(c)).find(by_name).cloned())
}

/// Like [`resolve`], refusing with Neutron's 404 (`Network x could not be found.`) when
/// nothing is found.
async fn require(
    engine: &Engine,
    kind_name: &str,
    namespace: &str,
    reference: &str,
    anywhere: fn(&Value) -> bool,
) -> ApiResult<Value> {
    let what = match kind_name {
        "SecurityGroup" => "Security group",
        "QosPolicy" => "QoS policy",
        "FloatingIP" => "Floating IP",
        other => other,
    };
    resolve(engine, kind_name, namespace, reference, anywhere)
        .await?
        .ok_or_else(|| {
            ApiError::not_found_message(format!("{what} {reference} could not be found."))
        })
}

fn nowhere(_: &Value) -> bool {
    false
}

/// Shared and external networks may be used from every project.
pub fn network_is_public(network: &Value) -> bool {
    let spec: NetworkSpec = spec(network);
    spec.shared || spec.external
}

fn uid_of(object: &Value) -> String {
    object::uid(object).unwrap_or_default().to_owned()
}

fn namespace_of(object: &Value) -> String {
    object::namespace(object).unwrap_or_default().to_owned()
}

/// The subnets of a network, oldest first.
pub async fn subnets_of(engine: &Engine, network: &Value) -> ApiResult<Vec<Value>> {
    let kind = engine.kind(API_VERSION, "Subnet")?;
    let options = ListOptions {
        selectors: Selectors::parse(
            &kind,
            None,
            Some(&format!("spec.networkId={}", uid_of(network))),
        )?,
        ..ListOptions::default()
    };
    let mut subnets = engine
        .list(&kind, object::namespace(network), &options)
        .await?
        .items;
    subnets.sort_by_key(|s| object::str_at(s, &["metadata", "creationTimestamp"]));
    Ok(subnets)
}

pub(super) fn network<'a>(
    engine: &'a Engine,
    net: &'a mut Value,
    admission: Admission<'a>,
) -> Admitted<'a> {
    let old = admission.old;
    Box::pin(async move {
        let spec: NetworkSpec = spec(net);
        if old.is_some() || spec.is_flat() || spec.segmentation_id.is_some() {
            return Ok(());
        }
        // The lowest free VNIs, one of the first few at random, so concurrent creates
        // rarely propose the same one.
        let used: HashSet<u32> = engine
            .claims_under(ronghe_api_types::network::GROUP, VNIS)
            .await?
            .iter()
            .filter_map(|claim| claim.strip_prefix(VNIS)?.parse().ok())
            .collect();
        let free: Vec<u32> = (1..=MAX_VNI)
            .filter(|vni| !used.contains(vni))
            .take(16)
            .collect();
        let Some(vni) = free.get(rand::rng().random_range(0..free.len().max(1))) else {
            return Err(conflict(
                "Unable to create the network. No tenant network is available for allocation.",
            ));
        };
        set_spec(net, "segmentationId", json!(vni));
        Ok(())
    })
}

pub(super) fn subnet<'a>(
    engine: &'a Engine,
    subnet: &'a mut Value,
    admission: Admission<'a>,
) -> Admitted<'a> {
    let old = admission.old;
    Box::pin(async move {
        let namespace = namespace_of(subnet);
        let mut spec: SubnetSpec = spec(subnet);
        let network = require(engine, "Network", &namespace, &spec.network_id, nowhere).await?;
        spec.network_id = uid_of(&network);
        let net = ipam::parse_cidr(&spec.cidr).map_err(bad)?;
        spec.ip_version = Some(if net.addr().is_ipv6() { 6 } else { 4 });
        if spec.no_gateway {
            spec.gateway_ip = None;
        } else if spec.gateway_ip.is_none() {
            spec.gateway_ip = ipam::default_gateway(&net).map(|g| g.to_string());
        }
        let gateway = spec
            .gateway_ip
            .as_deref()
            .and_then(|g| g.parse::<IpAddr>().ok());
        if spec.allocation_pools.is_empty() {
            spec.allocation_pools = ipam::default_pools(&net, gateway);
        }
        Pools::new(&net, &spec.allocation_pools, gateway).map_err(bad)?;
        if old.is_none() {
            for other in subnets_of(engine, &network).await? {
                let other_spec: SubnetSpec = super::spec(&other);
                if let Ok(other_net) = ipam::parse_cidr(&other_spec.cidr)
                    && ipam::overlaps(&net, &other_net)
                {
                    return Err(bad(format!(
                        "Invalid input for operation: Requested subnet with cidr: {} for network: {} overlaps with another subnet.",
                        spec.cidr, spec.network_id
                    )));
                }
            }
        }
        put_spec(subnet, &spec);
        Ok(())
    })
}

/// The address range of a project's default network (each project's network is its own
/// VXLAN segment, so every project may use the same one).
pub const DEFAULT_CIDR: &str = "10.0.0.0/16";

/// The project's default network (the one its pods use unless they name another), made
/// with a subnet of [`DEFAULT_CIDR`] when it does not exist yet.
pub async fn default_network(engine: &Engine, namespace: &str) -> ApiResult<Value> {
    let kind = engine.kind(API_VERSION, "Network")?;
    let find = || async {
        let options = ListOptions {
            selectors: Selectors::parse(&kind, None, Some("spec.isDefault=true"))?,
            ..ListOptions::default()
        };
        let listed = engine.list(&kind, Some(namespace), &options).await?;
        ApiResult::Ok(listed.items.into_iter().next())
    };
    if let Some(found) = find().await? {
        return Ok(found);
    }
    let body = json!({
        "apiVersion": API_VERSION,
        "kind": "Network",
        "metadata": {"generateName": "default-", "namespace": namespace},
        "spec": {"name": "default", "isDefault": true, "description": "The project's default network"},
    });
    let network = match engine
        .create(&kind, Some(namespace), body, &WriteOptions::default())
        .await
    {
        Ok(written) => written.object,
        Err(error) if error.code() == 409 => {
            return find()
                .await?
                .ok_or_else(|| conflict("The default network is being made."));
        }
        Err(error) => return Err(error),
    };
    let subnets = engine.kind(API_VERSION, "Subnet")?;
    let body = json!({
        "apiVersion": API_VERSION,
        "kind": "Subnet",
        "metadata": {"generateName": "default-", "namespace": namespace},
        "spec": {"name": "default", "networkId": uid_of(&network), "cidr": DEFAULT_CIDR},
    });
    engine
        .create(&subnets, Some(namespace), body, &WriteOptions::default())
        .await?;
    Ok(network)
}

/// The project's `default` security group, made (with Neutron's two egress rules and its
/// rules letting in traffic from the group itself) when it does not exist yet.
pub async fn default_security_group(engine: &Engine, namespace: &str) -> ApiResult<Value> {
    let kind = engine.kind(API_VERSION, "SecurityGroup")?;
    let find = || async {
        let listed = engine
            .list(&kind, Some(namespace), &ListOptions::default())
            .await?;
        ApiResult::Ok(
            listed
                .items
                .into_iter()
                .find(|g| display_name(g) == "default"),
        )
    };
    if let Some(found) = find().await? {
        return Ok(found);
    }
    let body = json!({
        "apiVersion": API_VERSION,
        "kind": "SecurityGroup",
        "metadata": {"name": "default", "namespace": namespace},
        "spec": {"name": "default", "description": "Default security group"},
    });
    let group = match engine
        .create(&kind, Some(namespace), body, &WriteOptions::default())
        .await
    {
        Ok(written) => written.object,
        // Another request made it first (the claim of the project's one default group).
        Err(error) if error.code() == 409 => {
            return find()
                .await?
                .ok_or_else(|| conflict("Default security group already exists."));
        }
        Err(error) => return Err(error),
    };
    let rules = engine.kind(API_VERSION, "SecurityGroupRule")?;
    let group_id = uid_of(&group);
    for (direction, ethertype, remote_group) in [
        ("egress", "IPv4", false),
        ("egress", "IPv6", false),
        ("ingress", "IPv4", true),
        ("ingress", "IPv6", true),
    ] {
        let mut spec =
            json!({"securityGroupId": group_id, "direction": direction, "ethertype": ethertype});
        if remote_group {
            spec["remoteGroupId"] = json!(group_id);
        }
        let body = json!({
            "apiVersion": API_VERSION,
            "kind": "SecurityGroupRule",
            "metadata": {"generateName": "default-", "namespace": namespace},
            "spec": spec,
        });
        match engine
            .create(&rules, Some(namespace), body, &WriteOptions::default())
            .await
        {
            Ok(_) => {}
            Err(error) if error.code() == 409 => {}
            Err(error) => return Err(error),
        }
    }
    Ok(group)
}

/// An address for a port or floating IP from a subnet's pools: the one asked for (which
/// must be inside the subnet and free) or a free one.
async fn address_on(
    engine: &Engine,
    subnet: &Value,
    asked: Option<&str>,
    for_router: bool,
) -> ApiResult<String> {
    let spec: SubnetSpec = super::spec(subnet);
    let subnet_id = uid_of(subnet);
    let net = ipam::parse_cidr(&spec.cidr).map_err(bad)?;
    let gateway = spec
        .gateway_ip
        .as_deref()
        .and_then(|g| g.parse::<IpAddr>().ok());
    let pools = Pools::new(&net, &spec.allocation_pools, gateway).map_err(bad)?;
    if let Some(asked) = asked {
        let address: IpAddr = ipam::parse_address(asked).map_err(bad)?;
        let reserved = address == net.network()
            || (net.addr().is_ipv4() && address == net.broadcast() && net.prefix_len() < 31);
        if !net.contains(&address) || reserved {
            return Err(bad(format!(
                "IP address {asked} is not a valid IP for the specified subnet."
            )));
        }
        if Some(address) == gateway && !for_router {
            return Err(conflict(format!(
                "IP address {asked} already allocated in subnet {subnet_id}"
            )));
        }
        let address = address.to_string();
        if engine
            .claim_holder(
                ronghe_api_types::network::GROUP,
                &ip_claim(&subnet_id, &address),
            )
            .await?
            .is_some()
        {
            return Err(conflict(format!(
                "IP address {address} already allocated in subnet {subnet_id}"
            )));
        }
        return Ok(address);
    }
    // A few random addresses first, each checked with one read: in a big pool that is
    // mostly free this finds one without reading every claim of the subnet.
    for _ in 0..4 {
        let Some(candidate) = pools.pick_free(&HashSet::new(), rand::rng().random()) else {
            break;
        };
        let candidate = candidate.to_string();
        if engine
            .claim_holder(
                ronghe_api_types::network::GROUP,
                &ip_claim(&subnet_id, &candidate),
            )
            .await?
            .is_none()
        {
            return Ok(candidate);
        }
    }
    let prefix = ips_of(&subnet_id);
    let used: HashSet<IpAddr> = engine
        .claims_under(ronghe_api_types::network::GROUP, &prefix)
        .await?
        .iter()
        .filter_map(|claim| claim.strip_prefix(&prefix)?.parse().ok())
        .collect();
    pools
        .pick_free(&used, rand::rng().random())
        .map(|address| address.to_string())
        .ok_or_else(|| {
            conflict(format!(
                "No more IP addresses available on network {}.",
                spec.network_id
            ))
        })
}

pub(super) fn port<'a>(
    engine: &'a Engine,
    port: &'a mut Value,
    admission: Admission<'a>,
) -> Admitted<'a> {
    let old = admission.old;
    Box::pin(async move {
        let namespace = namespace_of(port);
        let mut spec: PortSpec = spec(port);
        let previous: Option<PortSpec> = old.map(super::spec);
        let network = require(
            engine,
            "Network",
            &namespace,
            &spec.network_id,
            network_is_public,
        )
        .await?;
        spec.network_id = uid_of(&network);
        let network_spec: NetworkSpec = super::spec(&network);
        if spec.mac_address.is_empty() {
            spec.mac_address = ipam::mac_from(rand::rng().random());
        } else {
            spec.mac_address = ipam::parse_mac(&spec.mac_address).map_err(bad)?;
        }
        let subnets = subnets_of(engine, &network).await?;
        let for_router = spec.device_owner.starts_with("network:router");
        let kept: Vec<FixedIp> = previous
            .as_ref()
            .map(|p| p.fixed_ips.clone())
            .unwrap_or_default();
        let mut fixed_ips = Vec::new();
        if spec.fixed_ips.is_empty() && previous.is_none() {
            // One address from the first IPv4 subnet with room, and one from the first
            // IPv6 subnet, as Neutron's IPAM does.
            for v6 in [false, true] {
                for subnet in subnets
                    .iter()
                    .filter(|s| super::spec::<SubnetSpec>(s).cidr.contains(':') == v6)
                {
                    match address_on(engine, subnet, None, for_router).await {
                        Ok(address) => {
                            fixed_ips.push(FixedIp {
                                subnet_id: uid_of(subnet),
                                ip_address: address,
                            });
                            break;
                        }
                        Err(error) if error.code() == 409 => continue,
                        Err(error) => return Err(error),
                    }
                }
            }
        }
        for fixed in &spec.fixed_ips {
            if kept.contains(fixed) {
                fixed_ips.push(fixed.clone());
                continue;
            }
            let subnet = if fixed.subnet_id.is_empty() {
                let address = ipam::parse_address(&fixed.ip_address).map_err(bad)?;
                subnets
                    .iter()
                    .find(|s| {
                        ipam::parse_cidr(&super::spec::<SubnetSpec>(s).cidr)
                            .is_ok_and(|net| net.contains(&address))
                    })
                    .ok_or_else(|| {
                        bad(format!(
                            "IP address {} is not a valid IP for any of the subnets on the specified network.",
                            fixed.ip_address
                        ))
                    })?
            } else {
                subnets
                    .iter()
                    .find(|s| {
                        uid_of(s) == fixed.subnet_id || display_name(s) == fixed.subnet_id
                    })
                    .ok_or_else(|| {
                        bad(format!(
                            "Invalid input for operation: Failed to create port on network {}, because fixed_ips included invalid subnet {}.",
                            spec.network_id, fixed.subnet_id
                        ))
                    })?
            };
            let asked = Some(fixed.ip_address.as_str()).filter(|a| !a.is_empty());
            // An address this port already holds stays its own.
            let already = asked.is_some_and(|a| {
                kept.iter()
                    .any(|k| k.subnet_id == uid_of(subnet) && k.ip_address == a)
            });
            let address = if already {
                asked.unwrap_or_default().to_owned()
            } else {
                address_on(engine, subnet, asked, for_router).await?
            };
            fixed_ips.push(FixedIp {
                subnet_id: uid_of(subnet),
                ip_address: address,
            });
        }
        spec.fixed_ips = fixed_ips;
        if spec.port_security_enabled.is_none() {
            spec.port_security_enabled = Some(network_spec.port_security_enabled);
        }
        let device_port = spec.device_owner.starts_with("network:");
        if spec.security_enabled() && !device_port {
            let groups = match spec.security_groups.take() {
                None => vec![uid_of(&default_security_group(engine, &namespace).await?)],
                Some(groups) => {
                    let mut resolved = Vec::with_capacity(groups.len());
                    for group in groups {
                        let found =
                            require(engine, "SecurityGroup", &namespace, &group, nowhere).await?;
                        resolved.push(uid_of(&found));
                    }
                    resolved
                }
            };
            spec.security_groups = Some(groups);
        } else if spec.security_groups.is_none() {
            spec.security_groups = Some(Vec::new());
        }
        if let Some(policy) = spec.qos_policy_id.clone() {
            let found = require(engine, "QosPolicy", &namespace, &policy, qos_is_shared).await?;
            spec.qos_policy_id = Some(uid_of(&found));
        }
        put_spec(port, &spec);
        Ok(())
    })
}

fn qos_is_shared(policy: &Value) -> bool {
    policy
        .pointer("/spec/shared")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

pub(super) fn router<'a>(
    engine: &'a Engine,
    router: &'a mut Value,
    _admission: Admission<'a>,
) -> Admitted<'a> {
    Box::pin(async move {
        let namespace = namespace_of(router);
        let mut spec: RouterSpec = spec(router);
        if let Some(gateway) = spec.external_gateway_info.as_mut() {
            let network = require(
                engine,
                "Network",
                &namespace,
                &gateway.network_id,
                network_is_public,
            )
            .await?;
            if !super::spec::<NetworkSpec>(&network).external {
                return Err(bad(format!(
                    "Bad router request: Network {} is not an external network.",
                    gateway.network_id
                )));
            }
            gateway.network_id = uid_of(&network);
        }
        for route in &spec.routes {
            ipam::parse_prefix(&route.destination).map_err(bad)?;
            ipam::parse_address(&route.nexthop).map_err(bad)?;
        }
        put_spec(router, &spec);
        Ok(())
    })
}

pub(super) fn security_group_rule<'a>(
    engine: &'a Engine,
    rule: &'a mut Value,
    admission: Admission<'a>,
) -> Admitted<'a> {
    let old = admission.old;
    Box::pin(async move {
        if old.is_some() {
            return Ok(());
        }
        let namespace = namespace_of(rule);
        let mut spec: SecurityGroupRuleSpec = spec(rule);
        let group = require(
            engine,
            "SecurityGroup",
            &namespace,
            &spec.security_group_id,
            nowhere,
        )
        .await?;
        spec.security_group_id = uid_of(&group);
        if let Some(remote) = spec.remote_group_id.clone() {
            let found = require(engine, "SecurityGroup", &namespace, &remote, nowhere).await?;
            spec.remote_group_id = Some(uid_of(&found));
        }
        if let Some(prefix) = spec.remote_ip_prefix.as_deref() {
            // Neutron stores the normalised CIDR (`10.0.0.5/24` → `10.0.0.0/24`).
            if let Ok(net) = ipam::parse_prefix(prefix) {
                spec.remote_ip_prefix = Some(net.to_string());
            }
        }
        put_spec(rule, &spec);
        Ok(())
    })
}

/// The router of `namespace` that reaches `fixed` (an address of a port) from the
/// external network `external_id`: one with its gateway there and an interface on the
/// subnet holding the address.
pub async fn router_reaching(
    engine: &Engine,
    namespace: &str,
    external_id: &str,
    subnet_id: &str,
) -> ApiResult<Option<String>> {
    let routers = engine.kind(API_VERSION, "Router")?;
    let ports = engine.kind(API_VERSION, "Port")?;
    let candidates: Vec<String> = engine
        .list(&routers, Some(namespace), &ListOptions::default())
        .await?
        .items
        .iter()
        .filter(|router| {
            super::spec::<RouterSpec>(router)
                .external_gateway_info
                .is_some_and(|gateway| gateway.network_id == external_id)
        })
        .map(uid_of)
        .collect();
    if candidates.is_empty() {
        return Ok(None);
    }
    let options = ListOptions {
        selectors: Selectors::parse(
            &ports,
            None,
            Some(&format!("spec.deviceOwner={}", owner::ROUTER_INTERFACE)),
        )?,
        ..ListOptions::default()
    };
    let interfaces = engine.list(&ports, Some(namespace), &options).await?.items;
    Ok(interfaces.iter().find_map(|interface| {
        let spec: PortSpec = super::spec(interface);
        (candidates.contains(&spec.device_id)
            && spec.fixed_ips.iter().any(|f| f.subnet_id == subnet_id))
        .then_some(spec.device_id)
    }))
}

pub(super) fn floating_ip<'a>(
    engine: &'a Engine,
    fip: &'a mut Value,
    admission: Admission<'a>,
) -> Admitted<'a> {
    let old = admission.old;
    Box::pin(async move {
        let namespace = namespace_of(fip);
        let mut spec: FloatingIpSpec = spec(fip);
        let network = require(
            engine,
            "Network",
            &namespace,
            &spec.floating_network_id,
            network_is_public,
        )
        .await?;
        if !super::spec::<NetworkSpec>(&network).external {
            return Err(bad(format!(
                "Bad floatingip request: Network {} is not a valid external network.",
                spec.floating_network_id
            )));
        }
        spec.floating_network_id = uid_of(&network);
        for range in &spec.source_ranges {
            ipam::parse_source_range(range)
                .map_err(|error| bad(format!("Invalid input for sourceRanges: {error}.")))?;
        }
        if old.is_none() {
            let subnets = subnets_of(engine, &network).await?;
            let subnet = if spec.subnet_id.is_empty() {
                let address = Some(spec.floating_ip_address.as_str()).filter(|a| !a.is_empty());
                subnets.iter().find(|s| {
                    let cidr = super::spec::<SubnetSpec>(s).cidr;
                    match address.and_then(|a| a.parse::<IpAddr>().ok()) {
                        Some(address) => {
                            ipam::parse_cidr(&cidr).is_ok_and(|net| net.contains(&address))
                        }
                        None => !cidr.contains(':'),
                    }
                })
            } else {
                subnets
                    .iter()
                    .find(|s| uid_of(s) == spec.subnet_id || display_name(s) == spec.subnet_id)
            }
            .ok_or_else(|| {
                bad(format!(
                    "Bad floatingip request: no subnet of network {} can hold the floating IP.",
                    spec.floating_network_id
                ))
            })?;
            let asked = Some(spec.floating_ip_address.as_str()).filter(|a| !a.is_empty());
            spec.floating_ip_address = address_on(engine, subnet, asked, false).await?;
            spec.subnet_id = uid_of(subnet);
        }
        match spec.port_id.clone() {
            None => {
                spec.fixed_ip_address = None;
                spec.router_id = None;
            }
            Some(port_ref) => {
                let port = require(engine, "Port", &namespace, &port_ref, nowhere).await?;
                let port_spec: PortSpec = super::spec(&port);
                let fixed = match spec.fixed_ip_address.as_deref() {
                    Some(asked) => port_spec
                        .fixed_ips
                        .iter()
                        .find(|f| f.ip_address == asked)
                        .ok_or_else(|| {
                            bad(format!(
                                "Bad floatingip request: Port {port_ref} does not have fixed ip {asked}."
                            ))
                        })?,
                    None => port_spec
                        .fixed_ips
                        .iter()
                        .find(|f| !f.ip_address.contains(':'))
                        .ok_or_else(|| {
                            bad(format!(
                                "Bad floatingip request: Port {port_ref} does not have any IPv4 address."
                            ))
                        })?,
                }
                .clone();
                let router = router_reaching(engine, &namespace, &spec.floating_network_id, &fixed.subnet_id)
                    .await?
                    .ok_or_else(|| {
                        ApiError::not_found_message(format!(
                            "External network {} is not reachable from subnet {}.  Therefore, cannot associate Port {} with a Floating IP.",
                            spec.floating_network_id, fixed.subnet_id, uid_of(&port)
                        ))
                    })?;
                let forwardings = engine.kind(API_VERSION, "PortForwarding")?;
                let options = ListOptions {
                    selectors: Selectors::parse(
                        &forwardings,
                        None,
                        Some(&format!("spec.floatingIpId={}", uid_of(fip))),
                    )?,
                    ..ListOptions::default()
                };
                if !engine
                    .list(&forwardings, Some(&namespace), &options)
                    .await?
                    .items
                    .is_empty()
                {
                    return Err(conflict(format!(
                        "Cannot associate floating IP {} with a port: it has port forwardings.",
                        spec.floating_ip_address
                    )));
                }
                spec.port_id = Some(uid_of(&port));
                spec.fixed_ip_address = Some(fixed.ip_address);
                spec.router_id = Some(router);
            }
        }
        put_spec(fip, &spec);
        Ok(())
    })
}

pub(super) fn port_forwarding<'a>(
    engine: &'a Engine,
    forwarding: &'a mut Value,
    _admission: Admission<'a>,
) -> Admitted<'a> {
    Box::pin(async move {
        let namespace = namespace_of(forwarding);
        let mut spec: PortForwardingSpec = spec(forwarding);
        let fip = require(
            engine,
            "FloatingIP",
            &namespace,
            &spec.floating_ip_id,
            nowhere,
        )
        .await?;
        let fip_spec: FloatingIpSpec = super::spec(&fip);
        if fip_spec.port_id.is_some() {
            return Err(conflict(format!(
                "Bad port_forwarding request: floating IP {} is associated with a port; port forwardings need a free floating IP.",
                fip_spec.floating_ip_address
            )));
        }
        let port = require(engine, "Port", &namespace, &spec.internal_port_id, nowhere).await?;
        let port_spec: PortSpec = super::spec(&port);
        let fixed = port_spec
            .fixed_ips
            .iter()
            .find(|f| f.ip_address == spec.internal_ip_address)
            .ok_or_else(|| {
                bad(format!(
                    "Bad port_forwarding request: The requested internal IP address {} is not an address of port {}.",
                    spec.internal_ip_address, spec.internal_port_id
                ))
            })?;
        if router_reaching(
            engine,
            &namespace,
            &fip_spec.floating_network_id,
            &fixed.subnet_id,
        )
        .await?
        .is_none()
        {
            return Err(ApiError::not_found_message(format!(
                "External network {} is not reachable from subnet {}.",
                fip_spec.floating_network_id, fixed.subnet_id
            )));
        }
        spec.floating_ip_id = uid_of(&fip);
        spec.internal_port_id = uid_of(&port);
        put_spec(forwarding, &spec);
        Ok(())
    })
}
