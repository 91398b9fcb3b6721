//! Tests for the `ObjectMeta` checks.

use serde_json::json;

use super::*;

fn fields(causes: &[FieldCause]) -> Vec<(&str, &str)> {
    causes
        .iter()
        .map(|cause| (cause.field.as_str(), cause.reason.as_str()))
        .collect()
}

#[test]
fn valid_metadata_has_no_causes() {
    let metadata = json!({
        "name": "web-1",
        "namespace": "default",
        "labels": {"app": "web", "app.kubernetes.io/part-of": ""},
        "annotations": {"Example.com/Note": "anything goes here, even spaces"}
    });
    assert!(validate_object_meta(Some(&metadata), true, NameRule::default()).is_empty());
}

#[test]
fn reports_each_broken_field() {
    let metadata = json!({
        "name": "Web_1",
        "labels": {"bad key": "ok", "ok": "bad value!"},
        "annotations": {"a/b/c": "x"}
    });
    let causes = validate_object_meta(Some(&metadata), true, NameRule::Dns1123Subdomain);
    assert_eq!(
        fields(&causes),
        vec![
            ("metadata.name", "FieldValueInvalid"),
            ("metadata.namespace", "FieldValueRequired"),
            ("metadata.labels", "FieldValueInvalid"),
            ("metadata.labels", "FieldValueInvalid"),
            ("metadata.annotations", "FieldValueInvalid"),
        ]
    );
    assert!(
        causes[2]
            .message
            .starts_with("Invalid value: \"bad key\": name part must consist")
    );
    assert!(
        causes[3]
            .message
            .starts_with("Invalid value: \"bad value!\": a valid label must be")
    );
}

#[test]
fn name_or_generate_name_is_required() {
    let causes = validate_object_meta(Some(&json!({})), false, NameRule::default());
    assert_eq!(
        causes[0].to_string(),
        "metadata.name: Required value: name or generateName is required"
    );
}

#[test]
fn cluster_scoped_objects_may_not_have_a_namespace() {
    let metadata = json!({"name": "n1", "namespace": "default"});
    let causes = validate_object_meta(Some(&metadata), false, NameRule::Dns1123Label);
    assert_eq!(
        causes[0].to_string(),
        "metadata.namespace: Forbidden: not allowed on this type"
    );
}

#[test]
fn annotation_size_is_limited() {
    let at_limit = json!({"k": "v".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_BYTES - 1)});
    assert!(validate_annotations(Some(&at_limit), "metadata.annotations").is_empty());
    let over = json!({"k": "v".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_BYTES)});
    let causes = validate_annotations(Some(&over), "metadata.annotations");
    assert_eq!(
        causes,
        vec![FieldCause::too_long("metadata.annotations", 262_144)]
    );
}

#[test]
fn non_string_maps_are_type_errors() {
    let causes = validate_labels(Some(&json!({"a": 1})), "metadata.labels");
    assert_eq!(
        fields(&causes),
        vec![("metadata.labels[a]", "FieldValueTypeInvalid")]
    );
    let causes = validate_labels(Some(&json!(["a"])), "metadata.labels");
    assert_eq!(
        fields(&causes),
        vec![("metadata.labels", "FieldValueTypeInvalid")]
    );
    assert!(validate_labels(None, "metadata.labels").is_empty());
    assert!(validate_labels(Some(&json!(null)), "metadata.labels").is_empty());
}
