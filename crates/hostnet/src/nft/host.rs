//! The host netns ruleset: service-port isolation, anti-spoofing and egress policing in
//! `table bridge ronghe`; conntrack zones and stateful security groups in
//! `table inet ronghe`.
//!
//! The two tables meet through the packet mark. The bridge family sees bridge ports, so
//! its prerouting chain stamps a frame from secured port number N with mark N<<16 and its
//! forward chain (priority -200, before br_netfilter at 0) adds the number of the secured
//! port it is leaving by in the low 16 bits. The inet family, called by br_netfilter for
//! bridged IP with only the bridge as interface, dispatches on those two halves to the
//! ports' egress and ingress chains, where conntrack (zoned per network) is available.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use ipnet::IpNet;

use super::{prefix, quoted, replace_table, set};
use crate::names;
use crate::plan::{Ethertype, HostPlan, NetworkPlan, PortPlan, PortSecurity, Protocol, Rule};

/// ICMPv6 neighbour discovery and multicast listener messages: they pass before conntrack
/// is consulted (conntrack does not track them), in both directions, as in Neutron.
const ND_TO_PORT: &str =
    "nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, mld-listener-query";
const ND_FROM_PORT: &str = "nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, mld-listener-report, mld2-listener-report";

/// A port with chains in the ruleset.
struct PortChains<'a> {
    port: &'a PortPlan,
    device: String,
    hash: String,
    /// 1.. for ports with security, the number carried in the packet mark.
    number: Option<u16>,
}

/// Renders both host tables for `plan` as one `nft -f` input.
pub fn render_host(plan: &HostPlan) -> String {
    let mut ports = Vec::new();
    let mut next_number: u16 = 1;
    for network in &plan.networks {
        for port in &network.ports {
            let number = port.security.as_ref().map(|_| {
                let number = next_number;
                next_number = next_number.saturating_add(1);
                number
            });
            ports.push(PortChains {
                port,
                device: port.host_device(),
                hash: names::short_hash(&[&port.id]),
                number,
            });
        }
    }
    let mut out = String::new();
    render_bridge_table(&mut out, plan, &ports);
    render_inet_table(&mut out, plan, &ports);
    out
}

