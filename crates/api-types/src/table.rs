//! `meta.k8s.io/v1` `Table`, which `kubectl get` asks for and prints verbatim, and
//! `PartialObjectMetadata`, which each row carries (and kube-rs's metadata-only API lists).
//!
//! `Table` and `PartialObjectMetadata` always serialize their `kind` and `apiVersion`;
//! deserializing ignores them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::quote::go_quote;

/// The apiVersion of `Table` and `PartialObjectMetadata`.
pub const META_API_VERSION: &str = "meta.k8s.io/v1";

/// A server-rendered table.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Table {
    /// `resourceVersion` (where a following watch starts) and `continue`.
    #[serde(default)]
    pub metadata: ListMeta,
    /// Column headers. kubectl shows priority-0 columns always, others with `-o wide`.
    #[serde(default)]
    pub column_definitions: Vec<TableColumnDefinition>,
    /// One row per object.
    #[serde(default)]
    pub rows: Vec<TableRow>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TableWire<'a> {
    kind: &'static str,
    api_version: &'static str,
    metadata: &'a ListMeta,
    column_definitions: &'a [TableColumnDefinition],
    rows: &'a [TableRow],
}

impl Serialize for Table {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        TableWire {
            kind: "Table",
            api_version: META_API_VERSION,
            metadata: &self.metadata,
            column_definitions: &self.column_definitions,
            rows: &self.rows,
        }
        .serialize(serializer)
    }
}

/// One column header. All five fields are always serialized, as Go does.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TableColumnDefinition {
    /// Header text (kubectl upper-cases it).
    pub name: String,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean` or `date`.
    #[serde(rename = "type")]
    pub type_: String,
    /// OpenAPI format hint; `name` marks the name column.
    #[serde(default)]
    pub format: String,
    /// Description shown by `kubectl explain`-like tools.
    #[serde(default)]
    pub description: String,
    /// 0 for default columns, higher for `-o wide` only.
    #[serde(default)]
    pub priority: i32,
}

impl TableColumnDefinition {
    /// A priority-0 column of `type_` with no format or description.
    pub fn new(name: impl Into<String>, type_: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            type_: type_.into(),
            ..Self::default()
        }
    }

    /// Sets the format hint.
    pub fn with_format(mut self, format: impl Into<String>) -> Self {
        self.format = format.into();
        self
    }

    /// Sets the description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Sets the priority (1 and above show only with `-o wide`).
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// The standard `Name` column.
    pub fn name_column() -> Self {
        Self::new("Name", "string")
            .with_format("name")
            .with_description("Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
    }

    /// The standard `Age` column; fill its cells with [`crate::duration::age`].
    pub fn age_column() -> Self {
        Self::new("Age", "string")
            .with_description("CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.")
    }
}

/// One row: printed cells plus the object (or its metadata) the row describes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TableRow {
    /// One value per column, printed verbatim by kubectl.
    pub cells: Vec<Value>,
    /// Row conditions, e.g. `Completed` for finished pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<TableRowCondition>,
    /// `PartialObjectMetadata` by default, the full object for `includeObject=Object`, or
    /// `null` (omitted) for `includeObject=None`.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub object: Value,
}

/// `metav1.TableRowCondition`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TableRowCondition {
    /// The condition type, e.g. `Completed`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable reason.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// What each row's `object` holds, from the `includeObject` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IncludeObject {
    /// `None`: no object.
    None,
    /// `PartialObjectMetadata` (the default): the object's metadata only.
    #[default]
    Metadata,
    /// `Object`: the full object (kubectl `--sort-by` asks for it).
    Object,
}

/// An `includeObject` value the server does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unrecognized includeObject value: {}", go_quote(value))]
pub struct UnknownIncludeObject {
    /// The value as sent.
    pub value: String,
}

impl IncludeObject {
    /// Reads the `includeObject` query parameter; absent or empty means the default.
    pub fn from_query(value: Option<&str>) -> Result<Self, UnknownIncludeObject> {
        match value.unwrap_or("") {
            "" | "PartialObjectMetadata" => Ok(Self::Metadata),
            "None" => Ok(Self::None),
            "Object" => Ok(Self::Object),
            other => Err(UnknownIncludeObject {
                value: other.to_owned(),
            }),
        }
    }

    /// The `object` of a row describing `object`.
    pub fn row_object(self, object: &Value) -> Value {
        match self {
            Self::None => Value::Null,
            Self::Metadata => PartialObjectMetadata::from_object(object).to_value(),
            Self::Object => object.clone(),
        }
    }
}

/// `{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{...}}`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct PartialObjectMetadata {
    /// The object's `metadata`, verbatim.
    #[serde(default)]
    pub metadata: Value,
}

impl PartialObjectMetadata {
    /// Wraps a metadata value.
    pub fn new(metadata: Value) -> Self {
        Self { metadata }
    }

    /// Takes the `metadata` of a full object (an empty object if it has none).
    pub fn from_object(object: &Value) -> Self {
        let metadata = object
            .get("metadata")
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new()));
        Self { metadata }
    }

    /// The wire form as a JSON value.
    pub fn to_value(&self) -> Value {
        let mut object = Map::with_capacity(3);
        object.insert("kind".to_owned(), "PartialObjectMetadata".into());
        object.insert("apiVersion".to_owned(), META_API_VERSION.into());
        object.insert("metadata".to_owned(), self.metadata.clone());
        Value::Object(object)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PartialObjectMetadataWire<'a> {
    kind: &'static str,
    api_version: &'static str,
    metadata: &'a Value,
}

impl Serialize for PartialObjectMetadata {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        PartialObjectMetadataWire {
            kind: "PartialObjectMetadata",
            api_version: META_API_VERSION,
            metadata: &self.metadata,
        }
        .serialize(serializer)
    }
}

/// `PartialObjectMetadataList`, answered to
/// `Accept: application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct PartialObjectMetadataList {
    /// `resourceVersion` and `continue`.
    #[serde(default)]
    pub metadata: ListMeta,
    /// One entry per object.
    #[serde(default)]
    pub items: Vec<PartialObjectMetadata>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PartialObjectMetadataListWire<'a> {
    kind: &'static str,
    api_version: &'static str,
    metadata: &'a ListMeta,
    items: &'a [PartialObjectMetadata],
}

impl Serialize for PartialObjectMetadataList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        PartialObjectMetadataListWire {
            kind: "PartialObjectMetadataList",
            api_version: META_API_VERSION,
            metadata: &self.metadata,
            items: &self.items,
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests;
