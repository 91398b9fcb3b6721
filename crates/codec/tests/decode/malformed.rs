//! Malformed and unsupported bodies: each gives a specific `CodecError`, and no mutation of a
//! real kubectl body can make the decoder panic.

use k8s_pb::api::core::v1::{ConfigMap, Service, ServicePort, ServiceSpec};
use k8s_pb::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use ronghe_codec::{CodecError, WireProblem, decode_protobuf};

use crate::support::{envelope, envelope_with, fixture_body, some};

fn error_of(body: &[u8]) -> CodecError {
    decode_protobuf(body).expect_err("body must be rejected")
}

#[test]
fn wrong_magic() {
    assert!(matches!(
        error_of(b"{\"kind\":\"Pod\"}"),
        CodecError::MissingMagic
    ));
    assert!(matches!(error_of(b""), CodecError::MissingMagic));
    assert!(matches!(error_of(b"k8s"), CodecError::MissingMagic));
    let mut body = fixture_body("create_namespace");
    body[3] = b'!';
    assert!(matches!(error_of(&body), CodecError::MissingMagic));
}

#[test]
fn truncated_envelope() {
    let body = fixture_body("create_deployment");
    let error = error_of(&body[..body.len() / 2]);
    assert!(
        matches!(error, CodecError::InvalidEnvelope(WireProblem::Truncated)),
        "{error:?}"
    );
}

#[test]
fn envelope_without_type_meta() {
    assert!(matches!(error_of(b"k8s\0"), CodecError::MissingTypeMeta));
}

#[test]
fn garbage_raw_bytes() {
    // Field 1 (metadata) declared as 100 bytes long, followed by 3.
    let raw = vec![0x0a, 100, 1, 2, 3];
    let error = error_of(&envelope_with("v1", "ConfigMap", raw, ""));
    match error {
        CodecError::InvalidObject {
            api_version,
            kind,
            path,
            problem: WireProblem::Truncated,
        } => {
            assert_eq!((api_version.as_str(), kind.as_str()), ("v1", "ConfigMap"));
            assert_eq!(path, ".");
        }
        other => panic!("unexpected {other:?}"),
    }
    // A varint that never ends.
    let error = error_of(&envelope_with(
        "v1",
        "ConfigMap",
        vec![0x08, 0xff, 0xff],
        "",
    ));
    assert!(
        matches!(error, CodecError::InvalidObject { .. }),
        "{error:?}"
    );
}

