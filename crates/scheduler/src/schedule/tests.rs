//! Tests of the search: choice, rotation and sampling, failures, and batches with `place`.

use std::collections::BTreeMap;

use super::*;
use crate::filter::{POD_ANTI_AFFINITY, SERVER_GROUP};
use crate::model::{
    AntiAffinityTerm, GroupPolicy, Inventory, SelectorRequirement, ServerGroup, Strategy, Taint,
    TaintEffect,
};
use crate::{HOSTNAME_LABEL, MEMORY_MB, VCPU};

fn host(name: &str, vcpu: i64, vcpu_used: i64) -> Host {
    Host::new(name)
        .with_inventory(VCPU, Inventory::new(vcpu))
        .with_inventory(MEMORY_MB, Inventory::new(16384))
        .with_used(VCPU, vcpu_used)
}

fn identical(count: usize) -> Vec<Host> {
    (0..count)
        .map(|i| host(&format!("h{i}"), 4000, 0))
        .collect()
}

fn pod(vcpu: i64) -> Workload {
    Workload::pod("default", "p").with_resource(VCPU, vcpu)
}

fn vm(vcpu: i64) -> Workload {
    Workload::virtual_machine("project", "vm").with_resource(VCPU, vcpu)
}

fn pack() -> Config {
    Config {
        strategy: Strategy::Pack,
        ..Config::default()
    }
}

#[test]
fn pods_and_vms_share_one_ledger() {
    let mut hosts = vec![Host::new("shared").with_inventory(VCPU, Inventory::new(4000))];
    let config = Config::default();
    for workload in [vm(2000), pod(2000)] {
        let decision = schedule(&hosts, &workload, &config, 0).unwrap();
        assert_eq!(decision.host, "shared");
        assert_eq!(
            decision.allocation,
            BTreeMap::from([(VCPU.to_owned(), 2000)])
        );
        place(&mut hosts, &workload, &decision).unwrap();
    }
    assert_eq!(hosts[0].used[VCPU], 4000);
    assert_eq!(hosts[0].placed.len(), 2);

    let failure = schedule(&hosts, &pod(1000), &config, 0).unwrap_err();
    assert_eq!(
        failure.reasons,
        BTreeMap::from([("Insufficient VCPU".to_owned(), 1)])
    );
    assert_eq!(
        failure.pod_message(),
        "0/1 nodes are available: 1 Insufficient cpu."
    );
    let failure = schedule(&hosts, &vm(1000), &config, 0).unwrap_err();
    assert_eq!(
        failure.vm_message(),
        "No valid host was found. 0/1 hosts are available: 1 Insufficient VCPU."
    );
}

#[test]
fn spread_picks_the_emptiest_and_pack_the_fullest() {
    let hosts = [
        host("half", 4000, 2000),
        host("empty", 4000, 0),
        host("full", 4000, 3000),
        host("big", 8000, 500),
    ];
    let spread = schedule(&hosts, &pod(1000), &Config::default(), 0).unwrap();
    assert_eq!(spread.host, "big");
    let packed = schedule(&hosts, &pod(1000), &pack(), 0).unwrap();
    assert_eq!(packed.host, "full");
}

#[test]
fn prefer_no_schedule_outweighs_load() {
    let hosts = [
        host("empty-but-spot", 4000, 0).with_taint(Taint::new(
            "spot",
            "true",
            TaintEffect::PreferNoSchedule,
        )),
        host("busy", 4000, 3000),
    ];
    let decision = schedule(&hosts, &pod(500), &Config::default(), 0).unwrap();
    assert_eq!(decision.host, "busy");
}

#[test]
fn ties_go_to_the_first_host_visited_from_start() {
    let hosts = identical(5);
    for start in 0..12 {
        let decision = schedule(&hosts, &pod(100), &Config::default(), start).unwrap();
        assert_eq!(decision.host, format!("h{}", start % 5));
        // A small pool is searched whole, so the next search starts where this one did.
        assert_eq!(decision.next_start, start % 5);
    }
}

