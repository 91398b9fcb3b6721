//! Tests of each filter, through `rejections`.

use super::*;
use crate::model::{
    AntiAffinityTerm, GroupPolicy, Inventory, NodeSelectorTerm, Placed, SelectorOperator,
    SelectorRequirement, ServerGroup, Toleration,
};
use crate::{HOSTNAME_LABEL, VCPU, ZONE_LABEL};

fn host(name: &str) -> Host {
    Host::new(name).with_inventory(VCPU, Inventory::new(4000))
}

fn pod() -> Workload {
    Workload::pod("default", "web").with_resource(VCPU, 500)
}

/// The reason `workload` gets on each host.
fn reasons(hosts: &[Host], workload: &Workload) -> Vec<Option<String>> {
    rejections(hosts, workload)
}

fn only(hosts: &[Host], workload: &Workload) -> Option<String> {
    let mut all = reasons(hosts, workload);
    assert_eq!(all.len(), 1);
    all.remove(0)
}

#[test]
fn not_ready_comes_before_everything_else() {
    let mut host = host("h").with_taint(Taint::new("a", "b", TaintEffect::NoSchedule));
    host.ready = false;
    host.unschedulable = true;
    assert_eq!(only(&[host], &pod()).as_deref(), Some(NOT_READY));
}

#[test]
fn cordoned_hosts_take_only_workloads_that_tolerate_the_cordon() {
    let mut host = host("h");
    host.unschedulable = true;
    let hosts = [host];
    assert_eq!(only(&hosts, &pod()).as_deref(), Some(UNSCHEDULABLE));
    let daemon = pod().with_toleration(Toleration::exists(
        UNSCHEDULABLE_TAINT_KEY,
        Some(TaintEffect::NoSchedule),
    ));
    assert_eq!(only(&hosts, &daemon), None);
}

#[test]
fn untolerated_hard_taints_reject_and_soft_ones_do_not() {
    let hosts = [
        host("gpu").with_taint(Taint::new("dedicated", "gpu", TaintEffect::NoSchedule)),
        host("evict").with_taint(Taint::new("maintenance", "", TaintEffect::NoExecute)),
        host("soft").with_taint(Taint::new("spot", "true", TaintEffect::PreferNoSchedule)),
    ];
    assert_eq!(
        reasons(&hosts, &pod()),
        [
            Some("node(s) had untolerated taint {dedicated: gpu}".to_owned()),
            Some("node(s) had untolerated taint {maintenance: }".to_owned()),
            None,
        ]
    );
    let tolerant = pod()
        .with_toleration(Toleration::equal("dedicated", "gpu", None))
        .with_toleration(Toleration::exists(
            "maintenance",
            Some(TaintEffect::NoExecute),
        ));
    assert_eq!(reasons(&hosts, &tolerant), [None, None, None]);
}

#[test]
fn node_selector_and_required_affinity() {
    let hosts = [
        host("ssd")
            .with_label("disk", "ssd")
            .with_label("cores", "32"),
        host("hdd")
            .with_label("disk", "hdd")
            .with_label("cores", "8"),
    ];
    let selected = pod().with_node_selector("disk", "ssd");
    assert_eq!(
        reasons(&hosts, &selected),
        [None, Some(NODE_AFFINITY.to_owned())]
    );

    let big = pod().with_required_affinity(NodeSelectorTerm {
        match_expressions: vec![SelectorRequirement::new(
            "cores",
            SelectorOperator::Gt,
            ["16"],
        )],
    });
    assert_eq!(
        reasons(&hosts, &big),
        [None, Some(NODE_AFFINITY.to_owned())]
    );

    // Terms are ORed; requirements within one are ANDed.
    let either = pod()
        .with_required_affinity(NodeSelectorTerm {
            match_expressions: vec![
                SelectorRequirement::equals("disk", "ssd"),
                SelectorRequirement::equals("cores", "8"),
            ],
        })
        .with_required_affinity(NodeSelectorTerm {
            match_expressions: vec![SelectorRequirement::equals("disk", "hdd")],
        });
    assert_eq!(
        reasons(&hosts, &either),
        [Some(NODE_AFFINITY.to_owned()), None]
    );

    // Both the selector and the affinity must hold.
    let both = selected.with_required_affinity(NodeSelectorTerm {
        match_expressions: vec![SelectorRequirement::equals("disk", "hdd")],
    });
    assert_eq!(
        reasons(&hosts, &both),
        vec![Some(NODE_AFFINITY.to_owned()); 2]
    );
}

