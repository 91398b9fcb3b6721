//! What a host's network should be, computed from the API's objects with no I/O: the
//! networks its ports (and the routers it hosts) are on, each with its segment, the other
//! hosts to replicate to, the MACs they hold, DHCP for local VMs, and each local port with
//! its addresses, anti-spoofing and security group rules (remote groups expanded to the
//! addresses of their members, wherever those run); and the routers this host runs, with
//! their interfaces, gateway, floating IPs and port forwardings. The result is a
//! `ronghe_hostnet::HostPlan` for the host-network driver to apply.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use ronghe_api_types::network::{
    self as net, FloatingIpSpec, NetworkSpec, PortForwardingSpec, PortSpec, QosPolicySpec,
    RouterSpec, RouterStatus, SecurityGroupRuleSpec, SubnetSpec, ipam, owner, spec_of, status_of,
};
use ronghe_hostnet::{
    Attachment, Bandwidth, DhcpHost, DhcpSubnet, Ethertype, FloatingIp, ForwardProtocol, HostPlan,
    MacAddr, NetworkPlan, PortForwarding, PortPlan, PortSecurity, Protocol, Qos, RouterGateway,
    RouterInterface, RouterPlan, Rule, Segment, ServicePlan,
};
use serde_json::Value;

use super::{dns, uid};

/// The objects the plan is computed from, as the API serves them.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub networks: Vec<Value>,
    pub subnets: Vec<Value>,
    pub ports: Vec<Value>,
    pub security_group_rules: Vec<Value>,
    pub routers: Vec<Value>,
    pub floating_ips: Vec<Value>,
    pub port_forwardings: Vec<Value>,
    pub qos_policies: Vec<Value>,
    pub nodes: Vec<Value>,
}

/// What only this host knows.
#[derive(Clone, Debug, Default)]
pub struct Local {
    pub host: String,
    pub tunnel_ip: Option<Ipv4Addr>,
    /// Flat physical networks this host has: name → interface.
    pub physical: BTreeMap<String, String>,
    /// The ports of workloads running here, by port uid, with how each is attached (a
    /// pod's netns, a VM's TAP). Only these of the host's bound ports are wired.
    pub attachments: HashMap<String, Attachment>,
    /// VM hostnames for DHCP, by port uid.
    pub hostnames: HashMap<String, String>,
}

/// DHCP leases last a day, as Neutron's do.
const LEASE_SECONDS: u32 = 86_400;

/// The metadata address, routed by DHCP to each network's service port.
pub const METADATA_ADDRESS: &str = "169.254.169.254";

fn mac(text: &str) -> Option<MacAddr> {
    text.parse().ok()
}

/// The tunnel endpoint of every node, by node name.
fn tunnel_ips(nodes: &[Value]) -> HashMap<String, Ipv4Addr> {
    nodes
        .iter()
        .filter_map(|node| {
            let name = node.pointer("/metadata/name")?.as_str()?;
            let annotated = node
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(net::annotation::TUNNEL_IP))
                .and_then(Value::as_str)
                .and_then(|ip| ip.parse().ok());
            let internal = || {
                node.pointer("/status/addresses")?
                    .as_array()?
                    .iter()
                    .find(|a| a["type"] == "InternalIP")?
                    .get("address")?
                    .as_str()?
                    .parse()
                    .ok()
            };
            Some((name.to_owned(), annotated.or_else(internal)?))
        })
        .collect()
}

