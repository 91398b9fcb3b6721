//! `network.ronghe.io/v1`: Network, Subnet, Port, Router, SecurityGroup,
//! SecurityGroupRule, FloatingIP, PortForwarding and QosPolicy, declared for the registry.
//! The wire types and the checks that need no other object live in
//! `ronghe_api_types::network`; `admit.rs` holds what needs other objects (resolving
//! references, IPAM, VNIs, the project's `default` security group) and `claims.rs` the
//! unique keys each kind holds (addresses, MACs, VNIs, uids), which make duplicates
//! impossible under any concurrency.

mod admit;
pub(super) mod claims;
#[cfg(test)]
mod tests;

use ronghe_api_types::network::validate::{self, Problem};
use ronghe_api_types::network::{
    FloatingIpSpec, FloatingIpStatus, GROUP, NetworkSpec, PortForwardingSpec, PortSpec, PortStatus,
    QosPolicySpec, RouterSpec, RouterStatus, SecurityGroupRuleSpec, SecurityGroupSpec, SubnetSpec,
};
use ronghe_api_types::validation::FieldCause;
use serde_json::{Value, json};

use super::normalize_custom;
use crate::object;
use crate::registry::{Column, KindSpec, Scope, Subresources};

pub use admit::{
    DEFAULT_CIDR, default_network, default_security_group, network_is_public, resolve, resolve_in,
    router_reaching, subnets_of,
};

pub(super) fn kinds() -> Vec<KindSpec> {
    vec![
        network(),
        subnet(),
        port(),
        router(),
        security_group(),
        security_group_rule(),
        floating_ip(),
        port_forwarding(),
        qos_policy(),
    ]
}

/// The problems of a typed spec as field causes.
fn causes(problems: Vec<Problem>) -> Vec<FieldCause> {
    problems
        .into_iter()
        .map(|p| FieldCause::invalid(p.field, p.value, p.message))
        .collect()
}

fn spec<T: serde::de::DeserializeOwned + Default>(object: &Value) -> T {
    ronghe_api_types::network::spec_of(object)
}

/// Causes for `spec` fields that changed although they may not.
fn immutable(new: &Value, old: Option<&Value>, fields: &[&str]) -> Vec<FieldCause> {
    let Some(old) = old else {
        return Vec::new();
    };
    fields
        .iter()
        .filter(|field| {
            let path = format!("/spec/{field}");
            let before = old.pointer(&path);
            // A value the server filled in later (a VNI, an address) may be set once.
            before.is_some() && new.pointer(&path) != before
        })
        .map(|field| {
            FieldCause::invalid(
                format!("spec.{field}"),
                new.pointer(&format!("/spec/{field}"))
                    .cloned()
                    .unwrap_or(Value::Null),
                "field is immutable",
            )
        })
        .collect()
}

fn network() -> KindSpec {
    KindSpec {
        short_names: &["net"],
        normalize: normalize_custom::<NetworkSpec, Value>,
        default: Some(|network| {
            let spec = object::ensure_object(
                object::ensure_object(network)
                    .entry("spec")
                    .or_insert_with(|| json!({})),
            );
            let flat = spec.get("networkType").and_then(Value::as_str) == Some("flat");
            if !flat {
                spec.insert("networkType".into(), json!("vxlan"));
            }
            spec.entry("mtu").or_insert_with(|| {
                json!(if flat {
                    ronghe_api_types::network::UNDERLAY_MTU
                } else {
                    ronghe_api_types::network::UNDERLAY_MTU
                        - ronghe_api_types::network::VXLAN_OVERHEAD
                })
            });
        }),
        validate: Some(|new, old| {
            let mut found = causes(validate::network(&spec(new)));
            found.extend(immutable(
                new,
                old,
                &["networkType", "physicalNetwork", "segmentationId"],
            ));
            found
        }),
        admit: Some(admit::network),
        claims: Some(claims::network),
        fields: &[
            ("spec.name", |o| object::str_at(o, &["spec", "name"])),
            ("spec.isDefault", |o| {
                Some(
                    o.pointer("/spec/isDefault")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .to_string(),
                )
            }),
        ],
        columns: vec![
            Column::name(),
            Column::text("Display name", "Neutron's name.", &["spec", "name"]),
            Column::text("Type", "vxlan or flat.", &["spec", "networkType"]),
            Column::text("Segment", "The VXLAN VNI.", &["spec", "segmentationId"]),
            Column::text("MTU", "Largest packet on it.", &["spec", "mtu"]),
            Column::age(),
        ],
        ..KindSpec::new(GROUP, "v1", "Network", "networks", Scope::Namespaced)
    }
}

