//! Quota accounting, the pure part: what an object uses, what a ResourceQuota limits and
//! has counted, and whether a new use fits.
//!
//! One ledger per project serves both API faces. A quota is a core/v1 ResourceQuota in
//! the project's namespace: `spec.hard` holds the limits, `status.used` what is counted.
//! Resource names are Kubernetes': `count/<resource>.<group>` for any namespaced kind,
//! the legacy `pods`, `configmaps`, `secrets`, ... for core kinds, and what a kind adds
//! through `KindSpec::usage` (`requests.cpu`, `requests.memory`, ... for pods and VMs
//! alike). The OpenStack quota names map onto these (see `ronghe-openstack`'s quota
//! module), so a VM counts against `instances` whichever face created it.
//!
//! Creating an object charges its use to every quota of its namespace that limits it, in
//! the same store transaction that writes the object (`engine::quota`); the quota
//! controller recounts after deletes. Amounts are thousandths (see
//! `ronghe_api_types::quantity`), so `500m` of CPU adds exactly.

use std::collections::BTreeMap;
use std::fmt;

use ronghe_api_types::quantity;
pub use ronghe_api_types::quantity::Milli;
use ronghe_api_types::validation::FieldCause;
use ronghe_store::{KeyValue, Revision};
use serde_json::{Map, Value};

use crate::error::ApiResult;
use crate::registry::KindSpec;

/// Amounts of resources, by resource name, in thousandths.
pub type Usage = BTreeMap<String, Milli>;

/// Core kinds Kubernetes also counts under their bare plural (`pods` beside `count/pods`).
const LEGACY_COUNTED: &[&str] = &[
    "pods",
    "services",
    "configmaps",
    "secrets",
    "persistentvolumeclaims",
    "replicationcontrollers",
    "resourcequotas",
];

/// One whole unit, in thousandths.
pub const ONE: Milli = 1000;

/// What one object of `kind` uses: one of its kind, plus what the kind itself declares.
pub fn usage_of(kind: &KindSpec, object: &Value) -> Usage {
    let mut usage = Usage::new();
    if !kind.namespaced() {
        return usage;
    }
    usage.insert(format!("count/{}", kind.qualified_plural()), ONE);
    if kind.group.is_empty() && LEGACY_COUNTED.contains(&kind.plural) {
        usage.insert(kind.plural.to_owned(), ONE);
    }
    if let Some(declare) = kind.usage {
        declare(object, &mut usage);
    }
    usage
}

/// Adds `amount` of `resource` to a usage.
pub fn add(usage: &mut Usage, resource: &str, amount: Milli) {
    let entry = usage.entry(resource.to_owned()).or_insert(0);
    *entry = entry.saturating_add(amount);
}

/// What `after` uses beyond `before`: only the resources that grow.
pub fn growth(before: &Usage, after: &Usage) -> Usage {
    after
        .iter()
        .filter_map(|(resource, amount)| {
            let grown = amount.saturating_sub(before.get(resource).copied().unwrap_or(0));
            (grown > 0).then(|| (resource.clone(), grown))
        })
        .collect()
}

/// What updating an object from `old` to `new` adds to its namespace's use. Only kinds
/// that declare a usage can grow (a count never changes on update).
pub fn update_growth(kind: &KindSpec, old: &Value, new: &Value) -> Usage {
    if kind.usage.is_none() || !kind.namespaced() {
        return Usage::new();
    }
    growth(&usage_of(kind, old), &usage_of(kind, new))
}

/// Whether a resource is shown with binary suffixes (amounts of memory and storage, not
/// counts of objects).
pub fn is_binary(resource: &str) -> bool {
    !resource.starts_with("count/")
        && (resource.ends_with("memory") || resource.ends_with("storage"))
}

/// A ResourceQuota as read from the store.
#[derive(Clone, Debug)]
pub struct Quota {
    pub name: String,
    pub key: String,
    pub mod_revision: Revision,
    /// The stored object (without resourceVersion).
    pub object: Value,
    /// `spec.hard`, parsed.
    pub hard: Usage,
    /// `status.used`, parsed; entries that do not parse are left out (and so recounted).
    pub used: Usage,
}

impl Quota {
    /// Reads a stored quota; `None` when the stored value is not a quota object.
    pub fn from_stored(kv: &KeyValue) -> Option<Quota> {
        let object: Value = serde_json::from_slice(&kv.value).ok()?;
        let name = crate::object::name(&object)?.to_owned();
        let hard = parse_amounts(crate::object::value_at(&object, &["spec", "hard"]));
        let used = parse_amounts(crate::object::value_at(&object, &["status", "used"]));
        Some(Quota {
            name,
            key: kv.key.clone(),
            mod_revision: kv.mod_revision,
            object,
            hard,
            used,
        })
    }

