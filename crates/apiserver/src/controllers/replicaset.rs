//! The ReplicaSet controller: keeps `spec.replicas` pods of each ReplicaSet's template in
//! existence. A pass lists ReplicaSets and pods; for each ReplicaSet it claims the active
//! pods its selector matches (adopting orphans, releasing pods that stopped matching,
//! `claim.rs`), creates the missing pods in batches that double while they succeed (so a
//! quota stops it after one failure, not five hundred), or deletes the surplus in
//! kube-controller-manager's order (`pods.rs`), then writes the status (`status.rs`).
//! A deleted pod is simply missing at the next pass, and replaced.

pub(super) mod claim;
pub(super) mod pods;
mod status;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use ronghe_api_types::selector::LabelSelector;
use serde_json::Value;
use tokio::sync::{Notify, watch};

use self::claim::Claim;
use self::status::Failure;
use crate::engine::{DeleteOptions, Engine, ListOptions, Target, WriteOptions};
use crate::error::ApiResult;
use crate::kinds::apps::{int_at, selector_of};
use crate::object;
use crate::registry::KindSpec;

/// How often a pass runs without a wake-up.
const RESYNC: Duration = Duration::from_secs(10);
/// At most this many pods are created or deleted for one ReplicaSet in one pass.
const BURST_REPLICAS: usize = 500;
/// How soon creating or deleting pods is tried again after it failed.
const FAILURE_RETRY: Duration = Duration::from_secs(2);

pub(super) async fn run(engine: Engine, wake: Arc<Notify>, stop: watch::Receiver<bool>) {
    let Some(kinds) = Kinds::of(&engine) else {
        return;
    };
    super::run_requeuing("replicaset", wake, stop, RESYNC, || {
        Box::pin(pass(&engine, &kinds, Timestamp::now()))
    })
    .await;
}

struct Kinds {
    replica_sets: Arc<KindSpec>,
    pods: Arc<KindSpec>,
}

impl Kinds {
    fn of(engine: &Engine) -> Option<Kinds> {
        Some(Kinds {
            replica_sets: engine.kind("apps/v1", "ReplicaSet").ok()?,
            pods: engine.kind("v1", "Pod").ok()?,
        })
    }
}

/// One pass over every ReplicaSet; returns when the next is wanted, if sooner than the
/// resync (a ready pod becomes available after `minReadySeconds`, or a write failed).
async fn pass(engine: &Engine, kinds: &Kinds, now: Timestamp) -> ApiResult<Option<Duration>> {
    let replica_sets = engine
        .list(&kinds.replica_sets, None, &ListOptions::default())
        .await?
        .items;
    if replica_sets.is_empty() {
        return Ok(None);
    }
    let mut pods_by_namespace: HashMap<String, Vec<Value>> = HashMap::new();
    for pod in engine
        .list(&kinds.pods, None, &ListOptions::default())
        .await?
        .items
    {
        let namespace = object::namespace(&pod).unwrap_or_default().to_owned();
        pods_by_namespace.entry(namespace).or_default().push(pod);
    }
    let mut requeue: Option<Duration> = None;
    for replica_set in &replica_sets {
        let namespace = object::namespace(replica_set).unwrap_or_default();
        let pods = pods_by_namespace
            .get(namespace)
            .map_or(&[][..], Vec::as_slice);
        let wanted = match sync(engine, kinds, replica_set, pods, now).await {
            Ok(wanted) => wanted,
            Err(error) => {
                tracing::warn!(%error, namespace, name = object::name(replica_set), "syncing a replicaset failed");
                Some(Duration::from_secs(1))
            }
        };
        if let Some(wanted) = wanted {
            requeue = Some(requeue.map_or(wanted, |r| r.min(wanted)));
        }
    }
    Ok(requeue)
}

