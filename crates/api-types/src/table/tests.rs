//! Wire-shape tests for tables and partial object metadata.

use serde_json::json;

use super::*;

fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"nodeName": "node-1"}
    })
}

#[test]
fn table_serializes_like_the_reference() {
    let table = Table {
        metadata: ListMeta {
            resource_version: Some("107".to_owned()),
            ..ListMeta::default()
        },
        column_definitions: vec![
            TableColumnDefinition::new("Name", "string").with_format("name"),
            TableColumnDefinition::new("Node", "string").with_priority(1),
        ],
        rows: vec![TableRow {
            cells: vec![json!("web-1"), json!("node-1")],
            conditions: Vec::new(),
            object: IncludeObject::default().row_object(&pod()),
        }],
    };
    assert_eq!(
        serde_json::to_string(&table).expect("serializes"),
        concat!(
            r#"{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"107"},"#,
            r#""columnDefinitions":[{"name":"Name","type":"string","format":"name","description":"","priority":0},"#,
            r#"{"name":"Node","type":"string","format":"","description":"","priority":1}],"#,
            r#""rows":[{"cells":["web-1","node-1"],"object":{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","#,
            r#""metadata":{"name":"web-1","namespace":"default","labels":{"app":"web"}}}}]}"#
        )
    );
    let back: Table = serde_json::from_value(serde_json::to_value(&table).expect("serializes"))
        .expect("deserializes");
    assert_eq!(back, table);
}

#[test]
fn include_object_policies() {
    let cases = [
        (None, Ok(IncludeObject::Metadata)),
        (Some(""), Ok(IncludeObject::Metadata)),
        (Some("PartialObjectMetadata"), Ok(IncludeObject::Metadata)),
        (Some("None"), Ok(IncludeObject::None)),
        (Some("Object"), Ok(IncludeObject::Object)),
        (
            Some("object"),
            Err("unrecognized includeObject value: \"object\"".to_owned()),
        ),
    ];
    for (query, want) in cases {
        let got = IncludeObject::from_query(query).map_err(|error| error.to_string());
        assert_eq!(got, want, "query {query:?}");
    }
    assert_eq!(IncludeObject::Object.row_object(&pod()), pod());
    assert_eq!(IncludeObject::None.row_object(&pod()), Value::Null);
    let row = TableRow {
        cells: vec![json!("web-1")],
        conditions: vec![],
        object: Value::Null,
    };
    assert_eq!(
        serde_json::to_value(&row).expect("serializes"),
        json!({"cells": ["web-1"]})
    );
}

#[test]
fn row_conditions_serialize_with_type() {
    let row = TableRow {
        cells: vec![],
        conditions: vec![TableRowCondition {
            type_: "Completed".to_owned(),
            status: "True".to_owned(),
            reason: String::new(),
            message: String::new(),
        }],
        object: Value::Null,
    };
    assert_eq!(
        serde_json::to_value(&row).expect("serializes"),
        json!({"cells": [], "conditions": [{"type": "Completed", "status": "True"}]})
    );
}

#[test]
fn partial_object_metadata_shapes() {
    let partial = PartialObjectMetadata::from_object(&pod());
    assert_eq!(
        serde_json::to_value(&partial).expect("serializes"),
        partial.to_value()
    );
    assert_eq!(
        PartialObjectMetadata::from_object(&json!({})).to_value(),
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": {}})
    );
    let list = PartialObjectMetadataList {
        metadata: ListMeta {
            resource_version: Some("9".to_owned()),
            continue_: Some("token".to_owned()),
            ..ListMeta::default()
        },
        items: vec![partial],
    };
    let value = serde_json::to_value(&list).expect("serializes");
    assert_eq!(value["kind"], "PartialObjectMetadataList");
    assert_eq!(
        value["metadata"],
        json!({"continue": "token", "resourceVersion": "9"})
    );
    assert_eq!(value["items"][0]["metadata"]["name"], "web-1");
}

#[test]
fn standard_columns() {
    assert_eq!(TableColumnDefinition::name_column().format, "name");
    assert_eq!(TableColumnDefinition::age_column().name, "Age");
    assert_eq!(TableColumnDefinition::age_column().type_, "string");
}
