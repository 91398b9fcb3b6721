//! Property tests: random pools and random workloads scheduled one after another against
//! an evolving snapshot. Every decision is checked by an oracle written independently of
//! the filters (capacity, traits, zones, selectors, taints, anti-affinity, server groups),
//! and `schedule` must be deterministic, must only fail when no host fits, and must agree
//! with `Snapshot::schedule`.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::sample::subsequence;
use ronghe_scheduler::{
    AntiAffinityTerm, Config, DISK_GB, GroupPolicy, HOSTNAME_LABEL, Host, Inventory, MEMORY_MB,
    NodeSelectorTerm, Placed, SelectorOperator, SelectorRequirement, ServerGroup, Snapshot, Taint,
    TaintEffect, Toleration, VCPU, Workload, WorkloadKind, ZONE_LABEL, place, rejections, schedule,
};

const CLASSES: [&str; 4] = [VCPU, MEMORY_MB, DISK_GB, "VGPU"];
const TRAITS: [&str; 3] = ["HW_CPU_X86_AVX2", "STORAGE_DISK_SSD", "CUSTOM_GPU"];
const APPS: [&str; 3] = ["web", "db", "cache"];
const NAMESPACES: [&str; 2] = ["alpha", "beta"];

/// The server groups workloads may join; a key always comes with the same policy.
fn groups() -> Vec<Option<ServerGroup>> {
    let group = |name: &str, policy, max_server_per_host| {
        Some(ServerGroup {
            key: format!("alpha/{name}"),
            policy,
            max_server_per_host,
        })
    };
    vec![
        None,
        None,
        None,
        group("apart", GroupPolicy::AntiAffinity, None),
        group("apart-by-two", GroupPolicy::AntiAffinity, Some(2)),
        group("together", GroupPolicy::Affinity, None),
        group("rather-together", GroupPolicy::SoftAffinity, None),
        group("rather-apart", GroupPolicy::SoftAntiAffinity, None),
    ]
}

fn taints() -> Vec<Taint> {
    vec![
        Taint::new("dedicated", "gpu", TaintEffect::NoSchedule),
        Taint::new("maintenance", "", TaintEffect::NoExecute),
        Taint::new("spot", "true", TaintEffect::PreferNoSchedule),
    ]
}

fn inventory_strategy(class: &'static str) -> impl Strategy<Value = (Inventory, i64)> {
    let scale: i64 = if class == VCPU { 1000 } else { 1 };
    (
        prop_oneof![1 => 0i64..=4, 4 => 4i64..=32],
        prop_oneof![3 => Just(0i64), 1 => 1i64..=4],
        prop::sample::select(vec![0.5, 1.0, 1.5, 4.0]),
        prop::sample::select(vec![1i64, 2, 4]),
        prop::sample::select(vec![1i64, 2]),
        prop::bool::weighted(0.2),
        prop_oneof![1 => Just(1.0), 3 => 0.0f64..=0.8],
    )
        .prop_map(move |(total, reserved, ratio, min, step, capped, fill)| {
            let mut inventory = Inventory::new(total * scale)
                .with_reserved(reserved * scale)
                .with_allocation_ratio(ratio)
                .with_min_unit(min * scale / 2)
                .with_step_size(step * scale / 2);
            if capped {
                inventory.max_unit = total * scale / 2;
            }
            // Start within capacity: the property is that scheduling never goes over.
            let used = (inventory.capacity().max(0) as f64 * fill).floor() as i64;
            (inventory, used)
        })
}

fn placed_strategy() -> impl Strategy<Value = Placed> {
    (
        prop::sample::select(NAMESPACES.to_vec()),
        prop::sample::select(APPS.to_vec()),
        prop::sample::select(groups()),
    )
        .prop_map(|(namespace, app, group)| Placed {
            namespace: namespace.to_owned(),
            labels: BTreeMap::from([("app".to_owned(), app.to_owned())]),
            server_group: group.map(|group| group.key),
        })
}