fn subnet() -> KindSpec {
    KindSpec {
        normalize: normalize_custom::<SubnetSpec, Value>,
        validate: Some(|new, old| {
            let mut found = causes(validate::subnet(&spec(new)));
            found.extend(immutable(new, old, &["networkId", "cidr", "ipVersion"]));
            found
        }),
        admit: Some(admit::subnet),
        claims: Some(claims::subnet),
        fields: &[
            ("spec.networkId", |o| {
                object::str_at(o, &["spec", "networkId"])
            }),
            ("spec.name", |o| object::str_at(o, &["spec", "name"])),
        ],
        columns: vec![
            Column::name(),
            Column::text("Display name", "Neutron's name.", &["spec", "name"]),
            Column::text("CIDR", "Its address range.", &["spec", "cidr"]),
            Column::text("Gateway", "Its gateway address.", &["spec", "gatewayIp"]),
            Column::age(),
            Column::text("Network", "The network's uid.", &["spec", "networkId"]).wide(),
        ],
        ..KindSpec::new(GROUP, "v1", "Subnet", "subnets", Scope::Namespaced)
    }
}

fn port() -> KindSpec {
    KindSpec {
        subresources: Subresources {
            status: true,
            scale: false,
        },
        normalize: normalize_custom::<PortSpec, PortStatus>,
        default: Some(|port| {
            let status = object::ensure_object(
                object::ensure_object(port)
                    .entry("status")
                    .or_insert_with(|| json!({})),
            );
            status.entry("status").or_insert_with(|| json!("DOWN"));
            status.entry("vifType").or_insert_with(|| json!("unbound"));
        }),
        validate: Some(|new, old| {
            let mut found = causes(validate::port(&spec(new)));
            found.extend(immutable(new, old, &["networkId"]));
            found
        }),
        admit: Some(admit::port),
        claims: Some(claims::port),
        fields: &[
            ("spec.networkId", |o| {
                object::str_at(o, &["spec", "networkId"])
            }),
            ("spec.deviceId", |o| {
                Some(object::str_at(o, &["spec", "deviceId"]).unwrap_or_default())
            }),
            ("spec.deviceOwner", |o| {
                Some(object::str_at(o, &["spec", "deviceOwner"]).unwrap_or_default())
            }),
            ("spec.bindingHostId", |o| {
                Some(object::str_at(o, &["spec", "bindingHostId"]).unwrap_or_default())
            }),
            ("spec.name", |o| object::str_at(o, &["spec", "name"])),
        ],
        columns: vec![
            Column::name(),
            Column::value("Addresses", "string", "Its fixed IPs.", |port| {
                let addresses: Vec<String> = spec::<PortSpec>(port)
                    .fixed_ips
                    .into_iter()
                    .map(|fixed| fixed.ip_address)
                    .collect();
                Value::String(addresses.join(","))
            }),
            Column::text("MAC", "Its MAC address.", &["spec", "macAddress"]),
            Column::text("Status", "ACTIVE once wired.", &["status", "status"]),
            Column::text("Host", "Where it is wired.", &["spec", "bindingHostId"]),
            Column::age(),
            Column::text("Owner", "What uses it.", &["spec", "deviceOwner"]).wide(),
        ],
        ..KindSpec::new(GROUP, "v1", "Port", "ports", Scope::Namespaced)
    }
}

