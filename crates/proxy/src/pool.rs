//! A pool as the data path serves it: its members with their health cells and counters,
//! the balancer state and the persistence tables, and connecting to a chosen member with
//! failover to another one.
//!
//! A `PoolRuntime` is immutable apart from that selection state; a reconfigure that
//! changes a pool builds a new one (keeping the health cells and counters of members that
//! stay the same, and the persistence tables) and swaps it in for new connections, while
//! open connections keep the one they started with.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use smallvec::SmallVec;
use tokio::net::TcpStream;

use crate::balancer::{Balancer, Candidate, PersistenceTable};
use crate::config::{CompiledPool, Member, PersistenceType, Pool};
use crate::health::{MemberHealth, OperatingStatus};
use crate::http::{IdleConnections, MemberStream, Sender};
use crate::proxy_protocol;
use crate::stats::{Counters, StatsRegistry};

pub(crate) mod member_io;

pub(crate) use member_io::MemberIo;

/// How long an idle stickiness entry lives when the configuration does not say.
const DEFAULT_PERSISTENCE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Entries per persistence table; beyond it new clients are not remembered.
const PERSISTENCE_CAPACITY: usize = 100_000;

#[derive(Debug)]
pub(crate) struct MemberRuntime {
    pub config: Member,
    pub health: Arc<MemberHealth>,
    pub stats: Arc<Counters>,
    /// HTTP keep-alive connections to the member, open and waiting for a request: the
    /// streams HTTP/1 clients' requests go on, and hyper's for HTTP/2 clients' streams.
    pub idle_streams: Arc<IdleConnections<MemberStream>>,
    pub idle_senders: Arc<IdleConnections<Sender>>,
}

#[derive(Debug)]
pub(crate) struct PoolRuntime {
    pub compiled: CompiledPool,
    pub members: Vec<MemberRuntime>,
    balancer: Mutex<Balancer>,
    sticky_clients: Mutex<PersistenceTable<IpAddr>>,
    sticky_cookies: Mutex<PersistenceTable<String>>,
}

/// Whom a member connection is made for: the client, and the address it connected to
/// (what a PROXY pool's header names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    pub client: SocketAddr,
    pub destination: SocketAddr,
}

/// A connection to a member, and which member it is.
#[derive(Debug)]
pub(crate) struct MemberConnection {
    pub stream: MemberIo,
    pub member: usize,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("no member of pool {pool:?} is available")]
    NoMemberAvailable { pool: String },
    #[error("no member of pool {pool:?} accepted a connection")]
    AllMembersFailed { pool: String },
}

/// Whether two configurations of a member describe the same health subject, so the newer
/// one may inherit the older one's status.
fn same_health_subject(old: &Member, new: &Member) -> bool {
    old.id == new.id
        && old.socket_addr() == new.socket_addr()
        && old.monitor_socket_addr() == new.monitor_socket_addr()
        && old.admin_state_up == new.admin_state_up
}

