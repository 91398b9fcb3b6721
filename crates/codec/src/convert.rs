//! Turns one encoded protobuf message into Kubernetes JSON, driven by the schema table: each
//! known tag becomes its JSON field, unknown tags are skipped (as Go's decoder does), and the
//! presence rules reproduce what Go's `encoding/json` would write for the same object.

mod go_format;
mod special;

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use crate::error::WireProblem;
use crate::schema::{Cardinality, Field, MessageId, Presence, Schema, ValueKind};
use crate::wire::{
    FieldReader, WIRE_FIXED64, WIRE_LEN, WIRE_VARINT, WireValue, packed_fixed64, packed_varints,
};

/// Deepest nesting accepted. Real objects stay far below (a CRD schema a few dozen levels);
/// the limit keeps hostile input from exhausting the stack.
pub(crate) const MAX_DEPTH: usize = 100;

/// A problem and where in the object it was found, innermost path segment first.
#[derive(Debug)]
pub(crate) struct DecodeError {
    pub(crate) reversed_path: Vec<PathSegment>,
    pub(crate) problem: WireProblem,
}

#[derive(Debug)]
pub(crate) enum PathSegment {
    Field(&'static str),
    Index(usize),
    Key(String),
}

impl From<WireProblem> for DecodeError {
    fn from(problem: WireProblem) -> DecodeError {
        DecodeError {
            reversed_path: Vec::new(),
            problem,
        }
    }
}

impl DecodeError {
    fn at(mut self, segment: PathSegment) -> DecodeError {
        self.reversed_path.push(segment);
        self
    }

    /// `spec.template.spec.containers[0].ports[1]`, or `.` for the top level.
    pub(crate) fn path(&self) -> String {
        let mut path = String::new();
        for segment in self.reversed_path.iter().rev() {
            match segment {
                PathSegment::Field(name) => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(name);
                }
                PathSegment::Index(index) => path.push_str(&format!("[{index}]")),
                PathSegment::Key(key) => path.push_str(&format!("[{key:?}]")),
            }
        }
        if path.is_empty() {
            ".".to_owned()
        } else {
            path
        }
    }
}

pub(crate) struct Converter<'s> {
    pub(crate) schema: &'s Schema,
}

/// The wire values of one message, grouped by schema field (index into `Message::fields`).
/// A message may arrive in several parts: protobuf merges repeated occurrences of a singular
/// message field, so all parts are read as one.
pub(crate) struct Slots<'a> {
    values: Vec<Vec<WireValue<'a>>>,
}

impl<'a> Slots<'a> {
    /// The values of field `index`; empty when there is no such field.
    pub(crate) fn get(&self, index: usize) -> &[WireValue<'a>] {
        self.values.get(index).map_or(&[], Vec::as_slice)
    }
}

