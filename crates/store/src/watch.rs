//! The live half of a watch, shared by every backend: forwarding events published on a
//! broadcast channel to one watcher, in order, with no duplicates of what it already saw.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use tokio::sync::broadcast;

use crate::{Event, Result, Revision, StoreError};

/// The channel a backend publishes committed changes on, one message per revision.
pub(crate) type EventSender = broadcast::Sender<Arc<Event>>;
pub(crate) type EventReceiver = broadcast::Receiver<Arc<Event>>;

/// How often at most a watch reports progress while changes elsewhere keep coming: often
/// enough for bookmarks (sent every minute or so), rarely enough that quiet watchers do not
/// pay for every unrelated write.
pub(crate) const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);

/// Follows the live broadcast for one watcher.
pub(crate) struct LiveFollower {
    receiver: EventReceiver,
    prefix: String,
    /// Every change at or before this revision has been delivered or skipped.
    pub last_seen: Revision,
    /// The newest revision reported to the reader (a change or progress).
    reported: Revision,
    last_progress: Option<Instant>,
}

impl LiveFollower {
    pub(crate) fn new(receiver: EventReceiver, prefix: String, last_seen: Revision) -> Self {
        Self {
            receiver,
            prefix,
            last_seen,
            reported: last_seen,
            last_progress: None,
        }
    }

    /// Waits for the next live event under the prefix newer than `last_seen`, advancing
    /// `last_seen` past every event it looks at (matching or not) so that the revision named
    /// in a `WatcherLagged` error is the newest one the watcher is known to have covered.
    ///
    /// When it has caught up with changes elsewhere (nothing queued), it reports how far as
    /// a Progress event, at most once per `PROGRESS_INTERVAL`; a progress it holds back is
    /// sent when the interval ends if nothing under the prefix came first.
    ///
    /// Returns `WatcherLagged` when the receiver fell behind the broadcast buffer and
    /// `Closed` when the backend stopped publishing; the watch must end after either.
    pub(crate) async fn next(&mut self) -> Result<Event> {
        loop {
            let received = match self.progress_due() {
                Some(due) => {
                    match tokio::time::timeout_at(due.into(), self.receiver.recv()).await {
                        Ok(received) => received,
                        Err(_) => return Ok(self.progress()),
                    }
                }
                None => self.receiver.recv().await,
            };
            match received {
                Ok(event) => {
                    if event.revision <= self.last_seen {
                        // Already delivered by the replay that preceded the live phase.
                        continue;
                    }
                    self.last_seen = event.revision;
                    if event.key.starts_with(&self.prefix) {
                        self.reported = event.revision;
                        return Ok(Event::clone(&event));
                    }
                    let now = Instant::now();
                    let quiet_long_enough = self
                        .last_progress
                        .is_none_or(|at| now.duration_since(at) >= PROGRESS_INTERVAL);
                    if self.receiver.is_empty() && quiet_long_enough {
                        return Ok(self.progress());
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(last_seen = self.last_seen, missed, "watcher lagged");
                    return Err(StoreError::WatcherLagged {
                        last_seen: self.last_seen,
                    });
                }
                Err(broadcast::error::RecvError::Closed) => return Err(StoreError::Closed),
            }
        }
    }

    /// When a held-back progress report is due, if there is one.
    fn progress_due(&self) -> Option<Instant> {
        (self.last_seen > self.reported)
            .then(|| self.last_progress.map(|at| at + PROGRESS_INTERVAL))
            .flatten()
    }

    fn progress(&mut self) -> Event {
        self.reported = self.last_seen;
        self.last_progress = Some(Instant::now());
        progress(self.last_seen)
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
    let follower = LiveFollower::new(receiver, prefix, last_seen);
    futures::stream::unfold(Some(follower), |state| async move {
        let mut follower = state?;
        match follower.next().await {
            Ok(event) => Some((Ok(event), Some(follower))),
            Err(error) => Some((Err(error), None)),
        }
    })
}
