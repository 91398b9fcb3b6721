//! Server-side tables for `kubectl get`: content negotiation on the `Accept` header and
//! rendering objects into `meta.k8s.io` Tables with each kind's columns. kubectl prints
//! cells verbatim, so ages are rendered here.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use ronghe_api_types::table::{Table, TableColumnDefinition, TableRow};
use serde_json::Value;

pub use ronghe_api_types::table::IncludeObject;

use crate::object;
use crate::registry::{Column, ColumnCell, KindSpec};

/// What a client asked for: plain objects, their metadata only, or a Table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rendering {
    Objects,
    /// `PartialObjectMetadata` (and `...List`), as kube-rs's metadata API asks for.
    Metadata,
    /// A `meta.k8s.io/v1` Table (also for clients that offer only `v1beta1`: the two are
    /// the same on the wire).
    Table {
        include: IncludeObject,
    },
}

/// Picks the rendering from the `Accept` header and the `includeObject` parameter.
pub fn negotiate(accept: Option<&str>, include_object: Option<&str>) -> Rendering {
    let Some(accept) = accept else {
        return Rendering::Objects;
    };
    for offer in accept.split(',') {
        let params: Vec<&str> = offer.split(';').map(str::trim).collect();
        let has = |p: &str| params.contains(&p);
        let meta_v1 = has("g=meta.k8s.io") && (has("v=v1") || has("v=v1beta1"));
        if meta_v1 && has("as=Table") {
            let include = IncludeObject::from_query(include_object).unwrap_or_default();
            return Rendering::Table { include };
        }
        if meta_v1 && (has("as=PartialObjectMetadata") || has("as=PartialObjectMetadataList")) {
            return Rendering::Metadata;
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
    include: IncludeObject,
    metadata: ListMeta,
    with_definitions: bool,
) -> Table {
    let columns = columns(kind);
    let column_definitions = if with_definitions {
        columns
            .iter()
            .map(|c| {
                TableColumnDefinition::new(c.name, c.type_)
                    .with_format(c.format)
                    .with_description(c.description)
                    .with_priority(c.priority)
            })
            .collect()
    } else {
        Vec::new()
    };
    let rows = objects
        .iter()
        .map(|o| TableRow {
            cells: columns.iter().map(|c| cell(&c.cell, o)).collect(),
            conditions: Vec::new(),
            object: include.row_object(o),
        })
        .collect();
    Table {
        metadata,
        column_definitions,
        rows,
    }
}

fn cell(cell: &ColumnCell, object: &Value) -> Value {
    match cell {
        ColumnCell::Name => Value::String(object::name(object).unwrap_or_default().to_owned()),
        ColumnCell::Age => Value::String(
            object::meta_str(object, "creationTimestamp")
                .map(age_of)
                .unwrap_or_else(|| "<unknown>".into()),
        ),
        ColumnCell::Text(path) => {
            Value::String(crate::kinds::text(object, path).unwrap_or_default())
        }
        ColumnCell::AgeOf(paths) => Value::String(
            paths
                .iter()
                .find_map(|path| crate::kinds::text(object, path))
                .map_or_else(|| "<unknown>".into(), |at| age_of(&at)),
        ),
        ColumnCell::Value(read) => read(object),
    }
}

/// The age of a timestamp, as kubectl shows it (`45s`, `5m`, `3h2m`).
pub fn age_of(timestamp: &str) -> String {
    match timestamp.parse::<jiff::Timestamp>() {
        Ok(at) => ronghe_api_types::duration::age(at, jiff::Timestamp::now()),
        Err(_) => "<invalid>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KUBECTL_GET: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

    #[test]
    fn negotiates_tables_like_kubectl() {
        assert_eq!(
            negotiate(Some(KUBECTL_GET), None),
            Rendering::Table {
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
            IncludeObject::Metadata,
            ListMeta::default(),
            true,
        );
        let table = serde_json::to_value(&table).expect("serializes");
        assert_eq!(table["kind"], "Table");
        assert_eq!(table["columnDefinitions"][1]["name"], "Data");
        assert_eq!(table["rows"][0]["cells"], json!(["a", 2, "0s"]));
        assert_eq!(table["rows"][0]["object"]["metadata"]["namespace"], "n");
    }
}
