//! A UDP node port's socket. Bound to every address of the host, it learns which address
//! each datagram came to (`IP_PKTINFO`) and answers from that one, so a client gets its
//! answers from the address it sent to even on a host with several addresses on one
//! network, where routing alone would pick another (and the client, if connected,
//! would drop them).

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;

use nix::libc;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, SockaddrStorage, recvmsg, sendmsg,
    setsockopt, sockopt,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// A datagram received: its length, who sent it, and the local address it came to (when
/// the kernel said).
pub struct Received {
    pub length: usize,
    pub client: SocketAddr,
    pub local: Option<Ipv4Addr>,
}

pub struct NodePortSocket {
    socket: UdpSocket,
}

impl NodePortSocket {
    pub fn new(socket: UdpSocket) -> Self {
        if socket.local_addr().is_ok_and(|address| address.is_ipv4())
            && let Err(error) = setsockopt(&socket, sockopt::Ipv4PacketInfo, &true)
        {
            tracing::warn!(%error, "node port: no IP_PKTINFO; answers leave from the address routing picks");
        }
        Self { socket }
    }

    pub async fn recv(&self, buffer: &mut [u8]) -> io::Result<Received> {
        let fd = self.socket.as_raw_fd();
        self.socket
            .async_io(Interest::READABLE, || {
                let mut control = nix::cmsg_space!(libc::in_pktinfo);
                let mut iov = [IoSliceMut::new(buffer)];
                let message = recvmsg::<SockaddrStorage>(
                    fd,
                    &mut iov,
                    Some(&mut control),
                    MsgFlags::MSG_DONTWAIT,
                )?;
                let local = message.cmsgs().ok().and_then(|mut messages| {
                    messages.find_map(|message| match message {
                        ControlMessageOwned::Ipv4PacketInfo(info) => {
                            Some(Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr)))
                        }
                        _ => None,
                    })
                });
                let client = message
                    .address
                    .as_ref()
                    .and_then(|address| {
                        if let Some(v4) = address.as_sockaddr_in() {
                            Some(SocketAddr::from((v4.ip(), v4.port())))
                        } else {
                            address
                                .as_sockaddr_in6()
                                .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
                        }
                    })
                    .ok_or_else(|| io::Error::other("a datagram without a sender"))?;
                Ok(Received {
                    length: message.bytes,
                    client,
                    local,
                })
            })
            .await
    }

    /// Sends `datagram` to `client` from `local` when known (else from the address
    /// routing picks).
    pub async fn send(
        &self,
        datagram: &[u8],
        client: SocketAddr,
        local: Option<Ipv4Addr>,
    ) -> io::Result<()> {
        let (Some(local), SocketAddr::V4(to)) = (local, client) else {
            return self.socket.send_to(datagram, client).await.map(drop);
        };
        let info = libc::in_pktinfo {
            ipi_ifindex: 0,
            ipi_spec_dst: libc::in_addr {
                s_addr: u32::from(local).to_be(),
            },
            ipi_addr: libc::in_addr { s_addr: 0 },
        };
        let to = SockaddrIn::from(to);
        let fd = self.socket.as_raw_fd();
        self.socket
            .async_io(Interest::WRITABLE, || {
                sendmsg(
                    fd,
                    &[IoSlice::new(datagram)],
                    &[ControlMessage::Ipv4PacketInfo(&info)],
                    MsgFlags::MSG_DONTWAIT,
                    Some(&to),
                )
                .map_err(io::Error::from)
            })
            .await
            .map(drop)
    }
}
