//! Why a workload fits nowhere, and how Kubernetes and Nova word it.

use std::collections::BTreeMap;
use std::fmt;

use crate::model::WorkloadKind;
use crate::{MEMORY_MB, VCPU};

/// No host can take the workload: how many hosts were rejected for each reason (each host
/// counts once, for its first failing filter) out of how many hosts in the pool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unschedulable {
    pub reasons: BTreeMap<String, usize>,
    pub hosts: usize,
}

impl Unschedulable {
    /// kube-scheduler's wording, e.g. `0/5 nodes are available: 2 Insufficient cpu, 3
    /// node(s) had untolerated taint {dedicated: gpu}.`: "count reason" items sorted as
    /// text, as kube-scheduler sorts them, with Kubernetes' resource names for `VCPU` and
    /// `MEMORY_MB`. An empty pool gives kube-scheduler's `no nodes available to schedule
    /// pods`.
    pub fn pod_message(&self) -> String {
        if self.hosts == 0 {
            return "no nodes available to schedule pods".to_owned();
        }
        availability(self.hosts, "nodes", &self.breakdown(WorkloadKind::Pod))
    }

    /// Nova's wording, e.g. `No valid host was found. 0/5 hosts are available: 5
    /// Insufficient VCPU.`; an empty pool gives Nova's `No valid host was found. There are
    /// not enough hosts available.`
    pub fn vm_message(&self) -> String {
        if self.hosts == 0 {
            return "No valid host was found. There are not enough hosts available.".to_owned();
        }
        let breakdown = self.breakdown(WorkloadKind::VirtualMachine);
        format!(
            "No valid host was found. {}",
            availability(self.hosts, "hosts", &breakdown)
        )
    }

    /// The message for a workload of `kind`.
    pub fn message(&self, kind: WorkloadKind) -> String {
        match kind {
            WorkloadKind::Pod => self.pod_message(),
            WorkloadKind::VirtualMachine => self.vm_message(),
        }
    }

    /// The "count reason" items, in the wording for `kind`, sorted as text.
    fn breakdown(&self, kind: WorkloadKind) -> Vec<String> {
        let mut worded: BTreeMap<String, usize> = BTreeMap::new();
        for (reason, hosts) in &self.reasons {
            let reason = match kind {
                WorkloadKind::Pod => kubernetes_wording(reason),
                WorkloadKind::VirtualMachine => reason.clone(),
            };
            *worded.entry(reason).or_insert(0) += hosts;
        }
        let mut items: Vec<String> = worded
            .into_iter()
            .map(|(reason, hosts)| format!("{hosts} {reason}"))
            .collect();
        items.sort();
        items
    }
}

/// `0/N <what> are available: item, item.`
fn availability(hosts: usize, what: &str, items: &[String]) -> String {
    if items.is_empty() {
        format!("0/{hosts} {what} are available.")
    } else {
        format!("0/{hosts} {what} are available: {}.", items.join(", "))
    }
}

/// A reason as kube-scheduler words it for a pod, with the resource named as the pod asks
/// for it: `cpu`, `memory`, `ephemeral-storage`, and devices as the extended resources
/// `ronghe.io/<class>` (`VGPU` → `ronghe.io/vgpu`); other vendors' names are kept.
fn kubernetes_wording(reason: &str) -> String {
    match reason.strip_prefix("Insufficient ") {
        Some(class) if class == VCPU => "Insufficient cpu".into(),
        Some(class) if class == MEMORY_MB => "Insufficient memory".into(),
        Some(class) if class == crate::DISK_GB => "Insufficient ephemeral-storage".into(),
        Some(class) if !class.contains('/') => format!(
            "Insufficient ronghe.io/{}",
            class.to_ascii_lowercase().replace('_', "-")
        ),
        _ => reason.to_owned(),
    }
}

impl fmt::Display for Unschedulable {
    /// Placement's wording without Nova's preamble: `0/5 hosts are available: 5
    /// Insufficient VCPU.`
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let breakdown = self.breakdown(WorkloadKind::VirtualMachine);
        formatter.write_str(&availability(self.hosts, "hosts", &breakdown))
    }
}

impl std::error::Error for Unschedulable {}

#[cfg(test)]
mod tests {
    use super::*;

    fn unschedulable(reasons: &[(&str, usize)]) -> Unschedulable {
        Unschedulable {
            reasons: reasons
                .iter()
                .map(|(reason, hosts)| (reason.to_string(), *hosts))
                .collect(),
            hosts: reasons.iter().map(|(_, hosts)| hosts).sum(),
        }
    }

    #[test]
    fn pod_message_uses_kubernetes_names_and_order() {
        let failure = unschedulable(&[
            ("node(s) had untolerated taint {dedicated: gpu}", 3),
            ("Insufficient VCPU", 2),
        ]);
        assert_eq!(
            failure.pod_message(),
            "0/5 nodes are available: 2 Insufficient cpu, 3 node(s) had untolerated taint {dedicated: gpu}."
        );
        assert_eq!(
            failure.vm_message(),
            "No valid host was found. 0/5 hosts are available: 2 Insufficient VCPU, 3 node(s) had untolerated taint {dedicated: gpu}."
        );
        assert_eq!(failure.message(WorkloadKind::Pod), failure.pod_message());
        assert_eq!(
            failure.message(WorkloadKind::VirtualMachine),
            failure.vm_message()
        );
    }

    #[test]
    fn items_sort_as_text_counts_included_like_kube_scheduler() {
        let failure = unschedulable(&[
            ("Insufficient MEMORY_MB", 10),
            ("node(s) were not ready", 2),
            ("Insufficient VGPU", 2),
        ]);
        assert_eq!(
            failure.pod_message(),
            "0/14 nodes are available: 10 Insufficient memory, 2 Insufficient ronghe.io/vgpu, 2 node(s) were not ready."
        );
    }

    #[test]
    fn vm_message_and_display() {
        let failure = unschedulable(&[("Insufficient VCPU", 5)]);
        assert_eq!(
            failure.vm_message(),
            "No valid host was found. 0/5 hosts are available: 5 Insufficient VCPU."
        );
        assert_eq!(
            failure.to_string(),
            "0/5 hosts are available: 5 Insufficient VCPU."
        );
    }

    #[test]
    fn empty_pools() {
        let failure = Unschedulable::default();
        assert_eq!(failure.pod_message(), "no nodes available to schedule pods");
        assert_eq!(
            failure.vm_message(),
            "No valid host was found. There are not enough hosts available."
        );
    }
}