impl PoolRuntime {
    /// Builds a pool for `compiled`, inheriting from `previous` (the pool of the same id
    /// in the configuration being replaced) the health of members that stay the same.
    pub fn build(
        compiled: &CompiledPool,
        previous: Option<&PoolRuntime>,
        stats: &StatsRegistry,
    ) -> PoolRuntime {
        let config = &compiled.config;
        let monitored = config.health_monitor.is_some();
        let members = config
            .members
            .iter()
            .map(|member| {
                let inherited = previous
                    .filter(|previous| {
                        previous.compiled.config.health_monitor.is_some() == monitored
                    })
                    .and_then(|previous| {
                        previous
                            .members
                            .iter()
                            .find(|old| same_health_subject(&old.config, member))
                    })
                    .map(|old| Arc::clone(&old.health));
                let health = inherited.unwrap_or_else(|| {
                    Arc::new(MemberHealth::new(
                        match (member.admin_state_up, monitored) {
                            (false, _) => OperatingStatus::Offline,
                            (true, false) => OperatingStatus::NoMonitor,
                            (true, true) => OperatingStatus::Online,
                        },
                    ))
                });
                // Counters follow the member's id (its totals survive a new address).
                let counters = previous
                    .and_then(|previous| {
                        previous
                            .members
                            .iter()
                            .find(|old| old.config.id == member.id)
                    })
                    .map_or_else(
                        || stats.member(&config.id, &member.id),
                        |old| Arc::clone(&old.stats),
                    );
                // Idle connections follow the member's address, while the pool speaks
                // to members as before (in TLS or not, with the same TLS settings).
                let same_address = previous
                    .filter(|previous| {
                        previous.config().tls_enabled == config.tls_enabled
                            && previous.config().member_tls == config.member_tls
                    })
                    .and_then(|previous| {
                        previous.members.iter().find(|old| {
                            old.config.id == member.id
                                && old.config.socket_addr() == member.socket_addr()
                        })
                    });
                MemberRuntime {
                    config: member.clone(),
                    health,
                    stats: counters,
                    idle_streams: same_address
                        .map(|old| Arc::clone(&old.idle_streams))
                        .unwrap_or_default(),
                    idle_senders: same_address
                        .map(|old| Arc::clone(&old.idle_senders))
                        .unwrap_or_default(),
                }
            })
            .collect();
        let timeout = config
            .session_persistence
            .as_ref()
            .and_then(|persistence| persistence.persistence_timeout_ms)
            .map_or(DEFAULT_PERSISTENCE_TIMEOUT, Duration::from_millis);
        // Stickiness survives a rebuild (a member added to a Service must not reshuffle
        // every client); entries naming members that left are simply never honoured.
        PoolRuntime {
            compiled: compiled.clone(),
            members,
            balancer: Mutex::new(Balancer::new(config.lb_algorithm)),
            sticky_clients: inherit_table(
                previous.map(|previous| &previous.sticky_clients),
                timeout,
            ),
            sticky_cookies: inherit_table(
                previous.map(|previous| &previous.sticky_cookies),
                timeout,
            ),
        }
    }

    pub fn config(&self) -> &Pool {
        &self.compiled.config
    }

    pub fn id(&self) -> &str {
        &self.compiled.config.id
    }

    fn persistence_type(&self) -> Option<PersistenceType> {
        self.config()
            .session_persistence
            .as_ref()
            .map(|persistence| persistence.persistence_type)
    }

    /// Each member's status as reported.
    pub fn statuses(&self) -> BTreeMap<String, OperatingStatus> {
        self.members
            .iter()
            .map(|member| (member.config.id.clone(), member.health.status()))
            .collect()
    }

