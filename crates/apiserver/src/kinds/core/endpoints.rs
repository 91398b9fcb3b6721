//! Endpoints: the addresses behind a Service, written by the services controller
//! (`crate::controllers::services`) beside the Service's EndpointSlice, for the clients
//! that still read them (`kubectl get endpoints`, `kubectl describe service`).

use k8s_openapi::api::core::v1::Endpoints;
use serde_json::{Value, json};

use crate::registry::{Column, KindSpec};

pub(super) fn endpoints() -> KindSpec {
    KindSpec {
        short_names: &["ep"],
        columns: vec![
            Column::name(),
            Column::value(
                "Endpoints",
                "string",
                "The ready addresses and ports behind the service.",
                endpoints_cell,
            ),
            Column::age(),
        ],
        ..KindSpec::builtin::<Endpoints>()
    }
}

/// `10.0.0.5:8080,10.0.0.6:8080` (kubectl shows at most three and "+ N more...").
fn endpoints_cell(endpoints: &Value) -> Value {
    let mut shown = Vec::new();
    for subset in endpoints["subsets"].as_array().into_iter().flatten() {
        let ports: Vec<u64> = subset["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["port"].as_u64())
            .collect();
        for address in subset["addresses"].as_array().into_iter().flatten() {
            let ip = address["ip"].as_str().unwrap_or_default();
            if ports.is_empty() {
                shown.push(ip.to_owned());
            }
            shown.extend(ports.iter().map(|port| format!("{ip}:{port}")));
        }
    }
    match shown.len() {
        0 => json!("<none>"),
        1..=3 => json!(shown.join(",")),
        n => json!(format!("{} + {} more...", shown[..3].join(","), n - 3)),
    }
}