fn host_strategy() -> impl Strategy<Value = Host> {
    let inventories = CLASSES.map(|class| prop::option::weighted(0.8, inventory_strategy(class)));
    (
        inventories,
        subsequence(TRAITS.to_vec(), 0..=TRAITS.len()),
        prop::option::of(prop::sample::select(vec!["az1", "az2", "az3"])),
        prop::sample::select(vec!["ssd", "hdd"]),
        prop_oneof![2 => Just(Vec::new()), 1 => subsequence(taints(), 1..=2)],
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.1),
        prop::collection::vec(placed_strategy(), 0..3),
    )
        .prop_map(
            |(inventories, traits, zone, disk, taints, ready, unschedulable, placed)| {
                let mut host = Host::new("unnamed").with_label("disk", disk);
                for (class, inventory) in CLASSES.iter().zip(inventories) {
                    if let Some((inventory, used)) = inventory {
                        host = host
                            .with_inventory(*class, inventory)
                            .with_used(*class, used);
                    }
                }
                host.traits = traits.into_iter().map(str::to_owned).collect();
                if let Some(zone) = zone {
                    host = host.with_zone(zone);
                }
                host.taints = taints;
                host.ready = ready;
                host.unschedulable = unschedulable;
                host.placed = placed;
                host
            },
        )
}

fn pool_strategy() -> impl Strategy<Value = Vec<Host>> {
    prop::collection::vec(host_strategy(), 1..40).prop_map(|hosts| {
        hosts
            .into_iter()
            .enumerate()
            .map(|(index, mut host)| {
                host.name = format!("host-{index}");
                host.labels
                    .insert(HOSTNAME_LABEL.to_owned(), host.name.clone());
                host
            })
            .collect()
    })
}

fn workload_strategy() -> impl Strategy<Value = Workload> {
    let requests = CLASSES.map(|class| {
        let scale: i64 = if class == VCPU { 500 } else { 1 };
        let amount = prop_oneof![1 => -1i64..=0, 8 => 1i64..=4, 1 => 5i64..=16];
        prop::option::weighted(0.4, amount.prop_map(move |amount| amount * scale))
    });
    let tolerations = vec![
        Toleration::equal("dedicated", "gpu", None),
        Toleration::exists("maintenance", Some(TaintEffect::NoExecute)),
        Toleration::exists("spot", None),
        Toleration::exists("", None),
    ];
    let anti_affinity = (
        prop::sample::select(APPS.to_vec()),
        subsequence(NAMESPACES.to_vec(), 0..=2),
        prop::sample::select(vec![HOSTNAME_LABEL, ZONE_LABEL]),
    )
        .prop_map(|(app, namespaces, topology_key)| AntiAffinityTerm {
            selector: vec![SelectorRequirement::equals("app", app)],
            namespaces: namespaces.into_iter().map(str::to_owned).collect(),
            topology_key: topology_key.to_owned(),
        });
    let node_affinity = prop::sample::select(vec![
        SelectorRequirement::new("disk", SelectorOperator::In, ["ssd"]),
        SelectorRequirement::new(ZONE_LABEL, SelectorOperator::NotIn, ["az1"]),
        SelectorRequirement::new(ZONE_LABEL, SelectorOperator::Exists, [""; 0]),
    ]);
    (
        (
            any::<bool>(),
            prop::sample::select(NAMESPACES.to_vec()),
            prop::sample::select(APPS.to_vec()),
            requests,
        ),
        (
            prop::option::weighted(0.25, prop::sample::select(TRAITS.to_vec())),
            prop::option::weighted(0.25, prop::sample::select(TRAITS.to_vec())),
            prop::option::weighted(0.2, prop::sample::select(vec!["ssd", "hdd"])),
            prop::option::weighted(0.2, node_affinity),
        ),
        (
            subsequence(tolerations, 0..=2),
            prop::option::weighted(0.4, anti_affinity),
            prop::sample::select(groups()),
            prop::option::weighted(0.2, prop::sample::select(vec!["az1", "az2"])),
        ),
    )
        .prop_map(
            |(
                (is_pod, namespace, app, requests),
                (required, forbidden, disk, affinity),
                (tolerations, anti_affinity, group, zone),
            )| {
                let kind = if is_pod {
                    WorkloadKind::Pod
                } else {
                    WorkloadKind::VirtualMachine
                };
                let mut workload = Workload::new(kind, namespace, "w").with_label("app", app);
                for (class, amount) in CLASSES.iter().zip(requests) {
                    if let Some(amount) = amount {
                        workload = workload.with_resource(*class, amount);
                    }
                }
                workload.required_traits = required.into_iter().map(str::to_owned).collect();
                workload.forbidden_traits = forbidden
                    .into_iter()
                    .filter(|name| !workload.required_traits.contains(*name))
                    .map(str::to_owned)
                    .collect();
                if let Some(disk) = disk {
                    workload = workload.with_node_selector("disk", disk);
                }
                if let Some(requirement) = affinity {
                    workload = workload.with_required_affinity(NodeSelectorTerm {
                        match_expressions: vec![requirement],
                    });
                }
                workload.tolerations = tolerations;
                workload.anti_affinity = anti_affinity.into_iter().collect();
                workload.server_group = group;
                workload.zone = zone.map(str::to_owned);
                workload
            },
        )
}

