//! The network kinds through the engine on an in-memory store: references, IPAM, claims
//! under concurrency, and Neutron's cross-object rules.

use std::collections::HashSet;
use std::sync::Arc;

use ronghe_store::MemoryStore;
use serde_json::{Value, json};

use crate::engine::{DeleteOptions, Engine, WriteOptions};
use crate::error::ApiResult;

const API: &str = "network.ronghe.io/v1";

async fn engine_with(namespaces: &[&str]) -> Engine {
    let registry = Arc::new(crate::kinds::builtin_registry().expect("builtin kinds"));
    let engine = Engine::new(Arc::new(MemoryStore::new()), registry);
    let kind = engine.kind("v1", "Namespace").unwrap();
    for name in namespaces {
        engine
            .create(
                &kind,
                None,
                json!({"metadata": {"name": name}}),
                &WriteOptions::default(),
            )
            .await
            .expect("namespace");
    }
    engine
}

async fn create(
    engine: &Engine,
    kind: &str,
    namespace: &str,
    name: &str,
    spec: Value,
) -> ApiResult<Value> {
    let kind = engine.kind(API, kind)?;
    let body =
        json!({"apiVersion": API, "kind": kind.kind, "metadata": {"name": name}, "spec": spec});
    engine
        .create(&kind, Some(namespace), body, &WriteOptions::default())
        .await
        .map(|written| written.object)
}

/// Associates project a's floating IP `fip` with `port`.
async fn associate(engine: &Engine, port: &Value) -> ApiResult<Value> {
    let kind = engine.kind(API, "FloatingIP")?;
    let patch = json!({"spec": {"portId": uid(port)}});
    engine
        .patch(
            &kind,
            Some("a"),
            "fip",
            crate::engine::PatchKind::Merge,
            patch,
            crate::engine::Target::Main,
            &WriteOptions::default(),
        )
        .await
        .map(|written| written.object)
}

fn uid(object: &Value) -> String {
    object["metadata"]["uid"].as_str().unwrap().to_owned()
}

async fn network_with_subnet(engine: &Engine, namespace: &str, cidr: &str) -> (Value, Value) {
    let network = create(engine, "Network", namespace, "net", json!({}))
        .await
        .expect("network");
    let subnet = create(
        engine,
        "Subnet",
        namespace,
        "sub",
        json!({"networkId": "net", "cidr": cidr}),
    )
    .await
    .expect("subnet");
    (network, subnet)
}

#[tokio::test]
async fn networks_get_unique_vnis_and_subnets_get_defaults() {
    let engine = engine_with(&["a", "b"]).await;
    let (network, subnet) = network_with_subnet(&engine, "a", "10.0.0.0/24").await;
    assert_eq!(network["spec"]["networkType"], "vxlan");
    assert_eq!(network["spec"]["mtu"], 1450);
    let other = create(&engine, "Network", "b", "net", json!({}))
        .await
        .unwrap();
    assert_ne!(
        network["spec"]["segmentationId"],
        other["spec"]["segmentationId"]
    );
    assert_eq!(
        subnet["spec"]["networkId"],
        uid(&network),
        "the name became the uid"
    );
    assert_eq!(subnet["spec"]["gatewayIp"], "10.0.0.1");
    assert_eq!(
        subnet["spec"]["allocationPools"],
        json!([{"start": "10.0.0.2", "end": "10.0.0.254"}])
    );
    let taken = create(
        &engine,
        "Network",
        "b",
        "again",
        json!({"segmentationId": network["spec"]["segmentationId"]}),
    )
    .await
    .unwrap_err();
    assert_eq!(taken.code(), 409, "{taken}");
    let overlap = create(
        &engine,
        "Subnet",
        "a",
        "sub2",
        json!({"networkId": "net", "cidr": "10.0.0.0/16"}),
    )
    .await
    .unwrap_err();
    assert_eq!(overlap.code(), 400);
    assert!(overlap.status.message.contains("overlaps"), "{overlap}");
    let outside = create(
        &engine,
        "Subnet",
        "a",
        "sub3",
        json!({"networkId": "net", "cidr": "10.1.0.0/24", "gatewayIp": "10.2.0.1"}),
    )
    .await
    .unwrap_err();
    assert_eq!(outside.code(), 422, "{outside}");
    // Another project cannot use a's private network.
    let foreign = create(
        &engine,
        "Subnet",
        "b",
        "sub",
        json!({"networkId": uid(&network), "cidr": "10.9.0.0/24"}),
    )
    .await
    .unwrap_err();
    assert_eq!(foreign.code(), 404, "{foreign}");
}

