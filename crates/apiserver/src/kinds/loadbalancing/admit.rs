//! Admission of load-balancing objects against the objects they name: parents by uid or
//! name resolved to uids (and each child's load balancer filled in), the VIP port made
//! for a new load balancer, protocols of listeners and pools that fit, members only on
//! subnets the VIP reaches, certificates from Secrets that the proxy can serve, and L7
//! policy positions.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;

use futures::future::BoxFuture;
use ronghe_api_types::loadbalancing::proxy::{
    CA_KEY, CRL_KEY, certificate_of_secret, check_ca_and_crl, check_certificate, compatible,
    pem_of_secret, secret_name,
};
use ronghe_api_types::loadbalancing::{
    API_VERSION, HealthMonitorSpec, L7PolicySpec, L7RuleSpec, ListenerSpec, LoadBalancerSpec,
    MemberSpec, PROVIDER, PoolSpec, TREE_KINDS, Tree, annotation, spec_of, validate,
};
use ronghe_api_types::network::ipam;
use ronghe_api_types::network::{self as net, PortSpec, SubnetSpec, owner};
use serde_json::{Value, json};

use crate::engine::{Engine, ListOptions, Selectors};
use crate::error::{ApiError, ApiResult};
use crate::kinds::network::{network_is_public, resolve_in, subnets_of};
use crate::object;
use crate::registry::Admission;

type Admitted<'a> = BoxFuture<'a, ApiResult<()>>;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

fn conflict(message: impl Into<String>) -> ApiError {
    ApiError::conflict_message(message)
}

fn uid_of(object: &Value) -> String {
    object::uid(object).unwrap_or_default().to_owned()
}

fn namespace_of(object: &Value) -> String {
    object::namespace(object).unwrap_or_default().to_owned()
}

fn put_spec<T: serde::Serialize>(object: &mut Value, spec: &T) {
    if let Ok(value) = serde_json::to_value(spec) {
        object::ensure_object(object).insert("spec".into(), value);
    }
}

fn nowhere(_: &Value) -> bool {
    false
}

/// Octavia's name of a kind in messages.
fn what(kind: &str) -> &str {
    match kind {
        "LoadBalancer" => "Load Balancer",
        "HealthMonitor" => "Health Monitor",
        "L7Policy" => "L7 Policy",
        "L7Rule" => "L7 Rule",
        other => other,
    }
}

/// A load-balancing object of the namespace named by uid or name, or Octavia's 404.
async fn require(
    engine: &Engine,
    kind: &str,
    namespace: &str,
    reference: &str,
) -> ApiResult<Value> {
    if reference.is_empty() {
        return Err(bad(format!(
            "Validation failure: a {} id is required.",
            what(kind)
        )));
    }
    resolve_in(engine, API_VERSION, kind, namespace, reference, nowhere)
        .await?
        .ok_or_else(|| {
            ApiError::not_found_message(format!("{} {reference} not found.", what(kind)))
        })
}

/// Refuses a change under a parent that is being deleted, as Octavia does.
fn not_deleting(parent: &Value, kind: &str) -> ApiResult<()> {
    if object::deletion_timestamp(parent).is_some() {
        return Err(conflict(format!(
            "Invalid state PENDING_DELETE of {} resource {}",
            what(kind).to_ascii_lowercase().replace(' ', ""),
            uid_of(parent)
        )));
    }
    Ok(())
}

/// Makes `object` a dependent of `parent`, so deleting the parent deletes it.
fn own(object: &mut Value, kind: &str, parent: &Value) {
    let reference = json!([{
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": object::name(parent).unwrap_or_default(),
        "uid": uid_of(parent),
        "blockOwnerDeletion": true,
    }]);
    let metadata = object::ensure_object(
        object::ensure_object(object)
            .entry("metadata")
            .or_insert_with(|| json!({})),
    );
    metadata.insert("ownerReferences".into(), reference);
}

/// The load balancer whose uid a child names.
async fn load_balancer_of(engine: &Engine, namespace: &str, uid: &str) -> ApiResult<Value> {
    let found = require(engine, "LoadBalancer", namespace, uid).await?;
    not_deleting(&found, "LoadBalancer")?;
    Ok(found)
}

