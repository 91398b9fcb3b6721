//! Gratuitous ARP for addresses that appear on a flat network: when a router's gateway or
//! floating IPs, or a port's addresses, come up on a host (first, or after a move), the
//! switches between it and the outside learn where the MAC now is, and neighbours holding
//! another MAC for the address take this one, at once rather than when their entries age
//! out. Sent as Neutron's L3 agent does, by `arping -U` (busybox's, which the hosts have
//! for the bootstrap images), in the background so an apply never waits for it, a few
//! at a time. IPv4 only: IPv6 addresses get no unsolicited neighbour advertisement yet.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::LazyLock;

use ipnet::IpNet;
use tokio::sync::Semaphore;

use crate::run::run;

/// How many announcements go out per address (one a second).
const COUNT: u8 = 3;
/// At most this many `arping`s run at once (a router with many floating IPs moving).
static RUNNING: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(8));

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
                let Ok(_permit) = RUNNING.acquire().await else {
                    return;
                };
                let count = COUNT.to_string();
                let args = ["arping", "-U", "-c", &count, "-I", device, &ip];
                if let Err(error) = run(Some(netns), "busybox", &args, None).await {
                    tracing::warn!(%ip, %device, %error, "hostnet: no gratuitous ARP sent");
                }
            }
        });
        futures::future::join_all(sent).await;
    });
}