    /// The member for a new connection from `client_ip`. `persisted_member` is the member
    /// a cookie names (cookie persistence); SOURCE_IP persistence is looked up here.
    /// Members in `excluded` already failed this connection.
    pub fn choose(
        &self,
        client_ip: IpAddr,
        persisted_member: Option<&str>,
        excluded: &[usize],
    ) -> Option<usize> {
        let candidates: SmallVec<[Candidate<'_>; 8]> = self
            .members
            .iter()
            .enumerate()
            .map(|(index, member)| Candidate {
                id: &member.config.id,
                weight: member.config.weight,
                backup: member.config.backup,
                admin_state_up: member.config.admin_state_up,
                healthy: member.health.is_up() && !excluded.contains(&index),
                active_connections: member.stats.active_connections(),
            })
            .collect();
        if self.persistence_type() != Some(PersistenceType::SourceIp) {
            return lock(&self.balancer).choose(&candidates, client_ip, persisted_member);
        }
        let now = Instant::now();
        let sticky = lock(&self.sticky_clients)
            .get(&client_ip, now)
            .map(str::to_owned);
        let chosen = lock(&self.balancer).choose(&candidates, client_ip, sticky.as_deref())?;
        if sticky.as_deref() != Some(candidates[chosen].id) {
            lock(&self.sticky_clients).insert(client_ip, candidates[chosen].id, now);
        }
        Some(chosen)
    }

    /// Whether a member connection made for a client that asked its TLS for `sni` (a
    /// TERMINATED_HTTPS listener's client) may serve other clients' requests afterwards:
    /// not in PROXY pools, whose connections name their client at the start, nor when a
    /// TLS pool's connection passed that name on (as HAProxy kept connections with an
    /// `sni` private to their client until it learnt to key them by name).
    pub fn shares_connections(&self, sni: Option<&str>) -> bool {
        let config = self.config();
        config.protocol.proxy_protocol().is_none() && !(config.tls_enabled && sni.is_some())
    }

    /// APP_COOKIE persistence: the member that set this value of the application's cookie.
    pub fn app_cookie_member(&self, value: &str) -> Option<String> {
        lock(&self.sticky_cookies)
            .get(&value.to_owned(), Instant::now())
            .map(str::to_owned)
    }

    /// APP_COOKIE persistence: remembers that `member_id` set the cookie to `value`.
    pub fn remember_app_cookie(&self, value: &str, member_id: &str) {
        lock(&self.sticky_cookies).insert(value.to_owned(), member_id, Instant::now());
    }

    /// Connects to a chosen member; when connecting fails or takes longer than
    /// `connect_timeout`, tries another member, each member at most once.
    pub async fn connect(
        &self,
        origin: Origin,
        persisted_member: Option<&str>,
        connect_timeout: Duration,
    ) -> Result<MemberConnection, ConnectError> {
        let mut failed = Vec::new();
        while failed.len() < self.members.len() {
            let Some(index) = self.choose(origin.client.ip(), persisted_member, &failed) else {
                break;
            };
            if let Some(stream) = self
                .connect_member(index, connect_timeout, origin, None)
                .await
            {
                return Ok(MemberConnection {
                    stream,
                    member: index,
                });
            }
            failed.push(index);
        }
        Err(self.connect_error(&failed))
    }

    /// Connects to member `index` for a client of `origin` (a PROXY pool's connection
    /// opens with a header naming it, and a `tls_enabled` pool's goes on in TLS, naming
    /// `sni`, the server name the client asked its own TLS for, if any: Octavia's
    /// `sni ssl_fc_sni`); a failure or timeout (the TLS handshake's included) is logged
    /// and counted as one of the member's request errors.
    pub async fn connect_member(
        &self,
        index: usize,
        connect_timeout: Duration,
        origin: Origin,
        sni: Option<&str>,
    ) -> Option<MemberIo> {
        let member = &self.members[index];
        let tls = self.config().tls_enabled;
        let address = member.config.socket_addr();
        let header = self
            .config()
            .protocol
            .proxy_protocol()
            .map(|version| proxy_protocol::relayed(version, origin.client, origin.destination));
        let connect = async {
            let mut stream = TcpStream::connect(address).await?;
            // Small writes (requests, interactive protocols) must not wait for Nagle;
            // failing to set it only costs latency.
            let _ = stream.set_nodelay(true);
            if let Some(header) = header {
                tokio::io::AsyncWriteExt::write_all(&mut stream, &header).await?;
            }
            match tls {
                true => {
                    let config = self
                        .compiled
                        .member_tls
                        .clone()
                        .unwrap_or_else(crate::tls::member_client_config);
                    member_io::tls(stream, address.ip(), sni, config).await
                }
                false => Ok(member_io::plain(stream)),
            }
        };
        match tokio::time::timeout(connect_timeout, connect).await {
            Ok(Ok(stream)) => return Some(stream),
            Ok(Err(error)) => {
                tracing::warn!(pool = self.id(), member = member.config.id, %address, %error, "connecting to member failed");
            }
            Err(_) => {
                tracing::warn!(pool = self.id(), member = member.config.id, %address, "connecting to member timed out");
            }
        }
        member.stats.add_request_error();
        None
    }

    /// Why no member could be had, once the members in `failed` failed to connect.
    pub fn connect_error(&self, failed: &[usize]) -> ConnectError {
        let pool = self.id().to_owned();
        if failed.is_empty() {
            ConnectError::NoMemberAvailable { pool }
        } else {
            ConnectError::AllMembersFailed { pool }
        }
    }
}

fn inherit_table<K: std::hash::Hash + Eq + Clone>(
    previous: Option<&Mutex<PersistenceTable<K>>>,
    timeout: Duration,
) -> Mutex<PersistenceTable<K>> {
    let mut table = previous
        .map(|table| lock(table).clone())
        .unwrap_or_else(|| PersistenceTable::new(timeout, PERSISTENCE_CAPACITY));
    table.set_timeout(timeout);
    Mutex::new(table)
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded state is only counters and tables; a panic elsewhere cannot leave it
    // in a state worse than slightly stale.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        CompiledConfig, LbAlgorithm, PoolProtocol, ProxyConfig, SessionPersistence,
    };
    use crate::testing::{
        DEADLINE, close_keeping_the_port, refusing_tcp_address, reusable_listener,
    };

