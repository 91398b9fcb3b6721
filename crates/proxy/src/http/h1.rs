//! The path of HTTP/1.x clients: one task per client connection reads each request head
//! (httparse), routes it, and forwards it over a member connection it holds for the
//! exchange, then passes the answer back, bytes as they come. No task, channel or body
//! object stands between the two sockets, which brought the CPU a request costs down to
//! haproxy's (`ronghe bench lb`); HTTP/2 clients go through hyper instead (`serve_h2` in
//! the parent module).
//!
//! Messages: request heads of at most [`head::MAX_HEAD`] bytes and
//! [`head::MAX_HEADERS`] fields, framed by Content-Length or chunked (a request that
//! carries both, or another transfer coding, is refused 400 and the connection closed);
//! bodies pass verbatim, except that chunked answers to HTTP/1.0 clients are unchunked
//! and delimited by the close. Requests are sent as HTTP/1.1 with the rewritten head of
//! [`forward`](super::forward), written straight from the bytes read (fields keep their
//! order and the case of their names); pipelined requests are answered in order. `Expect:
//! 100-continue` is answered by the proxy, which then forwards the body; 1xx answers of
//! members are passed on.
//!
//! Member connections: a request whose body the proxy holds whole may go over an idle
//! keep-alive connection of the member, and is sent again on a new connection if the
//! member had closed that one (it closed before answering anything). The proxy reads a
//! body of up to [`HOLD_BODY`] bytes with a Content-Length whole before sending it (as
//! HAProxy's `http-buffer-request`), so a client sending its head and body in separate
//! writes still gets an idle connection; a longer or chunked body goes as it comes,
//! over a new connection. After a complete answer on a connection
//! the member keeps, it goes back among the member's idle ones, except in PROXY pools
//! (their connections open with a header naming one client) and TLS pools' connections
//! that passed on the client's SNI: then the client connection keeps its last one for
//! its own next requests to that member (HAProxy's private connections), and closes it
//! when it closes.
//!
//! Upgrades (WebSocket): an HTTP/1.1 request without a body that asks for one
//! (`Connection: upgrade` and `Upgrade`) goes to the member with both; if the member
//! answers `101 Switching Protocols`, that answer goes to the client and the connection
//! becomes a tunnel passing bytes both ways, as haproxy does, until either side closes
//! or neither sends anything for the longer of the two data timeouts. A 101 the request
//! did not ask for is a broken answer (502).
//!
//! Time limits are the listener's: a client has `timeout_client_data` for each request
//! head (a slowloris is cut then, and counted as a request error if it sent anything)
//! and between body bytes; a member `timeout_member_data` for its answer's head and
//! between body bytes.

mod framing;
pub(crate) mod head;
mod invariants;
mod wait;

