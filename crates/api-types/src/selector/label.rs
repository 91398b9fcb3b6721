//! [`LabelSelector`]: a conjunction of label [`Requirement`]s, its canonical string form and
//! matching.

mod parser;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use serde_json::{Map, Value};

use super::error::SelectorError;
use crate::validation::{FieldCause, is_qualified_name, is_valid_label_value};

/// A label requirement operator (apimachinery's `selection.Operator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operator {
    /// `key=value`.
    Equals,
    /// `key==value`; matches like [`Operator::Equals`] but prints as written.
    DoubleEquals,
    /// `key!=value`; also matches objects without the label.
    NotEquals,
    /// `key in (a,b)`.
    In,
    /// `key notin (a,b)`; also matches objects without the label.
    NotIn,
    /// `key`.
    Exists,
    /// `!key`.
    DoesNotExist,
    /// `key>5`, comparing integers.
    GreaterThan,
    /// `key<5`, comparing integers.
    LessThan,
}

impl Operator {
    /// The apimachinery name of the operator (`=`, `==`, `!=`, `in`, `notin`, `exists`, `!`,
    /// `gt`, `lt`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

/// Anything labels can be looked up in.
pub trait LabelSet {
    /// The value of label `key`, if the label is set.
    fn label(&self, key: &str) -> Option<&str>;
}

impl LabelSet for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: BuildHasher> LabelSet for HashMap<String, String, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// A JSON `metadata.labels` object. Non-string entries count as absent: the API rejects them
/// on write, so they only show up in objects that never passed validation.
impl LabelSet for Map<String, Value> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

/// One validated label requirement. Values are kept sorted and without duplicates, which is
/// also how apimachinery prints them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Builds a requirement, validating it as apimachinery's `NewRequirement` does: a
    /// qualified-name key, one value for `=`/`==`/`!=`, at least one for `in`/`notin`, none
    /// for exists, one integer for `>`/`<`, and valid label values.
    pub fn new(
        key: impl Into<String>,
        operator: Operator,
        values: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self, SelectorError> {
        let key = key.into();
        let values = values.into_iter().map(Into::into).collect();
        Self::validated(key.clone(), operator, values)
            .map_err(|causes| SelectorError::InvalidStructuredRequirement { key, causes })
    }

    /// The `NewRequirement` checks; causes carry apimachinery's field paths.
    pub(crate) fn validated(
        key: String,
        operator: Operator,
        mut values: Vec<String>,
    ) -> Result<Self, Vec<FieldCause>> {
        let mut causes = Vec::new();
        let key_errors = is_qualified_name(&key);
        if !key_errors.is_empty() {
            causes.push(FieldCause::invalid(
                "key",
                key.as_str(),
                key_errors.join("; "),
            ));
        }
        let count_rule = match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                Some("for 'in', 'notin' operators, values set can't be empty")
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                Some("exact-match compatibility requires one single value")
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                Some("values set must be empty for exists and does not exist")
            }
            Operator::GreaterThan | Operator::LessThan if values.len() != 1 => {
                Some("for 'Gt', 'Lt' operators, exactly one value is required")
            }
            _ => None,
        };
        if let Some(rule) = count_rule {
            causes.push(FieldCause::invalid("values", values.clone(), rule));
        }
        if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
            for (index, value) in values.iter().enumerate() {
                if value.parse::<i64>().is_err() {
                    causes.push(FieldCause::invalid(
                        format!("values[{index}]"),
                        value.as_str(),
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    ));
                }
            }
        }
        for (index, value) in values.iter().enumerate() {
            let value_errors = is_valid_label_value(value);
            if !value_errors.is_empty() {
                causes.push(FieldCause::invalid(
                    format!("values[{index}][{key}]"),
                    value.as_str(),
                    value_errors.join("; "),
                ));
            }
        }
        if !causes.is_empty() {
            return Err(causes);
        }
        values.sort();
        values.dedup();
        Ok(Self {
            key,
            operator,
            values,
        })
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, sorted and deduplicated (empty for exists and does-not-exist).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether `labels` satisfy this requirement.
    pub fn matches<L: LabelSet + ?Sized>(&self, labels: &L) -> bool {
        let value = labels.label(&self.key);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => {
                value.is_some_and(|value| self.has_value(value))
            }
            Operator::NotEquals | Operator::NotIn => !value.is_some_and(|v| self.has_value(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(actual), [bound]) = (value, self.values.as_slice()) else {
                    return false;
                };
                let (Ok(actual), Ok(bound)) = (actual.parse::<i64>(), bound.parse::<i64>()) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > bound
                } else {
                    actual < bound
                }
            }
        }
    }

    fn has_value(&self, value: &str) -> bool {
        self.values.iter().any(|candidate| candidate == value)
    }
}

