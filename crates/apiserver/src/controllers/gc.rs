//! The garbage collector: deletes objects whose owners are all gone (background
//! propagation), deletes the dependents of owners being deleted in the foreground (letting
//! go of those another owner still holds), orphans the dependents of owners deleted with
//! the `Orphan` policy, and deletes objects left behind in a namespace that is gone.
//! Nothing is deleted for an absent owner or namespace until a live read confirms the
//! absence, so something created a moment ago is never mistaken as gone.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, watch};

use crate::engine::{DeleteOptions, Engine, Propagation, Target, WriteOptions};
use crate::engine::{FOREGROUND_FINALIZER, ORPHAN_FINALIZER};
use crate::object;
use crate::registry::KindSpec;

const RESYNC: Duration = Duration::from_secs(30);

pub(super) async fn run(engine: Engine, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(error) = pass(&engine).await {
            tracing::warn!(%error, "garbage collection pass failed");
        }
        if super::wait_for_work(&wake, &mut stop, RESYNC).await {
            return;
        }
    }
}

/// One object seen in a pass.
struct Seen {
    kind: Arc<KindSpec>,
    object: Value,
}

impl Seen {
    fn namespace(&self) -> Option<&str> {
        object::namespace(&self.object)
    }
    fn name(&self) -> &str {
        object::name(&self.object).unwrap_or_default()
    }
}

async fn pass(engine: &Engine) -> Result<(), crate::error::ApiError> {
    let mut everything = Vec::new();
    for kind in engine.registry().kinds() {
        let list = engine.list(kind, None, &Default::default()).await?;
        everything.extend(list.items.into_iter().map(|object| Seen {
            kind: kind.clone(),
            object,
        }));
    }
    let uids: HashSet<&str> = everything
        .iter()
        .filter_map(|s| object::uid(&s.object))
        .collect();
    // Owners that are not on their way out in the foreground.
    let live: HashSet<&str> = everything
        .iter()
        .filter(|s| {
            !object::finalizers(&s.object)
                .iter()
                .any(|f| f == FOREGROUND_FINALIZER)
        })
        .filter_map(|s| object::uid(&s.object))
        .collect();
    let mut dependents: HashMap<&str, Vec<&Seen>> = HashMap::new();
    for seen in &everything {
        for owner in owner_references(&seen.object) {
            if let Some(uid) = owner.get("uid").and_then(Value::as_str) {
                dependents.entry(uid).or_default().push(seen);
            }
        }
    }

    // Owners being deleted with a policy the collector carries out.
    for owner in &everything {
        if object::deletion_timestamp(&owner.object).is_none() {
            continue;
        }
        let Some(uid) = object::uid(&owner.object) else {
            continue;
        };
        let finalizers = object::finalizers(&owner.object);
        let children: Vec<&Seen> = dependents
            .get(uid)
            .into_iter()
            .flatten()
            .copied()
            .filter(|child| same_scope(owner, child))
            .collect();
        if finalizers.iter().any(|f| f == ORPHAN_FINALIZER) {
            for child in &children {
                release(engine, child, uid).await;
            }
            finish(engine, owner, ORPHAN_FINALIZER).await;
        } else if finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) {
            if children.is_empty() {
                finish(engine, owner, FOREGROUND_FINALIZER).await;
            }
            for child in &children {
                // A child that another live owner still holds is only let go of.
                let held_elsewhere = owner_references(&child.object).iter().any(|other| {
                    other
                        .get("uid")
                        .and_then(Value::as_str)
                        .is_some_and(|other| other != uid && live.contains(other))
                });
                if held_elsewhere {
                    release(engine, child, uid).await;
                } else if object::deletion_timestamp(&child.object).is_none() {
                    delete(engine, child, Some(Propagation::Foreground), false).await;
                }
            }
        }
    }

    // Objects left in a namespace that no longer exists: a create can race the last
    // moments of its namespace's deletion. A namespace missing from this pass's lists is
    // confirmed gone with a live read (once per namespace) before anything is deleted.
    let namespaces: HashSet<&str> = everything
        .iter()
        .filter(|s| s.kind.group.is_empty() && s.kind.kind == "Namespace")
        .map(Seen::name)
        .collect();
    let mut gone: HashMap<&str, bool> = HashMap::new();
    for seen in &everything {
        let Some(namespace) = seen.namespace().filter(|_| seen.kind.namespaced()) else {
            continue;
        };
        if namespaces.contains(namespace) || object::deletion_timestamp(&seen.object).is_some() {
            continue;
        }
        let confirmed = match gone.get(namespace) {
            Some(confirmed) => *confirmed,
            None => {
                let confirmed = namespace_gone(engine, namespace).await;
                gone.insert(namespace, confirmed);
                confirmed
            }
        };
        if !confirmed {
            continue;
        }
        tracing::info!(
            kind = seen.kind.kind,
            namespace,
            name = seen.name(),
            "deleting an object whose namespace is gone"
        );
        delete(engine, seen, Some(Propagation::Background), true).await;
    }

    // Dependents whose owners are gone.
    for seen in &everything {
        let owners = owner_references(&seen.object);
        if owners.is_empty() || object::deletion_timestamp(&seen.object).is_some() {
            continue;
        }
        let missing: Vec<&Value> = owners
            .iter()
            .filter(|o| {
                o.get("uid")
                    .and_then(Value::as_str)
                    .is_some_and(|u| !uids.contains(u))
            })
            .collect();
        if missing.is_empty() {
            continue;
        }
        let mut confirmed_gone = Vec::new();
        for owner in &missing {
            if owner_gone(engine, seen, owner).await
                && let Some(uid) = owner.get("uid").and_then(Value::as_str)
            {
                confirmed_gone.push(uid.to_owned());
            }
        }
        if confirmed_gone.len() == owners.len() {
            tracing::info!(kind = seen.kind.kind, namespace = ?seen.namespace(), name = seen.name(), "deleting a dependent whose owners are gone");
            delete(engine, seen, Some(Propagation::Background), false).await;
        } else {
            for uid in &confirmed_gone {
                release(engine, seen, uid).await;
            }
        }
    }
    Ok(())
}