#[tokio::test]
async fn ports_get_addresses_macs_and_the_default_group() {
    let engine = engine_with(&["a"]).await;
    let (_, subnet) = network_with_subnet(&engine, "a", "10.0.0.0/29").await;
    let port = create(&engine, "Port", "a", "p1", json!({"networkId": "net"}))
        .await
        .unwrap();
    let fixed = &port["spec"]["fixedIps"][0];
    assert_eq!(fixed["subnetId"], uid(&subnet));
    assert!(
        port["spec"]["macAddress"]
            .as_str()
            .unwrap()
            .starts_with("fa:16:3e:")
    );
    assert_eq!(port["spec"]["securityGroups"].as_array().unwrap().len(), 1);
    assert_eq!(port["status"]["status"], "DOWN");
    // The address it holds cannot be had again, nor one outside the subnet.
    let taken = create(
        &engine,
        "Port",
        "a",
        "p2",
        json!({"networkId": "net", "fixedIps": [{"ipAddress": fixed["ipAddress"]}]}),
    )
    .await
    .unwrap_err();
    assert_eq!(taken.code(), 409, "{taken}");
    let outside = create(
        &engine,
        "Port",
        "a",
        "p3",
        json!({"networkId": "net", "fixedIps": [{"ipAddress": "10.0.1.5"}]}),
    )
    .await
    .unwrap_err();
    assert_eq!(outside.code(), 400, "{outside}");
    // Fill the /29 (5 addresses in the pool): the sixth port finds none.
    for n in 0..4 {
        create(
            &engine,
            "Port",
            "a",
            &format!("fill{n}"),
            json!({"networkId": "net"}),
        )
        .await
        .unwrap();
    }
    let full = create(
        &engine,
        "Port",
        "a",
        "full",
        json!({"networkId": "net", "fixedIps": [{"subnetId": "sub"}]}),
    )
    .await
    .unwrap_err();
    assert_eq!(full.code(), 409, "{full}");
    // Deleting a port frees its address for the next.
    let kind = engine.kind(API, "Port").unwrap();
    engine
        .delete(&kind, Some("a"), "p1", &DeleteOptions::default())
        .await
        .unwrap();
    let again = create(&engine, "Port", "a", "again", json!({"networkId": "net"}))
        .await
        .unwrap();
    assert_eq!(
        again["spec"]["fixedIps"][0]["ipAddress"],
        fixed["ipAddress"]
    );
}

