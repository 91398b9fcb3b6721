//! Two agents' forwarders on loopback (hosts `a` at 127.0.0.1 and `b` at 127.0.0.2, in
//! this process's netns), with echo servers standing in for a load balancer's VIP.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::table::{Placement, Relay, Table, Target, Transport};
use super::{Forwarder, Located, Reach};

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const PATIENCE: Duration = Duration::from_secs(10);

/// A TCP echo server: each connection gets back what it sent, then a close.
async fn tcp_echo() -> SocketAddr {
    let listener = TcpListener::bind((A, 0)).await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.into_split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    address
}

/// A UDP echo server that answers `echo:` and the datagram.
async fn udp_echo() -> SocketAddr {
    udp_echo_saying("echo:").await
}

/// A UDP echo server that answers `prefix` and the datagram.
async fn udp_echo_saying(prefix: &'static str) -> SocketAddr {
    let socket = UdpSocket::bind((A, 0)).await.unwrap();
    let address = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 2048];
        while let Ok((length, from)) = socket.recv_from(&mut buffer).await {
            let mut answer = prefix.as_bytes().to_vec();
            answer.extend_from_slice(&buffer[..length]);
            let _ = socket.send_to(&answer, from).await;
        }
    });
    address
}

/// TCP listeners on one port at both hosts' addresses.
async fn tcp_pair() -> (u16, TcpListener, TcpListener) {
    loop {
        let a = TcpListener::bind((A, 0)).await.unwrap();
        let port = a.local_addr().unwrap().port();
        if let Ok(b) = TcpListener::bind((B, port)).await {
            return (port, a, b);
        }
    }
}

async fn udp_pair() -> (u16, UdpSocket, UdpSocket) {
    loop {
        let a = UdpSocket::bind((A, 0)).await.unwrap();
        let port = a.local_addr().unwrap().port();
        if let Ok(b) = UdpSocket::bind((B, port)).await {
            return (port, a, b);
        }
    }
}

/// A forwarder of host `host` that runs load balancer `lb-web` when `runs_it`, with its
/// relay on `relay`.
fn forwarder(host: &str, runs_it: bool, relay: TcpListener) -> Arc<Forwarder> {
    announcing_forwarder(host, runs_it, relay, None)
}

/// [`forwarder`], whose load balancer's proxy takes PROXY protocol headers from
/// `announce_from`.
fn announcing_forwarder(
    host: &str,
    runs_it: bool,
    relay: TcpListener,
    announce_from: Option<IpAddr>,
) -> Arc<Forwarder> {
    let source = relay.local_addr().unwrap().ip();
    let forwarder = Forwarder::new(
        HashSet::from([host.to_owned()]),
        Some(source),
        Arc::new(move |uid: &str| {
            (runs_it && uid == "lb-web").then_some(Located {
                reach: Reach::Here,
                announce_from,
            })
        }),
    );
    tokio::spawn(forwarder.clone().serve_relay(relay));
    forwarder
}

fn target(vip: SocketAddr, host: &str, relay: SocketAddr) -> Target {
    Target {
        service: "admin/web".into(),
        vip,
        local_only: false,
        placed: Some(Placement {
            load_balancer: "lb-web".into(),
            host: host.into(),
            relay: Some(Relay {
                address: relay,
                names_clients: true,
            }),
        }),
    }
}

/// What a TCP client sending `text` and closing its side gets back from `at`.
async fn tcp_round_trip(at: SocketAddr, text: &str) -> String {
    let exchange = async {
        let mut stream = TcpStream::connect(at).await?;
        stream.write_all(text.as_bytes()).await?;
        stream.shutdown().await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        std::io::Result::Ok(answer)
    };
    tokio::time::timeout(PATIENCE, exchange)
        .await
        .unwrap_or_else(|_| panic!("no answer from {at} in time"))
        .unwrap_or_else(|error| format!("error: {error}"))
}

