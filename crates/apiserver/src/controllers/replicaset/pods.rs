//! What a ReplicaSet needs to know about pods, without I/O: which are active, ready and
//! available (readiness is what the host's runtime reports: the `Ready` condition, or
//! every container ready when no condition is reported), which to delete first when
//! there are too many, and the pod a template makes.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::object;

/// Pods whose `controller.kubernetes.io/pod-deletion-cost` is lower go first.
const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

fn phase(pod: &Value) -> Option<&str> {
    pod.pointer("/status/phase").and_then(Value::as_str)
}

/// Not finished and not on its way out: the pods a ReplicaSet counts.
pub fn is_active(pod: &Value) -> bool {
    !matches!(phase(pod), Some("Succeeded" | "Failed")) && object::deletion_timestamp(pod).is_none()
}

fn condition<'a>(pod: &'a Value, kind: &str) -> Option<&'a Value> {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

/// Ready: the `Ready` condition is `True`; a pod whose runtime reports no conditions is
/// ready when all its containers say they are.
pub fn is_ready(pod: &Value) -> bool {
    if let Some(ready) = condition(pod, "Ready") {
        return ready.get("status").and_then(Value::as_str) == Some("True");
    }
    let statuses = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array);
    statuses.is_some_and(|statuses| {
        !statuses.is_empty()
            && statuses
                .iter()
                .all(|s| s.get("ready").and_then(Value::as_bool) == Some(true))
    })
}

/// Since when a ready pod has been ready, if known.
pub fn ready_since(pod: &Value) -> Option<Timestamp> {
    condition(pod, "Ready")?
        .get("lastTransitionTime")?
        .as_str()?
        .parse()
        .ok()
}

/// How long until a ready pod counts as available (`minReadySeconds`): zero if it is,
/// `None` if it is not ready at all.
pub fn time_to_available(pod: &Value, min_ready_seconds: i64, now: Timestamp) -> Option<Duration> {
    if !is_ready(pod) {
        return None;
    }
    if min_ready_seconds <= 0 {
        return Some(Duration::ZERO);
    }
    // Ready without a transition time: count the wait from now, so it is not available
    // before it has been seen ready for minReadySeconds.
    let since = ready_since(pod).unwrap_or(now);
    let available_at = since
        .checked_add(jiff::SignedDuration::from_secs(min_ready_seconds))
        .unwrap_or(since);
    let wait = now.duration_until(available_at);
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

fn node(pod: &Value) -> &str {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn phase_rank(pod: &Value) -> u8 {
    match phase(pod) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        Some(_) => 3,
    }
}

fn deletion_cost(pod: &Value) -> i64 {
    object::metadata(pod)
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(DELETION_COST_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|cost| cost.parse().ok())
        .unwrap_or(0)
}

fn max_restarts(pod: &Value) -> i64 {
    pod.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("restartCount").and_then(Value::as_i64))
        .max()
        .unwrap_or(0)
}

fn created(pod: &Value) -> Option<Timestamp> {
    object::meta_str(pod, "creationTimestamp")?.parse().ok()
}

/// Orders later timestamps first, an unknown one before any.
fn later_first(a: Option<Timestamp>, b: Option<Timestamp>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(&a),
    }
}

/// The `count` pods to delete when a ReplicaSet has too many, in kube-controller-manager's
/// order: unscheduled before scheduled, pending before running, not ready before ready,
/// lower deletion cost first, pods doubled up on a node before lone ones, ready for less
/// time first, more restarts first, newest first.
pub fn to_delete<'a>(pods: &[&'a Value], count: usize) -> Vec<&'a Value> {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for pod in pods {
        let node = node(pod);
        if !node.is_empty() {
            *per_node.entry(node).or_default() += 1;
        }
    }
    let rank = |pod: &Value| per_node.get(node(pod)).copied().unwrap_or(0);
    let mut ranked: Vec<&Value> = pods.to_vec();
    ranked.sort_by(|a, b| {
        let (a_ready, b_ready) = (is_ready(a), is_ready(b));
        node(a)
            .is_empty()
            .cmp(&node(b).is_empty())
            .reverse()
            .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
            .then_with(|| a_ready.cmp(&b_ready))
            .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
            .then_with(|| rank(b).cmp(&rank(a)))
            .then_with(|| {
                if a_ready && b_ready {
                    later_first(ready_since(a), ready_since(b))
                } else {
                    Ordering::Equal
                }
            })
            .then_with(|| max_restarts(b).cmp(&max_restarts(a)))
            .then_with(|| later_first(created(a), created(b)))
    });
    ranked.truncate(count);
    ranked
}

/// The controller reference an owner puts on what it makes or adopts.
pub fn controller_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner.get("apiVersion").cloned().unwrap_or(Value::Null),
        "kind": owner.get("kind").cloned().unwrap_or(Value::Null),
        "name": object::name(owner).unwrap_or_default(),
        "uid": object::uid(owner).unwrap_or_default(),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// The pod a ReplicaSet makes from its template: named `<replicaset>-<5 random>`, with the
