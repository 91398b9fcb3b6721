//! The load-balancer controller (Octavia's controller worker and health manager, done by
//! the control plane): it places every LoadBalancer on a host, binds its VIP port there,
//! moves it when the host fails or a failover is asked for, and keeps the provisioning and
//! operating status of the load balancer and of every object under it.
//!
//! * Placement is the routers' (`routers::decide`): a Ready, schedulable node, real before
//!   simulated, with a tunnel address, the least loaded (counting load balancers), with
//!   the physical network of a flat VIP network. A load balancer stays on its host while
//!   the node is Ready and its agent answers the probes of [`Reachability`] (a host
//!   that went silent is left within seconds, not after the node grace); a failover
//!   request (`status.failoverRequested`) moves it off `status.failoverFrom` when another
//!   node qualifies (and otherwise leaves it).
//! * The VIP port's `spec.bindingHostId` follows the host, so other hosts tunnel VIP
//!   traffic to it.
//! * The host's agent reports what its proxy serves (`status.servedBy`, `status.applied`:
//!   uid → generation, `status.members`, `status.serveError`). From that: an object is
//!   ACTIVE once the host serving its load balancer serves its current generation,
//!   PENDING_CREATE before it was ever served, PENDING_UPDATE when a newer generation
//!   waits, PENDING_DELETE while being deleted; a load balancer is ACTIVE when it and
//!   its whole tree are, ERROR when no node can host it or its proxy refused the tree.
//! * Operating status: members as their health checks say (NO_MONITOR without a monitor,
//!   OFFLINE when down), pools ERROR when every member is in ERROR and DEGRADED when
//!   some are, listeners and the load balancer DEGRADED when a pool of theirs is not
//!   ONLINE, OFFLINE when administratively down or not served.
//!
//! Statuses are written only when they change; a load balancer's with the
//! resourceVersion it was read at, so a pass that lost a race retries on the next one.

#[cfg(test)]
mod tests;
mod vip_group;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ronghe_api_types::loadbalancing::{
    self as lb, API_VERSION, ChildStatus, HealthMonitorSpec, LoadBalancerSpec, LoadBalancerStatus,
    MemberSpec, TREE_KINDS, Tree, operating, provisioning,
};
use ronghe_api_types::network::{self as net, NetworkSpec};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use super::reachability::Reachability;
use super::routers::{Candidate, Placement, decide};
use crate::engine::{Engine, ListOptions, PatchKind, Target, WriteOptions};
use crate::error::ApiResult;
use crate::object;
use crate::registry::KindSpec;

const RESYNC: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_secs(2);

pub(super) async fn run(
    engine: Engine,
    reachability: Arc<Reachability>,
    wake: Arc<Notify>,
    stop: watch::Receiver<bool>,
) {
    super::run_requeuing("load balancer", wake, stop, RESYNC, || {
        Box::pin(pass(&engine, Some(&reachability)))
    })
    .await;
}

/// Every load balancer's tree, by load balancer uid, from one list of each kind.
async fn trees(engine: &Engine) -> ApiResult<Vec<Tree>> {
    let all = ListOptions::default();
    let lbs_kind = engine.kind(API_VERSION, "LoadBalancer")?;
    let mut lbs = engine.list(&lbs_kind, None, &all).await?.items;
    lbs.sort_by(|a, b| {
        (object::namespace(a), object::name(a)).cmp(&(object::namespace(b), object::name(b)))
    });
    let mut trees: Vec<Tree> = lbs
        .into_iter()
        .map(|load_balancer| Tree {
            load_balancer,
            ..Tree::default()
        })
        .collect();
    let index: HashMap<String, usize> = trees
        .iter()
        .enumerate()
        .map(|(i, t)| (lb::uid(&t.load_balancer).to_owned(), i))
        .collect();
    for kind_name in &TREE_KINDS[1..] {
        let kind = engine.kind(API_VERSION, kind_name)?;
        for child in engine.list(&kind, None, &all).await?.items {
            let owner = child
                .pointer("/spec/loadBalancerId")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if let Some(&i) = index.get(owner)
                && let Some(list) = trees[i].of_kind_mut(kind_name)
            {
                list.push(child);
            }
        }
    }
    Ok(trees)
}

/// The physical network a load balancer's host must have: its VIP network's, if flat.
fn needs_of(spec: &LoadBalancerSpec, networks: &HashMap<String, NetworkSpec>) -> BTreeSet<String> {
    networks
        .get(&spec.vip_network_id)
        .filter(|network| network.is_flat())
        .and_then(|network| network.physical_network.clone())
        .filter(|name| !name.is_empty())
        .into_iter()
        .collect()
}

