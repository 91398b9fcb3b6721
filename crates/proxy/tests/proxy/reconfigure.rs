//! Reconfiguring a serving proxy: established connections survive, bad configurations are
//! refused without effect, removed listeners drain, shutdown ends everything.

use ronghe_proxy::config::{ListenerProtocol, MonitorType, PoolProtocol};
use ronghe_proxy::{ConfigError, OperatingStatus, Proxy, ProxyConfig, ProxyError};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use super::support::*;

#[tokio::test]
async fn adding_a_member_keeps_a_long_lived_connection_and_the_socket() {
    let a = echo_backend("a").await;
    let b = echo_backend("b").await;
    let mut config = ProxyConfig {
        listeners: vec![listener("l", ListenerProtocol::Tcp, Some("pool"))],
        pools: vec![pool("pool", PoolProtocol::Tcp, &[&a])],
    };
    let proxy = Proxy::start(config.clone()).await.unwrap();
    let address = proxy.local_addr("l").unwrap();
    let (name, mut long_lived) = greeting(address).await;
    assert_eq!(name, "a");

    config.pools[0].members.push(member(&b));
    proxy.reconfigure(config.clone()).await.unwrap();
    assert_eq!(proxy.local_addr("l"), Some(address), "the socket was kept");
    assert_eq!(*proxy.config(), config);
    echo_round_trip(&mut long_lived, "still here").await;

    let mut names = Vec::new();
    for _ in 0..4 {
        names.push(greeting_name(address).await);
    }
    assert!(names.iter().any(|name| name == "b"), "{names:?}");

    // Removing the member the long-lived connection uses does not cut it either.
    config.pools[0].members.remove(0);
    proxy.reconfigure(config).await.unwrap();
    echo_round_trip(&mut long_lived, "and still").await;
    for _ in 0..3 {
        assert_eq!(greeting_name(address).await, "b");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_invalid_configuration_is_refused_and_the_old_one_serves_on() {
    let a = echo_backend("a").await;
    let config = ProxyConfig {
        listeners: vec![listener("l", ListenerProtocol::Tcp, Some("pool"))],
        pools: vec![pool("pool", PoolProtocol::Tcp, &[&a])],
    };
    let proxy = Proxy::start(config.clone()).await.unwrap();
    let address = proxy.local_addr("l").unwrap();
    let (_, mut open) = greeting(address).await;

    let mut broken = config.clone();
    broken.listeners[0].default_pool_id = Some("missing".into());
    broken.pools[0].members.clear();
    let error = proxy.reconfigure(broken).await.unwrap_err();
    assert!(
        matches!(
            &error,
            ProxyError::InvalidConfig(ConfigError::UnknownPool { pool, .. }) if pool == "missing"
        ),
        "{error:?}"
    );
    assert_eq!(*proxy.config(), config);
    echo_round_trip(&mut open, "unaffected").await;
    assert_eq!(greeting_name(address).await, "a");

    // A connection limit too large for any semaphore used to pass validation and panic
    // halfway through the commit, closing every listener.
    let mut huge_limit = config.clone();
    huge_limit.listeners[0].connection_limit = Some(i64::MAX);
    huge_limit
        .listeners
        .push(listener("new", ListenerProtocol::Tcp, Some("pool")));
    huge_limit.listeners[1].connection_limit = Some(1 << 62);
    let error = proxy.reconfigure(huge_limit).await.unwrap_err();
    assert!(
        matches!(
            &error,
            ProxyError::InvalidConfig(ConfigError::InvalidListener { listener, .. }) if listener == "l"
        ),
        "{error:?}"
    );
    assert_eq!(*proxy.config(), config);
    echo_round_trip(&mut open, "still unaffected").await;
    assert_eq!(greeting_name(address).await, "a");

    // A configuration that validates but cannot bind is refused just as cleanly, and its
    // new listener and member leave no counters behind.
    let b = echo_backend("b").await;
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut unbindable = config.clone();
    let mut second = listener("second", ListenerProtocol::Tcp, Some("pool"));
    second.bind = taken.local_addr().unwrap();
    unbindable.listeners.push(second);
    unbindable.listeners[0].connection_limit = Some(5);
    unbindable.pools[0].members.push(member(&b));
    assert!(matches!(
        proxy.reconfigure(unbindable).await,
        Err(ProxyError::Bind { listener, .. }) if listener == "second"
    ));
    assert_eq!(*proxy.config(), config);
    assert_eq!(proxy.local_addr("second"), None);
    let stats = proxy.stats();
    assert_eq!(
        stats.listeners.keys().collect::<Vec<_>>(),
        ["l"],
        "{stats:?}"
    );
    assert_eq!(
        stats.members["pool"].keys().collect::<Vec<_>>(),
        ["a"],
        "{stats:?}"
    );
    for _ in 0..3 {
        assert_eq!(greeting_name(address).await, "a");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_removed_listener_stops_accepting_and_its_connections_drain() {
    let a = echo_backend("a").await;
    let config = ProxyConfig {
        listeners: vec![
            listener("old", ListenerProtocol::Tcp, Some("pool")),
            listener("stays", ListenerProtocol::Tcp, Some("pool")),
        ],
        pools: vec![pool("pool", PoolProtocol::Tcp, &[&a])],
    };
    let proxy = Proxy::start(config.clone()).await.unwrap();
    let old_address = proxy.local_addr("old").unwrap();
    let stays_address = proxy.local_addr("stays").unwrap();
    let (_, mut draining) = greeting(old_address).await;

    let mut smaller = config;
    smaller.listeners.remove(0);
    proxy.reconfigure(smaller).await.unwrap();
    // The closed port itself is not probed: once released, anyone may bind it.
    assert_eq!(proxy.local_addr("old"), None);
    assert_eq!(proxy.local_addr("stays"), Some(stays_address));
    echo_round_trip(&mut draining, "draining").await;
    assert!(!proxy.stats().listeners.contains_key("old"));
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_listener_moving_ports_with_another_taking_its_old_port() {
    let a = echo_backend("a").await;
    let b = echo_backend("b").await;
    // Fixed ports are needed here, and the proxy must bind them itself: find two free
    // ones and release them. Another process may take one in between, so a bind error
    // means trying again with fresh ports, never a failed test.
    for attempt in 1..=5 {
        let ports = {
            let first = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let second = TcpListener::bind("127.0.0.1:0").await.unwrap();
            [first.local_addr().unwrap(), second.local_addr().unwrap()]
        };
        let mut to_a = listener("to-a", ListenerProtocol::Tcp, Some("pool-a"));
        to_a.bind = ports[0];
        let config = ProxyConfig {
            listeners: vec![to_a],
            pools: vec![
                pool("pool-a", PoolProtocol::Tcp, &[&a]),
                pool("pool-b", PoolProtocol::Tcp, &[&b]),
            ],
        };
        let proxy = match Proxy::start(config.clone()).await {
            Ok(proxy) => proxy,
            Err(ProxyError::Bind { .. }) if attempt < 5 => continue,
            Err(error) => panic!("{error:?}"),
        };
        let (_, mut open) = greeting(ports[0]).await;

        // "to-a" moves to the second port; a new "to-b" takes over the first port's socket.
        let mut swapped = config;
        swapped.listeners[0].bind = ports[1];
        let mut to_b = listener("to-b", ListenerProtocol::Tcp, Some("pool-b"));
        to_b.bind = ports[0];
        swapped.listeners.push(to_b);
        match proxy.reconfigure(swapped).await {
            Ok(()) => {}
            Err(ProxyError::Bind { .. }) if attempt < 5 => {
                proxy.shutdown().await;
                continue;
            }
            Err(error) => panic!("{error:?}"),
        }
        assert_eq!(greeting_name(ports[0]).await, "b");
        assert_eq!(greeting_name(ports[1]).await, "a");
        echo_round_trip(&mut open, "kept").await;
        proxy.shutdown().await;
        return;
    }
}

#[tokio::test]
async fn shutdown_closes_every_connection() {
    let a = echo_backend("a").await;
    let config = ProxyConfig {
        listeners: vec![listener("l", ListenerProtocol::Tcp, Some("pool"))],
        pools: vec![pool("pool", PoolProtocol::Tcp, &[&a])],
    };
    let proxy = Proxy::start(config.clone()).await.unwrap();
    let address = proxy.local_addr("l").unwrap();
    let (_, mut open) = greeting(address).await;
    proxy.shutdown().await;
    let mut buffer = [0u8; 8];
    let read = tokio::time::timeout(DEADLINE, open.read(&mut buffer))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    // Dropping a proxy ends its connections too, without anyone waiting.
    let proxy = Proxy::start(config).await.unwrap();
    let address = proxy.local_addr("l").unwrap();
    let (_, mut open) = greeting(address).await;
    drop(proxy);
    let read = tokio::time::timeout(DEADLINE, open.read(&mut buffer))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn statuses_follow_admin_state_and_monitors_across_reconfigures() {
    let a = echo_backend("a").await;
    let b = echo_backend("b").await;
    let mut config = ProxyConfig {
        listeners: vec![listener("l", ListenerProtocol::Tcp, Some("pool"))],
        pools: vec![pool("pool", PoolProtocol::Tcp, &[&a, &b])],
    };
    config.pools[0].members[1].admin_state_up = false;
    let proxy = Proxy::start(config.clone()).await.unwrap();
    let address = proxy.local_addr("l").unwrap();
    wait_for_status(&proxy, "pool", "b", OperatingStatus::Offline).await;
    wait_for_status(&proxy, "pool", "a", OperatingStatus::NoMonitor).await;
    for _ in 0..3 {
        assert_eq!(greeting_name(address).await, "a");
    }

    config.pools[0].members[1].admin_state_up = true;
    config.pools[0].health_monitor = Some(monitor(MonitorType::Tcp));
    proxy.reconfigure(config.clone()).await.unwrap();
    wait_for_status(&proxy, "pool", "b", OperatingStatus::Online).await;
    wait_for_status(&proxy, "pool", "a", OperatingStatus::Online).await;

    config.pools.push(pool("spare", PoolProtocol::Tcp, &[&a]));
    config.pools.remove(0);
    config.listeners[0].default_pool_id = Some("spare".into());
    proxy.reconfigure(config).await.unwrap();
    let statuses = proxy.member_status().borrow().clone();
    assert!(!statuses.contains_key("pool"), "{statuses:?}");
    assert_eq!(statuses["spare"]["a"], OperatingStatus::NoMonitor);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_caller_giving_up_on_a_reconfigure_does_not_leave_it_half_done() {
    let a = echo_backend("a").await;
    let b = echo_backend("b").await;
    let config = ProxyConfig {
        listeners: vec![listener("l", ListenerProtocol::Tcp, Some("pool"))],
        pools: vec![pool("pool", PoolProtocol::Tcp, &[&a])],
    };
    let proxy = Proxy::start(config.clone()).await.unwrap();
    let address = proxy.local_addr("l").unwrap();
    let (_, mut open) = greeting(address).await;

    let mut to_b = config;
    to_b.pools[0].members = vec![member(&b)];
    // The caller polls the reconfigure once (it cannot be done yet: the apply task has
    // not run on this single-threaded runtime) and then gives up on it.
    let mut reconfigure = Box::pin(proxy.reconfigure(to_b.clone()));
    assert!(futures::poll!(&mut reconfigure).is_pending());
    drop(reconfigure);
    eventually("the reconfigure completes on its own", || async {
        *proxy.config() == to_b
    })
    .await;
    assert_eq!(greeting_name(address).await, "b");
    echo_round_trip(&mut open, "untouched").await;
    proxy.shutdown().await;
}
