//! What the workloads already placed say about a new one: its required pod anti-affinity
//! terms and its server group, prepared once per decision, and [`PlacedIndex`], the
//! record of where workloads sit by label and by group that a
//! [`Snapshot`](crate::Snapshot) keeps so that neither needs a scan of the whole pool.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::HOSTNAME_LABEL;
use crate::ledger::find;
use crate::model::{AntiAffinityTerm, GroupPolicy, Host, Placed, SelectorOperator, Workload};
use crate::selector::matches_all;

/// Host index → how many of the indexed workloads run there.
type HostCounts = BTreeMap<usize, usize>;

/// Where placed workloads are, by namespaced label and by server group.
#[derive(Clone, Debug, Default)]
pub(crate) struct PlacedIndex {
    labels: HashMap<String, HostCounts>,
    groups: HashMap<String, HostCounts>,
}

/// The key of a namespaced label. A collision between two labels could only widen a set
/// of candidates, which are always checked one by one.
fn label_key(namespace: &str, key: &str, value: &str) -> String {
    format!("{namespace}\n{key}\n{value}")
}

impl PlacedIndex {
    pub(crate) fn new(hosts: &[Host]) -> Self {
        let mut index = Self::default();
        for (host_index, host) in hosts.iter().enumerate() {
            index.add_host(host_index, host);
        }
        index
    }

    pub(crate) fn add_host(&mut self, host_index: usize, host: &Host) {
        for placed in &host.placed {
            self.add(host_index, placed);
        }
    }

    pub(crate) fn remove_host(&mut self, host_index: usize, host: &Host) {
        for placed in &host.placed {
            for (key, value) in &placed.labels {
                let label = label_key(&placed.namespace, key, value);
                uncount(&mut self.labels, &label, host_index);
            }
            if let Some(group) = &placed.server_group {
                uncount(&mut self.groups, group, host_index);
            }
        }
    }

    pub(crate) fn add(&mut self, host_index: usize, placed: &Placed) {
        for (key, value) in &placed.labels {
            let label = label_key(&placed.namespace, key, value);
            *self
                .labels
                .entry(label)
                .or_default()
                .entry(host_index)
                .or_insert(0) += 1;
        }
        if let Some(group) = &placed.server_group {
            *self
                .groups
                .entry(group.clone())
                .or_default()
                .entry(host_index)
                .or_insert(0) += 1;
        }
    }
}

fn uncount(map: &mut HashMap<String, HostCounts>, key: &str, host_index: usize) {
    let Some(hosts) = map.get_mut(key) else {
        return;
    };
    if let Some(count) = hosts.get_mut(&host_index) {
        *count -= 1;
        if *count == 0 {
            hosts.remove(&host_index);
        }
    }
    if hosts.is_empty() {
        map.remove(key);
    }
}

/// Whether anti-affinity `term` of `workload` selects the already placed `placed`.
fn term_selects(workload: &Workload, term: &AntiAffinityTerm, placed: &Placed) -> bool {
    let in_namespace = if term.namespaces.is_empty() {
        placed.namespace == workload.namespace
    } else {
        term.namespaces.contains(&placed.namespace)
    };
    in_namespace && matches_all(&term.selector, &placed.labels)
}

/// One required anti-affinity term, ready to check hosts against.
pub(crate) struct PreparedTerm<'a> {
    workload: &'a Workload,
    term: &'a AntiAffinityTerm,
    /// With an index: the only hosts that may run a workload the term selects (those with
    /// a workload carrying the label of one of its `In` requirements). `None`: any host.
    candidates: Option<BTreeSet<usize>>,
    /// For a topology other than the host itself: the values of the topology label on the
    /// hosts where a selected workload already runs. `None` for [`HOSTNAME_LABEL`], which
    /// is checked on the host's own workloads.
    occupied_domains: Option<BTreeSet<&'a str>>,
}

impl<'a> PreparedTerm<'a> {
    pub(crate) fn new(
        hosts: &'a [Host],
        workload: &'a Workload,
        term: &'a AntiAffinityTerm,
        index: Option<&PlacedIndex>,
    ) -> Self {
        let candidates = index.and_then(|index| candidates(index, workload, term));
        let mut prepared = Self {
            workload,
            term,
            candidates,
            occupied_domains: None,
        };
        if term.topology_key != HOSTNAME_LABEL {
            prepared.occupied_domains = Some(prepared.occupied_domains(hosts));
        }
        prepared
    }

