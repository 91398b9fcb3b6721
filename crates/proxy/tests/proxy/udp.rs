//! UDP listeners: echo through the proxy, per-client sessions, session limits, and
//! datagrams from the node-port forwarder balanced for the client their header names.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ronghe_proxy::config::{LbAlgorithm, ListenerProtocol, MonitorType, PoolProtocol};
use ronghe_proxy::proxy_protocol::datagram_header_v2;
use ronghe_proxy::{OperatingStatus, Proxy, ProxyConfig, ProxyOptions};
use tokio::net::UdpSocket;

use super::support::*;

async fn client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.expect("client bind")
}

/// Sends `text` to the proxy and returns the answer.
async fn ask(socket: &UdpSocket, proxy: SocketAddr, text: &str) -> String {
    ask_raw(socket, proxy, text.as_bytes()).await
}

#[tokio::test]
async fn udp_echo_through_the_proxy_sticks_each_client_to_a_member() {
    let a = udp_echo_backend("a").await;
    let b = udp_echo_backend("b").await;
    let config = ProxyConfig {
        listeners: vec![listener("dns", ListenerProtocol::Udp, Some("pool"))],
        pools: vec![pool("pool", PoolProtocol::Udp, &[&a, &b])],
    };
    let proxy = Proxy::start(config).await.unwrap();
    let address = proxy.local_addr("dns").unwrap();

    let first = client().await;
    let second = client().await;
    let answer = ask(&first, address, "hello").await;
    let (member, text) = answer.split_once(':').unwrap();
    assert_eq!(text, "hello");
    for round in 0..5 {
        let again = ask(&first, address, &format!("round {round}")).await;
        assert_eq!(
            again,
            format!("{member}:round {round}"),
            "same session, same member"
        );
    }
    let other = ask(&second, address, "hi").await;
    assert_ne!(
        other.split_once(':').unwrap().0,
        member,
        "a second client is a new session, balanced to the other member"
    );

    eventually("sessions and bytes are counted", || async {
        let stats = proxy.stats().listener("dns");
        stats.active_connections == 2
            && stats.total_connections == 2
            && stats.bytes_in == (5 + 5 * 7 + 2)
    })
    .await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn udp_session_limit_drops_datagrams_of_new_clients() {
    let a = udp_echo_backend("a").await;
    let mut listener = listener("l", ListenerProtocol::Udp, Some("pool"));
    listener.connection_limit = Some(1);
    let config = ProxyConfig {
        listeners: vec![listener],
        pools: vec![pool("pool", PoolProtocol::Udp, &[&a])],
    };
    let proxy = Proxy::start(config).await.unwrap();
    let address = proxy.local_addr("l").unwrap();
    let first = client().await;
    assert_eq!(ask(&first, address, "x").await, "a:x");

    let second = client().await;
    second.send_to(b"y", address).await.unwrap();
    // The first client's next answer proves the proxy handled "y" before it (one loop
    // serves the listener in order), so "y" was dropped rather than still in flight.
    assert_eq!(ask(&first, address, "z").await, "a:z");
    let mut buffer = [0u8; 16];
    assert!(
        second.try_recv_from(&mut buffer).is_err(),
        "the second client got no answer"
    );
    let stats = proxy.stats().listener("l");
    assert_eq!(stats.total_connections, 1);
    assert_eq!(stats.request_errors, 1, "the dropped datagram is counted");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_client_moves_to_another_member_when_its_member_fails() {
    let a = udp_echo_backend("a").await;
    let b = udp_echo_backend("b").await;
    let mut pool = pool("pool", PoolProtocol::Udp, &[&a, &b]);
    pool.health_monitor = Some(monitor(MonitorType::UdpConnect));
    let config = ProxyConfig {
        listeners: vec![listener("l", ListenerProtocol::Udp, Some("pool"))],
        pools: vec![pool],
    };
    let proxy = Proxy::start(config).await.unwrap();
    let address = proxy.local_addr("l").unwrap();
    let socket = client().await;
    let answer = ask(&socket, address, "one").await;
    let (first_member, _) = answer.split_once(':').unwrap();
    let (failing, other) = if first_member == "a" { (a, b) } else { (b, a) };
    let _failed = failing.kill().await;
    wait_for_status(&proxy, "pool", first_member, OperatingStatus::Error).await;
    assert_eq!(
        ask(&socket, address, "two").await,
        format!("{}:two", other.name)
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn datagrams_from_the_forwarder_go_to_the_member_of_the_client_their_header_names() {
    let forwarder = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9));
    let a = udp_echo_backend("a").await;
    let b = udp_echo_backend("b").await;
    let mut by_source = pool("pool", PoolProtocol::Udp, &[&a, &b]);
    by_source.lb_algorithm = LbAlgorithm::SourceIp;
    let config = ProxyConfig {
        listeners: vec![listener("dns", ListenerProtocol::Udp, Some("pool"))],
        pools: vec![by_source],
    };
    let options = ProxyOptions {
        accept_proxy_from: Some(forwarder),
    };
    let proxy = Proxy::start_with(config, options).await.unwrap();
    let address = proxy.local_addr("dns").unwrap();
    // The forwarder sends each client's flow from a socket of its own.
    let flow = || async {
        UdpSocket::bind(SocketAddr::new(forwarder, 0))
            .await
            .expect("a forwarder socket")
    };
    let from_client = |octet: u8, text: &str| {
        let client = SocketAddr::from(([192, 0, 2, octet], 40000));
        let mut datagram = datagram_header_v2(client, address);
        datagram.extend_from_slice(text.as_bytes());
        datagram
    };
    let member_of = |answer: &str| answer.split_once(':').map(|(m, _)| m.to_owned());

    // Sixteen clients from one forwarder address: balanced by their own addresses, so
    // both members serve some; the header is not passed on.
    let mut members = BTreeSet::new();
    let mut first_member = None;
    for octet in 1..=16 {
        let socket = flow().await;
        let answer = ask_raw(&socket, address, &from_client(octet, "hi")).await;
        assert!(answer.ends_with(":hi"), "{answer:?}");
        if octet == 1 {
            first_member = member_of(&answer);
        }
        members.insert(member_of(&answer));
    }
    assert_eq!(
        members.len(),
        2,
        "every client went to one member: {members:?}"
    );
    // Client 1 again, on another flow: its member again.
    let again = ask_raw(&flow().await, address, &from_client(1, "again")).await;
    assert_eq!(member_of(&again), first_member, "{again:?}");

    // From the forwarder without a header: dropped and counted.
    let errors = proxy.stats().listener("dns").request_errors;
    let socket = flow().await;
    socket.send_to(b"no header", address).await.unwrap();
    eventually("the headless datagram counted", || async {
        proxy.stats().listener("dns").request_errors == errors + 1
    })
    .await;
    // Anyone else's datagram is theirs, header-like bytes and all.
    let forged = from_client(7, "x");
    let answer = ask_raw(&client().await, address, &forged).await;
    assert!(
        answer.ends_with('x') && answer.len() > forged.len(),
        "{answer:?}"
    );
    proxy.shutdown().await;
}

/// Sends `datagram` to the proxy from `socket` and returns the answer, lossily as text.
async fn ask_raw(socket: &UdpSocket, proxy: SocketAddr, datagram: &[u8]) -> String {
    socket.send_to(datagram, proxy).await.expect("send");
    let mut buffer = vec![0u8; 2048];
    let (length, from) = tokio::time::timeout(DEADLINE, socket.recv_from(&mut buffer))
        .await
        .expect("an answer in time")
        .expect("receive");
    assert_eq!(from, proxy, "answers come from the listener's address");
    String::from_utf8_lossy(&buffer[..length]).into_owned()
}
