//! The host network data plane: makes one host's Linux networking match a [`HostPlan`].
//!
//! # What it owns
//! On each host, for each network: a Linux bridge (`rb-…`), its uplink (a VXLAN device
//! `rx-…` with static forwarding entries to the other hosts' VTEPs, or a flat host
//! interface enslaved to the bridge), a veth per pod port (`rv-…` on the bridge, the peer
//! moved into the pod's netns), a persistent TAP per VM port, and where this host serves
//! the network a service netns `<prefix>net-…` holding the distributed DHCP/metadata port
//! and a dnsmasq. Per router: a netns `<prefix>router-…` with a veth from each network's
//! bridge, a gateway on the external network, and NAT in nftables. Security groups and
//! anti-spoofing are nftables tables named `ronghe` in the host netns (see [`nft`]).
//!
//! # Invariants
//! - Only Ronghe-named objects are touched: devices whose names have our shape
//!   ([`names::is_ronghe_device_name`]) or whose alias starts with `ronghe:`, named netns
//!   with this agent's prefix, nftables tables named `ronghe`, dnsmasq processes whose pid
//!   file is ours and whose command line says so. A flat network's host interface is only
//!   attached to (and, when the bridge goes, released from) a bridge.
//! - `apply` is idempotent and level-triggered: it reads what exists, creates what is
//!   missing, repairs what drifted, removes Ronghe leftovers, and reports what it did in
//!   [`Applied`]. A correct device is never deleted and recreated; nftables tables are
//!   replaced in one `nft -f` transaction only when they differ, so conntrack state and
//!   established flows survive.
//! - Established connections survive security group changes: a rule removed from a
//!   group stops new connections only; entries already in conntrack are not flushed.
//! - Everything happens in `LinuxConfig::host_netns` when set (tests never touch the
//!   machine's own namespace).
//! - Secured ports are never wired without their filters: the host ruleset is installed
//!   before any device, and an apply with secured ports fails if br_netfilter (which
//!   carries bridged IP to the inet hooks, where conntrack is) is unavailable.
//!
//! # Names
//! Devices are `<kind>-<10 hex of sha256(uid)>` (15 bytes at most); named netns are
//! `<prefix>net-<10 hex>` and `<prefix>router-<10 hex>`. A VM's TAP should be named
//! [`names::tap`]`(port_id)`. See [`names`].
//!
//! # Known limits
//! IPv4 underlay only; DHCP for IPv4 subnets only (no DHCPv6 or router advertisements);
//! after a restart the first apply reinstalls the nftables tables once (atomically) since
//! what was installed is remembered in memory only.
//!
//! # Layout
//! `plan` (the model, pure), `names` (device and netns names), `nft` and `dhcp` (pure
//! renderings), `run` (the one seam for host commands), `netns` and `netlink` (namespaces
//! and rtnetlink), `linux` (the real [`HostNetwork`]), `fake` (the fake one).

pub mod dhcp;
mod error;
pub mod fake;
mod linux;
pub mod names;
mod netlink;
pub mod netns;
pub mod nft;
pub mod plan;
mod run;

use std::collections::BTreeMap;
use std::net::IpAddr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use error::HostNetError;
pub use fake::FakeHostNetwork;
pub use linux::{LinuxConfig, LinuxHostNetwork};
pub use plan::*;

/// The host network driver: the agent hands it the host's desired state.
#[async_trait]
pub trait HostNetwork: Send + Sync {
    /// Makes the host match `plan`: creates what is missing, repairs drift, removes
    /// Ronghe-owned leftovers (devices, netns, nft tables, dnsmasq processes it started)
    /// not in the plan. Idempotent: applying the same plan twice changes nothing the
    /// second time and never disturbs running traffic.
    ///
    /// A port or router that cannot be set up is reported in [`Applied`] and the rest is
    /// still applied; an error means nothing could be trusted (an invalid plan, the host
    /// netns unreachable, the ruleset refused).
    async fn apply(&self, plan: &HostPlan) -> Result<Applied, HostNetError>;

    /// Removes everything Ronghe-owned on this host (for `--cleanup` and tests).
    async fn teardown(&self) -> Result<(), HostNetError>;

    /// A TCP listener on 169.254.169.254:80 inside the service netns of `network_id`, for
    /// the agent's metadata server, made by a thread that entered that netns. It is
    /// non-blocking, ready for `tokio::net::TcpListener::from_std`.
    async fn metadata_listener(
        &self,
        network_id: &str,
    ) -> Result<std::net::TcpListener, HostNetError>;

    /// A UDP socket and a TCP listener on `address`:53 inside the service netns of
    /// `network_id` (`address` is one of the service port's), for the agent's DNS server,
    /// made by a thread that entered that netns. Both are non-blocking, ready for tokio's
    /// `from_std`.
    async fn dns_sockets(
        &self,
        network_id: &str,
        address: IpAddr,
    ) -> Result<DnsSockets, HostNetError>;
}

/// Where a network's DNS server listens at one address: port 53 over UDP and TCP.
#[derive(Debug)]
pub struct DnsSockets {
    pub udp: std::net::UdpSocket,
    pub tcp: std::net::TcpListener,
}

/// What an apply changed, and which ports are ready.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Every change made, in order, as "what name" (for example "bridge rb-0123456789").
    pub changes: Vec<Change>,
    /// Per port of the plan: ready means its device is on the bridge, up and (for a pod)
    /// configured inside its netns.
    pub ports: BTreeMap<String, PortReadiness>,
    /// Networks and routers that could not be fully set up (by id), with why.
    pub failures: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub action: Action,
    pub object: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Created,
    Repaired,
    Removed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortReadiness {
    pub ready: bool,
    /// Why the port is not ready.
    pub error: Option<String>,
}

impl Applied {
    /// Whether the apply changed nothing on the host.
    pub fn unchanged(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }

    pub fn all_ports_ready(&self) -> bool {
        self.ports.values().all(|port| port.ready)
    }

    pub(crate) fn record(&mut self, action: Action, object: impl Into<String>) {
        let object = object.into();
        tracing::info!(?action, %object, "hostnet: changed");
        self.changes.push(Change { action, object });
    }
}
