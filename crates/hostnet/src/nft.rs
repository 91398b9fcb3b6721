//! nftables rulesets rendered as `nft -f` text, as pure functions of the plan.
//!
//! Every rendering starts with `table F ronghe` / `delete table F ronghe` and then the
//! whole table, so one `nft -f` replaces it in one transaction: there is never a moment
//! without rules, and conntrack entries (which live outside the table) survive.
//!
//! `host` renders the host netns: anti-spoofing (stateless, bridge family) and security
//! groups (stateful, inet family, which sees bridged IP through br_netfilter; this kernel
//! has no conntrack in the bridge family). `router` renders a router netns's NAT.

mod host;
mod router;

pub use host::render_host;
pub use router::render_router;

use std::fmt::Write as _;

use ipnet::IpNet;

/// The start of a ruleset that replaces table `family ronghe` atomically.
fn replace_table(out: &mut String, family: &str) {
    let table = crate::names::NFT_TABLE;
    // Creating the table first makes the delete valid when it does not exist yet.
    let _ = writeln!(out, "table {family} {table}");
    let _ = writeln!(out, "delete table {family} {table}");
    let _ = writeln!(out, "table {family} {table} {{");
}

/// An interface name as an nft string (names are checked to hold no quotes).
fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

/// A prefix as nft writes it: a host route without its `/32` or `/128`.
fn prefix(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.trunc().to_string()
    }
}

/// `{ a, b }`, or the single element bare.
fn set(elements: &[String]) -> String {
    match elements {
        [one] => one.clone(),
        _ => format!("{{ {} }}", elements.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_drop_host_lengths_and_host_bits() {
        assert_eq!(prefix(&"10.0.0.5/32".parse().unwrap()), "10.0.0.5");
        assert_eq!(prefix(&"10.0.0.5/24".parse().unwrap()), "10.0.0.0/24");
        assert_eq!(prefix(&"fd00::1/128".parse().unwrap()), "fd00::1");
        assert_eq!(set(&["a".into()]), "a");
        assert_eq!(set(&["a".into(), "b".into()]), "{ a, b }");
    }
}
