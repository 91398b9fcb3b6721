//! The PROXY protocol (HAProxy's, versions 1 and 2), which PROXY and PROXYV2 pools speak:
//! every connection to one of their members opens with a header saying whom the proxy
//! serves on it, so the member sees the client's address and port, and the address the
//! client connected to, rather than the proxy's. Health checks say they are the proxy's
//! own connections (`UNKNOWN` in version 1, `LOCAL` in version 2).
//!
//! The headers are written here from the specification
//! (<https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt>): version 1 is one
//! line of text, version 2 a 16-byte binary prefix and the addresses. No TLV is sent.
//!
//! A listener also reads version 2 headers ([`read_header`], [`strip_datagram_header`]),
//! on connections and datagrams from the one address the proxy is told to take them from
//! (`ronghe proxy --accept-proxy-from`): the host agent's node-port forwarder, which opens
//! every connection it passes on to the VIP, and starts every datagram, with a header
//! naming the client it carries.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// Which version of the protocol a pool speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    /// Text: `PROXY TCP4 client destination client-port destination-port\r\n`.
    One,
    /// Binary.
    Two,
}

/// The twelve bytes every version 2 header starts with.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The header opening a connection made for a client at `client`, which connected to
/// `destination`. IPv4-mapped IPv6 addresses (a dual-stack socket's IPv4 clients) count
/// as IPv4; addresses of different families are both given as IPv6 (an IPv4 address as
/// IPv4-mapped), since a header carries one family.
pub(crate) fn relayed(version: Version, client: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    header(version, Carrier::Stream, client, destination)
}

/// The header of `version` for a client at `client`, which sent to `destination` over
/// `carrier` (version 1 knows only streams).
fn header(
    version: Version,
    carrier: Carrier,
    client: SocketAddr,
    destination: SocketAddr,
) -> Vec<u8> {
    let (source_ip, destination_ip) =
        match (client.ip().to_canonical(), destination.ip().to_canonical()) {
            (IpAddr::V4(source), IpAddr::V4(destination)) => {
                (IpAddr::V4(source), IpAddr::V4(destination))
            }
            (source, destination) => (IpAddr::V6(as_v6(source)), IpAddr::V6(as_v6(destination))),
        };
    let (source_port, destination_port) = (client.port(), destination.port());
    match version {
        Version::One => {
            let family = if source_ip.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {source_ip} {destination_ip} {source_port} {destination_port}\r\n"
            )
            .into_bytes()
        }
        Version::Two => {
            let mut header = Vec::with_capacity(16 + 36);
            header.extend_from_slice(&V2_SIGNATURE);
            // Version 2, command PROXY.
            header.push(0x21);
            let addresses: Vec<u8> = match (source_ip, destination_ip) {
                (IpAddr::V4(source), IpAddr::V4(destination)) => {
                    // AF_INET.
                    header.push(0x10 | carrier as u8);
                    [source.octets(), destination.octets()].concat()
                }
                (source, destination) => {
                    // AF_INET6.
                    header.push(0x20 | carrier as u8);
                    [as_v6(source).octets(), as_v6(destination).octets()].concat()
                }
            };
            let length = u16::try_from(addresses.len() + 4).unwrap_or(u16::MAX);
            header.extend_from_slice(&length.to_be_bytes());
            header.extend_from_slice(&addresses);
            header.extend_from_slice(&source_port.to_be_bytes());
            header.extend_from_slice(&destination_port.to_be_bytes());
            header
        }
    }
}

/// The version 2 header a connection carrying a client at `client`, which connected to
/// `destination`, opens with: what a proxy takes from the address it is told to
/// ([`crate::ProxyOptions::accept_proxy_from`]).
pub fn header_v2(client: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    header(Version::Two, Carrier::Stream, client, destination)
}

/// The version 2 header each datagram of a client at `client`, which sent to
/// `destination`, starts with when passed on from the address a proxy takes headers from.
pub fn datagram_header_v2(client: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    header(Version::Two, Carrier::Datagram, client, destination)
}

/// The transport a version 2 header's family names (its low four bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Carrier {
    Stream = 1,
    Datagram = 2,
}