    /// Whether the quota limits any of these resources.
    pub fn limits_any(&self, usage: &Usage) -> bool {
        usage
            .iter()
            .any(|(resource, amount)| *amount > 0 && self.hard.contains_key(resource))
    }

    /// Whether `status.used` has a count for every limited resource.
    pub fn is_counted(&self) -> bool {
        self.hard
            .keys()
            .all(|resource| self.used.contains_key(resource))
    }

    /// The counts after charging `request` on top of `used`, or what would be exceeded.
    pub fn charge(&self, used: &Usage, request: &Usage) -> Result<Usage, Exceeded> {
        let mut after = Usage::new();
        let mut exceeded = Exceeded {
            quota: self.name.clone(),
            ..Exceeded::default()
        };
        for (resource, limit) in &self.hard {
            let current = used.get(resource).copied().unwrap_or(0);
            let requested = request.get(resource).copied().unwrap_or(0);
            let total = current.saturating_add(requested);
            if requested > 0 && total > *limit {
                exceeded.requested.insert(resource.clone(), requested);
                exceeded.used.insert(resource.clone(), current);
                exceeded.limited.insert(resource.clone(), *limit);
            }
            after.insert(resource.clone(), total);
        }
        if exceeded.requested.is_empty() {
            Ok(after)
        } else {
            Err(exceeded)
        }
    }

    /// The quota object with `status.hard` following `spec.hard` and `status.used` set to
    /// the counts of the limited resources in `used`.
    pub fn with_counts(&self, used: &Usage) -> Value {
        let mut object = self.object.clone();
        let hard = crate::object::value_at(&object, &["spec", "hard"])
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new()));
        let used: Map<String, Value> = self
            .hard
            .keys()
            .map(|resource| {
                let amount = used.get(resource).copied().unwrap_or(0);
                let text = quantity::format(amount, is_binary(resource));
                (resource.clone(), Value::String(text))
            })
            .collect();
        let root = crate::object::ensure_object(&mut object);
        let status = crate::object::ensure_object(
            root.entry("status")
                .or_insert_with(|| Value::Object(Map::new())),
        );
        status.insert("hard".into(), hard);
        status.insert("used".into(), Value::Object(used));
        object
    }
}

fn parse_amounts(map: Option<&Value>) -> Usage {
    map.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(resource, amount)| {
            let amount = quantity::parse(amount.as_str()?).ok()?;
            Some((resource.clone(), amount))
        })
        .collect()
}

/// A request that does not fit a quota, worded as Kubernetes words it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exceeded {
    pub quota: String,
    pub requested: Usage,
    pub used: Usage,
    pub limited: Usage,
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |usage: &Usage| {
            usage
                .iter()
                .map(|(resource, amount)| {
                    format!(
                        "{resource}={}",
                        quantity::format(*amount, is_binary(resource))
                    )
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        write!(
            f,
            "exceeded quota: {}, requested: {}, used: {}, limited: {}",
            self.quota,
            list(&self.requested),
            list(&self.used),
            list(&self.limited)
        )
    }
}

/// Validation of a ResourceQuota: quantities that parse, resource names that are
/// qualified names, and no scopes (Ronghe does not evaluate quota scopes).
pub fn validate(quota: &Value, _old: Option<&Value>) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    let hard = crate::object::value_at(quota, &["spec", "hard"]).and_then(Value::as_object);
    for (resource, amount) in hard.into_iter().flatten() {
        let path = format!("spec.hard[{resource}]");
        for problem in ronghe_api_types::validation::is_qualified_name(resource) {
            causes.push(FieldCause::invalid(
                path.clone(),
                resource.as_str(),
                problem,
            ));
        }
        match amount.as_str().map(quantity::parse) {
            Some(Ok(value)) if value < 0 => causes.push(FieldCause::invalid(
                path,
                amount.clone(),
                "must be greater than or equal to 0",
            )),
            Some(Ok(_)) => {}
            Some(Err(error)) => {
                causes.push(FieldCause::invalid(path, amount.clone(), error.to_string()));
            }
            None => causes.push(FieldCause::invalid(
                path,
                amount.clone(),
                "must be a quantity",
            )),
        }
    }
    for field in ["scopes", "scopeSelector"] {
        if crate::object::value_at(quota, &["spec", field]).is_some_and(|v| !v.is_null()) {
            causes.push(FieldCause::forbidden(
                format!("spec.{field}"),
                "Ronghe does not evaluate quota scopes yet; a quota applies to every object",
            ));
        }
    }
    causes
}

/// The `Request` and `Limit` cells of `kubectl get quota`: `used/hard` per resource,
/// limits in their own column.
pub fn table_cell(quota: &Value, limits: bool) -> Value {
    let hard = crate::object::value_at(quota, &["status", "hard"])
        .or_else(|| crate::object::value_at(quota, &["spec", "hard"]))
        .and_then(Value::as_object);
    let used = crate::object::value_at(quota, &["status", "used"]).and_then(Value::as_object);
    let cells: Vec<String> = hard
        .into_iter()
        .flatten()
        .filter(|(resource, _)| resource.starts_with("limits.") == limits)
        .map(|(resource, hard)| {
            let used = used
                .and_then(|used| used.get(resource))
                .and_then(Value::as_str)
                .unwrap_or("0");
            format!("{resource}: {used}/{}", hard.as_str().unwrap_or_default())
        })
        .collect();
    Value::String(cells.join(", "))
}

