//! The node-port data path: what comes to a node port (TCP connections, UDP flows) goes to
//! the Service's VIP, from inside the netns of its load balancer when that runs here, or
//! else to the relay of the agent whose host runs it, which delivers it there.
//!
//! A relayed stream opens with a header: `RNP2`, the transport, the node port, then the
//! client's address (its length, 4 or 16, the address, the port; or a length of 0 when
//! the client is not known), all in network order
//! (an `RNP1` header ends after the node port and names no client: agents from before
//! send and read only those, so a relay gets one unless its Node says it reads clients).
//! After it a TCP connection's bytes pass as they are, and a UDP flow's datagrams are
//! framed with a 2-byte length each way. A relay only ever delivers to a load balancer
//! running on its own host, so traffic can never go round between hosts whose views
//! differ for a moment.
//!
//! A TCP connection delivered to a VIP whose proxy takes PROXY protocol headers (from
//! the address [`Located::announce_from`] names) is made from that address and opens
//! with a version 2 header naming the client and the VIP, and a UDP flow is sent from a
//! socket there with such a header on every datagram, so the load balancer sees the
//! client rather than this forwarder: X-Forwarded-For, source-IP balancing and
//! persistence (`sessionAffinity: ClientIP`) and PROXY pools work for node-port traffic
//! as for any.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use super::table::{Relay, Route, Table, Transport, route};
use super::udp::{NodePortSocket, Received};

/// How long connecting to a VIP or to a relay may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a relayed stream has to send its header.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a datagram may wait to go into a relayed stream (its peer stopped reading).
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// A UDP flow with no datagram either way for this long is forgotten.
const UDP_IDLE: Duration = Duration::from_secs(60);
/// At most this many UDP flows per node port; datagrams of new clients past it are dropped.
const MAX_FLOWS: usize = 4096;
/// Datagrams queued for one flow while its upstream is opened or busy; more are dropped.
const FLOW_QUEUE: usize = 64;
/// At most this many TCP connections and UDP flows through the node ports at once, and
/// (apart) this many relayed streams, so a flood of one cannot starve the other.
const MAX_STREAMS: usize = 16_384;
/// A relayed stream whose peer stops answering ends in about this long (keepalives on an
/// idle stream, TCP's user timeout on a busy one).
const PEER_TIMEOUT: Duration = Duration::from_secs(30);
const MAGIC: &[u8; 4] = b"RNP2";
/// The magic of headers naming no client.
const MAGIC_V1: &[u8; 4] = b"RNP1";
/// The bytes every header starts with: magic, transport, node port.
const PREFIX_LEN: usize = 7;
const MAX_DATAGRAM: usize = 65_535;

/// Where a UDP flow's answers go: to its client, from the host address it sent to.
struct Reply<'a> {
    socket: &'a NodePortSocket,
    client: SocketAddr,
    local: Option<Ipv4Addr>,
}

impl Reply<'_> {
    async fn send(&self, datagram: &[u8]) -> io::Result<()> {
        self.socket.send(datagram, self.client, self.local).await
    }
}

/// Where sockets toward a load balancer's VIP are made.
#[derive(Clone, Debug)]
pub enum Reach {
    /// In this process's own network namespace (tests).
    Here,
    /// Inside the load balancer's network namespace, by a thread that enters it.
    Netns(PathBuf),
}

/// Where a load balancer's VIP is reached from on this host.
#[derive(Clone, Debug)]
pub struct Located {
    pub reach: Reach,
    /// The address its proxy takes PROXY protocol headers from, connections from which
    /// open with one naming the client they carry (`None`: its proxy takes none, and
    /// sees this forwarder as the client).
    pub announce_from: Option<IpAddr>,
}

/// Finds where load balancer `uid`'s proxy runs on this host (`None`: not here).
pub type Locate = Arc<dyn Fn(&str) -> Option<Located> + Send + Sync>;

/// Where node-port traffic goes, as of now.
#[derive(Default)]
struct View {
    table: Table,
    /// The addresses other hosts' agents relay from (their tunnel IPs).
    peers: HashSet<IpAddr>,
}

