//! Conformance cases for concurrent writers: compare-and-swap races have one winner,
//! concurrent writes get distinct consecutive revisions, and none is lost.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::task::JoinSet;

use super::{next_events, value};
use crate::{KeyValue, ListOptions, Result, Revision, Store, StoreError};

const RACERS: usize = 16;

async fn join_all<T: Send + 'static>(mut tasks: JoinSet<T>) -> Vec<T> {
    let mut results = Vec::with_capacity(tasks.len());
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.expect("a racing task panicked"));
    }
    results
}

pub async fn concurrent_updates_at_one_revision_have_one_winner(store: Arc<dyn Store>) {
    let mut current = store.create("/r/k", value("start")).await.expect("create");
    for round in 0..5 {
        let mut tasks = JoinSet::new();
        for racer in 0..RACERS {
            let store = Arc::clone(&store);
            let expected = current.mod_revision;
            tasks.spawn(async move {
                let body = value(&format!("round {round} racer {racer}"));
                store.update("/r/k", body, expected).await
            });
        }
        let results: Vec<Result<KeyValue>> = join_all(tasks).await;
        let winners: Vec<&KeyValue> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let winner = winners[0].clone();
        assert_eq!(winner.mod_revision, current.mod_revision + 1);
        for result in &results {
            match result {
                Ok(_) => {}
                Err(StoreError::Conflict {
                    expected, actual, ..
                }) => {
                    assert_eq!(*expected, current.mod_revision);
                    assert_eq!(*actual, winner.mod_revision);
                }
                Err(other) => panic!("round {round}: a loser got {other}"),
            }
        }
        assert_eq!(store.get("/r/k").await.expect("get"), Some(winner.clone()));
        assert_eq!(
            store.current_revision().await.expect("current"),
            winner.mod_revision
        );
        current = winner;
    }
}

pub async fn concurrent_creates_of_one_key_have_one_winner(store: Arc<dyn Store>) {
    let mut tasks = JoinSet::new();
    for racer in 0..RACERS {
        let store = Arc::clone(&store);
        tasks.spawn(async move { store.create("/r/once", value(&racer.to_string())).await });
    }
    let results = join_all(tasks).await;
    let winners: Vec<&KeyValue> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|error| matches!(error, StoreError::AlreadyExists { .. })),
        "{results:?}"
    );
    assert_eq!(store.current_revision().await.expect("current"), 1);
    assert_eq!(
        store.get("/r/once").await.expect("get").as_ref(),
        Some(winners[0])
    );
}

pub async fn concurrent_creates_get_distinct_consecutive_revisions(store: Arc<dyn Store>) {
    const TASKS: usize = 32;
    const PER_TASK: usize = 25;
    store.create("/r/before", value("v")).await.expect("create");
    let mut tasks = JoinSet::new();
    for task in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let mut created = Vec::with_capacity(PER_TASK);
            for i in 0..PER_TASK {
                let key = format!("/r/many/{task:02}/{i:02}");
                let kv = store.create(&key, value(&key)).await.expect("create");
                assert_eq!(kv.create_revision, kv.mod_revision);
                created.push(kv);
            }
            created
        });
    }
    let created: Vec<KeyValue> = join_all(tasks).await.into_iter().flatten().collect();
    let revisions: BTreeSet<Revision> = created.iter().map(|kv| kv.mod_revision).collect();
    let total = (TASKS * PER_TASK) as Revision;
    assert_eq!(
        revisions.len() as Revision,
        total,
        "revisions must be distinct"
    );
    assert_eq!(
        revisions.iter().copied().collect::<Vec<_>>(),
        (2..=total + 1).collect::<Vec<_>>(),
        "revisions must be consecutive"
    );
    assert_eq!(store.current_revision().await.expect("current"), total + 1);
    let listed = store
        .list(ListOptions {
            prefix: "/r/many/".to_owned(),
            ..Default::default()
        })
        .await
        .expect("list");
    let mut expected = created;
    expected.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(listed.items, expected);
}

pub async fn no_lost_updates_under_contention(store: Arc<dyn Store>) {
    const TASKS: usize = 8;
    const INCREMENTS: usize = 25;
    store
        .create("/r/counter", value("0"))
        .await
        .expect("create");
    let mut stream = store.watch("/r/counter", 1).await.expect("watch");
    let mut tasks = JoinSet::new();
    for _ in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let mut conflicts = 0;
            for _ in 0..INCREMENTS {
                loop {
                    let current = store.get("/r/counter").await.expect("get").expect("exists");
                    let count: usize = std::str::from_utf8(&current.value)
                        .expect("utf-8")
                        .parse()
                        .expect("a number");
                    let next = value(&(count + 1).to_string());
                    match store.update("/r/counter", next, current.mod_revision).await {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => conflicts += 1,
                        Err(other) => panic!("increment failed: {other}"),
                    }
                }
            }
            conflicts
        });
    }
    join_all(tasks).await;
    let total = TASKS * INCREMENTS;
    let counter = store.get("/r/counter").await.expect("get").expect("exists");
    assert_eq!(
        counter.value,
        value(&total.to_string()),
        "an increment was lost"
    );
    assert_eq!(counter.mod_revision, total as Revision + 1);

    let events = next_events(&mut stream, total).await;
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.revision, i as Revision + 2);
        assert_eq!(event.value, Some(value(&(i + 1).to_string())));
        assert_eq!(event.prev_value, Some(value(&i.to_string())));
    }
}

pub async fn watch_sees_every_concurrent_write_in_order(store: Arc<dyn Store>) {
    const TASKS: usize = 16;
    const PER_TASK: usize = 20;
    let mut stream = store.watch("/r/", 0).await.expect("watch");
    let mut tasks = JoinSet::new();
    for task in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let mut acked = Vec::with_capacity(PER_TASK);
            for i in 0..PER_TASK {
                let key = format!("/r/{task:02}/{i:02}");
                let kv = store.create(&key, value(&key)).await.expect("create");
                acked.push((key, kv.mod_revision));
            }
            acked
        });
    }
    let acked: BTreeMap<String, Revision> = join_all(tasks).await.into_iter().flatten().collect();
    let events = next_events(&mut stream, TASKS * PER_TASK).await;
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.revision, i as Revision + 1, "watch out of order");
        assert_eq!(acked.get(&event.key), Some(&event.revision));
        assert_eq!(event.value, Some(value(&event.key)));
    }
}
