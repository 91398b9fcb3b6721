//! The router scheduling controller (Neutron's L3 agent scheduler and its HA failover,
//! done by the control plane): every Router gets `status.host`, the Node whose agent runs
//! its namespace, and every port of the router (`network:router*` ports whose `deviceId`
//! is its uid) gets that host as `spec.bindingHostId`, which is where other hosts tunnel
//! the router's traffic (Neutron shows an L3 agent's host as its router ports'
//! `binding:host_id`).
//!
//! * A node qualifies when it is Ready (condition Ready=True), not cordoned
//!   (`spec.unschedulable`), not being deleted, and announces (annotation
//!   `network.ronghe.io/physical-networks`) every physical network of the flat networks
//!   the router reaches: its external gateway's and those of its interface ports.
//! * Among qualifying nodes, real nodes are preferred to simulated ones (label
//!   `node.ronghe.io/simulated=true`, whose agent wires nothing), then nodes announcing a
//!   tunnel address (`network.ronghe.io/tunnel-ip`); of those left, the one hosting the
//!   fewest routers wins, ties going to the first name, so placement is deterministic.
//! * A router stays on its host while that node exists, is Ready and still has the
//!   router's physical networks, even if cordoned: no flapping, no rebalancing. When the
//!   host stops being Ready (the node-lifecycle controller marks silent nodes
//!   Ready=Unknown), stops answering the server's probes of its agent (see
//!   `reachability.rs`: seconds, where the node grace takes tens) or is deleted, the
//!   router moves to another qualifying node.
//! * A hosted router's `status.status` is `ACTIVE`. When no node qualifies its host is
//!   cleared (and so are its ports' bindings) and its status left as it is: like
//!   Neutron, a router without an agent still shows the status the API gave it.
//! * Routers being deleted are left where they are.
//!
//! Router status is written with the resourceVersion it was read at, so a pass that lost
//! a race retries on the next one.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ronghe_api_types::network::{
    self as net, NetworkSpec, PortSpec, RouterSpec, RouterStatus, annotation,
};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use super::reachability::Reachability;
use crate::engine::{Engine, ListOptions, PatchKind, Target, WriteOptions};
use crate::error::ApiResult;
use crate::object;

/// How often a pass runs without a wake-up.
const RESYNC: Duration = Duration::from_secs(10);
/// How soon a pass whose writes failed is tried again.
const RETRY: Duration = Duration::from_secs(2);
/// The label the agent puts on the nodes it simulates.
const SIMULATED_LABEL: &str = "node.ronghe.io/simulated";
/// The status of a router that has a host.
const ACTIVE: &str = "ACTIVE";

pub(super) async fn run(
    engine: Engine,
    reachability: Arc<Reachability>,
    wake: Arc<Notify>,
    stop: watch::Receiver<bool>,
) {
    super::run_requeuing("router scheduling", wake, stop, RESYNC, || {
        Box::pin(pass(&engine, Some(&reachability)))
    })
    .await;
}

/// What placing routers needs to know of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Candidate {
    pub(super) name: String,
    /// Ready and not being deleted: a router may stay here.
    alive: bool,
    /// Not cordoned: a router may be placed here.
    schedulable: bool,
    physical_networks: BTreeSet<String>,
    has_tunnel_ip: bool,
    simulated: bool,
}

impl Candidate {
    pub(super) fn of(node: &Value) -> Candidate {
        let annotations = node.pointer("/metadata/annotations");
        let annotated = |key: &str| {
            annotations
                .and_then(|a| a.get(key))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Candidate {
            name: object::name(node).unwrap_or_default().to_owned(),
            alive: crate::kinds::node_is_ready(node) && object::deletion_timestamp(node).is_none(),
            schedulable: node.pointer("/spec/unschedulable").and_then(Value::as_bool) != Some(true),
            physical_networks: physical_network_names(&annotated(annotation::PHYSICAL_NETWORKS)),
            has_tunnel_ip: !annotated(annotation::TUNNEL_IP).trim().is_empty(),
            simulated: object::labels(node)
                .get(SIMULATED_LABEL)
                .is_some_and(|v| v == "true"),
        }
    }

    /// Whether it is Ready and not being deleted.
    pub(super) fn is_alive(&self) -> bool {
        self.alive
    }

    /// Counts it as down (its host stopped answering), whatever its Ready condition says.
    pub(super) fn mark_down(&mut self) {
        self.alive = false;
    }

    fn has_all(&self, needed: &BTreeSet<String>) -> bool {
        needed.is_subset(&self.physical_networks)
    }
}

/// The names in a `name=interface,name=interface` annotation.
fn physical_network_names(annotation: &str) -> BTreeSet<String> {
    ronghe_api_types::network::physical_networks(annotation)
        .into_keys()
        .collect()
}

/// What placing one router needs to know of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Placement {
    /// Where it is now (empty when nowhere).
    pub(super) host: String,
    /// The physical networks its host must have.
    pub(super) needs: BTreeSet<String>,
    /// Being deleted: it stays where it is.
    pub(super) deleting: bool,
}

