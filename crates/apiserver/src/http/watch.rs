//! Watch responses: newline-delimited JSON events over a chunked 200 response, one event
//! per line (kube-rs splits on lines), ending at `timeoutSeconds`, at server shutdown or
//! after an in-stream ERROR; bookmarks when asked.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, StatusCode, header};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use rand::Rng;
use ronghe_api_types::table::PartialObjectMetadata;
use ronghe_api_types::watch::{WatchEvent as WireEvent, WatchEventType as WireType};
use serde_json::Value;
use tokio_stream::wrappers::ReceiverStream;

use super::ApiState;
use super::query::Query;
use crate::engine::{WatchEvent, WatchEventType};
use crate::error::{ApiError, ApiResult};
use crate::registry::KindSpec;
use crate::table::{self, Rendering};

/// Watches without `timeoutSeconds` end after 30 to 60 minutes, as in Kubernetes, so
/// clients re-establish them and load spreads out.
const DEFAULT_MIN_TIMEOUT: Duration = Duration::from_secs(1800);

/// The longest a client may ask a watch to last.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

pub(super) async fn serve(
    state: &ApiState,
    kind: Arc<KindSpec>,
    namespace: Option<&str>,
    query: &Query,
    rendering: Rendering,
    name: Option<&str>,
) -> ApiResult<Response> {
    let mut options = super::resource::watch_options(&kind, query, name)?;
    let bookmarks = query.flag("allowWatchBookmarks")?;
    let initial_events_end = query.flag("sendInitialEvents")?;
    if initial_events_end {
        if query.get("resourceVersionMatch") != Some("NotOlderThan") {
            return Err(ApiError::bad_request(
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if !bookmarks {
            return Err(ApiError::bad_request(
                "sendInitialEvents requires setting allowWatchBookmarks to true",
            ));
        }
        // The current state (which is not older than any resourceVersion given), then
        // changes: the list path of the engine's watch.
        options.resource_version = None;
    }
    let start = options
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse::<i64>().ok())
        .unwrap_or(0);
    let timeout = match query.number("timeoutSeconds")? {
        Some(seconds) => Duration::from_secs(seconds).min(MAX_TIMEOUT),
        None => DEFAULT_MIN_TIMEOUT.mul_f64(1.0 + rand::rng().random::<f64>()),
    };
    let mut events = state.engine.watch(kind.clone(), namespace, options).await?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(64);
    let mut shutdown = state.shutdown.clone();
    let bookmark_interval = state.bookmark_interval;
    let metrics = state.metrics.clone();
    tokio::spawn(async move {
        let _watching = metrics.watch_started();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(bookmark_interval);
        ticker.tick().await;
        let mut encoder = Encoder {
            kind,
            rendering,
            sent_columns: false,
            revision: start,
        };
        loop {
            let line = tokio::select! {
                // Changes first: a bookmark must never overtake an event that is ready.
                biased;
                event = events.next() => match event {
                    Some(event) => encoder.event(event, bookmarks, initial_events_end),
                    None => break,
                },
                _ = ticker.tick() => {
                    if bookmarks && encoder.revision > 0 {
                        Some(encoder.bookmark(false))
                    } else {
                        None
                    }
                }
                _ = &mut deadline => break,
                _ = shutdown.changed() => break,
                // The client went away: stop now rather than at the next event, which a
                // narrow watch may never see.
                () = sender.closed() => break,
            };
            if let Some(line) = line {
                let ended = line.ended;
                // A client that stops reading must not keep the watch past its deadline.
                let sent = tokio::select! {
                    sent = sender.send(line.bytes) => sent.is_ok(),
                    _ = &mut deadline => false,
                    _ = shutdown.changed() => false,
                };
                if !sent || ended {
                    break;
                }
            }
        }
    });
    let body = Body::from_stream(ReceiverStream::new(receiver).map(Ok::<_, Infallible>));
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

struct Line {
    bytes: Bytes,
    /// The stream ends after this line (an ERROR event).
    ended: bool,
}

/// Turns engine events into wire lines for one watcher.
struct Encoder {
    kind: Arc<KindSpec>,
    rendering: Rendering,
    sent_columns: bool,
    /// The revision the watcher has been brought up to.
    revision: i64,
}

impl Encoder {
    fn event(
        &mut self,
        event: WatchEvent,
        bookmarks: bool,
        initial_events_end: bool,
    ) -> Option<Line> {
        self.revision = self.revision.max(event.revision);
        let object = match event.event_type {
            WatchEventType::Bookmark => return None,
            WatchEventType::InitialEventsEnd => {
                return (bookmarks && initial_events_end).then(|| self.bookmark(true));
            }
            WatchEventType::Error => event.object,
            _ => match self.rendering {
                Rendering::Objects => event.object,
                Rendering::Metadata => PartialObjectMetadata::from_object(&event.object).to_value(),
                Rendering::Table { include } => {
                    let metadata = ListMeta {
                        resource_version: Some(event.revision.to_string()),
                        ..ListMeta::default()
                    };
                    let with_columns = !self.sent_columns;
                    self.sent_columns = true;
                    let table =
                        table::render(&self.kind, &[event.object], include, metadata, with_columns);
                    serde_json::to_value(&table).unwrap_or(Value::Null)
                }
            },
        };
        let wire_type = match event.event_type {
            WatchEventType::Added => WireType::Added,
            WatchEventType::Modified => WireType::Modified,
            WatchEventType::Deleted => WireType::Deleted,
            _ => WireType::Error,
        };
        Some(Line {
            bytes: Bytes::from(WireEvent::new(wire_type, object).to_json_line()),
            ended: event.event_type == WatchEventType::Error,
        })
    }

    fn bookmark(&self, initial_events_end: bool) -> Line {
        let api_version = self.kind.api_version();
        let revision = self.revision.to_string();
        let event = if initial_events_end {
            WireEvent::initial_events_end_bookmark(self.kind.kind, &api_version, &revision)
        } else {
            WireEvent::bookmark(self.kind.kind, &api_version, &revision)
        };
        Line {
            bytes: Bytes::from(event.to_json_line()),
            ended: false,
        }
    }
}
