//! `placement.ronghe.io/v1`: ResourceProvider — one per host (and per nested device
//! provider), with the host's inventories and traits in `spec` (written by its agent) and
//! the allocation ledger in `status` (written by the scheduler, in the same store
//! transaction that binds the workload). Every write of a provider bumps its
//! resourceVersion, which serves as Placement's generation: two schedulers allocating on
//! one host conflict, and the loser retries against the new ledger.
//!
//! Trait and ResourceClass hold the custom (`CUSTOM_*`) traits and resource classes
//! created through Placement; the standard ones are built into the Placement face. Object
//! names must be DNS subdomains, so `CUSTOM_FOO_BAR` is stored as `custom-foo-bar` with the
//! canonical name in `spec.name` (the mapping is one to one on Placement's alphabet).
//!
//! Amounts follow Placement: inventories are integers in each class's unit (`VCPU` 4,
//! `MEMORY_MB` 8192); allocations are quantities so that a pod may hold `500m` of a VCPU.

use std::collections::BTreeMap;

use ronghe_api_types::quantity;
use ronghe_api_types::validation::FieldCause;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::identity::normalize_custom;
use crate::registry::{Column, KindSpec, Scope, Subresources};

pub const GROUP: &str = "placement.ronghe.io";
pub const API_VERSION: &str = "placement.ronghe.io/v1";

/// One class of resource a provider has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    pub total: i64,
    #[serde(default)]
    pub reserved: i64,
    #[serde(default = "one")]
    pub allocation_ratio: f64,
    #[serde(default = "one_unit")]
    pub min_unit: i64,
    /// Default: the total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unit: Option<i64>,
    #[serde(default = "one_unit")]
    pub step_size: i64,
}

fn one() -> f64 {
    1.0
}

fn one_unit() -> i64 {
    1
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceProviderSpec {
    /// The provider this one is nested in (a device in a host), by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default)]
    pub inventories: BTreeMap<String, Inventory>,
    #[serde(default)]
    pub traits: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aggregates: Vec<String>,
}

/// What one consumer holds on a provider.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    /// `Pod` or `VirtualMachine`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// Quantities by resource class (`VCPU: 500m`, `MEMORY_MB: "64"`).
    pub resources: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceProviderStatus {
    /// By consumer uid.
    #[serde(default)]
    pub allocations: BTreeMap<String, Allocation>,
}

impl ResourceProviderStatus {
    /// What the allocations add up to, by class, in thousandths.
    pub fn usages(&self) -> BTreeMap<String, i64> {
        let mut usages: BTreeMap<String, i64> = BTreeMap::new();
        for allocation in self.allocations.values() {
            for (class, amount) in &allocation.resources {
                let entry = usages.entry(class.clone()).or_default();
                *entry = entry.saturating_add(quantity::parse(amount).unwrap_or(0));
            }
        }
        usages
    }
}

/// A custom trait (`CUSTOM_*`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraitSpec {
    /// The canonical name, `CUSTOM_...`.
    pub name: String,
}

/// A custom resource class (`CUSTOM_*`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceClassSpec {
    /// The canonical name, `CUSTOM_...`.
    pub name: String,
}

/// What every custom trait and resource class name starts with.
pub const CUSTOM_PREFIX: &str = "CUSTOM_";

/// The longest trait or resource class name Placement takes.
pub const MAX_CUSTOM_NAME: usize = 255;

