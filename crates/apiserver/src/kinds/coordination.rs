//! `coordination.k8s.io/v1` kinds: Lease (node heartbeats and leader election).

use crate::registry::{Column, KindSpec};
use k8s_openapi::api::coordination::v1::Lease;

pub(super) fn kinds() -> Vec<KindSpec> {
    vec![KindSpec {
        columns: vec![
            Column::name(),
            Column::text(
                "Holder",
                "The identity of the current holder of the lease.",
                &["spec", "holderIdentity"],
            ),
            Column::age(),
        ],
        ..KindSpec::builtin::<Lease>()
    }]
}
