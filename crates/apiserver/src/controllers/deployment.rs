//! The Deployment controller: runs each Deployment's pod template through ReplicaSets
//! named `<deployment>-<pod-template-hash>`, one per template revision. A pass lists
//! Deployments, ReplicaSets (and pods, for Recreate); for each Deployment it claims the
//! ReplicaSets its selector matches, then follows kube-controller-manager's `syncDeployment`:
//! a resize is shared among the ReplicaSets in proportion; a new template gets a new
//! ReplicaSet, grown within `maxSurge` while old ones shrink within `maxUnavailable`
//! (RollingUpdate), or after the old pods are all gone (Recreate); old ReplicaSets beyond
//! `revisionHistoryLimit` are deleted; and the status counts and conditions are written.
//! The strategies are in `strategy.rs`, their arithmetic in `rollout.rs`, the ReplicaSets
//! as values in `template.rs`, the status in `progress.rs`; this file reads and writes.

mod progress;
mod rollout;
mod strategy;
mod template;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use ronghe_api_types::selector::LabelSelector;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use self::rollout::{Params, Set};
use super::replicaset::claim::{self, Claim};
use crate::engine::{Engine, ListOptions, Target, WriteOptions};
use crate::error::ApiResult;
use crate::kinds::apps::{REVISION_ANNOTATION, int_at, selector_of};
use crate::object;
use crate::registry::KindSpec;

/// How often a pass runs without a wake-up.
const RESYNC: Duration = Duration::from_secs(10);

pub(super) async fn run(engine: Engine, wake: Arc<Notify>, stop: watch::Receiver<bool>) {
    let Some(kinds) = Kinds::of(&engine) else {
        return;
    };
    super::run_requeuing("deployment", wake, stop, RESYNC, || {
        Box::pin(pass(&engine, &kinds, Timestamp::now()))
    })
    .await;
}

struct Kinds {
    deployments: Arc<KindSpec>,
    replica_sets: Arc<KindSpec>,
    pods: Arc<KindSpec>,
}

impl Kinds {
    fn of(engine: &Engine) -> Option<Kinds> {
        Some(Kinds {
            deployments: engine.kind("apps/v1", "Deployment").ok()?,
            replica_sets: engine.kind("apps/v1", "ReplicaSet").ok()?,
            pods: engine.kind("v1", "Pod").ok()?,
        })
    }
}

fn by_namespace(objects: Vec<Value>) -> HashMap<String, Vec<Value>> {
    let mut map: HashMap<String, Vec<Value>> = HashMap::new();
    for object in objects {
        let namespace = object::namespace(&object).unwrap_or_default().to_owned();
        map.entry(namespace).or_default().push(object);
    }
    map
}

fn is_recreate(deployment: &Value) -> bool {
    deployment
        .pointer("/spec/strategy/type")
        .and_then(Value::as_str)
        == Some("Recreate")
}

/// One pass over every Deployment; returns when the next is wanted, if sooner than the
/// resync.
async fn pass(engine: &Engine, kinds: &Kinds, now: Timestamp) -> ApiResult<Option<Duration>> {
    let all = ListOptions::default();
    let deployments = engine.list(&kinds.deployments, None, &all).await?.items;
    if deployments.is_empty() {
        return Ok(None);
    }
    let replica_sets = by_namespace(engine.list(&kinds.replica_sets, None, &all).await?.items);
    // Pods matter only to Recreate, which waits for the old ones to be gone.
    let pods = if deployments.iter().any(is_recreate) {
        by_namespace(engine.list(&kinds.pods, None, &all).await?.items)
    } else {
        HashMap::new()
    };
    let mut requeue: Option<Duration> = None;
    for deployment in deployments {
        let namespace = object::namespace(&deployment)
            .unwrap_or_default()
            .to_owned();
        let name = object::name(&deployment).unwrap_or_default().to_owned();
        let sets = replica_sets.get(&namespace).map_or(&[][..], Vec::as_slice);
        let pods = pods.get(&namespace).map_or(&[][..], Vec::as_slice);
        let wanted = match sync(engine, kinds, deployment, sets, pods, now).await {
            Ok(wanted) => wanted,
            Err(error) => {
                tracing::warn!(%error, namespace, name, "syncing a deployment failed");
                Some(Duration::from_secs(1))
            }
        };
        if let Some(wanted) = wanted {
            requeue = Some(requeue.map_or(wanted, |r| r.min(wanted)));
        }
    }
    Ok(requeue)
}

