//! Node ports, kube-proxy's NodePort job: every host with real networking listens on the
//! node ports of the cloud's NodePort and LoadBalancer Services (on all its addresses, TCP
//! and UDP as each port says) and forwards what comes to the Service's VIP, which only
//! the host running the Service's load balancer can reach (from inside the load
//! balancer's netns). Other hosts hand the traffic to that host's agent over its relay
//! (a TCP port at its tunnel IP, announced on its Node); `externalTrafficPolicy: Local`
//! keeps a node port open only on that host, and its Service's `healthCheckNodePort`
//! answers 200 there and 503 elsewhere, as kube-proxy's does. A port whose traffic could
//! go nowhere from here is not listened on, so clients are refused.
//!
//! `table.rs` decides (no I/O), `forward.rs` moves the bytes; this module keeps the
//! listeners in step with the Services, their load balancers and the Nodes, read from
//! watch-fed caches.

mod forward;
mod table;
mod udp;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use kube::discovery::ApiResource;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

pub use forward::{Forwarder, Locate, Located, Reach};
pub use table::{HealthCheck, HealthChecks, Route, Table, Target, Transport};

use crate::loadbalancers::{self, LoadBalancerDriver};
use crate::watched;

/// The relay port agents take other hosts' node-port traffic on, unless configured.
pub const DEFAULT_RELAY_PORT: u16 = 10251;
/// How soon a node port that could not be bound is tried again.
const RETRY: Duration = Duration::from_secs(30);

/// Where this host serves node ports.
#[derive(Clone, Debug)]
pub struct NodePorts {
    /// The address node ports listen on (`0.0.0.0`: all of the host's).
    pub address: IpAddr,
    /// This host's tunnel IP, which streams to other hosts' relays leave from.
    pub tunnel_ip: Option<IpAddr>,
    /// The relay, bound before the Node announced it (`None`: this host takes no relayed
    /// traffic, having no tunnel IP for others to reach it at).
    pub relay: Option<Arc<std::net::TcpListener>>,
}

/// Serves the node ports from the host(s) `hosts` until `stop` flips; `driver` runs the
/// load balancers placed here.
pub async fn run(
    client: kube::Client,
    hosts: HashSet<String>,
    config: NodePorts,
    driver: Arc<dyn LoadBalancerDriver>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let locate: Locate = Arc::new(move |uid: &str| {
        driver.netns_of(uid).map(|path| Located {
            reach: Reach::Netns(path),
            announce_from: driver.announce_from(uid),
        })
    });
    let forwarder = Forwarder::new(hosts, config.tunnel_ip, locate);
    let wake = Arc::new(Notify::new());
    let kinds = [
        ApiResource::erase::<Service>(&()),
        loadbalancers::resource("LoadBalancer"),
        ApiResource::erase::<Node>(&()),
    ];
    let [services, lbs, nodes] =
        kinds.map(|kind| watched::cache(&client, kind, &wake, &stop, "node ports", false));
    let _relay = match &config.relay {
        Some(relay) => {
            let listener = relay.try_clone().and_then(|listener| {
                listener.set_nonblocking(true)?;
                TcpListener::from_std(listener)
            })?;
            tracing::info!(address = %listener.local_addr()?, "node-port relay listening");
            Some(Task(tokio::spawn(forwarder.clone().serve_relay(listener))))
        }
        None => None,
    };
    for store in [&services, &lbs, &nodes] {
        tokio::select! {
            ready = store.wait_until_ready() => ready?,
            _ = stop.changed() => return Ok(()),
        }
    }
    let mut listeners = Listeners::default();
    let mut last: Option<(Table, HashSet<IpAddr>)> = None;
    let (health, health_seen) = watch::channel(Arc::new(HealthChecks::new()));
    let hosts = Arc::new(forwarder.hosts().clone());
    // When the node ports that could not be bound are tried again (kept across wakes,
    // which come every few seconds with load balancers' counters).
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let (services, lbs, nodes) = (
            watched::values(&services),
            watched::values(&lbs),
            watched::values(&nodes),
        );
        let now = (table::table(&services, &lbs, &nodes), table::peers(&nodes));
        let checks = table::health_checks(&services, &lbs);
        if **health.borrow() != checks {
            listeners
                .reconcile_health(&checks, config.address, &health_seen, &hosts)
                .await;
            health.send_replace(Arc::new(checks));
        }
        // A load balancer's status changes every few seconds with its counters: most
        // wakes change nothing here.
        if last.as_ref() != Some(&now) {
            let (table, peers) = now.clone();
            forwarder.set_table(table, peers);
            listeners
                .reconcile(&forwarder, &now.0, config.address)
                .await;
            last = Some(now);
        }
        if listeners.failed.is_empty() && listeners.health_failed.is_empty() {
            retry_at = None;
        } else if retry_at.is_none() {
            retry_at = Some(tokio::time::Instant::now() + RETRY);
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep_until(retry_at.unwrap_or_else(tokio::time::Instant::now)), if retry_at.is_some() => {
                retry_at = None;
                if let Some((table, _)) = &last {
                    listeners.reconcile(&forwarder, table, config.address).await;
                }
                let checks = health.borrow().clone();
                listeners
                    .reconcile_health(&checks, config.address, &health_seen, &hosts)
                    .await;
            }
            _ = stop.changed() => return Ok(()),
        }
    }
}

