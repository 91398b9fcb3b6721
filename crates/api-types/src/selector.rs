//! Label and field selectors: parsing the query-string syntax, printing the canonical form,
//! and matching objects.
//!
//! Label selectors follow `k8s.io/apimachinery/pkg/labels` (`a=b`, `a==b`, `a!=b`,
//! `a in (x,y)`, `a notin (x)`, `a`, `!a`, plus the rarely used `a>1` / `a<1`); field
//! selectors follow `k8s.io/apimachinery/pkg/fields` (`=`, `==`, `!=` with `\` escapes).
//! Error messages are apimachinery's, since kubectl prints them verbatim.
//!
//! Known deviation: Go's label lexer treats a NUL byte as the end of input; here it is an
//! ordinary character and so fails key or value validation.

mod error;
mod field;
mod label;

pub use error::{Expected, SelectorError};
pub use field::{FieldOperator, FieldRequirement, FieldSelector, escape_field_value};
pub use label::{LabelSelector, LabelSet, Operator, Requirement};
