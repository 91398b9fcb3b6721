//! Request bodies: read within the size limit, decoded by content type (JSON, YAML,
//! Kubernetes protobuf) into a JSON value. Responses are always JSON.

use axum::body::Body;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// The largest request body accepted, as in Kubernetes (3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

pub const JSON: &str = "application/json";
pub const YAML: &str = "application/yaml";
pub const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// The media type of a `Content-Type` header, without parameters, lower-cased.
pub fn media_type(content_type: Option<&str>) -> String {
    content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// How much of an oversized body is read and dropped before answering 413, so the client
/// finishes sending and reads the answer instead of seeing a broken connection; beyond
/// this the connection is cut.
const MAX_DRAINED_BYTES: usize = 64 * 1024 * 1024;

/// Reads a whole body, refusing more than the limit with 413.
pub async fn read(body: Body) -> ApiResult<bytes::Bytes> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut buffer = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|_| ApiError::bad_request("the request body could not be read"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen > MAX_DRAINED_BYTES {
            break;
        }
        if seen <= MAX_BODY_BYTES {
            buffer.extend_from_slice(&data);
        }
    }
    if seen > MAX_BODY_BYTES {
        return Err(ApiError::too_large(MAX_BODY_BYTES));
    }
    Ok(buffer.freeze())
}

/// Decodes an object body (create, replace, delete options) by its media type.
pub fn decode_object(media_type: &str, bytes: &[u8]) -> ApiResult<Value> {
    match media_type {
        "" | JSON => parse_json(bytes),
        YAML | "application/x-yaml" | "text/yaml" => parse_yaml(bytes),
        PROTOBUF => ronghe_codec::decode_protobuf(bytes).map_err(|error| {
            ApiError::bad_request(format!("unable to decode protobuf body: {error}"))
        }),
        _ => Err(ApiError::unsupported_media_type(&[JSON, YAML, PROTOBUF])),
    }
}

/// Decodes a patch body; apply patches are YAML (of which JSON is a subset).
pub fn decode_patch(media_type: &str, bytes: &[u8]) -> ApiResult<Value> {
    if media_type == "application/apply-patch+yaml" {
        parse_yaml(bytes)
    } else {
        parse_json(bytes)
    }
}

fn parse_json(bytes: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(bytes).map_err(|error| {
        ApiError::bad_request(format!("the request body is not valid JSON: {error}"))
    })
}

fn parse_yaml(bytes: &[u8]) -> ApiResult<Value> {
    serde_yaml_ng::from_slice(bytes).map_err(|error| {
        ApiError::bad_request(format!("the request body is not valid YAML: {error}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_ignore_parameters() {
        assert_eq!(media_type(Some("application/json; charset=utf-8")), JSON);
        assert_eq!(media_type(None), "");
    }

    #[test]
    fn decodes_json_and_yaml() {
        let json = decode_object(JSON, br#"{"a": 1}"#).expect("json");
        let yaml = decode_object(YAML, b"a: 1\n").expect("yaml");
        assert_eq!(json, yaml);
    }

    #[test]
    fn rejects_malformed_bodies_with_400() {
        assert_eq!(
            decode_object(JSON, b"{").map_err(|e| e.code()).err(),
            Some(400)
        );
        assert_eq!(
            decode_object(YAML, b"a: [").map_err(|e| e.code()).err(),
            Some(400)
        );
        assert_eq!(
            decode_object("text/plain", b"x")
                .map_err(|e| e.code())
                .err(),
            Some(415)
        );
    }
}
