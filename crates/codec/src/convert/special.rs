//! The messages whose JSON is not an object of their fields, each written the way its Go type's
//! `MarshalJSON` writes it: times as RFC 3339 strings, `IntOrString` as a number or a string,
//! `Quantity` as its string, raw extensions as the embedded JSON, and so on. The tags read here
//! are checked against k8s-pb by the table generator (`SPECIALS` in tests/schema_table).

use serde_json::Value;

use super::go_format::{format_go_duration, format_rfc3339};
use super::{Converter, DecodeError, Slots, utf8};
use crate::error::WireProblem;
use crate::schema::{MessageId, Special, ValueKind};
use crate::wire::WireValue;

/// `time.Time{}`: what Go's `time.Unix` gives for the zero time, which JSON writes as null.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

impl Converter<'_> {
    pub(super) fn special(
        &self,
        special: Special,
        id: MessageId,
        slots: &Slots<'_>,
        depth: usize,
    ) -> Result<Option<Value>, DecodeError> {
        // Special messages list their fields in tag order starting at 1 (checked by the
        // generator), so slot `tag - 1` holds field `tag`.
        let last = |tag: usize| slots.get(tag - 1).last().copied();
        let varint = |tag: usize| match last(tag) {
            Some(WireValue::Varint(number)) => Some(number),
            _ => None,
        };
        let bytes = |tag: usize| match last(tag) {
            Some(WireValue::Bytes(bytes)) => Some(bytes),
            _ => None,
        };
        let present =
            (1..=self.schema.message(id).fields.len()).any(|tag| !slots.get(tag - 1).is_empty());
        Ok(match special {
            Special::Time => {
                // metav1.Time keeps whole seconds only, as Go's unmarshaller does.
                let seconds = varint(1).unwrap_or(0) as i64;
                if !present || seconds == GO_ZERO_TIME_SECONDS {
                    None
                } else {
                    Some(Value::String(format_rfc3339(seconds, None)?))
                }
            }
            Special::MicroTime => {
                let nanos = i128::from(varint(1).unwrap_or(0) as i64) * 1_000_000_000
                    + i128::from(varint(2).unwrap_or(0) as i32);
                let seconds = i64::try_from(nanos.div_euclid(1_000_000_000))
                    .map_err(|_| WireProblem::TimeOutOfRange { seconds: i64::MAX })?;
                let micros = (nanos.rem_euclid(1_000_000_000) / 1_000) as u32;
                if !present
                    || (seconds == GO_ZERO_TIME_SECONDS && nanos.rem_euclid(1_000_000_000) == 0)
                {
                    None
                } else {
                    Some(Value::String(format_rfc3339(seconds, Some(micros))?))
                }
            }
            Special::Duration => Some(Value::String(format_go_duration(
                varint(1).unwrap_or(0) as i64
            ))),
            Special::IntOrString => match varint(1).unwrap_or(0) {
                0 => Some(Value::from(varint(2).unwrap_or(0) as i32)),
                1 => Some(Value::String(
                    utf8(bytes(3).unwrap_or_default())?.to_owned(),
                )),
                other => return Err(WireProblem::InvalidIntOrStringType(other).into()),
            },
            Special::Quantity => match bytes(1) {
                // A Quantity message without its string is Go's zero Quantity.
                None => Some(Value::String("0".to_owned())),
                Some([]) => return Err(WireProblem::EmptyQuantity.into()),
                Some(text) => Some(Value::String(utf8(text)?.to_owned())),
            },
            Special::RawJson => match bytes(1) {
                None | Some([]) => None,
                Some(raw) => Some(self.raw_object(raw, depth)?),
            },
            Special::Items => Some(Value::Array(self.list(
                ValueKind::String,
                slots.get(0),
                depth,
            )?)),
            Special::SchemaOrArray => {
                let schemas = self.nested_list(id, 2, slots, depth)?;
                if !schemas.is_empty() {
                    Some(Value::Array(schemas))
                } else {
                    self.nested_message(id, 1, slots, depth)?
                }
            }
            Special::SchemaOrBool => match self.nested_message(id, 2, slots, depth)? {
                Some(schema) => Some(schema),
                None => Some(Value::Bool(varint(1).unwrap_or(0) != 0)),
            },
            Special::SchemaOrStringArray => {
                let strings = self.list(ValueKind::String, slots.get(1), depth)?;
                if !strings.is_empty() {
                    Some(Value::Array(strings))
                } else {
                    self.nested_message(id, 1, slots, depth)?
                }
            }
        })
    }

    /// The embedded object of a `RawExtension`, `FieldsV1` or `JSON`: JSON text, or (when a Go
    /// client embedded a typed object) a nested Kubernetes protobuf envelope.
    fn raw_object(&self, raw: &[u8], depth: usize) -> Result<Value, DecodeError> {
        if raw.starts_with(crate::envelope::MAGIC) {
            return crate::envelope::decode_envelope(self.schema, raw, depth + 1)
                .map_err(|error| WireProblem::InvalidEmbeddedObject(Box::new(error)).into());
        }
        serde_json::from_slice(raw).map_err(|error| WireProblem::InvalidEmbeddedJson(error).into())
    }

    fn nested_message(
        &self,
        id: MessageId,
        tag: usize,
        slots: &Slots<'_>,
        depth: usize,
    ) -> Result<Option<Value>, DecodeError> {
        let values = slots.get(tag - 1);
        if values.is_empty() {
            return Ok(None);
        }
        let Some(ValueKind::Message(inner)) = self.field_kind(id, tag) else {
            return Ok(None);
        };
        let parts = super::message_parts(values);
        self.message(inner, &parts, depth + 1)
    }

    fn nested_list(
        &self,
        id: MessageId,
        tag: usize,
        slots: &Slots<'_>,
        depth: usize,
    ) -> Result<Vec<Value>, DecodeError> {
        match self.field_kind(id, tag) {
            Some(kind) => self.list(kind, slots.get(tag - 1), depth),
            None => Ok(Vec::new()),
        }
    }

    fn field_kind(&self, id: MessageId, tag: usize) -> Option<ValueKind> {
        let fields = &self.schema.message(id).fields;
        fields.get(tag.checked_sub(1)?).map(|field| field.value)
    }
}
