//! The DNS server on one network's sockets (port 53 on a service address). The clients are
//! tenant workloads, so what they can hold is bounded: TCP connections in all and per
//! address (more are closed as soon as accepted) and how long one lives, and queries
//! forwarded upstream at once (a UDP query past that is dropped, as an overloaded
//! resolver does; the client asks again). Local answers are made on the receiving task
//! with no waiting. Forwarded queries go to the host's upstream resolvers in turn, each
//! given [`Limits::upstream_timeout`], from sockets made in the agent's own netns.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ronghe_hostnet::DnsSockets;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::DnsIndex;
use super::answer::{Reply, Transport, answer};
use crate::network::limits::ConnectionSlots;

/// What the workloads of one network can hold of its DNS server.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Open TCP connections in all; the next waits in the kernel's backlog.
    pub tcp_connections: usize,
    /// Open TCP connections from one address; the next is closed at once.
    pub tcp_connections_per_peer: usize,
    /// How long one TCP connection may stay open, whatever it does.
    pub tcp_connection_lifetime: Duration,
    /// Queries waiting on upstream resolvers at once.
    pub forwards_in_flight: usize,
    /// How long one upstream resolver is given to answer.
    pub upstream_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            tcp_connections: 64,
            tcp_connections_per_peer: 8,
            // RFC 7766 asks servers to close idle connections after seconds, not minutes.
            tcp_connection_lifetime: Duration::from_secs(10),
            forwards_in_flight: 256,
            // Three upstreams at two seconds each stay within what a client waits in all
            // (glibc: five seconds, then it asks again).
            upstream_timeout: Duration::from_secs(2),
        }
    }
}

/// How long a loop pauses after a failed receive or accept.
const RECEIVE_RETRY: Duration = Duration::from_millis(10);

struct Server {
    network_id: String,
    index: watch::Receiver<Arc<DnsIndex>>,
    limits: Limits,
    forwards: Arc<Semaphore>,
}

/// Serves DNS to the workloads of `network_id` on `sockets` (the ones the host-network
/// driver binds on a service address in the network's service netns) until `stop` turns
/// true or its sender goes. Each query is answered from the index current at the time.
/// Open connections and forwarded queries end with it.
pub async fn serve(
    sockets: DnsSockets,
    network_id: String,
    index: watch::Receiver<Arc<DnsIndex>>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    serve_with(sockets, network_id, index, stop, Limits::default()).await
}

pub(crate) async fn serve_with(
    sockets: DnsSockets,
    network_id: String,
    index: watch::Receiver<Arc<DnsIndex>>,
    mut stop: watch::Receiver<bool>,
    limits: Limits,
) -> anyhow::Result<()> {
    sockets
        .udp
        .set_nonblocking(true)
        .and_then(|()| sockets.tcp.set_nonblocking(true))
        .context("making the DNS sockets non-blocking")?;
    let udp = UdpSocket::from_std(sockets.udp).context("registering the DNS socket")?;
    let tcp = TcpListener::from_std(sockets.tcp).context("registering the DNS listener")?;
    let address = udp.local_addr().context("the DNS socket's address")?;
    tracing::info!(network = %network_id, %address, "DNS service listening");
    let server = Arc::new(Server {
        network_id: network_id.clone(),
        index,
        limits,
        forwards: Arc::new(Semaphore::new(limits.forwards_in_flight)),
    });
    tokio::select! {
        // A sender gone means nobody can ask to stop any more: stop too.
        _ = stop.wait_for(|stopped| *stopped) => {}
        () = serve_udp(server.clone(), Arc::new(udp)) => {}
        () = serve_tcp(server, tcp) => {}
    }
    tracing::info!(network = %network_id, %address, "DNS service stopped");
    Ok(())
}

async fn serve_udp(server: Arc<Server>, socket: Arc<UdpSocket>) {
    let mut forwarding = JoinSet::new();
    let mut buffer = vec![0; usize::from(u16::MAX)];
    loop {
        let (length, peer) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                tracing::debug!(network = %server.network_id, %error, "receiving a DNS query failed");
                // Never a busy loop on a socket that keeps failing.
                tokio::time::sleep(RECEIVE_RETRY).await;
                continue;
            }
        };
        let request = &buffer[..length];
        let index = server.index.borrow().clone();
        match answer(&index, &server.network_id, request, Transport::Udp) {
            Reply::Answer(reply) => {
                if let Err(error) = socket.send_to(&reply, peer).await {
                    tracing::debug!(network = %server.network_id, %peer, %error, "sending a DNS answer failed");
                }
            }
            Reply::Drop => {}
            Reply::Forward(pending) => {
                let Ok(permit) = server.forwards.clone().try_acquire_owned() else {
                    tracing::debug!(network = %server.network_id, %peer, "too many DNS queries upstream; dropping one");
                    continue;
                };
                let Some(question) = pending.request(request) else {
                    continue;
                };
                let (request, socket) = (request.to_vec(), socket.clone());
                let (upstreams, timeout) =
                    (index.upstreams().to_vec(), server.limits.upstream_timeout);
                forwarding.spawn(async move {
                    let upstream = forward(&upstreams, &question, Transport::Udp, timeout).await;
                    let reply = pending.reply(&request, upstream, Transport::Udp);
                    drop(permit);
                    if let Some(reply) = reply {
                        let _ = socket.send_to(&reply, peer).await;
                    }
                });
                while forwarding.try_join_next().is_some() {}
            }
        }
    }
}

