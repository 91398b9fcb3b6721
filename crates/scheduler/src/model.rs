//! The scheduler's data model: hosts with their inventories and what is placed on them,
//! workloads with their requests and constraints, the configuration and the decision.
//!
//! Everything is plain data with public fields, so callers can build snapshots from
//! whatever they hold (Node objects, hypervisor records); the constructors and `with_*`
//! setters only fill in the usual defaults.

use std::collections::{BTreeMap, BTreeSet};

use crate::ledger::Slot;
use crate::{HOSTNAME_LABEL, ZONE_LABEL};

/// One resource class of a host, with Placement's semantics.
///
/// The usable capacity is `floor((total - reserved) * allocation_ratio)`. A request `r` fits
/// when `used + r <= capacity` and, for `r > 0`, `min_unit <= r <= max_unit` and
/// `r % step_size == 0`.
#[derive(Clone, Debug, PartialEq)]
pub struct Inventory {
    pub total: i64,
    pub reserved: i64,
    pub allocation_ratio: f64,
    pub min_unit: i64,
    pub max_unit: i64,
    pub step_size: i64,
}

impl Inventory {
    /// An inventory of `total` with Placement's defaults: nothing reserved, ratio 1.0,
    /// units from 1 to `total` in steps of 1.
    pub fn new(total: i64) -> Self {
        Self {
            total,
            reserved: 0,
            allocation_ratio: 1.0,
            min_unit: 1,
            max_unit: total,
            step_size: 1,
        }
    }

    pub fn with_reserved(mut self, reserved: i64) -> Self {
        self.reserved = reserved;
        self
    }

    pub fn with_allocation_ratio(mut self, allocation_ratio: f64) -> Self {
        self.allocation_ratio = allocation_ratio;
        self
    }

    pub fn with_min_unit(mut self, min_unit: i64) -> Self {
        self.min_unit = min_unit;
        self
    }

    pub fn with_max_unit(mut self, max_unit: i64) -> Self {
        self.max_unit = max_unit;
        self
    }

    pub fn with_step_size(mut self, step_size: i64) -> Self {
        self.step_size = step_size;
        self
    }

    /// `floor((total - reserved) * allocation_ratio)`; the float-to-integer conversion
    /// saturates, and a NaN ratio gives no capacity at all.
    pub fn capacity(&self) -> i64 {
        let unreserved = self.total.saturating_sub(self.reserved);
        (unreserved as f64 * self.allocation_ratio).floor() as i64
    }

    /// Whether `request` more fits on top of `used`. A negative request never fits: it
    /// would free capacity that no allocation holds. A zero request always fits.
    pub fn fits(&self, used: i64, request: i64) -> bool {
        Slot::new(self, used).fits(request)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: TaintEffect,
}

impl Taint {
    pub fn new(key: impl Into<String>, value: impl Into<String>, effect: TaintEffect) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
            effect,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TolerationOperator {
    Equal,
    Exists,
}

/// Kubernetes' toleration: an empty `key` with `Exists` tolerates every taint, and an
/// `effect` of `None` matches every effect.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Toleration {
    pub key: String,
    pub operator: TolerationOperator,
    pub value: String,
    pub effect: Option<TaintEffect>,
}

impl Toleration {
    /// Tolerates `key=value` with the given effect (`None`: any effect).
    pub fn equal(
        key: impl Into<String>,
        value: impl Into<String>,
        effect: Option<TaintEffect>,
    ) -> Self {
        Self {
            key: key.into(),
            operator: TolerationOperator::Equal,
            value: value.into(),
            effect,
        }
    }

