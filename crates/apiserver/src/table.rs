//! Server-side tables for `kubectl get`: content negotiation on the `Accept` header and
//! rendering objects into `meta.k8s.io` Tables with each kind's columns. kubectl prints
//! cells verbatim, so ages are rendered here.

use serde_json::{Map, Value, json};

use crate::object;
use crate::registry::{Column, ColumnCell, KindSpec};

/// What a client asked for: plain objects, or a Table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rendering {
    Objects,
    Table {
        /// `meta.k8s.io/v1` or `meta.k8s.io/v1beta1`.
        api_version: &'static str,
        include: IncludeObject,
    },
}

/// What each row carries besides its cells (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

/// Picks the rendering from the `Accept` header and the `includeObject` parameter.
pub fn negotiate(accept: Option<&str>, include_object: Option<&str>) -> Rendering {
    let Some(accept) = accept else {
        return Rendering::Objects;
    };
    for offer in accept.split(',') {
        let params: Vec<&str> = offer.split(';').map(str::trim).collect();
        let has = |p: &str| params.contains(&p);
        if has("as=Table") && has("g=meta.k8s.io") {
            let api_version = if has("v=v1") {
                "meta.k8s.io/v1"
            } else if has("v=v1beta1") {
                "meta.k8s.io/v1beta1"
            } else {
                continue;
            };
            let include = match include_object {
                Some("None") => IncludeObject::None,
                Some("Object") => IncludeObject::Object,
                _ => IncludeObject::Metadata,
            };
            return Rendering::Table {
                api_version,
                include,
            };
        }
        if params
            .first()
            .is_some_and(|t| *t == "application/json" || *t == "*/*")
        {
            return Rendering::Objects;
        }
    }
    Rendering::Objects
}

/// The kind's columns, or the default Name and Age.
fn columns(kind: &KindSpec) -> Vec<Column> {
    if kind.columns.is_empty() {
        vec![Column::name(), Column::age()]
    } else {
        kind.columns.clone()
    }
}

/// Renders objects as a Table. `with_definitions` is false for watch events after the
/// first, which carry rows only.
pub fn render(
    kind: &KindSpec,
    objects: &[Value],
    api_version: &str,
    include: IncludeObject,
    list_metadata: Map<String, Value>,
    with_definitions: bool,
) -> Value {
    let columns = columns(kind);
    let definitions: Vec<Value> = if with_definitions {
        columns
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.type_,
                    "format": c.format,
                    "description": c.description,
                    "priority": c.priority,
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells: Vec<Value> = columns.iter().map(|c| cell(&c.cell, o)).collect();
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells));
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row.insert("object".into(), partial_object_metadata(o));
                }
                IncludeObject::Object => {
                    row.insert("object".into(), o.clone());
                }
            }
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": api_version,
        "metadata": list_metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

fn cell(cell: &ColumnCell, object: &Value) -> Value {
    match cell {
        ColumnCell::Name => Value::String(object::name(object).unwrap_or_default().to_owned()),
        ColumnCell::Age => Value::String(
            object::meta_str(object, "creationTimestamp")
                .map(age_of)
                .unwrap_or_else(|| "<unknown>".into()),
        ),
        ColumnCell::Value(read) => read(object),
    }
}

/// An object's metadata wrapped as `PartialObjectMetadata`.
pub fn partial_object_metadata(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// The age of a timestamp, as kubectl shows it (`45s`, `5m`, `3h2m`).
pub fn age_of(timestamp: &str) -> String {
    match timestamp.parse::<jiff::Timestamp>() {
        Ok(at) => {
            let seconds = jiff::Timestamp::now().as_second() - at.as_second();
            ronghe_api_types::duration::human_duration(std::time::Duration::from_secs(
                seconds.max(0).unsigned_abs(),
            ))
        }
        Err(_) => "<invalid>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL_GET: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

    #[test]
    fn negotiates_tables_like_kubectl() {
        assert_eq!(
            negotiate(Some(KUBECTL_GET), None),
            Rendering::Table {
                api_version: "meta.k8s.io/v1",
                include: IncludeObject::Metadata
            }
        );
        assert_eq!(
            negotiate(Some("application/json"), None),
            Rendering::Objects
        );
        assert_eq!(negotiate(None, None), Rendering::Objects);
        assert_eq!(
            negotiate(Some(KUBECTL_GET), Some("Object")),
            Rendering::Table {
                api_version: "meta.k8s.io/v1",
                include: IncludeObject::Object
            }
        );
    }

    #[test]
    fn renders_default_columns_with_metadata() {
        let registry = crate::kinds::builtin_registry().expect("registry");
        let kind = registry.lookup("", "v1", "configmaps").expect("configmaps");
        let object = json!({"metadata": {"name": "a", "namespace": "n", "creationTimestamp": object::now_rfc3339()}, "data": {"x": "1", "y": "2"}});
        let table = render(
            kind,
            &[object],
            "meta.k8s.io/v1",
            IncludeObject::Metadata,
            Map::new(),
            true,
        );
        assert_eq!(table["columnDefinitions"][1]["name"], "Data");
        assert_eq!(table["rows"][0]["cells"], json!(["a", 2, "0s"]));
        assert_eq!(table["rows"][0]["object"]["metadata"]["namespace"], "n");
    }
}