/// One pass over every load balancer; `reachability` (none in tests that judge hosts by
/// their Ready condition alone) is told which hosts to probe and says which stopped
/// answering.
pub(super) async fn pass(
    engine: &Engine,
    reachability: Option<&Reachability>,
) -> ApiResult<Option<Duration>> {
    let trees = trees(engine).await?;
    let nodes_kind = engine.kind("v1", "Node")?;
    let networks_kind = engine.kind(net::API_VERSION, "Network")?;
    let all = ListOptions::default();
    let node_objects = engine.list(&nodes_kind, None, &all).await?.items;
    let mut nodes: Vec<Candidate> = node_objects.iter().map(Candidate::of).collect();
    if let Some(reachability) = reachability {
        let hosts: BTreeSet<String> = trees
            .iter()
            .map(|tree| lb::status_of::<LoadBalancerStatus>(&tree.load_balancer).host)
            .filter(|host| !host.is_empty())
            .collect();
        reachability.judge("load balancers", &node_objects, &hosts, &mut nodes);
    }
    let networks: HashMap<String, NetworkSpec> = engine
        .list(&networks_kind, None, &all)
        .await?
        .items
        .iter()
        .map(|n| (lb::uid(n).to_owned(), net::spec_of(n)))
        .collect();
    let placements: Vec<Placement> = trees
        .iter()
        .map(|tree| {
            let status: LoadBalancerStatus = lb::status_of(&tree.load_balancer);
            let failing_over =
                !status.failover_requested.is_empty() && status.failover_from == status.host;
            Placement {
                // A load balancer failing over is placed afresh, below.
                host: if failing_over {
                    String::new()
                } else {
                    status.host
                },
                needs: needs_of(&lb::spec_of(&tree.load_balancer), &networks),
                deleting: lb::deleting(&tree.load_balancer),
            }
        })
        .collect();
    let mut decided = decide(&placements, &nodes);
    // A failover goes elsewhere when it can, and stays when nothing else qualifies.
    for ((tree, placement), host) in trees.iter().zip(&placements).zip(decided.iter_mut()) {
        let status: LoadBalancerStatus = lb::status_of(&tree.load_balancer);
        if status.failover_requested.is_empty() || placement.deleting {
            continue;
        }
        let others: Vec<Candidate> = nodes
            .iter()
            .filter(|n| n.name != status.failover_from)
            .cloned()
            .collect();
        let elsewhere = decide(
            &[Placement {
                host: String::new(),
                ..placement.clone()
            }],
            &others,
        )
        .pop()
        .flatten();
        *host = elsewhere.or_else(|| host.clone());
    }

    let lbs_kind = engine.kind(API_VERSION, "LoadBalancer")?;
    let ports_kind = engine.kind(net::API_VERSION, "Port")?;
    let mut retry = None;
    for (tree, host) in trees.iter().zip(decided) {
        let host = host.unwrap_or_default();
        let old: LoadBalancerStatus = lb::status_of(&tree.load_balancer);
        let derived = derive(tree, &host);
        let mut status = old.clone();
        status.host = host.clone();
        status.provisioning_status = derived.provisioning.clone();
        status.operating_status = derived.operating.clone();
        status.message = derived.message.clone();
        if !old.failover_requested.is_empty() {
            // Moved, or stayed because nothing else qualifies: the request is done.
            status.failover_requested.clear();
            status.failover_from.clear();
        }
        if status != old {
            if old.host != host {
                log_move(&tree.load_balancer, &old.host, &host);
            }
            if let Err(error) = write_status(engine, &lbs_kind, &tree.load_balancer, &status).await
            {
                warn(
                    &tree.load_balancer,
                    &error,
                    "writing a load balancer's status failed",
                );
                retry = Some(RETRY);
                continue;
            }
        }
        if !lb::deleting(&tree.load_balancer)
            && let Err(error) = bind_vip(engine, &ports_kind, &tree.load_balancer, &host).await
        {
            warn(
                &tree.load_balancer,
                &error,
                "binding a VIP port to its host failed",
            );
            retry = Some(RETRY);
        }
        if !lb::deleting(&tree.load_balancer)
            && let Err(error) = vip_group::ensure(engine, tree).await
        {
            warn(
                &tree.load_balancer,
                &error,
                "opening the listeners' ports on the VIP failed",
            );
            retry = Some(RETRY);
        }
        for (child, wanted) in &derived.children {
            let current: ChildStatus = lb::status_of(child);
            if &current == wanted
                || lb::deleting(child)
                    && current.provisioning_status == provisioning::PENDING_DELETE
            {
                continue;
            }
            let kind_name = child
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let kind = engine.kind(API_VERSION, kind_name)?;
            let written = engine
                .patch(
                    &kind,
                    object::namespace(child),
                    object::name(child).unwrap_or_default(),
                    PatchKind::Merge,
                    json!({"status": wanted}),
                    Target::Status,
                    &WriteOptions::default(),
                )
                .await;
            if let Err(error) = written
                && error.code() != 404
            {
                warn(
                    child,
                    &error,
                    "writing a load-balancing object's status failed",
                );
                retry = Some(RETRY);
            }
        }
    }
    Ok(retry)
}