/// Prints the requirement as apimachinery's `Requirement.String()` does, which re-parses to
/// the same requirement.
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let (operator, parenthesised) = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => ("=", false),
            Operator::DoubleEquals => ("==", false),
            Operator::NotEquals => ("!=", false),
            Operator::In => (" in ", true),
            Operator::NotIn => (" notin ", true),
            Operator::GreaterThan => (">", false),
            Operator::LessThan => ("<", false),
        };
        f.write_str(operator)?;
        if parenthesised {
            f.write_str("(")?;
        }
        f.write_str(&self.values.join(","))?;
        if parenthesised {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A label selector: every requirement must match. The empty selector matches everything.
///
/// Requirements are kept sorted by key (stable, so requirements on one key keep their
/// order), which makes the [`Display`](fmt::Display) form canonical: `parse(s.to_string())`
/// gives back an equal selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses the query-string syntax (`?labelSelector=`); the empty string selects everything.
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        parser::parse(selector).map(Self::from_requirements)
    }

    /// Converts a `metav1.LabelSelector` (`matchLabels` and `matchExpressions`) as
    /// apimachinery's `LabelSelectorAsSelector` does. An empty one selects everything; a
    /// *missing* one selects nothing, which callers holding an `Option` must handle.
    pub fn from_k8s(selector: &metav1::LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::new(
                key.clone(),
                Operator::Equals,
                [value.clone()],
            )?);
        }
        for expression in selector.match_expressions.iter().flatten() {
            let operator = match expression.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError::UnknownOperator {
                        operator: other.to_owned(),
                    });
                }
            };
            let values = expression.values.clone().unwrap_or_default();
            requirements.push(Requirement::new(expression.key.clone(), operator, values)?);
        }
        Ok(Self::from_requirements(requirements))
    }

    /// A selector requiring exactly these labels (a Service's `spec.selector`, a
    /// ReplicaSet's `matchLabels`). Like apimachinery's `SelectorFromValidatedSet`, it does
    /// not validate; an empty map selects everything.
    pub fn from_match_labels(labels: &BTreeMap<String, String>) -> Self {
        let requirements = labels
            .iter()
            .map(|(key, value)| Requirement {
                key: key.clone(),
                operator: Operator::Equals,
                values: vec![value.clone()],
            })
            .collect();
        Self::from_requirements(requirements)
    }

    /// Builds a selector from already validated requirements.
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|left, right| left.key.cmp(&right.key));
        Self { requirements }
    }

    /// Whether the selector has no requirements and so matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_set(labels)
    }

    /// Whether any [`LabelSet`] satisfies every requirement.
    pub fn matches_set<L: LabelSet + ?Sized>(&self, labels: &L) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether a JSON labels object satisfies every requirement; `None` means no labels.
    pub fn matches_json(&self, labels: Option<&Map<String, Value>>) -> bool {
        match labels {
            Some(labels) => self.matches_set(labels),
            None => self.matches_set(&Map::new()),
        }
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches_object(&self, object: &Value) -> bool {
        let labels = object
            .get("metadata")
            .and_then(|metadata| metadata.get("labels"))
            .and_then(Value::as_object);
        self.matches_json(labels)
    }

    /// The single value label `key` must have, if the first requirement on `key` pins one
    /// (`=`, `==`, or `in` with one value); useful for index lookups.
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let requirement = self.requirements.iter().find(|r| r.key == key)?;
        match (requirement.operator, requirement.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [value]) => Some(value),
            _ => None,
        }
    }
}

/// The canonical string form (`app=web,tier in (a,b)`), as used for `status.selector` of a
/// Scale; the empty selector prints as the empty string.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

impl FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(selector: &str) -> Result<Self, Self::Err> {
        Self::parse(selector)
    }
}

#[cfg(test)]
mod tests;
