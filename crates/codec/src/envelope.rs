//! The Kubernetes protobuf envelope: the magic `k8s\0`, then a `runtime.Unknown` message
//! (typeMeta{apiVersion, kind}, raw object bytes, contentEncoding, contentType). Finds the kind's
//! schema and converts the raw bytes into a JSON object with `apiVersion` and `kind` first.

use serde_json::{Map, Value};

use crate::convert::{Converter, MAX_DEPTH};
use crate::error::{CodecError, WireProblem};
use crate::schema::Schema;
use crate::wire::{FieldReader, WIRE_LEN, WireValue};

pub(crate) const MAGIC: &[u8] = b"k8s\0";

/// The only `contentType` a protobuf envelope may declare besides leaving it empty.
const PROTOBUF_CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

#[derive(Default)]
struct Unknown<'a> {
    api_version: &'a str,
    kind: &'a str,
    raw: &'a [u8],
    content_encoding: &'a str,
    content_type: &'a str,
}

pub(crate) fn decode_envelope(
    schema: &Schema,
    body: &[u8],
    depth: usize,
) -> Result<Value, CodecError> {
    let message = body.strip_prefix(MAGIC).ok_or(CodecError::MissingMagic)?;
    if depth > MAX_DEPTH {
        return Err(CodecError::InvalidEnvelope(WireProblem::TooDeep(MAX_DEPTH)));
    }
    let unknown = read_unknown(message).map_err(CodecError::InvalidEnvelope)?;
    if !unknown.content_encoding.is_empty() {
        return Err(CodecError::UnsupportedContentEncoding {
            encoding: unknown.content_encoding.to_owned(),
        });
    }
    if !unknown.content_type.is_empty() && unknown.content_type != PROTOBUF_CONTENT_TYPE {
        return Err(CodecError::UnsupportedContentType {
            content_type: unknown.content_type.to_owned(),
        });
    }
    if unknown.api_version.is_empty() || unknown.kind.is_empty() {
        return Err(CodecError::MissingTypeMeta);
    }
    let id = schema
        .kind(unknown.api_version, unknown.kind)
        .ok_or_else(|| CodecError::UnknownKind {
            api_version: unknown.api_version.to_owned(),
            kind: unknown.kind.to_owned(),
        })?;
    let invalid = |error: crate::convert::DecodeError| CodecError::InvalidObject {
        api_version: unknown.api_version.to_owned(),
        kind: unknown.kind.to_owned(),
        path: error.path(),
        problem: error.problem,
    };
    let converted = Converter { schema }
        .message(id, &[unknown.raw], depth)
        .map_err(invalid)?;
    let mut object = Map::new();
    object.insert(
        "apiVersion".to_owned(),
        Value::String(unknown.api_version.to_owned()),
    );
    object.insert("kind".to_owned(), Value::String(unknown.kind.to_owned()));
    if let Some(Value::Object(fields)) = converted {
        object.extend(fields);
    }
    Ok(Value::Object(object))
}

fn read_unknown(message: &[u8]) -> Result<Unknown<'_>, WireProblem> {
    let mut unknown = Unknown::default();
    for field in FieldReader::new(message) {
        let (tag, value) = field?;
        if !(1..=4).contains(&tag) {
            continue;
        }
        let WireValue::Bytes(bytes) = value else {
            return Err(WireProblem::WrongWireType {
                tag,
                expected: WIRE_LEN,
                found: value.wire_type(),
            });
        };
        match tag {
            1 => read_type_meta(bytes, &mut unknown)?,
            2 => unknown.raw = bytes,
            3 => unknown.content_encoding = crate::convert::utf8(bytes)?,
            _ => unknown.content_type = crate::convert::utf8(bytes)?,
        }
    }
    Ok(unknown)
}

fn read_type_meta<'a>(bytes: &'a [u8], unknown: &mut Unknown<'a>) -> Result<(), WireProblem> {
    for field in FieldReader::new(bytes) {
        match field? {
            (1, WireValue::Bytes(text)) => unknown.api_version = crate::convert::utf8(text)?,
            (2, WireValue::Bytes(text)) => unknown.kind = crate::convert::utf8(text)?,
            (tag @ (1 | 2), value) => {
                return Err(WireProblem::WrongWireType {
                    tag,
                    expected: WIRE_LEN,
                    found: value.wire_type(),
                });
            }
            _ => {}
        }
    }
    Ok(())
}