/// The header of a connection the proxy makes for itself (a health check): the member is
/// to use the connection's own addresses.
pub(crate) fn local(version: Version) -> Vec<u8> {
    match version {
        Version::One => b"PROXY UNKNOWN\r\n".to_vec(),
        Version::Two => {
            let mut header = V2_SIGNATURE.to_vec();
            // Version 2, command LOCAL; family UNSPEC; no addresses.
            header.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
            header
        }
    }
}

/// The most bytes taken after a version 2 header's 16-byte prefix (addresses and
/// TLVs); a longer header is refused rather than read.
const MAX_V2_BODY: usize = 512;

/// What a version 2 header says of the connection it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announced {
    /// Command PROXY: it carries a client at `client`, which connected to `destination`.
    Relayed {
        client: SocketAddr,
        destination: SocketAddr,
    },
    /// Command LOCAL, or PROXY with family UNSPEC: the connection's own addresses stand.
    Local,
}

/// Reads the version 2 header a connection opens with, and not a byte past it (what
/// follows is the client's).
pub async fn read_header<R: AsyncRead + Unpin>(stream: &mut R) -> io::Result<Announced> {
    let mut prefix = [0u8; 16];
    stream.read_exact(&mut prefix).await?;
    let length = body_length(&prefix)?;
    let mut body = [0u8; MAX_V2_BODY];
    stream.read_exact(&mut body[..length]).await?;
    announced(prefix[12], prefix[13], &body[..length], Carrier::Stream)
}

/// What the version 2 header `datagram` starts with says, and the rest of it (the
/// client's datagram).
pub(crate) fn strip_datagram_header(datagram: &[u8]) -> io::Result<(Announced, &[u8])> {
    let prefix: &[u8; 16] = datagram
        .first_chunk()
        .ok_or_else(|| invalid("a datagram shorter than a PROXY protocol header"))?;
    let length = body_length(prefix)?;
    let body = datagram
        .get(16..16 + length)
        .ok_or_else(|| invalid("a datagram shorter than its PROXY protocol header"))?;
    let announced = announced(prefix[12], prefix[13], body, Carrier::Datagram)?;
    Ok((announced, &datagram[16 + length..]))
}

/// The length of the addresses and TLVs after a version 2 header's `prefix`.
fn body_length(prefix: &[u8; 16]) -> io::Result<usize> {
    if prefix[..12] != V2_SIGNATURE {
        return Err(invalid("not a PROXY protocol version 2 header"));
    }
    if prefix[12] >> 4 != 2 {
        return Err(invalid("a PROXY protocol header of a version other than 2"));
    }
    let length = usize::from(u16::from_be_bytes([prefix[14], prefix[15]]));
    if length > MAX_V2_BODY {
        return Err(invalid("a PROXY protocol header longer than 512 bytes"));
    }
    Ok(length)
}

