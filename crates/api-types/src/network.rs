//! `network.ronghe.io/v1`: the wire types of Ronghe's virtual networks, shared by the API
//! server (which validates and allocates), the Neutron face (which translates) and the
//! agents (which wire hosts to match).
//!
//! The model is Neutron's: a Network (a VXLAN segment, or a flat provider network such as
//! the external one), its Subnets (IPv4 or IPv6 ranges with allocation pools), Ports (a MAC
//! and fixed IPs on a network, owned by a pod, a VM, a router or the DHCP service),
//! Routers, SecurityGroups with separate SecurityGroupRules, FloatingIPs with
//! PortForwardings, and QosPolicies. References between objects are uids (a Neutron `id`
//! is the object's uid); the API server also accepts a name in the same namespace and
//! stores the uid.
//!
//! * [`ipam`]: address arithmetic — CIDRs, allocation pools, picking free addresses, MACs.
//! * [`validate`]: field checks that need no other object (CIDRs inside CIDRs, port ranges).

pub mod ipam;
pub mod validate;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const GROUP: &str = "network.ronghe.io";
pub const API_VERSION: &str = "network.ronghe.io/v1";

/// The VXLAN header and the outer IPv4 and UDP headers take 50 bytes of a 1500-byte underlay.
pub const VXLAN_OVERHEAD: u32 = 50;
/// The underlay MTU assumed for tenant networks.
pub const UNDERLAY_MTU: u32 = 1500;

/// Device owners, as Neutron names them.
pub mod owner {
    pub const ROUTER_INTERFACE: &str = "network:router_interface";
    pub const ROUTER_GATEWAY: &str = "network:router_gateway";
    pub const FLOATING_IP: &str = "network:floatingip";
    pub const DHCP: &str = "network:dhcp";
    /// A pod's port (Ronghe's own owner, in Neutron's `compute:<zone>` family).
    pub const POD: &str = "compute:kubernetes";
    /// A VM's port, as Nova sets it.
    pub const VM: &str = "compute:nova";
    /// A load balancer's VIP.
    pub const LOAD_BALANCER: &str = "Octavia";
}

/// Annotations a pod may carry.
pub mod annotation {
    /// The network (name or uid, in the pod's namespace or shared) a pod's port is on,
    /// instead of its project's default network.
    pub const POD_NETWORK: &str = "network.ronghe.io/network";
    /// On a Node: the address other hosts send VXLAN traffic for it to.
    pub const TUNNEL_IP: &str = "network.ronghe.io/tunnel-ip";
    /// On a Node: the flat physical networks it has, as `name=interface,name=interface`.
    pub const PHYSICAL_NETWORKS: &str = "network.ronghe.io/physical-networks";
    /// On a Node: the TCP port its agent takes node-port traffic on from other hosts (at
    /// its tunnel IP), to deliver to the load balancers it runs.
    pub const NODE_PORT_RELAY: &str = "network.ronghe.io/node-port-relay";
    /// On a Node: `true` when its relay reads the client from a relayed stream's header
    /// (`RNP2`); without it, other agents send `RNP1` headers, which name none.
    pub const NODE_PORT_RELAY_CLIENTS: &str = "network.ronghe.io/node-port-relay-clients";
    /// On a VM's port: which entry of the VM's `spec.networks` it is (its NIC's index).
    pub const NIC_INDEX: &str = "network.ronghe.io/nic-index";
}

/// The pairs of a Node's physical-networks annotation (`name=interface,...`), by name;
/// pairs lacking either half are ignored.
pub fn physical_networks(annotation: &str) -> std::collections::BTreeMap<String, String> {
    annotation
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, interface)| (name.trim().to_owned(), interface.trim().to_owned()))
        .filter(|(name, interface)| !name.is_empty() && !interface.is_empty())
        .collect()
}

/// Labels on objects the system makes for a workload.
pub mod label {
    /// On a port made for a pod or VM: the uid of the workload.
    pub const DEVICE_ID: &str = "network.ronghe.io/device-id";
}

fn yes() -> bool {
    true
}

fn is_false(value: &bool) -> bool {
    !value
}

fn is_true(value: &bool) -> bool {
    *value
}

