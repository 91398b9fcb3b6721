//! Member connections: the lists of idle keep-alive connections each member has (one of
//! raw streams for the HTTP/1 path of [`super::h1`], one of hyper's senders), and the
//! sending of HTTP/2 clients' requests through hyper. A request goes to the member the
//! balancer picks for it, over one of that member's idle keep-alive connections when it
//! has one, else over a new connection (failing over to another member when connecting
//! fails). Once the member's answer has been passed on to its end, the connection goes
//! back among the member's idle ones for the next request, as haproxy's `http-reuse`
//! does, except in PROXY pools, whose connections name one client, and for TLS pools'
//! connections that passed on a client's SNI: there it goes back among the idle ones
//! of that client connection only ([`OwnSenders`], HAProxy's private
//! connections; HTTP/1 clients keep theirs in [`super::h1`]), and closes with it. An
//! answer cut short, a member that says `Connection: close`, and [`IDLE_TIMEOUT`]
//! without a request close the connection instead.
//!
//! A request meant for an idle connection the member closed meanwhile comes back from
//! hyper unsent, and goes out again on a new connection; a request the member may have
//! received is never sent twice.
//!
//! The member's `active_connections` count the requests it is answering (its connection
//! slots in haproxy's terms), which is what LEAST_CONNECTIONS balances on, and its
//! `total_connections` the requests sent to it.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tracing::Instrument;

use super::body::{BodyIdle, BoxError, IdleTimeoutBody};
use super::forward::ClientConnection;
use super::io::{CountingIo, Side};
use crate::listener::{ListenerRuntime, ServeContext};
use crate::pool::{Origin, PoolRuntime, lock};
use crate::stats::ConnectionGuard;

/// How long a member connection may wait idle for its next request before it is closed.
/// Short, so a member's own keep-alive timeout rarely closes it first.
const IDLE_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle connections kept per member; one more is closed instead.
const MAX_IDLE_PER_MEMBER: usize = 256;
/// How long an answered connection may take to be ready for its next request.
const READY_WAIT: Duration = Duration::from_secs(1);

/// A request on its way to a member: its body is the client's, bounded by idle timeout.
pub(crate) type MemberRequest = Request<IdleTimeoutBody<Incoming>>;
pub(crate) type Sender = SendRequest<IdleTimeoutBody<Incoming>>;

/// A member connection that can wait among the idle ones.
pub(crate) trait Reusable: Send + 'static {
    /// Whether it can take a request now.
    fn is_ready(&self) -> bool;
    /// Whether it is known to be closed.
    fn is_closed(&self) -> bool;
}

impl Reusable for Sender {
    fn is_ready(&self) -> bool {
        SendRequest::is_ready(self)
    }

    fn is_closed(&self) -> bool {
        SendRequest::is_closed(self)
    }
}

/// One member's keep-alive connections waiting for a request, the most recently used
/// last (it is taken first: its socket is the warmest, and the others may time out).
#[derive(Debug)]
pub(crate) struct IdleConnections<C> {
    idle: Mutex<Vec<(Instant, C)>>,
    /// Whether a task is closing the connections idle for too long.
    sweeping: AtomicBool,
}

impl<C> Default for IdleConnections<C> {
    fn default() -> Self {
        IdleConnections {
            idle: Mutex::new(Vec::new()),
            sweeping: AtomicBool::new(false),
        }
    }
}

impl<C: Reusable> IdleConnections<C> {
    /// An idle connection ready for a request, if there is one.
    pub fn take(&self) -> Option<C> {
        let mut idle = lock(&self.idle);
        while let Some((since, connection)) = idle.pop() {
            if connection.is_ready() && since.elapsed() < IDLE_TIMEOUT {
                return Some(connection);
            }
        }
        None
    }

    /// Keeps a connection ready for its next request.
    pub fn keep(self: &Arc<Self>, connection: C) {
        {
            let mut idle = lock(&self.idle);
            if idle.len() >= MAX_IDLE_PER_MEMBER {
                return;
            }
            idle.push((Instant::now(), connection));
        }
        if !self.sweeping.swap(true, Ordering::AcqRel) {
            tokio::spawn(sweep(Arc::downgrade(self)));
        }
    }
}

impl IdleConnections<Sender> {
    /// Takes back a connection whose answer has been passed on.
    fn put(self: &Arc<Self>, mut sender: Sender) {
        if sender.is_ready() {
            self.keep(sender);
        } else if !sender.is_closed() {
            // hyper's side of the connection is still finishing the answer.
            let idle = Arc::downgrade(self);
            tokio::spawn(async move {
                if let Ok(Ok(())) = tokio::time::timeout(READY_WAIT, sender.ready()).await
                    && let Some(idle) = idle.upgrade()
                {
                    idle.keep(sender);
                }
            });
        }
    }
}

