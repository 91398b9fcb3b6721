//! PROXY and PROXYV2 pools: every member connection opens with a header naming the
//! client and the address it connected to, a connection of one client is never given to
//! another, and health checks say they are the proxy's own (`UNKNOWN`, `LOCAL`). And the
//! other way: connections from the address a proxy is told to take headers from (the
//! node-port forwarder's) are taken as the client their header names.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ronghe_proxy::config::{
    ListenerProtocol, MonitorType, PersistenceType, PoolProtocol, SessionPersistence,
};
use ronghe_proxy::{OperatingStatus, Proxy, ProxyConfig, ProxyOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

use super::support::http::{Client, http_echo_backend};
use super::support::*;

/// What a member read before anything else on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Header {
    V1(String),
    V2 {
        command: u8,
        family: u8,
        addresses: Vec<u8>,
    },
}

impl Header {
    /// A version 2 PROXY header's IPv4 addresses and ports.
    fn v2_ends(&self) -> Option<(SocketAddr, SocketAddr)> {
        let Header::V2 {
            command: 0x21,
            family: 0x11,
            addresses,
        } = self
        else {
            return None;
        };
        let ip = |at: usize| {
            std::net::Ipv4Addr::new(
                addresses[at],
                addresses[at + 1],
                addresses[at + 2],
                addresses[at + 3],
            )
        };
        let port = |at: usize| u16::from_be_bytes([addresses[at], addresses[at + 1]]);
        Some((
            SocketAddr::from((ip(0), port(8))),
            SocketAddr::from((ip(4), port(10))),
        ))
    }
}

/// Reads a PROXY header of either version from the start of a connection.
async fn read_header(stream: &mut TcpStream) -> std::io::Result<Header> {
    let mut first = [0u8; 12];
    stream.read_exact(&mut first[..5]).await?;
    if &first[..5] == b"PROXY" {
        let mut line = b"PROXY".to_vec();
        while !line.ends_with(b"\r\n") {
            line.push(stream.read_u8().await?);
        }
        return Ok(Header::V1(String::from_utf8_lossy(&line).into_owned()));
    }
    stream.read_exact(&mut first[5..]).await?;
    assert_eq!(
        &first, b"\r\n\r\n\0\r\nQUIT\n",
        "neither PROXY header version"
    );
    let command = stream.read_u8().await?;
    let family = stream.read_u8().await?;
    let length = stream.read_u16().await?;
    let mut addresses = vec![0u8; usize::from(length)];
    stream.read_exact(&mut addresses).await?;
    Ok(Header::V2 {
        command,
        family,
        addresses,
    })
}