use std::pin::pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::header::{self, HeaderValue};
use http::{StatusCode, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::fields::{self, FieldSink, Fields, RequestView};
use super::forward::{Carried, ClientConnection, Persistence};
use super::io::{CountingIo, Side};
use super::policy::{self, Route};
use super::upstream::{Reusable, Target};
use crate::listener::ListenerRuntime;
use crate::pool::{MemberIo, PoolRuntime};
use crate::stats::ConnectionGuard;
use framing::{BodyProgress, Framing, FramingError};
use head::{RequestHead, ResponseHead};
pub(crate) use invariants::check_client_bytes;
pub(crate) use wait::Wait;

/// A member connection of this path.
pub(crate) type MemberStream = CountingIo<MemberIo>;

impl Reusable for MemberStream {
    fn is_ready(&self) -> bool {
        true
    }

    fn is_closed(&self) -> bool {
        false
    }
}

/// The HTTP/2 connection preface (RFC 9113 section 3.4): h2c with prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Read buffers start this large.
const BUFFER: usize = 8 * 1024;
/// Request bodies of up to this many bytes (with a Content-Length) are read whole before
/// the request goes to a member.
const HOLD_BODY: u64 = 64 * 1024;

/// What one client connection keeps from request to request: its buffers and the
/// timers of its waits.
struct Buffers {
    /// What the client sent and the proxy has not passed on yet.
    input: BytesMut,
    /// What the member of the request in flight sent and the proxy has not passed on.
    member_input: BytesMut,
    /// Heads being written out.
    out: Vec<u8>,
    /// Waits on the client: for request heads and bodies (`timeout_client_data`).
    client_wait: Wait,
    /// Waits on members: for answers (`timeout_member_data`).
    member_wait: Wait,
    /// The last member connection this client used that serves no other (a PROXY
    /// pool's, whose header names it, or one with its SNI), kept for its next requests.
    own: Option<OwnConnection>,
}

/// A member connection that serves one client only (see [`Buffers::own`]).
struct OwnConnection {
    /// The pool it belongs to; a reconfigured pool is another one.
    pool: Weak<PoolRuntime>,
    member: usize,
    stream: MemberStream,
}

impl OwnConnection {
    fn serves(&self, pool: &PoolRuntime, member: usize) -> bool {
        std::ptr::eq(self.pool.as_ptr(), pool) && self.member == member
    }
}

/// How serving an HTTP/1 connection ended.
pub(crate) enum Ended {
    Closed,
    /// The client opened with the HTTP/2 preface: these are the bytes read so far.
    Http2(BytesMut),
}

/// What became of one request.
enum Exchange {
    /// Answered; the connection takes the next request.
    KeepGoing,
    /// Answered or failed; the connection closes.
    Close,
}

/// Serves HTTP/1.x requests on one client connection until it closes. With
/// `detect_h2`, a connection opening with the HTTP/2 preface is handed back instead.
pub(crate) async fn serve<S>(client: &ClientConnection, stream: &mut S, detect_h2: bool) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let accepted = &client.accepted;
    // One future for the connection's life, not one per request: it stays registered.
    let mut removed = pin!(super::listener_removed(client.state.clone(), accepted));
    let header_timeout = Duration::from_millis(accepted.config().timeout_client_data);
    let mut buffers = Buffers {
        input: BytesMut::with_capacity(BUFFER),
        member_input: BytesMut::new(),
        out: Vec::with_capacity(1024),
        client_wait: Wait::default(),
        member_wait: Wait::default(),
        own: None,
    };
    let mut draining = false;
    let mut first = true;
    loop {
        let deadline = Instant::now() + header_timeout;
        let request = loop {
            if !buffers.input.is_empty() {
                if detect_h2
                    && first
                    && H2_PREFACE.starts_with(&buffers.input[..buffers.input.len().min(24)])
                {
                    if buffers.input.len() >= H2_PREFACE.len() {
                        return Ended::Http2(std::mem::take(&mut buffers.input));
                    }
                } else {
                    match head::parse_request(&mut buffers.input) {
                        Ok(Some(request)) => break request,
                        Ok(None) => {}
                        Err(error) => {
                            tracing::debug!(%error, "refusing a request head");
                            accepted.stats.add_request_error();
                            buffers.out.clear();
                            local_answer(&mut buffers.out, error.status(), false);
                            let _ = write_out(stream, &buffers.out).await;
                            return Ended::Closed;
                        }
                    }
                }
            } else if draining {
                return Ended::Closed;
            }
            buffers.input.reserve(BUFFER);
            tokio::select! {
                biased;
                read = buffers.client_wait.until(deadline, stream.read_buf(&mut buffers.input)) => {
                    let ended = match read {
                        Ok(Ok(0)) => "closed",
                        Ok(Ok(_)) => continue,
                        Ok(Err(_)) => "failed",
                        Err(_) => "timed out",
                    };
                    if !buffers.input.is_empty() {
                        tracing::debug!(ended, "connection ended inside a request head");
                        accepted.stats.add_request_error();
                    }
                    return Ended::Closed;
                }
                () = &mut removed, if !draining => {
                    tracing::debug!("listener removed; closing the connection after its requests");
                    draining = true;
                }
            }
        };
        first = false;
        let exchange = handle(client, request, stream, &mut buffers).await;
        if matches!(exchange, Exchange::Close) {
            return Ended::Closed;
        }
    }
}