    /// Tolerates any value of `key` (an empty key: every taint) with the given effect.
    pub fn exists(key: impl Into<String>, effect: Option<TaintEffect>) -> Self {
        Self {
            key: key.into(),
            operator: TolerationOperator::Exists,
            value: String::new(),
            effect,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

/// One requirement on labels, with apimachinery's semantics (see
/// [`SelectorRequirement::matches`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SelectorRequirement {
    pub key: String,
    pub operator: SelectorOperator,
    pub values: Vec<String>,
}

impl SelectorRequirement {
    pub fn new(
        key: impl Into<String>,
        operator: SelectorOperator,
        values: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            key: key.into(),
            operator,
            values: values.into_iter().map(Into::into).collect(),
        }
    }

    /// `key = value`: how a `matchLabels` entry is expressed.
    pub fn equals(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self::new(key, SelectorOperator::In, [value.into()])
    }
}

/// Required node affinity: the node must match ANY term; a term matches when ALL its
/// requirements match the node's labels. A term with no requirement matches no node, as in
/// Kubernetes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeSelectorTerm {
    pub match_expressions: Vec<SelectorRequirement>,
}

/// A workload already placed on a host (for anti-affinity and server groups).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Placed {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// The key (`namespace/name`) of the server group it belongs to.
    pub server_group: Option<String>,
}

impl Placed {
    /// What placing `workload` leaves on its host.
    pub fn of(workload: &Workload) -> Self {
        Self {
            namespace: workload.namespace.clone(),
            labels: workload.labels.clone(),
            server_group: workload
                .server_group
                .as_ref()
                .map(|group| group.key.clone()),
        }
    }
}

/// A host of the shared pool, as the scheduler sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Host {
    pub name: String,
    pub inventories: BTreeMap<String, Inventory>,
    pub used: BTreeMap<String, i64>,
    pub traits: BTreeSet<String>,
    /// Node labels; include [`HOSTNAME_LABEL`] and [`ZONE_LABEL`] when those are set.
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// The availability zone.
    pub zone: Option<String>,
    pub ready: bool,
    /// Cordoned.
    pub unschedulable: bool,
    pub placed: Vec<Placed>,
}

impl Host {
    /// A ready, schedulable, empty host labelled with its hostname, as kubelet labels a node.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            labels: BTreeMap::from([(HOSTNAME_LABEL.to_owned(), name.clone())]),
            name,
            inventories: BTreeMap::new(),
            used: BTreeMap::new(),
            traits: BTreeSet::new(),
            taints: Vec::new(),
            zone: None,
            ready: true,
            unschedulable: false,
            placed: Vec::new(),
        }
    }

    pub fn with_inventory(mut self, class: impl Into<String>, inventory: Inventory) -> Self {
        self.inventories.insert(class.into(), inventory);
        self
    }

    pub fn with_used(mut self, class: impl Into<String>, amount: i64) -> Self {
        self.used.insert(class.into(), amount);
        self
    }

    pub fn with_trait(mut self, name: impl Into<String>) -> Self {
        self.traits.insert(name.into());
        self
    }

    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    pub fn with_taint(mut self, taint: Taint) -> Self {
        self.taints.push(taint);
        self
    }

    /// Sets the availability zone and the matching [`ZONE_LABEL`].
    pub fn with_zone(mut self, zone: impl Into<String>) -> Self {
        let zone = zone.into();
        self.labels.insert(ZONE_LABEL.to_owned(), zone.clone());
        self.zone = Some(zone);
        self
    }

    pub fn with_placed(mut self, placed: Placed) -> Self {
        self.placed.push(placed);
        self
    }

    /// Charges `allocation` to this host and records `workload` as placed on it.
    pub fn allocate(&mut self, workload: &Workload, allocation: &BTreeMap<String, i64>) {
        for (class, amount) in allocation {
            let used = self.used.entry(class.clone()).or_insert(0);
            *used = used.saturating_add(*amount);
        }
        self.placed.push(Placed::of(workload));
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkloadKind {
    Pod,
    VirtualMachine,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupPolicy {
    Affinity,
    AntiAffinity,
    SoftAffinity,
    SoftAntiAffinity,
}

/// Nova's server group, as one of its members sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerGroup {
    /// `namespace/name`.
    pub key: String,
    pub policy: GroupPolicy,
    /// Nova's `max_server_per_host` rule for anti-affinity; `None` means 1, and so does 0
    /// (which Nova's API rejects).
    pub max_server_per_host: Option<u32>,
}

/// Required pod anti-affinity term: no workload in `namespaces` (empty = the workload's own)
/// whose labels match `selector` may share the topology domain named by `topology_key`
/// ([`HOSTNAME_LABEL`] → the host; any other key → hosts with the same value of that label,
/// e.g. [`ZONE_LABEL`]). An empty selector matches every workload, as an empty
/// `LabelSelector` does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AntiAffinityTerm {
    /// `matchLabels` are expressed as `In` with one value.
    pub selector: Vec<SelectorRequirement>,
    pub namespaces: Vec<String>,
    pub topology_key: String,
}

