//! Joins the k8s-pb and k8s-openapi models into the table the codec decodes with: for every
//! message reachable from a top-level kind, each protobuf tag with its exact Kubernetes JSON
//! field name, wire type, cardinality and presence rule. Every mismatch between the two crates
//! fails generation, so a new Kubernetes version cannot silently produce wrong JSON.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

use anyhow::{Context, bail};

use crate::go_presence::{POINTER_STRINGS_KEPT_WHEN_EMPTY, VALUE_SCALARS_OMITTED_WHEN_ZERO};
use crate::openapi_model::{OpenapiField, OpenapiModel, OpenapiType, Shape};
use crate::protobuf_model::{
    Cardinality, ProtobufField, ProtobufMessage, ProtobufModel, Scalar, ValueType,
};
use crate::sources::CrateSources;

/// Messages whose JSON form is not an object of their fields. Each has code of its own in
/// `src/convert/special.rs`, which relies on the tags listed here.
struct Special {
    message: &'static str,
    name: &'static str,
    /// (tag, protobuf field name) pairs the runtime code reads.
    fields: &'static [(u32, &'static str)],
}

const SPECIALS: &[Special] = &[
    Special {
        message: "apimachinery.pkg.apis.meta.v1.Time",
        name: "time",
        fields: &[(1, "seconds"), (2, "nanos")],
    },
    Special {
        message: "apimachinery.pkg.apis.meta.v1.MicroTime",
        name: "micro_time",
        fields: &[(1, "seconds"), (2, "nanos")],
    },
    Special {
        message: "apimachinery.pkg.apis.meta.v1.Duration",
        name: "duration",
        fields: &[(1, "duration")],
    },
    Special {
        message: "apimachinery.pkg.util.intstr.IntOrString",
        name: "int_or_string",
        fields: &[(1, "type"), (2, "int_val"), (3, "str_val")],
    },
    Special {
        message: "apimachinery.pkg.api.resource.Quantity",
        name: "quantity",
        fields: &[(1, "string")],
    },
    Special {
        message: "apimachinery.pkg.runtime.RawExtension",
        name: "raw_json",
        fields: &[(1, "raw")],
    },
    Special {
        message: "apimachinery.pkg.apis.meta.v1.FieldsV1",
        name: "raw_json",
        fields: &[(1, "raw")],
    },
    Special {
        message: "apiextensions_apiserver.pkg.apis.apiextensions.v1.Json",
        name: "raw_json",
        fields: &[(1, "raw")],
    },
    Special {
        message: "apiextensions_apiserver.pkg.apis.apiextensions.v1.JsonSchemaPropsOrArray",
        name: "schema_or_array",
        fields: &[(1, "schema"), (2, "j_son_schemas")],
    },
    Special {
        message: "apiextensions_apiserver.pkg.apis.apiextensions.v1.JsonSchemaPropsOrBool",
        name: "schema_or_bool",
        fields: &[(1, "allows"), (2, "schema")],
    },
    Special {
        message: "apiextensions_apiserver.pkg.apis.apiextensions.v1.JsonSchemaPropsOrStringArray",
        name: "schema_or_string_array",
        fields: &[(1, "schema"), (2, "property")],
    },
];

/// Name of the special for single-list wrapper messages (`ExtraValue`, `Verbs`): Go slices that
/// protobuf wraps in a message with one repeated `items` field, and JSON writes as an array.
const ITEMS_SPECIAL: &str = "items";

struct Rendered {
    special: Option<&'static str>,
    lines: Vec<String>,
}

