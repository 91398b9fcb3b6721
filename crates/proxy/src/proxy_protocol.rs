//! The PROXY protocol (HAProxy's, versions 1 and 2), which PROXY and PROXYV2 pools speak:
//! every connection to one of their members opens with a header saying whom the proxy
//! serves on it, so the member sees the client's address and port, and the address the
//! client connected to, rather than the proxy's. Health checks say they are the proxy's
//! own connections (`UNKNOWN` in version 1, `LOCAL` in version 2).
//!
//! The headers are written here from the specification
//! (<https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt>): version 1 is one
//! line of text, version 2 a 16-byte binary prefix and the addresses. No TLV is sent.

use std::net::{IpAddr, SocketAddr};

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
                    // AF_INET, STREAM.
                    header.push(0x11);
                    [source.octets(), destination.octets()].concat()
                }
                (source, destination) => {
                    // AF_INET6, STREAM.
                    header.push(0x21);
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
}