/// Reads an amount from an object for a kind's usage function: a quantity string (`500m`,
/// `1Gi`) or a bare integer; a malformed amount counts as nothing (validation refuses it).
pub fn amount(value: Option<&Value>) -> Milli {
    value
        .and_then(Value::as_str)
        .and_then(|text| quantity::parse(text).ok())
        .or_else(|| value.and_then(Value::as_i64).map(|n| n.saturating_mul(ONE)))
        .unwrap_or(0)
}

/// Reads one stored quota or fails as the engine fails on corrupt objects.
pub(crate) fn decode(kv: &KeyValue) -> ApiResult<Quota> {
    Quota::from_stored(kv).ok_or_else(|| {
        crate::error::ApiError::internal(
            "a stored resourcequota is corrupt",
            &std::io::Error::other(kv.key.clone()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn quota(hard: Value, used: Value) -> Quota {
        let object =
            json!({"metadata": {"name": "q"}, "spec": {"hard": hard}, "status": {"used": used}});
        Quota::from_stored(&KeyValue {
            key: "/core/resourcequotas/ns/q".into(),
            value: serde_json::to_vec(&object).unwrap().into(),
            create_revision: 1,
            mod_revision: 1,
        })
        .unwrap()
    }

    fn usage(pairs: &[(&str, Milli)]) -> Usage {
        pairs.iter().map(|(r, a)| ((*r).to_owned(), *a)).collect()
    }

    #[test]
    fn charging_within_the_limit_adds() {
        let q = quota(
            json!({"configmaps": "2", "requests.cpu": "1"}),
            json!({"configmaps": "1", "requests.cpu": "500m"}),
        );
        assert!(q.is_counted());
        let after = q
            .charge(
                &q.used,
                &usage(&[("configmaps", ONE), ("requests.cpu", 500), ("secrets", ONE)]),
            )
            .unwrap();
        assert_eq!(
            after,
            usage(&[("configmaps", 2 * ONE), ("requests.cpu", ONE)])
        );
    }

    #[test]
    fn charging_beyond_the_limit_names_the_quota() {
        let q = quota(
            json!({"configmaps": "1", "secrets": "5"}),
            json!({"configmaps": "1", "secrets": "0"}),
        );
        let error = q
            .charge(&q.used, &usage(&[("configmaps", ONE), ("secrets", ONE)]))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "exceeded quota: q, requested: configmaps=1, used: configmaps=1, limited: configmaps=1"
        );
    }

    #[test]
    fn a_quota_missing_counts_is_not_counted() {
        let q = quota(
            json!({"configmaps": "1", "pods": "2"}),
            json!({"configmaps": "0"}),
        );
        assert!(!q.is_counted());
        assert!(q.limits_any(&usage(&[("pods", ONE)])));
        assert!(!q.limits_any(&usage(&[("secrets", ONE)])));
    }

    #[test]
    fn counts_are_written_for_limited_resources_only() {
        let q = quota(
            json!({"requests.memory": "1Gi", "configmaps": "3"}),
            json!({}),
        );
        let object = q.with_counts(&usage(&[
            ("requests.memory", 512 * 1024 * 1024 * ONE),
            ("secrets", ONE),
        ]));
        assert_eq!(
            object["status"]["used"],
            json!({"requests.memory": "512Mi", "configmaps": "0"})
        );
        assert_eq!(
            object["status"]["hard"],
            json!({"requests.memory": "1Gi", "configmaps": "3"})
        );
    }

    #[test]
    fn amounts_not_counts_are_binary() {
        assert!(is_binary("requests.memory") && is_binary("limits.ephemeral-storage"));
        assert!(is_binary("requests.storage"));
        assert!(!is_binary("count/volumes.storage.ronghe.io") && !is_binary("requests.cpu"));
    }

    #[test]
    fn growth_keeps_only_what_grows() {
        let before = usage(&[("a", 1), ("b", 5)]);
        let after = usage(&[("a", 3), ("b", 2), ("c", 1)]);
        assert_eq!(growth(&before, &after), usage(&[("a", 2), ("c", 1)]));
    }

    #[test]
    fn validation_refuses_bad_quantities_and_scopes() {
        let causes = validate(
            &json!({"spec": {"hard": {"pods": "ten", "secrets": "-1", "configmaps": "4"}, "scopes": ["BestEffort"]}}),
            None,
        );
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            ["spec.hard[pods]", "spec.hard[secrets]", "spec.scopes"]
        );
    }
}