/// A subnet named by uid or name: one of the namespace, or of a shared or external
/// network.
async fn subnet_by_reference(
    engine: &Engine,
    namespace: &str,
    reference: &str,
) -> ApiResult<Value> {
    let missing = || ApiError::not_found_message(format!("Subnet {reference} not found."));
    let found = resolve_in(
        engine,
        net::API_VERSION,
        "Subnet",
        namespace,
        reference,
        |_| true,
    )
    .await?
    .ok_or_else(missing)?;
    if object::namespace(&found) == Some(namespace) {
        return Ok(found);
    }
    let network_id = spec_of::<SubnetSpec>(&found).network_id;
    let network = resolve_in(
        engine,
        net::API_VERSION,
        "Network",
        namespace,
        &network_id,
        network_is_public,
    )
    .await?;
    network.map(|_| found).ok_or_else(missing)
}

pub(super) fn load_balancer<'a>(
    engine: &'a Engine,
    lb: &'a mut Value,
    admission: Admission<'a>,
) -> Admitted<'a> {
    let old = admission.old;
    Box::pin(async move {
        if old.is_some() {
            // The VIP is fixed at create (validation refuses changes to it).
            return Ok(());
        }
        let namespace = namespace_of(lb);
        let mut spec: LoadBalancerSpec = spec_of(lb);
        if spec.provider.is_empty() {
            spec.provider = PROVIDER.into();
        }
        if !spec.vip_port_id.is_empty() {
            let port = resolve_in(
                engine,
                net::API_VERSION,
                "Port",
                &namespace,
                &spec.vip_port_id,
                nowhere,
            )
            .await?
            .ok_or_else(|| {
                ApiError::not_found_message(format!("Port {} not found.", spec.vip_port_id))
            })?;
            let port_spec: PortSpec = spec_of(&port);
            let fixed = port_spec.fixed_ips.first().cloned().ok_or_else(|| {
                bad(format!(
                    "Validation failure: Port {} has no IP address.",
                    spec.vip_port_id
                ))
            })?;
            spec.vip_port_id = uid_of(&port);
            spec.vip_network_id = port_spec.network_id;
            spec.vip_subnet_id = fixed.subnet_id;
            spec.vip_address = fixed.ip_address;
            put_spec(lb, &spec);
            return Ok(());
        }
        let subnet = if !spec.vip_subnet_id.is_empty() {
            subnet_by_reference(engine, &namespace, &spec.vip_subnet_id).await?
        } else {
            let network = resolve_in(
                engine,
                net::API_VERSION,
                "Network",
                &namespace,
                &spec.vip_network_id,
                network_is_public,
            )
            .await?
            .ok_or_else(|| {
                ApiError::not_found_message(format!("Network {} not found.", spec.vip_network_id))
            })?;
            let subnets = subnets_of(engine, &network).await?;
            let wanted: Option<IpAddr> = spec.vip_address.parse().ok();
            subnets
                .into_iter()
                .find(|subnet| {
                    let cidr = spec_of::<SubnetSpec>(subnet).cidr;
                    match (wanted, ipam::parse_prefix(&cidr)) {
                        (Some(address), Ok(net)) => net.contains(&address),
                        (None, Ok(net)) => net.addr().is_ipv4(),
                        _ => false,
                    }
                })
                .ok_or_else(|| {
                    bad(format!(
                        "Validation failure: Network {} has no subnet for the VIP.",
                        spec.vip_network_id
                    ))
                })?
        };
        let subnet_spec: SubnetSpec = spec_of(&subnet);
        let mut fixed = json!({"subnetId": uid_of(&subnet)});
        if !spec.vip_address.is_empty() {
            fixed["ipAddress"] = json!(spec.vip_address);
        }
        let uid = uid_of(lb);
        let port_body = json!({
            "apiVersion": net::API_VERSION,
            "kind": "Port",
            "metadata": {
                "generateName": "octavia-lb-",
                "namespace": namespace,
                "ownerReferences": [{
                    "apiVersion": API_VERSION,
                    "kind": "LoadBalancer",
                    "name": object::name(lb).unwrap_or_default(),
                    "uid": uid,
                }],
            },
            "spec": {
                "name": format!("octavia-lb-{uid}"),
                "networkId": subnet_spec.network_id,
                "fixedIps": [fixed],
                "deviceOwner": owner::LOAD_BALANCER,
                "deviceId": uid,
                // In the project's default security group, as a member of it: members
                // in that group accept the proxy's connections, and its clients reach
                // the VIP (Octavia leaves opening members' groups to the user too).
            },
        });
        let ports = engine.kind(net::API_VERSION, "Port")?;
        let port = engine
            .create(
                &ports,
                Some(&namespace),
                port_body,
                &admission.write_options(),
            )
            .await?
            .object;
        let port_spec: PortSpec = spec_of(&port);
        spec.vip_port_id = uid_of(&port);
        spec.vip_network_id = port_spec.network_id;
        spec.vip_subnet_id = uid_of(&subnet);
        spec.vip_address = port_spec
            .fixed_ips
            .first()
            .map(|f| f.ip_address.clone())
            .unwrap_or_default();
        put_spec(lb, &spec);
        Ok(())
    })
}

