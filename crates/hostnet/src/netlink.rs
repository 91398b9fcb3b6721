//! rtnetlink in one namespace: a connection opened by a thread that entered the namespace
//! (a netlink socket belongs to the namespace it was made in), and the few link, address,
//! route and forwarding-entry operations the data plane needs, in plain types.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures::TryStreamExt;
use futures::stream::StreamExt;
use ipnet::IpNet;
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{
    InfoBridge, InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVxlan};

use crate::error::HostNetError;
use crate::netns::on_thread_in;
use crate::plan::MacAddr;

/// The kinds of links this crate makes or looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    Bridge,
    Veth,
    Vxlan,
    Tun,
    Other,
}

/// What the data plane checks about a VXLAN device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VxlanInfo {
    pub vni: Option<u32>,
    pub local: Option<Ipv4Addr>,
    pub port: Option<u16>,
    pub learning: Option<bool>,
    pub underlay: Option<u32>,
}

/// A link as read from the kernel.
#[derive(Clone, Debug)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub kind: LinkKind,
    pub mtu: u32,
    pub up: bool,
    pub controller: Option<u32>,
    pub mac: Option<MacAddr>,
    pub alias: Option<String>,
    pub vxlan: Option<VxlanInfo>,
    /// For a bridge: whether bridged IPv4 and IPv6 go through the inet hooks.
    pub bridge_nf_call: Option<(bool, bool)>,
}

/// What to change on an existing link; None leaves a field alone.
#[derive(Clone, Debug, Default)]
pub struct LinkChange {
    pub up: Option<bool>,
    pub mtu: Option<u32>,
    pub controller: Option<u32>,
    pub mac: Option<MacAddr>,
    pub alias: Option<String>,
    pub name: Option<String>,
}

impl LinkChange {
    pub fn is_empty(&self) -> bool {
        self.up.is_none()
            && self.mtu.is_none()
            && self.controller.is_none()
            && self.mac.is_none()
            && self.alias.is_none()
            && self.name.is_none()
    }
}

/// A route of the main table.
#[derive(Clone, Debug)]
pub struct Route {
    pub destination: IpNet,
    pub gateway: Option<IpAddr>,
    pub output: Option<u32>,
    pub protocol: RouteProtocol,
    message: RouteMessage,
}

/// A forwarding entry of a VXLAN device: a MAC (all zero for "unknown") to a remote VTEP.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FdbEntry {
    pub mac: MacAddr,
    pub destination: IpAddr,
}

/// A netlink connection bound to one namespace.
pub struct Netlink {
    handle: Handle,
    task: tokio::task::JoinHandle<()>,
    namespace: String,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Netlink {
    /// Opens a connection in the netns at `netns` (the current one when None).
    pub async fn open(netns: Option<&Path>) -> Result<Netlink, HostNetError> {
        let namespace = netns
            .map(|path| path.display().to_string())
            .unwrap_or_else(|| "the current netns".into());
        let runtime = tokio::runtime::Handle::current();
        let (connection, handle) = on_thread_in(netns.map(Path::to_path_buf), move || {
            // The socket registers with the runtime's reactor as it is made.
            let _entered = runtime.enter();
            let (connection, handle, _messages) = rtnetlink::new_connection()?;
            Ok((connection, handle))
        })
        .await
        .map_err(|source| HostNetError::Netlink {
            operation: "connect".into(),
            namespace: namespace.clone(),
            source: Box::new(source),
        })?;
        let task = tokio::spawn(connection);
        Ok(Netlink {
            handle,
            task,
            namespace,
        })
    }

    fn error(&self, operation: String) -> impl FnOnce(rtnetlink::Error) -> HostNetError + '_ {
        move |source| HostNetError::Netlink {
            operation,
            namespace: self.namespace.clone(),
            source: Box::new(source),
        }
    }

    /// Creates a link; `what` names it in the error.
    async fn send_new_link(&self, message: LinkMessage, what: String) -> Result<(), HostNetError> {
        self.handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(self.error(what))
    }