/// Closes the connections idle for longer than [`IDLE_TIMEOUT`] (dropping a sender ends
/// its connection), until none is left or the member is gone.
async fn sweep<C: Reusable>(connections: Weak<IdleConnections<C>>) {
    loop {
        tokio::time::sleep(IDLE_TIMEOUT).await;
        let Some(connections) = connections.upgrade() else {
            return;
        };
        let mut idle = lock(&connections.idle);
        idle.retain(|(since, connection)| {
            since.elapsed() < IDLE_TIMEOUT && !connection.is_closed()
        });
        if idle.is_empty() {
            // Under the lock: a connection kept after this starts a sweep of its own.
            connections.sweeping.store(false, Ordering::Release);
            return;
        }
    }
}

/// The idle connections a client connection keeps of one member, for its own next
/// requests: they name that client (a PROXY header, its SNI), so no other may have them.
#[derive(Debug)]
pub(crate) struct OwnSenders {
    /// The pool they belong to; a reconfigured pool is another one.
    pool: Weak<PoolRuntime>,
    member: usize,
    idle: Arc<IdleConnections<Sender>>,
}

/// The idle connections of member `member` of `pool` kept in `own` (a client
/// connection's), made on first use.
fn own_senders(
    own: &Mutex<Vec<OwnSenders>>,
    pool: &Arc<PoolRuntime>,
    member: usize,
) -> Arc<IdleConnections<Sender>> {
    let mut own = lock(own);
    // Those of pools gone by a reconfigure are dropped (closing their connections).
    own.retain(|kept| kept.pool.strong_count() > 0);
    let kept = own
        .iter()
        .find(|kept| std::ptr::eq(kept.pool.as_ptr(), Arc::as_ptr(pool)) && kept.member == member);
    if let Some(kept) = kept {
        return Arc::clone(&kept.idle);
    }
    let idle = Arc::new(IdleConnections::default());
    own.push(OwnSenders {
        pool: Arc::downgrade(pool),
        member,
        idle: Arc::clone(&idle),
    });
    idle
}

/// Where and how a request is to be sent.
pub(crate) struct Target<'a> {
    /// The client and the address it connected to.
    pub origin: Origin,
    /// The member a persistence cookie names.
    pub persisted_member: Option<&'a str>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub serve: &'a ServeContext,
    /// The client connection's own idle connections of members (see
    /// `PoolRuntime::shares_connections`).
    pub own: &'a Mutex<Vec<OwnSenders>>,
    /// The server name the client asked its TLS for (TERMINATED_HTTPS listeners).
    pub sni: Option<&'a str>,
}

impl Target<'_> {
    pub fn new<'a>(
        client: &'a ClientConnection,
        listener: &ListenerRuntime,
        persisted_member: Option<&'a str>,
    ) -> Target<'a> {
        let config = listener.config();
        Target {
            origin: client.origin(),
            persisted_member,
            connect_timeout: Duration::from_millis(config.timeout_member_connect),
            response_timeout: Duration::from_millis(config.timeout_member_data),
            serve: &client.serve,
            own: &client.own_senders,
            sni: client.sni.as_deref(),
        }
    }
}

/// Why a request got no answer from a member.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No member is available, or none accepted a connection (503).
    NoMember,
    /// The member failed to answer (502).
    MemberFailed,
    /// The member took longer than the listener's member data timeout (504).
    MemberTooSlow,
    /// The client stopped sending its request body (408).
    ClientBodyIdle,
}

/// A member's answer, and the connection it came on.
pub(crate) struct Answer {
    /// The member's index in the pool.
    pub member: usize,
    pub response: Response<Incoming>,
    pub lease: Lease,
}

/// A member connection in use, and the member's count of the request; released into
/// `idle` once the answer has been passed on: the member's idle connections, or the
/// client connection's own (see `PoolRuntime::shares_connections`).
pub(crate) struct Lease {
    sender: Sender,
    idle: Arc<IdleConnections<Sender>>,
    _active: ConnectionGuard,
}

