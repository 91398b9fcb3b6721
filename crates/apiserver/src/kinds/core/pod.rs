//! Pod: what kubectl needs to create, list and inspect pods, the defaults the API server
//! fills in, the validation of what the scheduler and the agent rely on, and what a pod
//! asks of a host and of its project's quota.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use ronghe_api_types::quantity::{self, Milli};
use ronghe_api_types::validation::{FieldCause, NameRule};
use serde_json::{Value, json};

use crate::kinds::text;
use crate::object;
use crate::quota::{self, Usage};
use crate::registry::{Column, KindSpec, Subresources};

pub(super) fn kind() -> KindSpec {
    KindSpec {
        short_names: &["po"],
        categories: &["all"],
        subresources: Subresources {
            status: true,
            scale: false,
        },
        default: Some(default_pod),
        validate: Some(validate),
        fields: &[
            ("spec.nodeName", |o| {
                Some(text(o, &["spec", "nodeName"]).unwrap_or_default())
            }),
            ("spec.restartPolicy", |o| {
                text(o, &["spec", "restartPolicy"])
            }),
            ("spec.schedulerName", |o| {
                text(o, &["spec", "schedulerName"])
            }),
            ("spec.serviceAccountName", |o| {
                text(o, &["spec", "serviceAccountName"])
            }),
            ("status.phase", |o| text(o, &["status", "phase"])),
            ("status.podIP", |o| text(o, &["status", "podIP"])),
        ],
        columns: vec![
            Column::name(),
            Column::value(
                "Ready",
                "string",
                "The number of ready containers out of all containers.",
                ready_cell,
            ),
            Column::value("Status", "string", "The pod's status.", status_cell),
            Column::value(
                "Restarts",
                "string",
                "The number of times the pod's containers restarted.",
                restarts_cell,
            ),
            Column::age(),
            Column::text("IP", "The pod's IP address.", &["status", "podIP"]).wide(),
            Column::text(
                "Node",
                "The node the pod is bound to.",
                &["spec", "nodeName"],
            )
            .wide(),
        ],
        usage: Some(usage),
        graceful_delete: Some(grace_period),
        ..KindSpec::builtin::<Pod>()
    }
}

/// Kubernetes' defaults for what kubectl and the agent read.
fn default_pod(pod: &mut Value) {
    let root = object::ensure_object(pod);
    let spec = object::ensure_object(root.entry("spec").or_insert_with(|| json!({})));
    for (field, value) in [
        ("restartPolicy", json!("Always")),
        ("dnsPolicy", json!("ClusterFirst")),
        ("schedulerName", json!("default-scheduler")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("enableServiceLinks", json!(true)),
    ] {
        spec.entry(field).or_insert(value);
    }
    for list in ["containers", "initContainers"] {
        let Some(Value::Array(containers)) = spec.get_mut(list) else {
            continue;
        };
        for container in containers.iter_mut() {
            let container = object::ensure_object(container);
            let latest = container
                .get("image")
                .and_then(Value::as_str)
                .is_some_and(|image| !image_has_tag(image) || image.ends_with(":latest"));
            let pull = if latest { "Always" } else { "IfNotPresent" };
            container
                .entry("imagePullPolicy")
                .or_insert_with(|| json!(pull));
            container
                .entry("terminationMessagePath")
                .or_insert_with(|| json!("/dev/termination-log"));
            container
                .entry("terminationMessagePolicy")
                .or_insert_with(|| json!("File"));
            // A limit without a request requests the limit.
            let resources =
                object::ensure_object(container.entry("resources").or_insert_with(|| json!({})));
            if let Some(limits) = resources.get("limits").cloned()
                && let Some(limits) = limits.as_object()
            {
                let requests =
                    object::ensure_object(resources.entry("requests").or_insert_with(|| json!({})));
                for (resource, amount) in limits {
                    requests
                        .entry(resource.clone())
                        .or_insert_with(|| amount.clone());
                }
            }
        }
    }
    let qos = qos_class(spec_of(pod));
    let root = object::ensure_object(pod);
    let status = object::ensure_object(root.entry("status").or_insert_with(|| json!({})));
    status.entry("phase").or_insert_with(|| json!("Pending"));
    status.entry("qosClass").or_insert_with(|| json!(qos));
}

fn spec_of(pod: &Value) -> &Value {
    pod.get("spec").unwrap_or(&Value::Null)
}

fn image_has_tag(image: &str) -> bool {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.contains(':') || last.contains('@')
}

/// The QoS class: Guaranteed (every container's requests equal its limits for cpu and
/// memory), BestEffort (no requests or limits at all), Burstable otherwise.
fn qos_class(spec: &Value) -> &'static str {
    let containers = containers(spec, "containers");
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for container in &containers {
        let requests = container.pointer("/resources/requests");
        let limits = container.pointer("/resources/limits");
        let has = |v: Option<&Value>| v.and_then(Value::as_object).is_some_and(|m| !m.is_empty());
        any |= has(requests) || has(limits);
        for resource in ["cpu", "memory"] {
            let limit = limits.and_then(|l| l.get(resource));
            let request = requests.and_then(|r| r.get(resource));
            if limit.is_none() || quota::amount(limit) != quota::amount(request) {
                guaranteed = false;
            }
        }
    }
    if guaranteed {
        "Guaranteed"
    } else if any {
        "Burstable"
    } else {
        "BestEffort"
    }
}