    /// Changes a link; `what` names the change in the error.
    async fn send_link_change(
        &self,
        message: LinkMessage,
        what: String,
    ) -> Result<(), HostNetError> {
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(self.error(what))
    }

    pub async fn links(&self) -> Result<Vec<Link>, HostNetError> {
        let messages: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(self.error("list links".into()))?;
        Ok(messages.iter().map(parse_link).collect())
    }

    pub async fn link(&self, name: &str) -> Result<Option<Link>, HostNetError> {
        Ok(self
            .links()
            .await?
            .into_iter()
            .find(|link| link.name == name))
    }

    /// Brings loopback up: in a fresh netns it is down, and local sockets (connections
    /// to the namespace's own addresses, the metadata server's replies to itself) need it.
    pub async fn bring_up_loopback(&self) -> Result<(), HostNetError> {
        if let Some(lo) = self.link("lo").await?
            && !lo.up
        {
            self.set_link(
                lo.index,
                &LinkChange {
                    up: Some(true),
                    ..LinkChange::default()
                },
            )
            .await?;
        }
        Ok(())
    }

    /// A bridge whose bridged IPv4 and IPv6 go through the inet hooks (br_netfilter),
    /// where the security groups' conntrack lives.
    pub async fn add_bridge(&self, name: &str, mtu: u32) -> Result<(), HostNetError> {
        let message = LinkBridge::new(name)
            .nf_call_iptables(true)
            .nf_call_ip6tables(true)
            .mtu(mtu)
            .build();
        self.send_new_link(message, format!("add bridge {name}"))
            .await
    }

    /// Turns br_netfilter back on for an existing bridge.
    pub async fn set_bridge_nf_call(&self, index: u32) -> Result<(), HostNetError> {
        let mut builder = LinkMessageBuilder::<LinkBridge>::new_with_info_kind(InfoKind::Bridge);
        builder = builder.index(index);
        let message = builder
            .set_info_data(InfoData::Bridge(vec![
                InfoBridge::NfCallIpTables(true),
                InfoBridge::NfCallIp6Tables(true),
            ]))
            .build();
        self.send_link_change(message, format!("set br_netfilter on link {index}"))
            .await
    }

    /// A VXLAN device on UDP 4789 with learning off (forwarding entries are static).
    pub async fn add_vxlan(
        &self,
        name: &str,
        vni: u32,
        local: Ipv4Addr,
        underlay: Option<u32>,
        mtu: u32,
    ) -> Result<(), HostNetError> {
        let mut builder = LinkVxlan::new(name, vni)
            .local(local)
            .port(4789)
            .learning(false)
            .mtu(mtu);
        if let Some(underlay) = underlay {
            builder = builder.dev(underlay);
        }
        self.send_new_link(builder.build(), format!("add vxlan {name}"))
            .await
    }

    pub async fn add_veth(&self, name: &str, peer: &str, mtu: u32) -> Result<(), HostNetError> {
        let message = LinkVeth::new(name, peer).mtu(mtu).build();
        self.send_new_link(message, format!("add veth {name}/{peer}"))
            .await?;
        // The peer takes the default MTU; match it so both ends agree.
        if let Some(peer_link) = self.link(peer).await? {
            self.set_link(
                peer_link.index,
                &LinkChange {
                    mtu: Some(mtu),
                    ..LinkChange::default()
                },
            )
            .await?;
        }
        Ok(())
    }

    pub async fn set_link(&self, index: u32, change: &LinkChange) -> Result<(), HostNetError> {
        if change.is_empty() {
            return Ok(());
        }
        let mut builder = LinkUnspec::new_with_index(index);
        match change.up {
            Some(true) => builder = builder.up(),
            Some(false) => builder = builder.down(),
            None => {}
        }
        if let Some(mtu) = change.mtu {
            builder = builder.mtu(mtu);
        }
        if let Some(controller) = change.controller {
            builder = builder.controller(controller);
        }
        if let Some(mac) = change.mac {
            builder = builder.address(mac.octets().to_vec());
        }
        if let Some(alias) = &change.alias {
            builder = builder.alias(alias.clone());
        }
        if let Some(name) = &change.name {
            builder = builder.name(name.clone());
        }
        self.send_link_change(builder.build(), format!("set link {index} {change:?}"))
            .await
    }

