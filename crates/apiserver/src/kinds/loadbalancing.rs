//! `loadbalancing.ronghe.io/v1`: LoadBalancer, Listener, Pool, Member, HealthMonitor,
//! L7Policy and L7Rule, declared for the registry. The wire types and the checks that
//! need no other object live in `ronghe_api_types::loadbalancing`; `admit.rs` holds what
//! needs other objects (parents by uid or name, the VIP port, members reachable from the
//! VIP, certificates from Secrets) and the claims below make a listener port unique on
//! its VIP, a pool the default of one listener at most, a health monitor one per pool
//! and a member's address and port one per pool, under any concurrency.
//!
//! Children carry an owner reference to their parent (a member and a health monitor to
//! their pool, a rule to its policy, a policy to its listener, listeners and pools to
//! their load balancer, and the VIP port too), so deleting a parent deletes its tree.

mod admit;
#[cfg(test)]
mod tests;

use ronghe_api_types::loadbalancing::validate::{self, Problem};
use ronghe_api_types::loadbalancing::{
    ChildStatus, GROUP, HealthMonitorSpec, L7PolicySpec, L7RuleSpec, ListenerSpec,
    LoadBalancerSpec, LoadBalancerStatus, MemberSpec, PoolSpec, spec_of,
};
use ronghe_api_types::validation::FieldCause;
use serde_json::Value;

use super::network::claims::identity;
use super::normalize_custom;
use crate::engine::Claim;
use crate::object;
use crate::registry::{Column, KindSpec, Scope, Subresources};

pub use admit::tree_of;

pub(super) fn kinds() -> Vec<KindSpec> {
    vec![
        load_balancer(),
        listener(),
        pool(),
        member(),
        health_monitor(),
        l7_policy(),
        l7_rule(),
    ]
}

fn causes(problems: Vec<Problem>) -> Vec<FieldCause> {
    problems
        .into_iter()
        .map(|p| FieldCause::invalid(p.field, p.value, p.message))
        .collect()
}

/// Causes for `spec` fields that changed although they may not.
fn immutable(new: &Value, old: Option<&Value>, fields: &[&str]) -> Vec<FieldCause> {
    let Some(old) = old else {
        return Vec::new();
    };
    fields
        .iter()
        .filter_map(|field| {
            let path = format!("/spec/{field}");
            let before = old.pointer(&path);
            let after = new.pointer(&path);
            (before.is_some() && after != before).then(|| {
                FieldCause::invalid(
                    format!("spec.{field}"),
                    after.cloned().unwrap_or(Value::Null),
                    "field is immutable",
                )
            })
        })
        .collect()
}

const STATUS: Subresources = Subresources {
    status: true,
    scale: false,
};

fn provisioning() -> Column {
    Column::text(
        "Provisioning",
        "ACTIVE once its proxy serves it.",
        &["status", "provisioningStatus"],
    )
}

fn operating() -> Column {
    Column::text(
        "Operating",
        "What health checks say.",
        &["status", "operatingStatus"],
    )
}

fn display() -> Column {
    Column::text("Display name", "Octavia's name.", &["spec", "name"])
}

fn claim(key: String, field: &str, reason: &'static str, message: String) -> Claim {
    Claim {
        key,
        field: field.into(),
        reason,
        message,
    }
}

fn load_balancer() -> KindSpec {
    KindSpec {
        short_names: &["lb"],
        categories: &["loadbalancing"],
        subresources: STATUS,
        normalize: normalize_custom::<LoadBalancerSpec, LoadBalancerStatus>,
        validate: Some(|new, old| {
            let mut found = causes(validate::load_balancer(&spec_of(new)));
            found.extend(immutable(
                new,
                old,
                &[
                    "vipSubnetId",
                    "vipNetworkId",
                    "vipPortId",
                    "vipAddress",
                    "provider",
                ],
            ));
            found
        }),
        admit: Some(admit::load_balancer),
        claims: Some(identity),
        fields: &[("spec.name", |o| object::str_at(o, &["spec", "name"]))],
        columns: vec![
            Column::name(),
            display(),
            Column::text("VIP", "Its address.", &["spec", "vipAddress"]),
            provisioning(),
            operating(),
            Column::text("Host", "Where its proxy runs.", &["status", "host"]),
            Column::age(),
        ],
        ..KindSpec::new(
            GROUP,
            "v1",
            "LoadBalancer",
            "loadbalancers",
            Scope::Namespaced,
        )
    }
}

/// The field selector every child offers: its load balancer's uid.
fn by_load_balancer(object: &Value) -> Option<String> {
    object::str_at(object, &["spec", "loadBalancerId"])
}

