//! Checks of network objects that need no other object: well-formed CIDRs and addresses,
//! gateways and pools inside their subnet, sane security group rules. Each problem names
//! the field, the bad value and Neutron's wording of what is wrong, so the Kubernetes face
//! can list them as field causes and the Neutron face as its fault message.

use serde_json::Value;

use super::ipam::{self, IpNet, Pools};
use super::{
    FloatingIpSpec, NetworkSpec, PortForwardingSpec, PortSpec, QosPolicySpec,
    SecurityGroupRuleSpec, SubnetSpec,
};

/// One thing wrong with an object.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// The field path, e.g. `spec.cidr`.
    pub field: String,
    pub value: Value,
    /// What is wrong, in Neutron's words.
    pub message: String,
}

fn problem(
    field: impl Into<String>,
    value: impl Into<Value>,
    message: impl Into<String>,
) -> Problem {
    Problem {
        field: field.into(),
        value: value.into(),
        message: message.into(),
    }
}

/// The highest VXLAN network identifier.
pub const MAX_VNI: u32 = (1 << 24) - 1;

pub fn network(spec: &NetworkSpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    match spec.network_type.as_str() {
        "" | "vxlan" => {
            if let Some(vni) = spec.segmentation_id
                && !(1..=MAX_VNI).contains(&vni)
            {
                problems.push(problem(
                    "spec.segmentationId",
                    vni,
                    format!("Invalid input for operation: segmentation_id {vni} is not in the VXLAN range 1-{MAX_VNI}."),
                ));
            }
        }
        "flat" => {
            if spec.physical_network.as_deref().is_none_or(str::is_empty) {
                problems.push(problem(
                    "spec.physicalNetwork",
                    Value::Null,
                    "Invalid input for operation: physical_network required for flat provider network.",
                ));
            }
        }
        other => problems.push(problem(
            "spec.networkType",
            other,
            format!("Invalid input for operation: network_type value '{other}' not supported (vxlan, flat)."),
        )),
    }
    if let Some(mtu) = spec.mtu
        && !(68..=9000).contains(&mtu)
    {
        problems.push(problem(
            "spec.mtu",
            mtu,
            format!("Invalid input for mtu. Reason: '{mtu}' is not in the range 68-9000."),
        ));
    }
    problems
}

pub fn subnet(spec: &SubnetSpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    if spec.network_id.is_empty() {
        problems.push(problem("spec.networkId", "", "network_id is required"));
    }
    let net = match ipam::parse_cidr(&spec.cidr) {
        Ok(net) => net,
        Err(message) => {
            problems.push(problem(
                "spec.cidr",
                spec.cidr.as_str(),
                format!("Invalid input for cidr. Reason: {message}"),
            ));
            return problems;
        }
    };
    let version = if net.addr().is_ipv6() { 6 } else { 4 };
    if let Some(asked) = spec.ip_version
        && asked != version
    {
        problems.push(problem(
            "spec.ipVersion",
            asked,
            format!(
                "Invalid input for operation: Cidr {} does not match IP version {asked}.",
                spec.cidr
            ),
        ));
    }
    if version == 4 && net.prefix_len() > 30 {
        problems.push(problem(
            "spec.cidr",
            spec.cidr.as_str(),
            format!("Invalid input for operation: Cidr {} has too few addresses (a /30 at the smallest).", spec.cidr),
        ));
    }
    let gateway = match spec.gateway_ip.as_deref() {
        Some(text) if !spec.no_gateway => match ipam::parse_address(text) {
            Ok(address) if !net.contains(&address) => {
                problems.push(problem(
                    "spec.gatewayIp",
                    text,
                    format!("Invalid input for operation: Gateway IP {text} is outside the subnet {net}."),
                ));
                None
            }
            Ok(address)
                if address == net.network() || (version == 4 && address == net.broadcast()) =>
            {
                problems.push(problem(
                    "spec.gatewayIp",
                    text,
                    format!("Gateway is not valid on subnet: Gateway ip {text} conflicts with the subnet's network or broadcast address."),
                ));
                None
            }
            Ok(address) => Some(address),
            Err(message) => {
                problems.push(problem(
                    "spec.gatewayIp",
                    text,
                    format!("Invalid input for gateway_ip. Reason: {message}."),
                ));
                None
            }
        },
        _ => None,
    };
    if let Err(message) = Pools::new(&net, &spec.allocation_pools, gateway) {
        problems.push(problem(
            "spec.allocationPools",
            serde_json::to_value(&spec.allocation_pools).unwrap_or_default(),
            message,
        ));
    }
    for (index, server) in spec.dns_nameservers.iter().enumerate() {
        if let Err(message) = ipam::parse_address(server) {
            problems.push(problem(
                format!("spec.dnsNameservers[{index}]"),
                server.as_str(),
                format!("Invalid input for dns_nameservers. Reason: {message}."),
            ));
        }
    }
    for (index, route) in spec.host_routes.iter().enumerate() {
        let checked = ipam::parse_prefix(&route.destination)
            .map(drop)
            .and(ipam::parse_address(&route.nexthop).map(drop));
        if let Err(message) = checked {
            problems.push(problem(
                format!("spec.hostRoutes[{index}]"),
                route.destination.as_str(),
                format!("Invalid input for host_routes. Reason: {message}."),
            ));
        }
    }
    for (field, mode) in [
        ("spec.ipv6RaMode", &spec.ipv6_ra_mode),
        ("spec.ipv6AddressMode", &spec.ipv6_address_mode),
    ] {
        if let Some(mode) = mode {
            if !["slaac", "dhcpv6-stateful", "dhcpv6-stateless"].contains(&mode.as_str()) {
                problems.push(problem(field, mode.as_str(), format!("Invalid input for operation: '{mode}' is not in ['dhcpv6-stateful', 'dhcpv6-stateless', 'slaac'].")));
            } else if version == 4 {
                problems.push(problem(field, mode.as_str(), "Invalid input for operation: ipv6_ra_mode or ipv6_address_mode cannot be set when enable_dhcp is set to False or on an IPv4 subnet."));
            }
        }
    }
    problems
}