/// The plan of one host.
pub fn host_plan(snapshot: &Snapshot, local: &Local) -> HostPlan {
    let networks: HashMap<&str, (&Value, NetworkSpec)> = snapshot
        .networks
        .iter()
        .map(|n| (uid(n), (n, spec_of::<NetworkSpec>(n))))
        .collect();
    let subnets: HashMap<&str, SubnetSpec> = snapshot
        .subnets
        .iter()
        .map(|s| (uid(s), spec_of::<SubnetSpec>(s)))
        .collect();
    let ports: Vec<(&Value, PortSpec)> = snapshot
        .ports
        .iter()
        .map(|p| (p, spec_of::<PortSpec>(p)))
        .collect();
    let tunnels = tunnel_ips(&snapshot.nodes);
    let hosted_routers: Vec<(&Value, RouterSpec)> = snapshot
        .routers
        .iter()
        .filter(|r| status_of::<RouterStatus>(r).host == local.host)
        .map(|r| (r, spec_of::<RouterSpec>(r)))
        .collect();
    let hosted_ids: BTreeSet<&str> = hosted_routers.iter().map(|(r, _)| uid(r)).collect();
    let router_port = |spec: &PortSpec| {
        spec.device_owner.starts_with("network:router")
            && hosted_ids.contains(spec.device_id.as_str())
    };

    // The networks this host needs: those of its wired ports and of its routers' ports.
    let mut needed: BTreeSet<String> = BTreeSet::new();
    for (port, spec) in &ports {
        if local.attachments.contains_key(uid(port)) || router_port(spec) {
            needed.insert(spec.network_id.clone());
        }
    }

    let mut plan = HostPlan {
        tunnel_ip: local.tunnel_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
        networks: Vec::new(),
        routers: Vec::new(),
    };
    for network_id in &needed {
        let Some((network_object, network)) = networks.get(network_id.as_str()) else {
            continue;
        };
        let segment = if network.is_flat() {
            let physical = network.physical_network.clone().unwrap_or_default();
            match local.physical.get(&physical) {
                Some(interface) => Segment::Flat {
                    interface: interface.clone(),
                },
                None => {
                    tracing::warn!(network = %network_id, %physical, "this host has no interface for the flat network");
                    continue;
                }
            }
        } else {
            match network.segmentation_id {
                Some(vni) => Segment::Vxlan { vni },
                None => continue,
            }
        };
        let on_network: Vec<&(&Value, PortSpec)> = ports
            .iter()
            .filter(|(_, p)| &p.network_id == network_id)
            .collect();
        // Other hosts' ports: where to replicate broadcasts, and where each MAC lives.
        let mut remote_vteps = BTreeSet::new();
        let mut remote_macs = Vec::new();
        if !network.is_flat() {
            for (_, spec) in &on_network {
                if spec.binding_host_id.is_empty() || spec.binding_host_id == local.host {
                    continue;
                }
                let Some(vtep) = tunnels.get(&spec.binding_host_id) else {
                    continue;
                };
                if Some(*vtep) == local.tunnel_ip {
                    continue;
                }
                remote_vteps.insert(*vtep);
                if let Some(mac) = mac(&spec.mac_address) {
                    remote_macs.push((mac, *vtep));
                }
            }
        }
        let network_subnets: Vec<(&str, &SubnetSpec)> = subnets
            .iter()
            .filter(|(_, s)| &s.network_id == network_id)
            .map(|(id, s)| (*id, s))
            .collect();
        let local_ports: Vec<PortPlan> = on_network
            .iter()
            .filter_map(|(port, spec)| {
                let attachment = local.attachments.get(uid(port))?;
                Some(port_plan(
                    snapshot,
                    &ports,
                    &subnets,
                    port,
                    spec,
                    attachment.clone(),
                    network,
                ))
            })
            .collect();
        let project = super::namespace(network_object);
        let service = service_plan(&on_network, &network_subnets, local, network, project);
        plan.networks.push(NetworkPlan {
            id: network_id.clone(),
            segment,
            mtu: network
                .mtu
                .unwrap_or(net::UNDERLAY_MTU - net::VXLAN_OVERHEAD),
            remote_vteps: remote_vteps.into_iter().collect(),
            remote_macs,
            service,
            ports: local_ports,
        });
    }
    let planned: BTreeSet<String> = plan.networks.iter().map(|n| n.id.clone()).collect();
    for (router, spec) in &hosted_routers {
        plan.routers.push(router_plan(
            snapshot, &ports, &subnets, router, spec, &planned,
        ));
    }
    plan
}