/// The Secret a container reference names; Octavia's words when there is none.
async fn secret_of(engine: &Engine, namespace: &str, reference: &str) -> ApiResult<Value> {
    let secrets = engine.kind("v1", "Secret")?;
    match engine
        .get(&secrets, Some(namespace), secret_name(reference))
        .await
    {
        Err(error) if error.code() == 404 => Err(bad(format!(
            "Could not retrieve certificate: ['{reference}']"
        ))),
        found => found,
    }
}

async fn check_tls_reference(engine: &Engine, namespace: &str, reference: &str) -> ApiResult<()> {
    let secret = secret_of(engine, namespace, reference).await?;
    let certificate = certificate_of_secret(&secret)
        .map_err(|problem| bad(format!("Could not retrieve certificate: {problem}")))?;
    check_certificate(&certificate).map_err(bad)
}

/// The CA (and CRL) Secrets a listener or pool names, which must hold what the proxy can
/// check certificates with.
async fn check_ca_references(
    engine: &Engine,
    namespace: &str,
    ca: &Option<String>,
    crl: &Option<String>,
) -> ApiResult<()> {
    let named = |reference: &Option<String>| reference.clone().filter(|r| !r.is_empty());
    let Some(ca) = named(ca) else {
        return Ok(());
    };
    let ca_pem = secret_pem(engine, namespace, &ca, CA_KEY).await?;
    let crl_pem = match named(crl) {
        Some(crl) => Some(secret_pem(engine, namespace, &crl, CRL_KEY).await?),
        None => None,
    };
    check_ca_and_crl(&ca_pem, crl_pem.as_deref()).map_err(bad)
}

/// The PEM under `key` of the Secret `reference` names (a CA or CRL).
async fn secret_pem(
    engine: &Engine,
    namespace: &str,
    reference: &str,
    key: &str,
) -> ApiResult<String> {
    let secret = secret_of(engine, namespace, reference).await?;
    pem_of_secret(&secret, key)
        .map_err(|problem| bad(format!("Could not retrieve certificate: {problem}")))
}

pub(super) fn listener<'a>(
    engine: &'a Engine,
    listener: &'a mut Value,
    _admission: Admission<'a>,
) -> Admitted<'a> {
    Box::pin(async move {
        let namespace = namespace_of(listener);
        let mut spec: ListenerSpec = spec_of(listener);
        let lb = load_balancer_of(engine, &namespace, &spec.load_balancer_id).await?;
        spec.load_balancer_id = uid_of(&lb);
        if let Some(pool_id) = spec.default_pool_id.clone().filter(|p| !p.is_empty()) {
            let pool = require(engine, "Pool", &namespace, &pool_id).await?;
            let pool_spec: PoolSpec = spec_of(&pool);
            if pool_spec.load_balancer_id != spec.load_balancer_id {
                return Err(bad(format!(
                    "Validation failure: Pool {pool_id} is not on load balancer {}.",
                    spec.load_balancer_id
                )));
            }
            if !compatible(&spec.protocol, &pool_spec.protocol) {
                return Err(bad(format!(
                    "Validation failure: The pool protocol '{}' is invalid while the listener protocol is '{}'.",
                    pool_spec.protocol, spec.protocol
                )));
            }
            spec.default_pool_id = Some(uid_of(&pool));
        }
        if let Some(reference) = spec
            .default_tls_container_ref
            .as_deref()
            .filter(|r| !r.is_empty())
        {
            check_tls_reference(engine, &namespace, reference).await?;
        }
        for reference in &spec.sni_container_refs {
            check_tls_reference(engine, &namespace, reference).await?;
        }
        let (ca, crl) = (
            &spec.client_ca_tls_container_ref,
            &spec.client_crl_container_ref,
        );
        check_ca_references(engine, &namespace, ca, crl).await?;
        put_spec(listener, &spec);
        own(listener, "LoadBalancer", &lb);
        Ok(())
    })
}

