//! Resource providers as Placement sees them, read from ResourceProvider objects without
//! I/O: the uuid is the object's uid, the generation its resourceVersion, the name the
//! object's (or the one given through Placement, kept in an annotation when it is no DNS
//! name), the parent a provider named in `spec.parent`. Amounts in use are thousandths
//! (a pod may hold `500m` of a VCPU); Placement shows them rounded up to whole units.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ronghe_apiserver::kinds::placement::{
    Allocation, Inventory, ResourceProviderSpec, ResourceProviderStatus,
};
use serde_json::{Value, json};

/// The annotation holding a provider's Placement name when it is not its object name.
pub const NAME_ANNOTATION: &str = "placement.ronghe.io/name";

/// Thousandths per unit.
const MILLI: i64 = 1000;

/// One resource provider.
#[derive(Clone, Debug, PartialEq)]
pub struct Provider {
    pub uuid: String,
    pub object_name: String,
    pub name: String,
    pub generation: i64,
    /// The object name of the parent.
    pub parent: Option<String>,
    pub inventories: BTreeMap<String, Inventory>,
    pub traits: BTreeSet<String>,
    pub aggregates: BTreeSet<String>,
    /// By consumer uid.
    pub allocations: BTreeMap<String, Allocation>,
    /// In use, by class, in thousandths.
    pub used: BTreeMap<String, i64>,
}

impl Provider {
    /// Reads a ResourceProvider object; `None` for one without uid or resourceVersion.
    pub fn from_object(object: &Value) -> Option<Provider> {
        let metadata = object.get("metadata")?;
        let uuid = metadata.get("uid")?.as_str()?.to_owned();
        let object_name = metadata.get("name")?.as_str()?.to_owned();
        let generation = metadata.get("resourceVersion")?.as_str()?.parse().ok()?;
        let name = metadata
            .pointer(&format!(
                "/annotations/{}",
                NAME_ANNOTATION.replace('/', "~1")
            ))
            .and_then(Value::as_str)
            .unwrap_or(&object_name)
            .to_owned();
        let spec: ResourceProviderSpec =
            serde_json::from_value(object.get("spec").cloned().unwrap_or(Value::Null))
                .unwrap_or_default();
        let status: ResourceProviderStatus =
            serde_json::from_value(object.get("status").cloned().unwrap_or(Value::Null))
                .unwrap_or_default();
        Some(Provider {
            uuid,
            object_name,
            name,
            generation,
            parent: spec.parent.filter(|p| !p.is_empty()),
            inventories: spec.inventories,
            traits: spec.traits.into_iter().collect(),
            aggregates: spec.aggregates.into_iter().collect(),
            used: status.usages(),
            allocations: status.allocations,
        })
    }

    /// Whole units in use of a class, rounded up.
    pub fn used_units(&self, class: &str) -> i64 {
        units_up(self.used.get(class).copied().unwrap_or(0))
    }

    /// Whether `amount` of `class` more fits: within the unit limits and, with `already`
    /// more thousandths asked of this provider in the same request, within capacity.
    pub fn fits(&self, class: &str, amount: i64, already: i64) -> bool {
        let Some(inventory) = self.inventories.get(class) else {
            return false;
        };
        let used = self.used.get(class).copied().unwrap_or(0);
        amount >= inventory.min_unit
            && amount <= max_unit(inventory)
            && amount % inventory.step_size.max(1) == 0
            && used
                .saturating_add(already)
                .saturating_add(amount.saturating_mul(MILLI))
                <= capacity(inventory).saturating_mul(MILLI)
    }

    /// Whether the provider is in at least one aggregate of every set.
    pub fn member_of_all(&self, sets: &[BTreeSet<String>]) -> bool {
        sets.iter().all(|any| {
            any.iter()
                .any(|aggregate| self.aggregates.contains(aggregate))
        })
    }

    /// What an allocation holds, in whole units (rounded up).
    pub fn allocation_units(allocation: &Allocation) -> BTreeMap<String, i64> {
        allocation_milli(allocation)
            .into_iter()
            .map(|(class, milli)| (class, units_up(milli)))
            .collect()
    }
}

/// What an allocation holds, in thousandths (quantities that do not parse count 0, as in
/// the ledger's own sums).
pub fn allocation_milli(allocation: &Allocation) -> BTreeMap<String, i64> {
    let one = ResourceProviderStatus {
        allocations: BTreeMap::from([(String::new(), allocation.clone())]),
    };
    one.usages()
}

