//! RFC 6902 JSON Patch (`application/json-patch+json`), atomic, with the apiserver's limits
//! and its reading of `test` against `null`.

use json_patch::{CopyOperation, PatchOperation};
use serde::Deserialize;
use serde_json::Value;

use crate::error::PatchError;

/// The most operations the apiserver accepts in one JSON Patch (`maxJSONPatchOperations`).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The most bytes (as serialized JSON, roughly) all `copy` operations of one patch may copy,
/// so that a small patch cannot double the object again and again.
pub const MAX_JSON_PATCH_COPY_BYTES: usize = 3 * 1024 * 1024;

/// Applies an RFC 6902 JSON Patch to `target`. On error `target` is unchanged.
///
/// As in the apiserver (evanphx/json-patch), a `test` for `null` passes when the object
/// that would hold the member exists but lacks it: kube-runtime's `finalizer()` sends
/// `test /metadata/finalizers == null` before adding the first finalizer.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let operations = parse(patch)?;
    let mut working = target.clone();
    let mut copy_budget = MAX_JSON_PATCH_COPY_BYTES;
    for (index, operation) in operations.iter().enumerate() {
        apply_operation(&mut working, operation, index, &mut copy_budget)?;
    }
    *target = working;
    Ok(())
}

fn parse(patch: &Value) -> Result<Vec<PatchOperation>, PatchError> {
    let Value::Array(items) = patch else {
        return Err(PatchError::JsonPatchNotList);
    };
    if items.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations {
            count: items.len(),
            limit: MAX_JSON_PATCH_OPERATIONS,
        });
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            PatchOperation::deserialize(item)
                .map_err(|source| PatchError::MalformedOperation { index, source })
        })
        .collect()
}

fn apply_operation(
    document: &mut Value,
    operation: &PatchOperation,
    index: usize,
    copy_budget: &mut usize,
) -> Result<(), PatchError> {
    match operation {
        PatchOperation::Test(test)
            if test.value.is_null() && missing_member(document, test.path.as_str()) =>
        {
            return Ok(());
        }
        PatchOperation::Copy(CopyOperation { from, .. }) => {
            if let Some(source) = document.pointer(from.as_str()) {
                match json_size(source, *copy_budget) {
                    Some(size) => *copy_budget -= size,
                    None => {
                        return Err(PatchError::CopyLimitExceeded {
                            index,
                            limit: MAX_JSON_PATCH_COPY_BYTES,
                        });
                    }
                }
            }
        }
        _ => {}
    }
    // One operation at a time, so errors carry this operation's index; the document is a
    // copy, so an operation failing halfway (a `move` whose `add` fails) does no harm.
    json_patch::patch_unsafe(document, std::slice::from_ref(operation)).map_err(|error| {
        let path = operation.path().as_str().to_owned();
        match error.kind {
            json_patch::PatchErrorKind::TestFailed => {
                PatchError::JsonPatchTestFailed { index, path }
            }
            kind => PatchError::OperationFailed {
                index,
                op: operation_name(operation),
                path,
                source: kind,
            },
        }
    })
}

fn operation_name(operation: &PatchOperation) -> &'static str {
    match operation {
        PatchOperation::Add(_) => "add",
        PatchOperation::Remove(_) => "remove",
        PatchOperation::Replace(_) => "replace",
        PatchOperation::Move(_) => "move",
        PatchOperation::Copy(_) => "copy",
        PatchOperation::Test(_) => "test",
    }
}

/// Whether `pointer` names a member missing from an object that exists.
fn missing_member(document: &Value, pointer: &str) -> bool {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return false;
    };
    let member = last.replace("~1", "/").replace("~0", "~");
    matches!(document.pointer(parent), Some(Value::Object(map)) if !map.contains_key(&member))
}