/// An address with its subnet's prefix length.
fn with_prefix(address: &str, subnet: Option<&SubnetSpec>) -> Option<IpNet> {
    let address: IpAddr = address.parse().ok()?;
    let prefix = subnet
        .and_then(|s| ipam::parse_cidr(&s.cidr).ok())
        .map_or(if address.is_ipv4() { 32 } else { 128 }, |net| {
            net.prefix_len()
        });
    IpNet::new(address, prefix).ok()
}

fn service_plan(
    on_network: &[&(&Value, PortSpec)],
    subnets: &[(&str, &SubnetSpec)],
    local: &Local,
    network: &NetworkSpec,
    project: &str,
) -> Option<ServicePlan> {
    // The network's DHCP port (one per network, made by the server) gives the service
    // its MAC and addresses; every host answers with the same ones, locally.
    let (_, dhcp_port) = on_network
        .iter()
        .find(|(_, p)| p.device_owner == owner::DHCP)?;
    let service_mac = mac(&dhcp_port.mac_address)?;
    let mut addresses = Vec::new();
    let mut dhcp = Vec::new();
    for fixed in &dhcp_port.fixed_ips {
        let Some((_, subnet)) = subnets.iter().find(|(id, _)| *id == fixed.subnet_id) else {
            continue;
        };
        let Some(address) = with_prefix(&fixed.ip_address, Some(subnet)) else {
            continue;
        };
        addresses.push(address);
        if !subnet.enable_dhcp || address.addr().is_ipv6() {
            continue;
        }
        let Ok(cidr) = ipam::parse_cidr(&subnet.cidr) else {
            continue;
        };
        let mut host_routes: Vec<(IpNet, IpAddr)> = subnet
            .host_routes
            .iter()
            .filter_map(|r| {
                Some((
                    ipam::parse_prefix(&r.destination).ok()?,
                    r.nexthop.parse().ok()?,
                ))
            })
            .collect();
        if let Ok(metadata) = ipam::parse_prefix(METADATA_ADDRESS) {
            host_routes.push((metadata, address.addr()));
        }
        // As Neutron's dnsmasq: the subnet's own servers when it names some, else the
        // service port itself, where the agent serves cluster DNS (and then the search
        // list that makes short Service names work).
        let mut dns_servers: Vec<IpAddr> = subnet
            .dns_nameservers
            .iter()
            .filter_map(|d| d.parse().ok())
            .collect();
        let domain = dns::network_domain(network);
        let search = if dns_servers.is_empty() {
            dns_servers.push(address.addr());
            dns::vm_search_list(&domain, project)
        } else {
            Vec::new()
        };
        dhcp.push(DhcpSubnet {
            cidr,
            gateway: subnet.gateway_ip.as_deref().and_then(|g| g.parse().ok()),
            dns_servers,
            domain: Some(domain),
            search,
            host_routes,
            lease_seconds: LEASE_SECONDS,
            mtu: network.mtu,
        });
    }
    if dhcp.is_empty() && addresses.is_empty() {
        return None;
    }
    let hosts = on_network
        .iter()
        .filter(|(port, p)| {
            p.device_owner == owner::VM && local.attachments.contains_key(uid(port))
        })
        .filter_map(|(port, p)| {
            let ip = p
                .fixed_ips
                .iter()
                .find_map(|f| f.ip_address.parse::<IpAddr>().ok().filter(IpAddr::is_ipv4))?;
            Some(DhcpHost {
                mac: mac(&p.mac_address)?,
                ip,
                hostname: local.hostnames.get(uid(port)).cloned(),
            })
        })
        .collect();
    Some(ServicePlan {
        mac: service_mac,
        addresses,
        dhcp,
        hosts,
    })
}

