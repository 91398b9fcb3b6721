//! Conformance cases for `watch`: replay from a past revision, the switch to live changes,
//! prefix filtering, previous values, and what a watcher that stops reading gets.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::{next_event, next_events, value};
use crate::{Event, EventKind, Store, StoreError};

fn summary(events: &[Event]) -> Vec<(EventKind, &str, i64)> {
    events
        .iter()
        .map(|event| (event.kind, event.key.as_str(), event.revision))
        .collect()
}

pub async fn watch_replays_history_then_follows_live(store: Arc<dyn Store>) {
    let a = store.create("/w/a", value("a1")).await.expect("create a");
    store
        .update("/w/a", value("a2"), a.mod_revision)
        .await
        .expect("update a");
    store.create("/w/b", value("b1")).await.expect("create b");
    store.delete("/w/a", None).await.expect("delete a");

    let mut from_start = store.watch("", 0).await.expect("watch from 0");
    let mut from_middle = store.watch("", 2).await.expect("watch from 2");

    let replayed = next_events(&mut from_start, 4).await;
    assert_eq!(
        summary(&replayed),
        [
            (EventKind::Create, "/w/a", 1),
            (EventKind::Update, "/w/a", 2),
            (EventKind::Create, "/w/b", 3),
            (EventKind::Delete, "/w/a", 4),
        ]
    );
    assert_eq!(replayed[0].value, Some(value("a1")));
    assert_eq!(replayed[1].value, Some(value("a2")));
    assert_eq!(replayed[3].value, None);
    assert!(
        replayed
            .iter()
            .all(|event| event.key != "/w/a" || event.create_revision == 1)
    );

    let tail = next_events(&mut from_middle, 2).await;
    assert_eq!(
        summary(&tail),
        [
            (EventKind::Create, "/w/b", 3),
            (EventKind::Delete, "/w/a", 4)
        ]
    );

    store.create("/w/c", value("c1")).await.expect("create c");
    for stream in [&mut from_start, &mut from_middle] {
        let live = next_event(stream).await;
        assert_eq!(
            (live.kind, live.key.as_str(), live.revision),
            (EventKind::Create, "/w/c", 5)
        );
        assert_eq!(live.value, Some(value("c1")));
        assert_eq!(live.create_revision, 5);
    }
}

pub async fn watch_filters_by_prefix(store: Arc<dyn Store>) {
    store.create("/w/ab", value("x")).await.expect("create");
    store.create("/w/a/1", value("x")).await.expect("create");
    store.create("/w/b/1", value("x")).await.expect("create");

    let mut dir = store.watch("/w/a/", 0).await.expect("watch /w/a/");
    let mut plain = store.watch("/w/a", 0).await.expect("watch /w/a");

    store.create("/w/abc", value("x")).await.expect("create");
    store.create("/w/c", value("x")).await.expect("create");
    store.create("/w/a/2", value("x")).await.expect("create");

    let dir_events = next_events(&mut dir, 2).await;
    assert_eq!(
        summary(&dir_events),
        [
            (EventKind::Create, "/w/a/1", 2),
            (EventKind::Create, "/w/a/2", 6)
        ],
        "only keys under the prefix, replayed and live"
    );
    let plain_events = next_events(&mut plain, 4).await;
    assert_eq!(
        summary(&plain_events),
        [
            (EventKind::Create, "/w/ab", 1),
            (EventKind::Create, "/w/a/1", 2),
            (EventKind::Create, "/w/abc", 4),
            (EventKind::Create, "/w/a/2", 6),
        ],
        "a prefix is matched by bytes"
    );
}

/// A watch whose keys are quiet learns, through progress events, how far the store has
/// gone; progress never runs ahead of a change to its own keys.
pub async fn quiet_watch_reports_progress(store: Arc<dyn Store>) {
    let mut quiet = store.watch("/quiet/", 0).await.expect("watch");
    let last = write_elsewhere(&store).await;
    loop {
        let event = super::next_event_or_progress(&mut quiet).await;
        assert_eq!(event.kind, crate::EventKind::Progress, "{event:?}");
        assert!(event.value.is_none() && event.key.is_empty());
        if event.revision == last {
            break;
        }
        assert!(event.revision < last, "progress beyond the newest write");
    }
    let own = store
        .create("/quiet/a", value("a"))
        .await
        .expect("create")
        .mod_revision;
    let event = super::next_event(&mut quiet).await;
    assert_eq!((event.key.as_str(), event.revision), ("/quiet/a", own));
}