/// `syncDeployment` for one Deployment.
async fn sync(
    engine: &Engine,
    kinds: &Kinds,
    deployment: Value,
    replica_sets: &[Value],
    pods: &[Value],
    now: Timestamp,
) -> ApiResult<Option<Duration>> {
    let Some(Ok(selector)) = selector_of(&deployment) else {
        return Ok(None);
    };
    if selector.is_empty() {
        // Validation refuses a selector that selects everything; never act on one.
        return Ok(None);
    }
    let sets = claim_replica_sets(engine, kinds, &deployment, &selector, replica_sets).await?;
    let mut rollout = Rollout {
        engine,
        kinds,
        params: Params::of(&deployment),
        deployment,
        sets,
        now,
        requeue: None,
    };
    if object::deletion_timestamp(&rollout.deployment).is_some() {
        let new = rollout.sync_revision(false).await?;
        rollout.sync_status(new).await?;
        return Ok(rollout.requeue);
    }
    rollout.paused_conditions().await?;
    let paused = rollout.deployment.pointer("/spec/paused") == Some(&json!(true));
    if paused || rollout.is_scaling_event().await? {
        rollout.scale_only(paused).await?;
        return Ok(rollout.requeue);
    }
    if is_recreate(&rollout.deployment) {
        rollout.recreate(pods).await?;
    } else {
        rollout.rolling().await?;
    }
    Ok(rollout.requeue)
}

/// The ReplicaSets the Deployment controls after adopting and releasing.
async fn claim_replica_sets(
    engine: &Engine,
    kinds: &Kinds,
    deployment: &Value,
    selector: &LabelSelector,
    replica_sets: &[Value],
) -> ApiResult<Vec<Value>> {
    let mut owned = Vec::new();
    let mut may_adopt: Option<bool> = None;
    for rs in replica_sets {
        match claim::claim(deployment, selector, rs) {
            Claim::Owned => owned.push(rs.clone()),
            Claim::Adopt => {
                if may_adopt.is_none() {
                    may_adopt = Some(
                        super::replicaset::still_there(engine, &kinds.deployments, deployment)
                            .await?,
                    );
                }
                if may_adopt == Some(true)
                    && let Some(adopted) =
                        claim::adopt(engine, &kinds.replica_sets, deployment, selector, rs).await?
                {
                    owned.push(adopted);
                }
            }
            Claim::Release => claim::release(engine, &kinds.replica_sets, deployment, rs).await?,
            Claim::Ignore => {}
        }
    }
    Ok(owned)
}

/// One Deployment being synced: its latest copy and its ReplicaSets', refreshed after
/// every write.
struct Rollout<'a> {
    engine: &'a Engine,
    kinds: &'a Kinds,
    deployment: Value,
    sets: Vec<Value>,
    params: Params,
    now: Timestamp,
    /// When to look again, if sooner than the resync.
    requeue: Option<Duration>,
}