#[test]
fn feasible_hosts_to_find_follow_kube_scheduler() {
    let adaptive = Config::default();
    assert_eq!(num_feasible_to_find(0, &adaptive), 0);
    assert_eq!(num_feasible_to_find(50, &adaptive), 50);
    assert_eq!(num_feasible_to_find(99, &adaptive), 99);
    // 100 hosts at 50% would be 50, but never fewer than 100.
    assert_eq!(num_feasible_to_find(100, &adaptive), 100);
    // 50 - 1000/125 = 42%.
    assert_eq!(num_feasible_to_find(1000, &adaptive), 420);
    // 50 - 5000/125 = 10%.
    assert_eq!(num_feasible_to_find(5000, &adaptive), 500);
    // The adaptive percentage bottoms out at 5%.
    assert_eq!(num_feasible_to_find(20_000, &adaptive), 1000);

    let fixed = |percentage| Config {
        percentage_of_hosts_to_score: Some(percentage),
        ..Config::default()
    };
    assert_eq!(num_feasible_to_find(1000, &fixed(20)), 200);
    assert_eq!(num_feasible_to_find(1000, &fixed(5)), 100);
    assert_eq!(num_feasible_to_find(1000, &fixed(100)), 1000);
    assert_eq!(num_feasible_to_find(1000, &fixed(250)), 1000);
    assert_eq!(num_feasible_to_find(1000, &fixed(0)), 420);

    let eager = Config {
        min_feasible_to_find: 0,
        percentage_of_hosts_to_score: Some(1),
        ..Config::default()
    };
    assert_eq!(num_feasible_to_find(10, &eager), 1);
}

fn sampling(min_feasible_to_find: usize, percentage: u32) -> Config {
    Config {
        min_feasible_to_find,
        percentage_of_hosts_to_score: Some(percentage),
        ..Config::default()
    }
}

#[test]
fn large_pools_are_sampled_and_the_search_rotates() {
    let hosts = identical(200);
    // 5% of 200 = 10 feasible hosts to find.
    let config = sampling(10, 5);
    let first = schedule(&hosts, &pod(100), &config, 0).unwrap();
    assert_eq!((first.host.as_str(), first.next_start), ("h0", 10));
    let second = schedule(&hosts, &pod(100), &config, first.next_start).unwrap();
    assert_eq!((second.host.as_str(), second.next_start), ("h10", 20));
    // Wrapping round the end of the pool.
    let wrapped = schedule(&hosts, &pod(100), &config, 395).unwrap();
    assert_eq!((wrapped.host.as_str(), wrapped.next_start), ("h195", 5));
}

#[test]
fn only_sampled_hosts_compete() {
    let mut hosts = identical(200);
    for host in &mut hosts[..10] {
        host.used.insert(VCPU.to_owned(), 3000);
    }
    hosts[150].used.insert(VCPU.to_owned(), 0);
    hosts[5].used.insert(VCPU.to_owned(), 1000);
    let decision = schedule(&hosts, &pod(100), &sampling(10, 5), 0).unwrap();
    // The emptiest among the first ten visited, not any of the emptier hosts beyond.
    assert_eq!(decision.host, "h5");
}

#[test]
fn rejected_hosts_are_visited_but_not_counted_as_found() {
    let mut hosts = identical(200);
    for host in &mut hosts[..30] {
        host.ready = false;
    }
    let decision = schedule(&hosts, &pod(100), &sampling(10, 5), 0).unwrap();
    assert_eq!((decision.host.as_str(), decision.next_start), ("h30", 40));
}

#[test]
fn failures_count_every_host_once_by_its_first_reason() {
    let mut hosts = vec![
        host("small", 1000, 0),
        host("tainted", 4000, 0).with_taint(Taint::new(
            "dedicated",
            "gpu",
            TaintEffect::NoSchedule,
        )),
        host("tainted-and-small", 1000, 0).with_taint(Taint::new(
            "dedicated",
            "gpu",
            TaintEffect::NoSchedule,
        )),
        host("busy", 4000, 3500),
        host("down", 4000, 0),
    ];
    hosts[4].ready = false;
    let failure = schedule(&hosts, &pod(2000), &sampling(1, 1), 3).unwrap_err();
    assert_eq!(failure.hosts, 5);
    assert_eq!(
        failure.pod_message(),
        "0/5 nodes are available: 1 node(s) were not ready, 2 Insufficient cpu, 2 node(s) had untolerated taint {dedicated: gpu}."
    );
}

#[test]
fn empty_pools_are_unschedulable() {
    let failure = schedule(&[], &pod(1), &Config::default(), 7).unwrap_err();
    assert_eq!(failure.hosts, 0);
    assert!(failure.reasons.is_empty());
}