pub fn port(spec: &PortSpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    if spec.network_id.is_empty() {
        problems.push(problem("spec.networkId", "", "network_id is required"));
    }
    if !spec.mac_address.is_empty()
        && let Err(message) = ipam::parse_mac(&spec.mac_address)
    {
        problems.push(problem(
            "spec.macAddress",
            spec.mac_address.as_str(),
            format!("Invalid input for mac_address. Reason: {message}."),
        ));
    }
    for (index, fixed) in spec.fixed_ips.iter().enumerate() {
        if !fixed.ip_address.is_empty()
            && let Err(message) = ipam::parse_address(&fixed.ip_address)
        {
            problems.push(problem(
                format!("spec.fixedIps[{index}].ipAddress"),
                fixed.ip_address.as_str(),
                format!("Invalid input for fixed_ips. Reason: {message}."),
            ));
        }
    }
    for (index, pair) in spec.allowed_address_pairs.iter().enumerate() {
        if let Err(message) = ipam::parse_prefix(&pair.ip_address) {
            problems.push(problem(
                format!("spec.allowedAddressPairs[{index}].ipAddress"),
                pair.ip_address.as_str(),
                format!("Invalid input for allowed_address_pairs. Reason: {message}."),
            ));
        }
        if let Some(mac) = &pair.mac_address
            && let Err(message) = ipam::parse_mac(mac)
        {
            problems.push(problem(
                format!("spec.allowedAddressPairs[{index}].macAddress"),
                mac.as_str(),
                format!("Invalid input for allowed_address_pairs. Reason: {message}."),
            ));
        }
    }
    if !spec.security_enabled()
        && (spec
            .security_groups
            .as_ref()
            .is_some_and(|groups| !groups.is_empty())
            || !spec.allowed_address_pairs.is_empty())
    {
        problems.push(problem(
            "spec.portSecurityEnabled",
            false,
            "Port has security group or allowed address pairs associated. Port security must be enabled and port must have an IP address in order to use security groups or allowed address pairs.",
        ));
    }
    problems
}

/// The IP protocol numbers of the names Neutron accepts.
pub fn protocol_number(name: &str) -> Option<u8> {
    Some(match name {
        "icmp" => 1,
        "igmp" => 2,
        "tcp" => 6,
        "egp" => 8,
        "udp" => 17,
        "dccp" => 33,
        "ipv6-encap" => 41,
        "rsvp" => 46,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "icmpv6" | "ipv6-icmp" => 58,
        "ospf" => 89,
        "pgm" => 113,
        "vrrp" => 112,
        "sctp" => 132,
        "udplite" => 136,
        number => number.parse().ok()?,
    })
}

/// Protocols whose rules may name ports.
fn has_ports(number: u8) -> bool {
    matches!(number, 6 | 17 | 33 | 132 | 136)
}

