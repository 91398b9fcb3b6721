//! The HTTP reverse proxy of HTTP and TERMINATED_HTTPS listeners: HTTP/1.x and HTTP/2
//! (h2c with prior knowledge, or h2 by ALPN behind TLS) from clients, HTTP/1.1 to
//! members. Each request goes through the listener's L7 policies ([`policy`]) and is
//! then answered by the proxy (redirect, 403, 503) or forwarded, with the headers of
//! [`forward`]. HTTP/1.x clients are served by the proxy's own fast path ([`h1`]);
//! HTTP/2 clients by hyper ([`forward::forward`] over [`upstream`]).
//!
//! Each request is routed with the listener's state when it arrives, not when its
//! connection was accepted: a reconfigure reaches open keep-alive and HTTP/2 connections
//! at their next request, and a removed listener's connections close gracefully once
//! their requests in flight are answered.
//!
//! Slow clients: a client must complete each request head within `timeout_client_data`
//! (for HTTP/2, its first request), so a slowloris holds a connection no longer than
//! that. A connection cut for sending a partial or malformed request counts in the
//! listener's `request_errors` (a malformed HTTP/1 head is answered 400 first); one that
//! sent nothing, or sat idle between keep-alive requests, is simply closed. Bodies are
//! bounded too: a request body may wait `timeout_client_data` for its next bytes, a
//! response's head and each next part of its body `timeout_member_data`.
//!
//! Limits: an HTTP/2 connection has at most [`MAX_CONCURRENT_STREAMS`] streams, and each
//! stream beyond the first in flight takes a slot of the listener's connection limit
//! (it takes a member connection of its own); a stream with no slot free is answered 503.
//! Dead HTTP/2 peers are noticed by pings every `timeout_client_data`.
//!
//! Idle connections: an HTTP/1.1 keep-alive connection closes when its next request head
//! does not come within `timeout_client_data`, an HTTP/2 connection (with GOAWAY) once it
//! has had no stream open for as long (checked every quarter of it).
//!
//! WebSockets pass on HTTP/1.1 connections by their upgrade (see [`h1`]), and on HTTP/2
//! ones by RFC 8441's extended CONNECT, which the proxy turns into an HTTP/1.1 upgrade
//! for the member (see [`websocket`]). Not supported yet: h2c by `Upgrade` (the
//! `HTTP2-Settings` field is hop-by-hop, so members never switch).

mod body;
mod fields;
mod forward;
mod h1;
mod io;
mod policy;
mod upstream;
mod websocket;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tracing::Instrument;

use crate::listener::{ListenerRuntime, ServeContext};
use crate::pool::Origin;
use body::RequestSlot;
use forward::{ClientConnection, ProxyBody};
pub(crate) use h1::{MemberStream, check_client_bytes};
use io::{CountingIo, Prefixed, Side, TrackedExecutor};
use policy::Route;
pub(crate) use upstream::{IdleConnections, Sender};

/// Streams one HTTP/2 connection may have open at once, haproxy's default
/// (`tune.h2.max-concurrent-streams`). Each forwarded stream also takes a slot of the
/// listener's connection limit beyond the connection's own.
const MAX_CONCURRENT_STREAMS: u32 = 100;

/// What a TERMINATED_HTTPS listener learnt from a client's TLS handshake.
#[derive(Debug)]
pub(crate) struct ClientTls {
    /// ALPN chose `h2`.
    pub h2: bool,
    /// The server name the client asked for, passed on to TLS pools' members.
    pub sni: Option<Arc<str>>,
    /// The certificate the client sent (verified), for the X-SSL-* fields.
    pub certificate: Option<Arc<crate::tls::ClientCertificate>>,
}

