//! Controllers that run inside the API server process: garbage collection of dependents,
//! namespace finalization, pairing projects with namespaces, quota counting, scheduling,
//! ReplicaSets and Deployments, node lifecycle, workload ports, router scheduling, load
//! balancers (with the probes of their hosts' reachability), Event expiry and store
//! compaction. Each is level-triggered: a pass reads the state through the engine, acts,
//! and is repeated on a timer and when changes arrive, so a missed wake-up costs only
//! latency.

mod compaction;
mod deployment;
mod event_expiry;
mod events;
mod gc;
mod loadbalancers;
mod namespace;
pub mod node_lifecycle;
pub mod ports;
mod projects;
mod quota;
mod reachability;
mod replicaset;
mod routers;
pub mod scheduler;
mod services;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::engine::Engine;

/// Pairs projects and namespaces once, before the server answers requests, so clients
/// never race the first pass (which links the built-in namespaces to their projects).
pub async fn pair_projects(engine: &Engine) -> crate::error::ApiResult<()> {
    projects::pass(engine).await
}

/// How often the periodic controllers run.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// How often store history older than `history` is compacted.
    pub compaction_interval: Duration,
    pub history: Duration,
    /// How long a node's agent may stay silent before the node is marked not ready.
    pub node_grace: Duration,
    /// How long an Event lives after it was last seen (kube-apiserver's `--event-ttl`).
    pub event_ttl: Duration,
}

/// Starts every in-process controller on `tasks`; they stop when `stop` flips.
pub fn start(
    tasks: &mut JoinSet<()>,
    engine: Engine,
    stop: watch::Receiver<bool>,
    config: &ControllerConfig,
) {
    let gc_wake = Arc::new(Notify::new());
    let namespace_wake = Arc::new(Notify::new());
    let projects_wake = Arc::new(Notify::new());
    let quota_changed = Arc::new(quota::Changed::default());
    let scheduler_wake = Arc::new(Notify::new());
    let replicaset_wake = Arc::new(Notify::new());
    let deployment_wake = Arc::new(Notify::new());
    let ports_wake = Arc::new(Notify::new());
    let routers_wake = Arc::new(Notify::new());
    let lbs_wake = Arc::new(Notify::new());
    let services_wake = Arc::new(Notify::new());
    tasks.spawn(wake_on_changes(
        engine.clone(),
        vec![gc_wake.clone(), namespace_wake.clone()],
        projects_wake.clone(),
        quota_changed.clone(),
        scheduler_wake.clone(),
        vec![
            replicaset_wake.clone(),
            deployment_wake.clone(),
            ports_wake.clone(),
            services_wake.clone(),
        ],
        routers_wake.clone(),
        lbs_wake.clone(),
        stop.clone(),
    ));
    let reachability = Arc::new(reachability::Reachability::new(
        reachability::Timing::default(),
        vec![lbs_wake.clone(), routers_wake.clone()],
    ));
    tasks.spawn(routers::run(
        engine.clone(),
        reachability.clone(),
        routers_wake,
        stop.clone(),
    ));
    tasks.spawn(loadbalancers::run(
        engine.clone(),
        reachability,
        lbs_wake,
        stop.clone(),
    ));
    tasks.spawn(ports::run(engine.clone(), ports_wake, stop.clone()));
    tasks.spawn(services::run(engine.clone(), services_wake, stop.clone()));
    tasks.spawn(replicaset::run(
        engine.clone(),
        replicaset_wake,
        stop.clone(),
    ));
    tasks.spawn(deployment::run(
        engine.clone(),
        deployment_wake,
        stop.clone(),
    ));
    tasks.spawn(scheduler::run(engine.clone(), scheduler_wake, stop.clone()));
    tasks.spawn(node_lifecycle::run(
        engine.clone(),
        config.node_grace,
        stop.clone(),
    ));
    tasks.spawn(quota::run(engine.clone(), quota_changed, stop.clone()));
    tasks.spawn(gc::run(engine.clone(), gc_wake, stop.clone()));
    tasks.spawn(namespace::run(engine.clone(), namespace_wake, stop.clone()));
    tasks.spawn(projects::run(engine.clone(), projects_wake, stop.clone()));
    tasks.spawn(event_expiry::run(
        engine.clone(),
        stop.clone(),
        config.event_ttl,
    ));
    tasks.spawn(compaction::run(
        engine,
        stop,
        config.compaction_interval,
        config.history,
    ));
}

