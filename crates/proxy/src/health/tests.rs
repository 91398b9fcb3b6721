//! Tests of rise/fall counting, status publishing, the probes and a checker on loopback.

use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use super::probe::{ProbeFailure, parse_status_line};
use super::*;
use crate::config::{ExpectedCodes, MonitorType, PoolProtocol};
use crate::testing::{
    DEADLINE, close_keeping_the_port, refusing_tcp_address, refusing_udp_address, reusable_listener,
};

/// Aborts a spawned task when the test ends, whether it passes or panics.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn monitor(monitor_type: MonitorType) -> HealthMonitor {
    HealthMonitor {
        monitor_type,
        delay_ms: 50,
        timeout_ms: 40,
        max_retries: 2,
        max_retries_down: 2,
        http_method: None,
        url_path: None,
        expected_codes: None,
    }
}

/// A tiny HTTP server answering `status` to every request and recording request lines.
async fn http_server(status: u16) -> (SocketAddr, Arc<Mutex<Vec<String>>>, AbortOnDrop) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let recorded = Arc::clone(&recorded);
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 2048];
                let read = stream.read(&mut buffer).await.unwrap_or(0);
                let text = String::from_utf8_lossy(&buffer[..read]).to_string();
                let line = text.lines().next().unwrap_or_default().to_owned();
                recorded.lock().unwrap().push(line);
                let answer = format!("HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\n\r\n");
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    (address, seen, AbortOnDrop(task))
}

#[test]
fn rise_and_fall_need_consecutive_results() {
    let mut counter = RiseFall::new(2, 3);
    let mut status = OperatingStatus::Online;
    for passed in [false, false, true, false, false] {
        status = counter.record(status, passed);
        assert_eq!(
            status,
            OperatingStatus::Online,
            "a pass resets the failures"
        );
    }
    status = counter.record(status, false);
    assert_eq!(status, OperatingStatus::Error);
    status = counter.record(status, true);
    assert_eq!(status, OperatingStatus::Error);
    status = counter.record(status, false);
    status = counter.record(status, true);
    assert_eq!(
        status,
        OperatingStatus::Error,
        "a failure resets the successes"
    );
    status = counter.record(status, true);
    assert_eq!(status, OperatingStatus::Online);
}

#[test]
fn status_board_ignores_unknown_members_and_wakes_only_on_change() {
    let board = StatusBoard::new();
    let mut watcher = board.subscribe();
    let statuses = MemberStatuses::from([(
        "pool".to_owned(),
        BTreeMap::from([("m".to_owned(), OperatingStatus::Online)]),
    )]);
    board.replace_with(|| statuses.clone());
    assert!(watcher.has_changed().unwrap());
    watcher.borrow_and_update();
    board.replace_with(|| statuses);
    assert!(!watcher.has_changed().unwrap());
    board.publish("pool", "gone", OperatingStatus::Error);
    board.publish("pool", "m", OperatingStatus::Online);
    assert!(!watcher.has_changed().unwrap());
    board.publish("pool", "m", OperatingStatus::Error);
    assert!(watcher.has_changed().unwrap());
    assert_eq!(watcher.borrow()["pool"]["m"], OperatingStatus::Error);
    assert_eq!(watcher.borrow()["pool"].len(), 1);
}

proptest::proptest! {
    #[test]
    fn status_lines_of_any_bytes_parse_without_panic(head in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
        if let Some(code) = parse_status_line(&head) {
            proptest::prop_assert!((100..=999).contains(&code));
        }
    }

    #[test]
    fn every_status_code_reads_back(code in 100u16..=999, reason in "[ -~]{0,20}") {
        let line = format!("HTTP/1.1 {code} {reason}\r\nServer: x\r\n");
        proptest::prop_assert_eq!(parse_status_line(line.as_bytes()), Some(code));
    }

    #[test]
    fn expected_codes_hold_exactly_what_they_list(ranges in proptest::collection::vec((100u16..=599, 0u16..5), 1..4)) {
        let text = ranges
            .iter()
            .map(|(low, width)| {
                let high = (low + width).min(599);
                if low == &high { low.to_string() } else { format!("{low}-{high}") }
            })
            .collect::<Vec<_>>()
            .join(",");
        let expected = ExpectedCodes::parse(&text).expect("well-formed codes");
        for code in 100..=599u16 {
            let listed = ranges
                .iter()
                .any(|(low, width)| (*low..=(low + width).min(599)).contains(&code));
            proptest::prop_assert_eq!(expected.contains(code), listed, "{} in {}", code, text);
        }
    }
}