/// The size of `value` serialized as compact JSON, give or take escapes; `None` once it
/// exceeds `limit`, without walking the rest.
fn json_size(value: &Value, limit: usize) -> Option<usize> {
    let mut size = 0usize;
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        size += match value {
            Value::Null | Value::Bool(_) => 5,
            Value::Number(_) => 8,
            Value::String(text) => text.len() + 2,
            Value::Array(items) => {
                stack.extend(items);
                items.len() + 2
            }
            Value::Object(map) => {
                for (key, item) in map {
                    size += key.len() + 4;
                    stack.push(item);
                }
                2
            }
        };
        if size > limit {
            return None;
        }
    }
    Some(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patched(target: &Value, patch: Value) -> Result<Value, PatchError> {
        let mut target = target.clone();
        json_patch(&mut target, &patch)?;
        Ok(target)
    }

    #[test]
    fn applies_all_operations() {
        let target = json!({"spec": {"cpus": 2, "disks": ["a", "b"]}, "metadata": {}});
        let result = patched(
            &target,
            json!([
                {"op": "test", "path": "/spec/cpus", "value": 2},
                {"op": "replace", "path": "/spec/cpus", "value": 7},
                {"op": "add", "path": "/spec/disks/-", "value": "c"},
                {"op": "remove", "path": "/spec/disks/0"},
                {"op": "copy", "from": "/spec/cpus", "path": "/metadata/cpus"},
                {"op": "move", "from": "/metadata/cpus", "path": "/spec/memory"}
            ]),
        )
        .expect("the patch applies");
        assert_eq!(
            result,
            json!({"spec": {"cpus": 7, "disks": ["b", "c"], "memory": 7}, "metadata": {}})
        );
    }

    #[test]
    fn kube_runtime_finalizer_add_and_remove() {
        // First finalizer: test that the field is absent, then add it.
        let object = json!({"metadata": {"name": "vm-a"}});
        let added = patched(
            &object,
            json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": ["ronghe.io/cleanup"]}
            ]),
        )
        .expect("test for null passes on a missing member");
        assert_eq!(
            added["metadata"]["finalizers"],
            json!(["ronghe.io/cleanup"])
        );

        // Another one: test the whole list, then append.
        let appended = patched(
            &added,
            json!([
                {"op": "test", "path": "/metadata/finalizers", "value": ["ronghe.io/cleanup"]},
                {"op": "add", "path": "/metadata/finalizers/-", "value": "other.io/x"}
            ]),
        )
        .expect("append");
        assert_eq!(
            appended["metadata"]["finalizers"],
            json!(["ronghe.io/cleanup", "other.io/x"])
        );

        // Removal: test by index, then remove.
        let removed = patched(
            &appended,
            json!([
                {"op": "test", "path": "/metadata/finalizers/0", "value": "ronghe.io/cleanup"},
                {"op": "remove", "path": "/metadata/finalizers/0"}
            ]),
        )
        .expect("remove");
        assert_eq!(removed["metadata"]["finalizers"], json!(["other.io/x"]));

        // A racing writer: the test fails and nothing changes.
        let mut target = appended.clone();
        let error = json_patch(
            &mut target,
            &json!([
                {"op": "remove", "path": "/metadata/finalizers/1"},
                {"op": "test", "path": "/metadata/finalizers", "value": null}
            ]),
        )
        .expect_err("a present list is not null");
        assert!(
            matches!(error, PatchError::JsonPatchTestFailed { index: 1, ref path } if path == "/metadata/finalizers")
        );
        assert_eq!(target, appended, "the target is unchanged on error");
    }

    #[test]
    fn test_for_null_fails_when_the_parent_is_missing_or_a_list() {
        let target = json!({"metadata": {}, "list": []});
        assert!(
            patched(
                &target,
                json!([{"op": "test", "path": "/spec/x", "value": null}])
            )
            .is_err()
        );
        assert!(
            patched(
                &target,
                json!([{"op": "test", "path": "/list/0", "value": null}])
            )
            .is_err()
        );
        assert!(
            patched(
                &target,
                json!([{"op": "test", "path": "/metadata/a~1b", "value": null}])
            )
            .is_ok()
        );
    }

    #[test]
    fn errors_name_the_operation_and_path() {
        let target = json!({"spec": {}});
        let error = patched(
            &target,
            json!([
                {"op": "add", "path": "/spec/a", "value": 1},
                {"op": "remove", "path": "/spec/missing"}
            ]),
        )
        .expect_err("nothing to remove");
        assert!(matches!(
            error,
            PatchError::OperationFailed {
                index: 1,
                op: "remove",
                ..
            }
        ));
        assert_eq!(
            error.to_string(),
            "json patch operation 1 (remove at \"/spec/missing\") failed"
        );

        let error =
            patched(&target, json!([{"op": "frobnicate", "path": "/a"}])).expect_err("bad op");
        assert!(matches!(
            error,
            PatchError::MalformedOperation { index: 0, .. }
        ));
        let error = patched(&target, json!([{"op": "add", "path": "/a"}])).expect_err("no value");
        assert!(matches!(
            error,
            PatchError::MalformedOperation { index: 0, .. }
        ));
        let error = patched(&target, json!([{"op": "add", "path": "a", "value": 1}]))
            .expect_err("bad pointer");
        assert!(matches!(
            error,
            PatchError::MalformedOperation { index: 0, .. }
        ));
        let error = patched(&target, json!({"op": "add"})).expect_err("not a list");
        assert!(matches!(error, PatchError::JsonPatchNotList));
    }

    #[test]
    fn limits_operations_and_copies() {
        let target = json!({"a": "x".repeat(1024)});
        let too_many: Vec<Value> = (0..=MAX_JSON_PATCH_OPERATIONS)
            .map(|_| json!({"op": "test", "path": "/a", "value": null}))
            .collect();
        assert!(matches!(
            patched(&target, Value::Array(too_many)),
            Err(PatchError::TooManyOperations { .. })
        ));

        // Each copy doubles the document; the budget stops it long before memory runs out.
        let doubling: Vec<Value> = (0..64)
            .map(|i| json!({"op": "copy", "from": "", "path": format!("/c{i}")}))
            .collect();
        assert!(matches!(
            patched(&target, Value::Array(doubling)),
            Err(PatchError::CopyLimitExceeded { .. })
        ));
    }
}
