//! [`Snapshot`]: a pool held in memory for many decisions, with a compact copy of every
//! host's resource ledger so that the hot filter reads a few contiguous bytes per host
//! instead of chasing the string-keyed maps of [`Host`], and an index of where workloads
//! are placed by label and server group so that anti-affinity and groups need no scan of
//! the whole pool. Decisions are exactly those of
//! [`schedule`](crate::schedule) on the same hosts; the copy is kept in step by
//! [`Snapshot::place`] and [`Snapshot::update`], the only ways to change a host.

use std::collections::HashMap;

use crate::affinity::PlacedIndex;
use crate::filter::Prepared;
use crate::ledger::Slot;
use crate::model::{Config, Decision, Host, Placed, Workload};
use crate::schedule::{UnknownHost, search};
use crate::unschedulable::Unschedulable;

/// A pool of hosts for a batch of decisions: schedule, place, schedule again.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    hosts: Vec<Host>,
    /// Per host, its inventories as slots keyed by class number.
    ledgers: Vec<Box<[(u32, Slot)]>>,
    /// Class names by number, in order of first appearance.
    classes: Vec<String>,
    /// The index of the first host of each name.
    by_name: HashMap<String, usize>,
    /// Where workloads are placed, by label and by server group.
    placed: PlacedIndex,
}