fn router() -> KindSpec {
    KindSpec {
        subresources: Subresources {
            status: true,
            scale: false,
        },
        normalize: normalize_custom::<RouterSpec, RouterStatus>,
        default: Some(|router| {
            let status = object::ensure_object(
                object::ensure_object(router)
                    .entry("status")
                    .or_insert_with(|| json!({})),
            );
            status.entry("status").or_insert_with(|| json!("ACTIVE"));
        }),
        admit: Some(admit::router),
        claims: Some(claims::identity),
        fields: &[("spec.name", |o| object::str_at(o, &["spec", "name"]))],
        columns: vec![
            Column::name(),
            Column::text("Display name", "Neutron's name.", &["spec", "name"]),
            Column::text(
                "External network",
                "Its gateway's network.",
                &["spec", "externalGatewayInfo", "networkId"],
            ),
            Column::text("Host", "Where it runs.", &["status", "host"]),
            Column::age(),
        ],
        ..KindSpec::new(GROUP, "v1", "Router", "routers", Scope::Namespaced)
    }
}

fn security_group() -> KindSpec {
    KindSpec {
        short_names: &["sg"],
        normalize: normalize_custom::<SecurityGroupSpec, Value>,
        claims: Some(claims::security_group),
        fields: &[("spec.name", |o| object::str_at(o, &["spec", "name"]))],
        columns: vec![
            Column::name(),
            Column::text("Display name", "Neutron's name.", &["spec", "name"]),
            Column::text("Description", "What it is for.", &["spec", "description"]),
            Column::age(),
        ],
        ..KindSpec::new(
            GROUP,
            "v1",
            "SecurityGroup",
            "securitygroups",
            Scope::Namespaced,
        )
    }
}

fn security_group_rule() -> KindSpec {
    KindSpec {
        normalize: normalize_custom::<SecurityGroupRuleSpec, Value>,
        default: Some(|rule| {
            let spec = object::ensure_object(
                object::ensure_object(rule)
                    .entry("spec")
                    .or_insert_with(|| json!({})),
            );
            if spec
                .get("ethertype")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                spec.insert("ethertype".into(), json!("IPv4"));
            }
            if let Some(Value::String(protocol)) = spec.get_mut("protocol") {
                *protocol = protocol.to_ascii_lowercase();
            }
        }),
        validate: Some(|new, old| {
            let mut found = causes(validate::security_group_rule(&spec(new)));
            if let Some(old) = old
                && new.get("spec") != old.get("spec")
            {
                found.push(FieldCause::forbidden(
                    "spec",
                    "a security group rule does not change; delete it and make another",
                ));
            }
            found
        }),
        admit: Some(admit::security_group_rule),
        claims: Some(claims::security_group_rule),
        fields: &[("spec.securityGroupId", |o| {
            object::str_at(o, &["spec", "securityGroupId"])
        })],
        columns: vec![
            Column::name(),
            Column::text("Direction", "ingress or egress.", &["spec", "direction"]),
            Column::text("Protocol", "Which protocol.", &["spec", "protocol"]),
            Column::value("Ports", "string", "The port range.", |rule| {
                let spec: SecurityGroupRuleSpec = spec(rule);
                Value::String(match (spec.port_range_min, spec.port_range_max) {
                    (Some(min), Some(max)) if min == max => min.to_string(),
                    (Some(min), Some(max)) => format!("{min}-{max}"),
                    _ => String::new(),
                })
            }),
            Column::text("Remote", "From where.", &["spec", "remoteIpPrefix"]),
            Column::age(),
        ],
        ..KindSpec::new(
            GROUP,
            "v1",
            "SecurityGroupRule",
            "securitygrouprules",
            Scope::Namespaced,
        )
    }
}

