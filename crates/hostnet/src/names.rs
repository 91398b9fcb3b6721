//! Names of everything this crate creates, derived from uids: stable across restarts, at
//! most 15 bytes for devices, and recognisable, so reconcile can tell Ronghe's leftovers
//! from anything else on the host.
//!
//! A device name is a two-letter kind, a dash and the first 10 hex digits of the SHA-256
//! of the uid (40 bits: a collision among a host's few thousand devices is about one in
//! a hundred million).

use sha2::{Digest, Sha256};

/// The nftables tables (one per family) this crate owns in each namespace it manages.
pub const NFT_TABLE: &str = "ronghe";

/// Every link this crate creates carries an alias starting with this, whatever its name.
pub const ALIAS_PREFIX: &str = "ronghe:";

/// Kinds of host-netns devices, by their name prefix. The inner ends of veths (`ns-`,
/// `qr-`, `qg-`) belong in other namespaces, so in the host netns they are leftovers of an
/// interrupted apply.
const DEVICE_PREFIXES: [&str; 11] = [
    "rb-", "rx-", "rv-", "rp-", "rt-", "rs-", "rr-", "rg-", "ns-", "qr-", "qg-",
];

/// The first 10 hex digits of the SHA-256 of `parts` joined by '/'.
pub fn short_hash(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(parts.join("/").as_bytes());
    let digest = hasher.finalize();
    digest
        .iter()
        .take(5)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The network's bridge.
pub fn bridge(network_id: &str) -> String {
    format!("rb-{}", short_hash(&[network_id]))
}

/// The network's VXLAN device.
pub fn vxlan(network_id: &str) -> String {
    format!("rx-{}", short_hash(&[network_id]))
}

/// The host side (on the bridge) of a pod port's veth.
pub fn port_host(port_id: &str) -> String {
    format!("rv-{}", short_hash(&[port_id]))
}

/// The pod side of a port's veth while it is still in the host netns (it is renamed
/// `ifname` once moved into the pod's netns).
pub fn port_peer(port_id: &str) -> String {
    format!("rp-{}", short_hash(&[port_id]))
}

/// The TAP of a VM port (the agent puts it in `Attachment::Tap`).
pub fn tap(port_id: &str) -> String {
    format!("rt-{}", short_hash(&[port_id]))
}

/// The host side (on the bridge) of a network's service port.
pub fn service_host(network_id: &str) -> String {
    format!("rs-{}", short_hash(&[network_id]))
}

/// The service port inside the service netns.
pub fn service_inner(network_id: &str) -> String {
    format!("ns-{}", short_hash(&[network_id]))
}

/// The host side (on the network's bridge) of a router interface.
pub fn router_interface_host(router_id: &str, network_id: &str) -> String {
    format!("rr-{}", short_hash(&[router_id, network_id]))
}

/// A router interface inside the router netns.
pub fn router_interface_inner(router_id: &str, network_id: &str) -> String {
    format!("qr-{}", short_hash(&[router_id, network_id]))
}

/// The host side (on the external bridge) of a router's gateway.
pub fn router_gateway_host(router_id: &str) -> String {
    format!("rg-{}", short_hash(&[router_id]))
}

/// A router's gateway interface inside the router netns.
pub fn router_gateway_inner(router_id: &str) -> String {
    format!("qg-{}", short_hash(&[router_id]))
}

/// The named netns (under /run/netns) holding a network's DHCP and metadata.
pub fn service_netns(prefix: &str, network_id: &str) -> String {
    format!("{prefix}net-{}", short_hash(&[network_id]))
}

/// The named netns of a router.
pub fn router_netns(prefix: &str, router_id: &str) -> String {
    format!("{prefix}router-{}", short_hash(&[router_id]))
}

/// The alias written on a link this crate creates: `ronghe:<kind>:<owner uid>`.
pub fn alias(kind: &str, owner: &str) -> String {
    format!("{ALIAS_PREFIX}{kind}:{owner}")
}

/// Whether a host-netns device name has the shape of one of ours.
pub fn is_ronghe_device_name(name: &str) -> bool {
    DEVICE_PREFIXES
        .iter()
        .any(|prefix| name.strip_prefix(prefix).is_some_and(is_short_hash))
}

/// Whether a named netns is one this agent (with `prefix`) would create.
pub fn is_ronghe_netns_name(prefix: &str, name: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|rest| {
        ["net-", "router-"]
            .iter()
            .any(|kind| rest.strip_prefix(kind).is_some_and(is_short_hash))
    })
}

/// A conntrack zone for a network's bridged traffic, so overlapping tenant addresses on
/// different networks never share connection state (1..=65535; zone 0 is the default).
pub fn conntrack_zone(network_id: &str) -> u16 {
    let hash = short_hash(&[network_id, "zone"]);
    let value = u32::from_str_radix(&hash[..4], 16).unwrap_or(0);
    u16::try_from(value % 65535 + 1).unwrap_or(1)
}

fn is_short_hash(text: &str) -> bool {
    text.len() == 10
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_stable_and_recognisable() {
        let id = "0d3c1a4e-7a2b-4c39-9f3e-1b2c3d4e5f60";
        let names = [
            bridge(id),
            vxlan(id),
            port_host(id),
            port_peer(id),
            tap(id),
            service_host(id),
            router_interface_host(id, "n"),
            router_gateway_host(id),
        ];
        for name in &names {
            assert!(name.len() <= 15, "{name}");
            assert!(is_ronghe_device_name(name), "{name}");
        }
        assert_eq!(bridge(id), bridge(id));
        assert_ne!(bridge(id), bridge("another"));
        assert_ne!(
            router_interface_host("r", "n1"),
            router_interface_host("r", "n2")
        );
        assert!(!is_ronghe_device_name("rb-xyz"));
        assert!(!is_ronghe_device_name("eth0"));
        assert!(!is_ronghe_device_name("rb-0123456789a"));
    }

    #[test]
    fn netns_names_belong_to_one_prefix() {
        let name = service_netns("rh-", "net-1");
        assert!(name.starts_with("rh-net-"));
        assert!(is_ronghe_netns_name("rh-", &name));
        assert!(is_ronghe_netns_name("rh-", &router_netns("rh-", "r")));
        assert!(!is_ronghe_netns_name("rh3a-", &name));
        assert!(!is_ronghe_netns_name(
            "rh-",
            &service_netns("rh-x-", "net-1")
        ));
    }

    #[test]
    fn zones_are_never_zero() {
        for id in ["a", "b", "c", "network"] {
            assert_ne!(conntrack_zone(id), 0);
        }
    }
}