    /// Takes a link off its bridge.
    pub async fn set_link_nocontroller(&self, index: u32) -> Result<(), HostNetError> {
        let message = LinkUnspec::new_with_index(index).nocontroller().build();
        self.send_link_change(message, format!("release link {index} from its bridge"))
            .await
    }

    /// Moves a link into the netns open as `target`.
    pub async fn move_to_netns(&self, index: u32, target: &File) -> Result<(), HostNetError> {
        let message = LinkUnspec::new_with_index(index)
            .setns_by_fd(target.as_raw_fd())
            .build();
        self.send_link_change(message, format!("move link {index} to another netns"))
            .await
    }

    pub async fn delete_link(&self, index: u32) -> Result<(), HostNetError> {
        self.handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(self.error(format!("delete link {index}")))
    }

    /// The addresses on a link (including kernel-made IPv6 link-local ones).
    pub async fn addresses(&self, index: u32) -> Result<Vec<IpNet>, HostNetError> {
        let messages: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(self.error(format!("list addresses of link {index}")))?;
        let mut addresses = Vec::new();
        for message in messages {
            if message.header.index != index {
                continue;
            }
            let address = message
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                });
            let address = address.or_else(|| {
                message
                    .attributes
                    .iter()
                    .find_map(|attribute| match attribute {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })
            });
            if let Some(ip) = address
                && let Ok(net) = IpNet::new(ip, message.header.prefix_len)
            {
                addresses.push(net);
            }
        }
        Ok(addresses)
    }

    pub async fn add_address(&self, index: u32, address: IpNet) -> Result<(), HostNetError> {
        self.handle
            .address()
            .add(index, address.addr(), address.prefix_len())
            .execute()
            .await
            .map_err(self.error(format!("add address {address} to link {index}")))
    }

    pub async fn delete_address(&self, index: u32, address: IpNet) -> Result<(), HostNetError> {
        let messages: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(address.addr())
            .set_prefix_length_filter(address.prefix_len())
            .execute()
            .try_collect()
            .await
            .map_err(self.error(format!("find address {address} on link {index}")))?;
        for message in messages {
            self.handle
                .address()
                .del(message)
                .execute()
                .await
                .map_err(self.error(format!("delete address {address} from link {index}")))?;
        }
        Ok(())
    }

    /// The unicast routes of the main table, both families.
    pub async fn routes(&self) -> Result<Vec<Route>, HostNetError> {
        let mut routes = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut query = RouteMessage::default();
            query.header.address_family = family;
            let messages: Vec<RouteMessage> = self
                .handle
                .route()
                .get(query)
                .execute()
                .try_collect()
                .await
                .map_err(self.error("list routes".into()))?;
            for message in messages {
                if message.header.table != RouteHeader::RT_TABLE_MAIN
                    || message.header.kind != RouteType::Unicast
                {
                    continue;
                }
                if let Some(route) = parse_route(message) {
                    routes.push(route);
                }
            }
        }
        Ok(routes)
    }

    /// Adds `destination via gateway dev index` (static), or a link route without gateway.
    pub async fn add_route(
        &self,
        index: u32,
        destination: IpNet,
        gateway: Option<IpAddr>,
    ) -> Result<(), HostNetError> {
        let mut message = RouteMessage::default();
        message.header.address_family = match destination {
            IpNet::V4(_) => AddressFamily::Inet,
            IpNet::V6(_) => AddressFamily::Inet6,
        };
        message.header.destination_prefix_length = destination.prefix_len();
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        message.header.protocol = RouteProtocol::Static;
        message.header.kind = RouteType::Unicast;
        message.header.scope = if gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        if destination.prefix_len() > 0 {
            message
                .attributes
                .push(RouteAttribute::Destination(route_address(
                    destination.trunc().addr(),
                )));
        }
        if let Some(gateway) = gateway {
            message
                .attributes
                .push(RouteAttribute::Gateway(route_address(gateway)));
        }
        message.attributes.push(RouteAttribute::Oif(index));
        self.handle
            .route()
            .add(message)
            .execute()
            .await
            .map_err(self.error(format!("add route {destination} via {gateway:?}")))
    }

    pub async fn delete_route(&self, route: &Route) -> Result<(), HostNetError> {
        self.handle
            .route()
            .del(route.message.clone())
            .execute()
            .await
            .map_err(self.error(format!("delete route {}", route.destination)))
    }

    /// The static forwarding entries (with a remote) of a VXLAN device.
    pub async fn fdb(&self, index: u32) -> Result<Vec<FdbEntry>, HostNetError> {
        let messages: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute()
            .try_collect()
            .await
            .map_err(self.error(format!("list fdb of link {index}")))?;
        let mut entries = Vec::new();
        for message in messages {
            if message.header.ifindex != index {
                continue;
            }
            let mut mac = None;
            let mut destination = None;
            for attribute in &message.attributes {
                match attribute {
                    NeighbourAttribute::LinkLayerAddress(bytes) => {
                        mac = MacAddr::try_from(bytes.as_slice()).ok();
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                        destination = Some(IpAddr::V4(*ip));
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => {
                        destination = Some(IpAddr::V6(*ip));
                    }
                    // In a bridge-family dump the address family of NDA_DST is unknown to
                    // the parser; its length tells it.
                    NeighbourAttribute::Destination(NeighbourAddress::Other(bytes)) => {
                        destination = match bytes.len() {
                            4 => <[u8; 4]>::try_from(bytes.as_slice())
                                .ok()
                                .map(|octets| IpAddr::V4(octets.into())),
                            16 => <[u8; 16]>::try_from(bytes.as_slice())
                                .ok()
                                .map(|octets| IpAddr::V6(octets.into())),
                            _ => None,
                        };
                    }
                    _ => {}
                }
            }
            if let (Some(mac), Some(destination)) = (mac, destination) {
                entries.push(FdbEntry { mac, destination });
            }
        }
        entries.sort();
        entries.dedup();
        Ok(entries)
    }

    /// `bridge fdb append MAC dev INDEX dst DESTINATION self permanent`: appending lets
    /// the all-zero MAC have one entry per remote VTEP (head-end replication).
    pub async fn add_fdb(&self, index: u32, entry: &FdbEntry) -> Result<(), HostNetError> {
        let message = fdb_message(index, entry);
        let mut request = NetlinkMessage::from(RouteNetlinkMessage::NewNeighbour(message));
        request.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND;
        self.acknowledged(
            request,
            format!("add fdb {} dst {}", entry.mac, entry.destination),
        )
        .await
    }

    pub async fn delete_fdb(&self, index: u32, entry: &FdbEntry) -> Result<(), HostNetError> {
        let message = fdb_message(index, entry);
        let mut request = NetlinkMessage::from(RouteNetlinkMessage::DelNeighbour(message));
        request.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        self.acknowledged(
            request,
            format!("delete fdb {} dst {}", entry.mac, entry.destination),
        )
        .await
    }

    /// Sends a request and waits for its acknowledgement (an error message with no code).
    async fn acknowledged(
        &self,
        request: NetlinkMessage<RouteNetlinkMessage>,
        operation: String,
    ) -> Result<(), HostNetError> {
        let mut handle = self.handle.clone();
        let mut responses = handle
            .request(request)
            .map_err(self.error(operation.clone()))?;
        while let Some(response) = responses.next().await {
            if let NetlinkPayload::Error(error) = response.payload
                && error.code.is_some()
            {
                return Err(self.error(operation)(rtnetlink::Error::NetlinkError(error)));
            }
        }
        Ok(())
    }
}

