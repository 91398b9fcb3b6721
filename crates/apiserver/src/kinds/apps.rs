//! `apps/v1` kinds: ReplicaSet and Deployment. Their declarations, the defaults the API
//! server fills in (the pod template is defaulted as a pod is), their `kubectl get`
//! columns, and the names of the labels and annotations the workload controllers and
//! kubectl share (`crate::controllers::replicaset`, `crate::controllers::deployment`).

mod validation;

use std::sync::OnceLock;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use ronghe_api_types::selector::LabelSelector;
use serde_json::{Map, Value, json};

use super::text;
use crate::object;
use crate::registry::{Column, DefaultFn, KindSpec, Subresources, ValidateFn};

pub(crate) use self::validation::percent;

/// The label a Deployment adds to its ReplicaSets' selectors and templates, so that the
/// pods of each revision are told apart.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// The revision of a Deployment and of each of its ReplicaSets (`kubectl rollout history`).
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a ReplicaSet had, when a rollback made it current again.
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's replicas when it last sized a ReplicaSet.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// The Deployment's replicas plus its surge when it last sized a ReplicaSet.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";

pub(super) fn kinds() -> Vec<KindSpec> {
    vec![replica_set(), deployment()]
}

fn replica_set() -> KindSpec {
    KindSpec {
        short_names: &["rs"],
        categories: &["all"],
        subresources: Subresources {
            status: true,
            scale: true,
        },
        has_generation: true,
        default: Some(default_replica_set),
        validate: Some(validation::replica_set),
        fields: &[("status.replicas", |o| {
            Some(text(o, &["status", "replicas"]).unwrap_or_else(|| "0".into()))
        })],
        columns: vec![
            Column::name(),
            Column::value(
                "Desired",
                "integer",
                "Replicas is the number of desired pods.",
                |o| json!(int_at(o, &["spec", "replicas"])),
            ),
            Column::value(
                "Current",
                "integer",
                "Replicas is the most recently observed number of non-terminating pods.",
                |o| json!(int_at(o, &["status", "replicas"])),
            ),
            Column::value(
                "Ready",
                "integer",
                "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.",
                |o| json!(int_at(o, &["status", "readyReplicas"])),
            ),
            Column::age(),
        ]
        .into_iter()
        .chain(template_columns())
        .collect(),
        ..KindSpec::builtin::<ReplicaSet>()
    }
}

fn deployment() -> KindSpec {
    KindSpec {
        short_names: &["deploy"],
        categories: &["all"],
        subresources: Subresources {
            status: true,
            scale: true,
        },
        has_generation: true,
        default: Some(default_deployment),
        validate: Some(validation::deployment),
        columns: vec![
            Column::name(),
            Column::value(
                "Ready",
                "string",
                "Number of the pod with ready state",
                |o| {
                    json!(format!(
                        "{}/{}",
                        int_at(o, &["status", "readyReplicas"]),
                        int_at(o, &["spec", "replicas"])
                    ))
                },
            ),
            Column::value(
                "Up-to-date",
                "string",
                "Total number of non-terminating pods targeted by this deployment that have the desired template spec.",
                |o| json!(int_at(o, &["status", "updatedReplicas"])),
            ),
            Column::value(
                "Available",
                "string",
                "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment.",
                |o| json!(int_at(o, &["status", "availableReplicas"])),
            ),
            Column::age(),
        ]
        .into_iter()
        .chain(template_columns())
        .collect(),
        ..KindSpec::builtin::<Deployment>()
    }
}

/// The `-o wide` columns both kinds show about their pod template.
fn template_columns() -> Vec<Column> {
    vec![
        Column::value(
            "Containers",
            "string",
            "Names of each container in the template.",
            |o| json!(container_fields(o, "name")),
        )
        .wide(),
        Column::value(
            "Images",
            "string",
            "Images referenced by each container in the template.",
            |o| json!(container_fields(o, "image")),
        )
        .wide(),
        Column::value("Selector", "string", "Label selector for pods.", |o| {
            json!(selector_text(o))
        })
        .wide(),
    ]
}

