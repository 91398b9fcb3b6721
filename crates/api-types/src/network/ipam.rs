//! Address arithmetic for IPAM, with no I/O: CIDRs, default gateways and allocation pools,
//! membership, and picking a free address or a MAC. Uniqueness itself is the store's job
//! (each allocated address is a claim key created in the same transaction as its port);
//! this module only proposes candidates.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use ipnet::IpNet;

use super::AllocationPool;

/// Neutron's base MAC: every MAC it allocates starts with these three octets.
pub const MAC_PREFIX: [u8; 3] = [0xfa, 0x16, 0x3e];

/// Parses a subnet CIDR, which must name the network itself (`10.0.0.0/24`, not
/// `10.0.0.5/24`), with Neutron's messages.
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let net: IpNet = text
        .parse()
        .map_err(|_| format!("'{text}' is not a valid IP subnet."))?;
    if net.network() != net.addr() {
        return Err(format!(
            "'{text}' isn't a recognized IP subnet cidr, '{}' is recommended",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Parses a source range: a CIDR, space-padded or with host bits set, as Kubernetes
/// takes `loadBalancerSourceRanges`; the network it names.
pub fn parse_source_range(text: &str) -> Result<IpNet, String> {
    text.trim()
        .parse::<IpNet>()
        .map(|net| net.trunc())
        .map_err(|_| format!("'{text}' is not a CIDR (e.g. 10.9.8.0/24 or 2001:db8::/64)"))
}

/// Parses an address or a CIDR (as security group rules and address pairs take them);
/// a bare address is a host route (/32, /128).
pub fn parse_prefix(text: &str) -> Result<IpNet, String> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("'{text}' is not a valid IP address or CIDR"))
}

pub fn parse_address(text: &str) -> Result<IpAddr, String> {
    text.parse::<IpAddr>()
        .map_err(|_| format!("'{text}' is not a valid IP address"))
}

fn to_number(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_number(number: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(number))
    } else {
        IpAddr::V4(Ipv4Addr::from(u32::try_from(number).unwrap_or(u32::MAX)))
    }
}

/// The first and last address of a subnet that may be handed out: IPv4 leaves out the
/// network and broadcast addresses, IPv6 the subnet-router anycast address.
fn usable(net: &IpNet) -> Option<(u128, u128)> {
    let first = to_number(net.network());
    let last = to_number(net.broadcast());
    let (first, last) = match net {
        IpNet::V4(_) if net.prefix_len() >= 31 => (first, last),
        IpNet::V4(_) => (first + 1, last.checked_sub(1)?),
        IpNet::V6(_) => (first + 1, last),
    };
    (first <= last).then_some((first, last))
}

/// The default gateway of a subnet: its first usable address.
pub fn default_gateway(net: &IpNet) -> Option<IpAddr> {
    usable(net).map(|(first, _)| from_number(first, net.addr().is_ipv6()))
}

/// The default allocation pools: every usable address but the gateway.
pub fn default_pools(net: &IpNet, gateway: Option<IpAddr>) -> Vec<AllocationPool> {
    let Some((first, last)) = usable(net) else {
        return Vec::new();
    };
    let v6 = net.addr().is_ipv6();
    let mut ranges = vec![(first, last)];
    if let Some(gateway) = gateway.map(to_number) {
        ranges = ranges
            .into_iter()
            .flat_map(|(start, end)| {
                if gateway < start || gateway > end {
                    vec![(start, end)]
                } else {
                    let mut split = Vec::new();
                    if gateway > start {
                        split.push((start, gateway - 1));
                    }
                    if gateway < end {
                        split.push((gateway + 1, end));
                    }
                    split
                }
            })
            .collect();
    }
    ranges
        .into_iter()
        .map(|(start, end)| AllocationPool {
            start: from_number(start, v6).to_string(),
            end: from_number(end, v6).to_string(),
        })
        .collect()
}

/// Allocation pools as numeric ranges, checked against their subnet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pools {
    ranges: Vec<(u128, u128)>,
    v6: bool,
}

