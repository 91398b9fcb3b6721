//! The strategies of a rollout, as `syncDeployment` picks them: a resize or a paused
//! Deployment only scales (`sync`); RollingUpdate grows the new ReplicaSet and shrinks
//! the old ones within the surge and unavailability; Recreate empties the old ones and
//! waits for their pods to be gone before starting the new one. Each ends by writing the
//! status and, once a rollout is complete, deleting history beyond the limit.

use std::collections::HashSet;

use serde_json::Value;

use super::{Rollout, progress, rollout};
use crate::controllers::replicaset::claim;
use crate::engine::DeleteOptions;
use crate::error::ApiResult;
use crate::kinds::apps::int_at;
use crate::object;

impl Rollout<'_> {
    /// `sync`: a resize (or a paused Deployment): scale, and write the status without
    /// judging progress.
    pub(super) async fn scale_only(&mut self, paused: bool) -> ApiResult<()> {
        let new = self.sync_revision(false).await?;
        let (_, new_set, old) = self.set_views(new);
        let status_replicas =
            i32::try_from(int_at(&self.deployment, &["status", "replicas"])).unwrap_or(0);
        for (name, size) in
            rollout::proportional(&self.params, status_replicas, new_set.as_ref(), &old)
        {
            if let Some(index) = self.index_of(&name) {
                self.scale(index, size, false).await?;
            }
        }
        if paused {
            self.clean_up(new).await?;
        }
        self.sync_status(new).await
    }

    /// `syncDeploymentStatus`: counts and Available, without judging progress.
    pub(super) async fn sync_status(&mut self, new: Option<usize>) -> ApiResult<()> {
        let (all, new_set, _) = self.set_views(new);
        let status = progress::calculate(
            &self.deployment,
            &all,
            new_set.as_ref(),
            &self.params,
            self.now,
        );
        self.write_status(status).await
    }

    /// `syncRolloutStatus`: counts, Available, and Progressing judged against the deadline.
    async fn sync_rollout_status(&mut self, new: Option<usize>) -> ApiResult<()> {
        let (all, new_set, _) = self.set_views(new);
        let failure = new
            .and_then(|i| progress::replica_failure_of(&self.sets[i]))
            .or_else(|| self.sets.iter().find_map(progress::replica_failure_of));
        let (status, requeue) = progress::rollout(
            &self.deployment,
            &all,
            new_set.as_ref(),
            &self.params,
            failure,
            self.now,
        );
        if let Some(after) = requeue {
            self.requeue_after(after);
        }
        self.write_status(status).await
    }

    /// `rolloutRolling`.
    pub(super) async fn rolling(&mut self) -> ApiResult<()> {
        let Some(new) = self.sync_revision(true).await? else {
            return Ok(());
        };
        let (all, new_set, old) = self.set_views(Some(new));
        let Some(new_set) = new_set else {
            return Ok(());
        };
        // Grow (or trim) the new ReplicaSet.
        let size = if new_set.replicas > self.params.replicas {
            self.params.replicas
        } else {
            rollout::new_replicas(&self.params, &all, &new_set)
        };
        if self.scale(new, size, true).await? {
            return self.sync_rollout_status(Some(new)).await;
        }
        // Shrink the old ones.
        let mut scaled_down = false;
        for (name, size) in rollout::scale_down_old(&self.params, &new_set, &old) {
            if let Some(index) = self.index_of(&name) {
                scaled_down |= self.scale(index, size, true).await?;
            }
        }
        if scaled_down {
            return self.sync_rollout_status(Some(new)).await;
        }
        if progress::complete(&self.deployment, &self.status()) {
            self.clean_up(Some(new)).await?;
        }
        self.sync_rollout_status(Some(new)).await
    }

    /// `rolloutRecreate`: old ReplicaSets to zero, wait for their pods to be gone, then
    /// the new one to full size.
    pub(super) async fn recreate(&mut self, pods: &[Value]) -> ApiResult<()> {
        let mut new = self.sync_revision(false).await?;
        let mut scaled_down = false;
        for index in self.old_indices(new) {
            if int_at(&self.sets[index], &["spec", "replicas"]) > 0 {
                scaled_down |= self.scale(index, 0, true).await?;
            }
        }
        if scaled_down || self.old_pods_running(new, pods) {
            return self.sync_rollout_status(new).await;
        }
        if new.is_none() {
            new = self.sync_revision(true).await?;
        }
        if let Some(index) = new {
            self.scale(index, self.params.replicas, true).await?;
        }
        if progress::complete(&self.deployment, &self.status()) {
            self.clean_up(new).await?;
        }
        self.sync_rollout_status(new).await
    }

    /// `oldPodsRunning`: an old ReplicaSet still counts pods, or a pod of one has not
    /// finished (terminating ones included).
    fn old_pods_running(&self, new: Option<usize>, pods: &[Value]) -> bool {
        let old = self.old_indices(new);
        if old
            .iter()
            .any(|i| int_at(&self.sets[*i], &["status", "replicas"]) > 0)
        {
            return true;
        }
        let old_uids: HashSet<&str> = old
            .iter()
            .filter_map(|i| object::uid(&self.sets[*i]))
            .collect();
        pods.iter().any(|pod| {
            claim::controller_uid(pod).is_some_and(|uid| old_uids.contains(uid))
                && !matches!(
                    pod.pointer("/status/phase").and_then(Value::as_str),
                    Some("Succeeded" | "Failed")
                )
        })
    }

    /// `cleanupDeployment`: deletes old ReplicaSets beyond `revisionHistoryLimit`.
    async fn clean_up(&mut self, new: Option<usize>) -> ApiResult<()> {
        let Some(limit) = self
            .deployment
            .pointer("/spec/revisionHistoryLimit")
            .and_then(Value::as_i64)
            .filter(|l| *l != i64::from(i32::MAX))
        else {
            return Ok(());
        };
        let old: Vec<&Value> = self
            .old_indices(new)
            .into_iter()
            .map(|i| &self.sets[i])
            .collect();
        let doomed: Vec<(String, String)> = rollout::to_clean_up(&old, limit)
            .into_iter()
            .map(|rs| {
                (
                    object::name(rs).unwrap_or_default().to_owned(),
                    object::uid(rs).unwrap_or_default().to_owned(),
                )
            })
            .collect();
        for (name, uid) in doomed {
            tracing::info!(
                deployment = self.name(),
                replicaset = name,
                "deleting an old replicaset"
            );
            let options = DeleteOptions {
                precondition_uid: Some(uid),
                ..DeleteOptions::default()
            };
            match self
                .engine
                .delete(&self.kinds.replica_sets, self.namespace(), &name, &options)
                .await
            {
                Ok(_) => {}
                Err(error) if error.code() == 404 => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}
