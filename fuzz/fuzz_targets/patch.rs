//! Fuzzes the patch crate: every patch kind on arbitrary targets and patch documents must
//! return (never panic), leave the target unchanged on error, and never let a strategic merge
//! patch directive into a result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ronghe_patch::{
    TypeSchema, apply, builtin_schema, json_patch, merge_patch, strategic_merge_patch,
};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the schema; the rest is `target NUL patch` (no NUL: the whole rest
    // is the patch, applied to an empty object).
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (target, patch) = match rest.iter().position(|&byte| byte == 0) {
        Some(at) => (parse(&rest[..at]), parse(&rest[at + 1..])),
        None => (Value::Object(Default::default()), parse(rest)),
    };
    let schema = pick_schema(selector);

    let mut merged = target.clone();
    merge_patch(&mut merged, &patch);

    let mut patched = target.clone();
    if json_patch(&mut patched, &patch).is_err() {
        assert_eq!(patched, target, "a failed json patch changed the target");
    }

    let mut strategic = target.clone();
    match strategic_merge_patch(&mut strategic, &patch, schema) {
        Ok(()) => {
            if !has_directive_key(&target) {
                assert!(
                    !has_directive_key(&strategic),
                    "a directive leaked: {strategic}"
                );
            }
        }
        Err(_) => assert_eq!(
            strategic, target,
            "a failed strategic merge patch changed the target"
        ),
    }

    let _ = apply(&target, &patch, schema);
});

/// JSON when the bytes are JSON, else the bytes as a JSON string.
fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

fn pick_schema(selector: u8) -> Option<&'static TypeSchema> {
    match selector % 4 {
        0 => None,
        1 => builtin_schema("v1", "Pod"),
        2 => builtin_schema("apps/v1", "Deployment"),
        _ => builtin_schema("v1", "Node"),
    }
}

/// Whether any object in `value` has a strategic merge patch directive as a key.
fn has_directive_key(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(key, value)| {
            key == "$patch"
                || key == "$retainKeys"
                || key.starts_with("$setElementOrder/")
                || key.starts_with("$deleteFromPrimitiveList/")
                || has_directive_key(value)
        }),
        Value::Array(items) => items.iter().any(has_directive_key),
        _ => false,
    }
}