pub fn security_group_rule(spec: &SecurityGroupRuleSpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    if spec.security_group_id.is_empty() {
        problems.push(problem(
            "spec.securityGroupId",
            "",
            "security_group_id is required",
        ));
    }
    if !["ingress", "egress"].contains(&spec.direction.as_str()) {
        problems.push(problem(
            "spec.direction",
            spec.direction.as_str(),
            format!(
                "Invalid input for direction. Reason: {:?} is not in ['ingress', 'egress'].",
                spec.direction
            ),
        ));
    }
    let ethertype = if spec.ethertype.is_empty() {
        "IPv4"
    } else {
        spec.ethertype.as_str()
    };
    if !["IPv4", "IPv6"].contains(&ethertype) {
        problems.push(problem(
            "spec.ethertype",
            ethertype,
            format!(
                "Invalid input for ethertype. Reason: '{ethertype}' is not in ['IPv4', 'IPv6']."
            ),
        ));
    }
    let protocol = match spec.protocol.as_deref() {
        None | Some("" | "any") => None,
        Some(name) => match protocol_number(&name.to_ascii_lowercase()) {
            Some(number) => Some(number),
            None => {
                problems.push(problem(
                    "spec.protocol",
                    name,
                    format!("Security group rule protocol {name} not supported. Only protocol values [None, 'ah', 'dccp', 'egp', 'esp', 'gre', 'icmp', 'icmpv6', 'igmp', 'ipv6-icmp', 'ospf', 'pgm', 'rsvp', 'sctp', 'tcp', 'udp', 'udplite', 'vrrp'] and integer representations [0 to 255] are supported."),
                ));
                return problems;
            }
        },
    };
    let (min, max) = (spec.port_range_min, spec.port_range_max);
    match protocol {
        Some(number) if has_ports(number) => {
            for (field, value) in [("spec.portRangeMin", min), ("spec.portRangeMax", max)] {
                if let Some(port) = value
                    && !(1..=65535).contains(&port)
                {
                    problems.push(problem(
                        field,
                        port,
                        format!("Invalid value for port {port}."),
                    ));
                }
            }
            if let (Some(min), Some(max)) = (min, max)
                && min > max
            {
                problems.push(problem(
                    "spec.portRangeMin",
                    min,
                    "For TCP/UDP protocols, port_range_min must be <= port_range_max",
                ));
            }
            if min.is_none() != max.is_none() && max.is_some() {
                problems.push(problem(
                    "spec.portRangeMin",
                    Value::Null,
                    "port_range_min must be given with port_range_max",
                ));
            }
        }
        Some(1 | 58) => {
            // ICMP: the "ports" are the type and code.
            for (field, value, what) in [
                ("spec.portRangeMin", min, "type"),
                ("spec.portRangeMax", max, "code"),
            ] {
                if let Some(value) = value
                    && value > 255
                {
                    problems.push(problem(
                        field,
                        value,
                        format!("Invalid value for ICMP {what} {value}: must be 0-255."),
                    ));
                }
            }
            if min.is_none() && max.is_some() {
                problems.push(problem("spec.portRangeMax", max.unwrap_or_default(), "ICMP code (port-range-max) is provided but ICMP type (port-range-min) is missing."));
            }
        }
        _ => {
            if min.is_some() || max.is_some() {
                problems.push(problem(
                    "spec.portRangeMin",
                    min.or(max).unwrap_or_default(),
                    "Invalid input for operation: port ranges are only allowed with protocols tcp, udp, dccp, sctp, udplite (or icmp types and codes).",
                ));
            }
        }
    }
    if let Some(prefix) = &spec.remote_ip_prefix {
        match ipam::parse_prefix(prefix) {
            Ok(net) => {
                let v6 = matches!(net, IpNet::V6(_));
                if v6 != (ethertype == "IPv6") {
                    problems.push(problem(
                        "spec.remoteIpPrefix",
                        prefix.as_str(),
                        format!("Conflicting value ethertype {ethertype} for CIDR {prefix}"),
                    ));
                }
            }
            Err(message) => problems.push(problem(
                "spec.remoteIpPrefix",
                prefix.as_str(),
                format!("Invalid input for remote_ip_prefix. Reason: {message}."),
            )),
        }
        if spec.remote_group_id.is_some() {
            problems.push(problem(
                "spec.remoteGroupId",
                spec.remote_group_id.clone().unwrap_or_default(),
                "Only one of remote_ip_prefix, remote_group_id or remote_address_group_id may be provided.",
            ));
        }
    }
    problems
}

pub fn floating_ip(spec: &FloatingIpSpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    if spec.floating_network_id.is_empty() {
        problems.push(problem(
            "spec.floatingNetworkId",
            "",
            "floating_network_id is required",
        ));
    }
    for (field, address) in [
        (
            "spec.floatingIpAddress",
            Some(spec.floating_ip_address.as_str()),
        ),
        ("spec.fixedIpAddress", spec.fixed_ip_address.as_deref()),
    ] {
        if let Some(address) = address.filter(|a| !a.is_empty())
            && let Err(message) = ipam::parse_address(address)
        {
            problems.push(problem(
                field,
                address,
                format!("Invalid input for operation: {message}."),
            ));
        }
    }
    problems
}

