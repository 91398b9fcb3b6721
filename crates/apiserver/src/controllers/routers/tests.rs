//! The router scheduling controller on an in-memory store: spreading, physical networks,
//! failover without flapping, router ports following their router, and no host at all;
//! and the node preferences of the pure placement.

use std::sync::Arc;

use ronghe_store::MemoryStore;
use serde_json::{Value, json};

use super::*;
use crate::engine::DeleteOptions;

const API: &str = net::API_VERSION;

async fn engine() -> Engine {
    let registry = Arc::new(crate::kinds::builtin_registry().expect("builtin kinds"));
    let engine = Engine::new(Arc::new(MemoryStore::new()), registry);
    let kind = engine.kind("v1", "Namespace").unwrap();
    for name in ["admin", "a"] {
        engine
            .create(
                &kind,
                None,
                json!({"metadata": {"name": name}}),
                &WriteOptions::default(),
            )
            .await
            .unwrap();
    }
    engine
}

/// A node with `annotations`, Ready=True when `ready`.
async fn node(engine: &Engine, name: &str, ready: bool, annotations: Value) {
    let kind = engine.kind("v1", "Node").unwrap();
    engine
        .create(
            &kind,
            None,
            json!({"metadata": {"name": name, "annotations": annotations}}),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    set_ready(engine, name, if ready { "True" } else { "False" }).await;
}

async fn set_ready(engine: &Engine, name: &str, status: &str) {
    let kind = engine.kind("v1", "Node").unwrap();
    engine
        .patch(
            &kind,
            None,
            name,
            PatchKind::Merge,
            json!({"status": {"conditions": [{"type": "Ready", "status": status}]}}),
            Target::Status,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
}

async fn cordon(engine: &Engine, name: &str) {
    let kind = engine.kind("v1", "Node").unwrap();
    engine
        .patch(
            &kind,
            None,
            name,
            PatchKind::Merge,
            json!({"spec": {"unschedulable": true}}),
            Target::Main,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
}

async fn create(engine: &Engine, kind: &str, namespace: &str, name: &str, spec: Value) -> Value {
    let kind = engine.kind(API, kind).unwrap();
    let body =
        json!({"apiVersion": API, "kind": kind.kind, "metadata": {"name": name}, "spec": spec});
    engine
        .create(&kind, Some(namespace), body, &WriteOptions::default())
        .await
        .unwrap()
        .object
}

async fn get(engine: &Engine, kind: &str, namespace: &str, name: &str) -> Value {
    let kind = engine.kind(API, kind).unwrap();
    engine.get(&kind, Some(namespace), name).await.unwrap()
}

async fn host_of(engine: &Engine, router: &str) -> String {
    let router = get(engine, "Router", "a", router).await;
    router["status"]["host"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn uid(object: &Value) -> String {
    object["metadata"]["uid"].as_str().unwrap().to_owned()
}

fn tunnel(ip: &str) -> Value {
    json!({annotation::TUNNEL_IP: ip})
}

/// Runs a few passes, as the wake-ups that writes cause would; none may need a retry.
async fn settle(engine: &Engine) {
    for _ in 0..3 {
        assert_eq!(
            pass(engine, None).await.unwrap(),
            None,
            "a pass had to retry"
        );
    }
}

#[tokio::test]
async fn routers_spread_over_ready_schedulable_nodes() {
    let engine = engine().await;
    node(&engine, "n0-cordoned", true, tunnel("192.0.2.10")).await;
    cordon(&engine, "n0-cordoned").await;
    node(&engine, "n1", true, tunnel("192.0.2.1")).await;
    node(&engine, "n2", true, tunnel("192.0.2.2")).await;
    node(&engine, "n3-down", false, tunnel("192.0.2.3")).await;
    for name in ["r1", "r2", "r3", "r4"] {
        create(&engine, "Router", "a", name, json!({})).await;
    }
    settle(&engine).await;
    let mut hosts = Vec::new();
    for name in ["r1", "r2", "r3", "r4"] {
        hosts.push(host_of(&engine, name).await);
        let router = get(&engine, "Router", "a", name).await;
        assert_eq!(router["status"]["status"], ACTIVE);
    }
    assert_eq!(hosts, ["n1", "n2", "n1", "n2"], "two each, ties by name");

    // Settled: a further pass writes nothing.
    let routers = engine.kind(API, "Router").unwrap();
    let versions = |list: crate::engine::ObjectList| -> Vec<String> {
        list.items
            .iter()
            .map(|r| object::resource_version(r).unwrap().to_owned())
            .collect()
    };
    let before = versions(
        engine
            .list(&routers, None, &ListOptions::default())
            .await
            .unwrap(),
    );
    pass(&engine, None).await.unwrap();
    let after = versions(
        engine
            .list(&routers, None, &ListOptions::default())
            .await
            .unwrap(),
    );
    assert_eq!(before, after);
}

#[tokio::test]
async fn a_flat_gateway_needs_a_node_with_its_physical_network() {
    let engine = engine().await;
    let public = create(
        &engine,
        "Network",
        "admin",
        "public",
        json!({"external": true, "networkType": "flat", "physicalNetwork": "physnet-ext"}),
    )
    .await;
    node(&engine, "a-plain", true, tunnel("192.0.2.1")).await;
    node(
        &engine,
        "b-external",
        true,
        json!({annotation::TUNNEL_IP: "192.0.2.2", annotation::PHYSICAL_NETWORKS: "other=eth2, physnet-ext=eth1"}),
    )
    .await;
    create(
        &engine,
        "Router",
        "a",
        "r1-gateway",
        json!({"externalGatewayInfo": {"networkId": uid(&public)}}),
    )
    .await;
    create(&engine, "Router", "a", "r2-private", json!({})).await;
    settle(&engine).await;
    assert_eq!(
        host_of(&engine, "r1-gateway").await,
        "b-external",
        "only b has physnet-ext"
    );
    assert_eq!(
        host_of(&engine, "r2-private").await,
        "a-plain",
        "a VXLAN-only router goes to the emptier node"
    );

    // The only node with the physical network goes down: nowhere else qualifies.
    set_ready(&engine, "b-external", "False").await;
    settle(&engine).await;
    assert_eq!(host_of(&engine, "r1-gateway").await, "");
    assert_eq!(host_of(&engine, "r2-private").await, "a-plain");
}

#[tokio::test]
async fn routers_fail_over_and_do_not_flap_back() {
    let engine = engine().await;
    node(&engine, "n1", true, tunnel("192.0.2.1")).await;
    create(&engine, "Router", "a", "r1", json!({})).await;
    create(&engine, "Router", "a", "r2", json!({})).await;
    settle(&engine).await;
    assert_eq!(host_of(&engine, "r1").await, "n1");
    assert_eq!(host_of(&engine, "r2").await, "n1");

    // New and cordoned-but-ready nodes move nothing: no rebalancing.
    node(&engine, "n2", true, tunnel("192.0.2.2")).await;
    node(&engine, "n3", true, tunnel("192.0.2.3")).await;
    cordon(&engine, "n1").await;
    settle(&engine).await;
    assert_eq!(host_of(&engine, "r1").await, "n1");
    assert_eq!(host_of(&engine, "r2").await, "n1");

    // The host goes silent (as the node-lifecycle controller marks it): both move, spread.
    set_ready(&engine, "n1", "Unknown").await;
    settle(&engine).await;
    assert_eq!(host_of(&engine, "r1").await, "n2");
    assert_eq!(host_of(&engine, "r2").await, "n3");

    // The old host comes back: nothing moves back.
    set_ready(&engine, "n1", "True").await;
    settle(&engine).await;
    assert_eq!(host_of(&engine, "r1").await, "n2");
    assert_eq!(host_of(&engine, "r2").await, "n3");

    // A deleted host is left too (n1 is cordoned, so r1 goes to n3, the only candidate).
    let nodes = engine.kind("v1", "Node").unwrap();
    engine
        .delete(&nodes, None, "n2", &DeleteOptions::default())
        .await
        .unwrap();
    settle(&engine).await;
    assert_eq!(host_of(&engine, "r1").await, "n3");
    assert_eq!(host_of(&engine, "r2").await, "n3");
}

#[tokio::test]
async fn a_router_leaves_a_host_that_stops_answering_before_its_grace_ends() {
    use std::sync::atomic::{AtomicU8, Ordering};

    use super::super::reachability::tests::{ANSWER, SILENT, agent, endpoint, quick, soon};

    let engine = engine().await;
    node(&engine, "n1", true, tunnel("192.0.2.1")).await;
    create(&engine, "Router", "a", "r1", json!({})).await;
    settle(&engine).await;
    assert_eq!(host_of(&engine, "r1").await, "n1");
    node(&engine, "n2", true, tunnel("192.0.2.2")).await;
    let n1 = Arc::new(AtomicU8::new(ANSWER));
    endpoint(&engine, "n1", agent(n1.clone()).await).await;
    endpoint(&engine, "n2", agent(Arc::new(AtomicU8::new(ANSWER))).await).await;
    let reachability = Reachability::new(quick(), vec![Arc::new(Notify::new())]);
    // From this pass on n1 is probed, and answers.
    pass(&engine, Some(&reachability)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    pass(&engine, Some(&reachability)).await.unwrap();
    assert_eq!(
        host_of(&engine, "r1").await,
        "n1",
        "it stays while n1 answers"
    );

    // n1 goes silent: its router moves, though n1 is still Ready.
    n1.store(SILENT, Ordering::Relaxed);
    let moved = soon(|| async {
        pass(&engine, Some(&reachability)).await.unwrap();
        host_of(&engine, "r1").await == "n2"
    })
    .await;
    assert!(moved, "the router left the silent host");
    let nodes = engine.kind("v1", "Node").unwrap();
    let n1_node = engine.get(&nodes, None, "n1").await.unwrap();
    assert!(crate::kinds::node_is_ready(&n1_node), "n1 is still Ready");
}

#[tokio::test]
async fn router_ports_are_bound_to_the_router_host() {
    let engine = engine().await;
    create(&engine, "Network", "a", "net", json!({})).await;
    let subnet = create(
        &engine,
        "Subnet",
        "a",
        "sub",
        json!({"networkId": "net", "cidr": "10.0.0.0/24"}),
    )
    .await;
    let router = create(&engine, "Router", "a", "r1", json!({})).await;
    create(&engine, "Router", "a", "r2", json!({})).await;
    create(&engine, "Port", "a", "r1-if", json!({"networkId": "net", "deviceOwner": net::owner::ROUTER_INTERFACE, "deviceId": uid(&router), "fixedIps": [{"subnetId": uid(&subnet), "ipAddress": "10.0.0.1"}]})).await;
    create(
        &engine,
        "Port",
        "a",
        "workload",
        json!({"networkId": "net", "deviceOwner": net::owner::POD, "deviceId": uid(&router)}),
    )
    .await;

    // No node at all: no host, the status the kind gave it, the port unbound.
    settle(&engine).await;
    let unhosted = get(&engine, "Router", "a", "r1").await;
    assert_eq!(unhosted["status"]["host"], Value::Null);
    assert_eq!(unhosted["status"]["status"], ACTIVE);
    let port = get(&engine, "Port", "a", "r1-if").await;
    assert_eq!(port["spec"]["bindingHostId"], Value::Null);

    node(&engine, "n1", true, tunnel("192.0.2.1")).await;
    node(&engine, "n2", true, tunnel("192.0.2.2")).await;
    settle(&engine).await;
    assert_eq!(host_of(&engine, "r1").await, "n1");
    assert_eq!(host_of(&engine, "r2").await, "n2");
    let port = get(&engine, "Port", "a", "r1-if").await;
    assert_eq!(port["spec"]["bindingHostId"], "n1");
    let workload = get(&engine, "Port", "a", "workload").await;
    assert_eq!(
        workload["spec"]["bindingHostId"],
        Value::Null,
        "only router-owned ports follow the router"
    );

    // The port follows its router when it fails over, and is unbound when nothing hosts it.
    set_ready(&engine, "n1", "False").await;
    settle(&engine).await;
    assert_eq!(host_of(&engine, "r1").await, "n2");
    let port = get(&engine, "Port", "a", "r1-if").await;
    assert_eq!(port["spec"]["bindingHostId"], "n2");
    set_ready(&engine, "n2", "False").await;
    settle(&engine).await;
    assert_eq!(host_of(&engine, "r1").await, "");
    let port = get(&engine, "Port", "a", "r1-if").await;
    assert_eq!(port["spec"]["bindingHostId"], Value::Null);
}

#[test]
fn real_nodes_with_tunnels_are_preferred_when_they_qualify() {
    let node = |name: &str, tunnel: bool, simulated: bool| Candidate {
        name: name.to_owned(),
        alive: true,
        schedulable: true,
        physical_networks: BTreeSet::new(),
        has_tunnel_ip: tunnel,
        simulated,
    };
    let router = Placement::default();
    let nodes = [
        node("a-simulated", true, true),
        node("b-no-tunnel", false, false),
        node("c-tunnel", true, false),
    ];
    assert_eq!(
        decide(&[router.clone(), router.clone()], &nodes),
        [Some("c-tunnel".to_owned()), Some("c-tunnel".to_owned())],
        "the real node with a tunnel takes every router, however loaded"
    );
    assert_eq!(
        decide(std::slice::from_ref(&router), &nodes[..2]),
        [Some("b-no-tunnel".to_owned())],
        "a real node before a simulated one"
    );
    assert_eq!(
        decide(std::slice::from_ref(&router), &nodes[..1]),
        [Some("a-simulated".to_owned())],
        "a simulated node when nothing else qualifies"
    );
    assert_eq!(
        physical_network_names("a=eth1, b = eth2,broken,c=, =eth3"),
        BTreeSet::from(["a".to_owned(), "b".to_owned()])
    );
}