fn render_bridge_table(out: &mut String, plan: &HostPlan, ports: &[PortChains<'_>]) {
    replace_table(out, "bridge");
    let from_ports: Vec<&PortChains<'_>> = ports
        .iter()
        .filter(|p| p.number.is_some() || egress_limit(p.port).is_some())
        .collect();
    let to_ports: Vec<&PortChains<'_>> = ports.iter().filter(|p| p.number.is_some()).collect();

    out.push_str("\tchain prerouting {\n");
    out.push_str("\t\ttype filter hook prerouting priority -300; policy accept;\n");
    if !from_ports.is_empty() {
        let entries: Vec<String> = from_ports
            .iter()
            .map(|p| format!("{} : jump from-{}", quoted(&p.device), p.hash))
            .collect();
        let _ = writeln!(out, "\t\tiifname vmap {{ {} }}", entries.join(", "));
    }
    out.push_str("\t}\n");

    for port in &from_ports {
        let _ = writeln!(out, "\tchain from-{} {{", port.hash);
        if let Some(limit) = egress_limit(port.port) {
            let _ = writeln!(out, "\t\t{limit}");
        }
        if let (Some(number), Some(security)) = (port.number, &port.port.security) {
            let _ = writeln!(out, "\t\tmeta mark set 0x{:08x}", u32::from(number) << 16);
            anti_spoofing(out, security);
        }
        out.push_str("\t}\n");
    }

    out.push_str("\tchain forward {\n");
    out.push_str("\t\ttype filter hook forward priority -200; policy accept;\n");
    for network in &plan.networks {
        service_isolation(out, network);
    }
    if !to_ports.is_empty() {
        let entries: Vec<String> = to_ports
            .iter()
            .map(|p| format!("{} : jump to-{}", quoted(&p.device), p.hash))
            .collect();
        let _ = writeln!(out, "\t\toifname vmap {{ {} }}", entries.join(", "));
    }
    out.push_str("\t}\n");
    for port in &to_ports {
        if let Some(number) = port.number {
            let _ = writeln!(out, "\tchain to-{} {{", port.hash);
            let _ = writeln!(
                out,
                "\t\tmeta mark set meta mark & 0xffff0000 | 0x{:08x}",
                number
            );
            out.push_str("\t}\n");
        }
    }
    out.push_str("}\n");
}

/// A service port's frames never cross the uplink, either way, so each host's copy of the
/// distributed DHCP/metadata port only ever talks to local ports.
fn service_isolation(out: &mut String, network: &NetworkPlan) {
    let Some(service) = &network.service else {
        return;
    };
    let uplink = quoted(&network.uplink());
    let service_port = quoted(&names::service_host(&network.id));
    let mac = service.mac;
    let _ = writeln!(out, "\t\tiifname {uplink} ether saddr {mac} drop");
    let _ = writeln!(out, "\t\tiifname {uplink} ether daddr {mac} drop");
    let _ = writeln!(out, "\t\tiifname {uplink} oifname {service_port} drop");
    let _ = writeln!(out, "\t\toifname {uplink} ether saddr {mac} drop");
    let _ = writeln!(out, "\t\toifname {uplink} iifname {service_port} drop");
}

/// Stateless checks on frames from a secured port.
fn anti_spoofing(out: &mut String, security: &PortSecurity) {
    if security.allowed.is_empty() {
        // No allowed address at all: nothing may leave the port.
        out.push_str("\t\tdrop\n");
        return;
    }
    let macs: BTreeSet<_> = security.allowed.iter().map(|(mac, _)| *mac).collect();
    let mac_list: Vec<String> = macs.iter().map(|mac| mac.to_string()).collect();
    let _ = writeln!(out, "\t\tether saddr != {} drop", set(&mac_list));

    let mut arp_pairs: Vec<String> = Vec::new();
    let mut ipv4_pairs: Vec<String> = Vec::new();
    let mut ipv6_pairs: Vec<String> = Vec::new();
    for (mac, net) in &security.allowed {
        let pair = format!("{mac} . {}", prefix(&net.trunc_host_keep()));
        match net {
            IpNet::V4(_) => {
                arp_pairs.push(pair.clone());
                ipv4_pairs.push(pair);
            }
            IpNet::V6(_) => ipv6_pairs.push(pair),
        }
    }
    for mac in &macs {
        // ARP probes (RFC 5227) and IPv6 DAD use the unspecified address.
        arp_pairs.push(format!("{mac} . 0.0.0.0"));
        ipv6_pairs.push(format!("{mac} . {}", mac.ipv6_link_local()));
        ipv6_pairs.push(format!("{mac} . ::"));
    }
    dedup(&mut arp_pairs);
    dedup(&mut ipv4_pairs);
    dedup(&mut ipv6_pairs);
    let _ = writeln!(
        out,
        "\t\tether type arp arp saddr ether . arp saddr ip != {{ {} }} drop",
        arp_pairs.join(", ")
    );
    // DHCP discovers and requests come from 0.0.0.0 before the port has its address.
    out.push_str(
        "\t\tether type ip ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 return\n",
    );
    if ipv4_pairs.is_empty() {
        out.push_str("\t\tether type ip drop\n");
    } else {
        let _ = writeln!(
            out,
            "\t\tether type ip ether saddr . ip saddr != {{ {} }} drop",
            ipv4_pairs.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "\t\tether type ip6 ether saddr . ip6 saddr != {{ {} }} drop",
        ipv6_pairs.join(", ")
    );
    out.push_str("\t\tether type != { arp, ip, ip6 } drop\n");
    // A workload must not act as a DHCP server or an IPv6 router.
    out.push_str("\t\tether type ip udp sport 67 udp dport 68 drop\n");
    out.push_str("\t\tether type ip6 udp sport 547 udp dport 546 drop\n");
    out.push_str("\t\tether type ip6 icmpv6 type nd-router-advert drop\n");
}

/// Egress (from the workload) policing: frames over the rate are dropped as they arrive.
fn egress_limit(port: &PortPlan) -> Option<String> {
    let bandwidth = port.qos.as_ref()?.egress?;
    let rate = u64::from(bandwidth.max_kbps) * 125;
    let burst = u64::from(bandwidth.burst_kbit) * 125;
    Some(if burst == 0 {
        format!("limit rate over {rate} bytes/second drop")
    } else {
        format!("limit rate over {rate} bytes/second burst {burst} bytes drop")
    })
}

fn render_inet_table(out: &mut String, plan: &HostPlan, ports: &[PortChains<'_>]) {
    replace_table(out, "inet");
    out.push_str("\tchain zones {\n");
    out.push_str("\t\ttype filter hook prerouting priority raw; policy accept;\n");
    for network in &plan.networks {
        let _ = writeln!(
            out,
            "\t\tiifname {} ct zone set {}",
            quoted(&names::bridge(&network.id)),
            names::conntrack_zone(&network.id)
        );
    }
    out.push_str("\t}\n");

    let secured: Vec<&PortChains<'_>> = ports.iter().filter(|p| p.number.is_some()).collect();
    out.push_str("\tchain forward {\n");
    out.push_str("\t\ttype filter hook forward priority filter; policy accept;\n");
    if !secured.is_empty() {
        let from: Vec<String> = secured
            .iter()
            .filter_map(|p| {
                let number = p.number?;
                Some(format!(
                    "0x{:08x} : jump egress-{}",
                    u32::from(number) << 16,
                    p.hash
                ))
            })
            .collect();
        let to: Vec<String> = secured
            .iter()
            .filter_map(|p| {
                let number = p.number?;
                Some(format!("0x{number:08x} : jump ingress-{}", p.hash))
            })
            .collect();
        let _ = writeln!(
            out,
            "\t\tiifname \"rb-*\" meta mark & 0xffff0000 vmap {{ {} }}",
            from.join(", ")
        );
        let _ = writeln!(
            out,
            "\t\tiifname \"rb-*\" meta mark & 0x0000ffff vmap {{ {} }}",
            to.join(", ")
        );
        // The mark only carries port numbers between the two tables; clear it so it never
        // reaches the underlay's routing (a VXLAN packet inherits it).
        out.push_str("\t\tiifname \"rb-*\" meta mark set 0x00000000\n");
    }
    out.push_str("\t}\n");

    for port in &secured {
        let Some(security) = &port.port.security else {
            continue;
        };
        let _ = writeln!(out, "\tchain egress-{} {{", port.hash);
        let _ = writeln!(out, "\t\ticmpv6 type {{ {ND_FROM_PORT} }} return");
        out.push_str("\t\tct state invalid drop\n");
        out.push_str("\t\tct state established,related return\n");
        out.push_str("\t\tmeta nfproto ipv4 udp sport 68 udp dport 67 return\n");
        out.push_str("\t\tmeta nfproto ipv6 udp sport 546 udp dport 547 return\n");
        for rule in &security.egress {
            if let Some(matcher) = rule_matcher(rule, Direction::Egress) {
                let _ = writeln!(out, "\t\t{matcher} return");
            }
        }
        out.push_str("\t\tdrop\n");
        out.push_str("\t}\n");

        let _ = writeln!(out, "\tchain ingress-{} {{", port.hash);
        let _ = writeln!(out, "\t\ticmpv6 type {{ {ND_TO_PORT} }} return");
        out.push_str("\t\tct state invalid drop\n");
        out.push_str("\t\tct state established,related return\n");
        out.push_str("\t\tmeta nfproto ipv4 udp sport 67 udp dport 68 return\n");
        out.push_str("\t\tmeta nfproto ipv6 udp sport 547 udp dport 546 return\n");
        for rule in &security.ingress {
            if let Some(matcher) = rule_matcher(rule, Direction::Ingress) {
                let _ = writeln!(out, "\t\t{matcher} return");
            }
        }
        out.push_str("\t\tdrop\n");
        out.push_str("\t}\n");
    }
    out.push_str("}\n");
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Toward the port: the remote is the source.
    Ingress,
    /// From the port: the remote is the destination.
    Egress,
}

/// The match part of a security group rule, or None when it can match nothing (for
/// example an IPv6 rule whose remotes are all IPv4).
fn rule_matcher(rule: &Rule, direction: Direction) -> Option<String> {
    let mut parts = Vec::new();
    let (family, address) = match rule.ethertype {
        Ethertype::V4 => ("ipv4", "ip"),
        Ethertype::V6 => ("ipv6", "ip6"),
    };
    parts.push(format!("meta nfproto {family}"));
    if !rule.remote.is_empty() {
        let remotes: Vec<String> = rule
            .remote
            .iter()
            .filter(|net| {
                matches!(
                    (net, rule.ethertype),
                    (IpNet::V4(_), Ethertype::V4) | (IpNet::V6(_), Ethertype::V6)
                )
            })
            .map(|net| prefix(&net.trunc_host_keep()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if remotes.is_empty() {
            return None;
        }
        let side = match direction {
            Direction::Ingress => "saddr",
            Direction::Egress => "daddr",
        };
        parts.push(format!("{address} {side} {}", set(&remotes)));
    }
    let ports = rule.ports.map(|(a, b)| (a.min(b), a.max(b)));
    let range = |(low, high): (u16, u16)| {
        if low == high {
            low.to_string()
        } else {
            format!("{low}-{high}")
        }
    };
    match (rule.protocol, rule.ethertype) {
        (None, _) => {}
        (Some(Protocol::Tcp), _) => {
            parts.push("meta l4proto tcp".into());
            if let Some(ports) = ports {
                parts.push(format!("tcp dport {}", range(ports)));
            }
        }
        (Some(Protocol::Udp), _) => {
            parts.push("meta l4proto udp".into());
            if let Some(ports) = ports {
                parts.push(format!("udp dport {}", range(ports)));
            }
        }
        (Some(Protocol::Icmp), Ethertype::V4) => {
            parts.push("meta l4proto icmp".into());
            icmp_type_code(&mut parts, "icmp", rule.ports);
        }
        (Some(Protocol::Icmp | Protocol::Icmpv6), Ethertype::V6) => {
            parts.push("meta l4proto ipv6-icmp".into());
            icmp_type_code(&mut parts, "icmpv6", rule.ports);
        }
        (Some(Protocol::Icmpv6), Ethertype::V4) => return None,
        (Some(Protocol::Number(number)), _) => {
            parts.push(format!("meta l4proto {number}"));
            if let Some(ports) = ports {
                parts.push(format!("th dport {}", range(ports)));
            }
        }
    }
    Some(parts.join(" "))
}

/// Neutron's ICMP rules carry the type in the port range's minimum and the code in its
/// maximum.
fn icmp_type_code(parts: &mut Vec<String>, protocol: &str, ports: Option<(u16, u16)>) {
    let Some((icmp_type, code)) = ports else {
        return;
    };
    if icmp_type <= 255 {
        parts.push(format!("{protocol} type {icmp_type}"));
        if code <= 255 {
            parts.push(format!("{protocol} code {code}"));
        }
    }
}

fn dedup(items: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    items.retain(|item| seen.insert(item.clone()));
}

/// Keeps a prefix's address when it is a host route and truncates it otherwise, so
/// `10.0.0.5/32` stays an address and `10.0.1.7/24` becomes `10.0.1.0/24`.
trait TruncHostKeep {
    fn trunc_host_keep(&self) -> IpNet;
}

impl TruncHostKeep for IpNet {
    fn trunc_host_keep(&self) -> IpNet {
        if self.prefix_len() == self.max_prefix_len() {
            *self
        } else {
            self.trunc()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::plan::*;

    fn host_net(address: &str) -> IpNet {
        let ip: std::net::IpAddr = address.parse().unwrap();
        IpNet::from(ip)
    }

    fn mac(text: &str) -> MacAddr {
        text.parse().unwrap()
    }

    fn port(id: &str, mac_text: &str, ip: &str, security: Option<PortSecurity>) -> PortPlan {
        PortPlan {
            id: id.into(),
            mac: mac(mac_text),
            addresses: vec![format!("{ip}/24").parse().unwrap()],
            gateway: None,
            routes: vec![],
            attachment: Attachment::Veth {
                netns: "/run/netns/pod".into(),
                ifname: "eth0".into(),
            },
            security,
            qos: None,
        }
    }

    fn plan(ports: Vec<PortPlan>, service: Option<ServicePlan>) -> HostPlan {
        HostPlan {
            tunnel_ip: Ipv4Addr::new(10, 77, 0, 1),
            networks: vec![NetworkPlan {
                id: "net-a".into(),
                segment: Segment::Vxlan { vni: 100 },
                mtu: 1450,
                remote_vteps: vec![],
                remote_macs: vec![],
                service,
                ports,
            }],
            routers: vec![],
        }
    }

    fn tcp_80() -> Rule {
        Rule {
            ethertype: Ethertype::V4,
            protocol: Some(Protocol::Tcp),
            ports: Some((80, 80)),
            remote: vec![],
        }
    }

    #[test]
    fn unsecured_ports_get_no_chains() {
        let text = render_host(&plan(
            vec![port("p1", "fa:16:3e:00:00:01", "10.0.0.5", None)],
            None,
        ));
        assert!(text.starts_with("table bridge ronghe\ndelete table bridge ronghe\n"));
        assert!(text.contains("table inet ronghe\ndelete table inet ronghe\n"));
        assert!(!text.contains("jump"), "{text}");
        assert!(text.contains(&format!(
            "iifname \"{}\" ct zone set {}",
            names::bridge("net-a"),
            names::conntrack_zone("net-a")
        )));
    }

    #[test]
    fn secured_ports_are_numbered_and_dispatched_by_mark() {
        let security = PortSecurity {
            allowed: vec![
                (mac("fa:16:3e:00:00:01"), host_net("10.0.0.5")),
                (mac("fa:16:3e:00:00:01"), "10.0.1.7/24".parse().unwrap()),
            ],
            ingress: vec![tcp_80()],
            egress: vec![
                Rule {
                    ethertype: Ethertype::V4,
                    protocol: None,
                    ports: None,
                    remote: vec![],
                },
                Rule {
                    ethertype: Ethertype::V6,
                    protocol: None,
                    ports: None,
                    remote: vec![],
                },
            ],
        };
        let p1 = port("p1", "fa:16:3e:00:00:01", "10.0.0.5", Some(security));
        let p2 = port("p2", "fa:16:3e:00:00:02", "10.0.0.6", None);
        let text = render_host(&plan(vec![p1, p2], None));
        let h = names::short_hash(&["p1"]);
        let dev = names::port_host("p1");
        assert!(
            text.contains(&format!("iifname vmap {{ \"{dev}\" : jump from-{h} }}")),
            "{text}"
        );
        assert!(
            text.contains(&format!("oifname vmap {{ \"{dev}\" : jump to-{h} }}")),
            "{text}"
        );
        assert!(text.contains(&format!("chain from-{h} {{\n\t\tmeta mark set 0x00010000\n\t\tether saddr != fa:16:3e:00:00:01 drop\n")), "{text}");
        assert!(text.contains("ether type arp arp saddr ether . arp saddr ip != { fa:16:3e:00:00:01 . 10.0.0.5, fa:16:3e:00:00:01 . 10.0.1.0/24, fa:16:3e:00:00:01 . 0.0.0.0 } drop"), "{text}");
        assert!(text.contains("ether type ip ether saddr . ip saddr != { fa:16:3e:00:00:01 . 10.0.0.5, fa:16:3e:00:00:01 . 10.0.1.0/24 } drop"), "{text}");
        assert!(
            text.contains("fa:16:3e:00:00:01 . fe80::f816:3eff:fe00:1"),
            "{text}"
        );
        assert!(text.contains("ether type ip udp sport 67 udp dport 68 drop"));
        assert!(text.contains("ether type ip6 icmpv6 type nd-router-advert drop"));
        assert!(text.contains(&format!(
            "chain to-{h} {{\n\t\tmeta mark set meta mark & 0xffff0000 | 0x00000001\n"
        )));
        assert!(
            text.contains(&format!(
                "meta mark & 0xffff0000 vmap {{ 0x00010000 : jump egress-{h} }}"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "meta mark & 0x0000ffff vmap {{ 0x00000001 : jump ingress-{h} }}"
            )),
            "{text}"
        );
        let ingress = text.split(&format!("chain ingress-{h} {{")).nth(1).unwrap();
        let ingress = ingress.split("\t}").next().unwrap();
        assert_eq!(
            ingress,
            "\n\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, mld-listener-query } return\n\
             \t\tct state invalid drop\n\
             \t\tct state established,related return\n\
             \t\tmeta nfproto ipv4 udp sport 67 udp dport 68 return\n\
             \t\tmeta nfproto ipv6 udp sport 547 udp dport 546 return\n\
             \t\tmeta nfproto ipv4 meta l4proto tcp tcp dport 80 return\n\
             \t\tdrop\n"
        );
        let egress = text.split(&format!("chain egress-{h} {{")).nth(1).unwrap();
        assert!(
            egress
                .contains("\t\tmeta nfproto ipv4 return\n\t\tmeta nfproto ipv6 return\n\t\tdrop\n")
        );
        // The unsecured port has no chain of its own.
        assert!(!text.contains(&names::short_hash(&["p2"])));
    }

    #[test]
    fn rules_render_remotes_protocols_and_ranges() {
        let rule = Rule {
            ethertype: Ethertype::V4,
            protocol: Some(Protocol::Udp),
            ports: Some((5001, 5000)),
            remote: vec!["10.1.2.3/16".parse().unwrap(), "fd00::/64".parse().unwrap()],
        };
        assert_eq!(
            rule_matcher(&rule, Direction::Ingress).unwrap(),
            "meta nfproto ipv4 ip saddr 10.1.0.0/16 meta l4proto udp udp dport 5000-5001"
        );
        let v6_only = Rule {
            ethertype: Ethertype::V6,
            remote: vec!["10.0.0.0/8".parse().unwrap()],
            ..rule.clone()
        };
        assert_eq!(rule_matcher(&v6_only, Direction::Egress), None);
        let icmp = Rule {
            ethertype: Ethertype::V4,
            protocol: Some(Protocol::Icmp),
            ports: Some((8, 256)),
            remote: vec![],
        };
        assert_eq!(
            rule_matcher(&icmp, Direction::Ingress).unwrap(),
            "meta nfproto ipv4 meta l4proto icmp icmp type 8"
        );
        let icmp6 = Rule {
            ethertype: Ethertype::V6,
            protocol: Some(Protocol::Icmp),
            ports: None,
            remote: vec!["fd00::1/128".parse().unwrap()],
        };
        assert_eq!(
            rule_matcher(&icmp6, Direction::Egress).unwrap(),
            "meta nfproto ipv6 ip6 daddr fd00::1 meta l4proto ipv6-icmp"
        );
        let sctp = Rule {
            ethertype: Ethertype::V4,
            protocol: Some(Protocol::Number(132)),
            ports: Some((9, 9)),
            remote: vec![],
        };
        assert_eq!(
            rule_matcher(&sctp, Direction::Egress).unwrap(),
            "meta nfproto ipv4 meta l4proto 132 th dport 9"
        );
    }

    #[test]
    fn service_ports_are_fenced_from_the_uplink() {
        let service = ServicePlan {
            mac: mac("fa:16:3e:99:00:02"),
            addresses: vec!["10.0.0.2/24".parse().unwrap()],
            dhcp: vec![],
            hosts: vec![],
        };
        let text = render_host(&plan(vec![], Some(service)));
        let uplink = names::vxlan("net-a");
        let service_port = names::service_host("net-a");
        for line in [
            format!("iifname \"{uplink}\" ether saddr fa:16:3e:99:00:02 drop"),
            format!("iifname \"{uplink}\" ether daddr fa:16:3e:99:00:02 drop"),
            format!("iifname \"{uplink}\" oifname \"{service_port}\" drop"),
            format!("oifname \"{uplink}\" ether saddr fa:16:3e:99:00:02 drop"),
            format!("oifname \"{uplink}\" iifname \"{service_port}\" drop"),
        ] {
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn egress_qos_polices_without_security() {
        let mut p = port("p1", "fa:16:3e:00:00:01", "10.0.0.5", None);
        p.qos = Some(Qos {
            egress: Some(Bandwidth {
                max_kbps: 1000,
                burst_kbit: 100,
            }),
            ingress: None,
        });
        let text = render_host(&plan(vec![p], None));
        let h = names::short_hash(&["p1"]);
        assert!(text.contains(&format!("chain from-{h} {{\n\t\tlimit rate over 125000 bytes/second burst 12500 bytes drop\n\t}}")), "{text}");
        assert!(!text.contains("jump to-"));
    }

    #[test]
    fn a_secured_port_without_allowed_addresses_sends_nothing() {
        let p = port(
            "p1",
            "fa:16:3e:00:00:01",
            "10.0.0.5",
            Some(PortSecurity::default()),
        );
        let text = render_host(&plan(vec![p], None));
        assert!(
            text.contains("meta mark set 0x00010000\n\t\tdrop\n"),
            "{text}"
        );
    }
}