#[test]
fn availability_zone() {
    let hosts = [
        host("a").with_zone("az1"),
        host("b").with_zone("az2"),
        host("c"),
    ];
    let workload = pod().with_zone("az1");
    let wrong = Some("node(s) were not in availability zone az1".to_owned());
    assert_eq!(reasons(&hosts, &workload), [None, wrong.clone(), wrong]);
    assert_eq!(reasons(&hosts, &pod()), [None, None, None]);
}

#[test]
fn traits_required_and_forbidden() {
    let hosts = [
        host("plain"),
        host("avx").with_trait("HW_CPU_X86_AVX2"),
        host("both")
            .with_trait("HW_CPU_X86_AVX2")
            .with_trait("CUSTOM_SLOW"),
    ];
    let workload = pod()
        .with_required_trait("HW_CPU_X86_AVX2")
        .with_forbidden_trait("CUSTOM_SLOW");
    assert_eq!(
        reasons(&hosts, &workload),
        [
            Some("node(s) lacked required trait HW_CPU_X86_AVX2".to_owned()),
            None,
            Some("node(s) had forbidden trait CUSTOM_SLOW".to_owned()),
        ]
    );
}

#[test]
fn resources_follow_placement() {
    let hosts = [
        Host::new("ratio").with_inventory(
            VCPU,
            Inventory::new(4000)
                .with_reserved(1000)
                .with_allocation_ratio(2.0)
                .with_max_unit(8000),
        ),
        Host::new("stepped").with_inventory(
            VCPU,
            Inventory::new(8000)
                .with_min_unit(1000)
                .with_step_size(1000),
        ),
        Host::new("none"),
    ];
    let reasons_for = |amount: i64| {
        reasons(
            &hosts,
            &Workload::virtual_machine("p", "vm").with_resource(VCPU, amount),
        )
    };
    let insufficient = Some("Insufficient VCPU".to_owned());
    // (4000 - 1000) * 2.0 = 6000 on the first host.
    assert_eq!(reasons_for(6000), [None, None, insufficient.clone()]);
    assert_eq!(
        reasons_for(7000),
        [insufficient.clone(), None, insufficient.clone()]
    );
    // Under the minimum unit and off the step.
    assert_eq!(
        reasons_for(500),
        [None, insufficient.clone(), insufficient.clone()]
    );
    assert_eq!(
        reasons_for(1500),
        [None, insufficient.clone(), insufficient.clone()]
    );
    // Over the maximum unit (the total, by default).
    assert_eq!(
        reasons_for(9000),
        [
            insufficient.clone(),
            insufficient.clone(),
            insufficient.clone()
        ]
    );
    // Negative requests never fit; zero requests need no inventory at all.
    assert_eq!(
        reasons_for(-1000),
        [insufficient.clone(), insufficient.clone(), insufficient]
    );
    assert_eq!(reasons_for(0), [None, None, None]);
}

#[test]
fn resources_count_what_is_used() {
    let hosts = [host("h").with_used(VCPU, 3600)];
    assert_eq!(only(&hosts, &pod().with_resource(VCPU, 400)), None);
    assert_eq!(
        only(&hosts, &pod().with_resource(VCPU, 401)).as_deref(),
        Some("Insufficient VCPU")
    );
    assert_eq!(
        only(
            &hosts,
            &Workload::pod("default", "p").with_resource("VGPU", 1)
        )
        .as_deref(),
        Some("Insufficient VGPU")
    );
}