/// What a header of `version_command` and `family` with `body` after its prefix says,
/// on a connection or datagram (`carrier`).
fn announced(
    version_command: u8,
    family: u8,
    body: &[u8],
    carrier: Carrier,
) -> io::Result<Announced> {
    match version_command & 0x0f {
        0x0 => return Ok(Announced::Local),
        0x1 => {}
        _ => return Err(invalid("a PROXY protocol header with an unknown command")),
    }
    let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
    if family != 0x00 && family & 0x0f != carrier as u8 {
        return Err(invalid(match carrier {
            Carrier::Stream => "a PROXY protocol header of a transport other than TCP",
            Carrier::Datagram => "a PROXY protocol header of a transport other than UDP",
        }));
    }
    match family >> 4 {
        // UNSPEC: the receiver is to use the connection's own addresses.
        0x0 => Ok(Announced::Local),
        // AF_INET.
        0x1 if body.len() >= 12 => {
            let ip = |at: usize| Ipv4Addr::new(body[at], body[at + 1], body[at + 2], body[at + 3]);
            Ok(Announced::Relayed {
                client: SocketAddr::from((ip(0), port(8))),
                destination: SocketAddr::from((ip(4), port(10))),
            })
        }
        // AF_INET6.
        0x2 if body.len() >= 36 => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(octets)).to_canonical()
            };
            Ok(Announced::Relayed {
                client: SocketAddr::new(ip(0), port(32)),
                destination: SocketAddr::new(ip(16), port(34)),
            })
        }
        0x1 | 0x2 => Err(invalid(
            "a PROXY protocol header too short for its addresses",
        )),
        _ => Err(invalid(
            "a PROXY protocol header of an address family other than IPv4 or IPv6",
        )),
    }
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn as_v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(ip) => ip.to_ipv6_mapped(),
        IpAddr::V6(ip) => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_one_is_a_line_naming_both_ends() {
        let client = SocketAddr::from(([192, 0, 2, 7], 40000));
        let vip = SocketAddr::from(([10, 0, 0, 5], 80));
        assert_eq!(
            relayed(Version::One, client, vip),
            b"PROXY TCP4 192.0.2.7 10.0.0.5 40000 80\r\n"
        );
        let client6: SocketAddr = "[2001:db8::1]:5000".parse().unwrap();
        assert_eq!(
            relayed(Version::One, client6, vip),
            b"PROXY TCP6 2001:db8::1 ::ffff:10.0.0.5 5000 80\r\n"
        );
        assert_eq!(local(Version::One), b"PROXY UNKNOWN\r\n");
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:40000".parse().unwrap();
        let mapped_vip: SocketAddr = "[::ffff:10.0.0.5]:80".parse().unwrap();
        assert_eq!(
            relayed(Version::One, mapped, mapped_vip),
            b"PROXY TCP4 192.0.2.7 10.0.0.5 40000 80\r\n",
            "a dual-stack socket's IPv4 client is IPv4"
        );
    }

    #[test]
    fn version_two_is_the_binary_prefix_then_the_addresses() {
        let client = SocketAddr::from(([192, 0, 2, 7], 40000));
        let vip = SocketAddr::from(([10, 0, 0, 5], 80));
        let header = relayed(Version::Two, client, vip);
        let mut expected = b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a".to_vec();
        expected.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
        expected.extend_from_slice(&[192, 0, 2, 7, 10, 0, 0, 5]);
        expected.extend_from_slice(&40000u16.to_be_bytes());
        expected.extend_from_slice(&80u16.to_be_bytes());
        assert_eq!(header, expected);

        let client6: SocketAddr = "[2001:db8::1]:5000".parse().unwrap();
        let header = relayed(Version::Two, client6, vip);
        assert_eq!(&header[12..16], &[0x21, 0x21, 0x00, 36]);
        assert_eq!(header.len(), 16 + 36);
        assert_eq!(
            &header[16..32],
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );

        let local = local(Version::Two);
        assert_eq!(&local[..12], &expected[..12]);
        assert_eq!(&local[12..], &[0x20, 0x00, 0x00, 0x00]);
    }

    fn read(bytes: &[u8]) -> io::Result<Announced> {
        let mut reader = bytes;
        futures::executor::block_on(read_header(&mut reader))
    }

    #[test]
    fn a_version_two_header_reads_back_as_written_and_no_further() {
        let client = SocketAddr::from(([192, 0, 2, 7], 40000));
        let vip = SocketAddr::from(([10, 0, 0, 5], 80));
        let mut bytes = relayed(Version::Two, client, vip);
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let mut reader = &bytes[..];
        let announced = futures::executor::block_on(read_header(&mut reader)).unwrap();
        assert_eq!(
            announced,
            Announced::Relayed {
                client,
                destination: vip
            }
        );
        assert_eq!(
            reader, b"GET / HTTP/1.1\r\n",
            "the client's bytes stay unread"
        );

        let client6: SocketAddr = "[2001:db8::1]:5000".parse().unwrap();
        let vip6: SocketAddr = "[2001:db8::5]:443".parse().unwrap();
        assert_eq!(
            read(&relayed(Version::Two, client6, vip6)).unwrap(),
            Announced::Relayed {
                client: client6,
                destination: vip6
            }
        );
        assert_eq!(read(&local(Version::Two)).unwrap(), Announced::Local);
    }

    #[test]
    fn a_version_two_header_with_tlvs_is_read_past_them() {
        let client = SocketAddr::from(([192, 0, 2, 7], 40000));
        let vip = SocketAddr::from(([10, 0, 0, 5], 80));
        let mut bytes = relayed(Version::Two, client, vip);
        // A PP2_TYPE_NOOP TLV of three bytes, counted in the length.
        bytes[15] += 6;
        bytes.extend_from_slice(&[0x04, 0x00, 0x03, 1, 2, 3]);
        bytes.push(b'X');
        let mut reader = &bytes[..];
        assert!(matches!(
            futures::executor::block_on(read_header(&mut reader)),
            Ok(Announced::Relayed { .. })
        ));
        assert_eq!(reader, b"X");
    }

    #[test]
    fn what_is_not_a_version_two_tcp_header_is_refused() {
        let client = SocketAddr::from(([192, 0, 2, 7], 40000));
        let vip = SocketAddr::from(([10, 0, 0, 5], 80));
        let good = relayed(Version::Two, client, vip);
        let refused = |bytes: &[u8], why: &str| {
            let error = read(bytes).expect_err(why);
            assert!(
                matches!(
                    error.kind(),
                    io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                ),
                "{why}: {error}"
            );
        };
        refused(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "an HTTP request");
        refused(&relayed(Version::One, client, vip), "version 1");
        refused(&good[..20], "cut short");
        let mut udp = good.clone();
        udp[13] = 0x12;
        refused(&udp, "UDP over IPv4");
        let mut unknown = good.clone();
        unknown[12] = 0x2f;
        refused(&unknown, "an unknown command");
        let mut version_three = good.clone();
        version_three[12] = 0x31;
        refused(&version_three, "version 3");
        let mut short = good.clone();
        short[15] = 8;
        refused(&short[..24], "addresses cut short by the length");
        let mut long = good;
        long[14..16].copy_from_slice(&600u16.to_be_bytes());
        refused(&long, "longer than taken");
    }

    #[test]
    fn a_datagram_header_is_stripped_and_says_who_sent_the_rest() {
        let client = SocketAddr::from(([192, 0, 2, 7], 40000));
        let vip = SocketAddr::from(([10, 0, 0, 5], 53));
        let mut datagram = datagram_header_v2(client, vip);
        assert_eq!(&datagram[12..14], &[0x21, 0x12], "AF_INET, DGRAM");
        datagram.extend_from_slice(b"query");
        let (announced, rest) = strip_datagram_header(&datagram).unwrap();
        assert_eq!(
            announced,
            Announced::Relayed {
                client,
                destination: vip
            }
        );
        assert_eq!(rest, b"query");
        let client6: SocketAddr = "[2001:db8::1]:5000".parse().unwrap();
        let vip6: SocketAddr = "[2001:db8::5]:53".parse().unwrap();
        let datagram = datagram_header_v2(client6, vip6);
        assert_eq!(datagram[13], 0x22, "AF_INET6, DGRAM");
        let (announced, rest) = strip_datagram_header(&datagram).unwrap();
        assert_eq!(
            announced,
            Announced::Relayed {
                client: client6,
                destination: vip6
            }
        );
        assert!(rest.is_empty());

        // A stream's header on a datagram, or a datagram's on a stream, is refused; so
        // is a datagram shorter than its header.
        assert!(strip_datagram_header(&header_v2(client, vip)).is_err());
        assert!(read(&datagram_header_v2(client, vip)).is_err());
        let whole = datagram_header_v2(client, vip);
        for cut in [0, 10, 16, whole.len() - 1] {
            assert!(
                strip_datagram_header(&whole[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        assert!(strip_datagram_header(b"plain datagram, no header").is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_read_as_a_header_or_fail_without_panicking(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
            signed in proptest::prelude::any::<bool>(),
        ) {
            let mut input = if signed { V2_SIGNATURE.to_vec() } else { Vec::new() };
            input.extend_from_slice(&bytes);
            let _ = read(&input);
            let _ = strip_datagram_header(&input);
        }
    }
}