/// Asserts that a connection to `at` is closed without an answer (a reset or a close).
async fn refused(at: SocketAddr, why: &str) {
    let answer = tcp_round_trip(at, "lost").await;
    assert!(
        answer.is_empty() || answer.starts_with("error:"),
        "{why}: {at} answered {answer:?}"
    );
}

async fn udp_round_trip(client: &UdpSocket, at: SocketAddr, text: &str) -> (String, SocketAddr) {
    client.send_to(text.as_bytes(), at).await.unwrap();
    let mut buffer = vec![0u8; 2048];
    let (length, from) = tokio::time::timeout(PATIENCE, client.recv_from(&mut buffer))
        .await
        .unwrap_or_else(|_| panic!("no UDP answer from {at} in time"))
        .unwrap();
    (
        String::from_utf8_lossy(&buffer[..length]).into_owned(),
        from,
    )
}

#[tokio::test]
async fn node_ports_reach_the_vip_here_or_through_the_relay_of_the_host_running_it() {
    let (tcp_vip, udp_vip) = (tcp_echo().await, udp_echo().await);
    let (relay_a, relay_b) = (
        TcpListener::bind((A, 0)).await.unwrap(),
        TcpListener::bind((B, 0)).await.unwrap(),
    );
    let relay_at = relay_a.local_addr().unwrap();
    let (a, b) = (
        forwarder("a", true, relay_a),
        forwarder("b", false, relay_b),
    );
    let (tcp_port, tcp_a, tcp_b) = tcp_pair().await;
    let (udp_port, udp_a, udp_b) = udp_pair().await;
    let table = Table::from([
        ((Transport::Tcp, tcp_port), target(tcp_vip, "a", relay_at)),
        ((Transport::Udp, udp_port), target(udp_vip, "a", relay_at)),
    ]);
    a.set_table(table.clone(), peers());
    b.set_table(table, peers());
    tokio::spawn(a.clone().serve_tcp(tcp_a, tcp_port));
    tokio::spawn(b.clone().serve_tcp(tcp_b, tcp_port));
    tokio::spawn(a.clone().serve_udp(udp_a, udp_port));
    tokio::spawn(b.clone().serve_udp(udp_b, udp_port));

    // TCP, with the client's half-close passed on: on the host running the load balancer
    // and relayed from the other.
    for host in [A, B] {
        let at = SocketAddr::new(host, tcp_port);
        assert_eq!(tcp_round_trip(at, "hello").await, "hello", "through {at}");
    }
    // UDP: answers come back from the node port the client sent to; one client's
    // datagrams stay one flow.
    let client = UdpSocket::bind((A, 0)).await.unwrap();
    for host in [A, B] {
        let at = SocketAddr::new(host, udp_port);
        for text in ["one", "two"] {
            let (answer, from) = udp_round_trip(&client, at, text).await;
            assert_eq!(
                (answer.as_str(), from),
                (format!("echo:{text}").as_str(), at)
            );
        }
    }

    // A UDP flow ends when its route changes (here the VIP behind the relay): its client's
    // next datagrams take the new one.
    let other_vip = udp_echo_saying("moved:").await;
    let mut table = a.table();
    table.insert((Transport::Udp, udp_port), target(other_vip, "a", relay_at));
    a.set_table(table.clone(), peers());
    b.set_table(table, peers());
    // (A datagram caught by the old flow as it ends is lost, as UDP may be.)
    let mut answers = Vec::new();
    for _ in 0..20 {
        client
            .send_to(b"x", SocketAddr::new(B, udp_port))
            .await
            .unwrap();
        let mut buffer = vec![0u8; 2048];
        let wait = Duration::from_millis(500);
        let answer = match tokio::time::timeout(wait, client.recv_from(&mut buffer)).await {
            Ok(received) => String::from_utf8_lossy(&buffer[..received.unwrap().0]).into_owned(),
            Err(_) => "(lost)".to_owned(),
        };
        if answer == "moved:x" {
            break;
        }
        answers.push(answer);
    }
    assert!(
        answers.len() < 20,
        "the flow stayed on its old route: {answers:?}"
    );

    // While the hosts disagree about where the load balancer runs, a relayed stream is
    // refused rather than sent back: the connection closes with nothing.
    let mut moved = Table::new();
    moved.insert((Transport::Tcp, tcp_port), target(tcp_vip, "b", relay_at));
    a.set_table(moved, peers());
    refused(
        SocketAddr::new(B, tcp_port),
        "a relayed connection is never relayed again",
    )
    .await;
    // `externalTrafficPolicy: Local`: only the host running the load balancer answers.
    let mut local = target(tcp_vip, "a", relay_at);
    local.local_only = true;
    let table = Table::from([((Transport::Tcp, tcp_port), local)]);
    a.set_table(table.clone(), peers());
    b.set_table(table.clone(), peers());
    assert_eq!(
        tcp_round_trip(SocketAddr::new(A, tcp_port), "hi").await,
        "hi"
    );
    refused(
        SocketAddr::new(B, tcp_port),
        "Local traffic policy elsewhere",
    )
    .await;
    // A node port no Service has any more answers nothing.
    b.set_table(Table::new(), peers());
    refused(SocketAddr::new(B, tcp_port), "no Service").await;

    // A relay takes streams only from the hosts' tunnel IPs (B's leave from its own).
    let mut everywhere = target(tcp_vip, "a", relay_at);
    everywhere.local_only = false;
    let table = Table::from([((Transport::Tcp, tcp_port), everywhere)]);
    b.set_table(table.clone(), peers());
    assert_eq!(
        tcp_round_trip(SocketAddr::new(B, tcp_port), "hi").await,
        "hi"
    );
    a.set_table(table, HashSet::from([A]));
    refused(
        SocketAddr::new(B, tcp_port),
        "a relayed stream from no host",
    )
    .await;
}