/// template's labels, annotations and finalizers, owned by the ReplicaSet.
pub fn from_template(replica_set: &Value) -> Value {
    let template = replica_set
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut metadata = serde_json::Map::new();
    metadata.insert(
        "generateName".into(),
        json!(format!(
            "{}-",
            object::name(replica_set).unwrap_or_default()
        )),
    );
    for field in ["labels", "annotations", "finalizers"] {
        if let Some(value) = template.pointer(&format!("/metadata/{field}")) {
            metadata.insert(field.into(), value.clone());
        }
    }
    metadata.insert(
        "ownerReferences".into(),
        json!([controller_ref(replica_set)]),
    );
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: &str, phase: &str, ready: Option<&str>, created: &str) -> Value {
        let mut pod = json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"nodeName": node},
            "status": {"phase": phase},
        });
        if let Some(since) = ready {
            pod["status"]["conditions"] =
                json!([{"type": "Ready", "status": "True", "lastTransitionTime": since}]);
        }
        pod
    }

    fn names(pods: Vec<&Value>) -> Vec<&str> {
        pods.into_iter()
            .map(|p| object::name(p).unwrap_or_default())
            .collect()
    }

    #[test]
    fn surplus_goes_unscheduled_then_not_ready_then_newest() {
        let t = |m: u32| format!("2026-01-01T00:{m:02}:00Z");
        let old_ready = pod("old-ready", "h1", "Running", Some(&t(1)), &t(0));
        let new_ready = pod("new-ready", "h2", "Running", Some(&t(1)), &t(5));
        let running_not_ready = pod("not-ready", "h3", "Running", None, &t(0));
        let pending = pod("pending", "h4", "Pending", None, &t(0));
        let unscheduled = pod("unscheduled", "", "Pending", None, &t(0));
        let all = [
            &old_ready,
            &new_ready,
            &running_not_ready,
            &pending,
            &unscheduled,
        ];
        assert_eq!(
            names(to_delete(&all, 5)),
            [
                "unscheduled",
                "pending",
                "not-ready",
                "new-ready",
                "old-ready"
            ]
        );
        assert_eq!(names(to_delete(&all, 2)), ["unscheduled", "pending"]);
    }

    #[test]
    fn ready_for_less_time_and_doubled_up_go_first() {
        let t = |m: u32| format!("2026-01-01T00:{m:02}:00Z");
        let long_ready = pod("long", "h1", "Running", Some(&t(1)), &t(0));
        let short_ready = pod("short", "h2", "Running", Some(&t(9)), &t(0));
        assert_eq!(names(to_delete(&[&long_ready, &short_ready], 1)), ["short"]);
        let alone = pod("alone", "h1", "Running", Some(&t(1)), &t(0));
        let twin_a = pod("twin-a", "h2", "Running", Some(&t(1)), &t(0));
        let twin_b = pod("twin-b", "h2", "Running", Some(&t(1)), &t(0));
        assert_eq!(names(to_delete(&[&alone, &twin_a, &twin_b], 1)), ["twin-a"]);
    }

    fn is_available(pod: &Value, min_ready_seconds: i64, now: Timestamp) -> bool {
        time_to_available(pod, min_ready_seconds, now).is_some_and(|wait| wait.is_zero())
    }

    #[test]
    fn readiness_and_availability() {
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().expect("time");
        let ready = pod("r", "h", "Running", Some("2026-01-01T00:00:30Z"), "");
        assert!(is_ready(&ready));
        assert!(is_available(&ready, 0, now));
        assert!(is_available(&ready, 30, now));
        assert!(!is_available(&ready, 45, now));
        assert_eq!(
            time_to_available(&ready, 45, now),
            Some(Duration::from_secs(15))
        );
        let mut by_containers = pod("c", "h", "Running", None, "");
        by_containers["status"]["containerStatuses"] = json!([{"name": "a", "ready": true}]);
        assert!(is_ready(&by_containers));
        by_containers["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
        assert!(!is_ready(&by_containers), "the condition has the last word");
        assert!(!is_ready(&pod("p", "", "Pending", None, "")));
        let mut finished = pod("f", "h", "Succeeded", None, "");
        assert!(!is_active(&finished));
        finished["status"]["phase"] = json!("Running");
        finished["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(!is_active(&finished));
    }

    #[test]
    fn pods_from_a_template_are_owned_and_labelled() {
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-abc", "uid": "u1"},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]}}}});
        let pod = from_template(&rs);
        assert_eq!(pod["metadata"]["generateName"], "web-abc-");
        assert_eq!(pod["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(
            pod["metadata"]["ownerReferences"],
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": "u1",
                "controller": true, "blockOwnerDeletion": true}])
        );
        assert_eq!(pod["spec"]["containers"][0]["image"], "x");
    }
}