/// Routes and answers one request.
async fn handle<S>(
    client: &ClientConnection,
    request: RequestHead,
    stream: &mut S,
    buffers: &mut Buffers,
) -> Exchange
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let listener = client.listener();
    // A request the proxy answers itself keeps its connection only without a body.
    let keep = request.keep_alive && request.framing == Framing::Empty;
    let pool = match policy::route(&listener.compiled.policies, &request) {
        Route::Reject => {
            return answer_locally(stream, &mut buffers.out, StatusCode::FORBIDDEN, keep).await;
        }
        Route::Redirect { location, code } => {
            buffers.out.clear();
            redirect(&mut buffers.out, &location, code, keep);
            return finish(write_out(stream, &buffers.out).await.is_ok() && keep);
        }
        Route::Pool(pool_id) => listener.pools.get(pool_id),
        Route::Default => listener.default_pool.as_ref(),
    };
    let Some(pool) = pool else {
        return answer_locally(
            stream,
            &mut buffers.out,
            StatusCode::SERVICE_UNAVAILABLE,
            keep,
        )
        .await;
    };
    forward(client, &listener, pool, request, stream, buffers).await
}

fn finish(keep: bool) -> Exchange {
    if keep {
        Exchange::KeepGoing
    } else {
        Exchange::Close
    }
}

async fn answer_locally<S>(
    stream: &mut S,
    out: &mut Vec<u8>,
    status: StatusCode,
    keep: bool,
) -> Exchange
where
    S: AsyncWrite + Unpin,
{
    out.clear();
    local_answer(out, status, keep);
    finish(write_out(stream, out).await.is_ok() && keep)
}

/// Why forwarding a request failed, and what the client is answered if nothing of the
/// member's answer has reached it yet.
enum Failure {
    NoMember,
    /// The member failed (connection, reset, broken answer): 502.
    Member,
    /// The member took too long: 504.
    MemberTooSlow,
    /// The client's request body stopped coming or broke: 408 or 400, not the member's
    /// fault.
    Client(StatusCode),
    /// The answer had begun: nothing more can be said, the connection closes.
    Cut,
}

