//! Conformance cases for `txn`: every op or none, in order, at consecutive revisions, one
//! watch event per op, and nothing of a transaction visible before all of it is.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::task::JoinSet;

use super::{next_event, next_events, value};
use crate::{
    Deleted, Event, EventKind, KeyValue, ListOptions, Revision, Store, StoreError, TxnOp,
    TxnOutcome,
};

fn create(key: &str, text: &str) -> TxnOp {
    TxnOp::Create {
        key: key.to_owned(),
        value: value(text),
    }
}

fn update(key: &str, text: &str, expected_mod_revision: Revision) -> TxnOp {
    TxnOp::Update {
        key: key.to_owned(),
        value: value(text),
        expected_mod_revision,
    }
}

fn delete(key: &str, expected_mod_revision: Option<Revision>) -> TxnOp {
    TxnOp::Delete {
        key: key.to_owned(),
        expected_mod_revision,
    }
}

fn key_value(key: &str, text: &str, create_revision: Revision, mod_revision: Revision) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: value(text),
        create_revision,
        mod_revision,
    }
}

fn summary(events: &[Event]) -> Vec<(EventKind, &str, Revision)> {
    events
        .iter()
        .map(|event| (event.kind, event.key.as_str(), event.revision))
        .collect()
}

pub async fn txn_applies_every_op_at_consecutive_revisions(store: Arc<dyn Store>) {
    store.create("/x/upd", value("u0")).await.expect("create");
    store.create("/x/del", value("d0")).await.expect("create");
    let outcomes = store
        .txn(vec![
            create("/x/new", "n"),
            update("/x/upd", "u1", 1),
            delete("/x/del", Some(2)),
        ])
        .await
        .expect("txn");
    assert_eq!(
        outcomes,
        [
            TxnOutcome::Put(key_value("/x/new", "n", 3, 3)),
            TxnOutcome::Put(key_value("/x/upd", "u1", 1, 4)),
            TxnOutcome::Deleted(Deleted {
                revision: 5,
                prev: key_value("/x/del", "d0", 2, 2),
            }),
        ]
    );
    assert_eq!(store.current_revision().await.expect("current revision"), 5);
    assert_eq!(
        store.get("/x/new").await.expect("get"),
        Some(key_value("/x/new", "n", 3, 3))
    );
    assert_eq!(
        store.get("/x/upd").await.expect("get"),
        Some(key_value("/x/upd", "u1", 1, 4))
    );
    assert_eq!(store.get("/x/del").await.expect("get"), None);
    let next = store.create("/x/after", value("v")).await.expect("create");
    assert_eq!(next.mod_revision, 6, "revisions go on after the txn's");
}