pub(super) fn pool<'a>(
    engine: &'a Engine,
    pool: &'a mut Value,
    _admission: Admission<'a>,
) -> Admitted<'a> {
    Box::pin(async move {
        let namespace = namespace_of(pool);
        let mut spec: PoolSpec = spec_of(pool);
        let listener = match spec.listener_id.clone().filter(|l| !l.is_empty()) {
            Some(reference) => Some(require(engine, "Listener", &namespace, &reference).await?),
            None => None,
        };
        let lb_reference = match &listener {
            Some(listener) => {
                let owner_lb = spec_of::<ListenerSpec>(listener).load_balancer_id;
                if !spec.load_balancer_id.is_empty() && spec.load_balancer_id != owner_lb {
                    let named =
                        require(engine, "LoadBalancer", &namespace, &spec.load_balancer_id).await?;
                    if uid_of(&named) != owner_lb {
                        return Err(bad(
                            "Validation failure: The listener is not on the load balancer given.",
                        ));
                    }
                }
                owner_lb
            }
            None if spec.load_balancer_id.is_empty() => {
                return Err(bad(
                    "Validation failure: A pool must have a loadbalancer_id or listener_id.",
                ));
            }
            None => spec.load_balancer_id.clone(),
        };
        let lb = load_balancer_of(engine, &namespace, &lb_reference).await?;
        spec.load_balancer_id = uid_of(&lb);
        if let Some(listener) = &listener {
            let listener_spec: ListenerSpec = spec_of(listener);
            if !compatible(&listener_spec.protocol, &spec.protocol) {
                return Err(bad(format!(
                    "Validation failure: The pool protocol '{}' is invalid while the listener protocol is '{}'.",
                    spec.protocol, listener_spec.protocol
                )));
            }
            spec.listener_id = Some(uid_of(listener));
        }
        if let Some(reference) = spec.tls_container_ref.as_deref().filter(|r| !r.is_empty()) {
            check_tls_reference(engine, &namespace, reference).await?;
        }
        let (ca, crl) = (&spec.ca_tls_container_ref, &spec.crl_container_ref);
        check_ca_references(engine, &namespace, ca, crl).await?;
        put_spec(pool, &spec);
        own(pool, "LoadBalancer", &lb);
        Ok(())
    })
}

/// The subnets a load balancer's VIP reaches: those of its network, and those of the
/// networks a router joins to it.
async fn reachable_subnets(engine: &Engine, lb: &Value) -> ApiResult<Vec<Value>> {
    let namespace = namespace_of(lb);
    let vip_network = spec_of::<LoadBalancerSpec>(lb).vip_network_id;
    let ports = engine.kind(net::API_VERSION, "Port")?;
    let options = ListOptions {
        selectors: Selectors::parse(
            &ports,
            None,
            Some(&format!("spec.deviceOwner={}", owner::ROUTER_INTERFACE)),
        )?,
        ..ListOptions::default()
    };
    let interfaces: Vec<PortSpec> = engine
        .list(&ports, Some(&namespace), &options)
        .await?
        .items
        .iter()
        .map(spec_of)
        .collect();
    let routers: HashSet<&str> = interfaces
        .iter()
        .filter(|port| port.network_id == vip_network)
        .map(|port| port.device_id.as_str())
        .collect();
    let networks: BTreeSet<String> = interfaces
        .iter()
        .filter(|port| routers.contains(port.device_id.as_str()))
        .map(|port| port.network_id.clone())
        .chain([vip_network])
        .collect();
    let subnets = engine.kind(net::API_VERSION, "Subnet")?;
    Ok(engine
        .list(&subnets, None, &ListOptions::default())
        .await?
        .items
        .into_iter()
        .filter(|subnet| networks.contains(&spec_of::<SubnetSpec>(subnet).network_id))
        .collect())
}

