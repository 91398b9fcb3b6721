//! Placement's query strings: the keys each route and version takes (anything else is a
//! 400, as Placement's schemas say), and the small languages of `resources=VCPU:1,DISK_GB:5`,
//! `required=A,!B` and `member_of=in:<uuid>,<uuid>`.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{FromRequestParts, Query};
use http::request::Parts;

use super::microversion::Microversion;
use super::{bad_request, coded};
use crate::fault::{Fault, FaultResult, PlacementCode};

/// The query of a request, every pair in order (keys may repeat).
#[derive(Debug, Default)]
pub struct Params(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Fault;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|Query(pairs)| Params(pairs))
            .map_err(|_| {
                bad_request("Invalid query string parameters: the query string is malformed")
            })
    }
}

impl Params {
    /// Refuses keys the route does not take at this version.
    pub fn only(&self, allowed: impl Fn(&str) -> bool) -> FaultResult<()> {
        match self.0.iter().find(|(key, _)| !allowed(key)) {
            Some((key, _)) => Err(bad_request(format!(
                "Invalid query string parameters: Additional properties are not allowed ('{key}' was unexpected)"
            ))),
            None => Ok(()),
        }
    }

    /// Every value of a key.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// The value of a key that may appear once.
    pub fn one(&self, key: &str) -> FaultResult<Option<&str>> {
        match self.all(key).as_slice() {
            [] => Ok(None),
            [value] => Ok(Some(value)),
            _ => Err(coded(
                http::StatusCode::BAD_REQUEST,
                PlacementCode::DuplicateQueryKey,
                format!("Query parameter '{key}' may be specified only once."),
            )),
        }
    }
}

/// A uuid in Placement's form (lower case, dashed), from any form `uuid` parses.
pub fn canonical_uuid(text: &str) -> Option<String> {
    uuid::Uuid::try_parse(text.trim())
        .ok()
        .map(|uuid| uuid.hyphenated().to_string())
}

/// `VCPU:2,MEMORY_MB:1024` → amounts by class (Placement's messages; a repeated class
/// keeps its last amount, as in Placement).
pub fn resources(text: &str) -> FaultResult<BTreeMap<String, i64>> {
    let badly_formed = |got: &str| {
        bad_request(format!(
            "Badly formed resources parameter. Expected resources query string parameter in form: ?resources=VCPU:2,MEMORY_MB:1024. Got: {got}."
        ))
    };
    if text.trim().is_empty() {
        return Err(badly_formed("empty string"));
    }
    let mut amounts = BTreeMap::new();
    for item in text.split(',') {
        let mut parts = item.split(':');
        let (Some(class), Some(amount), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(badly_formed(item));
        };
        let amount: i64 = amount.trim().parse().map_err(|_| {
            bad_request(format!(
                "Requested resource {class} expected positive integer amount. Got: {amount}."
            ))
        })?;
        if amount < 1 {
            return Err(bad_request(format!(
                "Requested resource {class} requires amount >= 1. Got: {amount}."
            )));
        }
        amounts.insert(class.trim().to_owned(), amount);
    }
    Ok(amounts)
}

/// Required and forbidden traits: `A,!B` (forbidden ones from 1.22).
pub fn traits(
    text: &str,
    version: Microversion,
) -> FaultResult<(BTreeSet<String>, BTreeSet<String>)> {
    let allow_forbidden = version.at_least(22);
    let expected = if allow_forbidden {
        "HW_CPU_X86_VMX,!CUSTOM_MAGIC"
    } else {
        "HW_CPU_X86_VMX,CUSTOM_MAGIC"
    };
    if text.starts_with("in:") {
        return Err(bad_request(format!(
            "Invalid query string parameters: The format 'in:HW_CPU_X86_VMX,CUSTOM_MAGIC' only supported since microversion 1.39. Got: {text}"
        )));
    }
    let mut required = BTreeSet::new();
    let mut forbidden = BTreeSet::new();
    for name in text.split(',').map(str::trim) {
        let (set, bare) = match name.strip_prefix('!') {
            Some(bare) => (&mut forbidden, bare),
            None => (&mut required, name),
        };
        if bare.is_empty() {
            return Err(bad_request(format!(
                "Invalid query string parameters: Expected 'required' parameter value of the form: {expected}. Got an empty trait in: {text}"
            )));
        }
        set.insert(bare.to_owned());
    }
    if !forbidden.is_empty() && !allow_forbidden {
        return Err(bad_request(format!(
            "Invalid query string parameters: Expected 'required' parameter value of the form: {expected}. Got: {text}"
        )));
    }
    Ok((required, forbidden))
}

/// `member_of` values: each `in:<uuid>,<uuid>` or one uuid, a set of aggregates of which
/// one must hold; several values (from 1.24) must all hold.
pub fn member_of(
    values: &[&str],
    key: &str,
    version: Microversion,
) -> FaultResult<Vec<BTreeSet<String>>> {
    if values.len() > 1 && !version.at_least(24) {
        return Err(bad_request(format!(
            "Multiple {key} parameters are not supported"
        )));
    }
    values
        .iter()
        .map(|value| {
            if value.starts_with('!') {
                return Err(bad_request(format!(
                    "Forbidden {key} parameters are not supported in the specified microversion"
                )));
            }
            let list = value.strip_prefix("in:").unwrap_or(value);
            list.split(',')
                .map(|item| {
                    canonical_uuid(item).ok_or_else(|| {
                        bad_request(format!(
                            "Invalid query string parameters: Expected '{key}' parameter to contain valid UUID(s). Got: {value}"
                        ))
                    })
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(fault: Fault) -> String {
        fault.message
    }

    #[test]
    fn resources_parse_as_placement_does() {
        assert_eq!(
            resources("VCPU:1,MEMORY_MB:512").expect("good"),
            BTreeMap::from([("MEMORY_MB".into(), 512), ("VCPU".into(), 1)])
        );
        assert!(detail(resources("").unwrap_err()).ends_with("Got: empty string."));
        assert!(detail(resources("VCPU").unwrap_err()).ends_with("Got: VCPU."));
        assert!(detail(resources("VCPU:1:2").unwrap_err()).contains("Badly formed"));
        assert!(detail(resources("VCPU:x").unwrap_err()).contains("expected positive integer"));
        assert!(detail(resources("VCPU:0").unwrap_err()).contains("amount >= 1"));
    }

    #[test]
    fn traits_and_aggregates() {
        let (required, forbidden) = traits("A,!B", Microversion(22)).expect("good");
        assert_eq!(required, BTreeSet::from(["A".to_owned()]));
        assert_eq!(forbidden, BTreeSet::from(["B".to_owned()]));
        assert!(traits("A,!B", Microversion(21)).is_err());
        assert!(traits("A,,B", Microversion(29)).is_err());
        assert!(traits("in:A,B", Microversion(29)).is_err());
        let agg = "9e0e0a8a-8c3c-4d4f-9a53-5fd0f0c0b1aa";
        let sets = member_of(
            &[&format!("in:{agg},{}", agg.to_uppercase())],
            "member_of",
            Microversion(3),
        )
        .expect("good");
        assert_eq!(sets, [BTreeSet::from([agg.to_owned()])]);
        assert!(member_of(&[agg, agg], "member_of", Microversion(23)).is_err());
        assert_eq!(
            member_of(&[agg, agg], "member_of", Microversion(24))
                .expect("two")
                .len(),
            2
        );
        assert!(member_of(&["in:nope"], "member_of", Microversion(29)).is_err());
        assert!(member_of(&[&format!("!{agg}")], "member_of", Microversion(29)).is_err());
    }
}
