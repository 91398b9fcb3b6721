//! The public entry: [`Proxy`] serves one load balancer's configuration and takes new
//! ones without dropping established connections.
//!
//! A reconfigure happens in two phases. The first may fail and changes nothing that
//! serves: validate, build the new pools (inheriting health and counters of unchanged
//! members), find each listener a socket (the one it had, the one a departing listener
//! on the same address had, or a new bind), and make each listener's new state with its
//! connection-limit semaphore and counters. The second cannot fail and only moves what
//! the first made: start loops on new sockets, hand every kept socket its new state (new
//! TCP connections and new HTTP requests see it at once, open TCP connections keep
//! theirs), close the sockets of departed listeners (their open connections drain),
//! restart health checkers whose work changed, publish statuses and counters.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::config::{
    CompiledConfig, CompiledListener, ExpectedCodes, HealthMonitor, MemberTls, PoolProtocol,
    ProxyConfig,
};
use crate::error::ProxyError;
use crate::health::probe::Probe;
use crate::health::{self, MemberStatuses, MonitoredMember, StatusBoard};
use crate::listener::{self, ListenerRuntime, ServeContext};
use crate::pool::PoolRuntime;
use crate::stats::{StatsRegistry, StatsSnapshot};
use crate::tasks::{AbortOnDrop, Shutdown, Tracker};
use crate::udp;

/// How a proxy is run, apart from what it serves.
#[derive(Debug, Clone, Default)]
pub struct ProxyOptions {
    /// Connections from this address open, and datagrams from it start, with a PROXY
    /// protocol version 2 header naming the client they carry and the address it
    /// connected to, which the proxy then takes as theirs (for X-Forwarded-For, source-IP
    /// balancing and persistence, and the headers of PROXY pools); a connection from it
    /// without a valid header is closed, a datagram dropped. The host agent's node-port
    /// forwarder connects from such an address inside the load balancer's network
    /// namespace, where nothing from outside can come from it (the kernel drops packets
    /// from the outside with a loopback source).
    pub accept_proxy_from: Option<IpAddr>,
}

/// One load balancer's data plane. Dropping it stops everything without waiting;
/// [`Proxy::shutdown`] stops everything and waits.
#[derive(Debug)]
pub struct Proxy {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    inner: tokio::sync::Mutex<Inner>,
    board: Arc<StatusBoard>,
    stats: Arc<StatsRegistry>,
    context: ServeContext,
    /// What is served now, readable without waiting for a reconfigure in progress.
    current: Mutex<Served>,
}

#[derive(Debug, Default, Clone)]
struct Served {
    config: Arc<ProxyConfig>,
    bound: BTreeMap<String, SocketAddr>,
}

#[derive(Debug, Default)]
struct Inner {
    pools: HashMap<String, Arc<PoolRuntime>>,
    slots: Vec<Slot>,
    checkers: HashMap<String, Checker>,
}

/// One bound socket and the loop serving it.
#[derive(Debug)]
struct Slot {
    listener_id: String,
    /// The configured address (port 0 stays 0 here), which is what sockets are matched by.
    configured: SocketAddr,
    datagram: bool,
    local_addr: SocketAddr,
    state: watch::Sender<Arc<ListenerRuntime>>,
    task: JoinHandle<()>,
    limit: Option<(usize, Arc<Semaphore>)>,
}

impl Slot {
    /// Stops the serving loop (dropping the state's sender ends it) and waits until the
    /// socket is closed. Accepted connections drain on their own.
    async fn close(self) {
        drop(self.state);
        let _ = self.task.await;
    }
}

#[derive(Debug)]
struct Checker {
    monitor: HealthMonitor,
    pool_protocol: PoolProtocol,
    pool_tls: bool,
    member_tls: MemberTls,
    members: Vec<MonitoredMember>,
    task: AbortOnDrop,
}

/// What one pool's health checker is to do.
struct MonitorPlan {
    monitor: HealthMonitor,
    /// Decides how some monitor types probe (PING on a UDP pool).
    pool_protocol: PoolProtocol,
    /// The pool's `tls_enabled`: HTTP checks at the member's own port are TLS too.
    pool_tls: bool,
    /// The pool's TLS towards members, which checks at the member's own port use.
    member_tls: MemberTls,
    member_client: Option<Arc<rustls::ClientConfig>>,
    expected_codes: Option<ExpectedCodes>,
    members: Vec<MonitoredMember>,
}