fn containers<'a>(spec: &'a Value, list: &str) -> Vec<&'a Value> {
    spec.get(list)
        .and_then(Value::as_array)
        .map(|items| items.iter().collect())
        .unwrap_or_default()
}

/// What a pod asks of a host, by Kubernetes resource name (`cpu`, `memory`,
/// `ephemeral-storage`, extended resources such as `ronghe.io/vgpu`), in thousandths: the
/// sum over its containers, or the largest init container's if that is more, plus the
/// pod's overhead (kube-scheduler's rule).
pub fn requests(pod: &Value) -> BTreeMap<String, Milli> {
    let spec = spec_of(pod);
    let sum_of = |containers: &[&Value], field: &str| {
        let mut total: BTreeMap<String, Milli> = BTreeMap::new();
        for container in containers {
            let amounts = container
                .pointer(&format!("/resources/{field}"))
                .and_then(Value::as_object);
            for (resource, amount) in amounts.into_iter().flatten() {
                let entry = total.entry(resource.clone()).or_default();
                *entry = entry.saturating_add(quota::amount(Some(amount)));
            }
        }
        total
    };
    let mut total = sum_of(&containers(spec, "containers"), "requests");
    for init in containers(spec, "initContainers") {
        for (resource, amount) in sum_of(&[init], "requests") {
            let entry = total.entry(resource).or_default();
            *entry = (*entry).max(amount);
        }
    }
    if let Some(overhead) = spec.get("overhead").and_then(Value::as_object) {
        for (resource, amount) in overhead {
            let entry = total.entry(resource.clone()).or_default();
            *entry = entry.saturating_add(quota::amount(Some(amount)));
        }
    }
    total
}

/// The limits a pod's containers declare, summed the same way as requests.
fn limits(pod: &Value) -> BTreeMap<String, Milli> {
    let mut total: BTreeMap<String, Milli> = BTreeMap::new();
    for container in containers(spec_of(pod), "containers") {
        let amounts = container
            .pointer("/resources/limits")
            .and_then(Value::as_object);
        for (resource, amount) in amounts.into_iter().flatten() {
            let entry = total.entry(resource.clone()).or_default();
            *entry = entry.saturating_add(quota::amount(Some(amount)));
        }
    }
    total
}

/// A pod uses its requests and limits of its project's quota, as Kubernetes counts them
/// (`requests.cpu` and its alias `cpu`, `limits.memory`, `requests.<extended>`), while it
/// has not finished: a pod that Succeeded or Failed uses nothing but its count.
fn usage(pod: &Value, usage: &mut Usage) {
    if matches!(
        object::str_at(pod, &["status", "phase"]).as_deref(),
        Some("Succeeded" | "Failed")
    ) {
        return;
    }
    for (resource, amount) in requests(pod) {
        quota::add(usage, &format!("requests.{resource}"), amount);
        if matches!(resource.as_str(), "cpu" | "memory" | "ephemeral-storage") {
            quota::add(usage, &resource, amount);
        }
    }
    for (resource, amount) in limits(pod) {
        quota::add(usage, &format!("limits.{resource}"), amount);
    }
}

/// A pod on a host is stopped by the host's agent before it goes: by default it has
/// `spec.terminationGracePeriodSeconds` to exit. A pod on no host, or finished, goes at once.
fn grace_period(pod: &Value) -> Option<i64> {
    let bound = object::str_at(pod, &["spec", "nodeName"]).is_some_and(|n| !n.is_empty());
    let finished = matches!(
        object::str_at(pod, &["status", "phase"]).as_deref(),
        Some("Succeeded" | "Failed")
    );
    (bound && !finished).then(|| {
        pod.pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(30)
    })
}

