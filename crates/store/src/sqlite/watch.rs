//! Watches on the SQLite backend: replay history from the log page by page, then switch to
//! the writer's live broadcast without a gap or a duplicate.
//!
//! The watcher pages through the log without holding a live subscription, so a long replay
//! cannot overflow the live buffer. Once a page comes back short (the replay reached the
//! newest committed revision), it subscribes and reads the log once more from where it
//! stopped. Every change is committed before it is broadcast, so a change broadcast before
//! the subscription is in that last read, and one broadcast after it arrives live; live
//! changes at or before the last replayed revision are dropped as duplicates.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::StreamExt;

use super::{Shared, read};
use crate::watch::{EventReceiver, LiveFollower, progress};
use crate::{Event, Result, Revision, StoreError, WatchStream};

/// How many changes one replay read fetches.
const REPLAY_PAGE: usize = 512;

struct Watcher {
    shared: Arc<Shared>,
    prefix: String,
    /// Every change at or before this revision has been delivered or skipped.
    last_seen: Revision,
    /// Replayed changes not yet delivered.
    buffer: VecDeque<Event>,
    /// The newest revision the last replay read covered, once the buffer drains.
    replayed_through: Revision,
    /// Whether the last replay read reached the newest committed revision.
    caught_up: bool,
    /// The newest revision the stream has told its reader about (a change or progress).
    reported: Revision,
    /// Subscribed to the live broadcast, before the last replay read.
    live: Option<EventReceiver>,
    /// Following the live broadcast, once the replay is done.
    follower: Option<LiveFollower>,
}

pub(super) async fn watch(
    shared: Arc<Shared>,
    prefix: String,
    after: Revision,
) -> Result<WatchStream> {
    let mut watcher = Watcher {
        shared,
        prefix,
        last_seen: after,
        buffer: VecDeque::new(),
        replayed_through: after,
        caught_up: false,
        reported: after,
        live: None,
        follower: None,
    };
    // The first read happens now so that a compacted start fails the call itself.
    watcher.read_page().await?;
    let stream = futures::stream::unfold(Some(watcher), |watcher| async move {
        let mut watcher = watcher?;
        match watcher.next().await {
            Ok(event) => Some((Ok(event), Some(watcher))),
            Err(error) => Some((Err(error), None)),
        }
    });
    Ok(stream.boxed())
}

impl Watcher {
    async fn next(&mut self) -> Result<Event> {
        loop {
            if let Some(follower) = &mut self.follower {
                return follower.next().await;
            }
            if let Some(event) = self.buffer.pop_front() {
                self.last_seen = event.revision;
                self.reported = event.revision;
                return Ok(event);
            }
            self.last_seen = self.last_seen.max(self.replayed_through);
            match (&mut self.live, self.caught_up) {
                (Some(_), true) if self.last_seen > self.reported => {
                    // The replay covered changes elsewhere beyond the last one delivered.
                    self.reported = self.last_seen;
                    return Ok(progress(self.last_seen));
                }
                (Some(_), true) => {
                    if let Some(receiver) = self.live.take() {
                        self.follower = Some(LiveFollower::new(
                            receiver,
                            self.prefix.clone(),
                            self.last_seen,
                        ));
                    }
                }
                (None, true) => {
                    let sender = self.shared.events.upgrade().ok_or(StoreError::Closed)?;
                    self.live = Some(sender.subscribe());
                    self.caught_up = false;
                }
                (_, false) => self.read_page().await?,
            }
        }
    }

    async fn read_page(&mut self) -> Result<()> {
        let prefix = self.prefix.clone();
        let after = self.last_seen;
        let (events, meta) = self
            .shared
            .readers
            .run(move |conn| read::replay_page(conn, &prefix, after, REPLAY_PAGE))
            .await?;
        self.caught_up = events.len() < REPLAY_PAGE;
        if self.caught_up {
            // Nothing under the prefix between the last change and the snapshot's end.
            self.replayed_through = meta.current.max(after);
        }
        self.buffer.extend(events);
        Ok(())
    }
}
