//! Prints rough per-decision times for pools of 1,000 and 5,000 hosts: a batch of mixed pods
//! and VMs scheduled one after another against an evolving pool, plus the costlier shapes
//! (anti-affinity by host and by zone, server groups), through `schedule` over a slice and
//! through a `Snapshot`. A measurement to read, not a test: nothing here asserts a time.
//!
//! `cargo run --release -p ronghe-scheduler --example schedule_timing [shape]`

use std::hint::black_box;
use std::time::Instant;

use ronghe_scheduler::{
    AntiAffinityTerm, Config, DISK_GB, GroupPolicy, HOSTNAME_LABEL, Host, Inventory, MEMORY_MB,
    Placed, SelectorRequirement, ServerGroup, Snapshot, Taint, TaintEffect, VCPU, Workload,
    ZONE_LABEL, place, schedule,
};

/// A pool like a real one: three zones, a few tainted GPU hosts, and twenty workloads
/// already on every host.
fn pool(hosts: usize) -> Vec<Host> {
    (0..hosts)
        .map(|index| {
            let mut host = Host::new(format!("compute-{index:05}"))
                .with_zone(format!("az{}", index % 3))
                .with_label("node.kubernetes.io/instance-type", "m6.16xlarge")
                .with_trait("HW_CPU_X86_AVX2")
                .with_inventory(
                    VCPU,
                    Inventory::new(64_000)
                        .with_allocation_ratio(4.0)
                        .with_max_unit(64_000),
                )
                .with_inventory(MEMORY_MB, Inventory::new(262_144).with_reserved(4096))
                .with_inventory(DISK_GB, Inventory::new(2000));
            if index % 20 == 0 {
                host = host
                    .with_taint(Taint::new("dedicated", "gpu", TaintEffect::NoSchedule))
                    .with_inventory("VGPU", Inventory::new(4));
            }
            for slot in 0..20 {
                host.placed.push(Placed {
                    namespace: format!("tenant-{}", (index + slot) % 50),
                    labels: [(
                        "app".to_owned(),
                        format!("app-{}", (index * 7 + slot) % 400),
                    )]
                    .into(),
                    server_group: None,
                });
            }
            host
        })
        .collect()
}

fn pod(index: usize) -> Workload {
    Workload::pod(format!("tenant-{}", index % 50), format!("pod-{index}"))
        .with_label("app", format!("app-{}", index % 400))
        .with_resource(VCPU, 500)
        .with_resource(MEMORY_MB, 1024)
}

fn vm(index: usize) -> Workload {
    Workload::virtual_machine(format!("tenant-{}", index % 50), format!("vm-{index}"))
        .with_resource(VCPU, 2000)
        .with_resource(MEMORY_MB, 4096)
        .with_resource(DISK_GB, 40)
        .with_required_trait("HW_CPU_X86_AVX2")
}

fn mixed(index: usize) -> Workload {
    if index.is_multiple_of(2) {
        pod(index)
    } else {
        vm(index)
    }
}

fn anti_affinity(index: usize, topology_key: &str) -> Workload {
    let app = format!("app-{}", index % 400);
    pod(index).with_anti_affinity(AntiAffinityTerm {
        selector: vec![SelectorRequirement::equals("app", app)],
        namespaces: Vec::new(),
        topology_key: topology_key.to_owned(),
    })
}

fn server_group(index: usize) -> Workload {
    vm(index).with_server_group(ServerGroup {
        key: format!("tenant-{}/group-{}", index % 50, index % 10),
        policy: GroupPolicy::AntiAffinity,
        max_server_per_host: Some(2),
    })
}

/// Schedules `decisions` workloads from `workload` one after another, placing each, with
/// both entry points; prints microseconds per decision for scheduling alone and with
/// placing.
fn measure(label: &str, hosts: usize, decisions: usize, workload: fn(usize) -> Workload) {
    let config = Config::default();
    let workloads: Vec<Workload> = (0..decisions).map(workload).collect();
    let per = |seconds: f64| seconds * 1e6 / decisions as f64;

    let mut pool = pool(hosts);
    let (mut scheduling, mut failures, mut start) = (0.0, 0, 0);
    let begun = Instant::now();
    for workload in &workloads {
        let timed = Instant::now();
        let outcome = black_box(schedule(black_box(&pool), workload, &config, start));
        scheduling += timed.elapsed().as_secs_f64();
        match outcome {
            Ok(decision) => {
                start = decision.next_start;
                place(&mut pool, workload, &decision).expect("the decision names a pooled host");
            }
            Err(_) => failures += 1,
        }
    }
    let total = begun.elapsed().as_secs_f64();

    let mut snapshot = Snapshot::new(self::pool(hosts));
    let (mut snapshot_scheduling, mut start) = (0.0, 0);
    let begun = Instant::now();
    for workload in &workloads {
        let timed = Instant::now();
        let outcome = black_box(black_box(&snapshot).schedule(workload, &config, start));
        snapshot_scheduling += timed.elapsed().as_secs_f64();
        if let Ok(decision) = outcome {
            start = decision.next_start;
            snapshot
                .place(workload, &decision)
                .expect("the decision names a pooled host");
        }
    }
    let snapshot_total = begun.elapsed().as_secs_f64();

    println!(
        "{hosts:>5} hosts  {label:<27} schedule {:>7.1} µs ({:>7.1} with place)  \
         Snapshot {:>7.1} µs ({:>7.1} with place)  {failures} unschedulable",
        per(scheduling),
        per(total),
        per(snapshot_scheduling),
        per(snapshot_total),
    );
}

/// A kind of batch: its label, how many decisions, and the workload of each.
type Shape = (&'static str, usize, fn(usize) -> Workload);

fn main() {
    // An optional argument keeps only the shapes whose label contains it (for profiling).
    let only = std::env::args().nth(1).unwrap_or_default();
    let shapes: [Shape; 4] = [
        ("mixed pods and VMs", 5000, mixed),
        ("pod anti-affinity by host", 2000, |i| {
            anti_affinity(i, HOSTNAME_LABEL)
        }),
        ("pod anti-affinity by zone", 500, |i| {
            anti_affinity(i, ZONE_LABEL)
        }),
        ("server group anti-affinity", 2000, server_group),
    ];
    for hosts in [1000, 5000] {
        for (label, decisions, workload) in shapes {
            if label.contains(only.as_str()) {
                measure(label, hosts, decisions, workload);
            }
        }
    }
}
