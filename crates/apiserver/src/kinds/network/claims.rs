//! The unique keys network objects hold (see `crate::engine::claims`): every object its
//! uid (`ids/<uid>`, an index from Neutron ids to objects), a VXLAN network its VNI, a flat
//! network its physical network, a port its MAC on its network and each fixed IP on its
//! subnet, a floating IP its address and the fixed address it maps, a port forwarding its
//! external protocol and port, a rule its meaning within its group, a project its one
//! `default` security group.

use ronghe_api_types::network::{
    FloatingIpSpec, NetworkSpec, PortForwardingSpec, PortSpec, SecurityGroupRuleSpec,
    SecurityGroupSpec, SubnetSpec, validate,
};
use serde_json::Value;

use super::spec;
use crate::engine::Claim;
use crate::object;

/// The claim of an object's uid: what lets the Neutron face find an object by its id.
pub fn id_claim(uid: &str) -> String {
    format!("ids/{uid}")
}

/// The claim of an address on a subnet.
pub fn ip_claim(subnet_id: &str, address: &str) -> String {
    format!("ips/{subnet_id}/{address}")
}

/// The prefix of a subnet's address claims.
pub fn ips_of(subnet_id: &str) -> String {
    format!("ips/{subnet_id}/")
}

pub const VNIS: &str = "vnis/";

pub fn identity(object: &Value) -> Vec<Claim> {
    match object::uid(object) {
        Some(uid) => vec![Claim {
            key: id_claim(uid),
            field: "metadata.uid".into(),
            reason: "IdInUse",
            message: format!("The id {uid} is in use."),
        }],
        None => Vec::new(),
    }
}

pub fn network(object: &Value) -> Vec<Claim> {
    let mut claims = identity(object);
    let spec: NetworkSpec = spec(object);
    if spec.is_default
        && let Some(namespace) = object::namespace(object)
    {
        claims.push(Claim {
            key: format!("default-networks/{namespace}"),
            field: "spec.isDefault".into(),
            reason: "DefaultNetworkExists",
            message: format!("Project {namespace} already has a default network."),
        });
    }
    if spec.is_flat() {
        if let Some(physical) = spec.physical_network.filter(|p| !p.is_empty()) {
            claims.push(Claim {
                key: format!("physnets/{physical}"),
                field: "spec.physicalNetwork".into(),
                reason: "FlatNetworkInUse",
                message: format!(
                    "Unable to create the flat network. Physical network {physical} is in use."
                ),
            });
        }
    } else if let Some(vni) = spec.segmentation_id {
        claims.push(Claim {
            key: format!("{VNIS}{vni}"),
            field: "spec.segmentationId".into(),
            reason: "TunnelIdInUse",
            message: format!("Unable to create the network. The tunnel ID {vni} is in use."),
        });
    }
    claims
}

pub fn subnet(object: &Value) -> Vec<Claim> {
    let mut claims = identity(object);
    let spec: SubnetSpec = spec(object);
    if !spec.network_id.is_empty() && !spec.cidr.is_empty() {
        claims.push(Claim {
            key: format!("cidrs/{}/{}", spec.network_id, spec.cidr.replace('/', "_")),
            field: "spec.cidr".into(),
            reason: "InvalidInput",
            message: format!(
                "Invalid input for operation: Requested subnet with cidr: {} for network: {} overlaps with another subnet.",
                spec.cidr, spec.network_id
            ),
        });
    }
    claims
}

pub fn port(object: &Value) -> Vec<Claim> {
    let mut claims = identity(object);
    let spec: PortSpec = spec(object);
    if !spec.mac_address.is_empty() {
        claims.push(Claim {
            key: format!("macs/{}/{}", spec.network_id, spec.mac_address),
            field: "spec.macAddress".into(),
            reason: "MacAddressInUse",
            message: format!(
                "Unable to complete operation for network {}. The mac address {} is in use.",
                spec.network_id, spec.mac_address
            ),
        });
    }
    for (index, fixed) in spec.fixed_ips.iter().enumerate() {
        if fixed.subnet_id.is_empty() || fixed.ip_address.is_empty() {
            continue;
        }
        claims.push(Claim {
            key: ip_claim(&fixed.subnet_id, &fixed.ip_address),
            field: format!("spec.fixedIps[{index}].ipAddress"),
            reason: "IpAddressAlreadyAllocated",
            message: format!(
                "IP address {} already allocated in subnet {}",
                fixed.ip_address, fixed.subnet_id
            ),
        });
    }
    claims
}