#[test]
fn unknown_kind() {
    let body = envelope("example.com/v1", "Widget", &ConfigMap::default());
    let error = error_of(&body);
    assert!(error.is_unsupported_media());
    match error {
        CodecError::UnknownKind { api_version, kind } => {
            assert_eq!(
                (api_version.as_str(), kind.as_str()),
                ("example.com/v1", "Widget")
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!ronghe_codec::supports_kind("example.com/v1", "Widget"));
    assert!(ronghe_codec::supports_kind("apps/v1", "Deployment"));
}

#[test]
fn content_encoding_is_refused() {
    let raw = ConfigMap::default().encode_to_vec();
    let error = error_of(&envelope_with("v1", "ConfigMap", raw, "gzip"));
    assert!(error.is_unsupported_media());
    assert!(
        matches!(&error, CodecError::UnsupportedContentEncoding { encoding } if encoding == "gzip"),
        "{error:?}"
    );
}

#[test]
fn wrong_wire_type_names_the_field() {
    // metadata.name (field 1 of ObjectMeta) sent as a varint.
    let raw = vec![0x0a, 0x02, 0x08, 0x01];
    match error_of(&envelope_with("v1", "ConfigMap", raw, "")) {
        CodecError::InvalidObject { path, problem, .. } => {
            assert_eq!(path, "metadata.name");
            assert!(matches!(
                problem,
                WireProblem::WrongWireType {
                    tag: 1,
                    expected: 2,
                    found: 0
                }
            ));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn invalid_int_or_string_and_time_name_their_path() {
    let service = Service {
        spec: Some(ServiceSpec {
            ports: vec![
                ServicePort::default(),
                ServicePort {
                    target_port: Some(IntOrString {
                        r#type: Some(7),
                        int_val: None,
                        str_val: None,
                    }),
                    ..ServicePort::default()
                },
            ],
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    match error_of(&envelope("v1", "Service", &service)) {
        CodecError::InvalidObject { path, problem, .. } => {
            assert_eq!(path, "spec.ports[1].targetPort");
            assert!(matches!(problem, WireProblem::InvalidIntOrStringType(7)));
        }
        other => panic!("unexpected {other:?}"),
    }

    let configmap = ConfigMap {
        metadata: Some(ObjectMeta {
            creation_timestamp: Some(Time {
                seconds: Some(i64::MAX),
                nanos: None,
            }),
            ..ObjectMeta::default()
        }),
        ..ConfigMap::default()
    };
    match error_of(&envelope("v1", "ConfigMap", &configmap)) {
        CodecError::InvalidObject { path, problem, .. } => {
            assert_eq!(path, "metadata.creationTimestamp");
            assert!(matches!(problem, WireProblem::TimeOutOfRange { .. }));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn invalid_utf8_in_a_map_key() {
    let configmap = ConfigMap {
        data: [("ok".to_owned(), "v".to_owned())].into(),
        ..ConfigMap::default()
    };
    let mut raw = configmap.encode_to_vec();
    let position = raw
        .windows(2)
        .position(|window| window == b"ok")
        .expect("key bytes");
    raw[position] = 0xff;
    match error_of(&envelope_with("v1", "ConfigMap", raw, "")) {
        CodecError::InvalidObject { path, problem, .. } => {
            assert_eq!(path, "data");
            assert!(matches!(problem, WireProblem::InvalidUtf8));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    // JSONSchemaProps.not (field 28) holds another JSONSchemaProps: nest it 5000 times.
    let mut schema: Vec<u8> = Vec::new();
    for _ in 0..5_000 {
        let mut next = vec![0xe2, 0x01];
        push_length_prefixed(&mut next, &schema);
        schema = next;
    }
    let crd = {
        // CustomResourceDefinition{spec{versions[{schema{openAPIV3Schema}}]}}
        let validation = length_prefixed_field(1, &schema);
        let version = [
            some_string_field(1, "v1"),
            length_prefixed_field(4, &validation),
        ]
        .concat();
        let spec = length_prefixed_field(7, &version);
        length_prefixed_field(2, &spec)
    };
    let body = envelope_with(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        crd,
        "",
    );
    match error_of(&body) {
        CodecError::InvalidObject { problem, .. } => {
            assert!(matches!(problem, WireProblem::TooDeep(_)), "{problem:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn push_length_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut length = bytes.len();
    loop {
        let byte = (length & 0x7f) as u8;
        length >>= 7;
        if length == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(bytes);
}

fn length_prefixed_field(tag: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![(tag << 3) | 2];
    push_length_prefixed(&mut out, bytes);
    out
}

fn some_string_field(tag: u8, text: &str) -> Vec<u8> {
    length_prefixed_field(tag, text.as_bytes())
}

#[test]
fn unknown_fields_are_skipped_like_go_does() {
    let mut raw = ConfigMap {
        metadata: Some(ObjectMeta {
            name: some("cm"),
            ..ObjectMeta::default()
        }),
        ..ConfigMap::default()
    }
    .encode_to_vec();
    // Field 99 (varint) and field 100 (fixed32), unknown to ConfigMap.
    raw.extend([0x98, 0x06, 0x01, 0xa5, 0x06, 1, 2, 3, 4]);
    let decoded = decode_protobuf(&envelope_with("v1", "ConfigMap", raw, "")).expect("decodes");
    assert_eq!(
        decoded,
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}})
    );
}

/// A cheap, deterministic stand-in for the fuzz target: every truncation and many byte edits
/// of every real kubectl body must return (Ok or Err), never panic.
#[test]
fn mutated_kubectl_bodies_never_panic() {
    let names = [
        "create_namespace",
        "create_configmap",
        "create_secret_generic",
        "create_deployment",
        "create_service_clusterip",
        "create_job",
        "create_cronjob",
        "create_token",
    ];
    let mut seed: u32 = 0x9e37_79b9;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    for name in names {
        let body = fixture_body(name);
        for length in 0..body.len() {
            let _ = decode_protobuf(&body[..length]);
        }
        for _ in 0..2_000 {
            let mut mutated = body.clone();
            for _ in 0..(next() % 4 + 1) {
                let position = next() as usize % mutated.len();
                mutated[position] = next() as u8;
            }
            let _ = decode_protobuf(&mutated);
        }
    }
}