fn config_strategy() -> impl Strategy<Value = Config> {
    (any::<bool>(), 1usize..=20, prop::option::of(1u32..=100)).prop_map(
        |(pack, min_feasible_to_find, percentage)| Config {
            strategy: if pack {
                ronghe_scheduler::Strategy::Pack
            } else {
                ronghe_scheduler::Strategy::Spread
            },
            min_feasible_to_find,
            percentage_of_hosts_to_score: percentage,
        },
    )
}

/// Placement's capacity, computed here from the documented formula.
fn capacity(inventory: &Inventory) -> i64 {
    ((inventory.total - inventory.reserved) as f64 * inventory.allocation_ratio).floor() as i64
}

/// Whether `placed` is selected by `term` of `workload`.
fn selected(workload: &Workload, term: &AntiAffinityTerm, placed: &Placed) -> bool {
    let namespaces: Vec<&str> = if term.namespaces.is_empty() {
        vec![workload.namespace.as_str()]
    } else {
        term.namespaces.iter().map(String::as_str).collect()
    };
    namespaces.contains(&placed.namespace.as_str())
        && term.selector.iter().all(|requirement| {
            // The generated selectors are all `app In [x]`.
            placed.labels.get(&requirement.key) == requirement.values.first()
        })
}

/// An oracle for "`host` may take `workload`", independent of the crate's filters. Returns
/// what it found wrong.
fn oracle(hosts: &[Host], index: usize, workload: &Workload) -> Result<(), String> {
    let host = &hosts[index];
    let cordon_tolerated = workload.tolerations.iter().any(|toleration| {
        toleration.tolerates(&Taint::new(
            "node.kubernetes.io/unschedulable",
            "",
            TaintEffect::NoSchedule,
        ))
    });
    if !host.ready || (host.unschedulable && !cordon_tolerated) {
        return Err("not ready or cordoned".into());
    }
    for taint in &host.taints {
        let blocks = taint.effect != TaintEffect::PreferNoSchedule;
        if blocks && !workload.tolerations.iter().any(|t| t.tolerates(taint)) {
            return Err(format!("untolerated {taint:?}"));
        }
    }
    for (key, value) in &workload.node_selector {
        if host.labels.get(key) != Some(value) {
            return Err(format!("selector {key}={value}"));
        }
    }
    for term in &workload.required_affinity {
        for requirement in &term.match_expressions {
            let label = host.labels.get(&requirement.key);
            let ok = match requirement.operator {
                SelectorOperator::In => label.is_some_and(|l| requirement.values.contains(l)),
                SelectorOperator::NotIn => !label.is_some_and(|l| requirement.values.contains(l)),
                SelectorOperator::Exists => label.is_some(),
                _ => unreachable!("not generated"),
            };
            if !ok {
                return Err(format!("affinity {requirement:?}"));
            }
        }
    }
    if workload.zone.is_some() && host.zone != workload.zone {
        return Err("zone".into());
    }
    if !workload.required_traits.is_subset(&host.traits)
        || !workload.forbidden_traits.is_disjoint(&host.traits)
    {
        return Err("traits".into());
    }
    for (class, amount) in &workload.resources {
        if *amount == 0 {
            continue;
        }
        let Some(inventory) = host.inventories.get(class) else {
            return Err(format!("no {class}"));
        };
        let used = host.used.get(class).copied().unwrap_or(0);
        let ok = *amount >= inventory.min_unit.max(1)
            && *amount <= inventory.max_unit
            && *amount % inventory.step_size.max(1) == 0
            && used + amount <= capacity(inventory);
        if !ok {
            return Err(format!("{class}: {amount} on {used} of {inventory:?}"));
        }
    }
    for term in &workload.anti_affinity {
        let conflict = if term.topology_key == HOSTNAME_LABEL {
            host.placed.iter().any(|p| selected(workload, term, p))
        } else {
            host.labels.get(&term.topology_key).is_some_and(|domain| {
                hosts.iter().any(|other| {
                    other.labels.get(&term.topology_key) == Some(domain)
                        && other.placed.iter().any(|p| selected(workload, term, p))
                })
            })
        };
        if conflict {
            return Err(format!("anti-affinity {term:?}"));
        }
    }
    if let Some(group) = &workload.server_group {
        let members = |host: &Host| {
            host.placed
                .iter()
                .filter(|p| p.server_group.as_deref() == Some(group.key.as_str()))
                .count()
        };
        let ok = match group.policy {
            GroupPolicy::Affinity => {
                members(host) > 0 || hosts.iter().all(|other| members(other) == 0)
            }
            GroupPolicy::AntiAffinity => {
                members(host) < group.max_server_per_host.unwrap_or(1).max(1) as usize
            }
            GroupPolicy::SoftAffinity | GroupPolicy::SoftAntiAffinity => true,
        };
        if !ok {
            return Err(format!("server group {group:?}"));
        }
    }
    Ok(())
}