/// What the scheduler and the agent rely on: containers with unique DNS-label names and an
/// image, quantities that parse, a known restart policy; on update, only what Kubernetes
/// lets change.
fn validate(pod: &Value, old: Option<&Value>) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    let spec = spec_of(pod);
    let containers_of = containers(spec, "containers");
    if containers_of.is_empty() {
        causes.push(FieldCause::required("spec.containers", ""));
    }
    let mut names = std::collections::BTreeSet::new();
    for list in ["initContainers", "containers"] {
        for (index, container) in containers(spec, list).into_iter().enumerate() {
            let path = format!("spec.{list}[{index}]");
            match container.get("name").and_then(Value::as_str) {
                None | Some("") => causes.push(FieldCause::required(format!("{path}.name"), "")),
                Some(name) => {
                    for problem in NameRule::Dns1123Label.validate(name, false) {
                        causes.push(FieldCause::invalid(format!("{path}.name"), name, problem));
                    }
                    if !names.insert(name.to_owned()) {
                        causes.push(FieldCause::duplicate(format!("{path}.name"), name));
                    }
                }
            }
            if container
                .get("image")
                .and_then(Value::as_str)
                .is_none_or(|image| image.trim().is_empty())
            {
                causes.push(FieldCause::required(format!("{path}.image"), ""));
            }
            for field in ["requests", "limits"] {
                let amounts = container
                    .pointer(&format!("/resources/{field}"))
                    .and_then(Value::as_object);
                for (resource, amount) in amounts.into_iter().flatten() {
                    let at = format!("{path}.resources.{field}[{resource}]");
                    match amount.as_str().map(quantity::parse) {
                        Some(Ok(value)) if value >= 0 => {}
                        Some(Ok(_)) => causes.push(FieldCause::invalid(
                            at,
                            amount.clone(),
                            "must be greater than or equal to 0",
                        )),
                        _ => causes.push(FieldCause::invalid(
                            at,
                            amount.clone(),
                            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                        )),
                    }
                }
            }
            let requests = container
                .pointer("/resources/requests")
                .and_then(Value::as_object);
            let limits = container
                .pointer("/resources/limits")
                .and_then(Value::as_object);
            for (resource, limit) in limits.into_iter().flatten() {
                let request = requests.and_then(|r| r.get(resource));
                if request.is_some() && quota::amount(request) > quota::amount(Some(limit)) {
                    causes.push(FieldCause::invalid(
                        format!("{path}.resources.requests"),
                        request.cloned().unwrap_or(Value::Null),
                        format!(
                            "must be less than or equal to {resource} limit of {}",
                            limit.as_str().unwrap_or_default()
                        ),
                    ));
                }
            }
        }
    }
    if let Some(policy) = object::str_at(pod, &["spec", "restartPolicy"])
        && !matches!(policy.as_str(), "Always" | "OnFailure" | "Never")
    {
        causes.push(FieldCause::not_supported(
            "spec.restartPolicy",
            policy,
            &["Always", "OnFailure", "Never"],
        ));
    }
    if let Some(old) = old {
        causes.extend(validate_update(pod, old));
    }
    causes
}

/// Kubernetes lets a pod's spec change only in its images, its active deadline and added
/// tolerations; binding sets `spec.nodeName` through the scheduler, never an update.
fn validate_update(pod: &Value, old: &Value) -> Vec<FieldCause> {
    let mutable = |spec: &Value| {
        let mut spec = spec.clone();
        if let Some(root) = spec.as_object_mut() {
            root.remove("activeDeadlineSeconds");
            root.remove("tolerations");
            for list in ["containers", "initContainers"] {
                if let Some(Value::Array(items)) = root.get_mut(list) {
                    for item in items {
                        if let Some(item) = item.as_object_mut() {
                            item.remove("image");
                        }
                    }
                }
            }
        }
        spec
    };
    if mutable(spec_of(pod)) == mutable(spec_of(old)) {
        return Vec::new();
    }
    vec![FieldCause::forbidden(
        "spec",
        "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations)",
    )]
}

