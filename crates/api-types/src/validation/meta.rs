//! Checks of an `ObjectMeta`-shaped JSON value (name, namespace, labels, annotations),
//! following apimachinery's `ValidateObjectMetaAccessor`, `ValidateLabels` and
//! `ValidateAnnotations`. Owner references, finalizers and managed fields are not checked
//! here.

use serde_json::{Map, Value};

use super::cause::FieldCause;
use super::names::{NameRule, is_dns1123_label, is_qualified_name, is_valid_label_value};

/// The most bytes all annotation keys and values of one object may add up to (256 KiB).
pub const TOTAL_ANNOTATION_SIZE_LIMIT_BYTES: usize = 256 * 1024;

/// Validates `metadata.labels` (`labels` is that value, absent or `null` being fine) and
/// reports causes against `field`, normally `metadata.labels`.
pub fn validate_labels(labels: Option<&Value>, field: &str) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    let Some(entries) = string_map(labels, field, &mut causes) else {
        return causes;
    };
    for (key, value) in entries {
        for message in is_qualified_name(key) {
            causes.push(FieldCause::invalid(field, key, message));
        }
        for message in is_valid_label_value(value) {
            causes.push(FieldCause::invalid(field, value, message));
        }
    }
    causes
}

/// Validates `metadata.annotations`: keys must be qualified names (compared lower-cased, as
/// apimachinery does) and keys plus values must total at most 256 KiB.
pub fn validate_annotations(annotations: Option<&Value>, field: &str) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    let Some(entries) = string_map(annotations, field, &mut causes) else {
        return causes;
    };
    let mut total_bytes = 0usize;
    for (key, value) in &entries {
        for message in is_qualified_name(&key.to_lowercase()) {
            causes.push(FieldCause::invalid(field, *key, message));
        }
        total_bytes = total_bytes.saturating_add(key.len() + value.len());
    }
    if total_bytes > TOTAL_ANNOTATION_SIZE_LIMIT_BYTES {
        causes.push(FieldCause::too_long(
            field,
            TOTAL_ANNOTATION_SIZE_LIMIT_BYTES,
        ));
    }
    causes
}

/// Validates an object's `metadata` on create: `name` or `generateName` per `name_rule`,
/// `namespace` present (and a DNS label) exactly when `requires_namespace`, then labels and
/// annotations. Field paths start with `metadata.`.
pub fn validate_object_meta(
    metadata: Option<&Value>,
    requires_namespace: bool,
    name_rule: NameRule,
) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    let Some(metadata) = metadata.and_then(Value::as_object) else {
        causes.push(FieldCause::required("metadata", ""));
        return causes;
    };
    let text = |key: &str| metadata.get(key).and_then(Value::as_str).unwrap_or("");

    let generate_name = text("generateName");
    if !generate_name.is_empty() {
        for message in name_rule.validate(generate_name, true) {
            causes.push(FieldCause::invalid(
                "metadata.generateName",
                generate_name,
                message,
            ));
        }
    }
    let name = text("name");
    if name.is_empty() {
        causes.push(FieldCause::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        for message in name_rule.validate(name, false) {
            causes.push(FieldCause::invalid("metadata.name", name, message));
        }
    }
    let namespace = text("namespace");
    match (requires_namespace, namespace.is_empty()) {
        (true, true) => causes.push(FieldCause::required("metadata.namespace", "")),
        (true, false) => {
            for message in is_dns1123_label(namespace) {
                causes.push(FieldCause::invalid(
                    "metadata.namespace",
                    namespace,
                    message,
                ));
            }
        }
        (false, false) => causes.push(FieldCause::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        )),
        (false, true) => {}
    }
    causes.extend(validate_labels(metadata.get("labels"), "metadata.labels"));
    causes.extend(validate_annotations(
        metadata.get("annotations"),
        "metadata.annotations",
    ));
    causes
}

/// Reads a JSON object of strings; reports a type cause and returns `None` when it is not one.
fn string_map<'a>(
    value: Option<&'a Value>,
    field: &str,
    causes: &mut Vec<FieldCause>,
) -> Option<Vec<(&'a str, &'a str)>> {
    let object: &Map<String, Value> = match value {
        None | Some(Value::Null) => return Some(Vec::new()),
        Some(Value::Object(object)) => object,
        Some(other) => {
            causes.push(FieldCause::type_invalid(
                field,
                other.clone(),
                "must be an object of strings",
            ));
            return None;
        }
    };
    let mut entries = Vec::with_capacity(object.len());
    for (key, entry) in object {
        match entry {
            Value::String(text) => entries.push((key.as_str(), text.as_str())),
            other => causes.push(FieldCause::type_invalid(
                format!("{field}[{key}]"),
                other.clone(),
                "must be a string",
            )),
        }
    }
    Some(entries)
}

#[cfg(test)]
mod tests;
