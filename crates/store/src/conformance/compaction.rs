//! Conformance cases for compaction: what it forgets, what it must keep for reads and
//! watches after the compaction point, and the errors for what it forgot.

use std::sync::Arc;

use super::{expect_compacted, next_events, value};
use crate::{EventKind, KeyValue, ListOptions, Revision, Store, StoreError};

async fn list_at(store: &Arc<dyn Store>, revision: Option<Revision>) -> Vec<KeyValue> {
    store
        .list(ListOptions {
            prefix: "/c/".to_owned(),
            revision,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|error| panic!("list at {revision:?}: {error}"))
        .items
}

/// Writes r1..r8 under `/c/` and compacts through r5. Returns the key values after each
/// write that later checks compare against.
async fn history_compacted_at_five(store: &Arc<dyn Store>) -> [KeyValue; 4] {
    let a1 = store.create("/c/a", value("a1")).await.expect("r1");
    let a2 = store
        .update("/c/a", value("a2"), a1.mod_revision)
        .await
        .expect("r2");
    store.create("/c/b", value("b1")).await.expect("r3");
    store.delete("/c/b", None).await.expect("r4");
    let c1 = store.create("/c/c", value("c1")).await.expect("r5");
    let a3 = store
        .update("/c/a", value("a3"), a2.mod_revision)
        .await
        .expect("r6");
    let d1 = store.create("/c/d", value("d1")).await.expect("r7");
    store.delete("/c/c", None).await.expect("r8");
    store.compact(5).await.expect("compact through 5");
    [a2, c1, a3, d1]
}

pub async fn compaction_keeps_what_later_revisions_need(store: Arc<dyn Store>) {
    let [a2, c1, a3, d1] = history_compacted_at_five(&store).await;
    assert_eq!(store.compacted_revision().await.expect("compacted"), 5);
    assert_eq!(
        store.current_revision().await.expect("current"),
        8,
        "compaction does not move the current revision"
    );

    assert_eq!(list_at(&store, Some(6)).await, vec![a3.clone(), c1.clone()]);
    assert_eq!(
        list_at(&store, Some(7)).await,
        vec![a3.clone(), c1, d1.clone()]
    );
    assert_eq!(list_at(&store, None).await, vec![a3.clone(), d1.clone()]);
    assert_eq!(store.get("/c/a").await.expect("get"), Some(a3.clone()));
    assert_eq!(store.get("/c/b").await.expect("get"), None);

    let mut stream = store
        .watch("/c/", 5)
        .await
        .expect("watch from the compaction point");
    let events = next_events(&mut stream, 3).await;
    assert_eq!(events[0].kind, EventKind::Update);
    assert_eq!(events[0].revision, 6);
    assert_eq!(
        events[0].prev_value,
        Some(a2.value),
        "the previous value from before the compaction point is kept"
    );
    assert_eq!(events[1].revision, 7);
    assert_eq!(events[2].kind, EventKind::Delete);
    assert_eq!(events[2].prev_value, Some(value("c1")));

    let a4 = store
        .update("/c/a", value("a4"), a3.mod_revision)
        .await
        .expect("writes go on after compaction");
    assert_eq!(a4.mod_revision, 9);
    assert_eq!(events.len(), 3);
    let live = next_events(&mut stream, 1).await;
    assert_eq!(live[0].revision, 9);
    assert_eq!(list_at(&store, None).await, vec![a4, d1]);
}

pub async fn list_at_a_compacted_revision_fails(store: Arc<dyn Store>) {
    history_compacted_at_five(&store).await;
    for revision in [1, 4, 5] {
        let result = store
            .list(ListOptions {
                prefix: "/c/".to_owned(),
                revision: Some(revision),
                ..Default::default()
            })
            .await;
        match result {
            Err(StoreError::Compacted {
                requested,
                compacted,
            }) => assert_eq!((requested, compacted), (revision, 5)),
            other => panic!("list at {revision}: expected Compacted, got {other:?}"),
        }
    }
}

pub async fn watch_from_a_compacted_revision_fails(store: Arc<dyn Store>) {
    history_compacted_at_five(&store).await;
    for after in [0, 2, 4] {
        let result = store.watch("/c/", after).await.map(|_| ());
        expect_compacted(result, &format!("watch after {after}"));
    }
    let result = store.watch("/other/", 0).await.map(|_| ());
    expect_compacted(result, "watch of another prefix after 0");
}

pub async fn compaction_bounds_and_idempotence(store: Arc<dyn Store>) {
    assert_eq!(store.compacted_revision().await.expect("compacted"), 0);
    let a = store.create("/c/a", value("1")).await.expect("create");
    let a = store
        .update("/c/a", value("2"), a.mod_revision)
        .await
        .expect("update");
    match store.compact(3).await {
        Err(StoreError::FutureRevision { requested, current }) => {
            assert_eq!((requested, current), (3, 2));
        }
        other => panic!("compact in the future: expected FutureRevision, got {other:?}"),
    }
    assert_eq!(store.compacted_revision().await.expect("compacted"), 0);

    store
        .compact(2)
        .await
        .expect("compact through the current revision");
    store.compact(2).await.expect("compacting again is a no-op");
    store.compact(1).await.expect("compacting less is a no-op");
    assert_eq!(store.compacted_revision().await.expect("compacted"), 2);
    assert_eq!(list_at(&store, None).await, vec![a.clone()]);
    assert_eq!(store.get("/c/a").await.expect("get"), Some(a));

    let mut stream = store
        .watch("/c/", 2)
        .await
        .expect("watch from the compaction point");
    store.create("/c/b", value("b")).await.expect("create");
    let events = next_events(&mut stream, 1).await;
    assert_eq!((events[0].key.as_str(), events[0].revision), ("/c/b", 3));
}

pub async fn recreate_after_compacted_delete(store: Arc<dyn Store>) {
    store.create("/c/x", value("first")).await.expect("r1");
    store.create("/c/y", value("other")).await.expect("r2");
    store.delete("/c/x", None).await.expect("r3");
    store.compact(3).await.expect("compact");
    assert_eq!(store.get("/c/x").await.expect("get"), None);

    let again = store.create("/c/x", value("second")).await.expect("r4");
    assert_eq!(again.create_revision, 4);
    let mut stream = store.watch("/c/x", 3).await.expect("watch");
    let events = next_events(&mut stream, 1).await;
    assert_eq!(events[0].kind, EventKind::Create);
    assert_eq!(events[0].prev_value, None);
    let items = list_at(&store, Some(4)).await;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0], again);

    let updated = store
        .update("/c/x", value("third"), again.mod_revision)
        .await
        .expect("r5");
    store.compact(5).await.expect("compact again");
    assert_eq!(list_at(&store, None).await.first(), Some(&updated));
}
