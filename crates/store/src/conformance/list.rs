//! Conformance cases for `list`: prefixes, reads at old revisions, and paging.

use std::sync::Arc;

use super::value;
use crate::{ListOptions, ListResult, Revision, Store, StoreError};

async fn list(
    store: &Arc<dyn Store>,
    prefix: &str,
    revision: Option<Revision>,
    start_after: Option<&str>,
    limit: Option<usize>,
) -> ListResult {
    store
        .list(ListOptions {
            prefix: prefix.to_owned(),
            revision,
            start_after: start_after.map(str::to_owned),
            limit,
        })
        .await
        .unwrap_or_else(|error| panic!("list {prefix:?} at {revision:?}: {error}"))
}

fn keys(result: &ListResult) -> Vec<&str> {
    result.items.iter().map(|item| item.key.as_str()).collect()
}

pub async fn list_prefix_is_a_plain_byte_prefix(store: Arc<dyn Store>) {
    for key in ["/b", "/a/bc", "/a/b/y", "/a/c", "/a/b", "/a/b/x"] {
        store.create(key, value(key)).await.expect("create");
    }
    let current = store.current_revision().await.expect("current revision");

    let under_dir = list(&store, "/a/b/", None, None, None).await;
    assert_eq!(keys(&under_dir), ["/a/b/x", "/a/b/y"]);
    assert_eq!(under_dir.revision, current);
    assert!(!under_dir.more);

    let plain = list(&store, "/a/b", None, None, None).await;
    assert_eq!(
        keys(&plain),
        ["/a/b", "/a/b/x", "/a/b/y", "/a/bc"],
        "a prefix without a trailing slash matches by bytes"
    );

    let everything = list(&store, "", None, None, None).await;
    assert_eq!(
        keys(&everything),
        ["/a/b", "/a/b/x", "/a/b/y", "/a/bc", "/a/c", "/b"]
    );
    for item in &everything.items {
        assert_eq!(item.value, value(&item.key));
    }

    assert!(list(&store, "/z/", None, None, None).await.items.is_empty());
    assert!(
        list(&store, "/a/b/x/", None, None, None)
            .await
            .items
            .is_empty()
    );
}

pub async fn list_at_an_old_revision_sees_the_old_snapshot(store: Arc<dyn Store>) {
    let a1 = store.create("/s/a", value("a1")).await.expect("create a");
    let b1 = store.create("/s/b", value("b1")).await.expect("create b");
    let a2 = store
        .update("/s/a", value("a2"), a1.mod_revision)
        .await
        .expect("update a");
    let b_deleted = store.delete("/s/b", None).await.expect("delete b");
    let c1 = store.create("/s/c", value("c1")).await.expect("create c");

    let at_b1 = list(&store, "/s/", Some(b1.mod_revision), None, None).await;
    assert_eq!(at_b1.revision, b1.mod_revision);
    assert_eq!(at_b1.items, vec![a1.clone(), b1.clone()]);

    let at_a2 = list(&store, "/s/", Some(a2.mod_revision), None, None).await;
    assert_eq!(
        at_a2.items,
        vec![a2.clone(), b1.clone()],
        "a key deleted later is still there"
    );

    let at_delete = list(&store, "/s/", Some(b_deleted.revision), None, None).await;
    assert_eq!(
        at_delete.items,
        vec![a2.clone()],
        "a key created later is not there yet"
    );

    let at_first = list(&store, "/s/", Some(a1.mod_revision), None, None).await;
    assert_eq!(at_first.items, vec![a1]);

    let at_zero = list(&store, "/s/", Some(0), None, None).await;
    assert!(at_zero.items.is_empty(), "nothing existed at revision 0");

    let latest = list(&store, "/s/", None, None, None).await;
    assert_eq!(latest.items, vec![a2.clone(), c1.clone()]);
    assert_eq!(latest.revision, c1.mod_revision);
    let at_current = list(&store, "/s/", Some(c1.mod_revision), None, None).await;
    assert_eq!(at_current, latest);

    let paged_old = list(&store, "/s/", Some(a2.mod_revision), Some("/s/a"), Some(1)).await;
    assert_eq!(paged_old.items, vec![b1]);
    assert!(!paged_old.more);
}

pub async fn list_pages_with_start_after_and_limit(store: Arc<dyn Store>) {
    let all: Vec<String> = (0..10).map(|i| format!("/p/{i:02}")).collect();
    for key in &all {
        store.create(key, value(key)).await.expect("create");
    }
    store.create("/p0", value("outside")).await.expect("create");
    store.create("/o", value("before")).await.expect("create");

    let mut seen = Vec::new();
    let mut start_after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = list(&store, "/p/", None, start_after.as_deref(), Some(3)).await;
        pages += 1;
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|item| item.key.clone()));
        if !page.more {
            break;
        }
        assert_eq!(page.items.len(), 3, "a page with more after it is full");
        start_after = page.items.last().map(|item| item.key.clone());
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 4);
    assert_eq!(seen, all);

    let exact = list(&store, "/p/", None, Some("/p/04"), Some(5)).await;
    assert_eq!(keys(&exact), ["/p/05", "/p/06", "/p/07", "/p/08", "/p/09"]);
    assert!(!exact.more, "no more when the limit lands on the last key");

    let unlimited = list(&store, "/p/", None, None, Some(0)).await;
    assert_eq!(unlimited.items.len(), 10, "a limit of 0 means no limit");
    assert!(!unlimited.more);

    let from_before = list(&store, "/p/", None, Some("/a"), Some(2)).await;
    assert_eq!(keys(&from_before), ["/p/00", "/p/01"]);
    assert!(from_before.more);

    let from_after = list(&store, "/p/", None, Some("/q"), None).await;
    assert!(from_after.items.is_empty());

    let between = list(&store, "/p/", None, Some("/p/035"), Some(1)).await;
    assert_eq!(keys(&between), ["/p/04"], "start_after need not be a key");
}

pub async fn list_pages_at_a_fixed_revision_while_writes_continue(store: Arc<dyn Store>) {
    for i in 0..6 {
        store
            .create(&format!("/f/{i}"), value("v"))
            .await
            .expect("create");
    }
    let first = list(&store, "/f/", None, None, Some(3)).await;
    assert_eq!(keys(&first), ["/f/0", "/f/1", "/f/2"]);
    assert!(first.more);

    store.delete("/f/4", None).await.expect("delete");
    store.create("/f/3a", value("new")).await.expect("create");
    let five = store.get("/f/5").await.expect("get").expect("exists");
    store
        .update("/f/5", value("changed"), five.mod_revision)
        .await
        .expect("update");

    let second = list(&store, "/f/", Some(first.revision), Some("/f/2"), Some(3)).await;
    assert_eq!(second.revision, first.revision);
    assert_eq!(keys(&second), ["/f/3", "/f/4", "/f/5"]);
    assert_eq!(
        second.items[2], five,
        "the old value, from the old snapshot"
    );
    assert!(!second.more);
}

pub async fn list_at_a_future_revision_fails(store: Arc<dyn Store>) {
    store.create("/x", value("v")).await.expect("create");
    match store
        .list(ListOptions {
            revision: Some(5),
            ..Default::default()
        })
        .await
    {
        Err(StoreError::FutureRevision { requested, current }) => {
            assert_eq!((requested, current), (5, 1));
        }
        other => panic!("list in the future: expected FutureRevision, got {other:?}"),
    }
}
