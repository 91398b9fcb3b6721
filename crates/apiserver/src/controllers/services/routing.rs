//! How clients reach a project's Service VIPs, the way kuryr-kubernetes deployments wire
//! Octavia: a `services` router with an interface on the service subnet (its gateway) and
//! one on each IPv4 tenant subnet of the project, and on each of those subnets a host
//! route sending the service CIDR to that interface — pods take it from their subnet,
//! VMs through DHCP. The load balancers' replies and health checks go back the same way.
//! A LoadBalancer Service's floating IP comes through the same router, which then gets a
//! gateway on the external network; the floating IP carries the Service's source ranges
//! (`sourceRanges`), which that router enforces.

use ronghe_api_types::loadbalancing as lb;
use ronghe_api_types::network::{
    self as net, FloatingIpSpec, HostRoute, NetworkSpec, PortSpec, RouterSpec, SubnetSpec, ipam,
    owner, spec_of,
};
use serde_json::{Value, json};

use crate::engine::{Engine, ListOptions, PatchKind, Selectors, Target, WriteOptions};
use crate::error::ApiResult;
use crate::kinds::core::service::annotations::{self, Asked};
use crate::kinds::core::service::{self, ROLE_LABEL, SERVICE_CIDR, SERVICE_LABEL, SERVICES_ROLE};
use crate::object;

fn uid(object: &Value) -> String {
    object::uid(object).unwrap_or_default().to_owned()
}

async fn list(
    engine: &Engine,
    kind: &str,
    namespace: Option<&str>,
    labels: Option<&str>,
) -> ApiResult<Vec<Value>> {
    let spec = engine.kind(net::API_VERSION, kind)?;
    let options = ListOptions {
        selectors: Selectors::parse(&spec, labels, None)?,
        ..ListOptions::default()
    };
    Ok(engine.list(&spec, namespace, &options).await?.items)
}

/// The project's `services` router, made on first use.
async fn services_router(engine: &Engine, namespace: &str) -> ApiResult<Value> {
    let role = format!("{ROLE_LABEL}={SERVICES_ROLE}");
    if let Some(router) = list(engine, "Router", Some(namespace), Some(&role))
        .await?
        .pop()
    {
        return Ok(router);
    }
    let kind = engine.kind(net::API_VERSION, "Router")?;
    let body = json!({
        "apiVersion": net::API_VERSION,
        "kind": "Router",
        "metadata": {"name": "services", "namespace": namespace, "labels": {ROLE_LABEL: SERVICES_ROLE}},
        "spec": {"name": "services", "description": "Routes the project's Kubernetes Service addresses to its networks"},
    });
    match engine
        .create(&kind, Some(namespace), body, &WriteOptions::default())
        .await
    {
        Ok(written) => Ok(written.object),
        Err(error) if error.code() == 409 => list(engine, "Router", Some(namespace), Some(&role))
            .await?
            .pop()
            .ok_or(error),
        Err(error) => Err(error),
    }
}

/// Routes the service subnet of `namespace` to each of its IPv4 tenant subnets.
pub async fn route_services(engine: &Engine, namespace: &str) -> ApiResult<()> {
    let service_subnet = service::service_subnet(engine, namespace).await?;
    let service_spec: SubnetSpec = spec_of(&service_subnet);
    let router = services_router(engine, namespace).await?;
    let router_uid = uid(&router);
    let interfaces: Vec<PortSpec> = list(engine, "Port", Some(namespace), None)
        .await?
        .iter()
        .map(spec_of::<PortSpec>)
        .filter(|p| p.device_id == router_uid && p.device_owner == owner::ROUTER_INTERFACE)
        .collect();
    let address_on = |subnet: &str| {
        interfaces
            .iter()
            .flat_map(|p| p.fixed_ips.iter())
            .find(|f| f.subnet_id == subnet)
            .map(|f| f.ip_address.clone())
    };
    let service_cidr = ipam::parse_cidr(SERVICE_CIDR).ok();
    let networks = list(engine, "Network", Some(namespace), None).await?;
    let external = |network_id: &str| {
        networks
            .iter()
            .find(|n| object::uid(n) == Some(network_id))
            .is_none_or(|n| spec_of::<NetworkSpec>(n).external)
    };
    for subnet in list(engine, "Subnet", Some(namespace), None).await? {
        let subnet_uid = uid(&subnet);
        let spec: SubnetSpec = spec_of(&subnet);
        let Ok(cidr) = ipam::parse_cidr(&spec.cidr) else {
            continue;
        };
        if subnet_uid == uid(&service_subnet) {
            if address_on(&subnet_uid).is_none() {
                let gateway = service_spec.gateway_ip.clone().unwrap_or_default();
                interface(
                    engine,
                    namespace,
                    &router,
                    &spec.network_id,
                    &subnet_uid,
                    Some(&gateway),
                )
                .await?;
            }
            continue;
        }
        let overlaps = service_cidr.is_some_and(|s| ipam::overlaps(&s, &cidr));
        if !cidr.addr().is_ipv4() || overlaps || external(&spec.network_id) {
            continue;
        }
        let nexthop = match address_on(&subnet_uid) {
            Some(address) => address,
            None => {
                let port = interface(
                    engine,
                    namespace,
                    &router,
                    &spec.network_id,
                    &subnet_uid,
                    None,
                )
                .await?;
                let fixed = spec_of::<PortSpec>(&port).fixed_ips;
                fixed
                    .first()
                    .map(|f| f.ip_address.clone())
                    .unwrap_or_default()
            }
        };
        let route = HostRoute {
            destination: SERVICE_CIDR.into(),
            nexthop,
        };
        if spec.host_routes.contains(&route) {
            continue;
        }
        let mut routes: Vec<HostRoute> = spec
            .host_routes
            .into_iter()
            .filter(|r| r.destination != SERVICE_CIDR)
            .collect();
        routes.push(route);
        let subnets = engine.kind(net::API_VERSION, "Subnet")?;
        engine
            .patch(
                &subnets,
                Some(namespace),
                object::name(&subnet).unwrap_or_default(),
                PatchKind::Merge,
                json!({"spec": {"hostRoutes": routes}}),
                Target::Main,
                &WriteOptions::default(),
            )
            .await?;
    }
    Ok(())
}

