//! The HTTP reverse proxy of HTTP and TERMINATED_HTTPS listeners: HTTP/1.1 and HTTP/2
//! (h2c with prior knowledge, or h2 by ALPN behind TLS) from clients, HTTP/1.1 to
//! members. Each request goes through the listener's L7 policies ([`policy`]) and is
//! then answered by the proxy (redirect, 403, 503) or forwarded ([`forward`]).
//!
//! Each request is routed with the listener's state when it arrives, not when its
//! connection was accepted: a reconfigure reaches open keep-alive and HTTP/2 connections
//! at their next request, and a removed listener's connections close gracefully once
//! their requests in flight are answered.
//!
//! Slow clients: a client must complete its first request's headers within
//! `timeout_client_data`, and HTTP/1.1 keep-alive requests theirs likewise (hyper's
//! header read timeout), so a slowloris holds a connection no longer than that. A
//! connection cut for sending a partial or malformed request counts in the listener's
//! `request_errors` (hyper answers malformed HTTP/1.1 with 400 itself); one that sent
//! nothing, or sat idle between keep-alive requests, is simply closed. Bodies are bounded
//! too: a request body may wait `timeout_client_data` for its next bytes, a response's
//! head and each next part of its body `timeout_member_data`.
//!
//! Limits: an HTTP/2 connection has at most [`MAX_CONCURRENT_STREAMS`] streams, and each
//! stream beyond the first in flight takes a slot of the listener's connection limit
//! (it opens a member connection of its own); a stream with no slot free is answered 503.
//! Dead HTTP/2 peers are noticed by pings every `timeout_client_data`.
//!
//! Not supported yet: protocol upgrades (WebSocket), h2c by `Upgrade`, and an idle
//! timeout for HTTP/2 connections between streams.

mod body;
mod forward;
mod io;
mod policy;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tracing::Instrument;

use crate::listener::{ListenerRuntime, ServeContext};
use body::RequestSlot;
use forward::{ClientConnection, ProxyBody};
use io::{CountingIo, Side, TrackedExecutor};
use policy::Route;

/// Streams one HTTP/2 connection may have open at once, haproxy's default
/// (`tune.h2.max-concurrent-streams`). Each forwarded stream also takes a slot of the
/// listener's connection limit beyond the connection's own.
const MAX_CONCURRENT_STREAMS: u32 = 100;

/// Serves HTTP on one client connection (plain, or already decrypted) until it closes.
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
    mut state: watch::Receiver<Arc<ListenerRuntime>>,
    stream: S,
    peer: SocketAddr,
    scheme: &'static str,
    serve: ServeContext,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = Duration::from_millis(accepted.config().timeout_client_data);
    let stream = CountingIo::new(stream, Arc::clone(&accepted.stats), Side::Client);
    let bytes_read = stream.read_total();
    let requests = Arc::new(AtomicU64::new(0));
    let client = Arc::new(ClientConnection {
        state: state.clone(),
        accepted: Arc::clone(&accepted),
        peer,
        scheme,
        serve: serve.clone(),
        in_flight: Arc::new(AtomicUsize::new(0)),
    });
    let service = {
        let requests = Arc::clone(&requests);
        hyper::service::service_fn(move |request| {
            requests.fetch_add(1, Ordering::Relaxed);
            let client = Arc::clone(&client);
            async move { Ok::<_, Infallible>(handle(&client, request).await) }
        })
    };
    let mut builder = auto::Builder::new(TrackedExecutor(serve));
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    // Pings notice an HTTP/2 peer that went away without a word, which would otherwise
    // hold its connection forever (HTTP/2 has no idle timeout here).
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .keep_alive_interval(header_timeout)
        .keep_alive_timeout(header_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    // hyper bounds the wait for each HTTP/1.1 request head (idle keep-alive included),
    // but telling HTTP/1.1 from HTTP/2 comes first and has no timeout of its own: bound
    // the wait for the first request here.
    let first_request = async {
        tokio::time::sleep(header_timeout).await;
        if requests.load(Ordering::Relaxed) > 0 {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(first_request);
    let mut draining = false;
    let slow_or_malformed = loop {
        // Biased: after a stall, the connection reads what the client sent (and hyper
        // answers a malformed request) before the watchdog may cut it.
        tokio::select! {
            biased;
            result = connection.as_mut() => break match result {
                Ok(()) => false,
                Err(error) => {
                    let hyper_error = error.downcast_ref::<hyper::Error>();
                    let malformed = hyper_error.is_some_and(|error| error.is_parse() || error.is_parse_too_large());
                    let timed_out = hyper_error.is_some_and(hyper::Error::is_timeout);
                    tracing::debug!(%error, "HTTP connection ended with an error");
                    malformed || (timed_out && requests.load(Ordering::Relaxed) == 0)
                }
            },
            changed = state.changed(), if !draining => {
                // The socket's listener went away, or the socket went to a listener of
                // another protocol: either way this connection has no listener left.
                let gone = changed.is_err()
                    || state.borrow().config().protocol != accepted.config().protocol;
                if gone {
                    tracing::debug!("listener removed; closing the connection after its requests");
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
            () = &mut first_request => {
                tracing::debug!("no complete request in time, closing");
                break true;
            }
        }
    };
    if slow_or_malformed && bytes_read.load(Ordering::Relaxed) > 0 {
        accepted.stats.add_request_error();
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
    // Each HTTP/2 stream forwarded opens a member connection of its own, so concurrent
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