/// An integer at a path, 0 when absent (as Go's zero value prints).
pub(crate) fn int_at(object: &Value, path: &[&str]) -> i64 {
    object::value_at(object, path)
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn container_fields(object: &Value, field: &str) -> String {
    object
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|containers| {
            containers
                .iter()
                .map(|c| c.get(field).and_then(Value::as_str).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// `app=web,pod-template-hash=abc` as apimachinery's `FormatLabelSelector` prints it.
fn selector_text(object: &Value) -> String {
    match selector_of(object) {
        Some(Ok(selector)) if selector.is_empty() => "<none>".into(),
        Some(Ok(selector)) => selector.to_string(),
        Some(Err(())) => "<error>".into(),
        None => "<none>".into(),
    }
}

/// The object's `spec.selector`: `None` when missing (which selects nothing), an error
/// when it does not parse.
pub fn selector_of(object: &Value) -> Option<Result<LabelSelector, ()>> {
    let selector = object.pointer("/spec/selector").filter(|s| !s.is_null())?;
    Some(
        serde_json::from_value(selector.clone())
            .map_err(drop)
            .and_then(|selector| LabelSelector::from_k8s(&selector).map_err(drop)),
    )
}

fn default_replica_set(replica_set: &mut Value) {
    let spec = spec_mut(replica_set);
    spec.entry("replicas").or_insert(json!(1));
    spec.entry("minReadySeconds").or_insert(json!(0));
    default_template(spec);
}

fn default_deployment(deployment: &mut Value) {
    let spec = spec_mut(deployment);
    spec.entry("replicas").or_insert(json!(1));
    spec.entry("revisionHistoryLimit").or_insert(json!(10));
    spec.entry("progressDeadlineSeconds").or_insert(json!(600));
    let strategy = object::ensure_object(spec.entry("strategy").or_insert_with(|| json!({})));
    let rolling = match strategy.get("type").and_then(Value::as_str) {
        None | Some("") => {
            strategy.insert("type".into(), json!("RollingUpdate"));
            true
        }
        Some(kind) => kind == "RollingUpdate",
    };
    if rolling {
        let update =
            object::ensure_object(strategy.entry("rollingUpdate").or_insert_with(|| json!({})));
        update.entry("maxUnavailable").or_insert(json!("25%"));
        update.entry("maxSurge").or_insert(json!("25%"));
    }
    default_template(spec);
}

fn spec_mut(object: &mut Value) -> &mut Map<String, Value> {
    let root = object::ensure_object(object);
    object::ensure_object(root.entry("spec").or_insert_with(|| json!({})))
}

/// The pod functions of the registry's Pod kind, looked up once: a template is defaulted
/// and validated as the pods made from it will be.
fn pod_functions() -> (Option<DefaultFn>, Option<ValidateFn>) {
    static POD: OnceLock<(Option<DefaultFn>, Option<ValidateFn>)> = OnceLock::new();
    *POD.get_or_init(|| {
        super::core::kinds()
            .into_iter()
            .find(|kind| kind.kind == "Pod")
            .map_or((None, None), |pod| (pod.default, pod.validate))
    })
}

/// The pod a template describes, for the pod kind's defaulting and validation.
fn pod_of_template(template: &Value) -> Value {
    json!({
        "metadata": template.get("metadata").cloned().unwrap_or_else(|| json!({})),
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
    })
}

/// Defaults `spec.template.spec` as a pod's spec is defaulted, less what Kubernetes sets
/// on pods only (`enableServiceLinks`; a pod's status).
fn default_template(spec: &mut Map<String, Value>) {
    let (Some(default_pod), _) = pod_functions() else {
        return;
    };
    let Some(template) = spec.get_mut("template").filter(|t| t.is_object()) else {
        return;
    };
    let had_service_links = template.pointer("/spec/enableServiceLinks").is_some();
    let mut pod = pod_of_template(template);
    default_pod(&mut pod);
    let Some(mut pod_spec) = pod.get_mut("spec").map(Value::take) else {
        return;
    };
    if !had_service_links && let Some(pod_spec) = pod_spec.as_object_mut() {
        pod_spec.remove("enableServiceLinks");
    }
    object::ensure_object(template).insert("spec".into(), pod_spec);
}

#[cfg(test)]
mod tests;