impl Pools {
    /// Checks pools the way Neutron does: each inside the subnet, start before end, no two
    /// overlapping, none holding the gateway.
    pub fn new(
        net: &IpNet,
        pools: &[AllocationPool],
        gateway: Option<IpAddr>,
    ) -> Result<Self, String> {
        let mut ranges = Vec::with_capacity(pools.len());
        for pool in pools {
            let start = parse_address(&pool.start)?;
            let end = parse_address(&pool.end)?;
            let (first, last) = usable(net).unwrap_or((1, 0));
            let (start_number, end_number) = (to_number(start), to_number(end));
            if start.is_ipv6() != net.addr().is_ipv6() || end.is_ipv6() != net.addr().is_ipv6() {
                return Err(format!(
                    "The allocation pool {start}-{end} is not of the subnet's IP version."
                ));
            }
            if start_number > end_number {
                return Err(format!(
                    "Invalid input: the start of allocation pool {start}-{end} is after its end."
                ));
            }
            if start_number < first || end_number > last {
                return Err(format!(
                    "The allocation pool {start}-{end} spans beyond the subnet cidr {net}."
                ));
            }
            if let Some(gateway) = gateway
                && (start_number..=end_number).contains(&to_number(gateway))
            {
                return Err(format!(
                    "Gateway ip {gateway} conflicts with allocation pool {start}-{end}."
                ));
            }
            ranges.push((start_number, end_number));
        }
        ranges.sort_unstable();
        for pair in ranges.windows(2) {
            if pair[1].0 <= pair[0].1 {
                let v6 = net.addr().is_ipv6();
                return Err(format!(
                    "Found overlapping allocation pools: {}-{} and {}-{}.",
                    from_number(pair[0].0, v6),
                    from_number(pair[0].1, v6),
                    from_number(pair[1].0, v6),
                    from_number(pair[1].1, v6)
                ));
            }
        }
        Ok(Self {
            ranges,
            v6: net.addr().is_ipv6(),
        })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let number = to_number(address);
        address.is_ipv6() == self.v6
            && self
                .ranges
                .iter()
                .any(|(start, end)| (*start..=*end).contains(&number))
    }

    /// How many addresses the pools hold (saturating).
    pub fn size(&self) -> u128 {
        self.ranges.iter().fold(0u128, |sum, (start, end)| {
            sum.saturating_add(end - start + 1)
        })
    }

    /// A free address, chosen at random among the free ones so that concurrent
    /// allocations rarely propose the same address; `None` when the pools are full.
    /// `random` is any random number (the caller's RNG).
    pub fn pick_free(&self, used: &HashSet<IpAddr>, random: u64) -> Option<IpAddr> {
        let size = self.size();
        if size == 0 {
            return None;
        }
        // Probe from a random offset, then walk forward: the first free address found.
        let start = u128::from(random) % size;
        let mut offset = start;
        let mut probes = 0u128;
        while probes < size {
            let address = self.nth(offset)?;
            if !used.contains(&address) {
                return Some(address);
            }
            offset = (offset + 1) % size;
            probes += 1;
            // Huge IPv6 pools: the used set is small, so this ends quickly anyway.
            if probes > used.len() as u128 + 1 {
                break;
            }
        }
        None
    }

    fn nth(&self, mut offset: u128) -> Option<IpAddr> {
        for (start, end) in &self.ranges {
            let len = end - start + 1;
            if offset < len {
                return Some(from_number(start + offset, self.v6));
            }
            offset -= len;
        }
        None
    }
}

/// Whether two subnets share any address.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// A MAC with Neutron's prefix and three octets from `random`.
pub fn mac_from(random: u64) -> String {
    let bytes = random.to_be_bytes();
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        MAC_PREFIX[0], MAC_PREFIX[1], MAC_PREFIX[2], bytes[5], bytes[6], bytes[7]
    )
}

