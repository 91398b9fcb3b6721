//! The protobuf-to-JSON schema of the Kubernetes API: the generated `schema/table.txt`
//! (see its header and `tests/schema_table/`), parsed once on first use into an indexed form.

use std::collections::HashMap;
use std::sync::LazyLock;

/// The generated table. Regenerate with
/// `cargo test -p ronghe-codec --test schema_table -- --ignored regenerate_schema_table`.
const TABLE: &str = include_str!("schema/table.txt");

static SCHEMA: LazyLock<Result<Schema, String>> = LazyLock::new(|| Schema::parse(TABLE));

/// The parsed table, or why it could not be parsed (a bug caught by this crate's tests).
pub(crate) fn schema() -> Result<&'static Schema, &'static str> {
    SCHEMA.as_ref().map_err(String::as_str)
}

pub(crate) type MessageId = usize;

#[derive(Debug)]
pub(crate) struct Schema {
    kinds: HashMap<(&'static str, &'static str), MessageId>,
    messages: Vec<Message>,
}

#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) name: &'static str,
    pub(crate) special: Option<Special>,
    /// Sorted by tag.
    pub(crate) fields: Vec<Field>,
}

/// Messages whose JSON form is not an object of their fields (`convert/special.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Special {
    Time,
    MicroTime,
    Duration,
    IntOrString,
    Quantity,
    RawJson,
    Items,
    SchemaOrArray,
    SchemaOrBool,
    SchemaOrStringArray,
}