/// The object name of a custom trait or class: `CUSTOM_FOO_BAR` → `custom-foo-bar`.
pub fn custom_object_name(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// The canonical name of a custom trait or class object: `custom-foo-bar` → `CUSTOM_FOO_BAR`.
pub fn custom_name_of_object(object_name: &str) -> String {
    object_name.to_ascii_uppercase().replace('-', "_")
}

/// Whether a name is a valid custom trait or class name.
pub fn is_custom_name(name: &str) -> bool {
    name.len() <= MAX_CUSTOM_NAME
        && name
            .strip_prefix(CUSTOM_PREFIX)
            .is_some_and(is_placement_name)
}

pub(super) fn kinds() -> Vec<KindSpec> {
    let custom_columns = || {
        vec![
            Column::name(),
            Column::text("Placement Name", "The canonical name.", &["spec", "name"]),
            Column::age(),
        ]
    };
    vec![
        KindSpec {
            normalize: normalize_custom::<TraitSpec, Value>,
            validate: Some(validate_custom_name),
            columns: custom_columns(),
            ..KindSpec::new(GROUP, "v1", "Trait", "traits", Scope::Cluster)
        },
        KindSpec {
            normalize: normalize_custom::<ResourceClassSpec, Value>,
            validate: Some(validate_custom_name),
            columns: custom_columns(),
            ..KindSpec::new(
                GROUP,
                "v1",
                "ResourceClass",
                "resourceclasses",
                Scope::Cluster,
            )
        },
        resource_provider_kind(),
    ]
}

/// A custom trait or class: a `CUSTOM_` name, and the object named after it.
fn validate_custom_name(object: &Value, _old: Option<&Value>) -> Vec<FieldCause> {
    let name = object
        .pointer("/spec/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !is_custom_name(name) {
        return vec![FieldCause::invalid(
            "spec.name",
            name,
            "must start with CUSTOM_, use only upper-case letters, digits and underscores, and be at most 255 characters",
        )];
    }
    let object_name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let expected = custom_object_name(name);
    if object_name != expected {
        return vec![FieldCause::invalid(
            "metadata.name",
            object_name,
            format!("must be {expected}, the object name of {name}"),
        )];
    }
    Vec::new()
}

fn resource_provider_kind() -> KindSpec {
    KindSpec {
        short_names: &["rp"],
        subresources: Subresources {
            status: true,
            scale: false,
        },
        normalize: normalize_custom::<ResourceProviderSpec, ResourceProviderStatus>,
        validate: Some(validate),
        columns: vec![
            Column::name(),
            Column::value(
                "Inventories",
                "string",
                "The classes of resource the provider has, with their totals.",
                |o| {
                    let inventories = o
                        .pointer("/spec/inventories")
                        .and_then(Value::as_object)
                        .map(|map| {
                            map.iter()
                                .map(|(class, inv)| format!("{class}={}", inv["total"]))
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default();
                    Value::String(inventories)
                },
            ),
            Column::value(
                "Consumers",
                "integer",
                "How many workloads hold allocations on the provider.",
                |o| {
                    let count = o
                        .pointer("/status/allocations")
                        .and_then(Value::as_object)
                        .map_or(0, |m| m.len());
                    Value::from(count)
                },
            ),
            Column::age(),
        ],
        ..KindSpec::new(
            GROUP,
            "v1",
            "ResourceProvider",
            "resourceproviders",
            Scope::Cluster,
        )
    }
}

/// Placement's rules for inventories: sane totals and units, a known-looking class name.
fn validate(provider: &Value, _old: Option<&Value>) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    let Ok(spec) = serde_json::from_value::<ResourceProviderSpec>(
        provider.get("spec").cloned().unwrap_or(Value::Null),
    ) else {
        return causes;
    };
    for (class, inventory) in &spec.inventories {
        let path = format!("spec.inventories[{class}]");
        if !is_placement_name(class) {
            causes.push(FieldCause::invalid(
                path.clone(),
                class.as_str(),
                "a resource class is upper-case letters, digits and underscores",
            ));
        }
        let max_unit = inventory.max_unit.unwrap_or(inventory.total);
        let checks = [
            (inventory.total >= 0, "total must be at least 0"),
            (
                (0..=inventory.total).contains(&inventory.reserved),
                "reserved must be between 0 and the total",
            ),
            (
                inventory.allocation_ratio > 0.0 && inventory.allocation_ratio.is_finite(),
                "allocationRatio must be greater than 0",
            ),
            (
                inventory.min_unit >= 1 && inventory.min_unit <= max_unit,
                "minUnit must be at least 1 and at most maxUnit",
            ),
            (inventory.step_size >= 1, "stepSize must be at least 1"),
        ];
        for (ok, message) in checks {
            if !ok {
                causes.push(FieldCause::invalid(
                    path.clone(),
                    serde_json::to_value(inventory).unwrap_or(Value::Null),
                    message,
                ));
            }
        }
    }
    for (index, name) in spec.traits.iter().enumerate() {
        if !is_placement_name(name) {
            causes.push(FieldCause::invalid(
                format!("spec.traits[{index}]"),
                name.as_str(),
                "a trait is upper-case letters, digits and underscores",
            ));
        }
    }
    causes
}

/// Placement's names for classes and traits: `^[A-Z0-9_]+$`.
pub fn is_placement_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usages_add_quantities() {
        let status: ResourceProviderStatus = serde_json::from_value(json!({"allocations": {
            "a": {"kind": "Pod", "namespace": "n", "name": "p", "resources": {"VCPU": "500m", "MEMORY_MB": "64"}},
            "b": {"kind": "VirtualMachine", "namespace": "n", "name": "v", "resources": {"VCPU": "2"}},
        }}))
        .unwrap();
        let usages = status.usages();
        assert_eq!(usages["VCPU"], 2500);
        assert_eq!(usages["MEMORY_MB"], 64_000);
    }

    #[test]
    fn custom_names_map_to_object_names_and_back() {
        assert_eq!(custom_object_name("CUSTOM_FOO_BAR2"), "custom-foo-bar2");
        assert_eq!(custom_name_of_object("custom-foo-bar2"), "CUSTOM_FOO_BAR2");
        assert!(is_custom_name("CUSTOM_X"));
        assert!(!is_custom_name("CUSTOM_"));
        assert!(!is_custom_name("HW_CPU_X86_AVX"));
        assert!(!is_custom_name("CUSTOM_lower"));
        let good = json!({"metadata": {"name": "custom-a-b"}, "spec": {"name": "CUSTOM_A_B"}});
        assert!(validate_custom_name(&good, None).is_empty());
        let mismatched = json!({"metadata": {"name": "custom-a"}, "spec": {"name": "CUSTOM_A_B"}});
        assert_eq!(
            validate_custom_name(&mismatched, None)[0].field,
            "metadata.name"
        );
        let standard = json!({"metadata": {"name": "vcpu"}, "spec": {"name": "VCPU"}});
        assert_eq!(validate_custom_name(&standard, None)[0].field, "spec.name");
    }

    #[test]
    fn validation_follows_placement() {
        let provider = json!({"spec": {
            "inventories": {"VCPU": {"total": 4, "reserved": 5}, "gpu": {"total": 1, "allocationRatio": 0.0}},
            "traits": ["HW_CPU_X86_AVX2", "lower"],
        }});
        let fields: Vec<String> = validate(&provider, None)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.inventories[VCPU]",
                "spec.inventories[gpu]",
                "spec.inventories[gpu]",
                "spec.traits[1]",
            ]
        );
    }
}
