//! The scheduler controller: places pending workloads — pods and VMs alike — on hosts with
//! the one scheduler of `ronghe-scheduler`, and keeps the allocation ledger (each host's
//! resource provider `status.allocations`) in step with the workloads.
//!
//! A pass reads nodes, resource providers and pods; releases the allocations of workloads
//! that are gone or finished; builds the pool (`translate`); decides every pending pod in
//! turn against that snapshot, placing each decision in it; then commits, per host, the
//! new allocations and the bindings (`spec.nodeName` and the PodScheduled condition) in
//! one store transaction with a compare-and-swap on every object — so two schedulers, or a
//! decision made on stale state, can never over-commit a host: the loser's transaction
//! fails and the next pass decides again. Pods that fit nowhere get PodScheduled=False with
//! kube-scheduler's reasons; VMs go to ERROR with Nova's "No valid host was found" fault.
//! A VM's binding is `status.host` (with `taskState: spawning`).

mod translate;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ronghe_scheduler::{Config, Placed, Snapshot};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use super::wait_for_work;
use crate::engine::{Engine, ListOptions, PatchKind, Target, WriteOptions};
use crate::error::ApiResult;
use crate::kinds::compute::API_VERSION as COMPUTE;
use crate::kinds::placement::{API_VERSION as PLACEMENT, Allocation, ResourceProviderStatus};
use crate::object;
use crate::registry::KindSpec;

/// How often a pass runs without a wake-up (pods left unschedulable are retried then too).
const RESYNC: Duration = Duration::from_secs(5);
/// How many hosts' commits are in flight at once.
const COMMITS_IN_FLIGHT: usize = 64;
/// The scheduler's name in `spec.schedulerName`.
pub const SCHEDULER_NAME: &str = "default-scheduler";

pub(super) async fn run(engine: Engine, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    let Some(kinds) = Kinds::of(&engine) else {
        return;
    };
    let mut start = 0;
    loop {
        match pass(&engine, &kinds, &mut start).await {
            Ok(true) => wake.notify_one(),
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "a scheduling pass failed"),
        }
        if wait_for_work(&wake, &mut stop, RESYNC).await {
            return;
        }
    }
}

struct Kinds {
    nodes: Arc<KindSpec>,
    providers: Arc<KindSpec>,
    pods: Arc<KindSpec>,
    vms: Arc<KindSpec>,
    groups: Arc<KindSpec>,
}

impl Kinds {
    fn of(engine: &Engine) -> Option<Kinds> {
        Some(Kinds {
            nodes: engine.kind("v1", "Node").ok()?,
            providers: engine.kind(PLACEMENT, "ResourceProvider").ok()?,
            pods: engine.kind("v1", "Pod").ok()?,
            vms: engine.kind(COMPUTE, "VirtualMachine").ok()?,
            groups: engine.kind(COMPUTE, "ServerGroup").ok()?,
        })
    }
}

async fn list_all(engine: &Engine, kind: &KindSpec) -> ApiResult<Vec<Value>> {
    Ok(engine
        .list(kind, None, &ListOptions::default())
        .await?
        .items)
}

fn is_finished(pod: &Value) -> bool {
    matches!(
        object::str_at(pod, &["status", "phase"]).as_deref(),
        Some("Succeeded" | "Failed")
    )
}

/// A VM that is building and not yet placed (nor failed).
fn is_pending_vm(vm: &Value) -> bool {
    object::str_at(vm, &["status", "host"]).is_none_or(|h| h.is_empty())
        && object::str_at(vm, &["status", "status"]).is_none_or(|s| s == "BUILD")
        && vm.pointer("/status/fault").is_none()
        && object::deletion_timestamp(vm).is_none()
}

fn is_failed_vm(vm: &Value) -> bool {
    object::str_at(vm, &["status", "status"]).as_deref() == Some("ERROR")
}

fn is_pending(pod: &Value) -> bool {
    let unbound = object::str_at(pod, &["spec", "nodeName"]).is_none_or(|n| n.is_empty());
    let ours = object::str_at(pod, &["spec", "schedulerName"])
        .is_none_or(|n| n.is_empty() || n == SCHEDULER_NAME);
    unbound && ours && object::deletion_timestamp(pod).is_none() && !is_finished(pod)
}

/// A workload waiting for a host.
#[derive(Clone, Copy)]
enum Consumer<'a> {
    Pod(&'a Value),
    Vm(&'a Value),
}

impl<'a> Consumer<'a> {
    fn object(self) -> &'a Value {
        match self {
            Consumer::Pod(object) | Consumer::Vm(object) => object,
        }
    }
}

/// A workload decided onto a host and what it is allocated there, in ledger units.
type Binding<'a> = (Consumer<'a>, BTreeMap<String, i64>);

