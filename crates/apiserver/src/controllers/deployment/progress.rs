//! A Deployment's status, without I/O: the counts summed over its ReplicaSets, and the
//! `Available` and `Progressing` conditions as kube-controller-manager keeps them, so
//! that `kubectl rollout status` sees a rollout finish (Progressing, reason
//! `NewReplicaSetAvailable`) or time out (`ProgressDeadlineExceeded`).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};

use super::rollout::{Params, Set};
use crate::kinds::apps::int_at;
use crate::object;

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";
/// The reason of a finished rollout, which `kubectl rollout status` waits for.
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
const RS_UPDATED: &str = "ReplicaSetUpdated";

fn rfc3339(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A new condition, updated and transitioned now.
pub fn condition(kind: &str, status: &str, reason: &str, message: &str, now: Timestamp) -> Value {
    let now = rfc3339(now);
    json!({"type": kind, "status": status, "lastUpdateTime": now, "lastTransitionTime": now,
        "reason": reason, "message": message})
}

pub fn get_condition<'a>(status: &'a Value, kind: &str) -> Option<&'a Value> {
    status
        .get("conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

fn field<'a>(condition: &'a Value, name: &str) -> Option<&'a str> {
    condition.get(name).and_then(Value::as_str)
}

/// `SetDeploymentCondition`: a condition of the same status and reason is left alone; one
/// of the same status keeps its transition time; the new one goes last.
pub fn set_condition(status: &mut Value, mut condition: Value) {
    let kind = field(&condition, "type").unwrap_or_default().to_owned();
    if let Some(current) = get_condition(status, &kind)
        && field(current, "status") == field(&condition, "status")
    {
        if field(current, "reason") == field(&condition, "reason") {
            return;
        }
        if let Some(at) = current.get("lastTransitionTime") {
            condition["lastTransitionTime"] = at.clone();
        }
    }
    remove_condition(status, &kind);
    let conditions = object::ensure_object(status)
        .entry("conditions")
        .or_insert_with(|| json!([]));
    if let Value::Array(items) = conditions {
        items.push(condition);
    }
}

pub fn remove_condition(status: &mut Value, kind: &str) {
    let Some(root) = status.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(items)) = root.get_mut("conditions") {
        items.retain(|c| field(c, "type") != Some(kind));
        if items.is_empty() {
            root.remove("conditions");
        }
    }
}

fn count(status: &Value, name: &str) -> i64 {
    status.get(name).and_then(Value::as_i64).unwrap_or(0)
}

/// `calculateStatus`: counts over the ReplicaSets (`updated` from the new one), the
/// generation observed, and `Available` while no more than `maxUnavailable` are missing.
pub fn calculate(
    deployment: &Value,
    all: &[Set],
    new: Option<&Set>,
    params: &Params,
    now: Timestamp,
) -> Value {
    let available: i32 = all.iter().map(|s| s.available).sum();
    let total: i32 = all.iter().map(|s| s.replicas).sum();
    let mut status = Map::new();
    let generation = int_at(deployment, &["metadata", "generation"]);
    for (name, value) in [
        ("observedGeneration", generation),
        ("replicas", all.iter().map(|s| i64::from(s.current)).sum()),
        ("updatedReplicas", new.map_or(0, |s| i64::from(s.current))),
        (
            "readyReplicas",
            all.iter().map(|s| i64::from(s.ready)).sum(),
        ),
        ("availableReplicas", i64::from(available)),
        ("unavailableReplicas", i64::from((total - available).max(0))),
    ] {
        // The Go type omits zeros.
        if value != 0 {
            status.insert(name.into(), json!(value));
        }
    }
    let old = deployment.get("status").cloned().unwrap_or(Value::Null);
    if let Some(collisions) = old.get("collisionCount") {
        status.insert("collisionCount".into(), collisions.clone());
    }
    if let Some(conditions) = old.get("conditions") {
        status.insert("conditions".into(), conditions.clone());
    }
    let mut status = Value::Object(status);
    let condition = if available >= params.replicas - params.unavailable {
        self::condition(
            AVAILABLE,
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            now,
        )
    } else {
        self::condition(
            AVAILABLE,
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            now,
        )
    };
    set_condition(&mut status, condition);
    status
}

/// `progressDeadlineSeconds`, unless unset or "never" (the largest i32).
fn progress_deadline(deployment: &Value) -> Option<i64> {
    deployment
        .pointer("/spec/progressDeadlineSeconds")
        .and_then(Value::as_i64)
        .filter(|s| *s != i64::from(i32::MAX))
}

/// `DeploymentComplete`: every replica updated and available, at the latest generation.
pub fn complete(deployment: &Value, status: &Value) -> bool {
    let replicas = int_at(deployment, &["spec", "replicas"]);
    count(status, "updatedReplicas") == replicas
        && count(status, "replicas") == replicas
        && count(status, "availableReplicas") == replicas
        && count(status, "observedGeneration") >= int_at(deployment, &["metadata", "generation"])
}

