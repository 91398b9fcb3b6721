//! The quota controller: keeps every ResourceQuota's `status` equal to what its namespace
//! uses. Creates are charged as they are written (`engine::quota`); this controller
//! catches the rest — deletes, new or changed quotas, objects written while a quota was
//! being created — by recounting a namespace after any change in it, and every namespace
//! with a quota on a slow timer.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ronghe_store::ListOptions;
use tokio::sync::{Notify, watch};

use super::pause;
use crate::engine::Engine;

/// How often every quota is recounted even when nothing woke the controller.
const RESYNC: Duration = Duration::from_secs(60);

/// Namespaces that changed since the last pass.
#[derive(Default)]
pub(super) struct Changed {
    namespaces: Mutex<BTreeSet<String>>,
    wake: Notify,
}

impl Changed {
    /// Notes a change to a store key, if the key is a namespaced object's.
    pub(super) fn key(&self, key: &str) {
        // Namespaced keys are `/<group>/<plural>/<namespace>/<name>`.
        let mut parts = key.split('/').skip(3);
        if let (Some(namespace), Some(_)) = (parts.next(), parts.next()) {
            self.namespace(namespace);
        }
    }

    fn namespace(&self, namespace: &str) {
        self.namespaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(namespace.to_owned());
        self.wake.notify_one();
    }

    fn take(&self) -> BTreeSet<String> {
        std::mem::take(
            &mut *self
                .namespaces
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

pub(super) async fn run(engine: Engine, changed: Arc<Changed>, mut stop: watch::Receiver<bool>) {
    // The first pass counts every quota, as a resync does.
    let mut everything = true;
    loop {
        let namespaces = changed.take();
        let failed = match pass(&engine, &namespaces, everything).await {
            Ok(unsettled) => {
                unsettled.iter().for_each(|ns| changed.namespace(ns));
                false
            }
            Err(error) => {
                tracing::warn!(%error, "counting quota usage failed");
                namespaces.iter().for_each(|ns| changed.namespace(ns));
                if pause(&mut stop, Duration::from_secs(1)).await {
                    return;
                }
                true
            }
        };
        // A failed full pass stays a full pass.
        let resync = tokio::select! {
            () = changed.wake.notified() => false,
            () = tokio::time::sleep(RESYNC) => true,
            _ = stop.changed() => return,
        };
        everything = resync || (failed && everything);
        // Let a burst of changes settle into one pass.
        if pause(&mut stop, Duration::from_millis(50)).await {
            return;
        }
    }
}

/// Recounts the namespaces that changed (or all) among those that have quotas; returns
/// the namespaces whose quotas changed meanwhile.
async fn pass(
    engine: &Engine,
    changed: &BTreeSet<String>,
    everything: bool,
) -> crate::error::ApiResult<Vec<String>> {
    let Ok(kind) = engine.kind("v1", "ResourceQuota") else {
        return Ok(Vec::new());
    };
    let quotas = engine
        .store()
        .list(ListOptions {
            prefix: kind.key_prefix(),
            ..ListOptions::default()
        })
        .await
        .map_err(|error| crate::error::ApiError::from_store(error, &kind, ""))?;
    let with_quotas: BTreeSet<&str> = quotas
        .items
        .iter()
        .filter_map(|kv| kv.key[kind.key_prefix().len()..].split('/').next())
        .collect();
    let mut unsettled = Vec::new();
    for namespace in with_quotas {
        if (everything || changed.contains(namespace)) && !engine.recount_quotas(namespace).await? {
            unsettled.push(namespace.to_owned());
        }
    }
    Ok(unsettled)
}
