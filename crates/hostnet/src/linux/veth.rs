//! Plumbing shared by pods, service ports and routers: a veth whose host side is on a
//! bridge and whose other side lives in another netns, and converging a link's addresses
//! and a namespace's static routes to a desired list.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::IpAddr;

use ipnet::IpNet;
use rtnetlink::packet_route::route::RouteProtocol;

use crate::error::HostNetError;
use crate::netlink::{LinkChange, LinkKind, Netlink};
use crate::plan::MacAddr;
use crate::{Action, Applied};

/// A veth from a bridge into another namespace.
pub(crate) struct VethSpec<'a> {
    /// The host side, enslaved to `bridge`.
    pub host_name: &'a str,
    /// The other side's name while it is still in the host netns.
    pub temp_name: &'a str,
    /// The other side's name in its namespace.
    pub inner_name: &'a str,
    /// The other side's MAC (the workload's, the service's, the router's).
    pub mac: MacAddr,
    pub mtu: u32,
    pub bridge: u32,
    /// Written on both ends so either is recognisable as Ronghe's.
    pub alias: String,
    /// How changes are reported ("port <id>", "router <id> interface <net>").
    pub object: String,
}

/// The namespace the veth's other side goes into.
pub(crate) struct Target<'a> {
    pub netlink: &'a Netlink,
    pub file: &'a File,
}

/// Makes the veth exist and match `spec`; returns the index of the inner side. A pair
/// that is whole is only adjusted, never recreated.
pub(crate) async fn plug(
    host: &Netlink,
    spec: &VethSpec<'_>,
    target: &Target<'_>,
    applied: &mut Applied,
) -> Result<u32, HostNetError> {
    let host_link = host.link(spec.host_name).await?;
    let inner_link = target.netlink.link(spec.inner_name).await?;
    let whole = host_link.as_ref().is_some_and(|l| l.kind == LinkKind::Veth)
        && inner_link
            .as_ref()
            .is_some_and(|l| l.kind == LinkKind::Veth);
    let mut created = false;
    if !whole {
        if let Some(inner) = &inner_link {
            let ours = inner
                .alias
                .as_deref()
                .is_some_and(|alias| alias == spec.alias);
            if !ours {
                return Err(HostNetError::Unexpected {
                    object: spec.object.clone(),
                    reason: format!(
                        "its namespace already has a device {} that Ronghe did not make",
                        spec.inner_name
                    ),
                });
            }
            target.netlink.delete_link(inner.index).await?;
        }
        if let Some(stale) = host.link(spec.host_name).await? {
            host.delete_link(stale.index).await?;
        }
        if let Some(stale) = host.link(spec.temp_name).await? {
            host.delete_link(stale.index).await?;
        }
        host.add_veth(spec.host_name, spec.temp_name, spec.mtu)
            .await?;
        let peer = host
            .link(spec.temp_name)
            .await?
            .ok_or_else(|| missing(spec, spec.temp_name))?;
        host.set_link(
            peer.index,
            &LinkChange {
                mac: Some(spec.mac),
                alias: Some(spec.alias.clone()),
                ..LinkChange::default()
            },
        )
        .await?;
        host.move_to_netns(peer.index, target.file).await?;
        if spec.temp_name != spec.inner_name {
            let moved = target
                .netlink
                .link(spec.temp_name)
                .await?
                .ok_or_else(|| missing(spec, spec.temp_name))?;
            target
                .netlink
                .set_link(
                    moved.index,
                    &LinkChange {
                        name: Some(spec.inner_name.to_string()),
                        ..LinkChange::default()
                    },
                )
                .await?;
        }
        let action = if host_link.is_some() || inner_link.is_some() {
            Action::Repaired
        } else {
            Action::Created
        };
        applied.record(action, spec.object.clone());
        created = true;
    }

    let host_link = host
        .link(spec.host_name)
        .await?
        .ok_or_else(|| missing(spec, spec.host_name))?;
    let change = LinkChange {
        up: (!host_link.up).then_some(true),
        mtu: (host_link.mtu != spec.mtu).then_some(spec.mtu),
        controller: (host_link.controller != Some(spec.bridge)).then_some(spec.bridge),
        alias: (host_link.alias.as_deref() != Some(spec.alias.as_str()))
            .then(|| spec.alias.clone()),
        ..LinkChange::default()
    };
    if !change.is_empty() {
        host.set_link(host_link.index, &change).await?;
        if !created {
            applied.record(Action::Repaired, format!("{} host side", spec.object));
        }
    }

    let inner = target
        .netlink
        .link(spec.inner_name)
        .await?
        .ok_or_else(|| missing(spec, spec.inner_name))?;
    let change = LinkChange {
        up: (!inner.up).then_some(true),
        mtu: (inner.mtu != spec.mtu).then_some(spec.mtu),
        mac: (inner.mac != Some(spec.mac)).then_some(spec.mac),
        alias: (inner.alias.as_deref() != Some(spec.alias.as_str())).then(|| spec.alias.clone()),
        ..LinkChange::default()
    };
    if !change.is_empty() {
        target.netlink.set_link(inner.index, &change).await?;
        if !created {
            applied.record(Action::Repaired, format!("{} inner side", spec.object));
        }
    }
    Ok(inner.index)
}