/// One pass; returns whether another should follow at once (a commit lost a race).
async fn pass(engine: &Engine, kinds: &Kinds, start: &mut usize) -> ApiResult<bool> {
    let nodes = list_all(engine, &kinds.nodes).await?;
    let mut providers: HashMap<String, Value> = list_all(engine, &kinds.providers)
        .await?
        .into_iter()
        .filter_map(|p| Some((object::name(&p)?.to_owned(), p)))
        .collect();
    let pods = list_all(engine, &kinds.pods).await?;
    let vms = list_all(engine, &kinds.vms).await?;
    let groups: HashMap<String, (String, Option<u32>)> = list_all(engine, &kinds.groups)
        .await?
        .iter()
        .map(|group| {
            let key = format!(
                "{}/{}",
                object::namespace(group).unwrap_or_default(),
                object::name(group).unwrap_or_default()
            );
            let policy = object::str_at(group, &["spec", "policy"]).unwrap_or_default();
            let max = group
                .pointer("/spec/maxServerPerHost")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok());
            (key, (policy, max))
        })
        .collect();
    let live: HashSet<&str> = pods
        .iter()
        .filter(|pod| !is_finished(pod))
        .chain(vms.iter().filter(|vm| !is_failed_vm(vm)))
        .filter_map(|workload| object::uid(workload))
        .collect();
    let mut again = release(engine, kinds, &mut providers, &live).await?;

    let mut hosts = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for node in &nodes {
        let Some(name) = object::name(node) else {
            continue;
        };
        if let Some(provider) = providers.get(name) {
            index.insert(name.to_owned(), hosts.len());
            hosts.push(translate::host(node, provider));
        }
    }
    for pod in pods.iter().filter(|pod| !is_finished(pod)) {
        if let Some(node) = object::str_at(pod, &["spec", "nodeName"])
            && let Some(&at) = index.get(&node)
        {
            hosts[at].placed.push(Placed {
                namespace: object::namespace(pod).unwrap_or_default().to_owned(),
                labels: object::labels(pod),
                server_group: None,
            });
        }
    }

    for vm in vms.iter().filter(|vm| !is_failed_vm(vm)) {
        if let Some(host) = object::str_at(vm, &["status", "host"])
            && let Some(&at) = index.get(&host)
        {
            let namespace = object::namespace(vm).unwrap_or_default().to_owned();
            let server_group = object::str_at(vm, &["spec", "serverGroup"])
                .map(|group| format!("{namespace}/{group}"));
            hosts[at].placed.push(Placed {
                namespace,
                labels: object::labels(vm),
                server_group,
            });
        }
    }

    let mut pending: Vec<Consumer> = pods
        .iter()
        .filter(|pod| is_pending(pod))
        .map(Consumer::Pod)
        .chain(vms.iter().filter(|vm| is_pending_vm(vm)).map(Consumer::Vm))
        .collect();
    pending.sort_by_key(|c| object::meta_str(c.object(), "creationTimestamp").unwrap_or_default());
    let config = Config::default();
    let mut pool = Snapshot::new(hosts);
    let mut bound: BTreeMap<usize, Vec<Binding>> = BTreeMap::new();
    let mut unschedulable = Vec::new();
    for consumer in pending {
        let workload = match consumer {
            Consumer::Pod(pod) => translate::pod_workload(pod),
            Consumer::Vm(vm) => translate::vm_workload(vm, &groups),
        };
        match pool.schedule(&workload, &config, *start) {
            Ok(decision) => {
                *start = decision.next_start;
                let Some(&at) = index.get(&decision.host) else {
                    continue;
                };
                if pool.place(&workload, &decision).is_err() {
                    continue;
                }
                bound
                    .entry(at)
                    .or_default()
                    .push((consumer, decision.allocation));
            }
            Err(refusal) => {
                let message = match consumer {
                    Consumer::Pod(_) => refusal.pod_message(),
                    Consumer::Vm(_) => refusal.vm_message(),
                };
                unschedulable.push((consumer, message));
            }
        }
    }
    let hosts = pool.into_hosts();

    let mut commits = Vec::with_capacity(bound.len());
    for (at, placed) in bound {
        if let Some(provider) = providers.get(&hosts[at].name) {
            commits.push(commit(engine, kinds, provider.clone(), placed));
        }
    }
    let mut results = futures::stream::iter(commits).buffer_unordered(COMMITS_IN_FLIGHT);
    while let Some(result) = results.next().await {
        again |= result?;
    }
    for (consumer, message) in unschedulable {
        match consumer {
            Consumer::Pod(pod) => mark_unschedulable(engine, kinds, pod, &message).await?,
            Consumer::Vm(vm) => fail_vm(engine, kinds, vm, &message).await?,
        }
    }
    Ok(again)
}

/// Drops the allocations of consumers that are gone or finished. Returns whether a
/// provider changed meanwhile (to be handled in the next pass).
async fn release(
    engine: &Engine,
    kinds: &Kinds,
    providers: &mut HashMap<String, Value>,
    live: &HashSet<&str>,
) -> ApiResult<bool> {
    let mut again = false;
    for provider in providers.values_mut() {
        let mut status: ResourceProviderStatus = provider
            .get("status")
            .cloned()
            .and_then(|s| serde_json::from_value(s).ok())
            .unwrap_or_default();
        let before = status.allocations.len();
        status
            .allocations
            .retain(|consumer, _| live.contains(consumer.as_str()));
        if status.allocations.len() == before {
            continue;
        }
        let mut updated = provider.clone();
        updated["status"] = serde_json::to_value(&status).unwrap_or(Value::Null);
        match engine
            .update_together(vec![(&*kinds.providers, updated)])
            .await?
        {
            Ok(mut stored) => *provider = stored.pop().unwrap_or(Value::Null),
            Err(_) => again = true,
        }
    }
    Ok(again)
}

