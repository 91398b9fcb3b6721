//! Helpers shared by the decode tests: the envelope client-go wraps objects in, fixture
//! loading, and the object metadata Go writes for a freshly built object.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_pb::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message;
use serde_json::Value;

/// Wraps an encoded object the way client-go's protobuf serializer does: magic, then a
/// `runtime.Unknown` with empty contentEncoding and contentType.
pub fn envelope(api_version: &str, kind: &str, object: &impl Message) -> Vec<u8> {
    envelope_with(api_version, kind, object.encode_to_vec(), "")
}

pub fn envelope_with(api_version: &str, kind: &str, raw: Vec<u8>, encoding: &str) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.to_owned()),
            kind: Some(kind.to_owned()),
        }),
        raw: Some(raw),
        content_encoding: Some(encoding.to_owned()),
        content_type: Some(String::new()),
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn fixture_body(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(&format!("{name}.pb"))).expect("fixture body exists")
}

/// kubectl's `--dry-run=client -o json` for the fixture, without `creationTimestamp: null`.
pub fn fixture_json(name: &str) -> Value {
    let text =
        std::fs::read_to_string(fixture_path(&format!("{name}.json"))).expect("fixture json");
    let mut value = serde_json::from_str(&text).expect("fixture json parses");
    remove_null_creation_timestamps(&mut value);
    value
}

fn remove_null_creation_timestamps(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("creationTimestamp") == Some(&Value::Null) {
                map.remove("creationTimestamp");
            }
            map.values_mut().for_each(remove_null_creation_timestamps);
        }
        Value::Array(items) => items.iter_mut().for_each(remove_null_creation_timestamps),
        _ => {}
    }
}

pub fn decode(body: &[u8]) -> Value {
    ronghe_codec::decode_protobuf(body).expect("body decodes")
}

/// Decodes and deserializes into the k8s-openapi type, as the server will.
pub fn decode_as<T: serde::de::DeserializeOwned>(body: &[u8]) -> T {
    serde_json::from_value(decode(body)).expect("decoded JSON fits the k8s-openapi type")
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

pub fn some(text: &str) -> Option<String> {
    Some(text.to_owned())
}

/// ObjectMeta as client-go encodes a new object's: every Go value field written, even empty,
/// and the zero `creationTimestamp` as an empty message.
pub fn go_object_meta(name: &str, object_labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: some(name),
        generate_name: some(""),
        namespace: some(""),
        self_link: some(""),
        uid: some(""),
        resource_version: some(""),
        generation: Some(0),
        creation_timestamp: Some(Time::default()),
        labels: labels(object_labels),
        ..ObjectMeta::default()
    }
}
