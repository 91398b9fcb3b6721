//! Reading a host's resource ledger on the hot path: one pass over the requested classes
//! that both checks Placement's fit and measures the load left for scoring ([`Measured`]),
//! over [`Slot`]s read either from a host's maps or from a [`Snapshot`](crate::Snapshot)'s
//! compact copy; and lookups into the small string-keyed maps of a host that touch as
//! little memory as they can.
//!
//! Why not `BTreeMap::get`: searching a node compares the key with every smaller key by
//! their bytes, and each key's bytes live in their own heap allocation, so looking up
//! `VCPU` among `DISK_GB`, `MEMORY_MB`, `VCPU` touches three cold cache lines per host. A
//! scan with `==` compares lengths first (they sit in the node) and reads the bytes only of
//! keys of the right length. Over thousands of hosts per decision, cache misses are most of
//! the cost.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Host, Inventory};
use crate::{MEMORY_MB, VCPU};

/// Up to this many entries a map is scanned; beyond, searched.
const SCAN_LIMIT: usize = 16;

/// `map.get(key)`, touching only the bytes of keys as long as `key`.
pub(crate) fn find<'m, V>(map: &'m BTreeMap<String, V>, key: &str) -> Option<&'m V> {
    if map.len() <= SCAN_LIMIT {
        map.iter()
            .find_map(|(candidate, value)| (candidate == key).then_some(value))
    } else {
        map.get(key)
    }
}

/// `set.contains(key)`, touching only the bytes of keys as long as `key`.
pub(crate) fn contains(set: &BTreeSet<String>, key: &str) -> bool {
    if set.len() <= SCAN_LIMIT {
        set.iter().any(|candidate| candidate == key)
    } else {
        set.contains(key)
    }
}

/// One class of one host, as fitting and scoring read it: Placement's inventory fields with
/// the capacity worked out, and what is used.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Slot {
    capacity: i64,
    used: i64,
    min_unit: i64,
    max_unit: i64,
    step_size: i64,
}

impl Slot {
    pub(crate) fn new(inventory: &Inventory, used: i64) -> Self {
        Self {
            capacity: inventory.capacity(),
            used,
            min_unit: inventory.min_unit,
            max_unit: inventory.max_unit,
            step_size: inventory.step_size,
        }
    }

    /// Charges `amount` more.
    pub(crate) fn charge(&mut self, amount: i64) {
        self.used = self.used.saturating_add(amount);
    }

    /// Placement's fit; see [`Inventory::fits`].
    pub(crate) fn fits(&self, request: i64) -> bool {
        if request == 0 {
            return true;
        }
        // A step of zero or less would make every request invalid (or divide by zero);
        // Placement rejects such inventories, so treat it as "any step".
        request > 0
            && request >= self.min_unit
            && request <= self.max_unit
            && (self.step_size <= 1 || request % self.step_size == 0)
            && self
                .used
                .checked_add(request)
                .is_some_and(|after| after <= self.capacity)
    }

    /// The fraction of the capacity free once `request` more is used, in `[0, 1]`; a class
    /// with no capacity counts as full.
    fn free_fraction(&self, request: i64) -> f64 {
        if self.capacity <= 0 {
            return 0.0;
        }
        let free = self
            .capacity
            .saturating_sub(self.used)
            .saturating_sub(request);
        (free as f64 / self.capacity as f64).clamp(0.0, 1.0)
    }
}

/// The slot of `class` on `host`, read from its maps.
pub(crate) fn slot(host: &Host, class: &str) -> Option<Slot> {
    let inventory = find(&host.inventories, class)?;
    Some(Slot::new(
        inventory,
        find(&host.used, class).copied().unwrap_or(0),
    ))
}

