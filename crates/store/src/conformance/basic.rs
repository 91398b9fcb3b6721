//! Conformance cases for single-key operations: create, get, update, delete, and how they
//! move revisions.

use std::sync::Arc;

use bytes::Bytes;

use super::value;
use crate::{KeyValue, Store, StoreError};

pub async fn create_then_get(store: Arc<dyn Store>) {
    assert_eq!(store.current_revision().await.expect("current revision"), 0);
    assert_eq!(store.get("/t/a").await.expect("get"), None);

    let created = store.create("/t/a", value("one")).await.expect("create");
    let expected = KeyValue {
        key: "/t/a".to_owned(),
        value: value("one"),
        create_revision: 1,
        mod_revision: 1,
    };
    assert_eq!(created, expected);
    assert_eq!(store.get("/t/a").await.expect("get"), Some(expected));
    assert_eq!(store.current_revision().await.expect("current revision"), 1);
    assert_eq!(
        store.get("/t/a/").await.expect("get"),
        None,
        "get is exact, not by prefix"
    );
}

pub async fn create_of_an_existing_key_fails(store: Arc<dyn Store>) {
    store.create("/t/a", value("one")).await.expect("create");
    match store.create("/t/a", value("two")).await {
        Err(StoreError::AlreadyExists { key }) => assert_eq!(key, "/t/a"),
        other => panic!("second create: expected AlreadyExists, got {other:?}"),
    }
    let current = store.get("/t/a").await.expect("get").expect("key exists");
    assert_eq!(
        current.value,
        value("one"),
        "a failed create changes nothing"
    );
    assert_eq!(store.current_revision().await.expect("current revision"), 1);
}

pub async fn update_compares_the_mod_revision(store: Arc<dyn Store>) {
    let created = store.create("/t/a", value("one")).await.expect("create");
    let updated = store
        .update("/t/a", value("two"), created.mod_revision)
        .await
        .expect("update at the current revision");
    assert_eq!(updated.mod_revision, 2);
    assert_eq!(updated.create_revision, 1);
    assert_eq!(updated.value, value("two"));
    assert_eq!(store.get("/t/a").await.expect("get"), Some(updated));

    match store.update("/t/a", value("three"), 1).await {
        Err(StoreError::Conflict {
            key,
            expected,
            actual,
        }) => assert_eq!((key.as_str(), expected, actual), ("/t/a", 1, 2)),
        other => panic!("stale update: expected Conflict, got {other:?}"),
    }
    match store.update("/t/missing", value("x"), 1).await {
        Err(StoreError::NotFound { key }) => assert_eq!(key, "/t/missing"),
        other => panic!("update of a missing key: expected NotFound, got {other:?}"),
    }
    assert_eq!(store.current_revision().await.expect("current revision"), 2);
    let current = store.get("/t/a").await.expect("get").expect("key exists");
    assert_eq!(current.value, value("two"), "failed updates change nothing");
}

pub async fn delete_without_precondition(store: Arc<dyn Store>) {
    let created = store.create("/t/a", value("one")).await.expect("create");
    let deleted = store.delete("/t/a", None).await.expect("delete");
    assert_eq!(deleted.revision, 2);
    assert_eq!(deleted.prev, created, "delete returns the key as it was");
    assert_eq!(store.get("/t/a").await.expect("get"), None);
    match store.delete("/t/a", None).await {
        Err(StoreError::NotFound { key }) => assert_eq!(key, "/t/a"),
        other => panic!("second delete: expected NotFound, got {other:?}"),
    }
    match store.update("/t/a", value("x"), 2).await {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("update of a deleted key: expected NotFound, got {other:?}"),
    }
    assert_eq!(store.current_revision().await.expect("current revision"), 2);
}

