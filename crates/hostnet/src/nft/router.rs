//! A router netns's NAT as `table ip ronghe`: port forwardings and floating IPs DNAT on
//! the way in, floating IPs and (with `snat`) the internal subnets SNAT on the way out by
//! the gateway, and hairpin traffic (an internal client reaching a floating IP of its own
//! side) masqueraded so the reply comes back through the router; before the DNAT, a
//! filter chain turns away new connections to a floating IP limited to some sources
//! from the others.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};

use super::{quoted, replace_table, set};
use crate::names;
use crate::plan::{ForwardProtocol, RouterPlan};

/// Renders the NAT table of `router`.
pub fn render_router(router: &RouterPlan) -> String {
    let mut out = String::new();
    replace_table(&mut out, "ip");
    let gateway_device = quoted(&names::router_gateway_inner(&router.id));
    let internal: Vec<String> = router
        .interfaces
        .iter()
        .filter_map(|interface| match interface.address {
            IpNet::V4(net) => Some(net.trunc().to_string()),
            IpNet::V6(_) => None,
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    // Floating IPs open to some sources only turn the others away before their DNAT (new
    // connections only: replies to the fixed address's own connections come in).
    let limited: BTreeMap<Ipv4Addr, &Vec<Ipv4Net>> = router
        .floating_ips
        .iter()
        .filter_map(|floating| floating.sources.as_ref().map(|s| (floating.floating, s)))
        .chain(router.port_forwardings.iter().filter_map(|forwarding| {
            forwarding
                .sources
                .as_ref()
                .map(|s| (forwarding.floating, s))
        }))
        .collect();
    if !limited.is_empty() {
        out.push_str("\tchain sources {\n");
        out.push_str("\t\ttype filter hook prerouting priority dstnat - 10; policy accept;\n");
        for (floating, sources) in limited {
            let sources: Vec<String> = sources
                .iter()
                .map(|net| net.trunc().to_string())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            if sources.is_empty() {
                let _ = writeln!(out, "\t\tip daddr {floating} ct state new drop");
            } else {
                let _ = writeln!(
                    out,
                    "\t\tip daddr {floating} ct state new ip saddr != {} drop",
                    set(&sources)
                );
            }
        }
        out.push_str("\t}\n");
    }

    out.push_str("\tchain prerouting {\n");
    out.push_str("\t\ttype nat hook prerouting priority dstnat; policy accept;\n");
    // Port forwardings first: they are more specific than a floating IP's 1:1 NAT.
    for forwarding in &router.port_forwardings {
        let protocol = match forwarding.protocol {
            ForwardProtocol::Tcp => "tcp",
            ForwardProtocol::Udp => "udp",
        };
        let _ = writeln!(
            out,
            "\t\tip daddr {} {protocol} dport {} dnat to {}:{}",
            forwarding.floating,
            forwarding.external_port,
            forwarding.internal,
            forwarding.internal_port
        );
    }
    for floating in &router.floating_ips {
        let _ = writeln!(
            out,
            "\t\tip daddr {} dnat to {}",
            floating.floating, floating.fixed
        );
    }
    out.push_str("\t}\n");

    out.push_str("\tchain postrouting {\n");
    out.push_str("\t\ttype nat hook postrouting priority srcnat; policy accept;\n");
    let has_dnat = !router.floating_ips.is_empty() || !router.port_forwardings.is_empty();
    if has_dnat && !internal.is_empty() {
        let _ = writeln!(
            out,
            "\t\toifname != {gateway_device} ip saddr {} ct status dnat masquerade",
            set(&internal)
        );
    }
    if let Some(gateway) = &router.gateway {
        for floating in &router.floating_ips {
            let _ = writeln!(
                out,
                "\t\toifname {gateway_device} ip saddr {} snat to {}",
                floating.fixed, floating.floating
            );
        }
        if let (true, IpNet::V4(address), false) =
            (gateway.snat, gateway.address, internal.is_empty())
        {
            let _ = writeln!(
                out,
                "\t\toifname {gateway_device} ip saddr {} snat to {}",
                set(&internal),
                address.addr()
            );
        }
    }
    out.push_str("\t}\n");
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::*;

    #[test]
    fn nat_rules_in_order() {
        let router = RouterPlan {
            id: "r1".into(),
            interfaces: vec![RouterInterface {
                network_id: "n1".into(),
                mac: MacAddr::ZERO,
                address: "10.0.0.1/24".parse().unwrap(),
            }],
            gateway: Some(RouterGateway {
                network_id: "ext".into(),
                mac: MacAddr::ZERO,
                address: "172.24.4.10/24".parse().unwrap(),
                next_hop: Some("172.24.4.1".parse().unwrap()),
                snat: true,
            }),
            floating_ips: vec![FloatingIp {
                floating: "172.24.4.20".parse().unwrap(),
                fixed: "10.0.0.6".parse().unwrap(),
                sources: None,
            }],
            port_forwardings: vec![PortForwarding {
                protocol: ForwardProtocol::Tcp,
                floating: "172.24.4.21".parse().unwrap(),
                external_port: 8080,
                internal: "10.0.0.5".parse().unwrap(),
                internal_port: 80,
                sources: None,
            }],
            routes: vec![],
        };
        let qg = names::router_gateway_inner("r1");
        let expected = format!(
            "table ip ronghe\n\
             delete table ip ronghe\n\
             table ip ronghe {{\n\
             \tchain prerouting {{\n\
             \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
             \t\tip daddr 172.24.4.21 tcp dport 8080 dnat to 10.0.0.5:80\n\
             \t\tip daddr 172.24.4.20 dnat to 10.0.0.6\n\
             \t}}\n\
             \tchain postrouting {{\n\
             \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
             \t\toifname != \"{qg}\" ip saddr 10.0.0.0/24 ct status dnat masquerade\n\
             \t\toifname \"{qg}\" ip saddr 10.0.0.6 snat to 172.24.4.20\n\
             \t\toifname \"{qg}\" ip saddr 10.0.0.0/24 snat to 172.24.4.10\n\
             \t}}\n\
             }}\n"
        );
        assert_eq!(render_router(&router), expected);

        let no_snat = RouterPlan {
            gateway: router
                .gateway
                .clone()
                .map(|g| RouterGateway { snat: false, ..g }),
            floating_ips: vec![],
            port_forwardings: vec![],
            ..router
        };
        let text = render_router(&no_snat);
        assert!(!text.contains("snat to"), "{text}");
        assert!(!text.contains("masquerade"), "{text}");
    }

    #[test]
    fn a_floating_ip_open_to_some_sources_turns_the_others_away_before_its_dnat() {
        let floating = |last: u8, sources: Option<&[&str]>| FloatingIp {
            floating: [172, 24, 4, last].into(),
            fixed: [10, 0, 0, last].into(),
            sources: sources.map(|s| s.iter().map(|n| n.parse().unwrap()).collect()),
        };
        let router = RouterPlan {
            id: "r1".into(),
            interfaces: vec![],
            gateway: None,
            floating_ips: vec![
                floating(20, None),
                floating(21, Some(&["192.0.2.7/24", "198.51.100.0/25"])),
                floating(22, Some(&["203.0.113.9/32"])),
                floating(23, Some(&[])),
            ],
            port_forwardings: vec![PortForwarding {
                protocol: ForwardProtocol::Udp,
                floating: [172, 24, 4, 24].into(),
                external_port: 53,
                internal: [10, 0, 0, 24].into(),
                internal_port: 53,
                sources: Some(vec!["192.0.2.0/24".parse().unwrap()]),
            }],
            routes: vec![],
        };
        let text = render_router(&router);
        let sources = "\tchain sources {\n\
             \t\ttype filter hook prerouting priority dstnat - 10; policy accept;\n\
             \t\tip daddr 172.24.4.21 ct state new ip saddr != { 192.0.2.0/24, 198.51.100.0/25 } drop\n\
             \t\tip daddr 172.24.4.22 ct state new ip saddr != 203.0.113.9/32 drop\n\
             \t\tip daddr 172.24.4.23 ct state new drop\n\
             \t\tip daddr 172.24.4.24 ct state new ip saddr != 192.0.2.0/24 drop\n\
             \t}\n\
             \tchain prerouting {\n";
        assert!(text.contains(sources), "{text}");
        assert!(
            text.contains("ip daddr 172.24.4.21 dnat to 10.0.0.21"),
            "{text}"
        );

        let open = RouterPlan {
            floating_ips: vec![floating(20, None)],
            port_forwardings: vec![],
            ..router
        };
        assert!(!render_router(&open).contains("chain sources"));
    }
}