impl<'s> Converter<'s> {
    /// Reads the parts of a message into per-field slots, checking wire types.
    pub(crate) fn collect<'a>(
        &self,
        id: MessageId,
        parts: &[&'a [u8]],
    ) -> Result<Slots<'a>, DecodeError> {
        let message = self.schema.message(id);
        let mut values = vec![Vec::new(); message.fields.len()];
        for part in parts {
            for field in FieldReader::new(part) {
                let (tag, value) = field?;
                let Some(index) = message.field_index(tag) else {
                    continue;
                };
                let schema_field = &message.fields[index];
                check_wire_type(schema_field, tag, &value).map_err(|problem| {
                    DecodeError::from(problem).at(field_segment(schema_field))
                })?;
                values[index].push(value);
            }
        }
        Ok(Slots { values })
    }

    /// Converts a message to its JSON value. `None` means "write nothing" (a zero time).
    pub(crate) fn message(
        &self,
        id: MessageId,
        parts: &[&[u8]],
        depth: usize,
    ) -> Result<Option<Value>, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(WireProblem::TooDeep(MAX_DEPTH).into());
        }
        let slots = self.collect(id, parts)?;
        if let Some(special) = self.schema.message(id).special {
            return self.special(special, id, &slots, depth);
        }
        let mut object = Map::new();
        self.write_fields(id, &slots, depth, &mut object)?;
        Ok(Some(Value::Object(object)))
    }

    fn write_fields(
        &self,
        id: MessageId,
        slots: &Slots<'_>,
        depth: usize,
        object: &mut Map<String, Value>,
    ) -> Result<(), DecodeError> {
        for (index, field) in self.schema.message(id).fields.iter().enumerate() {
            let values = slots.get(index);
            self.write_field(field, values, depth, object)
                .map_err(|error| match field.presence {
                    Presence::Inline => error,
                    _ => error.at(field_segment(field)),
                })?;
        }
        Ok(())
    }

    fn write_field(
        &self,
        field: &Field,
        values: &[WireValue<'_>],
        depth: usize,
        object: &mut Map<String, Value>,
    ) -> Result<(), DecodeError> {
        let name = field.json_name;
        match (field.presence, field.cardinality) {
            (Presence::Inline, _) => {
                let ValueKind::Message(inner) = field.value else {
                    return Ok(());
                };
                if depth > MAX_DEPTH {
                    return Err(WireProblem::TooDeep(MAX_DEPTH).into());
                }
                let parts = message_parts(values);
                let slots = self.collect(inner, &parts)?;
                self.write_fields(inner, &slots, depth + 1, object)?;
            }
            (presence, Cardinality::One) => {
                // Go writes every value-typed field, so a required scalar missing from the wire
                // came from a client that left it unset: nothing is written, as for a nil
                // pointer. (Filling in zeros would also let a tiny body expand enormously.)
                let Some(last) = values.last() else {
                    return Ok(());
                };
                let value = match field.value {
                    ValueKind::Message(inner) => {
                        self.message(inner, &message_parts(values), depth + 1)?
                    }
                    scalar => {
                        if presence == Presence::OmitEmpty && is_zero(last) {
                            return Ok(());
                        }
                        Some(scalar_value(scalar, last)?)
                    }
                };
                if let Some(value) = value {
                    object.insert(name.to_owned(), value);
                }
            }
            (presence, Cardinality::List) => {
                let list = self.list(field.value, values, depth)?;
                if !list.is_empty() || presence == Presence::Required {
                    object.insert(name.to_owned(), Value::Array(list));
                }
            }
            (presence, Cardinality::Map) => {
                let map = self.map(field.value, values, depth)?;
                if !map.is_empty() || presence == Presence::Required {
                    object.insert(name.to_owned(), Value::Object(map));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn list(
        &self,
        kind: ValueKind,
        values: &[WireValue<'_>],
        depth: usize,
    ) -> Result<Vec<Value>, DecodeError> {
        let mut list = Vec::with_capacity(values.len());
        for value in values {
            match (kind, value) {
                (ValueKind::Message(inner), WireValue::Bytes(bytes)) => {
                    let index = list.len();
                    let element = self
                        .message(inner, &[bytes], depth + 1)
                        .map_err(|error| error.at(PathSegment::Index(index)))?;
                    list.push(element.unwrap_or(Value::Null));
                }
                (
                    ValueKind::Int32 | ValueKind::Int64 | ValueKind::Bool,
                    WireValue::Bytes(bytes),
                ) => {
                    for varint in packed_varints(bytes)? {
                        list.push(scalar_value(kind, &WireValue::Varint(varint))?);
                    }
                }
                (ValueKind::Double, WireValue::Bytes(bytes)) => {
                    for bits in packed_fixed64(bytes)? {
                        list.push(scalar_value(kind, &WireValue::Fixed64(bits))?);
                    }
                }
                (scalar, value) => list.push(scalar_value(scalar, value)?),
            }
        }
        Ok(list)
    }

    fn map(
        &self,
        kind: ValueKind,
        values: &[WireValue<'_>],
        depth: usize,
    ) -> Result<Map<String, Value>, DecodeError> {
        let mut map = Map::new();
        for value in values {
            let WireValue::Bytes(entry) = value else {
                continue;
            };
            let mut key = String::new();
            let mut entry_value = None;
            for field in FieldReader::new(entry) {
                match field? {
                    (1, WireValue::Bytes(bytes)) => key = utf8(bytes)?.to_owned(),
                    (2, value) => entry_value = Some(value),
                    (1, other) => {
                        return Err(WireProblem::WrongWireType {
                            tag: 1,
                            expected: WIRE_LEN,
                            found: other.wire_type(),
                        }
                        .into());
                    }
                    _ => {}
                }
            }
            let converted = self
                .map_value(kind, entry_value, depth)
                .map_err(|error| error.at(PathSegment::Key(key.clone())))?;
            map.insert(key, converted);
        }
        Ok(map)
    }

    fn map_value(
        &self,
        kind: ValueKind,
        value: Option<WireValue<'_>>,
        depth: usize,
    ) -> Result<Value, DecodeError> {
        let expected = expected_wire_type(kind);
        if let Some(value) = &value
            && value.wire_type() != expected
        {
            return Err(WireProblem::WrongWireType {
                tag: 2,
                expected,
                found: value.wire_type(),
            }
            .into());
        }
        Ok(match (kind, value) {
            (ValueKind::Message(inner), Some(WireValue::Bytes(bytes))) => self
                .message(inner, &[bytes], depth + 1)?
                .unwrap_or(Value::Null),
            (ValueKind::Message(inner), _) => {
                self.message(inner, &[], depth + 1)?.unwrap_or(Value::Null)
            }
            (scalar, Some(value)) => scalar_value(scalar, &value)?,
            (scalar, None) => zero_scalar(scalar).unwrap_or(Value::Null),
        })
    }
}

fn field_segment(field: &Field) -> PathSegment {
    PathSegment::Field(field.json_name)
}

fn message_parts<'a>(values: &[WireValue<'a>]) -> Vec<&'a [u8]> {
    values
        .iter()
        .filter_map(|value| match value {
            WireValue::Bytes(bytes) => Some(*bytes),
            _ => None,
        })
        .collect()
}

fn expected_wire_type(kind: ValueKind) -> u8 {
    match kind {
        ValueKind::String | ValueKind::Bytes | ValueKind::Message(_) => WIRE_LEN,
        ValueKind::Int32 | ValueKind::Int64 | ValueKind::Bool => WIRE_VARINT,
        ValueKind::Double => WIRE_FIXED64,
    }
}

fn check_wire_type(field: &Field, tag: u32, value: &WireValue<'_>) -> Result<(), WireProblem> {
    let found = value.wire_type();
    let expected = match field.cardinality {
        // Each map entry is a length-delimited key/value message.
        Cardinality::Map => WIRE_LEN,
        _ => expected_wire_type(field.value),
    };
    // Repeated numbers may also arrive packed into one length-delimited field.
    let packed = field.cardinality == Cardinality::List && found == WIRE_LEN;
    if found == expected || packed {
        Ok(())
    } else {
        Err(WireProblem::WrongWireType {
            tag,
            expected,
            found,
        })
    }
}

pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, WireProblem> {
    std::str::from_utf8(bytes).map_err(|_| WireProblem::InvalidUtf8)
}

fn is_zero(value: &WireValue<'_>) -> bool {
    match value {
        WireValue::Varint(number) | WireValue::Fixed64(number) => *number == 0,
        WireValue::Fixed32(number) => *number == 0,
        WireValue::Bytes(bytes) => bytes.is_empty(),
    }
}

fn zero_scalar(kind: ValueKind) -> Option<Value> {
    match kind {
        ValueKind::String | ValueKind::Bytes => Some(Value::String(String::new())),
        ValueKind::Int32 | ValueKind::Int64 | ValueKind::Double => Some(Value::from(0)),
        ValueKind::Bool => Some(Value::Bool(false)),
        ValueKind::Message(_) => None,
    }
}

/// Converts one scalar wire value; the wire type was checked when the slots were collected.
pub(crate) fn scalar_value(kind: ValueKind, value: &WireValue<'_>) -> Result<Value, WireProblem> {
    Ok(match (kind, value) {
        (ValueKind::String, WireValue::Bytes(bytes)) => Value::String(utf8(bytes)?.to_owned()),
        (ValueKind::Bytes, WireValue::Bytes(bytes)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        // Protobuf int32 is a sign-extended varint; truncating is what Go's decoder does.
        (ValueKind::Int32, WireValue::Varint(number)) => Value::from(*number as i32),
        (ValueKind::Int64, WireValue::Varint(number)) => Value::from(*number as i64),
        (ValueKind::Bool, WireValue::Varint(number)) => Value::Bool(*number != 0),
        (ValueKind::Double, WireValue::Fixed64(bits)) => Number::from_f64(f64::from_bits(*bits))
            .map(Value::Number)
            .ok_or(WireProblem::NonFiniteNumber)?,
        // Not reached: wire types are checked as fields are collected. Tag 0 means "unknown".
        (kind, value) => {
            return Err(WireProblem::WrongWireType {
                tag: 0,
                expected: expected_wire_type(kind),
                found: value.wire_type(),
            });
        }
    })
}