#[test]
fn status_lines_parse() {
    assert_eq!(parse_status_line(b"HTTP/1.1 204 No Content\r\n"), Some(204));
    assert_eq!(parse_status_line(b"HTTP/1.0 500\r\n"), Some(500));
    assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH\r\n"), None);
    assert_eq!(parse_status_line(b"HTTP/1.1 2000 x\r\n"), None);
    assert_eq!(parse_status_line(b""), None);
}

#[tokio::test]
async fn tcp_and_ping_probes_connect() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = listener.local_addr().unwrap();
    let (_reserved, closed) = refusing_tcp_address();
    for monitor_type in [MonitorType::Tcp, MonitorType::Ping] {
        let probe = Probe::new(
            &monitor(monitor_type),
            (PoolProtocol::Tcp, false),
            None,
            None,
        );
        probe.check(open, true).await.unwrap();
        assert!(matches!(
            probe.check(closed, true).await,
            Err(ProbeFailure::Io { .. })
        ));
    }
}

#[tokio::test]
async fn http_probe_sends_method_and_path_and_checks_codes() {
    let (address, seen, _server) = http_server(202).await;
    let mut http = monitor(MonitorType::Http);
    http.http_method = Some("HEAD".into());
    http.url_path = Some("/healthz?deep=1".into());
    let accepting = Probe::new(
        &http,
        (PoolProtocol::Http, false),
        ExpectedCodes::parse("200-202"),
        None,
    );
    accepting.check(address, true).await.unwrap();
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["HEAD /healthz?deep=1 HTTP/1.1"]
    );

    let strict = Probe::new(
        &http,
        (PoolProtocol::Http, false),
        ExpectedCodes::parse("200"),
        None,
    );
    assert!(matches!(
        strict.check(address, true).await,
        Err(ProbeFailure::UnexpectedStatus { status: 202 })
    ));
}

/// A member answering one HTTP check 200: what it read first (`header_length` bytes),
/// then the request head.
async fn answer_one_check(
    header_length: usize,
) -> (SocketAddr, tokio::task::JoinHandle<(Vec<u8>, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut header = vec![0u8; header_length];
        stream.read_exact(&mut header).await.unwrap();
        let mut request = Vec::new();
        while !request.ends_with(b"\r\n\r\n") {
            request.push(stream.read_u8().await.unwrap());
        }
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        (header, request)
    });
    (address, server)
}

#[tokio::test]
async fn http_probes_of_a_proxyv2_pool_send_the_local_header_first() {
    let (address, server) = answer_one_check(16).await;
    let probe = Probe::new(
        &monitor(MonitorType::Http),
        (PoolProtocol::ProxyV2, false),
        None,
        None,
    );
    probe.check(address, true).await.unwrap();
    let (header, request) = server.await.unwrap();
    assert_eq!(&header[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!(
        &header[12..],
        &[0x20, 0x00, 0x00, 0x00],
        "LOCAL, no addresses"
    );
    assert!(request.starts_with(b"GET / HTTP/1.1\r\n"), "{request:?}");

    // Checked at a monitor address or port of its own, the member gets no header
    // (HAProxy's rule).
    let (address, server) = answer_one_check(0).await;
    probe.check(address, false).await.unwrap();
    let (_, request) = server.await.unwrap();
    assert!(request.starts_with(b"GET / HTTP/1.1\r\n"), "{request:?}");
}

#[tokio::test]
async fn https_probe_accepts_a_self_signed_member() {
    let generated = rcgen::generate_simple_self_signed(vec!["member.invalid".into()]).unwrap();
    let certificate = crate::config::TlsCertificate {
        certificate_pem: generated.cert.pem(),
        private_key_pem: generated.signing_key.serialize_pem(),
    };
    let server_config = crate::tls::server_config(
        Some(&certificate),
        &[],
        crate::tls::Offer::of_listener(&Default::default(), None).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let _server = AbortOnDrop(tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buffer = vec![0u8; 2048];
                let _ = stream.read(&mut buffer).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .await;
                let _ = stream.shutdown().await;
            });
        }
    }));
    let probe = Probe::new(
        &monitor(MonitorType::Https),
        (PoolProtocol::Https, false),
        None,
        None,
    );
    probe.check(address, true).await.unwrap();

    // Plain HTTP against the TLS port does not pass.
    let plain = Probe::new(
        &monitor(MonitorType::Http),
        (PoolProtocol::Https, false),
        None,
        None,
    );
    assert!(plain.check(address, true).await.is_err());
}