async fn forward<S>(
    client: &ClientConnection,
    listener: &ListenerRuntime,
    pool: &Arc<PoolRuntime>,
    request: RequestHead,
    stream: &mut S,
    buffers: &mut Buffers,
) -> Exchange
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Buffers {
        input,
        member_input,
        out,
        client_wait,
        member_wait,
        own,
    } = buffers;
    let framing = request.framing;
    let upgrade = upgrade_asked(&request);
    let persistence = Persistence::of(pool, &request);
    // The proxy answers `Expect: 100-continue` itself, so the member gets no Expect.
    let continued = request.expects_continue && framing != Framing::Empty;
    if continued
        && write_out(stream, b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .is_err()
    {
        return Exchange::Close;
    }
    let carried = Carried {
        transfer_encoding: framing == Framing::Chunked,
        upgrade,
    };
    out.clear();
    head::write_request_line(out, &request.method, request.path_and_query());
    persistence
        .request_rewrite(client, listener, carried, continued)
        .write(&request, out);
    head::end_head(out);
    let RequestHead {
        method,
        uri,
        version: client_version,
        fields,
        keep_alive,
        ..
    } = request;
    // The head's bytes go: the input buffer is the connection's alone again, and grows
    // in place.
    drop((uri, fields));
    let config = listener.config();
    let client_timeout = Duration::from_millis(config.timeout_client_data);
    if let Framing::Length(length) = framing
        && length <= HOLD_BODY
        && let Err(error) =
            hold_body(stream, input, length, (&mut *client_wait, client_timeout)).await
    {
        return fail(listener, stream, out, error.failure("client")).await;
    }
    // A body the proxy holds whole goes out with the head, and can go again.
    let held = match framing {
        Framing::Empty => Some(0),
        Framing::Length(length) if (input.len() as u64) >= length => usize::try_from(length).ok(),
        _ => None,
    };
    if let Some(held) = held {
        out.extend_from_slice(&input[..held]);
    }
    let target = Target::new(client, listener, persistence.member.as_deref());
    member_input.clear();
    let sent = send(
        pool,
        &target,
        out,
        held.is_some(),
        (member_input, &mut *member_wait, own),
        &method,
        upgrade,
    )
    .await;
    let Sent {
        member: member_index,
        stream: mut member,
        response,
        active: _active,
    } = match sent {
        Ok(sent) => sent,
        Err(failure) => return fail(listener, stream, out, failure).await,
    };
    let member_runtime = &pool.members[member_index];
    // An answer read already came to a request sent whole (its body held); otherwise the
    // rest of the body goes now, as it comes.
    let response = match response {
        Some(response) => {
            input.advance(held.unwrap_or_default());
            Ok(response)
        }
        None => {
            let mut progress = BodyProgress::new(framing);
            match pass_body(
                &mut progress,
                input,
                stream,
                &mut member,
                &mut Vec::new(),
                false,
                (client_wait, client_timeout),
            )
            .await
            {
                Ok(()) => {
                    read_response(
                        &mut member,
                        (member_input, &mut *member_wait),
                        &method,
                        target.response_timeout,
                        false,
                    )
                    .await
                }
                Err(error) => Err(error.failure("client")),
            }
        }
    };
    let response = match response {
        Ok(response) => response,
        Err(failure) => {
            if matches!(failure, Failure::Member | Failure::MemberTooSlow) {
                member_runtime.stats.add_request_error();
            }
            return fail(listener, stream, out, failure).await;
        }
    };
    let member_id = member_runtime.config.id.as_str();
    let switched = response.status == StatusCode::SWITCHING_PROTOCOLS;
    let answer_framing = response.framing;
    let member_keeps = response.keep_alive;
    // An HTTP/1.0 client gets a chunked answer unchunked, delimited by the close.
    let unchunk = client_version == Version::HTTP_10 && answer_framing == Framing::Chunked;
    let keep =
        keep_alive && !unchunk && answer_framing != Framing::UntilClose && !client.listener_gone();
    let carried = Carried {
        transfer_encoding: response.transfer_encoding && !unchunk,
        upgrade: switched,
    };
    out.clear();
    head::write_status_line(out, response.status, response.reason());
    let answer = (&response.fields, response.transfer_encoding);
    persistence.answer_fields(pool, answer, member_id, carried, out);
    let connection: Option<&[u8]> = if switched {
        Some(b"upgrade")
    } else if !keep {
        Some(b"close")
    } else if client_version == Version::HTTP_10 {
        Some(b"keep-alive")
    } else {
        None
    };
    if let Some(connection) = connection {
        out.push_field(b"connection", connection);
    }
    head::end_head(out);
    // The answer's head goes too: the member's buffer holds what follows it.
    drop(response);
    if switched {
        let idle = client_timeout.max(target.response_timeout);
        let tunnelled = tunnel(
            stream,
            &mut member,
            out,
            (input, member_input),
            (client_wait, idle),
        )
        .await;
        if let Err(error) = tunnelled {
            tracing::debug!(member = member_id, %error, "an upgraded connection ended");
        }
        return Exchange::Close;
    }
    let mut progress = BodyProgress::new(answer_framing);
    let member_timeout = target.response_timeout;
    match pass_body(
        &mut progress,
        member_input,
        &mut member,
        stream,
        out,
        unchunk,
        (member_wait, member_timeout),
    )
    .await
    {
        Ok(()) => {}
        Err(error) => {
            if error.is_sender_side() {
                tracing::warn!(member = member_id, %error, "member's answer broke off");
                member_runtime.stats.add_request_error();
            } else {
                tracing::debug!(%error, "client went away during the answer");
            }
            return Exchange::Close;
        }
    }
    if member_keeps && member_input.is_empty() {
        if pool.shares_connections(target.sni) {
            member_runtime.idle_streams.keep(member);
        } else {
            *own = Some(OwnConnection {
                pool: Arc::downgrade(pool),
                member: member_index,
                stream: member,
            });
        }
    }
    finish(keep)
}