fn assert_within_capacity(hosts: &[Host]) -> Result<(), TestCaseError> {
    for host in hosts {
        for (class, used) in &host.used {
            let inventory = host.inventories.get(class);
            prop_assert!(
                inventory.is_some(),
                "{} charged {class} it has no inventory of",
                host.name
            );
            // Reserving more than the total leaves no capacity (not a negative one to owe).
            let capacity = inventory.map(capacity).unwrap_or(0).max(0);
            prop_assert!(
                *used <= capacity,
                "{} uses {used} of {capacity} {class}",
                host.name
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn batches_never_break_a_filter_or_overcommit(
        mut hosts in pool_strategy(),
        workloads in prop::collection::vec(workload_strategy(), 1..30),
        config in config_strategy(),
        mut start in 0usize..100,
    ) {
        let mut snapshot = Snapshot::new(hosts.clone());
        for (step, workload) in workloads.iter().enumerate() {
            // Now and then a host changes under the snapshot: readiness, a new workload.
            if step % 4 == 3 {
                let index = step % hosts.len();
                let change = |host: &mut Host| {
                    host.ready = !host.ready;
                    host.placed.push(Placed::of(workload));
                };
                change(&mut hosts[index]);
                snapshot.update(index, change).expect("the host is in the pool");
            }
            // The filters and the oracle agree on every host.
            let why_not = rejections(&hosts, workload);
            for (index, reason) in why_not.iter().enumerate() {
                prop_assert_eq!(
                    reason.is_none(),
                    oracle(&hosts, index, workload).is_ok(),
                    "{}: {:?}", hosts[index].name, reason
                );
            }
            let outcome = schedule(&hosts, workload, &config, start);
            // Deterministic: the same snapshot gives the same answer, and so does a Snapshot.
            prop_assert_eq!(&outcome, &schedule(&hosts.clone(), workload, &config, start));
            prop_assert_eq!(&outcome, &snapshot.schedule(workload, &config, start));
            match outcome {
                Ok(decision) => {
                    let index = hosts
                        .iter()
                        .position(|host| host.name == decision.host)
                        .expect("the decision names a host of the pool");
                    prop_assert_eq!(&why_not[index], &None);
                    if let Err(broken) = oracle(&hosts, index, workload) {
                        return Err(TestCaseError::fail(format!("{} broke {broken}", decision.host)));
                    }
                    prop_assert_eq!(&decision.allocation, &workload.allocation());
                    prop_assert!(decision.next_start < hosts.len());
                    start = decision.next_start;
                    place(&mut hosts, workload, &decision).expect("the host is in the pool");
                    snapshot.place(workload, &decision).expect("the host is in the pool");
                    prop_assert_eq!(snapshot.hosts(), hosts.as_slice());
                    assert_within_capacity(&hosts)?;
                }
                Err(failure) => {
                    // Fails only when no host fits, and then counts every host once.
                    prop_assert!(why_not.iter().all(Option::is_some));
                    for (index, _) in hosts.iter().enumerate() {
                        prop_assert!(oracle(&hosts, index, workload).is_err());
                    }
                    prop_assert_eq!(failure.hosts, hosts.len());
                    prop_assert_eq!(failure.reasons.values().sum::<usize>(), hosts.len());
                    let mut counted: BTreeMap<String, usize> = BTreeMap::new();
                    for reason in why_not.into_iter().flatten() {
                        *counted.entry(reason).or_insert(0) += 1;
                    }
                    prop_assert_eq!(&failure.reasons, &counted);
                }
            }
        }
    }

    #[test]
    fn anti_affinity_spreads_replicas_across_hosts_and_zones(
        mut hosts in pool_strategy(),
        replicas in 1usize..12,
        by_zone in any::<bool>(),
        config in config_strategy(),
    ) {
        let topology_key = if by_zone { ZONE_LABEL } else { HOSTNAME_LABEL };
        let replica = Workload::pod("beta", "replica")
            .with_label("app", "replica")
            .with_toleration(Toleration::exists("", None))
            .with_anti_affinity(AntiAffinityTerm {
                selector: vec![SelectorRequirement::equals("app", "replica")],
                namespaces: Vec::new(),
                topology_key: topology_key.to_owned(),
            });
        let mut domains = BTreeSet::new();
        let mut start = 0;
        for _ in 0..replicas {
            let Ok(decision) = schedule(&hosts, &replica, &config, start) else { break };
            start = decision.next_start;
            let host = hosts.iter().find(|host| host.name == decision.host).expect("in the pool");
            let domain = host.labels.get(topology_key).cloned();
            if let Some(domain) = domain {
                prop_assert!(domains.insert(domain.clone()), "two replicas in {domain}");
            }
            place(&mut hosts, &replica, &decision).expect("in the pool");
        }
    }

    #[test]
    fn server_group_anti_affinity_caps_members_per_host(
        mut hosts in pool_strategy(),
        members in 1usize..20,
        max_server_per_host in 1u32..3,
        config in config_strategy(),
    ) {
        let member = Workload::virtual_machine("alpha", "member")
            .with_resource(VCPU, 500)
            .with_toleration(Toleration::exists("", None))
            .with_server_group(ServerGroup {
                key: "alpha/fresh".to_owned(),
                policy: GroupPolicy::AntiAffinity,
                max_server_per_host: Some(max_server_per_host),
            });
        let mut start = 0;
        for _ in 0..members {
            let Ok(decision) = schedule(&hosts, &member, &config, start) else { break };
            start = decision.next_start;
            place(&mut hosts, &member, &decision).expect("in the pool");
        }
        for host in &hosts {
            let on_host = host
                .placed
                .iter()
                .filter(|p| p.server_group.as_deref() == Some("alpha/fresh"))
                .count();
            prop_assert!(on_host <= max_server_per_host as usize);
        }
    }
}
