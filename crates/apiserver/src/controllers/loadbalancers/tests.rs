//! The load-balancer controller on an in-memory store, with the agent's reports written
//! by hand: placement and VIP binding, provisioning from PENDING_CREATE to ACTIVE and
//! through PENDING_UPDATE, members' health rolled up, failover on a dead host and on
//! request, and ERROR when nothing can host it.

use std::sync::Arc;

use ronghe_store::MemoryStore;
use serde_json::{Value, json};

use super::*;

async fn engine() -> Engine {
    let registry = Arc::new(crate::kinds::builtin_registry().expect("builtin kinds"));
    let engine = Engine::new(Arc::new(MemoryStore::new()), registry);
    let kind = engine.kind("v1", "Namespace").unwrap();
    engine
        .create(
            &kind,
            None,
            json!({"metadata": {"name": "a"}}),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    engine
}

async fn node(engine: &Engine, name: &str, ready: &str) {
    let kind = engine.kind("v1", "Node").unwrap();
    if engine.get(&kind, None, name).await.is_err() {
        engine
            .create(
                &kind,
                None,
                json!({"metadata": {"name": name, "annotations": {net::annotation::TUNNEL_IP: "192.0.2.1"}}}),
                &WriteOptions::default(),
            )
            .await
            .unwrap();
    }
    node_status(
        engine,
        name,
        json!({"conditions": [{"type": "Ready", "status": ready}]}),
    )
    .await;
}

/// Merges `status` into node `name`'s.
async fn node_status(engine: &Engine, name: &str, status: Value) {
    let kind = engine.kind("v1", "Node").unwrap();
    engine
        .patch(
            &kind,
            None,
            name,
            PatchKind::Merge,
            json!({ "status": status }),
            Target::Status,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
}

async fn create(engine: &Engine, api: &str, kind: &str, name: &str, spec: Value) -> Value {
    let kind = engine.kind(api, kind).unwrap();
    let body =
        json!({"apiVersion": api, "kind": kind.kind, "metadata": {"name": name}, "spec": spec});
    engine
        .create(&kind, Some("a"), body, &WriteOptions::default())
        .await
        .unwrap()
        .object
}

async fn get(engine: &Engine, api: &str, kind: &str, name: &str) -> Value {
    let kind = engine.kind(api, kind).unwrap();
    engine.get(&kind, Some("a"), name).await.unwrap()
}

async fn lb_status(engine: &Engine) -> LoadBalancerStatus {
    lb::status_of(&get(engine, API_VERSION, "LoadBalancer", "lb").await)
}

/// What the agent of `host` writes once its proxy serves the whole tree as it is now,
/// with `members` as its health checks see them.
async fn serve(engine: &Engine, host: &str, members: Value) {
    let lb_object = get(engine, API_VERSION, "LoadBalancer", "lb").await;
    let tree = crate::kinds::loadbalancing::tree_of(engine, &lb_object)
        .await
        .unwrap();
    let applied: serde_json::Map<String, Value> = std::iter::once(&tree.load_balancer)
        .chain(tree.children())
        .map(|o| (lb::uid(o).to_owned(), json!(lb::generation(o))))
        .collect();
    let kind = engine.kind(API_VERSION, "LoadBalancer").unwrap();
    engine
        .patch(
            &kind,
            Some("a"),
            "lb",
            PatchKind::Merge,
            json!({"status": {"servedBy": host, "applied": applied, "members": members}}),
            Target::Status,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
}

/// A load balancer with an HTTP listener, a pool with a monitor and two members.
async fn tree(engine: &Engine) -> (Value, Value) {
    create(engine, net::API_VERSION, "Network", "web", json!({})).await;
    create(
        engine,
        net::API_VERSION,
        "Subnet",
        "web",
        json!({"networkId": "web", "cidr": "10.1.0.0/24"}),
    )
    .await;
    create(
        engine,
        API_VERSION,
        "LoadBalancer",
        "lb",
        json!({"vipSubnetId": "web"}),
    )
    .await;
    create(
        engine,
        API_VERSION,
        "Listener",
        "http",
        json!({"loadBalancerId": "lb", "protocol": "HTTP", "protocolPort": 80}),
    )
    .await;
    create(
        engine,
        API_VERSION,
        "Pool",
        "pool",
        json!({"listenerId": "http", "protocol": "HTTP", "lbAlgorithm": "ROUND_ROBIN"}),
    )
    .await;
    create(
        engine,
        API_VERSION,
        "HealthMonitor",
        "hm",
        json!({"poolId": "pool", "type": "HTTP", "delay": 2, "timeout": 1, "maxRetries": 1}),
    )
    .await;
    let a = create(
        engine,
        API_VERSION,
        "Member",
        "a",
        json!({"poolId": "pool", "address": "10.1.0.10", "protocolPort": 80}),
    )
    .await;
    let b = create(
        engine,
        API_VERSION,
        "Member",
        "b",
        json!({"poolId": "pool", "address": "10.1.0.11", "protocolPort": 80}),
    )
    .await;
    (a, b)
}

fn uid(object: &Value) -> String {
    lb::uid(object).to_owned()
}

#[tokio::test]
async fn a_load_balancer_is_placed_bound_and_active_once_served() {
    let engine = engine().await;
    node(&engine, "n1", "True").await;
    let (a, b) = tree(&engine).await;
    pass(&engine, None).await.unwrap();
    let status = lb_status(&engine).await;
    assert_eq!(status.host, "n1");
    assert_eq!(status.provisioning_status, provisioning::PENDING_CREATE);
    assert_eq!(status.operating_status, operating::OFFLINE);
    let lb_object = get(&engine, API_VERSION, "LoadBalancer", "lb").await;
    let port = crate::kinds::network::resolve(
        &engine,
        "Port",
        "a",
        lb_object["spec"]["vipPortId"].as_str().unwrap(),
        |_| false,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(port["spec"]["bindingHostId"], "n1");
    let listener = get(&engine, API_VERSION, "Listener", "http").await;
    assert_eq!(listener["status"]["provisioningStatus"], "PENDING_CREATE");

    serve(&engine, "n1", json!({uid(&a): "ONLINE", uid(&b): "ERROR"})).await;
    pass(&engine, None).await.unwrap();
    let status = lb_status(&engine).await;
    assert_eq!(status.provisioning_status, provisioning::ACTIVE);
    assert_eq!(status.operating_status, operating::DEGRADED);
    let member = |name: &'static str| {
        let engine = engine.clone();
        async move { get(&engine, API_VERSION, "Member", name).await["status"].clone() }
    };
    assert_eq!(member("a").await["operatingStatus"], "ONLINE");
    assert_eq!(member("b").await["operatingStatus"], "ERROR");
    assert_eq!(member("b").await["provisioningStatus"], "ACTIVE");
    let pool = get(&engine, API_VERSION, "Pool", "pool").await;
    assert_eq!(pool["status"]["operatingStatus"], "DEGRADED");

    // A new member waits for the proxy: PENDING_UPDATE until it is served.
    create(
        &engine,
        API_VERSION,
        "Member",
        "c",
        json!({"poolId": "pool", "address": "10.1.0.12", "protocolPort": 80}),
    )
    .await;
    pass(&engine, None).await.unwrap();
    assert_eq!(
        lb_status(&engine).await.provisioning_status,
        provisioning::PENDING_UPDATE
    );
    assert_eq!(member("c").await["provisioningStatus"], "PENDING_CREATE");
    serve(&engine, "n1", json!({uid(&a): "ONLINE", uid(&b): "ONLINE"})).await;
    pass(&engine, None).await.unwrap();
    let status = lb_status(&engine).await;
    assert_eq!(status.provisioning_status, provisioning::ACTIVE);
    // Not checked yet: NO_MONITOR, which does not degrade the pool.
    assert_eq!(member("c").await["operatingStatus"], "NO_MONITOR");
    assert_eq!(status.operating_status, operating::ONLINE);

    // The proxy refusing the tree is an ERROR with its reason.
    let kind = engine.kind(API_VERSION, "LoadBalancer").unwrap();
    engine
        .patch(
            &kind,
            Some("a"),
            "lb",
            PatchKind::Merge,
            json!({"status": {"serveError": "listener: cannot bind"}}),
            Target::Status,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    pass(&engine, None).await.unwrap();
    let status = lb_status(&engine).await;
    assert_eq!(status.provisioning_status, provisioning::ERROR);
    assert_eq!(status.message, "listener: cannot bind");
}

#[tokio::test]
async fn a_load_balancer_moves_off_a_dead_host_and_on_request() {
    let engine = engine().await;
    node(&engine, "n1", "True").await;
    tree(&engine).await;
    pass(&engine, None).await.unwrap();
    serve(&engine, "n1", json!({})).await;
    node(&engine, "n2", "True").await;
    pass(&engine, None).await.unwrap();
    assert_eq!(lb_status(&engine).await.host, "n1", "no rebalancing");

    node(&engine, "n1", "Unknown").await;
    pass(&engine, None).await.unwrap();
    let status = lb_status(&engine).await;
    assert_eq!(status.host, "n2");
    // Still served by the old host only: not ACTIVE until the new one serves it.
    assert_eq!(status.provisioning_status, provisioning::PENDING_UPDATE);
    serve(&engine, "n2", json!({})).await;
    pass(&engine, None).await.unwrap();
    assert_eq!(
        lb_status(&engine).await.provisioning_status,
        provisioning::ACTIVE
    );

    // A failover request moves it back to the other Ready node.
    node(&engine, "n1", "True").await;
    let kind = engine.kind(API_VERSION, "LoadBalancer").unwrap();
    engine
        .patch(
            &kind,
            Some("a"),
            "lb",
            PatchKind::Merge,
            json!({"status": {"failoverRequested": "2026-11-22T00:00:00Z", "failoverFrom": "n2"}}),
            Target::Status,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    pass(&engine, None).await.unwrap();
    let status = lb_status(&engine).await;
    assert_eq!(status.host, "n1");
    assert!(status.failover_requested.is_empty());

    // No node at all: ERROR, saying why.
    node(&engine, "n1", "False").await;
    node(&engine, "n2", "False").await;
    pass(&engine, None).await.unwrap();
    let status = lb_status(&engine).await;
    assert_eq!(status.host, "");
    assert_eq!(status.provisioning_status, provisioning::ERROR);
    assert!(status.message.contains("No host"), "{}", status.message);
}

#[tokio::test]
async fn a_load_balancer_leaves_a_host_that_stops_answering_before_its_grace_ends() {
    use std::sync::atomic::{AtomicU8, Ordering};

    use super::super::reachability::tests::{ANSWER, SILENT, agent, endpoint, quick, soon};

    let engine = engine().await;
    node(&engine, "n1", "True").await;
    node(&engine, "n2", "True").await;
    let (n1, n2) = (
        Arc::new(AtomicU8::new(ANSWER)),
        Arc::new(AtomicU8::new(ANSWER)),
    );
    endpoint(&engine, "n1", agent(n1.clone()).await).await;
    endpoint(&engine, "n2", agent(n2.clone()).await).await;
    let reachability = Reachability::new(quick(), vec![Arc::new(Notify::new())]);

    tree(&engine).await;
    // Placed on the least loaded: make it n1 by leaving n2 out at first.
    node(&engine, "n2", "False").await;
    pass(&engine, Some(&reachability)).await.unwrap();
    assert_eq!(lb_status(&engine).await.host, "n1");
    node(&engine, "n2", "True").await;
    // From this pass on n1 is probed, and answers.
    pass(&engine, Some(&reachability)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    pass(&engine, Some(&reachability)).await.unwrap();
    assert_eq!(
        lb_status(&engine).await.host,
        "n1",
        "it stays while n1 answers"
    );

    // n1 goes silent: its load balancer moves, though n1 is still Ready.
    n1.store(SILENT, Ordering::Relaxed);
    let moved = soon(|| async {
        pass(&engine, Some(&reachability)).await.unwrap();
        lb_status(&engine).await.host == "n2"
    })
    .await;
    assert!(moved, "the load balancer left the silent host");
    let kind = engine.kind("v1", "Node").unwrap();
    let n1_node = engine.get(&kind, None, "n1").await.unwrap();
    assert!(
        crate::kinds::node_is_ready(&n1_node),
        "n1 is still Ready: only its load balancers moved"
    );

    // With no answering host left, a silent one keeps its load balancers (this server
    // may be the one cut off).
    node(&engine, "n1", "False").await;
    pass(&engine, Some(&reachability)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    n2.store(SILENT, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(reachability.unreachable("n2"), "n2 went silent too");
    pass(&engine, Some(&reachability)).await.unwrap();
    assert_eq!(lb_status(&engine).await.host, "n2");
}