#[tokio::test]
async fn udp_probe_fails_only_on_port_unreachable() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // PING on a UDP pool is checked as UDP-CONNECT: a TCP connect would fail on every
    // member, whose port is UDP only.
    for monitor_type in [MonitorType::UdpConnect, MonitorType::Ping] {
        let probe = Probe::new(
            &monitor(monitor_type),
            (PoolProtocol::Udp, false),
            None,
            None,
        );
        assert!(probe.silence_passes(), "{monitor_type:?}");
        // The check is expected to run out of time here, so a short wait is enough and
        // nothing depends on when it ends.
        let result = tokio::time::timeout(
            Duration::from_millis(200),
            probe.check(silent.local_addr().unwrap(), true),
        )
        .await;
        assert!(
            result.is_err(),
            "a silent listener leaves the check to time out"
        );

        let (_reserved, refusing) = refusing_udp_address().await;
        let result = tokio::time::timeout(DEADLINE, probe.check(refusing, true))
            .await
            .expect("loopback answers a closed port with ICMP at once");
        assert!(matches!(result, Err(ProbeFailure::PortUnreachable)));
    }
}

async fn wait_for_status(
    watcher: &mut watch::Receiver<MemberStatuses>,
    member: &str,
    wanted: OperatingStatus,
) {
    let reached = tokio::time::timeout(
        DEADLINE,
        watcher.wait_for(|statuses| statuses["pool"][member] == wanted),
    )
    .await
    .is_ok_and(|result| result.is_ok());
    assert!(
        reached,
        "member {member} did not become {wanted:?}: {:?}",
        *watcher.borrow()
    );
}

#[tokio::test]
async fn checker_takes_a_dead_member_out_and_brings_it_back() {
    let listener = reusable_listener();
    let live = listener.local_addr().unwrap();
    let (dead_socket, dead) = refusing_tcp_address();
    let board = Arc::new(StatusBoard::new());
    board.replace_with(|| {
        MemberStatuses::from([(
            "pool".to_owned(),
            BTreeMap::from([
                ("live".to_owned(), OperatingStatus::Online),
                ("dead".to_owned(), OperatingStatus::Online),
            ]),
        )])
    });
    let cell = |status| Arc::new(MemberHealth::new(status));
    let live_health = cell(OperatingStatus::Online);
    let dead_health = cell(OperatingStatus::Online);
    let members = vec![
        MonitoredMember {
            member_id: "live".into(),
            target: live,
            at_member: true,
            health: Arc::clone(&live_health),
        },
        MonitoredMember {
            member_id: "dead".into(),
            target: dead,
            at_member: true,
            health: Arc::clone(&dead_health),
        },
    ];
    let mut watcher = board.subscribe();
    let tcp = monitor(MonitorType::Tcp);
    let _checker = AbortOnDrop(spawn_pool_checker(
        "pool".into(),
        &tcp,
        Probe::new(&tcp, (PoolProtocol::Tcp, false), None, None),
        members,
        Arc::clone(&board),
    ));
    wait_for_status(&mut watcher, "dead", OperatingStatus::Error).await;
    assert!(!dead_health.is_up());
    assert_eq!(live_health.status(), OperatingStatus::Online);

    // The dead member's port was reserved all along; listening on it revives it.
    let _revived = dead_socket.listen(16).unwrap();
    wait_for_status(&mut watcher, "dead", OperatingStatus::Online).await;
    assert!(dead_health.is_up());

    let _reserved = close_keeping_the_port(listener);
    wait_for_status(&mut watcher, "live", OperatingStatus::Error).await;
}
