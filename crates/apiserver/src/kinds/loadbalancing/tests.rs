//! The load-balancing kinds through the engine on an in-memory store: the VIP port,
//! parents by name, the claims (listener ports, default pools, monitors, members), members
//! only where the VIP reaches, certificates, L7 positions, and the tree as the proxy's
//! configuration.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use ronghe_api_types::loadbalancing::proxy::{TlsSecrets, policies_in_order, proxy_config, vip_of};
use ronghe_api_types::loadbalancing::{API_VERSION, PoolSpec};
use ronghe_proxy::config::{
    ClientAuthentication, ListenerProtocol, MonitorType, TlsSettings, TlsVersion,
};
use ronghe_store::MemoryStore;
use serde_json::{Value, json};

use crate::engine::{Engine, WriteOptions};
use crate::error::ApiResult;

const LB: &str = "loadbalancing.ronghe.io/v1";
const NET: &str = "network.ronghe.io/v1";

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
        .expect("namespace");
    engine
}

async fn create_in(
    engine: &Engine,
    api: &str,
    kind: &str,
    name: &str,
    spec: Value,
) -> ApiResult<Value> {
    let kind = engine.kind(api, kind)?;
    let body =
        json!({"apiVersion": api, "kind": kind.kind, "metadata": {"name": name}, "spec": spec});
    engine
        .create(&kind, Some("a"), body, &WriteOptions::default())
        .await
        .map(|written| written.object)
}

async fn create(engine: &Engine, kind: &str, name: &str, spec: Value) -> ApiResult<Value> {
    create_in(engine, LB, kind, name, spec).await
}

fn uid(object: &Value) -> String {
    object["metadata"]["uid"].as_str().unwrap().to_owned()
}

/// Network `web` (10.1.0.0/24) with a load balancer `lb` on it, and an HTTP listener on
/// port 80 with an HTTP pool.
async fn basics(engine: &Engine) -> (Value, Value, Value) {
    create_in(engine, NET, "Network", "web", json!({}))
        .await
        .unwrap();
    create_in(
        engine,
        NET,
        "Subnet",
        "web",
        json!({"networkId": "web", "cidr": "10.1.0.0/24"}),
    )
    .await
    .unwrap();
    let lb = create(engine, "LoadBalancer", "lb", json!({"vipSubnetId": "web"}))
        .await
        .unwrap();
    let listener = create(
        engine,
        "Listener",
        "http",
        json!({"loadBalancerId": "lb", "protocol": "HTTP", "protocolPort": 80}),
    )
    .await
    .unwrap();
    let pool = create(
        engine,
        "Pool",
        "pool",
        json!({"listenerId": "http", "protocol": "HTTP", "lbAlgorithm": "ROUND_ROBIN"}),
    )
    .await
    .unwrap();
    (lb, listener, pool)
}

#[tokio::test]
async fn a_load_balancer_gets_a_vip_port_of_its_own_on_its_subnet() {
    let engine = engine().await;
    let (lb, listener, pool) = basics(&engine).await;
    let vip = vip_of(&lb).expect("a VIP address");
    assert!(vip.to_string().starts_with("10.1.0."), "{vip}");
    assert_eq!(lb["spec"]["provider"], "ronghe");
    let ports = engine.kind(NET, "Port").unwrap();
    let listed = engine
        .list(&ports, Some("a"), &Default::default())
        .await
        .unwrap()
        .items;
    let port = listed
        .iter()
        .find(|p| p["metadata"]["uid"] == lb["spec"]["vipPortId"])
        .expect("the VIP port");
    assert_eq!(port["spec"]["deviceOwner"], "Octavia");
    assert_eq!(port["spec"]["deviceId"], lb["metadata"]["uid"]);
    assert_eq!(
        port["metadata"]["ownerReferences"][0]["uid"],
        lb["metadata"]["uid"]
    );
    assert_eq!(port["spec"]["fixedIps"][0]["ipAddress"], vip.to_string());
    // Children name their parents by name or uid; uids are stored.
    assert_eq!(listener["spec"]["loadBalancerId"], lb["metadata"]["uid"]);
    assert_eq!(pool["spec"]["listenerId"], listener["metadata"]["uid"]);
    assert_eq!(pool["spec"]["loadBalancerId"], lb["metadata"]["uid"]);
    assert_eq!(
        pool["metadata"]["ownerReferences"][0]["kind"],
        "LoadBalancer"
    );

    let other = create(
        &engine,
        "LoadBalancer",
        "fixed",
        json!({"vipSubnetId": "web", "vipAddress": "10.1.0.200"}),
    )
    .await
    .unwrap();
    assert_eq!(other["spec"]["vipAddress"], "10.1.0.200");
    let taken = create(
        &engine,
        "LoadBalancer",
        "again",
        json!({"vipSubnetId": "web", "vipAddress": "10.1.0.200"}),
    )
    .await
    .unwrap_err();
    assert_eq!(taken.code(), 409, "{taken:?}");
    let nowhere = create(&engine, "LoadBalancer", "x", json!({"vipSubnetId": "nope"}))
        .await
        .unwrap_err();
    assert_eq!(nowhere.code(), 404);
    let amphora = create(
        &engine,
        "LoadBalancer",
        "y",
        json!({"vipSubnetId": "web", "provider": "amphora"}),
    )
    .await
    .unwrap_err();
    assert_eq!(amphora.code(), 422);
    assert!(format!("{amphora:?}").contains("Provider 'amphora' is not enabled."));
}