/// What the node-port listeners and the relay of one agent share.
pub struct Forwarder {
    hosts: HashSet<String>,
    /// This host's tunnel IP, which relayed streams leave from (other hosts' relays take
    /// streams from tunnel IPs only).
    source: Option<IpAddr>,
    view: watch::Sender<Arc<View>>,
    locate: Locate,
    streams: Arc<Semaphore>,
    relayed_streams: Arc<Semaphore>,
}

impl Forwarder {
    /// A forwarder for an agent running `hosts` with tunnel IP `source`, with no node
    /// ports yet.
    pub fn new(hosts: HashSet<String>, source: Option<IpAddr>, locate: Locate) -> Arc<Forwarder> {
        Arc::new(Forwarder {
            hosts,
            source,
            view: watch::Sender::new(Arc::default()),
            locate,
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            relayed_streams: Arc::new(Semaphore::new(MAX_STREAMS)),
        })
    }

    /// Takes a new table and the addresses relayed streams may come from; connections
    /// opened from now on follow it, and UDP flows whose route it changes end (the next
    /// datagram opens one on the new route).
    pub fn set_table(&self, table: Table, peers: HashSet<IpAddr>) {
        self.view.send_replace(Arc::new(View { table, peers }));
    }

    /// The hosts this agent runs.
    pub fn hosts(&self) -> &HashSet<String> {
        &self.hosts
    }

    /// The table as of now.
    #[cfg(test)]
    pub fn table(&self) -> Table {
        self.view.borrow().table.clone()
    }

    /// Where traffic to node port `port` goes from here now.
    pub fn route(&self, transport: Transport, port: u16, relayed: bool) -> Route {
        let view = self.view.borrow();
        route(view.table.get(&(transport, port)), &self.hosts, relayed)
    }