/// The tunnel IPs of both hosts.
fn peers() -> HashSet<IpAddr> {
    HashSet::from([A, B])
}

#[tokio::test]
async fn a_health_check_node_port_taken_by_another_program_is_listened_on_once_free() {
    let occupant = TcpListener::bind((A, 0)).await.unwrap();
    let port = occupant.local_addr().unwrap().port();
    let checks = super::table::HealthChecks::from([(
        port,
        super::table::HealthCheck {
            namespace: "admin".into(),
            name: "web".into(),
            host: Some("a".into()),
        },
    )]);
    let (_sender, seen) = tokio::sync::watch::channel(Arc::new(checks.clone()));
    let hosts = Arc::new(HashSet::from(["a".to_owned()]));
    let mut listeners = super::Listeners::default();
    listeners.reconcile_health(&checks, A, &seen, &hosts).await;
    assert!(
        listeners.health_failed.contains_key(&port) && listeners.health.is_empty(),
        "the port is taken, and the failure is kept to be tried again"
    );
    drop(occupant);
    // A process another test starts meanwhile holds the socket until it execs: the port
    // is free once that is over, as the agent's next try (every 30 s) would find.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        listeners.reconcile_health(&checks, A, &seen, &hosts).await;
        if listeners.health_failed.is_empty() || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        listeners.health_failed.is_empty(),
        "{:?}",
        listeners.health_failed
    );
    let mut stream = TcpStream::connect((A, port)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    assert!(answer.contains(r#""localEndpoints":1"#), "{answer}");
}

/// Deletes a network namespace the test made, even when the test fails.
struct TestNetns(String);

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

#[tokio::test]
async fn a_udp_node_port_on_every_address_answers_from_the_one_the_client_sent_to() {
    if !rustix::process::geteuid().is_root() {
        println!(
            "SKIPPED a_udp_node_port_on_every_address_answers_from_the_one_the_client_sent_to: \
             making a network namespace needs root"
        );
        return;
    }
    // The node port and its client in a namespace of their own, where the node port is
    // bound to every address; the load balancer's stand-in here.
    let name = format!("ronghe-t-pktinfo-{}", std::process::id());
    ronghe_hostnet::netns::ensure_named(&name).await.unwrap();
    let _netns = TestNetns(name.clone());
    let path = Some(ronghe_hostnet::netns::named_path(&name));
    let node_port = ronghe_hostnet::netns::on_thread_in(path.clone(), || {
        std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
    })
    .await
    .unwrap();
    let port = node_port.local_addr().unwrap().port();
    node_port.set_nonblocking(true).unwrap();
    let vip = udp_echo().await;
    let relay = TcpListener::bind((A, 0)).await.unwrap();
    let relay_at = relay.local_addr().unwrap();
    let host = forwarder("a", true, relay);
    host.set_table(
        Table::from([((Transport::Udp, port), target(vip, "a", relay_at))]),
        peers(),
    );
    tokio::spawn(
        host.clone()
            .serve_udp(UdpSocket::from_std(node_port).unwrap(), port),
    );

    // A client sending to 127.0.0.2 from 127.0.0.1 would get answers from 127.0.0.1 by
    // routing alone; connected to 127.0.0.2, it only takes answers from there.
    let sent_to = SocketAddr::new(B, port);
    let client = ronghe_hostnet::netns::on_thread_in(path, move || {
        let client = std::net::UdpSocket::bind((A, 0))?;
        client.connect(sent_to)?;
        client.set_nonblocking(true)?;
        Ok(client)
    })
    .await
    .unwrap();
    let client = UdpSocket::from_std(client).unwrap();
    client.send(b"hi").await.unwrap();
    let mut buffer = vec![0u8; 2048];
    let length = tokio::time::timeout(PATIENCE, client.recv(&mut buffer))
        .await
        .expect("an answer from the address the client sent to")
        .unwrap();
    assert_eq!(&buffer[..length], b"echo:hi");
}

/// A member of a PROXYV2 pool that answers each connection with the client its header
/// names, and closes.
async fn naming_member() -> SocketAddr {
    let listener = TcpListener::bind((A, 0)).await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let answer = match ronghe_proxy::proxy_protocol::read_header(&mut stream).await {
                    Ok(ronghe_proxy::proxy_protocol::Announced::Relayed { client, .. }) => {
                        client.to_string()
                    }
                    other => format!("{other:?}"),
                };
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    address
}

#[tokio::test]
async fn node_port_clients_reach_the_load_balancer_as_themselves_here_and_relayed() {
    // The proxy of the load balancer, taking headers from the forwarder's address, with
    // a PROXYV2 pool whose member says whom the proxy names.
    let forwarder_source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
    let member = naming_member().await;
    // And a UDP listener balancing by source IP over two members.
    let (udp_a, udp_b) = (udp_echo_saying("a:").await, udp_echo_saying("b:").await);
    let udp_member = |id: &str, at: SocketAddr| {
        serde_json::json!({"id": id, "address": at.ip(), "protocolPort": at.port(), "weight": 1,
            "backup": false, "adminStateUp": true})
    };
    let config: ronghe_proxy::ProxyConfig = serde_json::from_value(serde_json::json!({
        "listeners": [
            {"id": "tcp", "protocol": "TCP", "bind": SocketAddr::new(A, 0), "defaultPoolId": "pool"},
            {"id": "udp", "protocol": "UDP", "bind": SocketAddr::new(A, 0), "defaultPoolId": "udp"},
        ],
        "pools": [
            {"id": "pool", "protocol": "PROXYV2", "lbAlgorithm": "ROUND_ROBIN", "members": [
                {"id": "m", "address": member.ip(), "protocolPort": member.port(), "weight": 1,
                 "backup": false, "adminStateUp": true}]},
            {"id": "udp", "protocol": "UDP", "lbAlgorithm": "SOURCE_IP", "members": [
                udp_member("a", udp_a), udp_member("b", udp_b)]},
        ],
    }))
    .unwrap();
    let options = ronghe_proxy::ProxyOptions {
        accept_proxy_from: Some(forwarder_source),
    };
    let proxy = ronghe_proxy::Proxy::start_with(config, options)
        .await
        .unwrap();
    let vip = proxy.local_addr("tcp").unwrap();
    let udp_vip = proxy.local_addr("udp").unwrap();

    let (relay_a, relay_b) = (
        TcpListener::bind((A, 0)).await.unwrap(),
        TcpListener::bind((B, 0)).await.unwrap(),
    );
    let relay_at = relay_a.local_addr().unwrap();
    let (a, b) = (
        announcing_forwarder("a", true, relay_a, Some(forwarder_source)),
        announcing_forwarder("b", false, relay_b, None),
    );
    let (port, tcp_a, tcp_b) = tcp_pair().await;
    let (udp_port, udp_socket_a, udp_socket_b) = udp_pair().await;
    let table = Table::from([
        ((Transport::Tcp, port), target(vip, "a", relay_at)),
        ((Transport::Udp, udp_port), target(udp_vip, "a", relay_at)),
    ]);
    a.set_table(table.clone(), peers());
    b.set_table(table, peers());
    tokio::spawn(a.clone().serve_tcp(tcp_a, port));
    tokio::spawn(b.clone().serve_tcp(tcp_b, port));
    tokio::spawn(a.clone().serve_udp(udp_socket_a, udp_port));
    tokio::spawn(b.clone().serve_udp(udp_socket_b, udp_port));

    // On the host running the load balancer, and relayed from the other: the member is
    // told of the client, not of a forwarder.
    let named = |at: SocketAddr| async move {
        let exchange = async {
            let mut stream = TcpStream::connect(at).await?;
            let client = stream.local_addr()?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await?;
            std::io::Result::Ok((client, answer))
        };
        tokio::time::timeout(PATIENCE, exchange)
            .await
            .expect("an answer in time")
            .unwrap()
    };
    for host in [A, B] {
        let at = SocketAddr::new(host, port);
        let (client, answer) = named(at).await;
        assert_eq!(answer, client.to_string(), "through {at}");
    }
    // A relay whose Node does not say it reads clients (an agent from before) gets the
    // older header: relayed traffic still flows, as the forwarder's.
    let mut older = a.table();
    let mut tcp_target = target(vip, "a", relay_at);
    if let Some(placed) = tcp_target.placed.as_mut() {
        placed.relay = Some(Relay {
            address: relay_at,
            names_clients: false,
        });
    }
    older.insert((Transport::Tcp, port), tcp_target);
    b.set_table(older, peers());
    let (client, answer) = named(SocketAddr::new(B, port)).await;
    assert!(
        answer.starts_with("127.0.0.1:") && answer != client.to_string(),
        "{answer:?}"
    );

    // UDP from clients at sixteen addresses: the proxy balances them by their own
    // addresses (both members serve some), the same member for a client either way in.
    let mut members = HashSet::new();
    for last in 10..26 {
        let client = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, last), 0))
            .await
            .unwrap();
        let mut seen = Vec::new();
        for host in [A, B] {
            let (answer, _) = udp_round_trip(&client, SocketAddr::new(host, udp_port), "q").await;
            seen.push(answer);
        }
        assert_eq!(
            seen[0], seen[1],
            "one member for a client, here and relayed"
        );
        members.insert(seen[0].clone());
    }
    assert_eq!(
        members,
        HashSet::from(["a:q".to_owned(), "b:q".to_owned()]),
        "clients balanced by their own addresses"
    );
    proxy.shutdown().await;
}