fn port_plan(
    snapshot: &Snapshot,
    ports: &[(&Value, PortSpec)],
    subnets: &HashMap<&str, SubnetSpec>,
    port: &Value,
    spec: &PortSpec,
    attachment: Attachment,
    network: &NetworkSpec,
) -> PortPlan {
    let addresses: Vec<IpNet> = spec
        .fixed_ips
        .iter()
        .filter_map(|f| with_prefix(&f.ip_address, subnets.get(f.subnet_id.as_str())))
        .collect();
    let first_v4 = spec
        .fixed_ips
        .iter()
        .find(|f| !f.ip_address.contains(':'))
        .and_then(|f| subnets.get(f.subnet_id.as_str()));
    let gateway = first_v4
        .filter(|s| !s.no_gateway)
        .and_then(|s| s.gateway_ip.as_deref())
        .and_then(|g| g.parse().ok());
    let routes = first_v4
        .map(|s| {
            s.host_routes
                .iter()
                .filter_map(|r| {
                    Some((
                        ipam::parse_prefix(&r.destination).ok()?,
                        r.nexthop.parse().ok()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let security = spec
        .port_security_enabled
        .unwrap_or(network.port_security_enabled)
        .then(|| port_security(snapshot, ports, spec));
    let qos_policy = spec
        .qos_policy_id
        .as_ref()
        .or(network.qos_policy_id.as_ref());
    let qos = qos_policy.and_then(|policy| qos_of(snapshot, policy));
    PortPlan {
        id: uid(port).to_owned(),
        mac: mac(&spec.mac_address).unwrap_or(MacAddr([0xfa, 0x16, 0x3e, 0, 0, 1])),
        addresses,
        gateway,
        routes,
        attachment,
        security,
        qos,
    }
}

fn port_security(
    snapshot: &Snapshot,
    ports: &[(&Value, PortSpec)],
    spec: &PortSpec,
) -> PortSecurity {
    let own_mac = mac(&spec.mac_address);
    let mut allowed = Vec::new();
    if let Some(own_mac) = own_mac {
        for fixed in &spec.fixed_ips {
            if let Ok(address) = fixed.ip_address.parse::<IpAddr>() {
                allowed.push((own_mac, IpNet::from(address)));
            }
        }
        for pair in &spec.allowed_address_pairs {
            let pair_mac = pair.mac_address.as_deref().and_then(mac).unwrap_or(own_mac);
            if let Ok(prefix) = ipam::parse_prefix(&pair.ip_address) {
                allowed.push((pair_mac, prefix));
            }
        }
    }
    let groups = spec.security_groups.clone().unwrap_or_default();
    let mut ingress = Vec::new();
    let mut egress = Vec::new();
    for rule in &snapshot.security_group_rules {
        let rule: SecurityGroupRuleSpec = spec_of(rule);
        if !groups.contains(&rule.security_group_id) {
            continue;
        }
        let Some(planned) = rule_plan(&rule, ports) else {
            continue;
        };
        if rule.direction == "ingress" {
            ingress.push(planned);
        } else {
            egress.push(planned);
        }
    }
    PortSecurity {
        allowed,
        ingress,
        egress,
    }
}

/// One rule for the data plane; a remote group becomes its members' addresses (a rule
/// whose group has no members yet matches nothing and is left out).
fn rule_plan(rule: &SecurityGroupRuleSpec, ports: &[(&Value, PortSpec)]) -> Option<Rule> {
    let ethertype = if rule.ethertype == "IPv6" {
        Ethertype::V6
    } else {
        Ethertype::V4
    };
    let protocol = match rule.protocol.as_deref() {
        None | Some("" | "any") => None,
        Some(name) => Some(match net::validate::protocol_number(name)? {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            1 => Protocol::Icmp,
            58 => Protocol::Icmpv6,
            number => Protocol::Number(number),
        }),
    };
    let ports_range = match (rule.port_range_min, rule.port_range_max) {
        (Some(min), max) => Some((
            u16::try_from(min).ok()?,
            u16::try_from(max.unwrap_or(
                if matches!(protocol, Some(Protocol::Icmp | Protocol::Icmpv6)) {
                    256
                } else {
                    min
                },
            ))
            .ok()?,
        )),
        _ => None,
    };
    let remote = match (&rule.remote_ip_prefix, &rule.remote_group_id) {
        (Some(prefix), _) => {
            let prefix = ipam::parse_prefix(prefix).ok()?;
            if prefix.prefix_len() == 0 {
                Vec::new()
            } else {
                vec![prefix]
            }
        }
        (None, Some(group)) => {
            let members: Vec<IpNet> = ports
                .iter()
                .filter(|(_, p)| {
                    p.security_groups
                        .as_ref()
                        .is_some_and(|g| g.contains(group))
                })
                .flat_map(|(_, p)| p.fixed_ips.iter())
                .filter_map(|f| f.ip_address.parse::<IpAddr>().ok())
                .filter(|a| a.is_ipv6() == (ethertype == Ethertype::V6))
                .map(IpNet::from)
                .collect();
            if members.is_empty() {
                return None;
            }
            members
        }
        (None, None) => Vec::new(),
    };
    Some(Rule {
        ethertype,
        protocol,
        ports: ports_range,
        remote,
    })
}

fn qos_of(snapshot: &Snapshot, policy_id: &str) -> Option<Qos> {
    let policy = snapshot.qos_policies.iter().find(|p| uid(p) == policy_id)?;
    let spec: QosPolicySpec = spec_of(policy);
    let mut qos = Qos::default();
    for rule in spec.rules.iter().filter(|r| r.kind == "bandwidth_limit") {
        let bandwidth = Bandwidth {
            max_kbps: u32::try_from(rule.max_kbps.unwrap_or_default()).unwrap_or(u32::MAX),
            burst_kbit: u32::try_from(rule.max_burst_kbps.unwrap_or_default()).unwrap_or(u32::MAX),
        };
        if rule.direction == "ingress" {
            qos.ingress = Some(bandwidth);
        } else {
            qos.egress = Some(bandwidth);
        }
    }
    (qos.ingress.is_some() || qos.egress.is_some()).then_some(qos)
}

/// The sources a floating IP lets in, if it limits them: its IPv4 ranges (an IPv6 range
/// lets in no one through an IPv4 address, so ranges that are all IPv6 let in no one).
fn sources_of(spec: &FloatingIpSpec) -> Option<Vec<Ipv4Net>> {
    (!spec.source_ranges.is_empty()).then(|| {
        spec.source_ranges
            .iter()
            .filter_map(|range| match ipam::parse_source_range(range) {
                Ok(IpNet::V4(net)) => Some(net),
                _ => None,
            })
            .collect()
    })
}

fn router_plan(
    snapshot: &Snapshot,
    ports: &[(&Value, PortSpec)],
    subnets: &HashMap<&str, SubnetSpec>,
    router: &Value,
    spec: &RouterSpec,
    planned: &BTreeSet<String>,
) -> RouterPlan {
    let router_id = uid(router);
    let mut interfaces = Vec::new();
    let mut gateway = None;
    let mut inside_subnets = BTreeSet::new();
    for (_, port) in ports.iter().filter(|(_, p)| p.device_id == router_id) {
        if !planned.contains(&port.network_id) {
            continue;
        }
        let Some(port_mac) = mac(&port.mac_address) else {
            continue;
        };
        let Some(fixed) = port.fixed_ips.iter().find(|f| !f.ip_address.contains(':')) else {
            continue;
        };
        let subnet = subnets.get(fixed.subnet_id.as_str());
        let Some(address) = with_prefix(&fixed.ip_address, subnet) else {
            continue;
        };
        if port.device_owner == owner::ROUTER_GATEWAY {
            let info = spec.external_gateway_info.as_ref();
            gateway = Some(RouterGateway {
                network_id: port.network_id.clone(),
                mac: port_mac,
                address,
                next_hop: subnet
                    .and_then(|s| s.gateway_ip.as_deref())
                    .and_then(|g| g.parse().ok()),
                snat: info.is_none_or(|i| i.enable_snat),
            });
        } else if port.device_owner == owner::ROUTER_INTERFACE {
            inside_subnets.insert(fixed.subnet_id.clone());
            interfaces.push(RouterInterface {
                network_id: port.network_id.clone(),
                mac: port_mac,
                address,
            });
        }
    }
    let mut floating_ips = Vec::new();
    let mut forwarded = Vec::new();
    if let Some(gateway) = &gateway {
        for fip in &snapshot.floating_ips {
            let fip_spec: FloatingIpSpec = spec_of(fip);
            if fip_spec.floating_network_id != gateway.network_id {
                continue;
            }
            let Ok(floating) = fip_spec.floating_ip_address.parse::<Ipv4Addr>() else {
                continue;
            };
            if fip_spec.router_id.as_deref() == Some(router_id)
                && let Some(fixed) = fip_spec
                    .fixed_ip_address
                    .as_deref()
                    .and_then(|f| f.parse().ok())
            {
                floating_ips.push(FloatingIp {
                    floating,
                    fixed,
                    sources: sources_of(&fip_spec),
                });
            }
            for forwarding in &snapshot.port_forwardings {
                let pf: PortForwardingSpec = spec_of(forwarding);
                if pf.floating_ip_id != uid(fip) {
                    continue;
                }
                let internal_subnet = ports
                    .iter()
                    .find(|(p, _)| uid(p) == pf.internal_port_id)
                    .and_then(|(_, p)| {
                        p.fixed_ips
                            .iter()
                            .find(|f| f.ip_address == pf.internal_ip_address)
                    })
                    .map(|f| f.subnet_id.clone());
                if !internal_subnet.is_some_and(|s| inside_subnets.contains(&s)) {
                    continue;
                }
                let (Ok(internal), Ok(external_port), Ok(internal_port)) = (
                    pf.internal_ip_address.parse(),
                    u16::try_from(pf.external_port),
                    u16::try_from(pf.internal_port),
                ) else {
                    continue;
                };
                forwarded.push(PortForwarding {
                    protocol: if pf.protocol == "udp" {
                        ForwardProtocol::Udp
                    } else {
                        ForwardProtocol::Tcp
                    },
                    floating,
                    external_port,
                    internal,
                    internal_port,
                    sources: sources_of(&fip_spec),
                });
            }
        }
    }
    RouterPlan {
        id: router_id.to_owned(),
        interfaces,
        gateway,
        floating_ips,
        port_forwardings: forwarded,
        routes: spec
            .routes
            .iter()
            .filter_map(|r| {
                Some((
                    ipam::parse_prefix(&r.destination).ok()?,
                    r.nexthop.parse().ok()?,
                ))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(uid: &str, spec: Value) -> Value {
        json!({"metadata": {"uid": uid, "name": uid, "namespace": "p"}, "spec": spec})
    }

    fn port(uid: &str, host: &str, mac: &str, ip: &str, owner: &str, groups: &[&str]) -> Value {
        object(
            uid,
            json!({"networkId": "net", "macAddress": mac, "fixedIps": [{"subnetId": "sub", "ipAddress": ip}],
                   "bindingHostId": host, "deviceOwner": owner, "deviceId": format!("dev-{uid}"), "securityGroups": groups}),
        )
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            networks: vec![
                object(
                    "net",
                    json!({"networkType": "vxlan", "segmentationId": 42, "mtu": 1450}),
                ),
                object(
                    "ext",
                    json!({"networkType": "flat", "physicalNetwork": "public", "external": true}),
                ),
            ],
            subnets: vec![
                object(
                    "sub",
                    json!({"networkId": "net", "cidr": "10.0.0.0/24", "gatewayIp": "10.0.0.1", "dnsNameservers": ["10.0.0.53"]}),
                ),
                object(
                    "extsub",
                    json!({"networkId": "ext", "cidr": "172.24.4.0/24", "gatewayIp": "172.24.4.1"}),
                ),
            ],
            ports: vec![
                port(
                    "pod",
                    "a",
                    "fa:16:3e:00:00:01",
                    "10.0.0.5",
                    owner::POD,
                    &["sg"],
                ),
                port(
                    "vm",
                    "b",
                    "fa:16:3e:00:00:02",
                    "10.0.0.6",
                    owner::VM,
                    &["sg"],
                ),
                port(
                    "dhcp",
                    "",
                    "fa:16:3e:00:00:03",
                    "10.0.0.2",
                    owner::DHCP,
                    &[],
                ),
                object(
                    "gw",
                    json!({"networkId": "ext", "macAddress": "fa:16:3e:00:00:04", "fixedIps": [{"subnetId": "extsub", "ipAddress": "172.24.4.10"}],
                                    "bindingHostId": "a", "deviceOwner": owner::ROUTER_GATEWAY, "deviceId": "r1"}),
                ),
                object(
                    "if",
                    json!({"networkId": "net", "macAddress": "fa:16:3e:00:00:05", "fixedIps": [{"subnetId": "sub", "ipAddress": "10.0.0.1"}],
                                    "bindingHostId": "a", "deviceOwner": owner::ROUTER_INTERFACE, "deviceId": "r1"}),
                ),
            ],
            security_group_rules: vec![
                object(
                    "r-egress",
                    json!({"securityGroupId": "sg", "direction": "egress", "ethertype": "IPv4"}),
                ),
                object(
                    "r-web",
                    json!({"securityGroupId": "sg", "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "portRangeMin": 80, "portRangeMax": 80}),
                ),
                object(
                    "r-group",
                    json!({"securityGroupId": "sg", "direction": "ingress", "ethertype": "IPv4", "remoteGroupId": "sg"}),
                ),
            ],
            routers: vec![
                json!({"metadata": {"uid": "r1"}, "spec": {"externalGatewayInfo": {"networkId": "ext"}}, "status": {"host": "a"}}),
            ],
            floating_ips: vec![
                object(
                    "fip",
                    json!({"floatingNetworkId": "ext", "floatingIpAddress": "172.24.4.20", "portId": "vm", "fixedIpAddress": "10.0.0.6", "routerId": "r1", "sourceRanges": ["192.0.2.7/24", "2001:db8::/64"]}),
                ),
                object(
                    "fip2",
                    json!({"floatingNetworkId": "ext", "floatingIpAddress": "172.24.4.21"}),
                ),
            ],
            port_forwardings: vec![object(
                "pf",
                json!({"floatingIpId": "fip2", "internalPortId": "pod", "internalIpAddress": "10.0.0.5", "internalPort": 80, "externalPort": 8080, "protocol": "tcp"}),
            )],
            qos_policies: Vec::new(),
            nodes: vec![
                json!({"metadata": {"name": "a", "annotations": {net::annotation::TUNNEL_IP: "192.168.0.1"}}}),
                json!({"metadata": {"name": "b"}, "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.2"}]}}),
            ],
        }
    }

    fn local() -> Local {
        Local {
            host: "a".into(),
            tunnel_ip: Some("192.168.0.1".parse().unwrap()),
            physical: [("public".to_owned(), "eth1".to_owned())].into(),
            attachments: [(
                "pod".to_owned(),
                Attachment::Veth {
                    netns: "/run/netns/pod".into(),
                    ifname: "eth0".into(),
                },
            )]
            .into(),
            hostnames: HashMap::new(),
        }
    }

    #[test]
    fn a_host_gets_its_ports_networks_peers_and_router() {
        let plan = host_plan(&snapshot(), &local());
        assert_eq!(plan.networks.len(), 2, "{plan:?}");
        let tenant = plan.network("net").expect("the tenant network");
        assert_eq!(tenant.segment, Segment::Vxlan { vni: 42 });
        assert_eq!(
            tenant.remote_vteps,
            vec!["192.168.0.2".parse::<Ipv4Addr>().unwrap()]
        );
        assert_eq!(tenant.remote_macs.len(), 1, "only host b's VM port");
        assert_eq!(tenant.ports.len(), 1, "only the attached pod port is wired");
        let pod = &tenant.ports[0];
        assert_eq!(pod.addresses, vec!["10.0.0.5/24".parse::<IpNet>().unwrap()]);
        assert_eq!(pod.gateway, Some("10.0.0.1".parse().unwrap()));
        let security = pod.security.as_ref().expect("port security");
        assert_eq!(security.allowed.len(), 1);
        assert_eq!(security.egress.len(), 1);
        assert_eq!(security.ingress.len(), 2);
        let group_rule = security
            .ingress
            .iter()
            .find(|r| r.protocol.is_none())
            .unwrap();
        assert_eq!(
            group_rule.remote.len(),
            2,
            "the group's members, on any host: {group_rule:?}"
        );
        let service = tenant
            .service
            .as_ref()
            .expect("DHCP from the network's DHCP port");
        assert_eq!(
            service.addresses,
            vec!["10.0.0.2/24".parse::<IpNet>().unwrap()]
        );
        assert!(
            service.dhcp[0]
                .host_routes
                .iter()
                .any(|(net, via)| net.to_string() == "169.254.169.254/32"
                    && via.to_string() == "10.0.0.2")
        );
        assert!(service.hosts.is_empty(), "no VM runs here");
        let external = plan.network("ext").unwrap();
        assert_eq!(
            external.segment,
            Segment::Flat {
                interface: "eth1".into()
            }
        );

        assert_eq!(plan.routers.len(), 1);
        let router = &plan.routers[0];
        assert_eq!(router.interfaces.len(), 1);
        let gateway = router.gateway.as_ref().unwrap();
        assert_eq!(gateway.address.to_string(), "172.24.4.10/24");
        assert_eq!(gateway.next_hop, Some("172.24.4.1".parse().unwrap()));
        assert!(gateway.snat);
        assert_eq!(
            router.floating_ips,
            vec![FloatingIp {
                floating: "172.24.4.20".parse().unwrap(),
                fixed: "10.0.0.6".parse().unwrap(),
                sources: Some(vec!["192.0.2.0/24".parse().unwrap()]),
            }]
        );
        assert_eq!(router.port_forwardings.len(), 1);
        assert_eq!(router.port_forwardings[0].external_port, 8080);
    }

    #[test]
    fn dhcp_hands_out_the_cluster_resolver_unless_the_subnet_names_its_own() {
        let mut snapshot = snapshot();
        let plan = host_plan(&snapshot, &local());
        let dhcp = &plan.network("net").unwrap().service.as_ref().unwrap().dhcp[0];
        assert_eq!(dhcp.dns_servers, ["10.0.0.53".parse::<IpAddr>().unwrap()]);
        assert_eq!(dhcp.domain.as_deref(), Some("openstacklocal"));
        assert!(
            dhcp.search.is_empty(),
            "the subnet's own servers know no cluster names"
        );

        snapshot.subnets[0]["spec"]["dnsNameservers"] = serde_json::json!([]);
        snapshot.networks[0]["spec"]["dnsDomain"] = serde_json::json!("corp.example.");
        let plan = host_plan(&snapshot, &local());
        let dhcp = &plan.network("net").unwrap().service.as_ref().unwrap().dhcp[0];
        assert_eq!(
            dhcp.dns_servers,
            ["10.0.0.2".parse::<IpAddr>().unwrap()],
            "the DHCP port, where the agent serves DNS"
        );
        assert_eq!(dhcp.domain.as_deref(), Some("corp.example"));
        assert_eq!(
            dhcp.search,
            [
                "corp.example",
                "p.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
    }

    #[test]
    fn another_host_gets_only_what_it_runs() {
        let mut other = local();
        other.host = "b".into();
        other.tunnel_ip = Some("192.168.0.2".parse().unwrap());
        other.attachments = [(
            "vm".to_owned(),
            Attachment::Tap {
                name: "rt-x".into(),
            },
        )]
        .into();
        other.hostnames = [("vm".to_owned(), "web-1".to_owned())].into();
        let plan = host_plan(&snapshot(), &other);
        assert_eq!(
            plan.networks.len(),
            1,
            "no router here, so no external network"
        );
        assert!(plan.routers.is_empty());
        let tenant = &plan.networks[0];
        // Host a has the pod and the router interface.
        assert_eq!(
            tenant.remote_vteps,
            vec!["192.168.0.1".parse::<Ipv4Addr>().unwrap()]
        );
        assert_eq!(tenant.remote_macs.len(), 2);
        let hosts = &tenant.service.as_ref().unwrap().hosts;
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].hostname.as_deref(), Some("web-1"));
    }
}