/// Whole units from thousandths, rounded up.
pub fn units_up(milli: i64) -> i64 {
    milli.div_euclid(MILLI) + i64::from(milli.rem_euclid(MILLI) != 0)
}

/// What may be allocated of an inventory: `(total - reserved) * allocation_ratio`.
pub fn capacity(inventory: &Inventory) -> i64 {
    let free = inventory.total.saturating_sub(inventory.reserved) as f64;
    // Truncated, as Placement does; the cast saturates.
    (free * inventory.allocation_ratio) as i64
}

/// The largest single allocation of an inventory (the total when none is set).
pub fn max_unit(inventory: &Inventory) -> i64 {
    inventory.max_unit.unwrap_or(inventory.total)
}

/// An inventory as Placement shows it.
pub fn inventory_json(inventory: &Inventory) -> Value {
    json!({
        "total": inventory.total,
        "reserved": inventory.reserved,
        "min_unit": inventory.min_unit,
        "max_unit": max_unit(inventory),
        "step_size": inventory.step_size,
        "allocation_ratio": inventory.allocation_ratio,
    })
}

/// Every provider, with their trees.
#[derive(Debug, Default)]
pub struct Pool {
    pub providers: Vec<Provider>,
    by_uuid: HashMap<String, usize>,
    by_object: HashMap<String, usize>,
}

impl Pool {
    /// The pool of the providers given, ordered by object name.
    pub fn new(mut providers: Vec<Provider>) -> Pool {
        providers.sort_by(|a, b| a.object_name.cmp(&b.object_name));
        let by_uuid = providers
            .iter()
            .enumerate()
            .map(|(index, p)| (p.uuid.clone(), index))
            .collect();
        let by_object = providers
            .iter()
            .enumerate()
            .map(|(index, p)| (p.object_name.clone(), index))
            .collect();
        Pool {
            providers,
            by_uuid,
            by_object,
        }
    }

    pub fn from_objects(objects: &[Value]) -> Pool {
        Pool::new(objects.iter().filter_map(Provider::from_object).collect())
    }

    pub fn index_of_uuid(&self, uuid: &str) -> Option<usize> {
        self.by_uuid.get(uuid).copied()
    }

    pub fn by_uuid(&self, uuid: &str) -> Option<&Provider> {
        self.index_of_uuid(uuid).map(|index| &self.providers[index])
    }