fn web(namespace: &str) -> Placed {
    Placed {
        namespace: namespace.to_owned(),
        labels: [("app".to_owned(), "web".to_owned())].into(),
        server_group: None,
    }
}

fn avoid_web(topology_key: &str, namespaces: &[&str]) -> Workload {
    pod()
        .with_label("app", "web")
        .with_anti_affinity(AntiAffinityTerm {
            selector: vec![SelectorRequirement::equals("app", "web")],
            namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
            topology_key: topology_key.to_owned(),
        })
}

#[test]
fn anti_affinity_per_host() {
    let hosts = [
        host("busy").with_placed(web("default")),
        host("other-ns").with_placed(web("prod")),
        host("free"),
    ];
    let rejected = Some(POD_ANTI_AFFINITY.to_owned());
    assert_eq!(
        reasons(&hosts, &avoid_web(HOSTNAME_LABEL, &[])),
        [rejected.clone(), None, None]
    );
    assert_eq!(
        reasons(&hosts, &avoid_web(HOSTNAME_LABEL, &["prod", "default"])),
        [rejected.clone(), rejected, None]
    );
}

#[test]
fn anti_affinity_per_zone() {
    let hosts = [
        host("a1").with_zone("az1").with_placed(web("default")),
        host("a2").with_zone("az1"),
        host("b1").with_zone("az2"),
        // Without the topology label a host is in no domain: its workloads count nowhere
        // and it is never forbidden.
        host("bare").with_placed(web("default")),
    ];
    let rejected = Some(POD_ANTI_AFFINITY.to_owned());
    assert_eq!(
        reasons(&hosts, &avoid_web(ZONE_LABEL, &[])),
        [rejected.clone(), rejected, None, None]
    );
}

fn member(group: &str) -> Placed {
    Placed {
        namespace: "p".to_owned(),
        labels: Default::default(),
        server_group: Some(group.to_owned()),
    }
}

fn in_group(policy: GroupPolicy, max_server_per_host: Option<u32>) -> Workload {
    Workload::virtual_machine("p", "vm")
        .with_resource(VCPU, 1000)
        .with_server_group(ServerGroup {
            key: "p/group".to_owned(),
            policy,
            max_server_per_host,
        })
}

#[test]
fn server_group_affinity() {
    let violated = Some(SERVER_GROUP.to_owned());
    let empty = [host("a"), host("b")];
    assert_eq!(
        reasons(&empty, &in_group(GroupPolicy::Affinity, None)),
        [None, None]
    );
    let started = [
        host("a"),
        host("b").with_placed(member("p/group")),
        host("c").with_placed(member("p/other")),
    ];
    assert_eq!(
        reasons(&started, &in_group(GroupPolicy::Affinity, None)),
        [violated.clone(), None, violated]
    );
    let soft = in_group(GroupPolicy::SoftAffinity, None);
    assert_eq!(reasons(&started, &soft), [None, None, None]);
}

#[test]
fn server_group_anti_affinity() {
    let violated = Some(SERVER_GROUP.to_owned());
    let hosts = [
        host("one").with_placed(member("p/group")),
        host("two")
            .with_placed(member("p/group"))
            .with_placed(member("p/group")),
        host("none").with_placed(member("p/other")),
    ];
    let strict = in_group(GroupPolicy::AntiAffinity, None);
    assert_eq!(
        reasons(&hosts, &strict),
        [violated.clone(), violated.clone(), None]
    );
    let two = in_group(GroupPolicy::AntiAffinity, Some(2));
    assert_eq!(reasons(&hosts, &two), [None, violated, None]);
    let soft = in_group(GroupPolicy::SoftAntiAffinity, None);
    assert_eq!(reasons(&hosts, &soft), [None, None, None]);
}