/// Serves HTTP on one client connection (plain, or decrypted from `tls`) until it
/// closes: HTTP/1.x on the fast path of [`h1`], HTTP/2 (when TLS's ALPN chose it, or h2c
/// with prior knowledge on a plain connection) through hyper.
///
/// `accepted` is the listener as it was when the connection was accepted: it sets the
/// connection's timeouts and counts its bytes. Each request is routed with the listener's
/// state at the time it arrives, read from `state`, so open keep-alive and HTTP/2
/// connections see reconfigured pools, members and policies like new connections do.
/// When the listener is removed (the state's sender is dropped), or its socket goes to a
/// listener of another protocol, the connection shuts down gracefully: requests in flight
/// finish, then HTTP/1.1 closes and HTTP/2 sends GOAWAY.
pub(crate) async fn serve_connection<S>(
    accepted: Arc<ListenerRuntime>,
    state: watch::Receiver<Arc<ListenerRuntime>>,
    stream: S,
    origin: Origin,
    serve: ServeContext,
    tls: Option<ClientTls>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut stream = CountingIo::new(stream, Arc::clone(&accepted.stats), Side::Client);
    let (scheme, h2, sni, client_certificate) = match tls {
        Some(tls) => ("https", tls.h2, tls.sni, tls.certificate),
        None => ("http", false, None, None),
    };
    let client = Arc::new(ClientConnection {
        state: state.clone(),
        accepted: Arc::clone(&accepted),
        peer: origin.client,
        destination: origin.destination,
        scheme,
        sni,
        client_certificate,
        serve: serve.clone(),
        in_flight: Arc::new(AtomicUsize::new(0)),
        own_senders: Mutex::default(),
    });
    let read = if h2 {
        BytesMut::new()
    } else {
        match h1::serve(&client, &mut stream, scheme == "http").await {
            h1::Ended::Closed => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, stream.shutdown()).await;
                return;
            }
            h1::Ended::Http2(read) => read,
        }
    };
    serve_h2(client, state, Prefixed::new(read.freeze(), stream), serve).await;
}