/// Normalises a MAC to lower-case colon form; refuses multicast and all-zero MACs.
pub fn parse_mac(text: &str) -> Result<String, String> {
    let octets: Vec<u8> = text
        .split([':', '-'])
        .map(|part| {
            if part.len() == 2 {
                u8::from_str_radix(part, 16).ok()
            } else {
                None
            }
        })
        .collect::<Option<_>>()
        .filter(|octets: &Vec<u8>| octets.len() == 6)
        .ok_or_else(|| format!("'{text}' is not a valid MAC address"))?;
    if octets[0] & 1 == 1 || octets.iter().all(|o| *o == 0) {
        return Err(format!("'{text}' is not a valid unicast MAC address"));
    }
    Ok(octets
        .iter()
        .map(|o| format!("{o:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        parse_cidr(text).expect("a cidr")
    }

    #[test]
    fn cidrs_must_name_their_network() {
        assert!(parse_cidr("10.0.0.0/24").is_ok());
        let error = parse_cidr("10.0.0.5/24").unwrap_err();
        assert!(error.contains("'10.0.0.0/24' is recommended"), "{error}");
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("bogus").is_err());
        assert!(parse_cidr("fd00::/64").is_ok());
    }

    #[test]
    fn default_gateway_and_pools() {
        let v4 = net("10.0.0.0/24");
        let gateway = default_gateway(&v4);
        assert_eq!(gateway, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(
            default_pools(&v4, gateway),
            vec![AllocationPool {
                start: "10.0.0.2".into(),
                end: "10.0.0.254".into()
            }]
        );
        // A gateway in the middle splits the pool.
        let pools = default_pools(&v4, Some("10.0.0.100".parse().unwrap()));
        assert_eq!(pools.len(), 2);
        assert_eq!(pools[0].end, "10.0.0.99");
        assert_eq!(pools[1].start, "10.0.0.101");
        let v6 = net("fd00::/64");
        assert_eq!(default_gateway(&v6), Some("fd00::1".parse().unwrap()));
    }

    #[test]
    fn pools_are_checked() {
        let v4 = net("10.0.0.0/24");
        let gateway = Some("10.0.0.1".parse().unwrap());
        let pool = |start: &str, end: &str| AllocationPool {
            start: start.into(),
            end: end.into(),
        };
        assert!(Pools::new(&v4, &[pool("10.0.0.10", "10.0.0.20")], gateway).is_ok());
        let error = Pools::new(&v4, &[pool("10.0.0.1", "10.0.0.20")], gateway).unwrap_err();
        assert!(error.contains("conflicts with allocation pool"), "{error}");
        assert!(Pools::new(&v4, &[pool("10.0.1.1", "10.0.1.20")], gateway).is_err());
        assert!(Pools::new(&v4, &[pool("10.0.0.20", "10.0.0.10")], gateway).is_err());
        let error = Pools::new(
            &v4,
            &[
                pool("10.0.0.10", "10.0.0.20"),
                pool("10.0.0.15", "10.0.0.30"),
            ],
            gateway,
        )
        .unwrap_err();
        assert!(error.contains("overlapping"), "{error}");
    }

    #[test]
    fn picking_never_returns_a_used_address_and_reports_full() {
        let v4 = net("10.0.0.0/29");
        let gateway = default_gateway(&v4);
        let pools = Pools::new(&v4, &default_pools(&v4, gateway), gateway).unwrap();
        assert_eq!(pools.size(), 5);
        let mut used = HashSet::new();
        for random in 0..5u64 {
            let address = pools.pick_free(&used, random * 7919).expect("room left");
            assert!(pools.contains(address));
            assert!(used.insert(address), "{address} handed out twice");
        }
        assert_eq!(pools.pick_free(&used, 3), None);
    }

    #[test]
    fn overlap_and_macs() {
        assert!(overlaps(&net("10.0.0.0/16"), &net("10.0.3.0/24")));
        assert!(!overlaps(&net("10.0.0.0/24"), &net("10.0.1.0/24")));
        let mac = mac_from(0x0123_4567_89ab_cdef);
        assert_eq!(mac, "fa:16:3e:ab:cd:ef");
        assert_eq!(parse_mac("FA-16-3E-00-00-01").unwrap(), "fa:16:3e:00:00:01");
        assert!(parse_mac("01:00:5e:00:00:01").is_err(), "multicast");
        assert!(parse_mac("fa:16:3e:00:00").is_err());
    }
}
