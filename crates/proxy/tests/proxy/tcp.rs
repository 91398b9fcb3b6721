//! TCP listeners: balancing, health monitors taking members out and back, backups,
//! connection limits, failover and bind errors.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use ronghe_proxy::config::{LbAlgorithm, ListenerProtocol, MonitorType, PoolProtocol};
use ronghe_proxy::{OperatingStatus, Proxy, ProxyConfig, ProxyError};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use super::support::*;

#[tokio::test]
async fn round_robin_over_three_backends_reaches_all_three() {
    let backends = [
        echo_backend("a").await,
        echo_backend("b").await,
        echo_backend("c").await,
    ];
    let config = ProxyConfig {
        listeners: vec![listener("web", ListenerProtocol::Tcp, Some("pool"))],
        pools: vec![pool(
            "pool",
            PoolProtocol::Tcp,
            &[&backends[0], &backends[1], &backends[2]],
        )],
    };
    let proxy = Proxy::start(config).await.unwrap();
    let address = proxy.local_addr("web").unwrap();
    let mut counts = BTreeMap::new();
    for _ in 0..6 {
        let (name, mut connection) = greeting(address).await;
        echo_round_trip(&mut connection, "ping").await;
        *counts.entry(name).or_insert(0) += 1;
    }
    assert_eq!(
        counts,
        BTreeMap::from([("a".into(), 2), ("b".into(), 2), ("c".into(), 2)])
    );

    // Without a monitor members report NO_MONITOR.
    let statuses = proxy.member_status().borrow().clone();
    assert_eq!(statuses["pool"]["a"], OperatingStatus::NoMonitor);

    // Each connection: "ping\n" in, greeting "x\n" and "ping\n" out. The proxy counts
    // right after writing, so the last bytes may be counted just after the client saw them.
    eventually("every byte is counted", || async {
        let stats = proxy.stats();
        let listener = stats.listener("web");
        listener.total_connections == 6
            && listener.bytes_in == 6 * 5
            && listener.bytes_out == 6 * 7
            && stats.member("pool", "b").total_connections == 2
            && stats.member("pool", "b").bytes_out == 2 * 7
    })
    .await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn tcp_monitor_takes_a_killed_backend_out_and_back() {
    let a = echo_backend("a").await;
    let b = echo_backend("b").await;
    let mut pool = pool("pool", PoolProtocol::Tcp, &[&a, &b]);
    pool.health_monitor = Some(monitor(MonitorType::Tcp));
    let config = ProxyConfig {
        listeners: vec![listener("l", ListenerProtocol::Tcp, Some("pool"))],
        pools: vec![pool],
    };
    let proxy = Proxy::start(config).await.unwrap();
    let address = proxy.local_addr("l").unwrap();
    wait_for_status(&proxy, "pool", "b", OperatingStatus::Online).await;

    let b = b.kill().await;
    wait_for_status(&proxy, "pool", "b", OperatingStatus::Error).await;
    for _ in 0..6 {
        assert_eq!(greeting_name(address).await, "a");
    }

    let _b = echo_backend_on("b", b.revive());
    wait_for_status(&proxy, "pool", "b", OperatingStatus::Online).await;
    let mut names = Vec::new();
    for _ in 0..4 {
        names.push(greeting_name(address).await);
    }
    assert!(names.iter().any(|name| name == "b"), "{names:?}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn http_monitor_takes_out_killed_and_failing_backends() {
    let ok = || Arc::new(AtomicU16::new(200));
    let a_status = ok();
    let a = http_backend("a", Arc::clone(&a_status));
    let b = http_backend("b", ok());
    let mut pool = pool("pool", PoolProtocol::Tcp, &[&a, &b]);
    let mut http = http_monitor();
    http.url_path = Some("/health".into());
    http.expected_codes = Some("200-204".into());
    pool.health_monitor = Some(http);
    let config = ProxyConfig {
        listeners: vec![listener("l", ListenerProtocol::Tcp, Some("pool"))],
        pools: vec![pool],
    };
    let proxy = Proxy::start(config).await.unwrap();

    let b = b.kill().await;
    wait_for_status(&proxy, "pool", "b", OperatingStatus::Error).await;
    let _b = http_backend_on("b", b.revive(), ok());
    wait_for_status(&proxy, "pool", "b", OperatingStatus::Online).await;

    a_status.store(503, Ordering::Relaxed);
    wait_for_status(&proxy, "pool", "a", OperatingStatus::Error).await;
    a_status.store(204, Ordering::Relaxed);
    wait_for_status(&proxy, "pool", "a", OperatingStatus::Online).await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn backup_serves_only_while_every_normal_member_is_down() {
    let a = echo_backend("a").await;
    let b = echo_backend("b").await;
    let backup = echo_backend("backup").await;
    let mut pool = pool("pool", PoolProtocol::Tcp, &[&a, &b, &backup]);
    pool.members[2].backup = true;
    pool.health_monitor = Some(monitor(MonitorType::Tcp));
    let config = ProxyConfig {
        listeners: vec![listener("l", ListenerProtocol::Tcp, Some("pool"))],
        pools: vec![pool],
    };
    let proxy = Proxy::start(config).await.unwrap();
    let address = proxy.local_addr("l").unwrap();
    for _ in 0..4 {
        assert_ne!(greeting_name(address).await, "backup");
    }

    let _a = a.kill().await;
    wait_for_status(&proxy, "pool", "a", OperatingStatus::Error).await;
    assert_eq!(greeting_name(address).await, "b");
    let _b = b.kill().await;
    wait_for_status(&proxy, "pool", "b", OperatingStatus::Error).await;
    for _ in 0..3 {
        assert_eq!(greeting_name(address).await, "backup");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_at_once() {
    let a = echo_backend("a").await;
    let mut listener = listener("l", ListenerProtocol::Tcp, Some("pool"));
    listener.connection_limit = Some(2);
    let config = ProxyConfig {
        listeners: vec![listener],
        pools: vec![pool("pool", PoolProtocol::Tcp, &[&a])],
    };
    let proxy = Proxy::start(config).await.unwrap();
    let address = proxy.local_addr("l").unwrap();
    let (_, mut first) = greeting(address).await;
    let (_, second) = greeting(address).await;
    assert!(
        closed_without_data(address).await,
        "a third connection is refused"
    );
    echo_round_trip(&mut first, "still served").await;

    drop(second);
    eventually("the closed connection frees its slot", || async {
        proxy.stats().listener("l").active_connections < 2
    })
    .await;
    let (name, mut third) = greeting(address).await;
    assert_eq!(name, "a");
    echo_round_trip(&mut third, "now served").await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_member_that_refuses_is_skipped_for_another() {
    let a = echo_backend("a").await;
    let (_reserved, dead) = refusing_address();
    let mut pool = pool("pool", PoolProtocol::Tcp, &[&a]);
    pool.members.insert(0, member_at("dead", dead));
    let config = ProxyConfig {
        listeners: vec![listener("l", ListenerProtocol::Tcp, Some("pool"))],
        pools: vec![pool],
    };
    let proxy = Proxy::start(config).await.unwrap();
    let address = proxy.local_addr("l").unwrap();
    for _ in 0..4 {
        assert_eq!(greeting_name(address).await, "a");
    }
    assert!(proxy.stats().member("pool", "dead").request_errors >= 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_busy_port_is_a_typed_bind_error() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut listener = listener("l", ListenerProtocol::Tcp, None);
    listener.bind = taken.local_addr().unwrap();
    let config = ProxyConfig {
        listeners: vec![listener],
        pools: vec![],
    };
    match Proxy::start(config).await {
        Err(ProxyError::Bind {
            listener, address, ..
        }) => {
            assert_eq!(listener, "l");
            assert_eq!(address, taken.local_addr().unwrap());
        }
        other => panic!("expected a bind error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_listener_without_members_closes_connections() {
    let config = ProxyConfig {
        listeners: vec![listener("l", ListenerProtocol::Tcp, Some("pool"))],
        pools: vec![pool("pool", PoolProtocol::Tcp, &[])],
    };
    let proxy = Proxy::start(config).await.unwrap();
    assert!(closed_without_data(proxy.local_addr("l").unwrap()).await);
    eventually("the failure is counted", || async {
        proxy.stats().listener("l").request_errors == 1
    })
    .await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn least_connections_sends_new_connections_to_the_idlest_member() {
    let a = echo_backend("a").await;
    let b = echo_backend("b").await;
    let mut pool = pool("pool", PoolProtocol::Tcp, &[&a, &b]);
    pool.lb_algorithm = LbAlgorithm::LeastConnections;
    let config = ProxyConfig {
        listeners: vec![listener("l", ListenerProtocol::Tcp, Some("pool"))],
        pools: vec![pool],
    };
    let proxy = Proxy::start(config).await.unwrap();
    let address = proxy.local_addr("l").unwrap();
    let (first_name, first) = greeting(address).await;
    let (second_name, _second) = greeting(address).await;
    assert_ne!(first_name, second_name, "the busy member is avoided");
    drop(first);
    eventually("the first member's connection is closed", || async {
        proxy.stats().member("pool", &first_name).active_connections == 0
    })
    .await;
    let (name, _third) = greeting(address).await;
    assert_eq!(
        name, first_name,
        "the member with no connection takes the next"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn https_passthrough_relays_bytes_like_tcp() {
    let a = echo_backend("a").await;
    let config = ProxyConfig {
        listeners: vec![listener("tls", ListenerProtocol::Https, Some("pool"))],
        pools: vec![pool("pool", PoolProtocol::Https, &[&a])],
    };
    let proxy = Proxy::start(config).await.unwrap();
    let (name, mut connection) = greeting(proxy.local_addr("tls").unwrap()).await;
    assert_eq!(name, "a");
    echo_round_trip(&mut connection, "\u{16}\u{3}\u{1} opaque bytes").await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_data_timeout() {
    let a = echo_backend("a").await;
    let mut listener = listener("l", ListenerProtocol::Tcp, Some("pool"));
    listener.timeout_client_data = 200;
    let config = ProxyConfig {
        listeners: vec![listener],
        pools: vec![pool("pool", PoolProtocol::Tcp, &[&a])],
    };
    let proxy = Proxy::start(config).await.unwrap();
    let (_, mut idle) = greeting(proxy.local_addr("l").unwrap()).await;
    let mut buffer = [0u8; 8];
    let read = tokio::time::timeout(DEADLINE, idle.read(&mut buffer))
        .await
        .expect("the proxy closes an idle connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    proxy.shutdown().await;
}