/// Three writes outside `/quiet/`; returns the revision of the last.
async fn write_elsewhere(store: &Arc<dyn Store>) -> crate::Revision {
    let mut last = 0;
    for i in 0..3 {
        last = store
            .create(&format!("/busy/{i}"), value("x"))
            .await
            .expect("create")
            .mod_revision;
    }
    last
}

/// A watch that replays history with nothing under its prefix learns how far the replay
/// went before any live change.
pub async fn replay_of_a_quiet_prefix_reports_progress(store: Arc<dyn Store>) {
    let last = write_elsewhere(&store).await;
    let mut quiet = store.watch("/quiet/", 0).await.expect("watch");
    let event = super::next_event_or_progress(&mut quiet).await;
    assert_eq!(
        (event.kind, event.revision),
        (crate::EventKind::Progress, last)
    );
}

pub async fn watch_events_carry_prev_values(store: Arc<dyn Store>) {
    let mut live = store.watch("/w/", 0).await.expect("watch");
    let created = store.create("/w/k", value("v1")).await.expect("create");
    store
        .update("/w/k", value("v2"), created.mod_revision)
        .await
        .expect("update");
    store.delete("/w/k", None).await.expect("delete");

    let mut replay = store.watch("/w/", 0).await.expect("watch after the fact");
    for (how, stream) in [("live", &mut live), ("replayed", &mut replay)] {
        let events = next_events(stream, 3).await;
        let (create, update, delete) = (&events[0], &events[1], &events[2]);
        assert_eq!(create.kind, EventKind::Create, "{how}");
        assert_eq!(
            create.prev_value, None,
            "{how} create has no previous value"
        );
        assert_eq!(update.kind, EventKind::Update, "{how}");
        assert_eq!(update.value, Some(value("v2")), "{how}");
        assert_eq!(update.prev_value, Some(value("v1")), "{how} update");
        assert_eq!(update.create_revision, created.create_revision, "{how}");
        assert_eq!(delete.kind, EventKind::Delete, "{how}");
        assert_eq!(delete.value, None, "{how}");
        assert_eq!(delete.prev_value, Some(value("v2")), "{how} delete");
        assert_eq!(delete.create_revision, created.create_revision, "{how}");
    }
}

pub async fn watch_from_the_current_revision_is_live_only(store: Arc<dyn Store>) {
    for i in 0..5 {
        store
            .create(&format!("/w/{i}"), value("old"))
            .await
            .expect("create");
    }
    let current = store.current_revision().await.expect("current revision");
    let mut stream = store.watch("/w/", current).await.expect("watch");
    store.create("/w/new", value("new")).await.expect("create");
    let event = next_event(&mut stream).await;
    assert_eq!(
        (event.key.as_str(), event.revision),
        ("/w/new", current + 1)
    );
}

/// Watching from a revision not reached yet is allowed (as in etcd): the watch delivers
/// changes after it once they happen.
pub async fn watch_from_a_future_revision_waits_for_it(store: Arc<dyn Store>) {
    store.create("/w/0", value("v")).await.expect("create");
    let mut stream = store.watch("/w/", 3).await.expect("watch from the future");
    for i in 1..=3 {
        store
            .create(&format!("/w/{i}"), value("v"))
            .await
            .expect("create");
    }
    let event = next_event(&mut stream).await;
    assert_eq!((event.key.as_str(), event.revision), ("/w/3", 4));
}

/// A watcher that reads nothing while many changes happen must afterwards get them all in
/// order, or a gap-free prefix of them followed by `WatcherLagged` and the end.
pub async fn unread_watch_stays_ordered_or_reports_lag(store: Arc<dyn Store>) {
    const WRITES: i64 = 400;
    let mut stream = store.watch("/w/", 0).await.expect("watch");
    let writers: Vec<_> = (0..8)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..WRITES / 8 {
                    store
                        .create(&format!("/w/{task}/{i}"), value("v"))
                        .await
                        .expect("create");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer task");
    }
    let mut expected = 1;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
        match next.expect("the watch stalled") {
            Some(Ok(event)) if event.kind == crate::EventKind::Progress => {}
            Some(Ok(event)) => {
                assert_eq!(
                    event.revision, expected,
                    "a gap or a duplicate in the watch"
                );
                if expected == WRITES {
                    break;
                }
                expected += 1;
            }
            Some(Err(StoreError::WatcherLagged { last_seen })) => {
                assert!(last_seen >= expected - 1, "lag reported before {last_seen}");
                assert!(stream.next().await.is_none(), "a lagged watch ends");
                break;
            }
            Some(Err(error)) => panic!("the watch failed: {error}"),
            None => panic!("the watch ended without an error"),
        }
    }
}
