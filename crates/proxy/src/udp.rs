//! UDP forwarding: each client address gets a session with its own upstream socket
//! connected to one member, so answers find their way back and a client sticks to its
//! member for as long as it keeps talking (SOURCE_IP stickiness comes for free).
//!
//! A session ends after `min(timeout_client_data, timeout_member_data)` with no datagram
//! either way. The next datagram of a client whose member went down, or left the pool,
//! starts a new session on another member: UDP has no connection to keep, so moving
//! the flow is better than sending into a void.
//!
//! Sessions are bounded ([`Listener::udp_session_limit`]: the connection limit, or 10,000
//! without one), because sources are trivially spoofed and each session holds a socket;
//! datagrams that would open one more are dropped and counted as request errors. An idle
//! session holds no receive buffer: answers are read into one buffer per thread and
//! copied out at their own size.
//!
//! Sessions belong to their listener's socket: when a reconfigure removes the listener,
//! its sessions end with it (their answers could only leave through that socket).
//!
//! Datagrams from the address the proxy takes PROXY protocol headers from (the node-port
//! forwarder, which sends each client's flow from a socket of its own) start with a
//! version 2 header naming the client: the session is the forwarder socket's, as answers
//! go back there, but the member is chosen for the client named (source-IP balancing and
//! persistence). One without a valid header is dropped and counted as a request error.
//!
//! [`Listener::udp_session_limit`]: crate::config::Listener::udp_session_limit

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::Instrument;

use crate::listener::ListenerRuntime;
use crate::pool::PoolRuntime;
use crate::proxy_protocol::{self, Announced};
use crate::stats::{ConnectionGuard, Counters};
use crate::tasks::AbortOnDrop;

const MAX_DATAGRAM: usize = 65_536;

thread_local! {
    /// Where sessions read their members' answers. Reading is synchronous (`try_recv`
    /// once the socket is readable), so one buffer per thread serves every session.
    static ANSWER_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; MAX_DATAGRAM]);
}

struct Session {
    generation: u64,
    upstream: Arc<UdpSocket>,
    pool: Arc<PoolRuntime>,
    member: usize,
    activity: Arc<Activity>,
    idle: Duration,
    counters: [Arc<Counters>; 2],
    task: AbortOnDrop,
}

impl Session {
    /// Whether the session can still carry a datagram: its answer task still runs and
    /// it is not past its idle deadline. A session whose task has ended stays in the
    /// table until the loop handles its expiry; a datagram sent on it then would be
    /// forwarded with no one left to pass the answer back.
    fn is_live(&self, now: Instant) -> bool {
        !self.task.is_finished() && now < self.activity.idle_deadline(self.idle)
    }
}

/// When a session last saw a datagram, in milliseconds since it started.
struct Activity {
    start: Instant,
    last: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(elapsed, Ordering::Relaxed);
    }

    fn idle_deadline(&self, idle: Duration) -> Instant {
        self.start + Duration::from_millis(self.last.load(Ordering::Relaxed)) + idle
    }
}

