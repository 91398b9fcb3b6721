//! Removing Ronghe leftovers: owned devices in the host netns, this agent's named netns
//! (with their dnsmasq) and state directories that the plan no longer wants.

use std::collections::BTreeSet;
use std::path::Path;

use crate::dhcp::DnsmasqFiles;
use crate::error::HostNetError;
use crate::linux::{LinuxConfig, dnsmasq, is_owned};
use crate::names;
use crate::netlink::Netlink;
use crate::netns::{delete_named, list_named};
use crate::plan::HostPlan;
use crate::{Action, Applied};

/// The host-netns devices a plan wants.
pub(crate) fn wanted_devices(plan: &HostPlan) -> BTreeSet<String> {
    let mut wanted = BTreeSet::new();
    for network in &plan.networks {
        wanted.insert(names::bridge(&network.id));
        wanted.insert(network.uplink());
        if network.service.is_some() {
            wanted.insert(names::service_host(&network.id));
        }
        for port in &network.ports {
            wanted.insert(port.host_device());
        }
    }
    for router in &plan.routers {
        for interface in &router.interfaces {
            wanted.insert(names::router_interface_host(
                &router.id,
                &interface.network_id,
            ));
        }
        if router.gateway.is_some() {
            wanted.insert(names::router_gateway_host(&router.id));
        }
    }
    wanted
}

/// The named netns a plan wants.
pub(crate) fn wanted_netns(config: &LinuxConfig, plan: &HostPlan) -> BTreeSet<String> {
    let services = plan
        .networks
        .iter()
        .filter(|network| network.service.is_some())
        .map(|network| names::service_netns(&config.prefix, &network.id));
    let routers = plan
        .routers
        .iter()
        .map(|router| names::router_netns(&config.prefix, &router.id));
    services.chain(routers).collect()
}

/// Deletes owned host-netns devices not in `wanted` (all of them when `wanted` is empty).
pub(crate) async fn remove_devices(
    host: &Netlink,
    wanted: &BTreeSet<String>,
    applied: &mut Applied,
) -> Result<(), HostNetError> {
    for link in host.links().await? {
        if !is_owned(&link) || wanted.contains(&link.name) {
            continue;
        }
        if let Err(error) = host.delete_link(link.index).await {
            // Deleting one end of a veth takes the other with it.
            if host.link(&link.name).await?.is_some() {
                return Err(error);
            }
        }
        applied.record(Action::Removed, format!("device {}", link.name));
    }
    Ok(())
}

/// Stops the dnsmasq of netns `name` and deletes the netns and its state directory.
async fn remove_netns(config: &LinuxConfig, name: &str) -> Result<(), HostNetError> {
    let dir = config.state_dir.join(name);
    dnsmasq::stop(&DnsmasqFiles::new(&dir).pid()).await?;
    delete_named(name).await?;
    remove_dir(&dir)
}

fn remove_dir(dir: &Path) -> Result<(), HostNetError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(HostNetError::Io {
            operation: format!("removing {}", dir.display()),
            source,
        }),
    }
}

/// Removes this agent's named netns and state directories that are not in `wanted`.
pub(crate) async fn remove_netns_leftovers(
    config: &LinuxConfig,
    wanted: &BTreeSet<String>,
    applied: &mut Applied,
) -> Result<(), HostNetError> {
    for name in list_named()? {
        if names::is_ronghe_netns_name(&config.prefix, &name) && !wanted.contains(&name) {
            remove_netns(config, &name).await?;
            applied.record(Action::Removed, format!("netns {name}"));
        }
    }
    // State directories whose netns is already gone (a dnsmasq may still run there if the
    // netns was deleted by hand).
    if let Ok(entries) = std::fs::read_dir(&config.state_dir) {
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if names::is_ronghe_netns_name(&config.prefix, &name) && !wanted.contains(&name) {
                if dnsmasq::stop(&DnsmasqFiles::new(&entry.path()).pid()).await? {
                    applied.record(Action::Removed, format!("dnsmasq of {name}"));
                }
                remove_dir(&entry.path())?;
            }
        }
    }
    Ok(())
}