pub async fn delete_with_precondition(store: Arc<dyn Store>) {
    let created = store.create("/t/a", value("one")).await.expect("create");
    let updated = store
        .update("/t/a", value("two"), created.mod_revision)
        .await
        .expect("update");
    match store.delete("/t/a", Some(created.mod_revision)).await {
        Err(StoreError::Conflict {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (1, 2)),
        other => panic!("stale delete: expected Conflict, got {other:?}"),
    }
    assert!(store.get("/t/a").await.expect("get").is_some());
    match store.delete("/t/missing", Some(1)).await {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("delete of a missing key: expected NotFound, got {other:?}"),
    }
    let deleted = store
        .delete("/t/a", Some(updated.mod_revision))
        .await
        .expect("delete at the current revision");
    assert_eq!(deleted.revision, 3);
    assert_eq!(deleted.prev, updated);
    assert_eq!(store.get("/t/a").await.expect("get"), None);
}

pub async fn revisions_step_by_one_and_only_on_success(store: Arc<dyn Store>) {
    let mut expected = 0;
    for round in 0..5 {
        let key = format!("/t/{round}");
        let created = store.create(&key, value("v")).await.expect("create");
        expected += 1;
        assert_eq!(created.mod_revision, expected);

        assert!(store.create(&key, value("v")).await.is_err());
        assert!(store.update(&key, value("v"), expected - 1).await.is_err());
        assert!(store.delete(&key, Some(expected + 7)).await.is_err());
        assert!(store.update("/t/none", value("v"), 1).await.is_err());
        assert_eq!(
            store.current_revision().await.expect("current revision"),
            expected,
            "failed writes must not consume revisions"
        );

        let updated = store
            .update(&key, value("w"), created.mod_revision)
            .await
            .expect("update");
        expected += 1;
        assert_eq!(updated.mod_revision, expected);
        if round % 2 == 0 {
            let deleted = store.delete(&key, None).await.expect("delete");
            expected += 1;
            assert_eq!(deleted.revision, expected);
        }
        assert_eq!(
            store.current_revision().await.expect("current revision"),
            expected
        );
    }
}

pub async fn create_revision_survives_updates_and_resets_on_recreate(store: Arc<dyn Store>) {
    store.create("/t/other", value("x")).await.expect("create");
    let created = store.create("/t/a", value("0")).await.expect("create");
    let mut latest = created.clone();
    for step in 1..4 {
        latest = store
            .update("/t/a", value(&step.to_string()), latest.mod_revision)
            .await
            .expect("update");
        assert_eq!(latest.create_revision, created.create_revision);
    }
    let listed = store
        .list(crate::ListOptions {
            prefix: "/t/a".to_owned(),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(listed.items, vec![latest.clone()]);

    store.delete("/t/a", None).await.expect("delete");
    let recreated = store
        .create("/t/a", value("again"))
        .await
        .expect("recreate");
    assert_eq!(recreated.create_revision, recreated.mod_revision);
    assert!(recreated.create_revision > latest.mod_revision);
}

pub async fn values_round_trip_as_bytes(store: Arc<dyn Store>) {
    let large: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let cases: Vec<(&str, Bytes)> = vec![
        ("/v/empty", Bytes::new()),
        (
            "/v/binary",
            Bytes::from_static(&[0, 255, 1, 254, 0, 0, 0x80]),
        ),
        ("/v/json", value(r#"{"kind":"ConfigMap","data":{"k":"v"}}"#)),
        ("/v/large", Bytes::from(large)),
        ("/v/ünïcode-ключ", value("✓")),
    ];
    for (key, bytes) in &cases {
        let created = store.create(key, bytes.clone()).await.expect("create");
        assert_eq!(&created.value, bytes);
    }
    for (key, bytes) in &cases {
        let got = store.get(key).await.expect("get").expect("key exists");
        assert_eq!(&got.value, bytes, "value of {key} changed in store");
    }
    let listed = store
        .list(crate::ListOptions {
            prefix: "/v/".to_owned(),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(listed.items.len(), cases.len());
    for item in &listed.items {
        let (_, bytes) = cases
            .iter()
            .find(|(key, _)| *key == item.key)
            .expect("listed key was written");
        assert_eq!(&item.value, bytes, "listed value of {} changed", item.key);
    }
}
