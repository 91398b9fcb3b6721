//! The label selector lexer and recursive-descent parser, following the grammar and error
//! messages of apimachinery's `labels.Parse`:
//!
//! ```text
//! selector    ::= requirement | requirement "," selector
//! requirement ::= ["!"] KEY [ set-based | exact-match ]
//! set-based   ::= ("in" | "notin") "(" VALUE { "," VALUE } ")"
//! exact-match ::= ("=" | "==" | "!=" | ">" | "<") VALUE
//! ```

use super::{Operator, Requirement};
use crate::selector::error::{Expected, SelectorError};
use crate::validation::{FieldCause, is_qualified_name};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    End,
    OpenParen,
    CloseParen,
    Comma,
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    In,
    NotIn,
    Identifier,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    kind: Kind,
    literal: &'a str,
}

/// Where the parser is: in value position the keywords `in` and `notin` are plain words,
/// so `in in (in)` is a valid selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(byte: u8) -> bool {
    matches!(byte, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits the input into tokens. Every special character is a token on its own except the
/// two-byte `!=` and `==`; identifiers run up to the next special character or whitespace.
/// All split points are ASCII, so slicing by byte index stays on character boundaries.
fn lex(input: &str) -> Vec<Token<'_>> {
    let bytes = input.as_bytes();
    let mut tokens = Vec::new();
    let mut position = 0;
    loop {
        while position < bytes.len() && is_whitespace(bytes[position]) {
            position += 1;
        }
        let Some(&first) = bytes.get(position) else {
            tokens.push(Token {
                kind: Kind::End,
                literal: "",
            });
            return tokens;
        };
        let start = position;
        let kind = if is_special(first) {
            let second = bytes.get(position + 1).copied();
            let (kind, length) = match (first, second) {
                (b'!', Some(b'=')) => (Kind::NotEquals, 2),
                (b'=', Some(b'=')) => (Kind::DoubleEquals, 2),
                (b'!', _) => (Kind::Bang, 1),
                (b'=', _) => (Kind::Equals, 1),
                (b'(', _) => (Kind::OpenParen, 1),
                (b')', _) => (Kind::CloseParen, 1),
                (b',', _) => (Kind::Comma, 1),
                (b'>', _) => (Kind::GreaterThan, 1),
                _ => (Kind::LessThan, 1),
            };
            position += length;
            kind
        } else {
            while position < bytes.len()
                && !is_special(bytes[position])
                && !is_whitespace(bytes[position])
            {
                position += 1;
            }
            match &input[start..position] {
                "in" => Kind::In,
                "notin" => Kind::NotIn,
                _ => Kind::Identifier,
            }
        };
        tokens.push(Token {
            kind,
            literal: &input[start..position],
        });
    }
}

struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    position: usize,
}

/// Parses a selector into requirements in written order.
pub(super) fn parse(input: &str) -> Result<Vec<Requirement>, SelectorError> {
    let mut parser = Parser {
        tokens: lex(input),
        position: 0,
    };
    parser.selector()
}