/// Whether an HTTP/1.1 request without a body asks for an upgrade (`Connection:
/// upgrade` with an `Upgrade` field).
fn upgrade_asked(request: &RequestHead) -> bool {
    request.version == Version::HTTP_11
        && request.framing == Framing::Empty
        && fields::connection_has(&request.fields, "upgrade")
        && request.fields.has(&header::UPGRADE)
}

/// Serves an upgraded connection: sends the 101 head in `out` and what the member sent
/// after it to the client, and what the client sent after its request to the member
/// (`inputs`: the client's, then the member's); then passes bytes both ways until both
/// sides are closed, or neither sent anything for `idle`. A side that closes has its
/// close passed on (a half-close), and the other may still send.
pub(crate) async fn tunnel<S, M>(
    client: &mut S,
    member: &mut M,
    out: &mut Vec<u8>,
    (client_input, member_input): (&mut BytesMut, &mut BytesMut),
    (wait, idle): (&mut Wait, Duration),
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    M: AsyncRead + AsyncWrite + Unpin,
{
    out.extend_from_slice(member_input);
    member_input.clear();
    write_out(client, out).await?;
    if !client_input.is_empty() {
        write_out(member, client_input).await?;
        client_input.clear();
    }
    let (mut from_client, mut from_member) = (true, true);
    while from_client || from_member {
        client_input.reserve(BUFFER);
        member_input.reserve(BUFFER);
        let read = wait
            .within(idle, async {
                tokio::select! {
                    read = client.read_buf(client_input), if from_client => (Side::Client, read),
                    read = member.read_buf(member_input), if from_member => (Side::Member, read),
                }
            })
            .await;
        let Ok((side, read)) = read else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("nothing passed for {idle:?}"),
            ));
        };
        match (side, read?) {
            (Side::Client, 0) => {
                from_client = false;
                member.shutdown().await?;
            }
            (Side::Member, 0) => {
                from_member = false;
                client.shutdown().await?;
            }
            (Side::Client, _) => {
                write_out(member, client_input).await?;
                client_input.clear();
            }
            (Side::Member, _) => {
                write_out(client, member_input).await?;
                member_input.clear();
            }
        }
    }
    Ok(())
}

/// A request on its way: the member it went to, the connection, the answer's head if
/// it was read already, and the member's count of the request.
struct Sent {
    member: usize,
    stream: MemberStream,
    response: Option<ResponseHead>,
    active: ConnectionGuard,
}

/// Sends a request (`out`: its head, and its whole body when `whole`) to a member of
/// `pool`: over an idle connection when the request can be sent again (where connections
/// are not shared, only the client's `own` one, if it goes to that member), else a new
/// one.
/// With the whole request sent, also reads the answer's head (`Some`; a 101 only when
/// `upgrading`) into `member_input`; otherwise the caller sends the body first (`None`).
async fn send(
    pool: &PoolRuntime,
    target: &Target<'_>,
    out: &[u8],
    whole: bool,
    (member_input, wait, own): (&mut BytesMut, &mut Wait, &mut Option<OwnConnection>),
    method: &http::Method,
    upgrading: bool,
) -> Result<Sent, Failure> {
    let mut failed = Vec::new();
    let shared = pool.shares_connections(target.sni);
    let mut reuse = whole;
    while failed.len() < pool.members.len() {
        let Some(index) = pool.choose(target.origin.client.ip(), target.persisted_member, &failed)
        else {
            break;
        };
        let member = &pool.members[index];
        let idle = if !reuse {
            None
        } else if shared {
            member.idle_streams.take()
        } else {
            own.take_if(|own| own.serves(pool, index))
                .map(|own| own.stream)
        };
        let reused = idle.is_some();
        let mut stream = match idle {
            Some(stream) => stream,
            None => match pool
                .connect_member(index, target.connect_timeout, target.origin, target.sni)
                .await
            {
                Some(stream) => CountingIo::new(stream, Arc::clone(&member.stats), Side::Member),
                None => {
                    failed.push(index);
                    continue;
                }
            },
        };
        let active = member.stats.open_connection();
        let written = write_out(&mut stream, out).await;
        if !whole {
            return match written {
                Ok(()) => Ok(Sent {
                    member: index,
                    stream,
                    response: None,
                    active,
                }),
                Err(error) => {
                    tracing::warn!(member = member.config.id, %error, "sending to member failed");
                    member.stats.add_request_error();
                    Err(Failure::Member)
                }
            };
        }
        let answer = match written {
            Ok(()) => {
                let timeout = target.response_timeout;
                let input = (&mut *member_input, &mut *wait);
                read_response(&mut stream, input, method, timeout, upgrading).await
            }
            Err(_) => Err(Failure::Member),
        };
        match answer {
            Ok(response) => {
                return Ok(Sent {
                    member: index,
                    stream,
                    response: Some(response),
                    active,
                });
            }
            // The member had closed the idle connection: nothing was answered, so the
            // request goes again, on a new connection.
            Err(Failure::Member) if reused && member_input.is_empty() => {
                tracing::debug!(
                    member = member.config.id,
                    "an idle member connection had closed; sending on a new one"
                );
                reuse = false;
            }
            Err(failure) => {
                if let Failure::MemberTooSlow = failure {
                    tracing::warn!(member = member.config.id, "member answered too slowly");
                } else {
                    tracing::warn!(member = member.config.id, "member failed to answer");
                }
                member.stats.add_request_error();
                return Err(failure);
            }
        }
    }
    let error = pool.connect_error(&failed);
    tracing::warn!(%error, "no member for request");
    Err(Failure::NoMember)
}

