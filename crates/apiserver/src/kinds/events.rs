//! `events.k8s.io/v1` kinds: Event, the form kube-runtime's event recorder writes (core/v1
//! Event, which kubectl reads, is in `core`).

use k8s_openapi::api::events::v1::Event;
use serde_json::Value;

use super::text;
use crate::registry::{Column, KindSpec};

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
        columns: vec![
            Column::value(
                "Last Seen",
                "string",
                "The time the event was last seen.",
                |o| {
                    let at = text(o, &["series", "lastObservedTime"])
                        .or_else(|| text(o, &["eventTime"]))
                        .or_else(|| text(o, &["deprecatedLastTimestamp"]))
                        .or_else(|| text(o, &["metadata", "creationTimestamp"]));
                    Value::String(
                        at.map_or_else(|| "<unknown>".into(), |t| crate::table::age_of(&t)),
                    )
                },
            ),
            Column::value("Type", "string", "The type of the event.", |o| {
                Value::String(text(o, &["type"]).unwrap_or_default())
            }),
            Column::value("Reason", "string", "Why the event happened.", |o| {
                Value::String(text(o, &["reason"]).unwrap_or_default())
            }),
            Column::value("Object", "string", "The object the event is about.", |o| {
                let kind = text(o, &["regarding", "kind"])
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let name = text(o, &["regarding", "name"]).unwrap_or_default();
                Value::String(format!("{kind}/{name}"))
            }),
            Column::value("Message", "string", "What happened.", |o| {
                Value::String(text(o, &["note"]).unwrap_or_default())
            }),
        ],
        ..KindSpec::builtin::<Event>()
    }]
}