    fn member(id: &str, address: std::net::SocketAddr) -> Member {
        Member {
            id: id.into(),
            address: address.ip(),
            protocol_port: address.port(),
            weight: 1,
            backup: false,
            admin_state_up: true,
            monitor_address: None,
            monitor_port: None,
        }
    }

    fn compiled(members: Vec<Member>, persistence: Option<PersistenceType>) -> CompiledPool {
        let config = ProxyConfig {
            listeners: vec![],
            pools: vec![Pool {
                id: "pool".into(),
                protocol: PoolProtocol::Tcp,
                lb_algorithm: LbAlgorithm::RoundRobin,
                session_persistence: persistence.map(|persistence_type| SessionPersistence {
                    persistence_type,
                    cookie_name: None,
                    persistence_timeout_ms: None,
                }),
                members,
                health_monitor: None,
                tls_enabled: false,
                member_tls: Default::default(),
            }],
        };
        CompiledConfig::compile(&config).unwrap().pools.remove(0)
    }

    #[tokio::test]
    async fn connect_fails_over_to_another_member() {
        let live = reusable_listener();
        let (_reserved, dead_address) = refusing_tcp_address();
        let stats = StatsRegistry::default();
        let pool = PoolRuntime::build(
            &compiled(
                vec![
                    member("dead", dead_address),
                    member("live", live.local_addr().unwrap()),
                ],
                None,
            ),
            None,
            &stats,
        );
        let client = Origin {
            client: SocketAddr::from(([127, 0, 0, 1], 40000)),
            destination: SocketAddr::from(([127, 0, 0, 1], 80)),
        };
        for _ in 0..4 {
            let connection = pool.connect(client, None, DEADLINE).await.unwrap();
            assert_eq!(pool.members[connection.member].config.id, "live");
        }
        assert!(pool.members[0].stats.snapshot().request_errors >= 1);

        let _also_reserved = close_keeping_the_port(live);
        assert!(matches!(
            pool.connect(client, None, DEADLINE).await,
            Err(ConnectError::AllMembersFailed { .. })
        ));
        for member in &pool.members {
            member.health.set(OperatingStatus::Error);
        }
        assert!(matches!(
            pool.connect(client, None, DEADLINE).await,
            Err(ConnectError::NoMemberAvailable { .. })
        ));
    }

    #[test]
    fn source_ip_persistence_sticks_and_health_is_inherited() {
        let a: std::net::SocketAddr = "127.0.0.1:9001".parse().unwrap();
        let b: std::net::SocketAddr = "127.0.0.1:9002".parse().unwrap();
        let stats = StatsRegistry::default();
        let members = vec![member("a", a), member("b", b)];
        let pool = PoolRuntime::build(
            &compiled(members.clone(), Some(PersistenceType::SourceIp)),
            None,
            &stats,
        );
        let client = IpAddr::from([10, 1, 2, 3]);
        let first = pool.choose(client, None, &[]).unwrap();
        for _ in 0..10 {
            assert_eq!(pool.choose(client, None, &[]), Some(first));
        }
        assert_eq!(pool.statuses()["a"], OperatingStatus::NoMonitor);

        // Adding a member rebuilds the pool; the client stays where it was.
        let mut grown = members.clone();
        grown.push(member("c", "127.0.0.1:9004".parse().unwrap()));
        let grown_pool = PoolRuntime::build(
            &compiled(grown, Some(PersistenceType::SourceIp)),
            Some(&pool),
            &stats,
        );
        for _ in 0..5 {
            assert_eq!(grown_pool.choose(client, None, &[]), Some(first));
        }

        // A rebuilt pool keeps the health cells of unchanged members only.
        pool.members[0].health.set(OperatingStatus::Error);
        let mut changed = members;
        changed[1].protocol_port = 9003;
        let rebuilt = PoolRuntime::build(&compiled(changed, None), Some(&pool), &stats);
        assert!(Arc::ptr_eq(
            &rebuilt.members[0].health,
            &pool.members[0].health
        ));
        assert_eq!(
            rebuilt.members[1].health.status(),
            OperatingStatus::NoMonitor
        );
        assert!(Arc::ptr_eq(
            &rebuilt.members[1].stats,
            &pool.members[1].stats
        ));
    }
}
