//! Core (`v1`) kinds: Namespace, ConfigMap, Secret, Event, ResourceQuota, Node, Pod.

mod endpoints;
mod node;
mod pod;
pub mod service;

pub use node::{agent_endpoint, condition as node_condition, is_ready as node_is_ready};
pub use pod::requests as pod_requests;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, ResourceQuota, Secret};
use ronghe_api_types::validation::{self, FieldCause, NameRule};
use serde_json::{Map, Value};

use super::{count, text};
use crate::object;
use crate::registry::{Column, KindSpec, Subresources};

/// The finalizer in a namespace's `spec.finalizers` that holds it until its contents are
/// deleted.
pub const NAMESPACE_FINALIZER: &str = "kubernetes";

pub(super) fn kinds() -> Vec<KindSpec> {
    vec![
        namespace(),
        config_map(),
        secret(),
        event(),
        resource_quota(),
        node::kind(),
        pod::kind(),
        service::kind(),
        endpoints::endpoints(),
    ]
}

/// A project's quota: `spec.hard` is set by cloud admins (on this face or through the
/// OpenStack quota APIs); `status` is counted by the server (see `crate::quota`).
fn resource_quota() -> KindSpec {
    KindSpec {
        short_names: &["quota"],
        subresources: Subresources {
            status: true,
            scale: false,
        },
        validate: Some(crate::quota::validate),
        columns: vec![
            Column::name(),
            Column::age(),
            Column::value(
                "Request",
                "string",
                "Used and hard amounts of the limited resources other than limits.",
                |o| crate::quota::table_cell(o, false),
            ),
            Column::value(
                "Limit",
                "string",
                "Used and hard amounts of the limited limits.",
                |o| crate::quota::table_cell(o, true),
            ),
        ],
        ..KindSpec::builtin::<ResourceQuota>()
    }
}

fn namespace() -> KindSpec {
    KindSpec {
        short_names: &["ns"],
        subresources: Subresources {
            status: true,
            scale: false,
        },
        name_rule: NameRule::Dns1123Label,
        default: Some(default_namespace),
        validate: Some(|namespace, _| {
            crate::object::spec_finalizers(namespace)
                .iter()
                .enumerate()
                .filter(|(_, name)| {
                    name.as_str() != NAMESPACE_FINALIZER
                        && (!name.contains('/') || !validation::is_qualified_name(name).is_empty())
                })
                .map(|(index, name)| {
                    FieldCause::invalid(
                        format!("spec.finalizers[{index}]"),
                        name.as_str(),
                        "name is neither a standard finalizer name nor is it fully qualified",
                    )
                })
                .collect()
        }),
        fields: &[("status.phase", |o| text(o, &["status", "phase"]))],
        columns: vec![
            Column::name(),
            Column::text(
                "Status",
                "The status of the namespace.",
                &["status", "phase"],
            ),
            Column::age(),
        ],
        spec_finalizers: true,
        undeletable: &["default", "kube-system", "kube-public"],
        on_deletion: Some(|o| {
            let root = object::ensure_object(o);
            let status = root
                .entry("status")
                .or_insert_with(|| Value::Object(Map::new()));
            object::ensure_object(status)
                .insert("phase".into(), Value::String("Terminating".into()));
        }),
        ..KindSpec::builtin::<Namespace>()
    }
}

/// A live namespace is Active and held by the namespace finalizer until its contents go.
fn default_namespace(namespace: &mut Value) {
    if object::deletion_timestamp(namespace).is_some() {
        return;
    }
    let root = object::ensure_object(namespace);
    let status = object::ensure_object(
        root.entry("status")
            .or_insert_with(|| Value::Object(Map::new())),
    );
    status.insert("phase".into(), Value::String("Active".into()));
    let spec = object::ensure_object(
        root.entry("spec")
            .or_insert_with(|| Value::Object(Map::new())),
    );
    let finalizers = spec
        .entry("finalizers")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(items) = finalizers
        && !items.iter().any(|f| f == NAMESPACE_FINALIZER)
    {
        items.push(Value::String(NAMESPACE_FINALIZER.into()));
    }
    // The name of a namespace is also a label, as in Kubernetes 1.22+.
    if let Some(name) = object::name(namespace).map(str::to_owned) {
        let metadata = object::metadata_mut(namespace);
        let labels = object::ensure_object(
            metadata
                .entry("labels")
                .or_insert_with(|| Value::Object(Map::new())),
        );
        labels.insert("kubernetes.io/metadata.name".into(), Value::String(name));
    }
}

