//! Query parameters, parsed tolerantly: clients send empty pairs (`?&limit=500`) and
//! parameters we do not use (`timeout`, `pretty`), which are ignored.

use std::collections::HashMap;

use crate::error::{ApiError, ApiResult};

/// The query of one request. Repeated parameters keep every value (`command=a&command=b`).
#[derive(Clone, Debug, Default)]
pub struct Query {
    values: HashMap<String, Vec<String>>,
    /// Set by authorization, not by the client: the only projects whose objects a list or
    /// watch across namespaces may return (for callers who may not see everything).
    pub visible: Option<std::sync::Arc<[String]>>,
}

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if key.is_empty() {
                continue;
            }
            values
                .entry(key.into_owned())
                .or_default()
                .push(value.into_owned());
        }
        Self {
            values,
            visible: None,
        }
    }

    /// The first value of a parameter.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .and_then(|values| values.first())
            .map(String::as_str)
    }

    /// Every value of a repeated parameter.
    pub fn all(&self, key: &str) -> &[String] {
        self.values.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// A boolean parameter: `true`/`1` or `false`/`0`; absent is false.
    pub fn flag(&self, key: &str) -> ApiResult<bool> {
        match self.get(key) {
            None | Some("" | "false" | "0") => Ok(false),
            Some("true" | "1") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "{key} must be true or false, not {other:?}"
            ))),
        }
    }

    /// A non-negative integer parameter.
    pub fn number(&self, key: &str) -> ApiResult<Option<u64>> {
        match self.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!(
                    "{key} must be a non-negative integer, not {text:?}"
                ))
            }),
        }
    }

    /// `dryRun`: only `All` is defined.
    pub fn dry_run(&self) -> ApiResult<bool> {
        match self.all("dryRun") {
            [] => Ok(false),
            values if values.iter().all(|v| v == "All") => Ok(true),
            values => Err(ApiError::bad_request(format!(
                "dryRun must be All, not {:?}",
                values.join(",")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerates_empty_pairs_and_repeats() {
        let q = Query::parse(Some(
            "&limit=500&&command=echo&command=hi&labelSelector=app%3Dweb",
        ));
        assert_eq!(q.get("limit"), Some("500"));
        assert_eq!(q.all("command"), ["echo", "hi"]);
        assert_eq!(q.get("labelSelector"), Some("app=web"));
        assert_eq!(q.number("limit").ok().flatten(), Some(500));
        assert!(q.number("nope").ok().flatten().is_none());
    }

    #[test]
    fn flags_and_dry_run() {
        let q = Query::parse(Some("watch=1&dryRun=All"));
        assert!(q.flag("watch").unwrap_or(false));
        assert!(q.dry_run().unwrap_or(false));
        assert!(Query::parse(Some("dryRun=Some")).dry_run().is_err());
        assert!(Query::parse(Some("watch=maybe")).flag("watch").is_err());
    }
}
