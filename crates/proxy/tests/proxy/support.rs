//! Backends, configuration builders and waiting helpers shared by the integration tests.

pub mod http;
pub mod pki;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use ronghe_proxy::config::{
    HealthMonitor, InsertHeaders, LbAlgorithm, Listener, ListenerProtocol, Member, MonitorType,
    Pool, PoolProtocol,
};
use ronghe_proxy::{OperatingStatus, Proxy};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

/// How long any awaited condition may take before the test fails. Generous: the machine
/// is small and shared; passing tests never wait this long.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A backend server task; dropping it aborts it and every connection it serves, like a
/// killed process, and releases its port. [`Backend::kill`] does the same but keeps the
/// port reserved, so nothing else can answer on it while the test expects it dead.
pub struct Backend {
    pub name: String,
    pub address: SocketAddr,
    task: Option<JoinHandle<()>>,
    /// A UDP backend's socket, kept to reserve the port after a kill.
    datagram: Option<Arc<UdpSocket>>,
}

/// What is left of a killed backend: its port, reserved and refusing (TCP: a socket bound
/// but not listening; UDP: a socket connected elsewhere, so the kernel answers everyone
/// else with ICMP port unreachable).
pub struct Tombstone {
    reservation: Reservation,
}

enum Reservation {
    Stream(TcpSocket),
    #[allow(dead_code, reason = "held only to keep the port")]
    Datagram(Arc<UdpSocket>),
}

impl Backend {
    pub fn from_task(name: &str, address: SocketAddr, task: JoinHandle<()>) -> Backend {
        Backend {
            name: name.to_owned(),
            address,
            task: Some(task),
            datagram: None,
        }
    }

    /// Kills the backend (every connection it serves is cut) and keeps its port.
    pub async fn kill(mut self) -> Tombstone {
        let reservation = match self.datagram.take() {
            None => Reservation::Stream(reuseport_socket(self.address)),
            Some(socket) => Reservation::Datagram(socket),
        };
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        if let Reservation::Datagram(socket) = &reservation {
            socket
                .connect("127.0.0.1:9")
                .await
                .expect("connect the killed backend's socket away");
        }
        Tombstone { reservation }
    }
}