/// A pod or a VM asking for a place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Requests in ledger units; zero amounts are ignored.
    pub resources: BTreeMap<String, i64>,
    pub required_traits: BTreeSet<String>,
    pub forbidden_traits: BTreeSet<String>,
    pub node_selector: BTreeMap<String, String>,
    pub required_affinity: Vec<NodeSelectorTerm>,
    pub tolerations: Vec<Toleration>,
    pub anti_affinity: Vec<AntiAffinityTerm>,
    pub server_group: Option<ServerGroup>,
    /// The availability zone it must land in.
    pub zone: Option<String>,
}

impl Workload {
    pub fn new(kind: WorkloadKind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: namespace.into(),
            name: name.into(),
            labels: BTreeMap::new(),
            resources: BTreeMap::new(),
            required_traits: BTreeSet::new(),
            forbidden_traits: BTreeSet::new(),
            node_selector: BTreeMap::new(),
            required_affinity: Vec::new(),
            tolerations: Vec::new(),
            anti_affinity: Vec::new(),
            server_group: None,
            zone: None,
        }
    }

    pub fn pod(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self::new(WorkloadKind::Pod, namespace, name)
    }

    pub fn virtual_machine(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self::new(WorkloadKind::VirtualMachine, namespace, name)
    }

    pub fn with_resource(mut self, class: impl Into<String>, amount: i64) -> Self {
        self.resources.insert(class.into(), amount);
        self
    }

    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    pub fn with_required_trait(mut self, name: impl Into<String>) -> Self {
        self.required_traits.insert(name.into());
        self
    }

    pub fn with_forbidden_trait(mut self, name: impl Into<String>) -> Self {
        self.forbidden_traits.insert(name.into());
        self
    }

    pub fn with_node_selector(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.node_selector.insert(key.into(), value.into());
        self
    }

    pub fn with_required_affinity(mut self, term: NodeSelectorTerm) -> Self {
        self.required_affinity.push(term);
        self
    }

    pub fn with_toleration(mut self, toleration: Toleration) -> Self {
        self.tolerations.push(toleration);
        self
    }

    pub fn with_anti_affinity(mut self, term: AntiAffinityTerm) -> Self {
        self.anti_affinity.push(term);
        self
    }

    pub fn with_server_group(mut self, group: ServerGroup) -> Self {
        self.server_group = Some(group);
        self
    }

    pub fn with_zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// What a decision allocates: the non-zero requests.
    pub fn allocation(&self) -> BTreeMap<String, i64> {
        self.resources
            .iter()
            .filter(|(_, amount)| **amount != 0)
            .map(|(class, amount)| (class.clone(), *amount))
            .collect()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Prefer the host left with the most free capacity (kube-scheduler's LeastAllocated).
    #[default]
    Spread,
    /// Prefer the host left with the least free capacity (MostAllocated).
    Pack,
}

/// How hard to search. The sampling follows kube-scheduler's `percentageOfNodesToScore`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    pub strategy: Strategy,
    /// Pools smaller than this are searched whole; larger ones until at least this many
    /// feasible hosts are found. kube-scheduler's `minFeasibleNodesToFind`, 100.
    pub min_feasible_to_find: usize,
    /// The share of the pool to find feasible before choosing. `None` (or 0) is adaptive:
    /// `50 - hosts / 125` percent, at least 5.
    pub percentage_of_hosts_to_score: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            strategy: Strategy::Spread,
            min_feasible_to_find: 100,
            percentage_of_hosts_to_score: None,
        }
    }
}

/// Where to put a workload.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Decision {
    pub host: String,
    /// What to allocate on the host: the workload's non-zero requests.
    pub allocation: BTreeMap<String, i64>,
    /// Where the next search should start, rotating through the pool like kube-scheduler.
    pub next_start: usize,
}