impl Checker {
    fn does_same_work(&self, plan: &MonitorPlan) -> bool {
        let members = &plan.members;
        self.monitor == plan.monitor
            && self.pool_protocol == plan.pool_protocol
            && self.pool_tls == plan.pool_tls
            && self.member_tls == plan.member_tls
            && self.members.len() == members.len()
            && self.members.iter().zip(members).all(|(old, new)| {
                old.member_id == new.member_id
                    && old.target == new.target
                    && old.at_member == new.at_member
                    && Arc::ptr_eq(&old.health, &new.health)
            })
    }
}

enum Socket {
    Stream(TcpListener),
    Datagram(UdpSocket),
}

/// A new configuration made ready to serve, before anything that serves is touched.
struct Prepared {
    pools: HashMap<String, Arc<PoolRuntime>>,
    /// In the configuration's listener order.
    listeners: Vec<PreparedListener>,
    monitored: BTreeMap<String, MonitorPlan>,
}

struct PreparedListener {
    placement: Placement,
    runtime: Arc<ListenerRuntime>,
    limit: Option<(usize, Arc<Semaphore>)>,
}

/// A listener's slot during the commit: a kept one stays in the old list until all are
/// placed.
enum Placed {
    Kept(usize),
    New(Slot),
}

/// Where a listener of the new configuration will be served.
enum Placement {
    /// On the slot of this index in the current configuration.
    Kept(usize),
    New(Socket, SocketAddr),
}

impl Proxy {
    /// Validates `config`, binds every listener and starts serving and health checking.
    pub async fn start(config: ProxyConfig) -> Result<Proxy, ProxyError> {
        Proxy::start_with(config, ProxyOptions::default()).await
    }

    /// [`Proxy::start`], with what comes from where the proxy runs rather than from the
    /// load balancer's configuration.
    pub async fn start_with(
        config: ProxyConfig,
        options: ProxyOptions,
    ) -> Result<Proxy, ProxyError> {
        let compiled = CompiledConfig::compile(&config)?;
        let shared = Arc::new(Shared {
            inner: tokio::sync::Mutex::new(Inner::default()),
            board: Arc::new(StatusBoard::new()),
            stats: Arc::new(StatsRegistry::default()),
            context: ServeContext {
                shutdown: Shutdown::default(),
                tracker: Tracker::default(),
                accept_proxy_from: options.accept_proxy_from,
            },
            current: Mutex::new(Served::default()),
        });
        Shared::apply_to_completion(&shared, compiled).await?;
        Ok(Proxy { shared })
    }

    /// Serves `config` from now on. An invalid configuration, or one whose new sockets
    /// cannot be bound, is refused and the current one keeps serving untouched.
    /// Established connections are never dropped: listeners that stay keep their
    /// sockets, new connections use the new pools and members, and listeners that go
    /// stop accepting while their open connections drain. Reconfigures are applied one
    /// at a time, in the order they are called.
    ///
    /// A listener's socket is handed to the new configuration when the same id keeps the
    /// same configured address, or when another listener takes over exactly that
    /// address. Moving a port from the wildcard address to a specific one (`0.0.0.0:80`
    /// to `10.0.0.5:80`, or back) in one step is refused with [`ProxyError::Bind`]: the
    /// old socket still holds the port while the new one is bound, and closing it first
    /// would break the promise that a refused configuration changes nothing. Remove the
    /// listener in one reconfigure and add it at its new address in the next.
    pub async fn reconfigure(&self, config: ProxyConfig) -> Result<(), ProxyError> {
        let compiled = CompiledConfig::compile(&config)?;
        Shared::apply_to_completion(&self.shared, compiled).await
    }

    /// The configuration being served.
    pub fn config(&self) -> Arc<ProxyConfig> {
        Arc::clone(&self.shared.served().config)
    }

    /// The address a listener is bound to (with an ephemeral port resolved).
    pub fn local_addr(&self, listener_id: &str) -> Option<SocketAddr> {
        self.shared.served().bound.get(listener_id).copied()
    }

    /// Traffic counters of every configured listener and member.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Every configured member's operating status, updated as health checks and
    /// reconfigures change it.
    pub fn member_status(&self) -> watch::Receiver<MemberStatuses> {
        self.shared.board.subscribe()
    }

    /// Stops accepting, stops health checks, closes every connection (draining ones
    /// included) and waits until all of it is done.
    pub async fn shutdown(self) {
        let shared = self.shared;
        shared.context.shutdown.signal();
        let mut inner = shared.inner.lock().await;
        for (_, checker) in inner.checkers.drain() {
            checker.task.stop().await;
        }
        for slot in inner.slots.drain(..) {
            slot.close().await;
        }
        drop(inner);
        shared.context.tracker.idle().await;
    }
}

