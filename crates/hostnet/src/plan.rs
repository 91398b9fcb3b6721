//! The desired network of one host (`HostPlan`), as the agent computes it: pure data with
//! no I/O, plus the small checks that keep a plan from naming impossible things.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

/// An Ethernet address, written `fa:16:3e:12:34:56`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The all-zero address: in a VXLAN forwarding table it means "every unknown
    /// destination", which is how head-end replication is written.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// The IPv6 link-local address a kernel derives from this MAC (modified EUI-64), the one
    /// anti-spoofing lets a port use besides its fixed IPs.
    pub fn ipv6_link_local(&self) -> std::net::Ipv6Addr {
        let m = self.0;
        std::net::Ipv6Addr::new(
            0xfe80,
            0,
            0,
            0,
            u16::from_be_bytes([m[0] ^ 0x02, m[1]]),
            u16::from_be_bytes([m[2], 0xff]),
            u16::from_be_bytes([0xfe, m[3]]),
            u16::from_be_bytes([m[4], m[5]]),
        )
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex octets separated by ':'")]
pub struct InvalidMac(pub String);

impl FromStr for MacAddr {
    type Err = InvalidMac;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut octets = [0_u8; 6];
        let mut parts = text.split([':', '-']);
        for octet in &mut octets {
            let part = parts.next().ok_or_else(|| InvalidMac(text.into()))?;
            if part.is_empty() || part.len() > 2 {
                return Err(InvalidMac(text.into()));
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| InvalidMac(text.into()))?;
        }
        if parts.next().is_some() {
            return Err(InvalidMac(text.into()));
        }
        Ok(MacAddr(octets))
    }
}

impl TryFrom<&[u8]> for MacAddr {
    type Error = InvalidMac;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        <[u8; 6]>::try_from(bytes)
            .map(MacAddr)
            .map_err(|_| InvalidMac(format!("{bytes:02x?}")))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The desired network of one host. All names and addresses are computed by the agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPlan {
    /// This host's VTEP address (its underlay address): the local end of every VXLAN.
    pub tunnel_ip: Ipv4Addr,
    pub networks: Vec<NetworkPlan>,
    pub routers: Vec<RouterPlan>,
}

/// One tenant (or external) network as it exists on this host: a bridge, its uplink, its
/// local ports and, where this host serves it, DHCP and metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPlan {
    /// The network's uid; device names are derived from it (`names`).
    pub id: String,
    pub segment: Segment,
    /// The MTU of every device this crate makes for the network (for VXLAN: underlay
    /// MTU - 50).
    pub mtu: u32,
    /// Other hosts with ports on this network: head-end replication (one all-zero-MAC
    /// forwarding entry per VTEP).
    pub remote_vteps: Vec<Ipv4Addr>,
    /// Per-MAC forwarding entries to the VTEP that hosts that MAC.
    pub remote_macs: Vec<(MacAddr, Ipv4Addr)>,
    /// DHCP and metadata for this network on this host.
    pub service: Option<ServicePlan>,
    /// Local ports (pods, VMs).
    pub ports: Vec<PortPlan>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Segment {
    /// An overlay: a VXLAN device with this VNI, UDP port 4789, learning off.
    Vxlan { vni: u32 },
    /// A host interface enslaved to the bridge (for example the external network's NIC).
    /// It is not Ronghe's: it is never created, renamed or deleted, only attached.
    Flat { interface: String },
}

/// A "distributed" service port: the same MAC and IPs on every host. Its frames never
/// leave the host (nftables drops them toward the uplink, and frames from the uplink from
/// or to its MAC), so other hosts' copies never answer here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePlan {
    pub mac: MacAddr,
    /// One per subnet with DHCP (for example 10.0.0.2/24); 169.254.169.254/32 is always
    /// added for metadata.
    pub addresses: Vec<IpNet>,
    pub dhcp: Vec<DhcpSubnet>,
    /// Static leases: only these MACs are answered.
    pub hosts: Vec<DhcpHost>,
}

/// DHCP for one IPv4 subnet. IPv6 subnets are not served (no DHCPv6 or router
/// advertisements yet); `ServicePlan::addresses` may still hold IPv6 addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpSubnet {
    pub cidr: IpNet,
    /// Option 3; none means the option is sent empty, so clients get no default route.
    pub gateway: Option<IpAddr>,
    /// Option 6; empty means the option is sent empty (this DHCP server has no DNS).
    pub dns_servers: Vec<IpAddr>,
    /// Option 15, the domain name (Neutron's `openstacklocal` or the network's
    /// `dns_domain`).
    #[serde(default)]
    pub domain: Option<String>,
    /// Option 119, the domain search list (RFC 3397), in order.
    #[serde(default)]
    pub search: Vec<String>,
    /// Option 121, classless static routes (including 169.254.169.254/32 via the service
    /// address when there is no router). When present and a gateway exists, a
    /// 0.0.0.0/0 route via the gateway is added, since RFC 3442 clients ignore option 3
    /// when option 121 is present.
    pub host_routes: Vec<(IpNet, IpAddr)>,
    pub lease_seconds: u32,
    /// Option 26.
    pub mtu: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpHost {
    pub mac: MacAddr,
    pub ip: IpAddr,
    pub hostname: Option<String>,
}

