use serde_json::json;

use super::*;

fn service(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "a"}, "spec": spec})
}

fn messages(causes: &[FieldCause]) -> Vec<String> {
    causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect()
}

#[test]
fn defaults_fill_type_protocol_target_port_and_affinity() {
    let mut svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
    default_service(&mut svc);
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["sessionAffinity"], "None");
    assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
    assert_eq!(svc["status"]["loadBalancer"], json!({}));
    assert!(
        validate(&svc, None).is_empty(),
        "{:?}",
        validate(&svc, None)
    );
}

#[test]
fn bad_services_get_kubernetes_field_errors() {
    let cases = [
        (json!({"ports": []}), "spec.ports: Required value"),
        (
            json!({"ports": [{"port": 80}, {"port": 81}]}),
            "spec.ports[0].name: Required value",
        ),
        (
            json!({"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]}),
            "spec.ports[1].name: Duplicate value",
        ),
        (
            json!({"ports": [{"port": 70000}]}),
            "spec.ports[0].port: Invalid value",
        ),
        (
            json!({"ports": [{"port": 80, "protocol": "ICMP"}]}),
            "spec.ports[0].protocol: Unsupported value",
        ),
        (
            json!({"type": "Magic", "ports": [{"port": 80}]}),
            "spec.type: Unsupported value",
        ),
        (
            json!({"clusterIP": "ten", "ports": [{"port": 80}]}),
            "spec.clusterIP: Invalid value",
        ),
        (
            json!({"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30001}]}),
            "spec.ports[0].nodePort: Forbidden",
        ),
        (
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}),
            "spec.ports[0].nodePort: Invalid value",
        ),
        (
            json!({"type": "ExternalName"}),
            "spec.externalName: Required value",
        ),
        (
            json!({"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]}),
            "spec.clusterIP: Invalid value",
        ),
    ];
    for (spec, expected) in cases {
        let found = messages(&validate(&service(spec.clone()), None));
        assert!(
            found.iter().any(|m| m.starts_with(expected)),
            "{spec}: expected {expected}, got {found:?}"
        );
    }
}

#[test]
fn a_headless_service_may_have_no_ports_and_the_cluster_ip_is_immutable() {
    let headless = service(json!({"clusterIP": "None", "selector": {"app": "db"}}));
    assert!(validate(&headless, None).is_empty());
    let old = service(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}));
    let new = service(json!({"clusterIP": "10.96.0.11", "ports": [{"port": 80}]}));
    let found = messages(&validate(&new, Some(&old)));
    assert!(
        found.iter().any(|m| m.contains("field is immutable")),
        "{found:?}"
    );
}

#[test]
fn node_ports_are_claimed_per_protocol_and_carried_over_an_update() {
    let old = service(
        json!({"type": "NodePort", "clusterIP": "10.96.0.10", "ports": [
            {"port": 80, "protocol": "TCP", "nodePort": 30080},
            {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
        ]}),
    );
    let keys: Vec<String> = claims(&old).into_iter().map(|c| c.key).collect();
    assert_eq!(keys, ["nodeports/TCP/30080", "nodeports/UDP/30053"]);
    let mut new = service(json!({"type": "NodePort", "ports": [
        {"port": 80, "protocol": "TCP"},
        {"name": "dns", "port": 53, "protocol": "UDP"},
    ]}));
    carry_forward(&mut new, &old);
    assert_eq!(new["spec"]["clusterIP"], "10.96.0.10");
    assert_eq!(new["spec"]["ports"][0]["nodePort"], 30080);
    assert_eq!(new["spec"]["ports"][1]["nodePort"], 30053);
}

#[test]
fn kubectl_columns_show_ports_and_pending_external_ips() {
    let svc = service(json!({"type": "LoadBalancer", "ports": [
        {"port": 80, "protocol": "TCP", "nodePort": 30080}
    ], "selector": {"app": "web"}}));
    assert_eq!(ports_cell(&svc), "80:30080/TCP");
    assert_eq!(external_ip_cell(&svc), "<pending>");
    assert_eq!(selector_cell(&svc), "app=web");
    let mut served = svc.clone();
    served["status"] = json!({"loadBalancer": {"ingress": [{"ip": "172.24.4.10"}]}});
    assert_eq!(external_ip_cell(&served), "172.24.4.10");
}

#[test]
fn a_type_change_drops_only_what_the_new_type_has_no_use_for() {
    let load_balancer = service(json!({
        "type": "LoadBalancer", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
        "externalTrafficPolicy": "Cluster", "allocateLoadBalancerNodePorts": true,
        "ports": [{"port": 80, "nodePort": 30080}],
    }));
    // To NodePort: the node ports stay; what only a LoadBalancer has goes.
    let mut node_port = load_balancer.clone();
    node_port["spec"]["type"] = json!("NodePort");
    drop_type_dependent_fields(&mut node_port, &load_balancer);
    assert_eq!(node_port["spec"]["ports"][0]["nodePort"], 30080);
    assert_eq!(node_port["spec"]["externalTrafficPolicy"], "Cluster");
    assert!(
        node_port["spec"]
            .get("allocateLoadBalancerNodePorts")
            .is_none()
    );
    // To ClusterIP with a node port the client changed: kept, for validation to refuse.
    let mut changed = load_balancer.clone();
    changed["spec"]["type"] = json!("ClusterIP");
    changed["spec"]["ports"][0]["nodePort"] = json!(30081);
    drop_type_dependent_fields(&mut changed, &load_balancer);
    assert_eq!(changed["spec"]["ports"][0]["nodePort"], 30081);
    assert!(changed["spec"].get("externalTrafficPolicy").is_none());
    assert_eq!(changed["spec"]["clusterIP"], "10.96.0.10");
    // To ExternalName: the ClusterIP and node ports go too.
    let mut external = load_balancer.clone();
    external["spec"]["type"] = json!("ExternalName");
    external["spec"]["externalName"] = json!("db.example.com");
    drop_type_dependent_fields(&mut external, &load_balancer);
    assert!(external["spec"].get("clusterIP").is_none());
    assert!(external["spec"].get("clusterIPs").is_none());
    assert!(external["spec"]["ports"][0].get("nodePort").is_none());
    assert!(validate(&external, Some(&load_balancer)).is_empty());
}

#[test]
fn a_health_check_node_port_belongs_to_a_local_load_balancer_service_only() {
    let local = service(json!({
        "type": "LoadBalancer", "clusterIP": "10.96.0.10", "externalTrafficPolicy": "Local",
        "healthCheckNodePort": 31000, "ports": [{"port": 80, "nodePort": 30080}],
    }));
    assert!(
        validate(&local, None).is_empty(),
        "{:?}",
        validate(&local, None)
    );
    assert!(
        claims(&local)
            .iter()
            .any(|claim| claim.key == "nodeports/TCP/31000"),
        "claimed with the node ports"
    );
    let mut cluster = local.clone();
    cluster["spec"]["externalTrafficPolicy"] = json!("Cluster");
    assert_eq!(
        messages(&validate(&cluster, Some(&local))),
        [
            "spec.healthCheckNodePort: Invalid value: 31000: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"
        ]
    );
    // The policy turned Cluster: the port goes with it, unless the client changed it.
    drop_type_dependent_fields(&mut cluster, &local);
    assert!(cluster["spec"].get("healthCheckNodePort").is_none());
    assert!(validate(&cluster, Some(&local)).is_empty());
    // A PUT leaving it out keeps it while it is needed.
    let mut put = local.clone();
    put["spec"]
        .as_object_mut()
        .unwrap()
        .remove("healthCheckNodePort");
    carry_forward(&mut put, &local);
    assert_eq!(put["spec"]["healthCheckNodePort"], 31000);
    let mut far = local.clone();
    far["spec"]["healthCheckNodePort"] = json!(80);
    assert!(messages(&validate(&far, None))[0].contains("not in the valid range"));
}

#[test]
fn source_ranges_are_cidrs_of_load_balancer_services() {
    let mut limited = service(json!({
        "type": "LoadBalancer", "clusterIP": "10.96.0.10", "ports": [{"port": 80}],
        "loadBalancerSourceRanges": [" 192.0.2.0/24", "10.1.2.3/8", "2001:db8::/64"],
    }));
    assert!(
        validate(&limited, None).is_empty(),
        "{:?}",
        validate(&limited, None)
    );
    assert_eq!(
        source_ranges(&limited),
        ["192.0.2.0/24", "10.1.2.3/8", "2001:db8::/64"]
    );
    limited["spec"]["loadBalancerSourceRanges"] = json!(["192.0.2.0/24", "everywhere"]);
    assert_eq!(
        messages(&validate(&limited, None)),
        [
            "spec.LoadBalancerSourceRanges[1]: Invalid value: \"everywhere\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
        ]
    );
    // An update leaving a value an older version took is not refused for it.
    let mut updated = limited.clone();
    updated["spec"]["loadBalancerSourceRanges"] = json!(["198.51.100.0/24", " everywhere "]);
    assert!(validate(&updated, Some(&limited)).is_empty());
    let mut cluster = limited.clone();
    cluster["spec"]["type"] = json!("ClusterIP");
    cluster["spec"]["loadBalancerSourceRanges"] = json!(["192.0.2.0/24"]);
    assert_eq!(
        messages(&validate(&cluster, None)),
        [
            "spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'"
        ]
    );

    // The older annotation, when the field is empty.
    let mut annotated = service(json!({
        "type": "LoadBalancer", "clusterIP": "10.96.0.10", "ports": [{"port": 80}],
    }));
    annotated["metadata"]["annotations"] =
        json!({SOURCE_RANGES_ANNOTATION: " 192.0.2.0/24, 198.51.100.0/25 "});
    assert!(validate(&annotated, None).is_empty());
    assert_eq!(
        source_ranges(&annotated),
        ["192.0.2.0/24", "198.51.100.0/25"]
    );
    let mut empty_item = annotated.clone();
    empty_item["metadata"]["annotations"][SOURCE_RANGES_ANNOTATION] = json!("192.0.2.0/24,");
    assert_eq!(
        validate(&empty_item, None).len(),
        1,
        "an empty item is no CIDR"
    );
    assert!(
        validate(&empty_item, Some(&empty_item)).is_empty(),
        "unchanged on an update"
    );
    annotated["spec"]["loadBalancerSourceRanges"] = json!(["203.0.113.0/24"]);
    assert_eq!(
        source_ranges(&annotated),
        ["203.0.113.0/24"],
        "the field wins"
    );
    annotated["spec"]["loadBalancerSourceRanges"] = json!([]);
    annotated["metadata"]["annotations"][SOURCE_RANGES_ANNOTATION] = json!("192.0.2.0/33");
    assert_eq!(
        messages(&validate(&annotated, None)),
        [format!(
            "metadata.annotations[{SOURCE_RANGES_ANNOTATION}]: Invalid value: \"192.0.2.0/33\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
        )]
    );
    assert!(source_ranges(&service(json!({"type": "LoadBalancer"}))).is_empty());
}