/// A member behind a PROXY pool: reports each connection's header, then echoes (TCP) or
/// answers every HTTP/1.1 request 200 `ok` on the connection (HTTP).
fn recording_backend(name: &str, http: bool) -> (Backend, mpsc::UnboundedReceiver<Header>) {
    let listener = reusable_listener();
    let address = listener.local_addr().expect("a bound listener");
    let (headers, received) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let headers = headers.clone();
            tokio::spawn(async move {
                let Ok(header) = read_header(&mut stream).await else {
                    return;
                };
                let _ = headers.send(header);
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    let Ok(read) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if read == 0 {
                        return;
                    }
                    if !http {
                        if stream.write_all(&chunk[..read]).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    buffer.extend_from_slice(&chunk[..read]);
                    while let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n")
                    {
                        buffer.drain(..end + 4);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (Backend::from_task(name, address, task), received)
}

/// Asserts that `hello` sent on `stream` comes back as it was, and only it (`why`).
async fn echoes(stream: &mut TcpStream, why: &str) {
    stream.write_all(b"hello").await.expect("sent");
    let mut echoed = [0u8; 5];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut echoed))
        .await
        .expect("an echo in time")
        .expect("echoed");
    assert_eq!(&echoed, b"hello", "{why}");
}

async fn next_header(received: &mut mpsc::UnboundedReceiver<Header>) -> Header {
    tokio::time::timeout(DEADLINE, received.recv())
        .await
        .expect("a member connection in time")
        .expect("the backend runs")
}

#[tokio::test]
async fn a_proxy_pool_names_the_client_to_its_members_and_checks_say_local() {
    let (backend, mut received) = recording_backend("a", false);
    let mut tcp_pool = pool("pool", PoolProtocol::Proxy, &[&backend]);
    tcp_pool.health_monitor = Some(monitor(MonitorType::Tcp));
    let config = ProxyConfig {
        listeners: vec![listener("l", ListenerProtocol::Tcp, Some("pool"))],
        pools: vec![tcp_pool],
    };
    let proxy = Proxy::start(config).await.unwrap();
    let address = proxy.local_addr("l").unwrap();
    wait_for_status(&proxy, "pool", "a", OperatingStatus::Online).await;

    let mut client = TcpStream::connect(address).await.unwrap();
    let client_port = client.local_addr().unwrap().port();
    echoes(&mut client, "the header is not passed back to the client").await;
    // Health checks keep coming; the client's connection is among them.
    let relayed = format!(
        "PROXY TCP4 127.0.0.1 127.0.0.1 {client_port} {}\r\n",
        address.port()
    );
    let mut saw_local = false;
    loop {
        match next_header(&mut received).await {
            Header::V1(line) if line == relayed => break,
            Header::V1(line) if line == "PROXY UNKNOWN\r\n" => saw_local = true,
            other => panic!("unexpected header {other:?}, wanted {relayed:?}"),
        }
    }
    if !saw_local {
        assert_eq!(
            next_header(&mut received).await,
            Header::V1("PROXY UNKNOWN\r\n".into()),
            "a health check's connection"
        );
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_http_listener_gives_each_client_of_a_proxyv2_pool_a_connection_of_its_own() {
    let (backend, mut received) = recording_backend("a", true);
    let config = ProxyConfig {
        listeners: vec![listener("web", ListenerProtocol::Http, Some("pool"))],
        pools: vec![pool("pool", PoolProtocol::ProxyV2, &[&backend])],
    };
    let proxy = Proxy::start(config).await.unwrap();
    let address = proxy.local_addr("web").unwrap();

    // Three requests on one HTTP/1.1 connection: one member connection, naming it,
    // kept for the client's next requests.
    let mut client = TcpStream::connect(address).await.unwrap();
    let client_address = client.local_addr().unwrap();
    for request in 0..3 {
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: web\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        while !answer.ends_with(b"\r\n\r\nok") {
            let mut chunk = [0u8; 256];
            let read = tokio::time::timeout(DEADLINE, client.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(
                read > 0,
                "closed early: {:?}",
                String::from_utf8_lossy(&answer)
            );
            answer.extend_from_slice(&chunk[..read]);
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
        if request == 0 {
            let header = next_header(&mut received).await;
            assert_eq!(
                header.v2_ends(),
                Some((client_address, address)),
                "{header:?}"
            );
        }
    }
    assert!(
        received.try_recv().is_err(),
        "the client's later requests went over its own member connection"
    );
    // A second client is never handed the first one's member connection.
    let mut other = TcpStream::connect(address).await.unwrap();
    let other_address = other.local_addr().unwrap();
    other
        .write_all(b"GET / HTTP/1.1\r\nhost: web\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, other.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    let header = next_header(&mut received).await;
    assert_eq!(
        header.v2_ends(),
        Some((other_address, address)),
        "{header:?}"
    );

    // HTTP/2 clients go through hyper's member connections: the same header, and the
    // client's later requests over its own connection again.
    let stream = TcpStream::connect(address).await.unwrap();
    let h2_address = stream.local_addr().unwrap();
    let mut h2 = Client::http2_over(stream).await;
    for _ in 0..5 {
        assert_eq!(h2.get("/", &[]).await.status, 200);
    }
    let header = next_header(&mut received).await;
    assert_eq!(header.v2_ends(), Some((h2_address, address)), "{header:?}");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let mut more = Vec::new();
    while let Ok(header) = received.try_recv() {
        more.push(header);
    }
    // (A request may come a moment before its predecessor's connection is idle again.)
    assert!(
        more.len() <= 1,
        "five requests of one HTTP/2 client opened {} member connections",
        more.len() + 1
    );
    // Another HTTP/2 client is never handed them.
    let stream = TcpStream::connect(address).await.unwrap();
    let other_h2 = stream.local_addr().unwrap();
    let mut h2 = Client::http2_over(stream).await;
    assert_eq!(h2.get("/", &[]).await.status, 200);
    let header = next_header(&mut received).await;
    assert_eq!(header.v2_ends(), Some((other_h2, address)), "{header:?}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_proxy_pool_behind_an_http_listener_keeps_cookie_persistence() {
    let (a, mut seen_a) = recording_backend("a", true);
    let (b, mut seen_b) = recording_backend("b", true);
    let mut sticky = pool("pool", PoolProtocol::ProxyV2, &[&a, &b]);
    sticky.session_persistence = Some(SessionPersistence {
        persistence_type: PersistenceType::HttpCookie,
        cookie_name: None,
        persistence_timeout_ms: None,
    });
    let config = ProxyConfig {
        listeners: vec![listener("web", ListenerProtocol::Http, Some("pool"))],
        pools: vec![sticky],
    };
    config
        .validate()
        .expect("Octavia takes cookie persistence on PROXY pools");
    let proxy = Proxy::start(config).await.unwrap();
    let address = proxy.local_addr("web").unwrap();

    // The first answer names its member in the persistence cookie.
    let first = Client::http1(address).await.get("/", &[]).await;
    let cookie = first.headers["set-cookie"].to_str().unwrap();
    let member = cookie
        .strip_prefix("SRV=")
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("not the persistence cookie: {cookie}"))
        .to_owned();
    let (chosen, other) = match member.as_str() {
        "a" => (&mut seen_a, &mut seen_b),
        "b" => (&mut seen_b, &mut seen_a),
        unknown => panic!("no member {unknown}"),
    };
    next_header(chosen).await;
    // New clients sending it all reach that member, each over a connection of its own.
    for _ in 0..6 {
        let answer = Client::http1(address)
            .await
            .get("/", &[("cookie", &format!("SRV={member}"))])
            .await;
        assert_eq!(answer.status, 200);
        next_header(chosen).await;
    }
    assert!(
        other.try_recv().is_err(),
        "a request went to the other member"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn proxy_pools_pair_with_the_listeners_octavia_allows() {
    for (listener_protocol, pool_protocol, allowed) in [
        (ListenerProtocol::Tcp, PoolProtocol::Proxy, true),
        (ListenerProtocol::Https, PoolProtocol::ProxyV2, true),
        (ListenerProtocol::Http, PoolProtocol::Proxy, true),
        (ListenerProtocol::Udp, PoolProtocol::Proxy, false),
    ] {
        let config = ProxyConfig {
            listeners: vec![listener("l", listener_protocol, Some("pool"))],
            pools: vec![pool("pool", pool_protocol, &[])],
        };
        assert_eq!(
            config.validate().is_ok(),
            allowed,
            "{listener_protocol:?} with {pool_protocol:?}"
        );
    }
}

/// The loopback address the tests' stand-in for the node-port forwarder connects from.
const FORWARDER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9));

/// A version 2 PROXY header (command PROXY, TCP over IPv4), written here from the
/// specification rather than by the crate under test.
fn v2_header(client: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(client), SocketAddr::V4(destination)) = (client, destination) else {
        panic!("IPv4 only");
    };
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0x00, 12]);
    header.extend_from_slice(&client.ip().octets());
    header.extend_from_slice(&destination.ip().octets());
    header.extend_from_slice(&client.port().to_be_bytes());
    header.extend_from_slice(&destination.port().to_be_bytes());
    header
}

/// A connection to `to` from [`FORWARDER`] that has sent `opening`.
async fn from_forwarder(to: SocketAddr, opening: &[u8]) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket
        .bind(SocketAddr::new(FORWARDER, 0))
        .expect("bound at the forwarder's address");
    let mut stream = socket.connect(to).await.expect("connected");
    stream.write_all(opening).await.expect("sent");
    stream
}

#[tokio::test]
async fn connections_from_the_forwarder_are_the_client_their_header_names() {
    let (recording, mut received) = recording_backend("a", false);
    let echo = http_echo_backend("b").await;
    let mut web = listener("web", ListenerProtocol::Http, Some("http"));
    web.insert_headers.x_forwarded_for = true;
    let config = ProxyConfig {
        listeners: vec![listener("l", ListenerProtocol::Tcp, Some("proxied")), web],
        pools: vec![
            pool("proxied", PoolProtocol::ProxyV2, &[&recording]),
            pool("http", PoolProtocol::Http, &[&echo]),
        ],
    };
    let options = ProxyOptions {
        accept_proxy_from: Some(FORWARDER),
    };
    let proxy = Proxy::start_with(config, options).await.unwrap();
    let (tcp, http) = (
        proxy.local_addr("l").unwrap(),
        proxy.local_addr("web").unwrap(),
    );
    let client = SocketAddr::from(([192, 0, 2, 7], 40000));
    let vip = SocketAddr::from(([10, 0, 0, 5], 80));

    // A PROXYV2 pool's member is told of the client and VIP the forwarder's header named.
    let mut stream = from_forwarder(tcp, &v2_header(client, vip)).await;
    echoes(&mut stream, "the header is the proxy's, not the member's").await;
    let header = next_header(&mut received).await;
    assert_eq!(header.v2_ends(), Some((client, vip)), "{header:?}");

    // X-Forwarded-For names the client too.
    let stream = from_forwarder(http, &v2_header(client, vip)).await;
    let answer = Client::http1_over(stream).await.get("/", &[]).await;
    assert_eq!(answer.seen().headers["x-forwarded-for"], "192.0.2.7");

    // A LOCAL header leaves the connection its own addresses.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    let stream = from_forwarder(http, local).await;
    let answer = Client::http1_over(stream).await.get("/", &[]).await;
    assert_eq!(answer.seen().headers["x-forwarded-for"], "127.0.0.9");

    // Clients elsewhere send no header, and a header from them is theirs to send on.
    let answer = Client::http1(http).await.get("/", &[]).await;
    assert_eq!(answer.seen().headers["x-forwarded-for"], "127.0.0.1");
    let mut other = TcpStream::connect(tcp).await.unwrap();
    let forged = v2_header(client, vip);
    other.write_all(&forged).await.unwrap();
    let mut passed = vec![0u8; forged.len()];
    tokio::time::timeout(DEADLINE, other.read_exact(&mut passed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(passed, forged, "the member echoed the client's bytes");
    let header = next_header(&mut received).await;
    let (named, _) = header.v2_ends().expect("a version 2 header");
    assert_eq!(
        named,
        other.local_addr().unwrap(),
        "not the client it forged"
    );

    // A connection from the forwarder without a header is closed, nothing passed on.
    let errors_before = proxy.stats().listener("web").request_errors;
    let mut headless = from_forwarder(http, b"GET / HTTP/1.1\r\nhost: web\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, headless.read_to_end(&mut answer))
        .await
        .expect("closed in time");
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
    assert_eq!(
        proxy.stats().listener("web").request_errors,
        errors_before + 1,
        "counted as a request error"
    );
    proxy.shutdown().await;
}
