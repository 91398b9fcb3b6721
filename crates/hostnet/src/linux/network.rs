//! One network's layer 2 in the host netns: its bridge, its uplink (a VXLAN device with
//! static forwarding entries, or a flat host interface) and the release of foreign
//! devices that should no longer be on the bridge.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::error::HostNetError;
use crate::linux::LinuxConfig;
use crate::names;
use crate::netlink::{FdbEntry, Link, LinkChange, LinkKind, Netlink};
use crate::plan::{HostPlan, MacAddr, NetworkPlan, Segment};
use crate::{Action, Applied};

/// Makes the network's bridge and uplink match; returns the bridge's index.
pub(crate) async fn ensure_network(
    config: &LinuxConfig,
    host: &Netlink,
    plan: &HostPlan,
    network: &NetworkPlan,
    applied: &mut Applied,
) -> Result<u32, HostNetError> {
    let bridge = ensure_bridge(host, network, applied).await?;
    match &network.segment {
        Segment::Vxlan { vni } => {
            let vxlan = ensure_vxlan(config, host, plan, network, *vni, bridge, applied).await?;
            ensure_fdb(host, network, vxlan, applied).await?;
        }
        Segment::Flat { interface } => {
            let link = host
                .link(interface)
                .await?
                .ok_or_else(|| HostNetError::Unexpected {
                    object: format!("network {}", network.id),
                    reason: format!("its flat interface {interface} does not exist"),
                })?;
            let change = LinkChange {
                up: (!link.up).then_some(true),
                controller: (link.controller != Some(bridge)).then_some(bridge),
                ..LinkChange::default()
            };
            if !change.is_empty() {
                host.set_link(link.index, &change).await?;
                applied.record(
                    Action::Repaired,
                    format!(
                        "flat interface {interface} on {}",
                        names::bridge(&network.id)
                    ),
                );
            }
        }
    }
    Ok(bridge)
}

async fn ensure_bridge(
    host: &Netlink,
    network: &NetworkPlan,
    applied: &mut Applied,
) -> Result<u32, HostNetError> {
    let name = names::bridge(&network.id);
    let alias = names::alias("bridge", &network.id);
    let mut existing = host.link(&name).await?;
    if let Some(link) = existing.as_ref().filter(|l| l.kind != LinkKind::Bridge) {
        host.delete_link(link.index).await?;
        applied.record(Action::Removed, format!("non-bridge {name}"));
        existing = None;
    }
    let created = existing.is_none();
    if created {
        host.add_bridge(&name, network.mtu).await?;
        applied.record(Action::Created, format!("bridge {name}"));
    }
    let link = required(host, &name).await?;
    let change = LinkChange {
        up: (!link.up).then_some(true),
        mtu: (link.mtu != network.mtu).then_some(network.mtu),
        alias: (link.alias.as_deref() != Some(alias.as_str())).then_some(alias),
        ..LinkChange::default()
    };
    if !change.is_empty() {
        host.set_link(link.index, &change).await?;
        if !created {
            applied.record(Action::Repaired, format!("bridge {name}"));
        }
    }
    if link.bridge_nf_call != Some((true, true)) {
        host.set_bridge_nf_call(link.index).await?;
        if !created {
            applied.record(Action::Repaired, format!("bridge {name} br_netfilter"));
        }
    }
    Ok(link.index)
}