fn floating_ip() -> KindSpec {
    KindSpec {
        short_names: &["fip"],
        subresources: Subresources {
            status: true,
            scale: false,
        },
        normalize: normalize_custom::<FloatingIpSpec, FloatingIpStatus>,
        default: Some(|fip| {
            let status = object::ensure_object(
                object::ensure_object(fip)
                    .entry("status")
                    .or_insert_with(|| json!({})),
            );
            status.entry("status").or_insert_with(|| json!("DOWN"));
        }),
        validate: Some(|new, old| {
            let mut found = causes(validate::floating_ip(&spec(new)));
            found.extend(immutable(
                new,
                old,
                &["floatingNetworkId", "floatingIpAddress", "subnetId"],
            ));
            found
        }),
        admit: Some(admit::floating_ip),
        claims: Some(claims::floating_ip),
        fields: &[
            ("spec.portId", |o| {
                Some(object::str_at(o, &["spec", "portId"]).unwrap_or_default())
            }),
            ("spec.floatingIpAddress", |o| {
                object::str_at(o, &["spec", "floatingIpAddress"])
            }),
        ],
        columns: vec![
            Column::name(),
            Column::text(
                "Address",
                "The floating address.",
                &["spec", "floatingIpAddress"],
            ),
            Column::text(
                "Fixed",
                "The port address it maps to.",
                &["spec", "fixedIpAddress"],
            ),
            Column::text("Status", "ACTIVE once wired.", &["status", "status"]),
            Column::age(),
        ],
        ..KindSpec::new(GROUP, "v1", "FloatingIP", "floatingips", Scope::Namespaced)
    }
}

fn port_forwarding() -> KindSpec {
    KindSpec {
        normalize: normalize_custom::<PortForwardingSpec, Value>,
        default: Some(|forwarding| {
            if let Some(Value::String(protocol)) = forwarding.pointer_mut("/spec/protocol") {
                *protocol = protocol.to_ascii_lowercase();
            }
        }),
        validate: Some(|new, old| {
            let mut found = causes(validate::port_forwarding(&spec(new)));
            found.extend(immutable(new, old, &["floatingIpId"]));
            found
        }),
        admit: Some(admit::port_forwarding),
        claims: Some(claims::port_forwarding),
        fields: &[("spec.floatingIpId", |o| {
            object::str_at(o, &["spec", "floatingIpId"])
        })],
        columns: vec![
            Column::name(),
            Column::text("Protocol", "tcp or udp.", &["spec", "protocol"]),
            Column::text(
                "External port",
                "On the floating IP.",
                &["spec", "externalPort"],
            ),
            Column::text(
                "Internal",
                "The port address.",
                &["spec", "internalIpAddress"],
            ),
            Column::text(
                "Internal port",
                "On the port address.",
                &["spec", "internalPort"],
            ),
            Column::age(),
        ],
        ..KindSpec::new(
            GROUP,
            "v1",
            "PortForwarding",
            "portforwardings",
            Scope::Namespaced,
        )
    }
}

fn qos_policy() -> KindSpec {
    KindSpec {
        normalize: normalize_custom::<QosPolicySpec, Value>,
        default: Some(|policy| {
            if let Some(Value::Array(rules)) = policy.pointer_mut("/spec/rules") {
                for rule in rules.iter_mut().filter_map(Value::as_object_mut) {
                    if rule
                        .get("id")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        rule.insert("id".into(), json!(uuid::Uuid::new_v4().to_string()));
                    }
                }
            }
        }),
        validate: Some(|new, _| causes(validate::qos_policy(&spec(new)))),
        claims: Some(claims::identity),
        fields: &[("spec.name", |o| object::str_at(o, &["spec", "name"]))],
        columns: vec![
            Column::name(),
            Column::text("Display name", "Neutron's name.", &["spec", "name"]),
            Column::age(),
        ],
        ..KindSpec::new(GROUP, "v1", "QosPolicy", "qospolicies", Scope::Namespaced)
    }
}
