//! Go-style string quoting (`%q`), which apimachinery uses inside many messages.

use std::fmt::Write as _;

/// Quotes `value` the way Go's `strconv.Quote` does for valid UTF-8: printable characters
/// pass through, the usual C escapes are used, and other control characters become `\xNN`
/// or `\uNNNN`.
pub(crate) fn go_quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for character in value.chars() {
        match character {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\u{7}' => quoted.push_str("\\a"),
            '\u{8}' => quoted.push_str("\\b"),
            '\u{c}' => quoted.push_str("\\f"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            '\u{b}' => quoted.push_str("\\v"),
            c if (c as u32) < 0x80 && c.is_control() => {
                // Writing to a String cannot fail.
                let _ = write!(quoted, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(quoted, "\\u{:04x}", c as u32);
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Renders a string slice the way Go's `%#v` renders a `[]string`, which apimachinery uses
/// for bad values that are lists (`[]string{"a", "b"}`, or `[]string(nil)` when empty).
pub(crate) fn go_string_slice(values: &[String]) -> String {
    if values.is_empty() {
        return "[]string(nil)".to_owned();
    }
    let quoted: Vec<String> = values.iter().map(|value| go_quote(value)).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        let cases = [
            ("", r#""""#),
            ("web-1", r#""web-1""#),
            ("a\"b", r#""a\"b""#),
            ("a\\b", r#""a\\b""#),
            ("tab\there", r#""tab\there""#),
            ("nul\u{0}", r#""nul\x00""#),
            ("del\u{7f}", r#""del\x7f""#),
            ("c1\u{85}", r#""c1\u0085""#),
            ("ünï", r#""ünï""#),
        ];
        for (input, want) in cases {
            assert_eq!(go_quote(input), want, "input {input:?}");
        }
    }

    #[test]
    fn renders_string_slices_like_go() {
        assert_eq!(go_string_slice(&[]), "[]string(nil)");
        assert_eq!(
            go_string_slice(&["a".to_owned(), "b".to_owned()]),
            r#"[]string{"a", "b"}"#
        );
    }
}