/// A local port: a pod's veth or a VM's TAP on the network's bridge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortPlan {
    pub id: String,
    pub mac: MacAddr,
    /// Fixed IPs with their prefix length (configured inside a pod's netns).
    pub addresses: Vec<IpNet>,
    /// Default route inside a pod netns.
    pub gateway: Option<IpAddr>,
    /// Extra routes inside a pod netns.
    pub routes: Vec<(IpNet, IpAddr)>,
    pub attachment: Attachment,
    /// None: port security disabled (no anti-spoofing, no filtering).
    pub security: Option<PortSecurity>,
    pub qos: Option<Qos>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Attachment {
    /// A pod: a veth whose host side is on the bridge and whose peer is moved into `netns`
    /// (made by the container runtime), renamed `ifname`, given the port's MAC, addresses,
    /// MTU and routes, and brought up.
    Veth { netns: PathBuf, ifname: String },
    /// A VM: a persistent TAP device on the bridge, up; QEMU opens it by name with
    /// `-netdev tap,ifname=NAME,script=no,downscript=no`. Use `names::tap(port_id)` for the
    /// name; the device is marked Ronghe's by its alias whatever its name.
    Tap { name: String },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSecurity {
    /// The port's own (mac, ip/32) plus allowed address pairs. A frame from the port must
    /// carry one of these source MACs, an IPv4/IPv6 source within the IPs paired with that
    /// MAC, and ARP sender MAC/IP likewise. DHCP discovers from 0.0.0.0 pass; DHCP server
    /// replies and IPv6 router advertisements from the port are dropped.
    pub allowed: Vec<(MacAddr, IpNet)>,
    /// Stateful: established/related pass, invalid is dropped, new connections toward the
    /// port pass only if a rule matches (default deny).
    pub ingress: Vec<Rule>,
    /// The same for new connections from the port: an empty list denies all egress
    /// (Neutron's default group has allow-all egress rules).
    pub egress: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub ethertype: Ethertype,
    /// None: any protocol.
    pub protocol: Option<Protocol>,
    /// Destination port range for TCP, UDP and numbered protocols with ports; for ICMP the
    /// pair is (type, code) as in Neutron, a value above 255 meaning "any".
    pub ports: Option<(u16, u16)>,
    /// Remote prefixes (source for ingress, destination for egress); empty means any.
    pub remote: Vec<IpNet>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ethertype {
    V4,
    V6,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
    /// ICMP; with `Ethertype::V6` it means ICMPv6, as in Neutron.
    Icmp,
    Icmpv6,
    Number(u8),
}

/// Bandwidth limits of a port, in the workload's point of view.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Qos {
    /// From the workload (policed on the host side as the frames arrive).
    pub egress: Option<Bandwidth>,
    /// Toward the workload (shaped with tbf on the host-side device).
    pub ingress: Option<Bandwidth>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bandwidth {
    pub max_kbps: u32,
    pub burst_kbit: u32,
}

/// A Neutron legacy router hosted on this host, in its own network namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterPlan {
    pub id: String,
    /// A veth from each network's bridge into the router netns.
    pub interfaces: Vec<RouterInterface>,
    pub gateway: Option<RouterGateway>,
    pub floating_ips: Vec<FloatingIp>,
    pub port_forwardings: Vec<PortForwarding>,
    pub routes: Vec<(IpNet, IpAddr)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterInterface {
    pub network_id: String,
    pub mac: MacAddr,
    pub address: IpNet,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterGateway {
    /// An external (usually Flat) network in the same plan.
    pub network_id: String,
    pub mac: MacAddr,
    pub address: IpNet,
    pub next_hop: Option<IpAddr>,
    /// Source-NAT the internal subnets to `address` on the way out.
    pub snat: bool,
}

/// 1:1 NAT: `floating` is added (/32) on the gateway interface so it answers ARP; traffic
/// to it is DNATed to `fixed`, traffic from `fixed` leaving by the gateway is SNATed to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloatingIp {
    pub floating: Ipv4Addr,
    pub fixed: Ipv4Addr,
    /// With `Some`, only connections from these networks come in through it (none with an
    /// empty list); replies to connections made from inside always do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<Ipv4Net>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortForwarding {
    pub protocol: ForwardProtocol,
    pub floating: Ipv4Addr,
    pub external_port: u16,
    pub internal: Ipv4Addr,
    pub internal_port: u16,
    /// The sources the floating IP lets in, as [`FloatingIp::sources`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<Ipv4Net>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardProtocol {
    Tcp,
    Udp,
}

/// A reason the plan cannot be applied as a whole.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanProblem(pub String);

impl NetworkPlan {
    /// The device that joins the bridge to other hosts: the VXLAN device or the flat
    /// interface.
    pub fn uplink(&self) -> String {
        match &self.segment {
            Segment::Vxlan { .. } => crate::names::vxlan(&self.id),
            Segment::Flat { interface } => interface.clone(),
        }
    }
}

impl PortPlan {
    /// The port's device on the bridge (a veth's host side, or the TAP).
    pub fn host_device(&self) -> String {
        match &self.attachment {
            Attachment::Veth { .. } => crate::names::port_host(&self.id),
            Attachment::Tap { name } => name.clone(),
        }
    }
}

impl HostPlan {
    pub fn network(&self, id: &str) -> Option<&NetworkPlan> {
        self.networks.iter().find(|network| network.id == id)
    }

    /// Checks what the data plane relies on: unique ids, routers naming networks of this
    /// plan, interface names that Linux accepts.
    pub fn validate(&self) -> Result<(), PlanProblem> {
        let mut network_ids = BTreeSet::new();
        let mut port_ids = BTreeSet::new();
        let mut taps = BTreeSet::new();
        for network in &self.networks {
            if !network_ids.insert(network.id.as_str()) {
                return Err(PlanProblem(format!("network {} appears twice", network.id)));
            }
            if !(68..=65535).contains(&network.mtu) {
                return Err(PlanProblem(format!(
                    "network {} has MTU {}, outside 68..=65535",
                    network.id, network.mtu
                )));
            }
            if let Segment::Flat { interface } = &network.segment {
                check_interface_name(interface)?;
            }
            for port in &network.ports {
                if !port_ids.insert(port.id.as_str()) {
                    return Err(PlanProblem(format!("port {} appears twice", port.id)));
                }
                match &port.attachment {
                    Attachment::Veth { ifname, .. } => check_interface_name(ifname)?,
                    Attachment::Tap { name } => {
                        check_interface_name(name)?;
                        if !taps.insert(name.as_str()) {
                            return Err(PlanProblem(format!("TAP {name} appears twice")));
                        }
                    }
                }
            }
        }
        let mut router_ids = BTreeSet::new();
        for router in &self.routers {
            if !router_ids.insert(router.id.as_str()) {
                return Err(PlanProblem(format!("router {} appears twice", router.id)));
            }
            let gateway = router.gateway.iter().map(|gateway| &gateway.network_id);
            for network_id in router
                .interfaces
                .iter()
                .map(|interface| &interface.network_id)
                .chain(gateway)
            {
                if !network_ids.contains(network_id.as_str()) {
                    return Err(PlanProblem(format!(
                        "router {} uses network {network_id}, which is not in the plan",
                        router.id
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Interface names of 1 to 15 bytes of ASCII letters, digits, '-', '_' and '.': Linux
/// accepts more, but these names are written into nftables rules and dnsmasq arguments.
pub fn check_interface_name(name: &str) -> Result<(), PlanProblem> {
    let valid = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if valid {
        Ok(())
    } else {
        Err(PlanProblem(format!(
            "{name:?} is not a valid interface name"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_addresses_parse_and_print() {
        let mac: MacAddr = "FA:16:3e:0a:b:00".parse().unwrap();
        assert_eq!(mac.to_string(), "fa:16:3e:0a:0b:00");
        assert!("fa:16:3e:0a:0b".parse::<MacAddr>().is_err());
        assert!("fa:16:3e:0a:0b:00:11".parse::<MacAddr>().is_err());
        assert!("fa:16:3e:0a:0b:zz".parse::<MacAddr>().is_err());
        assert!("fa:16:3e:0a:0b:100".parse::<MacAddr>().is_err());
        let json = serde_json::to_string(&mac).unwrap();
        assert_eq!(json, "\"fa:16:3e:0a:0b:00\"");
        assert_eq!(serde_json::from_str::<MacAddr>(&json).unwrap(), mac);
    }

    #[test]
    fn link_local_follows_modified_eui64() {
        let mac: MacAddr = "fa:16:3e:12:34:56".parse().unwrap();
        assert_eq!(
            mac.ipv6_link_local().to_string(),
            "fe80::f816:3eff:fe12:3456"
        );
    }

    #[test]
    fn validation_finds_unknown_router_networks() {
        let plan = HostPlan {
            tunnel_ip: Ipv4Addr::new(10, 0, 0, 1),
            networks: vec![],
            routers: vec![RouterPlan {
                id: "r".into(),
                interfaces: vec![RouterInterface {
                    network_id: "n".into(),
                    mac: MacAddr::ZERO,
                    address: "10.0.0.1/24".parse().unwrap(),
                }],
                gateway: None,
                floating_ips: vec![],
                port_forwardings: vec![],
                routes: vec![],
            }],
        };
        assert!(plan.validate().is_err());
        assert!(check_interface_name("eth0").is_ok());
        assert!(check_interface_name("a-name-too-long-x").is_err());
    }
}