fn subnet_holds(subnet: &Value, address: IpAddr) -> bool {
    ipam::parse_prefix(&spec_of::<SubnetSpec>(subnet).cidr).is_ok_and(|net| net.contains(&address))
}

pub(super) fn member<'a>(
    engine: &'a Engine,
    member: &'a mut Value,
    admission: Admission<'a>,
) -> Admitted<'a> {
    let old = admission.old;
    Box::pin(async move {
        let namespace = namespace_of(member);
        let mut spec: MemberSpec = spec_of(member);
        let pool = require(engine, "Pool", &namespace, &spec.pool_id).await?;
        not_deleting(&pool, "Pool")?;
        let lb = load_balancer_of(
            engine,
            &namespace,
            &spec_of::<PoolSpec>(&pool).load_balancer_id,
        )
        .await?;
        spec.pool_id = uid_of(&pool);
        spec.load_balancer_id = uid_of(&lb);
        if old.is_none() {
            let address: IpAddr = ipam::parse_address(&spec.address).map_err(bad)?;
            let reachable = reachable_subnets(engine, &lb).await?;
            let subnet = if spec.subnet_id.is_empty() {
                reachable.iter().find(|s| subnet_holds(s, address)).cloned()
            } else {
                let named = subnet_by_reference(engine, &namespace, &spec.subnet_id).await?;
                if !subnet_holds(&named, address) {
                    return Err(bad(format!(
                        "Validation failure: Member address {} is not in subnet {}.",
                        spec.address, spec.subnet_id
                    )));
                }
                reachable
                    .iter()
                    .any(|s| object::uid(s) == object::uid(&named))
                    .then_some(named)
            };
            let Some(subnet) = subnet else {
                return Err(bad(format!(
                    "Validation failure: Member address {} is not on any subnet reachable from load balancer {}'s VIP.",
                    spec.address,
                    uid_of(&lb)
                )));
            };
            spec.subnet_id = uid_of(&subnet);
        }
        put_spec(member, &spec);
        own(member, "Pool", &pool);
        Ok(())
    })
}

pub(super) fn health_monitor<'a>(
    engine: &'a Engine,
    monitor: &'a mut Value,
    _admission: Admission<'a>,
) -> Admitted<'a> {
    Box::pin(async move {
        let namespace = namespace_of(monitor);
        let mut spec: HealthMonitorSpec = spec_of(monitor);
        let pool = require(engine, "Pool", &namespace, &spec.pool_id).await?;
        not_deleting(&pool, "Pool")?;
        let pool_spec: PoolSpec = spec_of(&pool);
        load_balancer_of(engine, &namespace, &pool_spec.load_balancer_id).await?;
        if let Some(problem) = validate::health_monitor(&spec, Some(&pool_spec.protocol))
            .into_iter()
            .next()
        {
            return Err(bad(problem.message));
        }
        spec.pool_id = uid_of(&pool);
        spec.load_balancer_id = pool_spec.load_balancer_id;
        put_spec(monitor, &spec);
        own(monitor, "Pool", &pool);
        Ok(())
    })
}

