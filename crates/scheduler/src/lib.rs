//! The placement decision for pods and VMs alike, as a pure function of a snapshot of the
//! hosts: no I/O, no clocks, no randomness. Binding the decision (a compare-and-swap on the
//! host's allocations) is the caller's separate step.
//!
//! # Ledger units
//!
//! Resource classes are Placement's: [`VCPU`], [`MEMORY_MB`], [`DISK_GB`] and custom ones such
//! as `VGPU`. Every amount is an `i64` in its class's ledger unit, and one ledger serves both
//! kinds of workload:
//!
//! - **`VCPU` is counted in thousandths of a vCPU** (millicores), so that a pod can ask for
//!   `500m`. A VM with 2 vCPUs asks for `VCPU = 2000`, and a host's `VCPU` inventory total
//!   (and its reserved amount, units and step) are likewise in thousandths: a 4-core host
//!   has `total = 4000`.
//! - `MEMORY_MB` is in mebibytes and `DISK_GB` in gibibytes, for pods and VMs alike (a pod's
//!   `memory: 1Gi` asks for `MEMORY_MB = 1024`).
//!
//! # Shape of a decision
//!
//! [`schedule`] runs the filters of [`filter`] on hosts visited in a rotated order,
//! kube-scheduler style (sampling only part of a large pool), scores the feasible ones
//! (`score.rs`: load left after placing, then preferences), and returns the best
//! ([`Decision`]) or why none fits ([`Unschedulable`], in Kubernetes' and Nova's wording).
//! [`rejections`] explains every host. [`place`] applies a decision to an in-memory pool so
//! a caller can schedule a batch against an evolving view of it; [`Snapshot`] holds a pool
//! for many decisions with a compact copy of each host's ledger and an index of where
//! workloads are placed, and gives the same answers several times faster.

mod affinity;
pub mod filter;
mod ledger;
mod model;
mod schedule;
mod score;
mod selector;
mod snapshot;
mod unschedulable;

pub use filter::rejections;
pub use model::{
    AntiAffinityTerm, Config, Decision, GroupPolicy, Host, Inventory, NodeSelectorTerm, Placed,
    SelectorOperator, SelectorRequirement, ServerGroup, Strategy, Taint, TaintEffect, Toleration,
    TolerationOperator, Workload, WorkloadKind,
};
pub use schedule::{UnknownHost, num_feasible_to_find, place, schedule};
pub use snapshot::Snapshot;
pub use unschedulable::Unschedulable;

/// Virtual CPUs, in thousandths of a vCPU (see the crate documentation).
pub const VCPU: &str = "VCPU";
/// Memory, in mebibytes.
pub const MEMORY_MB: &str = "MEMORY_MB";
/// Local disk, in gibibytes.
pub const DISK_GB: &str = "DISK_GB";

/// The node label naming the host itself; as a topology key it means "the same host".
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// The node label naming the host's availability zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// The taint a cordoned host implicitly carries: a workload that tolerates it (as DaemonSet
/// pods do) may still be placed on an unschedulable host, as in Kubernetes.
pub const UNSCHEDULABLE_TAINT_KEY: &str = "node.kubernetes.io/unschedulable";