pub fn generate(sources: &CrateSources) -> anyhow::Result<String> {
    let protobuf = crate::protobuf_model::read(&sources.protobuf_src)?;
    let openapi = OpenapiModel::new(&sources.openapi_src)?;
    let by_lower_name = protobuf
        .messages
        .keys()
        .map(|name| (name.to_lowercase(), name.clone()))
        .collect::<BTreeMap<_, _>>();

    let mut kinds = BTreeMap::new();
    for (openapi_name, (api_version, kind)) in openapi.resources()? {
        let Some(message) = by_lower_name.get(&openapi_name.to_lowercase()) else {
            continue;
        };
        if let Some(declared) = protobuf.resources.get(message)
            && declared != &(api_version.clone(), kind.clone())
        {
            bail!("{message}: k8s-pb says {declared:?}, k8s-openapi says {api_version} {kind}");
        }
        kinds.insert((api_version, kind), message.clone());
    }
    if kinds.len() < 50 {
        bail!(
            "only {} kinds found; did the k8s-openapi layout change?",
            kinds.len()
        );
    }

    let mut generator = Generator {
        openapi_module: sources.openapi_module,
        protobuf: &protobuf,
        openapi: &openapi,
        rendered: BTreeMap::new(),
        queue: kinds.values().cloned().collect(),
        presence_entries_used: BTreeSet::new(),
        problems: Vec::new(),
    };
    generator.run()?;
    if !generator.problems.is_empty() {
        bail!(
            "k8s-pb and k8s-openapi disagree:\n  {}",
            generator.problems.join("\n  ")
        );
    }
    let unused = VALUE_SCALARS_OMITTED_WHEN_ZERO
        .iter()
        .chain(POINTER_STRINGS_KEPT_WHEN_EMPTY)
        .filter(|entry| !generator.presence_entries_used.contains(**entry))
        .collect::<Vec<_>>();
    if !unused.is_empty() {
        bail!("go_presence.rs entries that match no field: {unused:?}");
    }
    let mut out = String::new();
    writeln!(
        out,
        "# Protobuf-to-JSON schema of the Kubernetes API, read by ronghe-codec (src/schema.rs)."
    )?;
    writeln!(
        out,
        "# Generated from k8s-pb {} and k8s-openapi {} ({}) by",
        sources.protobuf_version, sources.openapi_version, sources.openapi_module
    )?;
    writeln!(
        out,
        "#   cargo test -p ronghe-codec --test schema_table -- --ignored regenerate_schema_table"
    )?;
    writeln!(out, "# Do not edit by hand. Lines:")?;
    writeln!(out, "#   kind <apiVersion> <kind> <message>")?;
    writeln!(out, "#   message <name> [<special>]")?;
    writeln!(
        out,
        "#   field <tag> <json name> <one|list|map> <string|int32|int64|bool|double|bytes|message> <required|optional|omitempty|inline> [<message>]"
    )?;
    writeln!(
        out,
        "# An inline field (a Go embedded struct) has json name '-': its fields go into the parent."
    )?;
    writeln!(
        out,
        "# Map keys are always strings. optional: written when on the wire, zero included;"
    )?;
    writeln!(
        out,
        "# required: the same, but an empty list or map is written too; omitempty: written when"
    )?;
    writeln!(out, "# on the wire and not zero or empty.")?;
    for ((api_version, kind), message) in &kinds {
        writeln!(out, "kind {api_version} {kind} {message}")?;
    }
    for (name, rendered) in &generator.rendered {
        match rendered.special {
            Some(special) => writeln!(out, "message {name} {special}")?,
            None => writeln!(out, "message {name}")?,
        }
        for line in &rendered.lines {
            writeln!(out, "{line}")?;
        }
    }
    Ok(out)
}

struct Generator<'a> {
    openapi_module: &'static str,
    protobuf: &'a ProtobufModel,
    openapi: &'a OpenapiModel,
    rendered: BTreeMap<String, Rendered>,
    queue: VecDeque<String>,
    presence_entries_used: BTreeSet<String>,
    problems: Vec<String>,
}

