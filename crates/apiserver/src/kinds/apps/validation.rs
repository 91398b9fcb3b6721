//! Validation of ReplicaSets and Deployments with Kubernetes' wording: a selector that is
//! present, valid, not empty, matching the template's labels, and immutable; a template
//! valid as a pod that restarts `Always`; counts that are not negative; a rolling-update
//! strategy whose surge and unavailability are integers or percentages.

use ronghe_api_types::validation::{FieldCause, reason, validate_labels};
use serde_json::Value;

use super::{pod_functions, pod_of_template, selector_of};
use crate::object;

pub(super) fn replica_set(new: &Value, old: Option<&Value>) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    non_negative(new, "replicas", &mut causes);
    non_negative(new, "minReadySeconds", &mut causes);
    selector_and_template(new, &mut causes);
    immutable_selector(new, old, &mut causes);
    causes
}

pub(super) fn deployment(new: &Value, old: Option<&Value>) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    non_negative(new, "replicas", &mut causes);
    selector_and_template(new, &mut causes);
    strategy(new, &mut causes);
    non_negative(new, "minReadySeconds", &mut causes);
    non_negative(new, "revisionHistoryLimit", &mut causes);
    if let Some(deadline) = new.pointer("/spec/progressDeadlineSeconds")
        && let Some(seconds) = deadline.as_i64()
    {
        non_negative(new, "progressDeadlineSeconds", &mut causes);
        let min_ready = new
            .pointer("/spec/minReadySeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if seconds <= min_ready {
            causes.push(FieldCause::invalid(
                "spec.progressDeadlineSeconds",
                seconds,
                "must be greater than minReadySeconds",
            ));
        }
    }
    immutable_selector(new, old, &mut causes);
    causes
}

fn non_negative(object: &Value, field: &str, causes: &mut Vec<FieldCause>) {
    if let Some(value) = object
        .pointer(&format!("/spec/{field}"))
        .and_then(Value::as_i64)
        && value < 0
    {
        causes.push(FieldCause::invalid(
            format!("spec.{field}"),
            value,
            "must be greater than or equal to 0",
        ));
    }
}

/// apimachinery's rules for a workload's selector and template
/// (`ValidatePodTemplateSpecForReplicaSet`).
fn selector_and_template(object: &Value, causes: &mut Vec<FieldCause>) {
    let raw = object.pointer("/spec/selector").filter(|s| !s.is_null());
    let selector = match selector_of(object) {
        None => {
            causes.push(FieldCause::required("spec.selector", ""));
            None
        }
        Some(Err(())) => {
            causes.push(invalid_go(
                "spec.selector",
                go_label_selector(raw),
                "invalid label selector",
            ));
            None
        }
        Some(Ok(selector)) => {
            causes.extend(validate_labels(
                raw.and_then(|s| s.get("matchLabels")),
                "spec.selector.matchLabels",
            ));
            if selector.is_empty() {
                causes.push(invalid_go(
                    "spec.selector",
                    go_label_selector(raw),
                    "empty selector is invalid for deployment",
                ));
            }
            Some(selector)
        }
    };
    let Some(template) = object.pointer("/spec/template").filter(|t| t.is_object()) else {
        causes.push(FieldCause::required("spec.template", ""));
        return;
    };
    let labels = object::labels(template);
    if let Some(selector) = selector
        && !selector.is_empty()
        && !selector.matches(&labels)
    {
        causes.push(invalid_go(
            "spec.template.metadata.labels",
            go_string_map(&labels),
            "`selector` does not match template `labels`",
        ));
    }
    causes.extend(validate_labels(
        template.pointer("/metadata/labels"),
        "spec.template.metadata.labels",
    ));
    if let (_, Some(validate_pod)) = pod_functions() {
        let pod = pod_of_template(template);
        causes.extend(validate_pod(&pod, None).into_iter().map(|mut cause| {
            cause.field = format!("spec.template.{}", cause.field);
            cause
        }));
    }
    let restart = template
        .pointer("/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("Always");
    if restart != "Always" {
        causes.push(FieldCause::not_supported(
            "spec.template.spec.restartPolicy",
            restart,
            &["Always"],
        ));
    }
    if template
        .pointer("/spec/activeDeadlineSeconds")
        .is_some_and(|v| !v.is_null())
    {
        causes.push(FieldCause::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in ReplicaSet is not Supported",
        ));
    }
}

fn immutable_selector(new: &Value, old: Option<&Value>, causes: &mut Vec<FieldCause>) {
    let Some(old) = old else { return };
    let selector = new.pointer("/spec/selector");
    if selector != old.pointer("/spec/selector") {
        causes.push(invalid_go(
            "spec.selector",
            go_label_selector(selector),
            "field is immutable",
        ));
    }
}