pub fn security_group(object: &Value) -> Vec<Claim> {
    let mut claims = identity(object);
    let spec: SecurityGroupSpec = spec(object);
    if spec.name == "default"
        && let Some(namespace) = object::namespace(object)
    {
        claims.push(Claim {
            key: format!("default-groups/{namespace}"),
            field: "spec.name".into(),
            reason: "SecurityGroupDefaultAlreadyExists",
            message: "Default security group already exists.".into(),
        });
    }
    claims
}

pub fn security_group_rule(object: &Value) -> Vec<Claim> {
    let mut claims = identity(object);
    let spec: SecurityGroupRuleSpec = spec(object);
    if spec.security_group_id.is_empty() {
        return claims;
    }
    // The rule's meaning, normalised: protocol by number, ports, remote.
    let protocol = spec
        .protocol
        .as_deref()
        .filter(|p| !p.is_empty() && *p != "any")
        .map(|p| validate::protocol_number(p).map_or(p.to_owned(), |n| n.to_string()))
        .unwrap_or_else(|| "any".into());
    let remote = spec
        .remote_ip_prefix
        .as_deref()
        .map(|prefix| {
            ronghe_api_types::network::ipam::parse_prefix(prefix)
                .map_or(prefix.to_owned(), |net| net.to_string())
        })
        .or_else(|| spec.remote_group_id.as_ref().map(|g| format!("group-{g}")))
        .unwrap_or_else(|| "any".into());
    let signature = format!(
        "{}.{}.{}.{}-{}.{}",
        spec.direction,
        spec.ethertype,
        protocol,
        spec.port_range_min.map_or("any".into(), |p| p.to_string()),
        spec.port_range_max.map_or("any".into(), |p| p.to_string()),
        remote.replace('/', "_")
    );
    claims.push(Claim {
        key: format!("rules/{}/{signature}", spec.security_group_id),
        field: "spec".into(),
        reason: "SecurityGroupRuleExists",
        message: "Security group rule already exists.".into(),
    });
    claims
}

pub fn floating_ip(object: &Value) -> Vec<Claim> {
    let mut claims = identity(object);
    let spec: FloatingIpSpec = spec(object);
    if !spec.subnet_id.is_empty() && !spec.floating_ip_address.is_empty() {
        claims.push(Claim {
            key: ip_claim(&spec.subnet_id, &spec.floating_ip_address),
            field: "spec.floatingIpAddress".into(),
            reason: "IpAddressAlreadyAllocated",
            message: format!(
                "IP address {} already allocated in subnet {}",
                spec.floating_ip_address, spec.subnet_id
            ),
        });
    }
    if let (Some(port), Some(fixed)) = (&spec.port_id, &spec.fixed_ip_address) {
        claims.push(Claim {
            key: format!("fip-associations/{port}/{fixed}"),
            field: "spec.portId".into(),
            reason: "FloatingIPPortAlreadyAssociated",
            message: format!(
                "Cannot associate floating IP {} with port {port} using fixed IP {fixed}, as that fixed IP already has a floating IP.",
                spec.floating_ip_address
            ),
        });
    }
    claims
}

pub fn port_forwarding(object: &Value) -> Vec<Claim> {
    let mut claims = identity(object);
    let spec: PortForwardingSpec = spec(object);
    if !spec.floating_ip_id.is_empty() {
        claims.push(Claim {
            key: format!(
                "forwardings/{}/{}/{}",
                spec.floating_ip_id, spec.protocol, spec.external_port
            ),
            field: "spec.externalPort".into(),
            reason: "BadRequest",
            message: format!(
                "Bad port_forwarding request: A duplicate port forwarding entry with same attributes already exists, conflicting values are {{'floatingip_id': '{}', 'external_port': {}, 'protocol': '{}'}}.",
                spec.floating_ip_id, spec.external_port, spec.protocol
            ),
        });
    }
    claims
}
