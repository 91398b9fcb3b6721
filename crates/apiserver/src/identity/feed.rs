//! Keeps the identity directory current: one list of every identity object from one store
//! snapshot, then a watch from that revision; a watch that breaks (lag, compaction) starts
//! over with a fresh list. Like the apiserver's watch cache, this is the server's own view
//! of its own store.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ronghe_identity::directory::{Directory, IdentityKind};
use ronghe_identity::model::GROUP;
use ronghe_store::{EventKind, ListOptions, Store};
use serde_json::Value;
use tokio::sync::watch;

use super::IdentityService;

/// Runs until `stop` flips.
pub async fn run_feed(
    service: Arc<IdentityService>,
    store: Arc<dyn Store>,
    mut stop: watch::Receiver<bool>,
) {
    let prefix = format!("/{GROUP}/");
    loop {
        match follow(&service, store.as_ref(), &prefix, &mut stop).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, "the identity feed broke; listing again");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

async fn follow(
    service: &IdentityService,
    store: &dyn Store,
    prefix: &str,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), ronghe_store::StoreError> {
    let listed = store
        .list(ListOptions {
            prefix: prefix.to_owned(),
            ..ListOptions::default()
        })
        .await?;
    let mut fresh = Directory::new();
    for item in &listed.items {
        apply(&mut fresh, &item.key, Some(&item.value));
    }
    fresh.set_revision(listed.revision);
    service.update(|directory| *directory = fresh);
    let mut events = store.watch(prefix, listed.revision).await?;
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            _ = stop.changed() => return Ok(()),
        };
        let Some(event) = event else {
            return Err(ronghe_store::StoreError::backend(
                "the identity watch",
                std::io::Error::other("the watch ended"),
            ));
        };
        let event = event?;
        service.update(|directory| {
            match event.kind {
                EventKind::Create | EventKind::Update => {
                    apply(directory, &event.key, event.value.as_ref());
                }
                EventKind::Delete => apply(directory, &event.key, None),
                EventKind::Progress => {}
            }
            directory.set_revision(event.revision);
        });
    }
}

/// Applies one stored object (or its deletion) to the directory.
fn apply(directory: &mut Directory, key: &str, value: Option<&bytes::Bytes>) {
    // Keys are `/{group}/{plural}/{name}` for these cluster-scoped kinds.
    let mut parts = key.trim_start_matches('/').split('/').skip(1);
    let (Some(plural), Some(name)) = (parts.next(), parts.next()) else {
        return;
    };
    let Some(kind) = IdentityKind::from_plural(plural) else {
        return;
    };
    match value {
        None => directory.remove(kind, name),
        Some(bytes) => match serde_json::from_slice::<Value>(bytes) {
            Ok(object) => {
                if let Err(error) = directory.upsert(kind, &object) {
                    tracing::warn!(kind = kind.kind(), name, %error, "an identity object does not parse; ignoring it");
                    directory.remove(kind, name);
                }
            }
            Err(error) => {
                tracing::warn!(kind = kind.kind(), name, %error, "an identity object is corrupt; ignoring it");
            }
        },
    }
}
