//! A network's service netns: the distributed DHCP/metadata port (a veth from the bridge,
//! the same MAC and IPs on every host, plus 169.254.169.254/32) and its dnsmasq.

use ipnet::IpNet;

use crate::error::HostNetError;
use crate::linux::veth::{Target, VethSpec, converge_addresses, plug};
use crate::linux::{LinuxConfig, dnsmasq};
use crate::names;
use crate::netlink::Netlink;
use crate::netns::{ensure_named, named_path};
use crate::plan::{NetworkPlan, ServicePlan};
use crate::{Action, Applied};

/// The metadata address, on every service port.
pub(crate) const METADATA_ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 169, 254);

pub(crate) async fn ensure_service(
    config: &LinuxConfig,
    host: &Netlink,
    network: &NetworkPlan,
    bridge: u32,
    service: &ServicePlan,
    applied: &mut Applied,
) -> Result<(), HostNetError> {
    let netns_name = names::service_netns(&config.prefix, &network.id);
    if ensure_named(&netns_name).await? {
        applied.record(Action::Created, format!("netns {netns_name}"));
    }
    let netns_path = named_path(&netns_name);
    let file = std::fs::File::open(&netns_path)
        .map_err(HostNetError::io(format!("opening netns {netns_name}")))?;
    let inner = Netlink::open(Some(&netns_path)).await?;
    inner.bring_up_loopback().await?;

    let host_name = names::service_host(&network.id);
    let inner_name = names::service_inner(&network.id);
    let object = format!("service port of {}", network.id);
    let spec = VethSpec {
        host_name: &host_name,
        temp_name: &inner_name,
        inner_name: &inner_name,
        mac: service.mac,
        mtu: network.mtu,
        bridge,
        alias: names::alias("service", &network.id),
        object: object.clone(),
    };
    let index = plug(
        host,
        &spec,
        &Target {
            netlink: &inner,
            file: &file,
        },
        applied,
    )
    .await?;
    let mut addresses = service.addresses.clone();
    let metadata = IpNet::from(std::net::IpAddr::V4(METADATA_ADDRESS));
    if !addresses.contains(&metadata) {
        addresses.push(metadata);
    }
    converge_addresses(&inner, index, &addresses, applied, &object).await?;
    dnsmasq::ensure(
        config.state_dir.join(&netns_name),
        &netns_path,
        &inner_name,
        service,
        &network.id,
        applied,
    )
    .await
}