impl Tombstone {
    /// Listens on the reserved TCP port again, for a revived backend to serve.
    pub fn revive(self) -> TcpListener {
        match self.reservation {
            Reservation::Stream(socket) => socket.listen(1024).expect("listen again"),
            Reservation::Datagram(_) => panic!("only TCP backends are revived"),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn reuseport_socket(address: SocketAddr) -> TcpSocket {
    let socket = TcpSocket::new_v4().expect("TCP socket");
    socket.set_reuseport(true).expect("SO_REUSEPORT");
    socket.bind(address).expect("bind on loopback");
    socket
}

/// A loopback listener on a fresh port that [`Backend::kill`] can keep reserved.
pub fn reusable_listener() -> TcpListener {
    reuseport_socket("127.0.0.1:0".parse().expect("loopback address"))
        .listen(1024)
        .expect("listen")
}

/// An address that refuses connections for as long as the returned socket lives: bound,
/// never listening. (A released port could be taken by anyone in the meantime.)
pub fn refusing_address() -> (TcpSocket, SocketAddr) {
    let socket = reuseport_socket("127.0.0.1:0".parse().expect("loopback address"));
    let address = socket.local_addr().expect("bound address");
    (socket, address)
}

/// A TCP backend that greets each connection with `name\n` and then echoes.
pub async fn echo_backend(name: &str) -> Backend {
    echo_backend_on(name, reusable_listener())
}

pub fn echo_backend_on(name: &str, listener: TcpListener) -> Backend {
    let address = listener.local_addr().expect("backend address");
    let greeting = format!("{name}\n");
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let greeting = greeting.clone();
            connections.spawn(async move {
                if stream.write_all(greeting.as_bytes()).await.is_err() {
                    return;
                }
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    Backend::from_task(name, address, task)
}

/// An HTTP/1.1 backend answering every request with `status` and its name as the body;
/// the status can be changed while it runs.
pub fn http_backend(name: &str, status: Arc<AtomicU16>) -> Backend {
    http_backend_on(name, reusable_listener(), status)
}

pub fn http_backend_on(name: &str, listener: TcpListener, status: Arc<AtomicU16>) -> Backend {
    let address = listener.local_addr().expect("backend address");
    let body = name.to_owned();
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let body = body.clone();
            let status = Arc::clone(&status);
            connections.spawn(async move {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                // Read the request head, then answer and close.
                loop {
                    line.clear();
                    match reader.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => {}
                    }
                }
                let code = status.load(Ordering::Relaxed);
                let answer = format!(
                    "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = reader.get_mut().write_all(answer.as_bytes()).await;
            });
        }
    });
    Backend::from_task(name, address, task)
}

/// A UDP backend that answers each datagram with `name:` and the datagram.
pub async fn udp_echo_backend(name: &str) -> Backend {
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("backend bind"));
    let address = socket.local_addr().expect("backend address");
    let prefix = format!("{name}:");
    let serving = Arc::clone(&socket);
    let task = tokio::spawn(async move {
        let mut buffer = vec![0u8; 2048];
        while let Ok((length, peer)) = serving.recv_from(&mut buffer).await {
            let mut answer = prefix.as_bytes().to_vec();
            answer.extend_from_slice(&buffer[..length]);
            let _ = serving.send_to(&answer, peer).await;
        }
    });
    let mut backend = Backend::from_task(name, address, task);
    backend.datagram = Some(socket);
    backend
}

pub fn listener(id: &str, protocol: ListenerProtocol, pool: Option<&str>) -> Listener {
    Listener {
        id: id.into(),
        protocol,
        bind: "127.0.0.1:0".parse().expect("loopback address"),
        connection_limit: None,
        timeout_client_data: 50_000,
        timeout_member_connect: 5_000,
        timeout_member_data: 50_000,
        insert_headers: InsertHeaders::default(),
        default_pool_id: pool.map(Into::into),
        l7_policies: vec![],
        tls: None,
        sni: Vec::new(),
        tls_settings: Default::default(),
        client_authentication: None,
    }
}

pub fn member(backend: &Backend) -> Member {
    member_at(&backend.name, backend.address)
}

pub fn member_at(id: &str, address: SocketAddr) -> Member {
    Member {
        id: id.into(),
        address: address.ip(),
        protocol_port: address.port(),
        weight: 1,
        backup: false,
        admin_state_up: true,
        monitor_address: None,
        monitor_port: None,
    }
}

pub fn pool(id: &str, protocol: PoolProtocol, backends: &[&Backend]) -> Pool {
    Pool {
        id: id.into(),
        protocol,
        lb_algorithm: LbAlgorithm::RoundRobin,
        session_persistence: None,
        members: backends.iter().map(|backend| member(backend)).collect(),
        health_monitor: None,
        tls_enabled: false,
        member_tls: Default::default(),
    }
}

/// A quick monitor: one failure takes a member out, one success brings it back. Only for
/// TCP and UDP-CONNECT checks, whose verdict is in before the timeout can fire: a loopback
/// connect completes at once, and a UDP-CONNECT check passes on silence.
pub fn monitor(monitor_type: MonitorType) -> HealthMonitor {
    HealthMonitor {
        monitor_type,
        delay_ms: 100,
        timeout_ms: 80,
        max_retries: 1,
        max_retries_down: 1,
        http_method: None,
        url_path: None,
        expected_codes: None,
    }
}

/// A monitor for HTTP checks, which need the backend task to be scheduled and answer
/// within the timeout: a longer timeout, and two failures in a row to take a member out.
pub fn http_monitor() -> HealthMonitor {
    HealthMonitor {
        monitor_type: MonitorType::Http,
        delay_ms: 250,
        timeout_ms: 250,
        max_retries: 1,
        max_retries_down: 2,
        http_method: None,
        url_path: None,
        expected_codes: None,
    }
}

/// Connects through the proxy and reads the echo backend's greeting.
pub async fn greeting(address: SocketAddr) -> (String, BufReader<TcpStream>) {
    let stream = tokio::time::timeout(DEADLINE, TcpStream::connect(address))
        .await
        .expect("connect in time")
        .expect("connect");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    tokio::time::timeout(DEADLINE, reader.read_line(&mut line))
        .await
        .expect("greeting in time")
        .expect("greeting");
    (line.trim_end().to_owned(), reader)
}

pub async fn greeting_name(address: SocketAddr) -> String {
    greeting(address).await.0
}

/// Sends `text` on an echo connection and expects it back.
pub async fn echo_round_trip(connection: &mut BufReader<TcpStream>, text: &str) {
    connection
        .get_mut()
        .write_all(format!("{text}\n").as_bytes())
        .await
        .expect("send");
    let mut line = String::new();
    tokio::time::timeout(DEADLINE, connection.read_line(&mut line))
        .await
        .expect("echo in time")
        .expect("echo");
    assert_eq!(line, format!("{text}\n"));
}

/// Whether the proxy closes a connection without a byte: what a client over the
/// connection limit, or of a listener with no member, sees.
pub async fn closed_without_data(address: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(address).await else {
        return true;
    };
    let mut buffer = [0u8; 64];
    matches!(
        tokio::time::timeout(DEADLINE, stream.read(&mut buffer)).await,
        Ok(Ok(0) | Err(_))
    )
}

pub async fn wait_for_status(proxy: &Proxy, pool: &str, member: &str, wanted: OperatingStatus) {
    let mut statuses = proxy.member_status();
    let reached = tokio::time::timeout(
        DEADLINE,
        statuses.wait_for(|statuses| {
            statuses.get(pool).and_then(|members| members.get(member)) == Some(&wanted)
        }),
    )
    .await
    .is_ok_and(|result| result.is_ok());
    assert!(
        reached,
        "{pool}/{member} never became {wanted:?}: {:?}",
        *statuses.borrow()
    );
}

/// Polls `check` until it holds, failing the test at the deadline.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