/// A task that ends when its handle goes.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The node ports one agent listens on.
#[derive(Default)]
struct Listeners {
    open: HashMap<(Transport, u16), Task>,
    /// Health-check node ports.
    health: HashMap<u16, Task>,
    /// Why a node port could not be bound, last time, so the same failure is logged once.
    failed: HashMap<(Transport, u16), String>,
    /// The same for health-check node ports.
    health_failed: HashMap<u16, String>,
}

impl Listeners {
    /// Listens (on `address`) on every node port of `table` whose traffic can go somewhere
    /// from here, and on no other.
    async fn reconcile(&mut self, forwarder: &Arc<Forwarder>, table: &Table, address: IpAddr) {
        let served = |key: &(Transport, u16)| {
            table.contains_key(key)
                && !matches!(forwarder.route(key.0, key.1, false), Route::Refuse(_))
        };
        self.open.retain(|key, _| {
            let keep = served(key);
            if !keep {
                tracing::info!(transport = key.0.name(), port = key.1, "node port closed");
            }
            keep
        });
        self.failed.retain(|key, _| served(key));
        for (&(transport, port), target) in table {
            if self.open.contains_key(&(transport, port)) || !served(&(transport, port)) {
                continue;
            }
            let at = SocketAddr::new(address, port);
            let task = match transport {
                Transport::Tcp => TcpListener::bind(at)
                    .await
                    .map(|listener| tokio::spawn(forwarder.clone().serve_tcp(listener, port))),
                Transport::Udp => UdpSocket::bind(at)
                    .await
                    .map(|socket| tokio::spawn(forwarder.clone().serve_udp(socket, port))),
            };
            match task {
                Ok(task) => {
                    tracing::info!(
                        transport = transport.name(),
                        port,
                        service = %target.service,
                        "node port open"
                    );
                    self.failed.remove(&(transport, port));
                    self.open.insert((transport, port), Task(task));
                }
                Err(error) => {
                    let message = error.to_string();
                    if self.failed.get(&(transport, port)) != Some(&message) {
                        tracing::warn!(
                            transport = transport.name(),
                            %at,
                            error = %message,
                            "cannot listen on a node port (tried again in 30 s)"
                        );
                        self.failed.insert((transport, port), message);
                    }
                }
            }
        }
    }
}

impl Listeners {
    /// Listens (on `address`) on every health-check node port of `checks`, and on no
    /// other; each answers from what `seen` holds when asked.
    async fn reconcile_health(
        &mut self,
        checks: &HealthChecks,
        address: IpAddr,
        seen: &watch::Receiver<Arc<HealthChecks>>,
        hosts: &Arc<HashSet<String>>,
    ) {
        self.health.retain(|port, _| checks.contains_key(port));
        self.health_failed
            .retain(|port, _| checks.contains_key(port));
        for &port in checks.keys() {
            if self.health.contains_key(&port) {
                continue;
            }
            let at = SocketAddr::new(address, port);
            match TcpListener::bind(at).await {
                Ok(listener) => {
                    let (seen, hosts) = (seen.clone(), hosts.clone());
                    let task = tokio::spawn(serve_health(listener, port, seen, hosts));
                    self.health_failed.remove(&port);
                    self.health.insert(port, Task(task));
                }
                Err(error) => {
                    let message = error.to_string();
                    if self.health_failed.get(&port) != Some(&message) {
                        tracing::warn!(
                            %at,
                            error = %message,
                            "cannot listen on a health-check node port (tried again in 30 s)"
                        );
                        self.health_failed.insert(port, message);
                    }
                }
            }
        }
    }
}

/// Answers health checks on `port` until aborted, as kube-proxy does: 200 with
/// `localEndpoints: 1` on the host running the Service's load balancer, 503 with 0
/// elsewhere (and for a port no Service has any more).
async fn serve_health(
    listener: TcpListener,
    port: u16,
    checks: watch::Receiver<Arc<HealthChecks>>,
    hosts: Arc<HashSet<String>>,
) {
    let answer = move || {
        let check = checks.borrow().get(&port).cloned();
        let here = check
            .as_ref()
            .and_then(|check| check.host.as_ref())
            .is_some_and(|host| hosts.contains(host));
        let (namespace, name) = check.map(|c| (c.namespace, c.name)).unwrap_or_default();
        let body = serde_json::json!({
            "service": {"namespace": namespace, "name": name},
            "localEndpoints": u8::from(here),
            "serviceProxyHealthy": true,
        });
        let status = if here {
            http::StatusCode::OK
        } else {
            http::StatusCode::SERVICE_UNAVAILABLE
        };
        async move { (status, axum::Json(body)) }
    };
    let app = axum::Router::new().fallback(answer);
    if let Err(error) = axum::serve(listener, app).await {
        tracing::warn!(port, %error, "a health-check node port stopped");
    }
}

#[cfg(test)]
mod tests;