    /// A socket made where load balancer `uid`'s VIP is local, and the address its proxy
    /// takes PROXY protocol headers from, if any.
    async fn socket_for<T: Send + 'static>(
        &self,
        uid: &str,
        make: fn() -> io::Result<T>,
    ) -> io::Result<(T, Option<IpAddr>)> {
        let Some(Located {
            reach,
            announce_from,
        }) = (self.locate)(uid)
        else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the load balancer's proxy does not run here",
            ));
        };
        let socket = match reach {
            Reach::Here => make()?,
            Reach::Netns(path) => ronghe_hostnet::netns::on_thread_in(Some(path), make).await?,
        };
        Ok((socket, announce_from))
    }

    /// A UDP socket connected to `vip` from where load balancer `uid` runs, for the flow
    /// of a client at `client` (if known).
    async fn udp_to(
        &self,
        uid: &str,
        vip: SocketAddr,
        client: Option<SocketAddr>,
    ) -> io::Result<VipSocket> {
        let (socket, announce_from) = self
            .socket_for(uid, || {
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
            })
            .await?;
        let announce = announce_from.zip(client);
        let from = announce.map_or(IpAddr::from([0, 0, 0, 0]), |(from, _)| from);
        socket.bind(&SocketAddr::new(from, 0).into())?;
        socket.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(socket.into())?;
        socket
            .connect(vip)
            .await
            .map_err(|e| context(e, format!("to the VIP {vip}")))?;
        let header = announce.map_or_else(Vec::new, |(_, client)| {
            ronghe_proxy::proxy_protocol::datagram_header_v2(client, vip)
        });
        Ok(VipSocket { socket, header })
    }

    /// A TCP stream for a client at `client` (if known) toward node port `port`'s VIP:
    /// the VIP itself (with a PROXY protocol header naming the client, where its proxy
    /// takes one), or the relay of the host running its load balancer with the relay's
    /// header already sent.
    async fn open_tcp(
        &self,
        port: u16,
        relayed: bool,
        client: Option<SocketAddr>,
    ) -> io::Result<TcpStream> {
        match self.route(Transport::Tcp, port, relayed) {
            Route::Local { load_balancer, vip } => {
                let (socket, announce_from) =
                    self.socket_for(&load_balancer, TcpSocket::new_v4).await?;
                let announce = announce_from.zip(client);
                let connected = async {
                    if let Some((from, _)) = announce {
                        socket.bind(SocketAddr::new(from, 0))?;
                    }
                    let mut stream = timed(socket.connect(vip)).await?;
                    if let Some((_, client)) = announce {
                        let header = ronghe_proxy::proxy_protocol::header_v2(client, vip);
                        stream.write_all(&header).await?;
                    }
                    Ok(stream)
                };
                connected
                    .await
                    .map_err(|e| context(e, format!("to the VIP {vip}")))
            }
            Route::Relay(relay) => {
                relay_stream(relay, self.source, Transport::Tcp, port, client).await
            }
            Route::Refuse(why) => Err(refused(why)),
        }
    }

    /// Passes `client`'s connection to node port `port` on to where it goes, until both
    /// sides close; one that can go nowhere is reset. `from` is the client it carries
    /// (the peer of a node-port connection, or the one a relay header names).
    async fn forward_tcp(
        &self,
        mut client: TcpStream,
        port: u16,
        relayed: bool,
        from: Option<SocketAddr>,
    ) -> io::Result<()> {
        let mut upstream = match self.open_tcp(port, relayed, from).await {
            Ok(upstream) => upstream,
            Err(error) => {
                reset(&client);
                return Err(error);
            }
        };
        splice(&mut client, &mut upstream).await
    }

    /// Accepts on node port `port` over TCP and forwards each connection, until aborted.
    pub async fn serve_tcp(self: Arc<Self>, listener: TcpListener, port: u16) {
        let streams = self.streams.clone();
        self.accept_each(
            listener,
            streams,
            "node port",
            move |this, client| async move {
                let from = client.peer_addr().ok();
                this.forward_tcp(client, port, false, from).await
            },
        )
        .await;
    }

    /// Accepts on `listener` until aborted and runs `serve` on each connection in a task
    /// of its own, within the bound `streams` sets; a connection past it is reset.
    async fn accept_each<F, Served>(
        self: Arc<Self>,
        listener: TcpListener,
        streams: Arc<Semaphore>,
        what: &'static str,
        serve: F,
    ) where
        F: Fn(Arc<Self>, TcpStream) -> Served,
        Served: Future<Output = io::Result<()>> + Send + 'static,
    {
        loop {
            let (stream, from) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!(%error, "{what}: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = streams.clone().try_acquire_owned() else {
                reset(&stream);
                continue;
            };
            let served = serve(self.clone(), stream);
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(error) = served.await {
                    tracing::debug!(%from, %error, "{what}: a connection ended");
                }
            });
        }
    }

    /// Receives on node port `port` over UDP and forwards each client's datagrams as a
    /// flow, until aborted.
    pub async fn serve_udp(self: Arc<Self>, socket: UdpSocket, port: u16) {
        let socket = Arc::new(NodePortSocket::new(socket));
        // A flow per client and host address it sent to.
        let mut flows: HashMap<(SocketAddr, Option<Ipv4Addr>), mpsc::Sender<Bytes>> =
            HashMap::new();
        let mut buffer = vec![0u8; MAX_DATAGRAM];
        loop {
            let Received {
                length,
                client,
                local,
            } = match socket.recv(&mut buffer).await {
                Ok(received) => received,
                Err(error) => {
                    // An ICMP error for an earlier reply; nothing to do about it here.
                    tracing::trace!(port, %error, "node port: a UDP receive failed");
                    continue;
                }
            };
            let mut datagram = Bytes::copy_from_slice(&buffer[..length]);
            if let Some(flow) = flows.get(&(client, local)) {
                match flow.try_send(datagram) {
                    Ok(()) | Err(TrySendError::Full(_)) => continue,
                    Err(TrySendError::Closed(returned)) => {
                        flows.remove(&(client, local));
                        datagram = returned;
                    }
                }
            }
            if flows.len() >= MAX_FLOWS {
                flows.retain(|_, flow| !flow.is_closed());
            }
            if flows.len() >= MAX_FLOWS {
                continue;
            }
            let Ok(permit) = self.streams.clone().try_acquire_owned() else {
                continue;
            };
            let (sender, receiver) = mpsc::channel(FLOW_QUEUE);
            let _ = sender.try_send(datagram);
            flows.insert((client, local), sender);
            let (this, socket) = (self.clone(), socket.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let reply = Reply {
                    socket: &socket,
                    client,
                    local,
                };
                if let Err(error) = this.udp_flow(reply, port, receiver).await {
                    tracing::debug!(port, %client, %error, "node port: a UDP flow ended");
                }
            });
        }
    }

    /// One client's UDP flow: its datagrams to the VIP (or the relay), the answers back
    /// from the node port, until it is idle for [`UDP_IDLE`] or its route changes.
    async fn udp_flow(
        &self,
        reply: Reply<'_>,
        port: u16,
        mut datagrams: mpsc::Receiver<Bytes>,
    ) -> io::Result<()> {
        let view = self.view.subscribe();
        let taken = self.route(Transport::Udp, port, false);
        let moved = self.until_moved(view, port, false, taken.clone());
        tokio::pin!(moved);
        match taken {
            Route::Local { load_balancer, vip } => {
                let upstream = self.udp_to(&load_balancer, vip, Some(reply.client)).await?;
                let mut buffer = vec![0u8; MAX_DATAGRAM];
                loop {
                    tokio::select! {
                        datagram = datagrams.recv() => match datagram {
                            Some(datagram) => {
                                upstream.send(&datagram).await?;
                            }
                            None => return Ok(()),
                        },
                        answer = upstream.socket.recv(&mut buffer) => {
                            reply.send(&buffer[..answer?]).await?;
                        }
                        () = &mut moved => return Ok(()),
                        () = tokio::time::sleep(UDP_IDLE) => return Ok(()),
                    }
                }
            }
            Route::Relay(relay) => {
                let (read, write) =
                    relay_stream(relay, self.source, Transport::Udp, port, Some(reply.client))
                        .await?
                        .into_split();
                let (mut answers, mut sink) = (
                    FramedRead::new(read, codec()),
                    FramedWrite::new(write, codec()),
                );
                loop {
                    tokio::select! {
                        datagram = datagrams.recv() => match datagram {
                            Some(datagram) => send_frame(&mut sink, datagram).await?,
                            None => return Ok(()),
                        },
                        answer = answers.next() => match answer {
                            Some(answer) => reply.send(&answer?).await?,
                            None => return Ok(()),
                        },
                        () = &mut moved => return Ok(()),
                        () = tokio::time::sleep(UDP_IDLE) => return Ok(()),
                    }
                }
            }
            Route::Refuse(why) => Err(refused(why)),
        }
    }

    /// Resolves once a UDP flow to node port `port` would no longer take `taken` (seen
    /// through `view`, subscribed before `taken` was decided, so no change is missed).
    async fn until_moved(
        &self,
        mut view: watch::Receiver<Arc<View>>,
        port: u16,
        relayed: bool,
        taken: Route,
    ) {
        while view.changed().await.is_ok() {
            if self.route(Transport::Udp, port, relayed) != taken {
                return;
            }
        }
        // The sender lives as long as `self`: this is not reached.
        std::future::pending::<()>().await;
    }

    /// Accepts relayed streams from other hosts' agents (only from their tunnel IPs) and
    /// delivers each to a load balancer running here, until aborted.
    pub async fn serve_relay(self: Arc<Self>, listener: TcpListener) {
        let streams = self.relayed_streams.clone();
        self.accept_each(
            listener,
            streams,
            "node-port relay",
            |this, stream| async move {
                let from = stream.peer_addr()?.ip();
                if !this.view.borrow().peers.contains(&from) {
                    reset(&stream);
                    return Err(refused("not a host's agent"));
                }
                this.relayed(stream).await
            },
        )
        .await;
    }

    async fn relayed(&self, mut stream: TcpStream) -> io::Result<()> {
        watch_peer(&stream);
        let RelayHeader {
            transport,
            port,
            client,
        } = tokio::time::timeout(HEADER_TIMEOUT, read_header(&mut stream))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no relay header"))??;
        match transport {
            Transport::Tcp => self.forward_tcp(stream, port, true, client).await,
            Transport::Udp => {
                let view = self.view.subscribe();
                let taken = self.route(Transport::Udp, port, true);
                let Route::Local { load_balancer, vip } = taken.clone() else {
                    reset(&stream);
                    return Err(refused("the load balancer does not run here"));
                };
                let moved = self.until_moved(view, port, true, taken);
                tokio::pin!(moved);
                let upstream = self.udp_to(&load_balancer, vip, client).await?;
                let (read, write) = stream.into_split();
                let (mut datagrams, mut sink) = (
                    FramedRead::new(read, codec()),
                    FramedWrite::new(write, codec()),
                );
                let mut buffer = vec![0u8; MAX_DATAGRAM];
                loop {
                    tokio::select! {
                        datagram = datagrams.next() => match datagram {
                            Some(datagram) => {
                                upstream.send(&datagram?).await?;
                            }
                            None => return Ok(()),
                        },
                        answer = upstream.socket.recv(&mut buffer) => {
                            let answer = Bytes::copy_from_slice(&buffer[..answer?]);
                            send_frame(&mut sink, answer).await?;
                        }
                        () = &mut moved => return Ok(()),
                        () = tokio::time::sleep(UDP_IDLE) => return Ok(()),
                    }
                }
            }
        }
    }
}