#[test]
fn allocation_leaves_out_zero_requests() {
    let hosts = identical(1);
    let workload = pod(500).with_resource(MEMORY_MB, 0);
    let decision = schedule(&hosts, &workload, &Config::default(), 0).unwrap();
    assert_eq!(
        decision.allocation,
        BTreeMap::from([(VCPU.to_owned(), 500)])
    );
}

#[test]
fn place_rejects_unknown_hosts() {
    let mut hosts = identical(2);
    let decision = Decision {
        host: "elsewhere".to_owned(),
        allocation: BTreeMap::new(),
        next_start: 0,
    };
    assert_eq!(
        place(&mut hosts, &pod(1), &decision),
        Err(UnknownHost {
            host: "elsewhere".to_owned()
        })
    );
    assert!(hosts.iter().all(|host| host.placed.is_empty()));
}

/// Schedules `workloads` one after another, placing each, and returns the chosen hosts.
fn batch(
    hosts: &mut [Host],
    workloads: &[Workload],
    config: &Config,
) -> Vec<Result<String, String>> {
    let mut start = 0;
    workloads
        .iter()
        .map(|workload| match schedule(hosts, workload, config, start) {
            Ok(decision) => {
                start = decision.next_start;
                place(hosts, workload, &decision).unwrap();
                Ok(decision.host)
            }
            Err(failure) => Err(failure.message(workload.kind)),
        })
        .collect()
}

#[test]
fn spread_fills_hosts_evenly_and_pack_fills_one_first() {
    let pods = vec![pod(1000); 4];
    let mut hosts = identical(4);
    let spread = batch(&mut hosts, &pods, &Config::default());
    assert_eq!(spread, ["h0", "h1", "h2", "h3"].map(|h| Ok(h.to_owned())));
    let mut hosts = identical(4);
    let packed = batch(&mut hosts, &pods, &pack());
    assert_eq!(packed, ["h0"; 4].map(|h| Ok(h.to_owned())));
}

fn group_member(policy: GroupPolicy) -> Workload {
    vm(1000).with_server_group(ServerGroup {
        key: "project/g".to_owned(),
        policy,
        max_server_per_host: None,
    })
}

#[test]
fn server_groups_in_a_batch() {
    let mut hosts = identical(3);
    let together = batch(
        &mut hosts,
        &vec![group_member(GroupPolicy::Affinity); 4],
        &Config::default(),
    );
    assert_eq!(together, ["h0"; 4].map(|h| Ok(h.to_owned())));

    let mut hosts = identical(3);
    let apart = batch(
        &mut hosts,
        &vec![group_member(GroupPolicy::AntiAffinity); 4],
        &pack(),
    );
    assert_eq!(apart[..3], ["h0", "h1", "h2"].map(|h| Ok(h.to_owned())));
    assert_eq!(
        apart[3],
        Err(format!(
            "No valid host was found. 0/3 hosts are available: 3 {SERVER_GROUP}."
        ))
    );

    // Soft affinity prefers the members' host over an emptier one; soft anti-affinity the
    // reverse, even when packing.
    let mut hosts = identical(3);
    let soft = batch(
        &mut hosts,
        &vec![group_member(GroupPolicy::SoftAffinity); 4],
        &Config::default(),
    );
    assert_eq!(soft, ["h0"; 4].map(|h| Ok(h.to_owned())));
    let mut hosts = identical(3);
    let soft = batch(
        &mut hosts,
        &vec![group_member(GroupPolicy::SoftAntiAffinity); 4],
        &pack(),
    );
    assert_eq!(soft, ["h0", "h1", "h2", "h0"].map(|h| Ok(h.to_owned())));
}

#[test]
fn pod_anti_affinity_in_a_batch() {
    let replica = pod(100)
        .with_label("app", "db")
        .with_anti_affinity(AntiAffinityTerm {
            selector: vec![SelectorRequirement::equals("app", "db")],
            namespaces: Vec::new(),
            topology_key: HOSTNAME_LABEL.to_owned(),
        });
    let mut hosts = identical(2);
    let placed = batch(&mut hosts, &vec![replica; 3], &pack());
    assert_eq!(placed[..2], ["h0", "h1"].map(|h| Ok(h.to_owned())));
    assert_eq!(
        placed[2],
        Err(format!("0/2 nodes are available: 2 {POD_ANTI_AFFINITY}."))
    );
}
