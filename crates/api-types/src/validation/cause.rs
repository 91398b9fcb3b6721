//! [`FieldCause`]: one field-level validation failure, shaped like apimachinery's
//! `field.Error` so it maps one-to-one onto a `metav1.StatusCause`.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::quote::{go_quote, go_string_slice};

/// The machine-readable cause types (`metav1.CauseType`) for field errors.
pub mod reason {
    /// A looked-up value does not exist.
    pub const FIELD_VALUE_NOT_FOUND: &str = "FieldValueNotFound";
    /// A required value is missing.
    pub const FIELD_VALUE_REQUIRED: &str = "FieldValueRequired";
    /// A value that must be unique is repeated.
    pub const FIELD_VALUE_DUPLICATE: &str = "FieldValueDuplicate";
    /// A value is malformed.
    pub const FIELD_VALUE_INVALID: &str = "FieldValueInvalid";
    /// A value is not one of an enumeration.
    pub const FIELD_VALUE_NOT_SUPPORTED: &str = "FieldValueNotSupported";
    /// A value is valid in form but not allowed here.
    pub const FIELD_VALUE_FORBIDDEN: &str = "FieldValueForbidden";
    /// A value is too long.
    pub const FIELD_VALUE_TOO_LONG: &str = "FieldValueTooLong";
    /// A list has too many items.
    pub const FIELD_VALUE_TOO_MANY: &str = "FieldValueTooMany";
    /// Validation itself failed.
    pub const INTERNAL_ERROR: &str = "InternalError";
    /// A value has the wrong type.
    pub const FIELD_VALUE_TYPE_INVALID: &str = "FieldValueTypeInvalid";
}

/// One field-level validation failure.
///
/// `message` is what apimachinery calls the error *body* (`Invalid value: "Foo": ...`),
/// without the field path; [`Display`](fmt::Display) gives the full `field: body` form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FieldCause {
    /// The field path, e.g. `metadata.labels` or `spec.containers[0].image`.
    pub field: String,
    /// The cause type, one of the [`reason`] constants (e.g. `FieldValueInvalid`).
    pub reason: String,
    /// The error body, e.g. `Required value` or `Invalid value: "x": must be ...`.
    pub message: String,
}

impl FieldCause {
    /// A malformed value (`field.Invalid`). Strings are quoted Go-style in the message.
    pub fn invalid(
        field: impl Into<String>,
        bad_value: impl Into<Value>,
        detail: impl AsRef<str>,
    ) -> Self {
        Self::with_value(
            field,
            reason::FIELD_VALUE_INVALID,
            "Invalid value",
            &bad_value.into(),
            detail.as_ref(),
        )
    }

    /// A value of the wrong type (`field.TypeInvalid`).
    pub fn type_invalid(
        field: impl Into<String>,
        bad_value: impl Into<Value>,
        detail: impl AsRef<str>,
    ) -> Self {
        Self::with_value(
            field,
            reason::FIELD_VALUE_TYPE_INVALID,
            "Invalid value",
            &bad_value.into(),
            detail.as_ref(),
        )
    }

    /// A missing value (`field.Required`); `detail` may be empty.
    pub fn required(field: impl Into<String>, detail: impl AsRef<str>) -> Self {
        Self::without_value(
            field,
            reason::FIELD_VALUE_REQUIRED,
            "Required value",
            detail.as_ref(),
        )
    }

    /// A value not allowed here (`field.Forbidden`).
    pub fn forbidden(field: impl Into<String>, detail: impl AsRef<str>) -> Self {
        Self::without_value(
            field,
            reason::FIELD_VALUE_FORBIDDEN,
            "Forbidden",
            detail.as_ref(),
        )
    }

    /// A value longer than `max_bytes` (`field.TooLong`); the value itself is omitted.
    pub fn too_long(field: impl Into<String>, max_bytes: usize) -> Self {
        Self::without_value(
            field,
            reason::FIELD_VALUE_TOO_LONG,
            "Too long",
            &format!("may not be more than {max_bytes} bytes"),
        )
    }

    /// A list with more than `max_items` items (`field.TooMany`).
    pub fn too_many(field: impl Into<String>, actual_items: usize, max_items: usize) -> Self {
        Self::with_value(
            field,
            reason::FIELD_VALUE_TOO_MANY,
            "Too many",
            &Value::from(actual_items),
            &format!("must have at most {max_items} items"),
        )
    }

