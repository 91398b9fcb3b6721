//! [`SelectorError`]: why a label or field selector was rejected.
//!
//! Every message is the exact apimachinery text, because the apiserver returns it as the
//! `message` of a 400 and clients print it. That is also why the requirement variants carry
//! their causes in the message rather than as a `#[source]`: the wire text needs them.

use std::fmt;

use crate::quote::go_quote;
use crate::validation::{FieldCause, aggregate_message};

/// A rejected selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// A label selector has an unexpected token between requirements.
    #[error("found '{found}'{expected}")]
    Unexpected {
        /// The token found (empty at the end of input).
        found: String,
        /// What the grammar allowed there.
        expected: Expected,
    },
    /// A label selector has an unexpected token inside one requirement.
    #[error("unable to parse requirement: found '{found}'{expected}")]
    UnexpectedInRequirement {
        /// The token found (empty at the end of input).
        found: String,
        /// What the grammar allowed there.
        expected: Expected,
    },
    /// A parsed label requirement has an invalid key, value or value count.
    #[error("unable to parse requirement: {}", aggregate_message(causes))]
    InvalidRequirement {
        /// The requirement's key.
        key: String,
        /// One cause per broken rule, with apimachinery's field paths (`<nil>`, `values[0][app]`).
        causes: Vec<FieldCause>,
    },
    /// A structured requirement (`matchLabels`, `matchExpressions`, [`super::Requirement::new`])
    /// is invalid.
    #[error("{}", aggregate_message(causes))]
    InvalidStructuredRequirement {
        /// The requirement's key.
        key: String,
        /// One cause per broken rule (`key`, `values`, `values[0][app]`).
        causes: Vec<FieldCause>,
    },
    /// A `matchExpressions` operator other than In, NotIn, Exists and DoesNotExist.
    #[error("{} is not a valid label selector operator", go_quote(operator))]
    UnknownOperator {
        /// The operator as written.
        operator: String,
    },
    /// A field selector term has no `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldTerm {
        /// The whole selector.
        selector: String,
        /// The term that could not be split.
        term: String,
    },
    /// A field selector value has a `\` not followed by `\`, `,` or `=`.
    #[error("invalid field selector: invalid escape sequence: {sequence}")]
    FieldEscape {
        /// The offending sequence, e.g. `\n` or a lone trailing `\`.
        sequence: String,
    },
    /// A field selector value has an unescaped `,` or `=`. The message prints the code point
    /// as a number because apimachinery formats the Go rune with `%v`.
    #[error("invalid field selector: unescaped character in value: {}", u32::from(*character))]
    FieldUnescaped {
        /// The character that needed escaping.
        character: char,
    },
}

/// What a label selector parser expected where it found something else. Its `Display` is the
/// tail of the apimachinery message, including the separator before `expected:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Expected {
    /// Start of a requirement or end of input.
    RequirementStart,
    /// A requirement after a comma.
    IdentifierAfterComma,
    /// A comma or end of input after a requirement.
    CommaOrEnd,
    /// A key or value.
    Identifier,
    /// A binary operator.
    Operator,
    /// `(` after `in` / `notin`.
    OpenParen,
    /// The first element of a value set.
    ValueSetStart,
    /// A comma or `)` after a value in a set.
    CommaOrCloseParen,
    /// A comma or value inside a set.
    CommaOrIdentifier,
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expected::RequirementStart => ", expected: !, identifier, or 'end of string'",
            Expected::IdentifierAfterComma => ", expected: identifier after ','",
            Expected::CommaOrEnd => ", expected: ',' or 'end of string'",
            Expected::Identifier => ", expected: identifier",
            Expected::Operator => ", expected: in, notin, =, ==, !=, gt, lt",
            // apimachinery has no comma in this one message.
            Expected::OpenParen => " expected: '('",
            Expected::ValueSetStart => ", expected: ',', ')' or identifier",
            Expected::CommaOrCloseParen => ", expected: ',' or ')'",
            Expected::CommaOrIdentifier => ", expected: ',', or identifier",
        })
    }
}
