//! Pools with `tls_enabled` (Octavia's re-encryption to members): member connections are
//! TLS, whichever path a client takes, and health checks follow HAProxy's rule.

use std::collections::BTreeSet;

use ronghe_proxy::config::{ListenerProtocol, PoolProtocol, TlsCertificate};
use ronghe_proxy::health::OperatingStatus;
use ronghe_proxy::{Proxy, ProxyConfig};

use tokio::net::TcpStream;

use super::support::http::{
    Client, either_http_echo_backend, exchange_raw, http_echo_backend, tls_client,
    tls_http_echo_backend,
};
use super::support::{Backend, http_monitor, listener, pool, wait_for_status};

fn tls_pool_config(protocol: ListenerProtocol, backends: &[&Backend]) -> ProxyConfig {
    let pool_protocol = match protocol {
        ListenerProtocol::Tcp => PoolProtocol::Tcp,
        _ => PoolProtocol::Http,
    };
    let mut listener = listener("web", protocol, Some("pool"));
    listener.insert_headers.x_forwarded_for = protocol != ListenerProtocol::Tcp;
    let mut pool = pool("pool", pool_protocol, backends);
    pool.tls_enabled = true;
    ProxyConfig {
        listeners: vec![listener],
        pools: vec![pool],
    }
}

#[tokio::test]
async fn http_clients_of_both_versions_reach_tls_members() {
    let a = tls_http_echo_backend("a").await;
    let b = tls_http_echo_backend("b").await;
    let proxy = Proxy::start(tls_pool_config(ListenerProtocol::Http, &[&a, &b]))
        .await
        .unwrap();
    let address = proxy.local_addr("web").unwrap();
    let mut seen = BTreeSet::new();
    for mut client in [Client::http1(address).await, Client::http2(address).await] {
        for _ in 0..4 {
            let answer = client.get("/tls", &[]).await;
            assert_eq!(answer.status, 200, "{answer:?}");
            let described = answer.seen();
            assert_eq!(described.path, "/tls");
            assert_eq!(described.headers["x-forwarded-for"], "127.0.0.1");
            seen.insert(described.backend);
        }
    }
    assert_eq!(seen, BTreeSet::from(["a".to_owned(), "b".to_owned()]));
    proxy.shutdown().await;
}

#[tokio::test]
async fn tcp_listeners_relay_into_tls_and_plain_members_fail_the_handshake() {
    let tls = tls_http_echo_backend("tls").await;
    let proxy = Proxy::start(tls_pool_config(ListenerProtocol::Tcp, &[&tls]))
        .await
        .unwrap();
    let address = proxy.local_addr("web").unwrap();
    let answer = exchange_raw(
        address,
        b"GET /relayed HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.contains("\"path\":\"/relayed\""), "{answer}");
    proxy.shutdown().await;

    // A member that does not speak TLS fails the handshake: the pool has no member to
    // give, and the member counts the failure.
    let plain = http_echo_backend("plain").await;
    let proxy = Proxy::start(tls_pool_config(ListenerProtocol::Http, &[&plain]))
        .await
        .unwrap();
    let address = proxy.local_addr("web").unwrap();
    let answer = exchange_raw(
        address,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(proxy.stats().member("pool", "plain").request_errors >= 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn http_monitors_of_tls_pools_check_members_in_tls() {
    let tls = tls_http_echo_backend("tls").await;
    let plain = http_echo_backend("plain").await;
    let mut config = tls_pool_config(ListenerProtocol::Http, &[&tls, &plain]);
    config.pools[0].health_monitor = Some(http_monitor());
    let proxy = Proxy::start(config).await.unwrap();
    wait_for_status(&proxy, "pool", "tls", OperatingStatus::Online).await;
    wait_for_status(&proxy, "pool", "plain", OperatingStatus::Error).await;
    // Traffic goes to the member that passes.
    let mut client = Client::http1(proxy.local_addr("web").unwrap()).await;
    for _ in 0..3 {
        assert_eq!(client.get("/", &[]).await.seen().backend, "tls");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn turning_tls_on_or_off_leaves_no_idle_connection_of_the_other_kind() {
    let member = either_http_echo_backend("m").await;
    let mut config = tls_pool_config(ListenerProtocol::Http, &[&member]);
    config.pools[0].tls_enabled = false;
    let proxy = Proxy::start(config.clone()).await.unwrap();
    let address = proxy.local_addr("web").unwrap();
    let mut client = Client::http1(address).await;
    assert_eq!(client.get("/", &[]).await.seen().backend, "m in the clear");
    // The member connection waits idle for the next request; a reconfigure that turns
    // TLS on must not hand it out, nor one in TLS once TLS is off again.
    for (tls, wanted) in [(true, "m in TLS"), (false, "m in the clear")] {
        config.pools[0].tls_enabled = tls;
        proxy.reconfigure(config.clone()).await.unwrap();
        for _ in 0..2 {
            assert_eq!(client.get("/", &[]).await.seen().backend, wanted);
        }
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn tls_members_are_asked_for_the_name_the_client_asked_the_listener_for() {
    let member = tls_http_echo_backend("m").await;
    let generated =
        rcgen::generate_simple_self_signed(vec!["a.example".into(), "b.example".into()]).unwrap();
    let certificate_pem = generated.cert.pem();
    let mut config = tls_pool_config(ListenerProtocol::TerminatedHttps, &[&member]);
    config.listeners[0].tls = Some(TlsCertificate {
        certificate_pem: certificate_pem.clone(),
        private_key_pem: generated.signing_key.serialize_pem(),
    });
    let proxy = Proxy::start(config).await.unwrap();
    let address = proxy.local_addr("web").unwrap();
    // Two clients after one another, each asking for its own name over both HTTP
    // versions: the member is asked for each client's name, never for the one before
    // (the first client's member connection, idle meanwhile, serves only that client).
    for (name, alpn) in [
        ("a.example", "http/1.1"),
        ("b.example", "h2"),
        ("a.example", "h2"),
    ] {
        let connector = tokio_rustls::TlsConnector::from(tls_client(&certificate_pem, &[alpn]));
        let tcp = TcpStream::connect(address).await.unwrap();
        let server_name = rustls::pki_types::ServerName::try_from(name).unwrap();
        let tls = connector.connect(server_name, tcp).await.unwrap();
        let mut client = match alpn {
            "h2" => Client::http2_over(tls).await,
            _ => Client::http1_over(tls).await,
        };
        for _ in 0..2 {
            let seen = client.get("/", &[]).await.seen();
            assert_eq!(seen.headers["x-tls-sni"], name, "{alpn}");
        }
    }
    proxy.shutdown().await;

    // A plain HTTP listener's clients ask for no name: neither is the member.
    let proxy = Proxy::start(tls_pool_config(ListenerProtocol::Http, &[&member]))
        .await
        .unwrap();
    let mut client = Client::http1(proxy.local_addr("web").unwrap()).await;
    assert_eq!(
        client.get("/", &[]).await.seen().headers["x-tls-sni"],
        "none"
    );
    proxy.shutdown().await;
}