/// Reads a member's answer head, passing nothing of 1xx answers on (the proxy answered
/// `Expect: 100-continue` itself) but a 101 to a request `upgrading`; `timeout` bounds
/// the whole wait.
async fn read_response(
    member: &mut MemberStream,
    (member_input, wait): (&mut BytesMut, &mut Wait),
    method: &http::Method,
    timeout: Duration,
    upgrading: bool,
) -> Result<ResponseHead, Failure> {
    let deadline = Instant::now() + timeout;
    loop {
        if !member_input.is_empty() {
            match head::parse_response(member_input, method) {
                Ok(Some(response)) => {
                    if response.status == StatusCode::SWITCHING_PROTOCOLS {
                        return if upgrading {
                            Ok(response)
                        } else {
                            Err(Failure::Member)
                        };
                    }
                    if response.status.is_informational() {
                        continue;
                    }
                    return Ok(response);
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "member sent a broken answer head");
                    return Err(Failure::Member);
                }
            }
        }
        member_input.reserve(BUFFER);
        match wait.until(deadline, member.read_buf(member_input)).await {
            Ok(Ok(0) | Err(_)) => return Err(Failure::Member),
            Ok(Ok(_)) => {}
            Err(_) => return Err(Failure::MemberTooSlow),
        }
    }
}

/// Answers a failed request when nothing of an answer has gone out yet.
async fn fail<S>(
    listener: &ListenerRuntime,
    stream: &mut S,
    out: &mut Vec<u8>,
    failure: Failure,
) -> Exchange
where
    S: AsyncWrite + Unpin,
{
    let status = match failure {
        Failure::NoMember => StatusCode::SERVICE_UNAVAILABLE,
        Failure::Member => StatusCode::BAD_GATEWAY,
        Failure::MemberTooSlow => StatusCode::GATEWAY_TIMEOUT,
        Failure::Client(status) => {
            listener.stats.add_request_error();
            status
        }
        Failure::Cut => return Exchange::Close,
    };
    // The request's body may not have been read to its end: the connection closes.
    answer_locally(stream, out, status, false).await
}

/// A body that could not be passed on.
#[derive(Debug, thiserror::Error)]
enum PassError {
    #[error("reading the body failed: {0}")]
    Read(std::io::Error),
    #[error("the sender sent nothing of the body for {0:?}")]
    Idle(Duration),
    #[error("{0}")]
    Framing(#[from] FramingError),
    #[error("writing the body failed: {0}")]
    Write(std::io::Error),
}

impl PassError {
    /// Whether the body's sender is at fault (rather than its receiver).
    fn is_sender_side(&self) -> bool {
        !matches!(self, PassError::Write(_))
    }