/// A new interface of `router` on a subnet, at `address` or the next free one.
async fn interface(
    engine: &Engine,
    namespace: &str,
    router: &Value,
    network_id: &str,
    subnet_id: &str,
    address: Option<&str>,
) -> ApiResult<Value> {
    let mut fixed = json!({"subnetId": subnet_id});
    if let Some(address) = address.filter(|a| !a.is_empty()) {
        fixed["ipAddress"] = json!(address);
    }
    router_port(
        engine,
        namespace,
        router,
        owner::ROUTER_INTERFACE,
        json!({"networkId": network_id, "fixedIps": [fixed]}),
    )
    .await
}

/// A port of `router` (an interface or its gateway), owned by it: `spec` with the device
/// owner and id filled in.
async fn router_port(
    engine: &Engine,
    namespace: &str,
    router: &Value,
    device_owner: &str,
    mut spec: Value,
) -> ApiResult<Value> {
    spec["deviceOwner"] = json!(device_owner);
    spec["deviceId"] = json!(uid(router));
    let ports = engine.kind(net::API_VERSION, "Port")?;
    let body = json!({
        "apiVersion": net::API_VERSION,
        "kind": "Port",
        "metadata": {
            "generateName": "services-router-",
            "namespace": namespace,
            "ownerReferences": [object::owner_reference(net::API_VERSION, "Router", router)],
        },
        "spec": spec,
    });
    Ok(engine
        .create(&ports, Some(namespace), body, &WriteOptions::default())
        .await?
        .object)
}

/// Gives the services router a gateway on `external` (its gateway port, then the
/// router's `externalGatewayInfo`, as `router set --external-gateway` does).
async fn set_gateway(
    engine: &Engine,
    namespace: &str,
    router: &Value,
    external: &Value,
) -> ApiResult<()> {
    let port = router_port(
        engine,
        namespace,
        router,
        owner::ROUTER_GATEWAY,
        json!({"networkId": uid(external)}),
    )
    .await?;
    let fixed = spec_of::<PortSpec>(&port).fixed_ips;
    let routers = engine.kind(net::API_VERSION, "Router")?;
    engine
        .patch(
            &routers,
            Some(namespace),
            object::name(router).unwrap_or_default(),
            PatchKind::Merge,
            json!({"spec": {"externalGatewayInfo": {
                "networkId": uid(external),
                "enableSnat": true,
                "externalFixedIps": fixed,
            }}}),
            Target::Main,
            &WriteOptions::default(),
        )
        .await?;
    Ok(())
}

/// The external network a LoadBalancer Service's floating IP comes from.
async fn floating_network(engine: &Engine, svc: &Value) -> ApiResult<Option<Value>> {
    let wanted = svc["metadata"]["annotations"][annotations::FLOATING_NETWORK_ID].as_str();
    Ok(list(engine, "Network", None, None)
        .await?
        .into_iter()
        .filter(|n| spec_of::<NetworkSpec>(n).external)
        .find(|n| {
            wanted.is_none_or(|w| object::uid(n) == Some(w) || spec_of::<NetworkSpec>(n).name == w)
        }))
}

/// The source ranges a LoadBalancer Service's floating IP takes: its valid ones (a Service
/// stored by an older version may hold others, which are left out with a warning); when it
/// has ranges and none is valid, one no client comes from, so the address is closed
/// rather than open to all.
fn floating_sources(svc: &Value) -> Vec<String> {
    const NO_CLIENT: &str = "0.0.0.0/32";
    let asked = service::source_ranges(svc);
    let valid: Vec<String> = asked
        .iter()
        .filter_map(|range| ipam::parse_source_range(range).ok())
        .map(|net| net.to_string())
        .collect();
    if valid.len() < asked.len() {
        tracing::warn!(
            namespace = object::namespace(svc).unwrap_or_default(),
            name = object::name(svc).unwrap_or_default(),
            ?asked,
            "source ranges that are not CIDRs are left out"
        );
    }
    if valid.is_empty() && !asked.is_empty() {
        return vec![NO_CLIENT.into()];
    }
    valid
}

