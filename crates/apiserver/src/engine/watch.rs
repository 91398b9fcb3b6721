//! Watch: store changes turned into Kubernetes watch events for one kind, filtered by
//! namespace and selectors. An object that stops matching a selector is reported as
//! DELETED and one that starts matching as ADDED, as the apiserver's watch filter does.
//! A resourceVersion that has been compacted away ends the stream with an ERROR event
//! carrying a 410 Status, which makes clients list again.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use ronghe_store::{EventKind, Revision};
use serde_json::Value;

use super::{Engine, ListOptions, Selectors, decode_stored, parse_resource_version};
use crate::error::{ApiError, ApiResult};
use crate::registry::KindSpec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchEventType {
    Added,
    Modified,
    Deleted,
    Bookmark,
    Error,
    /// Marks the end of the ADDED events for the state at the start of the watch (sent as
    /// a bookmark with the `k8s.io/initial-events-end` annotation when asked).
    InitialEventsEnd,
}

impl WatchEventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
            Self::Bookmark => "BOOKMARK",
            Self::Error => "ERROR",
            Self::InitialEventsEnd => "BOOKMARK",
        }
    }
}

/// One event of a watch stream.
#[derive(Clone, Debug)]
pub struct WatchEvent {
    pub event_type: WatchEventType,
    /// The object (for ERROR: the Status).
    pub object: Value,
    /// The store revision this event brings the watcher up to.
    pub revision: Revision,
}

pub type WatchStream = Pin<Box<dyn Stream<Item = WatchEvent> + Send>>;

/// What to watch.
#[derive(Clone, Debug, Default)]
pub struct WatchOptions {
    pub selectors: Selectors,
    /// Start after this resourceVersion; absent or "0": start with ADDED events for the
    /// current state.
    pub resource_version: Option<String>,
}

impl Engine {
    /// Watches objects of a kind, in one namespace or in all.
    pub async fn watch(
        &self,
        kind: Arc<KindSpec>,
        namespace: Option<&str>,
        options: WatchOptions,
    ) -> ApiResult<WatchStream> {
        let prefix = kind.key_prefix_in(namespace);
        let start = options
            .resource_version
            .as_deref()
            .filter(|rv| !rv.is_empty() && *rv != "0")
            .map(parse_resource_version)
            .transpose()?;
        let (initial, after) = match start {
            Some(revision) => {
                self.check_not_future(options.resource_version.as_deref())
                    .await?;
                (Vec::new(), revision)
            }
            None => {
                let list = self
                    .list(
                        &kind,
                        namespace,
                        &ListOptions {
                            selectors: options.selectors.clone(),
                            ..ListOptions::default()
                        },
                    )
                    .await?;
                let revision = list.resource_version;
                let mut added: Vec<WatchEvent> = list
                    .items
                    .into_iter()
                    .map(|object| WatchEvent {
                        event_type: WatchEventType::Added,
                        revision: crate::object::resource_version(&object)
                            .and_then(|rv| rv.parse().ok())
                            .unwrap_or(revision),
                        object,
                    })
                    .collect();
                added.push(WatchEvent {
                    event_type: WatchEventType::InitialEventsEnd,
                    object: Value::Null,
                    revision,
                });
                (added, revision)
            }
        };
        let changes = match self.store.watch(&prefix, after).await {
            Ok(changes) => changes,
            Err(error) => {
                // A stale resourceVersion is reported in the stream, not as an HTTP error.
                let status = ApiError::from_store(error, &kind, "");
                return Ok(Box::pin(futures::stream::once(async move {
                    error_event(status, after)
                })));
            }
        };
        let selectors = options.selectors;
        let changes = changes
            .map(move |change| -> Vec<WatchEvent> {
                match change {
                    Ok(event) => translate(&kind, &selectors, event),
                    Err(error) => vec![error_event(ApiError::from_store(error, &kind, ""), after)],
                }
            })
            .flat_map(futures::stream::iter);
        // Stop after an ERROR event: the client must start over.
        let changes = changes.scan(false, |ended, event| {
            if *ended {
                return futures::future::ready(None);
            }
            *ended = event.event_type == WatchEventType::Error;
            futures::future::ready(Some(event))
        });
        Ok(Box::pin(futures::stream::iter(initial).chain(changes)))
    }
}

fn error_event(error: ApiError, revision: Revision) -> WatchEvent {
    WatchEvent {
        event_type: WatchEventType::Error,
        object: serde_json::to_value(&error.status).unwrap_or(Value::Null),
        revision,
    }
}

/// A change this watcher does not see still moves its position forward: it becomes a
/// BOOKMARK without an object, which the HTTP layer does not send as such but uses for the
/// resourceVersion of the bookmarks it sends.
fn progress(revision: Revision) -> Vec<WatchEvent> {
    vec![WatchEvent {
        event_type: WatchEventType::Bookmark,
        object: Value::Null,
        revision,
    }]
}

/// Turns one store change into the watch events a filtered watcher sees.
fn translate(
    kind: &KindSpec,
    selectors: &Selectors,
    event: ronghe_store::Event,
) -> Vec<WatchEvent> {
    let decode = |value: &Option<bytes::Bytes>| {
        value
            .as_ref()
            .and_then(|bytes| decode_stored(kind, bytes, event.revision).ok())
    };
    let new = decode(&event.value);
    let old = decode(&event.prev_value);
    let matches = |object: &Option<Value>| {
        object
            .as_ref()
            .is_some_and(|object| selectors.matches(kind, object))
    };
    let (event_type, object) = match event.kind {
        EventKind::Create if matches(&new) => (WatchEventType::Added, new),
        EventKind::Update => match (matches(&old), matches(&new)) {
            (true, true) => (WatchEventType::Modified, new),
            (false, true) => (WatchEventType::Added, new),
            (true, false) => (WatchEventType::Deleted, new),
            (false, false) => return progress(event.revision),
        },
        EventKind::Delete if matches(&old) => (WatchEventType::Deleted, old),
        _ => return progress(event.revision),
    };
    object
        .map(|object| WatchEvent {
            event_type,
            object,
            revision: event.revision,
        })
        .into_iter()
        .collect()
}
