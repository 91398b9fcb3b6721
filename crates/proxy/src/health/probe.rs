//! One health check of one member: TCP connect, HTTP(S) request, UDP datagram. The TCP
//! connections of a PROXY pool's checks open with the PROXY protocol's header for the
//! proxy's own connections (`UNKNOWN`, `LOCAL`), as its members expect a header first;
//! not when the member is checked at a monitor address or port of its own, which is
//! HAProxy's rule (and so Octavia's). By the same rule, HTTP checks of a pool with
//! `tls_enabled` are made in TLS where the member serves, and in the clear at a monitor
//! address or port of its own (HAProxy's `ssl` server without `check-ssl`); HTTPS checks
//! are TLS everywhere.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::config::{ExpectedCodes, HealthMonitor, MonitorType, PoolProtocol};
use crate::pool::member_io;
use crate::proxy_protocol;

/// Why a member failed one check.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeFailure {
    #[error("no answer within the monitor's timeout")]
    TimedOut,
    #[error("{operation} failed")]
    Io {
        operation: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS handshake failed")]
    Tls(#[source] std::io::Error),
    #[error("answered {status}, not an expected code")]
    UnexpectedStatus { status: u16 },
    #[error("answered something that is not an HTTP status line")]
    NotHttp,
    #[error("port unreachable (ICMP)")]
    PortUnreachable,
}

fn io(operation: &'static str) -> impl FnOnce(std::io::Error) -> ProbeFailure {
    move |source| ProbeFailure::Io { operation, source }
}

/// Where an HTTP monitor's checks are made in TLS (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsChecks {
    Never,
    /// Where the member serves, not at a monitor address or port of its own: HTTP
    /// monitors of `tls_enabled` pools.
    AtMember,
    /// HTTPS monitors.
    Everywhere,
}

impl TlsChecks {
    /// Whether a check at the member's own address and port (`at_member`) or elsewhere
    /// is made in TLS.
    fn at(self, at_member: bool) -> bool {
        match self {
            TlsChecks::Never => false,
            TlsChecks::AtMember => at_member,
            TlsChecks::Everywhere => true,
        }
    }
}

/// How one pool's monitor checks a member; built once per monitor.
#[derive(Debug)]
pub(crate) enum Probe {
    /// TCP monitors, and PING monitors of TCP and HTTP pools (see the module
    /// documentation of `health`).
    TcpConnect { proxy_header: Option<Vec<u8>> },
    Http {
        method: String,
        path: String,
        expected: ExpectedCodes,
        tls: TlsChecks,
        /// The TLS of checks at the member's own address and port: the pool's, so a
        /// member that asks for the pool's certificate gets it there too. Elsewhere
        /// (a monitor address or port) checks are unverified and show no certificate.
        at_member_tls: Arc<rustls::ClientConfig>,
        proxy_header: Option<Vec<u8>>,
    },
    /// UDP-CONNECT monitors, and PING monitors of UDP pools.
    UdpConnect,
}

