//! Request bodies as Neutron reads them: the resource member (`{"network": {...}}`),
//! attributes it does not know refused, and each attribute's type checked with Neutron's
//! `Invalid input for <attribute>. Reason: ...` wording.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::fault::{NeutronFault, NeutronResult};

/// The attributes of one resource in a request.
pub struct Attributes {
    pub map: Map<String, Value>,
}

fn invalid(attribute: &str, reason: impl std::fmt::Display) -> NeutronFault {
    NeutronFault::bad_request(format!("Invalid input for {attribute}. Reason: {reason}."))
}

/// Parses a JSON body.
pub fn json(body: &Bytes) -> NeutronResult<Value> {
    if body.is_empty() {
        return Err(NeutronFault::bad_request("Resource body required"));
    }
    serde_json::from_slice(body).map_err(|_| NeutronFault::bad_request("Malformed request body"))
}

impl Attributes {
    /// The member `key` of a JSON body, with only `allowed` attributes.
    pub fn parse(body: &Bytes, key: &str, allowed: &[&str]) -> NeutronResult<Self> {
        let value = json(body)?;
        Self::of(value.get(key), key, allowed)
    }

    /// One member (of a body, or of a bulk list).
    pub fn of(value: Option<&Value>, key: &str, allowed: &[&str]) -> NeutronResult<Self> {
        let Some(Value::Object(map)) = value else {
            return Err(NeutronFault::bad_request(format!(
                "Unable to find '{key}' in request body"
            )));
        };
        let unknown: Vec<String> = map
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(NeutronFault::unrecognized(&unknown));
        }
        Ok(Self { map: map.clone() })
    }

    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub fn raw(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    /// Refuses attributes that may not change (`Cannot update read-only attribute x`).
    pub fn read_only(&self, keys: &[&str]) -> NeutronResult<()> {
        match keys.iter().find(|k| self.map.contains_key(**k)) {
            Some(key) => Err(NeutronFault::bad_request(format!(
                "Cannot update read-only attribute {key}"
            ))),
            None => Ok(()),
        }
    }

    pub fn string(&self, key: &str) -> NeutronResult<Option<String>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(other) => Err(invalid(key, format!("'{other}' is not a valid string"))),
        }
    }

    /// A string that may be `null` (`Some(None)`).
    pub fn nullable_string(&self, key: &str) -> NeutronResult<Option<Option<String>>> {
        match self.map.get(key) {
            Some(Value::Null) => Ok(Some(None)),
            _ => Ok(self.string(key)?.map(Some)),
        }
    }

    pub fn boolean(&self, key: &str) -> NeutronResult<Option<bool>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(Value::String(text)) => match text.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(invalid(
                    key,
                    format!("'{text}' is not a valid boolean value"),
                )),
            },
            Some(other) => Err(invalid(
                key,
                format!("'{other}' is not a valid boolean value"),
            )),
        }
    }

    /// A non-negative integer (given as a number or a string of digits); `null` is absent.
    pub fn integer(&self, key: &str) -> NeutronResult<Option<u64>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(number)) => number
                .as_u64()
                .map(Some)
                .ok_or_else(|| invalid(key, format!("'{number}' is not an integer"))),
            Some(Value::String(text)) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| invalid(key, format!("'{text}' is not an integer"))),
            Some(other) => Err(invalid(key, format!("'{other}' is not an integer"))),
        }
    }

    /// An integer that must fit in `u32`.
    pub fn small_integer(&self, key: &str) -> NeutronResult<Option<u32>> {
        match self.integer(key)? {
            None => Ok(None),
            Some(value) => u32::try_from(value)
                .map(Some)
                .map_err(|_| invalid(key, format!("'{value}' is too large"))),
        }
    }

    pub fn strings(&self, key: &str) -> NeutronResult<Option<Vec<String>>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text.clone()),
                    other => Err(invalid(key, format!("'{other}' is not a valid string"))),
                })
                .collect::<NeutronResult<Vec<_>>>()
                .map(Some),
            Some(other) => Err(invalid(key, format!("'{other}' is not a list"))),
        }
    }

    /// A list of objects (`allocation_pools`, `fixed_ips`, ...).
    pub fn objects(&self, key: &str) -> NeutronResult<Option<Vec<Map<String, Value>>>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::Object(map) => Ok(map.clone()),
                    other => Err(invalid(key, format!("'{other}' is not a dictionary"))),
                })
                .collect::<NeutronResult<Vec<_>>>()
                .map(Some),
            Some(other) => Err(invalid(key, format!("'{other}' is not a list"))),
        }
    }

    pub fn object(&self, key: &str) -> NeutronResult<Option<Map<String, Value>>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map.clone())),
            Some(other) => Err(invalid(key, format!("'{other}' is not a dictionary"))),
        }
    }
}

/// The string `key` of a nested object (an allocation pool's `start`).
pub fn member_string(map: &Map<String, Value>, key: &str, what: &str) -> NeutronResult<String> {
    match map.get(key) {
        Some(Value::String(text)) => Ok(text.clone()),
        _ => Err(invalid(what, format!("'{key}' is missing or not a string"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_attributes_and_types_are_refused() {
        let body = Bytes::from_static(br#"{"network": {"name": "n", "bogus": 1}}"#);
        let refused = Attributes::parse(&body, "network", &["name"]).err();
        assert_eq!(
            refused.map(|f| f.message),
            Some("Unrecognized attribute(s) 'bogus'".into())
        );
        let body = Bytes::from_static(br#"{"network": {"admin_state_up": "maybe"}}"#);
        let attributes = Attributes::parse(&body, "network", &["admin_state_up"]).ok();
        assert!(attributes.is_some_and(|a| a.boolean("admin_state_up").is_err()));
        let missing = Attributes::parse(&Bytes::from_static(b"{}"), "network", &[]).err();
        assert!(missing.is_some_and(|f| f.code == http::StatusCode::BAD_REQUEST));
    }
}
