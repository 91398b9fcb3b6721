//! Engine semantics on the in-memory store, with a CRD-like test kind that has a spec,
//! a status subresource and generations.

use std::sync::Arc;

use futures::StreamExt;
use ronghe_store::MemoryStore;
use serde_json::{Value, json};

use super::*;
use crate::registry::{KindSpec, Registry, Scope, Subresources};

fn widget_kind() -> KindSpec {
    KindSpec {
        subresources: Subresources {
            status: true,
            scale: false,
        },
        ..KindSpec::new(
            "test.ronghe.io",
            "v1",
            "Widget",
            "widgets",
            Scope::Namespaced,
        )
    }
}

fn engine() -> (Engine, Arc<KindSpec>) {
    let mut registry = Registry::new();
    registry.register(widget_kind()).expect("one kind");
    let registry = Arc::new(registry);
    let kind = registry.kinds()[0].clone();
    (Engine::new(Arc::new(MemoryStore::new()), registry), kind)
}

fn widget(name: &str, size: i64) -> Value {
    json!({"apiVersion": "test.ronghe.io/v1", "kind": "Widget", "metadata": {"name": name}, "spec": {"size": size}})
}

fn rv(object: &Value) -> String {
    crate::object::resource_version(object)
        .unwrap_or_default()
        .to_owned()
}

const NS: Option<&str> = Some("default");

#[tokio::test]
async fn generation_bumps_only_on_spec_changes() {
    let (engine, kind) = engine();
    let options = WriteOptions::default();
    let created = engine
        .create(&kind, NS, widget("w", 1), &options)
        .await
        .expect("create");
    assert_eq!(created.object["metadata"]["generation"], 1);

    let labelled = engine
        .patch(
            &kind,
            NS,
            "w",
            PatchKind::Merge,
            json!({"metadata": {"labels": {"a": "b"}}}),
            Target::Main,
            &options,
        )
        .await
        .expect("label");
    assert_eq!(labelled.object["metadata"]["generation"], 1);
    assert_ne!(rv(&labelled.object), rv(&created.object));

    let resized = engine
        .patch(
            &kind,
            NS,
            "w",
            PatchKind::Merge,
            json!({"spec": {"size": 2}}),
            Target::Main,
            &options,
        )
        .await
        .expect("resize");
    assert_eq!(resized.object["metadata"]["generation"], 2);

    let status = engine
        .patch(
            &kind,
            NS,
            "w",
            PatchKind::Merge,
            json!({"status": {"ready": true}, "spec": {"size": 9}}),
            Target::Status,
            &options,
        )
        .await
        .expect("status");
    assert_eq!(
        status.object["metadata"]["generation"], 2,
        "status writes keep generation"
    );
    assert_eq!(
        status.object["spec"]["size"], 2,
        "status writes ignore spec"
    );
    assert_eq!(status.object["status"]["ready"], true);

    let ignored = engine
        .patch(
            &kind,
            NS,
            "w",
            PatchKind::Merge,
            json!({"status": {"ready": false}}),
            Target::Main,
            &options,
        )
        .await
        .expect("main write of status");
    assert_eq!(
        ignored.object["status"]["ready"], true,
        "the main endpoint ignores status"
    );
    assert_eq!(
        rv(&ignored.object),
        rv(&status.object),
        "and so changed nothing"
    );
}

#[tokio::test]
async fn no_op_writes_change_nothing_and_emit_nothing() {
    let (engine, kind) = engine();
    let options = WriteOptions::default();
    let created = engine
        .create(&kind, NS, widget("w", 1), &options)
        .await
        .expect("create");
    let revision = rv(&created.object);
    let mut events = engine
        .watch(
            kind.clone(),
            NS,
            WatchOptions {
                resource_version: Some(revision.clone()),
                ..Default::default()
            },
        )
        .await
        .expect("watch");
    let same = engine
        .replace(
            &kind,
            NS,
            "w",
            created.object.clone(),
            Target::Main,
            &options,
        )
        .await
        .expect("replace with the same object");
    assert_eq!(rv(&same.object), revision);
    let applied = engine
        .patch(
            &kind,
            NS,
            "w",
            PatchKind::Apply { force: true },
            widget("w", 1),
            Target::Main,
            &options,
        )
        .await
        .expect("apply the same");
    assert_eq!(rv(&applied.object), revision);
    // A real change afterwards is the first event the watcher sees.
    engine
        .patch(
            &kind,
            NS,
            "w",
            PatchKind::Merge,
            json!({"spec": {"size": 5}}),
            Target::Main,
            &options,
        )
        .await
        .expect("change");
    let event = tokio::time::timeout(std::time::Duration::from_secs(5), events.next())
        .await
        .expect("an event")
        .expect("stream open");
    assert_eq!(event.event_type, WatchEventType::Modified);
    assert_eq!(event.object["spec"]["size"], 5);
}

