//! The filters: whether a host can take a workload at all, and if not, the first reason
//! why (in kube-scheduler's wording where Kubernetes has one).
//!
//! The order is fixed and each host gets only its first failing reason: readiness, cordon,
//! taints, node selector and required node affinity, availability zone, traits, resources,
//! pod anti-affinity, server group. What needs the whole pool (anti-affinity over a zone,
//! server group affinity) is computed once per decision in `Prepared`, so checking a host
//! neither allocates nor formats: a rejection is a `Reason` that borrows from the input
//! and becomes text only in an [`Unschedulable`](crate::Unschedulable).

use std::fmt;

use crate::UNSCHEDULABLE_TAINT_KEY;
use crate::affinity::{PlacedIndex, PreparedGroup, PreparedTerm};
use crate::ledger::{Measured, contains, find, slot};
use crate::model::{Host, Taint, TaintEffect, Workload};
use crate::selector::{first_untolerated, tolerated};

/// The reason for a host that is not ready.
pub const NOT_READY: &str = "node(s) were not ready";
/// The reason for a cordoned host.
pub const UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// The reason for a host whose labels match neither the node selector nor the required node
/// affinity.
pub const NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
/// The reason for a host where the workload's own required anti-affinity would be broken
/// (kube-scheduler's wording for the incoming pod's terms; the terms of workloads already
/// placed are not modelled).
pub const POD_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
/// The reason for a host that would break the workload's server group policy.
pub const SERVER_GROUP: &str = "node(s) violated server group affinity/anti-affinity policy";

/// Why a host was rejected, borrowing from the input so that rejecting costs nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Reason<'a> {
    NotReady,
    Unschedulable,
    UntoleratedTaint { key: &'a str, value: &'a str },
    NodeAffinity,
    AvailabilityZone(&'a str),
    MissingTrait(&'a str),
    ForbiddenTrait(&'a str),
    Insufficient(&'a str),
    PodAntiAffinity,
    ServerGroup,
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotReady => formatter.write_str(NOT_READY),
            Reason::Unschedulable => formatter.write_str(UNSCHEDULABLE),
            Reason::UntoleratedTaint { key, value } => {
                write!(
                    formatter,
                    "node(s) had untolerated taint {{{key}: {value}}}"
                )
            }
            Reason::NodeAffinity => formatter.write_str(NODE_AFFINITY),
            Reason::AvailabilityZone(zone) => {
                write!(formatter, "node(s) were not in availability zone {zone}")
            }
            Reason::MissingTrait(name) => write!(formatter, "node(s) lacked required trait {name}"),
            Reason::ForbiddenTrait(name) => write!(formatter, "node(s) had forbidden trait {name}"),
            Reason::Insufficient(class) => write!(formatter, "Insufficient {class}"),
            Reason::PodAntiAffinity => formatter.write_str(POD_ANTI_AFFINITY),
            Reason::ServerGroup => formatter.write_str(SERVER_GROUP),
        }
    }
}

/// A host that passed every filter, with what the filters learnt that scoring needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Fit {
    /// The mean free fraction of the measured classes after placing (see
    /// [`Measured::fit`]).
    pub(crate) free: f64,
}

/// What the filters and the scores need about one workload and the pool, computed once
/// per decision.
pub(crate) struct Prepared<'a> {
    pub(crate) workload: &'a Workload,
    /// The requests to fit and the classes to score on.
    pub(crate) measured: Measured<'a>,
    tolerates_unschedulable: bool,
    anti_affinity: Vec<PreparedTerm<'a>>,
    pub(crate) group: Option<PreparedGroup<'a>>,
}

impl<'a> Prepared<'a> {
    pub(crate) fn new(hosts: &'a [Host], workload: &'a Workload) -> Self {
        Self::with_index(hosts, workload, None)
    }

    /// [`new`](Self::new), reading where workloads are placed from `index` when the pool
    /// keeps one rather than scanning every host.
    pub(crate) fn with_index(
        hosts: &'a [Host],
        workload: &'a Workload,
        index: Option<&'a PlacedIndex>,
    ) -> Self {
        let cordon = Taint::new(UNSCHEDULABLE_TAINT_KEY, "", TaintEffect::NoSchedule);
        Self {
            workload,
            measured: Measured::new(&workload.resources),
            tolerates_unschedulable: tolerated(&workload.tolerations, &cordon),
            anti_affinity: workload
                .anti_affinity
                .iter()
                .map(|term| PreparedTerm::new(hosts, workload, term, index))
                .collect(),
            group: PreparedGroup::new(hosts, workload, index),
        }
    }

    /// Whether `host`, at `host_index` in the pool, can take the workload; if not, the
    /// first reason why.
    pub(crate) fn check(&self, host_index: usize, host: &'a Host) -> Result<Fit, Reason<'a>> {
        self.check_with(host_index, host, |measured| {
            measured.fit(|_, class| slot(host, class))
        })
    }

    /// [`check`](Self::check), with the resource filter's answer coming from `fit` (which
    /// may read a compact copy of the host's ledger rather than its maps).
    pub(crate) fn check_with(
        &self,
        host_index: usize,
        host: &'a Host,
        fit: impl FnOnce(&Measured<'a>) -> Result<f64, &'a str>,
    ) -> Result<Fit, Reason<'a>> {
        let workload = self.workload;
        if !host.ready {
            return Err(Reason::NotReady);
        }
        if host.unschedulable && !self.tolerates_unschedulable {
            return Err(Reason::Unschedulable);
        }
        if let Some(taint) = first_untolerated(&host.taints, &workload.tolerations) {
            return Err(Reason::UntoleratedTaint {
                key: &taint.key,
                value: &taint.value,
            });
        }
        if !self.matches_node_affinity(host) {
            return Err(Reason::NodeAffinity);
        }
        if let Some(zone) = &workload.zone
            && host.zone.as_ref() != Some(zone)
        {
            return Err(Reason::AvailabilityZone(zone));
        }
        if let Some(name) = workload
            .required_traits
            .iter()
            .find(|name| !contains(&host.traits, name))
        {
            return Err(Reason::MissingTrait(name));
        }
        if let Some(name) = workload
            .forbidden_traits
            .iter()
            .find(|name| contains(&host.traits, name))
        {
            return Err(Reason::ForbiddenTrait(name));
        }
        let free = fit(&self.measured).map_err(Reason::Insufficient)?;
        if self
            .anti_affinity
            .iter()
            .any(|term| term.conflicts(host_index, host))
        {
            return Err(Reason::PodAntiAffinity);
        }
        if let Some(group) = &self.group
            && !group.allows(host_index, host)
        {
            return Err(Reason::ServerGroup);
        }
        Ok(Fit { free })
    }

    fn matches_node_affinity(&self, host: &Host) -> bool {
        let workload = self.workload;
        let selector_matches = workload
            .node_selector
            .iter()
            .all(|(key, value)| find(&host.labels, key) == Some(value));
        selector_matches
            && (workload.required_affinity.is_empty()
                || workload
                    .required_affinity
                    .iter()
                    .any(|term| term.matches(&host.labels)))
    }
}

/// Why each host cannot take `workload` (`None`: it passes every filter), in the wording of
/// [`Unschedulable`](crate::Unschedulable)'s reasons. For explanations and tests; `schedule`
/// does not format anything for the hosts it accepts.
pub fn rejections(hosts: &[Host], workload: &Workload) -> Vec<Option<String>> {
    let prepared = Prepared::new(hosts, workload);
    hosts
        .iter()
        .enumerate()
        .map(|(host_index, host)| {
            let rejection = prepared.check(host_index, host).err();
            rejection.map(|reason| reason.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests;
