//! `events.k8s.io/v1` kinds: Event, the form kube-runtime's event recorder writes (core/v1
//! Event, which kubectl reads, is in `core`).

use super::text;
use crate::registry::KindSpec;
use k8s_openapi::api::events::v1::Event;

pub(super) fn kinds() -> Vec<KindSpec> {
    vec![KindSpec {
        short_names: &["ev"],
        fields: &[
            ("regarding.kind", |o| text(o, &["regarding", "kind"])),
            ("regarding.namespace", |o| {
                text(o, &["regarding", "namespace"])
            }),
            ("regarding.name", |o| text(o, &["regarding", "name"])),
            ("regarding.uid", |o| text(o, &["regarding", "uid"])),
            ("reason", |o| text(o, &["reason"])),
            ("reportingController", |o| text(o, &["reportingController"])),
            ("type", |o| text(o, &["type"])),
        ],
        columns: super::event_columns(
            &[
                &["series", "lastObservedTime"],
                &["eventTime"],
                &["deprecatedLastTimestamp"],
                &["metadata", "creationTimestamp"],
            ],
            |o| super::core::object_ref(o, "regarding"),
            &["note"],
        ),
        ..KindSpec::builtin::<Event>()
    }]
}
