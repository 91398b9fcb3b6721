//! A minimal server-side apply (`application/apply-patch+yaml`): merges an applied
//! configuration into the live object, using the schema's list types.
//!
//! What it does: maps merge recursively; `null` unsets a field; lists the schema marks as
//! list-maps merge item by item on their keys and sets gain the applied values; every other
//! list, and every field the schema does not describe, is replaced by the applied value.
//!
//! What it does not do yet (structured-merge-diff does all of these):
//! - field ownership: no `managedFields` are computed or recorded, so a field that a manager
//!   stops applying is left in place instead of being removed, and list items or set values
//!   can only be added or changed, never dropped, by apply;
//! - conflicts between managers (409 `FieldManagerConflict`) and `force`;
//! - atomic maps and structs (`x-kubernetes-map-type: atomic`, such as `spec.selector`):
//!   they are merged like any map;
//! - defaulting of list-map keys: an applied item that omits a key the live item has (a
//!   port without `protocol`) matches on the keys it does give.
//!
//! The walk goes through `Merge`, one method per kind of node, so that ownership can be
//! collected and checked at each node later without changing `apply`'s callers.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::key::canonical;
use crate::schema::{FieldSchema, ListType, TypeSchema, field_of};

/// Merges the applied configuration `applied` into `live` and returns the result.
///
/// `schema` is the kind's schema (see [`crate::builtin_schema`] and
/// [`crate::custom_resource_schema`]); with `None` every list is replaced. An `applied` that
/// is not an object replaces `live` (the API server rejects such bodies before calling this).
pub fn apply(live: &Value, applied: &Value, schema: Option<&TypeSchema>) -> Value {
    Merge.value(Some(live), applied, schema, None)
}

/// The merge walk. Stateless today; field ownership will live here.
struct Merge;

impl Merge {
    /// Merges an applied value into the live value of one field (or list item).
    fn value(
        &self,
        live: Option<&Value>,
        applied: &Value,
        schema: Option<&TypeSchema>,
        field: Option<&FieldSchema>,
    ) -> Value {
        match applied {
            Value::Object(applied) => {
                let live = match live {
                    Some(Value::Object(live)) => Some(live),
                    _ => None,
                };
                Value::Object(self.object(live, applied, schema))
            }
            Value::Array(applied) => {
                let live = match live {
                    Some(Value::Array(live)) => live.as_slice(),
                    _ => &[],
                };
                let list_type = field.map_or(ListType::Atomic, |field| field.list_type);
                Value::Array(self.list(live, applied, list_type, schema))
            }
            scalar => scalar.clone(),
        }
    }

    fn object(
        &self,
        live: Option<&Map<String, Value>>,
        applied: &Map<String, Value>,
        schema: Option<&TypeSchema>,
    ) -> Map<String, Value> {
        let mut merged = live.cloned().unwrap_or_default();
        for (key, value) in applied {
            if value.is_null() {
                merged.shift_remove(key);
                continue;
            }
            let field = field_of(schema, key);
            let child = field.and_then(|field| field.child);
            let new = self.value(merged.get(key), value, child, field);
            merged.insert(key.clone(), new);
        }
        merged
    }

    /// Merges an applied list; `schema` describes its items.
    fn list(
        &self,
        live: &[Value],
        applied: &[Value],
        list_type: ListType,
        schema: Option<&TypeSchema>,
    ) -> Vec<Value> {
        match list_type {
            ListType::Atomic => applied
                .iter()
                .map(|item| self.value(None, item, schema, None))
                .collect(),
            ListType::Set => {
                let mut seen: HashSet<String> = live.iter().map(canonical).collect();
                let mut merged = live.to_vec();
                for item in applied {
                    if seen.insert(canonical(item)) {
                        merged.push(item.clone());
                    }
                }
                merged
            }
            ListType::Map(keys) => {
                let mut merged = live.to_vec();
                for item in applied {
                    match find_item(&merged, item, keys) {
                        Some(position) => {
                            let new = self.value(Some(&merged[position]), item, schema, None);
                            merged[position] = new;
                        }
                        None => merged.push(self.value(None, item, schema, None)),
                    }
                }
                merged
            }
        }
    }
}

