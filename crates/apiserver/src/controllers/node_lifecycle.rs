//! The node-lifecycle controller: a node whose agent stopped renewing its Lease (in
//! `kube-node-lease`) for longer than the grace period is marked not ready (Ready=Unknown,
//! as kube-controller-manager does) and tainted `node.kubernetes.io/unreachable:NoSchedule`,
//! so the scheduler places nothing more there; when the lease is renewed again both go.
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
/// How often leases are checked.
const PERIOD: Duration = Duration::from_secs(5);
/// The taint of a node whose agent is silent.
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// The reason of the Ready condition this controller sets.
const REASON: &str = "NodeStatusUnknown";

pub(super) async fn run(engine: Engine, grace: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(error) = pass(&engine, grace).await {
            tracing::warn!(%error, "checking node leases failed");
        }
        if pause(&mut stop, PERIOD).await {
            return;
        }
    }
}

async fn pass(engine: &Engine, grace: Duration) -> ApiResult<()> {
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
    for node in &nodes.items {
        let Some(name) = object::name(node) else {
            continue;
        };
        let lease = leases.items.iter().find(|l| object::name(l) == Some(name));
        let alive = lease.is_some_and(|lease| is_fresh(lease, now, grace));
        // A node registered moments ago may not have renewed yet: judge it by its age.
        let young = object::meta_str(node, "creationTimestamp")
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .is_some_and(|created| now.duration_since(created).unsigned_abs() < grace);
        let marked = has_taint(node);
        if !alive && !young && !marked {
            mark(engine, &nodes_kind, node, false).await?;
        } else if alive && marked {
            mark(engine, &nodes_kind, node, true).await?;
        }
    }
    Ok(())
}

/// Whether a lease was renewed within the grace period (as kube-controller-manager
/// judges it, whatever duration the lease itself names).
fn is_fresh(lease: &Value, now: jiff::Timestamp, grace: Duration) -> bool {
    lease
        .pointer("/spec/renewTime")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .is_some_and(|renewed| now.duration_since(renewed).unsigned_abs() <= grace)
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
    fn leases_are_fresh_within_their_duration() {
        let now: jiff::Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let lease =
            |renewed: &str| json!({"spec": {"renewTime": renewed, "leaseDurationSeconds": 40}});
        assert!(is_fresh(&lease("2026-01-01T00:00:30.000000Z"), now, GRACE));
        assert!(!is_fresh(&lease("2026-01-01T00:00:10.000000Z"), now, GRACE));
        assert!(!is_fresh(&json!({"spec": {}}), now, GRACE));
    }
}