/// A UDP socket connected to a VIP, and what each datagram sent on it starts with: a
/// PROXY protocol header naming the flow's client, where the VIP's proxy takes one.
struct VipSocket {
    socket: UdpSocket,
    header: Vec<u8>,
}

impl VipSocket {
    async fn send(&self, datagram: &[u8]) -> io::Result<()> {
        if self.header.is_empty() {
            self.socket.send(datagram).await?;
        } else {
            self.socket.send(&[&self.header, datagram].concat()).await?;
        }
        Ok(())
    }
}

/// Sends one framed datagram on a relayed stream, giving up if the peer stopped reading.
async fn send_frame(
    sink: &mut FramedWrite<tokio::net::tcp::OwnedWriteHalf, LengthDelimitedCodec>,
    datagram: Bytes,
) -> io::Result<()> {
    tokio::time::timeout(SEND_TIMEOUT, sink.send(datagram))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the relay's peer stopped reading"))?
}

/// Closes `stream` with a reset when it goes, so its client sees a refusal rather than an
/// answer with nothing in it.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Makes a relayed stream end when its peer's host goes silent: keepalives while it is
/// idle, TCP's user timeout while data waits unacknowledged.
fn watch_peer(stream: &TcpStream) {
    let socket = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(PEER_TIMEOUT / 3)
        .with_interval(PEER_TIMEOUT / 6)
        .with_retries(2);
    let _ = socket.set_tcp_keepalive(&keepalive);
    let _ = socket.set_tcp_user_timeout(Some(PEER_TIMEOUT));
}