    /// Whether a workload the term selects runs in the topology domain of `host`.
    pub(crate) fn conflicts(&self, host_index: usize, host: &Host) -> bool {
        match &self.occupied_domains {
            None => self.runs_selected(host_index, host),
            Some(occupied) => find(&host.labels, &self.term.topology_key)
                .is_some_and(|domain| occupied.contains(domain.as_str())),
        }
    }

    fn runs_selected(&self, host_index: usize, host: &Host) -> bool {
        if self
            .candidates
            .as_ref()
            .is_some_and(|candidates| !candidates.contains(&host_index))
        {
            return false;
        }
        host.placed
            .iter()
            .any(|placed| term_selects(self.workload, self.term, placed))
    }

    /// The values of the topology label on the hosts running a workload the term selects.
    /// As in kube-scheduler, workloads on hosts without the label count nowhere, and a host
    /// without the label is never in a forbidden domain.
    fn occupied_domains(&self, hosts: &'a [Host]) -> BTreeSet<&'a str> {
        let domain = |(host_index, host): (usize, &'a Host)| {
            let domain = find(&host.labels, &self.term.topology_key)?;
            self.runs_selected(host_index, host)
                .then_some(domain.as_str())
        };
        match &self.candidates {
            Some(candidates) => candidates
                .iter()
                .filter_map(|&host_index| Some((host_index, hosts.get(host_index)?)))
                .filter_map(domain)
                .collect(),
            None => hosts.iter().enumerate().filter_map(domain).collect(),
        }
    }
}

/// The hosts that may run a workload `term` selects, from the first `In` requirement of its
/// selector; `None` when it has none (such a selector is checked on every host).
fn candidates(
    index: &PlacedIndex,
    workload: &Workload,
    term: &AntiAffinityTerm,
) -> Option<BTreeSet<usize>> {
    let requirement = term
        .selector
        .iter()
        .find(|requirement| requirement.operator == SelectorOperator::In)?;
    let namespaces: Vec<&str> = if term.namespaces.is_empty() {
        vec![workload.namespace.as_str()]
    } else {
        term.namespaces.iter().map(String::as_str).collect()
    };
    let mut candidates = BTreeSet::new();
    for namespace in namespaces {
        for value in &requirement.values {
            if let Some(hosts) = index
                .labels
                .get(&label_key(namespace, &requirement.key, value))
            {
                candidates.extend(hosts.keys().copied());
            }
        }
    }
    Some(candidates)
}

/// Where the members of a server group are.
enum Membership<'a> {
    /// Counted by scanning each host's workloads.
    Scan,
    /// Read from a [`PlacedIndex`] (`None`: no member anywhere).
    Indexed(Option<&'a HostCounts>),
}

/// The workload's server group, ready to check hosts against.
pub(crate) struct PreparedGroup<'a> {
    key: &'a str,
    pub(crate) policy: GroupPolicy,
    max_per_host: usize,
    membership: Membership<'a>,
    /// For hard affinity: whether a member runs anywhere in the pool yet.
    any_member_placed: bool,
}

impl<'a> PreparedGroup<'a> {
    pub(crate) fn new(
        hosts: &[Host],
        workload: &'a Workload,
        index: Option<&'a PlacedIndex>,
    ) -> Option<Self> {
        let group = workload.server_group.as_ref()?;
        let mut prepared = Self {
            key: group.key.as_str(),
            policy: group.policy,
            // Nova's API rejects 0; read it as the default rather than as "nowhere".
            max_per_host: group.max_server_per_host.unwrap_or(1).max(1) as usize,
            membership: match index {
                Some(index) => Membership::Indexed(index.groups.get(group.key.as_str())),
                None => Membership::Scan,
            },
            any_member_placed: false,
        };
        if group.policy == GroupPolicy::Affinity {
            prepared.any_member_placed = match prepared.membership {
                Membership::Indexed(members) => members.is_some_and(|hosts| !hosts.is_empty()),
                Membership::Scan => hosts
                    .iter()
                    .flat_map(|host| &host.placed)
                    .any(|placed| prepared.is_member(placed)),
            };
        }
        Some(prepared)
    }