/// `1/2`: ready containers out of all.
fn ready_cell(pod: &Value) -> Value {
    let total = containers(spec_of(pod), "containers").len();
    let ready = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |statuses| {
            statuses
                .iter()
                .filter(|s| s.get("ready").and_then(Value::as_bool) == Some(true))
                .count()
        });
    json!(format!("{ready}/{total}"))
}

/// What kubectl shows as STATUS: Terminating, a waiting or terminated container's reason,
/// or the phase.
fn status_cell(pod: &Value) -> Value {
    if object::deletion_timestamp(pod).is_some() {
        return json!("Terminating");
    }
    if let Some(reason) = object::str_at(pod, &["status", "reason"]) {
        return json!(reason);
    }
    let statuses = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array);
    for status in statuses.into_iter().flatten() {
        for state in ["waiting", "terminated"] {
            if let Some(reason) = status
                .pointer(&format!("/state/{state}/reason"))
                .and_then(Value::as_str)
            {
                return json!(reason);
            }
        }
    }
    json!(object::str_at(pod, &["status", "phase"]).unwrap_or_else(|| "Pending".into()))
}

fn restarts_cell(pod: &Value) -> Value {
    let restarts: i64 = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |statuses| {
            statuses
                .iter()
                .filter_map(|s| s.get("restartCount").and_then(Value::as_i64))
                .sum()
        });
    json!(restarts.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": spec});
        default_pod(&mut pod);
        pod
    }

    #[test]
    fn requests_sum_containers_and_take_the_largest_init_container() {
        let pod = pod(json!({
            "initContainers": [{"name": "i", "image": "x", "resources": {"requests": {"cpu": "2"}}}],
            "containers": [
                {"name": "a", "image": "x", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
                {"name": "b", "image": "x", "resources": {"limits": {"cpu": "250m", "ronghe.io/vgpu": "1"}}},
            ],
        }));
        let requests = requests(&pod);
        assert_eq!(requests["cpu"], 2000, "the init container's 2 beats 750m");
        assert_eq!(requests["memory"], 1024 * 1024 * 1024 * 1000);
        assert_eq!(
            requests["ronghe.io/vgpu"], 1000,
            "a limit alone requests itself"
        );
        let mut used = Usage::new();
        usage(&pod, &mut used);
        assert_eq!(used["requests.cpu"], 2000);
        assert_eq!(used["cpu"], 2000);
        assert_eq!(used["limits.cpu"], 250);
    }

    #[test]
    fn defaults_and_qos() {
        let best_effort = pod(json!({"containers": [{"name": "a", "image": "busybox"}]}));
        assert_eq!(best_effort["spec"]["restartPolicy"], "Always");
        assert_eq!(
            best_effort["spec"]["containers"][0]["imagePullPolicy"],
            "Always"
        );
        assert_eq!(best_effort["status"]["phase"], "Pending");
        assert_eq!(best_effort["status"]["qosClass"], "BestEffort");
        let guaranteed = pod(json!({"containers": [{"name": "a", "image": "busybox:1.36",
            "resources": {"limits": {"cpu": "1", "memory": "64Mi"}}}]}));
        assert_eq!(guaranteed["status"]["qosClass"], "Guaranteed");
        assert_eq!(
            guaranteed["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let bad = pod(json!({"restartPolicy": "Sometimes", "containers": [
            {"name": "a", "image": "x", "resources": {"requests": {"cpu": "lots"}}},
            {"name": "a"},
        ]}));
        let fields: Vec<String> = validate(&bad, None).into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            [
                "spec.containers[0].resources.requests[cpu]",
                "spec.containers[1].name",
                "spec.containers[1].image",
                "spec.restartPolicy",
            ]
        );
        let empty = pod(json!({}));
        assert_eq!(validate(&empty, None)[0].field, "spec.containers");
    }

    #[test]
    fn updates_change_only_images_and_tolerations() {
        let old = pod(json!({"containers": [{"name": "a", "image": "x"}]}));
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("y");
        assert!(validate(&new, Some(&old)).is_empty());
        new["spec"]["nodeName"] = json!("host-1");
        assert_eq!(validate(&new, Some(&old))[0].field, "spec");
    }

    #[test]
    fn table_cells() {
        let mut p =
            pod(json!({"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]}));
        p["status"]["containerStatuses"] = json!([
            {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}}},
            {"name": "b", "ready": false, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
        ]);
        assert_eq!(ready_cell(&p), "1/2");
        assert_eq!(restarts_cell(&p), "3");
        assert_eq!(status_cell(&p), "CrashLoopBackOff");
    }
}