/// Passes bytes both ways until both sides have closed (half-closes passed on).
async fn splice(client: &mut TcpStream, upstream: &mut TcpStream) -> io::Result<()> {
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    tokio::io::copy_bidirectional(client, upstream).await?;
    Ok(())
}

/// A stream to the relay `relay` (from `source`, if given) carrying `client`'s traffic
/// to node port `port`, its header sent (naming the client if the relay reads it).
async fn relay_stream(
    relay: Relay,
    source: Option<IpAddr>,
    transport: Transport,
    port: u16,
    client: Option<SocketAddr>,
) -> io::Result<TcpStream> {
    let relayed = async {
        let socket = TcpSocket::new_v4()?;
        if let Some(source) = source {
            socket.bind(SocketAddr::new(source, 0))?;
        }
        let mut stream = timed(socket.connect(relay.address)).await?;
        watch_peer(&stream);
        let header = if relay.names_clients {
            header(transport, port, client)
        } else {
            header_v1(transport, port)
        };
        stream.write_all(&header).await?;
        Ok(stream)
    };
    relayed
        .await
        .map_err(|e| context(e, format!("to the relay at {}", relay.address)))
}

/// `error`, saying where it happened.
fn context(error: io::Error, place: String) -> io::Error {
    io::Error::new(error.kind(), format!("{place}: {error}"))
}

/// What a relayed stream's header says.
#[derive(Debug, PartialEq, Eq)]
struct RelayHeader {
    transport: Transport,
    port: u16,
    /// The client whose traffic the stream carries (`None` from an `RNP1` header).
    client: Option<SocketAddr>,
}

fn header(transport: Transport, port: u16, client: Option<SocketAddr>) -> Vec<u8> {
    let mut header = prefix(MAGIC, transport, port);
    let Some(client) = client else {
        // A client not known: an address of length 0, no port.
        header.push(0);
        return header;
    };
    match client.ip() {
        IpAddr::V4(ip) => {
            header.push(4);
            header.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            header.push(16);
            header.extend_from_slice(&ip.octets());
        }
    }
    header.extend_from_slice(&client.port().to_be_bytes());
    header
}