/// The host of every router, in the order given (which decides who gets the emptier
/// nodes first): the current one while it holds, else the least loaded qualifying node,
/// else none.
pub(super) fn decide(routers: &[Placement], nodes: &[Candidate]) -> Vec<Option<String>> {
    let by_name: HashMap<&str, &Candidate> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    // How many routers each node hosts: those staying first, then those placed here.
    let mut load: BTreeMap<String, usize> = BTreeMap::new();
    let mut hosts: Vec<Option<String>> = routers
        .iter()
        .map(|router| {
            let current = by_name.get(router.host.as_str());
            let holds = current.is_some_and(|node| node.alive && node.has_all(&router.needs));
            let stays = (router.deleting || holds) && !router.host.is_empty();
            if stays {
                *load.entry(router.host.clone()).or_default() += 1;
            }
            stays.then(|| router.host.clone())
        })
        .collect();
    for (router, host) in routers.iter().zip(hosts.iter_mut()) {
        if host.is_some() || router.deleting {
            continue;
        }
        let mut qualifying: Vec<&Candidate> = nodes
            .iter()
            .filter(|n| n.alive && n.schedulable && n.has_all(&router.needs))
            .collect();
        // Narrow to the better kinds of node, but only when some such node qualifies.
        if qualifying.iter().any(|n| !n.simulated) {
            qualifying.retain(|n| !n.simulated);
        }
        if qualifying.iter().any(|n| n.has_tunnel_ip) {
            qualifying.retain(|n| n.has_tunnel_ip);
        }
        let chosen = qualifying
            .into_iter()
            .min_by_key(|n| (load.get(&n.name).copied().unwrap_or_default(), &n.name))
            .map(|n| n.name.clone());
        if let Some(name) = &chosen {
            *load.entry(name.clone()).or_default() += 1;
        }
        *host = chosen;
    }
    hosts
}

/// The physical networks a router's host needs: those of the flat networks of its
/// gateway and of its ports. A network that cannot be found asks for nothing.
fn needs_of(
    spec: &RouterSpec,
    ports: &[&PortSpec],
    networks: &HashMap<String, NetworkSpec>,
) -> BTreeSet<String> {
    let gateway = spec
        .external_gateway_info
        .as_ref()
        .map(|g| g.network_id.as_str());
    gateway
        .into_iter()
        .chain(ports.iter().map(|p| p.network_id.as_str()))
        .filter_map(|id| networks.get(id))
        .filter(|network| network.is_flat())
        .filter_map(|network| network.physical_network.clone())
        .filter(|name| !name.is_empty())
        .collect()
}

fn is_router_port(spec: &PortSpec) -> bool {
    spec.device_owner.starts_with("network:router")
}