#[derive(Debug)]
pub(crate) struct Field {
    pub(crate) tag: u32,
    pub(crate) json_name: &'static str,
    pub(crate) cardinality: Cardinality,
    pub(crate) value: ValueKind,
    pub(crate) presence: Presence,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cardinality {
    One,
    List,
    /// `map<string, value>`.
    Map,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ValueKind {
    String,
    Int32,
    Int64,
    Bool,
    Double,
    Bytes,
    Message(MessageId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Presence {
    /// Written when on the wire, zero values included; a list or map is written even when
    /// empty (k8s-openapi has no `Option` around it).
    Required,
    /// Written when on the wire, zero values included.
    Optional,
    /// Written when on the wire and not zero or empty.
    OmitEmpty,
    /// A Go embedded struct: its fields are written into the parent object.
    Inline,
}

impl Schema {
    pub(crate) fn kind(&self, api_version: &str, kind: &str) -> Option<MessageId> {
        self.kinds.get(&(api_version, kind)).copied()
    }

    pub(crate) fn message(&self, id: MessageId) -> &Message {
        &self.messages[id]
    }

    fn parse(text: &'static str) -> Result<Schema, String> {
        let lines = text
            .lines()
            .enumerate()
            .map(|(index, line)| (index + 1, line.trim()))
            .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'));
        let mut ids = HashMap::new();
        for (_, line) in lines.clone() {
            if let Some(rest) = line.strip_prefix("message ") {
                let name = rest.split_whitespace().next().unwrap_or_default();
                let next = ids.len();
                ids.entry(name).or_insert(next);
            }
        }
        let mut schema = Schema {
            kinds: HashMap::new(),
            messages: Vec::with_capacity(ids.len()),
        };
        let resolve = |name: &str, number: usize| {
            ids.get(name)
                .copied()
                .ok_or_else(|| format!("line {number}: unknown message {name}"))
        };
        for (number, line) in lines {
            let words = line.split_whitespace().collect::<Vec<_>>();
            match words.as_slice() {
                ["kind", api_version, kind, message] => {
                    let id = resolve(message, number)?;
                    schema.kinds.insert((api_version, kind), id);
                }
                ["message", name, rest @ ..] => {
                    let special = match rest {
                        [] => None,
                        [special] => Some(parse_special(special, number)?),
                        _ => return Err(format!("line {number}: malformed message line")),
                    };
                    schema.messages.push(Message {
                        name,
                        special,
                        fields: Vec::new(),
                    });
                }
                [
                    "field",
                    tag,
                    json_name,
                    cardinality,
                    value,
                    presence,
                    rest @ ..,
                ] => {
                    let message = schema
                        .messages
                        .last_mut()
                        .ok_or_else(|| format!("line {number}: field before any message"))?;
                    let value = match (*value, rest) {
                        ("message", [name]) => ValueKind::Message(resolve(name, number)?),
                        (scalar, []) => parse_scalar(scalar, number)?,
                        _ => return Err(format!("line {number}: malformed field type")),
                    };
                    message.fields.push(Field {
                        tag: tag
                            .parse()
                            .map_err(|_| format!("line {number}: bad tag {tag}"))?,
                        json_name,
                        cardinality: match *cardinality {
                            "one" => Cardinality::One,
                            "list" => Cardinality::List,
                            "map" => Cardinality::Map,
                            other => return Err(format!("line {number}: cardinality {other}")),
                        },
                        value,
                        presence: match *presence {
                            "required" => Presence::Required,
                            "optional" => Presence::Optional,
                            "omitempty" => Presence::OmitEmpty,
                            "inline" => Presence::Inline,
                            other => return Err(format!("line {number}: presence {other}")),
                        },
                    });
                }
                _ => return Err(format!("line {number}: unrecognised line")),
            }
        }
        for message in &mut schema.messages {
            message.fields.sort_by_key(|field| field.tag);
            if message
                .fields
                .windows(2)
                .any(|pair| pair[0].tag == pair[1].tag)
            {
                return Err(format!("message {} repeats a tag", message.name));
            }
        }
        if schema.messages.len() != ids.len() {
            return Err("a message is defined twice".to_owned());
        }
        Ok(schema)
    }
}

impl Message {
    pub(crate) fn field_index(&self, tag: u32) -> Option<usize> {
        self.fields
            .binary_search_by_key(&tag, |field| field.tag)
            .ok()
    }
}

fn parse_special(word: &str, number: usize) -> Result<Special, String> {
    Ok(match word {
        "time" => Special::Time,
        "micro_time" => Special::MicroTime,
        "duration" => Special::Duration,
        "int_or_string" => Special::IntOrString,
        "quantity" => Special::Quantity,
        "raw_json" => Special::RawJson,
        "items" => Special::Items,
        "schema_or_array" => Special::SchemaOrArray,
        "schema_or_bool" => Special::SchemaOrBool,
        "schema_or_string_array" => Special::SchemaOrStringArray,
        other => return Err(format!("line {number}: unknown special {other}")),
    })
}

fn parse_scalar(word: &str, number: usize) -> Result<ValueKind, String> {
    Ok(match word {
        "string" => ValueKind::String,
        "int32" => ValueKind::Int32,
        "int64" => ValueKind::Int64,
        "bool" => ValueKind::Bool,
        "double" => ValueKind::Double,
        "bytes" => ValueKind::Bytes,
        other => return Err(format!("line {number}: unknown type {other}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_table_parses_and_has_the_kinds_kubectl_creates() {
        let schema = schema().expect("the committed table parses");
        for (api_version, kind) in [
            ("v1", "Namespace"),
            ("v1", "ConfigMap"),
            ("v1", "Secret"),
            ("v1", "Service"),
            ("v1", "Pod"),
            ("v1", "Endpoints"),
            ("v1", "Event"),
            ("v1", "Node"),
            ("apps/v1", "Deployment"),
            ("apps/v1", "ReplicaSet"),
            ("apps/v1", "StatefulSet"),
            ("apps/v1", "DaemonSet"),
            ("coordination.k8s.io/v1", "Lease"),
            ("batch/v1", "Job"),
            ("batch/v1", "CronJob"),
        ] {
            assert!(
                schema.kind(api_version, kind).is_some(),
                "{api_version} {kind}"
            );
        }
    }

    #[test]
    fn rejects_dangling_message_references() {
        let error = Schema::parse("message a\nfield 1 b one message optional missing\n")
            .expect_err("missing message");
        assert!(error.contains("unknown message missing"), "{error}");
    }
}