/// How long closing a connection may wait for the client (a TLS close_notify).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves HTTP/2 on one client connection through hyper.
async fn serve_h2<S>(
    client: Arc<ClientConnection>,
    mut state: watch::Receiver<Arc<ListenerRuntime>>,
    stream: Prefixed<CountingIo<S>>,
    serve: ServeContext,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let accepted = Arc::clone(&client.accepted);
    let header_timeout = Duration::from_millis(accepted.config().timeout_client_data);
    let bytes_read = stream.get_ref().read_total();
    let requests = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::clone(&client.in_flight);
    let service = {
        let requests = Arc::clone(&requests);
        hyper::service::service_fn(move |request| {
            requests.fetch_add(1, Ordering::Relaxed);
            let client = Arc::clone(&client);
            async move { Ok::<_, Infallible>(handle(&client, request).await) }
        })
    };
    // Pings notice an HTTP/2 peer that went away without a word (an idle one is closed
    // below).
    let mut builder = hyper::server::conn::http2::Builder::new(TrackedExecutor(serve));
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .enable_connect_protocol()
        .keep_alive_interval(header_timeout)
        .keep_alive_timeout(header_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    // A first request must come within the client timeout.
    let first_request = async {
        tokio::time::sleep(header_timeout).await;
        if requests.load(Ordering::Relaxed) > 0 {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(first_request);
    // A connection that had requests and has none open for the client timeout closes,
    // as an idle HTTP/1.1 keep-alive connection does: checked every quarter of the
    // timeout, so it closes within 1.25 times the timeout.
    let idle = async {
        let step = header_timeout / 4;
        let (mut seen, mut quiet) = (0, Duration::ZERO);
        loop {
            tokio::time::sleep(step).await;
            let now = requests.load(Ordering::Relaxed);
            if now != seen || in_flight.load(Ordering::Acquire) > 0 {
                (seen, quiet) = (now, Duration::ZERO);
                continue;
            }
            quiet += step;
            if now > 0 && quiet >= header_timeout {
                return;
            }
        }
    };
    tokio::pin!(idle);
    let mut draining = false;
    let slow_or_malformed = loop {
        // Biased: after a stall, the connection reads what the client sent (and hyper
        // answers a malformed request) before the watchdog may cut it.
        tokio::select! {
            biased;
            result = connection.as_mut() => break match result {
                Ok(()) => false,
                Err(error) => {
                    let malformed = error.is_parse() || error.is_parse_too_large();
                    tracing::debug!(%error, "HTTP/2 connection ended with an error");
                    malformed || (error.is_timeout() && requests.load(Ordering::Relaxed) == 0)
                }
            },
            _ = state.changed(), if !draining => {
                if listener_gone(&state, &accepted) {
                    tracing::debug!("listener removed; closing the connection after its requests");
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
            () = &mut first_request => {
                tracing::debug!("no complete request in time, closing");
                break true;
            }
            () = &mut idle, if !draining => {
                tracing::debug!("no stream open for the client timeout, closing");
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    };
    if slow_or_malformed && bytes_read.load(Ordering::Relaxed) > 0 {
        accepted.stats.add_request_error();
    }
}

/// Whether the listener a connection was accepted on is gone: removed (the state's
/// sender dropped), or its socket went to a listener of another protocol, or one whose
/// TLS terms differ (client certificates asked for or checked otherwise, other versions
/// or cipher suites): a connection's handshake was made under the terms it was accepted
/// with, and must not go on under terms it would not get now, as HAProxy's reload closes
/// old connections. Either way the connection closes once its requests in flight are
/// answered.
pub(crate) fn listener_gone(
    state: &watch::Receiver<Arc<ListenerRuntime>>,
    accepted: &ListenerRuntime,
) -> bool {
    if state.has_changed().is_err() {
        return true;
    }
    let current = state.borrow();
    let (now, then) = (current.config(), accepted.config());
    now.protocol != then.protocol
        || now.client_authentication != then.client_authentication
        || now.tls_settings != then.tls_settings
}

/// Resolves once the listener a connection was accepted on is gone (see
/// [`listener_gone`]).
pub(crate) async fn listener_removed(
    mut state: watch::Receiver<Arc<ListenerRuntime>>,
    accepted: &ListenerRuntime,
) {
    while !listener_gone(&state, accepted) {
        if state.changed().await.is_err() {
            return;
        }
    }
}

async fn handle(client: &ClientConnection, request: Request<Incoming>) -> Response<ProxyBody> {
    let span =
        tracing::info_span!("request", method = %request.method(), path = request.uri().path());
    route_and_forward(client, request).instrument(span).await
}

async fn route_and_forward(
    client: &ClientConnection,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let listener = client.listener();
    let (parts, body) = request.into_parts();
    let pool = match policy::route(&listener.compiled.policies, &parts) {
        Route::Reject => return forward::local_response(StatusCode::FORBIDDEN),
        Route::Redirect { location, code } => return forward::redirect(&location, code),
        Route::Pool(pool_id) => listener.pools.get(pool_id),
        Route::Default => listener.default_pool.as_ref(),
    };
    let Some(pool) = pool else {
        return forward::local_response(StatusCode::SERVICE_UNAVAILABLE);
    };
    // Each HTTP/2 stream forwarded takes a member connection of its own, so concurrent
    // streams count against the listener's connection limit like connections do.
    let slot = if parts.version == Version::HTTP_2 {
        match RequestSlot::admit(&client.in_flight, listener.limit.as_ref()) {
            Some(slot) => Some(slot),
            None => {
                tracing::debug!("connection limit reached, refusing an HTTP/2 stream");
                return forward::local_response(StatusCode::SERVICE_UNAVAILABLE);
            }
        }
    } else {
        None
    };
    forward::forward(
        client,
        &listener,
        pool,
        Request::from_parts(parts, body),
        slot,
    )
    .await
}