impl Drop for Shared {
    /// A dropped proxy ends its connections too, without waiting for them.
    fn drop(&mut self) {
        self.context.shutdown.signal();
    }
}

impl Shared {
    /// Applies a configuration in a task of its own, so a caller that stops waiting (a
    /// timeout around `reconfigure`) cannot leave the proxy half reconfigured.
    async fn apply_to_completion(
        shared: &Arc<Shared>,
        compiled: CompiledConfig,
    ) -> Result<(), ProxyError> {
        let shared = Arc::clone(shared);
        let applying = tokio::spawn(async move {
            let mut inner = shared.inner.lock().await;
            shared.apply(&mut inner, compiled).await
        });
        match applying.await {
            Ok(result) => result,
            // A bug, not a configuration problem: the caller (a reconcile loop) must not
            // go down with it. Phase one changes nothing that serves, and phase two only
            // moves values prepared in phase one, so this is not expected to happen.
            Err(error) if error.is_panic() => {
                let panic = error.into_panic();
                let message = panic
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("(not a string)");
                tracing::error!(panic = message, "applying a configuration panicked");
                Err(ProxyError::Internal)
            }
            Err(_) => Err(ProxyError::RuntimeShutDown),
        }
    }

    fn served(&self) -> Served {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Phase one: everything that may fail, touching nothing that serves. Pools, sockets,
    /// connection-limit semaphores, listener states and counters are all made here.
    async fn prepare(
        &self,
        inner: &Inner,
        compiled: &CompiledConfig,
    ) -> Result<Prepared, ProxyError> {
        let pools = self.build_pools(inner, compiled);
        let placements = place_listeners(inner, &compiled.listeners).await?;
        let listeners = compiled
            .listeners
            .iter()
            .zip(placements)
            .map(|(listener, placement)| {
                let (previous_limit, local_addr) = match &placement {
                    Placement::Kept(index) => {
                        let slot = &inner.slots[*index];
                        (slot.limit.clone(), slot.local_addr)
                    }
                    Placement::New(_, local_addr) => (None, *local_addr),
                };
                let limit = reuse_limit(previous_limit, listener.config.connection_limit());
                let runtime = self.listener_runtime(listener, &pools, &limit, local_addr);
                PreparedListener {
                    placement,
                    runtime: Arc::new(runtime),
                    limit,
                }
            })
            .collect();
        let monitored = monitored_members(compiled, &pools);
        Ok(Prepared {
            pools,
            listeners,
            monitored,
        })
    }

    async fn apply(&self, inner: &mut Inner, compiled: CompiledConfig) -> Result<(), ProxyError> {
        let prepared = self.prepare(inner, &compiled).await?;
        // Phase two: commit. Nothing below can fail; the old state is taken apart only
        // once every piece of the new one exists.
        let Prepared {
            pools,
            listeners,
            monitored,
        } = prepared;
        let listener_counters = listeners
            .iter()
            .map(|listener| {
                (
                    listener.runtime.id().to_owned(),
                    Arc::clone(&listener.runtime.stats),
                )
            })
            .collect();
        let member_counters = pools
            .values()
            .flat_map(|pool| {
                pool.members.iter().map(|member| {
                    (
                        (pool.id().to_owned(), member.config.id.clone()),
                        Arc::clone(&member.stats),
                    )
                })
            })
            .collect();

        // New sockets start serving, kept ones get their new state (new connections and
        // HTTP requests see it at once).
        let mut placed = Vec::with_capacity(listeners.len());
        for listener in listeners {
            let PreparedListener {
                placement,
                runtime,
                limit,
            } = listener;
            placed.push(match placement {
                Placement::Kept(index) => {
                    let slot = &mut inner.slots[index];
                    slot.listener_id = runtime.id().to_owned();
                    slot.limit = limit;
                    slot.state.send_replace(runtime);
                    Placed::Kept(index)
                }
                Placement::New(socket, local_addr) => {
                    let config = runtime.config();
                    tracing::info!(listener = config.id, protocol = %config.protocol, address = %local_addr, "listening");
                    let (state, receiver) = watch::channel(Arc::clone(&runtime));
                    let task = match socket {
                        Socket::Stream(socket) => tokio::spawn(listener::serve_stream(
                            socket,
                            receiver,
                            self.context.clone(),
                        )),
                        Socket::Datagram(socket) => tokio::spawn(udp::serve_datagrams(
                            socket,
                            receiver,
                            self.context.accept_proxy_from,
                        )),
                    };
                    Placed::New(Slot {
                        listener_id: config.id.clone(),
                        configured: config.bind,
                        datagram: config.protocol.is_datagram(),
                        local_addr,
                        state,
                        task,
                        limit,
                    })
                }
            });
        }
        let mut old_slots: Vec<Option<Slot>> = std::mem::take(&mut inner.slots)
            .into_iter()
            .map(Some)
            .collect();
        let slots: Vec<Slot> = placed
            .into_iter()
            .map(|slot| match slot {
                Placed::New(slot) => slot,
                Placed::Kept(index) => old_slots[index]
                    .take()
                    .expect("place_listeners gives each slot to one listener at most"),
            })
            .collect();
        for slot in old_slots.into_iter().flatten() {
            tracing::info!(listener = slot.listener_id, address = %slot.local_addr, "listener removed; its connections drain");
            slot.close().await;
        }

        // Checkers whose work changed stop before their successors start, so no stale
        // verdict lands in a health cell afterwards.
        let mut kept_checkers = HashMap::new();
        for (pool_id, checker) in inner.checkers.drain() {
            match monitored.get(&pool_id) {
                Some(plan) if checker.does_same_work(plan) => {
                    kept_checkers.insert(pool_id, checker);
                }
                _ => checker.task.stop().await,
            }
        }
        self.board.replace_with(|| {
            pools
                .iter()
                .map(|(id, pool)| (id.clone(), pool.statuses()))
                .collect()
        });
        for (pool_id, plan) in monitored {
            let checker = match kept_checkers.remove(&pool_id) {
                Some(checker) => checker,
                None => {
                    let probe = Probe::new(
                        &plan.monitor,
                        (plan.pool_protocol, plan.pool_tls),
                        plan.expected_codes,
                        plan.member_client,
                    );
                    let task = health::spawn_pool_checker(
                        pool_id.clone(),
                        &plan.monitor,
                        probe,
                        plan.members.clone(),
                        Arc::clone(&self.board),
                    );
                    Checker {
                        monitor: plan.monitor,
                        pool_protocol: plan.pool_protocol,
                        pool_tls: plan.pool_tls,
                        member_tls: plan.member_tls,
                        members: plan.members,
                        task: AbortOnDrop::new(task),
                    }
                }
            };
            inner.checkers.insert(pool_id, checker);
        }

        self.stats.publish(listener_counters, member_counters);
        let bound = slots
            .iter()
            .map(|slot| (slot.listener_id.clone(), slot.local_addr))
            .collect();
        inner.slots = slots;
        inner.pools = pools;
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Served {
            config: Arc::new(compiled.config),
            bound,
        };
        Ok(())
    }

    /// The new configuration's pools: unchanged ones are kept as they are (with their
    /// round-robin position and persistence tables), changed ones rebuilt.
    fn build_pools(
        &self,
        inner: &Inner,
        compiled: &CompiledConfig,
    ) -> HashMap<String, Arc<PoolRuntime>> {
        compiled
            .pools
            .iter()
            .map(|pool| {
                let previous = inner.pools.get(&pool.config.id);
                let runtime = match previous {
                    Some(previous) if previous.compiled.config == pool.config => {
                        Arc::clone(previous)
                    }
                    _ => Arc::new(PoolRuntime::build(
                        pool,
                        previous.map(|previous| &**previous),
                        &self.stats,
                    )),
                };
                (pool.config.id.clone(), runtime)
            })
            .collect()
    }

    fn listener_runtime(
        &self,
        listener: &CompiledListener,
        pools: &HashMap<String, Arc<PoolRuntime>>,
        limit: &Option<(usize, Arc<Semaphore>)>,
        local_addr: SocketAddr,
    ) -> ListenerRuntime {
        let config = &listener.config;
        let default_pool = config
            .default_pool_id
            .as_ref()
            .and_then(|id| pools.get(id))
            .cloned();
        let policy_pools = listener
            .policies
            .iter()
            .filter_map(|policy| match &policy.action {
                crate::config::PolicyAction::Pool(id) => Some(id),
                _ => None,
            });
        let listener_pools = config
            .default_pool_id
            .iter()
            .chain(policy_pools)
            .filter_map(|id| Some((id.clone(), Arc::clone(pools.get(id)?))))
            .collect();
        ListenerRuntime {
            compiled: listener.clone(),
            default_pool,
            pools: listener_pools,
            stats: self.stats.listener(&config.id),
            limit: limit.as_ref().map(|(_, slots)| Arc::clone(slots)),
            local_addr,
        }
    }
}

/// Keeps the semaphore of an unchanged limit, so connections open before the reconfigure
/// still count against it; a changed limit starts a fresh count.
fn reuse_limit(
    previous: Option<(usize, Arc<Semaphore>)>,
    wanted: Option<usize>,
) -> Option<(usize, Arc<Semaphore>)> {
    match (previous, wanted) {
        (Some((limit, slots)), Some(wanted)) if limit == wanted => Some((limit, slots)),
        (_, Some(wanted)) => Some((wanted, Arc::new(Semaphore::new(wanted)))),
        (_, None) => None,
    }
}

/// Finds each listener its socket: the slot it had (same id, address and transport), else
/// the slot of a departing listener on the same fixed address, else a new bind.
async fn place_listeners(
    inner: &Inner,
    listeners: &[CompiledListener],
) -> Result<Vec<Placement>, ProxyError> {
    let mut claimed = vec![false; inner.slots.len()];
    let mut kept: Vec<Option<usize>> = vec![None; listeners.len()];
    for (index, listener) in listeners.iter().enumerate() {
        let config = &listener.config;
        let found = inner
            .slots
            .iter()
            .enumerate()
            .position(|(slot_index, slot)| {
                !claimed[slot_index]
                    && slot.listener_id == config.id
                    && slot.configured == config.bind
                    && slot.datagram == config.protocol.is_datagram()
            });
        if let Some(slot_index) = found {
            claimed[slot_index] = true;
            kept[index] = Some(slot_index);
        }
    }
    for (index, listener) in listeners.iter().enumerate() {
        let config = &listener.config;
        if kept[index].is_some() || config.bind.port() == 0 {
            continue;
        }
        let found = inner
            .slots
            .iter()
            .enumerate()
            .position(|(slot_index, slot)| {
                !claimed[slot_index]
                    && slot.configured == config.bind
                    && slot.datagram == config.protocol.is_datagram()
            });
        if let Some(slot_index) = found {
            claimed[slot_index] = true;
            kept[index] = Some(slot_index);
        }
    }
    let mut placements = Vec::with_capacity(listeners.len());
    for (listener, kept) in listeners.iter().zip(kept) {
        if let Some(slot_index) = kept {
            placements.push(Placement::Kept(slot_index));
            continue;
        }
        let config = &listener.config;
        let bind_error = |source| ProxyError::Bind {
            listener: config.id.clone(),
            address: config.bind,
            source,
        };
        let (socket, local_addr) = if config.protocol.is_datagram() {
            let socket = UdpSocket::bind(config.bind).await.map_err(bind_error)?;
            let local_addr = socket.local_addr().map_err(bind_error)?;
            (Socket::Datagram(socket), local_addr)
        } else {
            let socket = TcpListener::bind(config.bind).await.map_err(bind_error)?;
            let local_addr = socket.local_addr().map_err(bind_error)?;
            (Socket::Stream(socket), local_addr)
        };
        placements.push(Placement::New(socket, local_addr));
    }
    Ok(placements)
}

/// For each pool with a monitor, the monitor and the admin-up members to check.
fn monitored_members(
    compiled: &CompiledConfig,
    pools: &HashMap<String, Arc<PoolRuntime>>,
) -> BTreeMap<String, MonitorPlan> {
    compiled
        .pools
        .iter()
        .filter_map(|pool| {
            let monitor = pool.config.health_monitor.clone()?;
            let runtime = pools.get(&pool.config.id)?;
            let members = runtime
                .members
                .iter()
                .filter(|member| member.config.admin_state_up)
                .map(|member| MonitoredMember {
                    member_id: member.config.id.clone(),
                    target: member.config.monitor_socket_addr(),
                    at_member: member.config.monitor_socket_addr() == member.config.socket_addr(),
                    health: Arc::clone(&member.health),
                })
                .collect();
            let plan = MonitorPlan {
                monitor,
                pool_protocol: pool.config.protocol,
                pool_tls: pool.config.tls_enabled,
                member_tls: pool.config.member_tls.clone(),
                member_client: pool.member_tls.clone(),
                expected_codes: pool.expected_codes.clone(),
                members,
            };
            Some((pool.config.id.clone(), plan))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proxy_can_be_shared_between_tasks() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Proxy>();
        shareable::<ProxyError>();
    }
}
