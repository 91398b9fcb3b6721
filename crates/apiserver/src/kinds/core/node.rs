//! Node: a host, as its agent registers it (capacity, allocatable, addresses, conditions,
//! node info) and as `kubectl get nodes` shows it. What the scheduler places against is the
//! node's resource provider (`placement.ronghe.io`); the Node carries labels, taints,
//! readiness and cordoning.

use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::Node;
use serde_json::{Value, json};

use crate::kinds::text;
use crate::object;
use crate::registry::{Column, KindSpec, Subresources};

pub(super) fn kind() -> KindSpec {
    KindSpec {
        short_names: &["no"],
        subresources: Subresources {
            status: true,
            scale: false,
        },
        fields: &[("spec.unschedulable", |o| {
            Some(
                o.pointer("/spec/unschedulable")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string(),
            )
        })],
        columns: vec![
            Column::name(),
            Column::value("Status", "string", "The node's readiness.", status_cell),
            Column::value("Roles", "string", "The node's roles.", roles_cell),
            Column::age(),
            Column::text(
                "Version",
                "The agent's version.",
                &["status", "nodeInfo", "kubeletVersion"],
            ),
            Column::value(
                "Internal-IP",
                "string",
                "The node's internal address.",
                |o| json!(address(o, "InternalIP").unwrap_or_else(|| "<none>".into())),
            )
            .wide(),
            Column::text(
                "OS-Image",
                "The node's operating system.",
                &["status", "nodeInfo", "osImage"],
            )
            .wide(),
            Column::text(
                "Kernel-Version",
                "The node's kernel.",
                &["status", "nodeInfo", "kernelVersion"],
            )
            .wide(),
            Column::text(
                "Container-Runtime",
                "The node's container runtime.",
                &["status", "nodeInfo", "containerRuntimeVersion"],
            )
            .wide(),
        ],
        ..KindSpec::builtin::<Node>()
    }
}

/// The status of a node's condition of `kind` (`Ready`), if reported.
pub fn condition(node: &Value, kind: &str) -> Option<String> {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
        .and_then(|c| text(c, &["status"]))
}

/// Whether the agent reports the node Ready.
pub fn is_ready(node: &Value) -> bool {
    condition(node, "Ready").as_deref() == Some("True")
}

/// Where the node's agent serves its endpoint (logs, exec, consoles): the `InternalIP`
/// (else the first address) and `daemonEndpoints.kubeletEndpoint.Port`; `None` when the
/// agent serves none (port 0) or named no address.
pub fn agent_endpoint(node: &Value) -> Option<SocketAddr> {
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|port| u16::try_from(port).ok())
        .filter(|port| *port != 0)?;
    let addresses = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let address_of = |wanted: Option<&str>| {
        addresses
            .iter()
            .filter(|address| wanted.is_none_or(|wanted| address["type"] == wanted))
            .find_map(|address| address["address"].as_str()?.parse::<IpAddr>().ok())
    };
    let ip = address_of(Some("InternalIP")).or_else(|| address_of(None))?;
    Some(SocketAddr::new(ip, port))
}

fn address(node: &Value, kind: &str) -> Option<String> {
    node.pointer("/status/addresses")
        .and_then(Value::as_array)?
        .iter()
        .find(|a| a.get("type").and_then(Value::as_str) == Some(kind))
        .and_then(|a| text(a, &["address"]))
}

/// `Ready`, `NotReady` or `Unknown`, with `,SchedulingDisabled` when cordoned.
fn status_cell(node: &Value) -> Value {
    let mut status = match condition(node, "Ready").as_deref() {
        Some("True") => "Ready".to_owned(),
        Some("False") => "NotReady".to_owned(),
        _ => "Unknown".to_owned(),
    };
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    json!(status)
}

/// The roles named by `node-role.kubernetes.io/<role>` labels, or `<none>`.
fn roles_cell(node: &Value) -> Value {
    let roles: Vec<String> = object::labels(node)
        .keys()
        .filter_map(|key| key.strip_prefix("node-role.kubernetes.io/"))
        .map(str::to_owned)
        .collect();
    if roles.is_empty() {
        json!("<none>")
    } else {
        json!(roles.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_follow_conditions_and_cordoning() {
        let mut node = json!({"metadata": {"name": "h1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}});
        assert_eq!(status_cell(&node), "Ready");
        assert_eq!(roles_cell(&node), "control-plane");
        assert!(is_ready(&node));
        node["spec"] = json!({"unschedulable": true});
        node["status"]["conditions"][0]["status"] = json!("Unknown");
        assert_eq!(status_cell(&node), "Unknown,SchedulingDisabled");
        assert_eq!(address(&node, "InternalIP").as_deref(), Some("10.0.0.1"));
    }
}
