//! Gratuitous ARP for addresses that appear on a flat network: when a router's gateway or
//! floating IPs, or a port's addresses, come up on a host (first, or after a move), the
//! switches between it and the outside learn where the MAC now is, and neighbours holding
//! another MAC for the address take this one, at once rather than when their entries age
//! out. Sent as Neutron's L3 agent does, by `arping -U` (busybox's, which the hosts have
//! for the bootstrap images), in the background so an apply never waits for it.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use ipnet::IpNet;

use crate::run::run;

/// How many announcements go out per address (one a second).
const COUNT: &str = "3";

/// Announces the IPv4 ones of `addresses` on `device` inside the netns at `netns`.
pub(crate) fn announce(netns: PathBuf, device: &str, addresses: &[IpNet]) {
    let addresses: Vec<Ipv4Addr> = addresses
        .iter()
        .filter_map(|address| match address.addr() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        })
        .collect();
    if addresses.is_empty() {
        return;
    }
    let device = device.to_owned();
    tokio::spawn(async move {
        let sent = addresses.iter().map(|ip| {
            let ip = ip.to_string();
            let (netns, device) = (&netns, &device);
            async move {
                let args = [
                    "arping",
                    "-U",
                    "-c",
                    COUNT,
                    "-I",
                    device.as_str(),
                    ip.as_str(),
                ];
                if let Err(error) = run(Some(netns), "busybox", &args, None).await {
                    tracing::warn!(%ip, %device, %error, "hostnet: no gratuitous ARP sent");
                }
            }
        });
        futures::future::join_all(sent).await;
    });
}