pub fn port_forwarding(spec: &PortForwardingSpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (field, port) in [
        ("spec.internalPort", spec.internal_port),
        ("spec.externalPort", spec.external_port),
    ] {
        if !(1..=65535).contains(&port) {
            problems.push(problem(
                field,
                port,
                format!("Invalid input for operation: {port} is not in the range 1-65535."),
            ));
        }
    }
    if !["tcp", "udp"].contains(&spec.protocol.as_str()) {
        problems.push(problem(
            "spec.protocol",
            spec.protocol.as_str(),
            format!(
                "Invalid input for protocol. Reason: '{}' is not in ['tcp', 'udp'].",
                spec.protocol
            ),
        ));
    }
    if let Err(message) = ipam::parse_address(&spec.internal_ip_address) {
        problems.push(problem(
            "spec.internalIpAddress",
            spec.internal_ip_address.as_str(),
            format!("Invalid input for internal_ip_address. Reason: {message}."),
        ));
    }
    if spec.internal_port_id.is_empty() {
        problems.push(problem(
            "spec.internalPortId",
            "",
            "internal_port_id is required",
        ));
    }
    problems
}

pub fn qos_policy(spec: &QosPolicySpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (index, rule) in spec.rules.iter().enumerate() {
        if !["bandwidth_limit", "dscp_marking", "minimum_bandwidth"].contains(&rule.kind.as_str()) {
            problems.push(problem(
                format!("spec.rules[{index}].type"),
                rule.kind.as_str(),
                format!("Rule type {} is not supported.", rule.kind),
            ));
        }
        if !["", "egress", "ingress"].contains(&rule.direction.as_str()) {
            problems.push(problem(
                format!("spec.rules[{index}].direction"),
                rule.direction.as_str(),
                format!(
                    "Invalid input for direction. Reason: '{}' is not in ['egress', 'ingress'].",
                    rule.direction
                ),
            ));
        }
        if rule.kind == "bandwidth_limit" && rule.max_kbps.is_none_or(|kbps| kbps == 0) {
            problems.push(problem(format!("spec.rules[{index}].maxKbps"), rule.max_kbps.unwrap_or_default(), "Invalid input for max_kbps. Reason: a bandwidth limit needs max_kbps of at least 1."));
        }
        if let Some(mark) = rule.dscp_mark
            && (mark > 56 || mark % 2 == 1 && mark != 0)
        {
            problems.push(problem(
                format!("spec.rules[{index}].dscpMark"),
                mark,
                format!("Invalid input for dscp_mark. Reason: {mark} is not a valid DSCP mark."),
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::AllocationPool;

    fn subnet_spec(cidr: &str) -> SubnetSpec {
        SubnetSpec {
            network_id: "n".into(),
            cidr: cidr.into(),
            ..SubnetSpec::default()
        }
    }

    #[test]
    fn subnets() {
        assert!(subnet(&subnet_spec("10.0.0.0/24")).is_empty());
        assert_eq!(subnet(&subnet_spec("10.0.0.7/24"))[0].field, "spec.cidr");
        let mut outside = subnet_spec("10.0.0.0/24");
        outside.gateway_ip = Some("10.0.1.1".into());
        assert!(subnet(&outside)[0].message.contains("outside the subnet"));
        let mut pools = subnet_spec("10.0.0.0/24");
        pools.gateway_ip = Some("10.0.0.1".into());
        pools.allocation_pools = vec![AllocationPool {
            start: "10.0.0.1".into(),
            end: "10.0.0.9".into(),
        }];
        assert!(subnet(&pools)[0].message.contains("conflicts"));
        let mut version = subnet_spec("fd00::/64");
        version.ip_version = Some(4);
        assert_eq!(subnet(&version)[0].field, "spec.ipVersion");
    }

    #[test]
    fn rules() {
        let rule =
            |protocol: Option<&str>, min: Option<u32>, max: Option<u32>| SecurityGroupRuleSpec {
                security_group_id: "sg".into(),
                direction: "ingress".into(),
                protocol: protocol.map(str::to_owned),
                port_range_min: min,
                port_range_max: max,
                ..SecurityGroupRuleSpec::default()
            };
        assert!(security_group_rule(&rule(Some("tcp"), Some(80), Some(80))).is_empty());
        assert!(!security_group_rule(&rule(Some("tcp"), Some(90), Some(80))).is_empty());
        assert!(!security_group_rule(&rule(Some("tcp"), Some(0), Some(70000))).is_empty());
        assert!(!security_group_rule(&rule(Some("gre"), Some(1), Some(2))).is_empty());
        assert!(!security_group_rule(&rule(Some("bogus"), None, None)).is_empty());
        assert!(security_group_rule(&rule(Some("icmp"), Some(8), Some(0))).is_empty());
        let mut mixed = rule(None, None, None);
        mixed.remote_ip_prefix = Some("fd00::/64".into());
        assert!(
            security_group_rule(&mixed)[0]
                .message
                .contains("Conflicting value ethertype")
        );
    }
}
