//! `coordination.k8s.io/v1` kinds: Lease (node heartbeats and leader election).

use k8s_openapi::api::coordination::v1::Lease;
use serde_json::Value;

use super::text;
use crate::registry::{Column, KindSpec};

pub(super) fn kinds() -> Vec<KindSpec> {
    vec![KindSpec {
        columns: vec![
            Column::name(),
            Column::value(
                "Holder",
                "string",
                "The identity of the current holder of the lease.",
                |o| Value::String(text(o, &["spec", "holderIdentity"]).unwrap_or_default()),
            ),
            Column::age(),
        ],
        ..KindSpec::builtin::<Lease>()
    }]
}
