//! Fuzzes the whole request-body path of a create: decoding by media type (JSON, YAML,
//! protobuf) and normalisation through the kind's typed model. Any bytes must give a value
//! or an API error, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

const MEDIA_TYPES: [&str; 3] = [
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];

fuzz_target!(|input: &[u8]| {
    let Some((selector, body)) = input.split_first() else {
        return;
    };
    let media_type = MEDIA_TYPES[usize::from(*selector) % MEDIA_TYPES.len()];
    let Ok(object) = ronghe_apiserver::http::decode_object(media_type, body) else {
        return;
    };
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
    let _ = ronghe_apiserver::kinds::normalize_typed::<ConfigMap>(object.clone());
    let _ = ronghe_apiserver::kinds::normalize_typed::<Secret>(object.clone());
    let _ = ronghe_apiserver::kinds::normalize_typed::<Namespace>(object);
});