impl Probe {
    /// A probe for `monitor` of a pool of `pool_protocol` that has `tls_enabled` or not,
    /// and TLS settings of its own towards members (`member_tls`) or not.
    pub fn new(
        monitor: &HealthMonitor,
        (pool_protocol, tls_enabled): (PoolProtocol, bool),
        expected_codes: Option<ExpectedCodes>,
        member_tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Probe {
        let at_member_tls = member_tls.unwrap_or_else(crate::tls::member_client_config);
        let proxy_header = pool_protocol.proxy_protocol().map(proxy_protocol::local);
        let http = |tls| Probe::Http {
            method: monitor.http_method.clone().unwrap_or_else(|| "GET".into()),
            path: monitor.url_path.clone().unwrap_or_else(|| "/".into()),
            expected: expected_codes
                .clone()
                .unwrap_or_else(ExpectedCodes::ok_only),
            tls,
            at_member_tls: Arc::clone(&at_member_tls),
            proxy_header: proxy_header.clone(),
        };
        match monitor.monitor_type {
            MonitorType::Ping if pool_protocol == PoolProtocol::Udp => Probe::UdpConnect,
            MonitorType::Ping | MonitorType::Tcp => Probe::TcpConnect {
                proxy_header: proxy_header.clone(),
            },
            MonitorType::Http if tls_enabled => http(TlsChecks::AtMember),
            MonitorType::Http => http(TlsChecks::Never),
            MonitorType::Https => http(TlsChecks::Everywhere),
            MonitorType::UdpConnect => Probe::UdpConnect,
        }
    }

    /// Whether a check that ran out of time counts as passed: only for UDP-CONNECT,
    /// where no answer is the normal answer.
    pub fn silence_passes(&self) -> bool {
        matches!(self, Probe::UdpConnect)
    }

    /// Checks `target` once, a PROXY pool's header first if `at_member` (the member is
    /// checked where it serves). The caller bounds the time it may take.
    pub async fn check(&self, target: SocketAddr, at_member: bool) -> Result<(), ProbeFailure> {
        fn send(header: &Option<Vec<u8>>, at_member: bool) -> Option<&[u8]> {
            header.as_deref().filter(|_| at_member)
        }
        match self {
            Probe::TcpConnect { proxy_header } => {
                connect(target, send(proxy_header, at_member)).await?;
                Ok(())
            }
            Probe::Http {
                method,
                path,
                expected,
                tls,
                at_member_tls,
                proxy_header,
            } => {
                let stream = connect(target, send(proxy_header, at_member)).await?;
                let status = if tls.at(at_member) {
                    let config = match at_member {
                        true => Arc::clone(at_member_tls),
                        false => crate::tls::member_client_config(),
                    };
                    let stream = member_io::tls(stream, target.ip(), None, config)
                        .await
                        .map_err(ProbeFailure::Tls)?;
                    http_status(stream, method, path, target).await?
                } else {
                    http_status(stream, method, path, target).await?
                };
                if expected.contains(status) {
                    Ok(())
                } else {
                    Err(ProbeFailure::UnexpectedStatus { status })
                }
            }
            Probe::UdpConnect => udp_connect(target).await,
        }
    }
}

/// Connects to `target`, sending `proxy_header` first if there is one.
async fn connect(
    target: SocketAddr,
    proxy_header: Option<&[u8]>,
) -> Result<TcpStream, ProbeFailure> {
    let mut stream = TcpStream::connect(target).await.map_err(io("connect"))?;
    if let Some(header) = proxy_header {
        stream
            .write_all(header)
            .await
            .map_err(io("send the PROXY header"))?;
    }
    Ok(stream)
}

/// Sends one request and reads the status code of the answer.
async fn http_status<S>(
    mut stream: S,
    method: &str,
    path: &str,
    target: SocketAddr,
) -> Result<u16, ProbeFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: ronghe-proxy-health-check\r\nConnection: close\r\nAccept: */*\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(io("send request"))?;
    let mut head = Vec::with_capacity(128);
    let mut buffer = [0u8; 512];
    // The status line is all we need; bound what we read in case a member talks forever.
    while !head.contains(&b'\n') && head.len() < 4096 {
        let read = stream
            .read(&mut buffer)
            .await
            .map_err(io("read response"))?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    parse_status_line(&head).ok_or(ProbeFailure::NotHttp)
}

/// `HTTP/1.1 200 OK` → 200.
pub(crate) fn parse_status_line(head: &[u8]) -> Option<u16> {
    let line = head.split(|byte| *byte == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_ascii_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

/// Octavia's UDP-CONNECT: send a datagram; an ICMP port unreachable (seen as
/// ECONNREFUSED on a connected socket) is a failure, an answer or silence is a success.
/// Silence runs into the caller's timeout, which [`Probe::silence_passes`] turns into a pass.
async fn udp_connect(target: SocketAddr) -> Result<(), ProbeFailure> {
    let local: SocketAddr = match target {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.map_err(io("bind"))?;
    socket.connect(target).await.map_err(io("connect"))?;
    let refused = |error: &std::io::Error| error.kind() == std::io::ErrorKind::ConnectionRefused;
    match socket.send(b"ronghe-proxy-health-check").await {
        Err(error) if refused(&error) => return Err(ProbeFailure::PortUnreachable),
        Err(error) => return Err(io("send")(error)),
        Ok(_) => {}
    }
    let mut buffer = [0u8; 64];
    match socket.recv(&mut buffer).await {
        Ok(_) => Ok(()),
        Err(error) if refused(&error) => Err(ProbeFailure::PortUnreachable),
        Err(error) => Err(io("receive")(error)),
    }
}
