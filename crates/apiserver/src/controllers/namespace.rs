//! Namespace finalization: when a namespace is deleted, delete everything in it, then
//! release the namespace's own finalizer so it goes away.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, watch};

use crate::engine::{DeleteOptions, Engine, Target, WriteOptions};
use crate::kinds::NAMESPACE_FINALIZER;
use crate::object;

const RESYNC: Duration = Duration::from_secs(5);

pub(super) async fn run(engine: Engine, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(error) = pass(&engine).await {
            tracing::warn!(%error, "namespace finalization pass failed");
        }
        if super::wait_for_work(&wake, &mut stop, RESYNC).await {
            return;
        }
    }
}

async fn pass(engine: &Engine) -> Result<(), crate::error::ApiError> {
    let namespaces = engine.kind("v1", "Namespace")?;
    let list = engine.list(&namespaces, None, &Default::default()).await?;
    for namespace in list.items {
        if object::deletion_timestamp(&namespace).is_none() {
            continue;
        }
        let Some(name) = object::name(&namespace).map(str::to_owned) else {
            continue;
        };
        let uid = object::uid(&namespace).map(str::to_owned);
        if empty_namespace(engine, &name).await? {
            tracing::info!(namespace = %name, "namespace is empty; finalizing it");
            let result = engine
                .update_with(
                    &namespaces,
                    None,
                    &name,
                    None,
                    Target::Finalize,
                    &WriteOptions::default(),
                    |current| {
                        let mut next = current.clone();
                        if object::uid(current).map(str::to_owned) != uid {
                            // Recreated since this pass looked: not the namespace it emptied.
                            return Ok(next);
                        }
                        if let Some(Value::Array(finalizers)) =
                            next.get_mut("spec").and_then(|s| s.get_mut("finalizers"))
                        {
                            finalizers.retain(|f| f != NAMESPACE_FINALIZER);
                        }
                        Ok(next)
                    },
                )
                .await;
            if let Err(error) = result
                && error.code() != 404
            {
                return Err(error);
            }
        }
    }
    Ok(())
}

/// Deletes what is left in a namespace; true once nothing is.
async fn empty_namespace(engine: &Engine, namespace: &str) -> Result<bool, crate::error::ApiError> {
    let mut empty = true;
    for kind in engine.registry().kinds() {
        if !kind.namespaced() {
            continue;
        }
        let list = engine
            .list(kind, Some(namespace), &Default::default())
            .await?;
        for item in list.items {
            empty = false;
            if object::deletion_timestamp(&item).is_some() {
                continue;
            }
            let name = object::name(&item).unwrap_or_default();
            match engine
                .delete(kind, Some(namespace), name, &DeleteOptions::default())
                .await
            {
                Ok(_) => {}
                Err(error) if error.code() == 404 => {}
                Err(error) => return Err(error),
            }
        }
    }
    Ok(empty)
}