#[tokio::test]
async fn stale_resource_version_conflicts_and_retries_are_transparent() {
    let (engine, kind) = engine();
    let options = WriteOptions::default();
    let created = engine
        .create(&kind, NS, widget("w", 1), &options)
        .await
        .expect("create");
    engine
        .patch(
            &kind,
            NS,
            "w",
            PatchKind::Merge,
            json!({"spec": {"size": 2}}),
            Target::Main,
            &options,
        )
        .await
        .expect("patch");
    let mut stale = created.object.clone();
    stale["spec"]["size"] = json!(3);
    let error = engine
        .replace(&kind, NS, "w", stale, Target::Main, &options)
        .await
        .expect_err("stale");
    assert_eq!(error.code(), 409);

    // Concurrent patches without preconditions all land.
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let engine = engine.clone();
            let kind = kind.clone();
            tokio::spawn(async move {
                engine
                    .patch(
                        &kind,
                        NS,
                        "w",
                        PatchKind::Merge,
                        json!({"metadata": {"labels": {format!("l{i}"): "x"}}}),
                        Target::Main,
                        &WriteOptions::default(),
                    )
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("patch lands");
    }
    let object = engine.get(&kind, NS, "w").await.expect("get");
    assert_eq!(
        object["metadata"]["labels"].as_object().map(|l| l.len()),
        Some(16)
    );
}

#[tokio::test]
async fn watch_filters_by_selector_with_transitions() {
    let (engine, kind) = engine();
    let options = WriteOptions::default();
    let selectors = Selectors::parse(&kind, Some("team=a"), None).expect("selector");
    let mut events = engine
        .watch(
            kind.clone(),
            NS,
            WatchOptions {
                selectors,
                resource_version: Some("0".into()),
            },
        )
        .await
        .expect("watch");
    let mut next = async || loop {
        let event = tokio::time::timeout(std::time::Duration::from_secs(5), events.next())
            .await
            .expect("an event")
            .expect("open");
        if !matches!(
            event.event_type,
            WatchEventType::Bookmark | WatchEventType::InitialEventsEnd
        ) {
            return event;
        }
    };
    engine
        .create(&kind, NS, widget("w", 1), &options)
        .await
        .expect("create");
    engine
        .patch(
            &kind,
            NS,
            "w",
            PatchKind::Merge,
            json!({"metadata": {"labels": {"team": "a"}}}),
            Target::Main,
            &options,
        )
        .await
        .expect("label in");
    assert_eq!(next().await.event_type, WatchEventType::Added);
    engine
        .patch(
            &kind,
            NS,
            "w",
            PatchKind::Merge,
            json!({"metadata": {"labels": {"team": "b"}}}),
            Target::Main,
            &options,
        )
        .await
        .expect("label out");
    assert_eq!(next().await.event_type, WatchEventType::Deleted);
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let (engine, kind) = engine();
    let options = WriteOptions::default();
    let mut object = widget("w", 1);
    object["metadata"]["finalizers"] = json!(["example.com/a"]);
    engine
        .create(&kind, NS, object, &options)
        .await
        .expect("create");
    let outcome = engine
        .delete(&kind, NS, "w", &DeleteOptions::default())
        .await
        .expect("delete");
    assert!(!outcome.removed);
    assert!(outcome.object["metadata"]["deletionTimestamp"].is_string());
    // Deleting again changes nothing.
    let again = engine
        .delete(&kind, NS, "w", &DeleteOptions::default())
        .await
        .expect("again");
    assert_eq!(rv(&again.object), rv(&outcome.object));
    engine
        .remove_finalizer(&kind, NS, "w", "example.com/a")
        .await
        .expect("finalize");
    assert_eq!(
        engine.get(&kind, NS, "w").await.expect_err("gone").code(),
        404
    );
}

#[tokio::test]
async fn dry_run_persists_nothing() {
    let (engine, kind) = engine();
    let dry = WriteOptions {
        dry_run: true,
        ..Default::default()
    };
    let result = engine
        .create(&kind, NS, widget("w", 1), &dry)
        .await
        .expect("dry create");
    assert_eq!(result.object["metadata"]["name"], "w");
    assert_eq!(
        engine
            .get(&kind, NS, "w")
            .await
            .expect_err("not stored")
            .code(),
        404
    );
}