/// A layer-2 segment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// Neutron's name (free text, not unique); `metadata.name` when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default = "yes")]
    pub admin_state_up: bool,
    /// Every project may put ports on it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub shared: bool,
    /// `router:external`: routers may use it as their gateway, floating IPs come from it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub external: bool,
    /// `vxlan` (tenant networks, the default) or `flat` (a provider network on a host
    /// interface named by `physicalNetwork`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_network: Option<String>,
    /// The VXLAN VNI, allocated uniquely when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segmentation_id: Option<u32>,
    /// Defaults to the underlay MTU less the VXLAN overhead (1450), or 1500 when flat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default = "yes")]
    pub port_security_enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_policy_id: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dns_domain: String,
    /// The project's default network, which its pods use unless they name another.
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_default: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub availability_zone_hints: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl NetworkSpec {
    pub fn is_flat(&self) -> bool {
        self.network_type == "flat"
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationPool {
    pub start: String,
    pub end: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRoute {
    pub destination: String,
    pub nexthop: String,
}

/// An IP range on a network.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubnetSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The network's uid.
    pub network_id: String,
    /// 4 or 6; taken from the CIDR when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<u8>,
    pub cidr: String,
    /// The first address of the CIDR when absent (unless `noGateway`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_ip: Option<String>,
    /// Neutron's `gateway_ip: null`: the subnet has no gateway.
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_gateway: bool,
    /// The whole CIDR but the network, broadcast and gateway addresses when absent.
    #[serde(default)]
    pub allocation_pools: Vec<AllocationPool>,
    #[serde(default)]
    pub dns_nameservers: Vec<String>,
    #[serde(default)]
    pub host_routes: Vec<HostRoute>,
    #[serde(default = "yes")]
    pub enable_dhcp: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_ra_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// One fixed address of a port: a subnet, an address, or both.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FixedIp {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subnet_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ip_address: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddressPair {
    /// An address or a CIDR.
    pub ip_address: String,
    /// The port's own MAC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
}

/// A workload's (or a router's, or a service's) attachment to a network.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub network_id: String,
    #[serde(default = "yes")]
    pub admin_state_up: bool,
    /// Allocated (`fa:16:3e:..:..:..`) when absent; unique on its network.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
    /// Filled by IPAM: one address from each IPv4 subnet of the network when absent; an
    /// entry with only a subnet gets an address from it.
    #[serde(default)]
    pub fixed_ips: Vec<FixedIp>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub device_owner: String,
    /// The uid of what uses it (a pod, a VM, a router).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub device_id: String,
    /// The host it is wired on.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub binding_host_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub binding_vnic_type: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub binding_profile: BTreeMap<String, Value>,
    /// Uids of security groups; the project's `default` group when absent and port
    /// security is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_groups: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_address_pairs: Vec<AddressPair>,
    /// The network's setting when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_security_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_policy_id: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dns_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl PortSpec {
    pub fn security_enabled(&self) -> bool {
        self.port_security_enabled.unwrap_or(true)
    }
}

/// What the host says about a port.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortStatus {
    /// `DOWN` until a host has wired it, then `ACTIVE`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    /// `unbound`, `tap` (a VM) or `veth` (a pod).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vif_type: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalGateway {
    /// The external network's uid.
    pub network_id: String,
    #[serde(default = "yes")]
    pub enable_snat: bool,
    /// Filled with the gateway port's addresses.
    #[serde(default)]
    pub external_fixed_ips: Vec<FixedIp>,
}

/// A router; its interfaces and gateway are Ports whose `deviceId` is the router's uid.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouterSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default = "yes")]
    pub admin_state_up: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_gateway_info: Option<ExternalGateway>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<HostRoute>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub availability_zone_hints: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouterStatus {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    /// The host whose agent runs the router's namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroupSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub stateful: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// One rule of a security group: what new connections it lets in (ingress) or out (egress).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroupRuleSpec {
    pub security_group_id: String,
    /// `ingress` or `egress`.
    pub direction: String,
    /// `IPv4` (the default) or `IPv6`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ethertype: String,
    /// A name (`tcp`, `udp`, `icmp`, `ipv6-icmp`, ...) or a number; any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range_min: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range_max: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ip_prefix: Option<String>,
    /// Traffic from (or to) the ports of this group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_group_id: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// An address on an external network, mapped 1:1 to a port's fixed address.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FloatingIpSpec {
    pub floating_network_id: String,
    /// Allocated from the network's subnets when absent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub floating_ip_address: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subnet_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_ip_address: Option<String>,
    /// The router that carries it: the one with a gateway on the floating network and an
    /// interface on the port's subnet (set with the association).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_policy_id: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dns_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dns_domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Ronghe's own (not in Neutron's API): when set, only connections from these CIDRs
    /// are let in through the floating IP (its router drops the others). A LoadBalancer
    /// Service's `loadBalancerSourceRanges` arrive here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ranges: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FloatingIpStatus {
    /// `DOWN` until associated and wired, then `ACTIVE`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
}

/// Traffic to a floating IP's port forwarded to a port's fixed address and port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortForwardingSpec {
    pub floating_ip_id: String,
    pub internal_port_id: String,
    pub internal_ip_address: String,
    pub internal_port: u32,
    pub external_port: u32,
    /// `tcp` or `udp`.
    pub protocol: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A QoS rule; only `bandwidth_limit` is enforced by hosts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QosRule {
    pub id: String,
    /// `bandwidth_limit`, `dscp_marking` or `minimum_bandwidth`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_kbps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_burst_kbps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kbps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dscp_mark: Option<u8>,
    /// `egress` (from the workload, the default) or `ingress`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub direction: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QosPolicySpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub shared: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_default: bool,
    #[serde(default)]
    pub rules: Vec<QosRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// Neutron's name of an object: `spec.name`, or `metadata.name` when that is empty.
pub fn display_name(object: &Value) -> String {
    match object.pointer("/spec/name").and_then(Value::as_str) {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    }
}

/// The spec of an object, typed (the default when absent or malformed).
pub fn spec_of<T: serde::de::DeserializeOwned + Default>(object: &Value) -> T {
    object
        .get("spec")
        .cloned()
        .and_then(|spec| serde_json::from_value(spec).ok())
        .unwrap_or_default()
}

/// The status of an object, typed (the default when absent or malformed).
pub fn status_of<T: serde::de::DeserializeOwned + Default>(object: &Value) -> T {
    object
        .get("status")
        .cloned()
        .and_then(|status| serde_json::from_value(status).ok())
        .unwrap_or_default()
}