    /// What a request body's failure means (`side`: whose body it was).
    fn failure(self, side: &'static str) -> Failure {
        tracing::debug!(side, error = %self, "request body failed");
        match self {
            PassError::Idle(_) => Failure::Client(StatusCode::REQUEST_TIMEOUT),
            PassError::Framing(_) => Failure::Client(StatusCode::BAD_REQUEST),
            PassError::Read(_) => Failure::Cut,
            PassError::Write(_) => Failure::Member,
        }
    }
}

/// Passes a body from `from` to `to`: first what `buffer` holds of it, then what comes,
/// each read within `idle` (timed by `wait`). `head` (bytes to send before the body) goes out with the
/// body's first bytes in one write. With `unchunk`, only the data of a chunked body
/// goes. Bytes after the body stay in `buffer`.
async fn pass_body<R, W>(
    progress: &mut BodyProgress,
    buffer: &mut BytesMut,
    from: &mut R,
    to: &mut W,
    head: &mut Vec<u8>,
    unchunk: bool,
    (wait, idle): (&mut Wait, Duration),
) -> Result<(), PassError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut pending = std::mem::take(head);
    loop {
        if !buffer.is_empty() && !progress.is_done() {
            let taken = if unchunk {
                progress.advance(buffer, |range| pending.extend_from_slice(&buffer[range]))?
            } else {
                let taken = progress.advance(buffer, |_| {})?;
                pending.extend_from_slice(&buffer[..taken]);
                taken
            };
            buffer.advance(taken);
        }
        if !pending.is_empty() {
            to.write_all(&pending).await.map_err(PassError::Write)?;
            pending.clear();
        }
        if progress.is_done() {
            to.flush().await.map_err(PassError::Write)?;
            *head = pending;
            return Ok(());
        }
        // The receiver has all there is so far; it must not wait behind a buffer.
        to.flush().await.map_err(PassError::Write)?;
        buffer.reserve(BUFFER);
        match wait.within(idle, from.read_buf(buffer)).await {
            Ok(Ok(0)) => {
                progress.end_of_input()?;
                *head = pending;
                return Ok(());
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(PassError::Read(error)),
            Err(_) => return Err(PassError::Idle(idle)),
        }
    }
}

/// Reads from `from` into `buffer` until it holds `length` bytes (a request's body, of at
/// most [`HOLD_BODY`]), each read within `idle` (timed by `wait`).
async fn hold_body<R: AsyncRead + Unpin>(
    from: &mut R,
    buffer: &mut BytesMut,
    length: u64,
    (wait, idle): (&mut Wait, Duration),
) -> Result<(), PassError> {
    let length = usize::try_from(length).unwrap_or(usize::MAX);
    buffer.reserve(length.saturating_sub(buffer.len()));
    while buffer.len() < length {
        match wait.within(idle, from.read_buf(buffer)).await {
            Ok(Ok(0)) => return Err(PassError::Framing(FramingError::Truncated)),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(PassError::Read(error)),
            Err(_) => return Err(PassError::Idle(idle)),
        }
    }
    Ok(())
}

/// Writes all of `bytes` and flushes them (TLS streams, clients' and members', buffer).
async fn write_out<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// An answer of the proxy's own: the status and its reason as plain text.
fn local_answer(out: &mut Vec<u8>, status: StatusCode, keep: bool) {
    let reason = status.canonical_reason().unwrap_or("");
    let body = format!("{} {reason}\n", status.as_u16());
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n{}\r\n{body}",
            status.as_u16(),
            body.len(),
            if keep { "" } else { "connection: close\r\n" },
        )
        .as_bytes(),
    );
}

fn redirect(out: &mut Vec<u8>, location: &str, code: u16, keep: bool) {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::FOUND);
    let reason = status.canonical_reason().unwrap_or("");
    out.extend_from_slice(format!("HTTP/1.1 {} {reason}\r\n", status.as_u16()).as_bytes());
    if HeaderValue::from_str(location).is_ok() {
        out.extend_from_slice(format!("location: {location}\r\n").as_bytes());
    }
    out.extend_from_slice(b"content-length: 0\r\n");
    if !keep {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}