fn config_map() -> KindSpec {
    KindSpec {
        short_names: &["cm"],
        validate: Some(|object, old| {
            let mut causes = data_key_causes(object, "data");
            causes.extend(data_key_causes(object, "binaryData"));
            causes.extend(immutable_causes(object, old, &["data", "binaryData"]));
            causes
        }),
        columns: vec![
            Column::name(),
            Column::value(
                "Data",
                "integer",
                "The number of keys in data and binaryData.",
                |o| Value::from(count(o, &["data"]) + count(o, &["binaryData"])),
            ),
            Column::age(),
        ],
        ..KindSpec::builtin::<ConfigMap>()
    }
}

fn secret() -> KindSpec {
    KindSpec {
        default: Some(default_secret),
        validate: Some(|object, old| {
            let mut causes = data_key_causes(object, "data");
            causes.extend(immutable_causes(object, old, &["data"]));
            if let Some(old) = old
                && object.get("type") != old.get("type")
            {
                causes.push(FieldCause::invalid(
                    "type",
                    object.get("type").cloned().unwrap_or(Value::Null),
                    "field is immutable",
                ));
            }
            causes
        }),
        fields: &[("type", |o| text(o, &["type"]))],
        columns: vec![
            Column::name(),
            Column::text("Type", "The type of the secret.", &["type"]),
            Column::value("Data", "integer", "The number of keys in data.", |o| {
                Value::from(count(o, &["data"]))
            }),
            Column::age(),
        ],
        ..KindSpec::builtin::<Secret>()
    }
}

/// `stringData` is write-only: it is folded into `data` (base64) and never stored.
fn default_secret(secret: &mut Value) {
    let root = object::ensure_object(secret);
    if let Some(Value::Object(string_data)) = root.remove("stringData") {
        let data = object::ensure_object(
            root.entry("data")
                .or_insert_with(|| Value::Object(Map::new())),
        );
        for (key, value) in string_data {
            if let Value::String(value) = value {
                data.insert(key, Value::String(STANDARD.encode(value)));
            }
        }
    }
    root.entry("type")
        .or_insert_with(|| Value::String("Opaque".into()));
}

/// A ConfigMap or Secret marked `immutable: true` keeps its data and the mark for good.
fn immutable_causes(object: &Value, old: Option<&Value>, fields: &[&str]) -> Vec<FieldCause> {
    let Some(old) = old else { return Vec::new() };
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return Vec::new();
    }
    let mut causes = Vec::new();
    if object.get("immutable").and_then(Value::as_bool) != Some(true) {
        causes.push(FieldCause::forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    for field in fields {
        if object.get(*field) != old.get(*field) {
            causes.push(FieldCause::forbidden(
                *field,
                "field is immutable when `immutable` is set",
            ));
        }
    }
    causes
}

/// `kind/name` of the object an event is about, as kubectl shows it.
pub(super) fn object_ref(event: &Value, field: &str) -> Value {
    let kind = text(event, &[field, "kind"])
        .unwrap_or_default()
        .to_ascii_lowercase();
    let name = text(event, &[field, "name"]).unwrap_or_default();
    Value::String(format!("{kind}/{name}"))
}

fn data_key_causes(object: &Value, field: &str) -> Vec<FieldCause> {
    let Some(data) = object.get(field).and_then(Value::as_object) else {
        return Vec::new();
    };
    data.keys()
        .flat_map(|key| {
            validation::is_config_map_key(key)
                .into_iter()
                .map(move |message| {
                    FieldCause::invalid(format!("{field}[{key}]"), key.as_str(), message)
                })
        })
        .collect()
}

fn event() -> KindSpec {
    KindSpec {
        short_names: &["ev"],
        fields: &[
            ("involvedObject.kind", |o| {
                text(o, &["involvedObject", "kind"])
            }),
            ("involvedObject.namespace", |o| {
                text(o, &["involvedObject", "namespace"])
            }),
            ("involvedObject.name", |o| {
                text(o, &["involvedObject", "name"])
            }),
            ("involvedObject.uid", |o| {
                text(o, &["involvedObject", "uid"])
            }),
            ("involvedObject.apiVersion", |o| {
                text(o, &["involvedObject", "apiVersion"])
            }),
            ("involvedObject.resourceVersion", |o| {
                text(o, &["involvedObject", "resourceVersion"])
            }),
            ("involvedObject.fieldPath", |o| {
                text(o, &["involvedObject", "fieldPath"])
            }),
            ("reason", |o| text(o, &["reason"])),
            ("reportingComponent", |o| text(o, &["reportingComponent"])),
            ("source", |o| text(o, &["source", "component"])),
            ("type", |o| text(o, &["type"])),
        ],
        columns: super::event_columns(
            &[
                &["lastTimestamp"],
                &["eventTime"],
                &["metadata", "creationTimestamp"],
            ],
            |o| object_ref(o, "involvedObject"),
            &["message"],
        ),
        ..KindSpec::builtin::<Event>()
    }
}