/// Wakes the controllers in `wake` (and the projects controller) whenever anything is
/// deleted or marked for deletion, the projects controller also when a namespace or a
/// project is created, the quota controller on any change in a namespace, and the
/// workload controllers on changes to pods, ReplicaSets and Deployments, and the router
/// scheduler on changes to routers, nodes, ports and networks, the load-balancer
/// controller on changes to load-balancing objects and nodes. The change feed is only a
/// wake-up call: controllers read state through the engine.
#[allow(clippy::too_many_arguments)]
async fn wake_on_changes(
    engine: Engine,
    wake: Vec<Arc<Notify>>,
    projects_wake: Arc<Notify>,
    quota_changed: Arc<quota::Changed>,
    scheduler_wake: Arc<Notify>,
    workload_wake: Vec<Arc<Notify>>,
    routers_wake: Arc<Notify>,
    lbs_wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    // `notify_one` keeps a permit when the controller is busy with a pass, so a change made
    // during a pass (often by the pass itself) starts the next one instead of being lost.
    let wake_all = || {
        wake.iter().for_each(|w| w.notify_one());
        projects_wake.notify_one();
    };
    // The store keys under which the projects controller's kinds are created.
    let paired_prefixes: Vec<String> = [
        engine.kind("v1", "Namespace"),
        engine.kind(ronghe_identity::model::API_VERSION, "Project"),
    ]
    .into_iter()
    .filter_map(Result::ok)
    .map(|kind| kind.key_prefix())
    .collect();
    // The keys whose changes may let a workload be placed or need one placed.
    let scheduling_prefixes: Vec<String> = [
        engine.kind("v1", "Pod"),
        engine.kind("v1", "Node"),
        engine.kind(crate::kinds::placement::API_VERSION, "ResourceProvider"),
        engine.kind(crate::kinds::compute::API_VERSION, "VirtualMachine"),
    ]
    .into_iter()
    .filter_map(Result::ok)
    .map(|kind| kind.key_prefix())
    .collect();
    // The keys whose changes the workload controllers (ReplicaSets, Deployments) act on.
    let workload_prefixes: Vec<String> = [
        engine.kind("v1", "Pod"),
        engine.kind(crate::kinds::compute::API_VERSION, "VirtualMachine"),
        engine.kind(ronghe_api_types::network::API_VERSION, "Port"),
        engine.kind(ronghe_api_types::network::API_VERSION, "Subnet"),
        engine.kind("apps/v1", "ReplicaSet"),
        engine.kind("apps/v1", "Deployment"),
        engine.kind("v1", "Service"),
    ]
    .into_iter()
    .filter_map(Result::ok)
    .map(|kind| kind.key_prefix())
    .collect();
    // The keys whose changes may move a router or its ports' binding.
    let router_prefixes: Vec<String> = [
        engine.kind(ronghe_api_types::network::API_VERSION, "Router"),
        engine.kind("v1", "Node"),
        engine.kind(ronghe_api_types::network::API_VERSION, "Port"),
        engine.kind(ronghe_api_types::network::API_VERSION, "Network"),
    ]
    .into_iter()
    .filter_map(Result::ok)
    .map(|kind| kind.key_prefix())
    .collect();
    // The keys whose changes may move a load balancer or change a status in its tree.
    let lb_prefixes: Vec<String> = ronghe_api_types::loadbalancing::TREE_KINDS
        .iter()
        .map(|kind| engine.kind(ronghe_api_types::loadbalancing::API_VERSION, kind))
        .chain([engine.kind("v1", "Node")])
        .filter_map(Result::ok)
        .map(|kind| kind.key_prefix())
        .collect();
    loop {
        let after = match engine.store().current_revision().await {
            Ok(revision) => revision,
            Err(error) => {
                tracing::warn!(%error, "reading the store revision failed");
                if pause(&mut stop, Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
        };
        let mut changes = match engine.store().watch("/", after).await {
            Ok(changes) => changes,
            Err(error) => {
                tracing::warn!(%error, "watching the store failed");
                if pause(&mut stop, Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
        };
        loop {
            tokio::select! {
                change = changes.next() => match change {
                    Some(Ok(event)) => {
                        quota_changed.key(&event.key);
                        if scheduling_prefixes.iter().any(|p| event.key.starts_with(p.as_str())) {
                            scheduler_wake.notify_one();
                        }
                        if workload_prefixes.iter().any(|p| event.key.starts_with(p.as_str())) {
                            workload_wake.iter().for_each(|w| w.notify_one());
                        }
                        if router_prefixes.iter().any(|p| event.key.starts_with(p.as_str())) {
                            routers_wake.notify_one();
                        }
                        if lb_prefixes.iter().any(|p| event.key.starts_with(p.as_str())) {
                            lbs_wake.notify_one();
                        }
                        let deleting = event.kind == ronghe_store::EventKind::Delete
                            || event.value.as_ref().is_some_and(|v| {
                                contains_bytes(v, b"\"deletionTimestamp\"")
                            });
                        if deleting {
                            wake_all();
                        } else if event.kind == ronghe_store::EventKind::Create
                            && paired_prefixes.iter().any(|p| event.key.starts_with(p.as_str()))
                        {
                            projects_wake.notify_one();
                        }
                    }
                    // Fell behind or the store closed: start again from now.
                    _ => {
                        wake_all();
                        break;
                    }
                },
                _ = stop.changed() => return,
            }
        }
    }
}

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Sleeps, or returns true early if the server is stopping.
async fn pause(stop: &mut watch::Receiver<bool>, duration: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// Runs `pass` until `stop` flips: again after a wake-up, after the delay a pass asks for
/// (at least 100 ms), or after `resync`. A failed pass is logged as `what`'s.
async fn run_requeuing<'a>(
    what: &str,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    resync: Duration,
    mut pass: impl FnMut() -> BoxFuture<'a, crate::error::ApiResult<Option<Duration>>>,
) {
    const MIN_REQUEUE: Duration = Duration::from_millis(100);
    loop {
        let requeue = match pass().await {
            Ok(requeue) => requeue,
            Err(error) => {
                tracing::warn!(%error, "a {what} pass failed");
                None
            }
        };
        let wait = requeue.map_or(resync, |r| r.clamp(MIN_REQUEUE, resync));
        if wait_for_work(&wake, &mut stop, wait).await {
            return;
        }
    }
}

/// Waits for a wake-up or the resync period; returns true if the server is stopping.
async fn wait_for_work(wake: &Notify, stop: &mut watch::Receiver<bool>, resync: Duration) -> bool {
    tokio::select! {
        () = wake.notified() => {
            // Let a burst of changes settle into one pass.
            tokio::time::sleep(Duration::from_millis(50)).await;
            *stop.borrow()
        }
        () = tokio::time::sleep(resync) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// Deletes an object, content when it is already gone.
async fn delete_if_present(
    engine: &Engine,
    kind: &crate::registry::KindSpec,
    namespace: Option<&str>,
    name: &str,
) -> crate::error::ApiResult<()> {
    match engine
        .delete(
            kind,
            namespace,
            name,
            &crate::engine::DeleteOptions::default(),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if error.code() == 404 => Ok(()),
        Err(error) => Err(error),
    }
}