pub(super) fn l7_policy<'a>(
    engine: &'a Engine,
    policy: &'a mut Value,
    admission: Admission<'a>,
) -> Admitted<'a> {
    let old = admission.old;
    Box::pin(async move {
        let namespace = namespace_of(policy);
        let mut spec: L7PolicySpec = spec_of(policy);
        let listener = require(engine, "Listener", &namespace, &spec.listener_id).await?;
        not_deleting(&listener, "Listener")?;
        let listener_spec: ListenerSpec = spec_of(&listener);
        load_balancer_of(engine, &namespace, &listener_spec.load_balancer_id).await?;
        if !matches!(listener_spec.protocol.as_str(), "HTTP" | "TERMINATED_HTTPS") {
            return Err(bad(format!(
                "Validation failure: L7 policies are only supported on HTTP and TERMINATED_HTTPS listeners, not {}.",
                listener_spec.protocol
            )));
        }
        spec.listener_id = uid_of(&listener);
        spec.load_balancer_id = listener_spec.load_balancer_id.clone();
        if let Some(pool_id) = spec.redirect_pool_id.clone() {
            let pool = require(engine, "Pool", &namespace, &pool_id).await?;
            let pool_spec: PoolSpec = spec_of(&pool);
            if pool_spec.load_balancer_id != spec.load_balancer_id {
                return Err(bad(format!(
                    "Validation failure: Pool {pool_id} is not on the listener's load balancer."
                )));
            }
            if !compatible(&listener_spec.protocol, &pool_spec.protocol) {
                return Err(bad(format!(
                    "Validation failure: The pool protocol '{}' is invalid while the listener protocol is '{}'.",
                    pool_spec.protocol, listener_spec.protocol
                )));
            }
            spec.redirect_pool_id = Some(uid_of(&pool));
        }
        let old_position = old.map(|o| spec_of::<L7PolicySpec>(o).position);
        if spec.position.is_none() {
            spec.position = match old_position.flatten() {
                Some(position) => Some(position),
                None => {
                    // Appended after every other policy of the listener.
                    let policies = children(
                        engine,
                        "L7Policy",
                        &namespace,
                        "spec.listenerId",
                        &spec.listener_id,
                    )
                    .await?;
                    let last = policies
                        .iter()
                        .filter(|p| object::uid(p) != object::uid(policy))
                        .filter_map(|p| spec_of::<L7PolicySpec>(p).position)
                        .max()
                        .unwrap_or(0);
                    Some(last.saturating_add(1))
                }
            };
        }
        let moved = old_position != Some(spec.position);
        put_spec(policy, &spec);
        if moved {
            object::ensure_object(
                object::ensure_object(
                    object::ensure_object(policy)
                        .entry("metadata")
                        .or_insert_with(|| json!({})),
                )
                .entry("annotations")
                .or_insert_with(|| json!({})),
            )
            .insert(
                annotation::POSITIONED_AT.into(),
                json!(jiff::Timestamp::now().to_string()),
            );
        }
        own(policy, "Listener", &listener);
        Ok(())
    })
}

pub(super) fn l7_rule<'a>(
    engine: &'a Engine,
    rule: &'a mut Value,
    _admission: Admission<'a>,
) -> Admitted<'a> {
    Box::pin(async move {
        let namespace = namespace_of(rule);
        let mut spec: L7RuleSpec = spec_of(rule);
        let policy = require(engine, "L7Policy", &namespace, &spec.l7_policy_id).await?;
        not_deleting(&policy, "L7Policy")?;
        let policy_spec: L7PolicySpec = spec_of(&policy);
        load_balancer_of(engine, &namespace, &policy_spec.load_balancer_id).await?;
        spec.l7_policy_id = uid_of(&policy);
        spec.listener_id = policy_spec.listener_id;
        spec.load_balancer_id = policy_spec.load_balancer_id;
        put_spec(rule, &spec);
        own(rule, "L7Policy", &policy);
        Ok(())
    })
}

/// The objects of `kind` in `namespace` whose `field` (a selectable field) is `value`.
async fn children(
    engine: &Engine,
    kind: &str,
    namespace: &str,
    field: &str,
    value: &str,
) -> ApiResult<Vec<Value>> {
    let kind = engine.kind(API_VERSION, kind)?;
    let options = ListOptions {
        selectors: Selectors::parse(&kind, None, Some(&format!("{field}={value}")))?,
        ..ListOptions::default()
    };
    Ok(engine.list(&kind, Some(namespace), &options).await?.items)
}

/// A load balancer and every object under it.
pub async fn tree_of(engine: &Engine, lb: &Value) -> ApiResult<Tree> {
    let namespace = namespace_of(lb);
    let uid = uid_of(lb);
    let mut tree = Tree {
        load_balancer: lb.clone(),
        ..Tree::default()
    };
    for kind in &TREE_KINDS[1..] {
        let found = children(engine, kind, &namespace, "spec.loadBalancerId", &uid).await?;
        if let Some(list) = tree.of_kind_mut(kind) {
            *list = found;
        }
    }
    Ok(tree)
}