fn missing(spec: &VethSpec<'_>, name: &str) -> HostNetError {
    HostNetError::Unexpected {
        object: spec.object.clone(),
        reason: format!("{name} vanished while it was being set up"),
    }
}

/// Makes the addresses of link `index` exactly `desired` (kernel-made IPv6 link-local
/// addresses are left alone); returns the ones it added.
pub(crate) async fn converge_addresses(
    netlink: &Netlink,
    index: u32,
    desired: &[IpNet],
    applied: &mut Applied,
    object: &str,
) -> Result<Vec<IpNet>, HostNetError> {
    let current: BTreeSet<IpNet> = netlink
        .addresses(index)
        .await?
        .into_iter()
        .filter(|net| !is_ipv6_link_local(net))
        .collect();
    let desired: BTreeSet<IpNet> = desired.iter().copied().collect();
    let mut added = Vec::new();
    for address in desired.difference(&current) {
        netlink.add_address(index, *address).await?;
        applied.record(Action::Repaired, format!("{object} address {address}"));
        added.push(*address);
    }
    for address in current.difference(&desired) {
        netlink.delete_address(index, *address).await?;
        applied.record(Action::Removed, format!("{object} address {address}"));
    }
    Ok(added)
}

fn is_ipv6_link_local(net: &IpNet) -> bool {
    matches!(net, IpNet::V6(v6) if v6.addr().segments()[0] & 0xffc0 == 0xfe80)
}

/// A static route: destination, gateway, output link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct StaticRoute {
    pub destination: IpNet,
    pub gateway: IpAddr,
    pub output: u32,
}

/// Makes the gatewayed static routes through `managed` links exactly `desired`. Routes the
/// kernel made (connected subnets) are not gatewayed and are left alone.
pub(crate) async fn converge_routes(
    netlink: &Netlink,
    managed: &[u32],
    desired: &[StaticRoute],
    applied: &mut Applied,
    object: &str,
) -> Result<(), HostNetError> {
    let routes = netlink.routes().await?;
    let current: Vec<_> = routes
        .iter()
        .filter(|route| {
            route.gateway.is_some()
                && route.output.is_some_and(|index| managed.contains(&index))
                && matches!(route.protocol, RouteProtocol::Static | RouteProtocol::Boot)
        })
        .collect();
    let key = |destination: IpNet, gateway: IpAddr| (destination.trunc(), gateway);
    let current_keys: BTreeSet<_> = current
        .iter()
        .filter_map(|route| Some(key(route.destination, route.gateway?)))
        .collect();
    let desired_keys: BTreeSet<_> = desired
        .iter()
        .map(|route| key(route.destination, route.gateway))
        .collect();
    for route in current {
        if let Some(gateway) = route.gateway
            && !desired_keys.contains(&key(route.destination, gateway))
        {
            netlink.delete_route(route).await?;
            applied.record(
                Action::Removed,
                format!("{object} route {} via {gateway}", route.destination),
            );
        }
    }
    let mut added = BTreeSet::new();
    for route in desired {
        let route_key = key(route.destination, route.gateway);
        if current_keys.contains(&route_key) || !added.insert(route_key) {
            continue;
        }
        netlink
            .add_route(route.output, route.destination.trunc(), Some(route.gateway))
            .await?;
        applied.record(
            Action::Repaired,
            format!("{object} route {} via {}", route.destination, route.gateway),
        );
    }
    Ok(())
}

/// The default route of a gateway's family.
pub(crate) fn default_route(gateway: IpAddr) -> IpNet {
    match gateway {
        IpAddr::V4(_) => IpNet::V4(ipnet::Ipv4Net::default()),
        IpAddr::V6(_) => IpNet::V6(ipnet::Ipv6Net::default()),
    }
}