fn listener() -> KindSpec {
    KindSpec {
        categories: &["loadbalancing"],
        subresources: STATUS,
        normalize: normalize_custom::<ListenerSpec, ChildStatus>,
        validate: Some(|new, old| {
            let mut found = causes(validate::listener(&spec_of(new)));
            found.extend(immutable(
                new,
                old,
                &["loadBalancerId", "protocol", "protocolPort"],
            ));
            found
        }),
        admit: Some(admit::listener),
        claims: Some(|object| {
            let mut claims = identity(object);
            let spec: ListenerSpec = spec_of(object);
            if !spec.load_balancer_id.is_empty() {
                // TCP, HTTP and both HTTPS share the TCP port space of the VIP.
                let transport = if spec.protocol == "UDP" { "udp" } else { "tcp" };
                claims.push(claim(
                    format!(
                        "listener-ports/{}/{transport}/{}",
                        spec.load_balancer_id, spec.protocol_port
                    ),
                    "spec.protocolPort",
                    "DuplicateListenerEntry",
                    format!(
                        "Another Listener on this Load Balancer is already using protocol {} and protocol_port {}",
                        spec.protocol, spec.protocol_port
                    ),
                ));
            }
            claims
        }),
        fields: &[
            ("spec.loadBalancerId", by_load_balancer),
            ("spec.name", |o| object::str_at(o, &["spec", "name"])),
        ],
        columns: vec![
            Column::name(),
            display(),
            Column::text("Protocol", "What it speaks.", &["spec", "protocol"]),
            Column::text("Port", "On the VIP.", &["spec", "protocolPort"]),
            provisioning(),
            operating(),
            Column::age(),
        ],
        ..KindSpec::new(GROUP, "v1", "Listener", "listeners", Scope::Namespaced)
    }
}

fn pool() -> KindSpec {
    KindSpec {
        categories: &["loadbalancing"],
        subresources: STATUS,
        normalize: normalize_custom::<PoolSpec, ChildStatus>,
        validate: Some(|new, old| {
            let mut found = causes(validate::pool(&spec_of(new)));
            found.extend(immutable(
                new,
                old,
                &["loadBalancerId", "listenerId", "protocol"],
            ));
            found
        }),
        admit: Some(admit::pool),
        claims: Some(|object| {
            let mut claims = identity(object);
            let spec: PoolSpec = spec_of(object);
            if let Some(listener) = spec.listener_id.filter(|l| !l.is_empty()) {
                claims.push(claim(
                    format!("default-pools/{listener}"),
                    "spec.listenerId",
                    "DuplicatePoolEntry",
                    format!("Listener {listener} already has a default pool."),
                ));
            }
            claims
        }),
        fields: &[
            ("spec.loadBalancerId", by_load_balancer),
            ("spec.listenerId", |o| {
                Some(object::str_at(o, &["spec", "listenerId"]).unwrap_or_default())
            }),
            ("spec.name", |o| object::str_at(o, &["spec", "name"])),
        ],
        columns: vec![
            Column::name(),
            display(),
            Column::text("Protocol", "What members speak.", &["spec", "protocol"]),
            Column::text(
                "Algorithm",
                "How members are picked.",
                &["spec", "lbAlgorithm"],
            ),
            provisioning(),
            operating(),
            Column::age(),
        ],
        ..KindSpec::new(GROUP, "v1", "Pool", "pools", Scope::Namespaced)
    }
}

fn member() -> KindSpec {
    KindSpec {
        categories: &["loadbalancing"],
        subresources: STATUS,
        normalize: normalize_custom::<MemberSpec, ChildStatus>,
        validate: Some(|new, old| {
            let mut found = causes(validate::member(&spec_of(new)));
            found.extend(immutable(
                new,
                old,
                &[
                    "poolId",
                    "loadBalancerId",
                    "address",
                    "protocolPort",
                    "subnetId",
                ],
            ));
            found
        }),
        admit: Some(admit::member),
        claims: Some(|object| {
            let mut claims = identity(object);
            let spec: MemberSpec = spec_of(object);
            if !spec.pool_id.is_empty() {
                claims.push(claim(
                    format!(
                        "members/{}/{}/{}",
                        spec.pool_id, spec.address, spec.protocol_port
                    ),
                    "spec.address",
                    "DuplicateMemberEntry",
                    format!(
                        "Another member on this pool is already using ip {} on protocol_port {}",
                        spec.address, spec.protocol_port
                    ),
                ));
            }
            claims
        }),
        fields: &[
            ("spec.loadBalancerId", by_load_balancer),
            ("spec.poolId", |o| object::str_at(o, &["spec", "poolId"])),
            ("spec.name", |o| object::str_at(o, &["spec", "name"])),
        ],
        columns: vec![
            Column::name(),
            display(),
            Column::text("Address", "Where it is.", &["spec", "address"]),
            Column::text("Port", "Its port.", &["spec", "protocolPort"]),
            Column::text("Weight", "Its share.", &["spec", "weight"]),
            provisioning(),
            operating(),
            Column::age(),
        ],
        ..KindSpec::new(GROUP, "v1", "Member", "members", Scope::Namespaced)
    }
}