impl Snapshot {
    pub fn new(hosts: Vec<Host>) -> Self {
        let mut snapshot = Self {
            hosts,
            ..Self::default()
        };
        snapshot.ledgers = (0..snapshot.hosts.len())
            .map(|index| snapshot.ledger_of(index))
            .collect();
        snapshot.index_names();
        snapshot.placed = PlacedIndex::new(&snapshot.hosts);
        snapshot
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    pub fn into_hosts(self) -> Vec<Host> {
        self.hosts
    }

    /// [`schedule`](crate::schedule) on these hosts.
    pub fn schedule(
        &self,
        workload: &Workload,
        config: &Config,
        start: usize,
    ) -> Result<Decision, Unschedulable> {
        let prepared = Prepared::with_index(&self.hosts, workload, Some(&self.placed));
        // Class numbers of the measured classes; a class no host has fits nowhere.
        let numbers: Vec<Option<u32>> = prepared
            .measured
            .classes
            .iter()
            .map(|(class, _)| self.class_number(class))
            .collect();
        search(&self.hosts, &prepared, config, start, |index, host| {
            let ledger = &self.ledgers[index];
            prepared.check_with(index, host, |measured| {
                measured.fit(|position, _| {
                    let number = numbers[position]?;
                    ledger
                        .iter()
                        .find(|(class, _)| *class == number)
                        .map(|(_, slot)| *slot)
                })
            })
        })
    }

    /// [`place`](crate::place) on these hosts.
    pub fn place(&mut self, workload: &Workload, decision: &Decision) -> Result<(), UnknownHost> {
        let index = *self
            .by_name
            .get(&decision.host)
            .ok_or_else(|| UnknownHost {
                host: decision.host.clone(),
            })?;
        self.hosts[index].allocate(workload, &decision.allocation);
        self.placed.add(index, &Placed::of(workload));
        for (class, amount) in &decision.allocation {
            let Some(number) = self.class_number(class) else {
                continue;
            };
            if let Some((_, slot)) = self.ledgers[index]
                .iter_mut()
                .find(|(candidate, _)| *candidate == number)
            {
                slot.charge(*amount);
            }
        }
        Ok(())
    }

    /// Changes the host at `index` (anything: inventories, labels, readiness, its name) and
    /// brings the compact copy up to date. `None` if there is no such host.
    pub fn update<R>(&mut self, index: usize, change: impl FnOnce(&mut Host) -> R) -> Option<R> {
        let host = self.hosts.get_mut(index)?;
        let name = host.name.clone();
        self.placed.remove_host(index, host);
        let result = change(host);
        self.placed.add_host(index, host);
        self.ledgers[index] = self.ledger_of(index);
        if self.hosts[index].name != name {
            self.index_names();
        }
        Some(result)
    }

    /// Adds a host at the end of the pool.
    pub fn push(&mut self, host: Host) {
        let index = self.hosts.len();
        self.by_name.entry(host.name.clone()).or_insert(index);
        self.placed.add_host(index, &host);
        self.hosts.push(host);
        let ledger = self.ledger_of(index);
        self.ledgers.push(ledger);
    }

    fn class_number(&self, class: &str) -> Option<u32> {
        self.classes
            .iter()
            .position(|candidate| candidate == class)
            .and_then(|number| u32::try_from(number).ok())
    }

    /// The compact ledger of the host at `index`, numbering any class not seen before.
    fn ledger_of(&mut self, index: usize) -> Box<[(u32, Slot)]> {
        let host = &self.hosts[index];
        let mut ledger = Vec::with_capacity(host.inventories.len());
        for (class, inventory) in &host.inventories {
            let number = match self.classes.iter().position(|known| known == class) {
                Some(number) => number,
                None => {
                    self.classes.push(class.clone());
                    self.classes.len() - 1
                }
            };
            let Ok(number) = u32::try_from(number) else {
                continue;
            };
            let used = host.used.get(class).copied().unwrap_or(0);
            ledger.push((number, Slot::new(inventory, used)));
        }
        ledger.into_boxed_slice()
    }

    fn index_names(&mut self) {
        self.by_name.clear();
        for (index, host) in self.hosts.iter().enumerate() {
            self.by_name.entry(host.name.clone()).or_insert(index);
        }
    }
}

impl From<Vec<Host>> for Snapshot {
    fn from(hosts: Vec<Host>) -> Self {
        Self::new(hosts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Inventory;
    use crate::{MEMORY_MB, VCPU, place, schedule};

    fn pool() -> Vec<Host> {
        (0..6)
            .map(|i| {
                Host::new(format!("h{i}"))
                    .with_inventory(VCPU, Inventory::new(4000))
                    .with_inventory(MEMORY_MB, Inventory::new(8192))
                    .with_used(VCPU, 500 * i)
            })
            .collect()
    }

    #[test]
    fn a_batch_decides_as_schedule_and_place_do() {
        let config = Config::default();
        let workloads: Vec<Workload> = (0..20)
            .map(|i| {
                Workload::pod("ns", format!("p{i}"))
                    .with_resource(VCPU, 700)
                    .with_resource(MEMORY_MB, 512 * (i % 3))
            })
            .collect();
        let mut hosts = pool();
        let mut snapshot = Snapshot::new(pool());
        for workload in &workloads {
            let expected = schedule(&hosts, workload, &config, 0);
            assert_eq!(snapshot.schedule(workload, &config, 0), expected);
            if let Ok(decision) = expected {
                place(&mut hosts, workload, &decision).unwrap();
                snapshot.place(workload, &decision).unwrap();
            }
            assert_eq!(snapshot.hosts(), hosts.as_slice());
        }
    }

    #[test]
    fn updates_and_new_hosts_are_seen() {
        let config = Config::default();
        let gpu = Workload::virtual_machine("p", "vm").with_resource("VGPU", 1);
        let mut snapshot = Snapshot::new(pool());
        assert!(snapshot.schedule(&gpu, &config, 0).is_err());
        snapshot
            .update(2, |host| {
                host.name = "gpu-1".to_owned();
                host.inventories
                    .insert("VGPU".to_owned(), Inventory::new(1));
            })
            .unwrap();
        let decision = snapshot.schedule(&gpu, &config, 0).unwrap();
        assert_eq!(decision.host, "gpu-1");
        snapshot.place(&gpu, &decision).unwrap();
        assert!(snapshot.schedule(&gpu, &config, 0).is_err());

        snapshot.push(Host::new("gpu-2").with_inventory("VGPU", Inventory::new(2)));
        assert_eq!(snapshot.schedule(&gpu, &config, 0).unwrap().host, "gpu-2");
        assert_eq!(snapshot.update(99, |_| ()), None);
        let unknown = Decision {
            host: "h2".to_owned(),
            allocation: Default::default(),
            next_start: 0,
        };
        assert!(snapshot.place(&gpu, &unknown).is_err());
    }
}
