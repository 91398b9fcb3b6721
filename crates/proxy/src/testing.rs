//! Helpers shared by the crate's unit tests: deadlines, and loopback addresses that stay
//! reserved while they refuse, so no other process can take a port a test expects dead.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, UdpSocket};

/// How long anything that must happen may take. Generous: the machine is small and
/// shared; passing tests never wait this long.
pub const DEADLINE: Duration = Duration::from_secs(20);

fn reuseport_socket(address: SocketAddr) -> TcpSocket {
    let socket = TcpSocket::new_v4().expect("TCP socket");
    socket.set_reuseport(true).expect("SO_REUSEPORT");
    socket.bind(address).expect("bind on loopback");
    socket
}

/// A TCP address that refuses connections: a socket bound but not listening. Keep the
/// socket as long as the address must refuse (a released port could be taken by anyone);
/// `listen` on it brings the address to life.
pub fn refusing_tcp_address() -> (TcpSocket, SocketAddr) {
    let socket = reuseport_socket("127.0.0.1:0".parse().expect("loopback address"));
    let address = socket.local_addr().expect("bound address");
    (socket, address)
}

/// A listener whose port a placeholder can hold on to after it closes
/// ([`close_keeping_the_port`]).
pub fn reusable_listener() -> TcpListener {
    reuseport_socket("127.0.0.1:0".parse().expect("loopback address"))
        .listen(64)
        .expect("listen")
}

/// Closes `listener` while keeping its port reserved: afterwards the address refuses,
/// until `listen` on the returned placeholder revives it.
pub fn close_keeping_the_port(listener: TcpListener) -> TcpSocket {
    let placeholder = reuseport_socket(listener.local_addr().expect("bound address"));
    drop(listener);
    placeholder
}

/// A UDP address that answers every datagram with ICMP port unreachable, yet stays
/// reserved: a socket bound there but connected elsewhere, so the kernel finds no socket
/// for datagrams from anyone else.
pub async fn refusing_udp_address() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("UDP bind");
    socket
        .connect("127.0.0.1:9")
        .await
        .expect("connect a UDP socket");
    let address = socket.local_addr().expect("bound address");
    (socket, address)
}