impl<'a> Parser<'a> {
    fn lookahead(&self, context: Context) -> Token<'a> {
        // The token list always ends with `End`, and `consume` never moves past it.
        let token = self.tokens[self.position.min(self.tokens.len() - 1)];
        Self::in_context(token, context)
    }

    fn consume(&mut self, context: Context) -> Token<'a> {
        let token = self.lookahead(context);
        if token.kind != Kind::End {
            self.position += 1;
        }
        token
    }

    fn in_context(token: Token<'a>, context: Context) -> Token<'a> {
        match (context, token.kind) {
            (Context::Values, Kind::In | Kind::NotIn) => Token {
                kind: Kind::Identifier,
                literal: token.literal,
            },
            _ => token,
        }
    }

    fn selector(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let token = self.lookahead(Context::Values);
            match token.kind {
                Kind::Identifier | Kind::Bang => {
                    requirements.push(self.requirement()?);
                    let next = self.consume(Context::Values);
                    match next.kind {
                        Kind::End => return Ok(requirements),
                        Kind::Comma => {
                            let after = self.lookahead(Context::Values);
                            if !matches!(after.kind, Kind::Identifier | Kind::Bang) {
                                return Err(unexpected(after, Expected::IdentifierAfterComma));
                            }
                        }
                        _ => return Err(unexpected(next, Expected::CommaOrEnd)),
                    }
                }
                Kind::End => return Ok(requirements),
                _ => return Err(unexpected(token, Expected::RequirementStart)),
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let (key, inferred) = self.key_and_inferred_operator()?;
        if let Some(operator) = inferred {
            return validated(key, operator, Vec::new());
        }
        let operator = self.operator()?;
        let mut values = match operator {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => vec![self.exact_value()?],
        };
        // apimachinery collects values in a set and passes them on sorted.
        values.sort();
        values.dedup();
        validated(key, operator, values)
    }

    /// Reads `[!] KEY`; the operator is known already for `!key` and for a bare `key`.
    fn key_and_inferred_operator(&mut self) -> Result<(&'a str, Option<Operator>), SelectorError> {
        let mut token = self.consume(Context::Values);
        let mut operator = None;
        if token.kind == Kind::Bang {
            operator = Some(Operator::DoesNotExist);
            token = self.consume(Context::Values);
        }
        if token.kind != Kind::Identifier {
            return Err(unexpected_in_requirement(token, Expected::Identifier));
        }
        let key = token.literal;
        let key_errors = is_qualified_name(key);
        if !key_errors.is_empty() {
            // apimachinery validates the key with a nil field path here, hence `<nil>`.
            return Err(SelectorError::InvalidRequirement {
                key: key.to_owned(),
                causes: vec![FieldCause::invalid("<nil>", key, key_errors.join("; "))],
            });
        }
        if operator.is_none()
            && matches!(
                self.lookahead(Context::Values).kind,
                Kind::End | Kind::Comma
            )
        {
            operator = Some(Operator::Exists);
        }
        Ok((key, operator))
    }

    fn operator(&mut self) -> Result<Operator, SelectorError> {
        let token = self.consume(Context::KeyAndOperator);
        Ok(match token.kind {
            Kind::In => Operator::In,
            Kind::NotIn => Operator::NotIn,
            Kind::Equals => Operator::Equals,
            Kind::DoubleEquals => Operator::DoubleEquals,
            Kind::NotEquals => Operator::NotEquals,
            Kind::GreaterThan => Operator::GreaterThan,
            Kind::LessThan => Operator::LessThan,
            _ => return Err(unexpected_in_requirement(token, Expected::Operator)),
        })
    }

    /// Reads `( VALUE, ... )`. Empty elements are the empty value: `()` and `(,a)` both
    /// contain `""`.
    fn value_set(&mut self) -> Result<Vec<String>, SelectorError> {
        let open = self.consume(Context::Values);
        if open.kind != Kind::OpenParen {
            return Err(unexpected_in_requirement(open, Expected::OpenParen));
        }
        let first = self.lookahead(Context::Values);
        match first.kind {
            Kind::CloseParen => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            Kind::Identifier | Kind::Comma => {
                let values = self.value_list()?;
                // `value_list` returns only with `)` next.
                self.consume(Context::Values);
                Ok(values)
            }
            _ => Err(unexpected_in_requirement(first, Expected::ValueSetStart)),
        }
    }

    fn value_list(&mut self) -> Result<Vec<String>, SelectorError> {
        let mut values: Vec<String> = Vec::new();
        loop {
            let token = self.consume(Context::Values);
            match token.kind {
                Kind::Identifier => {
                    values.push(token.literal.to_owned());
                    let next = self.lookahead(Context::Values);
                    match next.kind {
                        Kind::Comma => {}
                        Kind::CloseParen => return Ok(values),
                        _ => {
                            return Err(unexpected_in_requirement(
                                next,
                                Expected::CommaOrCloseParen,
                            ));
                        }
                    }
                }
                Kind::Comma => {
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    match self.lookahead(Context::Values).kind {
                        Kind::CloseParen => {
                            values.push(String::new());
                            return Ok(values);
                        }
                        Kind::Comma => values.push(String::new()),
                        _ => {}
                    }
                }
                _ => {
                    return Err(unexpected_in_requirement(
                        token,
                        Expected::CommaOrIdentifier,
                    ));
                }
            }
        }
    }

    /// Reads the value after `=`, `==`, `!=`, `>` or `<`; nothing before `,` or the end
    /// means the empty value.
    fn exact_value(&mut self) -> Result<String, SelectorError> {
        if matches!(
            self.lookahead(Context::Values).kind,
            Kind::End | Kind::Comma
        ) {
            return Ok(String::new());
        }
        let token = self.consume(Context::Values);
        if token.kind == Kind::Identifier {
            Ok(token.literal.to_owned())
        } else {
            Err(unexpected_in_requirement(token, Expected::Identifier))
        }
    }
}

fn validated(
    key: &str,
    operator: Operator,
    values: Vec<String>,
) -> Result<Requirement, SelectorError> {
    Requirement::validated(key.to_owned(), operator, values).map_err(|causes| {
        SelectorError::InvalidRequirement {
            key: key.to_owned(),
            causes,
        }
    })
}

fn unexpected(token: Token<'_>, expected: Expected) -> SelectorError {
    SelectorError::Unexpected {
        found: token.literal.to_owned(),
        expected,
    }
}

fn unexpected_in_requirement(token: Token<'_>, expected: Expected) -> SelectorError {
    SelectorError::UnexpectedInRequirement {
        found: token.literal.to_owned(),
        expected,
    }
}