/// `DeploymentProgressing`: more updated, fewer old, more ready or more available pods
/// than the status last recorded.
fn progressing(deployment: &Value, new: &Value) -> bool {
    let old = deployment.get("status").cloned().unwrap_or(Value::Null);
    let old_old = count(&old, "replicas") - count(&old, "updatedReplicas");
    let new_old = count(new, "replicas") - count(new, "updatedReplicas");
    count(new, "updatedReplicas") > count(&old, "updatedReplicas")
        || new_old < old_old
        || count(new, "readyReplicas") > count(&old, "readyReplicas")
        || count(new, "availableReplicas") > count(&old, "availableReplicas")
}

/// When the recorded progress would time out, if it can.
fn deadline_of(condition: &Value, seconds: i64) -> Option<Timestamp> {
    let from: Timestamp = field(condition, "lastUpdateTime")?.parse().ok()?;
    from.checked_add(SignedDuration::from_secs(seconds)).ok()
}

/// `syncRolloutStatus`: the status with progress judged against the deadline, and a
/// `ReplicaFailure` copied from the ReplicaSets. Returns when to look again for a
/// rollout that is not moving (to notice its deadline passing).
pub fn rollout(
    deployment: &Value,
    all: &[Set],
    new: Option<&Set>,
    params: &Params,
    replica_failure: Option<Value>,
    now: Timestamp,
) -> (Value, Option<Duration>) {
    let mut status = calculate(deployment, all, new, params, now);
    let deadline = progress_deadline(deployment);
    if deadline.is_none() {
        remove_condition(&mut status, PROGRESSING);
    }
    let name = object::name(deployment).unwrap_or_default();
    let subject = match new {
        Some(new) => format!("ReplicaSet \"{}\"", new.name),
        None => format!("Deployment \"{name}\""),
    };
    let old_status = deployment.get("status").cloned().unwrap_or(Value::Null);
    let current = get_condition(&old_status, PROGRESSING).cloned();
    let finished = count(&status, "replicas") == count(&status, "updatedReplicas")
        && current
            .as_ref()
            .is_some_and(|c| field(c, "reason") == Some(NEW_RS_AVAILABLE));
    if let Some(seconds) = deadline
        && !finished
    {
        if complete(deployment, &status) {
            set_condition(
                &mut status,
                condition(
                    PROGRESSING,
                    "True",
                    NEW_RS_AVAILABLE,
                    &format!("{subject} has successfully progressed."),
                    now,
                ),
            );
        } else if progressing(deployment, &status) {
            let mut update = condition(
                PROGRESSING,
                "True",
                RS_UPDATED,
                &format!("{subject} is progressing."),
                now,
            );
            if let Some(current) = &current {
                if field(current, "status") == Some("True")
                    && let Some(at) = current.get("lastTransitionTime")
                {
                    update["lastTransitionTime"] = at.clone();
                }
                remove_condition(&mut status, PROGRESSING);
            }
            set_condition(&mut status, update);
        } else if let Some(current) = &current
            && field(current, "reason") != Some(NEW_RS_AVAILABLE)
            && (field(current, "reason") == Some(TIMED_OUT)
                || deadline_of(current, seconds).is_some_and(|at| at < now))
        {
            set_condition(
                &mut status,
                condition(
                    PROGRESSING,
                    "False",
                    TIMED_OUT,
                    &format!("{subject} has timed out progressing."),
                    now,
                ),
            );
        }
    }
    match replica_failure {
        Some(failure) => set_condition(&mut status, failure),
        None => remove_condition(&mut status, REPLICA_FAILURE),
    }
    let requeue = match (deadline, get_condition(&status, PROGRESSING)) {
        (Some(seconds), Some(progress))
            if !complete(deployment, &status) && field(progress, "reason") != Some(TIMED_OUT) =>
        {
            deadline_of(progress, seconds).map(|at| {
                Duration::try_from(now.duration_until(at)).unwrap_or(Duration::ZERO)
                    + Duration::from_secs(1)
            })
        }
        _ => None,
    };
    (status, requeue)
}

/// A ReplicaSet's `ReplicaFailure` as a Deployment condition (`ReplicaSetToDeploymentCondition`).
pub fn replica_failure_of(replica_set: &Value) -> Option<Value> {
    let failure = get_condition(replica_set.get("status")?, REPLICA_FAILURE)?;
    let mut condition = failure.clone();
    condition["lastUpdateTime"] = failure
        .get("lastTransitionTime")
        .cloned()
        .unwrap_or(Value::Null);
    Some(condition)
}

#[cfg(test)]
mod tests;
