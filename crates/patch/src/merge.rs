//! RFC 7386 JSON merge patch (`application/merge-patch+json`).

use serde_json::Value;

/// Applies an RFC 7386 merge patch to `target`: objects merge recursively, `null` removes a
/// field, anything else (lists included) replaces. A patch that is not an object replaces the
/// whole target, as the RFC says; the API server rejects such bodies before calling this.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

#[cfg(test)]
mod tests {
    use super::merge_patch;
    use serde_json::json;

    #[test]
    fn rfc_7386_semantics() {
        let mut target = json!({
            "metadata": {"labels": {"app": "web", "tier": "fe"}, "name": "web"},
            "spec": {"replicas": 1, "ports": [1, 2]}
        });
        merge_patch(
            &mut target,
            &json!({"metadata": {"labels": {"tier": null, "new": "x"}},
                    "spec": {"replicas": 5, "ports": [3], "extra": {"a": null, "b": 1}}}),
        );
        assert_eq!(
            target,
            json!({
                "metadata": {"labels": {"app": "web", "new": "x"}, "name": "web"},
                "spec": {"replicas": 5, "ports": [3], "extra": {"b": 1}}
            })
        );
    }

    #[test]
    fn non_object_patch_replaces_everything() {
        let mut target = json!({"a": 1});
        merge_patch(&mut target, &json!([1]));
        assert_eq!(target, json!([1]));
    }
}