fn fdb_message(index: u32, entry: &FdbEntry) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = AddressFamily::Bridge;
    message.header.ifindex = index;
    message.header.state = NeighbourState::Permanent;
    message.header.flags = NeighbourFlags::Own;
    message
        .attributes
        .push(NeighbourAttribute::LinkLayerAddress(
            entry.mac.octets().to_vec(),
        ));
    message
        .attributes
        .push(NeighbourAttribute::Destination(match entry.destination {
            IpAddr::V4(ip) => NeighbourAddress::Inet(ip),
            IpAddr::V6(ip) => NeighbourAddress::Inet6(ip),
        }));
    message
}

fn route_address(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(ip) => RouteAddress::Inet(ip),
        IpAddr::V6(ip) => RouteAddress::Inet6(ip),
    }
}

fn parse_route(message: RouteMessage) -> Option<Route> {
    let mut destination = None;
    let mut gateway = None;
    let mut output = None;
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                destination = Some(IpAddr::V4(*ip));
            }
            RouteAttribute::Destination(RouteAddress::Inet6(ip)) => {
                destination = Some(IpAddr::V6(*ip));
            }
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(IpAddr::V4(*ip)),
            RouteAttribute::Gateway(RouteAddress::Inet6(ip)) => gateway = Some(IpAddr::V6(*ip)),
            RouteAttribute::Oif(index) => output = Some(*index),
            _ => {}
        }
    }
    let destination = destination.unwrap_or(match message.header.address_family {
        AddressFamily::Inet6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    });
    let destination = IpNet::new(destination, message.header.destination_prefix_length).ok()?;
    Some(Route {
        destination,
        gateway,
        output,
        protocol: message.header.protocol,
        message,
    })
}