async fn ensure_vxlan(
    config: &LinuxConfig,
    host: &Netlink,
    plan: &HostPlan,
    network: &NetworkPlan,
    vni: u32,
    bridge: u32,
    applied: &mut Applied,
) -> Result<u32, HostNetError> {
    let name = names::vxlan(&network.id);
    let alias = names::alias("vxlan", &network.id);
    let underlay = match &config.underlay_interface {
        Some(interface) => Some(
            host.link(interface)
                .await?
                .ok_or_else(|| HostNetError::Unexpected {
                    object: format!("network {}", network.id),
                    reason: format!("the underlay interface {interface} does not exist"),
                })?
                .index,
        ),
        None => None,
    };
    let existing = host.link(&name).await?;
    // VNI, local address, port and learning cannot change in place.
    let fits = |link: &Link| {
        link.kind == LinkKind::Vxlan
            && link.vxlan.as_ref().is_some_and(|info| {
                info.vni == Some(vni)
                    && info.local == Some(plan.tunnel_ip)
                    && info.port == Some(4789)
                    && info.learning == Some(false)
                    && (underlay.is_none() || info.underlay == underlay)
            })
    };
    let mut created = false;
    match &existing {
        Some(link) if fits(link) => {}
        other => {
            if let Some(link) = other {
                host.delete_link(link.index).await?;
            }
            host.add_vxlan(&name, vni, plan.tunnel_ip, underlay, network.mtu)
                .await?;
            let action = if other.is_some() {
                Action::Repaired
            } else {
                Action::Created
            };
            applied.record(action, format!("vxlan {name}"));
            created = true;
        }
    }
    let link = required(host, &name).await?;
    let change = LinkChange {
        up: (!link.up).then_some(true),
        mtu: (link.mtu != network.mtu).then_some(network.mtu),
        controller: (link.controller != Some(bridge)).then_some(bridge),
        alias: (link.alias.as_deref() != Some(alias.as_str())).then_some(alias),
        ..LinkChange::default()
    };
    if !change.is_empty() {
        host.set_link(link.index, &change).await?;
        if !created {
            applied.record(Action::Repaired, format!("vxlan {name}"));
        }
    }
    Ok(link.index)
}

/// Head-end replication (an all-zero entry per remote VTEP) and per-MAC entries.
async fn ensure_fdb(
    host: &Netlink,
    network: &NetworkPlan,
    vxlan: u32,
    applied: &mut Applied,
) -> Result<(), HostNetError> {
    let name = names::vxlan(&network.id);
    let mut desired: BTreeSet<FdbEntry> = network
        .remote_vteps
        .iter()
        .map(|vtep| FdbEntry {
            mac: MacAddr::ZERO,
            destination: IpAddr::V4(*vtep),
        })
        .collect();
    desired.extend(network.remote_macs.iter().map(|(mac, vtep)| FdbEntry {
        mac: *mac,
        destination: IpAddr::V4(*vtep),
    }));
    let current: BTreeSet<FdbEntry> = host.fdb(vxlan).await?.into_iter().collect();
    for entry in current.difference(&desired) {
        host.delete_fdb(vxlan, entry).await?;
        applied.record(
            Action::Removed,
            format!("fdb {name} {} dst {}", entry.mac, entry.destination),
        );
    }
    for entry in desired.difference(&current) {
        host.add_fdb(vxlan, entry).await?;
        applied.record(
            Action::Created,
            format!("fdb {name} {} dst {}", entry.mac, entry.destination),
        );
    }
    Ok(())
}

/// Releases devices Ronghe does not own from its bridges when the plan no longer puts
/// them there (a flat network that changed interface).
pub(crate) async fn release_foreign_members(
    host: &Netlink,
    plan: &HostPlan,
    applied: &mut Applied,
) -> Result<(), HostNetError> {
    let links = host.links().await?;
    for network in &plan.networks {
        let bridge_name = names::bridge(&network.id);
        let Some(bridge) = links.iter().find(|link| link.name == bridge_name) else {
            continue;
        };
        let flat = match &network.segment {
            Segment::Flat { interface } => Some(interface.as_str()),
            Segment::Vxlan { .. } => None,
        };
        for link in &links {
            if link.controller != Some(bridge.index)
                || super::is_owned(link)
                || Some(link.name.as_str()) == flat
                || plan_names_device(network, &link.name)
            {
                continue;
            }
            host.set_link_nocontroller(link.index).await?;
            applied.record(
                Action::Removed,
                format!("{} from bridge {bridge_name}", link.name),
            );
        }
    }
    Ok(())
}

fn plan_names_device(network: &NetworkPlan, name: &str) -> bool {
    network.ports.iter().any(|port| port.host_device() == name)
}

async fn required(host: &Netlink, name: &str) -> Result<Link, HostNetError> {
    host.link(name)
        .await?
        .ok_or_else(|| HostNetError::Unexpected {
            object: name.to_string(),
            reason: "vanished right after it was made".into(),
        })
}
