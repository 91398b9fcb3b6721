//! The node-lifecycle controller: a node whose agent stopped renewing its Lease (in
//! `kube-node-lease`) for longer than the grace period is marked not ready (Ready=Unknown,
//! as kube-controller-manager does) and tainted `node.kubernetes.io/unreachable:NoSchedule`,
//! so the scheduler places nothing more there; when the lease is renewed again both go.
//!
//! The controller looks again when the first of the fresh leases would run out (and at
//! least every [`PERIOD`]), so a silent node is marked right when its grace ends, not up to
//! a period later: what load-balancer and router failover wait for.
//!
//! Evicting the workloads of an unreachable node (the `NoExecute` taint) is not done yet.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use super::pause;
use crate::engine::{Engine, ListOptions, PatchKind, Target, WriteOptions};
use crate::error::ApiResult;
use crate::object;

/// How long a node may stay silent (kube-controller-manager's node-monitor-grace-period).
pub const GRACE: Duration = Duration::from_secs(40);
/// How often leases are checked at least (kube-controller-manager's node-monitor-period).
const PERIOD: Duration = Duration::from_secs(5);
/// How long after a lease runs out it is checked: renewals are written with microseconds,
/// so a check exactly at the deadline could still find it fresh.
const PAST_DEADLINE: Duration = Duration::from_millis(20);
/// The taint of a node whose agent is silent.
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// The reason of the Ready condition this controller sets.
const REASON: &str = "NodeStatusUnknown";

pub(super) async fn run(engine: Engine, grace: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        let next = match pass(&engine, grace).await {
            Ok(Some(expiry)) => (expiry + PAST_DEADLINE).min(PERIOD),
            Ok(None) => PERIOD,
            Err(error) => {
                tracing::warn!(%error, "checking node leases failed");
                PERIOD
            }
        };
        if pause(&mut stop, next).await {
            return;
        }
    }
}

/// Marks silent nodes and unmarks renewed ones; returns how long until the first node now
/// counted alive (or young) would be silent.
async fn pass(engine: &Engine, grace: Duration) -> ApiResult<Option<Duration>> {
    let nodes_kind = engine.kind("v1", "Node")?;
    let leases_kind = engine.kind("coordination.k8s.io/v1", "Lease")?;
    let nodes = engine
        .list(&nodes_kind, None, &ListOptions::default())
        .await?;
    let leases = engine
        .list(
            &leases_kind,
            Some("kube-node-lease"),
            &ListOptions::default(),
        )
        .await?;
    let now = jiff::Timestamp::now();
    let mut first_expiry: Option<Duration> = None;
    for node in &nodes.items {
        let Some(name) = object::name(node) else {
            continue;
        };
        let lease = leases.items.iter().find(|l| object::name(l) == Some(name));
        let renewed = lease.and_then(|lease| timestamp(lease.pointer("/spec/renewTime")));
        // A node registered moments ago may not have renewed yet: judge it by its age.
        let created = timestamp(node.pointer("/metadata/creationTimestamp"));
        let left =
            |since: Option<jiff::Timestamp>| since.and_then(|since| remaining(since, now, grace));
        let (alive, young) = (left(renewed), left(created));
        if let Some(left) = alive.max(young) {
            first_expiry = Some(first_expiry.map_or(left, |first| first.min(left)));
        }
        let (alive, young) = (alive.is_some(), young.is_some());
        let marked = has_taint(node);
        if !alive && !young && !marked {
            mark(engine, &nodes_kind, node, false).await?;
        } else if alive && marked {
            mark(engine, &nodes_kind, node, true).await?;
        }
    }
    Ok(first_expiry)
}

fn timestamp(value: Option<&Value>) -> Option<jiff::Timestamp> {
    value.and_then(Value::as_str).and_then(|t| t.parse().ok())
}

/// How much of the grace period is left at `now` after `since` (a lease's renewal, as
/// kube-controller-manager judges it whatever duration the lease itself names, or a
/// node's creation); `None` once it has run out.
fn remaining(since: jiff::Timestamp, now: jiff::Timestamp, grace: Duration) -> Option<Duration> {
    let elapsed = now.duration_since(since);
    if elapsed.is_negative() {
        // A clock ahead of ours: count it as just renewed.
        return Some(grace);
    }
    grace.checked_sub(elapsed.unsigned_abs())
}

fn has_taint(node: &Value) -> bool {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .is_some_and(|taints| taints.iter().any(|t| t["key"] == UNREACHABLE_TAINT))
}

/// Taints a silent node and sets its Ready condition to Unknown, or undoes both.
async fn mark(
    engine: &Engine,
    kind: &crate::registry::KindSpec,
    node: &Value,
    alive: bool,
) -> ApiResult<()> {
    let name = object::name(node).unwrap_or_default();
    let mut taints: Vec<Value> = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    taints.retain(|t| t["key"] != UNREACHABLE_TAINT);
    let now = object::now_rfc3339();
    if !alive {
        taints.push(json!({"key": UNREACHABLE_TAINT, "effect": "NoSchedule", "timeAdded": now}));
    }
    let rv = object::resource_version(node);
    let options = WriteOptions::default();
    engine
        .patch(
            kind,
            None,
            name,
            PatchKind::Merge,
            json!({"metadata": {"resourceVersion": rv}, "spec": {"taints": taints}}),
            Target::Main,
            &options,
        )
        .await?;
    let mut conditions: Vec<Value> = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    conditions.retain(|c| c["type"] != "Ready");
    conditions.push(if alive {
        json!({"type": "Ready", "status": "True", "reason": "AgentReady",
               "message": "ronghe agent is renewing its lease again",
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    } else {
        json!({"type": "Ready", "status": "Unknown", "reason": REASON,
               "message": "Kubelet stopped posting node status.",
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    });
    engine
        .patch(
            kind,
            None,
            name,
            PatchKind::Merge,
            json!({"status": {"conditions": conditions}}),
            Target::Status,
            &options,
        )
        .await?;
    tracing::info!(node = name, alive, "node readiness changed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_fresh_within_the_grace_and_say_when_they_run_out() {
        let now: jiff::Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let lease =
            |renewed: &str| json!({"spec": {"renewTime": renewed, "leaseDurationSeconds": 40}});
        let left = |lease: Value| {
            timestamp(lease.pointer("/spec/renewTime")).and_then(|at| remaining(at, now, GRACE))
        };
        assert_eq!(
            left(lease("2026-01-01T00:00:30.500000Z")),
            Some(Duration::from_millis(10_500))
        );
        assert_eq!(left(lease("2026-01-01T00:00:10.000000Z")), None);
        assert_eq!(left(json!({"spec": {}})), None);
        assert_eq!(
            left(lease("2026-01-01T00:01:05.000000Z")),
            Some(GRACE),
            "a renewal stamped ahead of this clock counts as just made"
        );
    }
}
