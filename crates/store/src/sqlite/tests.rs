//! Tests of what is particular to the SQLite backend: persistence across reopening, failed
//! batches, paged replays, stepped compaction, and watchers that lag or outlive the store.
//! The behaviour every backend shares is in the conformance suite.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tempfile::TempDir;

use super::*;
use crate::{ListOptions, Store, StoreError, WatchStream};

fn temporary(options: SqliteOptions) -> (SqliteStore, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with(&dir.path().join("store.db"), options).unwrap();
    (store, dir)
}

fn value(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

async fn next(stream: &mut WatchStream) -> Option<Result<Event>> {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the watch stalled")
}

/// Writes `count` keys under `prefix` from 16 concurrent tasks.
async fn write_many(store: &Arc<SqliteStore>, prefix: &str, count: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..16 {
        let store = Arc::clone(store);
        let prefix = prefix.to_owned();
        tasks.spawn(async move {
            for i in (task..count).step_by(16) {
                store
                    .create(&format!("{prefix}{i:05}"), value("v"))
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

#[tokio::test]
async fn reopening_keeps_keys_revisions_and_the_compaction_mark() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        let a = store.create("/a", value("1")).await.unwrap();
        store
            .update("/a", value("2"), a.mod_revision)
            .await
            .unwrap();
        store.create("/b", value("x")).await.unwrap();
        store.delete("/b", None).await.unwrap();
        store.compact(3).await.unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.current_revision().await.unwrap(), 4);
    assert_eq!(store.compacted_revision().await.unwrap(), 3);
    assert_eq!(store.get("/a").await.unwrap().unwrap().value, value("2"));
    assert_eq!(store.get("/b").await.unwrap(), None);
    let c = store.create("/c", value("c")).await.unwrap();
    assert_eq!(c.mod_revision, 5, "revisions continue where they stopped");
}

#[tokio::test]
async fn a_failed_batch_consumes_no_revision() {
    let (store, dir) = temporary(SqliteOptions::default());
    store.create("/ok", value("v")).await.unwrap();
    // A trigger stands in for a disk error halfway through a batch.
    let saboteur = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    saboteur
        .execute_batch(
            "CREATE TRIGGER sabotage BEFORE INSERT ON log WHEN NEW.key = CAST('/poison' AS BLOB)
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    match store.create("/poison", value("v")).await {
        Err(StoreError::Backend { .. }) => {}
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert_eq!(store.current_revision().await.unwrap(), 1);
    let next = store.create("/after", value("v")).await.unwrap();
    assert_eq!(next.mod_revision, 2);
    assert_eq!(store.get("/poison").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_longer_than_a_page_are_whole_and_ordered() {
    let (store, _dir) = temporary(SqliteOptions::default());
    let store = Arc::new(store);
    write_many(&store, "/many/", 1300).await;
    store.create("/other", value("v")).await.unwrap();
    write_many(&store, "/more/", 100).await;

    let mut stream = store.watch("/m", 0).await.unwrap();
    let mut previous = 0;
    for _ in 0..1400 {
        let event = next(&mut stream).await.unwrap().unwrap();
        assert!(event.revision > previous, "out of order");
        assert!(event.key.starts_with("/m"));
        previous = event.revision;
    }
    store.create("/m/live", value("v")).await.unwrap();
    let live = next(&mut stream).await.unwrap().unwrap();
    assert_eq!(live.key, "/m/live");
}

/// Reads changes, each the revision after the last (starting after `delivered`), until the
/// stream fails; returns the last revision delivered and the error.
async fn in_order_until_error(
    stream: &mut WatchStream,
    mut delivered: Revision,
) -> (Revision, StoreError) {
    loop {
        match next(stream).await {
            Some(Ok(event)) => {
                delivered += 1;
                assert_eq!(event.revision, delivered);
            }
            Some(Err(error)) => return (delivered, error),
            None => panic!("the stream ended without an error"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_during_a_replay_ends_it_with_compacted() {
    let (store, _dir) = temporary(SqliteOptions::default());
    let store = Arc::new(store);
    write_many(&store, "/k/", 1100).await;
    let mut stream = store.watch("/k/", 0).await.unwrap();
    assert_eq!(next(&mut stream).await.unwrap().unwrap().revision, 1);
    store.compact(1000).await.unwrap();
    // The first page was read before the compaction; the next read sees it.
    let (_, error) = in_order_until_error(&mut stream, 1).await;
    assert!(
        matches!(
            error,
            StoreError::Compacted {
                compacted: 1000,
                ..
            }
        ),
        "expected Compacted, got {error:?}"
    );
    assert!(next(&mut stream).await.is_none());
}

#[tokio::test]
async fn large_compactions_go_in_steps() {
    let (store, _dir) = temporary(SqliteOptions {
        compaction_step: 3,
        ..Default::default()
    });
    let mut latest = store.create("/a", value("0")).await.unwrap();
    for i in 1..20 {
        latest = store
            .update("/a", value(&i.to_string()), latest.mod_revision)
            .await
            .unwrap();
    }
    store.compact(17).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), 17);
    let at = |revision| ListOptions {
        revision: Some(revision),
        ..Default::default()
    };
    let items = store.list(at(18)).await.unwrap().items;
    assert_eq!(items[0].value, value("17"));
    assert!(matches!(
        store.list(at(17)).await,
        Err(StoreError::Compacted { .. })
    ));
}

#[tokio::test]
async fn a_watcher_that_falls_behind_the_live_buffer_ends_with_lagged() {
    let (store, _dir) = temporary(SqliteOptions {
        watch_buffer: 4,
        ..Default::default()
    });
    let mut stream = store.watch("/", 0).await.unwrap();
    store.create("/first", value("v")).await.unwrap();
    assert_eq!(next(&mut stream).await.unwrap().unwrap().revision, 1);
    for i in 0..20 {
        store.create(&format!("/k{i}"), value("v")).await.unwrap();
    }
    let (delivered, error) = in_order_until_error(&mut stream, 1).await;
    match error {
        StoreError::WatcherLagged { last_seen } => assert!(last_seen >= delivered),
        other => panic!("expected WatcherLagged, got {other:?}"),
    }
    assert!(delivered < 21, "a buffer of 4 cannot hold 20 changes");
    assert!(next(&mut stream).await.is_none());
}

#[tokio::test]
async fn dropping_the_store_ends_watches_with_closed() {
    let (store, _dir) = temporary(SqliteOptions::default());
    let mut stream = store.watch("/", 0).await.unwrap();
    store.create("/a", value("v")).await.unwrap();
    assert!(next(&mut stream).await.unwrap().is_ok());
    drop(store);
    assert!(matches!(
        next(&mut stream).await,
        Some(Err(StoreError::Closed))
    ));
    assert!(next(&mut stream).await.is_none());
}
