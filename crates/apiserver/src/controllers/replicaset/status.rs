//! A ReplicaSet's status from the pods it controls, without I/O: replicas, fully labelled,
//! ready and available counts, the generation observed, and the `ReplicaFailure`
//! condition while creating or deleting pods fails.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::pods;
use crate::kinds::apps::int_at;
use crate::object;

/// Why the last attempt to reach the desired count failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// `FailedCreate` or `FailedDelete`.
    pub reason: &'static str,
    /// The error, as the API put it (e.g. the quota that was exceeded).
    pub message: String,
}

/// The status of `replica_set` given its active pods, and how long until one of its ready
/// pods becomes available (when the status must be counted again).
pub fn compute(
    replica_set: &Value,
    pods: &[&Value],
    failure: Option<&Failure>,
    now: Timestamp,
) -> (Value, Option<Duration>) {
    let min_ready = int_at(replica_set, &["spec", "minReadySeconds"]);
    let template_labels = replica_set
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object);
    let mut fully_labeled = 0;
    let mut ready = 0;
    let mut available = 0;
    let mut next_available: Option<Duration> = None;
    for pod in pods {
        let labels = object::labels(pod);
        let labelled = template_labels.is_none_or(|wanted| {
            wanted
                .iter()
                .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
        });
        if labelled {
            fully_labeled += 1;
        }
        match pods::time_to_available(pod, min_ready, now) {
            Some(wait) if wait.is_zero() => {
                ready += 1;
                available += 1;
            }
            Some(wait) => {
                ready += 1;
                next_available = Some(next_available.map_or(wait, |w| w.min(wait)));
            }
            None => {}
        }
    }
    let mut status = Map::new();
    status.insert("replicas".into(), json!(pods.len()));
    for (field, count) in [
        ("fullyLabeledReplicas", fully_labeled),
        ("readyReplicas", ready),
        ("availableReplicas", available),
    ] {
        if count > 0 {
            status.insert(field.into(), json!(count));
        }
    }
    if let Some(generation) = object::metadata(replica_set)
        .and_then(|m| m.get("generation"))
        .and_then(Value::as_i64)
    {
        status.insert("observedGeneration".into(), json!(generation));
    }
    let conditions = conditions(replica_set, failure);
    if !conditions.is_empty() {
        status.insert("conditions".into(), Value::Array(conditions));
    }
    (Value::Object(status), next_available)
}

/// The existing conditions, with `ReplicaFailure` added when an attempt failed (kept as
/// first reported while failures go on) and removed once one succeeds.
fn conditions(replica_set: &Value, failure: Option<&Failure>) -> Vec<Value> {
    let mut conditions: Vec<Value> = replica_set
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let is_failure = |c: &Value| c.get("type").and_then(Value::as_str) == Some("ReplicaFailure");
    let present = conditions.iter().any(is_failure);
    match failure {
        Some(failure) if !present => conditions.push(json!({
            "type": "ReplicaFailure",
            "status": "True",
            "reason": failure.reason,
            "message": failure.message,
            "lastTransitionTime": object::now_rfc3339(),
        })),
        None if present => conditions.retain(|c| !is_failure(c)),
        _ => {}
    }
    conditions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs() -> Value {
        json!({"metadata": {"name": "rs", "generation": 4},
            "spec": {"replicas": 3, "minReadySeconds": 10,
                "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}}}}})
    }

    fn pod(labels: Value, ready_since: Option<&str>) -> Value {
        let mut pod = json!({"metadata": {"labels": labels}, "status": {"phase": "Running"}});
        if let Some(since) = ready_since {
            pod["status"]["conditions"] =
                json!([{"type": "Ready", "status": "True", "lastTransitionTime": since}]);
        }
        pod
    }

    #[test]
    fn counts_ready_available_and_fully_labelled_pods() {
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().expect("time");
        let full = json!({"app": "web", "tier": "fe"});
        let a = pod(full.clone(), Some("2026-01-01T00:00:00Z"));
        let b = pod(full, Some("2026-01-01T00:00:55Z"));
        let c = pod(json!({"app": "web"}), None);
        let (status, requeue) = compute(&rs(), &[&a, &b, &c], None, now);
        assert_eq!(
            status,
            json!({"replicas": 3, "fullyLabeledReplicas": 2, "readyReplicas": 2,
                "availableReplicas": 1, "observedGeneration": 4})
        );
        assert_eq!(requeue, Some(Duration::from_secs(5)));
    }

    #[test]
    fn failures_set_and_clear_the_replica_failure_condition() {
        let now = Timestamp::now();
        let failure = Failure {
            reason: "FailedCreate",
            message: "exceeded quota: q".into(),
        };
        let (status, _) = compute(&rs(), &[], Some(&failure), now);
        assert_eq!(status["replicas"], 0);
        let condition = &status["conditions"][0];
        assert_eq!(condition["type"], "ReplicaFailure");
        assert_eq!(condition["reason"], "FailedCreate");
        assert_eq!(condition["message"], "exceeded quota: q");
        let mut failing = rs();
        failing["status"] = status.clone();
        let (again, _) = compute(&failing, &[], Some(&failure), now);
        assert_eq!(again["conditions"], status["conditions"]);
        let (healed, _) = compute(&failing, &[], None, now);
        assert!(healed.get("conditions").is_none());
    }
}
