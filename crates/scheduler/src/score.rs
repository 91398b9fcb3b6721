//! Scoring the feasible hosts: higher is better.
//!
//! The base is kube-scheduler's NodeResourcesFit: for each requested class, the fraction of
//! the host's capacity left free after placing (LeastAllocated, for [`Strategy::Spread`])
//! or used (MostAllocated, for [`Strategy::Pack`]), averaged and scaled to 0–100. A workload
//! that requests nothing is scored on `VCPU` and `MEMORY_MB` as they stand, so that even
//! best-effort pods spread (kube-scheduler substitutes default requests for the same end).
//!
//! Preferences then move a host by whole steps of 100, so they outweigh any difference in
//! load, as kube-scheduler's weight of 3 for TaintToleration outweighs NodeResourcesFit:
//! each `PreferNoSchedule` taint the workload does not tolerate costs a step, and so does
//! each member of a soft anti-affinity group already on the host; each member of a soft
//! affinity group on the host earns one.

use crate::filter::{Fit, Prepared};
use crate::model::{GroupPolicy, Host, Strategy};
use crate::selector::untolerated_preferences;

/// The range of the load score, and the size of one step of preference.
const STEP: f64 = 100.0;

/// The score of `host`, at `host_index` in the pool, which passed the filters with `fit`.
pub(crate) fn score(
    prepared: &Prepared<'_>,
    host_index: usize,
    host: &Host,
    fit: Fit,
    strategy: Strategy,
) -> f64 {
    let load = match strategy {
        Strategy::Spread => fit.free,
        Strategy::Pack => 1.0 - fit.free,
    };
    let mut score = STEP * load;
    score -= STEP * untolerated_preferences(&host.taints, &prepared.workload.tolerations) as f64;
    if let Some(group) = &prepared.group {
        match group.policy {
            GroupPolicy::SoftAffinity => score += STEP * group.members_on(host_index, host) as f64,
            GroupPolicy::SoftAntiAffinity => {
                score -= STEP * group.members_on(host_index, host) as f64
            }
            GroupPolicy::Affinity | GroupPolicy::AntiAffinity => {}
        }
    }
    score
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Inventory, ServerGroup, Taint, TaintEffect, Toleration, Workload};
    use crate::{MEMORY_MB, VCPU};

    fn scored(host: &Host, workload: &Workload, strategy: Strategy) -> f64 {
        let hosts = std::slice::from_ref(host);
        let prepared = Prepared::new(hosts, workload);
        let fit = prepared.check(0, host).expect("the host fits");
        score(&prepared, 0, host, fit, strategy)
    }

    fn host(vcpu_used: i64, memory_used: i64) -> Host {
        Host::new("h")
            .with_inventory(VCPU, Inventory::new(4000))
            .with_inventory(MEMORY_MB, Inventory::new(8192))
            .with_used(VCPU, vcpu_used)
            .with_used(MEMORY_MB, memory_used)
    }

    #[test]
    fn spread_scores_the_free_fraction_after_placing_and_pack_its_complement() {
        let workload = Workload::pod("ns", "p")
            .with_resource(VCPU, 1000)
            .with_resource(MEMORY_MB, 2048);
        let host = host(1000, 0);
        // VCPU: 2000/4000 free after placing; memory: 6144/8192.
        let expected = (0.5 + 0.75) / 2.0 * 100.0;
        assert_eq!(scored(&host, &workload, Strategy::Spread), expected);
        assert_eq!(scored(&host, &workload, Strategy::Pack), 100.0 - expected);
    }

    #[test]
    fn workloads_without_requests_are_scored_on_cpu_and_memory() {
        let workload = Workload::pod("ns", "best-effort");
        assert_eq!(scored(&host(2000, 0), &workload, Strategy::Spread), 75.0);
        assert_eq!(scored(&Host::new("bare"), &workload, Strategy::Spread), 0.0);
    }

    #[test]
    fn untolerated_preferences_cost_a_step() {
        let workload = Workload::pod("ns", "p").with_resource(VCPU, 1000);
        let tainted = host(0, 0).with_taint(Taint::new("spot", "", TaintEffect::PreferNoSchedule));
        let plain = scored(&host(0, 0), &workload, Strategy::Spread);
        assert_eq!(scored(&tainted, &workload, Strategy::Spread), plain - 100.0);
        let tolerant = workload.with_toleration(Toleration::exists("spot", None));
        assert_eq!(scored(&tainted, &tolerant, Strategy::Spread), plain);
    }

    #[test]
    fn soft_groups_move_by_members_on_the_host() {
        let member = |policy| {
            Workload::virtual_machine("p", "vm")
                .with_resource(VCPU, 1000)
                .with_server_group(ServerGroup {
                    key: "p/g".to_owned(),
                    policy,
                    max_server_per_host: None,
                })
        };
        let affine = member(GroupPolicy::SoftAffinity);
        let mut crowded = host(0, 0);
        crowded.allocate(&affine, &Default::default());
        crowded.allocate(&affine, &Default::default());
        let plain = scored(&host(0, 0), &affine, Strategy::Spread);
        assert_eq!(scored(&crowded, &affine, Strategy::Spread), plain + 200.0);
        let averse = member(GroupPolicy::SoftAntiAffinity);
        assert_eq!(scored(&crowded, &averse, Strategy::Spread), plain - 200.0);
    }
}