/// Sends `request` to a member of `pool`, on an idle connection or a new one. A request
/// that asks for an `upgrade` always goes on a new connection, which hyper gives up to
/// the answer (`hyper::upgrade::on`) if the member switches protocols.
pub(crate) async fn send(
    pool: &Arc<PoolRuntime>,
    target: &Target<'_>,
    mut request: MemberRequest,
    upgrade: bool,
) -> Result<Answer, SendError> {
    let mut failed = Vec::new();
    let mut reuse = !upgrade;
    while failed.len() < pool.members.len() {
        let Some(index) = pool.choose(target.origin.client.ip(), target.persisted_member, &failed)
        else {
            break;
        };
        let member = &pool.members[index];
        let kept = if pool.shares_connections(target.sni) {
            Arc::clone(&member.idle_senders)
        } else {
            own_senders(target.own, pool, index)
        };
        let idle = if reuse { kept.take() } else { None };
        let reused = idle.is_some();
        let mut sender = match idle {
            Some(sender) => sender,
            None => match open(pool, index, target, upgrade).await {
                Some(sender) => sender,
                None => {
                    failed.push(index);
                    continue;
                }
            },
        };
        let active = member.stats.open_connection();
        let sent = sender.try_send_request(request);
        let error = match tokio::time::timeout(target.response_timeout, sent).await {
            Ok(Ok(response)) => {
                return Ok(Answer {
                    member: index,
                    response,
                    lease: Lease {
                        sender,
                        idle: kept,
                        _active: active,
                    },
                });
            }
            Ok(Err(error)) => error,
            Err(_) => {
                tracing::warn!(member = member.config.id, "member answered too slowly");
                member.stats.add_request_error();
                return Err(SendError::MemberTooSlow);
            }
        };
        let mut error = error;
        if reused && let Some(unsent) = error.take_message() {
            tracing::debug!(member = member.config.id, error = %error.error(), "an idle member connection closed; sending on a new one");
            request = unsent;
            reuse = false;
            continue;
        }
        if client_body_idle(error.error()) {
            tracing::debug!(error = %error.error(), "client stopped sending its request body");
            return Err(SendError::ClientBodyIdle);
        }
        tracing::warn!(member = member.config.id, error = %error.error(), "member failed to answer");
        member.stats.add_request_error();
        return Err(SendError::MemberFailed);
    }
    let error = pool.connect_error(&failed);
    tracing::warn!(%error, "no member for request");
    Err(SendError::NoMember)
}

/// Opens a new HTTP/1.1 connection to member `index`, its bytes counted on the member;
/// one for an `upgrade` is given up to the answer if the member switches.
async fn open(
    pool: &PoolRuntime,
    index: usize,
    target: &Target<'_>,
    upgrade: bool,
) -> Option<Sender> {
    let stream = pool
        .connect_member(index, target.connect_timeout, target.origin, target.sni)
        .await?;
    let member = &pool.members[index];
    let io = CountingIo::new(stream, Arc::clone(&member.stats), Side::Member);
    match http1::handshake(TokioIo::new(io)).await {
        Ok((sender, connection)) => {
            target.serve.tracker.spawn_connection(
                &target.serve.shutdown,
                async move {
                    let _ = match upgrade {
                        true => connection.with_upgrades().await,
                        false => connection.await,
                    };
                }
                .in_current_span(),
            );
            Some(sender)
        }
        Err(error) => {
            tracing::warn!(member = member.config.id, %error, "HTTP handshake with member failed");
            member.stats.add_request_error();
            None
        }
    }
}

/// Whether forwarding failed because the client's request body went idle (the client's
/// fault, answered 408 like haproxy does), rather than because of the member.
fn client_body_idle(error: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(error) = source {
        if error
            .downcast_ref::<BodyIdle>()
            .is_some_and(|idle| idle.sender == "client")
        {
            return true;
        }
        source = error.source();
    }
    false
}

/// A member's answer on its way to the client, holding the member connection it came on:
/// passed on to its end, it releases the connection for the next request; dropped before
/// (the client went away, the member stalled), it closes it.
pub(crate) struct AnswerBody {
    inner: IdleTimeoutBody<Incoming>,
    lease: Option<Lease>,
    ended: bool,
}

impl AnswerBody {
    pub fn new(inner: IdleTimeoutBody<Incoming>, lease: Lease) -> AnswerBody {
        AnswerBody {
            inner,
            lease: Some(lease),
            ended: false,
        }
    }
}

impl Body for AnswerBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(context);
        match &polled {
            Poll::Ready(None) => self.ended = true,
            Poll::Ready(Some(Err(_))) => self.lease = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for AnswerBody {
    fn drop(&mut self) {
        // hyper may stop asking once the body says it is complete, without a last poll.
        let complete = self.ended || self.inner.is_end_stream();
        if let Some(lease) = self.lease.take()
            && complete
        {
            lease.idle.put(lease.sender);
        }
    }
}