fn parse_link(message: &LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        kind: LinkKind::Other,
        mtu: 0,
        up: message.header.flags.contains(LinkFlags::Up),
        controller: None,
        mac: None,
        alias: None,
        vxlan: None,
        bridge_nf_call: None,
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::Controller(index) => link.controller = Some(*index),
            LinkAttribute::Address(bytes) => link.mac = MacAddr::try_from(bytes.as_slice()).ok(),
            LinkAttribute::IfAlias(alias) => link.alias = Some(alias.clone()),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(kind) => {
                            link.kind = match kind {
                                InfoKind::Bridge => LinkKind::Bridge,
                                InfoKind::Veth => LinkKind::Veth,
                                InfoKind::Vxlan => LinkKind::Vxlan,
                                InfoKind::Tun => LinkKind::Tun,
                                _ => LinkKind::Other,
                            }
                        }
                        LinkInfo::Data(InfoData::Vxlan(data)) => {
                            let mut vxlan = VxlanInfo::default();
                            for item in data {
                                match item {
                                    InfoVxlan::Id(vni) => vxlan.vni = Some(*vni),
                                    InfoVxlan::Local(ip) => vxlan.local = Some(*ip),
                                    InfoVxlan::Port(port) => vxlan.port = Some(*port),
                                    InfoVxlan::Learning(learning) => {
                                        vxlan.learning = Some(*learning)
                                    }
                                    InfoVxlan::Link(index) => vxlan.underlay = Some(*index),
                                    _ => {}
                                }
                            }
                            link.vxlan = Some(vxlan);
                        }
                        LinkInfo::Data(InfoData::Bridge(data)) => {
                            let mut ipv4 = false;
                            let mut ipv6 = false;
                            for item in data {
                                match item {
                                    InfoBridge::NfCallIpTables(on) => ipv4 = *on,
                                    InfoBridge::NfCallIp6Tables(on) => ipv6 = *on,
                                    _ => {}
                                }
                            }
                            link.bridge_nf_call = Some((ipv4, ipv6));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    link
}