/// Forwards datagrams until the state channel's sender is dropped; then ends every
/// session.
pub(crate) async fn serve_datagrams(
    socket: UdpSocket,
    mut state: watch::Receiver<Arc<ListenerRuntime>>,
    accept_proxy_from: Option<IpAddr>,
) {
    let socket = Arc::new(socket);
    let mut sessions: HashMap<SocketAddr, Session> = HashMap::new();
    let (expired_sender, mut expired) = mpsc::unbounded_channel::<(SocketAddr, u64)>();
    let mut generations = 0u64;
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    loop {
        // Biased: ended sessions leave the table, and a removed listener stops, before
        // more datagrams are taken in, however many are queued.
        tokio::select! {
            biased;
            Some((peer, generation)) = expired.recv() => {
                if sessions.get(&peer).is_some_and(|session| session.generation == generation) {
                    sessions.remove(&peer);
                }
            }
            changed = state.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            received = socket.recv_from(&mut buffer) => match received {
                Ok((length, peer)) => {
                    let runtime = Arc::clone(&state.borrow());
                    let (datagram, client) = if accept_proxy_from == Some(peer.ip()) {
                        match proxy_protocol::strip_datagram_header(&buffer[..length]) {
                            Ok((Announced::Relayed { client, .. }, datagram)) => (datagram, client.ip()),
                            Ok((Announced::Local, datagram)) => (datagram, peer.ip()),
                            Err(error) => {
                                tracing::debug!(listener = runtime.id(), %peer, %error, "no PROXY protocol header where one was due, dropping datagram");
                                runtime.stats.add_request_error();
                                continue;
                            }
                        }
                    } else {
                        (&buffer[..length], peer.ip())
                    };
                    if !session_still_serves(sessions.get(&peer), &runtime, Instant::now()) {
                        sessions.remove(&peer);
                        generations += 1;
                        let opened = open_session(
                            &runtime, &socket, (peer, client), generations, sessions.len(), &expired_sender,
                        ).await;
                        let Some(session) = opened else { continue };
                        sessions.insert(peer, session);
                    }
                    if let Some(session) = sessions.get(&peer) {
                        forward_to_member(session, datagram).await;
                    }
                }
                // An ICMP error for an earlier send can surface here; it concerns no
                // one client's session, so keep serving.
                Err(error) if matches!(error.kind(), ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset) => {
                    tracing::debug!(%error, "receiving a datagram failed");
                }
                Err(error) => {
                    // Anything else may well persist: back off rather than spin.
                    tracing::warn!(listener = state.borrow().id(), %error, "receiving a datagram failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    for (_, session) in sessions.drain() {
        session.task.stop().await;
    }
}

/// Whether a client's existing session may carry its next datagram: it is live, and its
/// member is still in the listener's pool, at the same address, and up.
fn session_still_serves(
    session: Option<&Session>,
    runtime: &ListenerRuntime,
    now: Instant,
) -> bool {
    let (Some(session), Some(pool)) = (session, &runtime.default_pool) else {
        return false;
    };
    if !session.is_live(now) {
        return false;
    }
    if Arc::ptr_eq(&session.pool, pool) {
        return session.pool.members[session.member].health.is_up();
    }
    let old = &session.pool.members[session.member].config;
    pool.members.iter().any(|member| {
        member.config.id == old.id
            && member.config.socket_addr() == old.socket_addr()
            && member.health.is_up()
    })
}

/// A session for datagrams from `peer`, on the member chosen for `client` (the peer's
/// address, or the client a PROXY protocol header named).
async fn open_session(
    runtime: &ListenerRuntime,
    socket: &Arc<UdpSocket>,
    (peer, client): (SocketAddr, IpAddr),
    generation: u64,
    open_sessions: usize,
    expired: &mpsc::UnboundedSender<(SocketAddr, u64)>,
) -> Option<Session> {
    if open_sessions >= runtime.config().udp_session_limit() {
        tracing::debug!(listener = runtime.id(), %peer, "session limit reached, dropping datagram");
        runtime.stats.add_request_error();
        return None;
    }
    let pool = runtime.default_pool.as_ref()?;
    let Some(index) = pool.choose(client, None, &[]) else {
        tracing::warn!(listener = runtime.id(), %peer, "no member for datagram");
        runtime.stats.add_request_error();
        return None;
    };
    let member = &pool.members[index];
    let target = member.config.socket_addr();
    let local: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let upstream = match UdpSocket::bind(local).await {
        Ok(upstream) => upstream,
        Err(error) => {
            tracing::warn!(listener = runtime.id(), %error, "no upstream socket for a session");
            return None;
        }
    };
    if let Err(error) = upstream.connect(target).await {
        tracing::warn!(listener = runtime.id(), member = member.config.id, %error, "cannot address member");
        member.stats.add_request_error();
        return None;
    }
    let upstream = Arc::new(upstream);
    let activity = Arc::new(Activity {
        start: Instant::now(),
        last: AtomicU64::new(0),
    });
    let counters = [Arc::clone(&runtime.stats), Arc::clone(&member.stats)];
    // Counted as open here rather than in the task, so the count is right at once.
    let open = counters.each_ref().map(|counter| counter.open_connection());
    let config = runtime.config();
    let idle = Duration::from_millis(config.timeout_client_data.min(config.timeout_member_data));
    let span = tracing::info_span!("udp_session", listener = runtime.id(), %peer, %client, member = member.config.id);
    let task = tokio::spawn(
        relay_answers(
            Arc::clone(&upstream),
            Arc::clone(socket),
            peer,
            Arc::clone(&activity),
            (counters.clone(), open),
            idle,
            (expired.clone(), generation),
        )
        .instrument(span),
    );
    Some(Session {
        generation,
        upstream,
        pool: Arc::clone(pool),
        member: index,
        activity,
        idle,
        counters,
        task: AbortOnDrop::new(task),
    })
}

async fn forward_to_member(session: &Session, datagram: &[u8]) {
    session.activity.touch();
    match session.upstream.send(datagram).await {
        Ok(sent) => {
            for counter in &session.counters {
                counter.add_bytes_in(sent as u64);
            }
        }
        // Refused: the member's port answered an earlier datagram with ICMP; the
        // health checker decides about the member, this datagram is lost like any.
        Err(error) => tracing::debug!(%error, "forwarding a datagram failed"),
    }
}

/// The session's task: passes the member's answers back to the client until the session
/// goes idle, counting it as one open connection meanwhile.
async fn relay_answers(
    upstream: Arc<UdpSocket>,
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    activity: Arc<Activity>,
    (counters, _open): ([Arc<Counters>; 2], [ConnectionGuard; 2]),
    idle: Duration,
    (expired, generation): (mpsc::UnboundedSender<(SocketAddr, u64)>, u64),
) {
    loop {
        let deadline = activity.idle_deadline(idle);
        tokio::select! {
            readable = upstream.readable() => {
                if let Err(error) = readable {
                    tracing::debug!(%error, "session socket failed");
                    break;
                }
                let received = ANSWER_BUFFER.with_borrow_mut(|buffer| {
                    upstream.try_recv(buffer).map(|length| buffer[..length].to_vec())
                });
                match received {
                    Ok(answer) => {
                        activity.touch();
                        match socket.send_to(&answer, peer).await {
                            Ok(sent) => {
                                for counter in &counters {
                                    counter.add_bytes_out(sent as u64);
                                }
                            }
                            Err(error) => tracing::debug!(%error, "answering a client failed"),
                        }
                    }
                    // Readiness can be spurious; ICMP for an earlier datagram is the
                    // health checker's business.
                    Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::ConnectionRefused) => {}
                    Err(error) => {
                        tracing::debug!(%error, "session socket failed");
                        break;
                    }
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                if Instant::now() >= activity.idle_deadline(idle) {
                    break;
                }
            }
        }
    }
    let _ = expired.send((peer, generation));
}

#[cfg(test)]
mod tests {
    use tokio::task::JoinHandle;

    use super::*;
    use crate::config::{CompiledConfig, ListenerProtocol, PoolProtocol, ProxyConfig};
    use crate::stats::StatsRegistry;

    fn udp_config() -> ProxyConfig {
        serde_json::from_value(serde_json::json!({
            "listeners": [{
                "id": "l", "protocol": "UDP", "bind": "127.0.0.1:0", "defaultPoolId": "p",
            }],
            "pools": [{
                "id": "p", "protocol": "UDP",
                "members": [{"id": "m", "address": "127.0.0.1", "protocolPort": 9}],
            }],
        }))
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_whose_task_ended_or_whose_time_is_up_no_longer_serves() {
        let config = udp_config();
        assert_eq!(config.listeners[0].protocol, ListenerProtocol::Udp);
        assert_eq!(config.pools[0].protocol, PoolProtocol::Udp);
        let compiled = CompiledConfig::compile(&config).unwrap();
        let stats = StatsRegistry::default();
        let pool = Arc::new(PoolRuntime::build(&compiled.pools[0], None, &stats));
        let runtime = ListenerRuntime {
            compiled: compiled.listeners[0].clone(),
            default_pool: Some(Arc::clone(&pool)),
            pools: HashMap::from([("p".to_owned(), Arc::clone(&pool))]),
            stats: stats.listener("l"),
            limit: None,
            local_addr: "127.0.0.1:1".parse().unwrap(),
        };
        let upstream = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let idle = Duration::from_secs(10);
        let session = |task: JoinHandle<()>| Session {
            generation: 1,
            upstream: Arc::clone(&upstream),
            pool: Arc::clone(&pool),
            member: 0,
            activity: Arc::new(Activity {
                start: Instant::now(),
                last: AtomicU64::new(0),
            }),
            idle,
            counters: [stats.listener("l"), stats.member("p", "m")],
            task: AbortOnDrop::new(task),
        };

        let running = session(tokio::spawn(std::future::pending()));
        assert!(session_still_serves(
            Some(&running),
            &runtime,
            Instant::now()
        ));
        // Past the idle deadline the session is done, even before its task noticed.
        let later = Instant::now() + idle;
        assert!(!session_still_serves(Some(&running), &runtime, later));

        let mut ended = session(tokio::spawn(async {}));
        while !ended.task.is_finished() {
            tokio::task::yield_now().await;
        }
        assert!(!session_still_serves(
            Some(&ended),
            &runtime,
            Instant::now()
        ));

        ended.activity.touch();
        ended.task = AbortOnDrop::new(tokio::spawn(std::future::pending()));
        assert!(session_still_serves(Some(&ended), &runtime, Instant::now()));
        pool.members[0]
            .health
            .set(crate::health::OperatingStatus::Error);
        assert!(!session_still_serves(
            Some(&ended),
            &runtime,
            Instant::now()
        ));
    }
}