/// The classes a decision measures, and whether they are requests that must fit.
pub(crate) struct Measured<'a> {
    /// The non-zero requests in class order; for a workload that requests nothing, `VCPU`
    /// and `MEMORY_MB` at zero, so that even best-effort pods spread by load.
    pub(crate) classes: Vec<(&'a str, i64)>,
    /// False for the stand-ins of a workload that requests nothing: a host without those
    /// classes then counts as full rather than failing.
    pub(crate) required: bool,
}

impl<'a> Measured<'a> {
    pub(crate) fn new(resources: &'a BTreeMap<String, i64>) -> Self {
        let classes: Vec<(&str, i64)> = resources
            .iter()
            .filter(|(_, amount)| **amount != 0)
            .map(|(class, amount)| (class.as_str(), *amount))
            .collect();
        if classes.is_empty() {
            Self {
                classes: vec![(VCPU, 0), (MEMORY_MB, 0)],
                required: false,
            }
        } else {
            Self {
                classes,
                required: true,
            }
        }
    }

    /// Checks that every request fits (see [`Inventory::fits`]) and returns the mean, over
    /// the measured classes, of the fraction of each class's capacity left free after
    /// placing. `slot` gives the host's slot for the class at a position in `classes`. On
    /// failure, the first class that does not fit.
    pub(crate) fn fit(
        &self,
        mut slot: impl FnMut(usize, &str) -> Option<Slot>,
    ) -> Result<f64, &'a str> {
        let mut sum = 0.0;
        for (position, &(class, request)) in self.classes.iter().enumerate() {
            match slot(position, class) {
                Some(slot) if slot.fits(request) => sum += slot.free_fraction(request),
                None if !self.required => {}
                _ => return Err(class),
            }
        }
        Ok(sum / self.classes.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DISK_GB;

    #[test]
    fn scans_and_searches_agree() {
        let small: BTreeMap<String, i64> = [(VCPU, 1), (MEMORY_MB, 2), ("VGPU", 3)]
            .map(|(class, amount)| (class.to_owned(), amount))
            .into();
        let large: BTreeMap<String, i64> = (0..40).map(|i| (format!("CUSTOM_{i}"), i)).collect();
        for key in [
            VCPU,
            MEMORY_MB,
            "VGPU",
            DISK_GB,
            "",
            "CUSTOM_7",
            "CUSTOM_39",
            "CUSTOM_40",
        ] {
            assert_eq!(find(&small, key), small.get(key));
            assert_eq!(find(&large, key), large.get(key));
            let small_set: BTreeSet<String> = small.keys().cloned().collect();
            let large_set: BTreeSet<String> = large.keys().cloned().collect();
            assert_eq!(contains(&small_set, key), small_set.contains(key));
            assert_eq!(contains(&large_set, key), large_set.contains(key));
        }
    }

    #[test]
    fn fit_measures_the_load_it_leaves() {
        let host = Host::new("h")
            .with_inventory(VCPU, Inventory::new(4000))
            .with_inventory(MEMORY_MB, Inventory::new(8192))
            .with_used(VCPU, 1000);
        let fit = |requests: &[(&str, i64)], host: &Host| {
            let resources = requests
                .iter()
                .map(|(class, amount)| (class.to_string(), *amount))
                .collect();
            let measured = Measured::new(&resources);
            measured
                .fit(|_, class| slot(host, class))
                .map_err(str::to_owned)
        };
        assert_eq!(
            fit(&[(VCPU, 1000), (MEMORY_MB, 2048)], &host),
            Ok((0.5 + 0.75) / 2.0)
        );
        assert_eq!(
            fit(&[(VCPU, 1000), (DISK_GB, 1)], &host),
            Err(DISK_GB.to_owned())
        );
        assert_eq!(fit(&[(VCPU, 3001)], &host), Err(VCPU.to_owned()));
        // Without requests: VCPU and MEMORY_MB as they stand, a missing class as full.
        assert_eq!(fit(&[], &host), Ok((0.75 + 1.0) / 2.0));
        assert_eq!(fit(&[(VCPU, 0)], &Host::new("bare")), Ok(0.0));
    }
}