pub async fn failed_txn_writes_nothing(store: Arc<dyn Store>) {
    let a = store.create("/x/a", value("a0")).await.expect("create");
    let b = store.create("/x/b", value("b0")).await.expect("create");
    let mut stream = store.watch("", 2).await.expect("watch");

    type Expected = fn(&StoreError) -> bool;
    let failing: Vec<(&str, Vec<TxnOp>, Expected)> = vec![
        (
            "conflict",
            vec![update("/x/a", "a1", 1), update("/x/b", "b1", 1)],
            |error| {
                matches!(error, StoreError::Conflict { key, expected: 1, actual: 2 }
                    if key == "/x/b")
            },
        ),
        (
            "already exists",
            vec![create("/x/c", "c"), create("/x/a", "again")],
            |error| matches!(error, StoreError::AlreadyExists { key } if key == "/x/a"),
        ),
        (
            "not found",
            vec![create("/x/c", "c"), delete("/x/missing", None)],
            |error| matches!(error, StoreError::NotFound { key } if key == "/x/missing"),
        ),
        (
            "not found after an earlier op of the txn deleted the key",
            vec![delete("/x/a", Some(1)), update("/x/a", "a1", 1)],
            |error| matches!(error, StoreError::NotFound { key } if key == "/x/a"),
        ),
    ];
    for (what, ops, is_expected) in failing {
        match store.txn(ops).await {
            Err(error) if is_expected(&error) => {}
            other => panic!("txn failing with {what}: got {other:?}"),
        }
        assert_eq!(
            store.current_revision().await.expect("current revision"),
            2,
            "a failed txn ({what}) consumes no revision"
        );
        let listed = store
            .list(ListOptions {
                prefix: "/x/".to_owned(),
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(
            listed.items,
            [a.clone(), b.clone()],
            "a failed txn ({what}) writes nothing"
        );
    }

    let next = store
        .update("/x/a", value("a1"), a.mod_revision)
        .await
        .expect("update after the failed txns");
    assert_eq!(
        next.mod_revision, 3,
        "the next write takes the next revision"
    );
    let event = next_event(&mut stream).await;
    assert_eq!(
        (event.kind, event.key.as_str(), event.revision),
        (EventKind::Update, "/x/a", 3),
        "the watch saw something of a failed txn"
    );
    assert_eq!(event.prev_value, Some(value("a0")));
}

/// Each op sees the effects of those before it. (Ops that name the revision an earlier op
/// of the same txn gets rely on this store's numbering; see `Store::txn`.)
pub async fn txn_ops_see_earlier_ops(store: Arc<dyn Store>) {
    let outcomes = store
        .txn(vec![
            create("/s/k", "1"),
            update("/s/k", "2", 1),
            update("/s/k", "3", 2),
            delete("/s/k", Some(3)),
            create("/s/k", "again"),
        ])
        .await
        .expect("txn");
    assert_eq!(
        outcomes,
        [
            TxnOutcome::Put(key_value("/s/k", "1", 1, 1)),
            TxnOutcome::Put(key_value("/s/k", "2", 1, 2)),
            TxnOutcome::Put(key_value("/s/k", "3", 1, 3)),
            TxnOutcome::Deleted(Deleted {
                revision: 4,
                prev: key_value("/s/k", "3", 1, 3),
            }),
            TxnOutcome::Put(key_value("/s/k", "again", 5, 5)),
        ]
    );
    assert_eq!(
        store.get("/s/k").await.expect("get"),
        Some(key_value("/s/k", "again", 5, 5))
    );

    match store
        .txn(vec![create("/s/z", "1"), create("/s/z", "2")])
        .await
    {
        Err(StoreError::AlreadyExists { key }) => assert_eq!(key, "/s/z"),
        other => panic!("creating a key twice in one txn: expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(store.get("/s/z").await.expect("get"), None);
    assert_eq!(store.current_revision().await.expect("current revision"), 5);
}

pub async fn watch_sees_each_op_of_a_txn_as_its_own_event(store: Arc<dyn Store>) {
    store.create("/t/a", value("a0")).await.expect("create");
    store.create("/t/b", value("b0")).await.expect("create");
    let mut prefixed = store.watch("/t/", 2).await.expect("watch /t/");
    let mut everything = store.watch("", 2).await.expect("watch everything");
    store
        .txn(vec![
            update("/t/a", "a1", 1),
            create("/other/x", "x"),
            delete("/t/b", None),
            create("/t/c", "c"),
        ])
        .await
        .expect("txn");

    let all = next_events(&mut everything, 4).await;
    assert_eq!(
        summary(&all),
        [
            (EventKind::Update, "/t/a", 3),
            (EventKind::Create, "/other/x", 4),
            (EventKind::Delete, "/t/b", 5),
            (EventKind::Create, "/t/c", 6),
        ]
    );
    let live = next_events(&mut prefixed, 3).await;
    assert_eq!(
        live,
        [
            Event {
                kind: EventKind::Update,
                key: "/t/a".to_owned(),
                revision: 3,
                create_revision: 1,
                value: Some(value("a1")),
                prev_value: Some(value("a0")),
            },
            Event {
                kind: EventKind::Delete,
                key: "/t/b".to_owned(),
                revision: 5,
                create_revision: 2,
                value: None,
                prev_value: Some(value("b0")),
            },
            Event {
                kind: EventKind::Create,
                key: "/t/c".to_owned(),
                revision: 6,
                create_revision: 6,
                value: Some(value("c")),
                prev_value: None,
            },
        ]
    );
    let mut replay = store.watch("/t/", 2).await.expect("watch /t/ again");
    assert_eq!(
        next_events(&mut replay, 3).await,
        live,
        "the replay matches what was seen live"
    );
}

/// Read-modify-write transactions from many tasks: each increments a counter and creates a
/// key of its own in one txn, retrying on `Conflict`. No reader ever sees the counter and
/// the keys disagree, and no watcher sees another write between the two of one txn.
pub async fn concurrent_txns_are_all_or_nothing(store: Arc<dyn Store>) {
    const TASKS: usize = 16;
    const PER_TASK: usize = 8;
    /// Far more than the other tasks can win in a row; reaching it means no progress.
    const MAX_ATTEMPTS: usize = 10_000;
    const COUNTER: &str = "/n/counter";

    fn count_of(key_value: &KeyValue) -> usize {
        std::str::from_utf8(&key_value.value)
            .expect("utf-8")
            .parse()
            .expect("a number")
    }

    store.create(COUNTER, value("0")).await.expect("create");
    let mut stream = store.watch("/n/", 1).await.expect("watch");
    let writers_done = Arc::new(AtomicBool::new(false));
    let reader = {
        let store = Arc::clone(&store);
        let writers_done = Arc::clone(&writers_done);
        tokio::spawn(async move {
            let mut snapshots = 0usize;
            loop {
                // The flag is read before the list, so the last list sees every txn.
                let finished = writers_done.load(Ordering::Acquire);
                let listed = store
                    .list(ListOptions {
                        prefix: "/n/".to_owned(),
                        ..Default::default()
                    })
                    .await
                    .expect("list");
                let (counter, items) = listed.items.split_first().expect("the counter exists");
                assert_eq!(counter.key, COUNTER);
                assert_eq!(
                    count_of(counter),
                    items.len(),
                    "a snapshot at revision {} saw part of a txn",
                    listed.revision
                );
                snapshots += 1;
                if finished {
                    return snapshots;
                }
                tokio::task::yield_now().await;
            }
        })
    };

    let mut tasks = JoinSet::new();
    for task in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            for i in 0..PER_TASK {
                let mine = format!("/n/items/{task:02}/{i:02}");
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    assert!(attempts <= MAX_ATTEMPTS, "{mine}: no progress");
                    let current = store.get(COUNTER).await.expect("get").expect("exists");
                    let next = (count_of(&current) + 1).to_string();
                    let ops = vec![
                        update(COUNTER, &next, current.mod_revision),
                        create(&mine, &mine),
                    ];
                    match store.txn(ops).await {
                        Ok(outcomes) => {
                            assert_eq!(outcomes.len(), 2);
                            break;
                        }
                        Err(StoreError::Conflict { .. }) => {}
                        Err(other) => panic!("{mine}: txn failed: {other}"),
                    }
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("a writer panicked");
    }
    writers_done.store(true, Ordering::Release);
    let snapshots = reader.await.expect("the reader panicked");
    assert!(snapshots > 0);

    let total = TASKS * PER_TASK;
    let counter = store.get(COUNTER).await.expect("get").expect("exists");
    assert_eq!(count_of(&counter), total, "an increment was lost");
    let items = store
        .list(ListOptions {
            prefix: "/n/items/".to_owned(),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(items.items.len(), total);
    assert_eq!(
        store.current_revision().await.expect("current revision"),
        1 + 2 * total as Revision
    );

    let events = next_events(&mut stream, 2 * total).await;
    for (pair, events) in events.chunks(2).enumerate() {
        let revision = 2 + 2 * pair as Revision;
        assert_eq!(
            (events[0].kind, events[0].key.as_str(), events[0].revision),
            (EventKind::Update, COUNTER, revision),
        );
        assert_eq!(events[0].value, Some(value(&(pair + 1).to_string())));
        assert_eq!(events[0].prev_value, Some(value(&pair.to_string())));
        assert_eq!(
            (events[1].kind, events[1].revision),
            (EventKind::Create, revision + 1),
            "the second op of a txn follows its first"
        );
        assert!(events[1].key.starts_with("/n/items/"));
    }
}

pub async fn empty_txn_does_nothing(store: Arc<dyn Store>) {
    let mut stream = store.watch("", 0).await.expect("watch");
    assert_eq!(store.txn(Vec::new()).await.expect("empty txn"), []);
    assert_eq!(store.current_revision().await.expect("current revision"), 0);
    store.create("/e/a", value("a")).await.expect("create");
    assert_eq!(store.txn(Vec::new()).await.expect("empty txn"), []);
    assert_eq!(store.current_revision().await.expect("current revision"), 1);
    let next = store.create("/e/b", value("b")).await.expect("create");
    assert_eq!(next.mod_revision, 2, "an empty txn consumes no revision");
    assert_eq!(
        summary(&next_events(&mut stream, 2).await),
        [
            (EventKind::Create, "/e/a", 1),
            (EventKind::Create, "/e/b", 2)
        ]
    );
}