    /// A value outside an enumeration (`field.NotSupported`).
    pub fn not_supported(
        field: impl Into<String>,
        bad_value: impl Into<Value>,
        supported: &[&str],
    ) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|value| go_quote(value)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::with_value(
            field,
            reason::FIELD_VALUE_NOT_SUPPORTED,
            "Unsupported value",
            &bad_value.into(),
            &detail,
        )
    }

    /// A repeated value that must be unique (`field.Duplicate`).
    pub fn duplicate(field: impl Into<String>, bad_value: impl Into<Value>) -> Self {
        Self::with_value(
            field,
            reason::FIELD_VALUE_DUPLICATE,
            "Duplicate value",
            &bad_value.into(),
            "",
        )
    }

    /// A referenced value that does not exist (`field.NotFound`).
    pub fn not_found(field: impl Into<String>, bad_value: impl Into<Value>) -> Self {
        Self::with_value(
            field,
            reason::FIELD_VALUE_NOT_FOUND,
            "Not found",
            &bad_value.into(),
            "",
        )
    }

    /// Validation could not be completed (`field.InternalError`).
    pub fn internal(field: impl Into<String>, detail: impl AsRef<str>) -> Self {
        Self::without_value(
            field,
            reason::INTERNAL_ERROR,
            "Internal error",
            detail.as_ref(),
        )
    }

    fn with_value(
        field: impl Into<String>,
        reason: &str,
        label: &str,
        bad_value: &Value,
        detail: &str,
    ) -> Self {
        let mut message = format!("{label}: {}", render_bad_value(bad_value));
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(detail);
        }
        Self {
            field: field.into(),
            reason: reason.to_owned(),
            message,
        }
    }

    fn without_value(field: impl Into<String>, reason: &str, label: &str, detail: &str) -> Self {
        let mut message = label.to_owned();
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(detail);
        }
        Self {
            field: field.into(),
            reason: reason.to_owned(),
            message,
        }
    }
}

impl fmt::Display for FieldCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Joins causes the way apimachinery's error aggregate prints them: duplicates dropped,
/// one cause as-is, several as `[a, b]`, none as the empty string.
pub fn aggregate_message(causes: &[FieldCause]) -> String {
    let mut seen = BTreeSet::new();
    let unique: Vec<String> = causes
        .iter()
        .map(ToString::to_string)
        .filter(|message| seen.insert(message.clone()))
        .collect();
    match unique.as_slice() {
        [] => String::new(),
        [only] => only.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// Renders a bad value as Go's `%q` / `%v` / `%#v` would for the usual Go types.
fn render_bad_value(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::String(text) => go_quote(text),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            let strings: Vec<String> = items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect();
            go_string_slice(&strings)
        }
        // Go would print its own struct syntax; JSON is the closest thing our clients read.
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_match_apimachinery() {
        let cases = [
            (
                FieldCause::invalid("metadata.name", "Foo", "must be lower case"),
                "metadata.name: Invalid value: \"Foo\": must be lower case",
            ),
            (
                FieldCause::invalid("spec.replicas", -1, "must be greater than or equal to 0"),
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            ),
            (
                FieldCause::required("metadata.name", "name or generateName is required"),
                "metadata.name: Required value: name or generateName is required",
            ),
            (
                FieldCause::required("metadata.namespace", ""),
                "metadata.namespace: Required value",
            ),
            (
                FieldCause::forbidden("metadata.namespace", "not allowed on this type"),
                "metadata.namespace: Forbidden: not allowed on this type",
            ),
            (
                FieldCause::too_long("metadata.annotations", 262144),
                "metadata.annotations: Too long: may not be more than 262144 bytes",
            ),
            (
                FieldCause::not_supported("spec.type", "Foo", &["ClusterIP", "NodePort"]),
                "spec.type: Unsupported value: \"Foo\": supported values: \"ClusterIP\", \"NodePort\"",
            ),
            (
                FieldCause::duplicate("spec.ports[1].name", "http"),
                "spec.ports[1].name: Duplicate value: \"http\"",
            ),
            (
                FieldCause::too_many("spec.items", 5, 3),
                "spec.items: Too many: 5: must have at most 3 items",
            ),
            (
                FieldCause::invalid("values", vec!["a", "b"], "oops"),
                "values: Invalid value: []string{\"a\", \"b\"}: oops",
            ),
        ];
        for (cause, want) in cases {
            assert_eq!(cause.to_string(), want);
        }
    }

    #[test]
    fn reasons_are_the_cause_types() {
        assert_eq!(
            FieldCause::invalid("a", "b", "c").reason,
            "FieldValueInvalid"
        );
        assert_eq!(FieldCause::required("a", "").reason, "FieldValueRequired");
        assert_eq!(FieldCause::too_long("a", 1).reason, "FieldValueTooLong");
    }

    #[test]
    fn aggregates_like_go() {
        let one = FieldCause::required("a", "");
        let two = FieldCause::required("b", "");
        assert_eq!(aggregate_message(&[]), "");
        assert_eq!(
            aggregate_message(std::slice::from_ref(&one)),
            "a: Required value"
        );
        assert_eq!(
            aggregate_message(&[one.clone(), two, one]),
            "[a: Required value, b: Required value]"
        );
    }
}