async fn serve_tcp(server: Arc<Server>, listener: TcpListener) {
    let slots = ConnectionSlots::new(
        server.limits.tcp_connections,
        server.limits.tcp_connections_per_peer,
    );
    let mut connections = JoinSet::new();
    loop {
        let permit = slots.reserve().await;
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(network = %server.network_id, %error, "accepting a DNS connection failed");
                // Out of descriptors, say: wait rather than spin.
                tokio::time::sleep(RECEIVE_RETRY).await;
                continue;
            }
        };
        let Some(slot) = slots.take(peer.ip(), permit) else {
            tracing::debug!(network = %server.network_id, %peer, "too many DNS connections from one address; closing the new one");
            continue;
        };
        let server = server.clone();
        connections.spawn(async move {
            let _slot = slot;
            let lifetime = server.limits.tcp_connection_lifetime;
            match tokio::time::timeout(lifetime, server.connection(stream)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::debug!(network = %server.network_id, %peer, %error, "a DNS connection failed");
                }
                Err(_) => {
                    tracing::debug!(network = %server.network_id, %peer, "a DNS connection outlived its limit; closed");
                }
            }
        });
        while connections.try_join_next().is_some() {}
    }
}

impl Server {
    /// Answers the queries of one TCP connection in turn until the client closes it.
    async fn connection(&self, mut stream: TcpStream) -> io::Result<()> {
        loop {
            let length = match stream.read_u16().await {
                Ok(length) => length,
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(error) => return Err(error),
            };
            let mut request = vec![0; usize::from(length)];
            stream.read_exact(&mut request).await?;
            let index = self.index.borrow().clone();
            let reply = match answer(&index, &self.network_id, &request, Transport::Tcp) {
                Reply::Answer(reply) => Some(reply),
                Reply::Drop => None,
                Reply::Forward(pending) => {
                    let _permit = self
                        .forwards
                        .acquire()
                        .await
                        .map_err(|_| io::Error::other("the server is stopping"))?;
                    let question = pending
                        .request(&request)
                        .ok_or_else(|| io::Error::other("a query could not be made"))?;
                    let upstream = forward(
                        index.upstreams(),
                        &question,
                        Transport::Tcp,
                        self.limits.upstream_timeout,
                    )
                    .await;
                    pending.reply(&request, upstream, Transport::Tcp)
                }
            };
            let Some(reply) = reply else {
                return Ok(());
            };
            stream.write_all(&framed(&reply)?).await?;
        }
    }
}

/// A message with its two-byte length in front, as DNS over TCP carries it.
fn framed(message: &[u8]) -> io::Result<Vec<u8>> {
    let length = u16::try_from(message.len()).map_err(io::Error::other)?;
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(message);
    Ok(framed)
}

/// The first answer of `upstreams`, asked in turn over `transport`, each given `timeout`.
async fn forward(
    upstreams: &[SocketAddr],
    request: &[u8],
    transport: Transport,
    timeout: Duration,
) -> Option<Vec<u8>> {
    for upstream in upstreams {
        let attempt = match transport {
            Transport::Udp => tokio::time::timeout(timeout, forward_udp(*upstream, request)).await,
            Transport::Tcp => tokio::time::timeout(timeout, forward_tcp(*upstream, request)).await,
        };
        match attempt {
            Ok(Ok(reply)) => return Some(reply),
            Ok(Err(error)) => {
                tracing::debug!(%upstream, %error, "an upstream resolver failed");
            }
            Err(_) => tracing::debug!(%upstream, "an upstream resolver did not answer in time"),
        }
    }
    None
}

async fn forward_udp(upstream: SocketAddr, request: &[u8]) -> io::Result<Vec<u8>> {
    let local: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    // A socket per query: a fresh random source port, and only the upstream's datagrams.
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(request).await?;
    let mut buffer = vec![0; usize::from(u16::MAX)];
    loop {
        let length = socket.recv(&mut buffer).await?;
        if is_reply_to(&buffer[..length], request) {
            buffer.truncate(length);
            return Ok(buffer);
        }
    }
}

async fn forward_tcp(upstream: SocketAddr, request: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    stream.write_all(&framed(request)?).await?;
    let length = stream.read_u16().await?;
    let mut reply = vec![0; usize::from(length)];
    stream.read_exact(&mut reply).await?;
    if is_reply_to(&reply, request) {
        Ok(reply)
    } else {
        Err(io::Error::other("the upstream answered another query"))
    }
}

/// Whether `reply` is a response (QR set) with the id of `request`.
fn is_reply_to(reply: &[u8], request: &[u8]) -> bool {
    reply.len() >= 12 && request.len() >= 2 && reply[..2] == request[..2] && reply[2] & 0x80 != 0
}
