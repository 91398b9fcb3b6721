//! Identity of list items: a canonical string for a merge-key value or a set member, so that
//! `80` and `80.0` are the same port and lookups can be hashed instead of scanned.

use serde_json::Value;

/// The canonical form of `value`; equal JSON values (numbers compared by value) give equal
/// strings, and values of different JSON types never collide.
pub(crate) fn canonical(value: &Value) -> String {
    match value {
        Value::Null => "z".to_owned(),
        Value::Bool(flag) => format!("b:{flag}"),
        Value::Number(number) => {
            if let Some(integer) = number.as_i64() {
                format!("n:{integer}")
            } else if let Some(integer) = number.as_u64() {
                format!("n:{integer}")
            } else {
                let float = number.as_f64().unwrap_or(f64::NAN);
                // Integral floats inside the exactly representable range print as integers,
                // so `80.0` matches `80`.
                if float.fract() == 0.0 && float.abs() < 9_007_199_254_740_992.0 {
                    format!("n:{}", float as i64)
                } else {
                    format!("n:{float}")
                }
            }
        }
        Value::String(text) => format!("s:{text}"),
        Value::Array(_) | Value::Object(_) => format!("j:{value}"),
    }
}

/// The canonical merge-key value of a list item, if it is an object holding a non-null `key`.
pub(crate) fn item_key(item: &Value, key: &str) -> Option<String> {
    match item.get(key) {
        None | Some(Value::Null) => None,
        Some(value) => Some(canonical(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::canonical;
    use serde_json::json;

    #[test]
    fn numbers_compare_by_value_and_types_do_not_collide() {
        assert_eq!(canonical(&json!(80)), canonical(&json!(80.0)));
        assert_ne!(canonical(&json!(80)), canonical(&json!("80")));
        assert_ne!(canonical(&json!(true)), canonical(&json!("true")));
        assert_ne!(canonical(&json!(null)), canonical(&json!("null")));
        assert_ne!(canonical(&json!(0.5)), canonical(&json!(0)));
    }
}
