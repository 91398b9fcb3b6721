use serde_json::{Value, json};

use super::World;
use super::endpoints::{backends, endpoints_object, slices};

fn service() -> Value {
    json!({
        "metadata": {"name": "web", "namespace": "a", "uid": "svc-uid"},
        "spec": {"selector": {"app": "web"}, "ports": [
            {"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"},
            {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": 9090},
        ]},
    })
}

fn pod(name: &str, ip: &str, ready: bool, http_port: u16) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "a", "uid": format!("{name}-uid"), "labels": {"app": "web"}},
        "spec": {"nodeName": "host-0", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": http_port}]}]},
        "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
    })
}

fn world() -> World {
    World {
        pods: vec![
            pod("web-a", "10.0.0.5", true, 8080),
            pod("web-b", "10.0.0.6", false, 8080),
            pod("web-c", "10.0.0.7", true, 8081),
            // Another namespace, and another app: neither is behind the service.
            json!({"metadata": {"name": "x", "namespace": "b", "labels": {"app": "web"}}, "status": {"podIP": "10.0.0.9"}}),
            json!({"metadata": {"name": "y", "namespace": "a", "labels": {"app": "db"}}, "status": {"podIP": "10.0.0.10"}}),
        ],
        vms: vec![json!({
            "metadata": {"name": "guest", "namespace": "a", "uid": "vm-uid", "labels": {"app": "web"}},
            "status": {"status": "ACTIVE", "host": "host-1"},
        })],
        ports: vec![json!({
            "metadata": {"name": "p", "namespace": "a"},
            "spec": {"networkId": "n", "deviceId": "vm-uid", "fixedIps": [{"subnetId": "s", "ipAddress": "10.0.0.20"}]},
        })],
    }
}

#[test]
fn pods_and_vms_the_selector_matches_are_the_backends_with_their_ports() {
    let found = backends(&service(), &world()).expect("a selector");
    let summary: Vec<(String, bool, Vec<Option<u16>>)> = found
        .iter()
        .map(|b| (b.ip.clone(), b.ready, b.ports.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            ("10.0.0.5".into(), true, vec![Some(8080), Some(9090)]),
            ("10.0.0.6".into(), false, vec![Some(8080), Some(9090)]),
            ("10.0.0.7".into(), true, vec![Some(8081), Some(9090)]),
            // A VM has no named ports: only the numbered target port reaches it.
            ("10.0.0.20".into(), true, vec![None, Some(9090)]),
        ]
    );
    let mut no_selector = service();
    no_selector["spec"]["selector"] = json!({});
    assert!(backends(&no_selector, &world()).is_none());
}

#[test]
fn endpoints_group_backends_by_ports_with_ready_and_not_ready_addresses() {
    let found = backends(&service(), &world()).expect("a selector");
    let endpoints = endpoints_object(&service(), &found);
    let subsets = endpoints["subsets"].as_array().expect("subsets");
    assert_eq!(subsets.len(), 3, "{endpoints}");
    let with_8080 = subsets
        .iter()
        .find(|s| s["ports"][0]["port"] == 8080)
        .expect("8080");
    assert_eq!(with_8080["addresses"][0]["ip"], "10.0.0.5");
    assert_eq!(with_8080["notReadyAddresses"][0]["ip"], "10.0.0.6");
    assert_eq!(with_8080["addresses"][0]["targetRef"]["kind"], "Pod");
    assert_eq!(
        endpoints["metadata"]["ownerReferences"][0]["uid"],
        "svc-uid"
    );
    let cut = slices(&service(), &found);
    assert_eq!(cut.len(), 3);
    for slice in &cut {
        assert_eq!(
            slice["metadata"]["labels"]["kubernetes.io/service-name"],
            "web"
        );
        assert_eq!(slice["addressType"], "IPv4");
    }
    let vm_slice = cut
        .iter()
        .find(|s| s["endpoints"][0]["addresses"][0] == "10.0.0.20")
        .expect("the VM's slice");
    assert_eq!(vm_slice["ports"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        vm_slice["endpoints"][0]["targetRef"]["kind"],
        "VirtualMachine"
    );
    // No backends: an Endpoints without subsets and one empty slice.
    assert!(endpoints_object(&service(), &[]).get("subsets").is_none());
    assert_eq!(slices(&service(), &[]).len(), 1);
}