/// Binds the pods placed on one host and records their allocations, all or none. Returns
/// whether the host or a pod changed since the pass read them.
async fn commit(
    engine: &Engine,
    kinds: &Kinds,
    mut provider: Value,
    placed: Vec<Binding<'_>>,
) -> ApiResult<bool> {
    let host = object::name(&provider).unwrap_or_default().to_owned();
    let mut status: ResourceProviderStatus = provider
        .get("status")
        .cloned()
        .and_then(|s| serde_json::from_value(s).ok())
        .unwrap_or_default();
    let now = object::now_rfc3339();
    let mut bindings = Vec::with_capacity(placed.len());
    for (consumer, allocation) in placed {
        let mut object = consumer.object().clone();
        let Some(uid) = object::uid(&object).map(str::to_owned) else {
            continue;
        };
        let (kind_name, kind) = match consumer {
            Consumer::Pod(_) => {
                object["spec"]["nodeName"] = json!(host);
                set_condition(
                    &mut object,
                    json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}),
                );
                ("Pod", &*kinds.pods)
            }
            Consumer::Vm(_) => {
                object["status"]["host"] = json!(host);
                object["status"]["taskState"] = json!("spawning");
                ("VirtualMachine", &*kinds.vms)
            }
        };
        status.allocations.insert(
            uid,
            Allocation {
                kind: kind_name.into(),
                namespace: object::namespace(&object).unwrap_or_default().to_owned(),
                name: object::name(&object).unwrap_or_default().to_owned(),
                resources: allocation
                    .iter()
                    .map(|(class, amount)| {
                        (class.clone(), translate::ledger_quantity(class, *amount))
                    })
                    .collect(),
            },
        );
        bindings.push((kind, object));
    }
    provider["status"] = serde_json::to_value(&status).unwrap_or(Value::Null);
    let mut writes = vec![(&*kinds.providers, provider)];
    writes.extend(bindings);
    Ok(engine.update_together(writes).await?.is_err())
}

/// Sets a pod's condition of the same type, keeping the others.
fn set_condition(pod: &mut Value, condition: Value) {
    let kind = condition["type"].clone();
    let status = object::ensure_object(
        object::ensure_object(pod)
            .entry("status")
            .or_insert_with(|| json!({})),
    );
    let conditions = status.entry("conditions").or_insert_with(|| json!([]));
    if let Value::Array(items) = conditions {
        items.retain(|c| c["type"] != kind);
        items.push(condition);
    }
}

/// Records why a pod fits nowhere (once per distinct reason).
async fn mark_unschedulable(
    engine: &Engine,
    kinds: &Kinds,
    pod: &Value,
    message: &str,
) -> ApiResult<()> {
    let current = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|items| items.iter().find(|c| c["type"] == "PodScheduled"));
    if current.is_some_and(|c| c["status"] == "False" && c["message"] == message) {
        return Ok(());
    }
    let mut updated = pod.clone();
    set_condition(
        &mut updated,
        json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
               "message": message, "lastProbeTime": null,
               "lastTransitionTime": object::now_rfc3339()}),
    );
    let patch = json!({"metadata": {"resourceVersion": object::resource_version(pod)},
                       "status": {"conditions": updated["status"]["conditions"]}});
    let result = engine
        .patch(
            &kinds.pods,
            object::namespace(pod),
            object::name(pod).unwrap_or_default(),
            PatchKind::Merge,
            patch,
            Target::Status,
            &WriteOptions::default(),
        )
        .await;
    match result {
        // Changed or gone meanwhile: the next pass looks again.
        Err(error) if matches!(error.code(), 404 | 409) => Ok(()),
        other => other.map(drop),
    }
}

/// A VM that fits nowhere goes to ERROR with Nova's fault.
async fn fail_vm(engine: &Engine, kinds: &Kinds, vm: &Value, message: &str) -> ApiResult<()> {
    let patch = json!({
        "metadata": {"resourceVersion": object::resource_version(vm)},
        "status": {
            "status": "ERROR",
            "vmState": "error",
            "taskState": null,
            "fault": {"code": 500, "message": message, "created": object::now_rfc3339()},
        },
    });
    let result = engine
        .patch(
            &kinds.vms,
            object::namespace(vm),
            object::name(vm).unwrap_or_default(),
            PatchKind::Merge,
            patch,
            Target::Status,
            &WriteOptions::default(),
        )
        .await;
    match result {
        Err(error) if matches!(error.code(), 404 | 409) => Ok(()),
        other => other.map(drop),
    }
}