#[tokio::test]
async fn one_listener_per_port_and_one_default_pool_per_listener() {
    let engine = engine().await;
    basics(&engine).await;
    let clash = create(
        &engine,
        "Listener",
        "tcp",
        json!({"loadBalancerId": "lb", "protocol": "TCP", "protocolPort": 80}),
    )
    .await
    .unwrap_err();
    assert_eq!(clash.code(), 409, "{clash:?}");
    // UDP has ports of its own.
    create(
        &engine,
        "Listener",
        "dns",
        json!({"loadBalancerId": "lb", "protocol": "UDP", "protocolPort": 80}),
    )
    .await
    .unwrap();
    let second = create(
        &engine,
        "Pool",
        "second",
        json!({"listenerId": "http", "protocol": "HTTP", "lbAlgorithm": "ROUND_ROBIN"}),
    )
    .await
    .unwrap_err();
    assert_eq!(second.code(), 409, "{second:?}");
    let mismatch = create(
        &engine,
        "Pool",
        "udp",
        json!({"listenerId": "dns", "protocol": "HTTP", "lbAlgorithm": "ROUND_ROBIN"}),
    )
    .await
    .unwrap_err();
    assert_eq!(mismatch.code(), 400, "{mismatch:?}");
    let orphan = create(
        &engine,
        "Pool",
        "orphan",
        json!({"protocol": "HTTP", "lbAlgorithm": "ROUND_ROBIN"}),
    )
    .await
    .unwrap_err();
    assert_eq!(orphan.code(), 400);
    // PROXY pools carry TCP or HTTP after their header: not behind a UDP listener, and
    // without cookie persistence (the proxy reads no cookie for them).
    let proxy_on_udp = create(
        &engine,
        "Pool",
        "proxy-udp",
        json!({"listenerId": "dns", "protocol": "PROXY", "lbAlgorithm": "ROUND_ROBIN"}),
    )
    .await
    .unwrap_err();
    assert_eq!(proxy_on_udp.code(), 400, "{proxy_on_udp:?}");
    create(
        &engine,
        "Pool",
        "proxy",
        json!({"loadBalancerId": "lb", "protocol": "PROXYV2", "lbAlgorithm": "ROUND_ROBIN"}),
    )
    .await
    .unwrap();
    // A PROXY pool behind an HTTP listener keeps cookie persistence; a TCP pool, whose
    // bytes are relayed as they are, cannot. TLS to members (Octavia's tls_enabled) is
    // for every pool but UDP ones.
    let cookie = ("sessionPersistence", json!({"type": "HTTP_COOKIE"}));
    let tls = ("tlsEnabled", json!(true));
    for (name, protocol, (field, value), taken) in [
        ("proxy-cookie", "PROXY", cookie.clone(), true),
        ("tcp-cookie", "TCP", cookie, false),
        ("tls-http", "HTTP", tls.clone(), true),
        ("tls-udp", "UDP", tls, false),
    ] {
        let mut spec = json!({
            "loadBalancerId": "lb", "protocol": protocol, "lbAlgorithm": "ROUND_ROBIN",
        });
        spec[field] = value.clone();
        match create(&engine, "Pool", name, spec).await {
            Ok(pool) => {
                assert!(taken, "{field} on a {protocol} pool was taken");
                assert_eq!(pool["spec"][field], value);
            }
            // Invalid in Kubernetes' words; the Octavia face answers it 400.
            Err(error) => assert!(!taken && error.code() == 422, "{protocol}: {error:?}"),
        }
    }
}