impl Rollout<'_> {
    fn requeue_after(&mut self, after: Duration) {
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }

    fn namespace(&self) -> Option<&str> {
        object::namespace(&self.deployment)
    }

    fn name(&self) -> &str {
        object::name(&self.deployment).unwrap_or_default()
    }

    fn has_progress_deadline(&self) -> bool {
        self.deployment
            .pointer("/spec/progressDeadlineSeconds")
            .and_then(Value::as_i64)
            .is_some_and(|s| s != i64::from(i32::MAX))
    }

    fn status(&self) -> Value {
        self.deployment
            .get("status")
            .cloned()
            .unwrap_or_else(|| json!({}))
    }

    /// The index of the ReplicaSet running the current template, if there is one.
    fn new_index(&self) -> Option<usize> {
        let refs: Vec<&Value> = self.sets.iter().collect();
        let new = template::find_new(&self.deployment, &refs)?;
        self.sets
            .iter()
            .position(|rs| object::uid(rs) == object::uid(new))
    }

    fn old_indices(&self, new: Option<usize>) -> Vec<usize> {
        (0..self.sets.len()).filter(|i| Some(*i) != new).collect()
    }

    fn set_views(&self, new: Option<usize>) -> (Vec<Set>, Option<Set>, Vec<Set>) {
        let all: Vec<Set> = self.sets.iter().map(Set::of).collect();
        let new_set = new.map(|i| all[i].clone());
        let old = self
            .old_indices(new)
            .into_iter()
            .map(|i| all[i].clone())
            .collect();
        (all, new_set, old)
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.sets
            .iter()
            .position(|rs| object::name(rs) == Some(name))
    }

    /// `getAllReplicaSetsAndSyncRevision`: finds (or, with `create`, makes) the ReplicaSet
    /// of the current template, brings its annotations up to date and records its revision
    /// on the Deployment.
    async fn sync_revision(&mut self, create: bool) -> ApiResult<Option<usize>> {
        let new = self.new_index();
        let max_old_revision = self
            .old_indices(new)
            .into_iter()
            .map(|i| rollout::revision(&self.sets[i]))
            .max()
            .unwrap_or(0);
        let new_revision = max_old_revision + 1;
        if let Some(index) = new {
            let rs = &self.sets[index];
            let mut annotations = template::annotations(rs);
            let changed = template::sync_new_annotations(
                &self.deployment,
                &mut annotations,
                new_revision,
                true,
                &self.params,
            );
            let min_ready = self.deployment.pointer("/spec/minReadySeconds").cloned();
            let min_ready_changed = int_at(rs, &["spec", "minReadySeconds"])
                != int_at(&self.deployment, &["spec", "minReadySeconds"]);
            if changed || min_ready_changed {
                let updated = self
                    .update_replica_set(index, |rs| {
                        object::metadata_mut(rs)
                            .insert("annotations".into(), Value::Object(annotations.clone()));
                        if let Some(spec) = rs.get_mut("spec").and_then(Value::as_object_mut) {
                            match &min_ready {
                                Some(value) => spec.insert("minReadySeconds".into(), value.clone()),
                                None => spec.remove("minReadySeconds"),
                            };
                        }
                    })
                    .await?;
                self.sets[index] = updated;
            }
            let revision = template::annotations(&self.sets[index])
                .get(REVISION_ANNOTATION)
                .and_then(Value::as_str)
                .map(str::to_owned);
            if let Some(revision) = revision {
                self.record_revision(&revision).await?;
            }
            if self.has_progress_deadline()
                && progress::get_condition(&self.status(), progress::PROGRESSING).is_none()
            {
                let name = object::name(&self.sets[index])
                    .unwrap_or_default()
                    .to_owned();
                let mut status = self.status();
                progress::set_condition(
                    &mut status,
                    progress::condition(
                        progress::PROGRESSING,
                        "True",
                        progress::FOUND_NEW_RS,
                        &format!("Found new replica set \"{name}\""),
                        self.now,
                    ),
                );
                self.write_status(status).await?;
            }
            return Ok(Some(index));
        }
        if !create {
            return Ok(None);
        }
        self.create_new(new_revision).await
    }

    /// Creates the ReplicaSet of the current template, sized as far as the strategy lets
    /// it start.
    async fn create_new(&mut self, new_revision: i64) -> ApiResult<Option<usize>> {
        let collisions = self.status().get("collisionCount").and_then(Value::as_i64);
        let template = self
            .deployment
            .pointer("/spec/template")
            .cloned()
            .unwrap_or(Value::Null);
        let hash = template::hash(&template, collisions);
        let (all, _, _) = self.set_views(None);
        let empty = Set {
            name: String::new(),
            created: None,
            replicas: 0,
            current: 0,
            ready: 0,
            available: 0,
            desired_annotation: None,
            max_annotation: None,
        };
        let replicas = rollout::new_replicas(&self.params, &all, &empty);
        let mut annotations = serde_json::Map::new();
        template::sync_new_annotations(
            &self.deployment,
            &mut annotations,
            new_revision,
            false,
            &self.params,
        );
        let body = template::new_replica_set(&self.deployment, &hash, replicas, annotations);
        let rs_name = object::name(&body).unwrap_or_default().to_owned();
        let created = self
            .engine
            .create(
                &self.kinds.replica_sets,
                self.namespace(),
                body,
                &WriteOptions::default(),
            )
            .await;
        let index = match created {
            Ok(written) => {
                tracing::info!(
                    deployment = self.name(),
                    replicaset = rs_name,
                    replicas,
                    "created a replicaset"
                );
                self.sets.push(written.object);
                if self.has_progress_deadline() {
                    let mut status = self.status();
                    progress::set_condition(
                        &mut status,
                        progress::condition(
                            progress::PROGRESSING,
                            "True",
                            progress::NEW_RS_CREATED,
                            &format!("Created new replica set \"{rs_name}\""),
                            self.now,
                        ),
                    );
                    self.write_status(status).await?;
                }
                self.sets.len() - 1
            }
            Err(error) if error.code() == 409 => {
                let existing = self
                    .engine
                    .get(&self.kinds.replica_sets, self.namespace(), &rs_name)
                    .await?;
                let ours = claim::controller_uid(&existing) == object::uid(&self.deployment)
                    && template::equal_ignore_hash(
                        existing.pointer("/spec/template"),
                        Some(&template),
                    );
                if !ours {
                    // Another object holds the name: hash again with one more collision.
                    let mut status = self.status();
                    status["collisionCount"] = json!(collisions.unwrap_or(0) + 1);
                    self.write_status(status).await?;
                    self.requeue_after(Duration::ZERO);
                    return Ok(None);
                }
                match self.index_of(&rs_name) {
                    Some(index) => index,
                    None => {
                        self.sets.push(existing);
                        self.sets.len() - 1
                    }
                }
            }
            Err(error) => {
                if self.has_progress_deadline() {
                    let mut status = self.status();
                    progress::set_condition(
                        &mut status,
                        progress::condition(
                            progress::PROGRESSING,
                            "False",
                            "ReplicaSetCreateError",
                            &format!(
                                "Failed to create new replica set \"{rs_name}\": {}",
                                error.status.message
                            ),
                            self.now,
                        ),
                    );
                    self.write_status(status).await?;
                }
                return Err(error);
            }
        };
        self.record_revision(&new_revision.to_string()).await?;
        Ok(Some(index))
    }

    /// Sets `deployment.kubernetes.io/revision` on the Deployment.
    async fn record_revision(&mut self, revision: &str) -> ApiResult<()> {
        if template::annotations(&self.deployment)
            .get(REVISION_ANNOTATION)
            .and_then(Value::as_str)
            == Some(revision)
        {
            return Ok(());
        }
        let uid = object::uid(&self.deployment).map(str::to_owned);
        let written = self
            .engine
            .update_with(
                &self.kinds.deployments,
                self.namespace(),
                self.name(),
                None,
                Target::Main,
                &WriteOptions::default(),
                |current| {
                    let mut next = current.clone();
                    if object::uid(current).map(str::to_owned) == uid {
                        let metadata = object::metadata_mut(&mut next);
                        let annotations = object::ensure_object(
                            metadata.entry("annotations").or_insert_with(|| json!({})),
                        );
                        annotations.insert(REVISION_ANNOTATION.into(), json!(revision));
                    }
                    Ok(next)
                },
            )
            .await?;
        self.refresh_deployment(written.object);
        Ok(())
    }

    /// Takes a freshly written copy of the Deployment, keeping the generation this sync
    /// works from (a newer spec is the next sync's business).
    fn refresh_deployment(&mut self, mut written: Value) {
        let generation = object::metadata(&self.deployment)
            .and_then(|m| m.get("generation"))
            .cloned();
        let spec = self.deployment.get("spec").cloned();
        if let Some(generation) = generation {
            object::metadata_mut(&mut written).insert("generation".into(), generation);
        }
        if let Some(spec) = spec {
            object::ensure_object(&mut written).insert("spec".into(), spec);
        }
        self.deployment = written;
    }

    /// Writes the Deployment's status if it changed.
    async fn write_status(&mut self, status: Value) -> ApiResult<()> {
        if self.deployment.get("status") == Some(&status) {
            return Ok(());
        }
        let uid = object::uid(&self.deployment).map(str::to_owned);
        let written = self
            .engine
            .update_with(
                &self.kinds.deployments,
                self.namespace(),
                self.name(),
                None,
                Target::Status,
                &WriteOptions::default(),
                |current| {
                    let mut next = current.clone();
                    if object::uid(current).map(str::to_owned) == uid {
                        object::ensure_object(&mut next).insert("status".into(), status.clone());
                    }
                    Ok(next)
                },
            )
            .await?;
        self.refresh_deployment(written.object);
        Ok(())
    }

    /// Changes one ReplicaSet, only if it is still as this sync read it (a stale decision
    /// fails with a conflict, and the next pass decides again).
    async fn update_replica_set(
        &self,
        index: usize,
        change: impl Fn(&mut Value),
    ) -> ApiResult<Value> {
        let rs = &self.sets[index];
        let name = object::name(rs).unwrap_or_default();
        let precondition = object::resource_version(rs).and_then(|rv| rv.parse().ok());
        let written = self
            .engine
            .update_with(
                &self.kinds.replica_sets,
                object::namespace(rs),
                name,
                precondition,
                Target::Main,
                &WriteOptions::default(),
                |current| {
                    let mut next = current.clone();
                    change(&mut next);
                    Ok(next)
                },
            )
            .await?;
        Ok(written.object)
    }

    /// `scaleReplicaSet`: sets a ReplicaSet's size and its size annotations; with
    /// `only_if_resized`, does nothing when the size is right already. Returns whether the
    /// size changed.
    async fn scale(&mut self, index: usize, size: i32, only_if_resized: bool) -> ApiResult<bool> {
        let rs = &self.sets[index];
        let resized = int_at(rs, &["spec", "replicas"]) != i64::from(size);
        if only_if_resized && !resized {
            return Ok(false);
        }
        let mut annotations = template::annotations(rs);
        let annotated = template::set_size_annotations(&mut annotations, &self.params);
        if !resized && !annotated {
            return Ok(false);
        }
        let from = int_at(rs, &["spec", "replicas"]);
        let updated = self
            .update_replica_set(index, |rs| {
                object::metadata_mut(rs)
                    .insert("annotations".into(), Value::Object(annotations.clone()));
                if let Some(spec) = rs.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.insert("replicas".into(), json!(size));
                }
            })
            .await?;
        if resized {
            tracing::info!(
                deployment = self.name(),
                replicaset = object::name(&updated),
                from,
                to = size,
                "scaled a replicaset"
            );
        }
        self.sets[index] = updated;
        Ok(resized)
    }

    /// `isScalingEvent`: some active ReplicaSet was sized for another replica count.
    async fn is_scaling_event(&mut self) -> ApiResult<bool> {
        let new = self.sync_revision(false).await?;
        let (all, _, _) = self.set_views(new);
        Ok(rollout::is_scaling_event(&self.params, &all))
    }

    /// `checkPausedConditions`: Progressing is Unknown while paused.
    async fn paused_conditions(&mut self) -> ApiResult<()> {
        if !self.has_progress_deadline() {
            return Ok(());
        }
        let paused = self.deployment.pointer("/spec/paused") == Some(&json!(true));
        let status = self.status();
        let reason = progress::get_condition(&status, progress::PROGRESSING)
            .and_then(|c| c.get("reason"))
            .and_then(Value::as_str);
        let condition = match (paused, reason) {
            (true, reason) if reason != Some("DeploymentPaused") => {
                ("DeploymentPaused", "Deployment is paused")
            }
            (false, Some("DeploymentPaused")) => ("DeploymentResumed", "Deployment is resumed"),
            _ => return Ok(()),
        };
        let mut status = status;
        progress::set_condition(
            &mut status,
            progress::condition(
                progress::PROGRESSING,
                "Unknown",
                condition.0,
                condition.1,
                self.now,
            ),
        );
        self.write_status(status).await
    }
}

#[cfg(test)]
mod tests;