fn warn(object: &Value, error: &crate::error::ApiError, what: &str) {
    tracing::warn!(
        namespace = object::namespace(object),
        name = object::name(object),
        %error,
        "{what}"
    );
}

fn log_move(lb: &Value, from: &str, to: &str) {
    let namespace = object::namespace(lb);
    let name = object::name(lb);
    match (from.is_empty(), to.is_empty()) {
        (_, true) => tracing::warn!(namespace, name, from, "no node can host the load balancer"),
        (true, false) => tracing::info!(namespace, name, to, "load balancer scheduled"),
        (false, false) => {
            tracing::info!(
                namespace,
                name,
                from,
                to,
                "load balancer moved off its host"
            )
        }
    }
}

async fn write_status(
    engine: &Engine,
    kind: &KindSpec,
    lb: &Value,
    status: &LoadBalancerStatus,
) -> ApiResult<()> {
    // Only the fields this controller owns: the agent writes the others.
    let fields = json!({
        "host": status.host,
        "provisioningStatus": status.provisioning_status,
        "operatingStatus": status.operating_status,
        "message": status.message,
        "failoverRequested": status.failover_requested,
        "failoverFrom": status.failover_from,
    });
    engine
        .patch(
            kind,
            object::namespace(lb),
            object::name(lb).unwrap_or_default(),
            PatchKind::Merge,
            json!({
                "metadata": {"resourceVersion": object::resource_version(lb)},
                "status": fields,
            }),
            Target::Status,
            &WriteOptions::default(),
        )
        .await?;
    Ok(())
}

/// Points the VIP port at the load balancer's host.
async fn bind_vip(engine: &Engine, ports: &KindSpec, lb: &Value, host: &str) -> ApiResult<()> {
    let spec: LoadBalancerSpec = lb::spec_of(lb);
    if spec.vip_port_id.is_empty() {
        return Ok(());
    }
    let namespace = object::namespace(lb).unwrap_or_default();
    let Some(port) =
        crate::kinds::network::resolve(engine, "Port", namespace, &spec.vip_port_id, |_| false)
            .await?
    else {
        return Ok(());
    };
    let bound = port
        .pointer("/spec/bindingHostId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if bound == host || object::deletion_timestamp(&port).is_some() {
        return Ok(());
    }
    engine
        .patch(
            ports,
            Some(namespace),
            object::name(&port).unwrap_or_default(),
            PatchKind::Merge,
            json!({"spec": {"bindingHostId": host}}),
            Target::Main,
            &WriteOptions::default(),
        )
        .await?;
    Ok(())
}

/// What the statuses of a tree should be.
#[derive(Debug, Default)]
struct Derived<'a> {
    provisioning: String,
    operating: String,
    message: String,
    children: Vec<(&'a Value, ChildStatus)>,
}

fn admin_up(object: &Value) -> bool {
    object
        .pointer("/spec/adminStateUp")
        .and_then(Value::as_bool)
        .unwrap_or(true)
}

