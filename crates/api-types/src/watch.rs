//! The watch wire type: `{"type":"ADDED","object":{...}}`, one per line.
//!
//! kube-rs splits a watch stream by newline, so each event must be a single line; compact
//! JSON escapes newlines inside strings, so [`WatchEvent::to_json_line`] guarantees that.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::status::Status;

/// The annotation a bookmark carries to mark the end of the initial events of a streaming
/// list (`sendInitialEvents=true`).
pub const INITIAL_EVENTS_END_ANNOTATION: &str = "k8s.io/initial-events-end";

/// The event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum WatchEventType {
    /// An object was created (or is part of the initial state).
    Added,
    /// An object changed.
    Modified,
    /// An object was deleted; the object is its last state.
    Deleted,
    /// Progress marker carrying only a resourceVersion.
    Bookmark,
    /// The watch failed; the object is a [`Status`].
    Error,
}

/// One watch event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: WatchEventType,
    /// The object (or Table, or Status for errors).
    pub object: Value,
}

impl WatchEvent {
    /// An event of `event_type` about `object`.
    pub fn new(event_type: WatchEventType, object: Value) -> Self {
        Self { event_type, object }
    }

    /// `ADDED`.
    pub fn added(object: Value) -> Self {
        Self::new(WatchEventType::Added, object)
    }

    /// `MODIFIED`.
    pub fn modified(object: Value) -> Self {
        Self::new(WatchEventType::Modified, object)
    }

    /// `DELETED`.
    pub fn deleted(object: Value) -> Self {
        Self::new(WatchEventType::Deleted, object)
    }

    /// `ERROR` carrying `status`; send it in-stream after a 200, then close.
    pub fn error(status: &Status) -> Self {
        Self::new(WatchEventType::Error, status.to_value())
    }

    /// `BOOKMARK`: `{"kind":K,"apiVersion":V,"metadata":{"resourceVersion":RV}}`.
    pub fn bookmark(kind: &str, api_version: &str, resource_version: &str) -> Self {
        Self::bookmark_with_metadata(kind, api_version, resource_version, Map::new())
    }

    /// The bookmark that ends the initial events of a streaming list.
    pub fn initial_events_end_bookmark(
        kind: &str,
        api_version: &str,
        resource_version: &str,
    ) -> Self {
        let mut annotations = Map::new();
        annotations.insert(INITIAL_EVENTS_END_ANNOTATION.to_owned(), "true".into());
        let mut metadata = Map::new();
        metadata.insert("annotations".to_owned(), Value::Object(annotations));
        Self::bookmark_with_metadata(kind, api_version, resource_version, metadata)
    }

    fn bookmark_with_metadata(
        kind: &str,
        api_version: &str,
        resource_version: &str,
        mut metadata: Map<String, Value>,
    ) -> Self {
        metadata.insert("resourceVersion".to_owned(), resource_version.into());
        let mut object = Map::with_capacity(3);
        object.insert("kind".to_owned(), kind.into());
        object.insert("apiVersion".to_owned(), api_version.into());
        object.insert("metadata".to_owned(), Value::Object(metadata));
        Self::new(WatchEventType::Bookmark, Value::Object(object))
    }

    /// The event as compact JSON followed by `\n`, ready to write to the stream.
    pub fn to_json_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect(
            "a watch event is an enum tag and a JSON value with string keys, which always serialize",
        );
        line.push(b'\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn serializes_one_event_per_line() {
        let event = WatchEvent::added(json!({"kind": "Pod", "metadata": {"name": "a\nb"}}));
        let line = event.to_json_line();
        assert_eq!(
            String::from_utf8(line.clone()).expect("utf-8"),
            "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Pod\",\"metadata\":{\"name\":\"a\\nb\"}}}\n"
        );
        assert_eq!(line.iter().filter(|byte| **byte == b'\n').count(), 1);
        let back: WatchEvent = serde_json::from_slice(&line).expect("deserializes");
        assert_eq!(back, event);
    }

    #[test]
    fn event_type_names() {
        let cases = [
            (WatchEvent::added(json!({})), "ADDED"),
            (WatchEvent::modified(json!({})), "MODIFIED"),
            (WatchEvent::deleted(json!({})), "DELETED"),
            (WatchEvent::bookmark("Pod", "v1", "1"), "BOOKMARK"),
            (WatchEvent::error(&Status::gone("x")), "ERROR"),
        ];
        for (event, want) in cases {
            assert_eq!(
                serde_json::to_value(&event).expect("serializes")["type"],
                want
            );
        }
    }

    #[test]
    fn bookmarks_match_the_reference() {
        assert_eq!(
            serde_json::to_value(WatchEvent::bookmark("Pod", "v1", "12345")).expect("serializes"),
            json!({"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"12345"}}})
        );
        assert_eq!(
            WatchEvent::initial_events_end_bookmark("Pod", "v1", "7").object["metadata"],
            json!({"annotations": {"k8s.io/initial-events-end": "true"}, "resourceVersion": "7"})
        );
    }

    #[test]
    fn errors_carry_a_status() {
        let event = WatchEvent::error(&Status::too_old_resource_version(107, 2000));
        assert_eq!(
            String::from_utf8(event.to_json_line()).expect("utf-8"),
            "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"too old resource version: 107 (2000)\",\"reason\":\"Expired\",\"code\":410}}\n"
        );
    }
}
