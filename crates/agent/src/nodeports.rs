//! Node ports, kube-proxy's NodePort job: every host with real networking listens on the
//! node ports of the cloud's NodePort and LoadBalancer Services (on all its addresses, TCP
//! and UDP as each port says) and forwards what comes to the Service's VIP, which only
//! the host running the Service's load balancer can reach (from inside the load
//! balancer's netns). Other hosts hand the traffic to that host's agent over its relay
//! port (announced on its Node with its tunnel IP); `externalTrafficPolicy: Local` keeps
//! a node port answering only on that host.
//!
//! `table.rs` decides (no I/O), `forward.rs` moves the bytes; this module keeps the
//! listeners in step with the Services, their load balancers and the Nodes.

mod forward;
mod table;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::watcher;
use serde_json::Value;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

pub use forward::{Forwarder, Locate, Reach};
pub use table::{Table, Target, Transport};

use crate::loadbalancers::{self, LoadBalancerDriver};

/// The relay port agents take other hosts' node-port traffic on, unless configured.
pub const DEFAULT_RELAY_PORT: u16 = 10251;
/// How often the table is rebuilt with no change seen.
const RESYNC: Duration = Duration::from_secs(30);

/// Where this host serves node ports.
#[derive(Clone, Copy, Debug)]
pub struct NodePorts {
    /// The address node ports and the relay listen on (`0.0.0.0`: all of the host's).
    pub address: IpAddr,
    /// The relay's TCP port (the Node's `network.ronghe.io/node-port-relay`).
    pub relay_port: u16,
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
    let locate: Locate = Arc::new(move |uid: &str| driver.netns_of(uid).map(Reach::Netns));
    let forwarder = Forwarder::new(hosts, locate);
    let wake = Arc::new(Notify::new());
    let services: Api<Service> = Api::all(client.clone());
    loadbalancers::spawn_waker(
        watcher::watcher(services, watcher::Config::default()),
        wake.clone(),
    );
    let lbs: Api<DynamicObject> =
        Api::all_with(client.clone(), &loadbalancers::resource("LoadBalancer"));
    loadbalancers::spawn_waker(
        watcher::watcher(lbs, watcher::Config::default()),
        wake.clone(),
    );
    let nodes: Api<Node> = Api::all(client.clone());
    loadbalancers::spawn_waker(
        watcher::watcher(nodes, watcher::Config::default()),
        wake.clone(),
    );
    let mut listeners = Listeners::default();
    loop {
        listeners.relay(
            &forwarder,
            SocketAddr::new(config.address, config.relay_port),
        );
        match read_table(&client).await {
            Ok(table) => {
                listeners
                    .reconcile(&forwarder, &table, config.address)
                    .await;
                forwarder.set_table(table);
            }
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "reading the node ports failed");
            }
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(RESYNC) => {}
            _ = stop.changed() => return Ok(()),
        }
    }
}

/// The node ports of the cloud, from the API.
async fn read_table(client: &kube::Client) -> anyhow::Result<Table> {
    async fn all<K>(api: Api<K>) -> anyhow::Result<Vec<Value>>
    where
        K: Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
    {
        Ok(api
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter_map(|o| serde_json::to_value(o).ok())
            .collect())
    }
    let services = all(Api::<Service>::all(client.clone())).await?;
    let lbs = all(Api::<DynamicObject>::all_with(
        client.clone(),
        &loadbalancers::resource("LoadBalancer"),
    ))
    .await?;
    let nodes = all(Api::<Node>::all(client.clone())).await?;
    Ok(table::table(&services, &lbs, &nodes))
}

/// A task that ends when its handle goes.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The listening sockets of one agent: its relay and one per node port.
#[derive(Default)]
struct Listeners {
    relay: Option<Task>,
    open: HashMap<(Transport, u16), Task>,
    /// Why a node port (or the relay, under port 0) could not be bound, last time, so
    /// the same failure is logged once.
    failed: HashMap<(Transport, u16), String>,
}

impl Listeners {
    /// Binds the relay, unless it is already.
    fn relay(&mut self, forwarder: &Arc<Forwarder>, address: SocketAddr) {
        if self.relay.is_some() {
            return;
        }
        let bound = std::net::TcpListener::bind(address).and_then(|listener| {
            listener.set_nonblocking(true)?;
            TcpListener::from_std(listener)
        });
        match bound {
            Ok(listener) => {
                tracing::info!(%address, "node-port relay listening");
                self.relay = Some(Task(tokio::spawn(forwarder.clone().serve_relay(listener))));
            }
            Err(error) => self.failed_to_bind((Transport::Tcp, 0), address, &error),
        }
    }

    /// Listens on every node port of `table` (on `address`) and on no other.
    async fn reconcile(&mut self, forwarder: &Arc<Forwarder>, table: &Table, address: IpAddr) {
        self.open.retain(|key, _| {
            let keep = table.contains_key(key);
            if !keep {
                tracing::info!(transport = key.0.name(), port = key.1, "node port closed");
            }
            keep
        });
        self.failed
            .retain(|key, _| key.1 == 0 || table.contains_key(key));
        for (&(transport, port), target) in table {
            if self.open.contains_key(&(transport, port)) {
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
                Err(error) => self.failed_to_bind((transport, port), at, &error),
            }
        }
    }

    fn failed_to_bind(&mut self, key: (Transport, u16), at: SocketAddr, error: &std::io::Error) {
        let message = error.to_string();
        if self.failed.get(&key) != Some(&message) {
            tracing::warn!(
                transport = key.0.name(),
                %at,
                error = %message,
                "cannot listen for node-port traffic (retried at every change)"
            );
            self.failed.insert(key, message);
        }
    }
}

#[cfg(test)]
mod tests;