impl Generator<'_> {
    fn run(&mut self) -> anyhow::Result<()> {
        while let Some(name) = self.queue.pop_front() {
            if self.rendered.contains_key(&name) {
                continue;
            }
            let message = self
                .protobuf
                .messages
                .get(&name)
                .with_context(|| format!("message {name} is referenced but not defined"))?;
            let rendered = match SPECIALS.iter().find(|special| special.message == name) {
                Some(special) => self.render_special(message, special)?,
                None => self.render_plain(message)?,
            };
            self.rendered.insert(name, rendered);
        }
        Ok(())
    }

    fn render_special(
        &mut self,
        message: &ProtobufMessage,
        special: &Special,
    ) -> anyhow::Result<Rendered> {
        let actual = message
            .fields
            .iter()
            .map(|field| (field.tag, field.rust_name.as_str()))
            .collect::<Vec<_>>();
        if actual != special.fields {
            bail!(
                "special message {} has fields {actual:?}, the codec expects {:?}",
                special.message,
                special.fields
            );
        }
        let lines = message
            .fields
            .iter()
            .map(|field| self.render_raw_field(field))
            .collect();
        Ok(Rendered {
            special: Some(special.name),
            lines,
        })
    }

    /// A field of a special message, named as in the proto (the runtime reads it by tag).
    fn render_raw_field(&mut self, field: &ProtobufField) -> String {
        let (value, message) = match &field.value {
            ValueType::Scalar(scalar) => (scalar.table_name(), String::new()),
            ValueType::Message(name) => {
                self.queue.push_back(name.clone());
                ("message", format!(" {name}"))
            }
        };
        format!(
            "field {} {} {} {value} optional{message}",
            field.tag,
            field.rust_name,
            cardinality_name(field.cardinality)
        )
    }

    fn render_plain(&mut self, message: &ProtobufMessage) -> anyhow::Result<Rendered> {
        let full = crate::protobuf_model::full_name(&message.module, &message.name);
        let openapi_fields = match self.openapi.find(&message.module, &message.name)? {
            Some(OpenapiType::Struct(fields)) => fields,
            // k8s-openapi models empty structs (`StorageVersionSpec`) as a JSON value.
            Some(OpenapiType::Opaque) if message.fields.is_empty() => Vec::new(),
            Some(OpenapiType::Opaque) => {
                self.problems.push(format!(
                    "{full}: k8s-openapi models it with custom serde; add it to SPECIALS"
                ));
                Vec::new()
            }
            None => {
                self.problems
                    .push(format!("{full}: no k8s-openapi type of that name"));
                Vec::new()
            }
        };
        let mut by_normalized = BTreeMap::new();
        for field in &openapi_fields {
            if by_normalized
                .insert(normalize(&field.json_name), field.clone())
                .is_some()
            {
                bail!("{full}: two JSON fields normalize to the same name");
            }
        }
        let mut matched = BTreeSet::new();
        let mut lines = self.render_fields(&full, message, &by_normalized, &mut matched)?;
        for openapi_field in &openapi_fields {
            // Go's TypeMeta is not in the protobuf form of nested objects (DeleteOptions).
            let type_meta = matches!(openapi_field.json_name.as_str(), "apiVersion" | "kind");
            if !matched.contains(&openapi_field.json_name) && !type_meta {
                // A field that a later Kubernetes removed from an alpha API: it can never
                // arrive in protobuf, so it does not affect decoding; noted for reviewers.
                lines.push(format!(
                    "# JSON field {} has no protobuf tag in k8s-pb",
                    openapi_field.json_name
                ));
            }
        }
        Ok(Rendered {
            special: None,
            lines,
        })
    }

    /// Renders the fields of `message` against the JSON fields of the object it is written into.
    /// A message field with no JSON field of its own whose fields are JSON fields of this object
    /// is a Go embedded struct (`VolumeSource` in `Volume`, `LocalObjectReference` in
    /// `ConfigMapKeySelector`): it becomes an `inline` field and is rendered the same way.
    fn render_fields(
        &mut self,
        full: &str,
        message: &ProtobufMessage,
        by_normalized: &BTreeMap<String, OpenapiField>,
        matched: &mut BTreeSet<String>,
    ) -> anyhow::Result<Vec<String>> {
        let mut lines = Vec::new();
        for field in &message.fields {
            let Some(openapi_field) = by_normalized.get(&normalize(&field.rust_name)) else {
                if let Some(line) = self.render_inline(full, field, by_normalized, matched)? {
                    lines.push(line);
                } else {
                    lines.push(format!(
                        "# tag {} ({}) is not in k8s-openapi {}; skipped",
                        field.tag, field.rust_name, self.openapi_module
                    ));
                }
                continue;
            };
            matched.insert(openapi_field.json_name.clone());
            let path = format!("{full}.{}", openapi_field.json_name);
            let value_type = self.check_shape(&path, field, &openapi_field.shape);
            let presence = self.presence(&path, field, openapi_field.optional);
            let (value, message_ref) = match value_type {
                ValueType::Scalar(scalar) => (scalar.table_name(), String::new()),
                ValueType::Message(name) => ("message", format!(" {name}")),
            };
            lines.push(format!(
                "field {} {} {} {value} {presence}{message_ref}",
                field.tag,
                openapi_field.json_name,
                cardinality_name(field.cardinality)
            ));
        }
        Ok(lines)
    }

    fn render_inline(
        &mut self,
        full: &str,
        field: &ProtobufField,
        by_normalized: &BTreeMap<String, OpenapiField>,
        matched: &mut BTreeSet<String>,
    ) -> anyhow::Result<Option<String>> {
        let ValueType::Message(name) = &field.value else {
            return Ok(None);
        };
        let special = SPECIALS
            .iter()
            .any(|special| special.message == name.as_str());
        if field.cardinality != Cardinality::Single || special {
            return Ok(None);
        }
        let inner = self
            .protobuf
            .messages
            .get(name)
            .with_context(|| format!("{full}: message {name} is not defined"))?;
        let before = matched.len();
        let lines = self.render_fields(name, inner, by_normalized, matched)?;
        if matched.len() == before {
            return Ok(None);
        }
        match self.rendered.get(name) {
            Some(existing) if existing.lines != lines => self.problems.push(format!(
                "{name} is embedded in several objects with different JSON fields"
            )),
            Some(_) => {}
            None => {
                self.rendered.insert(
                    name.clone(),
                    Rendered {
                        special: None,
                        lines,
                    },
                );
            }
        }
        Ok(Some(format!(
            "field {} - one message inline {name}",
            field.tag
        )))
    }

    /// How a field's presence on the wire maps to JSON; see `go_presence.rs`.
    fn presence(&mut self, path: &str, field: &ProtobufField, optional: bool) -> &'static str {
        let omit_zero = VALUE_SCALARS_OMITTED_WHEN_ZERO.contains(&path);
        let keep_empty = POINTER_STRINGS_KEPT_WHEN_EMPTY.contains(&path);
        if omit_zero || keep_empty {
            self.presence_entries_used.insert(path.to_owned());
            let expected = if omit_zero {
                matches!(
                    field.value,
                    ValueType::Scalar(Scalar::Int32 | Scalar::Int64 | Scalar::Bool)
                )
            } else {
                field.value == ValueType::Scalar(Scalar::String)
            };
            if !optional || field.cardinality != Cardinality::Single || !expected {
                self.problems.push(format!(
                    "{path}: listed in go_presence.rs but not an optional scalar of that type"
                ));
            }
        }
        match (&field.value, field.cardinality) {
            _ if !optional => "required",
            (ValueType::Scalar(Scalar::String), Cardinality::Single) if !keep_empty => "omitempty",
            (ValueType::Scalar(Scalar::Bytes), Cardinality::Single) => "omitempty",
            (ValueType::Scalar(_), Cardinality::Single) if omit_zero => "omitempty",
            _ => "optional",
        }
    }

    /// Checks that the protobuf field and the k8s-openapi field agree, queues referenced
    /// messages, and returns the field's value type.
    fn check_shape(&mut self, path: &str, field: &ProtobufField, shape: &Shape) -> ValueType {
        let element = match (field.cardinality, shape) {
            (Cardinality::Single, shape) => shape,
            (Cardinality::Repeated, Shape::List(inner)) => inner.as_ref(),
            (Cardinality::Map, Shape::Map(inner)) => inner.as_ref(),
            _ => {
                self.problems.push(format!(
                    "{path}: protobuf {:?} but k8s-openapi {shape:?}",
                    field.cardinality
                ));
                return field.value.clone();
            }
        };
        match (&field.value, element) {
            (ValueType::Scalar(Scalar::String), Shape::String)
            | (ValueType::Scalar(Scalar::Int32), Shape::Int32)
            | (ValueType::Scalar(Scalar::Int64), Shape::Int64)
            | (ValueType::Scalar(Scalar::Bool), Shape::Bool)
            | (ValueType::Scalar(Scalar::Double), Shape::Double)
            | (ValueType::Scalar(Scalar::Bytes), Shape::Bytes) => {}
            (ValueType::Message(name), element) => self.check_message_shape(path, name, element),
            (value, element) => self.problems.push(format!(
                "{path}: protobuf {value:?} but k8s-openapi {element:?}"
            )),
        }
        field.value.clone()
    }

    fn check_message_shape(&mut self, path: &str, name: &str, element: &Shape) {
        let expected_openapi = SPECIALS
            .iter()
            .find(|special| special.message == name)
            .map(|special| special.name);
        let ok = match (expected_openapi, element) {
            (Some("duration"), Shape::String) => true,
            (Some(_), Shape::Named(openapi_name)) | (None, Shape::Named(openapi_name)) => {
                openapi_name.eq_ignore_ascii_case(name)
            }
            (None, Shape::List(inner)) if **inner == Shape::String => {
                self.check_items_wrapper(path, name)
            }
            _ => false,
        };
        if ok {
            self.queue.push_back(name.to_owned());
        } else {
            self.problems.push(format!(
                "{path}: protobuf message {name} but k8s-openapi {element:?}"
            ));
        }
    }

    /// A message used where JSON has a list of strings must be a one-field `repeated string`
    /// wrapper; it is rendered with the `items` special.
    fn check_items_wrapper(&mut self, path: &str, name: &str) -> bool {
        let Some(message) = self.protobuf.messages.get(name) else {
            return false;
        };
        let is_wrapper = matches!(
            message.fields.as_slice(),
            [ProtobufField {
                tag: 1,
                cardinality: Cardinality::Repeated,
                value: ValueType::Scalar(Scalar::String),
                ..
            }]
        );
        if is_wrapper && !self.rendered.contains_key(name) {
            let lines = message
                .fields
                .iter()
                .map(|field| self.render_raw_field(field))
                .collect();
            self.rendered.insert(
                name.to_owned(),
                Rendered {
                    special: Some(ITEMS_SPECIAL),
                    lines,
                },
            );
        } else if !is_wrapper {
            self.problems
                .push(format!("{path}: {name} is not a repeated-string wrapper"));
        }
        is_wrapper
    }
}

fn cardinality_name(cardinality: Cardinality) -> &'static str {
    match cardinality {
        Cardinality::Single => "one",
        Cardinality::Repeated => "list",
        Cardinality::Map => "map",
    }
}

/// `pod_i_ps` (prost's snake case of `podIPs`) and `podIPs` both become `podips`;
/// `x-kubernetes-list-type` and `x_kubernetes_list_type` both become `xkuberneteslisttype`.
fn normalize(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|character| character.to_ascii_lowercase())
        .collect()
}