/// The header of a relay from before clients were named: magic, transport, node port.
fn header_v1(transport: Transport, port: u16) -> Vec<u8> {
    prefix(MAGIC_V1, transport, port)
}

/// What every relay header starts with: `magic`, the transport, the node port.
fn prefix(magic: &[u8; 4], transport: Transport, port: u16) -> Vec<u8> {
    let mut header = Vec::with_capacity(PREFIX_LEN + 19);
    header.extend_from_slice(magic);
    header.push(transport.code());
    header.extend_from_slice(&port.to_be_bytes());
    header
}

/// Reads a relay header, and not a byte past it.
async fn read_header<R: tokio::io::AsyncRead + Unpin>(stream: &mut R) -> io::Result<RelayHeader> {
    let not_one = || io::Error::new(io::ErrorKind::InvalidData, "not a relay header");
    let mut prefix = [0u8; PREFIX_LEN];
    stream.read_exact(&mut prefix).await?;
    let transport = Transport::from_code(prefix[4]).ok_or_else(not_one)?;
    let port = u16::from_be_bytes([prefix[5], prefix[6]]);
    let client = match &prefix[..4] {
        magic if magic == MAGIC_V1 => None,
        magic if magic == MAGIC => match usize::from(stream.read_u8().await?) {
            0 => None,
            length @ (4 | 16) => {
                let mut bytes = [0u8; 18];
                let bytes = &mut bytes[..length + 2];
                stream.read_exact(bytes).await?;
                let (address, port) = bytes.split_at(length);
                let ip = match <[u8; 4]>::try_from(address) {
                    Ok(v4) => IpAddr::from(v4),
                    Err(_) => IpAddr::from(<[u8; 16]>::try_from(address).map_err(|_| not_one())?),
                };
                Some(SocketAddr::new(ip, u16::from_be_bytes([port[0], port[1]])))
            }
            _ => return Err(not_one()),
        },
        _ => return Err(not_one()),
    };
    Ok(RelayHeader {
        transport,
        port,
        client,
    })
}

/// The framing of datagrams on a relayed stream: a 2-byte length, then the datagram.
fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(2)
        .max_frame_length(MAX_DATAGRAM)
        .new_codec()
}

async fn timed<T>(connect: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connecting timed out"))?
}

fn refused(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionRefused, why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> io::Result<RelayHeader> {
        let mut reader = bytes;
        let header = futures::executor::block_on(read_header(&mut reader))?;
        assert!(reader.is_empty(), "read {} bytes short", reader.len());
        Ok(header)
    }

    #[test]
    fn a_relay_header_names_its_transport_port_and_client() {
        let client = SocketAddr::from(([192, 0, 2, 7], 40000));
        let bytes = header(Transport::Udp, 30053, Some(client));
        assert_eq!(&bytes, b"RNP2U\x75\x65\x04\xc0\x00\x02\x07\x9c\x40");
        assert_eq!(
            parse(&bytes).unwrap(),
            RelayHeader {
                transport: Transport::Udp,
                port: 30053,
                client: Some(client)
            }
        );
        let client6: SocketAddr = "[2001:db8::7]:5000".parse().unwrap();
        let bytes = header(Transport::Tcp, 30080, Some(client6));
        assert_eq!(bytes.len(), 7 + 1 + 16 + 2);
        assert_eq!(parse(&bytes).unwrap().client, Some(client6));
        assert_eq!(
            parse(&header(Transport::Tcp, 30080, None)).unwrap().client,
            None
        );
        // An agent before names no client, and one whose Node says it reads no client
        // gets that header.
        assert_eq!(&header_v1(Transport::Tcp, 30080), b"RNP1T\x75\x80");
        assert_eq!(
            parse(b"RNP1T\x75\x80").unwrap(),
            RelayHeader {
                transport: Transport::Tcp,
                port: 30080,
                client: None
            }
        );
        for bad in [
            &b"GET / HTTP/1.1"[..],
            b"RNP1X\x75\x65",
            b"RNP2T\x75\x65\x05\x01\x02\x03\x04\x05\x00\x01",
            b"RNP2T\x75\x65\x04\x01",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
