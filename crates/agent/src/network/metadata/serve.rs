//! The metadata server on one network's listener. The callers are tenant VMs, so what they
//! can hold is bounded: connections in all and per VM address (more are closed as soon as
//! accepted), and how long one connection lives (a VM that sends its request a byte a
//! minute is cut off), which also bounds how long a stop waits for open connections.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use http::{Method, StatusCode, Uri, header};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::MetadataIndex;
use super::tree::{self, Reply};
use crate::network::limits::{ConnectionSlots, Slot};

/// What the VMs of one network can hold of the server.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    /// Open connections in all; the next waits in the kernel's backlog.
    pub connections: usize,
    /// Open connections from one address; the next is closed at once.
    pub connections_per_peer: usize,
    /// How long one connection may stay open, whatever it does.
    pub connection_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 256,
            connections_per_peer: 16,
            // cloud-init walks both trees in well under a second.
            connection_lifetime: Duration::from_secs(30),
        }
    }
}

/// Serves the metadata of `network_id`'s VMs on `listener` (the one the host-network
/// driver binds at 169.254.169.254:80 in the network's service netns) until `stop` turns
/// true or its sender goes. Each request is answered from the index current at the time.
///
/// Returns once the open connections are done: at once for idle ones, within
/// [`Limits::connection_lifetime`] for the rest.
pub async fn serve(
    listener: std::net::TcpListener,
    network_id: String,
    index: watch::Receiver<Arc<MetadataIndex>>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    serve_with(listener, network_id, index, stop, Limits::default()).await
}

pub(super) async fn serve_with(
    listener: std::net::TcpListener,
    network_id: String,
    index: watch::Receiver<Arc<MetadataIndex>>,
    mut stop: watch::Receiver<bool>,
    limits: Limits,
) -> anyhow::Result<()> {
    listener
        .set_nonblocking(true)
        .context("making the metadata listener non-blocking")?;
    let listener = TcpListener::from_std(listener).context("registering the metadata listener")?;
    let address = listener
        .local_addr()
        .context("the metadata listener's address")?;
    tracing::info!(network = %network_id, %address, "metadata service listening");
    let bounded = BoundedListener {
        inner: listener,
        slots: ConnectionSlots::new(limits.connections, limits.connections_per_peer),
        limits,
    };
    let service = Arc::new(Service {
        network_id: network_id.clone(),
        index,
    });
    let app = Router::new().fallback(handle).with_state(service);
    axum::serve(bounded, app.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(async move {
            // A sender gone means nobody can ask to stop any more: stop too.
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await
        .with_context(|| format!("serving metadata on network {network_id}"))?;
    tracing::info!(network = %network_id, "metadata service stopped");
    Ok(())
}

struct Service {
    network_id: String,
    index: watch::Receiver<Arc<MetadataIndex>>,
}

/// The caller's address, as accepted.
#[derive(Clone, Copy, Debug)]
struct Peer(SocketAddr);

impl Connected<IncomingStream<'_, BoundedListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, BoundedListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

async fn handle(
    State(service): State<Arc<Service>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    method: Method,
    uri: Uri,
) -> Response {
    let ip = peer.ip().to_canonical();
    let path = uri.path();
    let reply = if method != Method::GET && method != Method::HEAD {
        None
    } else {
        // The index is swapped whole; hold this request's copy, not the lock.
        let index = service.index.borrow().clone();
        Some(match index.lookup(&service.network_id, ip) {
            Some(instance) => tree::answer(instance, path),
            None => Reply::not_found(),
        })
    };
    // The path and the caller only: answers hold user data and keys.
    tracing::debug!(
        network = %service.network_id,
        peer = %ip,
        %method,
        path,
        status = reply.as_ref().map_or(405, |r| r.status.as_u16()),
        "metadata request"
    );
    match reply {
        Some(reply) => (
            reply.status,
            [(header::CONTENT_TYPE, reply.content_type)],
            reply.body,
        )
            .into_response(),
        None => (
            StatusCode::METHOD_NOT_ALLOWED,
            [
                (header::ALLOW, "GET, HEAD"),
                (header::CONTENT_TYPE, tree::TEXT),
            ],
            "405 Method Not Allowed\n",
        )
            .into_response(),
    }
}

/// A listener that holds back past [`Limits::connections`] and closes a peer's
/// connections past [`Limits::connections_per_peer`].
struct BoundedListener {
    inner: TcpListener,
    slots: ConnectionSlots,
    limits: Limits,
}

impl Listener for BoundedListener {
    type Io = BoundedConnection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let permit = self.slots.reserve().await;
            let (stream, address) = Listener::accept(&mut self.inner).await;
            let ip = address.ip().to_canonical();
            let Some(slot) = self.slots.take(ip, permit) else {
                tracing::debug!(peer = %ip, "too many metadata connections; closing the new one");
                continue;
            };
            let connection = BoundedConnection {
                stream,
                deadline: Box::pin(tokio::time::sleep(self.limits.connection_lifetime)),
                _slot: slot,
            };
            return (connection, SocketAddr::new(ip, address.port()));
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A TCP stream that fails every read and write once its lifetime is over, which ends the
/// connection however far its request got.
struct BoundedConnection {
    stream: TcpStream,
    deadline: Pin<Box<tokio::time::Sleep>>,
    _slot: Slot,
}

impl BoundedConnection {
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        self.deadline.as_mut().poll(cx).is_ready().then(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "the metadata connection outlived its limit",
            )
        })
    }
}

impl AsyncRead for BoundedConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(error) = this.expired(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for BoundedConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(error) = this.expired(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(error) = this.expired(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
