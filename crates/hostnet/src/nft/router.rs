//! A router netns's NAT as `table ip ronghe`: port forwardings and floating IPs DNAT on
//! the way in, floating IPs and (with `snat`) the internal subnets SNAT on the way out by
//! the gateway, and hairpin traffic (an internal client reaching a floating IP of its own
//! side) masqueraded so the reply comes back through the router.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use ipnet::IpNet;

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
            }],
            port_forwardings: vec![PortForwarding {
                protocol: ForwardProtocol::Tcp,
                floating: "172.24.4.21".parse().unwrap(),
                external_port: 8080,
                internal: "10.0.0.5".parse().unwrap(),
                internal_port: 80,
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
}
