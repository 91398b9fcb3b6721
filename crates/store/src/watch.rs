//! The live half of a watch, shared by every backend: forwarding events published on a
//! broadcast channel to one watcher, in order, with no duplicates of what it already saw.

use std::sync::Arc;

use futures::Stream;
use tokio::sync::broadcast;

use crate::{Event, Result, Revision, StoreError};

/// The channel a backend publishes committed changes on, one message per revision.
pub(crate) type EventSender = broadcast::Sender<Arc<Event>>;
pub(crate) type EventReceiver = broadcast::Receiver<Arc<Event>>;

/// Waits for the next live event under `prefix` newer than `last_seen`, advancing
/// `last_seen` past every event it looks at (matching or not) so that the revision named in
/// a `WatcherLagged` error is the newest one the watcher is known to have covered.
///
/// Returns `WatcherLagged` when the receiver fell behind the broadcast buffer and `Closed`
/// when the backend stopped publishing; the watch must end after either.
pub(crate) async fn next_live_event(
    receiver: &mut EventReceiver,
    prefix: &str,
    last_seen: &mut Revision,
) -> Result<Event> {
    loop {
        match receiver.recv().await {
            Ok(event) => {
                if event.revision <= *last_seen {
                    // Already delivered by the replay that preceded the live phase.
                    continue;
                }
                *last_seen = event.revision;
                if event.key.starts_with(prefix) {
                    return Ok(Event::clone(&event));
                }
                if receiver.is_empty() {
                    // Caught up with changes elsewhere: say how far.
                    return Ok(progress(*last_seen));
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::debug!(last_seen = *last_seen, missed, "watcher lagged");
                return Err(StoreError::WatcherLagged {
                    last_seen: *last_seen,
                });
            }
            Err(broadcast::error::RecvError::Closed) => return Err(StoreError::Closed),
        }
    }
}

/// A progress event up to `revision`.
pub(crate) fn progress(revision: Revision) -> Event {
    Event {
        kind: crate::EventKind::Progress,
        key: String::new(),
        revision,
        create_revision: 0,
        value: None,
        prev_value: None,
    }
}

/// A stream of live events that ends after its first error.
pub(crate) fn live_stream(
    receiver: EventReceiver,
    prefix: String,
    last_seen: Revision,
) -> impl Stream<Item = Result<Event>> + Send + 'static {
    futures::stream::unfold(Some((receiver, prefix, last_seen)), |state| async move {
        let (mut receiver, prefix, mut last_seen) = state?;
        match next_live_event(&mut receiver, &prefix, &mut last_seen).await {
            Ok(event) => Some((Ok(event), Some((receiver, prefix, last_seen)))),
            Err(error) => Some((Err(error), None)),
        }
    })
}