    fn is_member(&self, placed: &Placed) -> bool {
        placed.server_group.as_deref() == Some(self.key)
    }

    /// How many members of the group run on `host`, at `host_index` in the pool.
    pub(crate) fn members_on(&self, host_index: usize, host: &Host) -> usize {
        match self.membership {
            Membership::Indexed(members) => members
                .and_then(|hosts| hosts.get(&host_index))
                .copied()
                .unwrap_or(0),
            Membership::Scan => host
                .placed
                .iter()
                .filter(|placed| self.is_member(placed))
                .count(),
        }
    }

    /// Whether the hard policies let the workload onto `host`.
    pub(crate) fn allows(&self, host_index: usize, host: &Host) -> bool {
        match self.policy {
            GroupPolicy::Affinity => {
                !self.any_member_placed || self.members_on(host_index, host) > 0
            }
            GroupPolicy::AntiAffinity => self.members_on(host_index, host) < self.max_per_host,
            GroupPolicy::SoftAffinity | GroupPolicy::SoftAntiAffinity => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SelectorRequirement, ServerGroup};

    fn placed(namespace: &str, app: &str, group: Option<&str>) -> Placed {
        Placed {
            namespace: namespace.to_owned(),
            labels: [("app".to_owned(), app.to_owned())].into(),
            server_group: group.map(str::to_owned),
        }
    }

    #[test]
    fn the_index_counts_and_forgets() {
        let hosts = vec![
            Host::new("a").with_placed(placed("ns", "web", Some("ns/g"))),
            Host::new("b")
                .with_placed(placed("ns", "web", None))
                .with_placed(placed("ns", "web", Some("ns/g"))),
        ];
        let mut index = PlacedIndex::new(&hosts);
        let web = label_key("ns", "app", "web");
        assert_eq!(index.labels[&web], BTreeMap::from([(0, 1), (1, 2)]));
        assert_eq!(index.groups["ns/g"], BTreeMap::from([(0, 1), (1, 1)]));
        index.remove_host(0, &hosts[0]);
        assert_eq!(index.labels[&web], BTreeMap::from([(1, 2)]));
        index.remove_host(1, &hosts[1]);
        assert!(index.labels.is_empty() && index.groups.is_empty());
    }

    #[test]
    fn indexed_and_scanned_answers_agree() {
        let hosts = vec![
            Host::new("a")
                .with_zone("az1")
                .with_placed(placed("ns", "web", Some("ns/g"))),
            Host::new("b").with_zone("az1"),
            Host::new("c")
                .with_zone("az2")
                .with_placed(placed("other", "web", None)),
        ];
        let index = PlacedIndex::new(&hosts);
        for topology_key in [HOSTNAME_LABEL, crate::ZONE_LABEL] {
            let workload = Workload::pod("ns", "p").with_anti_affinity(AntiAffinityTerm {
                selector: vec![SelectorRequirement::equals("app", "web")],
                namespaces: Vec::new(),
                topology_key: topology_key.to_owned(),
            });
            let term = &workload.anti_affinity[0];
            let scanned = PreparedTerm::new(&hosts, &workload, term, None);
            let indexed = PreparedTerm::new(&hosts, &workload, term, Some(&index));
            for (host_index, host) in hosts.iter().enumerate() {
                assert_eq!(
                    scanned.conflicts(host_index, host),
                    indexed.conflicts(host_index, host),
                    "{topology_key} on {}",
                    host.name
                );
            }
        }
        for policy in [GroupPolicy::Affinity, GroupPolicy::AntiAffinity] {
            let workload = Workload::virtual_machine("ns", "vm").with_server_group(ServerGroup {
                key: "ns/g".to_owned(),
                policy,
                max_server_per_host: None,
            });
            let scanned = PreparedGroup::new(&hosts, &workload, None).unwrap();
            let indexed = PreparedGroup::new(&hosts, &workload, Some(&index)).unwrap();
            for (host_index, host) in hosts.iter().enumerate() {
                assert_eq!(
                    scanned.allows(host_index, host),
                    indexed.allows(host_index, host)
                );
            }
        }
    }
}
