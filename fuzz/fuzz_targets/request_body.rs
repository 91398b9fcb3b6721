//! Fuzzes the Kubernetes protobuf request-body decoder: any bytes must give `Ok` or a
//! `CodecError`, never a panic, and whatever decodes must be a JSON object naming its kind.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    // Most random inputs fail at the magic; prefixing it half the time reaches the decoder.
    let prefixed;
    let body = if body.first().is_some_and(|byte| byte & 1 == 1) {
        prefixed = [b"k8s\0".as_slice(), &body[1..]].concat();
        prefixed.as_slice()
    } else {
        body
    };
    if let Ok(object) = ronghe_codec::decode_protobuf(body) {
        assert!(
            object
                .get("apiVersion")
                .is_some_and(serde_json::Value::is_string)
        );
        assert!(object.get("kind").is_some_and(serde_json::Value::is_string));
        // The server serializes what it stores; that must not fail either.
        serde_json::to_vec(&object).expect("decoded JSON serializes");
    }
});