/// The statuses of a load balancer placed on `host` and of its tree.
fn derive<'a>(tree: &'a Tree, host: &str) -> Derived<'a> {
    let status: LoadBalancerStatus = lb::status_of(&tree.load_balancer);
    let served = !host.is_empty() && status.served_by == host;
    let never_served = status.applied.is_empty() && status.served_by.is_empty();
    let provisioning_of = |object: &Value| -> String {
        if lb::deleting(object) {
            return provisioning::PENDING_DELETE.into();
        }
        match status.applied.get(lb::uid(object)) {
            Some(&generation) if served && generation == lb::generation(object) => {
                provisioning::ACTIVE.into()
            }
            Some(_) => provisioning::PENDING_UPDATE.into(),
            None => provisioning::PENDING_CREATE.into(),
        }
    };

    // Members, then pools, then listeners: each from the ones below it.
    let mut pool_members: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut children: Vec<(&Value, ChildStatus)> = Vec::new();
    let monitored: BTreeSet<String> = tree
        .monitors
        .iter()
        .filter(|m| admin_up(m) && !lb::deleting(m))
        .map(|m| lb::spec_of::<HealthMonitorSpec>(m).pool_id)
        .collect();
    for member in &tree.members {
        let spec: MemberSpec = lb::spec_of(member);
        let reported = status.members.get(lb::uid(member)).map(String::as_str);
        let operating_status = if !admin_up(member) || !served {
            operating::OFFLINE
        } else if !monitored.contains(&spec.pool_id) {
            operating::NO_MONITOR
        } else {
            match reported {
                Some(operating::ERROR) => operating::ERROR,
                Some(operating::ONLINE) => operating::ONLINE,
                Some(operating::OFFLINE) => operating::OFFLINE,
                // Not checked yet: Octavia shows NO_MONITOR until the first result.
                _ => operating::NO_MONITOR,
            }
        };
        pool_members
            .entry(spec.pool_id.clone())
            .or_default()
            .push(operating_status);
        children.push((
            member,
            ChildStatus {
                provisioning_status: provisioning_of(member),
                operating_status: operating_status.into(),
            },
        ));
    }
    let mut pool_status: BTreeMap<String, &str> = BTreeMap::new();
    for pool in &tree.pools {
        let members = pool_members.get(lb::uid(pool)).cloned().unwrap_or_default();
        let in_error = members.iter().filter(|s| **s == operating::ERROR).count();
        let operating_status = if !admin_up(pool) || !served {
            operating::OFFLINE
        } else if in_error > 0 && in_error == members.len() {
            operating::ERROR
        } else if in_error > 0 {
            operating::DEGRADED
        } else {
            operating::ONLINE
        };
        pool_status.insert(lb::uid(pool).to_owned(), operating_status);
        children.push((
            pool,
            ChildStatus {
                provisioning_status: provisioning_of(pool),
                operating_status: operating_status.into(),
            },
        ));
    }
    let mut degraded = false;
    for listener in &tree.listeners {
        let default_pool = lb::proxy::default_pool_of(listener, &tree.pools);
        let pool_ok = default_pool
            .as_ref()
            .and_then(|p| pool_status.get(p))
            .is_none_or(|s| *s == operating::ONLINE);
        let operating_status = if !admin_up(listener) || !served {
            operating::OFFLINE
        } else if !pool_ok {
            degraded = true;
            operating::DEGRADED
        } else {
            operating::ONLINE
        };
        children.push((
            listener,
            ChildStatus {
                provisioning_status: provisioning_of(listener),
                operating_status: operating_status.into(),
            },
        ));
    }
    for (object, up) in tree
        .monitors
        .iter()
        .map(|m| (m, admin_up(m)))
        .chain(tree.policies.iter().map(|p| (p, admin_up(p))))
        .chain(tree.rules.iter().map(|r| (r, admin_up(r))))
    {
        children.push((
            object,
            ChildStatus {
                provisioning_status: provisioning_of(object),
                operating_status: if up && served {
                    operating::ONLINE
                } else {
                    operating::OFFLINE
                }
                .into(),
            },
        ));
    }

    let load_balancer = &tree.load_balancer;
    let (provisioning_status, message) = if lb::deleting(load_balancer) {
        (provisioning::PENDING_DELETE.to_owned(), String::new())
    } else if host.is_empty() {
        (
            provisioning::ERROR.to_owned(),
            "No host can run the load balancer: no node is Ready.".to_owned(),
        )
    } else if served && !status.serve_error.is_empty() {
        (provisioning::ERROR.to_owned(), status.serve_error.clone())
    } else if never_served {
        (provisioning::PENDING_CREATE.to_owned(), String::new())
    } else {
        let all_active = provisioning_of(load_balancer) == provisioning::ACTIVE
            && children
                .iter()
                .all(|(_, s)| s.provisioning_status == provisioning::ACTIVE);
        let state = if all_active {
            provisioning::ACTIVE
        } else {
            provisioning::PENDING_UPDATE
        };
        (state.to_owned(), String::new())
    };
    let operating_status = if !admin_up(load_balancer) || !served {
        operating::OFFLINE
    } else if degraded
        || pool_status
            .values()
            .any(|s| *s != operating::ONLINE && *s != operating::OFFLINE)
    {
        operating::DEGRADED
    } else {
        operating::ONLINE
    };
    Derived {
        provisioning: provisioning_status,
        operating: operating_status.into(),
        message,
        children,
    }
}