#[tokio::test]
async fn concurrent_port_creates_never_share_an_address() {
    let engine = engine_with(&["a"]).await;
    network_with_subnet(&engine, "a", "10.0.0.0/24").await;
    let creates = (0..120).map(|n| {
        let engine = engine.clone();
        tokio::spawn(async move {
            create(
                &engine,
                "Port",
                "a",
                &format!("p{n}"),
                json!({"networkId": "net"}),
            )
            .await
        })
    });
    let mut addresses = HashSet::new();
    let mut macs = HashSet::new();
    for created in futures::future::join_all(creates).await {
        let port = created.expect("joined").expect("created");
        assert!(
            addresses.insert(
                port["spec"]["fixedIps"][0]["ipAddress"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            )
        );
        assert!(macs.insert(port["spec"]["macAddress"].as_str().unwrap().to_owned()));
    }
    assert_eq!(addresses.len(), 120);
}

#[tokio::test]
async fn floating_ips_need_an_external_network_and_a_router() {
    let engine = engine_with(&["admin", "a"]).await;
    let public = create(
        &engine,
        "Network",
        "admin",
        "public",
        json!({"external": true, "networkType": "flat", "physicalNetwork": "public"}),
    )
    .await
    .unwrap();
    create(
        &engine,
        "Subnet",
        "admin",
        "public-v4",
        json!({"networkId": "public", "cidr": "172.24.4.0/24"}),
    )
    .await
    .unwrap();
    let (_, subnet) = network_with_subnet(&engine, "a", "10.0.0.0/24").await;
    let private = create(
        &engine,
        "FloatingIP",
        "a",
        "bad",
        json!({"floatingNetworkId": "net"}),
    )
    .await
    .unwrap_err();
    assert_eq!(private.code(), 400, "{private}");
    let fip = create(
        &engine,
        "FloatingIP",
        "a",
        "fip",
        json!({"floatingNetworkId": uid(&public)}),
    )
    .await
    .unwrap();
    assert!(
        fip["spec"]["floatingIpAddress"]
            .as_str()
            .unwrap()
            .starts_with("172.24.4.")
    );
    let port = create(&engine, "Port", "a", "vm", json!({"networkId": "net"}))
        .await
        .unwrap();
    // No router reaches the port's subnet yet.
    let unreachable = associate(&engine, &port).await.unwrap_err();
    assert_eq!(unreachable.code(), 404, "{unreachable}");
    let router = create(
        &engine,
        "Router",
        "a",
        "r1",
        json!({"externalGatewayInfo": {"networkId": "public"}}),
    )
    .await
    .unwrap();
    create(&engine, "Port", "a", "r1-if", json!({"networkId": "net", "deviceOwner": "network:router_interface", "deviceId": uid(&router), "fixedIps": [{"subnetId": uid(&subnet), "ipAddress": "10.0.0.1"}]}))
        .await
        .unwrap();
    let associated = associate(&engine, &port).await.unwrap();
    assert_eq!(associated["spec"]["routerId"], uid(&router));
    assert_eq!(
        associated["spec"]["fixedIpAddress"],
        port["spec"]["fixedIps"][0]["ipAddress"]
    );
    let not_external = create(
        &engine,
        "Router",
        "a",
        "r2",
        json!({"externalGatewayInfo": {"networkId": "net"}}),
    )
    .await
    .unwrap_err();
    assert_eq!(not_external.code(), 400);
}

#[tokio::test]
async fn security_group_rules_are_unique_and_checked() {
    let engine = engine_with(&["a"]).await;
    let group = super::default_security_group(&engine, "a").await.unwrap();
    let rule = json!({"securityGroupId": "default", "direction": "ingress", "protocol": "TCP", "portRangeMin": 80, "portRangeMax": 80, "remoteIpPrefix": "0.0.0.0/0"});
    let created = create(&engine, "SecurityGroupRule", "a", "web", rule.clone())
        .await
        .unwrap();
    assert_eq!(created["spec"]["securityGroupId"], uid(&group));
    assert_eq!(created["spec"]["protocol"], "tcp");
    let again = create(&engine, "SecurityGroupRule", "a", "web2", rule)
        .await
        .unwrap_err();
    assert_eq!(again.code(), 409, "{again}");
    let bad = create(&engine, "SecurityGroupRule", "a", "bad", json!({"securityGroupId": "default", "direction": "ingress", "protocol": "tcp", "portRangeMin": 90, "portRangeMax": 80}))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), 422);
    let second_default = create(
        &engine,
        "SecurityGroup",
        "a",
        "other",
        json!({"name": "default"}),
    )
    .await
    .unwrap_err();
    assert_eq!(second_default.code(), 409);
}