fn health_monitor() -> KindSpec {
    KindSpec {
        short_names: &["hm"],
        categories: &["loadbalancing"],
        subresources: STATUS,
        normalize: normalize_custom::<HealthMonitorSpec, ChildStatus>,
        validate: Some(|new, old| {
            // The pool's protocol is known to admission, which checks the rest.
            let mut found = causes(validate::health_monitor(&spec_of(new), None));
            found.extend(immutable(new, old, &["poolId", "loadBalancerId", "type"]));
            found
        }),
        admit: Some(admit::health_monitor),
        claims: Some(|object| {
            let mut claims = identity(object);
            let spec: HealthMonitorSpec = spec_of(object);
            if !spec.pool_id.is_empty() {
                claims.push(claim(
                    format!("monitors/{}", spec.pool_id),
                    "spec.poolId",
                    "DuplicateHealthMonitor",
                    format!(
                        "This Load Balancer's pool {} already has a health monitor",
                        spec.pool_id
                    ),
                ));
            }
            claims
        }),
        fields: &[
            ("spec.loadBalancerId", by_load_balancer),
            ("spec.poolId", |o| object::str_at(o, &["spec", "poolId"])),
            ("spec.name", |o| object::str_at(o, &["spec", "name"])),
        ],
        columns: vec![
            Column::name(),
            display(),
            Column::text("Type", "How it checks.", &["spec", "type"]),
            Column::text("Delay", "Seconds between checks.", &["spec", "delay"]),
            provisioning(),
            operating(),
            Column::age(),
        ],
        ..KindSpec::new(
            GROUP,
            "v1",
            "HealthMonitor",
            "healthmonitors",
            Scope::Namespaced,
        )
    }
}

fn l7_policy() -> KindSpec {
    KindSpec {
        categories: &["loadbalancing"],
        subresources: STATUS,
        normalize: normalize_custom::<L7PolicySpec, ChildStatus>,
        validate: Some(|new, old| {
            let mut found = causes(validate::l7_policy(&spec_of(new)));
            found.extend(immutable(new, old, &["listenerId", "loadBalancerId"]));
            found
        }),
        admit: Some(admit::l7_policy),
        claims: Some(identity),
        fields: &[
            ("spec.loadBalancerId", by_load_balancer),
            ("spec.listenerId", |o| {
                object::str_at(o, &["spec", "listenerId"])
            }),
            ("spec.name", |o| object::str_at(o, &["spec", "name"])),
        ],
        columns: vec![
            Column::name(),
            display(),
            Column::text("Action", "What it does.", &["spec", "action"]),
            Column::text("Position", "Where it is checked.", &["spec", "position"]),
            provisioning(),
            operating(),
            Column::age(),
        ],
        ..KindSpec::new(GROUP, "v1", "L7Policy", "l7policies", Scope::Namespaced)
    }
}

fn l7_rule() -> KindSpec {
    KindSpec {
        categories: &["loadbalancing"],
        subresources: STATUS,
        normalize: normalize_custom::<L7RuleSpec, ChildStatus>,
        validate: Some(|new, old| {
            let mut found = causes(validate::l7_rule(&spec_of(new)));
            found.extend(immutable(
                new,
                old,
                &["l7PolicyId", "listenerId", "loadBalancerId"],
            ));
            found
        }),
        admit: Some(admit::l7_rule),
        claims: Some(identity),
        fields: &[
            ("spec.loadBalancerId", by_load_balancer),
            ("spec.l7PolicyId", |o| {
                object::str_at(o, &["spec", "l7PolicyId"])
            }),
        ],
        columns: vec![
            Column::name(),
            Column::text("Type", "What it compares.", &["spec", "type"]),
            Column::text("Compare", "How.", &["spec", "compareType"]),
            Column::text("Value", "With what.", &["spec", "value"]),
            provisioning(),
            Column::age(),
        ],
        ..KindSpec::new(GROUP, "v1", "L7Rule", "l7rules", Scope::Namespaced)
    }
}