fn strategy(object: &Value, causes: &mut Vec<FieldCause>) {
    let Some(strategy) = object.pointer("/spec/strategy") else {
        return;
    };
    let rolling = strategy.get("rollingUpdate").filter(|r| !r.is_null());
    match strategy.get("type").and_then(Value::as_str).unwrap_or("") {
        "Recreate" => {
            if rolling.is_some() {
                causes.push(FieldCause::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => {
            let Some(rolling) = rolling else {
                return;
            };
            let unavailable = rolling.get("maxUnavailable");
            let surge = rolling.get("maxSurge");
            for (field, value) in [("maxUnavailable", unavailable), ("maxSurge", surge)] {
                if let Some(value) = value {
                    int_or_percent(
                        &format!("spec.strategy.rollingUpdate.{field}"),
                        value,
                        causes,
                    );
                }
            }
            if int_or_percent_value(unavailable) == Some(0)
                && int_or_percent_value(surge) == Some(0)
            {
                causes.push(FieldCause::invalid(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    unavailable.cloned().unwrap_or(Value::Null),
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
            if let Some(Value::String(text)) = unavailable
                && percent(text).is_some_and(|p| p > 100)
            {
                causes.push(FieldCause::invalid(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    text.as_str(),
                    "must not be greater than 100%",
                ));
            }
        }
        other => causes.push(FieldCause::not_supported(
            "spec.strategy.type",
            other,
            &["Recreate", "RollingUpdate"],
        )),
    }
}

/// `ValidatePositiveIntOrPercent`: a non-negative integer or a `N%` string.
fn int_or_percent(field: &str, value: &Value, causes: &mut Vec<FieldCause>) {
    match value {
        Value::Number(number) => {
            if number.as_i64().is_some_and(|n| n < 0) {
                causes.push(FieldCause::invalid(
                    field,
                    value.clone(),
                    "must be greater than or equal to 0",
                ));
            }
        }
        Value::String(text) if percent(text).is_some() => {}
        Value::String(text) => causes.push(FieldCause::invalid(
            field,
            text.as_str(),
            "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
        )),
        other => causes.push(FieldCause::invalid(
            field,
            other.clone(),
            "must be an integer or percentage (e.g '5%')",
        )),
    }
}

/// The number of a valid `N%` string.
pub(crate) fn percent(text: &str) -> Option<i64> {
    let digits = text.strip_suffix('%')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The number in an int-or-percent, either form (`getIntOrPercentValue`).
fn int_or_percent_value(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => percent(text),
        _ => None,
    }
}

/// An `Invalid value` cause whose value is already rendered as Go prints it.
fn invalid_go(field: &str, rendered: String, detail: &str) -> FieldCause {
    FieldCause {
        field: field.to_owned(),
        reason: reason::FIELD_VALUE_INVALID.to_owned(),
        message: format!("Invalid value: {rendered}: {detail}"),
    }
}

fn go_quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| format!("\"{text}\""))
}

/// `map[string]string{"app":"web", "tier":"fe"}`, as Go's `%#v` prints labels.
fn go_string_map(map: &std::collections::BTreeMap<String, String>) -> String {
    let entries: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v)))
        .collect();
    format!("map[string]string{{{}}}", entries.join(", "))
}

/// A `metav1.LabelSelector` as Go's `%#v` prints it.
fn go_label_selector(selector: Option<&Value>) -> String {
    let Some(selector) = selector.filter(|s| !s.is_null()) else {
        return "null".into();
    };
    let labels = match selector.get("matchLabels").and_then(Value::as_object) {
        Some(map) => go_string_map(
            &map.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect(),
        ),
        None => "map[string]string(nil)".into(),
    };
    let expressions = match selector.get("matchExpressions").and_then(Value::as_array) {
        Some(items) => {
            let items: Vec<String> = items.iter().map(go_requirement).collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
        None => "[]v1.LabelSelectorRequirement(nil)".into(),
    };
    format!("v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{expressions}}}")
}

fn go_requirement(requirement: &Value) -> String {
    let text = |field: &str| go_quote(requirement.get(field).and_then(Value::as_str).unwrap_or(""));
    let values = match requirement.get("values").and_then(Value::as_array) {
        Some(values) => {
            let values: Vec<String> = values
                .iter()
                .map(|v| go_quote(v.as_str().unwrap_or_default()))
                .collect();
            format!("[]string{{{}}}", values.join(", "))
        }
        None => "[]string(nil)".into(),
    };
    format!(
        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{values}}}",
        text("key"),
        text("operator")
    )
}