#[tokio::test]
async fn members_must_be_where_the_vip_reaches_and_unique_in_their_pool() {
    let engine = engine().await;
    basics(&engine).await;
    let member = create(
        &engine,
        "Member",
        "m1",
        json!({"poolId": "pool", "address": "10.1.0.10", "protocolPort": 8080}),
    )
    .await
    .unwrap();
    assert!(!member["spec"]["subnetId"].as_str().unwrap().is_empty());
    assert_eq!(member["spec"]["weight"], 1);
    let duplicate = create(
        &engine,
        "Member",
        "m2",
        json!({"poolId": "pool", "address": "10.1.0.10", "protocolPort": 8080}),
    )
    .await
    .unwrap_err();
    assert_eq!(duplicate.code(), 409);
    let outside = create(
        &engine,
        "Member",
        "m3",
        json!({"poolId": "pool", "address": "192.168.9.9", "protocolPort": 80}),
    )
    .await
    .unwrap_err();
    assert_eq!(outside.code(), 400);
    assert!(format!("{outside:?}").contains("not on any subnet reachable"));

    // A network joined to the VIP's by a router is reachable.
    create_in(&engine, NET, "Network", "app", json!({}))
        .await
        .unwrap();
    create_in(
        &engine,
        NET,
        "Subnet",
        "app",
        json!({"networkId": "app", "cidr": "10.2.0.0/24"}),
    )
    .await
    .unwrap();
    let unrouted = create(
        &engine,
        "Member",
        "m4",
        json!({"poolId": "pool", "address": "10.2.0.5", "protocolPort": 80}),
    )
    .await
    .unwrap_err();
    assert_eq!(unrouted.code(), 400);
    let router = create_in(&engine, NET, "Router", "r", json!({}))
        .await
        .unwrap();
    for (name, network, subnet) in [("r-web", "web", "web"), ("r-app", "app", "app")] {
        let subnet_uid = {
            let kind = engine.kind(NET, "Subnet").unwrap();
            uid(&engine.get(&kind, Some("a"), subnet).await.unwrap())
        };
        create_in(
            &engine,
            NET,
            "Port",
            name,
            json!({
                "networkId": network,
                "fixedIps": [{"subnetId": subnet_uid}],
                "deviceOwner": "network:router_interface",
                "deviceId": uid(&router),
            }),
        )
        .await
        .unwrap();
    }
    create(
        &engine,
        "Member",
        "m4",
        json!({"poolId": "pool", "address": "10.2.0.5", "protocolPort": 80}),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn bad_monitors_rules_and_certificates_are_refused() {
    let engine = engine().await;
    basics(&engine).await;
    let slow = create(
        &engine,
        "HealthMonitor",
        "slow",
        json!({"poolId": "pool", "type": "HTTP", "delay": 2, "timeout": 5, "maxRetries": 2}),
    )
    .await
    .unwrap_err();
    assert_eq!(slow.code(), 422, "{slow:?}");
    assert!(format!("{slow:?}").contains("must not be longer than its delay"));
    let udp = create(
        &engine,
        "HealthMonitor",
        "udp",
        json!({"poolId": "pool", "type": "UDP-CONNECT", "delay": 5, "timeout": 2, "maxRetries": 2}),
    )
    .await
    .unwrap_err();
    assert_eq!(udp.code(), 400, "{udp:?}");
    create(
        &engine,
        "HealthMonitor",
        "ok",
        json!({"poolId": "pool", "type": "HTTP", "delay": 5, "timeout": 2, "maxRetries": 2, "urlPath": "/health"}),
    )
    .await
    .unwrap();
    let second = create(
        &engine,
        "HealthMonitor",
        "second",
        json!({"poolId": "pool", "type": "TCP", "delay": 5, "timeout": 2, "maxRetries": 2}),
    )
    .await
    .unwrap_err();
    assert_eq!(second.code(), 409);

    create(
        &engine,
        "L7Policy",
        "api",
        json!({"listenerId": "http", "action": "REJECT"}),
    )
    .await
    .unwrap();
    let regex = create(
        &engine,
        "L7Rule",
        "bad",
        json!({"l7PolicyId": "api", "type": "PATH", "compareType": "REGEX", "value": "^/api(["}),
    )
    .await
    .unwrap_err();
    assert_eq!(regex.code(), 422);
    assert!(format!("{regex:?}").contains("invalid regex"), "{regex:?}");
    let keyless = create(
        &engine,
        "L7Rule",
        "keyless",
        json!({"l7PolicyId": "api", "type": "HEADER", "compareType": "EQUAL_TO", "value": "x"}),
    )
    .await
    .unwrap_err();
    assert_eq!(keyless.code(), 422);
    let rule = create(
        &engine,
        "L7Rule",
        "good",
        json!({"l7PolicyId": "api", "type": "PATH", "compareType": "STARTS_WITH", "value": "/api"}),
    )
    .await
    .unwrap();
    assert!(!rule["spec"]["listenerId"].as_str().unwrap().is_empty());

    // TERMINATED_HTTPS: a certificate from a Secret that parses, or a 400.
    let secrets = engine.kind("v1", "Secret").unwrap();
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let generated = rcgen::generate_simple_self_signed(vec!["lb.example".into()]).unwrap();
    for (name, certificate) in [
        ("good", generated.cert.pem()),
        (
            "garbage",
            "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n".into(),
        ),
    ] {
        engine
            .create(
                &secrets,
                Some("a"),
                json!({"metadata": {"name": name}, "type": "kubernetes.io/tls", "data": {
                    "tls.crt": encode(&certificate),
                    "tls.key": encode(&generated.signing_key.serialize_pem()),
                }}),
                &WriteOptions::default(),
            )
            .await
            .unwrap();
    }
    let https = |reference: &str, port: u16| {
        json!({"loadBalancerId": "lb", "protocol": "TERMINATED_HTTPS", "protocolPort": port,
               "defaultTlsContainerRef": reference})
    };
    for (reference, port) in [("garbage", 443), ("missing", 444)] {
        let refused = create(&engine, "Listener", "https", https(reference, port))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), 400, "{reference}: {refused:?}");
    }
    create(
        &engine,
        "Listener",
        "https",
        https("https://barbican.example/v1/containers/good", 443),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn the_tree_becomes_the_proxys_configuration() {
    let engine = engine().await;
    let (lb, listener, pool) = basics(&engine).await;
    create(
        &engine,
        "Pool",
        "api",
        json!({"loadBalancerId": "lb", "protocol": "HTTP", "lbAlgorithm": "LEAST_CONNECTIONS"}),
    )
    .await
    .unwrap();
    for (name, address, backup) in [("a", "10.1.0.10", false), ("b", "10.1.0.11", true)] {
        create(
            &engine,
            "Member",
            name,
            json!({"poolId": "pool", "address": address, "protocolPort": 8080, "backup": backup}),
        )
        .await
        .unwrap();
    }
    create(
        &engine,
        "HealthMonitor",
        "hm",
        json!({"poolId": "pool", "type": "HTTP", "delay": 3, "timeout": 1, "maxRetries": 2}),
    )
    .await
    .unwrap();
    // Appended, then one inserted at position 1: it goes first.
    for (name, position) in [("first", None), ("second", None), ("inserted", Some(1))] {
        let mut spec =
            json!({"listenerId": "http", "action": "REDIRECT_TO_POOL", "redirectPoolId": "api"});
        if let Some(position) = position {
            spec["position"] = json!(position);
        }
        create(&engine, "L7Policy", name, spec).await.unwrap();
        create(
            &engine,
            "L7Rule",
            &format!("{name}-rule"),
            json!({"l7PolicyId": name, "type": "PATH", "compareType": "STARTS_WITH", "value": "/api"}),
        )
        .await
        .unwrap();
    }
    let tree = super::tree_of(&engine, &lb).await.unwrap();
    assert_eq!(tree.listeners.len(), 1);
    assert_eq!(tree.pools.len(), 2);
    assert_eq!(tree.members.len(), 2);
    assert_eq!(tree.policies.len(), 3);
    assert_eq!(tree.rules.len(), 3);
    let order: Vec<&str> = policies_in_order(&uid(&listener), &tree.policies)
        .into_iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["inserted", "first", "second"]);

    let vip = vip_of(&lb).unwrap();
    let config = proxy_config(&tree, vip, &TlsSecrets::default());
    config.validate().expect("a valid configuration");
    let served = &config.listeners[0];
    assert_eq!(served.protocol, ListenerProtocol::Http);
    assert_eq!(served.bind, std::net::SocketAddr::new(vip, 80));
    assert_eq!(served.default_pool_id.as_deref(), Some(uid(&pool).as_str()));
    assert_eq!(served.l7_policies.len(), 3);
    assert_eq!(served.l7_policies[0].position, 1);
    let pool = config.pool(&uid(&pool)).unwrap();
    assert_eq!(pool.members.len(), 2);
    assert!(pool.members.iter().any(|m| m.backup));
    let monitor = pool.health_monitor.as_ref().unwrap();
    assert_eq!(monitor.monitor_type, MonitorType::Http);
    assert_eq!((monitor.delay_ms, monitor.timeout_ms), (3000, 1000));

    // A load balancer that is down serves nothing.
    let mut down = tree.clone();
    down.load_balancer["spec"]["adminStateUp"] = json!(false);
    assert!(
        proxy_config(&down, vip, &TlsSecrets::default())
            .listeners
            .is_empty()
    );

    // A TERMINATED_HTTPS listener's certificates are found by the Secret names its
    // references end with; if one was not read, it gets none (and the proxy refuses it).
    let mut secure = tree.clone();
    let spec = &mut secure.listeners[0]["spec"];
    spec["protocol"] = json!("TERMINATED_HTTPS");
    spec["defaultTlsContainerRef"] = json!("https://key-manager/v1/containers/web-tls/");
    spec["sniContainerRefs"] = json!(["a-tls"]);
    let certificate = |name: &str| ronghe_proxy::config::TlsCertificate {
        certificate_pem: format!("{name} certificate"),
        private_key_pem: format!("{name} key"),
    };
    let mut secrets = TlsSecrets {
        certificates: BTreeMap::from([
            ("web-tls".to_owned(), certificate("web")),
            ("a-tls".to_owned(), certificate("a")),
        ]),
        ..TlsSecrets::default()
    };
    let served = proxy_config(&secure, vip, &secrets).listeners.remove(0);
    assert_eq!(served.tls, Some(certificate("web")));
    assert_eq!(served.sni, [certificate("a")]);
    assert_eq!(served.tls_settings, TlsSettings::default());
    assert_eq!(served.client_authentication, None);

    // Its TLS settings, and its client CA and CRL from the Secrets named; one that was
    // not read leaves an empty PEM, which the proxy refuses.
    let spec = &mut secure.listeners[0]["spec"];
    spec["tlsVersions"] = json!(["TLSv1.3"]);
    spec["alpnProtocols"] = json!(["http/1.1"]);
    spec["tlsCiphers"] = json!("TLS_AES_256_GCM_SHA384");
    spec["clientAuthentication"] = json!("OPTIONAL");
    spec["clientCaTlsContainerRef"] = json!("clients");
    spec["clientCrlContainerRef"] = json!("https://key-manager/v1/secrets/clients");
    secrets
        .cas
        .insert("clients".to_owned(), "the CA".to_owned());
    let served = proxy_config(&secure, vip, &secrets).listeners.remove(0);
    assert_eq!(
        served.tls_settings,
        TlsSettings {
            versions: vec![TlsVersion::Tls13],
            ciphers: Some("TLS_AES_256_GCM_SHA384".to_owned()),
            alpn_protocols: vec!["http/1.1".to_owned()],
        }
    );
    assert_eq!(
        served.client_authentication,
        Some(ClientAuthentication {
            mandatory: false,
            ca_pem: "the CA".to_owned(),
            crl_pem: Some(String::new()),
        })
    );
    secure.listeners[0]["spec"]["clientAuthentication"] = json!("NONE");
    let served = proxy_config(&secure, vip, &secrets).listeners.remove(0);
    assert_eq!(served.client_authentication, None);

    secure.listeners[0]["spec"]["sniContainerRefs"] = json!(["a-tls", "gone"]);
    let served = proxy_config(&secure, vip, &secrets).listeners.remove(0);
    assert_eq!((served.tls, served.sni), (None, vec![]));
}

#[tokio::test]
async fn a_listener_checks_client_certificates_against_a_ca_from_a_secret() {
    let engine = engine().await;
    basics(&engine).await;
    let secrets = engine.kind("v1", "Secret").unwrap();
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let server = rcgen::generate_simple_self_signed(vec!["lb.example".into()]).unwrap();
    let authority = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        let crl = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2025, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&rcgen::Issuer::new(params, key))
        .unwrap()
        .pem()
        .unwrap();
        (pem, crl)
    };
    let (ca, crl) = authority("Shop CA");
    let (_, other_crl) = authority("Other CA");
    for (name, data) in [
        (
            "web-tls",
            json!({"tls.crt": encode(&server.cert.pem()),
                   "tls.key": encode(&server.signing_key.serialize_pem())}),
        ),
        (
            "clients",
            json!({"ca.crt": encode(&ca), "ca.crl": encode(&crl)}),
        ),
        ("other-crl", json!({"ca.crl": encode(&other_crl)})),
        ("broken-ca", json!({"ca.crt": encode("not a certificate")})),
    ] {
        engine
            .create(
                &secrets,
                Some("a"),
                json!({"metadata": {"name": name}, "data": data}),
                &WriteOptions::default(),
            )
            .await
            .unwrap();
    }
    let listener = |port: u16, extra: Value| {
        let mut spec = json!({"loadBalancerId": "lb", "protocol": "TERMINATED_HTTPS",
                              "protocolPort": port, "defaultTlsContainerRef": "web-tls",
                              "clientAuthentication": "MANDATORY"});
        for (key, value) in extra.as_object().unwrap() {
            spec[key] = value.clone();
        }
        spec
    };
    for (extra, says) in [
        (
            json!({}),
            "Client authentication setting MANDATORY requires a client CA container reference.",
        ),
        (
            json!({"clientCaTlsContainerRef": "missing"}),
            "Could not retrieve certificate: ['missing']",
        ),
        (
            json!({"clientCaTlsContainerRef": "web-tls"}),
            "Could not retrieve certificate: the secret has no ca.crt",
        ),
        (
            json!({"clientCaTlsContainerRef": "broken-ca"}),
            "The client authentication CA certificate is invalid",
        ),
        (
            json!({"clientCaTlsContainerRef": "clients", "clientCrlContainerRef": "other-crl"}),
            "The CRL specified is not valid for client certificate authority reference supplied.",
        ),
        (
            json!({"clientCrlContainerRef": "clients", "clientAuthentication": "NONE"}),
            "A client authentication CA reference is required to specify a client authentication revocation list.",
        ),
        (
            json!({"clientCaTlsContainerRef": "clients", "tlsVersions": ["TLSv1.1", "TLSv1.2"]}),
            "TLS versions TLSv1.1 are not supported",
        ),
        (
            json!({"clientCaTlsContainerRef": "clients", "tlsVersions": []}),
            "Empty TLS version list.",
        ),
        (
            json!({"clientCaTlsContainerRef": "clients", "alpnProtocols": ["spdy/3"]}),
            "Value should be a valid ALPN protocol ID",
        ),
        (
            json!({"clientCaTlsContainerRef": "clients", "tlsCiphers": "DHE-RSA-AES128-SHA"}),
            "names none of the cipher suites the proxy has",
        ),
        (
            json!({"clientCaTlsContainerRef": "clients", "tlsCiphers": "AES128 SHA"}),
            "Invalid characters in cipher string.",
        ),
    ] {
        let refused = create(&engine, "Listener", "secure", listener(443, extra.clone()))
            .await
            .unwrap_err();
        assert!(
            refused.code() == 400 || refused.code() == 422,
            "{extra}: {refused:?}"
        );
        assert!(
            refused.to_string().contains(says),
            "{extra}: expected {says:?} in {refused}"
        );
    }
    // Settings and client authentication are for TERMINATED_HTTPS listeners only.
    for extra in [
        json!({"tlsVersions": ["TLSv1.3"]}),
        json!({"insertHeaders": {"X-SSL-Client-DN": "true"}}),
    ] {
        let mut spec = json!({"loadBalancerId": "lb", "protocol": "HTTP", "protocolPort": 8080});
        for (key, value) in extra.as_object().unwrap() {
            spec[key] = value.clone();
        }
        let refused = create(&engine, "Listener", "plain", spec)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), 422, "{extra}: {refused:?}");
    }

    create(
        &engine,
        "Listener",
        "secure",
        listener(
            443,
            json!({"clientCaTlsContainerRef": "clients", "clientCrlContainerRef": "clients",
                   "tlsVersions": ["TLSv1.2", "TLSv1.3"],
                   "tlsCiphers": "ECDHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES128-GCM-SHA256",
                   "insertHeaders": {"X-SSL-Client-CN": "true"}}),
        ),
    )
    .await
    .unwrap();

    // A TLS pool checks its members against a CA from a Secret and shows them a
    // certificate from another.
    let pool = |extra: Value| {
        let mut spec = json!({"loadBalancerId": "lb", "protocol": "HTTP",
                              "lbAlgorithm": "ROUND_ROBIN", "tlsEnabled": true});
        for (key, value) in extra.as_object().unwrap() {
            spec[key] = value.clone();
        }
        spec
    };
    for (extra, says) in [
        (
            json!({"crlContainerRef": "clients"}),
            "A CA certificate reference is required to specify a revocation list.",
        ),
        (
            json!({"caTlsContainerRef": "clients", "crlContainerRef": "other-crl"}),
            "The CRL specified is not valid for client certificate authority reference supplied.",
        ),
        (
            json!({"caTlsContainerRef": "broken-ca"}),
            "CA certificate is invalid",
        ),
        (
            json!({"tlsContainerRef": "clients"}),
            "Could not retrieve certificate: the secret has no tls.crt",
        ),
        (
            json!({"alpnProtocols": ["h2"]}),
            "ALPN protocol \"h2\" is not one a pool offers its members",
        ),
        (
            json!({"tlsVersions": ["TLSv1"]}),
            "TLS versions TLSv1 are not supported",
        ),
    ] {
        let refused = create(&engine, "Pool", "members", pool(extra.clone()))
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains(says),
            "{extra}: expected {says:?} in {refused}"
        );
    }
    let made = create(
        &engine,
        "Pool",
        "members",
        pool(
            json!({"caTlsContainerRef": "clients", "crlContainerRef": "clients",
                    "tlsContainerRef": "web-tls", "alpnProtocols": ["http/1.1"],
                    "tlsVersions": ["TLSv1.3"]}),
        ),
    )
    .await
    .unwrap();
    let spec: PoolSpec = ronghe_api_types::loadbalancing::spec_of(&made);
    let secrets = TlsSecrets {
        cas: BTreeMap::from([("clients".to_owned(), ca.clone())]),
        ..TlsSecrets::default()
    };
    let lb = engine
        .get(
            &engine.kind(API_VERSION, "LoadBalancer").unwrap(),
            Some("a"),
            "lb",
        )
        .await
        .unwrap();
    let tree = super::tree_of(&engine, &lb).await.unwrap();
    let config = proxy_config(&tree, vip_of(&lb).unwrap(), &secrets);
    let served = config.pool(&uid(&made)).unwrap();
    assert!(served.tls_enabled);
    assert_eq!(served.member_tls.ca_pem.as_deref(), Some(ca.as_str()));
    // Secrets not read: empty, which the proxy refuses rather than serve unchecked.
    assert_eq!(served.member_tls.crl_pem.as_deref(), Some(""));
    assert_eq!(
        served
            .member_tls
            .certificate
            .as_ref()
            .map(|c| c.certificate_pem.as_str()),
        Some("")
    );
    assert_eq!(served.member_tls.settings.versions, [TlsVersion::Tls13]);
    assert_eq!(spec.alpn_protocols, Some(vec!["http/1.1".to_owned()]));
}
