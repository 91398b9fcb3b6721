//! `discovery.k8s.io/v1` kinds: EndpointSlice, written by the services controller
//! (`crate::controllers::services`) for each Service with a selector and read by the
//! agents' cluster DNS (headless Services answer with their ready endpoints).

use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

use crate::registry::{Column, KindSpec};

/// The label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming what manages an EndpointSlice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";

pub(super) fn kinds() -> Vec<KindSpec> {
    vec![KindSpec {
        columns: vec![
            Column::name(),
            Column::text(
                "AddressType",
                "The type of the addresses.",
                &["addressType"],
            ),
            Column::value("Ports", "string", "The ports of the endpoints.", ports_cell),
            Column::value(
                "Endpoints",
                "string",
                "The addresses of the endpoints.",
                endpoints_cell,
            ),
            Column::age(),
        ],
        ..KindSpec::builtin::<EndpointSlice>()
    }]
}

fn ports_cell(slice: &Value) -> Value {
    let ports: Vec<String> = slice["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["port"].as_u64().map(|port| port.to_string()))
        .collect();
    json!(if ports.is_empty() {
        "<unset>".to_owned()
    } else {
        ports.join(",")
    })
}

fn endpoints_cell(slice: &Value) -> Value {
    let addresses: Vec<&str> = slice["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["addresses"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    match addresses.len() {
        0 => json!("<unset>"),
        1..=3 => json!(addresses.join(",")),
        n => json!(format!("{} + {} more...", addresses[..3].join(","), n - 3)),
    }
}