    pub fn by_name(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// The index of a provider's parent, if it has one that exists.
    pub fn parent_index(&self, index: usize) -> Option<usize> {
        let parent = self.providers[index].parent.as_deref()?;
        self.by_object.get(parent).copied()
    }

    pub fn parent_uuid(&self, index: usize) -> Option<&str> {
        self.parent_index(index)
            .map(|parent| self.providers[parent].uuid.as_str())
    }

    /// The index of the root of a provider's tree (itself when it has no parent; a loop,
    /// which Placement's writes never make, ends the walk where it closes).
    pub fn root_index(&self, index: usize) -> usize {
        let mut current = index;
        let mut seen = BTreeSet::from([index]);
        while let Some(parent) = self.parent_index(current) {
            if !seen.insert(parent) {
                break;
            }
            current = parent;
        }
        current
    }

    pub fn root_uuid(&self, index: usize) -> &str {
        &self.providers[self.root_index(index)].uuid
    }

    /// The providers of the tree rooted at `root`, root first, in pool order after it.
    pub fn tree(&self, root: usize) -> Vec<usize> {
        let mut members = vec![root];
        members.extend(
            (0..self.providers.len())
                .filter(|&index| index != root && self.root_index(index) == root),
        );
        members
    }

    /// The indexes of the roots, in pool order.
    pub fn roots(&self) -> Vec<usize> {
        (0..self.providers.len())
            .filter(|&index| self.root_index(index) == index)
            .collect()
    }

    /// Whether `index` has providers nested in it.
    pub fn has_children(&self, index: usize) -> bool {
        (0..self.providers.len()).any(|other| self.parent_index(other) == Some(index))
    }

    /// Whether `ancestor` is `index` or above it in its tree.
    pub fn is_ancestor_or_self(&self, ancestor: usize, index: usize) -> bool {
        let mut current = index;
        let mut seen = BTreeSet::new();
        loop {
            if current == ancestor {
                return true;
            }
            if !seen.insert(current) {
                return false;
            }
            match self.parent_index(current) {
                Some(parent) => current = parent,
                None => return false,
            }
        }
    }

    /// Every trait on any provider.
    pub fn traits(&self) -> BTreeSet<&str> {
        self.providers
            .iter()
            .flat_map(|p| p.traits.iter().map(String::as_str))
            .collect()
    }

    /// Every class in any inventory.
    pub fn classes(&self) -> BTreeSet<&str> {
        self.providers
            .iter()
            .flat_map(|p| p.inventories.keys().map(String::as_str))
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A provider object as the API stores it.
    pub(crate) fn object(name: &str, uid: &str, rv: i64, spec: Value, status: Value) -> Value {
        json!({
            "apiVersion": "placement.ronghe.io/v1",
            "kind": "ResourceProvider",
            "metadata": {"name": name, "uid": uid, "resourceVersion": rv.to_string()},
            "spec": spec,
            "status": status,
        })
    }

    #[test]
    fn providers_read_from_objects() {
        let host = object(
            "host-a",
            "u-a",
            42,
            json!({"inventories": {"VCPU": {"total": 4, "allocationRatio": 2.0, "maxUnit": 8}}, "traits": ["B", "A"]}),
            json!({"allocations": {"c1": {"kind": "Pod", "namespace": "n", "name": "p",
                "resources": {"VCPU": "500m"}}}}),
        );
        let mut renamed = object("rp-x", "u-b", 7, json!({"parent": "host-a"}), Value::Null);
        renamed["metadata"]["annotations"] = json!({NAME_ANNOTATION: "Fancy Name"});
        let pool = Pool::from_objects(&[renamed, host]);
        let a = pool.by_uuid("u-a").expect("host-a");
        assert_eq!(a.generation, 42);
        assert_eq!(a.used_units("VCPU"), 1);
        assert_eq!(capacity(&a.inventories["VCPU"]), 8);
        assert_eq!(a.traits.iter().collect::<Vec<_>>(), ["A", "B"]);
        assert!(a.fits("VCPU", 7, 0));
        assert!(!a.fits("VCPU", 8, 0), "500m is in use");
        assert!(!a.fits("VCPU", 5, 3000));
        let b = pool.by_name("Fancy Name").expect("renamed");
        assert_eq!(b.object_name, "rp-x");
        let b_index = pool.index_of_uuid("u-b").expect("b");
        assert_eq!(pool.parent_uuid(b_index), Some("u-a"));
        assert_eq!(pool.root_uuid(b_index), "u-a");
        let root = pool.index_of_uuid("u-a").expect("a");
        assert_eq!(pool.roots(), [root]);
        assert_eq!(pool.tree(root), [root, b_index]);
        assert!(pool.has_children(root));
        assert!(pool.is_ancestor_or_self(root, b_index));
        assert!(!pool.is_ancestor_or_self(b_index, root));
    }

    #[test]
    fn units_and_limits() {
        assert_eq!(units_up(0), 0);
        assert_eq!(units_up(1), 1);
        assert_eq!(units_up(2000), 2);
        assert_eq!(units_up(2001), 3);
        let allocation: Allocation =
            serde_json::from_value(json!({"kind": "Pod", "namespace": "n",
            "name": "p", "resources": {"VCPU": "500m", "MEMORY_MB": "64"}}))
            .expect("allocation");
        assert_eq!(allocation_milli(&allocation)["VCPU"], 500);
        assert_eq!(
            Provider::allocation_units(&allocation),
            BTreeMap::from([("MEMORY_MB".into(), 64), ("VCPU".into(), 1)])
        );
        let inventory: Inventory = serde_json::from_value(
            json!({"total": 10, "reserved": 2, "minUnit": 2, "maxUnit": 6, "stepSize": 2}),
        )
        .expect("inventory");
        let provider = Provider {
            uuid: "u".into(),
            object_name: "p".into(),
            name: "p".into(),
            generation: 1,
            parent: None,
            inventories: BTreeMap::from([("DISK_GB".into(), inventory)]),
            traits: BTreeSet::new(),
            aggregates: BTreeSet::new(),
            allocations: BTreeMap::new(),
            used: BTreeMap::new(),
        };
        assert!(provider.fits("DISK_GB", 6, 0));
        assert!(!provider.fits("DISK_GB", 1, 0), "below min_unit");
        assert!(!provider.fits("DISK_GB", 3, 0), "off step");
        assert!(!provider.fits("DISK_GB", 8, 0), "above max_unit");
        assert!(!provider.fits("DISK_GB", 6, 4000), "over capacity");
        assert!(!provider.fits("VCPU", 1, 0), "no inventory");
    }
}