/// Gives a LoadBalancer Service a floating IP for its VIP and shows it in
/// `status.loadBalancer.ingress`; takes it away from a Service of another type. An
/// internal one (the cloud provider's `openstack-internal-load-balancer` annotation) gets
/// none, and shows its VIP.
pub async fn external_address(engine: &Engine, svc: &Value) -> ApiResult<()> {
    let namespace = object::namespace(svc).unwrap_or_default();
    let name = object::name(svc).unwrap_or_default();
    let fips_kind = engine.kind(net::API_VERSION, "FloatingIP")?;
    let mut fips = list(
        engine,
        "FloatingIP",
        Some(namespace),
        Some(&format!("{SERVICE_LABEL}={name}")),
    )
    .await?;
    let mut ingress = Vec::new();
    let load_balancer = svc["spec"]["type"].as_str() == Some("LoadBalancer");
    let internal = load_balancer && Asked::of(svc).internal;
    if load_balancer && !internal {
        let sources = floating_sources(svc);
        if fips.is_empty()
            && let Some(external) = floating_network(engine, svc).await?
        {
            let router = services_router(engine, namespace).await?;
            if spec_of::<RouterSpec>(&router)
                .external_gateway_info
                .is_none()
            {
                set_gateway(engine, namespace, &router, &external).await?;
            }
            let lbs = engine.kind(lb::API_VERSION, "LoadBalancer")?;
            let balancer = engine
                .get(&lbs, Some(namespace), &service::load_balancer_name(name))
                .await?;
            let vip_port = lb::spec_of::<lb::LoadBalancerSpec>(&balancer).vip_port_id;
            let body = json!({
                "apiVersion": net::API_VERSION,
                "kind": "FloatingIP",
                "metadata": {
                    "generateName": "svc-",
                    "namespace": namespace,
                    "labels": {SERVICE_LABEL: name},
                    "ownerReferences": super::endpoints::owned_by(svc),
                },
                "spec": {
                    "floatingNetworkId": uid(&external),
                    "portId": vip_port,
                    "description": format!("Kubernetes Service {namespace}/{name}"),
                    "sourceRanges": sources,
                },
            });
            let made = engine
                .create(&fips_kind, Some(namespace), body, &WriteOptions::default())
                .await?;
            fips.push(made.object);
        }
        // `loadBalancerSourceRanges` are the floating IP's: its router turns others away.
        for fip in &mut fips {
            if spec_of::<FloatingIpSpec>(fip).source_ranges != sources {
                *fip = engine
                    .patch(
                        &fips_kind,
                        Some(namespace),
                        object::name(fip).unwrap_or_default(),
                        PatchKind::Merge,
                        json!({"spec": {"sourceRanges": sources}}),
                        Target::Main,
                        &WriteOptions::default(),
                    )
                    .await?
                    .object;
            }
        }
        ingress = fips
            .iter()
            .filter_map(|f| f["spec"]["floatingIpAddress"].as_str())
            .filter(|ip| !ip.is_empty())
            .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
            .collect();
    } else {
        for fip in &fips {
            crate::controllers::delete_if_present(
                engine,
                &fips_kind,
                Some(namespace),
                object::name(fip).unwrap_or_default(),
            )
            .await?;
        }
        if let Some(vip) = svc["spec"]["clusterIP"].as_str().filter(|_| internal) {
            ingress.push(json!({"ip": vip, "ipMode": "VIP"}));
        }
    }
    let current = svc["status"]["loadBalancer"]["ingress"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if current != ingress {
        let services = engine.kind("v1", "Service")?;
        let status = if ingress.is_empty() {
            json!({"loadBalancer": {"ingress": null}})
        } else {
            json!({"loadBalancer": {"ingress": ingress}})
        };
        engine
            .patch(
                &services,
                Some(namespace),
                name,
                PatchKind::Merge,
                json!({"status": status}),
                Target::Status,
                &WriteOptions::default(),
            )
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floating_ip_takes_the_valid_source_ranges_and_closes_when_none_is() {
        let with = |ranges: Value| {
            floating_sources(&json!({
                "metadata": {"name": "web", "namespace": "admin"},
                "spec": {"type": "LoadBalancer", "loadBalancerSourceRanges": ranges},
            }))
        };
        assert!(with(json!([])).is_empty(), "no ranges: open to all");
        assert_eq!(
            with(json!([" 10.1.2.3/8", "everywhere", "2001:db8::/64"])),
            ["10.0.0.0/8", "2001:db8::/64"]
        );
        assert_eq!(with(json!(["everywhere"])), ["0.0.0.0/32"]);
    }
}