/// One pass over every router; `reachability` (none in tests that judge hosts by their
/// Ready condition alone) is told which hosts to probe and says which stopped answering.
pub(super) async fn pass(
    engine: &Engine,
    reachability: Option<&Reachability>,
) -> ApiResult<Option<Duration>> {
    let routers_kind = engine.kind(net::API_VERSION, "Router")?;
    let ports_kind = engine.kind(net::API_VERSION, "Port")?;
    let networks_kind = engine.kind(net::API_VERSION, "Network")?;
    let nodes_kind = engine.kind("v1", "Node")?;
    let all = ListOptions::default();
    let mut routers = engine.list(&routers_kind, None, &all).await?.items;
    let ports = engine.list(&ports_kind, None, &all).await?.items;
    let networks: HashMap<String, NetworkSpec> = engine
        .list(&networks_kind, None, &all)
        .await?
        .items
        .iter()
        .map(|n| {
            (
                object::uid(n).unwrap_or_default().to_owned(),
                net::spec_of(n),
            )
        })
        .collect();
    let node_objects = engine.list(&nodes_kind, None, &all).await?.items;
    let mut nodes: Vec<Candidate> = node_objects.iter().map(Candidate::of).collect();
    let port_specs: Vec<(&Value, PortSpec)> = ports
        .iter()
        .map(|p| (p, net::spec_of::<PortSpec>(p)))
        .filter(|(_, spec)| is_router_port(spec))
        .collect();

    routers.sort_by(|a, b| {
        (object::namespace(a), object::name(a)).cmp(&(object::namespace(b), object::name(b)))
    });
    let placements: Vec<Placement> = routers
        .iter()
        .map(|router| {
            let uid = object::uid(router).unwrap_or_default();
            let own: Vec<&PortSpec> = port_specs
                .iter()
                .filter(|(_, spec)| spec.device_id == uid)
                .map(|(_, spec)| spec)
                .collect();
            Placement {
                host: net::status_of::<RouterStatus>(router).host,
                needs: needs_of(&net::spec_of(router), &own, &networks),
                deleting: object::deletion_timestamp(router).is_some(),
            }
        })
        .collect();
    if let Some(reachability) = reachability {
        let hosts: BTreeSet<String> = placements
            .iter()
            .map(|placement| placement.host.clone())
            .filter(|host| !host.is_empty())
            .collect();
        reachability.judge("routers", &node_objects, &hosts, &mut nodes);
    }
    let decided = decide(&placements, &nodes);

    let mut retry = None;
    // Each router's host as stored once this pass is done, by uid: its ports follow it.
    let mut hosts: HashMap<String, String> = HashMap::new();
    for ((router, placement), host) in routers.iter().zip(&placements).zip(decided) {
        let uid = object::uid(router).unwrap_or_default().to_owned();
        let host = host.unwrap_or_default();
        let status: RouterStatus = net::status_of(router);
        let changed = host != placement.host || (!host.is_empty() && status.status != ACTIVE);
        if placement.deleting || !changed {
            hosts.insert(uid, placement.host.clone());
            continue;
        }
        match write_host(engine, &routers_kind, router, &host).await {
            Ok(()) => {
                log_move(router, &placement.host, &host);
                hosts.insert(uid, host);
            }
            Err(error) => {
                tracing::warn!(
                    namespace = object::namespace(router),
                    name = object::name(router),
                    %error,
                    "writing a router's host failed"
                );
                hosts.insert(uid, placement.host.clone());
                retry = Some(RETRY);
            }
        }
    }

    for (port, spec) in &port_specs {
        let Some(host) = hosts.get(&spec.device_id) else {
            // Not a router we know (yet): nothing to follow.
            continue;
        };
        if &spec.binding_host_id == host || object::deletion_timestamp(port).is_some() {
            continue;
        }
        let written = engine
            .patch(
                &ports_kind,
                object::namespace(port),
                object::name(port).unwrap_or_default(),
                PatchKind::Merge,
                json!({"spec": {"bindingHostId": host}}),
                Target::Main,
                &WriteOptions::default(),
            )
            .await;
        if let Err(error) = written {
            tracing::warn!(
                namespace = object::namespace(port),
                name = object::name(port),
                host = host.as_str(),
                %error,
                "binding a router's port to its host failed"
            );
            retry = Some(RETRY);
        }
    }
    Ok(retry)
}

/// Sets (or clears, when `host` is empty) a router's host, if the router is still as read.
async fn write_host(
    engine: &Engine,
    kind: &crate::registry::KindSpec,
    router: &Value,
    host: &str,
) -> ApiResult<()> {
    let status = if host.is_empty() {
        json!({"host": null})
    } else {
        json!({"host": host, "status": ACTIVE})
    };
    engine
        .patch(
            kind,
            object::namespace(router),
            object::name(router).unwrap_or_default(),
            PatchKind::Merge,
            json!({
                "metadata": {"resourceVersion": object::resource_version(router)},
                "status": status,
            }),
            Target::Status,
            &WriteOptions::default(),
        )
        .await?;
    Ok(())
}

fn log_move(router: &Value, from: &str, to: &str) {
    let namespace = object::namespace(router);
    let name = object::name(router);
    match (from.is_empty(), to.is_empty()) {
        (_, true) => {
            tracing::warn!(namespace, name, from, "no node can host the router")
        }
        (true, false) => tracing::info!(namespace, name, to, "router scheduled"),
        (false, false) if from != to => {
            tracing::info!(namespace, name, from, to, "router moved off its host")
        }
        (false, false) => tracing::debug!(namespace, name, to, "router marked active"),
    }
}
