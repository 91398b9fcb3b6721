//! A local port: a pod's veth (configured inside the pod's netns: MAC, MTU, addresses,
//! routes) or a VM's persistent TAP, on the network's bridge, with its ingress shaping.

use std::path::Path;

use crate::error::HostNetError;
use crate::linux::LinuxConfig;
use crate::linux::announce::announce;
use crate::linux::qos::ensure_ingress_shaping;
use crate::linux::veth::{
    StaticRoute, Target, VethSpec, converge_addresses, converge_routes, default_route, plug,
};
use crate::names;
use crate::netlink::{LinkChange, LinkKind, Netlink};
use crate::plan::{Attachment, NetworkPlan, PortPlan, Segment};
use crate::run::run;
use crate::{Action, Applied};

pub(crate) async fn ensure_port(
    config: &LinuxConfig,
    host: &Netlink,
    network: &NetworkPlan,
    bridge: u32,
    port: &PortPlan,
    applied: &mut Applied,
) -> Result<(), HostNetError> {
    match &port.attachment {
        Attachment::Veth { netns, ifname } => {
            ensure_pod_port(host, network, bridge, port, netns, ifname, applied).await?;
        }
        Attachment::Tap { name } => {
            ensure_tap(config, host, network, bridge, port, name, applied).await?;
        }
    }
    let ingress = port.qos.as_ref().and_then(|qos| qos.ingress);
    ensure_ingress_shaping(
        config.host_netns.as_deref(),
        &port.host_device(),
        ingress,
        network.mtu,
        applied,
    )
    .await
}

async fn ensure_pod_port(
    host: &Netlink,
    network: &NetworkPlan,
    bridge: u32,
    port: &PortPlan,
    netns: &Path,
    ifname: &str,
    applied: &mut Applied,
) -> Result<(), HostNetError> {
    let object = format!("port {}", port.id);
    let file = std::fs::File::open(netns).map_err(HostNetError::io(format!(
        "opening the netns {} of {object}",
        netns.display()
    )))?;
    let pod = Netlink::open(Some(netns)).await?;
    let host_name = names::port_host(&port.id);
    let temp_name = names::port_peer(&port.id);
    let spec = VethSpec {
        host_name: &host_name,
        temp_name: &temp_name,
        inner_name: ifname,
        mac: port.mac,
        mtu: network.mtu,
        bridge,
        alias: names::alias("port", &port.id),
        object: object.clone(),
    };
    let inner = plug(
        host,
        &spec,
        &Target {
            netlink: &pod,
            file: &file,
        },
        applied,
    )
    .await?;
    let added = converge_addresses(&pod, inner, &port.addresses, applied, &object).await?;
    if matches!(network.segment, Segment::Flat { .. }) {
        // A load balancer's VIP may have moved here from another host.
        announce(netns.to_path_buf(), ifname, &added);
    }
    let mut routes: Vec<StaticRoute> = Vec::new();
    if let Some(gateway) = port.gateway {
        routes.push(StaticRoute {
            destination: default_route(gateway),
            gateway,
            output: inner,
        });
    }
    routes.extend(
        port.routes
            .iter()
            .map(|(destination, gateway)| StaticRoute {
                destination: *destination,
                gateway: *gateway,
                output: inner,
            }),
    );
    converge_routes(&pod, &[inner], &routes, applied, &object).await
}

async fn ensure_tap(
    config: &LinuxConfig,
    host: &Netlink,
    network: &NetworkPlan,
    bridge: u32,
    port: &PortPlan,
    name: &str,
    applied: &mut Applied,
) -> Result<(), HostNetError> {
    let alias = names::alias("port", &port.id);
    let mut existing = host.link(name).await?;
    if let Some(link) = &existing
        && link.kind != LinkKind::Tun
    {
        let ours =
            link.alias.as_deref() == Some(alias.as_str()) || names::is_ronghe_device_name(name);
        if !ours {
            return Err(HostNetError::Unexpected {
                object: format!("port {}", port.id),
                reason: format!("a device {name} that is not a TAP and not Ronghe's exists"),
            });
        }
        host.delete_link(link.index).await?;
        existing = None;
    }
    let created = existing.is_none();
    if created {
        // rtnetlink cannot make TUN/TAP devices (the kernel refuses them there); a
        // persistent TAP needs the TUNSETIFF/TUNSETPERSIST ioctls, which `ip` does for us
        // and which this crate cannot call without `unsafe`.
        run(
            config.host_netns.as_deref(),
            "ip",
            &["tuntap", "add", "dev", name, "mode", "tap"],
            None,
        )
        .await?;
        applied.record(Action::Created, format!("port {} tap {name}", port.id));
    }
    let link = host
        .link(name)
        .await?
        .ok_or_else(|| HostNetError::Unexpected {
            object: format!("port {}", port.id),
            reason: format!("TAP {name} vanished right after it was made"),
        })?;
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
            applied.record(Action::Repaired, format!("port {} tap {name}", port.id));
        }
    }
    Ok(())
}
