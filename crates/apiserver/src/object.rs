//! Helpers over objects held as JSON values: reading and writing metadata fields, and
//! the comparison that decides whether a write changed anything.

use serde_json::{Map, Value};

/// The string at a path of object keys, if present.
pub fn str_at(object: &Value, path: &[&str]) -> Option<String> {
    value_at(object, path)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The value at a path of object keys, if present.
pub fn value_at<'a>(object: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(object, |value, key| value.get(*key))
}

/// The object's `metadata`, created if missing or not an object.
pub fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    let root = ensure_object(object);
    let metadata = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    ensure_object(metadata)
}

/// Turns a non-object value into an empty object and returns its map.
pub fn ensure_object(value: &mut Value) -> &mut Map<String, Value> {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    match value {
        Value::Object(map) => map,
        _ => unreachable!("just replaced with an object"),
    }
}

pub fn metadata(object: &Value) -> Option<&Map<String, Value>> {
    object.get("metadata").and_then(Value::as_object)
}

pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    metadata(object)
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
}

pub fn name(object: &Value) -> Option<&str> {
    meta_str(object, "name").filter(|n| !n.is_empty())
}

pub fn namespace(object: &Value) -> Option<&str> {
    meta_str(object, "namespace").filter(|n| !n.is_empty())
}

pub fn uid(object: &Value) -> Option<&str> {
    meta_str(object, "uid")
}

pub fn resource_version(object: &Value) -> Option<&str> {
    meta_str(object, "resourceVersion").filter(|rv| !rv.is_empty())
}

pub fn deletion_timestamp(object: &Value) -> Option<&str> {
    meta_str(object, "deletionTimestamp")
}

/// The strings of a list at a path of object keys (non-strings skipped).
pub fn strings_at(object: &Value, path: &[&str]) -> Vec<String> {
    value_at(object, path)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The object's finalizers, in order.
pub fn finalizers(object: &Value) -> Vec<String> {
    strings_at(object, &["metadata", "finalizers"])
}

/// The finalizers a kind keeps in `spec.finalizers` (namespaces).
pub fn spec_finalizers(object: &Value) -> Vec<String> {
    strings_at(object, &["spec", "finalizers"])
}

pub fn set_finalizers(object: &mut Value, finalizers: Vec<String>) {
    let metadata = metadata_mut(object);
    if finalizers.is_empty() {
        metadata.remove("finalizers");
    } else {
        metadata.insert(
            "finalizers".into(),
            Value::Array(finalizers.into_iter().map(Value::String).collect()),
        );
    }
}

/// The object's labels as a sorted map.
pub fn labels(object: &Value) -> std::collections::BTreeMap<String, String> {
    metadata(object)
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// Everything that is not `metadata`, `status`, `apiVersion` or `kind`: the part of the
/// object whose change bumps `metadata.generation`.
pub fn spec_part(object: &Value) -> Map<String, Value> {
    object
        .as_object()
        .map(|map| {
            map.iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether two versions of an object are the same write: equal once fields that every
/// write refreshes (resourceVersion, managedFields timestamps) are set aside.
pub fn same_content(a: &Value, b: &Value) -> bool {
    fn strip(value: &Value) -> Value {
        let mut value = value.clone();
        if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("resourceVersion");
            metadata.remove("managedFields");
        }
        value
    }
    strip(a) == strip(b)
}

/// The current time as Kubernetes writes timestamps: RFC 3339, seconds, `Z`.
pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// An owner reference to `owner`, of kind `kind` in `api_version`.
pub fn owner_reference(api_version: &str, kind: &str, owner: &Value) -> Value {
    serde_json::json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": name(owner),
        "uid": uid(owner),
    })
}

/// [`owner_reference`] marked as the managing controller, blocking a foreground deletion
/// of the owner until the dependent goes.
pub fn controller_reference(api_version: &str, kind: &str, owner: &Value) -> Value {
    let mut reference = owner_reference(api_version, kind, owner);
    reference["controller"] = Value::Bool(true);
    reference["blockOwnerDeletion"] = Value::Bool(true);
    reference
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn same_content_ignores_resource_version() {
        let a = json!({"metadata": {"name": "a", "resourceVersion": "1"}, "data": {"x": "1"}});
        let b = json!({"metadata": {"name": "a", "resourceVersion": "2"}, "data": {"x": "1"}});
        let c = json!({"metadata": {"name": "a", "resourceVersion": "2"}, "data": {"x": "2"}});
        assert!(same_content(&a, &b));
        assert!(!same_content(&a, &c));
    }

    #[test]
    fn spec_part_excludes_metadata_and_status() {
        let object = json!({"apiVersion": "v1", "kind": "X", "metadata": {}, "status": {}, "spec": {"a": 1}, "data": {}});
        let spec = spec_part(&object);
        assert_eq!(spec.keys().collect::<Vec<_>>(), vec!["spec", "data"]);
    }

    #[test]
    fn timestamps_are_rfc3339_seconds() {
        let now = now_rfc3339();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.ends_with('Z'));
    }
}