/// Brings one ReplicaSet's pods to its desired count and records its status.
async fn sync(
    engine: &Engine,
    kinds: &Kinds,
    replica_set: &Value,
    pods: &[Value],
    now: Timestamp,
) -> ApiResult<Option<Duration>> {
    let Some(Ok(selector)) = selector_of(replica_set) else {
        // Validation keeps selectors present and valid; a stored bad one selects nothing.
        return Ok(None);
    };
    let mut owned = claim_pods(engine, kinds, replica_set, &selector, pods).await?;
    let mut failure = None;
    if object::deletion_timestamp(replica_set).is_none() {
        let desired = usize::try_from(int_at(replica_set, &["spec", "replicas"])).unwrap_or(0);
        if owned.len() < desired {
            let missing = (desired - owned.len()).min(BURST_REPLICAS);
            failure = create_pods(engine, kinds, replica_set, missing, &mut owned).await;
        } else if owned.len() > desired {
            let surplus = (owned.len() - desired).min(BURST_REPLICAS);
            failure = delete_pods(engine, kinds, surplus, &mut owned).await;
        }
    }
    let owned_refs: Vec<&Value> = owned.iter().collect();
    let (status, requeue) = status::compute(replica_set, &owned_refs, failure.as_ref(), now);
    if replica_set.get("status") != Some(&status) {
        write_status(engine, kinds, replica_set, status).await?;
    }
    // A refusal (a quota, say) can end without any change to pods or ReplicaSets.
    let retry = failure.map(|_| FAILURE_RETRY);
    Ok(match (requeue, retry) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

/// The active pods the ReplicaSet controls after adopting and releasing.
async fn claim_pods(
    engine: &Engine,
    kinds: &Kinds,
    replica_set: &Value,
    selector: &LabelSelector,
    pods: &[Value],
) -> ApiResult<Vec<Value>> {
    let mut owned = Vec::new();
    // Whether a fresh read confirms the ReplicaSet is still there and staying, asked once
    // and only if there is something to adopt.
    let mut may_adopt: Option<bool> = None;
    for pod in pods.iter().filter(|pod| pods::is_active(pod)) {
        match claim::claim(replica_set, selector, pod) {
            Claim::Owned => owned.push(pod.clone()),
            Claim::Adopt => {
                if may_adopt.is_none() {
                    may_adopt = Some(still_there(engine, &kinds.replica_sets, replica_set).await?);
                }
                if may_adopt == Some(true)
                    && let Some(adopted) =
                        claim::adopt(engine, &kinds.pods, replica_set, selector, pod).await?
                {
                    tracing::info!(
                        pod = object::name(pod),
                        replicaset = object::name(replica_set),
                        "adopted an orphan pod"
                    );
                    owned.push(adopted);
                }
            }
            Claim::Release => claim::release(engine, &kinds.pods, replica_set, pod).await?,
            Claim::Ignore => {}
        }
    }
    Ok(owned)
}

/// Whether `owner` still exists with the same uid and is not being deleted.
pub(super) async fn still_there(
    engine: &Engine,
    kind: &KindSpec,
    owner: &Value,
) -> ApiResult<bool> {
    match engine
        .get(
            kind,
            object::namespace(owner),
            object::name(owner).unwrap_or_default(),
        )
        .await
    {
        Ok(fresh) => Ok(object::uid(&fresh) == object::uid(owner)
            && object::deletion_timestamp(&fresh).is_none()),
        Err(error) if error.code() == 404 => Ok(false),
        Err(error) => Err(error),
    }
}

/// Creates up to `missing` pods in batches of 1, 2, 4, ... (kube-controller-manager's slow
/// start), stopping at the first batch with a failure, which is returned.
async fn create_pods(
    engine: &Engine,
    kinds: &Kinds,
    replica_set: &Value,
    missing: usize,
    owned: &mut Vec<Value>,
) -> Option<Failure> {
    let namespace = object::namespace(replica_set);
    let options = WriteOptions::default();
    let mut remaining = missing;
    let mut batch = 1;
    while remaining > 0 {
        let size = batch.min(remaining);
        let creates = (0..size).map(|_| {
            engine.create(
                &kinds.pods,
                namespace,
                pods::from_template(replica_set),
                &options,
            )
        });
        let mut failure = None;
        for result in futures::future::join_all(creates).await {
            match result {
                Ok(written) => owned.push(written.object),
                Err(error) => {
                    tracing::info!(replicaset = object::name(replica_set), %error, "creating a pod failed");
                    failure = Some(Failure {
                        reason: "FailedCreate",
                        message: error.status.message.clone(),
                    });
                }
            }
        }
        if failure.is_some() {
            return failure;
        }
        remaining -= size;
        batch *= 2;
    }
    None
}

/// Deletes the `surplus` pods that matter least; returns the last failure, if any.
async fn delete_pods(
    engine: &Engine,
    kinds: &Kinds,
    surplus: usize,
    owned: &mut Vec<Value>,
) -> Option<Failure> {
    let doomed: Vec<(String, String, String)> = {
        let refs: Vec<&Value> = owned.iter().collect();
        pods::to_delete(&refs, surplus)
            .into_iter()
            .map(|pod| {
                (
                    object::namespace(pod).unwrap_or_default().to_owned(),
                    object::name(pod).unwrap_or_default().to_owned(),
                    object::uid(pod).unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let mut failure = None;
    for (namespace, name, uid) in doomed {
        let options = DeleteOptions {
            precondition_uid: Some(uid.clone()),
            ..DeleteOptions::default()
        };
        match engine
            .delete(&kinds.pods, Some(&namespace), &name, &options)
            .await
        {
            Ok(_) => {}
            Err(error) if error.code() == 404 => {}
            Err(error) => {
                tracing::info!(pod = name, %error, "deleting a pod failed");
                failure = Some(Failure {
                    reason: "FailedDelete",
                    message: error.status.message.clone(),
                });
                continue;
            }
        }
        // Gone, or terminating: either way no longer one of the active pods.
        owned.retain(|pod| object::uid(pod) != Some(uid.as_str()));
    }
    failure
}

async fn write_status(
    engine: &Engine,
    kinds: &Kinds,
    replica_set: &Value,
    status: Value,
) -> ApiResult<()> {
    let result = engine
        .update_with(
            &kinds.replica_sets,
            object::namespace(replica_set),
            object::name(replica_set).unwrap_or_default(),
            None,
            Target::Status,
            &WriteOptions::default(),
            |current| {
                let mut next = current.clone();
                if object::uid(current) == object::uid(replica_set) {
                    object::ensure_object(&mut next).insert("status".into(), status.clone());
                }
                Ok(next)
            },
        )
        .await;
    match result {
        Err(error) if error.code() != 404 => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
pub(super) mod tests;
