//! A listener as the data path serves it, and the accept loop of stream (TCP) sockets.
//!
//! One accept loop runs per bound socket. It reads the listener's current state from a
//! watch channel at each accept, so a reconfigure swaps pools, limits and policies for
//! new connections without touching the socket. TCP connections already accepted keep
//! the state they started with; HTTP connections read it again for every request (see
//! `http`). Dropping the channel's sender stops the loop and closes the socket; accepted
//! connections are separate tasks and drain on their own (HTTP ones shut down
//! gracefully).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tracing::Instrument;

use crate::config::{CompiledListener, Listener, ListenerProtocol};
use crate::pool::{Origin, PoolRuntime};
use crate::proxy_protocol::{self, Announced};
use crate::stats::Counters;
use crate::tasks::{Shutdown, Tracker};
use crate::{http, tcp, tls};

/// How long a connection that is to open with a PROXY protocol header has to send it.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(crate) struct ListenerRuntime {
    pub compiled: CompiledListener,
    pub default_pool: Option<Arc<PoolRuntime>>,
    /// Every pool the listener may send to (default and policy pools), by id.
    pub pools: HashMap<String, Arc<PoolRuntime>>,
    pub stats: Arc<Counters>,
    /// Free slots under the connection limit; `None` when unlimited.
    pub limit: Option<Arc<Semaphore>>,
    /// The bound address (the configured one with an ephemeral port resolved).
    pub local_addr: SocketAddr,
}

impl ListenerRuntime {
    pub fn config(&self) -> &Listener {
        &self.compiled.config
    }

    pub fn id(&self) -> &str {
        &self.compiled.config.id
    }
}

/// What every connection task needs from the proxy around it.
#[derive(Debug, Clone)]
pub(crate) struct ServeContext {
    pub shutdown: Shutdown,
    pub tracker: Tracker,
    /// Connections (and datagrams) from this address start with a PROXY protocol
    /// version 2 header naming the client they carry (see [`crate::ProxyOptions`]).
    pub accept_proxy_from: Option<IpAddr>,
}

/// Accepts connections until the state channel's sender is dropped.
pub(crate) async fn serve_stream(
    listener: TcpListener,
    mut state: watch::Receiver<Arc<ListenerRuntime>>,
    context: ServeContext,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let runtime = Arc::clone(&state.borrow());
                    dispatch(runtime, &state, stream, peer, &context);
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    let listener_id = state.borrow().id().to_owned();
                    tracing::warn!(listener = listener_id, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            changed = state.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
}

fn dispatch(
    runtime: Arc<ListenerRuntime>,
    state: &watch::Receiver<Arc<ListenerRuntime>>,
    stream: TcpStream,
    peer: SocketAddr,
    context: &ServeContext,
) {
    let permit = match &runtime.limit {
        Some(slots) => match Arc::clone(slots).try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                tracing::debug!(listener = runtime.id(), %peer, "connection limit reached, closing");
                return;
            }
        },
        None => None,
    };
    let _ = stream.set_nodelay(true);
    // The address the client connected to: a listener bound to one address accepts only
    // connections to it; a wildcard listener's socket is asked (one more syscall).
    let destination = if runtime.local_addr.ip().is_unspecified() {
        stream.local_addr().unwrap_or(runtime.local_addr)
    } else {
        runtime.local_addr
    };
    let origin = Origin {
        client: peer,
        destination,
    };
    let announced = context.accept_proxy_from == Some(peer.ip());
    let serve = context.clone();
    let state = state.clone();
    // Every event of the connection, HTTP/2 streams and member connections included,
    // carries the listener and the client (and the client a header names, if any).
    let span = tracing::info_span!(
        "connection",
        listener = runtime.id(),
        %peer,
        client = tracing::field::Empty
    );
    let connection = async move {
        let _permit = permit;
        let _open = runtime.stats.open_connection();
        let mut stream = stream;
        let origin = if announced {
            match announced_origin(&mut stream, origin).await {
                Ok(origin) => origin,
                Err(error) => {
                    tracing::debug!(%error, "no PROXY protocol header where one was due, closing");
                    runtime.stats.add_request_error();
                    return;
                }
            }
        } else {
            origin
        };
        match runtime.config().protocol {
            ListenerProtocol::Tcp | ListenerProtocol::Https => {
                tcp::serve_connection(&runtime, stream, origin).await;
            }
            ListenerProtocol::Http => {
                http::serve_connection(Arc::clone(&runtime), state, stream, origin, serve, None)
                    .await;
            }
            ListenerProtocol::TerminatedHttps => {
                tls::serve_connection(Arc::clone(&runtime), state, stream, origin, serve).await;
            }
            // UDP listeners hold datagram sockets and never reach an accept loop.
            ListenerProtocol::Udp => {}
        }
    };
    context
        .tracker
        .spawn_connection(&context.shutdown, connection.instrument(span));
}

/// The client a connection from the trusted forwarder carries, and the address that
/// client connected to, as its header says; a LOCAL header leaves `origin` as it is.
async fn announced_origin(stream: &mut TcpStream, origin: Origin) -> std::io::Result<Origin> {
    let header = tokio::time::timeout(HEADER_TIMEOUT, proxy_protocol::read_header(stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no header in time"))??;
    Ok(match header {
        Announced::Relayed {
            client,
            destination,
        } => {
            tracing::Span::current().record("client", tracing::field::display(client));
            Origin {
                client,
                destination,
            }
        }
        Announced::Local => origin,
    })
}
