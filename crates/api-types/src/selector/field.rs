//! [`FieldSelector`]: `?fieldSelector=` parsing, printing and matching, following
//! apimachinery's `fields.ParseSelector`.
//!
//! Only `=`, `==` (the same as `=`) and `!=` exist. In values, `\` escapes `\`, `,` and `=`;
//! field paths are taken verbatim. Which field paths a resource supports is the server's
//! business: it walks [`FieldSelector::fields`] and answers 400
//! `field label not supported: <path>` for the rest.

use std::fmt;
use std::str::FromStr;

use super::error::SelectorError;

/// A field requirement operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldOperator {
    /// `field=value` or `field==value`.
    Equals,
    /// `field!=value`.
    NotEquals,
}

impl FieldOperator {
    /// The operator as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        }
    }
}

/// One `field op value` term.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldRequirement {
    /// The field path, e.g. `metadata.name` or `status.phase`.
    pub field: String,
    /// The comparison.
    pub operator: FieldOperator,
    /// The unescaped value; an absent field compares as the empty string.
    pub value: String,
}

impl FieldRequirement {
    /// Whether the field's value (absent meaning `""`) satisfies the requirement.
    pub fn matches(&self, actual: Option<&str>) -> bool {
        let actual = actual.unwrap_or("");
        match self.operator {
            FieldOperator::Equals => actual == self.value,
            FieldOperator::NotEquals => actual != self.value,
        }
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}",
            self.field,
            self.operator.as_str(),
            escape_field_value(&self.value)
        )
    }
}

/// A field selector: every requirement must match. The empty selector matches everything.
///
/// Requirements are kept sorted, so the [`Display`](fmt::Display) form is canonical and
/// re-parses to an equal selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses the query-string syntax; the empty string selects everything. Terms that have
    /// neither a field nor a value (`=`) are dropped, as apimachinery drops them.
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let mut terms = split_terms(selector);
        // apimachinery sorts the raw terms first, which decides which error is reported.
        terms.sort_unstable();
        let mut requirements = Vec::with_capacity(terms.len());
        for term in terms.into_iter().filter(|term| !term.is_empty()) {
            let Some((field, operator, raw_value)) = split_term(term) else {
                return Err(SelectorError::FieldTerm {
                    selector: selector.to_owned(),
                    term: term.to_owned(),
                });
            };
            let value = unescape_value(raw_value)?;
            if field.is_empty() && value.is_empty() {
                continue;
            }
            requirements.push(FieldRequirement {
                field: field.to_owned(),
                operator,
                value,
            });
        }
        Ok(Self::from_requirements(requirements))
    }

    /// Builds a selector from requirements.
    pub fn from_requirements(mut requirements: Vec<FieldRequirement>) -> Self {
        requirements.sort();
        Self { requirements }
    }

    /// Whether the selector has no requirements and so matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// The field paths the selector uses, in order, possibly repeated.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.requirements.iter().map(|r| r.field.as_str())
    }

    /// Whether an object matches, given a lookup from field path to value.
    pub fn matches(&self, get_field: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements
            .iter()
            .all(|requirement| requirement.matches(get_field(&requirement.field).as_deref()))
    }

    /// The value `field` must equal, if some `=` requirement pins it (for index lookups,
    /// e.g. `metadata.name` or `spec.nodeName`).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
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

impl FromStr for FieldSelector {
    type Err = SelectorError;

    fn from_str(selector: &str) -> Result<Self, Self::Err> {
        Self::parse(selector)
    }
}

/// Escapes `\`, `,` and `=` in a field selector value.
pub fn escape_field_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        if matches!(character, '\\' | ',' | '=') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

/// Splits on commas not preceded by an escaping `\`.
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (index, character) in selector.char_indices() {
        if escaped {
            escaped = false;
        } else if character == '\\' {
            escaped = true;
        } else if character == ',' {
            terms.push(&selector[start..index]);
            start = index + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Splits a term at the first operator, trying `!=`, then `==`, then `=` at each position.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    const OPERATORS: [(&str, FieldOperator); 3] = [
        ("!=", FieldOperator::NotEquals),
        ("==", FieldOperator::Equals),
        ("=", FieldOperator::Equals),
    ];
    term.char_indices().find_map(|(index, _)| {
        let rest = &term[index..];
        OPERATORS.iter().find_map(|(text, operator)| {
            rest.strip_prefix(text)
                .map(|value| (&term[..index], *operator, value))
        })
    })
}

fn unescape_value(raw: &str) -> Result<String, SelectorError> {
    let mut value = String::with_capacity(raw.len());
    let mut escaped = false;
    for character in raw.chars() {
        if escaped {
            if !matches!(character, '\\' | ',' | '=') {
                return Err(SelectorError::FieldEscape {
                    sequence: format!("\\{character}"),
                });
            }
            value.push(character);
            escaped = false;
            continue;
        }
        match character {
            '\\' => escaped = true,
            ',' | '=' => return Err(SelectorError::FieldUnescaped { character }),
            other => value.push(other),
        }
    }
    if escaped {
        return Err(SelectorError::FieldEscape {
            sequence: "\\".to_owned(),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests;
