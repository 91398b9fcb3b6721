//! Status and conditions as `kubectl rollout status` reads them.

use serde_json::json;

use super::*;

fn deployment(status: Value) -> Value {
    json!({"metadata": {"name": "web", "generation": 2},
        "spec": {"replicas": 3, "progressDeadlineSeconds": 600},
        "status": status})
}

fn set(name: &str, replicas: i32, available: i32) -> Set {
    Set {
        name: name.into(),
        created: None,
        replicas,
        current: replicas,
        ready: available,
        available,
        desired_annotation: None,
        max_annotation: None,
    }
}

fn params() -> Params {
    Params {
        replicas: 3,
        rolling: true,
        surge: 1,
        unavailable: 0,
    }
}

fn now() -> Timestamp {
    "2026-01-01T01:00:00Z".parse().expect("time")
}

fn reason(status: &Value, kind: &str) -> Option<String> {
    get_condition(status, kind).and_then(|c| c["reason"].as_str().map(str::to_owned))
}

#[test]
fn counts_sum_over_replica_sets() {
    let new = set("web-new", 2, 1);
    let old = set("web-old", 2, 2);
    let status = calculate(
        &deployment(json!({})),
        &[new.clone(), old],
        Some(&new),
        &params(),
        now(),
    );
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(status["replicas"], 4);
    assert_eq!(status["updatedReplicas"], 2);
    assert_eq!(status["readyReplicas"], 3);
    assert_eq!(status["availableReplicas"], 3);
    assert_eq!(status["unavailableReplicas"], 1);
    assert_eq!(
        reason(&status, AVAILABLE).as_deref(),
        Some("MinimumReplicasAvailable")
    );
    let starting = calculate(
        &deployment(json!({})),
        &[set("web-new", 3, 0)],
        None,
        &params(),
        now(),
    );
    assert_eq!(
        get_condition(&starting, AVAILABLE).expect("available")["status"],
        "False"
    );
    assert!(
        starting.get("updatedReplicas").is_none(),
        "zeros are omitted"
    );
}

#[test]
fn a_complete_rollout_says_so_once() {
    let created = condition(PROGRESSING, "True", NEW_RS_CREATED, "Created", now());
    let d = deployment(json!({"conditions": [created]}));
    let new = set("web-abc", 3, 3);
    let (status, requeue) = rollout(
        &d,
        std::slice::from_ref(&new),
        Some(&new),
        &params(),
        None,
        now(),
    );
    let progressing = get_condition(&status, PROGRESSING).expect("progressing");
    assert_eq!(progressing["reason"], NEW_RS_AVAILABLE);
    assert_eq!(
        progressing["message"],
        "ReplicaSet \"web-abc\" has successfully progressed."
    );
    assert_eq!(requeue, None);
    // Done is done: another sync changes nothing.
    let done = deployment(status.clone());
    let (again, _) = rollout(
        &done,
        std::slice::from_ref(&new),
        Some(&new),
        &params(),
        None,
        now(),
    );
    assert_eq!(again, status);
}

#[test]
fn progress_is_noticed_and_a_stall_times_out() {
    let long_ago: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
    let stale = condition(PROGRESSING, "True", NEW_RS_CREATED, "Created", long_ago);
    let d = deployment(json!({"replicas": 3, "updatedReplicas": 1, "conditions": [stale]}));
    let new = set("web-abc", 2, 0);
    let old = set("web-old", 1, 1);
    let (moving, _) = rollout(
        &d,
        &[new.clone(), old.clone()],
        Some(&new),
        &params(),
        None,
        now(),
    );
    assert_eq!(
        reason(&moving, PROGRESSING).as_deref(),
        Some("ReplicaSetUpdated")
    );
    let stuck = deployment(json!({"replicas": 3, "updatedReplicas": 2,
        "readyReplicas": 1, "availableReplicas": 1,
        "conditions": [condition(PROGRESSING, "True", "ReplicaSetUpdated", "x", long_ago)]}));
    let (timed_out, requeue) = rollout(
        &stuck,
        &[new.clone(), old],
        Some(&new),
        &params(),
        None,
        now(),
    );
    let progressing = get_condition(&timed_out, PROGRESSING).expect("progressing");
    assert_eq!(progressing["status"], "False");
    assert_eq!(progressing["reason"], TIMED_OUT);
    assert_eq!(requeue, None, "a timed out rollout waits for a change");
}

#[test]
fn replica_failures_are_copied_and_cleared() {
    let rs = json!({"status": {"conditions": [{"type": "ReplicaFailure", "status": "True",
        "reason": "FailedCreate", "message": "exceeded quota", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    let failure = replica_failure_of(&rs).expect("failure");
    assert_eq!(failure["lastUpdateTime"], "2026-01-01T00:00:00Z");
    let new = set("web-abc", 3, 0);
    let d = deployment(json!({}));
    let (status, _) = rollout(
        &d,
        std::slice::from_ref(&new),
        Some(&new),
        &params(),
        Some(failure),
        now(),
    );
    assert_eq!(
        get_condition(&status, REPLICA_FAILURE).expect("copied")["message"],
        "exceeded quota"
    );
    let failing = deployment(status);
    let (healed, _) = rollout(
        &failing,
        std::slice::from_ref(&new),
        Some(&new),
        &params(),
        None,
        now(),
    );
    assert!(get_condition(&healed, REPLICA_FAILURE).is_none());
}