/// The position of the live item that `applied` names by `keys`: one that agrees on every
/// key if there is one, else one that agrees on every key both give (see the module notes
/// on defaulting). The first key must be given by both.
fn find_item(live: &[Value], applied: &Value, keys: &[&str]) -> Option<usize> {
    let first = *keys.first()?;
    let wanted = applied.get(first).filter(|value| !value.is_null())?;
    let candidates = || {
        live.iter()
            .enumerate()
            .filter(move |(_, item)| item.get(first).is_some_and(|value| same(value, wanted)))
    };
    let agrees = |item: &Value, lenient: bool| {
        keys.iter()
            .all(|key| match (item.get(key), applied.get(key)) {
                (Some(live), Some(applied)) => same(live, applied),
                (None, None) => true,
                _ => lenient,
            })
    };
    candidates()
        .find(|(_, item)| agrees(item, false))
        .or_else(|| candidates().find(|(_, item)| agrees(item, true)))
        .map(|(position, _)| position)
}

fn same(left: &Value, right: &Value) -> bool {
    canonical(left) == canonical(right)
}

#[cfg(test)]
mod tests {
    use super::apply;
    use crate::builtin_schema;
    use serde_json::json;

    fn deployment() -> serde_json::Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "u-1",
                         "labels": {"app": "web"}, "finalizers": ["a.example.com/x"]},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [
                        {"name": "nginx", "image": "nginx:1.27",
                         "ports": [{"containerPort": 80, "protocol": "TCP"}],
                         "env": [{"name": "A", "value": "1"}]},
                        {"name": "sidecar", "image": "busybox"}
                    ], "tolerations": [{"key": "a", "operator": "Exists"}]}
                }
            },
            "status": {"replicas": 1}
        })
    }

    #[test]
    fn merges_maps_and_list_maps_by_key() {
        let schema = builtin_schema("apps/v1", "Deployment");
        let applied = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"tier": "fe"}},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [
                {"name": "nginx", "image": "nginx:1.28",
                 "ports": [{"containerPort": 80}],
                 "env": [{"name": "B", "value": "2"}]}
            ]}}}
        });
        let merged = apply(&deployment(), &applied, schema);
        assert_eq!(
            merged["metadata"]["labels"],
            json!({"app": "web", "tier": "fe"})
        );
        assert_eq!(merged["metadata"]["uid"], "u-1");
        assert_eq!(merged["spec"]["replicas"], 3);
        let containers = &merged["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers.as_array().map(Vec::len), Some(2));
        assert_eq!(containers[0]["image"], "nginx:1.28");
        // The port without `protocol` matched the defaulted live port.
        assert_eq!(
            containers[0]["ports"],
            json!([{"containerPort": 80, "protocol": "TCP"}])
        );
        assert_eq!(
            containers[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        );
        assert_eq!(containers[1]["name"], "sidecar");
        assert_eq!(merged["status"], json!({"replicas": 1}));
    }

    #[test]
    fn replaces_atomic_lists_and_unions_sets() {
        let schema = builtin_schema("apps/v1", "Deployment");
        let applied = json!({
            "metadata": {"finalizers": ["b.example.com/y", "a.example.com/x"]},
            "spec": {"template": {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}}
        });
        let merged = apply(&deployment(), &applied, schema);
        assert_eq!(
            merged["metadata"]["finalizers"],
            json!(["a.example.com/x", "b.example.com/y"])
        );
        assert_eq!(
            merged["spec"]["template"]["spec"]["tolerations"],
            json!([{"key": "b", "operator": "Exists"}])
        );
    }

    #[test]
    fn null_unsets_and_no_schema_replaces_lists() {
        let applied = json!({
            "metadata": {"labels": null},
            "spec": {"template": {"spec": {"containers": [{"name": "only"}]}}}
        });
        let merged = apply(&deployment(), &applied, None);
        assert!(merged["metadata"].get("labels").is_none());
        assert_eq!(
            merged["spec"]["template"]["spec"]["containers"],
            json!([{"name": "only"}])
        );
    }

    #[test]
    fn creates_from_nothing_without_nulls() {
        let applied = json!({"kind": "ConfigMap", "data": {"a": "1", "b": null}});
        let merged = apply(&json!({}), &applied, builtin_schema("v1", "ConfigMap"));
        assert_eq!(merged, json!({"kind": "ConfigMap", "data": {"a": "1"}}));
    }

    #[test]
    fn service_ports_with_the_same_port_keep_their_protocols() {
        let live = json!({"spec": {"ports": [
            {"port": 53, "protocol": "TCP", "name": "dns-tcp"},
            {"port": 53, "protocol": "UDP", "name": "dns"}
        ]}});
        let applied =
            json!({"spec": {"ports": [{"port": 53, "protocol": "UDP", "name": "dns-udp"}]}});
        let merged = apply(&live, &applied, builtin_schema("v1", "Service"));
        assert_eq!(merged["spec"]["ports"][0]["name"], "dns-tcp");
        assert_eq!(merged["spec"]["ports"][1]["name"], "dns-udp");
    }
}