/// Whether `child` can be a dependent of `owner`: a namespaced owner only owns objects in
/// its own namespace (a reference across namespaces names nothing).
fn same_scope(owner: &Seen, child: &Seen) -> bool {
    !owner.kind.namespaced() || owner.namespace() == child.namespace()
}

fn owner_references(object: &Value) -> &[Value] {
    object::value_at(object, &["metadata", "ownerReferences"])
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Confirms with a live read that a namespace no longer exists.
async fn namespace_gone(engine: &Engine, namespace: &str) -> bool {
    let Ok(namespaces) = engine.kind("v1", "Namespace") else {
        return false;
    };
    matches!(engine.get(&namespaces, None, namespace).await, Err(error) if error.code() == 404)
}

/// Confirms with a live read that an owner no longer exists (with that uid).
async fn owner_gone(engine: &Engine, dependent: &Seen, owner: &Value) -> bool {
    let text = |k: &str| owner.get(k).and_then(Value::as_str).unwrap_or_default();
    let Ok(kind) = engine.kind(text("apiVersion"), text("kind")) else {
        // An owner of a kind we do not serve cannot be checked: leave the dependent be.
        return false;
    };
    let namespace = match (kind.namespaced(), dependent.namespace()) {
        (true, Some(namespace)) => Some(namespace),
        // A cluster-scoped object cannot be owned by a namespaced one: the reference
        // cannot be resolved, and an unresolvable owner is never taken as gone.
        (true, None) => return false,
        (false, _) => None,
    };
    match engine.get(&kind, namespace, text("name")).await {
        Ok(found) => object::uid(&found) != Some(text("uid")),
        Err(error) => error.code() == 404,
    }
}

async fn delete(engine: &Engine, seen: &Seen, propagation: Option<Propagation>, exact: bool) {
    tracing::debug!(kind = seen.kind.kind, namespace = ?seen.namespace(), name = seen.name(), ?propagation, "garbage collector deletes");
    let options = DeleteOptions {
        propagation,
        precondition_uid: object::uid(&seen.object).map(str::to_owned),
        // With `exact`, only the object as this pass saw it: one changed since (say, by a
        // client that recreated its namespace and applied it again) is judged next pass.
        precondition_resource_version: exact
            .then(|| object::resource_version(&seen.object).map(str::to_owned))
            .flatten(),
        ..DeleteOptions::default()
    };
    match engine
        .delete(&seen.kind, seen.namespace(), seen.name(), &options)
        .await
    {
        Ok(_) => {}
        Err(error) if matches!(error.code(), 404 | 409) => {}
        Err(error) => {
            tracing::warn!(%error, name = seen.name(), "garbage collector could not delete")
        }
    }
}

/// Removes the owner reference to `owner_uid` from a dependent.
async fn release(engine: &Engine, seen: &Seen, owner_uid: &str) {
    tracing::debug!(kind = seen.kind.kind, namespace = ?seen.namespace(), name = seen.name(), owner_uid, "garbage collector releases");
    let result = engine
        .update_with(
            &seen.kind,
            seen.namespace(),
            seen.name(),
            None,
            Target::Main,
            &WriteOptions::default(),
            |current| {
                let mut next = current.clone();
                let metadata = object::metadata_mut(&mut next);
                if let Some(Value::Array(refs)) = metadata.get_mut("ownerReferences") {
                    refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
                    if refs.is_empty() {
                        metadata.remove("ownerReferences");
                    }
                }
                Ok(next)
            },
        )
        .await;
    if let Err(error) = result
        && error.code() != 404
    {
        tracing::warn!(%error, name = seen.name(), "garbage collector could not release a dependent");
    }
}

async fn finish(engine: &Engine, owner: &Seen, finalizer: &str) {
    if let Err(error) = engine
        .remove_finalizer(&owner.kind, owner.namespace(), owner.name(), finalizer)
        .await
        && error.code() != 404
    {
        tracing::warn!(%error, name = owner.name(), "garbage collector could not remove its finalizer");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ronghe_store::{MemoryStore, Store};
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn objects_in_a_deleted_namespace_are_collected() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let registry = Arc::new(crate::kinds::builtin_registry().expect("registry"));
        let engine = Engine::new(store.clone(), registry);
        let config_maps = engine.kind("v1", "ConfigMap").expect("configmaps");
        // What a create that raced its namespace's deletion leaves behind.
        let stray = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "stray", "namespace": "gone", "uid": "u1"}});
        store
            .create(
                &config_maps.key(Some("gone"), "stray"),
                serde_json::to_vec(&stray).expect("json").into(),
            )
            .await
            .expect("store");
        pass(&engine).await.expect("pass");
        let left = engine.get(&config_maps, Some("gone"), "stray").await;
        assert_eq!(left.expect_err("collected").code(), 404);
    }
}
