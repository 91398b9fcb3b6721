//! A legacy router in its own netns: a veth from each network's bridge (`rr-…` on the
//! bridge, `qr-…` inside), a gateway on the external network (`rg-…`/`qg-…`) carrying the
//! gateway address and every floating IP as /32 (so it answers ARP for them, and announces
//! them by gratuitous ARP as they come up here), forwarding on, routes, and NAT from
//! `nft::render_router`.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::HostNetError;
use crate::linux::LinuxConfig;
use crate::linux::announce::announce;
use crate::linux::firewall::{self, InstalledRulesets};
use crate::linux::veth::{
    StaticRoute, Target, VethSpec, converge_addresses, converge_routes, default_route, plug,
};
use crate::names;
use crate::netlink::Netlink;
use crate::netns::{ensure_named, named_path, set_sysctl};
use crate::plan::{HostPlan, RouterPlan};
use crate::{Action, Applied};

pub(crate) async fn ensure_router(
    config: &LinuxConfig,
    host: &Netlink,
    plan: &HostPlan,
    router: &RouterPlan,
    installed: &mut InstalledRulesets,
    applied: &mut Applied,
) -> Result<(), HostNetError> {
    let netns_name = names::router_netns(&config.prefix, &router.id);
    let created = ensure_named(&netns_name).await?;
    if created {
        applied.record(Action::Created, format!("netns {netns_name}"));
    }
    let netns_path = named_path(&netns_name);
    let file = std::fs::File::open(&netns_path)
        .map_err(HostNetError::io(format!("opening netns {netns_name}")))?;
    let inner = Netlink::open(Some(&netns_path)).await?;
    inner.bring_up_loopback().await?;
    if set_sysctl(Some(netns_path.clone()), "net.ipv4.ip_forward", "1").await? && !created {
        applied.record(Action::Repaired, format!("router {} forwarding", router.id));
    }
    let host_links = host.links().await?;
    let bridge_of = |network_id: &str| {
        let name = names::bridge(network_id);
        host_links
            .iter()
            .find(|link| link.name == name)
            .map(|link| link.index)
            .ok_or_else(|| HostNetError::Unexpected {
                object: format!("router {}", router.id),
                reason: format!("the bridge of network {network_id} does not exist"),
            })
    };

    let mut wanted_inner = BTreeSet::new();
    // (link index, its connected prefix) for picking the output link of a route.
    let mut connected: Vec<(u32, IpNet)> = Vec::new();
    for interface in &router.interfaces {
        let network =
            plan.network(&interface.network_id)
                .ok_or_else(|| HostNetError::Unexpected {
                    object: format!("router {}", router.id),
                    reason: format!("network {} is not in the plan", interface.network_id),
                })?;
        let host_name = names::router_interface_host(&router.id, &network.id);
        let inner_name = names::router_interface_inner(&router.id, &network.id);
        let object = format!("router {} interface on {}", router.id, network.id);
        let index = plug(
            host,
            &VethSpec {
                host_name: &host_name,
                temp_name: &inner_name,
                inner_name: &inner_name,
                mac: interface.mac,
                mtu: network.mtu,
                bridge: bridge_of(&network.id)?,
                alias: names::alias("router-interface", &format!("{}/{}", router.id, network.id)),
                object: object.clone(),
            },
            &Target {
                netlink: &inner,
                file: &file,
            },
            applied,
        )
        .await?;
        // Tenant networks' MACs are known to every VTEP (or learnt from the first frame
        // on a flat one): no announcement.
        converge_addresses(&inner, index, &[interface.address], applied, &object).await?;
        wanted_inner.insert(inner_name);
        connected.push((index, interface.address.trunc()));
    }

    let mut gateway_index = None;
    if let Some(gateway) = &router.gateway {
        let network =
            plan.network(&gateway.network_id)
                .ok_or_else(|| HostNetError::Unexpected {
                    object: format!("router {}", router.id),
                    reason: format!("network {} is not in the plan", gateway.network_id),
                })?;
        let host_name = names::router_gateway_host(&router.id);
        let inner_name = names::router_gateway_inner(&router.id);
        let object = format!("router {} gateway", router.id);
        let index = plug(
            host,
            &VethSpec {
                host_name: &host_name,
                temp_name: &inner_name,
                inner_name: &inner_name,
                mac: gateway.mac,
                mtu: network.mtu,
                bridge: bridge_of(&network.id)?,
                alias: names::alias("router-gateway", &router.id),
                object: object.clone(),
            },
            &Target {
                netlink: &inner,
                file: &file,
            },
            applied,
        )
        .await?;
        let mut addresses = vec![gateway.address];
        let floating = router
            .floating_ips
            .iter()
            .map(|f| f.floating)
            .chain(router.port_forwardings.iter().map(|p| p.floating));
        for ip in floating {
            let net = IpNet::from(IpAddr::V4(ip));
            if !addresses.contains(&net) && gateway.address.addr() != IpAddr::V4(ip) {
                addresses.push(net);
            }
        }
        let added = converge_addresses(&inner, index, &addresses, applied, &object).await?;
        announce(netns_path.clone(), &inner_name, &added);
        wanted_inner.insert(inner_name);
        connected.push((index, gateway.address.trunc()));
        gateway_index = Some(index);
    }

    // Interfaces of networks the router left.
    for link in inner.links().await? {
        let ours = link.name.starts_with("qr-") || link.name.starts_with("qg-");
        if ours && !wanted_inner.contains(&link.name) {
            inner.delete_link(link.index).await?;
            applied.record(
                Action::Removed,
                format!("router {} interface {}", router.id, link.name),
            );
        }
    }

    let mut routes = Vec::new();
    if let (Some(gateway), Some(index)) = (&router.gateway, gateway_index)
        && let Some(next_hop) = gateway.next_hop
    {
        routes.push(StaticRoute {
            destination: default_route(next_hop),
            gateway: next_hop,
            output: index,
        });
    }
    for (destination, via) in &router.routes {
        let output = connected
            .iter()
            .find(|(_, prefix)| prefix.contains(via))
            .map(|(index, _)| *index)
            .ok_or_else(|| HostNetError::Unexpected {
                object: format!("router {}", router.id),
                reason: format!("no interface reaches the next hop {via} of route {destination}"),
            })?;
        routes.push(StaticRoute {
            destination: *destination,
            gateway: *via,
            output,
        });
    }
    let managed: Vec<u32> = connected.iter().map(|(index, _)| *index).collect();
    converge_routes(
        &inner,
        &managed,
        &routes,
        applied,
        &format!("router {}", router.id),
    )
    .await?;

    let rendered = crate::nft::render_router(router);
    if firewall::sync(
        installed,
        &netns_name,
        Some(&netns_path),
        &["ip"],
        &rendered,
    )
    .await?
    {
        let action = if created {
            Action::Created
        } else {
            Action::Repaired
        };
        applied.record(
            action,
            format!("nft ip {} in {netns_name}", names::NFT_TABLE),
        );
    }
    Ok(())
}
